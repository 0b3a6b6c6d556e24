//! Live market data: a product page subscribes once (`GET /api/products/{id}/market/stream`,
//! Server-Sent Events) and is sent the product's market whenever it changes, instead of
//! polling.
//!
//! Every change to a book — an ask or bid written, a sale — notifies `market_book` when it
//! commits (a trigger), on whichever instance made it. Each process hears those on its one
//! `LISTEN` connection and bumps a generation. Each product that has open streams in the
//! process has one reader: it wakes on the generation, waits out the stream interval (so a
//! burst of changes is one read), reads the product's market once and hands it to all of
//! that product's streams, each of which sends it if it differs from what its client last
//! got. So a release-day page watched by thousands costs one read per interval, not one per
//! watcher. Clients on any instance see changes made on any other. A client that reconnects
//! is sent the current market first.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use sneakerstop_messaging::{ChangeFeed, Signal};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::http::MarketView;
use crate::store;

/// The most streams one process keeps open; beyond it, new ones are refused with 503.
pub const MAX_STREAMS: usize = 10_000;
/// The notification channel of book changes.
pub const CHANNEL: &str = "market_book";

/// A product's latest market, as its reader last read it (`None` before the first read).
type Latest = watch::Sender<Option<Arc<MarketView>>>;

/// The process's live streams: the generation of book changes, and a reader per product
/// being watched.
#[derive(Debug, Clone)]
pub struct Streams {
    changed: Arc<watch::Sender<u64>>,
    readers: Arc<Mutex<HashMap<Uuid, Arc<Latest>>>>,
    open: Arc<AtomicUsize>,
    interval: Duration,
}

impl Streams {
    /// Streams that send at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            changed: Arc::new(watch::Sender::new(0)),
            readers: Arc::default(),
            open: Arc::new(AtomicUsize::new(0)),
            interval,
        }
    }

    /// Wakes the readers on every book change `feed` hears (and when it reconnects, since
    /// changes may have been missed).
    pub fn follow(&self, feed: &ChangeFeed) {
        let changed = self.changed.clone();
        feed.subscribe(CHANNEL, move |signal| {
            if matches!(signal, Signal::Notified | Signal::Connected) {
                changed.send_modify(|generation| *generation += 1);
            }
        });
    }

    /// Wakes the readers now (for tests without a change feed).
    pub fn poke(&self) {
        self.changed.send_modify(|generation| *generation += 1);
    }

    /// How many streams are open.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// How many products have a reader (one per product with open streams).
    pub fn readers(&self) -> usize {
        self.readers.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// A stream of `product`'s market, or `None` when the process has [`MAX_STREAMS`] open.
    pub fn subscribe(
        &self,
        pool: PgPool,
        product: Uuid,
        first: MarketView,
    ) -> Option<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>> {
        if self.open.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
            self.open.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        metrics::gauge!("market_streams_open").increment(1.0);
        let guard = OpenStream(self.open.clone());
        let mut latest = self.reader(pool, product);
        latest.mark_unchanged();
        let events = futures::stream::unfold(
            (Some(Arc::new(first)), None::<Arc<MarketView>>, latest, guard),
            move |(pending, last, mut latest, guard)| async move {
                let mut next = pending;
                loop {
                    if let Some(view) = next.take().filter(|view| last.as_ref() != Some(view)) {
                        let event = Event::default().event("market").json_data(&*view).ok()?;
                        return Some((Ok(event), (None, Some(view), latest, guard)));
                    }
                    latest.changed().await.ok()?;
                    next = latest.borrow_and_update().clone();
                }
            },
        );
        Some(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
    }

    /// The product's reader, started if it has none; it stops once no stream watches it.
    fn reader(&self, pool: PgPool, product: Uuid) -> watch::Receiver<Option<Arc<MarketView>>> {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(latest) = readers.get(&product) {
            return latest.subscribe();
        }
        let latest = Arc::new(watch::Sender::new(None));
        let watching = latest.subscribe();
        readers.insert(product, latest.clone());
        let (streams, mut changes) = (self.clone(), self.changed.subscribe());
        changes.mark_unchanged();
        tokio::spawn(async move {
            loop {
                if changes.changed().await.is_err() {
                    return;
                }
                tokio::time::sleep(streams.interval).await;
                changes.mark_unchanged();
                if streams.stop_unwatched(product, &latest) {
                    return;
                }
                match store::market(&pool, product).await {
                    Ok(sizes) => {
                        let view = Arc::new(MarketView::new(product, sizes));
                        latest.send_if_modified(|current| {
                            let modified = current.as_ref() != Some(&view);
                            *current = Some(view);
                            modified
                        });
                    }
                    Err(error) => tracing::warn!(error = format!("{error:#}"), "market stream read failed"),
                }
            }
        });
        watching
    }

    /// Removes the product's reader if no stream watches it any more (under the map's
    /// lock, where new streams subscribe, so none is left without a reader).
    fn stop_unwatched(&self, product: Uuid, latest: &Latest) -> bool {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if latest.receiver_count() > 0 {
            return false;
        }
        readers.remove(&product);
        true
    }
}

/// Counts a stream as open until it is dropped (the client went away).
#[derive(Debug)]
struct OpenStream(Arc<AtomicUsize>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("market_streams_open").decrement(1.0);
    }
}
