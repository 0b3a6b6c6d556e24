//! The public API as the storefront calls it: on behalf of the browser in front of it (its
//! session cookie, its address, its trace), answering either the JSON asked for or why not.
//!
//! Two ways to reach it, one behaviour: beside the services (the default), a call goes
//! straight into this process's API router — the same handlers, extractors and layers
//! (write limit, commit announcements) an HTTP request meets, without a socket, an HTTP
//! encoding or a second server span per call; run apart, it is an HTTP request to
//! `STOREFRONT_API_URL`. Either way the storefront sees only what a client sees.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sneakerstop_problem::Problem;
use tower::ServiceExt;

/// The longest a call may take, either way.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer read (a page of 100 listings is far less).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The public API, as the storefront reaches it.
#[derive(Debug, Clone)]
pub struct Api {
    transport: Transport,
}

#[derive(Debug, Clone)]
enum Transport {
    /// This process's API router.
    Local(axum::Router),
    /// Over HTTP, to the API at `base`.
    Http { http: reqwest::Client, base: String },
}

/// Who a call is made for: the browser's session and where it is.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The browser's `session` cookie, if any.
    pub session: Option<String>,
    /// The browser's known-device cookies: it sends them only to the storefront's sign-in
    /// (see [`crate::pages`]), which hands them to the API's sign-in as a browser calling it
    /// directly would.
    pub devices: Vec<String>,
    /// The browser's address as this server saw it.
    pub peer: Option<SocketAddr>,
    /// The `X-Forwarded-For` the browser's request arrived with (from a proxy in front).
    pub forwarded: Option<String>,
    /// The browser request's `traceparent`, so one trace follows a click into the services.
    pub traceparent: Option<HeaderValue>,
}

/// Why a call gave no answer to show.
#[derive(Debug)]
pub enum Failure {
    /// The API refused (4xx) and said why.
    Refused(Problem),
    /// The API could not be reached or failed (5xx, timeout): the page says so.
    Unavailable(String),
}

impl Failure {
    /// Whether the refusal is "not signed in".
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::Refused(p) if p.status == StatusCode::UNAUTHORIZED.as_u16())
    }
}

/// A write's answer: its body and the cookies it set (sign-in, sign-out).
#[derive(Debug)]
pub struct Sent<T> {
    /// The answer's body.
    pub value: T,
    /// Its `Set-Cookie` headers, passed on to the browser.
    pub cookies: Vec<HeaderValue>,
}

/// Extra headers of a write.
#[derive(Debug, Default, Clone, Copy)]
pub struct Write<'a> {
    /// `Idempotency-Key`: the form's, so a form sent twice acts once.
    pub idempotency_key: Option<&'a str>,
    /// `If-Match`: the version the form was filled in against.
    pub if_match: Option<i64>,
}

/// One call, whichever way it goes.
struct Call<'a> {
    caller: &'a Caller,
    method: &'a Method,
    path: &'a str,
    body: Option<Vec<u8>>,
    write: Write<'a>,
}

/// What came back, before it is read.
struct Answer {
    status: StatusCode,
    cookies: Vec<HeaderValue>,
    body: axum::body::Bytes,
}

impl Api {
    /// The API of this process: `router` serves it.
    pub fn local(router: axum::Router) -> Self {
        Self { transport: Transport::Local(router) }
    }

    /// A client of the API at `base` (`http://host:port`).
    pub fn remote(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(CALL_TIMEOUT)
            // Redirects are the API's answer to show, not to follow.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self { transport: Transport::Http { http, base: base.trim_end_matches('/').to_owned() } })
    }

    /// `GET path` as `caller`.
    pub async fn get<T: DeserializeOwned>(&self, caller: &Caller, path: &str) -> Result<T, Failure> {
        Ok(self.send::<T, ()>(caller, Method::GET, path, None, Write::default()).await?.value)
    }

    /// `method path` with a JSON body as `caller`.
    pub async fn send<T: DeserializeOwned, B: Serialize>(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<&B>,
        write: Write<'_>,
    ) -> Result<Sent<T>, Failure> {
        let body = body.map(|b| serde_json::to_vec(b).expect("a form's JSON always serializes"));
        let call = Call { caller, method: &method, path, body, write };
        let answer = match &self.transport {
            Transport::Local(router) => in_process(router, call).await,
            Transport::Http { http, base } => over_http(http, base, call).await,
        };
        let answer = answer.map_err(|error| {
            tracing::warn!(%method, path, error = %error, "the API did not answer the storefront");
            Failure::Unavailable("the marketplace did not answer in time".to_owned())
        })?;
        read(&method, path, answer)
    }
}

/// The headers every call carries, by name.
fn headers(caller: &Caller, write: Write<'_>, json: bool) -> Vec<(header::HeaderName, String)> {
    let mut headers = Vec::new();
    let cookies: Vec<String> = caller
        .session
        .iter()
        .map(|session| (sneakerstop_auth::SESSION_COOKIE, session))
        .chain(caller.devices.iter().map(|device| (sneakerstop_auth::DEVICE_COOKIE, device)))
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    if !cookies.is_empty() {
        headers.push((header::COOKIE, cookies.join("; ")));
    }
    if let Some(key) = write.idempotency_key {
        headers.push((header::HeaderName::from_static("idempotency-key"), key.to_owned()));
    }
    if let Some(version) = write.if_match {
        headers.push((header::IF_MATCH, format!("\"{version}\"")));
    }
    if json {
        headers.push((header::CONTENT_TYPE, "application/json".to_owned()));
    }
    if let Some(trace) = caller.traceparent.as_ref().and_then(|t| t.to_str().ok()) {
        headers.push((header::HeaderName::from_static("traceparent"), trace.to_owned()));
    }
    headers
}

/// Into this process's router, as the browser's own request would have arrived: its peer
/// address and `X-Forwarded-For` as they were, so the API's view of the client (sign-in
/// throttling) is the browser, not the storefront.
async fn in_process(router: &axum::Router, call: Call<'_>) -> anyhow::Result<Answer> {
    let Call { caller, method, path, body, write } = call;
    let mut request = axum::http::Request::builder().method(method.clone()).uri(path);
    for (name, value) in headers(caller, write, body.is_some()) {
        request = request.header(name, value);
    }
    if let Some(forwarded) = &caller.forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    let mut request = request.body(body.map_or_else(Body::empty, Body::from))?;
    if let Some(peer) = caller.peer {
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    let response = tokio::time::timeout(CALL_TIMEOUT, router.clone().oneshot(request))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {CALL_TIMEOUT:?}"))?
        .unwrap_or_else(|never| match never {});
    let status = response.status();
    let cookies = response.headers().get_all(header::SET_COOKIE).iter().cloned().collect();
    let body = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES).await?;
    Ok(Answer { status, cookies, body })
}

/// Over HTTP to the API at `base`; the browser's address goes in `X-Forwarded-For`.
async fn over_http(http: &reqwest::Client, base: &str, call: Call<'_>) -> anyhow::Result<Answer> {
    let Call { caller, method, path, body, write } = call;
    let mut request = http.request(method.clone(), format!("{base}{path}"));
    for (name, value) in headers(caller, write, body.is_some()) {
        request = request.header(name, value);
    }
    let peer = caller.peer.map(|p| p.ip().to_string());
    let forwarded = match (&caller.forwarded, peer) {
        (Some(before), Some(peer)) => Some(format!("{before}, {peer}")),
        (before, peer) => before.clone().or(peer),
    };
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await?;
    let status = response.status();
    let cookies = response.headers().get_all(header::SET_COOKIE).iter().cloned().collect();
    let body = response.bytes().await?;
    Ok(Answer { status, cookies, body })
}

/// The answer as the JSON asked for, the refusal, or "unavailable".
fn read<T: DeserializeOwned>(method: &Method, path: &str, answer: Answer) -> Result<Sent<T>, Failure> {
    let Answer { status, cookies, body } = answer;
    if status.is_success() {
        // An empty answer (204) reads as JSON `null`.
        let json: &[u8] = if body.is_empty() { b"null" } else { &body };
        let value = serde_json::from_slice(json).map_err(|error| {
            tracing::error!(%method, path, error = %error, "the API answered what the storefront cannot read");
            Failure::Unavailable("the marketplace answered something unexpected".to_owned())
        })?;
        return Ok(Sent { value, cookies });
    }
    if status.is_client_error() {
        let problem = serde_json::from_slice::<Problem>(&body).unwrap_or_else(|_| Problem {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Refused").to_owned(),
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
        });
        return Err(Failure::Refused(problem));
    }
    tracing::warn!(%method, path, %status, "the API failed a storefront call");
    Err(Failure::Unavailable(
        match status {
            StatusCode::SERVICE_UNAVAILABLE => "this part of the marketplace is busy or starting; try again shortly",
            _ => "the marketplace failed to answer",
        }
        .to_owned(),
    ))
}
