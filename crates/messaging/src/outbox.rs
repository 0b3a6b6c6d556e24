//! The transactional outbox and its relay.
//!
//! [`enqueue`] writes an event into the service's `outbox` table on the caller's
//! transaction, so the event exists if and only if the change it describes committed.
//! [`Relay`] publishes the rows in `id` order with an idempotent producer and deletes each
//! row only after the broker acknowledged it. One relay per service is active at a time (a
//! PostgreSQL advisory lock elects it), so two replicas of a service never publish the
//! same rows concurrently or out of order. A broker outage only grows the backlog; when the
//! broker returns the backlog drains in order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sneakerstop_events::{Contract, Envelope};

use crate::Kafka;
use sneakerstop_telemetry::trace::{self, TRACEPARENT, TraceContext};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Writes `event` about aggregate `subject` (now at `version`) to the outbox, on the
/// caller's transaction, keyed as its contract says ([`Contract::key`]). The `traceparent`
/// of the current request, if any, goes with it. Returns the event id.
pub async fn enqueue<C: Contract>(
    tx: &mut PgConnection,
    source: &str,
    subject: Uuid,
    version: i64,
    event: &C,
) -> anyhow::Result<Uuid> {
    let outgoing = Outgoing::new(source, subject, version, event);
    let (id, event_type) = (outgoing.id, outgoing.event_type.clone());
    outgoing
        .bind(sqlx::query(&Outgoing::insert_sql(1)))
        .execute(tx)
        .await
        .with_context(|| format!("write {event_type} to the outbox"))?;
    Ok(id)
}

/// Binds an [`Outgoing`]'s six parameters to a query of either kind (sqlx's `Query` and
/// `QueryAs` share no trait for `bind`).
macro_rules! bind_outgoing {
    ($query:expr, $outgoing:expr) => {
        $query
            .bind($outgoing.id)
            .bind($outgoing.topic)
            .bind($outgoing.key)
            .bind($outgoing.event_type)
            .bind(sqlx::types::Json($outgoing.headers))
            .bind(sqlx::types::Json($outgoing.payload))
    };
}

/// A statement of [`Outgoing::after_write_sql`], as it is bound: it returns the event's id
/// when the write changed a row.
pub type WriteQuery<'q> = sqlx::query::QueryAs<'q, sqlx::Postgres, (Uuid,), sqlx::postgres::PgArguments>;

/// An event ready for the outbox, for writing it in the same SQL statement as the change
/// it describes: `WITH change AS (INSERT ...) ` + [`Outgoing::insert_sql`]. One statement
/// is one round trip and an implicit transaction, so the change and its event still
/// commit together or not at all.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The event id (`ce_id`).
    pub id: Uuid,
    topic: &'static str,
    key: String,
    event_type: String,
    headers: Vec<(String, String)>,
    payload: serde_json::Value,
}

impl Outgoing {
    /// `event` about aggregate `subject` (now at `version`), keyed as its contract says, in
    /// a span of its own (`outbox <type>`) whose `traceparent` it carries: the relay's
    /// producer span continues from there.
    pub fn new<C: Contract>(source: &str, subject: Uuid, version: i64, event: &C) -> Self {
        let span = tracing::info_span!(
            "outbox",
            otel.name = format!("outbox {}", event.event_type()),
            event_type = event.event_type(),
            messaging.destination.name = C::TOPIC,
            messaging.message.id = tracing::field::Empty,
        );
        let traceparent = span.in_scope(trace::current_traceparent);
        // `/sneakerstop/<schema>`: the outbox this row goes to, announced after the commit.
        crate::announce::written(source.rsplit('/').next().unwrap_or(source));
        let envelope = Envelope::new(event, source, subject, version, traceparent);
        span.record("messaging.message.id", tracing::field::display(envelope.id));
        let headers = envelope.to_headers().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Self {
            id: envelope.id,
            topic: C::TOPIC,
            key: event.key().to_string(),
            event_type: envelope.event_type,
            headers,
            payload: event.payload(),
        }
    }

    /// The outbox insert, its six parameters numbered from `$first`.
    pub fn insert_sql(first: usize) -> String {
        let params: Vec<String> = (first..first + 6).map(|n| format!("${n}")).collect();
        format!(
            "INSERT INTO outbox (event_id, topic, message_key, event_type, headers, payload) VALUES ({})",
            params.join(", ")
        )
    }

    /// A statement that runs `write` — an `INSERT`, `UPDATE` or `DELETE` whose parameters
    /// are `$1` to `$(first - 1)`, with a `RETURNING` clause — and inserts the event (its six
    /// parameters numbered from `$first`) only if `write` returned a row: the change and its
    /// event in one round trip, and no event for a change that did not happen (a version
    /// guard that failed, an insert that met `ON CONFLICT DO NOTHING`). Run it with
    /// [`Self::after_write`]. A call site's statement never changes: build it once (a
    /// `static` `LazyLock`), not per write.
    pub fn after_write_sql(write: &str, first: usize) -> String {
        let params: Vec<String> = (first..first + 6).map(|n| format!("${n}")).collect();
        format!(
            "WITH written AS ({write})
             INSERT INTO outbox (event_id, topic, message_key, event_type, headers, payload)
             SELECT {} WHERE EXISTS (SELECT FROM written)
             RETURNING event_id",
            params.join(", ")
        )
    }

    /// Runs `query` — a statement of [`Self::after_write_sql`] with its write's parameters
    /// bound — with this event bound after them, on `executor` (alone, the statement is its
    /// own transaction). Returns whether the write returned a row (and so the event was
    /// written).
    pub async fn after_write(self, query: WriteQuery<'_>, executor: impl sqlx::PgExecutor<'_>) -> anyhow::Result<bool> {
        let event_type = self.event_type.clone();
        let written = self
            .bind_as(query)
            .fetch_optional(executor)
            .await
            .with_context(|| format!("write a change and its {event_type}"))?;
        Ok(written.is_some())
    }

    /// Binds the six parameters of [`Self::insert_sql`], after those already bound.
    pub fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        bind_outgoing!(query, self)
    }

    /// [`Self::bind`] for a statement that returns rows as `O`.
    pub fn bind_as<'q, O>(
        self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        bind_outgoing!(query, self)
    }
}

/// Events for the outbox written by one statement, as six arrays in the order pushed. The
/// statement must insert them in that order (`unnest(…) WITH ORDINALITY … ORDER BY` the
/// ordinality): the relay publishes in the outbox's id order. The market's `write_batch`
/// (a writer batch's changes) is one.
#[derive(Debug, Default)]
pub struct OutgoingBatch {
    ids: Vec<Uuid>,
    topics: Vec<&'static str>,
    keys: Vec<String>,
    event_types: Vec<String>,
    headers: Vec<String>,
    payloads: Vec<String>,
}

impl OutgoingBatch {
    /// Adds `event` after those pushed before.
    pub fn push(&mut self, event: Outgoing) -> anyhow::Result<()> {
        self.headers.push(serde_json::to_string(&event.headers).context("event headers serialize")?);
        self.payloads.push(serde_json::to_string(&event.payload).context("an event payload serializes")?);
        self.ids.push(event.id);
        self.topics.push(event.topic);
        self.keys.push(event.key);
        self.event_types.push(event.event_type);
        Ok(())
    }

    /// Binds the six arrays (event ids, topics, keys, types, headers and payloads as JSON
    /// text), after those already bound, to a statement that returns rows as `O`.
    pub fn bind_as<'q, O>(
        self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        query
            .bind(self.ids)
            .bind(self.topics)
            .bind(self.keys)
            .bind(self.event_types)
            .bind(self.headers)
            .bind(self.payloads)
    }
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    id: i64,
    topic: String,
    message_key: String,
    event_type: String,
    headers: sqlx::types::Json<Vec<(String, String)>>,
    payload: String,
}

/// Publishes one service's outbox.
#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    schema: String,
    producer: FutureProducer,
    /// Put before each row's topic on the brokers (`Kafka::topic_prefix`).
    topic_prefix: String,
    poll_interval: Duration,
    batch_size: i64,
    /// Woken by the process's [`ChangeFeed`](crate::ChangeFeed); without it the relay
    /// listens on a connection of its own.
    wake: Option<Arc<Notify>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("schema", &self.schema).finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay for the outbox in `schema` (the pool's search path), publishing with
    /// `producer` (made by `kafka`) to `kafka`'s names of the topics.
    pub fn new(pool: PgPool, schema: &str, kafka: &Kafka, producer: FutureProducer, poll_interval: Duration) -> Self {
        Self {
            pool,
            schema: schema.to_owned(),
            producer,
            topic_prefix: kafka.topic_prefix.clone(),
            poll_interval,
            batch_size: 500,
            wake: None,
        }
    }

    /// The channel its outbox's inserts notify at commit.
    pub fn channel(schema: &str) -> String {
        format!("{schema}_outbox")
    }

    /// Wakes on `feed`'s notifications for this outbox instead of its own `LISTEN`
    /// connection (subscribe before the feed runs).
    #[must_use]
    pub fn woken_by(mut self, feed: &crate::ChangeFeed) -> Self {
        self.wake = Some(self.wake_on(feed));
        self
    }

    /// A wake-up for every signal of this outbox's channel on `feed`: a notification, or a
    /// (re)connection, after which one may have been missed.
    fn wake_on(&self, feed: &crate::ChangeFeed) -> Arc<Notify> {
        let wake = Arc::new(Notify::new());
        let notify = wake.clone();
        feed.subscribe(&Self::channel(&self.schema), move |_| notify.notify_one());
        wake
    }

    /// The advisory lock key electing this schema's active relay.
    fn lock_key(&self) -> String {
        format!("sneakerstop.outbox.{}", self.schema)
    }

    /// Runs until `cancel`: wins the election, then publishes whenever events commit. The
    /// backlog gauges are measured on a timer of their own, leader or not, so that they keep
    /// telling the truth exactly when publishing is stuck (a broker outage holds a batch for
    /// up to the delivery timeout, and then fails it).
    pub async fn run(self, cancel: CancellationToken) {
        let gauges = {
            let relay = self.clone();
            let cancel = cancel.clone();
            let interval = self.poll_interval.clamp(Duration::from_secs(1), Duration::from_secs(5));
            tokio::spawn(async move {
                crate::every(interval, cancel, "measured the outbox backlog", || async {
                    relay.record_backlog().await.map(|()| 0)
                })
                .await;
            })
        };
        let mut backoff = Backoff::new();
        while !cancel.is_cancelled() {
            match self.lead(&cancel).await {
                Ok(()) => backoff.reset(),
                Err(error) => {
                    tracing::warn!(schema = %self.schema, error = format!("{error:#}"), "outbox relay error; retrying");
                    metrics::counter!("outbox_relay_errors_total", "service" => self.schema.clone()).increment(1);
                    backoff.wait(&cancel).await;
                }
            }
        }
        let _ = gauges.await;
        tracing::info!(schema = %self.schema, "outbox relay stopped");
    }

    /// Waits to become the active relay, then publishes until cancelled or an error.
    async fn lead(&self, cancel: &CancellationToken) -> anyhow::Result<()> {
        // The lock lives as long as this connection; if the connection dies, another
        // replica takes over.
        let mut lock_conn = self.pool.acquire().await.context("acquire the relay lock connection")?.detach();
        loop {
            let won: bool = sqlx::query_scalar!(
                r#"SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS "won!""#,
                self.lock_key()
            )
            .fetch_one(&mut lock_conn)
            .await
            .context("try the relay lock")?;
            if won {
                break;
            }
            metrics::gauge!("outbox_relay_active", "service" => self.schema.clone()).set(0.0);
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
        tracing::info!(schema = %self.schema, "this process is the active outbox relay");
        metrics::gauge!("outbox_relay_active", "service" => self.schema.clone()).set(1.0);

        // Notifications arrive one per committing transaction; the permit of a `Notify`
        // folds all that arrive during a pass into one more pass, so a busy service costs
        // the relay a few queries per batch, not per transaction. Without the process's
        // change feed, a feed of its own carries them while this relay leads.
        let (wake, _own_feed) = match &self.wake {
            Some(wake) => (wake.clone(), None),
            None => {
                let feed = crate::ChangeFeed::new();
                let wake = self.wake_on(&feed);
                let stop = CancellationToken::new();
                tokio::spawn(feed.run(self.pool.clone(), stop.clone()));
                // Stops that feed when this relay stops leading, however it does.
                (wake, Some(stop.drop_guard()))
            }
        };
        let result = async {
            let mut checked = None::<Instant>;
            loop {
                // Rows the broker acknowledged are deleted by the read after them, one round
                // trip for both; the last read of a wake finds nothing, or whatever committed
                // while the batch before it was in flight.
                let mut sent = Vec::new();
                while !cancel.is_cancelled() && (self.publish_batch(&mut sent, cancel).await? || !sent.is_empty()) {}
                // Stopping: what the broker acknowledged is marked sent all the same.
                self.mark_sent(&mut sent).await?;
                // Leadership at most once per poll interval.
                if checked.is_none_or(|at| at.elapsed() >= self.poll_interval) {
                    // Losing the lock connection means losing leadership.
                    sqlx::query_scalar!("SELECT 1 AS alive")
                        .fetch_one(&mut lock_conn)
                        .await
                        .context("relay lock connection lost")?;
                    checked = Some(Instant::now());
                }
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    () = wake.notified() => {}
                    () = tokio::time::sleep(self.poll_interval) => {}
                }
            }
        }
        .await;
        metrics::gauge!("outbox_relay_active", "service" => self.schema.clone()).set(0.0);
        // Closing the connection releases the advisory lock.
        let _ = sqlx::Connection::close(lock_conn).await;
        result
    }

    /// Deletes the rows in `sent` (acknowledged by the broker) and publishes up to one batch
    /// of the rest in order; afterwards `sent` holds the rows this batch had acknowledged.
    /// Returns whether more rows may be waiting (the batch was full, or the producer's queue
    /// was).
    pub async fn publish_batch(&self, sent: &mut Vec<i64>, cancel: &CancellationToken) -> anyhow::Result<bool> {
        // The read sees the outbox as it was before the delete (one snapshot for the whole
        // statement), so the rows being deleted are left out by id.
        let rows = sqlx::query_as!(
            Row,
            r#"WITH sent AS (DELETE FROM outbox WHERE id = ANY($1))
               SELECT id, topic, message_key, event_type, headers AS "headers: sqlx::types::Json<Vec<(String, String)>>",
                      payload::text AS "payload!"
                 FROM outbox WHERE id <> ALL($1) ORDER BY id LIMIT $2"#,
            sent.as_slice(),
            self.batch_size,
        )
        .fetch_all(&self.pool)
        .await
        .context("mark outbox rows sent and read the next")?;
        sent.clear();
        if rows.is_empty() {
            return Ok(false);
        }
        let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= self.batch_size;
        // Queue the batch (librdkafka pipelines it), then await acknowledgements in order.
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in &rows {
            // Each event is published in a producer span continuing the trace of the outbox
            // write, whose own traceparent the message carries: its consumers' parent.
            let span = self.publish_span(row);
            let traceparent = TraceContext::of(&span).map(|c| c.to_string());
            let mut headers = OwnedHeaders::new_with_capacity(row.headers.len());
            for (key, value) in row.headers.iter() {
                let value = match (&traceparent, key.as_str()) {
                    (Some(ours), TRACEPARENT) => ours,
                    _ => value,
                };
                headers = headers.insert(Header { key, value: Some(value.as_bytes()) });
            }
            let topic = format!("{}{}", self.topic_prefix, row.topic);
            let record = FutureRecord::to(&topic).key(&row.message_key).payload(&row.payload).headers(headers);
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push((row, delivery, span)),
                // The local queue is full: publish what is queued, the rest next round.
                Err((error, _)) if !deliveries.is_empty() => {
                    tracing::debug!(%error, "producer queue full; publishing a shorter batch");
                    break;
                }
                Err((error, _)) => {
                    return Err(anyhow::anyhow!("queue outbox row {} for {}: {error}", row.id, row.topic));
                }
            }
        }
        let mut delivered = Vec::with_capacity(deliveries.len());
        let mut failure = None;
        for (row, delivery, span) in deliveries {
            let outcome = tokio::select! {
                () = cancel.cancelled() => break,
                outcome = delivery => outcome,
            };
            match outcome {
                Ok(Ok(delivery)) => {
                    span.record("messaging.destination.partition.id", delivery.partition);
                    span.record("messaging.kafka.offset", delivery.offset);
                    metrics::counter!("events_published_total", "topic" => row.topic.clone(), "type" => row.event_type.clone())
                        .increment(1);
                    delivered.push(row.id);
                }
                Ok(Err((error, _))) => {
                    span.record("otel.status_code", "ERROR");
                    // Stop at the first failure: later rows must not be marked sent before it.
                    failure = Some(anyhow::anyhow!("publish outbox row {} to {}: {error}", row.id, row.topic));
                    break;
                }
                Err(_) => {
                    failure = Some(anyhow::anyhow!("the producer was dropped before acknowledging row {}", row.id));
                    break;
                }
            }
        }
        let more = full || delivered.len() < rows.len();
        *sent = delivered;
        match failure {
            // What was acknowledged before the failure is still marked sent.
            Some(error) => {
                self.mark_sent(sent).await?;
                Err(error)
            }
            None => Ok(more),
        }
    }

    /// Deletes `sent` from the outbox on its own (the statement that reads the next batch
    /// does it otherwise).
    async fn mark_sent(&self, sent: &mut Vec<i64>) -> anyhow::Result<()> {
        if !sent.is_empty() {
            sqlx::query!("DELETE FROM outbox WHERE id = ANY($1)", sent.as_slice())
                .execute(&self.pool)
                .await
                .context("mark outbox rows sent")?;
            sent.clear();
        }
        Ok(())
    }

    /// The producer span of publishing `row`, per OpenTelemetry's messaging conventions, the
    /// child of the outbox write's span (the row's `traceparent`); ended on acknowledgement.
    fn publish_span(&self, row: &Row) -> tracing::Span {
        let header = |name: &str| row.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
        let span = tracing::info_span!(
            "publish",
            otel.name = format!("send {}", row.topic),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.destination.name = %row.topic,
            messaging.destination.partition.id = tracing::field::Empty,
            messaging.kafka.offset = tracing::field::Empty,
            messaging.kafka.message.key = %row.message_key,
            messaging.message.id = header(sneakerstop_events::headers::ID).unwrap_or_default(),
            event_type = %row.event_type,
            service = %self.schema,
        );
        trace::continue_trace(&span, header(TRACEPARENT).and_then(TraceContext::parse));
        span
    }

    async fn record_backlog(&self) -> anyhow::Result<()> {
        let backlog = sqlx::query!(
            r#"SELECT count(*) AS "count!", EXTRACT(EPOCH FROM clock_timestamp() - min(created_at))::float8 AS age
                 FROM outbox"#
        )
        .fetch_one(&self.pool)
        .await
        .context("measure the outbox backlog")?;
        let (count, age) = (backlog.count, backlog.age);
        #[allow(clippy::cast_precision_loss, reason = "a gauge; exact beyond 2^52 rows is moot")]
        metrics::gauge!("outbox_backlog", "service" => self.schema.clone()).set(count as f64);
        metrics::gauge!("outbox_oldest_age_seconds", "service" => self.schema.clone()).set(age.unwrap_or(0.0));
        Ok(())
    }
}

/// Exponential backoff between retries: 100 ms doubling to 10 s.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self { next: Duration::from_millis(100) }
    }

    pub(crate) fn reset(&mut self) {
        self.next = Duration::from_millis(100);
    }

    /// Sleeps the current delay (or until cancelled) and doubles it.
    pub(crate) async fn wait(&mut self, cancel: &CancellationToken) {
        tokio::select! {
            () = cancel.cancelled() => {}
            () = tokio::time::sleep(self.next) => {}
        }
        self.next = (self.next * 2).min(Duration::from_secs(10));
    }
}
