//! The public API as the storefront calls it: on behalf of the browser in front of it (its
//! session cookie, its address, its trace), answering either the JSON asked for or why not.

use std::time::Duration;

use axum::http::{HeaderValue, Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sneakerstop_problem::Problem;

/// The HTTP client of the public API.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// Who a call is made for: the browser's session and where it is.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The browser's `session` cookie, if any.
    pub session: Option<String>,
    /// `X-Forwarded-For` to send: what the browser's request carried, plus its peer.
    pub forwarded_for: Option<String>,
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

impl Api {
    /// A client of the API at `base` (`http://host:port`).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(15))
            // Redirects are the API's answer to show, not to follow.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned() })
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
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(session) = &caller.session {
            request = request.header(header::COOKIE, format!("{}={session}", sneakerstop_auth::SESSION_COOKIE));
        }
        if let Some(forwarded) = &caller.forwarded_for {
            request = request.header("x-forwarded-for", forwarded);
        }
        if let Some(trace) = &caller.traceparent {
            request = request.header("traceparent", trace.clone());
        }
        if let Some(key) = write.idempotency_key {
            request = request.header("idempotency-key", key);
        }
        if let Some(version) = write.if_match {
            request = request.header(header::IF_MATCH, format!("\"{version}\""));
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|error| {
            tracing::warn!(%method, path, error = %error, "the API did not answer the storefront");
            Failure::Unavailable("the marketplace did not answer in time".to_owned())
        })?;
        let status = response.status();
        let cookies: Vec<HeaderValue> = response.headers().get_all(header::SET_COOKIE).iter().cloned().collect();
        let bytes = response.bytes().await.map_err(|_| Failure::Unavailable("the answer was cut short".to_owned()))?;
        if status.is_success() {
            // An empty answer (204) reads as JSON `null`.
            let json: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            let value = serde_json::from_slice(json).map_err(|error| {
                tracing::error!(%method, path, error = %error, "the API answered what the storefront cannot read");
                Failure::Unavailable("the marketplace answered something unexpected".to_owned())
            })?;
            return Ok(Sent { value, cookies });
        }
        if status.is_client_error() {
            let problem = serde_json::from_slice::<Problem>(&bytes).unwrap_or_else(|_| Problem {
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
                StatusCode::SERVICE_UNAVAILABLE => {
                    "this part of the marketplace is busy or starting; try again shortly"
                }
                _ => "the marketplace failed to answer",
            }
            .to_owned(),
        ))
    }
}
