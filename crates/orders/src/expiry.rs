//! The expiry sweeper: unpaid orders become `cancelled` (reason `expired`) once their
//! reservation lapses.
//!
//! The deadline is `orders.expires_at` in the database, so it survives restarts: a sweeper
//! started later cancels whatever lapsed while no process ran. Any number of instances may
//! sweep at once (see [`store::lock_due`]).
//!
//! This is where "an order expires" happens: the store finds and locks the lapsed orders,
//! [`crate::domain::Order::expire`] decides each one's new state and `order.cancelled`, the
//! store writes both, and the transaction commits them together; catalog then releases the
//! pair and payments refunds a charge that raced the expiry (docs/architecture.md).

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::store;

/// Orders cancelled per transaction.
const BATCH: i64 = 100;

/// Sweeps every `interval` until `cancel`.
pub async fn run(pool: PgPool, interval: Duration, cancel: CancellationToken) {
    sneakerstop_messaging::every(interval, cancel, "expired unpaid orders", || sweep(&pool)).await;
}

/// Cancels every lapsed order now; returns how many.
pub async fn sweep(pool: &PgPool) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let expired = expire_batch(pool).await?;
        total += expired;
        if expired < usize::try_from(BATCH).unwrap_or(usize::MAX) {
            return Ok(total);
        }
    }
}

/// Expires up to [`BATCH`] lapsed orders, each with its event, in one transaction. A round
/// that found some is a trace of its own ([`sneakerstop_messaging::round_span`]); an idle
/// one leaves none.
async fn expire_batch(pool: &PgPool) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await.context("begin an expiry round")?;
    let (due, now) = store::lock_due(&mut tx, BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let round = sneakerstop_messaging::round_span("expire lapsed orders", "orders", due.len());
    let ids: Vec<uuid::Uuid> = due.iter().map(|o| o.id).collect();
    sneakerstop_telemetry::trace::link(&round, &store::traces(&mut tx, &ids).await?);
    async move {
        let _transaction = sneakerstop_db::transaction_span("expiring orders");
        for order in &due {
            let expired = order.expire(now).with_context(|| format!("expire order {}", order.id))?;
            store::save(&mut tx, &expired).await?;
        }
        tx.commit().await.context("commit an expiry round")?;
        for order in &due {
            tracing::info!(order_id = %order.id, sneaker_id = %order.sneaker_id, "reservation lapsed; order expired");
        }
        metrics::counter!("orders_cancelled_total", "reason" => "expired").increment(due.len() as u64);
        Ok(due.len())
    }
    .instrument(round)
    .await
}
