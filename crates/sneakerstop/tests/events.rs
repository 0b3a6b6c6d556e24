//! Events end to end: the real binary publishes what its HTTP API changed, as CloudEvents
//! on the real broker, keyed by aggregate, in order, carrying the request's trace.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sneakerstop_test_support::{Record, Server, TestDb, read_topic, shared_brokers, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn listing_and_editing_publish_ordered_cloudevents_with_the_requests_trace() {
    let db = TestDb::new().await;
    let server = Server::start(
        BIN,
        &["serve"],
        &[
            ("DATABASE_URL", db.url()),
            ("JWT_SECRET", "events-test-secret-0123456789-abcdefgh".into()),
            ("KAFKA_BROKERS", shared_brokers()),
            ("OUTBOX_POLL_INTERVAL", "200ms".into()),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let ready: Value = http.get(server.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert!(ready["checks"]["kafka"].is_null(), "the broker is not a readiness check: {ready}");
    assert_eq!(ready["checks"]["postgres:catalog"], "ok", "{ready}");

    let response = http
        .post(server.url("/api/users/signup"))
        .json(&json!({"email": format!("{}@example.com", uuid::Uuid::now_v7()), "password": "sell sell sell"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let cookie = response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let user: Value = response.json().await.unwrap();
    let user_id = user["id"].as_str().unwrap().to_owned();

    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let response = http
        .post(server.url("/api/sneakers"))
        .header("cookie", &cookie)
        .header("traceparent", &traceparent)
        .json(&json!({"title": "Air Force 1", "price": 110, "size": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let answered = response.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(answered.contains(TRACE_ID), "the response continues the caller's trace: {answered}");
    let sneaker: Value = response.json().await.unwrap();
    let id = sneaker["id"].as_str().unwrap().to_owned();

    let response = http
        .put(server.url(&format!("/api/sneakers/{id}")))
        .header("cookie", &cookie)
        .header("if-match", "\"1\"")
        .json(&json!({"title": "Air Force 1 '07", "price": 99.5, "size": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let records = read_topic(
        &shared_brokers(),
        &server.topic("catalog.sneakers"),
        Duration::from_secs(30),
        |r| r.key.as_deref() == Some(id.as_str()),
        |rs| rs.len() >= 2,
    )
    .await;
    let (listed, updated): (&Record, &Record) = (&records[0], &records[1]);
    assert_eq!(listed.header("ce_type"), Some("sneaker.listed"));
    assert_eq!(updated.header("ce_type"), Some("sneaker.updated"));
    assert_eq!(listed.partition, updated.partition, "one sneaker, one partition");
    assert!(listed.offset < updated.offset);
    assert_eq!(listed.header("ce_aggregateversion"), Some("1"));
    assert_eq!(updated.header("ce_aggregateversion"), Some("2"));
    for record in [listed, updated] {
        assert_eq!(record.header("ce_specversion"), Some("1.0"));
        assert_eq!(record.header("ce_source"), Some("/sneakerstop/catalog"));
        assert_eq!(record.header("ce_subject"), Some(id.as_str()));
        assert_eq!(record.header("content-type"), Some("application/json"));
        assert!(record.header("ce_time").is_some());
        let ce_id = record.header("ce_id").unwrap();
        assert_eq!(uuid::Uuid::parse_str(ce_id).unwrap().get_version_num(), 7);
    }
    assert!(listed.header("traceparent").unwrap().contains(TRACE_ID), "the event carries the request's trace");
    assert_eq!(listed.json["priceCents"], 11_000);
    assert_eq!(updated.json["priceCents"], 9_950);
    assert_eq!(updated.json["title"], "Air Force 1 '07");
    assert_eq!(updated.json["sellerId"], user_id.as_str());

    let registered = read_topic(
        &shared_brokers(),
        &server.topic("identity.users"),
        Duration::from_secs(30),
        |r| r.key.as_deref() == Some(user_id.as_str()),
        |rs| !rs.is_empty(),
    )
    .await;
    assert_eq!(registered[0].header("ce_type"), Some("user.registered"));
    assert_eq!(registered[0].json["userId"], user_id.as_str());

    let metrics = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("events_published_total{") && l.contains(r#"type="sneaker.listed""#)),
        "{metrics}"
    );
    // The backlog is measured on a timer of its own, which may not have run yet.
    let backlog = || async {
        let metrics = http.get(server.url("/metrics")).send().await.ok()?.text().await.ok()?;
        metrics.contains("outbox_backlog{").then_some(())
    };
    wait_until("the outbox backlog gauge", Duration::from_secs(10), backlog).await;
    assert!(server.terminate().await);
}
