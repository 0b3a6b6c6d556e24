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

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::Kafka;

/// One service's consumer group, as the broker sees it. Cheap to clone.
#[derive(Clone)]
pub struct Heard {
    kafka: Kafka,
    group: String,
    /// A client that never joins the group; made on first use.
    client: Arc<std::sync::OnceLock<Arc<BaseConsumer>>>,
}

impl std::fmt::Debug for Heard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heard").field("group", &self.group).finish_non_exhaustive()
    }
}

/// How long one question to the broker may take.
const TIMEOUT: Duration = Duration::from_secs(2);

impl Heard {
    /// `group` (on the brokers `kafka` reaches).
    pub fn new(kafka: Kafka, group: impl Into<String>) -> Self {
        Self { kafka, group: group.into(), client: Arc::default() }
    }

    /// Waits, at most `max`, until the group has applied every event published on `topic`
    /// (a contract's name) before this call. `false` if it has not within `max`, or the
    /// brokers could not be asked.
    pub async fn caught_up(&self, topic: &str, max: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + max;
        let topic = self.kafka.topic(topic);
        let ends = loop {
            match self.ask(topic.clone(), None).await {
                Ok(ends) => break ends,
                Err(error) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(group = %self.group, error = format!("{error:#}"), "cannot tell what the group has heard");
                    return false;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        loop {
            if let Ok(positions) = self.ask(topic.clone(), Some(&ends)).await
                && ends.iter().all(|(partition, end)| positions.iter().any(|(p, at)| p == partition && at >= end))
            {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Each partition's end (`None`), or the group's committed position in each of
    /// `partitions` (a partition it never committed on counts from its start).
    async fn ask(&self, topic: String, partitions: Option<&[(i32, i64)]>) -> anyhow::Result<Vec<(i32, i64)>> {
        let client = match self.client.get() {
            Some(client) => client.clone(),
            None => {
                let client = Arc::new(self.kafka.consumer_config(&self.group).create().context("create Kafka client")?);
                self.client.get_or_init(|| client).clone()
            }
        };
        let partitions: Option<Vec<i32>> =
            partitions.map(|ends| ends.iter().map(|(partition, _)| *partition).collect());
        tokio::task::spawn_blocking(move || match partitions {
            None => ends(&client, &topic),
            Some(partitions) => {
                let mut list = TopicPartitionList::new();
                for partition in &partitions {
                    list.add_partition(&topic, *partition);
                }
                let committed = client.committed_offsets(list, TIMEOUT).context("committed offsets")?;
                let mut positions = Vec::with_capacity(partitions.len());
                for element in committed.elements() {
                    let at = match element.offset() {
                        Offset::Offset(at) => at,
                        _ => client.fetch_watermarks(&topic, element.partition(), TIMEOUT).context("watermarks")?.0,
                    };
                    positions.push((element.partition(), at));
                }
                Ok(positions)
            }
        })
        .await
        .context("broker question task failed")?
    }
}

/// Every partition of `topic` with its end (high watermark).
fn ends(client: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
    let metadata = client.fetch_metadata(Some(topic), TIMEOUT).with_context(|| format!("metadata of {topic}"))?;
    let mut ends = Vec::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (_, high) = client.fetch_watermarks(topic, partition.id(), TIMEOUT).context("watermarks")?;
        ends.push((partition.id(), high));
    }
    Ok(ends)
}
