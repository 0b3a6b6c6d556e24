//! Payments service: idempotent charges, completion, and refunds when a charge races a
//! cancellation.
//!
//! - `http/` — `/api/payments` endpoints and their OpenAPI description.
//! - `provider` — who moves the money: simulated, or Stripe.
//! - `store` — SQL for payments and the order replica; events go to the outbox in the same
//!   transaction as the change.
//! - `events` — applying `orders.orders`: the replica, and marking a charge of a cancelled
//!   order for refund.
//! - `settle` — the one place a provider's answer becomes the payment's next state.
//! - `recovery` — the task that finishes attempts left `pending` by a process that died
//!   between charging and recording (asks the provider again under the same key).
//! - `refunds` — the task that refunds marked charges through the provider.
//! - `offsession` — the task that charges orders of the market with saved payment methods.
//!
//! Publishes `payment.succeeded`, `payment.refunded` and `payment.declined` on
//! `payments.payments` (keyed by order id) and `payment_method.saved` on `payments.methods`
//! (keyed by buyer); consumes `orders.orders`.

pub mod domain;
mod error;
pub mod events;
pub mod http;
pub mod lapse;
pub mod offsession;
pub mod provider;
pub mod recovery;
pub mod refunds;
pub mod service;
pub mod settle;
pub mod store;

use std::sync::Arc;

use axum::extract::FromRef;
use sneakerstop_auth::SessionKeys;
use sqlx::PgPool;

pub use error::PaymentsError;
pub use http::{ApiDoc, app};
pub use provider::PaymentProvider;
pub use service::Payments;

sneakerstop_service::service_schema!("payments", uses & sneakerstop_idempotency::MIGRATOR);

/// What the payments handlers share.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// Pool on the `payments` schema.
    pub pool: PgPool,
    /// Verifies session tokens.
    pub keys: SessionKeys,
    /// Charges and refunds.
    pub provider: Arc<dyn PaymentProvider>,
    /// Currency of all amounts.
    pub currency: String,
    /// How long a buyer's Idempotency-Key stays claimed by a payment request that has not
    /// answered (longer than the provider timeout); after that a retry takes it over.
    pub claim_lease: std::time::Duration,
    /// Waits for orders the replica has not heard of yet.
    pub replica: sneakerstop_messaging::ReplicaWait,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("currency", &self.currency).finish_non_exhaustive()
    }
}
