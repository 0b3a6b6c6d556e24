//! The payments API, its event handling and refunds, against a fresh PostgreSQL database per
//! test, with the simulated provider (or a scripted one for the race).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sneakerstop_auth::SessionKeys;
use sneakerstop_events::orders::{CancelReason, OrderCancelled, OrderEvent};
use sneakerstop_messaging::{Handler, IncomingEvent};
use sneakerstop_payments::domain::{OrderReplica, OrderState, Payment};
use sneakerstop_payments::events::PaymentsHandler;
use sneakerstop_payments::provider::simulated::Simulated;
use sneakerstop_payments::provider::{Charge, ChargeRequest, PaymentProvider, ProviderError, Refund};
use sneakerstop_payments::store;
use sneakerstop_payments::{AppState, SCHEMA, lapse, recovery, refunds};
use sneakerstop_settings::Secret;
use sneakerstop_test_support::{Answer, Call, TestDb, wait_until};
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

struct Ctx {
    app: Router,
    pool: PgPool,
    keys: SessionKeys,
    _db: TestDb,
}

async fn ctx(provider: Arc<dyn PaymentProvider>) -> Ctx {
    let db = TestDb::new().await;
    let pool =
        sneakerstop_db::connect_and_migrate(&db.config(), SCHEMA, &sneakerstop_payments::migrations()).await.unwrap();
    let keys = SessionKeys::new(&Secret::new("payments-http-test-secret-0123456789"), Duration::from_secs(3600), false);
    let app = sneakerstop_payments::app(AppState {
        pool: pool.clone(),
        keys: keys.clone(),
        provider,
        currency: "usd".into(),
        claim_lease: Duration::from_secs(30),
        replica: sneakerstop_messaging::ReplicaWait::new(Duration::from_secs(2)),
    });
    Ctx { app, pool, keys, _db: db }
}

impl Ctx {
    fn user(&self) -> (Uuid, String) {
        sneakerstop_test_support::signed_in(&self.keys)
    }

    /// An order as the replica holds it after `order.created`.
    async fn order(&self, buyer: Uuid) -> Uuid {
        let id = Uuid::now_v7();
        let mut conn = self.pool.acquire().await.unwrap();
        let order = OrderReplica {
            id,
            buyer_id: buyer,
            amount_cents: 25_000,
            status: OrderState::Created,
            version: 1,
            expires_at: Some(chrono::Utc::now() + chrono::Duration::minutes(15)),
            lapsed_at: None,
        };
        store::order_created(&mut conn, &order, None).await.unwrap();
        id
    }

    /// Moves `order`'s deadline to now (its reservation has just lapsed).
    async fn deadline_passes(&self, order: Uuid) {
        sqlx::query("UPDATE orders SET expires_at = now() WHERE id = $1")
            .bind(order)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn pay(&self, auth: &str, order: Uuid, token: &str) -> Answer {
        Call::post("/api/payments", json!({"orderId": order, "token": token}))
            .header("authorization", auth)
            .send(&self.app)
            .await
    }

    async fn cancel(&self, order: Uuid) {
        let event = OrderEvent::Cancelled(OrderCancelled {
            order_id: order,
            sneaker_id: Uuid::now_v7(),
            reason: CancelReason::Expired,
        });
        let incoming = IncomingEvent::from_contract(&event, "/test", order, 2);
        let mut tx = self.pool.begin().await.unwrap();
        PaymentsHandler.handle(&mut tx, &incoming).await.unwrap();
        tx.commit().await.unwrap();
    }

    async fn events(&self) -> Vec<(String, Value)> {
        sqlx::query_as("SELECT event_type, payload::jsonb FROM outbox ORDER BY id").fetch_all(&self.pool).await.unwrap()
    }

    async fn statuses(&self, order: Uuid) -> Vec<String> {
        sqlx::query_scalar("SELECT status FROM payments WHERE order_id = $1 ORDER BY attempt")
            .bind(order)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn paying_charges_once_and_publishes_payment_succeeded() {
    let provider = Arc::new(Simulated::default());
    let ctx = ctx(provider.clone()).await;
    let (buyer, auth) = ctx.user();
    let order = ctx.order(buyer).await;

    let paid = ctx.pay(&auth, order, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    assert_eq!(paid.json["orderId"], order.to_string());
    assert_eq!(paid.json["amount"], 250.0);
    assert_eq!(paid.json["status"], "succeeded");
    assert!(paid.json["id"].is_string() && paid.json["createdAt"].is_string());

    let events = ctx.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "payment.succeeded");
    assert_eq!(events[0].1["orderId"], order.to_string());
    assert_eq!(events[0].1["amountCents"], 25_000);
    assert!(events[0].1["providerRef"].as_str().unwrap().starts_with("pi_sim_"));

    let again = ctx.pay(&auth, order, "tok_visa").await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.json["type"], "https://sneakerstop.dev/problems/order-paid");
    assert_eq!(provider.charges_attempted(), 1, "the second request charged nothing");

    let list = Call::get("/api/payments").header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 1);
    assert_eq!(list.json["items"][0]["id"], paid.json["id"]);
}

#[tokio::test]
async fn an_order_lapses_only_once_its_deadline_passed_with_nothing_charged_and_no_charge_starts_after() {
    let ctx = ctx(Arc::new(Simulated::default())).await;
    let (buyer, auth) = ctx.user();
    let (unpaid, under_way, paid) = (ctx.order(buyer).await, ctx.order(buyer).await, ctx.order(buyer).await);
    assert_eq!(lapse::close_due(&ctx.pool).await.unwrap(), 0, "no deadline has passed");
    assert_eq!(ctx.pay(&auth, paid, "tok_visa").await.status, StatusCode::CREATED);
    // A charge that started before the deadline and has no outcome yet (its process is
    // still asking the provider): the window stays open for it.
    sqlx::query(
        "INSERT INTO payments (id, order_id, buyer_id, amount_cents, attempt, status, token)
         VALUES ($1, $2, $3, 25000, 1, 'pending', 'tok_visa')",
    )
    .bind(Uuid::now_v7())
    .bind(under_way)
    .bind(buyer)
    .execute(&ctx.pool)
    .await
    .unwrap();
    for order in [unpaid, under_way, paid] {
        ctx.deadline_passes(order).await;
    }

    assert_eq!(lapse::close_due(&ctx.pool).await.unwrap(), 1, "only the order with nothing charged lapses");
    assert_eq!(lapse::close_due(&ctx.pool).await.unwrap(), 0, "an order lapses once");
    let lapsed: Vec<Value> = ctx
        .events()
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "payment.lapsed")
        .map(|(_, payload)| payload)
        .collect();
    assert_eq!(lapsed.len(), 1);
    assert_eq!(lapsed[0]["orderId"], unpaid.to_string());
    let late = ctx.pay(&auth, unpaid, "tok_visa").await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.text);
    assert_eq!(late.json["type"], "https://sneakerstop.dev/problems/reservation-lapsed");
    assert!(ctx.statuses(unpaid).await.is_empty(), "nothing was charged");
}

#[tokio::test]
async fn two_payments_at_once_charge_once() {
    let provider = Arc::new(Simulated::default());
    let ctx = ctx(provider.clone()).await;
    let (buyer, auth) = ctx.user();
    let order = ctx.order(buyer).await;
    let (a, b) = tokio::join!(ctx.pay(&auth, order, "tok_visa"), ctx.pay(&auth, order, "tok_visa"));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT], "{} / {}", a.text, b.text);
    assert_eq!(provider.charges_attempted(), 1);
    assert_eq!(ctx.statuses(order).await, ["succeeded"]);
}

#[tokio::test]
async fn a_retry_with_the_idempotency_key_gets_the_first_answer() {
    let provider = Arc::new(Simulated::default());
    let ctx = ctx(provider.clone()).await;
    let (buyer, auth) = ctx.user();
    let order = ctx.order(buyer).await;
    let pay = |token: &str| {
        Call::post("/api/payments", json!({"orderId": order, "token": token}))
            .header("authorization", &auth)
            .header("idempotency-key", "pay-1")
            .send(&ctx.app)
    };
    let first = pay("tok_visa").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let retry = pay("tok_visa").await;
    assert_eq!((retry.status, &retry.json), (StatusCode::CREATED, &first.json));
    assert_eq!(pay("tok_mastercard").await.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(provider.charges_attempted(), 1);
    assert_eq!(ctx.events().await.len(), 1);
}

#[tokio::test]
async fn declines_and_provider_errors_record_nothing_as_paid() {
    let ctx = ctx(Arc::new(Simulated::default())).await;
    let (buyer, auth) = ctx.user();
    let order = ctx.order(buyer).await;

    let declined = ctx.pay(&auth, order, "tok_chargeDeclined").await;
    assert_eq!(declined.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(declined.json["detail"], "Your card was declined.");
    assert_eq!(ctx.statuses(order).await, ["declined"]);

    let failing = ctx.pay(&auth, order, "tok_processingError").await;
    assert_eq!(failing.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ctx.statuses(order).await, ["declined"], "no half-written attempt is left behind");

    let bogus = ctx.pay(&auth, order, "tok_bogus").await;
    assert!(bogus.assert_unprocessable_field("token").contains("unknown test token"));
    assert!(ctx.events().await.is_empty(), "nothing was paid, so nothing was published");

    let paid = ctx.pay(&auth, order, "tok_visa").await;
    assert_eq!(paid.status, StatusCode::CREATED, "another card works after a decline: {}", paid.text);
    assert_eq!(ctx.statuses(order).await, ["declined", "succeeded"]);
}

#[tokio::test]
async fn a_nul_character_in_the_token_is_a_400_naming_it() {
    let ctx = ctx(Arc::new(Simulated::default())).await;
    let (buyer, auth) = ctx.user();
    let order = ctx.order(buyer).await;
    let answer = ctx.pay(&auth, order, "tok_\u{0}visa").await;
    assert!(answer.assert_invalid_field("token").contains("NUL"), "{}", answer.text);
    assert!(ctx.statuses(order).await.is_empty(), "no attempt was written");
}

#[tokio::test]
async fn payments_for_the_wrong_order_say_why() {
    let ctx = ctx(Arc::new(Simulated::default())).await;
    let (buyer, auth) = ctx.user();
    let (_, stranger) = ctx.user();
    let order = ctx.order(buyer).await;

    assert_eq!(ctx.pay(&auth, Uuid::now_v7(), "tok_visa").await.status, StatusCode::NOT_FOUND);
    assert_eq!(ctx.pay(&stranger, order, "tok_visa").await.status, StatusCode::FORBIDDEN);
    let anonymous = Call::post("/api/payments", json!({"orderId": order, "token": "tok_visa"})).send(&ctx.app).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let missing =
        Call::post("/api/payments", json!({"orderId": order})).header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(missing.assert_invalid_field("token"), "is required");
    let malformed = Call::post("/api/payments", json!({"orderId": "x", "token": "tok_visa"}))
        .header("authorization", &auth)
        .send(&ctx.app)
        .await;
    malformed.assert_invalid_field("orderId");
    ctx.pay(&auth, order, "  ").await.assert_invalid_field("token");

    ctx.cancel(order).await;
    let cancelled = ctx.pay(&auth, order, "tok_visa").await;
    assert_eq!(cancelled.status, StatusCode::CONFLICT);
    assert_eq!(cancelled.json["type"], "https://sneakerstop.dev/problems/order-cancelled");
    assert!(ctx.statuses(order).await.is_empty());
}

/// A provider whose charges wait until the test lets them finish, and which counts refunds.
#[derive(Default)]
struct Gated {
    charging: Notify,
    release: Notify,
    refunds: AtomicUsize,
}

impl PaymentProvider for Gated {
    fn charge<'a>(&'a self, _: &'a ChargeRequest) -> BoxFuture<'a, Result<Charge, ProviderError>> {
        Box::pin(async move {
            self.charging.notify_one();
            self.release.notified().await;
            Ok(Charge { provider_ref: "pi_gated".into() })
        })
    }

    fn refund<'a>(&'a self, provider_ref: &'a str, key: &'a str) -> BoxFuture<'a, Result<Refund, ProviderError>> {
        Box::pin(async move {
            self.refunds.fetch_add(1, Ordering::SeqCst);
            Ok(Refund { refund_ref: format!("re_for_{provider_ref}_{key}") })
        })
    }
}

#[tokio::test]
async fn a_charge_that_loses_the_race_with_cancellation_is_refunded() {
    let provider = Arc::new(Gated::default());
    let ctx = ctx(provider.clone()).await;
    let (buyer, auth) = ctx.user();
    let order = ctx.order(buyer).await;

    // The buyer pays; the provider is mid-charge when the order's cancellation arrives.
    let paying = {
        let (app, auth) = (ctx.app.clone(), auth.clone());
        tokio::spawn(async move {
            Call::post("/api/payments", json!({"orderId": order, "token": "tok_visa"}))
                .header("authorization", &auth)
                .send(&app)
                .await
        })
    };
    provider.charging.notified().await;
    ctx.cancel(order).await;
    provider.release.notify_one();
    let answer = paying.await.unwrap();
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text);
    assert!(answer.json["detail"].as_str().unwrap().contains("refunded"));
    assert_eq!(ctx.statuses(order).await, ["refund_pending"]);

    assert_eq!(refunds::process_due(&ctx.pool, provider.as_ref()).await.unwrap(), 1);
    assert_eq!(ctx.statuses(order).await, ["refunded"]);
    assert_eq!(refunds::process_due(&ctx.pool, provider.as_ref()).await.unwrap(), 0, "refunded once");
    assert_eq!(provider.refunds.load(Ordering::SeqCst), 1);
    let kinds: Vec<String> = ctx.events().await.into_iter().map(|(t, _)| t).collect();
    assert_eq!(kinds, ["payment.succeeded", "payment.refunded"]);
}

#[tokio::test]
async fn a_cancellation_that_arrives_after_the_charge_refunds_it() {
    let ctx = ctx(Arc::new(Simulated::default())).await;
    let (buyer, auth) = ctx.user();
    let order = ctx.order(buyer).await;
    assert_eq!(ctx.pay(&auth, order, "tok_visa").await.status, StatusCode::CREATED);

    ctx.cancel(order).await;
    ctx.cancel(order).await; // redelivered: still one refund
    assert_eq!(ctx.statuses(order).await, ["refund_pending"]);
    let provider = Simulated::default();
    wait_until("the refund", Duration::from_secs(10), || async {
        (refunds::process_due(&ctx.pool, &provider).await.unwrap() == 1).then_some(())
    })
    .await;
    assert_eq!(ctx.statuses(order).await, ["refunded"]);
    let refunded: Vec<Value> =
        ctx.events().await.into_iter().filter(|(t, _)| t == "payment.refunded").map(|(_, p)| p).collect();
    assert_eq!(refunded.len(), 1);
    assert_eq!(refunded[0]["amountCents"], 25_000);
}

impl Ctx {
    /// What a request that died mid-charge leaves behind: its `Idempotency-Key` claimed and
    /// its `pending` attempt committed (step 1), and — when `reached_provider` — the
    /// provider's charge made under the attempt's key (step 2), but nothing recorded (step 3).
    async fn died_mid_charge(
        &self,
        provider: &dyn PaymentProvider,
        buyer: Uuid,
        order: Uuid,
        key: &str,
        reached_provider: bool,
    ) {
        let mut tx = self.pool.begin().await.unwrap();
        let key = sneakerstop_idempotency::IdempotencyKey(key.to_owned());
        let request = json!({"orderId": order, "token": "tok_visa"});
        let start = sneakerstop_idempotency::begin(&mut tx, buyer, Some(&key), &request, Duration::from_secs(30)).await;
        assert!(matches!(start, Ok(sneakerstop_idempotency::Start::New)));
        let replica = store::find_order(&mut tx, order, false).await.unwrap().unwrap();
        let number = store::next_attempt(&mut tx, order).await.unwrap();
        let attempt = Payment::begin(Uuid::now_v7(), buyer, &replica, number, chrono::Utc::now()).unwrap();
        assert!(store::insert(&mut tx, &attempt, "tok_visa").await.unwrap());
        tx.commit().await.unwrap();
        if reached_provider {
            let charge = ChargeRequest {
                amount_cents: attempt.amount_cents,
                currency: "usd".into(),
                token: "tok_visa".into(),
                idempotency_key: sneakerstop_payments::http::charge_key(order, attempt.attempt),
                order_id: order,
                off_session: None,
            };
            provider.charge(&charge).await.unwrap();
        }
    }

    /// Lets the buyer's claim lapse, as it would once its lease ran out.
    async fn lease_lapses(&self, key: &str) {
        sqlx::query("UPDATE idempotency_keys SET locked_until = now() - interval '1 second' WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn pay_with_key(&self, auth: &str, order: Uuid, key: &str) -> Answer {
        Call::post("/api/payments", json!({"orderId": order, "token": "tok_visa"}))
            .header("authorization", auth)
            .header("idempotency-key", key)
            .send(&self.app)
            .await
    }
}

#[tokio::test]
async fn a_charge_whose_process_died_before_recording_it_is_recovered_and_its_key_answers_with_it() {
    let provider = Arc::new(Simulated::default());
    let ctx = ctx(provider.clone()).await;
    let (buyer, auth) = ctx.user();
    let order = ctx.order(buyer).await;
    ctx.died_mid_charge(provider.as_ref(), buyer, order, "k-died", true).await;

    // While the claim's lease holds, the buyer's retry is told to wait, not charged again.
    let retry = ctx.pay_with_key(&auth, order, "k-died").await;
    assert_eq!(retry.status, StatusCode::CONFLICT, "{}", retry.text);
    assert_eq!(retry.json["type"], "https://sneakerstop.dev/problems/idempotency-key-in-progress");
    // A fresh attempt by the stale rule's clock is not touched yet.
    let pool = ctx.pool.clone();
    assert_eq!(recovery::resolve_stale(&pool, provider.as_ref(), "usd", Duration::from_secs(3600)).await.unwrap(), 0);

    // The recovery task asks the provider again under the same key: the original charge.
    assert_eq!(recovery::resolve_stale(&pool, provider.as_ref(), "usd", Duration::ZERO).await.unwrap(), 1);
    assert_eq!(ctx.statuses(order).await, ["succeeded"]);
    assert_eq!(provider.charges_attempted(), 1, "asking again charged nothing new");
    let events = ctx.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "payment.succeeded");
    let token_kept: Option<String> = sqlx::query_scalar("SELECT token FROM payments WHERE order_id = $1")
        .bind(order)
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    assert_eq!(token_kept, None, "the card token is dropped once the attempt is settled");

    // Once the lease lapses, the same key answers with the recovered payment, and keeps doing so.
    ctx.lease_lapses("k-died").await;
    let recovered = ctx.pay_with_key(&auth, order, "k-died").await;
    assert_eq!(recovered.status, StatusCode::CREATED, "{}", recovered.text);
    assert_eq!(recovered.json["status"], "succeeded");
    let again = ctx.pay_with_key(&auth, order, "k-died").await;
    assert_eq!((again.status, &again.json), (StatusCode::CREATED, &recovered.json));
    assert_eq!(provider.charges_attempted(), 1);
}

#[tokio::test]
async fn an_attempt_the_provider_never_saw_is_charged_once_on_recovery() {
    let provider = Arc::new(Simulated::default());
    let ctx = ctx(provider.clone()).await;
    let (buyer, _) = ctx.user();
    let order = ctx.order(buyer).await;
    ctx.died_mid_charge(provider.as_ref(), buyer, order, "k-early", false).await;
    assert_eq!(provider.charges_attempted(), 0);
    let pool = ctx.pool.clone();
    assert_eq!(recovery::resolve_stale(&pool, provider.as_ref(), "usd", Duration::ZERO).await.unwrap(), 1);
    assert_eq!(ctx.statuses(order).await, ["succeeded"]);
    assert_eq!(provider.charges_attempted(), 1);
    // Nothing is left to recover.
    assert_eq!(recovery::resolve_stale(&pool, provider.as_ref(), "usd", Duration::ZERO).await.unwrap(), 0);
}

#[tokio::test]
async fn a_recovered_charge_of_an_order_cancelled_meanwhile_is_refunded() {
    let provider = Arc::new(Simulated::default());
    let ctx = ctx(provider.clone()).await;
    let (buyer, auth) = ctx.user();
    let order = ctx.order(buyer).await;
    ctx.died_mid_charge(provider.as_ref(), buyer, order, "k-late", true).await;
    ctx.cancel(order).await;

    let pool = ctx.pool.clone();
    assert_eq!(recovery::resolve_stale(&pool, provider.as_ref(), "usd", Duration::ZERO).await.unwrap(), 1);
    assert_eq!(ctx.statuses(order).await, ["refund_pending"]);
    assert_eq!(refunds::process_due(&pool, provider.as_ref()).await.unwrap(), 1);
    assert_eq!(ctx.statuses(order).await, ["refunded"]);
    let types: Vec<String> = ctx.events().await.into_iter().map(|(t, _)| t).collect();
    assert_eq!(types, ["payment.succeeded", "payment.refunded"]);

    ctx.lease_lapses("k-late").await;
    let answer = ctx.pay_with_key(&auth, order, "k-late").await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text);
    assert_eq!(answer.json["type"], "https://sneakerstop.dev/problems/order-cancelled");
}

#[tokio::test]
async fn a_provider_still_down_leaves_the_attempt_for_the_next_round() {
    let ctx = ctx(Arc::new(Simulated::default())).await;
    let (buyer, _) = ctx.user();
    let order = ctx.order(buyer).await;
    let simulated = Simulated::default();
    ctx.died_mid_charge(&simulated, buyer, order, "k-down", false).await;
    let pool = ctx.pool.clone();
    assert_eq!(recovery::resolve_stale(&pool, &Unavailable, "usd", Duration::ZERO).await.unwrap(), 0);
    assert_eq!(ctx.statuses(order).await, ["pending"], "kept, to be asked about again");
    assert_eq!(recovery::resolve_stale(&pool, &simulated, "usd", Duration::ZERO).await.unwrap(), 1);
    assert_eq!(ctx.statuses(order).await, ["succeeded"]);
}

/// A provider that cannot be reached.
struct Unavailable;

impl PaymentProvider for Unavailable {
    fn charge<'a>(&'a self, _: &'a ChargeRequest) -> BoxFuture<'a, Result<Charge, ProviderError>> {
        Box::pin(async { Err(ProviderError::Unavailable("connection refused".into())) })
    }

    fn refund<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Refund, ProviderError>> {
        Box::pin(async { Err(ProviderError::Unavailable("connection refused".into())) })
    }
}

impl Ctx {
    async fn save_method(&self, auth: &str, method: &str) -> Answer {
        Call::post("/api/payment-methods", json!({"paymentMethod": method}))
            .header("authorization", auth)
            .send(&self.app)
            .await
    }

    /// Delivers `order.created` for an order of the market (it names a match).
    async fn order_of_the_market(&self, buyer: Uuid) -> Uuid {
        let id = Uuid::now_v7();
        let event = OrderEvent::Created(sneakerstop_events::orders::OrderCreated {
            order_id: id,
            sneaker_id: Uuid::now_v7(),
            buyer_id: buyer,
            seller_id: Uuid::now_v7(),
            price_cents: 24_000,
            expires_at: chrono::Utc::now() + chrono::Duration::minutes(15),
            match_id: Some(id),
        });
        let incoming = IncomingEvent::from_contract(&event, "/test", id, 1);
        for _ in 0..2 {
            // Delivered twice, as Kafka may: the second changes nothing.
            let mut tx = self.pool.begin().await.unwrap();
            PaymentsHandler.handle(&mut tx, &incoming).await.unwrap();
            tx.commit().await.unwrap();
        }
        id
    }
}

#[tokio::test]
async fn a_saved_method_replaces_the_last_and_is_announced() {
    let ctx = ctx(Arc::new(Simulated::default())).await;
    let (buyer, auth) = ctx.user();
    let none = Call::get("/api/payment-methods").header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(none.json["items"], json!([]));

    let first = ctx.save_method(&auth, "pm_card_visa").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(first.json["paymentMethod"], "pm_card_visa");
    let second = ctx.save_method(&auth, "pm_card_chargeDeclined").await;
    assert_eq!(second.status, StatusCode::CREATED);
    let current = Call::get("/api/payment-methods").header("authorization", &auth).send(&ctx.app).await;
    let items = current.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one current method: {}", current.text);
    assert_eq!(items[0]["id"], second.json["id"]);

    let events: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT event_type, message_key, (SELECT (h->>1)::bigint FROM jsonb_array_elements(headers) h
                                           WHERE h->>0 = 'ce_aggregateversion')
           FROM outbox ORDER BY id",
    )
    .fetch_all(&ctx.pool)
    .await
    .unwrap();
    let expected = |version| ("payment_method.saved".to_owned(), buyer.to_string(), version);
    assert_eq!(events, [expected(1), expected(2)], "keyed by buyer, one version per save");

    for bad in ["tok_visa", "pm_", "pm_card visa"] {
        let refused = ctx.save_method(&auth, bad).await;
        assert_eq!(
            (refused.status, refused.json["errors"][0]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("paymentMethod")),
            "{bad}"
        );
    }
    let unknown = ctx.save_method(&auth, "pm_card_bogus").await;
    assert_eq!(
        unknown.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the provider's refusal names the field: {}",
        unknown.text
    );
    assert_eq!(ctx.events().await.len(), 2, "nothing saved for a refusal");
}

#[tokio::test]
async fn concurrent_first_saves_of_a_buyer_take_turns_and_the_last_is_current() {
    let ctx = ctx(Arc::new(Simulated::default())).await;
    let (buyer, auth) = ctx.user();
    let methods = ["pm_card_visa", "pm_card_mastercard", "pm_card_amex", "pm_card_discover"];
    let saves = futures::future::join_all(methods.iter().map(|method| ctx.save_method(&auth, method))).await;
    for save in &saves {
        assert_eq!(save.status, StatusCode::CREATED, "{}", save.text);
    }
    let current = Call::get("/api/payment-methods").header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(current.json["items"].as_array().unwrap().len(), 1, "one current method: {}", current.text);
    let mut versions: Vec<i64> = sqlx::query_scalar(
        "SELECT (SELECT (h->>1)::bigint FROM jsonb_array_elements(headers) h WHERE h->>0 = 'ce_aggregateversion')
           FROM outbox WHERE message_key = $1",
    )
    .bind(buyer.to_string())
    .fetch_all(&ctx.pool)
    .await
    .unwrap();
    versions.sort_unstable();
    assert_eq!(versions, [1, 2, 3, 4], "one version per save, none repeated");
}

#[tokio::test]
async fn an_order_of_the_market_is_charged_once_with_the_saved_method_or_declined() {
    let provider = Arc::new(Simulated::default());
    let ctx = ctx(provider.clone()).await;
    let (good, good_auth) = ctx.user();
    let (bad, bad_auth) = ctx.user();
    let (nothing, _) = ctx.user();
    assert_eq!(ctx.save_method(&good_auth, "pm_card_visa").await.status, StatusCode::CREATED);
    assert_eq!(ctx.save_method(&bad_auth, "pm_card_chargeDeclined").await.status, StatusCode::CREATED);
    let paid = ctx.order_of_the_market(good).await;
    let refused = ctx.order_of_the_market(bad).await;
    let without = ctx.order_of_the_market(nothing).await;
    assert_eq!(ctx.statuses(paid).await, ["pending"], "charged by the off-session task, not the consumer");
    assert_eq!(ctx.statuses(without).await, ["declined"], "no saved method: declined at once");

    let settled = sneakerstop_payments::offsession::charge_due(&ctx.pool, provider.as_ref(), "usd").await.unwrap();
    assert_eq!(settled, 2);
    assert_eq!(sneakerstop_payments::offsession::charge_due(&ctx.pool, provider.as_ref(), "usd").await.unwrap(), 0);
    assert_eq!(ctx.statuses(paid).await, ["succeeded"]);
    assert_eq!(ctx.statuses(refused).await, ["declined"]);
    assert_eq!(provider.charges_attempted(), 2, "one charge per match");

    let events = ctx.events().await;
    let of =
        |kind: &str, order: Uuid| events.iter().filter(|(k, p)| k == kind && p["orderId"] == order.to_string()).count();
    assert_eq!(of("payment.succeeded", paid), 1);
    assert_eq!(of("payment.declined", refused), 1);
    assert_eq!(of("payment.declined", without), 1);
    let reason = events.iter().find(|(k, p)| k == "payment.declined" && p["orderId"] == without.to_string()).unwrap();
    assert_eq!(reason.1["reason"], "no saved payment method");
}
