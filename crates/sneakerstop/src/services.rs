//! The services this binary can run, and how any one of them is started.
//!
//! [`ServiceSettings::services`] is the one list of services. Starting one: migrate its
//! schema (its tables plus the outbox/inbox and the other shared tables it lists) and create
//! its topics if missing ([`prepare`], for all of a process's services at once), then start
//! its outbox relay, the follower of its ended sessions, its
//! consumer (one group per service) and then [`Service::start`], which adds its own
//! background tasks and hands back its routes.

use std::sync::Arc;

use anyhow::Context;
use sneakerstop_auth::SessionKeys;
use sneakerstop_db::DbConfig;
use sneakerstop_db::sqlx::PgPool;
use sneakerstop_health::Check;
use sneakerstop_messaging::{ConsumerRuntime, Kafka, Relay};
use sneakerstop_service::{Service, Wiring};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Every service's own settings; together they make the binary's list of services.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceSettings {
    #[command(flatten)]
    identity: sneakerstop_identity::service::Settings,
    #[command(flatten)]
    catalog: sneakerstop_catalog::service::Settings,
    #[command(flatten)]
    orders: sneakerstop_orders::service::Settings,
    #[command(flatten)]
    payments: sneakerstop_payments::service::Settings,
    #[command(flatten)]
    market: sneakerstop_market::service::Settings,
}

impl ServiceSettings {
    /// Every service this binary runs, in start-up order.
    pub fn services(&self) -> Vec<Arc<dyn Service>> {
        vec![
            Arc::new(sneakerstop_identity::Identity::new(self.identity.clone())),
            Arc::new(sneakerstop_catalog::Catalog::new(self.catalog.clone())),
            Arc::new(sneakerstop_orders::Orders::new(self.orders.clone())),
            Arc::new(sneakerstop_payments::Payments::new(self.payments.clone())),
            Arc::new(sneakerstop_market::Market::new(self.market.clone())),
        ]
    }
}

/// The services `names` names, in start-up order and without duplicates; all of them when
/// none are named.
pub fn selected(all: &[Arc<dyn Service>], names: &[String]) -> anyhow::Result<Vec<Arc<dyn Service>>> {
    let known: Vec<&str> = all.iter().map(|s| s.name()).collect();
    if let Some(unknown) = names.iter().find(|name| !known.contains(&name.as_str())) {
        anyhow::bail!("unknown service `{unknown}`; this binary runs {}", known.join(", "));
    }
    Ok(all.iter().filter(|s| names.is_empty() || names.iter().any(|n| n == s.name())).cloned().collect())
}

/// What a started service contributes to the server.
#[derive(Debug)]
pub struct Started {
    /// Its routes, with state applied.
    pub router: axum::Router,
    /// Its readiness checks.
    pub checks: Vec<Check>,
    /// Its pool (any one of them can carry the process's change feed).
    pub pool: PgPool,
}

/// Everything services share.
#[derive(Clone)]
pub struct Shared {
    /// Where this process's HTTP server is reached (`http://host:port`).
    pub address: String,
    /// PostgreSQL settings.
    pub db: DbConfig,
    /// Whether starting a service applies its migrations (else it waits for them).
    pub migrate_on_start: bool,
    /// Session keys (and the sessions this process knows were ended).
    pub keys: SessionKeys,
    /// Longest a started service goes without reading its revoked sessions.
    pub revocation_poll: std::time::Duration,
    /// Kafka settings.
    pub kafka: Kafka,
    /// The process's idempotent producer (relays and dead letters).
    pub producer: rdkafka::producer::FutureProducer,
    /// How often relays poll when not notified.
    pub poll_interval: std::time::Duration,
    /// Attempts per event before dead-lettering.
    pub max_attempts: u32,
    /// Consumer groups are `<group_prefix>-<service>`.
    pub group_prefix: String,
    /// Whose `X-Forwarded-For` is believed.
    pub proxies: sneakerstop_auth::client::TrustedProxies,
    /// How long a request waits for a replica to hear of an id.
    pub replica_wait: std::time::Duration,
    /// Every consumer group's lag and stalls, for `/healthz`.
    pub consumers: sneakerstop_messaging::ConsumerHealth,
    /// The process's one `LISTEN` connection: relays, caches and followers subscribe to it
    /// while services start; it runs once they all have.
    pub changes: sneakerstop_messaging::ChangeFeed,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("db", &self.db).field("kafka", &self.kafka).finish_non_exhaustive()
    }
}

/// Creates the service's schema and applies its migrations.
pub async fn migrate(service: &dyn Service, db: &DbConfig) -> anyhow::Result<PgPool> {
    sneakerstop_db::connect_and_migrate(db, service.name(), &service.migrations()).await
}

/// The slow part of starting `service` — round trips to PostgreSQL and Kafka — which the
/// services of a process do at once: its schema migrated (or, with `MIGRATE_ON_START=false`,
/// found migrated by someone else) and the topics it publishes and consumes created if
/// missing, so a consumer started before its producer subscribes to an existing topic.
/// Returns its pool.
pub async fn prepare(service: &dyn Service, shared: &Shared) -> anyhow::Result<PgPool> {
    let pool = if shared.migrate_on_start {
        migrate(service, &shared.db).await?
    } else {
        sneakerstop_db::connect_when_migrated(&shared.db, service.name(), &service.migrations()).await?
    };
    let mut topics = service.publishes().to_vec();
    for topic in crate::sessions::consumer(service).map(|(consumed, _)| consumed).unwrap_or_default() {
        if !topics.contains(&topic) {
            topics.push(topic);
        }
    }
    shared.kafka.ensure_topics(&topics).await?;
    Ok(pool)
}

/// Starts `service` on its prepared `pool` ([`prepare`]); its background tasks go into
/// `tasks` and stop on `cancel`.
pub async fn start(
    service: &dyn Service,
    pool: PgPool,
    shared: &Shared,
    tasks: &mut JoinSet<()>,
    cancel: &CancellationToken,
) -> anyhow::Result<Started> {
    let name = service.name();
    let relay = Relay::new(pool.clone(), name, &shared.kafka, shared.producer.clone(), shared.poll_interval)
        .woken_by(&shared.changes);
    tasks.spawn(relay.run(cancel.clone()));
    tasks.spawn(crate::sessions::follow(name, pool.clone(), shared, cancel.clone()));
    let mut heard = None;
    if let Some((topics, handler)) = crate::sessions::consumer(service) {
        let group = format!("{}-{name}", shared.group_prefix);
        heard = Some(sneakerstop_messaging::Heard::new(shared.kafka.clone(), &group));
        let runtime = ConsumerRuntime::new(
            &group,
            &topics,
            pool.clone(),
            shared.kafka.clone(),
            shared.producer.clone(),
            handler,
            shared.max_attempts,
        )
        .reporting_to(shared.consumers.clone());
        let cancel = cancel.clone();
        // What the handlers write to the outbox wakes the relays once committed.
        tasks.spawn(sneakerstop_messaging::announcing(&shared.changes, async move {
            // A consumer that fails (it could not create its client or store an offset) is
            // started again: it resumes from the last committed offset, and the inbox makes
            // anything it sees twice harmless.
            while let Err(error) = runtime.clone().run(cancel.clone()).await {
                tracing::error!(%group, error = format!("{error:#}"), "consumer failed; restarting in 5 s");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                }
            }
        }));
    }
    let mut wiring = Wiring {
        pool: pool.clone(),
        keys: shared.keys.clone(),
        proxies: shared.proxies.clone(),
        changes: &shared.changes,
        replica_wait: shared.replica_wait,
        heard,
        tasks,
        cancel: cancel.clone(),
        address: shared.address.clone(),
    };
    let router = service.start(&mut wiring).with_context(|| format!("start {name}"))?;
    Ok(Started { router, checks: vec![postgres_check(name, pool.clone())], pool })
}

fn postgres_check(name: &'static str, pool: PgPool) -> Check {
    Check::new(format!("postgres:{name}"), move || {
        let pool = pool.clone();
        async move { sneakerstop_db::ping(&pool).await }
    })
}

/// `/healthz`'s view of the process's consumer groups.
pub fn consumers_detail(health: sneakerstop_messaging::ConsumerHealth) -> sneakerstop_health::Detail {
    sneakerstop_health::Detail::new("consumers", move || {
        let (groups, problems) = health.report();
        (serde_json::to_value(groups).unwrap_or_default(), problems)
    })
}

/// `/healthz`'s view of the broker (not a readiness check: see `messaging::broker`).
pub fn broker_detail(health: sneakerstop_messaging::BrokerHealth) -> sneakerstop_health::Detail {
    sneakerstop_health::Detail::new("broker", move || health.report())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Args {
        #[command(flatten)]
        settings: ServiceSettings,
    }

    fn all() -> Vec<Arc<dyn Service>> {
        Args::parse_from(["test"]).settings.services()
    }

    #[test]
    fn services_are_selected_by_name_in_start_up_order() {
        let all = all();
        let names = |chosen: Vec<Arc<dyn Service>>| chosen.iter().map(|s| s.name()).collect::<Vec<_>>();
        assert_eq!(names(selected(&all, &[]).unwrap()), ["identity", "catalog", "orders", "payments", "market"]);
        let picked = selected(&all, &["payments".into(), "identity".into(), "payments".into()]).unwrap();
        assert_eq!(names(picked), ["identity", "payments"]);
        let error = selected(&all, &["shipping".into()]).err().unwrap().to_string();
        assert!(
            error.contains("`shipping`") && error.contains("identity, catalog, orders, payments, market"),
            "{error}"
        );
    }
}
