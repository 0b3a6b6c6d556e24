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

/// Reads [`Positions`] again and again with the same clients. Making clients (a connection,
/// the group coordinator's address) is most of a look's cost: on a loaded machine a look
/// with fresh clients took seconds, which a pause measured by looking would include.
#[derive(Clone)]
pub struct PositionReader {
    clients: std::sync::Arc<Clients>,
}

struct Clients {
    /// Metadata and partition ends.
    base: rdkafka::consumer::BaseConsumer,
    /// One client per group (committed offsets are asked with the group's id); none joins.
    groups: Vec<(String, rdkafka::consumer::BaseConsumer)>,
    prefix: String,
}

impl std::fmt::Debug for PositionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let groups: Vec<&str> = self.clients.groups.iter().map(|(group, _)| group.as_str()).collect();
        f.debug_struct("PositionReader").field("groups", &groups).field("topics", &self.clients.prefix).finish()
    }
}

impl PositionReader {
    /// Clients for `groups` on `brokers`, reading every topic whose name starts with `topics`
    /// (a deployment's `KAFKA_TOPIC_PREFIX`; internal and dead-letter topics left out).
    pub fn new(brokers: &str, groups: &[String], topics: &str) -> Result<Self, String> {
        let client = |group: Option<&str>| {
            let mut config = ClientConfig::new();
            config.set("bootstrap.servers", brokers).set("reconnect.backoff.max.ms", "500");
            if let Some(group) = group {
                config.set("group.id", group);
            }
            config.create().map_err(|e: rdkafka::error::KafkaError| e.to_string())
        };
        let groups =
            groups.iter().map(|group| Ok((group.clone(), client(Some(group))?))).collect::<Result<Vec<_>, String>>()?;
        let clients = Clients { base: client(None)?, groups, prefix: topics.to_owned() };
        Ok(Self { clients: std::sync::Arc::new(clients) })
    }

    /// Where the groups stand now: their committed offsets and the partitions' ends (a
    /// partition a group never committed on is left out).
    pub async fn read(&self) -> Result<Positions, String> {
        let clients = self.clients.clone();
        tokio::task::spawn_blocking(move || clients.read()).await.map_err(|e| e.to_string())?
    }
}

impl Clients {
    fn read(&self) -> Result<Positions, String> {
        use rdkafka::{Offset, TopicPartitionList};
        const TIMEOUT: Duration = Duration::from_secs(2);
        let metadata = self.base.fetch_metadata(None, TIMEOUT).map_err(|e| e.to_string())?;
        let mut all = TopicPartitionList::new();
        let mut ends = HashMap::new();
        let ours = |name: &str| name.starts_with(&self.prefix) && !name.starts_with("__") && !name.ends_with(".dlq");
        for topic in metadata.topics().iter().filter(|t| ours(t.name())) {
            for partition in topic.partitions() {
                all.add_partition(topic.name(), partition.id());
                let (_, high) =
                    self.base.fetch_watermarks(topic.name(), partition.id(), TIMEOUT).map_err(|e| e.to_string())?;
                ends.insert((topic.name().to_owned(), partition.id()), high);
            }
        }
        let mut positions = Positions::new();
        for (group, client) in &self.groups {
            let committed = client.committed_offsets(all.clone(), TIMEOUT).map_err(|e| e.to_string())?;
            for element in committed.elements() {
                if let Offset::Offset(at) = element.offset() {
                    let end = ends[&(element.topic().to_owned(), element.partition())];
                    positions.insert((group.clone(), element.topic().to_owned(), element.partition()), (at, end));
                }
            }
        }
        Ok(positions)
    }
}

/// Longer than the consumer session the brokers are given (3 s, scripts/kafka.sh): watched
/// this long after a crash, a dead member's partitions with work have been seen waiting.
pub const PAST_SESSION: Duration = Duration::from_secs(5);

/// How long after `since` every partition of the reader's groups that had work left at
/// `since`, or was given some after it, was consumed again (its committed offset moved past
/// where it was at `since`): how long a crash paused those groups. Looks every 100 ms for at
/// least `watch` (longer than the brokers take to notice a dead member, so that work given
/// after the crash to a partition nobody consumes any more is seen waiting too), and answers
/// with the end of the first look after which nothing was seen waiting: late by up to a look
/// and 100 ms, and by up to the 200 ms background commit interval. Prints the partitions
/// that moved last, each with when its work was first seen waiting, so that a long pause
/// says whether consumers were slow to resume or work only reached a partition late. If
/// some partition did not move within `max`, the error names them (group, topic, partition,
/// committed, end).
pub async fn until_every_partition_moves(
    reader: &PositionReader,
    since: Instant,
    at_since: &Positions,
    watch: Duration,
    max: Duration,
) -> Result<Duration, String> {
    type Key = (String, String, i32);
    // Partitions seen waiting, with the look at which each was first seen so; and those
    // that moved since, with when they were first seen waiting and the look that saw them
    // moved.
    let mut waiting: HashMap<Key, (Duration, i64, i64)> = HashMap::new();
    let mut moved_at: Vec<(Key, Duration, Duration)> = Vec::new();
    // The end of the first look of the current run of looks that saw nothing waiting.
    let mut moved = None;
    let mut first_look = true;
    while since.elapsed() <= max {
        if let Ok(now) = reader.read().await {
            let looked = since.elapsed();
            let stuck: HashMap<Key, (i64, i64)> = now
                .into_iter()
                .filter(|(partition, (committed, end))| {
                    let (then, end_then) = at_since.get(partition).copied().unwrap_or((0, 0));
                    (end_then > then || *end > then) && *committed <= then
                })
                .collect();
            waiting.retain(|key, (from, _, _)| {
                let still = stuck.contains_key(key);
                if !still {
                    moved_at.push((key.clone(), *from, looked));
                }
                still
            });
            for (key, (committed, end)) in stuck {
                let from = if first_look { Duration::ZERO } else { looked };
                waiting.entry(key).or_insert((from, committed, end)).2 = end;
            }
            first_look = false;
            if !waiting.is_empty() {
                moved = None;
            } else {
                let first = *moved.get_or_insert(looked);
                if looked >= watch {
                    moved_at.sort_by_key(|(_, _, at)| std::cmp::Reverse(*at));
                    let last: Vec<String> = moved_at
                        .iter()
                        .take(3)
                        .map(|((group, topic, partition), from, at)| {
                            format!("{group} {topic}/{partition} waiting from {from:.1?}, moved by {at:.1?}")
                        })
                        .collect();
                    println!("moved last (after the crash): {}", last.join("; "));
                    return Ok(first);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stuck: Vec<String> = waiting
        .iter()
        .map(|((group, topic, partition), (from, committed, end))| {
            format!("{group} {topic}/{partition} at {committed} of {end} (waiting from {from:.1?})")
        })
        .collect();
    Err(format!("not consumed again within {max:?}: {}", stuck.join("; ")))
}
