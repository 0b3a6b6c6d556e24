//! The marketplace's HTTP API as the load driver uses it, every call measured.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::stats::Recorder;

/// An HTTP client for one base URL.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct User {
    /// `Bearer <jwt>`.
    pub auth: String,
    /// The email the user signs in with.
    pub email: String,
    /// The `device=<token>` cookie the server set: this browser has signed in to the
    /// account before (a known device, which gets a reserved place when sign-ins queue).
    pub device: Option<String>,
}

/// What a browser downloads for one storefront page: its HTML and the stylesheets and
/// scripts it links (uncompressed).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageWeight {
    /// The page's path.
    pub page: String,
    pub html_bytes: usize,
    pub asset_bytes: usize,
}

impl PageWeight {
    /// Everything the page needs.
    pub fn total_bytes(&self) -> usize {
        self.html_bytes + self.asset_bytes
    }
}

/// The stylesheets and scripts a page links (`href="/static/…"`, `src="/static/…"`).
fn linked_assets(html: &str) -> Vec<String> {
    let mut assets: Vec<String> = html
        .match_indices("=\"/static/")
        .filter_map(|(at, _)| {
            let rest = &html[at + 2..];
            rest.find('"').map(|end| rest[..end].to_owned())
        })
        .collect();
    assets.sort();
    assets.dedup();
    assets
}

/// The password of every user the driver creates.
pub const PASSWORD: &str = "load-test-password";

/// What one call returned.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Api {
    /// A client for `base` (`http://127.0.0.1:8080`).
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(1024).build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned() })
    }

    /// What a browser downloads for the page at `path` (as `user`, with their session cookie).
    pub async fn page_weight(&self, path: &str, user: Option<&User>) -> anyhow::Result<PageWeight> {
        let get = |path: &str| {
            let request = self.http.get(format!("{}{path}", self.base));
            match user {
                Some(user) => request.header("cookie", format!("session={}", user.auth.trim_start_matches("Bearer "))),
                None => request,
            }
        };
        let html = get(path).send().await?.error_for_status()?.text().await?;
        let mut asset_bytes = 0;
        for asset in linked_assets(&html) {
            asset_bytes += get(&asset).send().await?.error_for_status()?.bytes().await?.len();
        }
        Ok(PageWeight { page: path.to_owned(), html_bytes: html.len(), asset_bytes })
    }

    /// Sends one request and records it under `endpoint`. A status in `expected` is not an
    /// error; anything else (and no answer at all) is.
    #[allow(clippy::too_many_arguments, reason = "one call site per endpoint reads best with every part spelled out")]
    pub async fn call(
        &self,
        rec: &mut Recorder,
        endpoint: &'static str,
        method: Method,
        path: &str,
        user: Option<&User>,
        body: Option<Value>,
        expected: &[StatusCode],
    ) -> Option<Reply> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(user) = user {
            request = request.header("authorization", &user.auth);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.measure(rec, endpoint, request, expected).await
    }

    /// Signs in as `email` with `password`, as a client at address `from` (sent as
    /// `X-Forwarded-For`, believed only by a server that trusts the driver as a proxy), and
    /// records it under `endpoint`.
    pub async fn signin(
        &self,
        rec: &mut Recorder,
        endpoint: &'static str,
        (email, password): (&str, &str),
        (from, device): (std::net::IpAddr, Option<&str>),
        expected: &[StatusCode],
    ) -> Option<Reply> {
        let mut request = self
            .http
            .post(format!("{}/api/users/signin", self.base))
            .header("x-forwarded-for", from.to_string())
            .json(&json!({"email": email, "password": password}));
        if let Some(device) = device {
            request = request.header("cookie", device);
        }
        self.measure(rec, endpoint, request, expected).await
    }

    async fn measure(
        &self,
        rec: &mut Recorder,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
        expected: &[StatusCode],
    ) -> Option<Reply> {
        let started = Instant::now();
        let outcome = async {
            let response = request.send().await?;
            let status = response.status();
            let bytes = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, bytes))
        }
        .await;
        match outcome {
            Ok((status, bytes)) => {
                let error = !expected.contains(&status);
                rec.record(endpoint, started.elapsed(), Some(status.as_u16()), error);
                Some(Reply { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) })
            }
            Err(_) => {
                rec.record(endpoint, started.elapsed(), None, true);
                None
            }
        }
    }

    /// Signs up a fresh user (not measured: set-up).
    pub async fn signup(&self, label: &str) -> anyhow::Result<User> {
        let email = format!("load-{label}-{}@example.com", uuid::Uuid::new_v4().simple());
        let response = self
            .http
            .post(format!("{}/api/users/signup", self.base))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await?;
        anyhow::ensure!(response.status() == StatusCode::CREATED, "signup answered {}", response.status());
        signed_in(&response, &email)
    }

    /// Signs an existing user in (not measured: set-up).
    pub async fn signin_user(&self, email: &str, password: &str) -> anyhow::Result<User> {
        let response = self
            .http
            .post(format!("{}/api/users/signin", self.base))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await?;
        anyhow::ensure!(response.status() == StatusCode::OK, "signin answered {}", response.status());
        signed_in(&response, email)
    }

    /// A streaming GET (a live market stream), unmeasured.
    pub async fn stream(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let response = self.http.get(format!("{}{path}", self.base)).timeout(Duration::from_secs(3600)).send().await?;
        anyhow::ensure!(response.status() == StatusCode::OK, "{path} answered {}", response.status());
        Ok(response)
    }

    /// The server's Prometheus metrics text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self.http.get(format!("{}/metrics", self.base)).send().await?.text().await?)
    }
}

/// The user a signup or signin answer started a session for.
fn signed_in(response: &reqwest::Response, email: &str) -> anyhow::Result<User> {
    let cookies: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next())
        .collect();
    let session = cookies
        .iter()
        .find_map(|c| c.strip_prefix("session="))
        .ok_or_else(|| anyhow::anyhow!("no session cookie set"))?;
    let device = cookies.iter().find(|c| c.starts_with("device=")).map(|c| (*c).to_owned());
    Ok(User { auth: format!("Bearer {session}"), email: email.to_owned(), device })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_links_its_stylesheets_and_scripts_once_each() {
        let html = r#"<link rel="stylesheet" href="/static/site.css"><script src="/static/product.js" defer></script>
            <a href="/products/1">x</a><link href="/static/site.css">"#;
        assert_eq!(linked_assets(html), ["/static/product.js", "/static/site.css"]);
    }
}
