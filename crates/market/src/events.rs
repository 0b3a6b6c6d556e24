//! What the market does with the events it consumes.
//!
//! - `catalog.products` → the product replica (which sizes have a book);
//! - `catalog.sneakers` → the ask replica, by version, for listings that name a product;
//!   every change of an ask is left for its book's writer, which puts it on the book (and
//!   trades it with the best bid it crosses) or takes it off;
//! - `orders.orders` → who holds each ask (an order holds its pair from `order.created` until
//!   it ends), order prices, and sales (`order.completed` of an ask); for an order of the
//!   market (its id is a match's), the match's outcome: filled, or — refused, lapsed,
//!   declined, cancelled by its buyer — ended, and its bid back on the book (left for the
//!   writer) or closed;
//! - `payments.methods` → who has a saved payment method.
//!
//! Nothing here trades: an order that joins, leaves or changes on its book (an ask listed,
//! repriced, held or free again; a bid back after its match ended) is recorded in
//! `pending_trades` for the book's writer ([`crate::engine`]), the only one to change the
//! book, which takes it once this transaction has committed — on this instance or on the
//! one that owns the book. The batch changes asks that the writer's matches take, so it
//! locks those rows first, in one order ([`store::lock_asks`]).

use chrono::Utc;
use futures::future::BoxFuture;
use sneakerstop_events::catalog::{ProductEvent, SneakerEvent};
use sneakerstop_events::orders::{CancelReason, OrderEvent};
use sneakerstop_events::payments::PaymentMethodEvent;
use sneakerstop_events::topics;
use sneakerstop_messaging::{Handler, IncomingEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::batch::Writes;
use crate::domain::{BidStatus, MatchStatus};
use crate::engine::Engine;
use crate::store::{self, Arrival};

/// The market service's event handler.
#[derive(Debug, Clone, Default)]
pub struct MarketHandler {
    /// This instance's writer, told once what the handler recorded for the books has
    /// committed (set when the service starts; the writer also looks every 250 ms).
    pub engine: std::sync::Arc<std::sync::OnceLock<Engine>>,
}

impl Handler for MarketHandler {
    /// Every ask the batch's events are about, locked up front in one order: two batches
    /// (the partitions of `catalog.sneakers` and `orders.orders` are applied concurrently)
    /// never hold two asks in opposite orders.
    fn lock_batch<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [IncomingEvent],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let mut asks = Vec::new();
            for event in events {
                match event.topic.as_str() {
                    topics::SNEAKERS => {
                        let (SneakerEvent::Listed(listing) | SneakerEvent::Updated(listing)) =
                            event.decode::<SneakerEvent>()?;
                        asks.push(listing.sneaker_id);
                    }
                    topics::ORDERS => asks.push(match event.decode::<OrderEvent>()? {
                        OrderEvent::Created(e) => e.sneaker_id,
                        OrderEvent::Cancelled(e) => e.sneaker_id,
                        OrderEvent::Completed(e) => e.sneaker_id,
                        OrderEvent::Refused(e) => e.sneaker_id,
                    }),
                    _ => {}
                }
            }
            store::lock_asks(tx, asks).await
        })
    }

    fn concerns(&self, event: &IncomingEvent) -> bool {
        // A listing that names no product is no ask: no book ever hears of it (`handle`
        // skips it too, and a listing's product never changes).
        match event.topic.as_str() {
            topics::SNEAKERS => match event.decode::<SneakerEvent>() {
                Ok(SneakerEvent::Listed(listing) | SneakerEvent::Updated(listing)) => listing.product_id.is_some(),
                Err(_) => true,
            },
            _ => true,
        }
    }

    fn committed(&self) {
        if let Some(engine) = self.engine.get() {
            engine.arrived();
        }
    }

    fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a IncomingEvent) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            match event.topic.as_str() {
                topics::PRODUCTS => {
                    let (ProductEvent::Created(product) | ProductEvent::Updated(product)) =
                        event.decode::<ProductEvent>()?;
                    store::apply_product(tx, &product).await
                }
                topics::SNEAKERS => {
                    let (SneakerEvent::Listed(listing) | SneakerEvent::Updated(listing)) =
                        event.decode::<SneakerEvent>()?;
                    let Some(product) = listing.product_id else { return Ok(()) };
                    // Listed, repriced, sold, expired: the book's writer reads where it is now
                    // (unless the change concerns no book).
                    if store::apply_ask(tx, product, &listing).await? {
                        store::trade_later(tx, product, listing.size, Arrival::Ask(listing.sneaker_id)).await?;
                    }
                    Ok(())
                }
                topics::ORDERS => order(tx, &event.decode::<OrderEvent>()?).await,
                topics::PAYMENT_METHODS => {
                    let PaymentMethodEvent::Saved(saved) = event.decode::<PaymentMethodEvent>()?;
                    let version = event.envelope.aggregate_version;
                    store::apply_payment_method(tx, saved.buyer_id, saved.method_id, version).await
                }
                other => anyhow::bail!("market does not consume {other}"),
            }
        })
    }
}

/// What an order event means for the books.
#[tracing::instrument(skip_all, fields(event = ?order_event), err)]
async fn order(tx: &mut PgConnection, order_event: &OrderEvent) -> anyhow::Result<()> {
    let now = Utc::now();
    match order_event {
        OrderEvent::Created(created) => {
            // Holding an ask takes it off its book: the writer hears so.
            if let Some((product, size)) =
                store::order_placed(tx, created.order_id, created.sneaker_id, created.price_cents).await?
            {
                store::trade_later(tx, product, size, Arrival::Ask(created.sneaker_id)).await?;
            }
            Ok(())
        }
        OrderEvent::Completed(completed) => {
            if store::record_sale(tx, completed.order_id, completed.sneaker_id, now).await? {
                metrics::counter!("market_sales_total").increment(1);
            }
            end_match(tx, completed.order_id, MatchStatus::Filled).await
        }
        OrderEvent::Cancelled(cancelled) => {
            let outcome = match cancelled.reason {
                CancelReason::Declined => MatchStatus::Declined,
                CancelReason::Buyer => MatchStatus::Cancelled,
                CancelReason::Expired => MatchStatus::Refused,
            };
            end_match(tx, cancelled.order_id, outcome).await?;
            // The pair is free again: back on its book once its listing says available too.
            if let Some((product, size)) = store::order_ended(tx, cancelled.order_id, cancelled.sneaker_id).await? {
                store::trade_later(tx, product, size, Arrival::Ask(cancelled.sneaker_id)).await?;
            }
            Ok(())
        }
        OrderEvent::Refused(refused) => end_match(tx, refused.match_id, MatchStatus::Refused).await,
    }
}

/// Ends the match `order` fills, if it is an order of the market whose match is pending,
/// with `outcome`; its bid follows (and trades again once this commits if it is back on
/// the book).
async fn end_match(tx: &mut PgConnection, order: Uuid, outcome: MatchStatus) -> anyhow::Result<()> {
    let Some(found) = store::lock_pending_match(tx, order).await? else { return Ok(()) };
    store::end_match(tx, &found, outcome).await?;
    let Some(bid) = store::lock_bid(tx, found.bid_id).await? else {
        anyhow::bail!("match {} names bid {} that does not exist", found.id, found.bid_id);
    };
    let now = Utc::now();
    if outcome == MatchStatus::Filled {
        // From the moment the bid met the ask to the completed sale (order paid, pair sold).
        let took = (now - found.created_at).to_std().unwrap_or_default();
        metrics::histogram!("market_match_to_sale_seconds").record(took.as_secs_f64());
    }
    match bid.match_ended(outcome, now) {
        Ok(ended) => {
            let mut writes = Writes::default();
            writes.change(&ended)?;
            writes.write(tx).await?;
            tracing::info!(match_id = %found.id, bid_id = %bid.id, status = ended.bid.status.as_str(), "match ended");
            if ended.bid.status == BidStatus::Open {
                store::trade_later(tx, ended.bid.product_id, ended.bid.size, Arrival::Bid(ended.bid.id)).await?;
            }
        }
        Err(refused) => tracing::warn!(match_id = %found.id, %refused, "match ended for a bid that was not matched"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use sneakerstop_events::catalog::{Sneaker, SneakerStatus};
    use sneakerstop_events::orders::{OrderCancelled, OrderEvent};

    use super::*;

    fn listing(product_id: Option<Uuid>) -> Sneaker {
        Sneaker {
            sneaker_id: Uuid::now_v7(),
            seller_id: Uuid::now_v7(),
            title: "Air Jordan 1".into(),
            brand: None,
            description: None,
            price_cents: 20_000,
            size: 10.0,
            product_id,
            expires_at: None,
            status: SneakerStatus::Available,
            version: 1,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn only_listings_that_name_a_product_concern_the_books() {
        let handler = MarketHandler::default();
        let event = |e: &SneakerEvent| IncomingEvent::from_contract(e, "/test", Uuid::now_v7(), 1);
        assert!(handler.concerns(&event(&SneakerEvent::Listed(listing(Some(Uuid::now_v7()))))), "an ask");
        assert!(handler.concerns(&event(&SneakerEvent::Updated(listing(Some(Uuid::now_v7()))))), "an ask changed");
        assert!(!handler.concerns(&event(&SneakerEvent::Listed(listing(None)))), "a plain listing");
        assert!(!handler.concerns(&event(&SneakerEvent::Updated(listing(None)))), "a plain listing changed");
        // Orders are looked up: whether one is the market's is in the database.
        let cancelled = OrderEvent::Cancelled(OrderCancelled {
            order_id: Uuid::now_v7(),
            sneaker_id: Uuid::now_v7(),
            reason: CancelReason::Buyer,
        });
        assert!(handler.concerns(&IncomingEvent::from_contract(&cancelled, "/test", Uuid::now_v7(), 1)));
    }
}
