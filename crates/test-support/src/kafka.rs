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

/// Every record on `topic`, read to its current end: a marker is produced to each
/// partition and the topic is read until every marker came back, so whatever was published
/// before this call (duplicates included) is in the result, markers excluded.
pub async fn read_to_end(brokers: &str, topic: &str, deadline: Duration) -> Vec<Record> {
    use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("create test producer");
    let partitions = {
        let metadata = producer.client().fetch_metadata(Some(topic), Duration::from_secs(10)).expect("topic metadata");
        metadata.topics()[0].partitions().len()
    };
    let marker = crate::unique("end-marker");
    for partition in 0..partitions {
        let partition = i32::try_from(partition).expect("few partitions");
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header { key: "test_marker", value: Some(marker.as_bytes()) });
        let record = FutureRecord::<(), [u8]>::to(topic).partition(partition).payload(b"{}").headers(headers);
        producer.send(record, Duration::from_secs(10)).await.expect("produce end marker");
    }
    let records = read_topic(
        brokers,
        topic,
        deadline,
        |_| true,
        |records| records.iter().filter(|r| r.header("test_marker") == Some(marker.as_str())).count() == partitions,
    )
    .await;
    records.into_iter().filter(|r| r.header("test_marker").is_none()).collect()
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
