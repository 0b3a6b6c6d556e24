//! Refunds charges whose order was cancelled, through the provider.
//!
//! A payment marked `refund_pending` (by the order-cancelled handler, or by a charge that
//! finished after its order was cancelled) is refunded here with the idempotency key
//! `refund-<payment id>`, then recorded as `refunded` with `payment.refunded`. The work list
//! is the database, so a refund survives restarts, and a failed refund is retried on the
//! next round. Rows are locked `FOR UPDATE SKIP LOCKED` for the round, so several instances
//! never refund one payment at once (and the provider's idempotency makes even that safe).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::domain::Payment;
use crate::provider::{PaymentProvider, provider_span};
use crate::store;

/// Payments refunded per round.
const BATCH: i64 = 20;

/// Refunds every `interval` until `cancel`.
pub async fn run(pool: PgPool, provider: Arc<dyn PaymentProvider>, interval: Duration, cancel: CancellationToken) {
    sneakerstop_messaging::every(interval, cancel, "refunded payments of cancelled orders", || {
        process_due(&pool, provider.as_ref())
    })
    .await;
}

/// Refunds what is due now; returns how many were refunded.
pub async fn process_due(pool: &PgPool, provider: &dyn PaymentProvider) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await.context("begin a refund round")?;
    let due = store::due_refunds(&mut tx, BATCH).await?;
    let done = if due.is_empty() {
        0
    } else {
        let round = sneakerstop_messaging::round_span("refund cancelled payments", "payments", due.len());
        let ids: Vec<uuid::Uuid> = due.iter().map(|p| p.id).collect();
        sneakerstop_telemetry::trace::link(&round, &store::traces(&mut tx, &ids).await?);
        refund(tx, &due, provider).instrument(round).await?
    };
    #[allow(clippy::cast_precision_loss, reason = "a count far below 2^52")]
    metrics::gauge!("payments_refunds_pending").set(store::count_refunds_pending(pool).await? as f64);
    Ok(done)
}

/// Refunds `due` (locked on `tx`) and commits; returns how many were refunded.
async fn refund(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    due: &[Payment],
    provider: &dyn PaymentProvider,
) -> anyhow::Result<usize> {
    let _transaction = sneakerstop_db::transaction_span("refunding payments");
    let mut done = 0;
    for payment in due {
        let Some(charge) = payment.provider_ref.as_deref() else {
            tracing::error!(payment_id = %payment.id, "payment marked for refund has no charge reference");
            continue;
        };
        match provider.refund(charge, &format!("refund-{}", payment.id)).instrument(provider_span("refund")).await {
            Ok(refund) => {
                let refunded = payment.record_refund(&refund.refund_ref, chrono::Utc::now())?;
                anyhow::ensure!(
                    store::save(&mut tx, &refunded).await?,
                    "payment {} changed under its lock",
                    payment.id
                );
                metrics::counter!("payments_refunded_total").increment(1);
                metrics::counter!("payments_refunded_cents_total")
                    .increment(u64::try_from(payment.amount_cents).unwrap_or(0));
                done += 1;
            }
            Err(error) => tracing::warn!(payment_id = %payment.id, %error, "refund failed; will retry"),
        }
    }
    tx.commit().await.context("commit refunds")?;
    Ok(done)
}
