//! Turning what the provider said about an attempt into the payment's next state — the one
//! place that does it, used by `POST /api/payments` right after its call and by the
//! recovery task for attempts whose process died before recording anything.
//!
//! The domain decides each transition from `pending`, and the store writes it only if the
//! attempt is still pending, so two recorders of one attempt — a slow request and the
//! recovery task — cannot both record it: the second finds [`Settled::AlreadySettled`].

use chrono::Utc;
use sqlx::PgConnection;

use crate::domain::{Payment, PaymentStatus};
use crate::provider::{Charge, ProviderError};
use crate::store;

/// What to do with an attempt whose outcome the provider did not give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Forget the attempt (the buyer is told to retry; the retry reuses its idempotency key).
    Abandon,
    /// Keep it pending, to be asked about again (the recovery task).
    Keep,
}

/// What recording an outcome did.
#[derive(Debug)]
pub enum Settled {
    /// Charged: `succeeded` with `payment.succeeded` written, or `refund_pending` if the
    /// order was cancelled meanwhile (the refund task takes it from there).
    Charged(Payment),
    /// Declined, with the provider's reason.
    Declined(String),
    /// The provider refused the request (nothing was charged, the attempt is gone) or gave
    /// no outcome (the attempt is gone or kept, as [`Unknown`] said).
    Unresolved(ProviderError),
    /// The attempt was no longer pending: someone else recorded it first.
    AlreadySettled,
}

/// Records `outcome` for `payment` (as it was when the provider was asked) on `tx`. A
/// decline of a charge made without the buyer (`off_session`) is announced.
#[tracing::instrument(skip_all, fields(payment_id = %payment.id, order_id = %payment.order_id), err)]
pub async fn record(
    tx: &mut PgConnection,
    payment: &Payment,
    outcome: Result<Charge, ProviderError>,
    unknown: Unknown,
    off_session: bool,
) -> anyhow::Result<Settled> {
    if payment.status != PaymentStatus::Pending {
        return Ok(Settled::AlreadySettled);
    }
    match outcome {
        Ok(charge) => {
            // Locking the replica row orders us with the consumer applying order.cancelled.
            let order = store::find_order(tx, payment.order_id, true).await?;
            let charged = payment.record_charge(&charge.provider_ref, order.as_ref(), Utc::now())?;
            if !store::save(tx, &charged).await? {
                return Ok(Settled::AlreadySettled);
            }
            let row = charged.payment;
            metrics::counter!("payments_succeeded_total").increment(1);
            metrics::counter!("payments_charged_cents_total").increment(u64::try_from(row.amount_cents).unwrap_or(0));
            if row.status == PaymentStatus::RefundPending {
                tracing::warn!("charged an order cancelled meanwhile; refunding");
            } else {
                tracing::info!("payment succeeded");
            }
            Ok(Settled::Charged(row))
        }
        Err(ProviderError::Declined(reason)) => {
            if !store::save(tx, &payment.record_decline(&reason, off_session, Utc::now())?).await? {
                return Ok(Settled::AlreadySettled);
            }
            metrics::counter!("payments_declined_total").increment(1);
            Ok(Settled::Declined(reason))
        }
        Err(error @ ProviderError::Invalid(_)) => {
            // The provider refused the request itself: nothing was charged.
            store::abandon(tx, payment).await?;
            Ok(Settled::Unresolved(error))
        }
        Err(error @ ProviderError::Unavailable(_)) => {
            metrics::counter!("payments_provider_errors_total").increment(1);
            if unknown == Unknown::Abandon {
                store::abandon(tx, payment).await?;
            }
            Ok(Settled::Unresolved(error))
        }
    }
}
