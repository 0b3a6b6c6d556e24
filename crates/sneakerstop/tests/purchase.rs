//! A whole purchase, end to end through the real binary, real PostgreSQL and the real broker:
//! list → order → pay → order complete → pair sold; and cancel → cannot pay → relisted.
//! (The charge-versus-cancellation race is in `race.rs`, and at the service level in
//! `crates/payments/tests/http.rs`.)

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sneakerstop_test_support::{Server, TestDb, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");
const DEADLINE: Duration = Duration::from_secs(30);

struct Shop {
    http: Client,
    server: Server,
}

impl Shop {
    async fn start(db: &TestDb) -> Self {
        let env = [("DATABASE_URL", db.url()), ("JWT_SECRET", "purchase-e2e-secret-0123456789-abcdef".to_owned())];
        Self { http: Client::new(), server: Server::start(BIN, &["serve"], &env).await }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        cookie: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.server.url(path)).header("cookie", cookie);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    /// Waits until a service has learnt something from an event: `path` answers `expected`.
    async fn until(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        cookie: &str,
        body: Option<Value>,
        expected: StatusCode,
    ) -> Value {
        wait_until(what, DEADLINE, || async {
            let (status, answer) = self.call(method.clone(), path, cookie, body.clone()).await;
            (status == expected).then_some(answer)
        })
        .await
    }

    async fn pair_is(&self, sneaker: &str, status: &str) {
        wait_until(&format!("the pair to be {status}"), DEADLINE, || async {
            let (_, pair) = self.call(reqwest::Method::GET, &format!("/api/sneakers/{sneaker}"), "", None).await;
            (pair["status"] == status).then_some(())
        })
        .await;
    }

    /// Lists a pair and orders it; returns (sneaker id, order id).
    async fn listed_and_ordered(&self, seller: &str, buyer: &str) -> (String, String) {
        let (status, sneaker) = self
            .call(
                reqwest::Method::POST,
                "/api/sneakers",
                seller,
                Some(json!({"title": "Dunk Low Panda", "price": 110.5, "size": 9.5})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let sneaker = sneaker["id"].as_str().unwrap().to_owned();
        let order = self
            .until(
                "orders to know the pair",
                reqwest::Method::POST,
                "/api/orders",
                buyer,
                Some(json!({"sneakerId": sneaker})),
                StatusCode::CREATED,
            )
            .await;
        (sneaker, order["id"].as_str().unwrap().to_owned())
    }

    /// Waits until payments knows `order`: an unknown test token is refused only after the
    /// order checks pass, and creates nothing.
    async fn payments_knows(&self, buyer: &str, order: &str, expected: StatusCode) {
        let probe = json!({"orderId": order, "token": "tok_probe"});
        self.until("payments to know the order", reqwest::Method::POST, "/api/payments", buyer, Some(probe), expected)
            .await;
    }
}

#[tokio::test]
async fn a_purchase_completes_the_order_and_sells_the_pair() {
    let db = TestDb::new().await;
    let shop = Shop::start(&db).await;
    let (seller, buyer) = (shop.server.signup().await, shop.server.signup().await);
    let (sneaker, order) = shop.listed_and_ordered(&seller, &buyer).await;
    shop.pair_is(&sneaker, "reserved").await;
    shop.payments_knows(&buyer, &order, StatusCode::UNPROCESSABLE_ENTITY).await;

    let (status, payment) = shop
        .call(reqwest::Method::POST, "/api/payments", &buyer, Some(json!({"orderId": order, "token": "tok_visa"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{payment}");
    assert_eq!(payment["amount"], 110.5);
    assert_eq!(payment["status"], "succeeded");

    let completed = wait_until("the order to complete", DEADLINE, || async {
        let (_, order) = shop.call(reqwest::Method::GET, &format!("/api/orders/{order}"), &buyer, None).await;
        (order["status"] == "complete").then_some(order)
    })
    .await;
    assert_eq!(completed["paymentId"], payment["id"]);
    shop.pair_is(&sneaker, "sold").await;

    let (status, _) = shop
        .call(reqwest::Method::POST, "/api/payments", &buyer, Some(json!({"orderId": order, "token": "tok_visa"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "paying twice charges once");
    let (_, mine) = shop.call(reqwest::Method::GET, "/api/payments", &buyer, None).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);

    let metrics = shop.http.get(shop.server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "payments_succeeded_total 1"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "payments_charged_cents_total 11050"), "{metrics}");
    assert!(shop.server.terminate().await);
}

#[tokio::test]
async fn a_cancelled_order_cannot_be_paid_and_its_pair_is_relisted() {
    let db = TestDb::new().await;
    let shop = Shop::start(&db).await;
    let (seller, buyer) = (shop.server.signup().await, shop.server.signup().await);
    let (sneaker, order) = shop.listed_and_ordered(&seller, &buyer).await;
    shop.payments_knows(&buyer, &order, StatusCode::UNPROCESSABLE_ENTITY).await;

    let (status, _) = shop.call(reqwest::Method::DELETE, &format!("/api/orders/{order}"), &buyer, None).await;
    assert_eq!(status, StatusCode::OK);
    shop.payments_knows(&buyer, &order, StatusCode::CONFLICT).await;
    let (status, refused) = shop
        .call(reqwest::Method::POST, "/api/payments", &buyer, Some(json!({"orderId": order, "token": "tok_visa"})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(refused["type"], "https://sneakerstop.dev/problems/order-cancelled");
    shop.pair_is(&sneaker, "available").await;
    let (_, mine) = shop.call(reqwest::Method::GET, "/api/payments", &buyer, None).await;
    assert_eq!(mine["items"], json!([]), "nothing was charged");
    assert!(shop.server.terminate().await);
}

#[tokio::test]
async fn no_client_sees_replica_lag_and_ids_that_cannot_exist_answer_at_once() {
    let db = TestDb::new().await;
    let shop = Shop::start(&db).await;
    let (seller, buyer) = (shop.server.signup().await, shop.server.signup().await);
    // This server's consumer groups are new and first read the shared test broker's history
    // (every other test's events); once they have caught up, lag is a matter of milliseconds.
    wait_until("the consumer groups to catch up with the topics' history", Duration::from_secs(120), || async {
        let (_, health) = shop.call(reqwest::Method::GET, "/healthz", "", None).await;
        let groups = health["details"]["consumers"].as_object().cloned().unwrap_or_default();
        (groups.len() == 4 && groups.values().all(|g| g["lag"] == 0)).then_some(())
    })
    .await;
    for _ in 0..5 {
        // Each request straight after the one before, never retried: the service waits for
        // its replica to hear of what was just made.
        let (status, sneaker) = shop
            .call(
                reqwest::Method::POST,
                "/api/sneakers",
                &seller,
                Some(json!({"title": "Gel-Kayano 14", "price": 150, "size": 9})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, order) =
            shop.call(reqwest::Method::POST, "/api/orders", &buyer, Some(json!({"sneakerId": sneaker["id"]}))).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        let body = json!({"orderId": order["id"], "token": "tok_visa"});
        let (status, payment) = shop.call(reqwest::Method::POST, "/api/payments", &buyer, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{payment}");
    }

    // Ordered, cancelled at once, then paid: told it is cancelled (or, if the cancellation
    // reached payments only after the charge, refunded) — never "no such order".
    let (sneaker, order) = shop.listed_and_ordered(&seller, &buyer).await;
    let (status, _) = shop.call(reqwest::Method::DELETE, &format!("/api/orders/{order}"), &buyer, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = shop
        .call(reqwest::Method::POST, "/api/payments", &buyer, Some(json!({"orderId": order, "token": "tok_visa"})))
        .await;
    match status {
        StatusCode::CONFLICT => assert_eq!(answer["type"], "https://sneakerstop.dev/problems/order-cancelled"),
        StatusCode::CREATED => {
            wait_until("the charge of the cancelled order to be refunded", DEADLINE, || async {
                let (_, mine) = shop.call(reqwest::Method::GET, "/api/payments", &buyer, None).await;
                let refunded = mine["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["orderId"] == order.as_str() && p["status"] == "refunded");
                refunded.then_some(())
            })
            .await;
        }
        other => panic!("paying a cancelled order answered {other}: {answer}"),
    }
    shop.pair_is(&sneaker, "available").await;

    // Ids no event can bring answer at once; an unknown fresh one after the bounded wait.
    for (id, cannot_exist) in [
        (uuid::Uuid::new_v4(), true),
        (uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 4_102_444_800, 0)), true),
        (uuid::Uuid::now_v7(), false),
    ] {
        let asked = std::time::Instant::now();
        let (status, _) = shop.call(reqwest::Method::POST, "/api/orders", &buyer, Some(json!({"sneakerId": id}))).await;
        let took = asked.elapsed();
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        if cannot_exist {
            assert!(took < Duration::from_millis(1500), "{id} answered after {took:?}");
        } else {
            assert!(took >= Duration::from_secs(2), "a fresh id waited the replica wait: {took:?}");
        }
    }
    assert!(shop.server.terminate().await);
}
