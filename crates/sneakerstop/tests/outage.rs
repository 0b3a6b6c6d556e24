//! A broker outage through the real binary: the pod stays ready, every HTTP write succeeds
//! while the broker is away, the events wait in the outbox, and they are all published,
//! once, when it returns. `/healthz` and the metrics say what is going on meanwhile.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sneakerstop_test_support::{Broker, Server, TestDb, read_to_end, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");
const DEADLINE: Duration = Duration::from_secs(60);

/// The sum of a metric's samples in a Prometheus text page.
fn sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test]
async fn writes_go_on_while_the_broker_is_away_and_their_events_follow_when_it_returns() {
    let db = TestDb::new().await;
    let mut broker = Broker::start().await;
    let server = Server::start(
        BIN,
        &["serve", "identity", "catalog"],
        &[
            ("DATABASE_URL", db.url()),
            ("JWT_SECRET", "outage-test-secret-0123456789-abcdefgh".into()),
            ("KAFKA_BROKERS", broker.address()),
            // A broker of its own: the contract's topic names, as a deployment has them.
            ("KAFKA_TOPIC_PREFIX", String::new()),
            // The producer gives up on a batch quickly and the relay retries it later.
            ("KAFKA_DELIVERY_TIMEOUT", "3s".into()),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let cookie = server.signup().await;
    let list = |n: usize| {
        http.post(server.url("/api/sneakers"))
            .header("cookie", &cookie)
            .json(&json!({"title": format!("Outage pair {n}"), "price": 100, "size": 9}))
            .send()
    };
    let health = || async { http.get(server.url("/healthz")).send().await.unwrap().json::<Value>().await.unwrap() };
    let metrics = || async { http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap() };
    let mut listed = HashSet::new();
    let first: Value = list(0).await.unwrap().json().await.unwrap();
    listed.insert(first["id"].as_str().unwrap().to_owned());

    broker.stop().await;
    wait_until("/healthz says the broker is away", DEADLINE, || async {
        let health = health().await;
        (health["status"] == "degraded" && health["details"]["broker"]["reachable"] == false).then_some(())
    })
    .await;
    assert_eq!(sum(&metrics().await, "kafka_broker_reachable"), 0.0);
    let ready = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "the pod can still serve: it stays ready");
    for n in 1..=10 {
        let response = list(n).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "writes succeed without the broker");
        let body: Value = response.json().await.unwrap();
        listed.insert(body["id"].as_str().unwrap().to_owned());
    }
    let pool = sneakerstop_db::sqlx::PgPool::connect(&db.url()).await.unwrap();
    let outbox = || async {
        sneakerstop_db::sqlx::query_scalar::<_, i64>("SELECT count(*) FROM catalog.outbox")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let waiting = outbox().await;
    assert!(waiting >= 10, "the events wait in the outbox: {waiting}");
    // The gauges operators alert on say so while publishing is stuck, not only after.
    wait_until("the backlog gauges show the waiting events", DEADLINE, || async {
        let metrics = metrics().await;
        (sum(&metrics, "outbox_backlog") >= 10.0 && sum(&metrics, "outbox_oldest_age_seconds") > 0.0).then_some(())
    })
    .await;

    broker.resume().await;
    wait_until("the outbox drains once the broker is back", DEADLINE, || async { (outbox().await == 0).then_some(()) })
        .await;
    wait_until("/healthz says the broker answers again", DEADLINE, || async {
        (health().await["details"]["broker"]["reachable"] == true).then_some(())
    })
    .await;
    let records = read_to_end(&broker.address(), "catalog.sneakers", DEADLINE).await;
    let published: Vec<String> = records
        .iter()
        .filter(|r| r.header("ce_type") == Some("sneaker.listed"))
        .map(|r| r.header("ce_subject").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        published.iter().collect::<HashSet<_>>(),
        listed.iter().collect::<HashSet<_>>(),
        "every listing, published"
    );
    assert_eq!(published.len(), listed.len(), "each once");
    assert!(server.terminate().await);
}
