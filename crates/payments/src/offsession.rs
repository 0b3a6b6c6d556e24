//! Charges the orders of the market with their buyers' saved payment methods.
//!
//! When `order.created` names a match, the consumer writes a `pending` off-session attempt
//! (attempt 1 of the order, whose id is the match's, so the provider's idempotency key is
//! one per match) with the buyer's current saved method — or, without one, records it
//! declined at once. This task takes the pending off-session attempts every `interval`,
//! charges each with the same key however often it is asked, and records the outcome as
//! any charge is recorded ([`crate::settle`]): `payment.succeeded` (the order completes, the
//! pair is sold) or `payment.declined` (orders cancels the order, the pair goes back on the
//! market, the bid is closed). A provider that is unavailable leaves the attempt for the
//! next round; one that refuses the request (a method it does not know) is a decline, since
//! no retry can charge it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::provider::{ChargeRequest, OffSession, PaymentProvider, ProviderError, provider_span};
use crate::settle::{self, Settled, Unknown};
use crate::store;

/// Attempts charged per round.
const BATCH: i64 = 50;

/// Charges due off-session attempts every `interval` until `cancel`.
pub async fn run(
    pool: PgPool,
    provider: Arc<dyn PaymentProvider>,
    currency: String,
    interval: Duration,
    cancel: CancellationToken,
) {
    sneakerstop_messaging::every(interval, cancel, "charged orders of the market with saved methods", || {
        charge_due(&pool, provider.as_ref(), &currency)
    })
    .await;
}

/// Charges the due off-session attempts; returns how many it settled.
pub async fn charge_due(pool: &PgPool, provider: &dyn PaymentProvider, currency: &str) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await.context("begin")?;
    let due = store::due_off_session(&mut tx, BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let round = sneakerstop_messaging::round_span("charge orders of the market", "payments", due.len());
    let ids: Vec<uuid::Uuid> = due.iter().map(|(p, ..)| p.id).collect();
    sneakerstop_telemetry::trace::link(&round, &store::traces(&mut tx, &ids).await?);
    async move {
        let _transaction = sneakerstop_db::transaction_span("charging orders of the market");
        let mut settled = 0;
        for (payment, method, customer) in &due {
            let request = ChargeRequest {
                amount_cents: payment.amount_cents,
                currency: currency.to_owned(),
                token: method.clone(),
                idempotency_key: crate::http::charge_key(payment.order_id, payment.attempt),
                order_id: payment.order_id,
                off_session: Some(OffSession { customer: customer.clone() }),
            };
            let outcome = match provider.charge(&request).instrument(provider_span("charge")).await {
                Err(ProviderError::Invalid(reason)) => Err(ProviderError::Declined(reason)),
                other => other,
            };
            match settle::record(&mut tx, payment, outcome, Unknown::Keep, true).await? {
                Settled::Unresolved(error) => {
                    tracing::warn!(payment_id = %payment.id, %error, "provider unavailable; will charge again");
                }
                outcome => {
                    tracing::info!(payment_id = %payment.id, order_id = %payment.order_id, ?outcome, "charged off-session");
                    metrics::counter!("payments_off_session_total").increment(1);
                    settled += 1;
                }
            }
        }
        tx.commit().await.context("commit off-session charges")?;
        Ok(settled)
    }
    .instrument(round)
    .await
}
