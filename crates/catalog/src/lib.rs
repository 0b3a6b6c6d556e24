//! Catalog service (the original's sneaker-service): listings, search, status.
//!
//! - `http/` — `/api/sneakers` endpoints and their OpenAPI description.
//! - `domain` — listing values that validate on construction, and the list query.
//! - `store` — the SQL for `sneakers`, each change writing its event to the outbox in the
//!   same transaction.
//!
//! - `events` — reacting to `orders.orders`: reserve, release, sell.
//! - `cache` — the read cache in front of browsing, invalidated by committed changes.
//! - `expiry` — the sweeper that expires asks whose time ran out.
//!
//! Publishes `sneaker.listed` and `sneaker.updated` on `catalog.sneakers`; consumes
//! `orders.orders`.

pub mod cache;
pub mod domain;
mod error;
pub mod events;
pub mod expiry;
pub mod http;
pub mod service;
mod store;

use axum::extract::FromRef;
use sneakerstop_auth::SessionKeys;
use sqlx::PgPool;

use cache::ReadCache;
pub use error::CatalogError;
pub use http::{ApiDoc, app};
pub use service::Catalog;

sneakerstop_service::service_schema!("catalog", uses & sneakerstop_idempotency::MIGRATOR);

/// What the catalog handlers share.
#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    /// Pool on the `catalog` schema.
    pub pool: PgPool,
    /// Verifies session tokens.
    pub keys: SessionKeys,
    /// Cached pages and listings; see [`cache`].
    pub cache: ReadCache,
}

impl AppState {
    /// State without a read cache: every request reads PostgreSQL.
    pub fn uncached(pool: PgPool, keys: SessionKeys) -> Self {
        Self { pool, keys, cache: ReadCache::disabled() }
    }
}

/// The channel on which committed catalog changes are announced (`sneakerstop_messaging::announce`).
pub fn change_channel() -> String {
    sneakerstop_messaging::Relay::channel(SCHEMA)
}
