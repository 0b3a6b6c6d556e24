//! Answering from a replica that is about to learn something.
//!
//! Orders learns of a listing, and payments of an order, from events: for a moment after a
//! seller lists a pair, orders does not know it yet. A client should not see that moment as
//! a 404. So when a request names an id its service's replica does not hold, the handler
//! waits — a bounded time, [`ReplicaWait::max`] (`REPLICA_WAIT`, 2 s by default) — to be
//! woken when that id's replica row commits, and answers then; 404 only after the wait.
//!
//! The wake-up is the process's change feed: whoever writes a replica row says which id it
//! wrote ([`ReplicaWait::inserted`]), the unit of work announces its ids together on
//! `<schema>_replica` once it has committed ([`crate::announce::changed_id`]; to other
//! processes by one `NOTIFY` after the commit), and only the requests waiting for one of
//! those ids look again. No polling loop, and a commit wakes nobody who waits for something
//! else: with many requests waiting at once, waking every one of them at every replica
//! commit to read its row again made five reads of the listing per order where two do
//! (measured under the purchase scenario).
//!
//! A request registers its interest before its first look, so a row that commits between
//! the look and the wait still wakes it. An announcement that names no ids (an empty
//! payload) and the feed reconnecting wake every waiter: something may have arrived unheard.
//! While the feed is not connected nothing would wake a waiter, so it does not wait. An id
//! that can never arrive is answered at once: ours are UUIDv7 (time-ordered), so an id that
//! is not v7, or that says it was made in the future, names nothing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::{ChangeFeed, Signal};

/// Waits for replica rows; cheap to clone.
#[derive(Debug, Clone)]
pub struct ReplicaWait {
    waiters: Arc<Waiters>,
    listening: Arc<AtomicBool>,
    max: Duration,
}

/// Who waits for which id: one [`Notify`] per waiting request, under each id it waits for.
#[derive(Debug, Default)]
struct Waiters {
    by_id: Mutex<HashMap<Uuid, Vec<Arc<Notify>>>>,
}

impl Waiters {
    /// Wakes the waiters for `ids`, or every waiter for `None`. A waiter not yet waiting
    /// keeps the wake-up (`notify_one` stores a permit) and finds it when it waits.
    fn wake(&self, ids: Option<&[Uuid]>) {
        let by_id = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        let woken: Box<dyn Iterator<Item = &Vec<Arc<Notify>>>> = match ids {
            Some(ids) => Box::new(ids.iter().filter_map(|id| by_id.get(id))),
            None => Box::new(by_id.values()),
        };
        woken.flatten().for_each(|waiter| waiter.notify_one());
    }
}

/// One request's interest in the arrival of some ids, registered until it is dropped.
struct Interest<'a> {
    waiters: &'a Waiters,
    ids: Vec<Uuid>,
    woken: Arc<Notify>,
}

impl<'a> Interest<'a> {
    fn register(waiters: &'a Waiters, ids: &[Uuid]) -> Self {
        let woken = Arc::new(Notify::new());
        let mut by_id = waiters.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            by_id.entry(*id).or_default().push(woken.clone());
        }
        Self { waiters, ids: ids.to_vec(), woken }
    }
}

impl Drop for Interest<'_> {
    fn drop(&mut self) {
        let mut by_id = self.waiters.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        for id in &self.ids {
            if let Some(waiting) = by_id.get_mut(id) {
                waiting.retain(|waiter| !Arc::ptr_eq(waiter, &self.woken));
                if waiting.is_empty() {
                    by_id.remove(id);
                }
            }
        }
    }
}

/// How far ahead of this clock an id's timestamp may be (another machine's clock) and still
/// be one that may arrive.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

impl ReplicaWait {
    /// Waits at most `max`; wakes on nothing until [`Self::follow`]s channel is listened to.
    pub fn new(max: Duration) -> Self {
        Self { waiters: Arc::default(), listening: Arc::new(AtomicBool::new(false)), max }
    }

    /// The notification channel of `schema`'s replica inserts.
    pub fn channel(schema: &str) -> String {
        format!("{schema}_replica")
    }

    /// Records that the current unit of work wrote the replica row `id` of `schema`: the
    /// requests waiting for `id` (on every process) are woken once the work has committed.
    pub fn inserted(schema: &str, id: Uuid) {
        crate::announce::changed_id(&Self::channel(schema), id);
    }

    /// Wakes waiters whenever `channel` is notified on `feed`: those of the ids it names, or
    /// all of them.
    pub fn follow(&self, feed: &ChangeFeed, channel: &str) {
        let (waiters, listening) = (self.waiters.clone(), self.listening.clone());
        feed.subscribe(channel, move |signal| match signal {
            Signal::Notified(payload) => waiters.wake(crate::announce::ids(payload).as_deref()),
            Signal::Connected => {
                listening.store(true, Ordering::SeqCst);
                // A row may have committed while the feed was away.
                waiters.wake(None);
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

    /// Whether a look that missed `id` is worth waiting after.
    fn worth_waiting(&self, ids: &[Uuid]) -> bool {
        ids.iter().copied().any(Self::may_arrive) && self.listening.load(Ordering::SeqCst)
    }

    /// Runs `attempt`; while it fails because `id` is not in the replica yet (`missing` says
    /// which errors mean that), waits for `id`'s row to commit and runs it again, as if the
    /// row had been there; at the bound, once more and that is the answer. Each attempt is a
    /// transaction of its own, so nothing is held while waiting.
    pub async fn after_arrival<T, E, A, AFut>(
        &self,
        id: Uuid,
        mut attempt: A,
        missing: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        A: FnMut() -> AFut,
        AFut: Future<Output = Result<T, E>>,
    {
        let deadline = tokio::time::Instant::now() + self.max;
        let interest = Interest::register(&self.waiters, &[id]);
        loop {
            match attempt().await {
                Err(error) if missing(&error) && self.worth_waiting(&[id]) => {
                    tokio::select! {
                        () = interest.woken.notified() => {}
                        // A last attempt: an announcement can be lost (its process died
                        // between the commit and the announcement), and the row may be
                        // there all the same.
                        () = tokio::time::sleep_until(deadline) => return attempt().await,
                    }
                }
                other => return other,
            }
        }
    }

    /// Runs `check` now, after each commit of a replica row of one of `ids`, and once more
    /// when `max` has passed, until it finds something; `Ok(None)` if the last look found
    /// nothing. Does not wait for ids that cannot arrive, or while the change feed is not
    /// listening.
    pub async fn until<T, F, Fut>(&self, ids: &[Uuid], mut check: F) -> anyhow::Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = tokio::time::Instant::now() + self.max;
        // Registered before the first look, so a commit between a look and the wait still
        // wakes us.
        let interest = Interest::register(&self.waiters, ids);
        loop {
            if let Some(found) = check().await? {
                return Ok(Some(found));
            }
            if !self.worth_waiting(ids) {
                return Ok(None);
            }
            tokio::select! {
                () = interest.woken.notified() => {}
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

    /// Lets every other task on this (current-thread) test runtime run until it waits.
    async fn others_run() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_waiter_is_woken_by_its_own_id_and_gives_up_after_its_bound() {
        let wait = ReplicaWait::new(Duration::from_secs(5));
        let feed = ChangeFeed::new();
        wait.follow(&feed, "x_replica");
        // Not listening: no wait at all.
        let started = std::time::Instant::now();
        assert_eq!(wait.until(&[Uuid::now_v7()], || async { Ok(None::<()>) }).await.unwrap(), None);
        assert!(started.elapsed() < Duration::from_secs(1));

        wait.listening.store(true, Ordering::SeqCst);
        let (id, other) = (Uuid::now_v7(), Uuid::now_v7());
        let row = Arc::new(Mutex::new(None));
        let looks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let waiter = {
            let (wait, row, looks) = (wait.clone(), row.clone(), looks.clone());
            tokio::spawn(async move {
                wait.until(&[id], || {
                    looks.fetch_add(1, Ordering::SeqCst);
                    let found = *row.lock().unwrap();
                    async move { Ok(found) }
                })
                .await
            })
        };
        others_run().await;
        assert_eq!(looks.load(Ordering::SeqCst), 1, "looked once, then waits");
        feed.announce("x_replica", &other.to_string());
        others_run().await;
        assert_eq!(looks.load(Ordering::SeqCst), 1, "another id's commit wakes nobody waiting for this one");
        *row.lock().unwrap() = Some(42);
        feed.announce("x_replica", &id.to_string());
        assert_eq!(waiter.await.unwrap().unwrap(), Some(42));
        assert_eq!(looks.load(Ordering::SeqCst), 2);
        assert!(wait.waiters.by_id.lock().unwrap().is_empty(), "a finished wait leaves no interest behind");

        let short = ReplicaWait { max: Duration::from_millis(100), ..wait.clone() };
        assert_eq!(short.until(&[Uuid::now_v7()], || async { Ok(None::<()>) }).await.unwrap(), None);

        // A row whose announcement never came is found by the last look at the bound.
        let looks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let found = short
            .until(&[Uuid::now_v7()], || {
                let look = looks.fetch_add(1, Ordering::SeqCst);
                async move { Ok((look > 0).then_some(7)) }
            })
            .await
            .unwrap();
        assert_eq!((found, looks.load(Ordering::SeqCst)), (Some(7), 2));
    }

    #[tokio::test]
    async fn an_attempt_that_missed_runs_again_when_its_row_commits() {
        // Bounded far beyond the test's own timeout: an answer can only come from a wake-up.
        let wait = ReplicaWait::new(Duration::from_secs(60));
        let feed = ChangeFeed::new();
        wait.follow(&feed, "x_replica");
        wait.listening.store(true, Ordering::SeqCst);
        let id = Uuid::now_v7();
        let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // The row commits (and is announced) while the first attempt is still under way:
        // the interest registered before it keeps the wake-up.
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            wait.after_arrival(
                id,
                || {
                    let attempt = attempts.fetch_add(1, Ordering::SeqCst);
                    if attempt == 0 {
                        feed.announce("x_replica", &id.to_string());
                    }
                    async move { if attempt == 0 { Err("missing") } else { Ok(attempt) } }
                },
                |error| *error == "missing",
            ),
        )
        .await
        .expect("woken by the commit, not by the bound");
        assert_eq!(answer, Ok(1));

        // Anything else than a missing row is the answer as it is.
        let refused: Result<(), &str> = wait.after_arrival(id, || async { Err("refused") }, |e| *e == "missing").await;
        assert_eq!(refused, Err("refused"));

        // An announcement that names no id (or the feed reconnecting) wakes every waiter.
        let (tries, other) = (Arc::new(std::sync::atomic::AtomicUsize::new(0)), Uuid::now_v7());
        let waiter = {
            let (wait, tries) = (wait.clone(), tries.clone());
            tokio::spawn(async move {
                wait.after_arrival(
                    other,
                    || {
                        let n = tries.fetch_add(1, Ordering::SeqCst);
                        async move { if n == 0 { Err("missing") } else { Ok(n) } }
                    },
                    |error| *error == "missing",
                )
                .await
            })
        };
        others_run().await;
        feed.announce("x_replica", "");
        let answer = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken by the wake-all");
        assert_eq!(answer.unwrap(), Ok(1));
    }
}
