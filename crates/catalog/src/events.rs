//! What catalog does with the events it consumes: `orders.orders` moves a pair between
//! `available`, `reserved` and `sold`.
//!
//! - `order.created` → `reserved`, remembering the order (only if the pair is available);
//! - `order.cancelled` → `available` again, only if that very order held it;
//! - `order.completed` → `sold`, only if that order held it.
//!
//! Each change bumps the listing's version and publishes `sneaker.updated` through the
//! outbox, in the consumer's transaction. An event that does not apply (a stale or
//! foreign order) changes nothing and is logged.

use futures::future::BoxFuture;
use sneakerstop_events::orders::OrderEvent;
use sneakerstop_events::topics;
use sneakerstop_messaging::{Handler, IncomingEvent};
use sqlx::PgConnection;

use crate::store;

/// The catalog service's event handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatalogHandler;

impl Handler for CatalogHandler {
    fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a IncomingEvent) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if event.topic != topics::ORDERS {
                anyhow::bail!("catalog does not consume {}", event.topic);
            }
            let (sneaker, order, transition) = match event.decode::<OrderEvent>()? {
                OrderEvent::Created(e) => (e.sneaker_id, e.order_id, store::Hold::Reserve),
                OrderEvent::Cancelled(e) => (e.sneaker_id, e.order_id, store::Hold::Release),
                OrderEvent::Completed(e) => (e.sneaker_id, e.order_id, store::Hold::Sell),
            };
            match store::apply_hold(tx, sneaker, order, transition).await? {
                Some(row) => {
                    tracing::info!(sneaker_id = %sneaker, %order, status = %row.status, version = row.version, "pair status changed")
                }
                None => {
                    tracing::info!(sneaker_id = %sneaker, %order, ?transition, "order event does not apply to the pair; ignored")
                }
            }
            Ok(())
        })
    }
}
