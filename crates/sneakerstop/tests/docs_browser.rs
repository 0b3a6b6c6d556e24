//! The API documentation as a person sees it: a real headless Chromium (Debian's, installed
//! by `make test`) opens `/docs`, `/docs/` and `/docs/index.html` on the real binary, runs
//! Swagger UI's scripts, and the rendered page must list the operations of every service.

use std::time::Duration;

use sneakerstop_test_support::{Server, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");

/// The page's DOM after its scripts ran (Swagger UI fetches the OpenAPI document and
/// renders one block per operation).
async fn rendered(url: &str) -> String {
    let browser = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "chromium".to_owned());
    let profile = std::env::temp_dir().join(sneakerstop_test_support::unique("chromium-profile"));
    let run = tokio::process::Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            // Let the page run (fetch the document, render) for up to this much virtual
            // time before the DOM is dumped; it ends early once the page is idle.
            "--virtual-time-budget=20000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("chromium finished within 120 s")
        .unwrap_or_else(|e| panic!("run {browser} (make test installs Debian's chromium; or set CHROMIUM_BIN): {e}"));
    let _ = std::fs::remove_dir_all(&profile);
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn every_docs_url_renders_every_services_operations_in_a_real_browser() {
    let db = TestDb::new().await;
    let env = [("DATABASE_URL", db.url()), ("JWT_SECRET", "docs-browser-secret-0123456789-abcdef".to_owned())];
    let server = Server::start(BIN, &["serve"], &env).await;
    for path in ["/docs", "/docs/", "/docs/index.html"] {
        let dom = rendered(&server.url(path)).await;
        assert!(dom.contains("swagger-ui"), "{path}: no Swagger UI in the page:\n{dom}");
        // One rendered operation block per (method, path); the page's HTML itself names no
        // operation, so these prove the scripts loaded and rendered the document.
        for (method, operation) in [
            ("post", "/api/users/signup"),
            ("get", "/api/users/currentuser"),
            ("post", "/api/sneakers"),
            ("get", "/api/sneakers/{id}"),
            ("post", "/api/orders"),
            ("delete", "/api/orders/{id}"),
            ("post", "/api/payments"),
            ("get", "/api/payments"),
        ] {
            let block = format!("opblock-{method}");
            let shown = format!("data-path=\"{operation}\"");
            assert!(
                dom.contains(&block) && dom.contains(&shown),
                "{path}: {method} {operation} is not rendered:\n{dom}"
            );
        }
    }
    assert!(server.terminate().await);
}
