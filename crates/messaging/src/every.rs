//! Background rounds on a timer: the expiry sweeper, the refund task, payment recovery.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `round` now and then every `interval` until `cancel`. A round returns how many
/// things it did: a round that did something is logged as `did` at info, a failed one at
/// warn with its cause chain; either way the next round comes (the work lists live in the
/// database, so a failed round loses nothing).
pub async fn every<F, Fut>(interval: Duration, cancel: CancellationToken, did: &'static str, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    loop {
        let outcome = round().await;
        // The round committed what it did: wake the relays of the outboxes it wrote.
        crate::announce::flush();
        match outcome {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "{did}"),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "{did}: round failed; retrying"),
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// The root span of a background round that found work (`expire lapsed orders`): a trace of
/// its own, so what it causes (events, their consumers) can be followed. Create it only once
/// the round knows it has work, so idle rounds leave no trace.
pub fn round_span(name: &'static str, service: &'static str, items: usize) -> tracing::Span {
    tracing::info_span!(parent: None, "round", otel.name = name, service, items)
}
