//! Trading on a book: what happens when an order arrives on one side and may cross the
//! other. Every function here runs with the book locked ([`store::lock_book`]) by its caller,
//! so two trades on one book never read it at once. An order put on the book without the
//! lock (by the consumer) is traded afterwards, under it, by the trader ([`crate::trader`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sneakerstop_idempotency::KeyError;
use sqlx::{PgConnection, PgPool};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::domain::{self, Ask, Bid, Decision};
use crate::{MarketError, store};

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

/// This process's queue per book, in front of the database's lock, and the batches that
/// requests on one book are done in.
///
/// Requests for one hot book (a release-day drop) would otherwise each take a pooled
/// connection and then wait inside PostgreSQL for the book's advisory lock, holding the
/// connection while they wait: a few dozen of them empty the pool, and the market's own
/// consumer — which ends matches and puts asks back — waits behind them. Queued here first,
/// one request per book at a time holds a connection; the advisory lock still orders this
/// process against the others.
///
/// And a hot book's requests are done together ([`BookQueues::request`]): whoever gets the
/// book's turn does every request waiting for it, one after another, on one transaction
/// (group commit). They still trade in the order they arrived, each seeing what the one
/// before it did, but the book is locked and the transaction committed once per batch
/// instead of once per request — where a busy book's time went.
#[derive(Debug, Clone, Default)]
pub struct BookQueues {
    books: Arc<Mutex<HashMap<BookKey, Arc<Book>>>>,
    tickets: Arc<AtomicU64>,
}

/// A book: its product and its size's bits.
type BookKey = (Uuid, u64);

fn key(product: Uuid, size: f64) -> BookKey {
    (product, size.to_bits())
}

/// One book's turn-taking, and the work waiting for the next batch.
#[derive(Default)]
struct Book {
    turn: Arc<tokio::sync::Mutex<()>>,
    waiting: Mutex<Vec<(u64, Box<dyn Work>)>>,
}

impl std::fmt::Debug for Book {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Book").finish_non_exhaustive()
    }
}

impl Book {
    /// Whether anyone holds or waits for this book (the map's own reference aside).
    fn in_use(self: &Arc<Self>) -> bool {
        Arc::strong_count(self) > 1 || Arc::strong_count(&self.turn) > 1
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Box<dyn Work>)>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A request on a book, done in the book's next batch ([`BookQueues::request`]).
pub trait BookRequest: Send + Sync + 'static {
    /// What the request answers with.
    type Answer: Send + 'static;

    /// Does the request on the batch's transaction, with the book locked. A refusal is an
    /// answer like any other; [`MarketError::Internal`] (the database failing) fails the
    /// transaction. It may run again, on another transaction, if the batch's failed.
    fn on_book(&self, tx: &mut PgConnection) -> impl Future<Output = Result<Self::Answer, MarketError>> + Send;

    /// Runs once the batch has committed, just before the request is answered (counts, logs).
    fn committed(_answer: &Result<Self::Answer, MarketError>) {}
}

/// A request's part of a book's batch, whatever its kind.
trait Work: Send {
    /// Does the work on `tx`, keeping its answer until the transaction has committed.
    fn run<'a>(&'a mut self, tx: &'a mut PgConnection) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Gives the answer kept by the last run, once its transaction has committed.
    fn answer(self: Box<Self>);
}

/// A request, its answer once it has one, and where the answer goes.
struct Waiting<R: BookRequest> {
    request: R,
    outcome: Option<Result<R::Answer, MarketError>>,
    answer: oneshot::Sender<Result<R::Answer, MarketError>>,
}

impl<R: BookRequest> Work for Waiting<R> {
    fn run<'a>(&'a mut self, tx: &'a mut PgConnection) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.outcome = match self.request.on_book(tx).await {
                Err(MarketError::Internal(error) | MarketError::Key(KeyError::Internal(error))) => return Err(error),
                outcome => Some(outcome),
            };
            Ok(())
        })
    }

    fn answer(self: Box<Self>) {
        let Some(outcome) = self.outcome else { return };
        R::committed(&outcome);
        // The request may have gone away: then nobody is told.
        let _ = self.answer.send(outcome);
    }
}

/// Requests done in one batch at most (the rest wait for the next).
const MAX_BATCH: usize = 64;

/// Books remembered before those nobody is queued on are forgotten.
const REMEMBERED_BOOKS: usize = 1_024;

impl BookQueues {
    fn book(&self, product: Uuid, size: f64) -> Arc<Book> {
        let key = key(product, size);
        let mut books = self.books.lock().unwrap_or_else(PoisonError::into_inner);
        if books.len() >= REMEMBERED_BOOKS && !books.contains_key(&key) {
            books.retain(|_, book| book.in_use());
        }
        books.entry(key).or_default().clone()
    }

    /// How many books the process remembers.
    pub fn remembered(&self) -> usize {
        self.books.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// How many requests wait for the book's next batch.
    pub fn waiting(&self, product: Uuid, size: f64) -> usize {
        let books = self.books.lock().unwrap_or_else(PoisonError::into_inner);
        books.get(&key(product, size)).map_or(0, |book| book.waiting().len())
    }

    /// Waits for this process's turn on the book; the turn lasts as long as the guard.
    pub async fn turn(&self, product: Uuid, size: f64) -> tokio::sync::OwnedMutexGuard<()> {
        self.book(product, size).turn.clone().lock_owned().await
    }

    /// Does `request` in the book's next batch, and answers once that batch has committed.
    /// A batch that fails is done again one request per transaction, so only a request that
    /// fails on its own is answered with an internal error.
    pub async fn request<R: BookRequest>(
        &self,
        pool: &PgPool,
        product: Uuid,
        size: f64,
        request: R,
    ) -> Result<R::Answer, MarketError> {
        let (answer, answered) = oneshot::channel();
        self.batched(pool, product, size, Box::new(Waiting { request, outcome: None, answer })).await?;
        answered.await.map_err(|_| anyhow::anyhow!("the request failed on the book (logged with its cause)"))?
    }

    /// Does `work` in the book's next batch, and returns once that batch has ended (the
    /// work answered, or was dropped if it failed). The batch runs on a task of its own, so
    /// a request that goes away does not take the others' work with it.
    async fn batched(&self, pool: &PgPool, product: Uuid, size: f64, work: Box<dyn Work>) -> anyhow::Result<()> {
        let book = self.book(product, size);
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        book.waiting().push((ticket, work));
        // Gone before its batch began (the request was dropped): the work is not done.
        let withdraw = Withdraw { book: &book, ticket };
        let turn = book.turn.clone().lock_owned().await;
        let batch: Vec<_> = {
            let mut waiting = book.waiting();
            if !waiting.iter().any(|(waiting, _)| *waiting == ticket) {
                // An earlier batch did it, and has ended: the turn is only had after it.
                return Ok(());
            }
            let take = waiting.len().min(MAX_BATCH);
            waiting.drain(..take).map(|(_, work)| work).collect()
        };
        drop(withdraw);
        let pool = pool.clone();
        let span = tracing::Span::current();
        // The batch's outbox rows wake the relays when it ends (a spawned task does not
        // carry the request's announcer by itself).
        let run = tracing::Instrument::instrument(run_batch(pool, product, size, batch, turn), span);
        tokio::spawn(sneakerstop_messaging::announce::inherit(run)).await.context("the batch on the book stopped")
    }
}

/// Takes a request's work back out of its book's queue if the request goes away first.
struct Withdraw<'a> {
    book: &'a Arc<Book>,
    ticket: u64,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        self.book.waiting().retain(|(waiting, _)| *waiting != self.ticket);
    }
}

/// One batch: every request's work in order on one transaction, then the answers. If that
/// transaction fails, each request again on a transaction of its own, so one request that
/// fails (a bug, data no trade can be made of) does not fail the others.
async fn run_batch(
    pool: PgPool,
    product: Uuid,
    size: f64,
    mut batch: Vec<Box<dyn Work>>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
) {
    #[allow(clippy::cast_precision_loss, reason = "at most MAX_BATCH")]
    metrics::histogram!("market_book_batch_size").record(batch.len() as f64);
    match run_together(&pool, product, size, &mut batch).await {
        Ok(()) => batch.into_iter().for_each(|work| work.answer()),
        Err(error) if batch.len() > 1 => {
            tracing::warn!(error = format!("{error:#}"), "a batch on a book failed; one request at a time");
            for mut work in batch {
                match run_together(&pool, product, size, std::slice::from_mut(&mut work)).await {
                    Ok(()) => work.answer(),
                    Err(error) => tracing::error!(error = format!("{error:#}"), "a request on a book failed"),
                }
            }
        }
        Err(error) => tracing::error!(error = format!("{error:#}"), "a request on a book failed"),
    }
}

/// Does `batch` on one transaction with the book locked.
async fn run_together(pool: &PgPool, product: Uuid, size: f64, batch: &mut [Box<dyn Work>]) -> anyhow::Result<()> {
    let _transaction = sneakerstop_db::transaction_span("requests on a book");
    let mut tx = pool.begin().await.context("begin requests on a book")?;
    store::lock_book(&mut tx, product, size).await?;
    for work in batch.iter_mut() {
        work.run(&mut tx).await?;
    }
    tx.commit().await.context("commit requests on a book")?;
    Ok(())
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
