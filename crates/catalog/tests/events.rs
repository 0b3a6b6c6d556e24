//! Catalog reacting to `orders.orders`, through its handler, against real PostgreSQL.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::Utc;
use serde_json::json;
use sneakerstop_auth::{CurrentUser, SessionKeys};
use sneakerstop_catalog::events::CatalogHandler;
use sneakerstop_catalog::{AppState, SCHEMA};
use sneakerstop_events::orders::{CancelReason, OrderCancelled, OrderCompleted, OrderCreated, OrderEvent};

use sneakerstop_messaging::{Handler, IncomingEvent};
use sneakerstop_settings::Secret;
use sneakerstop_test_support::{Call, TestDb};
use sqlx::PgPool;
use uuid::Uuid;

async fn deliver(pool: &PgPool, event: OrderEvent) {
    let incoming = IncomingEvent::from_contract(&event, "/test", Uuid::now_v7(), 1);
    let mut tx = pool.begin().await.unwrap();
    CatalogHandler.handle(&mut tx, &incoming).await.unwrap();
    tx.commit().await.unwrap();
}

fn created(order: Uuid, sneaker: Uuid) -> OrderEvent {
    OrderEvent::Created(OrderCreated {
        order_id: order,
        sneaker_id: sneaker,
        buyer_id: Uuid::now_v7(),
        seller_id: Uuid::now_v7(),
        price_cents: 100,
        expires_at: Utc::now(),
        match_id: None,
    })
}

fn cancelled(order: Uuid, sneaker: Uuid) -> OrderEvent {
    OrderEvent::Cancelled(OrderCancelled { order_id: order, sneaker_id: sneaker, reason: CancelReason::Expired })
}

#[tokio::test]
async fn orders_reserve_release_and_sell_the_pair_they_hold() {
    let db = TestDb::new().await;
    let pool =
        sneakerstop_db::connect_and_migrate(&db.config(), SCHEMA, &sneakerstop_catalog::migrations()).await.unwrap();
    let keys = SessionKeys::new(&Secret::new("catalog-events-test-secret-0123456789"), Duration::from_secs(60), false);
    let app = sneakerstop_catalog::app(AppState::uncached(pool.clone(), keys.clone()));
    let seller = CurrentUser::member(Uuid::now_v7(), "s@example.com");
    let auth = format!("Bearer {}", keys.issue(&seller));
    let listed = Call::post("/api/sneakers", json!({"title": "Samba", "price": 100, "size": 9}))
        .header("authorization", &auth)
        .send(&app)
        .await;
    let sneaker: Uuid = listed.json["id"].as_str().unwrap().parse().unwrap();
    let state = || async {
        let answer = Call::get(&format!("/api/sneakers/{sneaker}")).send(&app).await;
        (answer.json["status"].as_str().unwrap().to_owned(), answer.json["version"].as_i64().unwrap())
    };
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());

    deliver(&pool, created(a, sneaker)).await;
    assert_eq!(state().await, ("reserved".into(), 2));
    let locked = Call::new(axum::http::Method::PUT, &format!("/api/sneakers/{sneaker}"))
        .json(json!({"title": "Samba OG", "price": 100, "size": 9}))
        .header("authorization", &auth)
        .send(&app)
        .await;
    assert_eq!(locked.status, StatusCode::CONFLICT, "a reserved pair cannot be edited");

    deliver(&pool, cancelled(b, sneaker)).await;
    assert_eq!(state().await, ("reserved".into(), 2), "another order's cancellation does not release it");
    deliver(&pool, created(b, sneaker)).await;
    assert_eq!(state().await, ("reserved".into(), 2), "a second order cannot take a held pair");

    deliver(&pool, cancelled(a, sneaker)).await;
    assert_eq!(state().await, ("available".into(), 3));

    deliver(&pool, created(b, sneaker)).await;
    deliver(
        &pool,
        OrderEvent::Completed(OrderCompleted { order_id: b, sneaker_id: sneaker, payment_id: Uuid::now_v7() }),
    )
    .await;
    assert_eq!(state().await, ("sold".into(), 5));
    deliver(&pool, cancelled(b, sneaker)).await;
    assert_eq!(state().await, ("sold".into(), 5), "sold is final");

    let updates: Vec<(String, i64)> = sqlx::query_as(
        "SELECT payload::jsonb->>'status', (payload::jsonb->>'version')::bigint FROM outbox
         WHERE event_type = 'sneaker.updated' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let expected: Vec<(String, i64)> =
        vec![("reserved".into(), 2), ("available".into(), 3), ("reserved".into(), 4), ("sold".into(), 5)];
    assert_eq!(updates, expected, "each change published sneaker.updated with its version");
}
