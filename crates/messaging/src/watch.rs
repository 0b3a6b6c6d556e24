//! No consumer group stalls unseen.
//!
//! A consumer that is assigned nothing, or that holds partitions and makes no progress,
//! looks exactly like an idle one from inside: no errors, no log lines. So each consumer
//! runs a watcher beside it that looks at its group from the outside, the way an operator
//! would with `kafka-consumer-groups --describe`:
//!
//! - every few seconds it asks the broker for the group's **committed** offsets and each
//!   partition's high watermark, for every partition of the topics the group reads —
//!   assigned or not, so lag is reported even when nobody is consuming;
//! - the group has made **progress** when any committed offset moved; lag with no progress
//!   for longer than `stall_after` is a **stall**;
//! - a member whose assignment is empty while its group is stalled leaves and joins again
//!   with a new consumer (a broker that handed it nothing and never rebalances again must
//!   not park the group forever; see docs/operations.md).
//!
//! Metrics: `consumer_assigned_partitions{group}`, `consumer_lag{group,topic,partition}`,
//! `consumer_stalled_seconds{group}` (seconds with lag and without progress; 0 while
//! healthy) and `consumer_rejoins_total{group}`. [`ConsumerHealth`] holds the same figures
//! for `/healthz`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Kafka;

/// What `/healthz` shows of one consumer group in this process.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupHealth {
    /// Partitions this process's member holds.
    pub assigned_partitions: usize,
    /// Which: `<topic>/<partition>`, by the contract's topic names (so an operator sees
    /// which instance holds what).
    pub partitions: Vec<String>,
    /// Events published and not yet committed by the group, over all its partitions.
    pub lag: i64,
    /// How long the group has had lag without committing anything (0 while healthy).
    pub seconds_without_progress: u64,
    /// Lag and no progress for longer than the bound.
    pub stalled: bool,
    /// Times this member left and joined again because it held nothing while stalled.
    pub rejoins: u64,
}

/// The consumer groups of one process and how they are doing; cheap to clone.
#[derive(Debug, Clone)]
pub struct ConsumerHealth {
    groups: Arc<Mutex<BTreeMap<String, GroupHealth>>>,
    stall_after: Duration,
}

impl ConsumerHealth {
    /// A group with lag and no progress for longer than `stall_after` is stalled.
    pub fn new(stall_after: Duration) -> Self {
        Self { groups: Arc::default(), stall_after }
    }

    /// Every group's figures, and the stalled ones described for a person.
    pub fn report(&self) -> (BTreeMap<String, GroupHealth>, Vec<String>) {
        let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let problems = groups
            .iter()
            .filter(|(_, health)| health.stalled)
            .map(|(group, health)| {
                let holder = if health.assigned_partitions == 0 { "; this member holds no partition" } else { "" };
                format!(
                    "consumer group {group} has {} events of lag and has committed nothing for {} s{holder}",
                    health.lag, health.seconds_without_progress
                )
            })
            .collect();
        (groups, problems)
    }

    fn set(&self, group: &str, health: GroupHealth) {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner).insert(group.to_owned(), health);
    }
}

/// The partitions a consumer currently holds, updated by its rebalance callback.
#[derive(Debug, Clone, Default)]
pub(crate) struct Assignment(Arc<Mutex<BTreeSet<(String, i32)>>>);

impl Assignment {
    pub(crate) fn replace(&self, partitions: &TopicPartitionList) {
        let held = partitions.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = held;
    }

    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// `<topic>/<partition>` of each, the topic as `kafka` names it in the contract.
    fn names(&self, kafka: &Kafka) -> Vec<String> {
        let held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        held.iter().map(|(topic, partition)| format!("{}/{partition}", kafka.unprefixed(topic))).collect()
    }
}

/// Watches one group on behalf of one member; see the module docs.
#[derive(Debug)]
pub(crate) struct Watcher {
    pub(crate) group: String,
    pub(crate) topics: Vec<String>,
    pub(crate) kafka: Kafka,
    pub(crate) health: ConsumerHealth,
    pub(crate) assignment: Assignment,
    /// Told when this member should leave and join again.
    pub(crate) rejoin: Arc<Notify>,
}

/// The group's committed position and lag at one look.
#[derive(Debug, Default, PartialEq)]
struct Look {
    /// Sum of committed offsets (a change means the group moved).
    committed: i64,
    /// (topic, partition) → lag.
    lag: BTreeMap<(String, i32), i64>,
}

impl Watcher {
    /// Looks at the group every `interval` until `cancel`.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let interval = (self.health.stall_after / 4).clamp(Duration::from_millis(500), Duration::from_secs(2));
        // A client of its own that never joins the group: it only reads the group's offsets.
        let client: Arc<BaseConsumer> = match self.kafka.consumer_config(&self.group).create() {
            Ok(client) => Arc::new(client),
            Err(error) => {
                tracing::error!(group = %self.group, %error, "cannot watch the consumer group");
                return;
            }
        };
        let mut last: Option<i64> = None;
        let mut progress_at = Instant::now();
        let mut rejoined_at: Option<Instant> = None;
        let mut rejoins = 0;
        // The first look at once, so the lag of a group that starts behind (a new group reads
        // the topics from the beginning) is visible from the start.
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(interval) => {}
                }
            }
            let look = {
                let (client, topics) = (client.clone(), self.topics.clone());
                tokio::task::spawn_blocking(move || look(&client, &topics)).await
            };
            let look = match look {
                Ok(Ok(look)) => look,
                Ok(Err(error)) => {
                    // The broker is away: that is the relay's and readiness's story, not a
                    // consumer stall; keep the last figures.
                    tracing::debug!(group = %self.group, error = format!("{error:#}"), "could not look at the group");
                    continue;
                }
                Err(error) => {
                    tracing::error!(group = %self.group, %error, "group watcher task failed");
                    continue;
                }
            };
            let lag: i64 = look.lag.values().sum();
            if last != Some(look.committed) || lag == 0 {
                progress_at = Instant::now();
            }
            last = Some(look.committed);
            let without_progress = progress_at.elapsed();
            let assigned = self.assignment.len();
            let stalled = lag > 0 && without_progress > self.health.stall_after;
            // Holding nothing while the group is stuck: ask to be given something. At most
            // once per bound, so a group that is stuck for another reason is not churned.
            let recently = rejoined_at.is_some_and(|at| at.elapsed() < self.health.stall_after);
            if stalled && assigned == 0 && !recently {
                tracing::warn!(group = %self.group, lag, "no partitions while the group is stalled; rejoining");
                metrics::counter!("consumer_rejoins_total", "group" => self.group.clone()).increment(1);
                rejoined_at = Some(Instant::now());
                rejoins += 1;
                self.rejoin.notify_one();
            }
            self.publish(&look, assigned, without_progress);
            self.health.set(
                &self.group,
                GroupHealth {
                    assigned_partitions: assigned,
                    partitions: self.assignment.names(&self.kafka),
                    lag,
                    seconds_without_progress: if lag > 0 { without_progress.as_secs() } else { 0 },
                    stalled,
                    rejoins,
                },
            );
        }
    }

    fn publish(&self, look: &Look, assigned: usize, without_progress: Duration) {
        #[allow(clippy::cast_precision_loss, reason = "gauges")]
        {
            metrics::gauge!("consumer_assigned_partitions", "group" => self.group.clone()).set(assigned as f64);
            for ((topic, partition), lag) in &look.lag {
                metrics::gauge!(
                    "consumer_lag",
                    "group" => self.group.clone(),
                    "topic" => self.kafka.unprefixed(topic).to_owned(),
                    "partition" => partition.to_string()
                )
                .set(*lag as f64);
            }
        }
        let lagging = look.lag.values().any(|lag| *lag > 0);
        let stalled = if lagging { without_progress.as_secs_f64() } else { 0.0 };
        metrics::gauge!("consumer_stalled_seconds", "group" => self.group.clone()).set(stalled);
    }
}

/// Reads the group's committed offsets and the partitions' high watermarks (blocking).
fn look(client: &BaseConsumer, topics: &[String]) -> anyhow::Result<Look> {
    let mut look = Look::default();
    for at in positions(client, topics)? {
        look.committed += at.committed;
        look.lag.insert((at.topic, at.partition), (at.end - at.committed).max(0));
    }
    Ok(look)
}

/// Where a consumer group stands on one partition, read from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    /// The topic, as the brokers name it.
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset; the partition's start if it never committed (the group
    /// starts from the beginning: `auto.offset.reset=earliest`).
    pub committed: i64,
    /// The partition's end (high watermark).
    pub end: i64,
}

/// How long a question to the brokers about a group's positions may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The group's position on every partition of `topics`, asked with `client` (a client
/// configured with the group's id that never joins it). Blocking.
pub(crate) fn positions(client: &BaseConsumer, topics: &[String]) -> anyhow::Result<Vec<Position>> {
    let mut partitions = TopicPartitionList::new();
    for topic in topics {
        let metadata = client.fetch_metadata(Some(topic), TIMEOUT).with_context(|| format!("metadata of {topic}"))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                partitions.add_partition(t.name(), p.id());
            }
        }
    }
    let committed = client.committed_offsets(partitions, TIMEOUT).context("committed offsets")?;
    // Every partition's end in one request to each broker, not one request per partition
    // (a process's groups read about 40 partitions, asked every second or two); the start only
    // of partitions the group has no offset on.
    let ends = listed(client, &committed, |_| true, Offset::End)?;
    let starts = listed(client, &committed, |offset| !matches!(offset, Offset::Offset(_)), Offset::Beginning)?;
    let mut positions = Vec::new();
    for element in committed.elements() {
        let at = |offsets: &HashMap<(String, i32), i64>| {
            offsets
                .get(&(element.topic().to_owned(), element.partition()))
                .copied()
                .with_context(|| format!("no offset listed for {}/{}", element.topic(), element.partition()))
        };
        let committed = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => at(&starts)?,
        };
        positions.push(Position {
            topic: element.topic().to_owned(),
            partition: element.partition(),
            committed,
            end: at(&ends)?,
        });
    }
    Ok(positions)
}

/// The offsets at `at` (`Offset::End`: the partition's end, as `fetch_watermarks` tells it;
/// `Offset::Beginning`: its start) of the partitions of `of` whose offset `pick` selects,
/// asked in one `ListOffsets` request to each broker.
fn listed(
    client: &BaseConsumer,
    of: &TopicPartitionList,
    pick: impl Fn(Offset) -> bool,
    at: Offset,
) -> anyhow::Result<HashMap<(String, i32), i64>> {
    let mut asked = TopicPartitionList::new();
    for element in of.elements().iter().filter(|element| pick(element.offset())) {
        asked.add_partition_offset(element.topic(), element.partition(), at).context("list a partition")?;
    }
    if asked.count() == 0 {
        return Ok(HashMap::new());
    }
    let listed = client.offsets_for_times(asked, TIMEOUT).context("list offsets")?;
    listed
        .elements()
        .iter()
        .map(|element| {
            element
                .error()
                .with_context(|| format!("list the offset of {}/{}", element.topic(), element.partition()))?;
            match element.offset() {
                Offset::Offset(offset) => Ok(((element.topic().to_owned(), element.partition()), offset)),
                other => anyhow::bail!("{}/{} listed no offset: {other:?}", element.topic(), element.partition()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_group_is_described_with_its_figures() {
        let health = ConsumerHealth::new(Duration::from_secs(30));
        let ok = GroupHealth {
            assigned_partitions: 3,
            partitions: vec!["orders.orders/0".into(), "orders.orders/1".into(), "orders.orders/2".into()],
            lag: 0,
            seconds_without_progress: 0,
            stalled: false,
            rejoins: 0,
        };
        health.set("g-ok", ok);
        let stuck = GroupHealth {
            assigned_partitions: 0,
            partitions: Vec::new(),
            lag: 7,
            seconds_without_progress: 45,
            stalled: true,
            rejoins: 1,
        };
        health.set("g-stuck", stuck);
        let (groups, problems) = health.report();
        assert_eq!(groups.len(), 2);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("g-stuck") && problems[0].contains("7 events") && problems[0].contains("45 s"));
        assert!(problems[0].contains("holds no partition"), "{}", problems[0]);
    }
}
