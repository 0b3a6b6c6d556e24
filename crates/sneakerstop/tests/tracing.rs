//! Traces a person can follow: the real binary exports its spans over OTLP/HTTP to a test
//! collector (an HTTP server decoding `ExportTraceServiceRequest` with the OpenTelemetry
//! protobuf types) while a purchase runs; and a collector that is down or slow changes no
//! answer.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;

use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sneakerstop_test_support::{Server, TestDb, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_sneakerstop");
// Generous: a new consumer group first reads what earlier tests left on the shared topics.
const DEADLINE: Duration = Duration::from_secs(60);

/// One span as the collector received it, with the `service.name` of its resource.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: opentelemetry_proto::tonic::trace::v1::Span,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<String> {
        text(&self.span.attributes, key)
    }

    fn kind(&self) -> SpanKind {
        SpanKind::try_from(self.span.kind).unwrap_or(SpanKind::Unspecified)
    }
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()?;
    Some(match value {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        other => format!("{other:?}"),
    })
}

/// A test OTLP/HTTP collector on a free port, keeping what it receives and answering after `delay`.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    async fn start(delay: Duration) -> Self {
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let store = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let store = store.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("an ExportTraceServiceRequest");
                    store.lock().unwrap().extend(request.resource_spans.into_iter().flat_map(|resource_spans| {
                        let attributes = resource_spans.resource.map(|r| r.attributes).unwrap_or_default();
                        let service = text(&attributes, "service.name").unwrap_or_default();
                        resource_spans
                            .scope_spans
                            .into_iter()
                            .flat_map(|scope| scope.spans)
                            .map(move |span| Received { service: service.clone(), span })
                    }));
                    // A slow collector: it has the spans; the exporter waits for its answer.
                    tokio::time::sleep(delay).await;
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, spans }
    }

    fn trace(&self, trace_id: &[u8]) -> Vec<Received> {
        self.spans.lock().unwrap().iter().filter(|r| r.span.trace_id == trace_id).cloned().collect()
    }
}

fn exporting_to(db: &TestDb, endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.url()),
        ("JWT_SECRET", "tracing-e2e-secret-0123456789-abcdef".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        // Export soon after a span ends, so the test need not wait the default 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000".to_owned()),
        // Logs at warn (but the line the harness waits for): the log level must not decide
        // which spans exist.
        ("RUST_LOG", "warn,sneakerstop::cli=info".to_owned()),
    ]
}

async fn call(
    http: &Client,
    server: &Server,
    method: reqwest::Method,
    path: &str,
    cookie: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = http.request(method, server.url(path)).header("cookie", cookie);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn post(http: &Client, server: &Server, path: &str, cookie: &str, body: Value) -> reqwest::Response {
    call(http, server, reqwest::Method::POST, path, cookie, Some(body)).await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_purchase_is_one_connected_trace_across_catalog_orders_and_payments() {
    let db = TestDb::new().await;
    let collector = Collector::start(Duration::ZERO).await;
    let server = Server::start(BIN, &["serve"], &exporting_to(&db, &collector.url)).await;
    let http = Client::new();
    let (seller, buyer) = (server.signup().await, server.signup().await);

    let listed =
        post(&http, &server, "/api/sneakers", &seller, json!({"title": "Jordan 1 Chicago", "price": 180, "size": 10}))
            .await;
    assert_eq!(listed.status(), StatusCode::CREATED);
    let sneaker = listed.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let order: Value = wait_until("orders to know the pair", DEADLINE, || async {
        let response = post(&http, &server, "/api/orders", &buyer, json!({"sneakerId": sneaker})).await;
        if response.status() == StatusCode::CREATED { response.json().await.ok() } else { None }
    })
    .await;
    let order = order["id"].as_str().unwrap().to_owned();
    let paid = wait_until("payments to take the payment", DEADLINE, || async {
        let response =
            post(&http, &server, "/api/payments", &buyer, json!({"orderId": order, "token": "tok_visa"})).await;
        (response.status() == StatusCode::CREATED).then_some(response)
    })
    .await;
    // The response names the trace of the payment: the one the rest of the purchase continues.
    let traceparent = paid.headers()["traceparent"].to_str().unwrap().to_owned();
    let trace_id: Vec<u8> =
        (0..16).map(|i| u8::from_str_radix(&traceparent[3 + 2 * i..5 + 2 * i], 16).unwrap()).collect();
    wait_until("the order to complete and the pair to be sold", DEADLINE, || async {
        let order = call(&http, &server, reqwest::Method::GET, &format!("/api/orders/{order}"), &buyer, None).await;
        let pair = call(&http, &server, reqwest::Method::GET, &format!("/api/sneakers/{sneaker}"), "", None).await;
        let (order, pair): (Value, Value) = (order.json().await.unwrap(), pair.json().await.unwrap());
        (order["status"] == "complete" && pair["status"] == "sold").then_some(())
    })
    .await;

    // Everything the payment caused arrives as one trace: the payment's request (payments),
    // the order completed from its event (orders), the pair sold from that one's (catalog).
    let spans = wait_until("the payment's trace to reach the collector, whole", DEADLINE, || async {
        let spans = collector.trace(&trace_id);
        let services: HashSet<&str> = spans.iter().map(|r| r.service.as_str()).collect();
        let ids: HashSet<&[u8]> = spans.iter().map(|r| r.span.span_id.as_slice()).collect();
        let whole =
            spans.iter().all(|r| r.span.parent_span_id.is_empty() || ids.contains(r.span.parent_span_id.as_slice()));
        let consumers = spans.iter().filter(|r| r.kind() == SpanKind::Consumer).count();
        let complete =
            ["sneakerstop-payments", "sneakerstop-orders", "sneakerstop-catalog"].iter().all(|s| services.contains(s));
        (complete && whole && consumers >= 2).then_some(spans)
    })
    .await;
    let summary: Vec<String> = spans.iter().map(|r| format!("{} {} {:?}", r.service, r.span.name, r.kind())).collect();

    // One root: the payment request's server span, by its route template.
    let roots: Vec<&Received> = spans.iter().filter(|r| r.span.parent_span_id.is_empty()).collect();
    assert_eq!(roots.len(), 1, "one root in {summary:#?}");
    assert_eq!(roots[0].kind(), SpanKind::Server);
    assert_eq!(roots[0].span.name, "POST /api/payments");
    assert_eq!(roots[0].service, "sneakerstop-payments");
    assert_eq!(roots[0].attribute("http.route").as_deref(), Some("/api/payments"));
    assert_eq!(roots[0].attribute("http.response.status_code").as_deref(), Some("201"));
    assert_eq!(
        format!("00-{}-{}-01", hex(&trace_id), hex(&roots[0].span.span_id)),
        traceparent,
        "the answered traceparent is the server span"
    );

    // Every consumer span's parent is the producer span that published its event.
    let by_id: HashMap<&[u8], &Received> = spans.iter().map(|r| (r.span.span_id.as_slice(), r)).collect();
    let consumers: Vec<&Received> = spans.iter().filter(|r| r.kind() == SpanKind::Consumer).collect();
    for consumer in &consumers {
        let parent = by_id[consumer.span.parent_span_id.as_slice()];
        assert_eq!(parent.kind(), SpanKind::Producer, "{} has a {:?} parent", consumer.span.name, parent.kind());
        assert_eq!(parent.attribute("messaging.message.id"), consumer.attribute("messaging.message.id"));
        assert_eq!(parent.attribute("messaging.destination.name"), consumer.attribute("messaging.destination.name"));
        assert!(consumer.attribute("messaging.kafka.offset").is_some(), "{:?}", consumer.span.attributes);
        assert!(parent.attribute("messaging.kafka.offset").is_some(), "the producer span records where the event went");
    }
    let consumed_by: HashSet<&str> = consumers.iter().map(|r| r.service.as_str()).collect();
    assert!(consumed_by.contains("sneakerstop-orders") && consumed_by.contains("sneakerstop-catalog"), "{summary:#?}");
    // The payment's transaction and the provider call are in it, with their conventions.
    assert!(
        spans.iter().any(|r| r.span.name == "paying" && r.attribute("db.system.name").as_deref() == Some("postgresql")),
        "{summary:#?}"
    );
    assert!(
        spans.iter().any(|r| r.span.name == "payment provider charge" && r.kind() == SpanKind::Client),
        "{summary:#?}"
    );
    assert!(server.terminate().await);
}

#[tokio::test]
async fn a_collector_that_is_down_or_slow_changes_no_answer() {
    // A port nothing listens on, and a collector that takes 5 s to answer each export.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let slow = Collector::start(Duration::from_secs(5)).await;
    for (what, endpoint) in [("down", closed.as_str()), ("slow", slow.url.as_str())] {
        let db = TestDb::new().await;
        let server = Server::start(BIN, &["serve"], &exporting_to(&db, endpoint)).await;
        let http = Client::new();
        let seller = server.signup().await;
        let mut slowest = Duration::ZERO;
        for n in 0..30 {
            let started = Instant::now();
            let response = post(
                &http,
                &server,
                "/api/sneakers",
                &seller,
                json!({"title": format!("Pair {n}"), "price": 100, "size": 9}),
            )
            .await;
            slowest = slowest.max(started.elapsed());
            assert_eq!(response.status(), StatusCode::CREATED, "collector {what}");
        }
        // Exports wait 2 s (timeout) to 5 s each; a request that waited for one would show it.
        assert!(slowest < Duration::from_secs(1), "collector {what}: a request took {slowest:?}");
        let metrics = wait_until("the failed or slow exports to be counted", DEADLINE, || async {
            let text = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
            let counted = text.lines().any(|l| {
                l.starts_with("otel_spans_export_failed_total ") || l.starts_with("otel_spans_exported_total ")
            });
            counted.then_some(text)
        })
        .await;
        if what == "down" {
            assert!(metrics.lines().any(|l| l.starts_with("otel_spans_export_failed_total ")), "{metrics}");
        }
        assert!(server.terminate().await);
    }
    assert!(!slow.spans.lock().unwrap().is_empty(), "the slow collector still received the spans");
}

/// A server exporting its spans to a collector of its own, with 1 s reservations and `extra`
/// settings, and an order nobody will pay.
struct Unpaid {
    collector: Collector,
    server: Server,
    /// The answer that placed the order.
    ordered: reqwest::Response,
    _db: TestDb,
}

async fn unpaid_order(extra: &[(&'static str, &str)]) -> Unpaid {
    let db = TestDb::new().await;
    let collector = Collector::start(Duration::ZERO).await;
    let mut env = exporting_to(&db, &collector.url);
    env.push(("ORDER_RESERVATION_TTL", "1s".to_owned()));
    env.extend(extra.iter().map(|(name, value)| (*name, (*value).to_owned())));
    let server = Server::start(BIN, &["serve"], &env).await;
    let http = Client::new();
    let (seller, buyer) = (server.signup().await, server.signup().await);
    let listed =
        post(&http, &server, "/api/sneakers", &seller, json!({"title": "Dunk Low", "price": 110, "size": 9})).await;
    let sneaker = listed.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let ordered = wait_until("orders to know the pair", DEADLINE, || async {
        let response = post(&http, &server, "/api/orders", &buyer, json!({"sneakerId": sneaker})).await;
        (response.status() == StatusCode::CREATED).then_some(response)
    })
    .await;
    Unpaid { collector, server, ordered, _db: db }
}

#[tokio::test]
async fn a_lapse_round_is_a_trace_of_its_own_that_the_expiry_continues() {
    let Unpaid { collector, server, _db, .. } = unpaid_order(&[]).await;

    // Nobody pays: payments closes the payment window in a round of its own; orders expires
    // the order and catalog releases the pair in that round's trace.
    let round = wait_until("a lapse round", DEADLINE, || async {
        let spans = collector.spans.lock().unwrap().clone();
        spans.into_iter().find(|r| r.span.name == "close lapsed payment windows")
    })
    .await;
    assert!(round.span.parent_span_id.is_empty(), "a round is a root");
    assert_eq!(round.service, "sneakerstop-payments");
    assert_eq!(round.attribute("items").as_deref(), Some("1"));
    for service in ["sneakerstop-orders", "sneakerstop-catalog"] {
        wait_until(&format!("{service} to apply the lapse in the round's trace"), DEADLINE, || async {
            let trace = collector.trace(&round.span.trace_id);
            trace.iter().any(|r| r.kind() == SpanKind::Consumer && r.service == service).then_some(())
        })
        .await;
    }
    assert!(server.terminate().await);
}

#[tokio::test]
async fn an_expiry_round_is_a_trace_of_its_own_linked_to_the_orders_it_expired() {
    // The backstop: payments never says the reservation lapsed, so orders' sweeper expires
    // it, at once past the deadline.
    let Unpaid { collector, server, ordered, _db } =
        unpaid_order(&[("PAYMENT_LAPSE_INTERVAL", "1h"), ("ORDER_EXPIRY_GRACE", "0s")]).await;
    let placed_in = ordered.headers()["traceparent"].to_str().unwrap()[3..35].to_owned();

    // Nobody pays: the sweeper expires the order in a round of its own, linked to the trace
    // the order was placed in; idle rounds (every second) leave no span at all.
    let round = wait_until("an expiry round linked to the order's trace", DEADLINE, || async {
        let spans = collector.spans.lock().unwrap().clone();
        spans.into_iter().find(|r| {
            r.span.name == "expire lapsed orders" && r.span.links.iter().any(|l| hex(&l.trace_id) == placed_in)
        })
    })
    .await;
    assert!(round.span.parent_span_id.is_empty(), "a round is a root");
    assert_eq!(round.service, "sneakerstop-orders");
    assert_eq!(round.attribute("items").as_deref(), Some("1"));
    let rounds = collector.spans.lock().unwrap().iter().filter(|r| r.span.name == "expire lapsed orders").count();
    assert_eq!(rounds, 1, "only the round that found work left a span");
    // The expiry's event and its consumers continue the round's trace.
    wait_until("catalog to release the pair in the round's trace", DEADLINE, || async {
        let trace = collector.trace(&round.span.trace_id);
        trace.iter().any(|r| r.kind() == SpanKind::Consumer && r.service == "sneakerstop-catalog").then_some(())
    })
    .await;
    assert!(server.terminate().await);
}
