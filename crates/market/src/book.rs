//! Trading on a book: what happens when an order arrives on one side and may cross the
//! other. Every function here runs with the book locked ([`store::lock_book`]) by its caller,
//! so two trades on one book never read it at once. An order put on the book without the
//! lock (by the consumer) is traded afterwards, under it, by the trader ([`crate::trader`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{self, Ask, Bid, Decision};
use crate::store;

/// Trades `bid` (new, or back on the book) with the best ask it crosses, at the ask's
/// price. Returns the trade, if it made one.
#[tracing::instrument(skip_all, fields(bid_id = %bid.id), err)]
pub async fn trade_bid(tx: &mut PgConnection, bid: &Bid, now: DateTime<Utc>) -> anyhow::Result<Option<Decision>> {
    if !bid.is_live(now) {
        return Ok(None);
    }
    let asks = store::crossing_asks(tx, bid.product_id, bid.size, bid.price_cents, bid.buyer_id).await?;
    let Some(ask) = domain::best_ask(bid, &asks) else { return Ok(None) };
    let traded = bid.trade(ask, Uuid::now_v7(), ask.price_cents, now)?;
    store::save_bid(tx, &traded).await?;
    matched(&traded);
    Ok(Some(traded))
}

/// Trades `ask` (new, cheaper, or back on the book) with the best bid it crosses, at the
/// bid's price. Returns the trade, if it made one.
#[tracing::instrument(skip_all, fields(ask_id = %ask.id), err)]
pub async fn trade_ask(tx: &mut PgConnection, ask: &Ask, now: DateTime<Utc>) -> anyhow::Result<Option<Decision>> {
    let bids = store::crossing_bids(tx, ask.product_id, ask.size, ask.price_cents, ask.seller_id).await?;
    let Some(bid) = domain::best_bid(ask, &bids, now) else { return Ok(None) };
    let traded = bid.trade(ask, Uuid::now_v7(), bid.price_cents, now)?;
    store::save_bid(tx, &traded).await?;
    matched(&traded);
    Ok(Some(traded))
}

/// Trades the ask with this id if it is on its book (its listing available, held by no
/// order or match).
pub async fn trade_ask_by_id(tx: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> anyhow::Result<()> {
    if let Some(ask) = store::ask_on_book(tx, id).await? {
        trade_ask(tx, &ask, now).await?;
    }
    Ok(())
}

fn matched(traded: &Decision) {
    if let Some(made) = &traded.matched {
        metrics::counter!("market_matches_total").increment(1);
        tracing::info!(match_id = %made.id, bid_id = %made.bid_id, ask_id = %made.ask_id, price_cents = made.price_cents, "bid met ask");
    }
}

/// This process's queue per book, in front of the database's lock.
///
/// Requests for one hot book (a release-day drop) would otherwise each take a pooled
/// connection and then wait inside PostgreSQL for the book's advisory lock, holding the
/// connection while they wait: a few dozen of them empty the pool, and the market's own
/// consumer — which ends matches and puts asks back — waits behind them. Queued here first,
/// one request per book at a time holds a connection; the advisory lock still orders this
/// process against the others.
#[derive(Debug, Clone, Default)]
pub struct BookQueues(Arc<Mutex<HashMap<BookKey, Queue>>>);

/// A book: its product and its size's bits.
type BookKey = (Uuid, u64);
/// One book's turn-taking.
type Queue = Arc<tokio::sync::Mutex<()>>;

/// Books remembered before those nobody is queued on are forgotten.
const REMEMBERED_BOOKS: usize = 1_024;

impl BookQueues {
    /// Waits for this process's turn on the book; the turn lasts as long as the guard.
    pub async fn turn(&self, product: Uuid, size: f64) -> tokio::sync::OwnedMutexGuard<()> {
        let key = (product, size.to_bits());
        let queue = {
            let mut queues = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if queues.len() >= REMEMBERED_BOOKS && !queues.contains_key(&key) {
                // A queue only the map holds has nobody waiting or trading on it.
                queues.retain(|_, queue| Arc::strong_count(queue) > 1);
            }
            queues.entry(key).or_default().clone()
        };
        queue.lock_owned().await
    }

    /// How many books the process remembers.
    pub fn remembered(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn books_nobody_is_queued_on_are_forgotten_so_the_queues_stay_bounded() {
        let queues = BookQueues::default();
        let busy = Uuid::now_v7();
        let held = queues.turn(busy, 10.0).await;
        for _ in 0..3 * REMEMBERED_BOOKS {
            drop(queues.turn(Uuid::now_v7(), 10.0).await);
        }
        assert!(queues.remembered() <= REMEMBERED_BOOKS, "{} books remembered", queues.remembered());
        // The book in use was kept: a second turn on it waits for the first.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), queues.turn(busy, 10.0)).await;
        assert!(waiting.is_err(), "the held book's queue was forgotten");
        drop(held);
        drop(queues.turn(busy, 10.0).await);
    }
}
