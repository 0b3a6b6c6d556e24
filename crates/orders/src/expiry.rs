//! The expiry sweeper: the backstop for unpaid orders that payments never said lapsed.
//!
//! An order expires when payments says it lapsed (`payment.lapsed`, see `events`): payments
//! decides at the deadline, after announcing any charge it accepted in time, so a paid order
//! is never expired on a late event. If that word does not come — payments is down, or its
//! events are stuck — an order still expires `ORDER_EXPIRY_GRACE` after its deadline, here,
//! so that no pair is held for ever; a charge heard of after that is refunded.
//!
//! The deadline is `orders.expires_at` in the database, so it survives restarts: a sweeper
//! started later cancels whatever is due. Any number of instances may sweep at once (see
//! [`store::lock_due`]). The store finds and locks the due orders,
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

/// Sweeps every `interval` until `cancel`, expiring orders `grace` past their deadline.
pub async fn run(pool: PgPool, interval: Duration, grace: Duration, cancel: CancellationToken) {
    sneakerstop_messaging::every(interval, cancel, "expired unpaid orders", || sweep(&pool, grace)).await;
}

/// Cancels every order `grace` past its deadline now; returns how many.
pub async fn sweep(pool: &PgPool, grace: Duration) -> anyhow::Result<usize> {
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let mut total = 0;
    loop {
        let expired = expire_batch(pool, grace).await?;
        total += expired;
        if expired < usize::try_from(BATCH).unwrap_or(usize::MAX) {
            return Ok(total);
        }
    }
}

/// Expires up to [`BATCH`] lapsed orders, each with its event, in one transaction. A round
/// that found some is a trace of its own ([`sneakerstop_messaging::round_span`]); an idle
/// one leaves none.
async fn expire_batch(pool: &PgPool, grace: chrono::Duration) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await.context("begin an expiry round")?;
    let (due, now) = store::lock_due(&mut tx, BATCH, grace).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let round = sneakerstop_messaging::round_span("expire lapsed orders", "orders", due.len());
    let ids: Vec<uuid::Uuid> = due.iter().map(|o| o.id).collect();
    sneakerstop_telemetry::trace::link(&round, &store::traces(&mut tx, &ids).await?);
    async move {
        let _transaction = sneakerstop_db::transaction_span("expiring orders");
        for order in &due {
            let expired = order.expire(now, grace).with_context(|| format!("expire order {}", order.id))?;
            store::save(&mut tx, &expired).await?;
        }
        tx.commit().await.context("commit an expiry round")?;
        for order in &due {
            tracing::warn!(
                order_id = %order.id, sneaker_id = %order.sneaker_id,
                "payments never said this reservation lapsed; expired after the grace"
            );
        }
        metrics::counter!("orders_cancelled_total", "reason" => "expired").increment(due.len() as u64);
        metrics::counter!("orders_expired_unheard_total").increment(due.len() as u64);
        Ok(due.len())
    }
    .instrument(round)
    .await
}
