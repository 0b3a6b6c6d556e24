//! The consumer runtime against the shared test broker and real PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use sneakerstop_events::Envelope;
use sneakerstop_messaging::{ConsumerHealth, ConsumerRuntime, Handler, IncomingEvent, Kafka, MIGRATOR};
use sneakerstop_telemetry::trace::TraceContext;
use sneakerstop_test_support::{TestDb, publish, shared_brokers, unique, wait_until};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Records every event it applies in `effects` (no unique key: a second application
/// would show up as a second row).
struct Recorder;

impl Handler for Recorder {
    fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a IncomingEvent) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let payload: Value = serde_json::from_slice(&event.payload)?;
            // The handler runs inside the trace the event carried (a child span of it).
            let trace_id = TraceContext::current().map(|c| c.trace_id_hex());
            sqlx::query("INSERT INTO effects (event_id, n, trace_id) VALUES ($1, $2, $3)")
                .bind(event.envelope.id)
                .bind(payload["n"].as_i64())
                .bind(trace_id)
                .execute(tx)
                .await?;
            Ok(())
        })
    }
}

async fn setup() -> (TestDb, PgPool, Kafka, String) {
    let db = TestDb::new().await;
    let pool = sneakerstop_db::connect_and_migrate(&db.config(), "consumertest", &[&MIGRATOR]).await.unwrap();
    sqlx::query("CREATE TABLE effects (event_id uuid NOT NULL, n bigint, trace_id text)").execute(&pool).await.unwrap();
    let mut kafka = Kafka::new(shared_brokers());
    kafka.partitions = 1;
    let topic = unique("test.consumer");
    kafka.ensure_topics(&[topic.as_str()]).await.unwrap();
    (db, pool, kafka, topic)
}

fn envelope(id: Uuid) -> Vec<(&'static str, String)> {
    traced_envelope(id, None)
}

fn traced_envelope(id: Uuid, traceparent: Option<String>) -> Vec<(&'static str, String)> {
    Envelope {
        id,
        event_type: "test.happened".into(),
        source: "/test".into(),
        subject: "subject-1".into(),
        time: chrono::Utc::now(),
        schema_version: 1,
        aggregate_version: 1,
        traceparent,
    }
    .to_headers()
}

fn start(pool: &PgPool, kafka: &Kafka, topic: &str, group: &str) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    start_with(pool, kafka, topic, group, Arc::new(Recorder))
}

fn start_with(
    pool: &PgPool,
    kafka: &Kafka,
    topic: &str,
    group: &str,
    handler: Arc<dyn Handler>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let cancel = CancellationToken::new();
    let runtime =
        ConsumerRuntime::new(group, &[topic], pool.clone(), kafka.clone(), kafka.producer().unwrap(), handler, 3);
    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move { runtime.run(cancel).await.unwrap() }
    });
    (cancel, task)
}

async fn effects_of(pool: &PgPool, id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM effects WHERE event_id = $1").bind(id).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn an_event_delivered_twice_has_one_effect() {
    let (_db, pool, kafka, topic) = setup().await;
    let brokers = shared_brokers();
    let (twice, marker) = (Uuid::now_v7(), Uuid::now_v7());
    publish(&brokers, &topic, "subject-1", &envelope(twice), &json!({"n": 1})).await;
    publish(&brokers, &topic, "subject-1", &envelope(twice), &json!({"n": 1})).await;
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned();
    publish(&brokers, &topic, "subject-1", &traced_envelope(marker, Some(trace)), &json!({"n": 2})).await;

    let (cancel, task) = start(&pool, &kafka, &topic, &unique("group"));
    // One partition: once the marker is applied, both copies before it were handled.
    wait_until("the marker event is applied", Duration::from_secs(30), || async {
        (effects_of(&pool, marker).await == 1).then_some(())
    })
    .await;
    assert_eq!(effects_of(&pool, twice).await, 1, "the duplicate changed nothing");
    let trace_id: Option<String> = sqlx::query_scalar("SELECT trace_id FROM effects WHERE event_id = $1")
        .bind(marker)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        trace_id.as_deref(),
        Some("0af7651916cd43dd8448eb211c80319c"),
        "the consumer continued the event's trace"
    );
    cancel.cancel();
    task.await.unwrap();

    // A consumer that reads the whole topic again (a new group, as after lost offsets)
    // changes nothing either.
    let later = Uuid::now_v7();
    publish(&brokers, &topic, "subject-1", &envelope(later), &json!({"n": 3})).await;
    let (cancel, task) = start(&pool, &kafka, &topic, &unique("group"));
    wait_until("the later event is applied", Duration::from_secs(30), || async {
        (effects_of(&pool, later).await == 1).then_some(())
    })
    .await;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM effects").fetch_one(&pool).await.unwrap();
    assert_eq!(total, 3, "every event applied exactly once across redeliveries");
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn offsets_are_committed_so_a_restarted_consumer_resumes_where_it_stopped() {
    let (_db, pool, kafka, topic) = setup().await;
    let brokers = shared_brokers();
    let group = unique("group");
    let first = Uuid::now_v7();
    publish(&brokers, &topic, "k", &envelope(first), &json!({"n": 1})).await;
    let (cancel, task) = start(&pool, &kafka, &topic, &group);
    wait_until("the first event is applied", Duration::from_secs(30), || async {
        (effects_of(&pool, first).await == 1).then_some(())
    })
    .await;
    cancel.cancel();
    task.await.unwrap();

    // Forget the inbox: if the group re-read the first event it would be applied again.
    sqlx::query("DELETE FROM inbox").execute(&pool).await.unwrap();
    let second = Uuid::now_v7();
    publish(&brokers, &topic, "k", &envelope(second), &json!({"n": 2})).await;
    let (cancel, task) = start(&pool, &kafka, &topic, &group);
    wait_until("the second event is applied", Duration::from_secs(30), || async {
        (effects_of(&pool, second).await == 1).then_some(())
    })
    .await;
    assert_eq!(effects_of(&pool, first).await, 1, "the committed offset kept the first event from coming back");
    cancel.cancel();
    task.await.unwrap();
}

/// Records events as [`Recorder`] does, but says events whose payload has `"skip": true`
/// cannot concern it.
struct Choosy;

impl Handler for Choosy {
    fn concerns(&self, event: &IncomingEvent) -> bool {
        serde_json::from_slice::<Value>(&event.payload).map_or(true, |payload| payload["skip"] != json!(true))
    }

    fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a IncomingEvent) -> BoxFuture<'a, anyhow::Result<()>> {
        Recorder.handle(tx, event)
    }
}

async fn in_inbox(pool: &PgPool, id: Uuid) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM inbox WHERE event_id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn events_of_no_concern_are_acknowledged_in_their_place_without_a_transaction() {
    let (_db, pool, kafka, topic) = setup().await;
    let brokers = shared_brokers();
    let group = unique("group");
    // Published before the consumer starts, so they come as one batch: two to apply with an
    // event of no concern between them, and one of no concern last.
    let (first, between, second, last) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    publish(&brokers, &topic, "k", &envelope(first), &json!({"n": 1})).await;
    publish(&brokers, &topic, "k", &envelope(between), &json!({"n": 2, "skip": true})).await;
    publish(&brokers, &topic, "k", &envelope(second), &json!({"n": 3})).await;
    publish(&brokers, &topic, "k", &envelope(last), &json!({"n": 4, "skip": true})).await;
    let reader = sneakerstop_test_support::PositionReader::new(&brokers, std::slice::from_ref(&group), &topic).unwrap();
    let (cancel, task) = start_with(&pool, &kafka, &topic, &group, Arc::new(Choosy));
    // Every offset acknowledged, the last event's (of no concern) too.
    wait_until("the group to commit all four offsets", Duration::from_secs(30), || async {
        let positions = reader.read().await.ok()?;
        positions.values().any(|(committed, end)| *committed == 4 && *end == 4).then_some(())
    })
    .await;
    for (id, applied) in [(first, true), (between, false), (second, true), (last, false)] {
        assert_eq!(effects_of(&pool, id).await, i64::from(applied), "{id}: applied {applied}");
        assert_eq!(in_inbox(&pool, id).await, applied, "{id}: an inbox row only for what was applied");
    }
    cancel.cancel();
    task.await.unwrap();

    // One at a time too: an event of no concern alone is acknowledged, the next applied.
    let (alone, after) = (Uuid::now_v7(), Uuid::now_v7());
    let (cancel, task) = start_with(&pool, &kafka, &topic, &group, Arc::new(Choosy));
    publish(&brokers, &topic, "k", &envelope(alone), &json!({"n": 5, "skip": true})).await;
    publish(&brokers, &topic, "k", &envelope(after), &json!({"n": 6})).await;
    wait_until("the event after it is applied", Duration::from_secs(30), || async {
        (effects_of(&pool, after).await == 1).then_some(())
    })
    .await;
    assert_eq!(effects_of(&pool, alone).await, 0);
    assert!(!in_inbox(&pool, alone).await);
    cancel.cancel();
    task.await.unwrap();
}

/// Applies events only once its gate opens, then records them as [`Recorder`] does.
struct Gated(Arc<tokio::sync::Semaphore>);

impl Handler for Gated {
    fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a IncomingEvent) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            drop(self.0.acquire().await?);
            Recorder.handle(tx, event).await
        })
    }
}

#[tokio::test]
async fn a_member_holding_nothing_while_its_group_is_stalled_rejoins_and_the_stall_is_reported() {
    let (_db, pool, kafka, topic) = setup().await;
    let group = unique("stall");
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    // Two members of one group on a one-partition topic: one holds the partition, the other
    // holds nothing. Each reports to a health record of its own.
    let members: Vec<_> = (0..2)
        .map(|_| {
            let health = ConsumerHealth::new(Duration::from_secs(2));
            let runtime = ConsumerRuntime::new(
                &group,
                &[topic.as_str()],
                pool.clone(),
                kafka.clone(),
                kafka.producer().unwrap(),
                Arc::new(Gated(gate.clone())),
                3,
            )
            .reporting_to(health.clone());
            let cancel = CancellationToken::new();
            tokio::spawn(runtime.run(cancel.clone()));
            (health, cancel)
        })
        .collect();
    let group_of = |health: &ConsumerHealth| health.report().0.get(&group).cloned();
    wait_until("both members to be watched, one holding the partition", Duration::from_secs(60), || async {
        let held: Vec<_> = members.iter().filter_map(|(h, _)| group_of(h)).map(|g| g.assigned_partitions).collect();
        (held.len() == 2 && held.iter().sum::<usize>() == 1).then_some(())
    })
    .await;

    // The holder blocks on its first event: lag, and no progress.
    let id = Uuid::now_v7();
    publish(&kafka.brokers, &topic, "k", &envelope(id), &json!({"n": 1})).await;
    let stalled = wait_until("the idle member to see the stall and rejoin", Duration::from_secs(60), || async {
        members.iter().filter_map(|(h, _)| group_of(h)).find(|g| g.stalled && g.rejoins >= 1)
    })
    .await;
    assert!(stalled.lag >= 1, "{stalled:?}");
    let (_, problems) = members.iter().map(|(h, _)| h.report()).find(|(_, p)| !p.is_empty()).unwrap();
    assert!(problems[0].contains(&group), "{problems:?}");

    // Open the gate: the event is applied once and the group is healthy again.
    gate.add_permits(1000);
    wait_until("the event to be applied", Duration::from_secs(60), || async {
        (effects_of(&pool, id).await == 1).then_some(())
    })
    .await;
    wait_until("the stall to clear", Duration::from_secs(60), || async {
        members.iter().all(|(h, _)| group_of(h).is_some_and(|g| !g.stalled && g.lag == 0)).then_some(())
    })
    .await;
    assert_eq!(effects_of(&pool, id).await, 1, "applied once, whoever held it");
    for (_, cancel) in members {
        cancel.cancel();
    }
}
