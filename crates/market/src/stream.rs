//! Live market data: a product page subscribes once (`GET /api/products/{id}/market/stream`,
//! Server-Sent Events) and is sent the product's market whenever it changes, instead of
//! polling.
//!
//! Every change to a book — an ask or bid written, a sale — notifies `market_book` when it
//! commits (a trigger), on whichever instance made it. Each process hears those on its one
//! `LISTEN` connection and bumps a generation; each open stream wakes on it, waits out the
//! stream interval (so a burst of changes is one read), reads its product's market and sends
//! it if it differs from what that client last got. Clients on any instance see changes made
//! on any other. A client that reconnects is sent the current market first.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The process's live streams: the generation of book changes they wait on.
#[derive(Debug, Clone)]
pub struct Streams {
    changed: Arc<watch::Sender<u64>>,
    open: Arc<AtomicUsize>,
    interval: Duration,
}

impl Streams {
    /// Streams that send at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self { changed: Arc::new(watch::Sender::new(0)), open: Arc::new(AtomicUsize::new(0)), interval }
    }

    /// Wakes the streams on every book change `feed` hears (and when it reconnects, since
    /// changes may have been missed).
    pub fn follow(&self, feed: &ChangeFeed) {
        let changed = self.changed.clone();
        feed.subscribe(CHANNEL, move |signal| {
            if matches!(signal, Signal::Notified | Signal::Connected) {
                changed.send_modify(|generation| *generation += 1);
            }
        });
    }

    /// Wakes the streams now (for tests without a change feed).
    pub fn poke(&self) {
        self.changed.send_modify(|generation| *generation += 1);
    }

    /// How many streams are open.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
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
        let mut changes = self.changed.subscribe();
        changes.mark_unchanged();
        let interval = self.interval;
        let events = futures::stream::unfold(
            (Some(first), None::<MarketView>, changes, guard),
            move |(pending, last, mut changes, guard)| {
                let pool = pool.clone();
                async move {
                    let mut next = pending;
                    loop {
                        if let Some(view) = next.take().filter(|view| last.as_ref() != Some(view)) {
                            let event = Event::default().event("market").json_data(&view).ok()?;
                            return Some((Ok(event), (None, Some(view), changes, guard)));
                        }
                        changes.changed().await.ok()?;
                        tokio::time::sleep(interval).await;
                        changes.mark_unchanged();
                        match store::market(&pool, product).await {
                            Ok(sizes) => next = Some(MarketView::new(product, sizes)),
                            Err(error) => tracing::warn!(error = format!("{error:#}"), "market stream read failed"),
                        }
                    }
                }
            },
        );
        Some(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
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
