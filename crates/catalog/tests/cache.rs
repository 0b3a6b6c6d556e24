//! The read cache in front of browsing, against real PostgreSQL and its notifications:
//! what it serves, and every way a committed change reaches it.

use std::time::Duration;

use axum::Router;
use chrono::Utc;
use serde_json::json;
use sneakerstop_auth::{CurrentUser, SessionKeys};
use sneakerstop_catalog::cache::ReadCache;
use sneakerstop_catalog::events::CatalogHandler;
use sneakerstop_catalog::{AppState, SCHEMA};
use sneakerstop_events::orders::{OrderCreated, OrderEvent};
use sneakerstop_messaging::{ChangeFeed, Handler, IncomingEvent};
use sneakerstop_settings::Secret;
use sneakerstop_test_support::{Answer, Call, TestDb, wait_until};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(10);

struct Ctx {
    app: Router,
    feed: ChangeFeed,
    cache: ReadCache,
    pool: PgPool,
    auth: String,
    stop: CancellationToken,
    _db: TestDb,
}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn ctx() -> Ctx {
    let db = TestDb::new().await;
    let pool =
        sneakerstop_db::connect_and_migrate(&db.config(), SCHEMA, &sneakerstop_catalog::migrations()).await.unwrap();
    let keys = SessionKeys::new(&Secret::new("catalog-cache-test-secret-0123456789"), Duration::from_secs(600), false);
    let cache = ReadCache::new(Duration::from_secs(600));
    let stop = CancellationToken::new();
    // As the server wires it: the cache follows the process's change feed.
    let feed = ChangeFeed::new();
    cache.follow(&feed, &sneakerstop_catalog::change_channel());
    tokio::spawn(feed.clone().run(pool.clone(), stop.clone()));
    let app = sneakerstop_catalog::app(AppState { pool: pool.clone(), keys: keys.clone(), cache: cache.clone() });
    let auth = format!("Bearer {}", keys.issue(&CurrentUser::member(Uuid::now_v7(), "s@example.com")));
    let ctx = Ctx { app, feed, cache, pool, auth, stop, _db: db };
    // The cache serves nothing until its listener hears changes.
    wait_until("the cache to listen", DEADLINE, || async {
        (ctx.list().await.headers["x-cache"] != "bypass").then_some(())
    })
    .await;
    ctx
}

impl Ctx {
    async fn list(&self) -> Answer {
        Call::get("/api/sneakers?sort=price_asc").send(&self.app).await
    }

    async fn titles(&self) -> (Vec<String>, String) {
        let answer = self.list().await;
        let titles = answer.json["items"].as_array().unwrap().iter().map(|s| s["title"].as_str().unwrap().into());
        (titles.collect(), answer.headers["x-cache"].to_str().unwrap().to_owned())
    }

    /// Lists a pair as the server does (announcing its commit): a process's own write starts
    /// one generation at once and one more as it announces (its `NOTIFY` reaches the other
    /// processes; the feed does not hear its own back).
    async fn create(&self, title: &str) -> Uuid {
        let before = self.cache.generation();
        let request = Call::post("/api/sneakers", json!({"title": title, "price": 100, "size": 9}))
            .header("authorization", &self.auth)
            .send(&self.app);
        let answer = sneakerstop_messaging::announcing(&self.feed, request).await;
        assert_eq!(self.cache.generation(), before + 2, "the write invalidated at once, and as it announced");
        answer.json["id"].as_str().unwrap().parse().unwrap()
    }

    /// A row written behind the service's back: no outbox row, so no notification.
    async fn insert_silently(&self, title: &str) {
        sqlx::query("INSERT INTO sneakers (id, seller_id, title, price_cents, size) VALUES ($1, $2, $3, 5000, 9)")
            .bind(Uuid::now_v7())
            .bind(Uuid::now_v7())
            .bind(title)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn wait_for_title(&self, title: &str, why: &str) {
        wait_until(why, DEADLINE, || async { self.titles().await.0.iter().any(|t| t == title).then_some(()) }).await;
    }
}

#[tokio::test]
async fn pages_are_served_from_memory_until_a_change_commits() {
    let ctx = ctx().await;
    ctx.create("Samba").await;
    assert_eq!(ctx.titles().await, (vec!["Samba".into()], "miss".into()), "a seller sees their listing at once");
    assert_eq!(ctx.titles().await, (vec!["Samba".into()], "hit".into()));

    ctx.insert_silently("Gazelle").await;
    assert_eq!(
        ctx.titles().await,
        (vec!["Samba".into()], "hit".into()),
        "without a notification the cached page is served (this is what the cache saves)"
    );

    // Another replica's commit: only its NOTIFY reaches this process.
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(sneakerstop_catalog::change_channel())
        .execute(&ctx.pool)
        .await
        .unwrap();
    ctx.wait_for_title("Gazelle", "another replica's change to reach the cache").await;
}

#[tokio::test]
async fn a_listing_changed_by_an_event_is_not_served_stale() {
    let ctx = ctx().await;
    let sneaker = ctx.create("Samba").await;
    let path = format!("/api/sneakers/{sneaker}");
    let view = Call::get(&path).send(&ctx.app).await;
    assert_eq!((view.json["status"].as_str(), view.headers["etag"].to_str().unwrap()), (Some("available"), "\"1\""));
    assert_eq!(Call::get(&path).send(&ctx.app).await.headers["x-cache"], "hit");

    let event = OrderEvent::Created(OrderCreated {
        order_id: Uuid::now_v7(),
        sneaker_id: sneaker,
        buyer_id: Uuid::now_v7(),
        seller_id: Uuid::now_v7(),
        price_cents: 10_000,
        expires_at: Utc::now(),
        match_id: None,
    });
    let incoming = IncomingEvent::from_contract(&event, "/test", Uuid::now_v7(), 1);
    // Applied as the consumer runtime applies it: announced once committed.
    sneakerstop_messaging::announcing(&ctx.feed, async {
        let mut tx = ctx.pool.begin().await.unwrap();
        CatalogHandler.handle(&mut tx, &incoming).await.unwrap();
        tx.commit().await.unwrap();
    })
    .await;

    let view = wait_until("the reservation to be visible", DEADLINE, || async {
        let view = Call::get(&path).send(&ctx.app).await;
        (view.json["status"] == "reserved").then_some(view)
    })
    .await;
    assert_eq!(view.headers["etag"], "\"2\"", "the cached ETag follows the version");
}

#[tokio::test]
async fn losing_the_listener_never_leaves_stale_pages_behind() {
    let ctx = ctx().await;
    ctx.create("Samba").await;
    ctx.titles().await;
    assert_eq!(ctx.titles().await.1, "hit");

    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN %catalog_outbox%'",
    )
    .fetch_one(&ctx.pool)
    .await
    .unwrap();
    assert_eq!(killed, 1, "the cache's listener connection");
    // Changes made while it is away are seen once it notices and reconnects.
    ctx.insert_silently("Gazelle").await;
    ctx.wait_for_title("Gazelle", "a fresh page after the listener reconnected").await;
    wait_until("the cache to be used again", DEADLINE, || async { (ctx.titles().await.1 == "hit").then_some(()) })
        .await;
}
