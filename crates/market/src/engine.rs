//! The writer: the only one to change the books this instance owns ([`crate::owners`]),
//! holding them in memory ([`crate::matching`]) and making each batch of commands durable in
//! one PostgreSQL transaction.
//!
//! Everything that changes a book is a command to it: a bid placed or cancelled (HTTP), and
//! what the consumer put on or took off a book (an ask listed, repriced, held, released; a
//! bid back after its match ended), which it records in `pending_trades` on its own
//! transaction and the writer takes ([`Command::Arrivals`]). The writer takes whatever is
//! queued (no timer: a batch is what arrived while the previous one committed), applies
//! it in memory in arrival order, writes it — bids, matches, their outbox events,
//! idempotency records — on one transaction that first fences the batch's shards
//! ([`owners::fence`]), commits, and only then answers. What the commands change is kept
//! in memory and written in one statement at the batch's end (`crate::batch`); whatever
//! the batch reads back before then goes through it. Refusals are decided in memory.
//!
//! **Recovery.** A book is loaded the first time a batch needs it under the shard's epoch:
//! its open bids and the asks on it. Every answered command is in a committed batch, and an
//! arrival that committed but was not taken is still in `pending_trades`, so nothing else
//! is needed. A batch that fails evicts every book it touched — memory may
//! be ahead of what committed — and each of its commands runs again alone, on freshly
//! loaded books; one that fails alone is answered with an internal error. A book held in
//! memory that is stale (an ask repriced or moved before its arrival was taken) cannot
//! trade wrongly: the match's write requires the ask as the book saw it, or fails the batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;
use sneakerstop_idempotency::{IdempotencyKey, KeyError};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::batch::Writes;
use crate::domain::{Ask, Bid, BidStatus, Bidder, Decision, NewBid, Product};
use crate::matching::{OrderBook, Resting, Trade};
use crate::owners::{self, Owner, Ownership};
use crate::store::{self, Arrival};
use crate::{MarketError, http::BidView};

/// Commands in one batch at most (the rest wait for the next).
const MAX_BATCH: usize = 512;

/// Commands queued for the writer at most; more are refused as unavailable (retry).
const QUEUE: usize = 10_000;

/// How often the writer takes pending arrivals without being told: those another instance's
/// consumer recorded for this instance's books, and those a process that died left behind.
pub const ARRIVALS_INTERVAL: Duration = Duration::from_millis(250);

/// The gauges read from the database are set every this many ticks (5 s in a service).
const REPORT_EVERY: u32 = 20;

/// Rounds in which a pending arrival fails on its own before it is set aside.
pub const MAX_ATTEMPTS: i32 = 5;

/// A bid to place, validated, with what the replicas said of its buyer.
#[derive(Debug)]
pub struct Placing {
    /// Who bids.
    pub buyer: Uuid,
    /// Their Idempotency-Key, if they sent one.
    pub key: Option<IdempotencyKey>,
    /// The bid.
    pub new: NewBid,
    /// The product (its sizes).
    pub product: Product,
    /// Whether the buyer has a saved payment method.
    pub has_payment_method: bool,
}

/// A placed bid's answer.
#[derive(Debug)]
pub enum Placed {
    /// Placed now: the bid as shown, its id and status.
    Now(serde_json::Value, Uuid, BidStatus),
    /// The Idempotency-Key's first answer.
    Before(Response),
}

/// A command to the writer, and where its answer goes.
#[derive(Debug)]
enum Command {
    Place(Box<Placing>, oneshot::Sender<Result<Placed, MarketError>>),
    Cancel {
        id: Uuid,
        buyer: Uuid,
        product: Uuid,
        size: f64,
        answer: oneshot::Sender<Result<Bid, MarketError>>,
    },
    /// Take the pending arrivals of the books this instance owns; say how many were taken.
    Arrivals(Option<oneshot::Sender<anyhow::Result<usize>>>),
}

impl Command {
    fn book(&self) -> Option<(Uuid, f64)> {
        match self {
            Self::Place(placing, _) => Some((placing.new.product_id, placing.new.size)),
            Self::Cancel { product, size, .. } => Some((*product, *size)),
            Self::Arrivals(_) => None,
        }
    }

    /// Answers that the command's book is not this instance's (any more): a request is
    /// refused as moved; a take of arrivals took none.
    fn moved(self) {
        self.refuse(MarketError::Moved, Ok(0));
    }

    /// Answers that the command failed with `error`.
    fn failed(self, error: anyhow::Error) {
        let arrivals = Err(anyhow::anyhow!("{error:#}"));
        self.refuse(MarketError::Internal(error), arrivals);
    }

    /// Answers a request with `error`, or a take of arrivals with `arrivals`.
    fn refuse(self, error: MarketError, arrivals: anyhow::Result<usize>) {
        match self {
            Self::Place(_, answer) => drop(answer.send(Err(error))),
            Self::Cancel { answer, .. } => drop(answer.send(Err(error))),
            Self::Arrivals(answer) => drop(answer.map(|answer| answer.send(arrivals))),
        }
    }
}

/// A command with the outcome of its last run, kept until that run's transaction commits.
#[derive(Debug)]
struct Job {
    command: Command,
    outcome: Option<Outcome>,
}

#[derive(Debug)]
enum Outcome {
    Placed(Result<Placed, MarketError>),
    Cancelled(Result<Bid, MarketError>),
    Arrivals(usize),
}

impl Job {
    fn answer(self) {
        match (self.command, self.outcome) {
            (Command::Place(_, answer), Some(Outcome::Placed(outcome))) => {
                if let Ok(Placed::Now(_, bid_id, status)) = &outcome {
                    metrics::counter!("market_bids_placed_total").increment(1);
                    tracing::info!(%bid_id, status = status.as_str(), "bid placed");
                }
                drop(answer.send(outcome));
            }
            (Command::Cancel { answer, .. }, Some(Outcome::Cancelled(outcome))) => {
                if outcome.is_ok() {
                    metrics::counter!("market_bids_cancelled_total").increment(1);
                }
                drop(answer.send(outcome));
            }
            (Command::Arrivals(answer), Some(Outcome::Arrivals(taken))) => {
                drop(answer.map(|answer| answer.send(Ok(taken))));
            }
            (command, _) => command.failed(anyhow::anyhow!("the command was not run")),
        }
    }
}

/// The handle requests and the consumer use: sends commands to this instance's writer.
#[derive(Debug, Clone)]
pub struct Engine {
    commands: mpsc::Sender<Command>,
    ownership: Ownership,
    /// Taken by the writer for each batch; whoever holds it keeps the next batch from
    /// starting ([`Engine::hold`]).
    gate: Arc<tokio::sync::Semaphore>,
    /// 1 while the writer holds a command it has taken but not begun (waiting for the gate).
    in_hand: Arc<std::sync::atomic::AtomicUsize>,
}

impl Engine {
    /// Starts the writer of the books `ownership` gives this instance, until `cancel`.
    /// Returns the handle and the writer's task, to run in the background.
    /// It takes pending arrivals whenever told and every `arrivals_every` regardless
    /// ([`ARRIVALS_INTERVAL`] in a running service).
    pub fn start(
        pool: PgPool,
        ownership: Ownership,
        max_open_bids: i64,
        arrivals_every: Duration,
        cancel: CancellationToken,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (commands, receiver) = mpsc::channel(QUEUE);
        let gate = Arc::new(tokio::sync::Semaphore::new(1));
        let in_hand = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writer = Writer {
            pool,
            ownership: ownership.clone(),
            max_open_bids,
            books: HashMap::new(),
            commands: receiver,
            gate: gate.clone(),
            in_hand: in_hand.clone(),
            arrivals_every,
        };
        (Self { commands, ownership, gate, in_hand }, writer.run(cancel))
    }

    /// Who owns `product`'s books.
    pub fn owner(&self, product: Uuid) -> Owner {
        self.ownership.owner(owners::shard(product))
    }

    /// Places a bid on its book (which this instance must own), and answers once the batch it
    /// was in has committed.
    pub async fn place(&self, placing: Placing) -> Result<Placed, MarketError> {
        let (answer, answered) = oneshot::channel();
        self.send(Command::Place(Box::new(placing), answer))?;
        answered.await.map_err(|_| MarketError::Unavailable("the market's writer stopped"))?
    }

    /// Cancels `buyer`'s bid `id` on the book of `product` in `size`.
    pub async fn cancel(&self, id: Uuid, buyer: Uuid, product: Uuid, size: f64) -> Result<Bid, MarketError> {
        let (answer, answered) = oneshot::channel();
        self.send(Command::Cancel { id, buyer, product, size, answer })?;
        answered.await.map_err(|_| MarketError::Unavailable("the market's writer stopped"))?
    }

    /// Tells the writer that arrivals wait (the consumer committed some).
    pub fn arrived(&self) {
        // A full queue has a batch coming, which takes them anyway.
        let _ = self.commands.try_send(Command::Arrivals(None));
    }

    /// Has the writer take the pending arrivals now; returns how many it took.
    pub async fn take_arrivals(&self) -> anyhow::Result<usize> {
        let (answer, answered) = oneshot::channel();
        self.commands.send(Command::Arrivals(Some(answer))).await.context("the market's writer stopped")?;
        answered.await.context("the market's writer stopped")?
    }

    /// Keeps the writer from starting another batch until the guard is dropped: what is
    /// sent meanwhile queues, and the next batch takes it all (tests use it to make a batch).
    pub async fn hold(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.gate.clone().acquire_owned().await.expect("the gate is never closed")
    }

    /// How many commands wait for the writer (queued, or taken and waiting for the gate).
    pub fn queued(&self) -> usize {
        self.commands.max_capacity() - self.commands.capacity() + self.in_hand.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn send(&self, command: Command) -> Result<(), MarketError> {
        self.commands.try_send(command).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => MarketError::Unavailable("the market's books are too busy"),
            mpsc::error::TrySendError::Closed(_) => MarketError::Unavailable("the market's writer stopped"),
        })
    }
}

/// A book (product, size bits).
type BookKey = (Uuid, u64);

fn book_key(product: Uuid, size: f64) -> BookKey {
    (product, size.to_bits())
}

/// A book in memory, and the shard epoch it was loaded under.
struct Loaded {
    epoch: i64,
    book: OrderBook<Bid, Ask>,
}

struct Writer {
    pool: PgPool,
    ownership: Ownership,
    max_open_bids: i64,
    books: HashMap<BookKey, Loaded>,
    commands: mpsc::Receiver<Command>,
    gate: Arc<tokio::sync::Semaphore>,
    in_hand: Arc<std::sync::atomic::AtomicUsize>,
    arrivals_every: Duration,
}

/// What one run of a batch needs: its transaction, its time, the epochs it fenced, and the
/// books it touched (evicted if it fails).
struct Run<'a> {
    tx: &'a mut PgConnection,
    now: DateTime<Utc>,
    owned: &'a HashMap<i16, i64>,
    touched: HashSet<BookKey>,
    /// What the batch changed, written at its end in one statement.
    writes: Writes,
}

impl Writer {
    async fn run(mut self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.arrivals_every);
        let mut ticks = 0u32;
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                () = cancel.cancelled() => return,
                command = self.commands.recv() => match command {
                    Some(command) => command,
                    None => return,
                },
                _ = tick.tick() => {
                    ticks += 1;
                    if ticks.is_multiple_of(REPORT_EVERY) {
                        self.report().await;
                    }
                    Command::Arrivals(None)
                }
            };
            // Held by a test (or anyone): what arrives meanwhile queues for this batch.
            self.in_hand.store(1, std::sync::atomic::Ordering::SeqCst);
            let gate = self.gate.clone().acquire_owned().await.expect("the gate is never closed");
            self.in_hand.store(0, std::sync::atomic::Ordering::SeqCst);
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match self.commands.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            self.batch(batch).await;
            drop(gate);
            // What the batch committed wakes the relays (the writer runs under Wiring::spawn).
            sneakerstop_messaging::announce::flush();
        }
    }

    /// Sets the gauges read from the database (on the writer's tick).
    async fn report(&self) {
        match store::set_aside_count(&self.pool).await {
            #[allow(clippy::cast_precision_loss, reason = "a count of rows")]
            Ok(count) => metrics::gauge!("market_pending_trades_set_aside").set(count as f64),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "counting set-aside arrivals failed"),
        }
        #[allow(clippy::cast_precision_loss, reason = "a count of books")]
        metrics::gauge!("market_books_in_memory").set(self.books.len() as f64);
    }

    /// One batch: the commands for books this instance owns, together on one transaction;
    /// if that fails, each alone.
    async fn batch(&mut self, batch: Vec<Command>) {
        let owned = self.ownership.owned();
        // Books of shards this instance no longer owns (or owns at a new epoch) are stale.
        self.books.retain(|(product, _), loaded| owned.get(&owners::shard(*product)) == Some(&loaded.epoch));
        let mut jobs = Vec::with_capacity(batch.len());
        let mut arrivals = false;
        for command in batch {
            match command.book() {
                Some((product, _)) if !owned.contains_key(&owners::shard(product)) => command.moved(),
                // One take of the arrivals serves every ask for it in the batch.
                None if arrivals => {
                    if let Command::Arrivals(Some(answer)) = command {
                        jobs.push(Job { command: Command::Arrivals(Some(answer)), outcome: None });
                    }
                }
                None => {
                    arrivals = true;
                    jobs.push(Job { command, outcome: None });
                }
                Some(_) => jobs.push(Job { command, outcome: None }),
            }
        }
        if jobs.is_empty() {
            return;
        }
        // A look for arrivals on the writer's tick, alone, is not a batch of work.
        let work = !matches!(jobs.as_slice(), [Job { command: Command::Arrivals(None), .. }]);
        if work {
            #[allow(clippy::cast_precision_loss, reason = "at most MAX_BATCH")]
            metrics::histogram!("market_book_batch_size").record(jobs.len() as f64);
        }
        let started = std::time::Instant::now();
        let together = self.run_together(&owned, &mut jobs).await;
        if work {
            // What every request of the batch waited for once the batch began: matching in
            // memory, the writes and the commit.
            metrics::histogram!("market_book_batch_seconds").record(started.elapsed().as_secs_f64());
        }
        match together {
            Ok(()) => jobs.into_iter().for_each(Job::answer),
            // Ownership moved under the batch: nothing of it was written, and its requests
            // are the new owner's (answered 503, to be retried; the next batch sees the change).
            Err(error) if error.is::<owners::Fenced>() => {
                metrics::counter!("market_batches_fenced_total").increment(1);
                tracing::warn!("a batch on the books was fenced off: this instance lost a shard");
                self.books.clear();
                jobs.into_iter().for_each(|job| job.command.moved());
            }
            Err(error) if jobs.len() > 1 => {
                metrics::counter!("market_batches_failed_total").increment(1);
                tracing::warn!(error = format!("{error:#}"), "a batch on the books failed; each command alone");
                for mut job in jobs {
                    match self.run_together(&owned, std::slice::from_mut(&mut job)).await {
                        Ok(()) => job.answer(),
                        Err(error) if error.is::<owners::Fenced>() => job.command.moved(),
                        Err(error) => self.failed_alone(&owned, job, error).await,
                    }
                }
            }
            Err(error) => {
                metrics::counter!("market_batches_failed_total").increment(1);
                let job = jobs.pop().expect("one job");
                self.failed_alone(&owned, job, error).await;
            }
        }
    }

    async fn failed_alone(&mut self, owned: &HashMap<i16, i64>, job: Job, error: anyhow::Error) {
        tracing::error!(error = format!("{error:#}"), "a command on the books failed");
        if let Command::Arrivals(answer) = job.command {
            // Arrivals that fail together are taken one by one, so one that cannot trade
            // (a bug, data no trade can be made of) does not hold back the others.
            let taken = self.arrivals_one_by_one(owned).await;
            drop(answer.map(|answer| answer.send(taken.map_err(|_| error))));
        } else {
            job.command.failed(error);
        }
    }

    /// Runs `jobs` on one transaction, keeping each outcome until it commits. On failure the
    /// books the run touched are evicted (memory may be ahead of what committed).
    async fn run_together(&mut self, owned: &HashMap<i16, i64>, jobs: &mut [Job]) -> anyhow::Result<()> {
        let mut touched = HashSet::new();
        let result = self.try_together(owned, jobs, &mut touched, None).await;
        if result.is_err() {
            for key in touched {
                self.books.remove(&key);
            }
        }
        result
    }

    async fn try_together(
        &mut self,
        owned: &HashMap<i16, i64>,
        jobs: &mut [Job],
        touched: &mut HashSet<BookKey>,
        only: Option<i64>,
    ) -> anyhow::Result<()> {
        let _transaction = sneakerstop_db::transaction_span("a batch on the books");
        let mut tx = self.pool.begin().await.context("begin a batch on the books")?;
        let fenced: HashMap<i16, i64> = if jobs.iter().any(|job| matches!(job.command, Command::Arrivals(_))) {
            owned.clone()
        } else {
            jobs.iter()
                .filter_map(|job| job.command.book())
                .map(|(product, _)| owners::shard(product))
                .filter_map(|shard| owned.get(&shard).map(|epoch| (shard, *epoch)))
                .collect()
        };
        owners::fence(&mut tx, self.ownership.member(), &fenced).await?;
        let mut run = Run {
            tx: &mut tx,
            now: Utc::now().trunc_subsecs(6),
            owned,
            touched: HashSet::new(),
            writes: Writes::default(),
        };
        let result = async {
            for job in jobs.iter_mut() {
                job.outcome = Some(self.apply(&mut run, &job.command, only).await?);
            }
            std::mem::take(&mut run.writes).write(run.tx).await
        }
        .await;
        touched.extend(run.touched.drain());
        result?;
        tx.commit().await.context("commit a batch on the books")?;
        Ok(())
    }

    async fn apply(&mut self, run: &mut Run<'_>, command: &Command, only: Option<i64>) -> anyhow::Result<Outcome> {
        Ok(match command {
            Command::Place(placing, _) => Outcome::Placed(internal(self.place(run, placing).await)?),
            Command::Cancel { id, buyer, product, size, .. } => {
                Outcome::Cancelled(internal(self.cancel(run, *id, *buyer, *product, *size).await)?)
            }
            Command::Arrivals(_) => Outcome::Arrivals(self.arrivals(run, only).await?),
        })
    }

    /// The book in memory, loaded if it is not.
    async fn book(&mut self, run: &mut Run<'_>, product: Uuid, size: f64) -> anyhow::Result<&mut OrderBook<Bid, Ask>> {
        let key = book_key(product, size);
        run.touched.insert(key);
        let epoch = *run.owned.get(&owners::shard(product)).context("a book of a shard this instance does not own")?;
        if let std::collections::hash_map::Entry::Vacant(vacant) = self.books.entry(key) {
            let mut book = OrderBook::default();
            for bid in store::book_bids(run.tx, product, size).await? {
                book.place_bid(resting_bid(bid), run.now);
            }
            // As they are: an ask that committed but never traded has its arrival still
            // pending, and taking it trades.
            for ask in store::book_asks(run.tx, product, size).await? {
                book.load_ask(resting_ask(ask));
            }
            metrics::counter!("market_books_loaded_total").increment(1);
            vacant.insert(Loaded { epoch, book });
        }
        Ok(&mut self.books.get_mut(&key).expect("just loaded").book)
    }

    async fn place(&mut self, run: &mut Run<'_>, placing: &Placing) -> Result<Placed, MarketError> {
        let Placing { buyer, key, new, product, has_payment_method } = placing;
        let (buyer, key) = (*buyer, key.as_ref());
        // Claimed, used and answered on the batch's transaction: a crash rolls the claim back
        // too. A retry in a later batch finds the first answer.
        let request = json!({"productId": new.product_id, "size": new.size, "priceCents": new.price_cents,
                             "expiresInDays": new.expires_in_days});
        let start =
            sneakerstop_idempotency::begin(run.tx, buyer, key, &request, sneakerstop_idempotency::WITHIN_TRANSACTION)
                .await?;
        if let sneakerstop_idempotency::Start::Answer(answer) = start {
            return Ok(Placed::Before(answer));
        }
        let now = run.now;
        let on_book = self.book(run, new.product_id, new.size).await?.bidder(buyer, now);
        let bidder = Bidder {
            has_payment_method: *has_payment_method,
            own_lowest_ask: on_book.own_lowest_ask,
            open_bids: on_book.open_bids,
            open_bids_allowed: self.max_open_bids,
        };
        let placed = match Bid::place(Uuid::now_v7(), buyer, new, product, bidder, now) {
            Ok(placed) => placed,
            Err(refusal) => {
                // Others' commands in the batch commit: the claim must not (a retry runs again).
                if let Some(key) = key {
                    sneakerstop_idempotency::release(run.tx, buyer, key).await?;
                }
                return Err(refusal.into());
            }
        };
        let trade = self.book(run, new.product_id, new.size).await?.place_bid(resting_bid(placed.bid.clone()), now);
        run.writes.place(&placed)?;
        let bid = match trade {
            Some(trade) => save_trade(run, trade)?,
            None => placed.bid,
        };
        let (bid_id, status) = (bid.id, bid.status);
        let view = serde_json::to_value(BidView::from(bid)).context("a bid view serializes")?;
        if let Some(key) = key {
            sneakerstop_idempotency::store(run.tx, buyer, key, StatusCode::CREATED.as_u16(), &view).await?;
        }
        Ok(Placed::Now(view, bid_id, status))
    }

    async fn cancel(
        &mut self,
        run: &mut Run<'_>,
        id: Uuid,
        buyer: Uuid,
        product: Uuid,
        size: f64,
    ) -> Result<Bid, MarketError> {
        let now = run.now;
        let book = self.book(run, product, size).await?;
        let bid = match book.bid(id) {
            Some(resting) => resting.payload.clone(),
            // Not on the book: matched or closed (by this batch, or before it), or past its
            // time and not swept yet.
            None => match run.writes.bid(id) {
                Some(written) => written.clone(),
                None => store::lock_bid(run.tx, id).await?.ok_or(MarketError::BidNotFound)?,
            },
        };
        let cancelled = bid.cancel(buyer, now)?;
        run.writes.change(&cancelled)?;
        self.book(run, product, size).await?.remove_bid(id);
        Ok(cancelled.bid)
    }

    /// Takes the pending arrivals of the books this instance owns (or only the one with id
    /// `only`), in the order they were recorded, onto their books.
    async fn arrivals(&mut self, run: &mut Run<'_>, only: Option<i64>) -> anyhow::Result<usize> {
        let shards: Vec<i16> = run.owned.keys().copied().collect();
        let arrivals = store::take_arrivals(run.tx, &shards, only).await?;
        if arrivals.is_empty() {
            return Ok(0);
        }
        // Where each arrived ask and bid is now, in two reads; each is taken once, however
        // often it changed since the last take.
        let (mut ask_ids, mut bid_ids) = (Vec::new(), Vec::new());
        for (_, _, arrival) in &arrivals {
            match *arrival {
                Arrival::Ask(id) => ask_ids.push(id),
                Arrival::Bid(id) => bid_ids.push(id),
            }
        }
        // As this batch left them: its writes are not in the database yet.
        let mut asks = store::asks_on_book(run.tx, &ask_ids).await?;
        asks.retain(|id, _| !run.writes.ask_taken(*id));
        let mut bids = store::bids_by_id(run.tx, &bid_ids).await?;
        for (id, bid) in &mut bids {
            if let Some(written) = run.writes.bid(*id) {
                written.clone_into(bid);
            }
        }
        let now = run.now;
        let mut taken = HashSet::new();
        for (product, size, arrival) in &arrivals {
            match *arrival {
                Arrival::Ask(id) if taken.insert(id) => match asks.remove(&id) {
                    Some(ask) => {
                        let (product, size) = (ask.product_id, ask.size);
                        if let Some(trade) = self.book(run, product, size).await?.place_ask(resting_ask(ask), now) {
                            save_trade(run, trade)?;
                        }
                    }
                    // Off its book (held, sold, expired, withdrawn), if it rested here.
                    None => {
                        if let Some(loaded) = self.books.get_mut(&book_key(*product, *size)) {
                            loaded.book.remove_ask(id);
                        }
                    }
                },
                Arrival::Bid(id) if taken.insert(id) => {
                    let Some(bid) = bids.remove(&id) else { continue };
                    if bid.is_live(now) {
                        let (product, size) = (bid.product_id, bid.size);
                        if let Some(trade) = self.book(run, product, size).await?.place_bid(resting_bid(bid), now) {
                            save_trade(run, trade)?;
                        }
                    }
                }
                Arrival::Ask(_) | Arrival::Bid(_) => {}
            }
        }
        Ok(arrivals.len())
    }

    /// Takes the pending arrivals one per transaction. One that fails counts an attempt and
    /// stays for the next round; at [`MAX_ATTEMPTS`] it is set aside
    /// (`market_pending_trades_set_aside`), for an operator to look at.
    async fn arrivals_one_by_one(&mut self, owned: &HashMap<i16, i64>) -> anyhow::Result<usize> {
        let shards: Vec<i16> = owned.keys().copied().collect();
        let mut taken = 0;
        let mut failed = None;
        for id in store::pending_trade_ids(&self.pool, &shards).await? {
            let mut job = Job { command: Command::Arrivals(None), outcome: None };
            let mut touched = HashSet::new();
            match self.try_together(owned, std::slice::from_mut(&mut job), &mut touched, Some(id)).await {
                Ok(()) => taken += 1,
                Err(error) => {
                    for key in touched {
                        self.books.remove(&key);
                    }
                    let message = format!("{error:#}");
                    if store::pending_trade_failed(&self.pool, id, &message, MAX_ATTEMPTS).await? {
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
            Some(error) => Err(error.context(format!("pending arrivals that did not trade remain (took {taken})"))),
            None => Ok(taken),
        }
    }
}

/// A database error in a command fails the batch; a refusal is the command's answer.
fn internal<T>(outcome: Result<T, MarketError>) -> anyhow::Result<Result<T, MarketError>> {
    match outcome {
        Err(MarketError::Internal(error) | MarketError::Key(KeyError::Internal(error))) => Err(error),
        outcome => Ok(outcome),
    }
}

/// Records a trade the book made, for the batch's write: the bid matched, the match, the
/// ask off the book, the events. Returns the bid as it now is.
fn save_trade(run: &mut Run<'_>, trade: Trade<Bid, Ask>) -> anyhow::Result<Bid> {
    let Trade { bid, ask, price_cents } = trade;
    let decided = bid
        .payload
        .trade(&ask.payload, Uuid::now_v7(), price_cents, run.now)
        .map_err(|refusal| anyhow::anyhow!("the book traded a bid the rules refuse: {refusal}"))?;
    run.writes.change(&decided)?;
    matched(&decided);
    Ok(decided.bid)
}

fn matched(traded: &Decision) {
    if let Some(made) = &traded.matched {
        metrics::counter!("market_matches_total").increment(1);
        tracing::info!(match_id = %made.id, bid_id = %made.bid_id, ask_id = %made.ask_id, price_cents = made.price_cents, "bid met ask");
    }
}

fn resting_bid(bid: Bid) -> Resting<Bid> {
    Resting {
        id: bid.id,
        owner: bid.buyer_id,
        price_cents: bid.price_cents,
        at: bid.created_at,
        expires_at: Some(bid.expires_at),
        payload: bid,
    }
}

fn resting_ask(ask: Ask) -> Resting<Ask> {
    Resting {
        id: ask.id,
        owner: ask.seller_id,
        price_cents: ask.price_cents,
        at: ask.listed_at,
        expires_at: ask.expires_at,
        payload: ask,
    }
}
