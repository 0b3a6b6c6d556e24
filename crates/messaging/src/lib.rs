//! Kafka plumbing shared by every service. The guarantees of docs/events.md live here.
//!
//! - [`outbox`] — write an event in the same transaction as the change it describes, and
//!   the relay that publishes those rows in order with an idempotent producer.
//! - [`consumer`] — run a handler per event with exactly-once *effect*: the handler's
//!   changes and the event id commit together; offsets are stored only after that commit;
//!   failures are retried with backoff and finally dead-lettered, never dropped.
//! - [`changes`] — one `LISTEN` connection per process, telling relays and caches when
//!   outbox rows commit.
//! - [`dlq`] — list and replay dead letters.
//! - [`announce`] — wakes the relays after a commit (no `NOTIFY` inside the transaction).
//! - [`every`] — background rounds on a timer (sweepers, refunds, recovery).
//! - [`heard`] — whether a consumer group has applied everything published on a topic
//!   before now, for decisions that must not be made on a replica that is behind.
//! - [`kafka`] — client configuration, topic creation, broker health.
//! - [`replica`] — a request for an id a replica has not heard of yet waits, bounded, for
//!   the replica row to commit instead of answering 404 at once.
//! - [`watch`] — each consumer group's lag, assignment and stalls, for metrics and
//!   `/healthz`; a member left with nothing while its group is stuck joins again.

pub mod announce;
pub mod broker;
pub mod changes;
pub mod consumer;
pub mod dlq;
pub mod every;
pub mod heard;
pub mod kafka;
pub mod outbox;
pub mod replica;
pub mod watch;

use std::sync::LazyLock;

use sqlx::migrate::Migrator;

pub use announce::announcing;
pub use broker::BrokerHealth;
pub use changes::{CacheSource, ChangeFeed, Signal};
pub use consumer::{ConsumerRuntime, Handler, IncomingEvent};
pub use every::{every, round_span};
pub use heard::Heard;
pub use kafka::{Kafka, Security};
pub use outbox::{Outgoing, OutgoingBatch, Relay, WriteQuery, enqueue};
pub use replica::ReplicaWait;
pub use watch::{ConsumerHealth, GroupHealth};

/// The outbox and inbox tables; every service applies these in its own schema.
pub static MIGRATOR: LazyLock<Migrator> =
    LazyLock::new(|| sneakerstop_db::shared_schema(sqlx::migrate!("./migrations")));
