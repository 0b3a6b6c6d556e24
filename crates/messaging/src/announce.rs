//! Telling whoever follows a change after its commit, without a `NOTIFY` inside the writing
//! transaction.
//!
//! Whatever runs a unit of work that may write outbox rows — an HTTP request, a consumer's
//! batch, a background round — runs it [`announcing`] on the process's [`ChangeFeed`]. Each
//! outbox row built in it ([`crate::Outgoing::new`]) records its schema, and each other
//! change that others follow is recorded by whoever writes it ([`changed`]: a replica row,
//! a market book); once the work has committed, [`flush`] (or the end of [`announcing`])
//! announces each channel and payload once: this process's subscribers (the local relay)
//! hear at once, the other processes by a `NOTIFY` sent after the commit
//! ([`ChangeFeed::announce`]).
//!
//! An announcement for work that rolled back only costs a wake-up that finds nothing new.
//! Every follower has a backstop for one that never comes (a process that dies between its
//! commit and its announcement, a write where nobody announces): the relay also polls
//! (`OUTBOX_POLL_INTERVAL`), a replica wait ends at its bound, a cached market read at its
//! age.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

use crate::{ChangeFeed, Relay};

/// What a unit of work changed since its last flush.
#[derive(Default)]
struct Written {
    /// Schemas whose outbox has new rows.
    outboxes: BTreeSet<String>,
    /// Other channels, with the payloads to announce on each.
    changes: BTreeMap<String, BTreeSet<String>>,
    /// Channels whose announcements name rows, with the ids to name: announced together.
    ids: BTreeMap<String, BTreeSet<Uuid>>,
}

/// Ids one announcement names at most: a `NOTIFY` payload holds fewer than 8,000 bytes, an
/// id and its comma 37.
pub const IDS_PER_ANNOUNCEMENT: usize = 200;

/// The feed to announce on and what was written since the last flush.
#[derive(Clone)]
struct Announcer {
    feed: ChangeFeed,
    written: Arc<Mutex<Written>>,
}

tokio::task_local! {
    static ANNOUNCER: Announcer;
}

/// Runs `work` so that the outboxes it writes (and what else it says [`changed`]) are
/// announced on `feed` when it ends (and at each [`flush`] inside it).
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

/// Announces everything written so far in the current unit of work. Call it after the
/// commit; a no-op outside [`announcing`].
pub fn flush() {
    let _ = ANNOUNCER.try_with(|announcer| {
        let written = std::mem::take(&mut *announcer.written.lock().unwrap_or_else(PoisonError::into_inner));
        for schema in written.outboxes {
            announcer.feed.announce(&Relay::channel(&schema), "");
        }
        for (channel, payloads) in written.changes {
            for payload in payloads {
                announcer.feed.announce(&channel, &payload);
            }
        }
        for (channel, ids) in written.ids {
            let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
            for some in ids.chunks(IDS_PER_ANNOUNCEMENT) {
                announcer.feed.announce(&channel, &some.join(","));
            }
        }
    });
}

/// Records that the current unit of work wrote an outbox row of `schema`.
pub(crate) fn written(schema: &str) {
    let _ = ANNOUNCER.try_with(|announcer| {
        let mut written = announcer.written.lock().unwrap_or_else(PoisonError::into_inner);
        if !written.outboxes.contains(schema) {
            written.outboxes.insert(schema.to_owned());
        }
    });
}

/// Records that the current unit of work changed something followed on `channel` (`payload`
/// says what, or is empty), to be announced once the work has committed ([`flush`]).
/// Repeats within a unit of work are announced once; a no-op outside [`announcing`].
pub fn changed(channel: &str, payload: &str) {
    let _ = ANNOUNCER.try_with(|announcer| {
        let mut written = announcer.written.lock().unwrap_or_else(PoisonError::into_inner);
        // A unit of work repeats the same few channels: no allocation for one seen before.
        match written.changes.get_mut(channel) {
            Some(payloads) if payloads.contains(payload) => {}
            Some(payloads) => {
                payloads.insert(payload.to_owned());
            }
            None => {
                written.changes.insert(channel.to_owned(), BTreeSet::from([payload.to_owned()]));
            }
        }
    });
}

/// Records that the current unit of work changed the row `id`, followed on `channel`, to be
/// announced once the work has committed ([`flush`]). The ids a unit of work changed on one
/// channel are announced together, comma-separated, [`IDS_PER_ANNOUNCEMENT`] at most to an
/// announcement ([`ids`] reads them back): a batch of 50 rows is one `NOTIFY`, not 50. A
/// no-op outside [`announcing`].
pub fn changed_id(channel: &str, id: Uuid) {
    let _ = ANNOUNCER.try_with(|announcer| {
        let mut written = announcer.written.lock().unwrap_or_else(PoisonError::into_inner);
        match written.ids.get_mut(channel) {
            Some(ids) => {
                ids.insert(id);
            }
            None => {
                written.ids.insert(channel.to_owned(), BTreeSet::from([id]));
            }
        }
    });
}

/// The ids an announcement of [`changed_id`] names; `None` if it names none or is not such
/// an announcement (an empty payload: something changed, say not what).
pub fn ids(payload: &str) -> Option<Vec<Uuid>> {
    payload.split(',').map(|id| Uuid::try_parse(id).ok()).collect()
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
    async fn each_change_is_announced_once_with_its_payload_after_the_work() {
        let feed = ChangeFeed::new();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        feed.subscribe("market_book", move |signal| {
            if let crate::Signal::Notified(payload) = signal {
                log.lock().unwrap().push(payload.to_owned());
            }
        });
        announcing(&feed, async {
            changed("market_book", "b");
            changed("market_book", "a");
            changed("market_book", "b");
            changed("orders_replica", "");
            assert!(heard.lock().unwrap().is_empty(), "not before the work says it committed");
        })
        .await;
        assert_eq!(*heard.lock().unwrap(), ["a", "b"], "each payload once");
    }

    #[tokio::test]
    async fn the_ids_a_unit_of_work_changed_are_announced_together() {
        let feed = ChangeFeed::new();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        feed.subscribe("x_replica", move |signal| {
            if let crate::Signal::Notified(payload) = signal {
                log.lock().unwrap().push(ids(payload).expect("names ids"));
            }
        });
        let changed: Vec<Uuid> = (0..IDS_PER_ANNOUNCEMENT + 1).map(|_| Uuid::now_v7()).collect();
        announcing(&feed, async {
            for id in changed.iter().chain(&changed[..3]) {
                changed_id("x_replica", *id);
            }
            assert!(heard.lock().unwrap().is_empty(), "not before the work says it committed");
        })
        .await;
        let heard = heard.lock().unwrap();
        assert_eq!(heard.iter().map(Vec::len).collect::<Vec<_>>(), [IDS_PER_ANNOUNCEMENT, 1], "as few as fit");
        assert_eq!(heard.concat(), changed, "every id once");
        assert_eq!(ids(""), None, "an empty payload names nothing");
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
