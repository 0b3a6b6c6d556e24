//! W3C Trace Context (`traceparent`) carried from HTTP requests through Kafka events, over
//! OpenTelemetry spans ([`crate::otel`]).
//!
//! Every HTTP request is a server span, the child of the caller's `traceparent` if it sent
//! one, or the root of a new trace. Code inside it (the outbox write) stamps the events it
//! writes with the `traceparent` of the span it runs in; the relay publishes each event in a
//! producer span that continues that trace and replaces the header with its own; the
//! consumer applies it in a consumer span whose parent is that producer span. One purchase,
//! one trace id, across HTTP and Kafka; every log line inside a span carries its `trace_id`
//! and `span_id`.

use std::fmt;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header name, per the W3C spec.
pub const TRACEPARENT: &str = "traceparent";

/// A W3C trace context: which trace, which parent span, sampled or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// 16-byte trace id, never all zero.
    pub trace_id: [u8; 16],
    /// 8-byte id of the span this context points at as parent, never all zero.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// Parses a `traceparent` header value (version 00); `None` if malformed.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let trace_id: [u8; 16] = hex_bytes(trace)?;
        let span_id: [u8; 8] = hex_bytes(span)?;
        let [flags]: [u8; 1] = hex_bytes(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self { trace_id, span_id, flags })
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", TraceId::from_bytes(self.trace_id))
    }

    /// The context of `span` (its trace, itself as the parent), if spans have ids here (the
    /// OpenTelemetry layer is installed) and it is enabled.
    pub fn of(span: &tracing::Span) -> Option<Self> {
        let context = span.context();
        let span_context = context.span().span_context().clone();
        span_context.is_valid().then(|| Self {
            trace_id: span_context.trace_id().to_bytes(),
            span_id: span_context.span_id().to_bytes(),
            flags: span_context.trace_flags().to_u8(),
        })
    }

    /// The context of the span the caller runs in.
    pub fn current() -> Option<Self> {
        Self::of(&tracing::Span::current())
    }

    /// This context as a remote parent for OpenTelemetry.
    pub fn to_otel(&self) -> opentelemetry::Context {
        let span_context = SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::new(self.flags),
            true,
            TraceState::default(),
        );
        opentelemetry::Context::new().with_remote_span_context(span_context)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // OpenTelemetry's ids print as lower-case hex without a string per byte.
        let (trace_id, span_id) = (TraceId::from_bytes(self.trace_id), SpanId::from_bytes(self.span_id));
        write!(f, "00-{trace_id:032x}-{span_id:016x}-{:02x}", self.flags)
    }
}

/// The `traceparent` of the span the caller runs in: for something it causes (an event).
pub fn current_traceparent() -> Option<String> {
    TraceContext::current().map(|c| c.to_string())
}

/// Makes `span` (just created, not yet entered) a child of `parent` when there is one;
/// without, it stays the child of the span it was created in, or a new trace's root.
pub fn continue_trace(span: &tracing::Span, parent: Option<TraceContext>) {
    if let Some(parent) = parent {
        // Fails only for a span already entered or disabled: then it keeps its own trace.
        let _ = span.set_parent(parent.to_otel());
    }
}

/// Links `span` to each trace of `traceparents` (what a background round touched, each in
/// the trace that made it): a round is a trace of its own, and these lead to the others.
pub fn link(span: &tracing::Span, traceparents: &[String]) {
    for parent in traceparents.iter().filter_map(|t| TraceContext::parse(t)) {
        span.add_link(parent.to_otel().span().span_context().clone());
    }
}

/// The caller's trace context from a request's headers, if it sent a valid one.
pub fn from_headers(headers: &HeaderMap) -> Option<TraceContext> {
    headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(TraceContext::parse)
}

fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Axum middleware: answers with the `traceparent` of the request's span, so a caller can
/// find its request's trace.
pub async fn answer_traceparent(request: Request, next: Next) -> Response {
    let context = TraceContext::current();
    let mut response = next.run(request).await;
    if let Some(value) = context.and_then(|c| HeaderValue::from_str(&c.to_string()).ok()) {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_w3c_example() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(text).unwrap();
        assert_eq!(context.to_string(), text);
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let remote = context.to_otel();
        let remote = remote.span();
        assert_eq!(remote.span_context().trace_id().to_bytes(), context.trace_id);
        assert!(remote.span_context().is_remote());
        // Leading zeros are kept: ids print at their full width.
        let text = "00-0af7651916cd43dd8448eb211c80319c-0000006b7169203f-00";
        let context = TraceContext::parse(text).unwrap();
        assert_eq!(context.to_string(), text);
        assert_eq!(context.trace_id_hex(), "0af7651916cd43dd8448eb211c80319c");
    }

    #[test]
    fn malformed_values_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn spans_continue_the_trace_they_are_given() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "test");
        let subscriber = tracing_subscriber::layer::SubscriberExt::with(
            tracing_subscriber::registry(),
            tracing_opentelemetry::layer().with_tracer(tracer),
        );
        tracing::subscriber::with_default(subscriber, || {
            assert_eq!(current_traceparent(), None, "outside any span there is no context");
            let parent = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
            let span = tracing::info_span!("child");
            continue_trace(&span, Some(parent));
            let seen = span.in_scope(TraceContext::current).unwrap();
            assert_eq!(seen.trace_id, parent.trace_id, "same trace");
            assert_ne!(seen.span_id, parent.span_id, "its own span");
            let fresh = tracing::info_span!("root");
            continue_trace(&fresh, None);
            let other = fresh.in_scope(TraceContext::current).unwrap();
            assert_ne!(other.trace_id, parent.trace_id, "no parent: a new trace");
        });
    }
}
