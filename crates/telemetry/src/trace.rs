//! W3C Trace Context (`traceparent`) carried from HTTP requests through Kafka events.
//!
//! Every HTTP request runs inside a [`TraceContext`]: the caller's `traceparent` if it sent
//! one, or a fresh trace. The context is kept in a task-local, so code deep in a handler
//! (the outbox insert) can stamp the event it writes with a child `traceparent`, and the
//! consumer that handles the event continues the same trace: one purchase, one trace id,
//! across HTTP and Kafka. The trace id is recorded on the request's and the consumer's
//! log spans (`trace_id`), so a trace can be followed through the logs.
//!
//! This is propagation only; exporting spans to a tracing backend (OTLP) is future work.

use std::fmt;
use std::future::Future;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

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

tokio::task_local! {
    static CURRENT: TraceContext;
}

impl TraceContext {
    /// A new trace, sampled.
    pub fn new_root() -> Self {
        let trace_id = uuid::Uuid::new_v4().into_bytes();
        Self { trace_id, span_id: random_span_id(), flags: 1 }
    }

    /// A context for a new span in the same trace (a child of this one).
    pub fn child(&self) -> Self {
        Self { span_id: random_span_id(), ..*self }
    }

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
        hex(&self.trace_id)
    }

    /// Runs `future` with this as the current context.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    /// The context of the running task, if it runs inside [`TraceContext::scope`].
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|c| *c).ok()
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.span_id), self.flags)
    }
}

/// A `traceparent` for something caused by the current task (an event it publishes).
pub fn child_traceparent() -> Option<String> {
    TraceContext::current().map(|c| c.child().to_string())
}

fn random_span_id() -> [u8; 8] {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut id = [0; 8];
    id.copy_from_slice(&bytes[..8]);
    if id == [0; 8] { [1; 8] } else { id }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// Axum middleware: runs the request in its trace context and answers with its `traceparent`.
pub async fn propagate(request: Request, next: Next) -> Response {
    let incoming = request.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(TraceContext::parse);
    // Our span is a child of the caller's, or the root of a new trace.
    let context = incoming.map_or_else(TraceContext::new_root, |c| c.child());
    tracing::Span::current().record("trace_id", context.trace_id_hex());
    let mut response = context.scope(next.run(request)).await;
    if let Ok(value) = HeaderValue::from_str(&context.to_string()) {
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
        let child = context.child();
        assert_eq!(child.trace_id, context.trace_id);
        assert_ne!(child.span_id, context.span_id);
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

    #[tokio::test]
    async fn the_current_context_is_task_local() {
        assert_eq!(TraceContext::current(), None);
        assert_eq!(child_traceparent(), None);
        let root = TraceContext::new_root();
        let seen = root.scope(async { (TraceContext::current(), child_traceparent()) }).await;
        assert_eq!(seen.0, Some(root));
        let child = TraceContext::parse(&seen.1.unwrap()).unwrap();
        assert_eq!(child.trace_id, root.trace_id);
    }
}
