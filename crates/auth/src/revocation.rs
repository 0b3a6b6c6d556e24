//! Sessions ended before their token expired, and how every process learns of them.
//!
//! A session token names its session (`sid`). Signing out, signing out everywhere and
//! changing a password end sessions in identity, which records each one in its
//! `revoked_sessions` table and publishes `session.revoked`; every other service records the
//! event in a `revoked_sessions` table of its own (the same shared migration). Checking a
//! request must not cost a database round trip, so each process keeps the revoked sessions
//! it knows in memory ([`Revocations`], consulted by [`crate::SessionKeys::user_of`]), and a
//! [`Follower`] copies new rows into it:
//! - woken by the table's insert trigger (`NOTIFY <schema>_revoked_sessions`, delivered at
//!   commit, heard on the process's change feed), and every [`Follower::poll`] regardless,
//!   so a lost notification delays a revocation by at most one poll;
//! - reading rows by arrival number (`seq`), re-reading the last [`RE_READ`] of them, because
//!   numbers are taken at insert but become visible at commit, not necessarily in order.
//!
//! A row is kept until the token it revokes would have expired anyway.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The `revoked_sessions` table every service's schema holds.
pub static MIGRATOR: LazyLock<sqlx::migrate::Migrator> =
    LazyLock::new(|| sneakerstop_db::shared_schema(sqlx::migrate!("./migrations")));

/// The notification channel of `schema`'s revocations.
pub fn channel(schema: &str) -> String {
    format!("{schema}_revoked_sessions")
}

/// How long a row stays re-read after it was first seen: any transaction that took a
/// number before a later one committed has committed by then.
pub const RE_READ: Duration = Duration::from_secs(10);

/// The shortest time between two reads of the table.
const MIN_GAP: Duration = Duration::from_millis(50);

/// The revoked sessions this process knows, with their tokens' expiry (seconds since the
/// epoch). Cheap to clone; clones share the set.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    sessions: Arc<RwLock<HashMap<Uuid, i64>>>,
}

impl Revocations {
    /// Whether `session` was ended.
    pub fn is_revoked(&self, session: Uuid) -> bool {
        let revoked = self.sessions.read().unwrap_or_else(PoisonError::into_inner).contains_key(&session);
        if revoked {
            metrics::counter!("sessions_revoked_refusals_total").increment(1);
        }
        revoked
    }

    /// Records that `session`, whose token expires at `expires_at`, was ended.
    pub fn insert(&self, session: Uuid, expires_at: i64) {
        let mut sessions = self.sessions.write().unwrap_or_else(PoisonError::into_inner);
        sessions.insert(session, expires_at);
        metrics::gauge!("sessions_revoked_known").set(sessions.len() as f64);
    }

    /// Forgets sessions whose tokens have expired by `now` (seconds since the epoch).
    pub fn forget_expired(&self, now: i64) {
        let mut sessions = self.sessions.write().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, expires_at| *expires_at > now);
        metrics::gauge!("sessions_revoked_known").set(sessions.len() as f64);
    }

    /// How many revoked sessions are known.
    pub fn len(&self) -> usize {
        self.sessions.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Records on `conn` (the caller's transaction) that `session` of `user`, whose token expires
/// at `expires_at`, has ended. Recording it again changes nothing.
pub async fn record(
    conn: &mut PgConnection,
    session: Uuid,
    user: Uuid,
    expires_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query!(
        "INSERT INTO revoked_sessions (session_id, user_id, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (session_id) DO NOTHING",
        session,
        user,
        expires_at,
    )
    .execute(conn)
    .await
    .context("record a revoked session")?;
    Ok(())
}

/// Copies a schema's `revoked_sessions` into a process's [`Revocations`].
#[derive(Debug)]
pub struct Follower {
    pool: PgPool,
    revocations: Revocations,
    wake: Arc<Notify>,
    poll: Duration,
}

impl Follower {
    /// Follows the table `pool`'s schema holds, reading it at least every `poll`.
    pub fn new(pool: PgPool, revocations: Revocations, poll: Duration) -> Self {
        Self { pool, revocations, wake: Arc::new(Notify::new()), poll }
    }

    /// Notify this (from the change feed) to read new rows now.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The longest a committed row waits before this process knows it, feed or no feed.
    pub fn poll(&self) -> Duration {
        self.poll
    }

    /// Reads new rows whenever woken or every poll, and forgets expired ones every minute,
    /// until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        // (when a read began, the largest number it saw): the cursor is the number seen by
        // the newest read that began at least RE_READ ago.
        let mut reads: VecDeque<(Instant, i64)> = VecDeque::new();
        let mut cursor = 0_i64;
        let mut last_forget = Instant::now();
        loop {
            while reads.front().is_some_and(|(at, _)| at.elapsed() >= RE_READ) {
                cursor = reads.pop_front().map_or(cursor, |(_, seen)| seen);
            }
            let began = Instant::now();
            match self.read_after(cursor).await {
                Ok(seen) => reads.push_back((began, seen.max(reads.back().map_or(cursor, |r| r.1)))),
                Err(error) => tracing::warn!(error = format!("{error:#}"), "could not read revoked sessions; retrying"),
            }
            if last_forget.elapsed() >= Duration::from_secs(60) {
                last_forget = Instant::now();
                self.revocations.forget_expired(Utc::now().timestamp());
                if let Err(error) = self.forget_expired_rows().await {
                    tracing::warn!(error = format!("{error:#}"), "could not forget expired revocations");
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.wake.notified() => {
                    // A burst of sign-outs is read in a few passes, not one pass each.
                    tokio::time::sleep_until((began + MIN_GAP).into()).await;
                }
                () = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    /// Adds every unexpired row numbered after `cursor`; returns the largest number seen.
    async fn read_after(&self, cursor: i64) -> anyhow::Result<i64> {
        let rows = sqlx::query!(
            "SELECT session_id, expires_at, seq FROM revoked_sessions
              WHERE seq > $1 AND expires_at > now() ORDER BY seq",
            cursor,
        )
        .fetch_all(&self.pool)
        .await
        .context("read revoked sessions")?;
        let mut seen = cursor;
        for row in rows {
            self.revocations.insert(row.session_id, row.expires_at.timestamp());
            seen = seen.max(row.seq);
        }
        Ok(seen)
    }

    async fn forget_expired_rows(&self) -> anyhow::Result<()> {
        sqlx::query!("DELETE FROM revoked_sessions WHERE expires_at < now()")
            .execute(&self.pool)
            .await
            .context("delete expired revocations")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_sessions_are_known_until_their_tokens_expire() {
        let revocations = Revocations::default();
        let (ended, live) = (Uuid::now_v7(), Uuid::now_v7());
        revocations.insert(ended, 1_000);
        assert!(revocations.is_revoked(ended));
        assert!(!revocations.is_revoked(live));
        revocations.forget_expired(999);
        assert!(revocations.is_revoked(ended), "not expired yet");
        revocations.forget_expired(1_000);
        assert!(!revocations.is_revoked(ended), "its token has expired: nothing to remember");
        assert!(revocations.is_empty());
    }
}
