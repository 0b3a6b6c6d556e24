//! Dead letters: events a consumer could not handle, parked on `<topic>.dlq`.
//!
//! A dead letter keeps the original key, payload and headers, plus headers saying why and
//! where it came from. `sneakerstop dlq list` shows them; `sneakerstop dlq replay`
//! re-publishes them to their original topic (with the same event id, so a consumer that
//! did handle one in the meantime skips it). Kafka does not delete records, so the dead
//! letter stays on the DLQ after a replay; replaying it again is harmless for the same reason.

use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::Kafka;

/// Header names added to a dead letter.
pub mod headers {
    /// Why the event failed (the last error).
    pub const ERROR: &str = "dlq_error";
    /// How many attempts were made.
    pub const ATTEMPTS: &str = "dlq_attempts";
    /// The topic it was read from.
    pub const ORIGINAL_TOPIC: &str = "dlq_original_topic";
    /// Its partition there.
    pub const ORIGINAL_PARTITION: &str = "dlq_original_partition";
    /// Its offset there.
    pub const ORIGINAL_OFFSET: &str = "dlq_original_offset";
    /// The consumer group that gave up on it.
    pub const GROUP: &str = "dlq_consumer_group";
    /// When it was dead-lettered.
    pub const TIME: &str = "dlq_time";
}

/// Writes `message` to its topic's DLQ with the reason, and waits for the acknowledgement.
pub(crate) async fn send(
    producer: &FutureProducer,
    message: &BorrowedMessage<'_>,
    group: &str,
    error: &str,
    attempts: u32,
) -> anyhow::Result<()> {
    let mut out = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for header in original.iter() {
            out = out.insert(Header { key: header.key, value: header.value });
        }
    }
    let extra = [
        (headers::ERROR, error.to_owned()),
        (headers::ATTEMPTS, attempts.to_string()),
        (headers::ORIGINAL_TOPIC, message.topic().to_owned()),
        (headers::ORIGINAL_PARTITION, message.partition().to_string()),
        (headers::ORIGINAL_OFFSET, message.offset().to_string()),
        (headers::GROUP, group.to_owned()),
        (headers::TIME, chrono::Utc::now().to_rfc3339()),
    ];
    for (key, value) in &extra {
        out = out.insert(Header { key, value: Some(value.as_bytes()) });
    }
    let topic = sneakerstop_events::topics::dlq(message.topic());
    let mut record = FutureRecord::to(&topic).headers(out);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Some(payload) = message.payload() {
        record = record.payload(payload);
    }
    producer
        .send(record, Duration::from_secs(5))
        .await
        .map_err(|(e, _)| e)
        .with_context(|| format!("send to {topic}"))?;
    Ok(())
}

/// A dead letter as read back from a DLQ topic.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The DLQ topic.
    pub dlq_topic: String,
    /// Partition on the DLQ.
    pub partition: i32,
    /// Offset on the DLQ.
    pub offset: i64,
    /// Message key.
    pub key: Option<String>,
    /// Payload, as text.
    pub payload: String,
    /// All headers, in order.
    pub headers: Vec<(String, String)>,
}

impl DeadLetter {
    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The event id (`ce_id`), if present.
    pub fn event_id(&self) -> Option<&str> {
        self.header(sneakerstop_events::headers::ID)
    }
}

/// Reads every record on the DLQ of `topic` (a contract's name; the DLQ is under `kafka`'s
/// prefix, as the topic is), from the beginning to the current end.
pub async fn list(kafka: &Kafka, topic: &str) -> anyhow::Result<Vec<DeadLetter>> {
    let dlq_topic = sneakerstop_events::topics::dlq(&kafka.topic(topic));
    let mut config = kafka.consumer_config("sneakerstop-dlq-reader");
    config.set("enable.auto.commit", "false").set("statistics.interval.ms", "0");
    tokio::task::spawn_blocking(move || read_all(&config, &dlq_topic)).await.context("DLQ reader task failed")?
}

fn read_all(config: &rdkafka::ClientConfig, dlq_topic: &str) -> anyhow::Result<Vec<DeadLetter>> {
    let timeout = Duration::from_secs(10);
    let consumer: BaseConsumer = config.create().context("create DLQ reader")?;
    let metadata = consumer.fetch_metadata(Some(dlq_topic), timeout).context("read DLQ metadata")?;
    let Some(topic) = metadata.topics().first() else { return Ok(Vec::new()) };
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0usize;
    let mut ends = std::collections::HashMap::new();
    for partition in topic.partitions() {
        let (low, high) =
            consumer.fetch_watermarks(dlq_topic, partition.id(), timeout).context("read DLQ watermarks")?;
        if high > low {
            assignment.add_partition_offset(dlq_topic, partition.id(), Offset::Offset(low))?;
            ends.insert(partition.id(), high);
            remaining += usize::try_from(high - low).unwrap_or(0);
        }
    }
    if remaining == 0 {
        return Ok(Vec::new());
    }
    consumer.assign(&assignment).context("assign DLQ partitions")?;
    let mut letters = Vec::with_capacity(remaining);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut done: std::collections::HashSet<i32> = std::collections::HashSet::new();
    while done.len() < ends.len() {
        anyhow::ensure!(std::time::Instant::now() < deadline, "timed out reading {dlq_topic}");
        let Some(message) = consumer.poll(Duration::from_millis(500)) else { continue };
        let message = message.context("read DLQ")?;
        let end = ends.get(&message.partition()).copied().unwrap_or(0);
        if message.offset() + 1 >= end {
            done.insert(message.partition());
        }
        if message.offset() >= end {
            continue;
        }
        letters.push(DeadLetter {
            dlq_topic: dlq_topic.to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            headers: message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    letters.sort_by_key(|l| (l.partition, l.offset));
    Ok(letters)
}

/// Re-publishes `letters` to their original topics, without the `dlq_*` headers, and waits
/// for every acknowledgement. Returns how many were replayed.
pub async fn replay(producer: &FutureProducer, letters: &[DeadLetter]) -> anyhow::Result<usize> {
    for letter in letters {
        let original = letter
            .header(headers::ORIGINAL_TOPIC)
            .with_context(|| format!("dead letter at offset {} has no {}", letter.offset, headers::ORIGINAL_TOPIC))?;
        let mut out = OwnedHeaders::new();
        for (key, value) in letter.headers.iter().filter(|(k, _)| !k.starts_with("dlq_")) {
            out = out.insert(Header { key, value: Some(value.as_bytes()) });
        }
        let mut record = FutureRecord::to(original).payload(&letter.payload).headers(out);
        if let Some(key) = &letter.key {
            record = record.key(key);
        }
        producer
            .send(record, Duration::from_secs(5))
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("replay to {original}"))?;
    }
    Ok(letters.len())
}
