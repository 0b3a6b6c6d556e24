//! Dead letters end to end: a poison event is parked on `<topic>.dlq` while the consumer
//! moves on, `sneakerstop dlq list` shows it, and `sneakerstop dlq replay` re-publishes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use sneakerstop_db::sqlx::{self, PgConnection, PgPool};
use sneakerstop_events::Envelope;
use sneakerstop_messaging::{ConsumerRuntime, Handler, IncomingEvent, Kafka, MIGRATOR};
use sneakerstop_test_support::{TestDb, publish, shared_brokers, unique, wait_until};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");

/// Applies events into `effects`, but fails on `{"poison": true}` while `poisoned` is set.
struct Picky {
    poisoned: Arc<AtomicBool>,
}

impl Handler for Picky {
    fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a IncomingEvent) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let payload: Value = serde_json::from_slice(&event.payload)?;
            if payload["poison"] == true && self.poisoned.load(Ordering::SeqCst) {
                anyhow::bail!("cannot digest poison");
            }
            sqlx::query("INSERT INTO effects (event_id) VALUES ($1)").bind(event.envelope.id).execute(tx).await?;
            Ok(())
        })
    }
}

fn headers(id: Uuid) -> Vec<(&'static str, String)> {
    Envelope {
        id,
        event_type: "test.happened".into(),
        source: "/test".into(),
        subject: "s".into(),
        time: chrono::Utc::now(),
        schema_version: 1,
        aggregate_version: 1,
        traceparent: None,
    }
    .to_headers()
}

async fn applied(pool: &PgPool, id: Uuid) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM effects WHERE event_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
        == 1
}

async fn cli(args: &[&str]) -> Vec<Value> {
    let output = tokio::process::Command::new(BIN)
        .args(args)
        .env("KAFKA_BROKERS", shared_brokers())
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).filter(|v: &Value| v.get("level").is_none()).collect()
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_the_rest_flows_and_replay_brings_it_back() {
    let db = TestDb::new().await;
    let pool = sneakerstop_db::connect_and_migrate(&db.config(), "dlqtest", &[&MIGRATOR]).await.unwrap();
    sqlx::query("CREATE TABLE effects (event_id uuid NOT NULL)").execute(&pool).await.unwrap();
    let brokers = shared_brokers();
    let mut kafka = Kafka::new(&brokers);
    kafka.partitions = 1;
    let topic = unique("test.dlq");
    kafka.ensure_topics(&[topic.as_str()]).await.unwrap();

    let (before, poison, after) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    publish(&brokers, &topic, "s", &headers(before), &json!({})).await;
    publish(&brokers, &topic, "s", &headers(poison), &json!({"poison": true})).await;
    publish(&brokers, &topic, "s", &[("ce_specversion", "0.3".to_owned())], &json!({})).await; // not an envelope
    publish(&brokers, &topic, "s", &headers(after), &json!({})).await;

    let poisoned = Arc::new(AtomicBool::new(true));
    let group = unique("group");
    let handler = Arc::new(Picky { poisoned: poisoned.clone() });
    let runtime = ConsumerRuntime::new(
        &group,
        &[topic.as_str()],
        pool.clone(),
        kafka.clone(),
        kafka.producer().unwrap(),
        handler,
        3,
    );
    let cancel = CancellationToken::new();
    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move { runtime.run(cancel).await.unwrap() }
    });

    wait_until("the event after the poison is applied", Duration::from_secs(30), || async {
        applied(&pool, after).await.then_some(())
    })
    .await;
    assert!(applied(&pool, before).await);
    assert!(!applied(&pool, poison).await, "the poison event changed nothing");

    let letters = cli(&["dlq", "list", "--topic", &topic]).await;
    assert_eq!(letters.len(), 2, "{letters:#?}");
    let header = |letter: &Value, name: &str| -> String {
        letter["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .map(|h| h[1].as_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let parked = &letters[0];
    assert_eq!(header(parked, "ce_id"), poison.to_string());
    assert!(header(parked, "dlq_error").contains("cannot digest poison"), "{parked}");
    assert_eq!(header(parked, "dlq_attempts"), "3");
    assert_eq!(header(parked, "dlq_original_topic"), topic);
    assert_eq!(header(parked, "dlq_original_partition"), "0");
    assert_eq!(header(parked, "dlq_original_offset"), "1");
    assert_eq!(header(parked, "dlq_consumer_group"), group);
    let malformed = &letters[1];
    assert!(header(malformed, "dlq_error").contains("invalid envelope"), "{malformed}");
    assert_eq!(header(malformed, "dlq_attempts"), "1");

    // Fix the cause, replay the one event, and it is applied once.
    poisoned.store(false, Ordering::SeqCst);
    let replayed = cli(&["dlq", "replay", "--topic", &topic, "--event-id", &poison.to_string()]).await;
    assert_eq!(replayed, [json!({"replayed": 1, "topic": topic})]);
    wait_until("the replayed event is applied", Duration::from_secs(30), || async {
        applied(&pool, poison).await.then_some(())
    })
    .await;

    let output = tokio::process::Command::new(BIN)
        .args(["dlq", "replay", "--topic", &topic, "--event-id", &Uuid::now_v7().to_string()])
        .env("KAFKA_BROKERS", &brokers)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "replaying an unknown event id is an error");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no dead letter with event id"));

    cancel.cancel();
    task.await.unwrap();
}
