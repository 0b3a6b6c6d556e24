//! The HTTP surface every SneakerStop process shares, around the services it runs.
//!
//! All services sit behind one port, routed by path as the original's ingress did
//! (`/api/users` → identity, ...). Around them: `/healthz`, `/readyz`, `/metrics`,
//! `/api-docs/openapi.json`, Swagger UI at `/docs`, problem+json for unknown routes and
//! methods, a body size limit, request ids, tracing and HTTP metrics.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use sneakerstop_health::{Check, Detail};
use sneakerstop_problem::{MAX_BODY_BYTES, Problem};
use swagger_ui_dist::{ApiDefinition, OpenApiSource};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api-docs/openapi.json";

/// The OpenAPI document of the given services' documents merged.
pub fn openapi(parts: impl IntoIterator<Item = OpenApi>) -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("SneakerStop API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "An event-driven sneaker marketplace. Errors are RFC 9457 problem+json; \
                     sessions are a `session` cookie or an `Authorization: Bearer` token.",
                ))
                .build(),
        )
        .build();
    for part in parts {
        doc.merge(part);
    }
    document_shared_responses(&mut doc);
    doc
}

/// Answers every operation of a kind may give, stated once here rather than on each handler:
/// 401 for those that need a session, 422 for those that take an `Idempotency-Key`, and 429
/// for those the per-user write limit covers.
fn document_shared_responses(doc: &mut OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
            )
            .build()
    };
    let (unauthorized, reused) = (problem("Not signed in"), problem("Idempotency-Key reused with a different body"));
    for item in doc.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
        for operation in operations.into_iter().flatten() {
            let needs_session = operation.security.as_ref().is_some_and(|alternatives| {
                !alternatives.is_empty()
                    && alternatives.iter().all(|a| serde_json::to_value(a).is_ok_and(|v| v != serde_json::json!({})))
            });
            let takes_key =
                operation.parameters.as_ref().is_some_and(|params| params.iter().any(|p| p.name == "Idempotency-Key"));
            let responses = &mut operation.responses.responses;
            if needs_session {
                responses.entry("401".into()).or_insert_with(|| unauthorized.clone().into());
            }
            if takes_key {
                responses.entry("422".into()).or_insert_with(|| reused.clone().into());
            }
        }
    }
    document_write_limit(doc);
}

/// Every operation the per-user write limit covers may answer 429: say so once, here, for
/// exactly the operations [`sneakerstop_auth::limit::is_limited`] picks.
fn document_write_limit(doc: &mut OpenApi) {
    use axum::http::Method;
    use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, ResponseBuilder};
    let limited = ResponseBuilder::new()
        .description("Over this user's write limit (`WRITE_LIMIT_*`); `Retry-After` says when to try again")
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
        )
        .header("retry-after", HeaderBuilder::new().description(Some("Seconds to wait")).build())
        .build();
    for (path, item) in &mut doc.paths.paths {
        let operations = [
            (Method::POST, &mut item.post),
            (Method::PUT, &mut item.put),
            (Method::PATCH, &mut item.patch),
            (Method::DELETE, &mut item.delete),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation.as_mut().filter(|_| sneakerstop_auth::limit::is_limited(&method, path)) {
                operation.responses.responses.entry("429".into()).or_insert_with(|| limited.clone().into());
            }
        }
    }
}

/// The whole application: `services` plus health, metrics, docs and the shared layers;
/// browsers on `cors_origins` may call it with credentials. Without a storefront serving
/// `/`, `home_to_docs` sends `/` to the API documentation.
pub fn app(
    services: Router,
    checks: Vec<Check>,
    details: Vec<Detail>,
    doc: OpenApi,
    cors_origins: &[String],
    home_to_docs: bool,
) -> Router {
    let spec = doc.to_json().unwrap_or_else(|e| unreachable!("an OpenAPI document always serializes: {e}"));
    let docs = swagger_ui_dist::generate_routes(ApiDefinition {
        uri_prefix: "/docs",
        api_definition: OpenApiSource::Uri(OPENAPI_PATH),
        title: Some("SneakerStop API"),
    });
    let services =
        if home_to_docs { services.route("/", get(|| async { Redirect::temporary("/docs") })) } else { services };
    let api = services
        .route(
            OPENAPI_PATH,
            get(move || {
                let spec = spec.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], spec) }
            }),
        )
        .route("/docs/index.html", get(docs_canonical))
        .merge(docs)
        .merge(sneakerstop_health::router(checks, details))
        .fallback(|| async { Problem::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed")
                .with_detail("this endpoint does not accept that method; see /docs")
                .into_response()
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    // swagger-ui-dist builds its asset links from the request's path, so `/docs/` would link
    // `/docs//swagger-ui.css` (a 404 and a blank page): send `/docs/` to `/docs` first.
    let api = api.layer(axum::middleware::from_fn(docs_without_slash));
    let api = match cors(cors_origins) {
        Some(cors) => api.layer(cors),
        None => api,
    };
    sneakerstop_telemetry::http_layers(api).merge(sneakerstop_telemetry::metrics_router())
}

/// The CORS policy: the configured origins only, with credentials (the session cookie),
/// the methods and headers the API uses, and the response headers a page needs to read.
/// Without origins there is no policy at all, so browsers allow same-origin pages only.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::IF_MATCH,
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([
                header::ETAG,
                header::RETRY_AFTER,
                header::LOCATION,
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("x-cache"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// `/docs/` and `/docs/index.html` → `/docs` (308, so the query string and method stay).
async fn docs_canonical(uri: axum::http::Uri) -> Redirect {
    match uri.query() {
        Some(query) => Redirect::permanent(&format!("/docs?{query}")),
        None => Redirect::permanent("/docs"),
    }
}

async fn docs_without_slash(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    if request.uri().path() == "/docs/" {
        return docs_canonical(request.uri().clone()).await.into_response();
    }
    next.run(request).await
}
