//! Turning what the provider said about an attempt into the payment's next state — the one
//! place that does it, used by `POST /api/payments` right after its call and by the
//! recovery task for attempts whose process died before recording anything.
//!
//! Every transition starts from `pending` (the statements check it), so two recorders of
//! one attempt — a slow request and the recovery task — cannot both record it: the second
//! finds [`Settled::AlreadySettled`].

use sqlx::PgConnection;

use crate::provider::{Charge, ProviderError};
use crate::store::{self, PaymentRow};

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
    Charged(PaymentRow),
    /// Declined, with the provider's reason.
    Declined(String),
    /// The provider refused the request (nothing was charged, the attempt is gone) or gave
    /// no outcome (the attempt is gone or kept, as [`Unknown`] said).
    Unresolved(ProviderError),
    /// The attempt was no longer pending: someone else recorded it first.
    AlreadySettled,
}

/// Records `outcome` for `payment` on `tx`.
pub async fn record(
    tx: &mut PgConnection,
    payment: &PaymentRow,
    outcome: Result<Charge, ProviderError>,
    unknown: Unknown,
) -> anyhow::Result<Settled> {
    match outcome {
        Ok(charge) => {
            // Locking the replica row orders us with the consumer applying order.cancelled.
            let order = store::find_order(tx, payment.order_id, true).await?;
            let cancelled = order.is_some_and(|o| o.status == "cancelled");
            let Some(row) = store::charged(tx, payment, &charge.provider_ref, cancelled).await? else {
                return Ok(Settled::AlreadySettled);
            };
            metrics::counter!("payments_succeeded_total").increment(1);
            metrics::counter!("payments_charged_cents_total").increment(u64::try_from(row.amount_cents).unwrap_or(0));
            if cancelled {
                tracing::warn!(order_id = %row.order_id, payment_id = %row.id, "charged an order cancelled meanwhile; refunding");
            } else {
                tracing::info!(order_id = %row.order_id, payment_id = %row.id, "payment succeeded");
            }
            Ok(Settled::Charged(row))
        }
        Err(ProviderError::Declined(reason)) => {
            if !store::declined(tx, payment, &reason).await? {
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
