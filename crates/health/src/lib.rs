//! `GET /healthz` (the process is alive) and `GET /readyz` (its dependencies answer).
//!
//! Liveness never touches a dependency: a database outage must not make an orchestrator
//! restart every pod. It does show the process's own [`Detail`]s — such as each consumer
//! group's lag and whether it is stalled — and says `degraded`, naming the problem, when one
//! reports one; it still answers 200, because restarting the pod is not what fixes a stalled
//! group (an alert on the metric is; see docs/operations.md). Readiness runs every registered
//! [`Check`] with a deadline and answers 503 naming the failing ones, so traffic goes
//! elsewhere until they recover.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type CheckFn = dyn Fn() -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync;

/// A named readiness check, such as "postgres:identity".
#[derive(Clone)]
pub struct Check {
    name: String,
    run: Arc<CheckFn>,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Check {
    /// A check called `name` that succeeds when `run` returns `Ok`.
    pub fn new<F, Fut>(name: impl Into<String>, run: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self { name: name.into(), run: Arc::new(move || Box::pin(run())) }
    }
}

type DetailFn = dyn Fn() -> (serde_json::Value, Vec<String>) + Send + Sync;

/// A named part of the process's own state shown by `/healthz`: its figures, and the
/// problems in them described for a person (none when all is well).
#[derive(Clone)]
pub struct Detail {
    name: String,
    report: Arc<DetailFn>,
}

impl std::fmt::Debug for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detail").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Detail {
    /// A detail called `name`, reported by `report`.
    pub fn new(
        name: impl Into<String>,
        report: impl Fn() -> (serde_json::Value, Vec<String>) + Send + Sync + 'static,
    ) -> Self {
        Self { name: name.into(), report: Arc::new(report) }
    }
}

/// The health routes, answering for `checks` (readiness) and `details` (liveness).
pub fn router(checks: Vec<Check>, details: Vec<Detail>) -> Router {
    Router::new()
        .route("/healthz", get(alive).with_state(Arc::new(details)))
        .route("/readyz", get(ready).with_state(Arc::new(checks)))
}

async fn alive(State(details): State<Arc<Vec<Detail>>>) -> Response {
    let mut problems = Vec::new();
    let mut figures = serde_json::Map::new();
    for detail in details.iter() {
        let (value, mut found) = (detail.report)();
        figures.insert(detail.name.clone(), value);
        problems.append(&mut found);
    }
    let status = if problems.is_empty() { "ok" } else { "degraded" };
    axum::Json(serde_json::json!({"status": status, "problems": problems, "details": figures})).into_response()
}

async fn ready(State(checks): State<Arc<Vec<Check>>>) -> Response {
    let results = futures::future::join_all(checks.iter().map(|check| async move {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, (check.run)()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        };
        (check.name.clone(), outcome)
    }))
    .await;
    let ready = results.iter().all(|(_, outcome)| outcome.is_ok());
    let report: BTreeMap<String, String> = results
        .into_iter()
        .map(|(name, outcome)| {
            let text = match outcome {
                Ok(()) => "ok".to_owned(),
                Err(reason) => {
                    tracing::warn!(check = %name, %reason, "readiness check failed");
                    reason
                }
            };
            (name, text)
        })
        .collect();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({"status": if ready { "ready" } else { "unavailable" }, "checks": report});
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_json(app: Router, path: &str) -> (StatusCode, serde_json::Value) {
        let response = app.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn ready_when_every_check_passes() {
        let app = router(vec![Check::new("a", || async { Ok(()) }), Check::new("b", || async { Ok(()) })], vec![]);
        let (status, body) = get_json(app, "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["checks"]["a"], "ok");
        assert_eq!(body["checks"]["b"], "ok");
    }

    #[tokio::test]
    async fn unavailable_names_the_failing_check() {
        let app = router(
            vec![
                Check::new("good", || async { Ok(()) }),
                Check::new("bad", || async { anyhow::bail!("connection refused") }),
            ],
            vec![],
        );
        let (status, body) = get_json(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "unavailable");
        assert_eq!(body["checks"]["bad"], "connection refused");
        assert_eq!(body["checks"]["good"], "ok");
        // Liveness does not depend on the checks.
        let (status, body) = get_json(app, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
    }

    #[tokio::test]
    async fn liveness_says_degraded_and_names_the_problem_but_stays_200() {
        let healthy = Detail::new("consumers", || (serde_json::json!({"g": {"lag": 0}}), vec![]));
        let (status, body) = get_json(router(vec![], vec![healthy]), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["details"]["consumers"]["g"]["lag"], 0);

        let stalled = Detail::new("consumers", || (serde_json::json!({"g": {"lag": 9}}), vec!["g is stalled".into()]));
        let (status, body) = get_json(router(vec![], vec![stalled]), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["problems"][0], "g is stalled");
    }
}
