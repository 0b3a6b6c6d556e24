//! What payments does with `orders.orders`.
//!
//! - `order.created` → the order enters the replica as payable; an order of the market (it
//!   names a match) gets its off-session attempt with the buyer's saved method, which the
//!   off-session task charges (see `offsession`), or is declined at once without one;
//! - `order.cancelled` → the replica says cancelled (no new charge is accepted), and if a
//!   charge already went through — a payment that raced the expiry or the buyer's cancel —
//!   it is marked for refund; the refund task refunds it and publishes `payment.refunded`;
//! - `order.completed` → the replica says complete.
//!
//! Updates apply by the order's version, so an old or repeated event changes nothing.

use futures::future::BoxFuture;
use sneakerstop_events::orders::OrderEvent;
use sneakerstop_events::topics;
use sneakerstop_messaging::{Handler, IncomingEvent};
use sqlx::PgConnection;

use crate::domain::{OrderReplica, OrderState, Payment, Refusal};
use crate::store;

/// The payments service's event handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaymentsHandler;

impl Handler for PaymentsHandler {
    fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a IncomingEvent) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if event.topic != topics::ORDERS {
                anyhow::bail!("payments does not consume {}", event.topic);
            }
            let version = event.envelope.aggregate_version;
            match event.decode::<OrderEvent>()? {
                OrderEvent::Created(created) => {
                    let order = OrderReplica {
                        id: created.order_id,
                        buyer_id: created.buyer_id,
                        amount_cents: created.price_cents,
                        status: OrderState::Created,
                        version,
                        expires_at: Some(created.expires_at),
                        lapsed_at: None,
                    };
                    let new = store::order_created(tx, &order, created.match_id).await?;
                    if new && created.match_id.is_some() {
                        begin_off_session(tx, &order).await?;
                    }
                }
                OrderEvent::Cancelled(cancelled) => {
                    store::order_status(tx, cancelled.order_id, OrderState::Cancelled, version).await?;
                    if let Some(charged) = store::lock_succeeded(tx, cancelled.order_id).await? {
                        store::save(tx, &charged.order_cancelled(chrono::Utc::now())?).await?;
                        tracing::warn!(order_id = %cancelled.order_id, "order cancelled after it was charged; refunding");
                    }
                }
                OrderEvent::Completed(completed) => {
                    store::order_status(tx, completed.order_id, OrderState::Complete, version).await?;
                }
                // A match that never became an order: there is nothing to pay.
                OrderEvent::Refused(_) => {}
            }
            Ok(())
        })
    }
}

/// Writes the attempt that charges an order of the market without its buyer: pending, for
/// the off-session task, or declined at once (and announced) when the buyer has no saved
/// method any more.
#[tracing::instrument(skip_all, fields(order_id = %order.id), err)]
async fn begin_off_session(tx: &mut PgConnection, order: &OrderReplica) -> anyhow::Result<()> {
    let payment = match Payment::begin_off_session(uuid::Uuid::now_v7(), order, chrono::Utc::now()) {
        Ok(payment) => payment,
        // Heard of only after its deadline (payments was far behind): too late to charge;
        // the lapse task closes it and orders expires it.
        Err(Refusal::Lapsed) => {
            tracing::warn!("order of the market heard of after its deadline; not charged");
            return Ok(());
        }
        Err(refused) => return Err(refused.into()),
    };
    match store::current_method(tx, order.buyer_id).await? {
        Some(method) => {
            if !store::insert_off_session(tx, &payment, &method).await? {
                tracing::info!("the order has a live payment already; not charged off-session");
            }
        }
        None => {
            if store::insert(tx, &payment, "").await? {
                let declined = payment.record_decline("no saved payment method", true, chrono::Utc::now())?;
                store::save(tx, &declined).await?;
                tracing::warn!("order of the market without a saved payment method; declined");
            }
        }
    }
    Ok(())
}
