//! The orders HTTP API, expiry and replica against a fresh PostgreSQL database per test.

use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use chrono::Utc;
use serde_json::{Value, json};
use sneakerstop_auth::SessionKeys;
use sneakerstop_events::catalog::{Sneaker, SneakerStatus};
use sneakerstop_events::payments::{PaymentEvent, PaymentLapsed, PaymentSucceeded};
use sneakerstop_messaging::{Handler, IncomingEvent};
use sneakerstop_orders::{AppState, SCHEMA, expiry, store};
use sneakerstop_settings::Secret;
use sneakerstop_test_support::{Answer, Call, TestDb};
use sqlx::PgPool;
use uuid::Uuid;

struct Ctx {
    app: Router,
    pool: PgPool,
    keys: SessionKeys,
    _db: TestDb,
}

async fn ctx_with_ttl(ttl: Duration) -> Ctx {
    let db = TestDb::new().await;
    let pool =
        sneakerstop_db::connect_and_migrate(&db.config(), SCHEMA, &sneakerstop_orders::migrations()).await.unwrap();
    let keys = SessionKeys::new(&Secret::new("orders-http-test-secret-0123456789"), Duration::from_secs(3600), false);
    let app = sneakerstop_orders::app(AppState {
        pool: pool.clone(),
        keys: keys.clone(),
        reservation_ttl: ttl,
        replica: sneakerstop_messaging::ReplicaWait::new(Duration::from_secs(2)),
        max_holds: 3,
        heard: None,
    });
    Ctx { app, pool, keys, _db: db }
}

async fn ctx() -> Ctx {
    ctx_with_ttl(Duration::from_secs(900)).await
}

fn sneaker(id: Uuid, seller: Uuid, status: SneakerStatus, version: i64) -> Sneaker {
    Sneaker {
        sneaker_id: id,
        seller_id: seller,
        title: format!("pair v{version}"),
        brand: None,
        description: None,
        price_cents: 12_500,
        size: 10.0,
        product_id: None,
        expires_at: None,
        status,
        version,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

/// The orders consumer, as the service builds it.
fn handler() -> sneakerstop_orders::events::OrdersHandler {
    sneakerstop_orders::events::OrdersHandler { reservation_ttl: chrono::Duration::minutes(15) }
}

impl Ctx {
    /// Delivers `payment.succeeded` for `order` to the orders consumer, as Kafka would.
    async fn payment_succeeded(&self, order: Uuid) {
        let payment = Uuid::now_v7();
        let event = PaymentEvent::Succeeded(PaymentSucceeded {
            payment_id: payment,
            order_id: order,
            amount_cents: 1,
            provider_ref: "pi_test".into(),
        });
        let incoming = IncomingEvent::from_contract(&event, "/sneakerstop/payments", payment, 1);
        let mut tx = self.pool.begin().await.unwrap();
        handler().handle(&mut tx, &incoming).await.unwrap();
        tx.commit().await.unwrap();
    }

    fn user(&self) -> (Uuid, String) {
        sneakerstop_test_support::signed_in(&self.keys)
    }

    /// A listed pair, as the replica would hold it after `sneaker.listed`.
    async fn listed(&self, seller: Uuid) -> Uuid {
        let id = Uuid::now_v7();
        let mut conn = self.pool.acquire().await.unwrap();
        assert!(store::apply_sneaker(&mut conn, &sneaker(id, seller, SneakerStatus::Available, 1)).await.unwrap());
        id
    }

    async fn order(&self, auth: &str, sneaker: Uuid) -> Answer {
        Call::post("/api/orders", json!({"sneakerId": sneaker})).header("authorization", auth).send(&self.app).await
    }

    async fn events(&self) -> Vec<(String, String, Value)> {
        sqlx::query_as("SELECT event_type, message_key, payload::jsonb FROM outbox ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn ordering_a_listed_pair_reserves_it() {
    let ctx = ctx().await;
    let (seller, _) = ctx.user();
    let (buyer, auth) = ctx.user();
    let pair = ctx.listed(seller).await;
    let before = Utc::now();

    let answer = ctx.order(&auth, pair).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let order = &answer.json;
    assert_eq!(order["sneakerId"], pair.to_string());
    assert_eq!(order["buyerId"], buyer.to_string());
    assert_eq!(order["sellerId"], seller.to_string());
    assert_eq!(order["price"], 125.0);
    assert_eq!(order["status"], "created");
    assert_eq!(order["cancelReason"], Value::Null);
    let expires: chrono::DateTime<Utc> = order["expiresAt"].as_str().unwrap().parse().unwrap();
    let window = expires - before;
    assert!(window > chrono::Duration::seconds(899) && window < chrono::Duration::seconds(901), "{window}");

    let events = ctx.events().await;
    assert_eq!(events.len(), 1);
    let (event_type, key, payload) = &events[0];
    assert_eq!(event_type, "order.created");
    assert_eq!(key, &pair.to_string(), "order events are keyed by their sneaker");
    assert_eq!(payload["orderId"], order["id"]);
    assert_eq!(payload["priceCents"], 12_500);
    assert_eq!(payload["buyerId"], buyer.to_string());

    let (_, second_buyer) = ctx.user();
    let taken = ctx.order(&second_buyer, pair).await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert_eq!(taken.json["type"], "https://sneakerstop.dev/problems/pair-reserved");
    assert_eq!(ctx.events().await.len(), 1, "a refused order publishes nothing");
}

#[tokio::test]
async fn a_hundred_buyers_racing_for_one_pair_yield_one_order() {
    let ctx = ctx().await;
    let (seller, _) = ctx.user();
    let pair = ctx.listed(seller).await;
    let attempts = (0..100).map(|_| {
        let (_, auth) = ctx.user();
        let app = ctx.app.clone();
        async move {
            Call::post("/api/orders", json!({"sneakerId": pair})).header("authorization", &auth).send(&app).await.status
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 99, "{statuses:?}");
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status IN ('created', 'complete')")
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    assert_eq!(live, 1);
    assert_eq!(ctx.events().await.len(), 1);
}

#[tokio::test]
async fn one_buyer_ordering_many_pairs_at_once_never_holds_more_than_the_cap() {
    let ctx = ctx().await;
    let (seller, _) = ctx.user();
    let (buyer, auth) = ctx.user();
    let mut pairs = Vec::new();
    for _ in 0..20 {
        pairs.push(ctx.listed(seller).await);
    }
    // Twenty orders at once by one buyer (a script sweeping a release-day drop).
    let attempts =
        pairs.iter().map(|pair| {
            let (app, auth) = (ctx.app.clone(), auth.clone());
            let pair = *pair;
            async move {
                Call::post("/api/orders", json!({"sneakerId": pair})).header("authorization", &auth).send(&app).await
            }
        });
    let answers = futures::future::join_all(attempts).await;
    let placed: Vec<&Answer> = answers.iter().filter(|a| a.status == StatusCode::CREATED).collect();
    assert_eq!(placed.len(), 3, "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    for refused in answers.iter().filter(|a| a.status != StatusCode::CREATED) {
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
        assert_eq!(refused.json["type"], "https://sneakerstop.dev/problems/too-many-reservations");
        assert!(refused.json["detail"].as_str().unwrap().contains("3 unpaid"), "{}", refused.text);
    }
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE buyer_id = $1 AND status = 'created'")
        .bind(buyer)
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    assert_eq!(live, 3, "the database holds exactly the cap");

    // Cancelling one gives its hold back: one more order goes through, and then no more.
    let cancel = format!("/api/orders/{}", placed[0].json["id"].as_str().unwrap());
    assert_eq!(
        Call::new(Method::DELETE, &cancel).header("authorization", &auth).send(&ctx.app).await.status,
        StatusCode::OK
    );
    let unplaced: Vec<Uuid> =
        pairs.iter().copied().filter(|p| !placed.iter().any(|a| a.json["sneakerId"] == p.to_string())).collect();
    assert_eq!(ctx.order(&auth, unplaced[0]).await.status, StatusCode::CREATED);
    assert_eq!(ctx.order(&auth, unplaced[1]).await.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn orders_that_cannot_be_placed_say_why() {
    let ctx = ctx().await;
    let (seller, seller_auth) = ctx.user();
    let (_, auth) = ctx.user();
    let pair = ctx.listed(seller).await;

    let own = ctx.order(&seller_auth, pair).await;
    assert_eq!(own.status, StatusCode::CONFLICT);
    assert!(own.json["detail"].as_str().unwrap().contains("you are selling"));

    let unknown = ctx.order(&auth, Uuid::now_v7()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.json["detail"].as_str().unwrap().contains("sneaker"));

    let malformed = Call::post("/api/orders", json!({"sneakerId": "not-a-uuid"}))
        .header("authorization", &auth)
        .send(&ctx.app)
        .await;
    assert!(malformed.assert_invalid_field("sneakerId").contains("UUID"));
    let missing = Call::post("/api/orders", json!({})).header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(missing.assert_invalid_field("sneakerId"), "is required");

    let anonymous = Call::post("/api/orders", json!({"sneakerId": pair})).send(&ctx.app).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let sold = Uuid::now_v7();
    let mut conn = ctx.pool.acquire().await.unwrap();
    store::apply_sneaker(&mut conn, &sneaker(sold, seller, SneakerStatus::Sold, 3)).await.unwrap();
    let answer = ctx.order(&auth, sold).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert_eq!(answer.json["type"], "https://sneakerstop.dev/problems/pair-sold");
    let withdrawn = Uuid::now_v7();
    store::apply_sneaker(&mut conn, &sneaker(withdrawn, seller, SneakerStatus::Withdrawn, 2)).await.unwrap();
    let answer = ctx.order(&auth, withdrawn).await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text);
    assert_eq!(answer.json["type"], "https://sneakerstop.dev/problems/listing-withdrawn");
    assert!(ctx.events().await.is_empty());
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_response() {
    let ctx = ctx().await;
    let (seller, _) = ctx.user();
    let (_, auth) = ctx.user();
    let pair = ctx.listed(seller).await;
    let other = ctx.listed(seller).await;
    let send = |sneaker: Uuid, key: &str| {
        Call::post("/api/orders", json!({"sneakerId": sneaker}))
            .header("authorization", &auth)
            .header("idempotency-key", key)
            .send(&ctx.app)
    };

    let first = send(pair, "key-1").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let retry = send(pair, "key-1").await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.json, first.json, "the retry gets the first response");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(count, 1, "and nothing new is created");
    assert_eq!(ctx.events().await.len(), 1);

    let reused = send(other, "key-1").await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.content_type(), Some("application/problem+json"));
    // Reused naming a listing that does not exist: still the reuse, not a 404 after a wait.
    let nowhere = send(Uuid::now_v7(), "key-1").await;
    assert_eq!(nowhere.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The same key from another user is another key.
    let (_, stranger) = ctx.user();
    let theirs = Call::post("/api/orders", json!({"sneakerId": other}))
        .header("authorization", &stranger)
        .header("idempotency-key", "key-1")
        .send(&ctx.app)
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED);

    let bad = send(pair, "has spaces in it").await;
    bad.assert_invalid_field("Idempotency-Key");
}

#[tokio::test]
async fn orders_are_private_listed_newest_first_and_cancellable() {
    let ctx = ctx().await;
    let (seller, _) = ctx.user();
    let (_, auth) = ctx.user();
    let (_, stranger) = ctx.user();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let pair = ctx.listed(seller).await;
        ids.push(ctx.order(&auth, pair).await.json["id"].as_str().unwrap().to_owned());
    }

    let page = Call::get("/api/orders?limit=2").header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(page.status, StatusCode::OK);
    let first: Vec<&str> = page.json["items"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(first, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = page.json["nextCursor"].as_str().unwrap();
    let rest =
        Call::get(&format!("/api/orders?limit=2&cursor={cursor}")).header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(rest.json["items"][0]["id"], ids[0].as_str());
    assert_eq!(rest.json["nextCursor"], Value::Null);
    Call::get("/api/orders?limit=0").header("authorization", &auth).send(&ctx.app).await.assert_invalid_field("limit");
    let theirs = Call::get("/api/orders").header("authorization", &stranger).send(&ctx.app).await;
    assert_eq!(theirs.json["items"], json!([]), "a stranger sees none of them");

    let uri = format!("/api/orders/{}", ids[0]);
    for (method, expected) in [(Method::GET, StatusCode::NOT_FOUND), (Method::DELETE, StatusCode::NOT_FOUND)] {
        let answer = Call::new(method.clone(), &uri).header("authorization", &stranger).send(&ctx.app).await;
        assert_eq!(answer.status, expected, "{method} of another's order");
        assert!(answer.json.get("buyerId").is_none(), "never its data");
    }
    assert_eq!(Call::get(&uri).send(&ctx.app).await.status, StatusCode::UNAUTHORIZED);
    Call::get("/api/orders/nope").header("authorization", &auth).send(&ctx.app).await.assert_invalid_field("id");

    let mine = Call::get(&uri).header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(mine.json["status"], "created");
    let cancelled = Call::new(Method::DELETE, &uri).header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text);
    assert_eq!(cancelled.json["status"], "cancelled");
    assert_eq!(cancelled.json["cancelReason"], "buyer");
    assert_eq!(cancelled.json["version"], 2);
    let again = Call::new(Method::DELETE, &uri).header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(again.status, StatusCode::OK, "cancelling twice is harmless");
    assert_eq!(again.json["version"], 2, "and changes nothing");
    let cancels = ctx.events().await.into_iter().filter(|(t, _, _)| t == "order.cancelled").collect::<Vec<_>>();
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].2["reason"], "buyer");

    // A paid order cannot be cancelled.
    let paid = Uuid::parse_str(&ids[1]).unwrap();
    ctx.payment_succeeded(paid).await;
    let refused =
        Call::new(Method::DELETE, &format!("/api/orders/{paid}")).header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.json["detail"].as_str().unwrap().contains("complete"));
}

#[tokio::test]
async fn the_state_machine_refuses_completing_a_cancelled_order() {
    let ctx = ctx().await;
    let (seller, _) = ctx.user();
    let (_, auth) = ctx.user();
    let pair = ctx.listed(seller).await;
    let id: Uuid = ctx.order(&auth, pair).await.json["id"].as_str().unwrap().parse().unwrap();
    Call::new(Method::DELETE, &format!("/api/orders/{id}")).header("authorization", &auth).send(&ctx.app).await;
    ctx.payment_succeeded(id).await;
    let order = Call::get(&format!("/api/orders/{id}")).header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(order.json["status"], "cancelled", "a payment that lost the race never completes the order");
    assert!(ctx.events().await.iter().all(|(t, _, _)| t != "order.completed"));
}

#[tokio::test]
async fn a_reservation_past_its_deadline_waits_for_payments_word_and_a_payment_heard_late_completes_it() {
    let ctx = ctx_with_ttl(Duration::ZERO).await;
    let (seller, _) = ctx.user();
    let (_, auth) = ctx.user();
    let (paid, lapsed) = (ctx.listed(seller).await, ctx.listed(seller).await);
    let paid: Uuid = ctx.order(&auth, paid).await.json["id"].as_str().unwrap().parse().unwrap();
    let lapsed: Uuid = ctx.order(&auth, lapsed).await.json["id"].as_str().unwrap().parse().unwrap();

    // Both deadlines have passed, but payments has said nothing yet: within the grace the
    // sweeper expires neither (a charge accepted in time may still be on its way).
    assert_eq!(expiry::sweep(&ctx.pool, Duration::from_secs(120)).await.unwrap(), 0);
    // A payment heard of late completes its order; payments' word that the other lapsed
    // unpaid expires it.
    ctx.payment_succeeded(paid).await;
    let word = PaymentEvent::Lapsed(PaymentLapsed { order_id: lapsed, expires_at: Utc::now(), lapsed_at: Utc::now() });
    let mut tx = ctx.pool.begin().await.unwrap();
    handler().handle(&mut tx, &IncomingEvent::from_contract(&word, "/sneakerstop/payments", lapsed, 1)).await.unwrap();
    tx.commit().await.unwrap();
    let status = |id: Uuid| {
        let auth = auth.clone();
        let app = ctx.app.clone();
        async move { Call::get(&format!("/api/orders/{id}")).header("authorization", &auth).send(&app).await.json }
    };
    assert_eq!(status(paid).await["status"], "complete", "paid in time means sold");
    let expired = status(lapsed).await;
    assert_eq!((&expired["status"], &expired["cancelReason"]), (&json!("cancelled"), &json!("expired")));
    let kinds: Vec<String> = ctx.events().await.into_iter().map(|(kind, _, _)| kind).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "order.cancelled").count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "order.completed").count(), 1, "{kinds:?}");
}

#[tokio::test]
async fn lapsed_reservations_expire_once_and_free_the_pair() {
    let ctx = ctx_with_ttl(Duration::ZERO).await;
    let (seller, _) = ctx.user();
    let (_, auth) = ctx.user();
    let pair = ctx.listed(seller).await;
    let id = ctx.order(&auth, pair).await.json["id"].as_str().unwrap().to_owned();

    // Payments said nothing within the grace (none here): two sweepers at once, as with two
    // instances, make one cancellation, one event.
    let (a, b) = tokio::join!(expiry::sweep(&ctx.pool, Duration::ZERO), expiry::sweep(&ctx.pool, Duration::ZERO));
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    let order = Call::get(&format!("/api/orders/{id}")).header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(order.json["status"], "cancelled");
    assert_eq!(order.json["cancelReason"], "expired");
    let cancels: Vec<_> = ctx.events().await.into_iter().filter(|(t, _, _)| t == "order.cancelled").collect();
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].2["reason"], "expired");
    assert_eq!(expiry::sweep(&ctx.pool, Duration::ZERO).await.unwrap(), 0, "nothing left to expire");

    // The pair is free for the next buyer.
    let (_, next) = ctx.user();
    assert_eq!(ctx.order(&next, pair).await.status, StatusCode::CREATED);
}

/// Delivers `payment.succeeded` for `order` to the orders handler.
async fn paid(ctx: &Ctx, order: Uuid) {
    use sneakerstop_events::payments::{PaymentEvent, PaymentSucceeded};
    use sneakerstop_messaging::{Handler, IncomingEvent};
    let event = PaymentEvent::Succeeded(PaymentSucceeded {
        payment_id: Uuid::now_v7(),
        order_id: order,
        amount_cents: 12_500,
        provider_ref: "pi_test".into(),
    });
    let incoming = IncomingEvent::from_contract(&event, "/test", order, 1);
    let mut tx = ctx.pool.begin().await.unwrap();
    handler().handle(&mut tx, &incoming).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_payment_completes_a_created_order_but_never_a_cancelled_one() {
    let ctx = ctx().await;
    let (seller, _) = ctx.user();
    let (_, auth) = ctx.user();
    let (first, second) = (ctx.listed(seller).await, ctx.listed(seller).await);
    let open: Uuid = ctx.order(&auth, first).await.json["id"].as_str().unwrap().parse().unwrap();
    let lapsed: Uuid = ctx.order(&auth, second).await.json["id"].as_str().unwrap().parse().unwrap();
    Call::new(Method::DELETE, &format!("/api/orders/{lapsed}")).header("authorization", &auth).send(&ctx.app).await;

    paid(&ctx, open).await;
    paid(&ctx, lapsed).await;
    let status = |id: Uuid| Call::get(&format!("/api/orders/{id}")).header("authorization", &auth).send(&ctx.app);
    let completed = status(open).await;
    assert_eq!(completed.json["status"], "complete");
    assert!(completed.json["paymentId"].is_string());
    assert_eq!(status(lapsed).await.json["status"], "cancelled", "a payment that lost the race never completes it");
    let completions: Vec<_> = ctx.events().await.into_iter().filter(|(t, _, _)| t == "order.completed").collect();
    assert_eq!(completions.len(), 1);
    assert_eq!(completions[0].2["orderId"], open.to_string());
}

#[tokio::test]
async fn the_replica_applies_sneaker_events_by_version() {
    let ctx = ctx().await;
    let id = Uuid::now_v7();
    let seller = Uuid::now_v7();
    let mut conn = ctx.pool.acquire().await.unwrap();
    assert!(store::apply_sneaker(&mut conn, &sneaker(id, seller, SneakerStatus::Available, 1)).await.unwrap());
    assert!(store::apply_sneaker(&mut conn, &sneaker(id, seller, SneakerStatus::Reserved, 3)).await.unwrap());
    assert!(
        !store::apply_sneaker(&mut conn, &sneaker(id, seller, SneakerStatus::Available, 2)).await.unwrap(),
        "older"
    );
    assert!(
        !store::apply_sneaker(&mut conn, &sneaker(id, seller, SneakerStatus::Available, 3)).await.unwrap(),
        "repeated"
    );
    let (status, version, title): (String, i64, String) =
        sqlx::query_as("SELECT status, version, title FROM sneakers WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!((status.as_str(), version, title.as_str()), ("reserved", 3, "pair v3"));
}

#[tokio::test]
async fn a_status_the_code_does_not_know_is_an_error_never_a_guess() {
    let ctx = ctx().await;
    let (seller, _) = ctx.user();
    let (_, auth) = ctx.user();
    let pair = ctx.listed(seller).await;
    sqlx::query("UPDATE sneakers SET status = 'painted' WHERE id = $1").bind(pair).execute(&ctx.pool).await.unwrap();
    let answer = ctx.order(&auth, pair).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", answer.text);
    assert!(ctx.events().await.is_empty(), "nothing was decided from a value nobody understands");
}

impl Ctx {
    /// Delivers `event` to the orders consumer, as Kafka would.
    async fn deliver<C: sneakerstop_events::Contract>(&self, event: &C, subject: Uuid, version: i64) {
        let incoming = IncomingEvent::from_contract(event, "/sneakerstop/test", subject, version);
        let mut tx = self.pool.begin().await.unwrap();
        handler().handle(&mut tx, &incoming).await.unwrap();
        tx.commit().await.unwrap();
    }

    async fn matched(&self, sneaker: Uuid, seller: Uuid, buyer: Uuid, price_cents: i64) -> Uuid {
        self.matched_as(Uuid::now_v7(), sneaker, seller, buyer, price_cents).await
    }

    async fn matched_as(&self, id: Uuid, sneaker: Uuid, seller: Uuid, buyer: Uuid, price_cents: i64) -> Uuid {
        let made = sneakerstop_events::market::MatchMade {
            match_id: id,
            bid_id: Uuid::now_v7(),
            sneaker_id: sneaker,
            product_id: Uuid::now_v7(),
            size: 10.0,
            buyer_id: buyer,
            seller_id: seller,
            price_cents,
            made_at: Utc::now(),
        };
        self.deliver(&sneakerstop_events::market::MatchEvent::Made(made), id, 1).await;
        id
    }
}

#[tokio::test]
async fn a_match_becomes_the_bidders_order_at_its_price_or_is_refused_when_the_pair_is_held() {
    let ctx = ctx().await;
    let (seller, _) = ctx.user();
    let (bidder, bidder_auth) = ctx.user();
    let (_, buyer_auth) = ctx.user();
    let pair = ctx.listed(seller).await;

    let first = ctx.matched(pair, seller, bidder, 24_000).await;
    ctx.matched(pair, seller, bidder, 24_000).await; // a second match of the pair, while the first holds it
    let order = Call::get(&format!("/api/orders/{first}")).header("authorization", &bidder_auth).send(&ctx.app).await;
    assert_eq!(order.status, StatusCode::OK, "{}", order.text);
    assert_eq!((order.json["price"].as_f64(), order.json["status"].as_str()), (Some(240.0), Some("created")));
    let events = ctx.events().await;
    let kinds: Vec<&str> = events.iter().map(|(kind, ..)| kind.as_str()).collect();
    assert_eq!(kinds, ["order.created", "order.refused"]);
    assert_eq!(events[0].2["matchId"], first.to_string(), "payments charges it with the saved method");
    assert_eq!((events[1].1.as_str(), events[1].2["reason"].as_str()), (pair.to_string().as_str(), Some("pair-taken")));
    let holds: Option<i32> = sqlx::query_scalar("SELECT live FROM buyer_holds WHERE buyer_id = $1")
        .bind(bidder)
        .fetch_optional(&ctx.pool)
        .await
        .unwrap();
    assert_eq!(holds, None, "an order of the market takes no unpaid hold");
    let buy_now = ctx.order(&buyer_auth, pair).await;
    assert_eq!(buy_now.status, StatusCode::CONFLICT, "the match holds the pair: {}", buy_now.text);

    // Redelivered, the match changes nothing; declined, its order is cancelled as such.
    ctx.matched_as(first, pair, seller, bidder, 24_000).await;
    let made_again = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM orders").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(ctx.events().await.len(), 2, "no second order.created or order.refused");
    let declined = sneakerstop_events::payments::PaymentDeclined {
        payment_id: Uuid::now_v7(),
        order_id: first,
        reason: "Your card was declined.".into(),
    };
    ctx.deliver(&PaymentEvent::Declined(declined), first, 1).await;
    let order = Call::get(&format!("/api/orders/{first}")).header("authorization", &bidder_auth).send(&ctx.app).await;
    assert_eq!(
        (order.json["status"].as_str(), order.json["cancelReason"].as_str()),
        (Some("cancelled"), Some("declined"))
    );
    assert_eq!(made_again, 1);
    assert_eq!(ctx.events().await.last().unwrap().2["reason"], "declined");
    let holds: Option<i32> = sqlx::query_scalar("SELECT live FROM buyer_holds WHERE buyer_id = $1")
        .bind(bidder)
        .fetch_optional(&ctx.pool)
        .await
        .unwrap();
    assert_eq!(holds, None, "and gives none back");
}
