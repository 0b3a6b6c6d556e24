//! Answering from a replica that is about to learn something.
//!
//! Orders learns of a listing, and payments of an order, from events: for a moment after a
//! seller lists a pair, orders does not know it yet. A client should not see that moment as
//! a 404. So when a request names an id its service's replica does not hold, the handler
//! waits — a bounded time, [`ReplicaWait::max`] (`REPLICA_WAIT`, 2 s by default) — to be
//! woken when a replica row commits, and answers then; 404 only after the wait.
//!
//! The wake-up is the process's change feed: whoever writes the replica says so
//! ([`ReplicaWait::inserted`]), the unit of work announces `<schema>_replica` once it has
//! committed ([`crate::announce`]; to other processes by a `NOTIFY` after the commit), and
//! every waiter re-checks its own id. No polling loop.
//! While the feed is not connected nothing would wake a waiter, so it does not wait. An id
//! that can never arrive is answered at once: ours are UUIDv7 (time-ordered), so an id that
//! is not v7, or that says it was made in the future, names nothing.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::{ChangeFeed, Signal};

/// Waits for replica rows; cheap to clone.
#[derive(Debug, Clone)]
pub struct ReplicaWait {
    committed: Arc<Notify>,
    listening: Arc<AtomicBool>,
    max: Duration,
}

/// How far ahead of this clock an id's timestamp may be (another machine's clock) and still
/// be one that may arrive.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

impl ReplicaWait {
    /// Waits at most `max`; wakes on nothing until [`Self::follow`]s channel is listened to.
    pub fn new(max: Duration) -> Self {
        Self { committed: Arc::new(Notify::new()), listening: Arc::new(AtomicBool::new(false)), max }
    }

    /// The notification channel of `schema`'s replica inserts.
    pub fn channel(schema: &str) -> String {
        format!("{schema}_replica")
    }

    /// Records that the current unit of work wrote rows of `schema`'s replica: its waiters
    /// (on every process) are woken once the work has committed.
    pub fn inserted(schema: &str) {
        crate::announce::changed(&Self::channel(schema), "");
    }

    /// Wakes waiters whenever `channel` is notified on `feed`.
    pub fn follow(&self, feed: &ChangeFeed, channel: &str) {
        let (committed, listening) = (self.committed.clone(), self.listening.clone());
        feed.subscribe(channel, move |signal| match signal {
            Signal::Notified(_) => committed.notify_waiters(),
            Signal::Connected => {
                listening.store(true, Ordering::SeqCst);
                // A row may have committed while the feed was away.
                committed.notify_waiters();
            }
            Signal::Lost => listening.store(false, Ordering::SeqCst),
        });
    }

    /// Whether `id` is one that events may still bring: a UUIDv7 not from the future.
    pub fn may_arrive(id: Uuid) -> bool {
        let Some(timestamp) = id.get_timestamp().filter(|_| id.get_version_num() == 7) else { return false };
        let (seconds, nanos) = timestamp.to_unix();
        let made = UNIX_EPOCH + Duration::new(seconds, nanos);
        made <= SystemTime::now() + CLOCK_SKEW
    }

    /// Runs `attempt`; when it fails because `id` is not in the replica yet (`missing` says
    /// which errors mean that), waits for `known` to find it (see [`Self::until`]) and runs
    /// `attempt` once more, as if the row had been there. The attempt is a transaction of its
    /// own, so nothing is held while waiting.
    pub async fn after_arrival<T, E, A, AFut, K, KFut>(
        &self,
        id: Uuid,
        mut attempt: A,
        missing: impl Fn(&E) -> bool,
        mut known: K,
    ) -> Result<T, E>
    where
        A: FnMut() -> AFut,
        AFut: Future<Output = Result<T, E>>,
        K: FnMut() -> KFut,
        KFut: Future<Output = anyhow::Result<bool>>,
        E: From<anyhow::Error>,
    {
        match attempt().await {
            Err(error) if missing(&error) => {
                let arrived = self
                    .until(id, || {
                        let found = known();
                        async move { Ok(found.await?.then_some(())) }
                    })
                    .await?;
                if arrived.is_some() { attempt().await } else { Err(error) }
            }
            other => other,
        }
    }

    /// Runs `check` now, after each replica commit and once more when `max` has passed,
    /// until it finds something; `Ok(None)` if the last look found nothing. Does not wait
    /// for an id that cannot arrive, or while the change feed is not listening.
    pub async fn until<T, F, Fut>(&self, id: Uuid, mut check: F) -> anyhow::Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = tokio::time::Instant::now() + self.max;
        loop {
            // Registered before checking, so a commit between the check and the wait still
            // wakes us.
            let committed = self.committed.notified();
            tokio::pin!(committed);
            committed.as_mut().enable();
            if let Some(found) = check().await? {
                return Ok(Some(found));
            }
            if !Self::may_arrive(id) || !self.listening.load(Ordering::SeqCst) {
                return Ok(None);
            }
            tokio::select! {
                () = committed => {}
                // A last look: an announcement can be lost (its process died between the
                // commit and the announcement), and the row may be there all the same.
                () = tokio::time::sleep_until(deadline) => return check().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_that_events_may_still_bring_are_waited_for() {
        assert!(ReplicaWait::may_arrive(Uuid::now_v7()));
        assert!(!ReplicaWait::may_arrive(Uuid::new_v4()), "not one of ours");
        assert!(!ReplicaWait::may_arrive(Uuid::nil()));
        let future = uuid::Timestamp::from_unix(uuid::NoContext, 4_102_444_800, 0); // 2100-01-01
        assert!(!ReplicaWait::may_arrive(Uuid::new_v7(future)), "made in the future");
    }

    #[tokio::test]
    async fn a_waiter_is_woken_by_a_commit_and_gives_up_after_its_bound() {
        let wait = ReplicaWait::new(Duration::from_secs(5));
        let feed = ChangeFeed::new();
        wait.follow(&feed, "x_replica");
        // Not listening: no wait at all.
        let started = std::time::Instant::now();
        assert_eq!(wait.until(Uuid::now_v7(), || async { Ok(None::<()>) }).await.unwrap(), None);
        assert!(started.elapsed() < Duration::from_secs(1));

        wait.listening.store(true, Ordering::SeqCst);
        let row = Arc::new(std::sync::Mutex::new(None));
        let waiter = {
            let (wait, row) = (wait.clone(), row.clone());
            tokio::spawn(async move { wait.until(Uuid::now_v7(), || async { Ok(*row.lock().unwrap()) }).await })
        };
        tokio::task::yield_now().await;
        *row.lock().unwrap() = Some(42);
        wait.committed.notify_waiters();
        assert_eq!(waiter.await.unwrap().unwrap(), Some(42));

        let short = ReplicaWait { max: Duration::from_millis(100), ..wait.clone() };
        assert_eq!(short.until(Uuid::now_v7(), || async { Ok(None::<()>) }).await.unwrap(), None);

        // A row whose announcement never came is found by the last look at the bound.
        let looks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let found = short
            .until(Uuid::now_v7(), || {
                let look = looks.fetch_add(1, Ordering::SeqCst);
                async move { Ok((look > 0).then_some(7)) }
            })
            .await
            .unwrap();
        assert_eq!((found, looks.load(Ordering::SeqCst)), (Some(7), 2));
    }
}
