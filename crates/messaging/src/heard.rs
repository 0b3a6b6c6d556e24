//! Has a service heard everything another service has said? For the few decisions that must
//! not be made on a replica that is behind.
//!
//! Orders caps a buyer's unpaid reservations, and "unpaid" is what orders knows: an order
//! whose payment payments accepted stays unpaid here until `payment.succeeded` is applied.
//! After a crash that is seconds; during them a buyer who paid would be refused for holds
//! that are not holds. So before refusing, orders asks [`Heard::caught_up`]: the service's
//! consumer group has applied every event published on the topic before the question was
//! asked — its committed offsets have reached the partitions' ends as they were then — and
//! decides on that.
//!
//! Read from the broker, from outside the group (as the lag [`crate::watch`] reports), so
//! any instance can answer for partitions another one consumes. Committed offsets trail
//! what was applied by at most the auto-commit interval (half a second).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::BaseConsumer;

use crate::Kafka;
use crate::watch::{Position, positions};

/// One service's consumer group, as the broker sees it. Cheap to clone.
#[derive(Clone)]
pub struct Heard {
    kafka: Kafka,
    group: String,
    /// A client that never joins the group; made on first use.
    client: Arc<OnceLock<Arc<BaseConsumer>>>,
}

impl std::fmt::Debug for Heard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heard").field("group", &self.group).finish_non_exhaustive()
    }
}

impl Heard {
    /// `group` (on the brokers `kafka` reaches).
    pub fn new(kafka: Kafka, group: impl Into<String>) -> Self {
        Self { kafka, group: group.into(), client: Arc::default() }
    }

    /// Waits, at most `max`, until the group has applied every event published on `topic`
    /// (a contract's name) before this call: its committed offsets have reached the
    /// partitions' ends as the first look found them. `false` if it has not within `max`,
    /// or the brokers could not be asked.
    pub async fn caught_up(&self, topic: &str, max: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + max;
        let topic = self.kafka.topic(topic);
        let mut ends: Option<HashMap<i32, i64>> = None;
        loop {
            match self.positions(&topic).await {
                Ok(now) => {
                    let ends = ends.get_or_insert_with(|| now.iter().map(|at| (at.partition, at.end)).collect());
                    if now.iter().all(|at| ends.get(&at.partition).is_none_or(|end| at.committed >= *end)) {
                        return true;
                    }
                }
                Err(error) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(group = %self.group, error = format!("{error:#}"), "cannot tell what the group has heard");
                    return false;
                }
                Err(_) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The group's position on each partition of `topic` (as the brokers name it).
    async fn positions(&self, topic: &str) -> anyhow::Result<Vec<Position>> {
        let client = match self.client.get() {
            Some(client) => client.clone(),
            None => {
                let client = Arc::new(self.kafka.consumer_config(&self.group).create().context("create Kafka client")?);
                self.client.get_or_init(|| client).clone()
            }
        };
        let topics = [topic.to_owned()];
        tokio::task::spawn_blocking(move || positions(&client, &topics)).await.context("broker question task failed")?
    }
}
