//! A buyer's payment when the server dies mid-charge, through the real binary (`kill -9`),
//! real PostgreSQL, Apache Kafka, and a local fake of Stripe that holds its answer:
//! - the provider charged, the server died before recording it: after a restart the
//!   recovery task asks again under the same key, gets the original charge, and the
//!   purchase completes — one charge;
//! - the provider never saw the request: recovery makes the charge — one charge;
//! - either way the buyer's retry with the same `Idempotency-Key`, once its lease lapses,
//!   is answered with the payment instead of "in progress" forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sneakerstop_test_support::{Server, TestDb, unique, wait_until};
use tokio::sync::Notify;

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");
const DEADLINE: Duration = Duration::from_secs(60);

/// What the fake does with the first request for an idempotency key it has not seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Charge, then hold the answer (the server dies waiting for it).
    ChargeThenHold,
    /// Hold without charging (the request never "reached" the provider's ledger).
    HoldWithoutCharging,
    /// Charge and answer.
    Answer,
}

/// A fake Stripe PaymentIntents endpoint that, like Stripe, answers a repeated idempotency
/// key with the original charge.
struct FakeStripe {
    mode: Mutex<Mode>,
    /// Idempotency key → PaymentIntent id: the charges that happened.
    charges: Mutex<HashMap<String, String>>,
    /// Requests received per idempotency key.
    requests: Mutex<HashMap<String, usize>>,
    reached: Notify,
}

async fn payment_intents(State(fake): State<Arc<FakeStripe>>, headers: HeaderMap) -> axum::Json<Value> {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    *fake.requests.lock().unwrap().entry(key.clone()).or_default() += 1;
    let replay = fake.charges.lock().unwrap().get(&key).cloned();
    let id = match replay {
        Some(id) => id,
        None => {
            let mode = *fake.mode.lock().unwrap();
            let id = format!("pi_{}", unique("crash"));
            if mode != Mode::HoldWithoutCharging {
                fake.charges.lock().unwrap().insert(key, id.clone());
            }
            if mode != Mode::Answer {
                fake.reached.notify_one();
                std::future::pending::<()>().await;
            }
            id
        }
    };
    axum::Json(json!({"id": id, "object": "payment_intent", "status": "succeeded"}))
}

async fn fake_stripe(mode: Mode) -> (Arc<FakeStripe>, String) {
    let fake = Arc::new(FakeStripe {
        mode: Mutex::new(mode),
        charges: Mutex::default(),
        requests: Mutex::default(),
        reached: Notify::new(),
    });
    let app = Router::new().route("/v1/payment_intents", axum::routing::post(payment_intents)).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, base)
}

async fn post(http: &Client, url: &str, cookie: &str, key: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut request = http.post(url).header("cookie", cookie).json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap_or(Value::Null))
}

async fn get(http: &Client, url: &str, cookie: &str) -> Value {
    http.get(url).header("cookie", cookie).send().await.unwrap().json().await.unwrap()
}

async fn a_charge_interrupted_by_a_crash_completes_once(mode: Mode) {
    let (fake, stripe) = fake_stripe(mode).await;
    let db = TestDb::new().await;
    let env = [
        ("DATABASE_URL", db.url()),
        ("JWT_SECRET", "crash-e2e-secret-0123456789-abcdefghij".to_owned()),
        ("KAFKA_GROUP_PREFIX", unique("crash")),
        ("PAYMENT_PROVIDER", "stripe".to_owned()),
        ("STRIPE_SECRET", "sk_test_crash".to_owned()),
        ("STRIPE_API_BASE", stripe),
        // The buyer's key is leased for twice this; recovery takes attempts older than 3 s.
        ("PAYMENT_PROVIDER_TIMEOUT", "2s".to_owned()),
        ("PAYMENT_RECOVERY_AFTER", "3s".to_owned()),
    ];
    let first = Server::start(BIN, &["serve"], &env).await;
    let http = Client::new();
    let (seller, buyer) = (first.signup().await, first.signup().await);
    let listing = json!({"title": "New Balance 990v6", "price": 199.99, "size": 11});
    let (status, sneaker) = post(&http, &first.url("/api/sneakers"), &seller, None, &listing).await;
    assert_eq!(status, StatusCode::CREATED);
    let order = wait_until("orders to know the pair", DEADLINE, || async {
        let (status, order) =
            post(&http, &first.url("/api/orders"), &buyer, None, &json!({"sneakerId": sneaker["id"]})).await;
        (status == StatusCode::CREATED).then_some(order)
    })
    .await;
    let order_id = order["id"].as_str().unwrap().to_owned();

    // The buyer pays with a key; the provider holds its answer; the server dies meanwhile.
    let payment = json!({"orderId": order_id, "token": "tok_visa"});
    let paying = {
        let (http, url, buyer, payment) = (http.clone(), first.url("/api/payments"), buyer.clone(), payment.clone());
        tokio::spawn(async move {
            wait_until("payments to take the payment", DEADLINE, || async {
                let response = http
                    .post(&url)
                    .header("cookie", &buyer)
                    .header("idempotency-key", "pay-once")
                    .json(&payment)
                    .send()
                    .await;
                // 404 until payments knows the order; an error once the server is killed.
                match response {
                    Ok(r) if r.status() == StatusCode::NOT_FOUND => None,
                    other => Some(other.map(|r| r.status())),
                }
            })
            .await
        })
    };
    tokio::time::timeout(DEADLINE, fake.reached.notified()).await.expect("the charge reached the provider");
    first.kill().await;
    assert!(paying.await.unwrap().is_err(), "the buyer never got an answer from the killed server");

    // A new server; the provider answers from now on.
    *fake.mode.lock().unwrap() = Mode::Answer;
    let second = Server::start(BIN, &["serve"], &env).await;
    // The buyer retries with the same key: "in progress" while the lease holds, then the
    // payment recovery recorded.
    let paid = wait_until("the retry to be answered with the payment", DEADLINE, || async {
        let (status, body) = post(&http, &second.url("/api/payments"), &buyer, Some("pay-once"), &payment).await;
        match status {
            StatusCode::CONFLICT => None,
            StatusCode::CREATED => Some(body),
            other => panic!("unexpected {other}: {body}"),
        }
    })
    .await;
    assert_eq!(paid["status"], "succeeded", "{paid}");
    assert_eq!(paid["orderId"], order_id);

    wait_until("the order to complete and the pair to sell", DEADLINE, || async {
        let order = get(&http, &second.url(&format!("/api/orders/{order_id}")), &buyer).await;
        let pair = get(&http, &second.url(&format!("/api/sneakers/{}", sneaker["id"].as_str().unwrap())), "").await;
        (order["status"] == "complete" && pair["status"] == "sold").then_some(())
    })
    .await;
    let mine = get(&http, &second.url("/api/payments"), &buyer).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine["items"][0]["id"], paid["id"]);

    // At the provider: one charge, asked for twice (the request, then recovery) under one key.
    let charges = fake.charges.lock().unwrap().clone();
    assert_eq!(charges.len(), 1, "{charges:?}");
    let requests = fake.requests.lock().unwrap().clone();
    assert_eq!(requests.values().copied().collect::<Vec<_>>(), [2], "{requests:?}");
    assert!(second.terminate().await);
}

#[tokio::test]
async fn a_server_killed_after_the_provider_charged_completes_the_purchase_with_that_one_charge() {
    a_charge_interrupted_by_a_crash_completes_once(Mode::ChargeThenHold).await;
}

#[tokio::test]
async fn a_server_killed_before_the_provider_charged_completes_the_purchase_with_one_charge() {
    a_charge_interrupted_by_a_crash_completes_once(Mode::HoldWithoutCharging).await;
}
