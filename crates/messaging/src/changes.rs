//! One `LISTEN` connection per process for every channel it follows, and the process's own
//! announcements of what it committed.
//!
//! A process that committed something others follow — outbox rows for the relays, replica
//! rows for requests waiting on them, a change to a market book — announces it
//! ([`ChangeFeed::announce`], through [`crate::announce`]): its own subscribers hear at once,
//! and the other processes by a `NOTIFY` sent *after* the commit, on a connection of its
//! own, one statement at a time per channel (announcements made meanwhile go together in
//! the next). These used to be insert triggers, notifying inside the writing transaction;
//! PostgreSQL then serialises the commits of every notifying transaction in the cluster on
//! one lock, held through the commit's WAL flush — no group commit — which capped outbox
//! inserts at a sixth of what the same inserts do without it, and made the consumers that
//! write replicas and books wait on each other's flushes (docs/performance.md).
//! A `NOTIFY` signals *every* backend listening in that database, whatever its channels, so
//! a process with four relays and the catalog's read cache, each on its own connection, cost five
//! signals and five wake-ups per commit. Following all channels on one connection costs one
//! (listings/s rose by a tenth on the bench machine; see docs/performance.md).
//!
//! Subscribers register a callback per channel before [`ChangeFeed::run`] connects. They
//! hear [`Signal::Notified`] for each notification on their channel (with its payload),
//! [`Signal::Connected`] each time the listener (re)connects, and [`Signal::Lost`] when it
//! loses its connection — notifications sent meanwhile are gone, so whoever caches must
//! assume a change.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

/// What a subscriber hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal<'a> {
    /// Something announced on the channel committed; its payload (what changed, when the
    /// channel's announcements say so; empty otherwise).
    Notified(&'a str),
    /// The listener is (again) connected and listening: from now on nothing is missed.
    Connected,
    /// The listener lost its connection; notifications may have been missed.
    Lost,
}

/// Where a cached answer came from, for caches kept fresh by the feed (sent as `x-cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSource {
    /// From memory.
    Hit,
    /// Read from PostgreSQL for this request, and kept.
    Miss,
    /// Read from PostgreSQL; the cache is off or its feed is not connected.
    Bypass,
}

impl CacheSource {
    /// `hit`, `miss` or `bypass`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }
}

type Callback = Arc<dyn Fn(Signal<'_>) + Send + Sync>;

/// The process's change feed. Cheap to clone; clones share subscribers.
#[derive(Clone, Default)]
pub struct ChangeFeed {
    subscribers: Arc<Mutex<HashMap<String, Vec<Callback>>>>,
    /// Where announcements are sent to other processes (set by [`Self::run`]).
    pool: Arc<OnceLock<PgPool>>,
    /// Channels with a `NOTIFY` being sent, and the payloads announced meanwhile (sent next).
    sending: Arc<Mutex<HashMap<String, BTreeSet<String>>>>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed").field("channels", &self.channels()).finish()
    }
}

impl ChangeFeed {
    /// An empty feed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `callback` with what happens on `channel`. Subscribe before [`Self::run`].
    pub fn subscribe(&self, channel: &str, callback: impl Fn(Signal<'_>) + Send + Sync + 'static) {
        self.lock().entry(channel.to_owned()).or_default().push(Arc::new(callback));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Callback>>> {
        // A callback never runs under the lock, so a poisoned map is still consistent.
        self.subscribers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn channels(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn tell(&self, channel: Option<&str>, signal: Signal<'_>) {
        let callbacks: Vec<Callback> = match channel {
            Some(channel) => self.lock().get(channel).cloned().unwrap_or_default(),
            None => self.lock().values().flatten().cloned().collect(),
        };
        for callback in callbacks {
            callback(signal);
        }
    }

    /// Something on `channel` committed in this process (`payload` says what, or is empty):
    /// tells this process's subscribers now, and the other processes' by a `NOTIFY` on
    /// `channel` with that payload. One statement at a time per channel: payloads announced
    /// while one is sent go together in the next. Call it only after the commit.
    pub fn announce(&self, channel: &str, payload: &str) {
        self.tell(Some(channel), Signal::Notified(payload));
        let Some(pool) = self.pool.get().cloned() else { return };
        {
            let mut sending = self.sending.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(next) = sending.get_mut(channel) {
                next.insert(payload.to_owned());
                return;
            }
            sending.insert(channel.to_owned(), BTreeSet::from([payload.to_owned()]));
        }
        let (sending, channel) = (self.sending.clone(), channel.to_owned());
        tokio::spawn(async move {
            loop {
                // Whatever was announced until now, in one statement.
                let payloads: Vec<String> = {
                    let mut sending = sending.lock().unwrap_or_else(PoisonError::into_inner);
                    let next = sending.get_mut(&channel).map(std::mem::take).unwrap_or_default();
                    if next.is_empty() {
                        sending.remove(&channel);
                        return;
                    }
                    next.into_iter().collect()
                };
                let sent = sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
                    .bind(&channel)
                    .bind(&payloads)
                    .execute(&pool)
                    .await;
                if let Err(error) = sent {
                    // The others' relays still poll; their caches expire; replica waits end.
                    tracing::warn!(error = %error, channel, "could not announce a commit to other processes");
                }
            }
        });
    }

    /// Listens on every subscribed channel until `cancel`, reconnecting with backoff, and
    /// sends this process's announcements on `pool` from now on.
    pub async fn run(self, pool: PgPool, cancel: CancellationToken) {
        let _ = self.pool.set(pool.clone());
        if self.lock().is_empty() {
            return;
        }
        let mut delay = Duration::from_millis(100);
        while !cancel.is_cancelled() {
            let mut connected = false;
            match self.listen(&pool, &cancel, &mut connected).await {
                Ok(()) => return,
                Err(error) => {
                    if connected {
                        delay = Duration::from_millis(100);
                    }
                    self.tell(None, Signal::Lost);
                    tracing::warn!(error = format!("{error:#}"), "change feed lost its connection; reconnecting");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn listen(&self, pool: &PgPool, cancel: &CancellationToken, connected: &mut bool) -> anyhow::Result<()> {
        let mut listener = PgListener::connect_with(pool).await.context("connect the change feed")?;
        let channels = self.channels();
        listener.listen_all(channels.iter().map(String::as_str)).await.context("LISTEN")?;
        *connected = true;
        self.tell(None, Signal::Connected);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                notification = listener.try_recv() => match notification.context("change feed")? {
                    Some(notification) => {
                        self.tell(Some(notification.channel()), Signal::Notified(notification.payload()));
                    }
                    None => anyhow::bail!("the change feed's connection was closed"),
                },
            }
        }
    }
}
