//! What orders does with the events it consumes.
//!
//! - `catalog.sneakers` → the sneaker replica, applied by version (older or repeated events
//!   change nothing);
//! - `payments.payments` → `payment.succeeded` completes a `created` order
//!   (`order.completed`). A payment for an order that was cancelled meanwhile leaves it
//!   cancelled: payments refunds that charge when it sees the cancellation.
//!   `payment.lapsed` (no charge accepted before the deadline) expires a `created` order;
//!   `payment.declined` (a saved method, charged without the buyer) cancels the order of the
//!   market it was for, as `declined`;
//! - `market.matches` → `match.made` becomes the bidder's order, under the match's id and at
//!   its price (`order.created`, which payments charges with the saved method), or — the
//!   pair held by another live order, or sold — `order.refused`, so the market puts the bid
//!   back. The one-live-order-per-pair index decides, as for every order.

use futures::future::BoxFuture;
use sneakerstop_events::catalog::SneakerEvent;
use sneakerstop_events::market::{MatchEvent, MatchMade};
use sneakerstop_events::orders::{CancelReason, OrderRefused, RefusedBecause};
use sneakerstop_events::payments::{PaymentDeclined, PaymentEvent, PaymentLapsed, PaymentSucceeded};
use sneakerstop_events::topics;
use sneakerstop_messaging::{Handler, IncomingEvent};
use sqlx::PgConnection;

use crate::domain::{Matched, Order, Refusal};
use crate::store::{self, Filled};

/// The orders service's event handler.
#[derive(Debug, Clone, Copy)]
pub struct OrdersHandler {
    /// How long an order of the market may stay unpaid (its charge is made at once; this
    /// bounds a provider that never answers).
    pub reservation_ttl: chrono::Duration,
}

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
                    PaymentEvent::Declined(declined) => cancel_declined(tx, &declined).await,
                    PaymentEvent::Lapsed(lapsed) => expire(tx, &lapsed).await,
                },
                topics::MATCHES => {
                    let MatchEvent::Made(matched) = event.decode::<MatchEvent>()?;
                    fill(tx, &matched, self.reservation_ttl).await
                }
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

/// A saved method was declined: the order of the market it was for is cancelled.
#[tracing::instrument(skip_all, fields(order_id = %declined.order_id), err)]
async fn cancel_declined(tx: &mut PgConnection, declined: &PaymentDeclined) -> anyhow::Result<()> {
    let Some(order) = store::lock(tx, declined.order_id).await? else {
        tracing::warn!("decline for an unknown order ignored");
        return Ok(());
    };
    match order.cancel(CancelReason::Declined, chrono::Utc::now()) {
        Ok(cancelled) => {
            store::save(tx, &cancelled).await?;
            metrics::counter!("orders_declined_total").increment(1);
        }
        Err(refused) => tracing::info!(%refused, "decline for an order that cannot be cancelled; ignored"),
    }
    Ok(())
}

/// Payments closed the order's payment window unpaid: the order expires, if it is still
/// waiting (a buyer who cancelled first, or a completed order, stays as it is).
#[tracing::instrument(skip_all, fields(order_id = %lapsed.order_id), err)]
async fn expire(tx: &mut PgConnection, lapsed: &PaymentLapsed) -> anyhow::Result<()> {
    let Some(order) = store::lock(tx, lapsed.order_id).await? else {
        tracing::warn!("lapse of an unknown order ignored");
        return Ok(());
    };
    match order.lapse(chrono::Utc::now()) {
        Ok(expired) => {
            store::save(tx, &expired).await?;
            metrics::counter!("orders_cancelled_total", "reason" => "expired").increment(1);
            tracing::info!(sneaker_id = %order.sneaker_id, "reservation lapsed unpaid; order expired");
        }
        Err(refused) => tracing::info!(%refused, "lapse of an order that is no longer waiting; ignored"),
    }
    Ok(())
}

/// A bid met an ask: the bidder's order, or a refusal the market hears of.
#[tracing::instrument(skip_all, fields(match_id = %made.match_id, sneaker_id = %made.sneaker_id), err)]
async fn fill(tx: &mut PgConnection, made: &MatchMade, ttl: chrono::Duration) -> anyhow::Result<()> {
    let matched = Matched {
        match_id: made.match_id,
        sneaker_id: made.sneaker_id,
        buyer_id: made.buyer_id,
        seller_id: made.seller_id,
        price_cents: made.price_cents,
    };
    let listing = store::find_sneaker(tx, made.sneaker_id).await?;
    let refuse =
        |reason| OrderRefused { match_id: made.match_id, sneaker_id: made.sneaker_id, buyer_id: made.buyer_id, reason };
    let filled = match Order::fill(&matched, listing.as_ref(), chrono::Utc::now(), ttl) {
        Ok(filled) => filled,
        Err(Refusal::Sold) => return store::refuse(tx, &refuse(RefusedBecause::Sold)).await,
        Err(Refusal::Expired) => return store::refuse(tx, &refuse(RefusedBecause::Expired)).await,
        Err(Refusal::Withdrawn) => return store::refuse(tx, &refuse(RefusedBecause::Withdrawn)).await,
        Err(other) => {
            tracing::warn!(refused = %other, "a match that cannot become an order; refused as taken");
            return store::refuse(tx, &refuse(RefusedBecause::PairTaken)).await;
        }
    };
    match store::insert_fill(tx, &filled).await? {
        Filled::Placed => {
            metrics::counter!("orders_created_total").increment(1);
            metrics::counter!("orders_matched_total").increment(1);
            tracing::info!("order of the market placed");
        }
        Filled::AlreadyFilled => tracing::debug!("match filled before; ignored"),
        Filled::PairHeld => {
            tracing::info!("the pair is held by another order; match refused");
            store::refuse(tx, &refuse(RefusedBecause::PairTaken)).await?;
        }
    }
    Ok(())
}
