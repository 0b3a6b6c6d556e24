//! The trader: trades the orders the market's consumer put on the books.
//!
//! An ask listed (or made cheaper, or free again) and a bid back on the book after its match
//! ended reach the market as events. The consumer applies them without taking any book's
//! lock — a batch is about many books, and holding them all while it applies would make
//! every request on those books wait for the whole batch — and records each such order in
//! `pending_trades` on the same transaction. Once that transaction has committed the
//! consumer wakes the trader ([`Trader::wake`]), which trades them book by book, each book
//! on a short transaction of its own under the book's lock, taking turns with requests
//! ([`BookQueues`]). A process that dies in between leaves the rows behind, and the next
//! trader to run (every instance's, at start and every `interval`) trades them.
//!
//! A book whose pending orders fail to trade together is traded again one order per
//! transaction; an order that fails alone in [`MAX_ATTEMPTS`] rounds is set aside with its
//! error (a bug, or a row no trade can be made of), so it cannot stop its book.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::book::{self, BookQueues};
use crate::store::{self, Arrival};

/// Books traded at once (each holds one pooled connection while it trades).
const CONCURRENT_BOOKS: usize = 4;

/// Rounds in which a pending trade fails on its own before it is set aside.
pub const MAX_ATTEMPTS: i32 = 5;

/// Wakes the trader; cloned into the consumer's handler.
#[derive(Debug, Clone, Default)]
pub struct Trader {
    wake: Arc<Notify>,
}

impl Trader {
    /// Asks for a round of trading now (a wake while a round runs starts another after it).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Trades pending orders whenever woken, and every `interval` regardless, until `cancel`.
    /// A round that fails leaves its books' rows for the next (`market_trader_failures_total`).
    pub async fn run(self, pool: PgPool, books: BookQueues, interval: Duration, cancel: CancellationToken) {
        loop {
            if let Err(error) = trade_pending(&pool, &books).await {
                metrics::counter!("market_trader_failures_total").increment(1);
                tracing::warn!(error = format!("{error:#}"), "trading pending orders failed; trying again");
            }
            // What the round committed wakes the relays (it runs under Wiring::spawn).
            sneakerstop_messaging::announce::flush();
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// Trades every book's pending orders; returns how many orders it traded or found gone.
pub async fn trade_pending(pool: &PgPool, books: &BookQueues) -> anyhow::Result<usize> {
    let (due, set_aside) = store::pending_trades(pool).await?;
    #[allow(clippy::cast_precision_loss, reason = "counts of rows")]
    {
        metrics::gauge!("market_books_with_pending_trades").set(due.len() as f64);
        metrics::gauge!("market_pending_trades_set_aside").set(set_aside as f64);
    }
    futures::stream::iter(due)
        .map(|(product, size)| trade_book(pool, books, product, size))
        .buffer_unordered(CONCURRENT_BOOKS)
        .try_fold(0, |total, traded| std::future::ready(Ok(total + traded)))
        .await
}

/// Trades one book's pending orders, in the order they arrived: together on one
/// transaction, or — when that fails — one by one, so that one order that cannot trade
/// does not hold back the others.
#[tracing::instrument(skip(pool, books), err)]
async fn trade_book(pool: &PgPool, books: &BookQueues, product: Uuid, size: f64) -> anyhow::Result<usize> {
    let _turn = books.turn(product, size).await;
    match trade_together(pool, product, size, None).await {
        Ok(traded) => Ok(traded),
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "trading the book's pending orders together failed; one by one"
            );
            trade_one_by_one(pool, product, size).await
        }
    }
}

/// Trades the book's pending orders (or only the one with `id`) on one transaction.
async fn trade_together(pool: &PgPool, product: Uuid, size: f64, id: Option<i64>) -> anyhow::Result<usize> {
    let _transaction = sneakerstop_db::transaction_span("trading pending orders");
    let mut tx = pool.begin().await.context("begin trading pending orders")?;
    store::lock_book(&mut tx, product, size).await?;
    let arrivals = store::take_pending_trades(&mut tx, product, size, id).await?;
    let now = Utc::now();
    for arrival in &arrivals {
        match *arrival {
            Arrival::Ask(id) => book::trade_ask_by_id(&mut tx, id, now).await?,
            Arrival::Bid(id) => {
                if let Some(bid) = store::lock_bid(&mut tx, id).await? {
                    book::trade_bid(&mut tx, &bid, now).await?;
                }
            }
        }
    }
    tx.commit().await.context("commit pending trades")?;
    Ok(arrivals.len())
}

/// Trades the book's pending orders each on a transaction of its own. One that fails counts
/// an attempt and stays for the next round; at [`MAX_ATTEMPTS`] it is set aside
/// (`market_pending_trades_set_aside`), for an operator to look at.
async fn trade_one_by_one(pool: &PgPool, product: Uuid, size: f64) -> anyhow::Result<usize> {
    let mut traded = 0;
    let mut failed = None;
    for id in store::pending_trade_ids(pool, product, size).await? {
        match trade_together(pool, product, size, Some(id)).await {
            Ok(done) => traded += done,
            Err(error) => {
                let message = format!("{error:#}");
                if store::pending_trade_failed(pool, id, &message, MAX_ATTEMPTS).await? {
                    metrics::counter!("market_pending_trades_set_aside_total").increment(1);
                    tracing::error!(
                        pending_trade = id,
                        error = message,
                        "a pending trade kept failing and is set aside"
                    );
                }
                failed = Some(error);
            }
        }
    }
    match failed {
        Some(error) => Err(error.context(format!("pending orders that did not trade remain (traded {traded})"))),
        None => Ok(traded),
    }
}
