//! The process's change feed against real PostgreSQL: who hears what, and what a lost
//! connection tells its subscribers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sneakerstop_messaging::{ChangeFeed, Signal};
use sneakerstop_test_support::{TestDb, wait_until};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(10);

/// What a subscriber heard, in order: `notified <payload>`, `connected` or `lost`.
type Heard = Arc<Mutex<Vec<String>>>;

fn follow(feed: &ChangeFeed, channel: &str) -> Heard {
    let heard = Heard::default();
    let log = heard.clone();
    feed.subscribe(channel, move |signal| {
        log.lock().unwrap().push(match signal {
            Signal::Notified(payload) => format!("notified {payload}"),
            Signal::Connected => "connected".into(),
            Signal::Lost => "lost".into(),
        });
    });
    heard
}

fn count(heard: &Heard, signal: &str) -> usize {
    heard.lock().unwrap().iter().filter(|s| s.starts_with(signal)).count()
}

async fn notify(pool: &PgPool, channel: &str, payload: &str) {
    sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(pool).await.unwrap();
}

/// Ends the other connections to the test database whose last statement is `LIKE` `query`;
/// returns how many.
async fn terminate(pool: &PgPool, query: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE $1",
    )
    .bind(query)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn each_subscriber_hears_its_channel_and_every_reconnection() {
    let db = TestDb::new().await;
    let pool = PgPool::connect(&db.url()).await.unwrap();
    let feed = ChangeFeed::new();
    let (a, b) = (follow(&feed, "feed_a"), follow(&feed, "feed_b"));
    let cancel = CancellationToken::new();
    let running = tokio::spawn(feed.run(pool.clone(), cancel.clone()));
    wait_until("the feed to connect", DEADLINE, || async {
        (count(&a, "connected") == 1 && count(&b, "connected") == 1).then_some(())
    })
    .await;

    notify(&pool, "feed_a", "first").await;
    notify(&pool, "feed_a", "second").await;
    wait_until("feed_a's notifications", DEADLINE, || async { (count(&a, "notified") == 2).then_some(()) }).await;
    notify(&pool, "feed_b", "").await;
    wait_until("feed_b's notification", DEADLINE, || async { (count(&b, "notified") == 1).then_some(()) }).await;
    assert_eq!(count(&a, "notified"), 2, "feed_b's notification is not feed_a's");
    let notified: Vec<String> = a.lock().unwrap().iter().filter(|s| s.starts_with("notified")).cloned().collect();
    assert_eq!(notified, ["notified first", "notified second"], "each with its payload, in order");

    // One connection listens for both; when it dies, both hear it, and again when it is back.
    let killed = terminate(&pool, "LISTEN %feed_%").await;
    assert_eq!(killed, 1, "one listening connection for every channel");
    wait_until("the loss and the reconnection", DEADLINE, || async {
        let both = |heard: &Heard| count(heard, "lost") == 1 && count(heard, "connected") == 2;
        (both(&a) && both(&b)).then_some(())
    })
    .await;
    notify(&pool, "feed_b", "").await;
    wait_until("notifications after reconnecting", DEADLINE, || async { (count(&b, "notified") == 2).then_some(()) })
        .await;

    cancel.cancel();
    running.await.unwrap();
}

#[tokio::test]
async fn announcements_reach_other_processes_once_and_are_not_heard_back() {
    let db = TestDb::new().await;
    let pool = PgPool::connect(&db.url()).await.unwrap();
    let (here, there) = (ChangeFeed::new(), ChangeFeed::new());
    let (ours, theirs) = (follow(&here, "market_book"), follow(&there, "market_book"));
    let (our_outbox, their_outbox) = (follow(&here, "catalog_outbox"), follow(&there, "catalog_outbox"));
    let cancel = CancellationToken::new();
    let running = [
        tokio::spawn(here.clone().run(pool.clone(), cancel.clone())),
        tokio::spawn(there.clone().run(pool.clone(), cancel.clone())),
    ];
    wait_until("both feeds to connect", DEADLINE, || async {
        (count(&ours, "connected") == 1 && count(&theirs, "connected") == 1).then_some(())
    })
    .await;

    // A burst on two channels, as a unit of work's flush makes it.
    here.announce("market_book", "p1");
    here.announce("catalog_outbox", "");
    here.announce("market_book", "p2");
    here.announce("market_book", "p1");
    assert_eq!(count(&ours, "notified"), 3, "this process hears each at once");
    wait_until("the other process to hear them", DEADLINE, || async {
        (count(&theirs, "notified") >= 2 && count(&their_outbox, "notified") == 1).then_some(())
    })
    .await;
    let mut heard: Vec<String> = theirs.lock().unwrap().iter().filter(|s| s.starts_with("notified")).cloned().collect();
    heard.sort();
    heard.dedup();
    assert_eq!(heard, ["notified p1", "notified p2"], "every payload reaches the other process");

    // The other way round, so that everything `here` sent has surely come back by then.
    there.announce("catalog_outbox", "");
    wait_until("the other process's announcement", DEADLINE, || async {
        (count(&our_outbox, "notified") == 2).then_some(())
    })
    .await;
    assert_eq!(count(&ours, "notified"), 3, "its own notifications are not told twice");
    assert_eq!(count(&our_outbox, "notified"), 2, "its own once, the other process's once");

    // The connection announcements go on is closed under it (as an idle one may be): the
    // next announcement still gets through, on a new one.
    let killed = terminate(&pool, "SELECT pg_notify(c, p)%").await;
    assert_eq!(killed, 2, "one announcer connection per feed");
    here.announce("market_book", "p3");
    wait_until("the announcement after the lost connection", DEADLINE, || async {
        theirs.lock().unwrap().iter().any(|s| s == "notified p3").then_some(())
    })
    .await;

    cancel.cancel();
    for feed in running {
        feed.await.unwrap();
    }
}
