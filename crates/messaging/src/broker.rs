//! Whether the broker answers, as the process's own state rather than a readiness check.
//!
//! A pod that can reach PostgreSQL can serve every HTTP request, broker or not: writes put
//! their events in the outbox, which the relay publishes once the broker is back. So the
//! broker is not part of `/readyz` (taking every pod out of the load balancer while the broker
//! restarts would turn a broker blip into a full outage). It is watched here instead: a
//! metadata request every few seconds, reported in `/healthz` (`degraded`, still 200) and as
//! `kafka_broker_reachable`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

use crate::Kafka;

/// How often the broker is asked.
const INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct State {
    reachable: bool,
    since: Instant,
    error: Option<String>,
}

/// What the process knows of the broker. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BrokerHealth(Arc<Mutex<State>>);

impl Default for BrokerHealth {
    fn default() -> Self {
        // Unknown until the first answer; assumed reachable so start-up is not "degraded".
        Self(Arc::new(Mutex::new(State { reachable: true, since: Instant::now(), error: None })))
    }
}

impl BrokerHealth {
    /// Asks the broker every few seconds until `cancel`, recording each answer.
    pub async fn watch(self, producer: FutureProducer, cancel: CancellationToken) {
        loop {
            let answer = Kafka::ping(&producer).await;
            self.record(answer.as_ref().err().map(|e| format!("{e:#}")));
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(INTERVAL) => {}
            }
        }
    }

    fn record(&self, error: Option<String>) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let reachable = error.is_none();
        if reachable != state.reachable {
            state.since = Instant::now();
            if reachable {
                tracing::info!("the Kafka broker answers again; the outboxes drain");
            } else {
                tracing::warn!(
                    error = error.as_deref().unwrap_or_default(),
                    "the Kafka broker does not answer; events wait in the outboxes"
                );
            }
        }
        state.reachable = reachable;
        state.error = error;
        metrics::gauge!("kafka_broker_reachable").set(if reachable { 1.0 } else { 0.0 });
    }

    /// `/healthz`'s view: `{"reachable", "forSeconds", "error"}` and, while unreachable, the
    /// problem described for a person.
    pub fn report(&self) -> (serde_json::Value, Vec<String>) {
        let state = self.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let seconds = state.since.elapsed().as_secs();
        let value = serde_json::json!({"reachable": state.reachable, "forSeconds": seconds, "error": state.error});
        let problems = if state.reachable {
            Vec::new()
        } else {
            vec![format!(
                "the Kafka broker has not answered for {seconds} s; HTTP writes go on and their events wait in the outboxes"
            )]
        };
        (value, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_broker_is_a_problem_until_it_answers_again() {
        let health = BrokerHealth::default();
        assert!(health.report().1.is_empty());
        health.record(Some("no metadata".into()));
        let (value, problems) = health.report();
        assert_eq!(value["reachable"], false);
        assert_eq!(value["error"], "no metadata");
        assert!(problems[0].contains("outboxes"), "{problems:?}");
        health.record(None);
        assert_eq!(health.report().0["reachable"], true);
        assert!(health.report().1.is_empty());
    }
}
