//! Waking the relays after a commit, without a `NOTIFY` inside the writing transaction.
//!
//! Whatever runs a unit of work that may write outbox rows — an HTTP request, a consumer's
//! batch, a background round — runs it [`announcing`] on the process's [`ChangeFeed`]. Each
//! outbox row built in it ([`crate::Outgoing::new`]) records its schema; once the work has
//! committed, [`flush`] (or the end of [`announcing`]) announces each schema's outbox
//! channel once: the local relay wakes at once, the other processes by a `NOTIFY` sent after
//! the commit ([`ChangeFeed::announce`]).
//!
//! An announcement for work that rolled back only costs a relay pass that finds nothing. A
//! row written where nobody announces is still published: the relay also polls
//! (`OUTBOX_POLL_INTERVAL`).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use crate::{ChangeFeed, Relay};

/// The feed to announce on and the schemas written since the last flush.
#[derive(Clone)]
struct Announcer {
    feed: ChangeFeed,
    written: Arc<Mutex<BTreeSet<String>>>,
}

tokio::task_local! {
    static ANNOUNCER: Announcer;
}

/// Runs `work` so that the outboxes it writes are announced on `feed` when it ends (and at
/// each [`flush`] inside it).
pub fn announcing<F: Future>(feed: &ChangeFeed, work: F) -> impl Future<Output = F::Output> + use<F> {
    let announcer = Announcer { feed: feed.clone(), written: Arc::default() };
    ANNOUNCER.scope(announcer, async {
        let output = work.await;
        flush();
        output
    })
}

/// `work`, announcing on the same feed as the current unit of work, for work it spawns
/// (`tokio::spawn` does not carry the task's scope); `work` as is outside one.
pub fn inherit<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let announcer = ANNOUNCER.try_with(|a| Announcer { feed: a.feed.clone(), written: Arc::default() }).ok();
    async move {
        match announcer {
            Some(announcer) => {
                ANNOUNCER
                    .scope(announcer, async {
                        let output = work.await;
                        flush();
                        output
                    })
                    .await
            }
            None => work.await,
        }
    }
}

/// Announces every outbox written so far in the current unit of work. Call it after the
/// commit; a no-op outside [`announcing`].
pub fn flush() {
    let _ = ANNOUNCER.try_with(|announcer| {
        let written = std::mem::take(&mut *announcer.written.lock().unwrap_or_else(PoisonError::into_inner));
        for schema in written {
            announcer.feed.announce(&Relay::channel(&schema));
        }
    });
}

/// Records that the current unit of work wrote an outbox row of `schema`.
pub(crate) fn written(schema: &str) {
    let _ = ANNOUNCER.try_with(|announcer| {
        let mut written = announcer.written.lock().unwrap_or_else(PoisonError::into_inner);
        if !written.contains(schema) {
            written.insert(schema.to_owned());
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn counting(feed: &ChangeFeed, schema: &str) -> Arc<AtomicUsize> {
        let heard = Arc::new(AtomicUsize::new(0));
        let count = heard.clone();
        feed.subscribe(&Relay::channel(schema), move |_| {
            count.fetch_add(1, Ordering::SeqCst);
        });
        heard
    }

    #[tokio::test]
    async fn each_outbox_written_is_announced_once_when_the_work_ends_or_flushes() {
        let feed = ChangeFeed::new();
        let (orders, catalog) = (counting(&feed, "orders"), counting(&feed, "catalog"));
        announcing(&feed, async {
            written("orders");
            written("orders");
            assert_eq!(orders.load(Ordering::SeqCst), 0, "not before the work says it committed");
            flush();
            assert_eq!(orders.load(Ordering::SeqCst), 1);
            written("orders");
            written("catalog");
        })
        .await;
        assert_eq!(orders.load(Ordering::SeqCst), 2);
        assert_eq!(catalog.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn spawned_work_inherits_the_feed_and_nothing_is_announced_outside_one() {
        let feed = ChangeFeed::new();
        let orders = counting(&feed, "orders");
        written("orders");
        flush();
        assert_eq!(orders.load(Ordering::SeqCst), 0);
        announcing(&feed, async {
            tokio::spawn(inherit(async { written("orders") })).await.unwrap();
        })
        .await;
        assert_eq!(orders.load(Ordering::SeqCst), 1, "announced when the spawned work ended");
    }
}
