//! The outbox relay against a real (private) Tansu broker and real PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use sneakerstop_events::catalog::{Sneaker, SneakerEvent, SneakerStatus};
use sneakerstop_events::{Contract, topics};
use sneakerstop_messaging::{ChangeFeed, Kafka, MIGRATOR, Relay, enqueue};
use sneakerstop_test_support::{Broker, Record, TestDb, read_to_end, wait_until};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const SCHEMA: &str = "relaytest";

async fn outbox_db() -> (TestDb, PgPool) {
    let db = TestDb::new().await;
    let pool = sneakerstop_db::connect_and_migrate(&db.config(), SCHEMA, &[&MIGRATOR]).await.unwrap();
    (db, pool)
}

fn event(id: Uuid, version: i64) -> SneakerEvent {
    let now = Utc::now();
    let sneaker = Sneaker {
        sneaker_id: id,
        seller_id: Uuid::nil(),
        title: format!("pair {id} v{version}"),
        brand: None,
        description: None,
        price_cents: 100 * version,
        size: 10.0,
        product_id: None,
        expires_at: None,
        status: SneakerStatus::Available,
        version,
        created_at: now,
        updated_at: now,
    };
    if version == 1 { SneakerEvent::Listed(sneaker) } else { SneakerEvent::Updated(sneaker) }
}

/// One committed change: the event goes into the outbox in its own transaction.
async fn change(pool: &PgPool, id: Uuid, version: i64) {
    let mut tx = pool.begin().await.unwrap();
    enqueue(&mut tx, "/test", id, version, &event(id, version)).await.unwrap();
    tx.commit().await.unwrap();
}

async fn backlog(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(pool).await.unwrap()
}

fn relay(pool: &PgPool, kafka: &Kafka) -> Relay {
    Relay::new(pool.clone(), SCHEMA, kafka.producer().unwrap(), Duration::from_millis(200))
}

/// Asserts every key's versions arrived in order, each event exactly once.
fn assert_in_order_once(records: &[Record], keys: &[Uuid], versions: i64) {
    let ids: HashSet<&str> = records.iter().map(|r| r.header("ce_id").unwrap()).collect();
    assert_eq!(ids.len(), records.len(), "an event was published twice");
    let mut by_key: HashMap<&str, Vec<(i32, i64)>> = HashMap::new();
    for record in records {
        let version: i64 = record.header("ce_aggregateversion").unwrap().parse().unwrap();
        by_key.entry(record.key.as_deref().unwrap()).or_default().push((record.partition, version));
    }
    for key in keys {
        let seen = &by_key[key.to_string().as_str()];
        let partitions: HashSet<i32> = seen.iter().map(|(p, _)| *p).collect();
        assert_eq!(partitions.len(), 1, "every event of one key lands on one partition");
        let order: Vec<i64> = seen.iter().map(|(_, v)| *v).collect();
        assert_eq!(order, (1..=versions).collect::<Vec<_>>(), "key {key} out of order");
    }
}

#[tokio::test]
async fn a_broker_outage_grows_the_backlog_then_it_drains_in_order_once() {
    let mut broker = Broker::start().await;
    let kafka = Kafka::new(broker.address());
    kafka.ensure_topics(&[topics::SNEAKERS]).await.unwrap();
    let (_db, pool) = outbox_db().await;
    let cancel = CancellationToken::new();
    let task = tokio::spawn(relay(&pool, &kafka).run(cancel.clone()));

    // One event goes through while the broker is up.
    let first = Uuid::now_v7();
    change(&pool, first, 1).await;
    wait_until("the first event is published", Duration::from_secs(30), || async {
        (backlog(&pool).await == 0).then_some(())
    })
    .await;

    broker.stop().await;
    let keys: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    for version in 1..=10 {
        for key in &keys {
            change(&pool, *key, version).await;
        }
    }
    assert_eq!(backlog(&pool).await, 100, "with the broker down, all 100 events wait in the outbox");

    broker.resume().await;
    wait_until("the backlog drains", Duration::from_secs(60), || async { (backlog(&pool).await == 0).then_some(()) })
        .await;
    let records = read_to_end(&broker.address(), topics::SNEAKERS, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 101, "every event once, none twice");
    let keep: HashSet<String> = keys.iter().map(ToString::to_string).collect();
    let records: Vec<Record> =
        records.into_iter().filter(|r| r.key.as_ref().is_some_and(|k| keep.contains(k))).collect();
    assert_in_order_once(&records, &keys, 10);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn two_relays_on_one_outbox_publish_each_event_once_in_order() {
    let broker = Broker::start().await;
    let kafka = Kafka::new(broker.address());
    kafka.ensure_topics(&[topics::SNEAKERS]).await.unwrap();
    let (_db, pool) = outbox_db().await;
    let cancel = CancellationToken::new();
    let relays = [
        tokio::spawn(relay(&pool, &kafka).run(cancel.clone())),
        tokio::spawn(relay(&pool, &kafka).run(cancel.clone())),
    ];

    // Writers commit concurrently with both relays running; each key's changes are
    // sequential, as they are for one aggregate (its row lock orders them).
    let keys: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
    let writers = keys.iter().map(|key| {
        let (pool, key) = (pool.clone(), *key);
        tokio::spawn(async move {
            for version in 1..=25 {
                change(&pool, key, version).await;
            }
        })
    });
    for writer in writers {
        writer.await.unwrap();
    }
    wait_until("the backlog drains", Duration::from_secs(60), || async { (backlog(&pool).await == 0).then_some(()) })
        .await;
    let records = read_to_end(&broker.address(), topics::SNEAKERS, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 200, "every event once, none twice");
    assert_in_order_once(&records, &keys, 25);

    // The published records are CloudEvents in binary mode.
    let record = &records[0];
    assert_eq!(record.header("ce_specversion"), Some("1.0"));
    assert_eq!(record.header("ce_source"), Some("/test"));
    assert_eq!(record.header("content-type"), Some("application/json"));
    assert_eq!(record.header("ce_subject"), record.key.as_deref());
    let ce_type = record.header("ce_type").unwrap();
    let decoded = SneakerEvent::decode(ce_type, 1, record.json.to_string().as_bytes()).unwrap();
    assert_eq!(decoded.event_type(), ce_type);

    cancel.cancel();
    for relay in relays {
        relay.await.unwrap();
    }
}

#[tokio::test]
async fn a_relay_on_the_process_change_feed_publishes_as_soon_as_a_change_commits() {
    let broker = Broker::start().await;
    let kafka = Kafka::new(broker.address());
    kafka.ensure_topics(&[topics::SNEAKERS]).await.unwrap();
    let (_db, pool) = outbox_db().await;
    let cancel = CancellationToken::new();
    // Polling alone would take a minute: only the feed's notification can wake it sooner.
    let feed = ChangeFeed::new();
    let relay = Relay::new(pool.clone(), SCHEMA, kafka.producer().unwrap(), Duration::from_secs(60)).woken_by(&feed);
    let relaying = tokio::spawn(relay.run(cancel.clone()));
    let feeding = tokio::spawn(feed.run(pool.clone(), cancel.clone()));

    for version in 1..=3 {
        change(&pool, Uuid::now_v7(), version).await;
        wait_until("the change to be published", Duration::from_secs(20), || async {
            (backlog(&pool).await == 0).then_some(())
        })
        .await;
    }
    cancel.cancel();
    relaying.await.unwrap();
    feeding.await.unwrap();
}
