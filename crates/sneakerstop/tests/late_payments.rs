//! Paid in time means sold, through the real binary, with orders' consumer stalled the way a
//! crash stalls it: the test locks orders' inbox, so the consumer can apply no event (every
//! event's id goes into the inbox in the transaction that applies it), while orders' HTTP
//! handlers and its expiry sweeper go on as usual.
//!
//! - a payment accepted before the deadline completes its order although orders hears of
//!   it only after the deadline (the order waits for payments' word, `payment.lapsed`,
//!   which never comes for a paid order);
//! - an order nobody pays expires on payments' word, a moment after its deadline;
//! - a buyer at the cap on unpaid holds whose held order is paid, but not yet heard of, is
//!   not refused: the request waits until orders has heard what payments said.

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sneakerstop_db::sqlx::{self, PgPool};
use sneakerstop_test_support::{Server, TestDb, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");
const DEADLINE: Duration = Duration::from_secs(60);

struct Shop {
    http: Client,
    server: Server,
    pool: PgPool,
    _db: TestDb,
}

impl Shop {
    async fn start(extra: &[(&'static str, &str)]) -> Self {
        let db = TestDb::new().await;
        let mut env = vec![
            ("DATABASE_URL", db.url()),
            ("JWT_SECRET", "late-payments-secret-0123456789-abcdef".to_owned()),
            ("ORDER_SWEEP_INTERVAL", "200ms".to_owned()),
            ("PAYMENT_LAPSE_INTERVAL", "200ms".to_owned()),
        ];
        env.extend(extra.iter().map(|(key, value)| (*key, (*value).to_owned())));
        let server = Server::start(BIN, &["serve"], &env).await;
        server.caught_up().await;
        let pool = PgPool::connect(&db.url()).await.unwrap();
        Self { http: Client::new(), server, pool, _db: db }
    }

    async fn post(&self, path: &str, cookie: &str, body: Value) -> (StatusCode, Value) {
        let response = self.http.post(self.server.url(path)).header("cookie", cookie).json(&body).send().await.unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, cookie: &str) -> Value {
        self.http.get(self.server.url(path)).header("cookie", cookie).send().await.unwrap().json().await.unwrap()
    }

    /// A listed pair ordered by `buyer` (waiting for orders to hear of the listing, and then
    /// for payments to hear of the order); returns (sneaker, order).
    async fn ordered(&self, seller: &str, buyer: &str) -> (String, String) {
        let sneaker = self.listed(seller).await;
        let (status, order) = self.post("/api/orders", buyer, json!({"sneakerId": sneaker})).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        let order = order["id"].as_str().unwrap().to_owned();
        self.until_row("payments.orders", &order).await;
        (sneaker, order)
    }

    /// A listed pair that orders has heard of.
    async fn listed_and_known(&self, seller: &str) -> String {
        let sneaker = self.listed(seller).await;
        self.until_row("orders.sneakers", &sneaker).await;
        sneaker
    }

    /// A pair `seller` listed; its id.
    async fn listed(&self, seller: &str) -> String {
        let (status, sneaker) =
            self.post("/api/sneakers", seller, json!({"title": "Gel-Lyte III", "price": 120, "size": 9})).await;
        assert_eq!(status, StatusCode::CREATED, "{sneaker}");
        sneaker["id"].as_str().unwrap().to_owned()
    }

    /// Waits until a service's replica `table` has the row `id`.
    async fn until_row(&self, table: &str, id: &str) {
        wait_until(&format!("{table} to hold {id}"), DEADLINE, || async {
            let known: Option<i32> = sqlx::query_scalar(&format!("SELECT 1 FROM {table} WHERE id = $1::uuid"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .unwrap();
            known.map(|_| ())
        })
        .await;
    }

    /// Stalls orders' consumer until the returned transaction ends: its inbox is locked
    /// against inserts, and every event is recorded there as it is applied.
    async fn stall_orders_consumer(&self) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let mut tx = self.pool.begin().await.unwrap();
        sqlx::query("LOCK TABLE orders.inbox IN EXCLUSIVE MODE").execute(&mut *tx).await.unwrap();
        tx
    }

    async fn until_order(&self, buyer: &str, order: &str, status: &str) -> Value {
        wait_until(&format!("order {order} to be {status}"), DEADLINE, || async {
            let seen = self.get(&format!("/api/orders/{order}"), buyer).await;
            (seen["status"] == status).then_some(seen)
        })
        .await
    }
}

#[tokio::test]
async fn a_payment_accepted_in_time_completes_its_order_however_late_orders_hears_of_it() {
    let shop = Shop::start(&[("ORDER_RESERVATION_TTL", "3s")]).await;
    let (seller, buyer) = (shop.server.signup().await, shop.server.signup().await);
    let (sneaker, paid) = shop.ordered(&seller, &buyer).await;
    let (_, unpaid) = shop.ordered(&seller, &buyer).await;

    let stalled = shop.stall_orders_consumer().await;
    let (status, payment) = shop.post("/api/payments", &buyer, json!({"orderId": paid, "token": "tok_visa"})).await;
    assert_eq!(status, StatusCode::CREATED, "accepted before the deadline: {payment}");
    // The deadline passes with orders unaware of the payment, and then some.
    let order = shop.get(&format!("/api/orders/{paid}"), &buyer).await;
    let deadline: chrono::DateTime<chrono::Utc> = order["expiresAt"].as_str().unwrap().parse().unwrap();
    tokio::time::sleep((deadline - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(3)).await;
    assert_eq!(shop.get(&format!("/api/orders/{paid}"), &buyer).await["status"], "created", "waiting, not expired");
    // Payments declared the order nobody paid lapsed (orders, stalled, applies that later).
    let lapsed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payments.orders WHERE id = $1::uuid AND lapsed_at IS NOT NULL")
            .bind(&unpaid)
            .fetch_one(&shop.pool)
            .await
            .unwrap();
    assert_eq!(lapsed, 1, "payments closed the unpaid order's window at its deadline");

    stalled.rollback().await.unwrap();
    shop.until_order(&buyer, &paid, "complete").await;
    let expired = shop.until_order(&buyer, &unpaid, "cancelled").await;
    assert_eq!(expired["cancelReason"], "expired", "the unpaid one expired on payments' word");
    wait_until("the pair to be sold", DEADLINE, || async {
        let pair = shop.get(&format!("/api/sneakers/{sneaker}"), &buyer).await;
        (pair["status"] == "sold").then_some(())
    })
    .await;
    let charges: Vec<String> = sqlx::query_scalar("SELECT status FROM payments.payments WHERE order_id = $1::uuid")
        .bind(&paid)
        .fetch_all(&shop.pool)
        .await
        .unwrap();
    assert_eq!(charges, ["succeeded"], "charged once, never refunded");
    let lapses: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payments.orders WHERE id = $1::uuid AND lapsed_at IS NOT NULL")
            .bind(&paid)
            .fetch_one(&shop.pool)
            .await
            .unwrap();
    assert_eq!(lapses, 0, "payments never declared a paid order lapsed");
    // A payment that starts after the deadline is refused and charges nothing.
    let (status, late) = shop.post("/api/payments", &buyer, json!({"orderId": unpaid, "token": "tok_visa"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{late}");
    assert!(shop.server.terminate().await);
}

#[tokio::test]
async fn a_paid_order_orders_has_not_heard_of_yet_is_not_an_unpaid_hold() {
    let shop = Shop::start(&[("ORDER_MAX_UNPAID_PER_BUYER", "1")]).await;
    let (seller, buyer, hoarder) = (shop.server.signup().await, shop.server.signup().await, shop.server.signup().await);
    let (_, first) = shop.ordered(&seller, &buyer).await;
    let next = shop.listed_and_known(&seller).await;

    // Paid, and orders cannot hear of it while its consumer is stalled.
    let stalled = shop.stall_orders_consumer().await;
    let (status, _) = shop.post("/api/payments", &buyer, json!({"orderId": first, "token": "tok_visa"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        stalled.rollback().await.unwrap();
    });
    // The next order: the buyer's one hold is paid. Orders waits until it has heard that
    // (its consumer resumes after 2 s) rather than refusing.
    let asked = Instant::now();
    let (status, second) = shop.post("/api/orders", &buyer, json!({"sneakerId": next})).await;
    assert_eq!(status, StatusCode::CREATED, "a paying buyer is not refused for a paid order: {second}");
    assert!(asked.elapsed() >= Duration::from_millis(1500), "it waited for orders to hear of the payment");
    release.await.unwrap();
    shop.until_order(&buyer, &first, "complete").await;

    // A buyer whose hold really is unpaid is refused, at once: orders has heard everything.
    shop.ordered(&seller, &hoarder).await;
    let another = shop.listed_and_known(&seller).await;
    let asked = Instant::now();
    let (status, refused) = shop.post("/api/orders", &hoarder, json!({"sneakerId": another})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused["type"].as_str().unwrap().ends_with("too-many-reservations"), "{refused}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "refused without waiting out ORDER_HOLD_WAIT: {:?}",
        asked.elapsed()
    );
    assert!(shop.server.terminate().await);
}
