//! The bid sweeper: open bids become `expired` (`bid.updated`) once their time has run out.
//!
//! A bid is off the book the moment it expires whether or not it has been swept (matching
//! only reads bids whose `expires_at` is ahead); the sweeper makes the state and the event
//! say so. The deadline is in the database, so a sweeper started later expires whatever ran
//! out while no process ran; any number may sweep at once ([`store::lock_expired`]).

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batch::Writes;
use crate::store;

/// Bids expired per transaction.
const BATCH: i64 = 200;

/// Sweeps every `interval` until `cancel`.
pub async fn run(pool: PgPool, interval: Duration, cancel: CancellationToken) {
    sneakerstop_messaging::every(interval, cancel, "expired bids", || sweep(&pool)).await;
}

/// Expires every bid whose time has run out; returns how many.
pub async fn sweep(pool: &PgPool) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await.context("begin a bid expiry round")?;
        let (due, now) = store::lock_expired(&mut tx, BATCH).await?;
        if due.is_empty() {
            return Ok(total);
        }
        let round = sneakerstop_messaging::round_span("expire bids", "market", due.len());
        let expired = async {
            let _transaction = sneakerstop_db::transaction_span("expiring bids");
            let mut writes = Writes::default();
            for bid in &due {
                writes.change(&bid.expire(now).with_context(|| format!("expire bid {}", bid.id))?)?;
            }
            writes.write(&mut tx).await?;
            tx.commit().await.context("commit a bid expiry round")?;
            anyhow::Ok(due.len())
        }
        .instrument(round)
        .await?;
        metrics::counter!("market_bids_expired_total").increment(expired as u64);
        total += expired;
        if expired < usize::try_from(BATCH).unwrap_or(usize::MAX) {
            return Ok(total);
        }
    }
}
