//! The process's change feed against real PostgreSQL: who hears what, and what a lost
//! connection tells its subscribers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sneakerstop_messaging::{ChangeFeed, Signal};
use sneakerstop_test_support::{TestDb, wait_until};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(10);

type Heard = Arc<Mutex<Vec<Signal>>>;

fn follow(feed: &ChangeFeed, channel: &str) -> Heard {
    let heard = Heard::default();
    let log = heard.clone();
    feed.subscribe(channel, move |signal| log.lock().unwrap().push(signal));
    heard
}

fn count(heard: &Heard, signal: Signal) -> usize {
    heard.lock().unwrap().iter().filter(|s| **s == signal).count()
}

async fn notify(pool: &PgPool, channel: &str) {
    sqlx::query("SELECT pg_notify($1, '')").bind(channel).execute(pool).await.unwrap();
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
        (count(&a, Signal::Connected) == 1 && count(&b, Signal::Connected) == 1).then_some(())
    })
    .await;

    notify(&pool, "feed_a").await;
    notify(&pool, "feed_a").await;
    wait_until("feed_a's notifications", DEADLINE, || async { (count(&a, Signal::Notified) == 2).then_some(()) }).await;
    notify(&pool, "feed_b").await;
    wait_until("feed_b's notification", DEADLINE, || async { (count(&b, Signal::Notified) == 1).then_some(()) }).await;
    assert_eq!(count(&a, Signal::Notified), 2, "feed_b's notification is not feed_a's");

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
        let both = |heard: &Heard| count(heard, Signal::Lost) == 1 && count(heard, Signal::Connected) == 2;
        (both(&a) && both(&b)).then_some(())
    })
    .await;
    notify(&pool, "feed_b").await;
    wait_until("notifications after reconnecting", DEADLINE, || async {
        (count(&b, Signal::Notified) == 2).then_some(())
    })
    .await;

    cancel.cancel();
    running.await.unwrap();
}
