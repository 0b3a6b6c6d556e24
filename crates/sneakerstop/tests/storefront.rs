//! The storefront in a real browser: the real binary (every service and the storefront, real
//! PostgreSQL and Kafka) and a storefront run apart whose API is gone; then
//! `tests/browser/storefront.test.mjs` drives Debian's Chromium through them with Playwright
//! — sign-up, the admin's product, a seller's listing, a live product page, buy now and pay,
//! a bid sold into, CSRF refusals, 404 and 503 pages — auditing each page with axe-core.
//!
//! Then the storefront run apart, calling the API over HTTP, lists the products and signs
//! the admin in through its own form; and, in one process or apart, a browser that signed in
//! through the storefront is a known device of the account when it signs in there again.
//!
//! `make test` installs Chromium and the browser tests' npm packages. Pictures of the pages
//! go to `target/storefront-screenshots/`, or, with `UPDATE_SCREENSHOTS=1`, to
//! `docs/storefront/` (what docs/storefront.md shows).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use sneakerstop_test_support::{Server, TestDb, unique};

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");
const SECRET: &str = "storefront-browser-secret-0123456789-abcdef";
const ADMIN_PASSWORD: &str = "admin password!";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An account with the admin role, made as an operator makes one (`sneakerstop admin grant`).
async fn admin(server: &Server, db: &TestDb) -> String {
    let email = format!("{}@example.com", unique("admin"));
    let response = reqwest::Client::new()
        .post(server.url("/api/users/signup"))
        .json(&json!({"email": email, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let granted =
        tokio::process::Command::new(BIN).args(["admin", "grant", &email]).env("DATABASE_URL", db.url()).output().await;
    let granted = granted.unwrap();
    assert!(granted.status.success(), "{}", String::from_utf8_lossy(&granted.stderr));
    email
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn shoppers_sellers_and_admins_use_the_storefront_in_a_real_browser() {
    let tests = workspace().join("tests/browser");
    assert!(
        tests.join("node_modules/playwright-core").is_dir(),
        "the browser tests' packages are missing: `make test` installs them (or `npm ci --prefix tests/browser`)"
    );
    let db = TestDb::new().await;
    let env = [
        ("DATABASE_URL", db.url()),
        ("JWT_SECRET", SECRET.to_owned()),
        ("KAFKA_TOPIC_PREFIX", format!("{}.", unique("storefront"))),
        ("STOREFRONT_TEST_CARDS", "true".to_owned()),
    ];
    let server = Server::start(BIN, &["serve"], &env).await;
    // The storefront alone, as it runs apart from the services (no database), with its API
    // unreachable.
    let apart_env =
        [("JWT_SECRET", SECRET.to_owned()), ("STOREFRONT_API_URL", format!("http://127.0.0.1:{}", closed_port()))];
    let apart = Server::start(BIN, &["serve", "storefront"], &apart_env).await;
    let admin = admin(&server, &db).await;

    let screenshots = if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        workspace().join("docs/storefront")
    } else {
        workspace().join("target/storefront-screenshots")
    };
    let mut node = tokio::process::Command::new("node");
    if let Some(chromium) = std::env::var_os("CHROMIUM_BIN") {
        node.env("CHROMIUM_BIN", chromium);
    }
    let run = node
        .args(["--test", "--test-reporter=tap", "--test-concurrency=1", "storefront.test.mjs"])
        .current_dir(&tests)
        .env("BASE_URL", server.url(""))
        .env("UNAVAILABLE_URL", apart.url(""))
        .env("ADMIN_EMAIL", &admin)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("SCREENSHOT_DIR", &screenshots)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the browser tests finished within 10 minutes")
        .expect("run node (installed on this machine)");
    let report = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{report}");
    assert!(output.status.success(), "the browser tests failed:\n{report}");
    // The runner ran every test (a file that failed to load would report none).
    assert!(report.contains("# pass 8"), "not every browser test ran:\n{report}");

    // Run apart with its API reachable over HTTP, the storefront shows what the browser
    // tests made and signs people in through it.
    let remote = Server::start(
        BIN,
        &["serve", "storefront"],
        &[("JWT_SECRET", SECRET.to_owned()), ("STOREFRONT_API_URL", server.url(""))],
    )
    .await;
    signs_in_and_shows_products_over_http(&remote, &admin).await;
    // Known devices, whether the storefront calls the API in its process or over HTTP.
    a_browser_that_signed_in_here_is_a_known_device(&server, &server, &admin).await;
    a_browser_that_signed_in_here_is_a_known_device(&remote, &server, &admin).await;
}

/// `GET /` lists the browser tests' product; a sign-in form posted with its CSRF token
/// answers 303 with the API's session cookie, and the next page knows who is signed in.
async fn signs_in_and_shows_products_over_http(storefront: &Server, email: &str) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let home = http.get(storefront.url("/")).send().await.unwrap();
    assert_eq!(home.status(), reqwest::StatusCode::OK);
    assert!(home.text().await.unwrap().contains("Storefront Runner"), "the product is listed");

    let form = SignInForm::open(&http, storefront).await;
    let signed_in = form.send(&http, storefront, email, None).await;
    assert_eq!(signed_in.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers()["location"], "/account?done=signed-in");
    let session = cookie(&signed_in, "session").expect("the API's session cookie, handed on");
    let account = http
        .get(storefront.url("/account"))
        .header("cookie", format!("csrf={}; session={session}", form.cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(account.status(), reqwest::StatusCode::OK);
    assert!(account.text().await.unwrap().contains(email), "signed in as the admin");
}

/// Signed in through `storefront`, a browser keeps the API's known-device cookie for the
/// storefront's sign-in (the API's own path would never see it again), and when it signs in
/// there again `api` counts it as a known device (a reserved place in the hashing queue);
/// a sign-in without it is not counted.
async fn a_browser_that_signed_in_here_is_a_known_device(storefront: &Server, api: &Server, email: &str) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = SignInForm::open(&http, storefront).await;
    let first = form.send(&http, storefront, email, None).await;
    assert_eq!(first.status(), reqwest::StatusCode::SEE_OTHER);
    let set = first
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("device="))
        .expect("the API's known-device cookie, handed on")
        .to_owned();
    assert!(set.contains("Path=/signin;") || set.ends_with("Path=/signin"), "kept for the storefront's sign-in: {set}");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "its protections kept: {set}");
    let device = cookie(&first, "device").unwrap();

    let known = || async { api.metric_sum("password_hashing_known_device_total").await.unwrap_or_default() };
    let before = known().await;
    let again = form.send(&http, storefront, email, Some(&device)).await;
    assert_eq!(again.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(known().await, before + 1.0, "the sign-in with the cookie came from a known device");
    let stranger = form.send(&http, storefront, email, None).await;
    assert_eq!(stranger.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(known().await, before + 1.0, "a sign-in without it did not");
}

/// The storefront's sign-in form, as a browser fetched it: its CSRF cookie and token.
struct SignInForm {
    cookie: String,
    token: String,
}

impl SignInForm {
    async fn open(http: &reqwest::Client, storefront: &Server) -> Self {
        let form = http.get(storefront.url("/signin")).send().await.unwrap();
        let cookie = cookie(&form, "csrf").expect("the sign-in page sets the CSRF cookie");
        let page = form.text().await.unwrap();
        let token = page.split("name=\"_csrf\" value=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap();
        Self { cookie, token: token.to_owned() }
    }

    /// Posts the form for `email` (with the admin's password), with a `device` cookie if given.
    async fn send(
        &self,
        http: &reqwest::Client,
        storefront: &Server,
        email: &str,
        device: Option<&str>,
    ) -> reqwest::Response {
        let mut cookies = format!("csrf={}", self.cookie);
        if let Some(device) = device {
            cookies.push_str(&format!("; device={device}"));
        }
        http.post(storefront.url("/signin"))
            .header("cookie", cookies)
            .form(&[
                ("_csrf", self.token.as_str()),
                ("email", email),
                ("password", ADMIN_PASSWORD),
                ("next", "/account"),
            ])
            .send()
            .await
            .unwrap()
    }
}

fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}
