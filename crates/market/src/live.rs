//! Market data from memory: what `GET /api/products/{id}/market` answers and what live
//! streams (`…/market/stream`, Server-Sent Events) send.
//!
//! A product page is the market's most asked-for read, and on release day thousands ask for
//! the same product while its book changes many times a second. Every change to a book — an
//! ask or bid written, a sale — is announced on `market_book` with the product's id once
//! it has committed ([`book_changed`]), by whichever instance made it: at once to itself,
//! by a `NOTIFY` to the others. Each process hears those on its one `LISTEN` connection and
//! starts a new *generation* of that product (of that product only).
//!
//! - A read of a product's market is kept with the generation it began in, and answers
//!   requests until the product's next change (or until `max_age` has passed: the backstop,
//!   should a notification ever go missing).
//! - A request that finds the read stale waits for the product's turn to read (one read per
//!   product at a time). By then the read made meanwhile may answer it: if the product has
//!   not changed since that read began, or if that read began after the request arrived (it
//!   saw everything the request could have). Otherwise it reads itself. So a busy product
//!   costs one read at a time, whatever the number of requests, and no request is answered
//!   with a market older than the last change heard before it arrived.
//! - This process's own bid placements and cancellations start a new generation as soon as
//!   they commit ([`Markets::changed`]), so buyers see their bids at once; changes made
//!   elsewhere are seen once their notification arrives, milliseconds after the commit.
//! - Until the listener is connected, and whenever it loses its connection (notifications
//!   may have been missed), every request reads PostgreSQL; each (re)connection starts a new
//!   generation of every product.
//! - Each product with open streams has one reader: it wakes on the product's generation,
//!   waits out the stream interval (so a burst of changes is one read), reads as a request
//!   does and hands the result to all of that product's streams, each of which sends it if
//!   it differs from what its client last got. Clients on any instance see changes made on
//!   any other; a client that reconnects is sent the current market first.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use sneakerstop_messaging::{CacheSource, ChangeFeed, Signal};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::http::MarketView;
use crate::store;

/// The most streams one process keeps open; beyond it, new ones are refused with 503.
pub const MAX_STREAMS: usize = 10_000;
/// The notification channel of book changes; the payload is the product's id.
pub const CHANNEL: &str = "market_book";
/// Products whose market a process remembers; past it, those nobody watches are forgotten.
const MAX_PRODUCTS: usize = 10_000;

/// Records that the current unit of work changed `product`'s book (an ask or bid written, a
/// sale): once it has committed, every process's reads of the product are stale
/// ([`sneakerstop_messaging::announce`]).
pub fn book_changed(product: Uuid) {
    sneakerstop_messaging::announce::changed(CHANNEL, &product.to_string());
}

/// A read of a product's market.
#[derive(Debug, Clone)]
struct Read {
    view: Arc<MarketView>,
    /// The product's generation when the read began.
    generation: u64,
    began: Instant,
}

/// What the process knows of one product's market.
#[derive(Debug)]
struct Book {
    /// Starts again (+1) at every change heard; the stream reader waits on it.
    generation: watch::Sender<u64>,
    /// The latest read; every open stream of the product watches it.
    read: watch::Sender<Option<Read>>,
    /// One read at a time.
    reading: tokio::sync::Mutex<()>,
    /// Requests waiting for their turn to read.
    queued: AtomicUsize,
    /// Whether a stream reader runs for the product.
    reader: AtomicBool,
}

impl Book {
    fn new() -> Self {
        Self {
            generation: watch::Sender::new(0),
            read: watch::Sender::new(None),
            reading: tokio::sync::Mutex::new(()),
            queued: AtomicUsize::new(0),
            reader: AtomicBool::new(false),
        }
    }

    fn changed(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// The latest read, if it can answer a request that arrived at `arrived`.
    fn fresh(&self, arrived: Instant, max_age: Duration) -> Option<Arc<MarketView>> {
        let read = self.read.borrow();
        let read = read.as_ref()?;
        let unchanged = read.generation == *self.generation.borrow() && read.began.elapsed() <= max_age;
        (unchanged || read.began >= arrived).then(|| read.view.clone())
    }

    /// Nobody streams it and nobody is reading it.
    fn idle(&self) -> bool {
        self.read.receiver_count() == 0 && !self.reader.load(Ordering::SeqCst) && self.reading.try_lock().is_ok()
    }
}

#[derive(Debug)]
struct Inner {
    books: Mutex<HashMap<Uuid, Arc<Book>>>,
    /// Whether changes are being heard: reads are kept only while they are.
    live: AtomicBool,
    open: AtomicUsize,
    interval: Duration,
    max_age: Duration,
}

/// The process's market data: the latest read of each product asked for, and the live
/// streams. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Markets {
    inner: Arc<Inner>,
}

impl Markets {
    /// Markets whose streams send at most once per `interval`, and whose reads answer for
    /// at most `max_age` (`Duration::ZERO`: every request reads PostgreSQL). Until
    /// [`Self::follow`]'s feed connects, every request reads PostgreSQL.
    pub fn new(interval: Duration, max_age: Duration) -> Self {
        let inner = Inner {
            books: Mutex::default(),
            live: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            interval,
            max_age,
        };
        Self { inner: Arc::new(inner) }
    }

    /// Hears every book change on `feed`: the product's reads are stale from then on. Reads
    /// are kept only while the feed is connected, and each (re)connection makes every read
    /// stale, since changes may have been missed. Subscribe before the feed runs.
    pub fn follow(&self, feed: &ChangeFeed) {
        let markets = self.clone();
        feed.subscribe(CHANNEL, move |signal| match signal {
            Signal::Notified(payload) => match Uuid::try_parse(payload) {
                Ok(product) => markets.changed(product),
                Err(_) => markets.all_changed(),
            },
            Signal::Connected => {
                // Live first: a read that begins after the new generation is kept.
                markets.inner.live.store(!markets.inner.max_age.is_zero(), Ordering::SeqCst);
                markets.all_changed();
            }
            Signal::Lost => {
                markets.inner.live.store(false, Ordering::SeqCst);
                markets.all_changed();
            }
        });
    }

    /// `product`'s book changed: its reads are stale and its streams read it again.
    pub fn changed(&self, product: Uuid) {
        if let Some(book) = self.books().get(&product) {
            book.changed();
        }
    }

    fn all_changed(&self) {
        for book in self.books().values() {
            book.changed();
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Book>>> {
        // No code panics under the lock's guard, so a poisoned map is still consistent.
        self.inner.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `product`'s book, remembered from now on (forgetting idle ones past
    /// [`MAX_PRODUCTS`]).
    fn book(books: &mut HashMap<Uuid, Arc<Book>>, product: Uuid) -> Arc<Book> {
        if let Some(book) = books.get(&product) {
            return book.clone();
        }
        if books.len() >= MAX_PRODUCTS {
            books.retain(|_, book| !book.idle());
        }
        books.entry(product).or_insert_with(|| Arc::new(Book::new())).clone()
    }

    /// `product`'s market now (`None`: the market has not heard of the product), and where
    /// it came from.
    pub async fn market(&self, pool: &PgPool, product: Uuid) -> anyhow::Result<(Option<Arc<MarketView>>, CacheSource)> {
        let outcome = self.lookup(pool, product).await;
        if let Ok((_, source)) = &outcome {
            metrics::counter!("market_cache_requests_total", "result" => source.as_str()).increment(1);
        }
        outcome
    }

    async fn lookup(&self, pool: &PgPool, product: Uuid) -> anyhow::Result<(Option<Arc<MarketView>>, CacheSource)> {
        let arrived = Instant::now();
        let book = Self::book(&mut self.books(), product);
        let (view, source) = if self.inner.live.load(Ordering::SeqCst) {
            if let Some(view) = book.fresh(arrived, self.inner.max_age) {
                return Ok((Some(view), CacheSource::Hit));
            }
            let waiting = Waiting::count(&book.queued);
            let _turn = book.reading.lock().await;
            drop(waiting);
            if let Some(view) = book.fresh(arrived, self.inner.max_age) {
                return Ok((Some(view), CacheSource::Hit));
            }
            (read(pool, product, &book).await?, CacheSource::Miss)
        } else {
            (read(pool, product, &book).await?, CacheSource::Bypass)
        };
        if view.is_none() {
            self.forget_if_idle(product, &book);
        }
        Ok((view, source))
    }

    /// Forgets a product the market has not heard of, unless somebody uses its book.
    fn forget_if_idle(&self, product: Uuid, book: &Arc<Book>) {
        let mut books = self.books();
        if book.idle() && books.get(&product).is_some_and(|kept| Arc::ptr_eq(kept, book)) {
            books.remove(&product);
        }
    }

    /// How many requests wait for `product`'s turn to read (for tests).
    pub fn queued(&self, product: Uuid) -> usize {
        self.books().get(&product).map_or(0, |book| book.queued.load(Ordering::SeqCst))
    }

    /// How many streams are open.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::SeqCst)
    }

    /// How many products have a stream reader (one per product with open streams).
    pub fn readers(&self) -> usize {
        self.books().values().filter(|book| book.reader.load(Ordering::SeqCst)).count()
    }

    /// A stream of `product`'s market starting with `first`, or `None` when the process has
    /// [`MAX_STREAMS`] open.
    pub fn subscribe(
        &self,
        pool: PgPool,
        product: Uuid,
        first: Arc<MarketView>,
    ) -> Option<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>> {
        if self.inner.open.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
            self.inner.open.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        metrics::gauge!("market_streams_open").increment(1.0);
        let guard = OpenStream(self.inner.clone());
        let mut latest = self.watch(pool, product);
        latest.mark_unchanged();
        let events = futures::stream::unfold(
            (Some(first), None::<Arc<MarketView>>, latest, guard),
            move |(pending, last, mut latest, guard)| async move {
                let mut next = pending;
                loop {
                    if let Some(view) = next.take().filter(|view| last.as_ref() != Some(view)) {
                        let event = Event::default().event("market").json_data(&*view).ok()?;
                        return Some((Ok(event), (None, Some(view), latest, guard)));
                    }
                    latest.changed().await.ok()?;
                    next = latest.borrow_and_update().as_ref().map(|read| read.view.clone());
                }
            },
        );
        Some(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
    }

    /// Watches `product`'s reads, starting its stream reader if it has none; the reader
    /// stops once no stream watches the product.
    fn watch(&self, pool: PgPool, product: Uuid) -> watch::Receiver<Option<Read>> {
        // Under the map's lock, where the reader decides to stop and idle books are
        // forgotten: no stream is left without a reader, or watching a forgotten book.
        let mut books = self.books();
        let book = Self::book(&mut books, product);
        let watching = book.read.subscribe();
        if !book.reader.swap(true, Ordering::SeqCst) {
            tokio::spawn(self.clone().read_for_streams(pool, product, book.clone()));
        }
        watching
    }

    async fn read_for_streams(self, pool: PgPool, product: Uuid, book: Arc<Book>) {
        let mut changes = book.generation.subscribe();
        changes.mark_unchanged();
        loop {
            if changes.changed().await.is_err() {
                return;
            }
            tokio::time::sleep(self.inner.interval).await;
            changes.mark_unchanged();
            if self.stop_unwatched(&book) {
                return;
            }
            if let Err(error) = self.lookup(&pool, product).await {
                tracing::warn!(error = format!("{error:#}"), "market stream read failed");
            }
        }
    }

    /// Stops the product's reader if no stream watches it any more (under the map's lock,
    /// where new streams subscribe).
    fn stop_unwatched(&self, book: &Book) -> bool {
        let _books = self.books();
        if book.read.receiver_count() > 0 {
            return false;
        }
        book.reader.store(false, Ordering::SeqCst);
        true
    }
}

/// `product`'s market read from PostgreSQL (`None` if the market has not heard of it), kept
/// as its book's latest read unless a later one was kept meanwhile.
async fn read(pool: &PgPool, product: Uuid, book: &Book) -> anyhow::Result<Option<Arc<MarketView>>> {
    let (generation, began) = (*book.generation.borrow(), Instant::now());
    let sizes = store::market(pool, product).await?;
    if sizes.is_empty() {
        return Ok(None);
    }
    let view = Arc::new(MarketView::new(product, sizes));
    book.read.send_if_modified(|latest| {
        if latest.as_ref().is_some_and(|latest| latest.began > began) {
            return false;
        }
        let modified = latest.as_ref().is_none_or(|latest| latest.view != view);
        *latest = Some(Read { view: view.clone(), generation, began });
        modified
    });
    Ok(Some(view))
}

/// Counts a request as waiting for its product's turn to read until it is dropped (it got
/// the turn, or its client went away while it waited).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(queued: &'a AtomicUsize) -> Self {
        queued.fetch_add(1, Ordering::SeqCst);
        Self(queued)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a stream as open until it is dropped (the client went away).
#[derive(Debug)]
struct OpenStream(Arc<Inner>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("market_streams_open").decrement(1.0);
    }
}
