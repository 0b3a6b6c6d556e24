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
        /// A match of the market could not become an order: the pair was taken meanwhile (a
        /// racing buy-now) or sold. Nothing was reserved; the market puts the bid back.
        Refused("order.refused", v 1) => OrderRefused,
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
    /// The market's match this order fills (a bid met an ask): the order's id is the
    /// match's, and payments charges the buyer's saved method without them. Absent for a
    /// buyer's own order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_id: Option<Uuid>,
}

/// `order.refused` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRefused {
    /// The match that could not be filled (the order would have had its id).
    pub match_id: Uuid,
    /// The pair (also the key).
    pub sneaker_id: Uuid,
    /// The bidder.
    pub buyer_id: Uuid,
    /// Why.
    pub reason: RefusedBecause,
}

/// Why a match could not become an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusedBecause {
    /// Another live order holds the pair.
    PairTaken,
    /// The pair has been sold.
    Sold,
    /// The ask expired.
    Expired,
    /// Its seller took the pair off sale.
    Withdrawn,
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CancelReason {
    /// Its buyer cancelled it.
    Buyer,
    /// It was not paid in time.
    Expired,
    /// The buyer's saved payment method was declined (an order of the market).
    Declined,
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
