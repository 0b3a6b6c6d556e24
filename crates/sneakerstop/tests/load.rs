//! A short smoke run of the load driver against the real binary: it must complete purchases
//! without errors. (Speed is measured by `make bench`, never asserted in tests.)

use serde_json::Value;
use sneakerstop_test_support::{Server, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");

#[tokio::test]
async fn the_load_driver_completes_purchases_without_errors() {
    let db = TestDb::new().await;
    let server = Server::start(
        BIN,
        &["serve"],
        &[("DATABASE_URL", db.url()), ("JWT_SECRET", "load-smoke-secret-0123456789-abcdefgh".into())],
    )
    .await;
    let output = tokio::process::Command::new(BIN)
        .args([
            "load",
            "--scenario",
            "mixed",
            "--duration",
            "3s",
            "--concurrency",
            "4",
            "--users",
            "4",
            "--seed-listings",
            "20",
            "--json",
        ])
        .env("LOAD_BASE_URL", &server.base_url)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
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
