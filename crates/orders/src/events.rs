//! What orders does with the events it consumes.
//!
//! `catalog.sneakers` → the sneaker replica, applied by version (older or repeated events
//! change nothing). Payments' `payment.succeeded` completes orders from the payments issue
//! on; `store::complete` already implements that transition.

use futures::future::BoxFuture;
use sneakerstop_events::catalog::SneakerEvent;
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
                other => anyhow::bail!("orders does not consume {other}"),
            }
        })
    }
}
