//! Helpers shared by SneakerStop's tests.
//!
//! - [`TestDb`]: a freshly created PostgreSQL database, dropped when the test ends.
//! - [`call`]: send one request to a router in-process and read the answer.
//! - [`Server`]: the real `sneakerstop` binary, started on a free port.
//! - [`Broker`]: a private Tansu broker a test may stop and restart; [`shared_brokers`]
//!   for the one `make test` runs.
//! - [`wait_until`]: poll a condition until it holds or a deadline passes (never a fixed sleep).

mod broker;
mod kafka;
mod server;

use std::future::Future;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::Value;
use sneakerstop_db::DbConfig;
use sqlx::Connection;
use tower::ServiceExt;

pub use broker::{Broker, SecureListener, shared_brokers, unique};
pub use kafka::{
    PAST_SESSION, PositionReader, Positions, Record, publish, read_to_end, read_topic, until_every_partition_moves,
};
pub use server::Server;

/// A new user with a session signed by `keys`: its id and `Bearer <token>`, as a signed-in
/// client would send it.
pub fn signed_in(keys: &sneakerstop_auth::SessionKeys) -> (uuid::Uuid, String) {
    let id = uuid::Uuid::now_v7();
    let user = sneakerstop_auth::CurrentUser::member(id, format!("{id}@example.com"));
    (id, format!("Bearer {}", keys.issue(&user)))
}

/// The same for an admin (who may create products).
pub fn signed_in_admin(keys: &sneakerstop_auth::SessionKeys) -> (uuid::Uuid, String) {
    let id = uuid::Uuid::now_v7();
    let user = sneakerstop_auth::CurrentUser {
        admin: true,
        ..sneakerstop_auth::CurrentUser::member(id, format!("{id}@example.com"))
    };
    (id, format!("Bearer {}", keys.issue(&user)))
}

/// Shows the code's log lines in a failing test's output (`RUST_LOG` filters, default `info`).
/// Spans get OpenTelemetry ids as in the binary, so trace propagation can be tested.
pub fn init_logging() {
    sneakerstop_telemetry::init_test_logging();
}

/// The PostgreSQL server tests use: `DATABASE_URL`'s server, or the local default.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".to_owned())
}

/// A database created for one test and dropped when the value is dropped.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    base: String,
    /// The admin URL's query (`?sslmode=...`), kept for the test database's URL.
    query: String,
}

impl TestDb {
    /// Creates an empty database with a unique name.
    pub async fn new() -> Self {
        init_logging();
        let name = format!("sneakerstop_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect to the test PostgreSQL server");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create test database");
        let _ = conn.close().await;
        let (path, query) =
            admin.split_once('?').map_or((admin.as_str(), String::new()), |(p, q)| (p, format!("?{q}")));
        let base = path.rsplit_once('/').map_or(path, |(server, _)| server).to_owned();
        Self { name, base, query }
    }

    /// The database's URL.
    pub fn url(&self) -> String {
        format!("{}/{}{}", self.base, self.name, self.query)
    }

    /// Connection settings for the database.
    pub fn config(&self) -> DbConfig {
        DbConfig::from_url(&self.url(), 5).expect("test database URL parses")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside async; use a throwaway runtime on a plain thread.
        let admin = admin_url();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// What a router answered.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body parsed as JSON (`Value::Null` when empty or not JSON).
    pub json: Value,
    /// Raw body text.
    pub text: String,
}

impl Answer {
    /// The `Set-Cookie` header, if any.
    pub fn set_cookie(&self) -> Option<&str> {
        self.headers.get(header::SET_COOKIE).and_then(|v| v.to_str().ok())
    }

    /// The `Content-Type` header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
    }

    /// Asserts a 400 problem naming `field`, and returns its reason.
    pub fn assert_invalid_field(&self, field: &str) -> String {
        self.assert_field_problem(StatusCode::BAD_REQUEST, field)
    }

    /// Asserts a 422 problem (well-formed, but not something the service can act on) naming
    /// `field`, and returns its reason.
    pub fn assert_unprocessable_field(&self, field: &str) -> String {
        self.assert_field_problem(StatusCode::UNPROCESSABLE_ENTITY, field)
    }

    fn assert_field_problem(&self, status: StatusCode, field: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.content_type(), Some("application/problem+json"));
        let errors = self.json["errors"].as_array().unwrap_or_else(|| panic!("no errors in {}", self.text));
        let error = errors
            .iter()
            .find(|e| e["field"] == field)
            .unwrap_or_else(|| panic!("no error for field {field} in {}", self.text));
        error["reason"].as_str().unwrap_or_default().to_owned()
    }
}

/// A request under construction for [`call`].
#[derive(Debug)]
pub struct Call {
    request: axum::http::request::Builder,
    body: Body,
}

impl Call {
    /// A request without a body.
    pub fn new(method: Method, uri: &str) -> Self {
        Self { request: Request::builder().method(method).uri(uri), body: Body::empty() }
    }

    /// A `GET`.
    pub fn get(uri: &str) -> Self {
        Self::new(Method::GET, uri)
    }

    /// A `POST` of `json`.
    pub fn post(uri: &str, json: Value) -> Self {
        Self::new(Method::POST, uri).json(json)
    }

    /// Sets a JSON body.
    pub fn json(self, json: Value) -> Self {
        self.raw("application/json", json.to_string())
    }

    /// Sets a body with an explicit content type.
    pub fn raw(mut self, content_type: &str, body: impl Into<Body>) -> Self {
        self.request = self.request.header(header::CONTENT_TYPE, content_type);
        self.body = body.into();
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    /// Makes the request come from `peer`, as the server's connection info would say.
    pub fn from_peer(mut self, peer: std::net::SocketAddr) -> Self {
        self.request = self.request.extension(axum::extract::ConnectInfo(peer));
        self
    }

    /// Sends the request to `app`.
    pub async fn send(self, app: &Router) -> Answer {
        call(app, self.request.body(self.body).expect("valid test request")).await
    }
}

/// Sends `request` to `app` in-process and reads the whole answer.
pub async fn call(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.expect("routers are infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20).await.expect("read body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer { status, headers, json, text }
}

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
