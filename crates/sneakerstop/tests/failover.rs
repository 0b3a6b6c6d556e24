//! Crash and failover through the real binary, real PostgreSQL and Apache Kafka, with the
//! consumer group settings the project ships (the brokers' 3 s session):
//! - a server holding every consumer group is killed (`kill -9`) mid-load; its successor
//!   takes the groups over within the recovery bound and every effect lands, once;
//! - of two servers sharing the groups, one is killed: the survivor consumes its partitions
//!   within the bound; one is stopped (SIGTERM): its partitions move with a pause under 2 s;
//! - two servers share one database and broker under a purchase load with buyers who never
//!   pay; one is killed and restarted: partitions rebalance, the relay's lock fails over, the
//!   expiry sweepers do not both cancel an order, and every purchase ends exactly once;
//! - a consumer group that cannot progress is named in `/healthz` and the metrics.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sneakerstop_db::sqlx::{self, PgPool};
use sneakerstop_test_support::{
    PAST_SESSION, PositionReader, Server, TestDb, read_to_end, shared_brokers, unique, until_every_partition_moves,
    wait_until,
};

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");
const DEADLINE: Duration = Duration::from_secs(60);
/// What docs/reliability.md promises: a killed server's partitions are consumed again within
/// this of the kill.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);
/// And a stopped (SIGTERM) server's within this of the signal.
const HANDOVER_BOUND: Duration = Duration::from_secs(2);
/// The services, whose consumer groups are `<prefix>-<service>`.
const SERVICES: [&str; 5] = ["identity", "catalog", "orders", "payments", "market"];

/// The settings every server of one test shares: one database, one set of groups.
fn settings(db: &TestDb, prefix: &str, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("DATABASE_URL", db.url()),
        ("JWT_SECRET", "failover-e2e-secret-0123456789-abcdefgh".to_owned()),
        ("KAFKA_GROUP_PREFIX", prefix.to_owned()),
        ("KAFKA_TOPIC_PREFIX", format!("{prefix}.")),
        // One buyer places every order here, many at once.
        ("ORDER_MAX_UNPAID_PER_BUYER", "1000".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env
}

async fn start(env: &[(&'static str, String)]) -> Server {
    Server::start(BIN, &["serve"], env).await
}

/// A client of whichever servers are up.
#[derive(Clone)]
struct Shop {
    http: Client,
}

impl Shop {
    async fn call(
        &self,
        base: &str,
        method: Method,
        path: &str,
        cookie: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{base}{path}")).header("cookie", cookie);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the server answers");
        (response.status(), response.json().await.unwrap_or(Value::Null))
    }

    async fn list(&self, base: &str, seller: &str) -> String {
        let body = json!({"title": "Samba OG", "price": 100, "size": 9});
        let (status, pair) = self.call(base, Method::POST, "/api/sneakers", seller, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{pair}");
        pair["id"].as_str().unwrap().to_owned()
    }

    /// POSTs `body` until the answer is not 404 (the service has not heard of the listing or
    /// order yet: that creates nothing, so asking again is safe).
    async fn post_when_known(&self, base: &str, path: &str, cookie: &str, body: Value) -> (StatusCode, Value) {
        wait_until(&format!("{path} to know {body}"), DEADLINE, || async {
            let (status, answer) = self.call(base, Method::POST, path, cookie, Some(body.clone())).await;
            (status != StatusCode::NOT_FOUND).then_some((status, answer))
        })
        .await
    }

    /// Lists a pair, orders it and (when `pay`) pays; returns (sneaker, order).
    async fn purchase(&self, base: &str, seller: &str, buyer: &str, pay: bool) -> (String, String) {
        let sneaker = self.list(base, seller).await;
        let (status, order) = self.post_when_known(base, "/api/orders", buyer, json!({"sneakerId": sneaker})).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        let order = order["id"].as_str().unwrap().to_owned();
        if pay {
            let body = json!({"orderId": order, "token": "tok_visa"});
            let (status, payment) = self.post_when_known(base, "/api/payments", buyer, body).await;
            assert_eq!(status, StatusCode::CREATED, "{payment}");
        }
        (sneaker, order)
    }
}

/// What the databases say of one purchase.
async fn order_state(pool: &PgPool, order: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, cancel_reason FROM orders.orders WHERE id = $1::uuid")
        .bind(order)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn pair_state(pool: &PgPool, sneaker: &str) -> String {
    sqlx::query_scalar("SELECT status FROM catalog.sneakers WHERE id = $1::uuid")
        .bind(sneaker)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn charges(pool: &PgPool, order: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM payments.payments WHERE order_id = $1::uuid AND status = 'succeeded'")
        .bind(order)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until every paid purchase is complete and sold, and every unpaid one cancelled
/// (by expiry) and available again; then checks each paid order was charged exactly once.
async fn every_purchase_settles(pool: &PgPool, paid: &[(String, String)], unpaid: &[(String, String)]) {
    wait_until("every purchase to settle", DEADLINE, || async {
        for (sneaker, order) in paid {
            if order_state(pool, order).await.0 != "complete" || pair_state(pool, sneaker).await != "sold" {
                return None;
            }
        }
        for (sneaker, order) in unpaid {
            if order_state(pool, order).await.0 != "cancelled" || pair_state(pool, sneaker).await != "available" {
                return None;
            }
        }
        Some(())
    })
    .await;
    for (_, order) in paid {
        assert_eq!(charges(pool, order).await, 1, "order {order} charged exactly once");
    }
    for (_, order) in unpaid {
        assert_eq!(order_state(pool, order).await.1.as_deref(), Some("expired"), "order {order}");
        assert_eq!(charges(pool, order).await, 0, "unpaid order {order} was never charged");
    }
}

async fn pool(db: &TestDb) -> PgPool {
    PgPool::connect(&db.url()).await.unwrap()
}

#[tokio::test]
async fn a_killed_servers_groups_resume_on_its_successor_and_every_effect_lands() {
    let db = TestDb::new().await;
    let env = settings(&db, &unique("failover"), &[]);
    let first = start(&env).await;
    let shop = Shop { http: Client::new() };
    let (seller, buyer) = (first.signup().await, first.signup().await);

    // A load of purchases, all through the first server.
    let before = join_all((0..12).map(|_| shop.purchase(&first.base_url, &seller, &buyer, true))).await;
    // Then a burst of listings whose events are still on their way when the server dies:
    // the consumer groups it holds have lag.
    let pending = join_all((0..12).map(|_| shop.list(&first.base_url, &seller))).await;
    first.kill().await;
    let killed = Instant::now();

    let second = start(&env).await;
    // Orders learns of the listings only once the dead member's partitions are reassigned.
    let probe = json!({"sneakerId": pending[0]});
    let (status, _) = shop.post_when_known(&second.base_url, "/api/orders", &buyer, probe).await;
    assert_eq!(status, StatusCode::CREATED);
    let resumed = killed.elapsed();
    assert!(resumed < RECOVERY_BOUND, "consumption resumed {resumed:?} after the kill, beyond {RECOVERY_BOUND:?}");

    let mut after = Vec::new();
    for sneaker in &pending[1..] {
        let (status, order) =
            shop.post_when_known(&second.base_url, "/api/orders", &buyer, json!({"sneakerId": sneaker})).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        let order = order["id"].as_str().unwrap().to_owned();
        let body = json!({"orderId": order, "token": "tok_visa"});
        let (status, payment) = shop.post_when_known(&second.base_url, "/api/payments", &buyer, body).await;
        assert_eq!(status, StatusCode::CREATED, "{payment}");
        after.push((sneaker.clone(), order));
    }
    let pool = pool(&db).await;
    every_purchase_settles(&pool, &[before, after].concat(), &[]).await;
    assert!(second.terminate().await);
}

/// Both servers hold a partition of `catalog.sneakers` in the orders group (the one the
/// listings' hops are measured on) and some partitions of the catalog group, as the brokers
/// assigned them (read from each server's `/healthz`).
async fn both_hold_partitions(servers: [&Server; 2], groups: &[String]) {
    let (orders, catalog) =
        (groups.iter().find(|g| g.ends_with("-orders")), groups.iter().find(|g| g.ends_with("-catalog")));
    let (orders, catalog) = (orders.unwrap(), catalog.unwrap());
    wait_until("both servers to hold partitions of the busy groups", DEADLINE, || async {
        for server in servers {
            let health: Value = reqwest::get(server.url("/healthz")).await.ok()?.json().await.ok()?;
            let held = |group: &str| {
                health["details"]["consumers"][group]["partitions"].as_array().cloned().unwrap_or_default()
            };
            let listings = held(orders).iter().any(|p| p.as_str().is_some_and(|p| p.starts_with("catalog.sneakers/")));
            if !listings || held(catalog).is_empty() {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// Listings made by [`keep_busy`]: when each was answered 201, and when orders' replica
/// first held it (the orders group applied its `sneaker.listed`).
type Hops = std::sync::Arc<std::sync::Mutex<Vec<(String, Instant, Option<Instant>)>>>;

/// Keeps the marketplace busy through `base` until the guard drops: a listing and its order
/// every 50 ms, so every partition of the busy topics keeps getting events; and watches
/// orders' replica (every 20 ms) for when each listing arrived there.
fn keep_busy(
    shop: &Shop,
    pool: PgPool,
    base: String,
    seller: String,
    buyer: String,
) -> (tokio_util::sync::DropGuard, Hops) {
    let stop = tokio_util::sync::CancellationToken::new();
    let hops = Hops::default();
    let (shop, cancelled, made) = (shop.clone(), stop.clone(), hops.clone());
    tokio::spawn(async move {
        let post = |path: &'static str, cookie: String, body: Value| {
            let request = shop.http.post(format!("{base}{path}")).header("cookie", cookie).json(&body);
            async move { request.send().await.ok()?.json::<Value>().await.ok() }
        };
        while !cancelled.is_cancelled() {
            let body = json!({"title": "Samba OG", "price": 100, "size": 9});
            if let Some(pair) = post("/api/sneakers", seller.clone(), body).await {
                if let Some(id) = pair["id"].as_str() {
                    made.lock().unwrap().push((id.to_owned(), Instant::now(), None));
                }
                post("/api/orders", buyer.clone(), json!({"sneakerId": pair["id"]})).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let (cancelled, seen) = (stop.clone(), hops.clone());
    tokio::spawn(async move {
        while !cancelled.is_cancelled() {
            let waiting: Vec<String> =
                seen.lock().unwrap().iter().filter(|(_, _, at)| at.is_none()).map(|(id, ..)| id.clone()).collect();
            if let Ok(arrived) =
                sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM orders.sneakers WHERE id::text = ANY($1)")
                    .bind(&waiting)
                    .fetch_all(&pool)
                    .await
            {
                let now = Instant::now();
                for (id, _, at) in seen.lock().unwrap().iter_mut() {
                    if at.is_none() && arrived.iter().any(|a| a.to_string() == *id) {
                        *at = Some(now);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (stop.drop_guard(), hops)
}

/// The longest any listing made from `from` to `to` took to reach orders' replica, once the
/// window has closed (a listing was made after `to`) and every listing in it has arrived.
async fn longest_hop(hops: &Hops, from: Instant, to: Instant) -> Duration {
    wait_until("every listing of the window to reach orders", DEADLINE, || async {
        let hops = hops.lock().unwrap();
        if !hops.iter().any(|(_, made, _)| *made > to) {
            return None;
        }
        let window: Vec<_> = hops.iter().filter(|(_, made, _)| *made >= from && *made <= to).collect();
        window
            .iter()
            .map(|(_, made, arrived)| arrived.map(|at| at.saturating_duration_since(*made)))
            .collect::<Option<Vec<_>>>()
            .filter(|hops| !hops.is_empty())
            .map(|hops| hops.into_iter().max().unwrap_or_default())
    })
    .await
}

#[tokio::test]
async fn a_killed_servers_partitions_move_to_the_survivor_in_seconds_and_a_stopped_ones_at_once() {
    let db = TestDb::new().await;
    let prefix = unique("handover");
    let env = settings(&db, &prefix, &[]);
    let groups: Vec<String> = SERVICES.iter().map(|service| format!("{prefix}-{service}")).collect();
    let brokers = shared_brokers();
    let shop = Shop { http: Client::new() };
    let (doomed, survivor) = (start(&env).await, start(&env).await);
    let (seller, buyer) = (survivor.signup().await, survivor.signup().await);
    let (busy, hops) = keep_busy(&shop, pool(&db).await, survivor.base_url.clone(), seller, buyer);
    both_hold_partitions([&doomed, &survivor], &groups).await;

    // kill -9: no goodbye; the brokers give its partitions away when its session lapses.
    // Measured from the broker: until every partition with work has its committed offset
    // moved (which trails consumption by up to the 200 ms commit interval).
    let reader = PositionReader::new(&brokers, &groups, &format!("{prefix}.")).unwrap();
    doomed.kill().await;
    let killed = Instant::now();
    let at_kill = reader.read().await.unwrap();
    let paused = until_every_partition_moves(&reader, killed, &at_kill, PAST_SESSION, DEADLINE).await;
    let paused = paused.unwrap_or_else(|stuck| panic!("{stuck}"));
    println!("kill -9: every partition with work consumed again {paused:.1?} after the kill");
    assert!(paused <= RECOVERY_BOUND, "{paused:?} after the kill, beyond {RECOVERY_BOUND:?}");

    // SIGTERM: the server finishes what it holds, commits and leaves; its partitions move
    // at once. Measured by the listings made meanwhile: the longest any took to reach
    // orders' replica (the orders group's partitions, some of which the stopped server held).
    let successor = start(&env).await;
    both_hold_partitions([&successor, &survivor], &groups).await;
    // The window measured starts half a second before the stop: a second of listings with
    // both servers consuming comes first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let signalled = Instant::now();
    assert!(successor.terminate().await, "a clean shutdown");
    let paused = longest_hop(&hops, signalled - Duration::from_millis(500), signalled + Duration::from_secs(3)).await;
    println!("SIGTERM: the longest a listing took to reach orders around it: {paused:.1?}");
    assert!(paused < HANDOVER_BOUND, "{paused:?} after SIGTERM, beyond {HANDOVER_BOUND:?}");
    drop(busy);
    assert!(survivor.terminate().await);
}

#[tokio::test]
async fn two_servers_one_killed_and_restarted_end_every_purchase_exactly_once() {
    let db = TestDb::new().await;
    let prefix = unique("pair");
    // Short reservations, so the buyers who never pay are swept during the test by
    // whichever server's sweeper gets there first — yet longer than a payment can wait for
    // a dead member's partitions to move (the session timeout).
    let env = settings(&db, &prefix, &[("ORDER_RESERVATION_TTL", "15s"), ("ORDER_SWEEP_INTERVAL", "200ms")]);
    let (a, b) = (start(&env).await, start(&env).await);
    let shop = Shop { http: Client::new() };
    let (seller, buyer) = (a.signup().await, a.signup().await);
    let bases = [a.base_url.clone(), b.base_url.clone()];

    // Round one: purchases through both servers, every third buyer never paying.
    let round = |bases: Vec<String>, count: usize| {
        let (shop, seller, buyer) = (shop.clone(), seller.clone(), buyer.clone());
        async move {
            let runs = (0..count).map(|i| {
                let (shop, seller, buyer, base) =
                    (shop.clone(), seller.clone(), buyer.clone(), bases[i % bases.len()].clone());
                async move { (i % 3 != 0, shop.purchase(&base, &seller, &buyer, i % 3 != 0).await) }
            });
            join_all(runs).await
        }
    };
    let mut outcomes = round(bases.to_vec(), 18).await;

    // Kill one server while the other goes on serving a second round.
    let during = tokio::spawn(round(vec![b.base_url.clone()], 18));
    a.kill().await;
    outcomes.extend(during.await.unwrap());

    // Restart it; a third round uses both again.
    let a = start(&env).await;
    outcomes.extend(round(vec![a.base_url.clone(), b.base_url.clone()], 18).await);

    let (paid, unpaid): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(|(paid, _)| *paid);
    let paid: Vec<_> = paid.into_iter().map(|(_, p)| p).collect();
    let unpaid: Vec<_> = unpaid.into_iter().map(|(_, p)| p).collect();
    let pool = pool(&db).await;
    every_purchase_settles(&pool, &paid, &unpaid).await;

    // At the broker: every order's life is told once — one order.created each, one
    // order.completed per paid order, one order.cancelled per unpaid one (the sweepers of
    // two servers never both cancelled an order). Catalog has applied every one of these
    // (the pairs settled), so they are all at the broker by now. Events are counted by
    // `ce_id`: a relay killed between the broker's acknowledgement and marking its rows sent
    // publishes those rows again from the next relay (at-least-once publication, which
    // consumers' inboxes absorb), so the same event may be there twice; a second *event*
    // would be a second decision.
    let ours: HashMap<&str, bool> = paid
        .iter()
        .map(|(_, order)| (order.as_str(), true))
        .chain(unpaid.iter().map(|(_, order)| (order.as_str(), false)))
        .collect();
    let mut seen: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for record in read_to_end(&shared_brokers(), &format!("{prefix}.orders.orders"), DEADLINE).await {
        let (Some(kind), Some(id), Some(order)) =
            (record.header("ce_type"), record.header("ce_id"), record.json["orderId"].as_str())
        else {
            continue;
        };
        if ours.contains_key(order) {
            seen.entry((order.to_owned(), kind.to_owned())).or_default().insert(id.to_owned());
        }
    }
    for (order, paid) in &ours {
        let count = |kind: &str| seen.get(&((*order).to_owned(), kind.to_owned())).map_or(0, HashSet::len);
        assert_eq!(count("order.created"), 1, "order {order} created once");
        let (end, other) =
            if *paid { ("order.completed", "order.cancelled") } else { ("order.cancelled", "order.completed") };
        assert_eq!(count(end), 1, "order {order}: one {end}");
        assert_eq!(count(other), 0, "order {order}: no {other}");
    }
    assert!(a.terminate().await);
    assert!(b.terminate().await);
}

#[tokio::test]
async fn a_stalled_consumer_group_is_named_in_healthz_and_the_metrics() {
    let db = TestDb::new().await;
    let prefix = unique("stall");
    let env = settings(&db, &prefix, &[("CONSUMER_STALL_AFTER", "2s")]);
    let server = start(&env).await;
    let shop = Shop { http: Client::new() };
    let (seller, buyer) = (server.signup().await, server.signup().await);
    let sneaker = shop.list(&server.base_url, &seller).await;
    let catalog_group = format!("{prefix}-catalog");

    // Catalog reserves the pair when it hears of the order; hold its table so it cannot.
    let pool = pool(&db).await;
    let mut hold = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE catalog.sneakers IN SHARE MODE").execute(&mut *hold).await.unwrap();
    let (status, _) =
        shop.post_when_known(&server.base_url, "/api/orders", &buyer, json!({"sneakerId": sneaker})).await;
    assert_eq!(status, StatusCode::CREATED);

    let health = wait_until("healthz to name the stalled group", DEADLINE, || async {
        let (_, health) = shop.call(&server.base_url, Method::GET, "/healthz", "", None).await;
        (health["status"] == "degraded").then_some(health)
    })
    .await;
    let problems = health["problems"].to_string();
    assert!(problems.contains(&catalog_group), "{health}");
    assert_eq!(health["details"]["consumers"][&catalog_group]["stalled"], true, "{health}");
    assert!(health["details"]["consumers"][&catalog_group]["lag"].as_i64().unwrap() >= 1, "{health}");
    let metrics = shop.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let stalled = metrics
        .lines()
        .find(|l| l.starts_with("consumer_stalled_seconds{") && l.contains(&format!("group=\"{catalog_group}\"")))
        .unwrap_or_else(|| panic!("no stall gauge for {catalog_group}: {metrics}"));
    let seconds: f64 = stalled.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(seconds >= 2.0, "{stalled}");
    assert!(
        metrics.lines().any(|l| l.starts_with("consumer_assigned_partitions{") && l.contains(&catalog_group)),
        "{metrics}"
    );

    // Let go: the group catches up and the process is healthy again.
    hold.rollback().await.unwrap();
    wait_until("the pair to be reserved", DEADLINE, || async {
        (pair_state(&pool, &sneaker).await == "reserved").then_some(())
    })
    .await;
    wait_until("healthz to be ok again", DEADLINE, || async {
        let (_, health) = shop.call(&server.base_url, Method::GET, "/healthz", "", None).await;
        (health["status"] == "ok").then_some(())
    })
    .await;
    assert!(server.terminate().await);
}
