//! Telemetry: structured logs, request ids, and Prometheus metrics.
//!
//! - [`init_logging`] installs a `tracing` subscriber writing JSON (or pretty) lines, each
//!   inside a span with its `trace_id` and `span_id`, and bridging spans to OpenTelemetry
//!   ([`otel`]: exported over OTLP when an endpoint is configured).
//! - [`http_layers`] wraps a router so every request gets an `x-request-id` (taken from the
//!   caller or generated), a server span (continuing the caller's `traceparent`), and its
//!   count and latency recorded per route template and status.
//! - [`trace`] carries the W3C `traceparent` from requests into the events they cause.
//! - [`metrics_handle`] installs the process-wide Prometheus recorder once; [`metrics_router`]
//!   serves it at `GET /metrics`.

pub mod otel;
pub mod trace;

use std::sync::OnceLock;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::trace::SdkTracerProvider;
use sneakerstop_settings::{LogFormat, LogSettings};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The header that carries a request's id in and out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Installs the global subscriber: logs to stdout, spans to OpenTelemetry. Safe to call more
/// than once (later calls do nothing). Call [`shutdown`] before exiting so the last spans
/// are exported.
pub fn init_logging(settings: &LogSettings) {
    install(settings, false);
}

/// [`init_logging`] for tests: pretty lines to the test harness's captured output.
pub fn init_test_logging() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    install(&LogSettings { filter, format: LogFormat::Pretty }, true);
}

fn install(settings: &LogSettings, test: bool) {
    let writer = if test {
        BoxMakeWriter::new(tracing_subscriber::fmt::TestWriter::default)
    } else {
        BoxMakeWriter::new(std::io::stdout)
    };
    // An error only means a subscriber is already installed (tests start several servers).
    let _ = subscriber(settings, writer, PROVIDER.get_or_init(otel::provider)).try_init();
}

/// Log lines to `writer`, spans to `provider` (and the services they belong to).
fn subscriber(
    settings: &LogSettings,
    writer: BoxMakeWriter,
    provider: &SdkTracerProvider,
) -> Box<dyn tracing::Subscriber + Send + Sync> {
    // RUST_LOG decides which lines are logged, never which spans exist: a warn-level log must
    // not switch tracing off. Spans are our crates' (`sneakerstop_*`) at info and above.
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let traced = Targets::new().with_target("sneakerstop", tracing::Level::INFO);
    let tracer = opentelemetry::trace::TracerProvider::tracer(provider, "sneakerstop");
    // No busy/idle timing (two clock reads per poll of every request's future).
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false);
    let logs = tracing_subscriber::fmt::layer().with_writer(writer);
    // Which service a span belongs to matters only to the exporter.
    let services = otel::export_configured().then(|| otel::ServiceLayer::default().with_filter(traced.clone()));
    let registry = tracing_subscriber::registry().with(services).with(spans.with_filter(traced));
    match settings.format {
        LogFormat::Json => Box::new(
            registry
                .with(
                    logs.with_ansi(false)
                        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                        .event_format(WithTraceIds(
                            tracing_subscriber::fmt::format()
                                .json()
                                .flatten_event(true)
                                .with_current_span(true)
                                .with_span_list(false),
                        ))
                        .with_filter(filter),
                )
                .with(AskEveryTime),
        ),
        LogFormat::Pretty => Box::new(
            registry
                .with(logs.event_format(WithTraceIds(tracing_subscriber::fmt::format())).with_filter(filter))
                .with(AskEveryTime),
        ),
    }
}

/// Makes every callsite ask the filters each time it fires, instead of caching "always".
///
/// Per-layer filters pass their verdict on an event from `enabled` to `on_event` through a
/// thread-local; a callsite cached as "always" skips `enabled`, so it reads whatever the last
/// question left there. Crates asking through the `log` facade (`log_enabled!`, as sqlx's
/// query logger does after every query, answered by tracing-log) ask without logging, and the
/// next line on that thread — or span — was silently dropped: with `RUST_LOG=info,librdkafka=warn`
/// the server's own "listening" line was lost after its migrations
/// (tokio-rs/tracing#2519; the fix proposed upstream, #3572, does the same as this layer).
/// The cost is one filter check per log line and span, which the filters keep cheap.
#[derive(Debug, Clone, Copy)]
struct AskEveryTime;

impl<S: tracing::Subscriber> Layer<S> for AskEveryTime {
    fn register_callsite(&self, _: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
}

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Exports the spans still queued (waiting up to the exporter's timeout).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.shutdown();
    }
}

/// A log line's format with the `trace_id` and `span_id` of the span it is written in.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        // The entered span's OpenTelemetry context is the current one (context activation),
        // whether or not this layer's filter logs spans at its level. (`Span::current()` is
        // no use here: inside an event's dispatch it is always the empty span.)
        let context = opentelemetry::Context::current();
        let span = context.span();
        let ids = span.span_context();
        if !ids.is_valid() {
            return self.0.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, r#"{{"trace_id":"{}","span_id":"{}",{rest}"#, ids.trace_id(), ids.span_id()),
            None => write!(writer, "trace_id={} span_id={} {line}", ids.trace_id(), ids.span_id()),
        }
    }
}

/// Latency buckets (seconds) for every duration histogram we export: finer between 50 and
/// 250 ms, where the event hop's 100 ms objective sits.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .unwrap_or_else(|e| unreachable!("static, non-empty buckets were refused: {e}"))
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, which this OnceLock rules out.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// `GET /metrics` in the Prometheus text format.
pub fn metrics_router() -> Router {
    let handle = metrics_handle();
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response() }
        }),
    )
}

/// Wraps `router` with request ids, a tracing span per request, and HTTP metrics.
pub fn http_layers(router: Router) -> Router {
    // Make sure the recorder exists before the first request records into it.
    metrics_handle();
    router
        .layer(middleware::from_fn(record_metrics))
        .layer(middleware::from_fn(trace::answer_traceparent))
        .layer(TraceLayer::new_for_http().make_span_with(server_span).on_response(
            |response: &Response, latency: std::time::Duration, span: &tracing::Span| {
                let status = response.status();
                span.record("http.response.status_code", status.as_u16());
                if status.is_server_error() {
                    span.record("otel.status_code", "ERROR");
                }
                tracing::info!(status = status.as_u16(), latency_ms = latency.as_secs_f64() * 1e3, "answered");
            },
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The server span of a request (none for the health probes), named and attributed per OpenTelemetry's HTTP conventions
/// (`GET /api/orders/{id}`: the route template, never the raw path with its ids), in the trace
/// of the caller's `traceparent` if it sent one.
fn server_span(request: &Request) -> tracing::Span {
    // Probes ask every few seconds and cause nothing: no span, no trace.
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return tracing::Span::none();
    }
    let id = request.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or("-");
    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    let method = request.method().as_str();
    let span = tracing::info_span!(
        "http",
        otel.name = format!("{method} {}", route.unwrap_or("")).trim_end(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = route,
        url.path = request.uri().path(),
        http.response.status_code = tracing::field::Empty,
        request_id = %id,
        service = service_of_path(request.uri().path()),
    );
    trace::continue_trace(&span, trace::from_headers(request.headers()));
    span
}

/// The service that answers `path` (all four share one router and port).
fn service_of_path(path: &str) -> Option<&'static str> {
    let resource = path.strip_prefix("/api/")?.split('/').next()?;
    match resource {
        "users" => Some("identity"),
        "sneakers" => Some("catalog"),
        "orders" => Some("orders"),
        "payments" => Some("payments"),
        _ => None,
    }
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    // The route template (`/api/sneakers/{id}`), not the raw path, keeps label sets bounded.
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use std::sync::{Arc, Mutex};
    use tower::ServiceExt;

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_inside_a_span_carry_its_trace_and_span_ids_whatever_the_log_level() {
        let captured = Captured::default();
        let writer = captured.clone();
        // Logging at warn only: spans (info) must exist all the same, for traces and their ids.
        let settings = LogSettings { filter: "warn".to_owned(), format: LogFormat::Json };
        let provider = SdkTracerProvider::builder().build();
        let subscriber = subscriber(&settings, BoxMakeWriter::new(move || writer.clone()), &provider);
        let ids = tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("outer");
            let ids = outer.in_scope(|| {
                let inner = tracing::info_span!("inner");
                inner.in_scope(|| {
                    tracing::info!("not logged");
                    tracing::warn!("inside");
                    trace::TraceContext::current().unwrap()
                })
            });
            tracing::warn!("outside");
            ids
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(!text.contains("not logged"), "{text}");
        let inside = lines.iter().find(|l| l["message"] == "inside").unwrap();
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(inside["trace_id"], hex(&ids.trace_id), "{text}");
        assert_eq!(inside["span_id"], hex(&ids.span_id), "the innermost span's id: {text}");
        let outside = lines.iter().find(|l| l["message"] == "outside").unwrap();
        assert!(outside.get("trace_id").is_none(), "no span, no ids: {text}");
    }

    #[test]
    fn asking_whether_something_is_enabled_never_swallows_the_next_line() {
        let captured = Captured::default();
        let writer = captured.clone();
        // A filter with a directive for a target, as `RUST_LOG=info,librdkafka=warn` has.
        let settings = LogSettings { filter: "warn,sneakerstop_telemetry=info".to_owned(), format: LogFormat::Json };
        let provider = SdkTracerProvider::builder().build();
        let subscriber = subscriber(&settings, BoxMakeWriter::new(move || writer.clone()), &provider);
        tracing::subscriber::with_default(subscriber, || {
            for round in 0..3 {
                tracing::info!(round, "before");
                // What sqlx's query logger does after every query, through the log crate and
                // tracing-log (as the binary's subscriber installs it): ask, and log nothing.
                let question = log::Metadata::builder().level(log::Level::Info).target("sneakerstop_probe").build();
                let _ = log::Log::enabled(&tracing_log::LogTracer::new(), &question);
                tracing::info!(round, "after");
            }
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("\"after\"").count(), 3, "every line after an `enabled` question is logged: {text}");
        assert_eq!(text.matches("\"before\"").count(), 3, "{text}");
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_and_carry_a_request_id() {
        let app = http_layers(Router::new().route("/things/{id}", get(|| async { "thing" }))).merge(metrics_router());
        let response = app.clone().oneshot(Request::get("/things/42").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key(REQUEST_ID), "a request id is generated");

        let response = app
            .clone()
            .oneshot(Request::get("/things/7").header(REQUEST_ID, "abc-123").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.headers()[REQUEST_ID], "abc-123", "a caller's request id is kept");

        let response = app.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
        let text =
            String::from_utf8(axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("http_requests_total{") && l.contains(r#"route="/things/{id}""#))
            .unwrap_or_else(|| panic!("no counter for the route template in:\n{text}"));
        assert!(line.contains(r#"status="200""#) && line.ends_with(" 2"), "{line}");
        assert!(text.contains("http_request_duration_seconds_bucket{"), "latency is a histogram:\n{text}");
    }
}
