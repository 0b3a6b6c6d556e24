//! The ask sweeper: available asks become `expired` (`sneaker.updated`) once their time has
//! run out, and leave their book for good.
//!
//! Like the other sweepers, the deadline is in the database (`sneakers.expires_at`), so a
//! sweeper started later expires whatever ran out while no process ran, and any number may
//! sweep at once ([`store::lock_expired`]). The market and orders refuse an ask past its
//! time before the sweep comes, from the `expiresAt` its events carry.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::store;

/// Asks expired per transaction.
const BATCH: i64 = 200;

/// Sweeps every `interval` until `cancel`. (The read cache hears of what a sweep changed
/// from the outbox's notification, as of any change.)
pub async fn run(pool: PgPool, interval: Duration, cancel: CancellationToken) {
    sneakerstop_messaging::every(interval, cancel, "expired asks", || sweep(&pool)).await;
}

/// Expires every ask whose time has run out; returns how many.
pub async fn sweep(pool: &PgPool) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await.context("begin an ask expiry round")?;
        let (due, now) = store::lock_expired(&mut tx, BATCH).await?;
        if due.is_empty() {
            return Ok(total);
        }
        let round = sneakerstop_messaging::round_span("expire asks", "catalog", due.len());
        let expired = async {
            let _transaction = sneakerstop_db::transaction_span("expiring asks");
            for ask in &due {
                let expired = ask.expire(now).with_context(|| format!("expire ask {}", ask.id))?;
                store::save(&mut tx, &expired).await?;
            }
            tx.commit().await.context("commit an ask expiry round")?;
            anyhow::Ok(due.len())
        }
        .instrument(round)
        .await?;
        metrics::counter!("catalog_asks_expired_total").increment(expired as u64);
        total += expired;
        if expired < usize::try_from(BATCH).unwrap_or(usize::MAX) {
            return Ok(total);
        }
    }
}
