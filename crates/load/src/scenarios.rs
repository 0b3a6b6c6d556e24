//! The scenarios: what one iteration of a simulated user does.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::client::{Api, Reply, User};
use super::stats::Recorder;
use super::{Run, Scenario};

const OK: &[StatusCode] = &[StatusCode::OK];
const CREATED: &[StatusCode] = &[StatusCode::CREATED];
/// How long a purchase may take to become visible before it counts as failed.
const PURCHASE_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates `count` users, a few at a time (signup hashes a password: it is meant to be slow).
pub async fn users(api: &Api, count: usize) -> anyhow::Result<Vec<User>> {
    futures::stream::iter(0..count)
        .map(|i| async move { api.signup(&i.to_string()).await })
        .buffer_unordered(8)
        .try_collect()
        .await
}

/// Lists `count` pairs from `sellers`; returns their ids.
pub async fn seed_listings(api: &Api, sellers: &[User], count: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(count);
    let mut stream = futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let seller = sellers[i % sellers.len()].clone();
            async move {
                let mut rec = Recorder::default();
                let reply = api
                    .call(&mut rec, "seed", Method::POST, "/api/sneakers", Some(&seller), Some(listing(i)), CREATED)
                    .await;
                reply.and_then(|r| r.body["id"].as_str().map(str::to_owned))
            }
        })
        .buffer_unordered(32);
    while let Some(id) = stream.next().await {
        ids.push(id.ok_or_else(|| anyhow::anyhow!("seeding a listing failed"))?);
        if ids.len() % 5000 == 0 {
            eprint!("\r  seeded {} listings", ids.len());
        }
    }
    Ok(ids)
}

/// A plausible listing, varied by `i`.
fn listing(i: usize) -> Value {
    const MODELS: [(&str, &str); 6] = [
        ("Air Jordan 1 Retro High", "Nike"),
        ("Air Max 90", "Nike"),
        ("Samba OG", "Adidas"),
        ("Gel-Lyte III", "Asics"),
        ("990v6", "New Balance"),
        ("Chuck 70", "Converse"),
    ];
    let (model, brand) = MODELS[i % MODELS.len()];
    #[allow(clippy::cast_precision_loss, reason = "small numbers")]
    let (price, size) = (60.0 + (i % 400) as f64 + 0.99, 5.0 + (i % 21) as f64 / 2.0);
    json!({"title": format!("{model} #{i}"), "brand": brand, "price": price, "size": size})
}

/// One iteration of the run's scenario.
pub async fn iteration(run: &Run, rec: &mut Recorder, worker: usize, i: usize) {
    let scenario = match run.scenario {
        Scenario::Mixed => match i % 10 {
            0..=6 => Scenario::Browse,
            7 => Scenario::List,
            _ => Scenario::Purchase,
        },
        other => other,
    };
    match scenario {
        Scenario::Browse => browse(run, rec, i).await,
        Scenario::List => list(run, rec, worker, i).await,
        Scenario::Purchase => purchase(run, rec, i).await,
        Scenario::Drop => drop(run, rec, worker, i).await,
        Scenario::LoginFlood => login_flood(run, rec, worker, i).await,
        Scenario::Mixed => unreachable!("mixed picks one of the others"),
    }
}

/// Every eighth worker is an honest user: signs in with the right password from an address
/// of its own, browses a page, and pauses as a person would. The others flood: wrong
/// passwords for 1,000 accounts (mostly unknown, which costs the server as much) from
/// 65,536 addresses, as a botnet stuffing leaked credentials does. Answers the server
/// means as a defence — 429 (throttled) and 503 (hashing at capacity) — are expected.
async fn login_flood(run: &Run, rec: &mut Recorder, worker: usize, i: usize) {
    use std::net::{IpAddr, Ipv4Addr};
    const HONEST: &[StatusCode] = &[StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE];
    const REFUSED: &[StatusCode] =
        &[StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS, StatusCode::SERVICE_UNAVAILABLE];
    #[allow(clippy::cast_possible_truncation, reason = "wrapped into an address on purpose")]
    let address = |n: usize, net: u8| IpAddr::V4(Ipv4Addr::new(net, 0, (n >> 8) as u8, n as u8));
    if worker.is_multiple_of(8) {
        let user = &run.users[(worker / 8) % run.users.len()];
        let from = address(worker, 192);
        let credentials = (user.email.as_str(), super::client::PASSWORD);
        signin(run, rec, "POST /api/users/signin (honest)", credentials, from, HONEST).await;
        call(run, rec, "GET /api/sneakers (honest)", Method::GET, "/api/sneakers?limit=20", Some(user), None, OK).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    } else {
        let victim = format!("victim-{}@example.com", i % 1000);
        let from = address(i % 65_536, 10);
        signin(run, rec, "POST /api/users/signin (flood)", (&victim, "123456"), from, REFUSED).await;
    }
}

/// A measured sign-in from `from` that also feeds the progress line.
async fn signin(
    run: &Run,
    rec: &mut Recorder,
    endpoint: &'static str,
    credentials: (&str, &str),
    from: std::net::IpAddr,
    expected: &[StatusCode],
) {
    let (_, errors_before) = rec.totals();
    run.api.signin(rec, endpoint, credentials, from, expected).await;
    tally(run, rec, errors_before);
}

/// Counts one request, and the errors it recorded since `errors_before`, for the progress line.
fn tally(run: &Run, rec: &Recorder, errors_before: u64) {
    let (_, errors_after) = rec.totals();
    run.requests.fetch_add(1, Ordering::Relaxed);
    run.errors.fetch_add(errors_after - errors_before, Ordering::Relaxed);
}

/// A measured call that also feeds the progress line.
#[allow(clippy::too_many_arguments, reason = "mirrors Api::call")]
async fn call(
    run: &Run,
    rec: &mut Recorder,
    endpoint: &'static str,
    method: Method,
    path: &str,
    user: Option<&User>,
    body: Option<Value>,
    expected: &[StatusCode],
) -> Option<Reply> {
    let (_, errors_before) = rec.totals();
    let reply = run.api.call(rec, endpoint, method, path, user, body, expected).await;
    tally(run, rec, errors_before);
    reply
}

async fn browse(run: &Run, rec: &mut Recorder, i: usize) {
    let query = match i % 4 {
        0 => "?limit=20",
        1 => "?limit=20&sort=price_asc",
        2 => "?limit=20&q=air",
        _ => "?limit=20&size=10&sort=price_desc",
    };
    let page = call(run, rec, "GET /api/sneakers", Method::GET, &format!("/api/sneakers{query}"), None, None, OK).await;
    let from_page =
        page.as_ref().and_then(|p| p.body["items"].get(i % 20)).and_then(|s| s["id"].as_str()).map(str::to_owned);
    let Some(id) = from_page.or_else(|| run.listings.get(i % run.listings.len().max(1)).cloned()) else { return };
    call(run, rec, "GET /api/sneakers/{id}", Method::GET, &format!("/api/sneakers/{id}"), None, None, OK).await;
}

async fn list(run: &Run, rec: &mut Recorder, worker: usize, i: usize) {
    let seller = &run.users[worker % run.users.len()];
    call(run, rec, "POST /api/sneakers", Method::POST, "/api/sneakers", Some(seller), Some(listing(i)), CREATED).await;
}

async fn purchase(run: &Run, rec: &mut Recorder, i: usize) {
    let seller = &run.users[i % run.users.len()];
    let buyer = &run.users[(i + 1) % run.users.len()];
    let Some(listed) =
        call(run, rec, "POST /api/sneakers", Method::POST, "/api/sneakers", Some(seller), Some(listing(i)), CREATED)
            .await
    else {
        return;
    };
    let Some(sneaker) = listed.body["id"].as_str().map(str::to_owned) else { return };
    let Some(order) = order(run, rec, buyer, &sneaker, CREATED).await else { return };
    pay_and_confirm(run, rec, buyer, &sneaker, &order).await;
}

async fn drop(run: &Run, rec: &mut Recorder, worker: usize, i: usize) {
    let buyer = &run.users[worker % run.users.len()];
    let pairs = &run.drop_pairs;
    for offset in 0..pairs.len() {
        let sneaker = &pairs[(i + offset) % pairs.len()];
        match order(run, rec, buyer, sneaker, &[StatusCode::CREATED, StatusCode::CONFLICT]).await {
            Some(order) => {
                pay_and_confirm(run, rec, buyer, sneaker, &order).await;
                return;
            }
            None => rec.sold_out += 1,
        }
    }
    // Everything is held or sold: come back shortly, as a refreshing buyer would.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// The pause between polls for something an event will bring: 5 ms, doubling up to 40 ms.
/// Quick enough to see a fast hop, without the waiting buyers' polls becoming the load.
#[derive(Debug)]
struct Pause(Duration);

impl Pause {
    fn new() -> Self {
        Self(Duration::from_millis(5))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_millis(40));
    }
}

/// Orders `sneaker`. `None` when the order was refused or failed. The server waits for its
/// replica to hear of a pair listed a moment ago, so a 404 here is an error like any other.
async fn order(run: &Run, rec: &mut Recorder, buyer: &User, sneaker: &str, expected: &[StatusCode]) -> Option<String> {
    let body = json!({"sneakerId": sneaker});
    let reply =
        call(run, rec, "POST /api/orders", Method::POST, "/api/orders", Some(buyer), Some(body), expected).await?;
    (reply.status == StatusCode::CREATED).then(|| reply.body["id"].as_str().map(str::to_owned)).flatten()
}

/// Pays for `order`, then polls until the order is complete and the pair sold, and records
/// the purchase's latency. (A 404 for the order just placed is an error: see [`order`].)
async fn pay_and_confirm(run: &Run, rec: &mut Recorder, buyer: &User, sneaker: &str, order: &str) {
    let body = json!({"orderId": order, "token": "tok_visa"});
    let paid_at = Instant::now();
    let paid = call(
        run,
        rec,
        "POST /api/payments",
        Method::POST,
        "/api/payments",
        Some(buyer),
        Some(body),
        &[StatusCode::CREATED],
    )
    .await;
    if paid.is_none_or(|reply| reply.status != StatusCode::CREATED) {
        return;
    }
    let (order_path, sneaker_path) = (format!("/api/orders/{order}"), format!("/api/sneakers/{sneaker}"));
    let mut complete = false;
    let mut pause = Pause::new();
    while paid_at.elapsed() < PURCHASE_TIMEOUT {
        if !complete {
            let reply = call(run, rec, "GET /api/orders/{id}", Method::GET, &order_path, Some(buyer), None, OK).await;
            complete = reply.is_some_and(|r| r.body["status"] == "complete");
        }
        if complete {
            let reply = call(run, rec, "GET /api/sneakers/{id}", Method::GET, &sneaker_path, None, None, OK).await;
            if reply.is_some_and(|r| r.body["status"] == "sold") {
                rec.purchase(paid_at.elapsed());
                run.purchases.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        pause.wait().await;
    }
    // Never became visible: counted against the purchase flow.
    rec.record("purchase became visible", paid_at.elapsed(), None, true);
    run.errors.fetch_add(1, Ordering::Relaxed);
}
