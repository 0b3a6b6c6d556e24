//! Orders end to end: the real binary, real PostgreSQL, the real broker. Catalog and orders
//! learn of each other only through events, so every cross-service effect is awaited.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sneakerstop_test_support::{Server, TestDb, unique, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");
const DEADLINE: Duration = Duration::from_secs(30);

async fn start(db: &TestDb, extra: &[(&str, String)]) -> Server {
    let mut env = vec![("DATABASE_URL", db.url()), ("JWT_SECRET", "orders-e2e-secret-0123456789-abcdefgh".to_owned())];
    env.extend(extra.iter().cloned());
    Server::start(BIN, &["serve"], &env).await
}

async fn list(http: &Client, server: &Server, seller: &str) -> String {
    let response = http
        .post(server.url("/api/sneakers"))
        .header("cookie", seller)
        .json(&json!({"title": "Jordan 4 Retro", "price": 320, "size": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn order(http: &Client, server: &Server, buyer: &str, sneaker: &str) -> (StatusCode, Value) {
    let response = http
        .post(server.url("/api/orders"))
        .header("cookie", buyer)
        .json(&json!({"sneakerId": sneaker}))
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap_or(Value::Null))
}

/// Orders learns of a new listing from `sneaker.listed`; until then the pair is unknown (404,
/// which creates nothing, so asking again is safe).
async fn first_order(http: &Client, server: &Server, buyer: &str, sneaker: &str) -> Value {
    wait_until("orders to know the listing", DEADLINE, || async {
        let (status, body) = order(http, server, buyer, sneaker).await;
        match status {
            StatusCode::NOT_FOUND => None,
            StatusCode::CREATED => Some(body),
            other => panic!("unexpected {other}: {body}"),
        }
    })
    .await
}

async fn wait_for_status(http: &Client, server: &Server, sneaker: &str, status: &str) -> Value {
    wait_until(&format!("the pair to become {status}"), DEADLINE, || async {
        let pair: Value =
            http.get(server.url(&format!("/api/sneakers/{sneaker}"))).send().await.unwrap().json().await.unwrap();
        (pair["status"] == status).then_some(pair)
    })
    .await
}

#[tokio::test]
async fn order_reserve_conflict_cancel_and_reorder() {
    let db = TestDb::new().await;
    let server = start(&db, &[]).await;
    let http = Client::new();
    let (seller, first, second) = (server.signup().await, server.signup().await, server.signup().await);
    let sneaker = list(&http, &server, &seller).await;

    let placed = first_order(&http, &server, &first, &sneaker).await;
    assert_eq!(placed["status"], "created");
    assert_eq!(placed["price"], 320.0);
    let reserved = wait_for_status(&http, &server, &sneaker, "reserved").await;
    assert_eq!(reserved["version"], 2);

    let (status, body) = order(&http, &server, &second, &sneaker).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = order(&http, &server, &seller, &sneaker).await;
    assert_eq!(status, StatusCode::CONFLICT, "a seller cannot buy their own pair");

    // Someone else's order is invisible on every endpoint.
    let order_uri = server.url(&format!("/api/orders/{}", placed["id"].as_str().unwrap()));
    assert_eq!(http.get(&order_uri).header("cookie", &second).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(http.delete(&order_uri).header("cookie", &second).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let theirs: Value =
        http.get(server.url("/api/orders")).header("cookie", &second).send().await.unwrap().json().await.unwrap();
    assert_eq!(theirs["items"], json!([]));

    let response = http.delete(&order_uri).header("cookie", &first).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!((cancelled["status"].as_str(), cancelled["cancelReason"].as_str()), (Some("cancelled"), Some("buyer")));
    let available = wait_for_status(&http, &server, &sneaker, "available").await;
    assert_eq!(available["version"], 3);

    let (status, body) = order(&http, &server, &second, &sneaker).await;
    assert_eq!(status, StatusCode::CREATED, "the released pair can be ordered by someone else: {body}");
    wait_for_status(&http, &server, &sneaker, "reserved").await;

    let metrics = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l.starts_with("orders_created_total") && l.ends_with(" 2")), "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("orders_cancelled_total{reason=\"buyer\"} 1")), "{metrics}");
    assert!(server.terminate().await);
}

#[tokio::test]
async fn an_unpaid_order_expires_even_across_a_restart() {
    let db = TestDb::new().await;
    let settings = [("ORDER_RESERVATION_TTL", "2s".to_owned()), ("KAFKA_GROUP_PREFIX", unique("expiry"))];
    let server = start(&db, &settings).await;
    // Catalog must apply the order well within its 2 s reservation, not after the backlog.
    server.caught_up().await;
    let http = Client::new();
    let (seller, buyer) = (server.signup().await, server.signup().await);
    let sneaker = list(&http, &server, &seller).await;
    let placed = first_order(&http, &server, &buyer, &sneaker).await;
    wait_for_status(&http, &server, &sneaker, "reserved").await;

    // Stop the service before the reservation lapses and start it again only after.
    assert!(server.terminate().await);
    let expires_at: chrono::DateTime<chrono::Utc> = placed["expiresAt"].as_str().unwrap().parse().unwrap();
    let until_lapsed = (expires_at - chrono::Utc::now()).to_std().unwrap_or_default();
    // Waiting for a known wall-clock deadline, not guessing how long something takes.
    tokio::time::sleep(until_lapsed + Duration::from_millis(100)).await;
    let server = start(&db, &settings).await;

    let order_uri = server.url(&format!("/api/orders/{}", placed["id"].as_str().unwrap()));
    let expired = wait_until("the order to expire", DEADLINE, || async {
        let order: Value = http.get(&order_uri).header("cookie", &buyer).send().await.unwrap().json().await.unwrap();
        (order["status"] == "cancelled").then_some(order)
    })
    .await;
    assert_eq!(expired["cancelReason"], "expired");
    wait_for_status(&http, &server, &sneaker, "available").await;
    assert!(server.terminate().await);
}
