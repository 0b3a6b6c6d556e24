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
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN %feed_%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
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
