//! Spans exported with the OpenTelemetry SDK over OTLP/HTTP (protobuf), bridged from `tracing`.
//!
//! Configured by the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns export on; `OTEL_TRACES_SAMPLER(_ARG)`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*` and `OTEL_EXPORTER_OTLP_TIMEOUT` are read by the
//! SDK. Without an endpoint spans still get ids (logs and event headers carry them) but
//! nothing leaves the process.
//!
//! Export never slows a request: spans go to the SDK's batch processor (its own thread) through
//! a bounded queue; when the queue is full a span is dropped and counted in
//! `otel_spans_dropped_total`, never waited for. The HTTP requests run on the process's Tokio
//! runtime with our one `reqwest` client.
//!
//! Several services may run in one process (`sneakerstop serve` runs all four). Each span
//! belongs to the service named by its own `service` field or, failing that, its parent's
//! ([`ServiceLayer`]); spans are exported with `service.name = sneakerstop-<service>` unless
//! `OTEL_SERVICE_NAME` is set, which then names every span of the process.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor};
use tracing::span::{Attributes, Id};
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

/// The span attribute naming the service a span belongs to.
pub const SERVICE_ATTRIBUTE: &str = "service";

/// Whether an OTLP endpoint is configured (export is on).
pub fn export_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
}

/// The process's tracer provider: exporting over OTLP when an endpoint is configured (and a
/// Tokio runtime is running to send with), otherwise only giving spans their ids.
pub fn provider() -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder().with_resource(resource());
    let runtime = tokio::runtime::Handle::try_current();
    match runtime {
        Ok(runtime) if export_configured() => match exporting(runtime) {
            Ok(processor) => return builder.with_span_processor(processor).build(),
            Err(error) => eprintln!("OpenTelemetry export is off: {error}"),
        },
        _ => {}
    }
    builder.build()
}

fn exporting(runtime: tokio::runtime::Handle) -> anyhow::Result<Bounded> {
    let timeout = std::env::var("OTEL_EXPORTER_OTLP_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis);
    let client = TokioClient { client: reqwest::Client::builder().timeout(timeout).build()?, runtime };
    let capacity = std::env::var("OTEL_BSP_MAX_QUEUE_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(2048usize);
    let pending = Arc::new(AtomicUsize::new(0));
    let by_service = ByService {
        client: Arc::new(client),
        exporters: Exporters::default(),
        fixed_name: service_name_set(),
        resource: resource(),
        pending: pending.clone(),
    };
    // The processor's own queue is larger than ours, so it never drops (and so never
    // drops silently): `Bounded` refuses first, and counts.
    let processor = BatchSpanProcessor::builder(by_service)
        .with_batch_config(
            opentelemetry_sdk::trace::BatchConfigBuilder::default()
                .with_max_queue_size(capacity.saturating_mul(2))
                .build(),
        )
        .build();
    Ok(Bounded { inner: processor, pending, capacity })
}

/// The process's resource (`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`; `sneakerstop` when
/// that is unset).
fn resource() -> Resource {
    let builder = Resource::builder();
    if service_name_set() { builder.build() } else { builder.with_service_name("sneakerstop").build() }
}

/// Whether `OTEL_SERVICE_NAME` names every span of the process.
fn service_name_set() -> bool {
    std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
}

/// One OTLP exporter per `service.name`, made on first use.
#[derive(Debug, Default)]
struct Exporters(Mutex<HashMap<String, Arc<opentelemetry_otlp::SpanExporter>>>);

impl Exporters {
    fn get_or_make(
        &self,
        name: &str,
        make: impl FnOnce() -> anyhow::Result<opentelemetry_otlp::SpanExporter>,
    ) -> anyhow::Result<Arc<opentelemetry_otlp::SpanExporter>> {
        let mut exporters = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(exporter) = exporters.get(name) {
            return Ok(exporter.clone());
        }
        let exporter = Arc::new(make()?);
        exporters.insert(name.to_owned(), exporter.clone());
        Ok(exporter)
    }
}

/// The batch processor behind a queue of bounded size that drops (and counts) rather than waits.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    pending: Arc<AtomicUsize>,
    capacity: usize,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let admitted = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.capacity).then_some(n + 1))
            .is_ok();
        if admitted {
            self.inner.on_end(span);
        } else {
            metrics::counter!("otel_spans_dropped_total").increment(1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Exports each batch grouped by the service its spans belong to, each group under its own
/// `service.name`.
#[derive(Debug)]
struct ByService {
    client: Arc<TokioClient>,
    exporters: Exporters,
    fixed_name: bool,
    resource: Resource,
    pending: Arc<AtomicUsize>,
}

impl ByService {
    fn service_name(&self, span: &SpanData) -> String {
        let service =
            span.attributes.iter().find(|kv| kv.key.as_str() == SERVICE_ATTRIBUTE).map(|kv| kv.value.as_str());
        match service {
            Some(service) if !self.fixed_name => format!("sneakerstop-{service}"),
            _ => self
                .resource
                .get(&opentelemetry::Key::from_static_str("service.name"))
                .map_or_else(|| "sneakerstop".to_owned(), |v| v.as_str().into_owned()),
        }
    }

    fn exporter(&self, name: &str) -> anyhow::Result<Arc<opentelemetry_otlp::SpanExporter>> {
        self.exporters.get_or_make(name, || {
            let mut exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(SharedClient(self.client.clone()))
                .build()?;
            let resource = Resource::builder()
                .with_attributes(self.resource.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())))
                .with_service_name(name.to_owned())
                .build();
            exporter.set_resource(&resource);
            Ok(exporter)
        })
    }
}

impl SpanExporter for ByService {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        // These spans have left the queue.
        let _ = self.pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(batch.len())));
        let mut groups: HashMap<String, Vec<SpanData>> = HashMap::new();
        for span in batch {
            groups.entry(self.service_name(&span)).or_default().push(span);
        }
        let mut failure = None;
        for (name, spans) in groups {
            let count = spans.len() as u64;
            let result = match self.exporter(&name) {
                Ok(exporter) => exporter.export(spans).await,
                Err(error) => Err(OTelSdkError::InternalFailure(format!("{error:#}"))),
            };
            match result {
                Ok(()) => metrics::counter!("otel_spans_exported_total").increment(count),
                Err(error) => {
                    metrics::counter!("otel_spans_export_failed_total").increment(count);
                    failure = Some(error);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.clone();
    }
}

/// Sends the exporter's requests on the process's Tokio runtime with `reqwest` (the batch
/// processor's thread only waits for the answer).
#[derive(Debug)]
struct TokioClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// [`TokioClient`] shared by the per-service exporters.
#[derive(Debug, Clone)]
struct SharedClient(Arc<TokioClient>);

type Sent<'a> = Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'a>>;

impl HttpClient for SharedClient {
    // The trait is declared with `async_trait`; this is its expanded signature.
    fn send_bytes<'life0, 'async_trait>(&'life0 self, request: Request<Bytes>) -> Sent<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let client = self.0.client.clone();
        let task = self.0.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let response = client.execute(request).await?;
            let mut answer = Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                headers.extend(response.headers().iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let body = response.bytes().await?;
            Ok::<_, HttpError>(answer.body(body)?)
        });
        Box::pin(async move { task.await.map_err(|e| Box::new(e) as HttpError)? })
    }
}

/// Gives every span the service it belongs to: its own `service` field, or its parent's. A
/// span that names none gets its parent's as the [`SERVICE_ATTRIBUTE`] attribute when it
/// closes (before the OpenTelemetry layer ends it: install this layer first).
#[derive(Debug, Default)]
pub struct ServiceLayer {
    dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
}

/// The service a span belongs to, and whether it said so itself.
#[derive(Debug, Clone)]
struct ServiceOf {
    name: Arc<str>,
    inherited: bool,
}

#[derive(Default)]
struct ServiceField(Option<String>);

impl tracing::field::Visit for ServiceField {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == SERVICE_ATTRIBUTE {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == SERVICE_ATTRIBUTE {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_owned());
        }
    }
}

impl<S> Layer<S> for ServiceLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut own = ServiceField::default();
        attrs.record(&mut own);
        let service = match own.0 {
            Some(name) => Some(ServiceOf { name: name.into(), inherited: false }),
            None => span
                .parent()
                .and_then(|parent| parent.extensions().get::<ServiceOf>().cloned())
                .map(|of| ServiceOf { inherited: true, ..of }),
        };
        if let Some(service) = service {
            span.extensions_mut().insert(service);
        }
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let Some(service) = ctx.span(&id).and_then(|span| span.extensions().get::<ServiceOf>().cloned()) else {
            return;
        };
        if !service.inherited {
            return;
        }
        let Some(dispatch) = self.dispatch.get().and_then(tracing::dispatcher::WeakDispatch::upgrade) else { return };
        if let Some(cx) = tracing_opentelemetry::get_otel_context(&id, &dispatch) {
            cx.span().set_attribute(KeyValue::new(SERVICE_ATTRIBUTE, Value::from(service.name.to_string())));
        }
    }
}
