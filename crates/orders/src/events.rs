//! What orders does with the events it consumes.
//!
//! - `catalog.sneakers` → the sneaker replica, applied by version (older or repeated events
//!   change nothing);
//! - `payments.payments` → `payment.succeeded` completes a `created` order
//!   (`order.completed`). A payment for an order that was cancelled meanwhile leaves it
//!   cancelled: payments refunds that charge when it sees the cancellation.

use futures::future::BoxFuture;
use sneakerstop_events::catalog::SneakerEvent;
use sneakerstop_events::payments::PaymentEvent;
use sneakerstop_events::topics;
use sneakerstop_messaging::{Handler, IncomingEvent};
use sqlx::PgConnection;

use crate::{OrdersError, store};

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
                    PaymentEvent::Succeeded(paid) => match store::complete(tx, paid.order_id, paid.payment_id).await {
                        Ok(_) => Ok(()),
                        Err(OrdersError::Transition(refused)) => {
                            tracing::warn!(order_id = %paid.order_id, %refused, "payment for an order that cannot complete; payments refunds it");
                            Ok(())
                        }
                        Err(OrdersError::OrderNotFound) => {
                            tracing::warn!(order_id = %paid.order_id, "payment for an unknown order ignored");
                            Ok(())
                        }
                        Err(other) => Err(anyhow::anyhow!("complete order {}: {other}", paid.order_id)),
                    },
                    PaymentEvent::Refunded(_) => Ok(()),
                },
                other => anyhow::bail!("orders does not consume {other}"),
            }
        })
    }
}
