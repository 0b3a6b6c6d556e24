//! `payments.payments`: charges and refunds. Key: the order id.
//! `payments.methods`: buyers' saved payment methods. Key: the buyer id.

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
        /// A charge made without the buyer present (a matched bid, with the saved payment
        /// method) was declined: its order is cancelled. Declines of a buyer's own payment
        /// request are answered to the buyer instead, who may try another card.
        Declined("payment.declined", v 1) => PaymentDeclined,
        /// An order's reservation lapsed with no charge accepted before its deadline: no
        /// payment of it will be accepted from now on, and orders expires it. Every charge
        /// accepted in time was announced (`payment.succeeded`) before this, on the same
        /// partition (both are keyed by the order), so an order is expired only on what
        /// payments knew at its deadline. Its subject is the order, at version 1.
        Lapsed("payment.lapsed", v 1) => PaymentLapsed,
    }
}

crate::contract! {
    /// Events on `payments.methods`.
    pub enum PaymentMethodEvent on topics::PAYMENT_METHODS, key buyer_id {
        /// A buyer saved a payment method, replacing the one they had (version: the count of
        /// methods the buyer has saved).
        Saved("payment_method.saved", v 1) => PaymentMethodSaved,
    }
}

/// `payment.declined` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDeclined {
    /// The payment attempt.
    pub payment_id: Uuid,
    /// The order it was for (also the key).
    pub order_id: Uuid,
    /// The provider's reason, safe to show the buyer.
    pub reason: String,
}

/// `payment.lapsed` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentLapsed {
    /// The order (also the key, and the event's subject).
    pub order_id: Uuid,
    /// Its deadline, as payments had it from `order.created`.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// When payments closed it: at or after the deadline, once no charge was under way.
    pub lapsed_at: chrono::DateTime<chrono::Utc>,
}

/// `payment_method.saved` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentMethodSaved {
    /// The saved method (payments' id, not the provider's).
    pub method_id: Uuid,
    /// Whose it is (also the key).
    pub buyer_id: Uuid,
    /// When it was saved.
    pub saved_at: chrono::DateTime<chrono::Utc>,
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
