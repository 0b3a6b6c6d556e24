//! The market against a fresh PostgreSQL database per test: its HTTP API, and the events it
//! consumes delivered to its handler as Kafka would deliver them.

use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use chrono::Utc;
use serde_json::{Value, json};
use sneakerstop_auth::SessionKeys;
use sneakerstop_events::Contract;
use sneakerstop_events::catalog::{Product, ProductEvent, Sneaker, SneakerEvent, SneakerStatus};
use sneakerstop_events::orders::{
    CancelReason, OrderCancelled, OrderCompleted, OrderCreated, OrderEvent, OrderRefused, RefusedBecause,
};
use sneakerstop_events::payments::{PaymentMethodEvent, PaymentMethodSaved};
use sneakerstop_market::domain::DEFAULT_MAX_OPEN_BIDS_PER_BOOK;
use sneakerstop_market::engine::{self, Engine};
use sneakerstop_market::events::MarketHandler;
use sneakerstop_market::owners::Ownership;
use sneakerstop_market::{AppState, SCHEMA, expiry, live::Markets};
use sneakerstop_messaging::{ChangeFeed, Handler, IncomingEvent};
use sneakerstop_settings::Secret;
use sneakerstop_test_support::{Answer, Call, TestDb, wait_until};
use sqlx::PgPool;
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(10);

struct Ctx {
    app: Router,
    pool: PgPool,
    keys: SessionKeys,
    engine: Engine,
    ownership: Ownership,
    /// Where the writer and the consumer announce what they committed.
    changes: ChangeFeed,
    product: Uuid,
    /// Stops the writer when the test ends.
    _writer: tokio_util::sync::DropGuard,
    _db: TestDb,
}

async fn ctx() -> Ctx {
    let db = TestDb::new().await;
    let pool =
        sneakerstop_db::connect_and_migrate(&db.config(), SCHEMA, &sneakerstop_market::migrations()).await.unwrap();
    let keys = SessionKeys::new(&Secret::new("market-test-secret-0123456789-abcdef"), Duration::from_secs(3600), false);
    // The only member: it owns every shard of the books.
    let ownership = Ownership::new("http://127.0.0.1:9");
    ownership.round(&pool).await.unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    // The writer takes arrivals when a test says (`deliver`), not on a clock of its own, so
    // a test counts every attempt it makes.
    let hour = Duration::from_secs(3600);
    let (engine, writer) =
        Engine::start(pool.clone(), ownership.clone(), DEFAULT_MAX_OPEN_BIDS_PER_BOOK, hour, cancel.clone());
    // What the writer and the consumer commit is announced as in the service: after the
    // commit, by a NOTIFY that other processes' feeds hear (`following`). Nothing listens
    // on this feed; it only sends.
    let changes = ChangeFeed::new();
    changes.clone().run(pool.clone(), cancel.child_token()).await;
    tokio::spawn(sneakerstop_messaging::announcing(&changes, writer));
    // Not following a change feed, these markets read PostgreSQL on every request.
    let app = app(&pool, &keys, &engine, Markets::new(Duration::from_millis(10), Duration::from_secs(60)));
    let ctx = Ctx {
        app,
        pool,
        keys,
        engine,
        ownership,
        changes,
        product: Uuid::now_v7(),
        _writer: cancel.drop_guard(),
        _db: db,
    };
    ctx.new_product(ctx.product).await;
    ctx
}

fn app(pool: &PgPool, keys: &SessionKeys, engine: &Engine, markets: Markets) -> Router {
    sneakerstop_market::app(AppState {
        pool: pool.clone(),
        keys: keys.clone(),
        replica: sneakerstop_messaging::ReplicaWait::new(Duration::from_millis(200)),
        markets,
        engine: engine.clone(),
        forward: reqwest::Client::new(),
        max_open_bids: DEFAULT_MAX_OPEN_BIDS_PER_BOOK,
    })
}

impl Ctx {
    /// Catalog created `product`, made in sizes 9, 10 and 10.5.
    async fn new_product(&self, product: Uuid) {
        self.deliver(&ProductEvent::Created(created(product)), product, 1).await;
    }

    /// This test's app with `markets` that follow a change feed of their own, and a stop
    /// for the feed: it returns once the feed hears nothing more.
    fn following(&self, markets: &Markets) -> (Router, impl AsyncFnOnce()) {
        let feed = ChangeFeed::new();
        markets.follow(&feed);
        let cancel = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn(feed.run(self.pool.clone(), cancel.clone()));
        let stop = async move || {
            cancel.cancel();
            running.await.unwrap();
        };
        (app(&self.pool, &self.keys, &self.engine, markets.clone()), stop)
    }

    /// Delivers `event` to the market's consumer, as Kafka would, and then — as the running
    /// service does once the consumer's transaction has committed — has the writer take
    /// what it recorded for the books.
    async fn deliver<C: Contract>(&self, event: &C, subject: Uuid, version: i64) {
        self.apply(event, subject, version).await;
        self.engine.take_arrivals().await.unwrap();
    }

    /// Applies `event` as the market's consumer does, on a transaction of its own, and
    /// nothing more: a process that stops right after that commit.
    async fn apply<C: Contract>(&self, event: &C, subject: Uuid, version: i64) {
        let incoming = IncomingEvent::from_contract(event, "/sneakerstop/test", subject, version);
        sneakerstop_messaging::announcing(&self.changes, async {
            let mut tx = self.pool.begin().await.unwrap();
            MarketHandler::default().handle(&mut tx, &incoming).await.unwrap();
            tx.commit().await.unwrap();
        })
        .await;
    }

    /// Leaves `ask` in a state no trade can be made of, as a bug would: already in a pending
    /// match (with `bid`, which must not cross it), so matching it again breaks
    /// `matches_one_pending_per_ask`.
    async fn break_ask(&self, ask: Uuid, bid: &str) {
        sqlx::query(
            "INSERT INTO matches (id, bid_id, ask_id, product_id, size, buyer_id, seller_id, price_cents, status,
                                  created_at, updated_at)
             SELECT $1, id, $2, product_id, size, buyer_id, $3, 10000, 'pending', now(), now() FROM bids WHERE id = $4",
        )
        .bind(Uuid::now_v7())
        .bind(ask)
        .bind(Uuid::now_v7())
        .bind(Uuid::parse_str(bid).unwrap())
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// A buyer with a saved payment method, and their `Authorization` header.
    async fn buyer(&self) -> (Uuid, String) {
        let (id, auth) = sneakerstop_test_support::signed_in(&self.keys);
        let saved = PaymentMethodSaved { method_id: Uuid::now_v7(), buyer_id: id, saved_at: Utc::now() };
        self.deliver(&PaymentMethodEvent::Saved(saved), id, 1).await;
        (id, auth)
    }

    /// An ask: `seller` lists a pair of the product in `size` at `price_cents`.
    async fn ask(&self, seller: Uuid, size: f64, price_cents: i64) -> Uuid {
        let id = Uuid::now_v7();
        self.deliver(&SneakerEvent::Listed(listing(id, self.product, seller, size, price_cents, 1)), id, 1).await;
        id
    }

    /// An ask in size 10 the consumer applied and the writer has not taken yet.
    async fn applied_ask(&self, price_cents: i64) -> Uuid {
        let id = Uuid::now_v7();
        self.apply(&SneakerEvent::Listed(listing(id, self.product, Uuid::now_v7(), 10.0, price_cents, 1)), id, 1).await;
        id
    }

    /// A new buyer's bid in size 10 at `price`, placed: (their `Authorization`, its id).
    async fn placed_bid(&self, price: f64) -> (String, String) {
        let (_, auth) = self.buyer().await;
        let placed = self.bid(&auth, 10.0, price).await;
        assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text);
        (auth, placed.json["id"].as_str().unwrap().to_owned())
    }

    async fn bid(&self, auth: &str, size: f64, price: f64) -> Answer {
        Call::post("/api/bids", json!({"productId": self.product, "size": size, "price": price}))
            .header("authorization", auth)
            .send(&self.app)
            .await
    }

    async fn get_bid(&self, auth: &str, id: &str) -> Value {
        let answer = Call::get(&format!("/api/bids/{id}")).header("authorization", auth).send(&self.app).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.json
    }

    async fn market(&self) -> Value {
        let answer = Call::get(&format!("/api/products/{}/market", self.product)).send(&self.app).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        answer.json
    }

    /// The `match.made` events in the outbox: (match, bid, sneaker, price).
    async fn matches(&self) -> Vec<(String, String, String, i64)> {
        let rows: Vec<(Value,)> =
            sqlx::query_as("SELECT payload::jsonb FROM outbox WHERE event_type = 'match.made' ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .unwrap();
        rows.into_iter()
            .map(|(p,)| {
                let text = |field: &str| p[field].as_str().unwrap().to_owned();
                (text("matchId"), text("bidId"), text("sneakerId"), p["priceCents"].as_i64().unwrap())
            })
            .collect()
    }
}

/// `product` as catalog announces it when created: made in sizes 9, 10 and 10.5.
fn created(product: Uuid) -> Product {
    Product {
        product_id: product,
        style_code: "DZ5485-612".into(),
        name: "Air Jordan 1 Retro High OG".into(),
        brand: "Jordan".into(),
        colorway: None,
        retail_price_cents: Some(18_000),
        release_date: None,
        sizes: vec![9.0, 10.0, 10.5],
        version: 1,
        created_at: Utc::now(),
    }
}

fn listing(id: Uuid, product: Uuid, seller: Uuid, size: f64, price_cents: i64, version: i64) -> Sneaker {
    Sneaker {
        sneaker_id: id,
        seller_id: seller,
        title: "AJ1".into(),
        brand: None,
        description: None,
        price_cents,
        size,
        product_id: Some(product),
        expires_at: Some(Utc::now() + chrono::Duration::days(30)),
        status: SneakerStatus::Available,
        version,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn size_of(market: &Value, size: f64) -> Value {
    market["sizes"].as_array().unwrap().iter().find(|s| s["size"] == size).unwrap().clone()
}

#[tokio::test]
async fn a_bid_rests_until_an_ask_meets_it_and_then_sells_at_the_bids_price() {
    let ctx = ctx().await;
    let (_, auth) = ctx.buyer().await;
    let placed = ctx.bid(&auth, 10.5, 240.0).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text);
    assert_eq!((placed.json["status"].as_str(), placed.json["price"].as_f64()), (Some("open"), Some(240.0)));
    let bid = placed.json["id"].as_str().unwrap().to_owned();
    let market = size_of(&ctx.market().await, 10.5);
    assert_eq!((market["highestBid"].as_f64(), market["bids"].as_i64()), (Some(240.0), Some(1)));
    assert!(ctx.matches().await.is_empty());

    // An ask above it rests too; one at or below it sells to the bid, at the bid's price.
    ctx.ask(Uuid::now_v7(), 10.5, 25_000).await;
    assert!(ctx.matches().await.is_empty(), "250 does not meet 240");
    let crossing = ctx.ask(Uuid::now_v7(), 10.5, 23_000).await;
    let matches = ctx.matches().await;
    assert_eq!(matches.len(), 1);
    assert_eq!((&matches[0].1, &matches[0].2, matches[0].3), (&bid, &crossing.to_string(), 24_000));
    let matched = ctx.get_bid(&auth, &bid).await;
    assert_eq!(
        (matched["status"].as_str(), matched["matchId"].as_str()),
        (Some("matched"), Some(matches[0].0.as_str()))
    );
    let market = size_of(&ctx.market().await, 10.5);
    assert_eq!((market["lowestAsk"].as_f64(), market["asks"].as_i64()), (Some(250.0), Some(1)), "the sold ask left");
    assert_eq!((market["highestBid"].as_f64(), market["bids"].as_i64()), (None, Some(0)));
}

#[tokio::test]
async fn an_ask_the_consumer_applied_trades_even_if_the_process_stopped_before_trading_it() {
    let ctx = ctx().await;
    let (_, bid) = ctx.placed_bid(240.0).await;

    // The consumer commits the ask (and its pending trade); the process stops before trading.
    let ask = ctx.applied_ask(23_000).await;
    assert!(ctx.matches().await.is_empty(), "nothing traded yet");
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM pending_trades").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(pending, 1, "the ask waits for the writer, durably");

    // The book's writer (on this instance or the next owner, told or on its round) takes
    // it, once.
    assert_eq!(ctx.engine.take_arrivals().await.unwrap(), 1);
    assert_eq!(ctx.engine.take_arrivals().await.unwrap(), 0, "taken once");
    let matches = ctx.matches().await;
    assert_eq!(matches.len(), 1);
    assert_eq!((&matches[0].1, &matches[0].2, matches[0].3), (&bid, &ask.to_string(), 24_000), "at the bid's price");
}

#[tokio::test]
async fn a_pending_trade_that_keeps_failing_is_set_aside_and_does_not_stop_its_book() {
    let ctx = ctx().await;
    let (_, low_bid) = ctx.placed_bid(100.0).await;
    let (_, high_bid) = ctx.placed_bid(240.0).await;
    ctx.placed_bid(239.0).await;
    // A state no trade can be made of (as a bug would leave it): the first ask is already in
    // a pending match, so matching it again (with either crossing bid) breaks
    // `matches_one_pending_per_ask`.
    let broken = ctx.applied_ask(23_000).await;
    ctx.break_ask(broken, &low_bid).await;
    let sound = ctx.applied_ask(23_000).await;

    let first = ctx.engine.take_arrivals().await;
    assert!(first.is_err(), "the broken ask did not trade");
    let matches = ctx.matches().await;
    assert_eq!(matches.len(), 1, "the ask behind it traded all the same");
    assert_eq!((&matches[0].1, &matches[0].2), (&high_bid, &sound.to_string()));

    let attempts = async || -> (i32, bool, String) {
        sqlx::query_as("SELECT attempts, set_aside_at IS NOT NULL, last_error FROM pending_trades WHERE ask_id = $1")
            .bind(broken)
            .fetch_one(&ctx.pool)
            .await
            .unwrap()
    };
    let (tried, set_aside, error) = attempts().await;
    assert_eq!((tried, set_aside), (1, false));
    assert!(error.contains("matches_one_pending_per_ask"), "{error}");
    for _ in 1..engine::MAX_ATTEMPTS {
        assert!(ctx.engine.take_arrivals().await.is_err());
    }
    assert_eq!(attempts().await.0, engine::MAX_ATTEMPTS);
    assert!(attempts().await.1, "set aside after its last attempt");
    assert_eq!(ctx.engine.take_arrivals().await.unwrap(), 0, "and no longer tried");
}

#[tokio::test]
async fn a_writer_fenced_off_its_shard_writes_nothing_and_answers_retry() {
    let ctx = ctx().await;
    let (auth, resting) = ctx.placed_bid(200.0).await;
    // Another instance claimed the shard meanwhile (a claim bumps the epoch), and this one
    // has not heard yet: its batch must not be written.
    sqlx::query("UPDATE book_shards SET epoch = epoch + 1").execute(&ctx.pool).await.unwrap();
    let refused = ctx.bid(&auth, 10.0, 210.0).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.text);
    assert_eq!(refused.headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    let bids: i64 = sqlx::query_scalar("SELECT count(*) FROM bids").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(bids, 1, "nothing of the fenced batch was written");
    // Its next lease round learns the epoch it holds the shard at now; its books are loaded
    // again, with what is stored.
    ctx.ownership.round(&ctx.pool).await.unwrap();
    let placed = ctx.bid(&auth, 10.0, 210.0).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text);
    let uri = format!("/api/bids/{resting}");
    let cancelled = Call::new(Method::DELETE, &uri).header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(cancelled.status, StatusCode::OK, "the stored bid is on the reloaded book: {}", cancelled.text);
}

#[tokio::test]
async fn a_batch_in_flight_holds_off_a_claim_but_not_its_owners_renewal() {
    let ctx = ctx().await;
    // A batch in flight holds every shard's row until it commits.
    let mut batch = ctx.pool.begin().await.unwrap();
    sneakerstop_market::owners::fence(&mut batch, ctx.ownership.member(), &ctx.ownership.owned()).await.unwrap();
    // The owner renews its leases meanwhile, without waiting for the batch (four times a
    // second, that wait used to stall the writer).
    tokio::time::timeout(Duration::from_secs(2), ctx.ownership.round(&ctx.pool))
        .await
        .expect("the renewal does not wait for the batch in flight")
        .unwrap();

    // The leases lapse (the owner paused, say) and another instance looks for shards to
    // take: none while the batch that may still write them holds them.
    sqlx::query("UPDATE book_shards SET lease_until = now() - interval '1 second'").execute(&ctx.pool).await.unwrap();
    let other = Ownership::new("http://127.0.0.1:8");
    tokio::time::timeout(Duration::from_secs(2), other.round(&ctx.pool))
        .await
        .expect("a claim skips, never waits")
        .unwrap();
    assert!(other.owned().is_empty(), "claimed {:?} under a batch in flight", other.owned());

    batch.commit().await.unwrap();
    other.round(&ctx.pool).await.unwrap();
    let claimed = other.owned();
    assert_eq!(
        claimed.len(),
        usize::from(sneakerstop_market::owners::SHARDS) / 2,
        "its fair share, once the batch ended"
    );
    let before = ctx.ownership.owned();
    assert!(claimed.iter().all(|(shard, epoch)| *epoch == before[shard] + 1), "each claim a new epoch");
}

#[tokio::test]
async fn a_new_bid_buys_the_lowest_ask_listed_first_at_the_asks_price_never_its_own() {
    let ctx = ctx().await;
    let (buyer, auth) = ctx.buyer().await;
    let seller = Uuid::now_v7();
    ctx.ask(seller, 10.0, 23_500).await;
    let first_cheapest = ctx.ask(seller, 10.0, 23_000).await;
    ctx.ask(seller, 10.0, 23_000).await;
    ctx.ask(seller, 9.0, 10_000).await;
    let placed = ctx.bid(&auth, 10.0, 240.0).await;
    assert_eq!(
        (placed.status, placed.json["status"].as_str()),
        (StatusCode::CREATED, Some("matched")),
        "{}",
        placed.text
    );
    let matches = ctx.matches().await;
    assert_eq!((&matches[0].2, matches[0].3), (&first_cheapest.to_string(), 23_000), "lowest, then earliest");

    // Own asks are never bought, and a bid at or above one's own ask is refused.
    let own = ctx.ask(buyer, 10.5, 20_000).await;
    let refused = ctx.bid(&auth, 10.5, 200.0).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert!(refused.json["type"].as_str().unwrap().ends_with("/own-ask"));
    let below = ctx.bid(&auth, 10.5, 199.0).await;
    assert_eq!(below.json["status"], "open", "below one's own ask it rests");
    assert_eq!(ctx.matches().await.len(), 1, "{own} was not bought");
}

#[tokio::test]
async fn a_retried_bid_with_its_idempotency_key_is_answered_again_and_buys_nothing_more() {
    let ctx = ctx().await;
    let (_, auth) = ctx.buyer().await;
    let seller = Uuid::now_v7();
    ctx.ask(seller, 10.0, 23_000).await;
    ctx.ask(seller, 10.0, 23_000).await;
    let send = async |key: &str, price: f64| {
        Call::post("/api/bids", json!({"productId": ctx.product, "size": 10.0, "price": price}))
            .header("authorization", &auth)
            .header("idempotency-key", key)
            .send(&ctx.app)
            .await
    };
    let first = send("bid-1", 240.0).await;
    assert_eq!((first.status, first.json["status"].as_str()), (StatusCode::CREATED, Some("matched")), "{}", first.text);
    let retried = send("bid-1", 240.0).await;
    assert_eq!(retried.status, StatusCode::CREATED);
    assert_eq!(retried.json, first.json, "the first answer, again");
    assert_eq!(ctx.matches().await.len(), 1, "one pair bought, though two asks cross the bid");
    let bids: i64 = sqlx::query_scalar("SELECT count(*) FROM bids").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(bids, 1);

    let reused = send("bid-1", 250.0).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reused.text);
    assert!(reused.json["type"].as_str().unwrap().ends_with("/idempotency-key-reused"));
    let another = send("bid-2", 240.0).await;
    assert_eq!((another.status, another.json["status"].as_str()), (StatusCode::CREATED, Some("matched")));
    assert_eq!(ctx.matches().await.len(), 2, "a new key is a new bid");
}

#[tokio::test]
async fn requests_waiting_for_a_book_are_done_on_one_transaction_each_with_its_own_answer() {
    let ctx = ctx().await;
    let (early, resting) = ctx.placed_bid(100.0).await;
    ctx.ask(Uuid::now_v7(), 10.0, 23_000).await;
    let mut crossing = Vec::new();
    for _ in 0..2 {
        crossing.push(ctx.buyer().await.1);
    }
    let (_, resting_only) = ctx.buyer().await;
    let (no_card_id, no_card) = sneakerstop_test_support::signed_in(&ctx.keys);
    let keyed = async |auth: &str| {
        Call::post("/api/bids", json!({"productId": ctx.product, "size": 10.0, "price": 240.0}))
            .header("authorization", auth)
            .header("idempotency-key", "first-bid")
            .send(&ctx.app)
            .await
    };

    // While the writer is held, requests queue; then one batch does them all.
    let held = ctx.engine.hold().await;
    let requests = async {
        let uri = format!("/api/bids/{resting}");
        let cancel = Call::new(Method::DELETE, &uri).header("authorization", &early).send(&ctx.app);
        let bids = futures::future::join_all(crossing.iter().map(|auth| ctx.bid(auth, 10.0, 240.0)));
        tokio::join!(cancel, bids, ctx.bid(&resting_only, 10.0, 150.0), keyed(&no_card))
    };
    let release = async {
        let queued = || async { (ctx.engine.queued() == 5).then_some(()) };
        wait_until("five requests queued for the book", Duration::from_secs(10), queued).await;
        drop(held);
    };
    let ((cancelled, crossed, rested, refused), ()) = tokio::join!(requests, release);

    assert_eq!((cancelled.status, cancelled.json["status"].as_str()), (StatusCode::OK, Some("cancelled")));
    let crossed: Vec<_> = crossed.iter().map(|a| (a.status, a.json["status"].as_str().unwrap_or(&a.text))).collect();
    assert!(crossed.contains(&(StatusCode::CREATED, "matched")), "{crossed:?}");
    assert!(crossed.contains(&(StatusCode::CREATED, "open")), "one pair, one match: {crossed:?}");
    assert_eq!((rested.status, rested.json["status"].as_str()), (StatusCode::CREATED, Some("open")));
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert!(refused.json["type"].as_str().unwrap().ends_with("/payment-method-required"));
    let transactions: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM bids").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(transactions, 1, "every bid written or changed by the one batch");
    assert_eq!(ctx.matches().await.len(), 1);

    // The refused request's key was given back with its refusal, not committed with the
    // batch half-used: once the buyer has a card, the same request goes through.
    let unanswered: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE status_code IS NULL")
        .fetch_one(&ctx.pool)
        .await
        .unwrap();
    assert_eq!(unanswered, 0, "no claim left without its answer");
    let saved = PaymentMethodSaved { method_id: Uuid::now_v7(), buyer_id: no_card_id, saved_at: Utc::now() };
    ctx.deliver(&PaymentMethodEvent::Saved(saved), no_card_id, 1).await;
    let retried = keyed(&no_card).await;
    assert_eq!(
        (retried.status, retried.json["status"].as_str()),
        (StatusCode::CREATED, Some("open")),
        "{}",
        retried.text
    );
}

#[tokio::test]
async fn a_batch_reads_back_what_it_changed_before_writing_it() {
    let ctx = ctx().await;
    let (auth, resting) = ctx.placed_bid(200.0).await;
    let (_, crossing) = ctx.buyer().await;
    let ask = ctx.applied_ask(19_000).await;
    let dearer = ctx.applied_ask(24_000).await;

    // One batch, in this order: two asks arrive, the first takes the resting bid and the
    // second rests; the first bid's buyer cancels it; a new bid takes the second ask. The
    // batch's writes reach the database only at its end, so the cancel must see the match
    // this batch made, not the open bid of before it.
    let held = ctx.engine.hold().await;
    let queued = async |n: usize| {
        let queued = || async { (ctx.engine.queued() == n).then_some(()) };
        wait_until(&format!("{n} commands queued for the book"), Duration::from_secs(10), queued).await;
    };
    let uri = format!("/api/bids/{resting}");
    let ((taken, cancelled, placed), ()) = tokio::join!(
        async {
            let taken = ctx.engine.take_arrivals();
            let cancelled = async {
                queued(1).await;
                Call::new(Method::DELETE, &uri).header("authorization", &auth).send(&ctx.app).await
            };
            let placed = async {
                queued(2).await;
                ctx.bid(&crossing, 10.0, 250.0).await
            };
            tokio::join!(taken, cancelled, placed)
        },
        async {
            queued(3).await;
            drop(held);
        }
    );

    assert_eq!(taken.unwrap(), 2);
    assert_eq!(cancelled.status, StatusCode::CONFLICT, "a matched bid cannot be cancelled: {}", cancelled.text);
    assert_eq!(
        (placed.status, placed.json["status"].as_str(), placed.json["price"].as_f64()),
        (StatusCode::CREATED, Some("matched"), Some(250.0)),
        "{}",
        placed.text
    );
    let placed = placed.json["id"].as_str().unwrap().to_owned();
    let transactions: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM matches").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(transactions, 1, "both matches made by the one batch");
    let matches = ctx.matches().await;
    let pairs: Vec<(&str, String)> = matches.iter().map(|m| (m.1.as_str(), m.2.clone())).collect();
    assert_eq!(pairs, [(resting.as_str(), ask.to_string()), (placed.as_str(), dearer.to_string())]);
    for (made, _, ask, _) in &matches {
        let taken_by: Option<Uuid> = sqlx::query_scalar("SELECT match_id FROM asks WHERE id = $1::uuid")
            .bind(ask)
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
        assert_eq!(taken_by.map(|id| id.to_string()).as_ref(), Some(made), "the ask is its match's");
    }

    // Each bid as the batch left it, and its events in the order they happened: the new
    // bid was written once, already matched, after its `bid.placed`.
    for bid in [&resting, &placed] {
        let row: (String, i64) = sqlx::query_as("SELECT status, version FROM bids WHERE id = $1::uuid")
            .bind(bid)
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
        assert_eq!(row, ("matched".to_owned(), 2), "bid {bid}");
        let events: Vec<(String, i64)> = sqlx::query_as(
            "SELECT event_type, (payload::jsonb->>'version')::int8 FROM outbox
              WHERE event_type LIKE 'bid.%' AND payload::jsonb->>'bidId' = $1 ORDER BY id",
        )
        .bind(bid)
        .fetch_all(&ctx.pool)
        .await
        .unwrap();
        assert_eq!(events, [("bid.placed".to_owned(), 1), ("bid.updated".to_owned(), 2)], "bid {bid}");
    }
}

#[tokio::test]
async fn a_request_that_fails_in_a_batch_fails_alone() {
    let ctx = ctx().await;
    let (low, low_bid) = ctx.placed_bid(100.0).await;
    let broken = ctx.applied_ask(23_000).await;
    ctx.break_ask(broken, &low_bid).await;
    let (_, crossing) = ctx.buyer().await;
    let (_, resting) = ctx.buyer().await;

    let held = ctx.engine.hold().await;
    let requests = async {
        let uri = format!("/api/bids/{low_bid}");
        let cancel = Call::new(Method::DELETE, &uri).header("authorization", &low).send(&ctx.app);
        tokio::join!(ctx.bid(&crossing, 10.0, 240.0), ctx.bid(&resting, 10.0, 150.0), cancel)
    };
    let release = async {
        let queued = || async { (ctx.engine.queued() == 3).then_some(()) };
        wait_until("three requests queued for the book", Duration::from_secs(10), queued).await;
        drop(held);
    };
    let ((failed, rested, cancelled), ()) = tokio::join!(requests, release);

    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", failed.text);
    assert_eq!((rested.status, rested.json["status"].as_str()), (StatusCode::CREATED, Some("open")), "{}", rested.text);
    assert_eq!((cancelled.status, cancelled.json["status"].as_str()), (StatusCode::OK, Some("cancelled")));
    let prices: Vec<i64> =
        sqlx::query_scalar("SELECT price_cents FROM bids ORDER BY price_cents").fetch_all(&ctx.pool).await.unwrap();
    assert_eq!(prices, [10_000, 15_000], "the failed bid left nothing behind");
}

#[tokio::test]
async fn a_buyer_has_at_most_25_open_bids_on_a_book() {
    let ctx = ctx().await;
    let (_, auth) = ctx.buyer().await;
    let mut ids = Vec::new();
    for n in 0..DEFAULT_MAX_OPEN_BIDS_PER_BOOK {
        let placed = ctx.bid(&auth, 10.0, 100.0 + n as f64).await;
        assert_eq!(placed.status, StatusCode::CREATED, "bid {n}: {}", placed.text);
        ids.push(placed.json["id"].as_str().unwrap().to_owned());
    }
    let refused = ctx.bid(&auth, 10.0, 150.0).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert!(refused.json["type"].as_str().unwrap().ends_with("/too-many-bids"));
    assert!(refused.json["detail"].as_str().unwrap().contains("25 open bids"), "{}", refused.text);
    assert_eq!(ctx.bid(&auth, 10.5, 150.0).await.status, StatusCode::CREATED, "another size is another book");

    let uri = format!("/api/bids/{}", ids[0]);
    assert_eq!(
        Call::new(Method::DELETE, &uri).header("authorization", &auth).send(&ctx.app).await.status,
        StatusCode::OK
    );
    assert_eq!(ctx.bid(&auth, 10.0, 150.0).await.status, StatusCode::CREATED, "room for one again");
}

#[tokio::test]
async fn bids_a_buyer_sends_at_once_cannot_pass_the_limit_together() {
    let ctx = ctx().await;
    let (_, auth) = ctx.buyer().await;
    // All 40 read "no open bids" before their turn on the book.
    let answers = futures::future::join_all((0..40).map(|n| ctx.bid(&auth, 10.0, 100.0 + f64::from(n)))).await;
    let placed = answers.iter().filter(|a| a.status == StatusCode::CREATED).count();
    let refused = answers.iter().filter(|a| a.status == StatusCode::CONFLICT).count();
    assert_eq!((placed, refused), (25, 15), "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    let open: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bids WHERE status = 'open'").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(open, 25);
}

#[tokio::test]
async fn a_size_added_to_a_product_gets_a_book() {
    let ctx = ctx().await;
    let (_, auth) = ctx.buyer().await;
    assert_eq!(ctx.bid(&auth, 11.0, 150.0).await.status, StatusCode::UNPROCESSABLE_ENTITY, "not made in 11 yet");
    let corrected = Product { sizes: vec![9.0, 10.0, 10.5, 11.0], version: 2, ..created(ctx.product) };
    ctx.deliver(&ProductEvent::Updated(corrected), ctx.product, 2).await;
    assert_eq!(ctx.bid(&auth, 11.0, 150.0).await.status, StatusCode::CREATED);
    assert_eq!(size_of(&ctx.market().await, 11.0)["highestBid"], 150.0);

    // The creation arriving late (version 1) does not take the size away.
    ctx.deliver(&ProductEvent::Created(created(ctx.product)), ctx.product, 1).await;
    assert_eq!(size_of(&ctx.market().await, 11.0)["bids"], 1);
}

#[tokio::test]
async fn refusals_name_the_field_or_the_rule() {
    let ctx = ctx().await;
    let (_, with_card) = ctx.buyer().await;
    let (_, without_card) = sneakerstop_test_support::signed_in(&ctx.keys);
    let no_card = ctx.bid(&without_card, 10.0, 240.0).await;
    assert_eq!(no_card.status, StatusCode::CONFLICT, "{}", no_card.text);
    assert!(no_card.json["type"].as_str().unwrap().ends_with("/payment-method-required"));
    assert!(no_card.json["detail"].as_str().unwrap().contains("/api/payment-methods"));

    let off_size = ctx.bid(&with_card, 12.0, 240.0).await;
    assert_eq!(
        (off_size.status, off_size.json["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("size"))
    );
    assert!(off_size.json["errors"][0]["reason"].as_str().unwrap().contains("9, 10, 10.5"));
    let cheap = ctx.bid(&with_card, 10.0, 24.99).await;
    assert_eq!((cheap.status, cheap.json["errors"][0]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("price")));
    let long =
        Call::post("/api/bids", json!({"productId": ctx.product, "size": 10, "price": 100, "expiresInDays": 91}));
    let long = long.header("authorization", &with_card).send(&ctx.app).await;
    assert_eq!(long.json["errors"][0]["field"], "expiresInDays", "{}", long.text);
    // JSON Schema's integer, as the API document says: 7.0 is 7, 7.5 is no whole number.
    let fraction =
        Call::post("/api/bids", json!({"productId": ctx.product, "size": 10, "price": 100, "expiresInDays": 7.5}));
    let fraction = fraction.header("authorization", &with_card).send(&ctx.app).await;
    assert_eq!(fraction.assert_invalid_field("expiresInDays"), "must be a whole number");
    let unknown = Call::post("/api/bids", json!({"productId": Uuid::now_v7(), "size": 10, "price": 100}));
    let unknown = unknown.header("authorization", &with_card).send(&ctx.app).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    let anonymous = Call::post("/api/bids", json!({"productId": ctx.product, "size": 10, "price": 100}));
    assert_eq!(anonymous.send(&ctx.app).await.status, StatusCode::UNAUTHORIZED);
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM bids").fetch_one(&ctx.pool).await.unwrap();
    assert_eq!(written, 0, "nothing written for a refusal");
}

#[tokio::test]
async fn an_integer_field_spelled_with_a_zero_fraction_is_that_integer() {
    let ctx = ctx().await;
    let (_, auth) = ctx.buyer().await;
    let body = json!({"productId": ctx.product, "size": 10, "price": 240, "expiresInDays": 7.0});
    let placed = Call::post("/api/bids", body).header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text);
    let expires: chrono::DateTime<Utc> = placed.json["expiresAt"].as_str().unwrap().parse().unwrap();
    assert!((167..=168).contains(&(expires - Utc::now()).num_hours()), "7 days: {expires}");
}

#[tokio::test]
async fn a_cancelled_or_expired_bid_leaves_the_book_at_once() {
    let ctx = ctx().await;
    let (_, auth) = ctx.buyer().await;
    let (_, other) = ctx.buyer().await;
    let bid = ctx.bid(&auth, 10.0, 240.0).await.json["id"].as_str().unwrap().to_owned();
    let uri = format!("/api/bids/{bid}");
    let not_theirs = Call::new(Method::DELETE, &uri).header("authorization", &other).send(&ctx.app).await;
    assert_eq!(not_theirs.status, StatusCode::NOT_FOUND);
    let cancelled = Call::new(Method::DELETE, &uri).header("authorization", &auth).send(&ctx.app).await;
    assert_eq!((cancelled.status, cancelled.json["status"].as_str()), (StatusCode::OK, Some("cancelled")));
    let again = Call::new(Method::DELETE, &uri).header("authorization", &auth).send(&ctx.app).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    ctx.ask(Uuid::now_v7(), 10.0, 20_000).await;
    assert!(ctx.matches().await.is_empty(), "a cancelled bid trades no more");

    // A bid whose time ran out is off the book before the sweeper comes, and swept after.
    let late = ctx.bid(&auth, 10.5, 240.0).await.json["id"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE bids SET expires_at = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(&late)
        .execute(&ctx.pool)
        .await
        .unwrap();
    assert_eq!(size_of(&ctx.market().await, 10.5)["bids"], 0);
    ctx.ask(Uuid::now_v7(), 10.5, 20_000).await;
    assert!(ctx.matches().await.is_empty(), "an expired bid trades no more");
    assert_eq!(expiry::sweep(&ctx.pool).await.unwrap(), 1);
    assert_eq!(ctx.get_bid(&auth, &late).await["status"], "expired");
    let listed = Call::get("/api/bids").header("authorization", &auth).send(&ctx.app).await;
    let statuses: Vec<&str> =
        listed.json["items"].as_array().unwrap().iter().map(|b| b["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["expired", "cancelled"], "newest first");
}

#[tokio::test]
async fn a_match_ends_as_a_sale_or_puts_the_bid_back_or_closes_it() {
    let ctx = ctx().await;
    let (_, auth) = ctx.buyer().await;
    let seller = Uuid::now_v7();
    let first = ctx.ask(seller, 10.0, 20_000).await;
    let second = ctx.ask(seller, 10.0, 21_000).await;
    let bid = ctx.bid(&auth, 10.0, 240.0).await.json["id"].as_str().unwrap().to_owned();
    let (match_id, ..) = ctx.matches().await[0].clone();
    let match_id: Uuid = match_id.parse().unwrap();

    // A racing buy-now took the pair: orders refuses the match, the bid goes back on the
    // book and buys the next ask at once.
    let buy_now = Uuid::now_v7();
    let held = OrderCreated {
        order_id: buy_now,
        sneaker_id: first,
        buyer_id: Uuid::now_v7(),
        seller_id: seller,
        price_cents: 20_000,
        expires_at: Utc::now(),
        match_id: None,
    };
    ctx.deliver(&OrderEvent::Created(held), buy_now, 1).await;
    let refused =
        OrderRefused { match_id, sneaker_id: first, buyer_id: Uuid::now_v7(), reason: RefusedBecause::PairTaken };
    ctx.deliver(&OrderEvent::Refused(refused), match_id, 1).await;
    let matches = ctx.matches().await;
    assert_eq!(matches.len(), 2, "re-matched");
    assert_eq!((&matches[1].2, matches[1].3), (&second.to_string(), 21_000), "the next ask, not the held one");
    let second_match: Uuid = matches[1].0.parse().unwrap();

    // Its order is placed and completes: a sale at the order's price, the bid filled.
    let order = OrderCreated {
        order_id: second_match,
        sneaker_id: second,
        buyer_id: Uuid::now_v7(),
        seller_id: seller,
        price_cents: 21_000,
        expires_at: Utc::now(),
        match_id: Some(second_match),
    };
    ctx.deliver(&OrderEvent::Created(order), second_match, 1).await;
    let completed = OrderCompleted { order_id: second_match, sneaker_id: second, payment_id: Uuid::now_v7() };
    ctx.deliver(&OrderEvent::Completed(completed), second_match, 2).await;
    let filled = ctx.get_bid(&auth, &bid).await;
    assert_eq!(
        (filled["status"].as_str(), filled["matchId"].as_str()),
        (Some("filled"), Some(second_match.to_string().as_str()))
    );
    let market = size_of(&ctx.market().await, 10.0);
    assert_eq!(market["lastSale"]["price"], 210.0);
    let page = Call::get(&format!("/api/markets?products={}", ctx.product)).send(&ctx.app).await;
    let last = &page.json["items"][0]["lastSale"];
    assert_eq!((last["price"].as_f64(), last["size"].as_f64()), (Some(210.0), Some(10.0)), "{}", page.text);
    let sales = Call::get(&format!("/api/products/{}/sales?size=10", ctx.product)).send(&ctx.app).await;
    assert_eq!(sales.json["items"].as_array().unwrap().len(), 1, "{}", sales.text);
    assert_eq!(sales.json["items"][0]["price"], 210.0);
    let path = format!("/api/products/{}/sales?size=10.25&limit=0&cursor=x", ctx.product);
    let refused = Call::get(&path).send(&ctx.app).await;
    let fields: Vec<&str> =
        refused.json["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!((refused.status, fields), (StatusCode::BAD_REQUEST, vec!["size", "limit", "cursor"]), "every bad field");

    // A declined saved card closes the bid; the pair comes back once its order ends.
    let third = ctx.ask(seller, 9.0, 15_000).await;
    let declined_bid = ctx.bid(&auth, 9.0, 150.0).await.json["id"].as_str().unwrap().to_owned();
    let (declined_match, ..) = ctx.matches().await[2].clone();
    let declined_match: Uuid = declined_match.parse().unwrap();
    let order = OrderCreated {
        order_id: declined_match,
        sneaker_id: third,
        buyer_id: Uuid::now_v7(),
        seller_id: seller,
        price_cents: 15_000,
        expires_at: Utc::now(),
        match_id: Some(declined_match),
    };
    ctx.deliver(&OrderEvent::Created(order), declined_match, 1).await;
    assert_eq!(size_of(&ctx.market().await, 9.0)["asks"], 0, "held by the order");
    let cancelled = OrderCancelled { order_id: declined_match, sneaker_id: third, reason: CancelReason::Declined };
    ctx.deliver(&OrderEvent::Cancelled(cancelled), declined_match, 2).await;
    assert_eq!(ctx.get_bid(&auth, &declined_bid).await["status"], "declined", "the bidder is told");
    // Catalog releases the pair (version 3 after reserved at 2): on the book again.
    let released = listing(third, ctx.product, seller, 9.0, 15_000, 3);
    ctx.deliver(&SneakerEvent::Updated(released), third, 3).await;
    let market = size_of(&ctx.market().await, 9.0);
    assert_eq!((market["asks"].as_i64(), market["lowestAsk"].as_f64()), (Some(1), Some(150.0)));

    // Only live orders' prices are kept: the sold and the declined ones are forgotten.
    let kept: Vec<Uuid> = sqlx::query_scalar("SELECT order_id FROM order_prices").fetch_all(&ctx.pool).await.unwrap();
    assert_eq!(kept, [buy_now]);
}

#[tokio::test]
async fn an_ask_past_its_time_is_off_the_book_before_any_sweep() {
    let ctx = ctx().await;
    let (_, auth) = ctx.buyer().await;
    let id = Uuid::now_v7();
    let stale = Sneaker {
        expires_at: Some(Utc::now() - chrono::Duration::seconds(1)),
        ..listing(id, ctx.product, Uuid::now_v7(), 10.0, 20_000, 1)
    };
    ctx.deliver(&SneakerEvent::Listed(stale), id, 1).await;
    assert_eq!(size_of(&ctx.market().await, 10.0)["asks"], 0, "not shown");
    let bid = ctx.bid(&auth, 10.0, 250.0).await;
    assert_eq!(bid.json["status"], "open", "not bought: {}", bid.text);
    assert!(ctx.matches().await.is_empty());
}

#[tokio::test]
async fn an_ask_its_seller_withdraws_leaves_the_book_at_once() {
    let ctx = ctx().await;
    let (_, auth) = ctx.buyer().await;
    let seller = Uuid::now_v7();
    let ask = ctx.ask(seller, 10.0, 20_000).await;
    ctx.bid(&auth, 10.0, 150.0).await; // the book is loaded, the ask on it
    assert_eq!(size_of(&ctx.market().await, 10.0)["lowestAsk"], 200.0);
    let withdrawn = Sneaker { status: SneakerStatus::Withdrawn, ..listing(ask, ctx.product, seller, 10.0, 20_000, 2) };
    ctx.deliver(&SneakerEvent::Updated(withdrawn), ask, 2).await;
    assert_eq!(size_of(&ctx.market().await, 10.0)["asks"], 0, "not shown");
    let bid = ctx.bid(&auth, 10.0, 250.0).await;
    assert_eq!(bid.json["status"], "open", "not bought: {}", bid.text);
    assert!(ctx.matches().await.is_empty());
}

#[tokio::test]
async fn the_lowest_ask_names_the_pair_buy_now_orders() {
    let ctx = ctx().await;
    let (seller, other) = (Uuid::now_v7(), Uuid::now_v7());
    assert_eq!(size_of(&ctx.market().await, 10.0)["lowestAskId"], json!(null), "no ask, no pair");
    let first = ctx.ask(seller, 10.0, 20_000).await;
    let later_same_price = ctx.ask(other, 10.0, 20_000).await;
    ctx.ask(other, 10.0, 25_000).await;
    let market = size_of(&ctx.market().await, 10.0);
    assert_eq!(
        (market["lowestAsk"].as_f64(), market["lowestAskId"].as_str()),
        (Some(200.0), Some(first.to_string().as_str())),
        "price, then time"
    );
    let withdrawn =
        Sneaker { status: SneakerStatus::Withdrawn, ..listing(first, ctx.product, seller, 10.0, 20_000, 2) };
    ctx.deliver(&SneakerEvent::Updated(withdrawn), first, 2).await;
    assert_eq!(size_of(&ctx.market().await, 10.0)["lowestAskId"], json!(later_same_price.to_string()));
}

#[tokio::test]
async fn a_page_of_products_gets_its_markets_in_one_call() {
    let ctx = ctx().await;
    let other = Uuid::now_v7();
    ctx.new_product(other).await;
    let (_, auth) = ctx.buyer().await;
    for (size, price) in [(9.0, 23_000), (10.0, 21_000), (10.5, 22_000)] {
        ctx.ask(Uuid::now_v7(), size, price).await;
    }
    ctx.bid(&auth, 9.0, 150.0).await;
    ctx.bid(&auth, 10.5, 190.0).await;

    let unknown = Uuid::now_v7();
    let uri = format!("/api/markets?products={other},{unknown},{}", ctx.product);
    let answer = Call::get(&uri).send(&ctx.app).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let items = answer.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "the unknown id is left out: {}", answer.text);
    assert_eq!(items[0]["productId"], other.to_string(), "in the order asked");
    assert_eq!((items[0]["asks"].as_i64(), items[0]["lowestAsk"].as_f64()), (Some(0), None));
    let ours = &items[1];
    assert_eq!(
        (ours["lowestAsk"].as_f64(), ours["highestBid"].as_f64()),
        (Some(210.0), Some(190.0)),
        "over every size"
    );
    assert_eq!((ours["asks"].as_i64(), ours["bids"].as_i64()), (Some(3), Some(2)));

    for (query, reason) in [("", "required"), ("?products=nope", "not a UUID")] {
        let refused = Call::get(&format!("/api/markets{query}")).send(&ctx.app).await;
        assert!(refused.assert_invalid_field("products").contains(reason), "{}", refused.text);
    }
    let many: Vec<String> = (0..101).map(|_| Uuid::now_v7().to_string()).collect();
    let refused = Call::get(&format!("/api/markets?products={}", many.join(","))).send(&ctx.app).await;
    assert!(refused.assert_invalid_field("products").contains("at most 100"), "{}", refused.text);
}

#[tokio::test]
async fn many_bids_racing_for_one_ask_make_exactly_one_match() {
    let ctx = ctx().await;
    let mut buyers = Vec::new();
    for _ in 0..50 {
        buyers.push(ctx.buyer().await.1);
    }
    let ask = ctx.ask(Uuid::now_v7(), 10.0, 20_000).await;
    let answers = futures::future::join_all(buyers.iter().map(|auth| ctx.bid(auth, 10.0, 250.0))).await;
    let statuses: Vec<&str> = answers.iter().map(|a| a.json["status"].as_str().unwrap_or(&a.text)).collect();
    assert_eq!(statuses.iter().filter(|s| **s == "matched").count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == "open").count(), 49, "{statuses:?}");
    let matches = ctx.matches().await;
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].2, ask.to_string());
}

#[tokio::test]
async fn a_product_page_is_read_once_until_its_book_changes() {
    let ctx = ctx().await;
    let markets = Markets::new(Duration::from_millis(10), Duration::from_secs(60));
    let (app, stop) = ctx.following(&markets);
    let page = async |product: Uuid| {
        let answer = Call::get(&format!("/api/products/{product}/market")).send(&app).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        (answer.headers["x-cache"].to_str().unwrap().to_owned(), size_of(&answer.json, 10.0))
    };
    // Read from PostgreSQL until the feed listens; then one read, kept.
    let (source, first) = wait_until("the change feed to listen", DEADLINE, || async {
        Some(page(ctx.product).await).filter(|(source, _)| source != "bypass")
    })
    .await;
    assert_eq!((source.as_str(), &first["asks"]), ("miss", &json!(0)));
    assert_eq!(page(ctx.product).await, ("hit".into(), first.clone()), "unchanged: from memory");

    // An ask the consumer writes on any instance: the product is read again once the
    // commit's notification arrives.
    ctx.ask(Uuid::now_v7(), 10.0, 20_000).await;
    let (source, changed) = wait_until("the new ask on the page", DEADLINE, || async {
        Some(page(ctx.product).await).filter(|(_, size)| size["asks"] == 1)
    })
    .await;
    assert_eq!((source.as_str(), &changed["lowestAsk"]), ("miss", &json!(200.0)));
    assert_eq!(page(ctx.product).await.0, "hit");

    // Another product's change leaves this product's read alone.
    let other = Uuid::now_v7();
    ctx.new_product(other).await;
    assert_eq!(page(other).await.1["asks"], 0);
    let ask = Uuid::now_v7();
    ctx.deliver(&SneakerEvent::Listed(listing(ask, other, Uuid::now_v7(), 10.0, 15_000, 1)), ask, 1).await;
    wait_until("the other product's ask", DEADLINE, || async { (page(other).await.1["asks"] == 1).then_some(()) })
        .await;
    assert_eq!(page(ctx.product).await, ("hit".into(), changed), "another product changed, not this one");

    // A bid placed here shows at once on this instance's next read, even if its
    // notification comes late (here: never, the feed has stopped).
    let (_, auth) = ctx.buyer().await;
    stop().await;
    let placed = Call::post("/api/bids", json!({"productId": ctx.product, "size": 10.0, "price": 180.0}))
        .header("authorization", &auth)
        .send(&app)
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text);
    let (source, now) = page(ctx.product).await;
    assert_eq!((source.as_str(), &now["highestBid"], &now["bids"]), ("miss", &json!(180.0), &json!(1)));
}

#[tokio::test]
async fn requests_for_a_changed_product_share_one_read() {
    let ctx = ctx().await;
    let markets = Markets::new(Duration::from_millis(10), Duration::from_secs(60));
    let (app, stop) = ctx.following(&markets);
    let page = async |app: Router, product: Uuid| {
        let answer = Call::get(&format!("/api/products/{product}/market")).send(&app).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        (answer.headers["x-cache"].to_str().unwrap().to_owned(), answer.json)
    };
    wait_until("the change feed to listen", DEADLINE, || async {
        (page(app.clone(), ctx.product).await.0 != "bypass").then_some(())
    })
    .await;
    // The product changes; a first request reads it, and waits on a lock that holds its
    // read up; eight more come while it waits (and the product may change again).
    let burst = async |change_meanwhile: bool| {
        markets.changed(ctx.product);
        let mut lock = ctx.pool.begin().await.unwrap();
        sqlx::query("LOCK TABLE products IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
        let first = tokio::spawn(page(app.clone(), ctx.product));
        wait_until("the first read to wait", DEADLINE, || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM products p%'",
            )
            .fetch_one(&ctx.pool)
            .await
            .unwrap();
            (waiting == 1).then_some(())
        })
        .await;
        let rest: Vec<_> = (0..8).map(|_| tokio::spawn(page(app.clone(), ctx.product))).collect();
        wait_until("eight requests queued", DEADLINE, || async { (markets.queued(ctx.product) == 8).then_some(()) })
            .await;
        if change_meanwhile {
            markets.changed(ctx.product);
        }
        lock.rollback().await.unwrap();
        let (source, view) = first.await.unwrap();
        assert_eq!(source, "miss");
        let mut sources = Vec::new();
        for request in rest {
            let (source, answer) = request.await.unwrap();
            assert_eq!(answer, view);
            sources.push(source);
        }
        sources.sort();
        sources
    };
    // Nothing changed since the first read began: it answers all nine.
    assert_eq!(burst(false).await, ["hit"; 8], "nine requests, one read");
    // A change heard while it read: the eight share one more read.
    assert_eq!(burst(true).await, [vec!["hit"; 7], vec!["miss"]].concat(), "nine requests, two reads");
    stop().await;
}

#[tokio::test]
async fn a_product_page_streams_its_market_as_it_changes() {
    let ctx = ctx().await;
    let markets = Markets::new(Duration::from_millis(10), Duration::from_secs(60));
    let (app, stop) = ctx.following(&markets);
    // Two product pages watch the product.
    let open = async || {
        let request = axum::http::Request::get(format!("/api/products/{}/market/stream", ctx.product))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = tower::ServiceExt::oneshot(app.clone(), request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        response.into_body().into_data_stream()
    };
    let next_event = async |body: &mut axum::body::BodyDataStream| -> Value {
        let mut text = String::new();
        loop {
            let chunk = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(body))
                .await
                .expect("an event within 10 s")
                .unwrap()
                .unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            if let Some(data) = text.split("\n\n").find_map(|e| e.lines().find_map(|l| l.strip_prefix("data: "))) {
                return serde_json::from_str(data).unwrap();
            }
        }
    };
    let mut pages = [open().await, open().await];
    for body in &mut pages {
        assert_eq!(size_of(&next_event(body).await, 10.0)["asks"], 0, "the market as it is, at once");
    }
    assert_eq!((markets.open(), markets.readers()), (2, 1), "one reader serves every stream of a product");

    ctx.ask(Uuid::now_v7(), 10.0, 20_000).await;
    for body in &mut pages {
        let changed = next_event(body).await;
        assert_eq!(
            (size_of(&changed, 10.0)["asks"].as_i64(), size_of(&changed, 10.0)["lowestAsk"].as_f64()),
            (Some(1), Some(200.0))
        );
    }

    // Closed streams are forgotten, and so, at the next change, is their product's reader.
    drop(pages);
    ctx.ask(Uuid::now_v7(), 10.0, 21_000).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while markets.open() > 0 || markets.readers() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("closed streams and their reader are forgotten");
    stop().await;
}
