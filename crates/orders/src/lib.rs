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

use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::FromRef;
use sneakerstop_auth::SessionKeys;
use sqlx::PgPool;

pub use error::OrdersError;
pub use http::{ApiDoc, app};
pub use service::Orders;

/// The PostgreSQL schema that holds this service's tables.
pub const SCHEMA: &str = "orders";

/// `ce_source` of the events this service publishes.
pub const SOURCE: &str = "/sneakerstop/orders";

/// This service's migrations, embedded in the binary.
pub static MIGRATOR: LazyLock<sqlx::migrate::Migrator> =
    LazyLock::new(|| sneakerstop_db::shared_schema(sqlx::migrate!("./migrations")));

/// Everything this service's schema needs, in order: its own migrations, then the shared ones.
pub fn migrations() -> Vec<&'static sqlx::migrate::Migrator> {
    sneakerstop_service::with_shared_migrations(&[&MIGRATOR, &sneakerstop_idempotency::MIGRATOR])
}

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
}
