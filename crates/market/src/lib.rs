//! Market service: a book of bids and asks per product and size, matched the moment they
//! cross.
//!
//! - `domain` — the rules: placing, trading in price-time priority at the resting price,
//!   cancelling, expiring, and what a match's end does to its bid.
//! - `matching` — one book in memory: price-time priority, trades, no self-trade.
//! - `owners` — which instance owns which books (shards, leases, fencing epochs).
//! - `engine` — the writer of the books this instance owns: commands in batches, one
//!   transaction per batch, answers after its commit.
//! - `batch` — what a batch changed, written in one statement at its end.
//! - `store` — SQL for bids, matches, sales and the replicas (products, asks, order prices,
//!   payment methods); events go to the outbox in the same transaction.
//! - `events` — applying `catalog.products`, `catalog.sneakers`, `orders.orders` and
//!   `payments.methods`.
//! - `expiry` — the sweeper that expires bids whose time ran out.
//! - `live` — market data from memory until a book changes, and live as Server-Sent Events.
//! - `http/` — `/api/bids` and `/api/products/{id}/market|sales|market/stream`.
//!
//! Publishes `bid.placed`, `bid.updated` and `match.made` on `market.bids` (keyed by
//! product); orders turns each match into the bidder's order. See docs/market.md.

mod batch;
pub mod domain;
pub mod engine;
mod error;
pub mod events;
pub mod expiry;
pub mod http;
pub mod live;
pub mod matching;
pub mod owners;
pub mod service;
pub mod store;

use axum::extract::FromRef;
use sneakerstop_auth::SessionKeys;
use sqlx::PgPool;

pub use error::MarketError;
pub use http::{ApiDoc, app};
pub use service::Market;

sneakerstop_service::service_schema!("market", uses & sneakerstop_idempotency::MIGRATOR);

/// What the market handlers share.
#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    /// Pool on the `market` schema.
    pub pool: PgPool,
    /// Verifies session tokens.
    pub keys: SessionKeys,
    /// Waits for products and payment methods the replicas have not heard of yet.
    pub replica: sneakerstop_messaging::ReplicaWait,
    /// Market data: the latest read of each product, and live streams.
    pub markets: live::Markets,
    /// This instance's writer of the books it owns ([`engine::Engine`]).
    pub engine: engine::Engine,
    /// Sends requests for books another instance owns to it.
    pub forward: reqwest::Client,
    /// The most open bids one buyer may have on one book.
    pub max_open_bids: i64,
}
