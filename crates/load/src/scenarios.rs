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
        Scenario::Market => market(run, rec, worker, i).await,
        Scenario::Storefront => product_page(run, rec, i).await,
        Scenario::Mixed => unreachable!("mixed picks one of the others"),
    }
}

/// Every eighth worker is an honest user: signs in with the right password from an address
/// of its own, browses a page, and pauses as a person would — half of them from the browser
/// they signed up on (sending its `device` cookie: a known device), half from a new one. The
/// others flood: wrong passwords for 1,000 accounts (mostly unknown, which costs the server
/// as much) from 65,536 addresses, as a botnet stuffing leaked credentials does. Answers the
/// server means as a defence — 429 (throttled) and 503 (hashing at capacity) — are expected.
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
        if worker.is_multiple_of(16) {
            let from = (from, user.device.as_deref());
            signin(run, rec, "POST /api/users/signin (honest, known device)", credentials, from, HONEST).await;
        } else {
            signin(run, rec, "POST /api/users/signin (honest, new device)", credentials, (from, None), HONEST).await;
        }
        call(run, rec, "GET /api/sneakers (honest)", Method::GET, "/api/sneakers?limit=20", Some(user), None, OK).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    } else {
        let victim = format!("victim-{}@example.com", i % 1000);
        let from = address(i % 65_536, 10);
        signin(run, rec, "POST /api/users/signin (flood)", (&victim, "123456"), (from, None), REFUSED).await;
    }
}

/// A measured sign-in from `from` that also feeds the progress line.
async fn signin(
    run: &Run,
    rec: &mut Recorder,
    endpoint: &'static str,
    credentials: (&str, &str),
    from: (std::net::IpAddr, Option<&str>),
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

/// The sizes every market product is made in (each is a book).
const MARKET_SIZES: [f64; 3] = [9.0, 10.0, 11.0];

/// The market's set-up (not timed): `count` products created by `admin`, and a saved card for
/// every user.
pub async fn seed_market(api: &Api, admin: &User, users: &[User], count: usize) -> anyhow::Result<Vec<String>> {
    let mut rec = Recorder::default();
    let mut products = Vec::with_capacity(count);
    for i in 0..count {
        let style = format!("LD{:04}-{}", i, &uuid::Uuid::new_v4().simple().to_string()[..6]).to_uppercase();
        let body = json!({"styleCode": style, "name": format!("Release Day {i}"), "brand": "Jordan",
                          "sizes": MARKET_SIZES});
        let reply = api.call(&mut rec, "seed", Method::POST, "/api/products", Some(admin), Some(body), CREATED).await;
        let id = reply.and_then(|r| r.body["id"].as_str().map(str::to_owned));
        products.push(id.ok_or_else(|| anyhow::anyhow!("creating a product failed (is the admin an admin?)"))?);
    }
    let saved = futures::stream::iter(users)
        .map(|user| {
            let api = api.clone();
            async move {
                let mut rec = Recorder::default();
                let body = json!({"paymentMethod": "pm_card_visa"});
                api.call(&mut rec, "seed", Method::POST, "/api/payment-methods", Some(user), Some(body), CREATED).await
            }
        })
        .buffer_unordered(16)
        .filter(|reply| std::future::ready(reply.as_ref().is_some_and(|r| r.status == StatusCode::CREATED)))
        .count()
        .await;
    anyhow::ensure!(saved == users.len(), "saving cards failed for {} users", users.len() - saved);
    // The market hears of a product through an event: wait until it has, for each one (its
    // market answers), so the run and the streams do not start before it.
    let deadline = Instant::now() + Duration::from_secs(30);
    for product in &products {
        let path = format!("/api/products/{product}/market");
        while api
            .call(&mut rec, "seed", Method::GET, &path, None, None, OK)
            .await
            .is_none_or(|r| r.status != StatusCode::OK)
        {
            anyhow::ensure!(Instant::now() < deadline, "the market did not hear of product {product} in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(products)
}

/// One market iteration: the first half of the users bid, the second half ask. Bids are
/// 180–220, asks 200–240, so books cross often; one iteration in five places a bid at 100
/// and cancels it.
async fn market(run: &Run, rec: &mut Recorder, worker: usize, i: usize) {
    let half = (run.users.len() / 2).max(1);
    let buyer = &run.users[worker % half];
    let seller = &run.users[half + worker % (run.users.len() - half).max(1)];
    let product = &run.products[i % run.products.len()];
    let size = MARKET_SIZES[(i / run.products.len()) % MARKET_SIZES.len()];
    let bid = |price: usize| json!({"productId": product, "size": size, "price": price});
    match i % 5 {
        0 | 1 => {
            let price = 180 + (i * 7) % 41;
            call(run, rec, "POST /api/bids", Method::POST, "/api/bids", Some(buyer), Some(bid(price)), CREATED).await;
        }
        2 | 3 => {
            let price = 200 + (i * 11) % 41;
            let ask = json!({"title": "Release Day", "price": price, "size": size, "productId": product});
            let path = "/api/sneakers";
            call(run, rec, "POST /api/sneakers (ask)", Method::POST, path, Some(seller), Some(ask), CREATED).await;
        }
        _ => {
            let placed =
                call(run, rec, "POST /api/bids", Method::POST, "/api/bids", Some(buyer), Some(bid(100)), CREATED).await;
            let Some(id) = placed.and_then(|r| r.body["id"].as_str().map(str::to_owned)) else { return };
            let path = format!("/api/bids/{id}");
            call(run, rec, "DELETE /api/bids/{id}", Method::DELETE, &path, Some(buyer), None, OK).await;
        }
    }
}

/// Watches `streams` live market streams of `product` while, every half second until
/// `deadline`, `buyer` raises the product's highest bid; returns, per probe and stream, the
/// time from sending the bid to that stream showing it (microseconds).
pub async fn stream_probe(
    api: Api,
    buyer: User,
    product: String,
    streams: usize,
    deadline: Instant,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    use std::sync::{Arc, Mutex};
    let path = format!("/api/products/{product}/market/stream");
    // The probe in flight: its price (cents) and when its bid was sent.
    let (probe_tx, probe_rx) = tokio::sync::watch::channel(None::<(i64, Instant)>);
    let seen = Arc::new(Mutex::new(hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let mut watchers = Vec::new();
    for _ in 0..streams.max(1) {
        let response = api.stream(&path).await?;
        let (probe_rx, seen) = (probe_rx.clone(), seen.clone());
        watchers.push(tokio::spawn(async move {
            let mut response = response;
            let mut text = String::new();
            let mut last_seen = 0;
            while let Ok(Some(chunk)) = response.chunk().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let event: String = text.drain(..end + 2).collect();
                    let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
                    let Ok(market) = serde_json::from_str::<Value>(data) else { continue };
                    let highest = market["sizes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s["highestBid"].as_f64())
                        .fold(0.0, f64::max);
                    #[allow(clippy::cast_possible_truncation, reason = "a price in cents")]
                    let highest = (highest * 100.0).round() as i64;
                    if let Some((price, sent)) = *probe_rx.borrow()
                        && highest >= price
                        && price > last_seen
                    {
                        last_seen = price;
                        let _ = seen.lock().map(|mut h| h.record(super::stats::micros(sent.elapsed())));
                    }
                }
            }
        }));
    }
    let mut rec = Recorder::default();
    let mut price = 100;
    // Each probe outbids the last and then cancels it, as a buyer would: a buyer may keep
    // only so many open bids on a book (MAX_OPEN_BIDS_PER_BOOK), and the raised bid is the
    // highest either way.
    let mut last = None;
    while Instant::now() < deadline {
        price += 1;
        let body = json!({"productId": product, "size": MARKET_SIZES[0], "price": price});
        let _ = probe_tx.send(Some((price * 100, Instant::now())));
        let placed = api.call(&mut rec, "probe", Method::POST, "/api/bids", Some(&buyer), Some(body), CREATED).await;
        if let Some(id) = last.replace(placed.and_then(|r| r.body["id"].as_str().map(str::to_owned))).flatten() {
            let path = format!("/api/bids/{id}");
            api.call(&mut rec, "probe", Method::DELETE, &path, Some(&buyer), None, OK).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The last probe's events arrive within moments; then the streams are closed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for watcher in &watchers {
        watcher.abort();
    }
    let histogram = seen.lock().map_err(|_| anyhow::anyhow!("probe histogram poisoned"))?.clone();
    Ok(histogram)
}

/// A shopper opens a product's page in the storefront.
async fn product_page(run: &Run, rec: &mut Recorder, i: usize) {
    let product = &run.products[i % run.products.len()];
    call(run, rec, "GET /products/{id} (page)", Method::GET, &format!("/products/{product}"), None, None, OK).await;
}

/// Fills each product's books so its page shows all it can: per size, two asks and a bid
/// resting, and a sale (a bid met the lower ask).
pub async fn seed_books(api: &Api, users: &[User], products: &[String]) -> anyhow::Result<()> {
    let (seller, buyer) = (&users[0], &users[1]);
    let mut rec = Recorder::default();
    for product in products {
        for size in MARKET_SIZES {
            let ask =
                |price: u32| json!({"title": "Release Day pair", "price": price, "size": size, "productId": product});
            let bid = |price: u32| json!({"productId": product, "size": size, "price": price});
            for (path, body) in [
                ("/api/sneakers", ask(300)),
                ("/api/sneakers", ask(320)),
                ("/api/bids", bid(200)),
                ("/api/bids", bid(300)),
            ] {
                let reply = api
                    .call(
                        &mut rec,
                        "seed",
                        Method::POST,
                        path,
                        Some(if path == "/api/bids" { buyer } else { seller }),
                        Some(body),
                        CREATED,
                    )
                    .await;
                anyhow::ensure!(
                    reply.is_some_and(|r| r.status == StatusCode::CREATED),
                    "seeding the books failed at {path}"
                );
            }
        }
    }
    Ok(())
}

/// What a browser downloads for each storefront page, anonymous pages and a signed-in
/// shopper's (`user`), `product` standing for any product page.
pub async fn page_weights(api: &Api, user: &User, product: &str) -> anyhow::Result<Vec<super::client::PageWeight>> {
    let anonymous = ["/".to_owned(), format!("/products/{product}"), "/listings".to_owned(), "/signin".to_owned()];
    let signed_in = ["/account", "/account/orders", "/account/bids", "/account/listings", "/account/card", "/sell"];
    let mut pages = Vec::new();
    for page in &anonymous {
        pages.push(api.page_weight(page, None).await?);
    }
    for page in signed_in {
        pages.push(api.page_weight(page, Some(user)).await?);
    }
    Ok(pages)
}
