//! The market end to end through the real binary, real PostgreSQL and the real broker: an
//! admin made by `sneakerstop admin grant` creates a product; a bid met by a later ask
//! becomes a completed purchase charged to the saved card; a declined saved card puts the
//! pair back on the market and tells the bidder; 500 bids and a buy-now racing for one ask
//! make one sale and one charge.
//!
//! Each test runs its marketplace under topics of its own (`KAFKA_TOPIC_PREFIX`) on `make
//! test`'s broker: a match is a command carried by an event (orders places the bidder's
//! order when it hears `match.made`), so two marketplaces sharing topics would place orders
//! for each other's matches. This is what the prefix is for in production too: deployments
//! sharing a cluster.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sneakerstop_auth::SessionKeys;
use sneakerstop_settings::Secret;
use sneakerstop_test_support::{Server, TestDb, unique, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");
const SECRET: &str = "market-e2e-secret-0123456789-abcdef";
const DEADLINE: Duration = Duration::from_secs(60);

struct Market {
    http: Client,
    server: Server,
    db: TestDb,
    env: Vec<(&'static str, String)>,
}

impl Market {
    async fn start() -> Self {
        let db = TestDb::new().await;
        let env = vec![
            ("DATABASE_URL", db.url()),
            ("JWT_SECRET", SECRET.to_owned()),
            ("KAFKA_TOPIC_PREFIX", format!("{}.", unique("market"))),
            ("KAFKA_GROUP_PREFIX", unique("market")),
        ];
        let server = Server::start(BIN, &["serve"], &env).await;
        Self { http: Client::builder().pool_max_idle_per_host(64).build().unwrap(), server, db, env }
    }

    /// Another instance of the same deployment: the same database, topics and groups.
    async fn another(&self) -> Server {
        Server::start(BIN, &["serve"], &self.env).await
    }

    async fn call(&self, method: Method, path: &str, auth: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.server.url(path));
        if !auth.is_empty() {
            request = request.header(if auth.starts_with("Bearer ") { "authorization" } else { "cookie" }, auth);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    /// A request to the server at `base`, with an Idempotency-Key if given; `None` if it
    /// did not answer (killed).
    async fn call_at(
        &self,
        base: &str,
        method: Method,
        path: &str,
        auth: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Option<(StatusCode, Value)> {
        let mut request = self.http.request(method, format!("{base}{path}")).header("authorization", auth);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.ok()?;
        Some((response.status(), response.json().await.unwrap_or(Value::Null)))
    }

    /// The owner (its address) of each shard of the books with a live lease.
    async fn owners(&self) -> HashMap<i16, String> {
        let pool = sneakerstop_db::sqlx::PgPool::connect(&self.db.url()).await.unwrap();
        let rows: Vec<(i16, String)> = sneakerstop_db::sqlx::query_as(
            "SELECT shard, address FROM market.book_shards WHERE owner IS NOT NULL AND lease_until > now()",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows.into_iter().collect()
    }

    /// Waits until the servers at `bases` each own their share of the 16 shards.
    async fn shared_by(&self, bases: &[&str]) -> HashMap<i16, String> {
        wait_until("the instances to share the books", DEADLINE, || async {
            let owners = self.owners().await;
            let shared = owners.len() == 16
                && bases.iter().all(|base| owners.values().filter(|owner| owner == base).count() == 16 / bases.len());
            shared.then_some(owners)
        })
        .await
    }

    /// A product whose books the instance at `base` owns (products are made until one is).
    async fn product_owned_by(&self, admin: &str, owners: &HashMap<i16, String>, base: &str) -> String {
        for _ in 0..64 {
            let product = self.product(admin).await;
            let shard = uuid::Uuid::parse_str(&product).unwrap().as_bytes()[15] % 16;
            if owners.get(&i16::from(shard)).map(String::as_str) == Some(base) {
                return product;
            }
        }
        panic!("no product of 64 fell in a shard {base} owns");
    }

    /// Signs up with a known email and password; returns the email.
    async fn signup(&self) -> String {
        let email = format!("{}@example.com", unique("admin"));
        let body = json!({"email": email, "password": "password!"});
        let (status, _) = self.call(Method::POST, "/api/users/signup", "", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED);
        email
    }

    /// An admin: signed up, granted the role by the CLI, signed in again.
    async fn admin(&self) -> String {
        let email = self.signup().await;
        let granted = tokio::process::Command::new(BIN)
            .args(["admin", "grant", &email])
            .env("DATABASE_URL", self.db.url())
            .output()
            .await
            .unwrap();
        assert!(granted.status.success(), "{}", String::from_utf8_lossy(&granted.stderr));
        assert!(String::from_utf8_lossy(&granted.stdout).contains("is now admin"));
        let response = self
            .http
            .post(self.server.url("/api/users/signin"))
            .json(&json!({"email": email, "password": "password!"}))
            .send()
            .await
            .unwrap();
        let cookie = response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        assert_eq!(response.json::<Value>().await.unwrap()["role"], "admin");
        cookie
    }

    async fn product(&self, admin: &str) -> String {
        let body = json!({"styleCode": unique("DZ").to_uppercase().chars().take(20).collect::<String>(),
                          "name": "Air Jordan 1 Retro High OG", "brand": "Jordan", "sizes": [10, 10.5]});
        let (status, product) = self.call(Method::POST, "/api/products", admin, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{product}");
        product["id"].as_str().unwrap().to_owned()
    }

    async fn save_card(&self, buyer: &str, method: &str) {
        let body = json!({"paymentMethod": method});
        let (status, saved) = self.call(Method::POST, "/api/payment-methods", buyer, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{saved}");
    }

    /// Places a bid once the market has heard of the product and the buyer's card.
    async fn bid(&self, buyer: &str, product: &str, size: f64, price: f64) -> Value {
        let body = json!({"productId": product, "size": size, "price": price});
        wait_until("the market to take the bid", DEADLINE, || async {
            let (status, bid) = self.call(Method::POST, "/api/bids", buyer, Some(body.clone())).await;
            (status == StatusCode::CREATED).then_some(bid)
        })
        .await
    }

    async fn ask(&self, seller: &str, product: &str, size: f64, price: f64) -> String {
        let body = json!({"title": "AJ1 Lost and Found", "price": price, "size": size, "productId": product});
        let (status, ask) = self.call(Method::POST, "/api/sneakers", seller, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{ask}");
        ask["id"].as_str().unwrap().to_owned()
    }

    async fn until_bid(&self, buyer: &str, bid: &str, status: &str) -> Value {
        wait_until(&format!("the bid to be {status}"), DEADLINE, || async {
            let (_, bid) = self.call(Method::GET, &format!("/api/bids/{bid}"), buyer, None).await;
            (bid["status"] == status).then_some(bid)
        })
        .await
    }

    async fn until_pair(&self, sneaker: &str, status: &str) {
        wait_until(&format!("the pair to be {status}"), DEADLINE, || async {
            let (_, pair) = self.call(Method::GET, &format!("/api/sneakers/{sneaker}"), "", None).await;
            (pair["status"] == status).then_some(())
        })
        .await;
    }

    async fn size_market(&self, product: &str, size: f64) -> Value {
        let (status, market) = self.call(Method::GET, &format!("/api/products/{product}/market"), "", None).await;
        assert_eq!(status, StatusCode::OK, "{market}");
        market["sizes"].as_array().unwrap().iter().find(|s| s["size"] == size).unwrap().clone()
    }

    /// Waits until every consequence of the matches has settled: no bid matched any more,
    /// no payment pending.
    async fn settled(&self) {
        wait_until("the matches to settle", DEADLINE, || async {
            let busy = self
                .count(
                    "SELECT (SELECT count(*) FROM market.bids WHERE status = 'matched')
                          + (SELECT count(*) FROM payments.payments WHERE status = 'pending')",
                )
                .await;
            (busy == 0).then_some(())
        })
        .await;
    }

    async fn count(&self, sql: &str) -> i64 {
        let pool = sneakerstop_db::sqlx::PgPool::connect(&self.db.url()).await.unwrap();
        let count = sneakerstop_db::sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        count
    }
}

#[tokio::test]
async fn a_bid_met_by_a_later_ask_becomes_a_completed_purchase_charged_to_the_saved_card() {
    let market = Market::start().await;
    let admin = market.admin().await;
    let product = market.product(&admin).await;
    let (buyer, seller) = (market.server.signup().await, market.server.signup().await);
    market.save_card(&buyer, "pm_card_visa").await;

    let bid = market.bid(&buyer, &product, 10.5, 240.0).await;
    assert_eq!(bid["status"], "open", "{bid}");
    let bid_id = bid["id"].as_str().unwrap().to_owned();
    let sneaker = market.ask(&seller, &product, 10.5, 230.0).await;

    // The ask meets the resting bid: a sale at the bid's price, paid with the saved card.
    let filled = market.until_bid(&buyer, &bid_id, "filled").await;
    let order_id = filled["matchId"].as_str().unwrap().to_owned();
    let (_, order) = market.call(Method::GET, &format!("/api/orders/{order_id}"), &buyer, None).await;
    assert_eq!((order["status"].as_str(), order["price"].as_f64()), (Some("complete"), Some(240.0)), "{order}");
    let (_, payments) = market.call(Method::GET, "/api/payments", &buyer, None).await;
    let paid = &payments["items"][0];
    assert_eq!((paid["orderId"].as_str(), paid["amount"].as_f64()), (Some(order_id.as_str()), Some(240.0)));
    market.until_pair(&sneaker, "sold").await;
    let size = wait_until("the sale on the product page", DEADLINE, || async {
        let size = market.size_market(&product, 10.5).await;
        (!size["lastSale"].is_null()).then_some(size)
    })
    .await;
    assert_eq!(
        (size["lastSale"]["price"].as_f64(), size["asks"].as_i64(), size["bids"].as_i64()),
        (Some(240.0), Some(0), Some(0))
    );
    let (_, sales) = market.call(Method::GET, &format!("/api/products/{product}/sales?size=10.5"), "", None).await;
    assert_eq!(sales["items"].as_array().unwrap().len(), 1, "{sales}");

    // The writer says how many batches it did and how long each took, every batch in both.
    let batches = market.server.metric_sum("market_book_batch_size_count").await.unwrap_or(0.0);
    let timed = market.server.metric_sum("market_book_batch_seconds_count").await.unwrap_or(0.0);
    assert!(batches >= 1.0 && timed == batches, "{batches} batches, {timed} timed");
    let took = market.server.metric_sum("market_book_batch_seconds_sum").await.unwrap_or(0.0);
    assert!(took > 0.0, "batches that took no time: {took}");
}

#[tokio::test]
async fn a_product_just_created_has_a_market_and_a_stream_at_once() {
    let market = Market::start().await;
    let admin = market.admin().await;
    for _ in 0..5 {
        // Asked the moment it is created, before the market has applied `product.created`:
        // the answer waits for it (REPLICA_WAIT), as a bid does, instead of a 404.
        let product = market.product(&admin).await;
        let (status, view) = market.call(Method::GET, &format!("/api/products/{product}/market"), "", None).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        assert_eq!(view["sizes"].as_array().map(Vec::len), Some(2), "{view}");
        let product = market.product(&admin).await;
        let stream = market.http.get(market.server.url(&format!("/api/products/{product}/market/stream"))).send().await;
        assert_eq!(stream.unwrap().status(), StatusCode::OK);
    }
    let (status, _) =
        market.call(Method::GET, &format!("/api/products/{}/market", uuid::Uuid::now_v7()), "", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unknown product is still unknown, after the wait");
}

#[tokio::test]
async fn a_declined_saved_card_puts_the_pair_back_on_the_market_and_tells_the_bidder() {
    let market = Market::start().await;
    let admin = market.admin().await;
    let product = market.product(&admin).await;
    let (declining, seller, other) =
        (market.server.signup().await, market.server.signup().await, market.server.signup().await);
    market.save_card(&declining, "pm_card_chargeDeclined").await;
    let sneaker = market.ask(&seller, &product, 10.0, 190.0).await;

    let bid = market.bid(&declining, &product, 10.0, 200.0).await;
    let bid_id = bid["id"].as_str().unwrap().to_owned();
    let declined = market.until_bid(&declining, &bid_id, "declined").await;
    assert!(declined["matchId"].is_null(), "{declined}");
    let (_, orders) = market.call(Method::GET, "/api/orders", &declining, None).await;
    assert_eq!(
        (orders["items"][0]["status"].as_str(), orders["items"][0]["cancelReason"].as_str()),
        (Some("cancelled"), Some("declined"))
    );
    market.until_pair(&sneaker, "available").await;
    wait_until("the ask back on the book", DEADLINE, || async {
        (market.size_market(&product, 10.0).await["lowestAsk"] == 190.0).then_some(())
    })
    .await;
    assert_eq!(market.count("SELECT count(*) FROM payments.payments WHERE status = 'succeeded'").await, 0);

    // Another buyer's good card then buys the same pair from the book.
    market.save_card(&other, "pm_card_visa").await;
    let bought = market.bid(&other, &product, 10.0, 195.0).await;
    assert_eq!(bought["status"], "matched", "{bought}");
    market.until_bid(&other, bought["id"].as_str().unwrap(), "filled").await;
    market.until_pair(&sneaker, "sold").await;
}

#[tokio::test]
async fn five_hundred_bids_and_a_buy_now_racing_for_one_ask_make_one_sale_and_one_charge() {
    let market = Market::start().await;
    let admin = market.admin().await;
    let product = market.product(&admin).await;
    let seller = market.server.signup().await;
    let buy_now_buyer = market.server.signup().await;
    // Bidders signed with the server's key, as signed-in users are (no password hashing).
    let keys = SessionKeys::new(&Secret::new(SECRET), Duration::from_secs(3600), false);
    let bidders: Vec<String> = (0..500).map(|_| sneakerstop_test_support::signed_in(&keys).1).collect();
    for chunk in bidders.chunks(50) {
        futures::future::join_all(chunk.iter().map(|b| market.save_card(b, "pm_card_visa"))).await;
    }
    // Every card has reached the market before the race (a bid waits for its buyer's).
    wait_until("the market to know every card", DEADLINE, || async {
        (market.count("SELECT count(*) FROM market.payment_methods").await == 500).then_some(())
    })
    .await;
    market.bid(&bidders[0], &product, 10.0, 100.0).await; // the market knows the product

    let sneaker = market.ask(&seller, &product, 10.0, 300.0).await;
    // Both sides of the race know the pair: orders (buy-now) and the market (bids).
    let known = format!(
        "SELECT (SELECT count(*) FROM orders.sneakers WHERE id = '{sneaker}') + (SELECT count(*) FROM market.asks WHERE id = '{sneaker}')"
    );
    wait_until("orders and the market to know the pair", DEADLINE, || async {
        (market.count(&known).await == 2).then_some(())
    })
    .await;
    let race = bidders[1..].iter().map(|bidder| {
        market.call(
            Method::POST,
            "/api/bids",
            bidder,
            Some(json!({"productId": product, "size": 10.0, "price": 300.0})),
        )
    });
    let buy_now = async {
        let (status, order) =
            market.call(Method::POST, "/api/orders", &buy_now_buyer, Some(json!({"sneakerId": sneaker}))).await;
        if status != StatusCode::CREATED {
            return None;
        }
        let order = order["id"].as_str().unwrap().to_owned();
        let (status, _) = market
            .call(Method::POST, "/api/payments", &buy_now_buyer, Some(json!({"orderId": order, "token": "tok_visa"})))
            .await;
        Some((order, status))
    };
    let (answers, bought) = tokio::join!(futures::future::join_all(race), buy_now);
    let placed = answers.iter().filter(|(status, _)| *status == StatusCode::CREATED).count();
    assert_eq!(placed, 499, "every bid is taken: {:?}", answers.iter().find(|(s, _)| *s != StatusCode::CREATED));

    market.until_pair(&sneaker, "sold").await;
    market.settled().await;
    let sales = market.count("SELECT count(*) FROM orders.orders WHERE status = 'complete'").await;
    let charges = market
        .count("SELECT count(*) FROM payments.payments WHERE status IN ('succeeded', 'refund_pending', 'refunded')")
        .await;
    let filled = market.count("SELECT count(*) FROM market.bids WHERE status = 'filled'").await;
    assert_eq!((sales, charges), (1, 1), "one sale, one charge");
    match bought {
        Some((_, StatusCode::CREATED)) => assert_eq!(filled, 0, "the buy-now won: no bid filled"),
        _ => assert_eq!(filled, 1, "a bid won"),
    }
    let open = market.count("SELECT count(*) FROM market.bids WHERE status = 'open'").await;
    assert_eq!(open, 500 - filled, "every other bid is back on (or still on) the book");
}

#[tokio::test]
async fn two_instances_each_own_half_the_books_and_answer_for_each_others() {
    let market = Market::start().await;
    let second = market.another().await;
    let (first_base, second_base) = (market.server.base_url.clone(), second.base_url.clone());
    let owners = market.shared_by(&[&first_base, &second_base]).await;
    let admin = market.admin().await;
    let keys = SessionKeys::new(&Secret::new(SECRET), Duration::from_secs(3600), false);
    let (_, buyer) = sneakerstop_test_support::signed_in(&keys);
    market.save_card(&buyer, "pm_card_visa").await;
    let seller = market.server.signup().await;

    for (owner, other) in [(&first_base, &second_base), (&second_base, &first_base)] {
        let product = market.product_owned_by(&admin, &owners, owner).await;
        market.bid(&buyer, &product, 10.0, 100.0).await; // the market knows product and card
        // Placed and cancelled through the instance that does not own the book.
        let body = json!({"productId": product, "size": 10.0, "price": 240.0});
        let (status, bid) =
            market.call_at(other, Method::POST, "/api/bids", &buyer, Some(&unique("key")), Some(body)).await.unwrap();
        assert_eq!((status, bid["status"].as_str()), (StatusCode::CREATED, Some("open")), "{bid}");
        let path = format!("/api/bids/{}", bid["id"].as_str().unwrap());
        let (status, cancelled) = market.call_at(other, Method::DELETE, &path, &buyer, None, None).await.unwrap();
        assert_eq!((status, cancelled["status"].as_str()), (StatusCode::OK, Some("cancelled")), "{cancelled}");
        // And traded there: the owner's book has the bid placed through the other.
        let body = json!({"productId": product, "size": 10.5, "price": 250.0});
        let (_, bid) = market.call_at(other, Method::POST, "/api/bids", &buyer, None, Some(body)).await.unwrap();
        market.ask(&seller, &product, 10.5, 245.0).await;
        market.until_bid(&buyer, bid["id"].as_str().unwrap(), "filled").await;
    }
    for server in [&market.server, &second] {
        let forwarded = server.metric_sum("market_requests_forwarded_total").await.unwrap_or(0.0);
        assert!(forwarded >= 3.0, "{} sent {forwarded} requests on", server.base_url);
    }
}

#[tokio::test]
async fn the_owner_of_books_killed_while_bids_stream_in_is_succeeded_within_seconds_and_nothing_is_lost() {
    const BUYERS: usize = 60;
    const STREAMS: usize = 4;
    const BIDS_PER_STREAM: usize = 80;
    let market = Market::start().await;
    let doomed = market.another().await;
    let (survivor, doomed_base) = (market.server.base_url.clone(), doomed.base_url.clone());
    let owners = market.shared_by(&[&survivor, &doomed_base]).await;
    let admin = market.admin().await;
    let product = market.product_owned_by(&admin, &owners, &doomed_base).await;
    let keys = SessionKeys::new(&Secret::new(SECRET), Duration::from_secs(3600), false);
    let buyers: Vec<String> = (0..BUYERS).map(|_| sneakerstop_test_support::signed_in(&keys).1).collect();
    for chunk in buyers.chunks(20) {
        futures::future::join_all(chunk.iter().map(|b| market.save_card(b, "pm_card_visa"))).await;
    }
    wait_until("the market to know every card", DEADLINE, || async {
        (market.count("SELECT count(*) FROM market.payment_methods").await == BUYERS as i64).then_some(())
    })
    .await;
    let seller = market.server.signup().await;
    for n in 0..8 {
        market.ask(&seller, &product, 10.0, 190.0 + f64::from(n)).await;
    }

    // Streams of bids through both instances, each with its key; one that gets no answer
    // (the instance died, or the book is between owners: 503) is sent again with the same
    // key to the survivor until it is answered.
    let done = std::sync::atomic::AtomicUsize::new(0);
    let stream = |stream: usize| {
        let (market, product, buyers, done) = (&market, &product, &buyers, &done);
        let (survivor, doomed_base) = (&survivor, &doomed_base);
        async move {
            let mut answered = Vec::new();
            for n in 0..BIDS_PER_STREAM {
                let key = unique("bid");
                let buyer = &buyers[(stream * BIDS_PER_STREAM + n) % BUYERS];
                #[allow(clippy::cast_precision_loss, reason = "small")]
                let price = 150.0 + ((stream * 7 + n * 13) % 50) as f64;
                let body = json!({"productId": product, "size": 10.0, "price": price});
                let mut base = if n % 2 == 0 { survivor } else { doomed_base };
                let bid = wait_until("the bid to be answered", DEADLINE, || {
                    let (body, key, this) = (body.clone(), key.clone(), base.clone());
                    base = survivor;
                    async move {
                        match market.call_at(&this, Method::POST, "/api/bids", buyer, Some(&key), Some(body)).await {
                            Some((StatusCode::CREATED, bid)) => Some(Some(bid)),
                            Some((StatusCode::CONFLICT, refused)) => {
                                assert!(refused["type"].as_str().unwrap().ends_with("/own-ask"), "{refused}");
                                Some(None)
                            }
                            Some((StatusCode::SERVICE_UNAVAILABLE, _)) | None => None,
                            Some((status, other)) => panic!("{status}: {other}"),
                        }
                    }
                })
                .await;
                if let Some(bid) = bid {
                    answered.push((key, bid["id"].as_str().unwrap().to_owned()));
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            answered
        }
    };
    let kill = async {
        // A third of the way through the streams.
        let third = || async {
            (done.load(std::sync::atomic::Ordering::SeqCst) >= STREAMS * BIDS_PER_STREAM / 3).then_some(())
        };
        wait_until("a third of the bids", DEADLINE, third).await;
        let killed = Instant::now();
        doomed.kill().await;
        let at_kill = done.load(std::sync::atomic::Ordering::SeqCst);
        wait_until("the survivor to own every book", DEADLINE, || async {
            market.owners().await.values().all(|owner| *owner == survivor).then_some(())
        })
        .await;
        let took = killed.elapsed();
        eprintln!("the survivor owned every book {took:?} after the kill");
        (took, at_kill)
    };
    let (answered, (took, at_kill)) = tokio::join!(futures::future::join_all((0..STREAMS).map(stream)), kill);
    assert!(took < Duration::from_secs(10), "the books had no owner for {took:?}");
    assert!(at_kill < STREAMS * BIDS_PER_STREAM, "the owner was killed while bids streamed in");
    let answered: Vec<(String, String)> = answered.into_iter().flatten().collect();

    // Every answered bid is there, once; no key made two bids.
    let ids: HashSet<&str> = answered.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), answered.len(), "two keys were answered with one bid");
    let placed = market
        .count(&format!("SELECT count(*) FROM market.bids WHERE product_id = '{product}' AND price_cents >= 15000"))
        .await;
    assert_eq!(placed, answered.len() as i64, "every bid answered 201 is stored, and nothing else");
    // Everything settles: each pair sold once, one order and one charge per match.
    market.settled().await;
    let matches = market.count("SELECT count(*) FROM market.matches WHERE status = 'filled'").await;
    assert_eq!(matches, 8, "every ask was bought (bids at 190 and more came)");
    let doubled = market
        .count(
            "SELECT count(*) FROM (SELECT ask_id FROM market.matches WHERE status = 'filled'
                                   GROUP BY ask_id HAVING count(*) > 1) twice",
        )
        .await;
    assert_eq!(doubled, 0, "no pair sold twice");
    let charges = market
        .count("SELECT count(*) FROM payments.payments WHERE status IN ('succeeded', 'refund_pending', 'refunded')")
        .await;
    assert_eq!(charges, 8, "one charge per match");
    let filled = market.count("SELECT count(*) FROM market.bids WHERE status = 'filled'").await;
    assert_eq!(filled, 8);
    // The survivor's book is the stored one: not crossed, every open bid on it.
    let size = market.size_market(&product, 10.0).await;
    let open = market
        .count(&format!("SELECT count(*) FROM market.bids WHERE product_id = '{product}' AND status = 'open'"))
        .await;
    assert_eq!(size["bids"].as_i64(), Some(open));
    assert!(size["lowestAsk"].is_null(), "{size}");
}
