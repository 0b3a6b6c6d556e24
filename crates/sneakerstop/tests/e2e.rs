//! End to end: the real `sneakerstop` binary, on a free port, against real PostgreSQL.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sneakerstop_test_support::{Server, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");
const SECRET: &str = "e2e-test-secret-0123456789-abcdefghij";

async fn start(db: &TestDb) -> Server {
    Server::start(BIN, &["serve"], &[("DATABASE_URL", db.url()), ("JWT_SECRET", SECRET.into())]).await
}

fn session_cookie(response: &reqwest::Response) -> String {
    let header = response.headers()["set-cookie"].to_str().unwrap();
    header.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn identity_works_end_to_end_and_the_server_stops_cleanly() {
    let db = TestDb::new().await;
    let server = start(&db).await;
    let http = reqwest::Client::new();

    // Signup sets the cookie; the cookie identifies the user.
    let response = http
        .post(server.url("/api/users/signup"))
        .json(&json!({"email": "E2E@example.com", "password": "end to end!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let cookie = session_cookie(&response);
    assert!(response.headers().contains_key("x-request-id"));
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["email"], "e2e@example.com");

    let me: Value = http
        .get(server.url("/api/users/currentuser"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["currentUser"], user);

    // Signin by bearer token.
    let response = http
        .post(server.url("/api/users/signin"))
        .json(&json!({"email": "e2e@example.com", "password": "end to end!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let token = session_cookie(&response).trim_start_matches("session=").to_owned();
    let me: Value =
        http.get(server.url("/api/users/currentuser")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["currentUser"]["id"], user["id"]);

    // Signout clears the cookie.
    let response = http.post(server.url("/api/users/signout")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(session_cookie(&response).ends_with("session="));

    // A body over the limit is a 413 problem, an unknown route a 404 problem.
    let huge = json!({"email": "x@example.com", "password": "y".repeat(100_000)});
    let response = http.post(server.url("/api/users/signup")).json(&huge).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let response = http.get(server.url("/api/nothing-here")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let response = http.delete(server.url("/api/users/signup")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);

    assert!(server.terminate().await, "SIGTERM must stop the server with exit code 0");
}

#[tokio::test]
async fn operations_endpoints_and_api_docs_are_served() {
    let db = TestDb::new().await;
    // One service only, as deployed: it still documents the whole API.
    let server =
        Server::start(BIN, &["serve", "identity"], &[("DATABASE_URL", db.url()), ("JWT_SECRET", SECRET.into())]).await;
    let http = reqwest::Client::new();

    let health: Value = http.get(server.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["details"]["broker"]["reachable"], true, "{health}");
    let response = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ready: Value = response.json().await.unwrap();
    assert_eq!(ready["checks"]["postgres:identity"], "ok");
    assert!(ready["checks"]["kafka"].is_null(), "serving does not depend on the broker: {ready}");

    let spec: Value = http.get(server.url("/api-docs/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"), "{}", spec["openapi"]);
    for path in [
        "/api/users/signup",
        "/api/users/signin",
        "/api/users/signout",
        "/api/users/currentuser",
        "/api/users/signout/everywhere",
        "/api/users/password",
        "/api/sneakers",
        "/api/sneakers/{id}",
        "/api/orders",
        "/api/orders/{id}",
        "/api/payments",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} is documented");
    }
    assert!(spec["paths"]["/api/users/signup"]["post"]["responses"]["409"].is_object());
    // The write limit's 429 is documented where it applies, and only there.
    for (path, method) in [("/api/sneakers", "post"), ("/api/orders", "post"), ("/api/payments", "post")] {
        let limited = &spec["paths"][path][method]["responses"]["429"];
        assert!(limited["headers"]["retry-after"].is_object(), "{method} {path} documents the write limit");
    }
    assert!(spec["paths"]["/api/sneakers"]["get"]["responses"]["429"].is_null(), "reads are not limited");
    assert!(spec["paths"]["/api/users/signout"]["post"]["responses"]["429"].is_null(), "identity is not");
    // So are the answers every operation of a kind may give: 401 where a session is needed,
    // 422 where an Idempotency-Key is taken.
    for (path, method) in [("/api/orders", "get"), ("/api/orders/{id}", "delete"), ("/api/users/password", "post")] {
        assert!(spec["paths"][path][method]["responses"]["401"].is_object(), "{method} {path} documents 401");
    }
    assert!(spec["paths"]["/api/sneakers"]["get"]["responses"]["401"].is_null(), "browsing needs no session");
    assert!(spec["paths"]["/api/users/currentuser"]["get"]["responses"]["401"].is_null(), "nor does currentuser");
    for path in ["/api/sneakers", "/api/orders", "/api/payments"] {
        assert!(spec["paths"][path]["post"]["responses"]["422"].is_object(), "POST {path} documents a reused key");
    }
    assert!(
        spec["paths"]["/api/sneakers"]["get"]["responses"]["200"]["headers"]["x-cache"].is_object(),
        "the read cache's header is documented"
    );
    assert_eq!(spec["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(spec["components"]["securitySchemes"]["session_cookie"]["in"], "cookie");
    assert!(spec["components"]["schemas"]["Problem"].is_object());

    let html = http.get(server.url("/docs")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("swagger-ui-bundle.js") && html.contains("/api-docs/openapi.json"), "{html}");
    let bundle = http.get(server.url("/docs/swagger-ui-bundle.js")).send().await.unwrap();
    assert_eq!(bundle.status(), StatusCode::OK, "Swagger UI's assets are built in");
    assert!(bundle.text().await.unwrap().len() > 100_000);

    // A request shows up in the metrics, labelled by route template and status.
    http.post(server.url("/api/users/signin"))
        .json(&json!({"email": "nobody@example.com", "password": "whatever1"}))
        .send()
        .await
        .unwrap();
    let metrics = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("http_requests_total{") && l.contains(r#"route="/api/users/signin""#))
        .unwrap_or_else(|| panic!("no signin counter in:\n{metrics}"));
    assert!(line.contains(r#"status="401""#), "{line}");
    assert!(metrics.contains("http_request_duration_seconds_bucket{"));

    assert!(server.terminate().await);
}

#[tokio::test]
async fn production_serve_refuses_to_start_without_jwt_secret() {
    let output = tokio::process::Command::new(BIN)
        .args(["serve", "--port", "0"])
        .env_remove("JWT_SECRET")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/never_created_by_this_test")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("JWT_SECRET is required"), "{stderr}");
}

#[tokio::test]
async fn every_subcommand_has_help() {
    for args in [&["--help"][..], &["serve", "--help"], &["migrate", "--help"]] {
        let output = tokio::process::Command::new(BIN).args(args).output().await.unwrap();
        assert!(output.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("Usage: sneakerstop"), "{args:?}: {text}");
    }
    let output =
        tokio::process::Command::new(BIN).args(["serve", "--help"]).env("JWT_SECRET", SECRET).output().await.unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("JWT_SECRET") && !text.contains(SECRET), "help names the variable, never its value");
}

#[tokio::test]
async fn only_configured_origins_may_call_the_api_from_a_browser_with_credentials() {
    let db = TestDb::new().await;
    let env = [
        ("DATABASE_URL", db.url()),
        ("JWT_SECRET", SECRET.into()),
        ("CORS_ALLOWED_ORIGINS", "https://shop.example.com,https://m.example.com".into()),
    ];
    let server = Server::start(BIN, &["serve", "identity"], &env).await;
    let http = reqwest::Client::new();
    // The preflight a browser sends before a credentialed JSON POST with an idempotency key.
    let preflight = |origin: &str| {
        http.request(reqwest::Method::OPTIONS, server.url("/api/users/signin"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,idempotency-key")
            .send()
    };
    let allowed = preflight("https://shop.example.com").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], "https://shop.example.com");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert!(headers["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(
        allowed_headers.contains("content-type") && allowed_headers.contains("idempotency-key"),
        "{allowed_headers}"
    );

    let refused = preflight("https://evil.example.net").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none(), "no grant for other origins");

    // The actual request from an allowed page: the answer names the origin and exposes
    // what a page needs to read.
    let answer =
        http.get(server.url("/api/users/currentuser")).header("origin", "https://m.example.com").send().await.unwrap();
    assert_eq!(answer.headers()["access-control-allow-origin"], "https://m.example.com");
    assert!(answer.headers()["access-control-expose-headers"].to_str().unwrap().contains("x-request-id"));
    assert!(server.terminate().await);

    // No origins configured (the default): no CORS grant for anyone.
    let server =
        Server::start(BIN, &["serve", "identity"], &[("DATABASE_URL", db.url()), ("JWT_SECRET", SECRET.into())]).await;
    let answer = http
        .get(server.url("/api/users/currentuser"))
        .header("origin", "https://shop.example.com")
        .send()
        .await
        .unwrap();
    assert!(answer.headers().get("access-control-allow-origin").is_none());
    assert!(server.terminate().await);
}

#[tokio::test]
async fn a_server_told_not_to_migrate_waits_for_sneakerstop_migrate_and_then_serves() {
    let db = TestDb::new().await;
    let env =
        vec![("DATABASE_URL", db.url()), ("JWT_SECRET", SECRET.to_owned()), ("MIGRATE_ON_START", "false".to_owned())];
    let starting = tokio::spawn(async move { Server::start(BIN, &["serve", "identity"], &env).await });

    // It looks for its migrations, again and again, and changes nothing.
    let admin = sneakerstop_db::sqlx::PgPool::connect(&db.url()).await.unwrap();
    sneakerstop_test_support::wait_until("the server polls for its migrations", Duration::from_secs(30), || async {
        let polls: i64 = sneakerstop_db::sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%_sqlx_migrations%'
               AND pid <> pg_backend_pid()",
        )
        .fetch_one(&admin)
        .await
        .unwrap();
        (polls > 0).then_some(())
    })
    .await;
    let users: Option<String> = sneakerstop_db::sqlx::query_scalar("SELECT to_regclass('identity.users')::text")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(users, None, "the serving process did not migrate");
    assert!(!starting.is_finished(), "nor does it serve an unmigrated schema");

    let migrated = tokio::process::Command::new(BIN)
        .args(["migrate", "identity"])
        .env("DATABASE_URL", db.url())
        .output()
        .await
        .unwrap();
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    let server = starting.await.unwrap();
    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(server.terminate().await);
}
