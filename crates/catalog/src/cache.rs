//! The read cache in front of browsing: rendered pages of `GET /api/sneakers` and single
//! listings of `GET /api/sneakers/{id}`, kept until the catalog changes.
//!
//! Browsing is most of a marketplace's traffic, and on release day thousands of buyers ask
//! for the same few pages. Every answer is cached as the JSON bytes sent, under the
//! cache's current *generation*; any change to the catalog starts a new generation, so the
//! next request misses and reads PostgreSQL again. Concurrent misses on one key share one
//! query (the cache's single-flight loading).
//!
//! How a change reaches the generation:
//! - every catalog write commits an outbox row, and the process that committed it announces
//!   `catalog_outbox` (`sneakerstop_messaging::announce`: to itself at once, to the others by
//!   a `NOTIFY` after the commit); [`ReadCache::follow`] hears that channel on the process's
//!   change feed and starts a new generation for each announcement — from this process or
//!   any other replica, after the commit;
//! - this process's own HTTP writes also start one as soon as they commit
//!   ([`ReadCache::invalidate`]), so a seller sees a new listing at once.
//!
//! Until the listener is connected, and whenever it loses its connection (notifications
//! may have been missed), the cache is bypassed and a new generation starts. An entry also
//! expires after `max_age` regardless, the backstop should a notification ever go missing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use quick_cache::Weighter;
use sneakerstop_messaging::{CacheSource, ChangeFeed, Signal};
use uuid::Uuid;

/// Bytes of cached bodies a process keeps at most (least recently used go first).
const CAPACITY_BYTES: u64 = 32 * 1024 * 1024;

/// What a cached answer is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A page of `GET /api/sneakers`, by its query string.
    Page(String),
    /// One listing.
    Listing(Uuid),
}

/// A cached answer: the JSON body as sent, and the listing's version for its `ETag`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The response body.
    pub body: Bytes,
    /// The listing's version (single listings only).
    pub version: Option<i64>,
    stored: Instant,
}

impl Entry {
    /// An answer to cache.
    pub fn new(body: Bytes, version: Option<i64>) -> Self {
        Self { body, version, stored: Instant::now() }
    }
}

#[derive(Debug, Clone)]
struct BodyBytes;

impl Weighter<(u64, Key), Entry> for BodyBytes {
    fn weight(&self, _key: &(u64, Key), entry: &Entry) -> u64 {
        // A little for the key and bookkeeping, so tiny entries still count.
        entry.body.len() as u64 + 128
    }
}

#[derive(Debug)]
struct Inner {
    entries: quick_cache::sync::Cache<(u64, Key), Entry, BodyBytes>,
    generation: AtomicU64,
    /// Whether changes are being heard: the cache is used only while they are.
    live: AtomicBool,
    max_age: Duration,
}

/// The catalog's read cache. Cheap to clone; clones share entries.
#[derive(Debug, Clone)]
pub struct ReadCache {
    inner: Option<Arc<Inner>>,
}

impl ReadCache {
    /// A cache whose entries live at most `max_age`; `Duration::ZERO` disables caching.
    /// It serves nothing until it hears changes: see [`Self::follow`].
    pub fn new(max_age: Duration) -> Self {
        if max_age.is_zero() {
            return Self::disabled();
        }
        let entries = quick_cache::sync::Cache::with_weighter(4096, CAPACITY_BYTES, BodyBytes);
        let inner = Inner { entries, generation: AtomicU64::new(0), live: AtomicBool::new(false), max_age };
        Self { inner: Some(Arc::new(inner)) }
    }

    /// No caching: every request reads PostgreSQL.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// The cached answer for `key`, or `load`'s (cached if it succeeds). One load runs per
    /// key at a time; concurrent callers wait for it.
    pub async fn get_or_load<E>(
        &self,
        key: Key,
        load: impl Future<Output = Result<Entry, E>>,
    ) -> Result<(Entry, CacheSource), E> {
        let outcome = self.lookup(key, load).await;
        if let Ok((_, source)) = &outcome {
            metrics::counter!("catalog_cache_requests_total", "result" => source.as_str()).increment(1);
        }
        outcome
    }

    async fn lookup<E>(
        &self,
        key: Key,
        load: impl Future<Output = Result<Entry, E>>,
    ) -> Result<(Entry, CacheSource), E> {
        let Some(inner) = self.inner.as_ref().filter(|inner| inner.live.load(Ordering::Acquire)) else {
            return load.await.map(|entry| (entry, CacheSource::Bypass));
        };
        let key = (inner.generation.load(Ordering::Acquire), key);
        if let Some(entry) = inner.entries.get(&key) {
            if entry.stored.elapsed() <= inner.max_age {
                return Ok((entry, CacheSource::Hit));
            }
            inner.entries.remove(&key);
        }
        let mut loaded = false;
        let entry = inner
            .entries
            .get_or_insert_async(&key, async {
                loaded = true;
                load.await
            })
            .await?;
        Ok((entry, if loaded { CacheSource::Miss } else { CacheSource::Hit }))
    }

    /// The current generation (it grows by one per change heard); 0 when disabled.
    pub fn generation(&self) -> u64 {
        self.inner.as_ref().map_or(0, |inner| inner.generation.load(Ordering::Acquire))
    }

    /// Starts a new generation: nothing cached so far is served again.
    pub fn invalidate(&self) {
        if let Some(inner) = &self.inner {
            inner.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn set_live(&self, live: bool) {
        if let Some(inner) = &self.inner {
            inner.live.store(live, Ordering::Release);
        }
    }

    /// Follows committed catalog changes on `feed`'s `channel` (`catalog_outbox`): each
    /// notification starts a new generation; while the feed is not connected the cache is
    /// bypassed, and each (re)connection starts a new generation, since a notification may
    /// have been missed. Subscribe before the feed runs.
    pub fn follow(&self, feed: &ChangeFeed, channel: &str) {
        if self.inner.is_none() {
            return;
        }
        let cache = self.clone();
        feed.subscribe(channel, move |signal| match signal {
            Signal::Notified(_) => cache.invalidate(),
            Signal::Connected => {
                cache.invalidate();
                cache.set_live(true);
            }
            Signal::Lost => {
                cache.set_live(false);
                cache.invalidate();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(max_age: Duration) -> ReadCache {
        let cache = ReadCache::new(max_age);
        cache.set_live(true);
        cache
    }

    async fn get(cache: &ReadCache, key: &str, body: &'static str) -> (Bytes, CacheSource) {
        let (entry, source) = cache
            .get_or_load(Key::Page(key.into()), async {
                Ok::<_, ()>(Entry::new(Bytes::from_static(body.as_bytes()), None))
            })
            .await
            .unwrap();
        (entry.body, source)
    }

    #[tokio::test]
    async fn serves_what_it_loaded_until_invalidated() {
        let cache = live(Duration::from_secs(60));
        assert_eq!(get(&cache, "q", "first").await, (Bytes::from_static(b"first"), CacheSource::Miss));
        assert_eq!(get(&cache, "q", "second").await, (Bytes::from_static(b"first"), CacheSource::Hit));
        assert_eq!(get(&cache, "other", "third").await.0, Bytes::from_static(b"third"), "keys are separate");
        cache.invalidate();
        assert_eq!(get(&cache, "q", "fourth").await, (Bytes::from_static(b"fourth"), CacheSource::Miss));
    }

    #[tokio::test]
    async fn is_bypassed_until_it_hears_changes_and_when_disabled() {
        let cold = ReadCache::new(Duration::from_secs(60));
        get(&cold, "q", "first").await;
        assert_eq!(get(&cold, "q", "second").await, (Bytes::from_static(b"second"), CacheSource::Bypass));
        let disabled = ReadCache::new(Duration::ZERO);
        disabled.set_live(true);
        get(&disabled, "q", "first").await;
        assert_eq!(get(&disabled, "q", "second").await.0, Bytes::from_static(b"second"));
    }

    #[tokio::test]
    async fn entries_expire_after_max_age() {
        // A nanosecond has always passed by the next lookup.
        let cache = live(Duration::from_nanos(1));
        get(&cache, "q", "first").await;
        assert_eq!(get(&cache, "q", "second").await, (Bytes::from_static(b"second"), CacheSource::Miss));
    }

    #[tokio::test]
    async fn failed_loads_are_not_cached() {
        let cache = live(Duration::from_secs(60));
        let failed = cache.get_or_load(Key::Listing(Uuid::nil()), async { Err::<Entry, _>("down") }).await;
        assert_eq!(failed.unwrap_err(), "down");
        let (entry, source) = cache
            .get_or_load(Key::Listing(Uuid::nil()), async {
                Ok::<_, ()>(Entry::new(Bytes::from_static(b"ok"), Some(3)))
            })
            .await
            .unwrap();
        assert_eq!((entry.body, entry.version, source), (Bytes::from_static(b"ok"), Some(3), CacheSource::Miss));
    }
}
