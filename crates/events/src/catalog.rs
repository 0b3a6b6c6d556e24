//! `catalog.sneakers`: listings and their status. Key: the sneaker id.
//!
//! Both events carry the whole listing (an *event-carried state transfer*): a consumer's
//! replica is the latest payload by `version`, with nothing to merge.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topics;

crate::contract! {
    /// Events on `catalog.sneakers`.
    pub enum SneakerEvent on topics::SNEAKERS, key sneaker_id {
        /// A seller listed a pair (version 1).
        Listed("sneaker.listed", v 1) => Sneaker,
        /// A listing changed: edited by its seller, or reserved, sold or released (version + 1).
        Updated("sneaker.updated", v 1) => Sneaker,
    }
}

/// A listing's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SneakerStatus {
    /// Can be ordered.
    Available,
    /// Held by a live order.
    Reserved,
    /// Bought.
    Sold,
}

/// The whole listing, as of `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sneaker {
    /// The listing's id (also the message key).
    pub sneaker_id: Uuid,
    /// The seller.
    pub seller_id: Uuid,
    /// Title, 1 to 120 characters.
    pub title: String,
    /// Brand, if given.
    pub brand: Option<String>,
    /// Description, if given.
    pub description: Option<String>,
    /// Price in minor units (cents). Money is never a float on the bus.
    pub price_cents: i64,
    /// US size, 1 to 22 in half steps.
    pub size: f64,
    /// Status after this change.
    pub status: SneakerStatus,
    /// The listing's version: 1 when listed, +1 per change.
    pub version: i64,
    /// When it was listed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}
