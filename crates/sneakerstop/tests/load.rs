//! A short smoke run of the load driver against the real binary: it must complete purchases
//! without errors. (Speed is measured by `make bench`, never asserted in tests.)

use serde_json::Value;
use sneakerstop_test_support::{Server, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");

/// Runs `sneakerstop load --scenario <args> --json` against `server`; returns its report.
async fn drive(server: &Server, args: &str) -> Value {
    let output = tokio::process::Command::new(BIN)
        .args(["load", "--json", "--scenario"])
        .args(args.split_whitespace())
        .env("LOAD_BASE_URL", &server.base_url)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn the_load_driver_completes_purchases_without_errors() {
    let db = TestDb::new().await;
    let server = Server::start(
        BIN,
        &["serve"],
        &[("DATABASE_URL", db.url()), ("JWT_SECRET", "load-smoke-secret-0123456789-abcdefgh".into())],
    )
    .await;
    let report = drive(&server, "mixed --duration 3s --concurrency 4 --users 4 --seed-listings 20").await;
    assert_eq!(report["errors"], 0, "{report:#}");
    assert!(report["purchases"].as_u64().unwrap() > 0, "{report:#}");
    let endpoints: Vec<&str> =
        report["endpoints"].as_array().unwrap().iter().map(|e| e["endpoint"].as_str().unwrap()).collect();
    for endpoint in ["GET /api/sneakers", "POST /api/sneakers", "POST /api/orders", "POST /api/payments"] {
        assert!(endpoints.contains(&endpoint), "{endpoint} was driven: {endpoints:?}");
    }
    assert!(report["eventHops"].as_object().unwrap().len() >= 3, "hops reported per consumer group: {report:#}");
    assert!(server.terminate().await);
}

#[tokio::test]
async fn the_login_flood_scenario_reports_honest_users_apart_from_the_flood() {
    let db = TestDb::new().await;
    let server = Server::start(
        BIN,
        &["serve", "identity", "catalog"],
        &[
            ("DATABASE_URL", db.url()),
            ("JWT_SECRET", "load-flood-secret-0123456789-abcdefgh".into()),
            // The driver plays many clients through X-Forwarded-For.
            ("TRUSTED_PROXIES", "127.0.0.1".into()),
            ("PASSWORD_HASH_QUEUE", "2".into()),
        ],
    )
    .await;
    let report = drive(&server, "login-flood --duration 4s --concurrency 16 --users 2 --seed-listings 5").await;
    assert_eq!(report["scenario"], "login-flood");
    let endpoint = |name: &str| {
        report["endpoints"].as_array().unwrap().iter().find(|e| e["endpoint"] == name).cloned().unwrap_or_else(|| {
            panic!("{name} is reported: {report:#}");
        })
    };
    let flood = endpoint("POST /api/users/signin (flood)");
    let (known, new) = (
        endpoint("POST /api/users/signin (honest, known device)"),
        endpoint("POST /api/users/signin (honest, new device)"),
    );
    assert_eq!(endpoint("GET /api/sneakers (honest)")["errors"], 0, "{report:#}");
    // Honest users are answered as the server means to: signed in, or told the hashing
    // queue is full (how often a new browser gets in during a flood is measured by `make
    // bench`, not asserted: it depends on what else the machine runs). A 401 would be a
    // wrong password.
    for honest in [&known, &new] {
        assert!(honest["requests"].as_u64().unwrap_or(0) > 0, "{report:#}");
        assert_eq!(honest["errors"], 0, "honest users' answers are 200 or 503 only: {report:#}");
    }
    // The one returning user (a known device of their account) always finds a reserved
    // place, however full the queue.
    assert!(known["statuses"]["503"].is_null(), "a known device is never turned away: {report:#}");
    assert!(flood["statuses"]["200"].is_null(), "no wrong password signed in: {report:#}");
    assert!(
        flood["statuses"]["503"].as_u64().unwrap_or(0) > 0,
        "the hashing queue refused some of the flood: {report:#}"
    );
    assert_eq!(report["errors"], 0, "every answer was one the server means: {report:#}");
    assert!(server.terminate().await);
}

#[tokio::test]
async fn the_market_scenario_trades_matches_and_streams() {
    // Topics of its own: matches are commands carried by events (see tests/market.rs).
    let db = TestDb::new().await;
    let env = [
        ("DATABASE_URL", db.url()),
        ("JWT_SECRET", "load-market-secret-0123456789-abcdefgh".into()),
        ("KAFKA_TOPIC_PREFIX", format!("{}.", sneakerstop_test_support::unique("load"))),
        // As `make bench` runs it: the scenario's buyers leave bids resting below the asks, and
        // a writer fast enough puts more than the default 25 of a buyer's on a book in 4 s (the
        // limit has tests of its own in crates/market).
        ("MAX_OPEN_BIDS_PER_BOOK", "1000000".into()),
    ];
    let server = Server::start(BIN, &["serve"], &env).await;
    let email = format!("{}@example.com", sneakerstop_test_support::unique("admin"));
    let signup = reqwest::Client::new()
        .post(server.url("/api/users/signup"))
        .json(&serde_json::json!({"email": email, "password": "load-admin-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), reqwest::StatusCode::CREATED);
    let granted =
        tokio::process::Command::new(BIN).args(["admin", "grant", &email]).env("DATABASE_URL", db.url()).output().await;
    assert!(granted.unwrap().status.success());

    let output = tokio::process::Command::new(BIN)
        .args(["load", "--json", "--scenario", "market", "--duration", "4s", "--concurrency", "8", "--users", "8"])
        .args(["--seed-listings", "0", "--market-products", "2", "--market-streams", "3"])
        .env("LOAD_BASE_URL", &server.base_url)
        .env("LOAD_ADMIN_EMAIL", &email)
        .env("LOAD_ADMIN_PASSWORD", "load-admin-password")
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["errors"], 0, "{report:#}");
    let market = &report["market"];
    assert!(market["bookOperations"].as_u64().unwrap() > 0, "{report:#}");
    assert!(market["matches"].as_f64().unwrap() > 0.0, "crossing books matched: {report:#}");
    assert!(market["sales"].as_f64().unwrap() > 0.0, "matches became completed sales: {report:#}");
    assert!(market["matchToSale"]["p99Ms"].as_f64().is_some(), "{report:#}");
    assert!(market["streamDelayMs"]["p50"].as_f64().is_some(), "the live streams showed the probe's bids: {report:#}");
    assert!(server.terminate().await);
}
