//! One `LISTEN` connection per process for every channel it follows, and the process's own
//! announcements of what it committed.
//!
//! A process that committed something others follow — outbox rows for the relays, replica
//! rows for requests waiting on them, a change to a market book — announces it
//! ([`ChangeFeed::announce`], through [`crate::announce`]): its own subscribers hear at once,
//! and the other processes by a `NOTIFY` sent *after* the commit, on a connection of its
//! own, one statement at a time for every channel (announcements made meanwhile go
//! together in the next). The listener knows that connection's backend by its pid and
//! does not tell its own announcements a second time.
//!
//! These used to be insert triggers, notifying inside the writing transaction; PostgreSQL
//! then serialises the commits of every notifying transaction in the cluster on one lock,
//! held through the commit's WAL flush — no group commit — which capped outbox inserts at a
//! sixth of what the same inserts do without it, and made the consumers that write replicas
//! and books wait on each other's flushes (docs/performance.md). A `NOTIFY` signals *every*
//! backend listening in that database, whatever its channels, so a process with four
//! relays and the catalog's read cache, each on its own connection, cost five
//! signals and five wake-ups per commit. Following all channels on one connection costs one
//! (listings/s rose by a tenth on the bench machine; see docs/performance.md).
//!
//! Subscribers register a callback per channel before [`ChangeFeed::run`] connects. They
//! hear [`Signal::Notified`] for each notification on their channel (with its payload),
//! [`Signal::Connected`] each time the listener (re)connects, and [`Signal::Lost`] when it
//! loses its connection — notifications sent meanwhile are gone, so whoever caches must
//! assume a change.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
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

/// This process's announcements on their way to the other processes.
#[derive(Default)]
struct Outgoing {
    /// Whether a task is sending them.
    sending: bool,
    /// The channel and payload of each announcement not sent yet.
    waiting: BTreeSet<(String, String)>,
}

/// The process's change feed. Cheap to clone; clones share subscribers.
#[derive(Clone, Default)]
pub struct ChangeFeed {
    subscribers: Arc<Mutex<HashMap<String, Vec<Callback>>>>,
    /// Where announcements are sent to other processes (set by [`Self::run`]).
    pool: Arc<OnceLock<PgPool>>,
    outgoing: Arc<Mutex<Outgoing>>,
    /// The one connection announcements are sent on (by one task at a time), so that the
    /// listener can tell this process's own notifications by its backend's pid.
    sender: Arc<tokio::sync::Mutex<Option<PgConnection>>>,
    /// That backend's pid; 0 while there is none.
    sender_pid: Arc<AtomicU32>,
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
    /// `channel` with that payload. One statement at a time carries every announcement
    /// waiting (whatever the channel); those made while it is sent go in the next. Call it
    /// only after the commit.
    pub fn announce(&self, channel: &str, payload: &str) {
        self.tell(Some(channel), Signal::Notified(payload));
        let Some(pool) = self.pool.get().cloned() else { return };
        {
            let mut outgoing = self.outgoing.lock().unwrap_or_else(PoisonError::into_inner);
            outgoing.waiting.insert((channel.to_owned(), payload.to_owned()));
            if std::mem::replace(&mut outgoing.sending, true) {
                return;
            }
        }
        let feed = self.clone();
        tokio::spawn(async move { feed.send_waiting(&pool).await });
    }

    /// Sends the waiting announcements until none is left.
    async fn send_waiting(&self, pool: &PgPool) {
        loop {
            let waiting = {
                let mut outgoing = self.outgoing.lock().unwrap_or_else(PoisonError::into_inner);
                if outgoing.waiting.is_empty() {
                    outgoing.sending = false;
                    return;
                }
                std::mem::take(&mut outgoing.waiting)
            };
            let (channels, payloads): (Vec<String>, Vec<String>) = waiting.into_iter().unzip();
            // Once more on a new connection if the first failed (one closed while idle).
            let mut sent = self.notify(pool, &channels, &payloads).await;
            if sent.is_err() {
                sent = self.notify(pool, &channels, &payloads).await;
            }
            if let Err(error) = sent {
                // The others' relays still poll; their caches expire; replica waits end.
                tracing::warn!(error = format!("{error:#}"), "could not announce commits to other processes");
            }
        }
    }

    /// One `NOTIFY` per channel and payload, in one statement on the sender's connection.
    async fn notify(&self, pool: &PgPool, channels: &[String], payloads: &[String]) -> anyhow::Result<()> {
        let mut sender = self.sender.lock().await;
        let connection = match &mut *sender {
            Some(connection) => connection,
            None => {
                let mut connection =
                    PgConnection::connect_with(&pool.connect_options()).await.context("connect the announcer")?;
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut connection)
                    .await
                    .context("the announcer's pid")?;
                self.sender_pid.store(pid.unsigned_abs(), Ordering::SeqCst);
                sender.insert(connection)
            }
        };
        let sent = sqlx::query("SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)")
            .bind(channels)
            .bind(payloads)
            .execute(connection)
            .await;
        if sent.is_err() {
            // Connect again next time.
            self.sender_pid.store(0, Ordering::SeqCst);
            *sender = None;
        }
        sent.map(drop).context("NOTIFY")
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
                    // This process's own announcements were told when they were made.
                    Some(notification) if notification.process_id() == self.sender_pid.load(Ordering::SeqCst) => {}
                    Some(notification) => {
                        self.tell(Some(notification.channel()), Signal::Notified(notification.payload()));
                    }
                    None => anyhow::bail!("the change feed's connection was closed"),
                },
            }
        }
    }
}
