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

use chrono::{SubsecRound, Utc};
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
            apply(tx, &event.decode::<OrderEvent>()?).await
        })
    }
}

/// Moves the pair an order event names, if the event applies to it.
#[tracing::instrument(skip_all, fields(event = ?order_event), err)]
async fn apply(tx: &mut PgConnection, order_event: &OrderEvent) -> anyhow::Result<()> {
    let (sneaker, order) = match order_event {
        OrderEvent::Created(e) => (e.sneaker_id, e.order_id),
        OrderEvent::Cancelled(e) => (e.sneaker_id, e.order_id),
        OrderEvent::Completed(e) => (e.sneaker_id, e.order_id),
        // A match that never became an order reserved nothing.
        OrderEvent::Refused(_) => return Ok(()),
    };
    let Some(pair) = store::lock(tx, sneaker).await? else {
        tracing::warn!(sneaker_id = %sneaker, %order, "order for an unknown pair ignored");
        return Ok(());
    };
    let now = Utc::now().trunc_subsecs(6);
    let decided = match order_event {
        OrderEvent::Created(_) => pair.reserve(order, now),
        OrderEvent::Cancelled(_) => pair.release(order, now),
        OrderEvent::Completed(_) => pair.sell(order, now),
        OrderEvent::Refused(_) => return Ok(()),
    };
    match decided {
        Ok(changed) => {
            store::save(tx, &changed).await?;
            let (status, version) = (changed.sneaker.status.as_str(), changed.sneaker.version);
            tracing::info!(sneaker_id = %sneaker, %order, status, version, "pair status changed");
        }
        Err(refused) => tracing::info!(sneaker_id = %sneaker, %order, %refused, "order event does not apply; ignored"),
    }
    Ok(())
}
