//! Finishes charges whose process died between calling the provider and recording what it
//! said — the "completer" of Stripe's idempotency write-up.
//!
//! `POST /api/payments` writes a `pending` attempt (with the card token) *before* it calls
//! the provider, with an idempotency key derived from the order and attempt. If the process
//! dies after that commit, the attempt stays `pending`: maybe the provider charged, maybe it
//! never heard of it. Every `interval` this task takes the attempts pending for longer than
//! `stale_after` (well past the provider timeout, so the request that made one has given up
//! or died) and asks the provider again with the **same** request and idempotency key. The
//! provider answers with the original outcome if the first call reached it (Stripe keeps
//! keys for 24 hours; the simulated provider gives the same outcome for the same token), or
//! performs the charge now if it never did. The outcome is recorded exactly as the request
//! would have recorded it ([`crate::settle`]): `succeeded` and the normal path (the order
//! completes), `refund_pending` if the order was cancelled meanwhile (then refunded),
//! `declined`, or — the provider refused the request — removed, never charged. A provider
//! that is still unavailable leaves the attempt pending for the next round.
//!
//! The buyer's `Idempotency-Key` for that request is a lease (see the idempotency crate):
//! once it lapses, a retry with the same key is answered from what recovery recorded.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::domain::Payment;
use crate::provider::{ChargeRequest, PaymentProvider};
use crate::settle::{self, Settled, Unknown};
use crate::store;

/// Attempts resolved per round.
const BATCH: i64 = 20;

/// Resolves stale attempts every `interval` until `cancel`.
pub async fn run(
    pool: PgPool,
    provider: Arc<dyn PaymentProvider>,
    currency: String,
    interval: Duration,
    stale_after: Duration,
    cancel: CancellationToken,
) {
    sneakerstop_messaging::every(
        interval,
        cancel,
        "resolved payment attempts left pending by a process that died",
        || resolve_stale(&pool, provider.as_ref(), &currency, stale_after),
    )
    .await;
}

/// Resolves the attempts pending for longer than `stale_after`; returns how many it settled.
pub async fn resolve_stale(
    pool: &PgPool,
    provider: &dyn PaymentProvider,
    currency: &str,
    stale_after: Duration,
) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await.context("begin")?;
    let stale = store::stale_attempts(&mut tx, stale_after, BATCH).await?;
    if stale.is_empty() {
        return Ok(0);
    }
    let round = sneakerstop_messaging::round_span("resolve stale payment attempts", "payments", stale.len());
    let ids: Vec<uuid::Uuid> = stale.iter().map(|(p, _)| p.id).collect();
    sneakerstop_telemetry::trace::link(&round, &store::traces(&mut tx, &ids).await?);
    resolve(tx, &stale, provider, currency).instrument(round).await
}

/// Asks the provider about each of `stale` (locked on `tx`) and records the answers.
async fn resolve(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    stale: &[(Payment, Option<String>)],
    provider: &dyn PaymentProvider,
    currency: &str,
) -> anyhow::Result<usize> {
    let _transaction = sneakerstop_db::transaction_span("resolving stale payment attempts");
    let mut settled = 0;
    for (payment, token) in stale {
        let Some(token) = token else {
            tracing::error!(payment_id = %payment.id, "pending attempt without its card token; cannot ask the provider");
            continue;
        };
        let request = ChargeRequest {
            amount_cents: payment.amount_cents,
            currency: currency.to_owned(),
            token: token.clone(),
            idempotency_key: crate::http::charge_key(payment.order_id, payment.attempt),
            order_id: payment.order_id,
            off_session: None,
        };
        let outcome = provider.charge(&request).instrument(crate::provider::provider_span("charge")).await;
        match settle::record(&mut tx, payment, outcome, Unknown::Keep, false).await? {
            Settled::Unresolved(error @ crate::provider::ProviderError::Unavailable(_)) => {
                tracing::warn!(payment_id = %payment.id, %error, "provider still unavailable; will ask again");
            }
            outcome => {
                tracing::warn!(payment_id = %payment.id, order_id = %payment.order_id, ?outcome, "recovered a payment attempt");
                metrics::counter!("payments_recovered_total").increment(1);
                settled += 1;
            }
        }
    }
    tx.commit().await.context("commit recovered attempts")?;
    Ok(settled)
}
