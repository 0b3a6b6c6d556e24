//! Closes the payment window of orders whose reservation lapsed unpaid.
//!
//! Paid in time means sold: orders expires an order only when payments says it lapsed
//! (`payment.lapsed`), not by its own clock, because a charge accepted before the deadline
//! may reach orders late (a consumer recovering from a crash, a broker outage). Payments is
//! where a charge is accepted, so it decides: once an order's deadline has passed with no
//! charge accepted or under way, this task records the lapse and publishes it, on the same
//! partition as any `payment.succeeded` of the order (both keyed by the order), after it.
//! From then on no charge of the order starts ([`crate::domain::Payment::begin`]). A charge
//! under way at the deadline is left to finish: it completes the order, or is declined and
//! the order lapses at the next round.
//!
//! Rows are locked `FOR UPDATE SKIP LOCKED`, so several instances may run this at once, and
//! a charge starts only under the same row lock, so none slips between the look and the
//! lapse. The deadlines are in the database, so a restart loses nothing.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::store;

/// Orders closed per transaction.
const BATCH: i64 = 100;

/// Closes lapsed orders every `interval` until `cancel`.
pub async fn run(pool: PgPool, interval: Duration, cancel: CancellationToken) {
    sneakerstop_messaging::every(interval, cancel, "closed the payment window of lapsed orders", || close_due(&pool))
        .await;
}

/// Closes every order due now; returns how many.
pub async fn close_due(pool: &PgPool) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let closed = close_batch(pool).await?;
        total += closed;
        if closed < usize::try_from(BATCH).unwrap_or(usize::MAX) {
            return Ok(total);
        }
    }
}

/// Closes up to [`BATCH`] due orders, each with its `payment.lapsed`, in one transaction. A
/// round that found some is a trace of its own ([`sneakerstop_messaging::round_span`]), which
/// orders' and catalog's handling of the events continue; an idle one leaves none.
async fn close_batch(pool: &PgPool) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await.context("begin a lapse round")?;
    let (due, now) = store::lock_lapsed(&mut tx, BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let round = sneakerstop_messaging::round_span("close lapsed payment windows", "payments", due.len());
    async move {
        let _transaction = sneakerstop_db::transaction_span("closing lapsed payment windows");
        for order in &due {
            let (lapsed, event) = order.lapse(now).with_context(|| format!("lapse order {}", order.id))?;
            store::save_lapse(&mut tx, &lapsed, &event).await?;
        }
        tx.commit().await.context("commit a lapse round")?;
        for order in &due {
            tracing::info!(order_id = %order.id, "reservation lapsed unpaid; payment window closed");
        }
        metrics::counter!("payments_lapsed_total").increment(due.len() as u64);
        Ok(due.len())
    }
    .instrument(round)
    .await
}
