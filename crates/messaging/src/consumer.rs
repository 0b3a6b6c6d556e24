//! The consumer runtime: exactly-once *effect* on top of at-least-once delivery.
//!
//! For every event, in partition order:
//! 1. open a transaction; record the event id in `inbox` (`ON CONFLICT DO NOTHING`);
//!    if it was already there the event was handled before: skip it;
//! 2. run the handler on the same transaction, and commit;
//! 3. only then store the event's offset (committed to the broker in the background).
//!
//! A crash between 2 and 3 redelivers the event, and step 1 makes it a no-op. A handler
//! error rolls everything back and is retried with exponential backoff; after
//! `max_attempts` the event goes to `<topic>.dlq` with the reason in its headers, and the
//! consumer moves on. An event whose headers are not a valid envelope is dead-lettered at
//! once. Nothing is acknowledged and dropped.
//!
//! An event the handler says cannot change anything (`Handler::concerns`: the market and a
//! listing that names no product, a service other than identity and a new user) is
//! acknowledged without a transaction or an inbox row: applying nothing twice is still
//! nothing, and a busy topic of mostly such events costs its group no commits.
//!
//! For throughput the consumer takes everything already fetched (up to 200 events) at
//! once and applies each partition's share on one transaction — one commit for many
//! events — with the partitions' transactions running concurrently. A key always maps to
//! one partition, so per-key order holds. If a batch fails it is rolled back and its events
//! are applied one by one as above.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::FutureProducer;
use sneakerstop_events::{Contract, DecodeError, Envelope};
use sneakerstop_telemetry::trace::{self, TraceContext};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Kafka;
use crate::dlq;
use crate::outbox::Backoff;
use crate::watch::{Assignment, ConsumerHealth, Watcher};

/// An event as a handler sees it.
#[derive(Debug, Clone)]
pub struct IncomingEvent {
    /// Topic it was read from, by its contract's name (without `KAFKA_TOPIC_PREFIX`).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Message key (the contract's, see `Contract::key`).
    pub key: Option<String>,
    /// The CloudEvents attributes.
    pub envelope: Envelope,
    /// The JSON payload.
    pub payload: Vec<u8>,
}

impl IncomingEvent {
    /// `event` as a consumer would receive it (first partition, first offset, keyed as its
    /// contract says): for applying a handler directly, as tests and tools do.
    pub fn from_contract<C: Contract>(event: &C, source: &str, subject: uuid::Uuid, version: i64) -> Self {
        Self {
            topic: C::TOPIC.to_owned(),
            partition: 0,
            offset: 0,
            key: Some(event.key().to_string()),
            envelope: Envelope::new(event, source, subject, version, None),
            payload: event.payload().to_string().into_bytes(),
        }
    }

    /// Decodes the payload into the topic's contract type.
    pub fn decode<C: Contract>(&self) -> Result<C, DecodeError> {
        C::decode(&self.envelope.event_type, self.envelope.schema_version, &self.payload)
    }
}

/// What a service does with the events it consumes.
pub trait Handler: Send + Sync + 'static {
    /// Applies `event` using `tx`; the runtime commits it together with the event id.
    /// Returning an error rolls back and retries.
    fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a IncomingEvent) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Before a batch of events is applied on one transaction: a handler whose events take
    /// locks in an order that depends on the event (the market changes the asks its events
    /// are about) takes them all here, in one fixed order, so that two batches can never hold
    /// two locks in opposite orders and deadlock. Nothing by default.
    fn lock_batch<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [IncomingEvent],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        let _ = (tx, events);
        Box::pin(std::future::ready(Ok(())))
    }

    /// Whether `event` could change anything here, decided from the event alone. One that
    /// cannot (the market and a listing that names no product) is acknowledged without a
    /// transaction or an inbox row: applying nothing twice is still nothing. Every event may,
    /// by default; an event this cannot decode may too (its handler says why it fails).
    fn concerns(&self, event: &IncomingEvent) -> bool {
        let _ = event;
        true
    }

    /// After a transaction of this handler's events has committed (a batch, or one event):
    /// work that must see those changes committed and that should not wait for the next
    /// event (the market trades what its consumer put on the books) is started here. It
    /// must not block. Nothing by default.
    fn committed(&self) {}
}

/// Runs one consumer group over some topics with one handler.
#[derive(Clone)]
pub struct ConsumerRuntime {
    group: String,
    topics: Vec<String>,
    pool: PgPool,
    kafka: Kafka,
    producer: FutureProducer,
    handler: Arc<dyn Handler>,
    max_attempts: u32,
    retry_base: Duration,
    health: ConsumerHealth,
}

impl std::fmt::Debug for ConsumerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerRuntime")
            .field("group", &self.group)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// How one event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Applied,
    Duplicate,
    DeadLettered,
    Cancelled,
}

impl ConsumerRuntime {
    /// A consumer in `group` for `topics`, applying events with `handler` on `pool`
    /// (which must hold the `inbox` table). `producer` sends dead letters.
    pub fn new(
        group: impl Into<String>,
        topics: &[&str],
        pool: PgPool,
        kafka: Kafka,
        producer: FutureProducer,
        handler: Arc<dyn Handler>,
        max_attempts: u32,
    ) -> Self {
        Self {
            group: group.into(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            pool,
            kafka,
            producer,
            handler,
            max_attempts: max_attempts.max(1),
            retry_base: Duration::from_millis(100),
            health: ConsumerHealth::new(Duration::from_secs(60)),
        }
    }

    /// Reports the group's lag and stalls to `health` (and judges stalls by its bound)
    /// instead of a private record with a 60 s bound.
    #[must_use]
    pub fn reporting_to(mut self, health: ConsumerHealth) -> Self {
        self.health = health;
        self
    }

    /// Consumes until `cancel`, then commits the stored offsets. Beside the consumer runs
    /// its group's [`Watcher`]; when it says this member holds nothing while the group is
    /// stalled, the member leaves the group and joins again with a new consumer.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let assignment = Assignment::default();
        let rejoin = Arc::new(tokio::sync::Notify::new());
        let watcher = Watcher {
            group: self.group.clone(),
            topics: self.topics.iter().map(|topic| self.kafka.topic(topic)).collect(),
            kafka: self.kafka.clone(),
            health: self.health.clone(),
            assignment: assignment.clone(),
            rejoin: rejoin.clone(),
        };
        let watching = cancel.child_token();
        let _stop_watching = watching.clone().drop_guard();
        tokio::spawn(watcher.run(watching));
        while self.consume(&cancel, &assignment, &rejoin).await? {}
        Ok(())
    }

    /// One membership of the group: returns `Ok(true)` when the member should join again.
    async fn consume(
        &self,
        cancel: &CancellationToken,
        assignment: &Assignment,
        rejoin: &tokio::sync::Notify,
    ) -> anyhow::Result<bool> {
        let context = GroupContext { group: self.group.clone(), assignment: assignment.clone() };
        let consumer: StreamConsumer<GroupContext> =
            self.kafka.consumer_config(&self.group).create_with_context(context).context("create Kafka consumer")?;
        let topics: Vec<String> = self.topics.iter().map(|topic| self.kafka.topic(topic)).collect();
        consumer.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>()).context("subscribe")?;
        tracing::info!(group = %self.group, topics = ?self.topics, "consumer started");
        let mut backoff = Backoff::new();
        let mut again = false;
        'consume: loop {
            let first = tokio::select! {
                () = cancel.cancelled() => break,
                () = rejoin.notified() => { again = true; break }
                message = consumer.recv() => message,
            };
            let first = match first {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(group = %self.group, %error, "Kafka consumer error");
                    backoff.wait(cancel).await;
                    continue;
                }
            };
            backoff.reset();
            // Whatever else is already fetched joins the batch (never waiting for more).
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match consumer.recv().now_or_never() {
                    Some(Ok(message)) => batch.push(message),
                    _ => break,
                }
            }
            let taken = Utc::now();
            // A key always maps to one partition, so partitions are independent: each one's
            // share of the batch is applied on its own transaction, concurrently, while the
            // events within a partition keep their order.
            let mut partitions: BTreeMap<(&str, i32), Vec<&BorrowedMessage<'_>>> = BTreeMap::new();
            for message in &batch {
                partitions.entry((message.topic(), message.partition())).or_default().push(message);
            }
            // Each partition's relays are woken as soon as its own share has committed.
            let outcomes = futures::future::join_all(
                partitions
                    .into_values()
                    .map(|messages| crate::announce::inherit(self.apply_partition(messages, taken, cancel))),
            )
            .await;
            let mut cancelled = false;
            for (handled, stopped) in outcomes {
                for message in handled {
                    consumer.store_offset_from_message(message).context("store offset")?;
                }
                cancelled |= stopped;
            }
            if cancelled {
                break 'consume;
            }
        }
        // Commit what was stored; "no offset" just means nothing was consumed.
        if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(group = %self.group, %error, "final offset commit");
        }
        // Dropping the consumer leaves the group, so the others are reassigned at once.
        drop(consumer);
        assignment.clear();
        tracing::info!(group = %self.group, rejoin = again, "consumer stopped");
        Ok(again)
    }

    /// Applies one partition's share of a batch, in order: the events that concern the
    /// handler on one transaction when every message is a valid event (those that do not
    /// need none), else (or when that fails) one at a time, each with its
    /// retries and, finally, the dead-letter queue. Returns the messages handled, whose
    /// offsets may now be stored, and whether it stopped because of `cancel`.
    async fn apply_partition<'b, 'c>(
        &self,
        messages: Vec<&'b BorrowedMessage<'c>>,
        taken: DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> (Vec<&'b BorrowedMessage<'c>>, bool) {
        let events: Option<Vec<IncomingEvent>> = messages.iter().map(|m| incoming(&self.kafka, m).ok()).collect();
        // Events that cannot change anything here are acknowledged in their place, without a
        // transaction; the offsets handed back stay in partition order either way.
        let mut ignored = vec![false; messages.len()];
        if let Some(events) = events {
            self.record_delivery(&messages, &events, taken);
            let mut concerned = Vec::with_capacity(events.len());
            for (event, ignored) in events.into_iter().zip(ignored.iter_mut()) {
                if self.handler.concerns(&event) {
                    concerned.push(event);
                } else {
                    *ignored = true;
                    self.record(&event, "events_ignored_total", Duration::ZERO, taken);
                }
            }
            if concerned.len() > 1 {
                match self.apply_batch(&concerned, taken).await {
                    Ok(()) => return (messages, false),
                    Err(error) => {
                        tracing::debug!(group = %self.group, error = format!("{error:#}"), "batch failed; applying one by one");
                    }
                }
            }
        }
        let mut handled = Vec::with_capacity(messages.len());
        for (message, ignored) in messages.into_iter().zip(ignored) {
            if !ignored && self.process(message, taken, cancel).await == Outcome::Cancelled {
                return (handled, true);
            }
            handled.push(message);
        }
        (handled, false)
    }

    async fn process(
        &self,
        message: &BorrowedMessage<'_>,
        taken: DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let event = match incoming(&self.kafka, message) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(topic = message.topic(), offset = message.offset(), %error, "not a valid event envelope");
                return self.dead_letter(message, &format!("invalid envelope: {error}"), 1, cancel).await;
            }
        };
        let span = self.event_span(&event);
        // The handler runs inside the event's consumer span, in the trace the event carries.
        self.apply_with_retries(message, &event, taken, cancel).instrument(span).await
    }

    /// The consumer span one event is applied in, per OpenTelemetry's messaging conventions:
    /// the child of the producer span that published it (its `traceparent`), with what a log
    /// line inside it needs to be found again (group, topic, partition, offset, type, event id).
    fn event_span(&self, event: &IncomingEvent) -> tracing::Span {
        let span = tracing::info_span!(
            "consume",
            otel.name = format!("process {}", event.topic),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.consumer.group.name = %self.group,
            messaging.destination.name = %event.topic,
            messaging.destination.partition.id = event.partition,
            messaging.kafka.offset = event.offset,
            messaging.message.id = %event.envelope.id,
            event_type = %event.envelope.event_type,
            service = self.group.rsplit('-').next().unwrap_or(&self.group),
        );
        trace::continue_trace(&span, event.envelope.traceparent.as_deref().and_then(TraceContext::parse));
        span
    }

    async fn apply_with_retries(
        &self,
        message: &BorrowedMessage<'_>,
        event: &IncomingEvent,
        taken: DateTime<Utc>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let labels = [
            ("group", self.group.clone()),
            ("topic", event.topic.clone()),
            ("type", event.envelope.event_type.clone()),
        ];
        let started = Instant::now();
        let mut delay = self.retry_base;
        for attempt in 1..=self.max_attempts {
            match self.apply_once(event).await {
                Ok(applied) => {
                    self.record(event, outcome(applied), started.elapsed(), taken);
                    return if applied { Outcome::Applied } else { Outcome::Duplicate };
                }
                Err(error) => {
                    metrics::counter!("event_handler_failures_total", &labels).increment(1);
                    let error = format!("{error:#}");
                    if attempt == self.max_attempts {
                        tracing::error!(attempt, %error, "event failed every attempt; dead-lettering it");
                        return self.dead_letter(message, &error, attempt, cancel).await;
                    }
                    tracing::warn!(attempt, %error, ?delay, "event handler failed; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return Outcome::Cancelled,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        unreachable!("the loop returns on the last attempt")
    }

    /// One transaction: claim the event id, run the handler, commit. `Ok(false)` = duplicate.
    async fn apply_once(&self, event: &IncomingEvent) -> anyhow::Result<bool> {
        let _transaction = sneakerstop_db::transaction_span("applying an event");
        let mut tx = self.pool.begin().await.context("begin")?;
        let applied = self.apply_in(&mut tx, event).await?;
        tx.commit().await.context("commit")?;
        self.handler.committed();
        Ok(applied)
    }

    /// Claims the event id and, if it is new, runs the handler, on `tx`.
    async fn apply_in(&self, tx: &mut PgConnection, event: &IncomingEvent) -> anyhow::Result<bool> {
        let fresh = claim(tx, std::slice::from_ref(event)).await?.contains(&event.envelope.id);
        if fresh {
            self.handler.handle(tx, event).await?;
        }
        Ok(fresh)
    }

    /// Applies a batch in one transaction: one commit (one WAL flush) for many events,
    /// which is what lets a consumer keep up with a busy topic. Any failure rolls the whole
    /// batch back, and the caller then applies its events one by one.
    #[tracing::instrument(skip_all, fields(group = %self.group, events = events.len()), err)]
    async fn apply_batch(&self, events: &[IncomingEvent], taken: DateTime<Utc>) -> anyhow::Result<()> {
        let started = Instant::now();
        let _transaction = sneakerstop_db::transaction_span("applying a batch of events");
        let mut tx = self.pool.begin().await.context("begin a batch")?;
        self.handler.lock_batch(&mut tx, events).await.context("lock what the batch changes")?;
        let mut fresh = claim(&mut tx, events).await?;
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            // `remove`: an event delivered twice within one batch is applied once.
            let applied = fresh.remove(&event.envelope.id);
            if applied {
                let handled = self.handler.handle(&mut tx, event);
                handled.instrument(self.event_span(event)).await.with_context(|| {
                    format!("apply {} {} from the batch", event.envelope.event_type, event.envelope.id)
                })?;
            }
            outcomes.push(applied);
        }
        tx.commit().await.context("commit batch")?;
        self.handler.committed();
        let each = started.elapsed() / u32::try_from(events.len()).unwrap_or(u32::MAX).max(1);
        for (event, applied) in events.iter().zip(outcomes) {
            self.record(event, outcome(applied), each, taken);
        }
        Ok(())
    }

    /// The first two stages of each event's hop, as the consumer takes a batch: `relay`
    /// (written to the outbox → produced, the Kafka timestamp the relay's producer set) and
    /// `delivery` (produced → taken by this consumer: broker, fetch, and any wait behind
    /// earlier events in the consumer's queue). The last stage, `apply`, is in [`Self::record`].
    fn record_delivery(&self, batch: &[&BorrowedMessage<'_>], events: &[IncomingEvent], taken: DateTime<Utc>) {
        let stage = |name: &'static str| metrics::histogram!("event_stage_seconds", "group" => self.group.clone(), "stage" => name);
        let (relay, delivery) = (stage("relay"), stage("delivery"));
        let seconds = |d: chrono::TimeDelta| d.to_std().unwrap_or_default().as_secs_f64();
        for (message, event) in batch.iter().zip(events) {
            let Some(produced) = message.timestamp().to_millis().and_then(DateTime::<Utc>::from_timestamp_millis)
            else {
                continue;
            };
            relay.record(seconds(produced - event.envelope.time));
            delivery.record(seconds(taken - produced));
        }
    }

    /// Metrics for one handled event, counted by `counter` (applied, a duplicate, or of no
    /// concern here); `taken` is when the consumer took it from its queue.
    fn record(&self, event: &IncomingEvent, counter: &'static str, took: Duration, taken: DateTime<Utc>) {
        let labels = [
            ("group", self.group.clone()),
            ("topic", event.topic.clone()),
            ("type", event.envelope.event_type.clone()),
        ];
        let now = Utc::now();
        let hop = (now - event.envelope.time).to_std().unwrap_or_default();
        metrics::histogram!("event_hop_seconds", &labels).record(hop.as_secs_f64());
        let apply = (now - taken).to_std().unwrap_or_default();
        metrics::histogram!("event_stage_seconds", "group" => self.group.clone(), "stage" => "apply")
            .record(apply.as_secs_f64());
        metrics::histogram!("event_handle_seconds", &labels).record(took.as_secs_f64());
        metrics::counter!(counter, &labels).increment(1);
    }

    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        error: &str,
        attempts: u32,
        cancel: &CancellationToken,
    ) -> Outcome {
        let mut backoff = Backoff::new();
        loop {
            match dlq::send(&self.producer, message, &self.group, error, attempts).await {
                Ok(()) => {
                    metrics::counter!("dead_letters_total", "group" => self.group.clone(), "topic" => self.kafka.unprefixed(message.topic()).to_owned())
                        .increment(1);
                    return Outcome::DeadLettered;
                }
                Err(send_error) => {
                    // Never move past an event we could neither handle nor park.
                    tracing::error!(error = format!("{send_error:#}"), "could not write dead letter; retrying");
                    if cancel.is_cancelled() {
                        return Outcome::Cancelled;
                    }
                    backoff.wait(cancel).await;
                }
            }
        }
    }
}

/// Records `events`' ids in the inbox in one statement; returns the ids that were new (an
/// id already there was handled before).
async fn claim(tx: &mut PgConnection, events: &[IncomingEvent]) -> anyhow::Result<HashSet<uuid::Uuid>> {
    let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.envelope.id).collect();
    let topics: Vec<&str> = events.iter().map(|e| e.topic.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.envelope.event_type.as_str()).collect();
    let fresh: Vec<uuid::Uuid> = sqlx::query_scalar!(
        "INSERT INTO inbox (event_id, topic, event_type)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        &ids,
        &topics as &[&str],
        &types as &[&str],
    )
    .fetch_all(tx)
    .await
    .context("record events in inbox")?;
    Ok(fresh.into_iter().collect())
}

/// The counter of an event applied (`true`) or recognised as a duplicate.
fn outcome(applied: bool) -> &'static str {
    if applied { "events_consumed_total" } else { "events_duplicate_total" }
}

/// Most events applied in one transaction.
const MAX_BATCH: usize = 200;

/// The event a message carries, if its headers are a valid envelope.
fn incoming(kafka: &Kafka, message: &BorrowedMessage<'_>) -> Result<IncomingEvent, sneakerstop_events::EnvelopeError> {
    let headers: Vec<(&str, &[u8])> =
        message.headers().map(|h| h.iter().filter_map(|h| h.value.map(|v| (h.key, v))).collect()).unwrap_or_default();
    Ok(IncomingEvent {
        topic: kafka.unprefixed(message.topic()).to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        envelope: Envelope::from_headers(headers)?,
        payload: message.payload().unwrap_or_default().to_vec(),
    })
}

/// Keeps the member's assignment current for its [`Watcher`].
struct GroupContext {
    group: String,
    assignment: Assignment,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match consumer.assignment() {
            Ok(held) => {
                tracing::info!(group = %self.group, partitions = held.count(), "assignment changed");
                self.assignment.replace(&held);
            }
            Err(error) => {
                tracing::warn!(group = %self.group, %error, ?rebalance, "cannot read the assignment");
                self.assignment.clear();
            }
        }
    }
}
