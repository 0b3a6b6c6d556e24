//! `catalog.sneakers`: listings and their status. Key: the sneaker id.
//! `catalog.products`: the products (models) listings and bids refer to. Key: the product id.
//!
//! Every event carries the whole listing or product (an *event-carried state transfer*): a
//! consumer's replica is the latest payload by `version`, with nothing to merge.

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

crate::contract! {
    /// Events on `catalog.products`.
    pub enum ProductEvent on topics::PRODUCTS, key product_id {
        /// An admin created a product (version 1).
        Created("product.created", v 1) => Product,
        /// An admin corrected it: the whole product again, version + 1. Its sizes only ever
        /// grow (a size's book may hold bids and asks).
        Updated("product.updated", v 1) => Product,
    }
}

/// A product: one model of sneaker, sold in the sizes it lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// The product's id (also the message key).
    pub product_id: Uuid,
    /// The manufacturer's style code, upper case (`DZ5485-612`); unique.
    pub style_code: String,
    /// Its name (`Air Jordan 1 Retro High OG`).
    pub name: String,
    /// Its brand (`Jordan`).
    pub brand: String,
    /// Its colorway (`Varsity Red/Black`), if given.
    pub colorway: Option<String>,
    /// Retail price in cents, if known.
    pub retail_price_cents: Option<i64>,
    /// Release date, if known.
    pub release_date: Option<chrono::NaiveDate>,
    /// The US sizes it is made in, ascending; asks and bids must name one of them.
    pub sizes: Vec<f64>,
    /// 1 when created, + 1 per correction.
    pub version: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
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
    /// An ask whose time ran out before it sold: off the market for good.
    Expired,
    /// Its seller took it off sale while it was available: off the market for good.
    Withdrawn,
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
    /// The product this pair is, if the seller named one: then the listing is an *ask* on
    /// that product's market in its size. Absent for free listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<Uuid>,
    /// When an ask leaves its book unless sold (asks only; absent for free listings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Status after this change.
    pub status: SneakerStatus,
    /// The listing's version: 1 when listed, +1 per change.
    pub version: i64,
    /// When it was listed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}
