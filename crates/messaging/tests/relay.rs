//! The outbox relay against real Apache Kafka and real PostgreSQL: the shared broker under
//! topics of each test's own (`KAFKA_TOPIC_PREFIX`), or a private broker where a test
//! stops it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use sneakerstop_events::catalog::{Sneaker, SneakerEvent, SneakerStatus};
use sneakerstop_events::{Contract, topics};
use sneakerstop_messaging::{
    ChangeFeed, ConsumerRuntime, Handler, IncomingEvent, Kafka, MIGRATOR, Outgoing, Relay, enqueue,
};
use sneakerstop_test_support::{Broker, Record, TestDb, read_to_end, shared_brokers, unique, wait_until};
use sqlx::{PgConnection, PgPool};
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
    enqueue(&mut tx, "/sneakerstop/relaytest", id, version, &event(id, version)).await.unwrap();
    tx.commit().await.unwrap();
}

async fn backlog(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(pool).await.unwrap()
}

fn relay(pool: &PgPool, kafka: &Kafka) -> Relay {
    Relay::new(pool.clone(), SCHEMA, kafka, kafka.producer().unwrap(), Duration::from_millis(200))
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

/// The shared broker, under topics of the test's own.
fn own_topics() -> Kafka {
    Kafka::new(shared_brokers()).with_topic_prefix(format!("{}.", unique("relaytest")))
}

#[tokio::test]
async fn two_relays_on_one_outbox_publish_each_event_once_in_order() {
    let kafka = own_topics();
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
    let records = read_to_end(&shared_brokers(), &kafka.topic(topics::SNEAKERS), Duration::from_secs(30)).await;
    assert_eq!(records.len(), 200, "every event once, none twice");
    assert_in_order_once(&records, &keys, 25);

    // The published records are CloudEvents in binary mode.
    let record = &records[0];
    assert_eq!(record.header("ce_specversion"), Some("1.0"));
    assert_eq!(record.header("ce_source"), Some("/sneakerstop/relaytest"));
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
    let kafka = own_topics();
    kafka.ensure_topics(&[topics::SNEAKERS]).await.unwrap();
    let (_db, pool) = outbox_db().await;
    let cancel = CancellationToken::new();
    // Polling alone would take a minute: only an announcement can wake it sooner — this
    // process's own, or another process's, which arrives as a NOTIFY sent after its commit.
    let feed = ChangeFeed::new();
    let relay =
        Relay::new(pool.clone(), SCHEMA, &kafka, kafka.producer().unwrap(), Duration::from_secs(60)).woken_by(&feed);
    let relaying = tokio::spawn(relay.run(cancel.clone()));
    let feeding = tokio::spawn(feed.clone().run(pool.clone(), cancel.clone()));
    let other_process = ChangeFeed::new();
    let other_feeding = tokio::spawn(other_process.clone().run(pool.clone(), cancel.clone()));

    for (version, writer) in [(1, &feed), (2, &other_process), (3, &feed), (4, &other_process)] {
        sneakerstop_messaging::announcing(writer, change(&pool, Uuid::now_v7(), version)).await;
        wait_until("the change to be published", Duration::from_secs(20), || async {
            (backlog(&pool).await == 0).then_some(())
        })
        .await;
    }
    // Written where nobody announces: left for the relay's poll.
    change(&pool, Uuid::now_v7(), 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(backlog(&pool).await, 1, "nothing woke the relay: no NOTIFY inside the transaction");
    cancel.cancel();
    relaying.await.unwrap();
    feeding.await.unwrap();
    other_feeding.await.unwrap();
}

/// Records the topic (as the handler is told it) and subject of every event it applies.
struct Seen;

impl Handler for Seen {
    fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a IncomingEvent) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            sqlx::query("INSERT INTO seen (topic, subject) VALUES ($1, $2::uuid)")
                .bind(&event.topic)
                .bind(&event.envelope.subject)
                .execute(tx)
                .await?;
            Ok(())
        })
    }
}

#[tokio::test]
async fn deployments_under_different_topic_prefixes_do_not_read_each_others_events() {
    // Two deployments of the catalog's events on the shared broker, each with its database,
    // relay and consumer group, and its own KAFKA_TOPIC_PREFIX.
    let cancel = CancellationToken::new();
    let mut deployments = Vec::new();
    for name in ["stage", "prod"] {
        let mut kafka = own_topics();
        kafka.partitions = 1;
        kafka.ensure_topics(&[topics::SNEAKERS]).await.unwrap();
        let (db, pool) = outbox_db().await;
        sqlx::query("CREATE TABLE seen (n bigserial, topic text NOT NULL, subject uuid NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        tokio::spawn(relay(&pool, &kafka).run(cancel.clone()));
        let group = unique(&format!("{name}-orders"));
        let consumer = ConsumerRuntime::new(
            group,
            &[topics::SNEAKERS],
            pool.clone(),
            kafka.clone(),
            kafka.producer().unwrap(),
            std::sync::Arc::new(Seen),
            3,
        );
        tokio::spawn(consumer.run(cancel.clone()));
        deployments.push((kafka, db, pool));
    }
    let [(stage, _stage_db, stage_pool), (prod, _prod_db, prod_pool)] = &deployments[..] else { unreachable!() };
    let published = async |pool: &PgPool| {
        let id = Uuid::now_v7();
        change(pool, id, 1).await;
        wait_until("the relay to publish", Duration::from_secs(30), || async {
            (backlog(pool).await == 0).then_some(())
        })
        .await;
        id
    };
    let seen = async |pool: &PgPool| -> Vec<(String, Uuid)> {
        sqlx::query_as("SELECT topic, subject FROM seen ORDER BY n").fetch_all(pool).await.unwrap()
    };

    // On one partition per topic: had both read one topic, each would see the other's event
    // before its own next one.
    let (b1, a) = (published(prod_pool).await, published(stage_pool).await);
    let b2 = published(prod_pool).await;
    let ids = |seen: Vec<(String, Uuid)>| seen.into_iter().map(|(_, id)| id).collect::<Vec<_>>();
    let stage_seen = wait_until("stage's consumer to apply its event", Duration::from_secs(30), || async {
        Some(seen(stage_pool).await).filter(|seen| !seen.is_empty())
    })
    .await;
    let prod_seen = wait_until("prod's consumer to apply its second event", Duration::from_secs(30), || async {
        Some(seen(prod_pool).await).filter(|seen| ids(seen.clone()).contains(&b2))
    })
    .await;
    assert_eq!(
        stage_seen,
        [(topics::SNEAKERS.to_owned(), a)],
        "stage reads its own event, by the contract's topic name"
    );
    assert_eq!(ids(prod_seen), [b1, b2], "prod reads only its own");

    // On the brokers, each deployment's events are under its prefix.
    for (kafka, expected) in [(stage, vec![a]), (prod, vec![b1, b2])] {
        let records = read_to_end(&shared_brokers(), &kafka.topic(topics::SNEAKERS), Duration::from_secs(30)).await;
        let ids: Vec<Uuid> = records.iter().map(|r| r.key.as_deref().unwrap().parse().unwrap()).collect();
        assert_eq!(ids, expected, "{}", kafka.topic(topics::SNEAKERS));
    }
    cancel.cancel();
}

#[tokio::test]
async fn a_change_and_its_event_are_written_in_one_statement_or_not_at_all() {
    let (_db, pool) = outbox_db().await;
    sqlx::query("CREATE TABLE things (id uuid PRIMARY KEY, version bigint NOT NULL)").execute(&pool).await.unwrap();
    let id = Uuid::now_v7();
    let insert = Outgoing::after_write_sql(
        "INSERT INTO things (id, version) VALUES ($1, 1) ON CONFLICT DO NOTHING RETURNING id",
        2,
    );
    let update =
        Outgoing::after_write_sql("UPDATE things SET version = $2 WHERE id = $1 AND version = $2 - 1 RETURNING id", 3);
    let outgoing = |version| Outgoing::new("/sneakerstop/relaytest", id, version, &event(id, version));

    let wrote = outgoing(1).after_write(sqlx::query_as(&insert).bind(id), &pool).await.unwrap();
    assert!(wrote, "a new row is written with its event");
    assert_eq!(backlog(&pool).await, 1);

    let wrote = outgoing(1).after_write(sqlx::query_as(&insert).bind(id), &pool).await.unwrap();
    assert!(!wrote, "an insert that met ON CONFLICT DO NOTHING writes nothing");
    assert_eq!(backlog(&pool).await, 1, "and no event");

    let stale = outgoing(3).after_write(sqlx::query_as(&update).bind(id).bind(3_i64), &pool).await.unwrap();
    assert!(!stale, "an update whose version guard fails writes nothing");
    assert_eq!(backlog(&pool).await, 1, "and no event");

    let wrote = outgoing(2).after_write(sqlx::query_as(&update).bind(id).bind(2_i64), &pool).await.unwrap();
    assert!(wrote);
    let version: i64 = sqlx::query_scalar("SELECT version FROM things").fetch_one(&pool).await.unwrap();
    assert_eq!(version, 2, "the row moved on");
    assert_eq!(backlog(&pool).await, 2, "with its event");
}
