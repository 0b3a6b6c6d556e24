//! What orders does with the events it consumes.
//!
//! - `catalog.sneakers` → the sneaker replica, applied by version (older or repeated events
//!   change nothing);
//! - `payments.payments` → `payment.succeeded` completes a `created` order
//!   (`order.completed`). A payment for an order that was cancelled meanwhile leaves it
//!   cancelled: payments refunds that charge when it sees the cancellation.

use futures::future::BoxFuture;
use sneakerstop_events::catalog::SneakerEvent;
use sneakerstop_events::payments::{PaymentEvent, PaymentSucceeded};
use sneakerstop_events::topics;
use sneakerstop_messaging::{Handler, IncomingEvent};
use sqlx::PgConnection;

use crate::store;

/// The orders service's event handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrdersHandler;

impl Handler for OrdersHandler {
    fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a IncomingEvent) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            match event.topic.as_str() {
                topics::SNEAKERS => {
                    let (SneakerEvent::Listed(sneaker) | SneakerEvent::Updated(sneaker)) =
                        event.decode::<SneakerEvent>()?;
                    if !store::apply_sneaker(tx, &sneaker).await? {
                        tracing::debug!(sneaker_id = %sneaker.sneaker_id, version = sneaker.version, "stale sneaker event ignored");
                    }
                    Ok(())
                }
                topics::PAYMENTS => match event.decode::<PaymentEvent>()? {
                    PaymentEvent::Succeeded(paid) => complete(tx, &paid).await,
                    PaymentEvent::Refunded(_) => Ok(()),
                },
                other => anyhow::bail!("orders does not consume {other}"),
            }
        })
    }
}

/// A payment succeeded: its order completes, if it still can.
#[tracing::instrument(skip_all, fields(order_id = %paid.order_id, payment_id = %paid.payment_id), err)]
async fn complete(tx: &mut PgConnection, paid: &PaymentSucceeded) -> anyhow::Result<()> {
    let Some(order) = store::lock(tx, paid.order_id).await? else {
        tracing::warn!("payment for an unknown order ignored");
        return Ok(());
    };
    match order.complete(paid.payment_id, chrono::Utc::now()) {
        Ok(completed) => {
            store::save(tx, &completed).await?;
            metrics::counter!("orders_completed_total").increment(1);
            Ok(())
        }
        Err(refused) => {
            tracing::warn!(%refused, "payment for an order that cannot complete; payments refunds it");
            Ok(())
        }
    }
}
