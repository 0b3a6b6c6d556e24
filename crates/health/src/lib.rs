//! `GET /healthz` (the process is alive) and `GET /readyz` (its dependencies answer).
//!
//! Liveness never touches a dependency: a database outage must not make an orchestrator
//! restart every pod. Readiness runs every registered [`Check`] with a deadline and answers
//! 503 naming the failing ones, so traffic goes elsewhere until they recover.

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

/// A named readiness check, such as "postgres:identity" or "kafka".
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

/// The health routes, answering for `checks`.
pub fn router(checks: Vec<Check>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .with_state(Arc::new(checks))
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
        let app = router(vec![Check::new("a", || async { Ok(()) }), Check::new("b", || async { Ok(()) })]);
        let (status, body) = get_json(app, "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["checks"]["a"], "ok");
        assert_eq!(body["checks"]["b"], "ok");
    }

    #[tokio::test]
    async fn unavailable_names_the_failing_check() {
        let app = router(vec![
            Check::new("good", || async { Ok(()) }),
            Check::new("bad", || async { anyhow::bail!("connection refused") }),
        ]);
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
}
