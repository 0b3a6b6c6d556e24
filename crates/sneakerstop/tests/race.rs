//! The charge-versus-cancellation race through the real binary: a buyer's payment is in
//! flight at the payment provider (a local fake of Stripe that holds its answer) when the
//! order is cancelled; the charge must end refunded, the order stay cancelled, the pair be
//! available again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sneakerstop_test_support::{Server, TestDb, wait_until};
use tokio::sync::Notify;

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");
const DEADLINE: Duration = Duration::from_secs(30);

/// A fake Stripe whose PaymentIntents answer waits until the test releases it.
#[derive(Default)]
struct Gate {
    charging: Notify,
    release: Notify,
    refunds: AtomicUsize,
}

async fn fake_stripe(gate: Arc<Gate>) -> String {
    let charge_gate = gate.clone();
    let app = Router::new()
        .route(
            "/v1/payment_intents",
            post(move || {
                let gate = charge_gate.clone();
                async move {
                    gate.charging.notify_one();
                    gate.release.notified().await;
                    axum::Json(json!({"id": "pi_race", "object": "payment_intent", "status": "succeeded"}))
                }
            }),
        )
        .route(
            "/v1/refunds",
            post(move || {
                let gate = gate.clone();
                async move {
                    gate.refunds.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({"id": "re_race", "object": "refund", "status": "succeeded"}))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// The order's status in payments' replica: what payments believes when the charge returns.
/// (Asked of its table, not its metrics: the shared test broker also carries other tests'
/// cancellations, which a new consumer group reads from the beginning.)
async fn status_in_payments(db: &sneakerstop_db::sqlx::PgPool, order: &str) -> Option<String> {
    sneakerstop_db::sqlx::query_scalar("SELECT status FROM payments.orders WHERE id = $1::uuid")
        .bind(order)
        .fetch_optional(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_charge_that_loses_the_race_with_cancellation_is_refunded_end_to_end() {
    let gate = Arc::new(Gate::default());
    let stripe = fake_stripe(gate.clone()).await;
    let db = TestDb::new().await;
    let env = [
        ("DATABASE_URL", db.url()),
        ("JWT_SECRET", "race-e2e-secret-0123456789-abcdefghij".to_owned()),
        ("PAYMENT_PROVIDER", "stripe".to_owned()),
        ("STRIPE_SECRET", "sk_test_race".to_owned()),
        ("STRIPE_API_BASE", stripe),
    ];
    let server = Server::start(BIN, &["serve"], &env).await;
    let http = Client::new();
    let (seller, buyer) = (server.signup().await, server.signup().await);

    let listing = json!({"title": "Travis Scott x Jordan 1 Low", "price": 1200, "size": 10});
    let sneaker: Value = http
        .post(server.url("/api/sneakers"))
        .header("cookie", &seller)
        .json(&listing)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sneaker = sneaker["id"].as_str().unwrap().to_owned();
    let order = wait_until("orders to know the pair", DEADLINE, || async {
        let response = http
            .post(server.url("/api/orders"))
            .header("cookie", &buyer)
            .json(&json!({"sneakerId": sneaker}))
            .send()
            .await
            .unwrap();
        (response.status() == StatusCode::CREATED).then_some(())?;
        response.json::<Value>().await.ok()
    })
    .await;
    let order = order["id"].as_str().unwrap().to_owned();

    // The buyer pays; wait until the provider holds the charge (payments knew the order).
    let paying = {
        let (http, url, buyer, order) = (http.clone(), server.url("/api/payments"), buyer.clone(), order.clone());
        tokio::spawn(async move {
            // 404 until payments has applied order.created; the charge is not attempted then.
            wait_until("payments to take the payment", DEADLINE, || async {
                let body = json!({"orderId": order, "token": "tok_visa"});
                let response = http.post(&url).header("cookie", &buyer).json(&body).send().await.unwrap();
                if response.status() == StatusCode::NOT_FOUND {
                    return None;
                }
                Some((response.status(), response.json::<Value>().await.unwrap_or(Value::Null)))
            })
            .await
        })
    };
    tokio::time::timeout(DEADLINE, gate.charging.notified()).await.expect("the charge reached the provider");

    // Meanwhile the buyer cancels, and payments learns of it while the charge is in flight.
    let response =
        http.delete(server.url(&format!("/api/orders/{order}"))).header("cookie", &buyer).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let replica = sneakerstop_db::sqlx::PgPool::connect(&db.url()).await.unwrap();
    wait_until("payments to apply order.cancelled", DEADLINE, || async {
        (status_in_payments(&replica, &order).await.as_deref() == Some("cancelled")).then_some(())
    })
    .await;

    // Now the provider answers: charged.
    gate.release.notify_one();
    let (status, answer) = paying.await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(answer["detail"].as_str().unwrap().contains("refunded"), "{answer}");

    let payment = wait_until("the charge to be refunded", DEADLINE, || async {
        let mine: Value =
            http.get(server.url("/api/payments")).header("cookie", &buyer).send().await.unwrap().json().await.unwrap();
        mine["items"].as_array().and_then(|items| items.iter().find(|p| p["status"] == "refunded").cloned())
    })
    .await;
    assert_eq!(payment["orderId"], order.as_str());
    assert_eq!(gate.refunds.load(Ordering::SeqCst), 1, "refunded once");

    let order: Value = http
        .get(server.url(&format!("/api/orders/{order}")))
        .header("cookie", &buyer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "cancelled", "a payment that lost the race never completes the order");
    let pair: Value =
        http.get(server.url(&format!("/api/sneakers/{sneaker}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(pair["status"], "available");
    assert!(server.terminate().await);
}
