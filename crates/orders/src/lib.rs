//! Orders service: reservations that expire, enforced once.
//!
//! - `http/` — `/api/orders` endpoints and their OpenAPI description.
//! - `domain` — the order state machine (`created` → `cancelled` | `complete`).
//! - `store` — SQL for orders and the sneaker replica; every change writes its event to the
//!   outbox in the same transaction.
//! - `events` — applying `catalog.sneakers` to the replica.
//! - `expiry` — the sweeper that cancels unpaid orders when their reservation lapses.
//!
//! The rule "at most one live order per pair" is the partial unique index
//! `orders_one_live_order_per_sneaker`, not a read before the write.

pub mod domain;
mod error;
pub mod events;
pub mod expiry;
pub mod http;
pub mod service;
pub mod store;

use std::time::Duration;

use axum::extract::FromRef;
use sneakerstop_auth::SessionKeys;
use sqlx::PgPool;

pub use error::OrdersError;
pub use http::{ApiDoc, app};
pub use service::Orders;

sneakerstop_service::service_schema!("orders", uses & sneakerstop_idempotency::MIGRATOR);

/// What the orders handlers share.
#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    /// Pool on the `orders` schema.
    pub pool: PgPool,
    /// Verifies session tokens.
    pub keys: SessionKeys,
    /// How long a new order reserves its pair.
    pub reservation_ttl: Duration,
    /// Waits for listings the replica has not heard of yet.
    pub replica: sneakerstop_messaging::ReplicaWait,
    /// The most unpaid reservations one buyer may hold at once.
    pub max_holds: u32,
    /// Whether orders has heard every payment published so far (`None`: no broker, as in
    /// tests of the router alone), and how long a buyer at the cap waits for it.
    pub heard: Option<(sneakerstop_messaging::Heard, Duration)>,
}
