//! `payments.payments`: charges and refunds. Key: the order id.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topics;

crate::contract! {
    /// Events on `payments.payments`.
    pub enum PaymentEvent on topics::PAYMENTS, key order_id {
        /// An order was charged (payment version 1).
        Succeeded("payment.succeeded", v 1) => PaymentSucceeded,
        /// A charge was refunded, because its order was cancelled while it was being paid.
        Refunded("payment.refunded", v 1) => PaymentRefunded,
    }
}

/// `payment.succeeded` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentSucceeded {
    /// The payment.
    pub payment_id: Uuid,
    /// The order it pays (also the key).
    pub order_id: Uuid,
    /// The amount charged, in cents.
    pub amount_cents: i64,
    /// The provider's id of the charge (e.g. a Stripe PaymentIntent id).
    pub provider_ref: String,
}

/// `payment.refunded` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    /// The payment.
    pub payment_id: Uuid,
    /// The order it paid (also the key).
    pub order_id: Uuid,
    /// The amount refunded, in cents.
    pub amount_cents: i64,
    /// The provider's id of the refund.
    pub refund_ref: String,
}
