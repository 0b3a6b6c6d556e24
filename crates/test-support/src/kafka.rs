//! Reading what was published, for assertions.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};

/// One record as read from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key, as text.
    pub key: Option<String>,
    /// Headers, as text.
    pub headers: HashMap<String, String>,
    /// Payload, parsed as JSON (`Null` if it is not JSON).
    pub json: serde_json::Value,
}

impl Record {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Reads `topic` from the beginning with a fresh consumer group, keeping the records that
/// `keep` accepts, until `done` says the collection is complete or `deadline` passes
/// (which fails the test).
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    deadline: Duration,
    keep: impl Fn(&Record) -> bool,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", crate::unique("test-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .expect("create test consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let started = Instant::now();
    let mut records = Vec::new();
    while !done(&records) {
        let left = deadline.checked_sub(started.elapsed()).unwrap_or_else(|| {
            panic!("timed out after {deadline:?} reading {topic}; have {} records: {records:#?}", records.len())
        });
        let Ok(message) = tokio::time::timeout(left.min(Duration::from_millis(500)), consumer.recv()).await else {
            continue;
        };
        let Ok(message) = message else { continue };
        let record = Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            headers: message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            json: serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or(serde_json::Value::Null),
        };
        if keep(&record) {
            records.push(record);
        }
    }
    records
}

/// Every record on `topic`, read to its current end: each partition's end (high watermark)
/// is taken first, and the topic is read until every partition reached it, so whatever was
/// published before this call (duplicates included) is in the result. Nothing is written to
/// the topic (an end marker would be a record other tests' consumers must dead-letter).
pub async fn read_to_end(brokers: &str, topic: &str, deadline: Duration) -> Vec<Record> {
    use rdkafka::consumer::BaseConsumer;
    let (brokers_owned, topic_owned) = (brokers.to_owned(), topic.to_owned());
    let ends: HashMap<i32, i64> = tokio::task::spawn_blocking(move || {
        let client: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &brokers_owned).create().expect("create test client");
        let metadata = client.fetch_metadata(Some(&topic_owned), Duration::from_secs(10)).expect("topic metadata");
        metadata.topics()[0]
            .partitions()
            .iter()
            .map(|p| {
                let (_, high) =
                    client.fetch_watermarks(&topic_owned, p.id(), Duration::from_secs(10)).expect("partition end");
                (p.id(), high)
            })
            .collect()
    })
    .await
    .expect("read the topic's ends");
    read_topic(
        brokers,
        topic,
        deadline,
        |_| true,
        |records| {
            ends.iter()
                .filter(|(_, end)| **end > 0)
                .all(|(partition, end)| records.iter().any(|r| r.partition == *partition && r.offset >= end - 1))
        },
    )
    .await
}

/// Publishes one CloudEvent (headers from `envelope`) with `payload` to `topic` and waits
/// for the acknowledgement. For tests that feed consumers directly.
pub async fn publish(brokers: &str, topic: &str, key: &str, headers: &[(&str, String)], payload: &serde_json::Value) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("create test producer");
    let mut owned = rdkafka::message::OwnedHeaders::new();
    for (name, value) in headers {
        owned = owned.insert(rdkafka::message::Header { key: name, value: Some(value.as_bytes()) });
    }
    let body = payload.to_string();
    let record = FutureRecord::to(topic).key(key).payload(&body).headers(owned);
    producer.send(record, Duration::from_secs(10)).await.expect("publish test event");
}

/// Where some consumer groups are on every partition of every topic they consume, as the
/// broker sees it from outside: (group, topic, partition) → (committed offset, partition end).
pub type Positions = std::collections::BTreeMap<(String, String, i32), (i64, i64)>;

/// The committed offsets and partition ends of `groups` on `brokers`, on every topic whose
/// name starts with `topics` (a deployment's `KAFKA_TOPIC_PREFIX`; internal and dead-letter
/// topics left out; a partition a group never committed on is left out too).
pub async fn positions(brokers: &str, groups: &[String], topics: &str) -> Result<Positions, String> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::{Offset, TopicPartitionList};
    let (brokers, groups, prefix) = (brokers.to_owned(), groups.to_vec(), topics.to_owned());
    tokio::task::spawn_blocking(move || {
        const TIMEOUT: Duration = Duration::from_secs(2);
        let mut positions = Positions::new();
        let base: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("reconnect.backoff.max.ms", "500")
            .create()
            .map_err(|e| e.to_string())?;
        let metadata = base.fetch_metadata(None, TIMEOUT).map_err(|e| e.to_string())?;
        let mut all = TopicPartitionList::new();
        let mut ends = HashMap::new();
        let ours = |name: &str| name.starts_with(&prefix) && !name.starts_with("__") && !name.ends_with(".dlq");
        for topic in metadata.topics().iter().filter(|t| ours(t.name())) {
            for partition in topic.partitions() {
                all.add_partition(topic.name(), partition.id());
                let (_, high) =
                    base.fetch_watermarks(topic.name(), partition.id(), TIMEOUT).map_err(|e| e.to_string())?;
                ends.insert((topic.name().to_owned(), partition.id()), high);
            }
        }
        for group in &groups {
            let client: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", group)
                .set("reconnect.backoff.max.ms", "500")
                .create()
                .map_err(|e| e.to_string())?;
            let committed = client.committed_offsets(all.clone(), TIMEOUT).map_err(|e| e.to_string())?;
            for element in committed.elements() {
                if let Offset::Offset(at) = element.offset() {
                    let end = ends[&(element.topic().to_owned(), element.partition())];
                    positions.insert((group.clone(), element.topic().to_owned(), element.partition()), (at, end));
                }
            }
        }
        Ok(positions)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// How long after `since` every partition of `groups` that had work left at `since`, or was
/// given some after it, was consumed again (its committed offset moved past where it was at
/// `since`): how long a crash paused those groups. Looks every 100 ms. If some partition did
/// not move within `max`, the error names them (group, topic, partition, committed, end).
/// Offsets are committed in the background (every 200 ms), so this may read that much late.
pub async fn until_every_partition_moves(
    brokers: &str,
    groups: &[String],
    topics: &str,
    since: Instant,
    at_since: &Positions,
    max: Duration,
) -> Result<Duration, String> {
    let mut stuck = Vec::new();
    while since.elapsed() <= max {
        if let Ok(now) = positions(brokers, groups, topics).await {
            let looked = since.elapsed();
            stuck = now
                .iter()
                .filter(|(partition, (committed, end))| {
                    let (then, end_then) = at_since.get(*partition).copied().unwrap_or((0, 0));
                    (end_then > then || *end > then) && *committed <= then
                })
                .map(|((group, topic, partition), (committed, end))| {
                    format!("{group} {topic}/{partition} at {committed} of {end}")
                })
                .collect();
            if stuck.is_empty() {
                return Ok(looked);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("not consumed again within {max:?}: {}", stuck.join("; ")))
}
