//! `orders.orders`: reservations and their outcome. Key: the **sneaker** id, so that the
//! orders of one pair reach catalog in the order they happened (A cancelled before B
//! created); `ce_subject` is the order.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topics;

crate::contract! {
    /// Events on `orders.orders`.
    pub enum OrderEvent on topics::ORDERS, key sneaker_id {
        /// A buyer reserved a pair (order version 1).
        Created("order.created", v 1) => OrderCreated,
        /// The order ended unpaid: cancelled by its buyer or expired.
        Cancelled("order.cancelled", v 1) => OrderCancelled,
        /// The order was paid.
        Completed("order.completed", v 1) => OrderCompleted,
    }
}

/// `order.created` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    /// The order (the event's subject).
    pub order_id: Uuid,
    /// The reserved pair (also the key).
    pub sneaker_id: Uuid,
    /// Who ordered it.
    pub buyer_id: Uuid,
    /// Who sells it.
    pub seller_id: Uuid,
    /// The price at ordering time, in cents.
    pub price_cents: i64,
    /// When the reservation lapses unless paid.
    pub expires_at: DateTime<Utc>,
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CancelReason {
    /// Its buyer cancelled it.
    Buyer,
    /// It was not paid in time.
    Expired,
}

/// `order.cancelled` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    /// The order (the event's subject).
    pub order_id: Uuid,
    /// The pair it held, now released (also the key).
    pub sneaker_id: Uuid,
    /// Why.
    pub reason: CancelReason,
}

/// `order.completed` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCompleted {
    /// The order (the event's subject).
    pub order_id: Uuid,
    /// The pair, now sold (also the key).
    pub sneaker_id: Uuid,
    /// The payment that completed it.
    pub payment_id: Uuid,
}
