//! The services this binary can run, and how each one is started.
//!
//! Starting a service: migrate its schema (its tables plus the outbox/inbox), create its
//! topics if missing, start its outbox relay, its consumer (one group per service) and any
//! timers (orders' expiry sweeper) as background tasks, and hand back its router and
//! readiness checks.

use sneakerstop_auth::SessionKeys;
use sneakerstop_db::DbConfig;
use sneakerstop_db::sqlx::PgPool;
use sneakerstop_health::Check;
use std::sync::Arc;

use anyhow::Context;

use sneakerstop_messaging::{ConsumerRuntime, Handler, Kafka, Relay};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

/// A SneakerStop service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Service {
    /// Accounts and sessions (`/api/users`).
    Identity,
    /// Sneaker listings (`/api/sneakers`).
    Catalog,
    /// Reservations that expire (`/api/orders`).
    Orders,
    /// Charges and refunds (`/api/payments`).
    Payments,
}

impl Service {
    /// Every service, in start-up order.
    pub const ALL: &[Service] = &[Service::Identity, Service::Catalog, Service::Orders, Service::Payments];

    /// The given services, or all of them when none are named; without duplicates.
    pub fn selected(named: &[Service]) -> Vec<Service> {
        let mut services = if named.is_empty() { Self::ALL.to_vec() } else { named.to_vec() };
        services.sort();
        services.dedup();
        services
    }

    /// The service's name, as on the command line and in its schema.
    pub fn name(self) -> &'static str {
        match self {
            Service::Identity => sneakerstop_identity::SCHEMA,
            Service::Catalog => sneakerstop_catalog::SCHEMA,
            Service::Orders => sneakerstop_orders::SCHEMA,
            Service::Payments => sneakerstop_payments::SCHEMA,
        }
    }

    /// The topics the service publishes to.
    pub fn publishes(self) -> &'static [&'static str] {
        match self {
            Service::Identity => sneakerstop_identity::PUBLISHES,
            Service::Catalog => sneakerstop_catalog::PUBLISHES,
            Service::Orders => sneakerstop_orders::PUBLISHES,
            Service::Payments => sneakerstop_payments::PUBLISHES,
        }
    }

    /// The service's OpenAPI description.
    pub fn openapi(self) -> utoipa::openapi::OpenApi {
        match self {
            Service::Identity => sneakerstop_identity::ApiDoc::openapi(),
            Service::Catalog => sneakerstop_catalog::ApiDoc::openapi(),
            Service::Orders => sneakerstop_orders::ApiDoc::openapi(),
            Service::Payments => sneakerstop_payments::ApiDoc::openapi(),
        }
    }

    /// The topics the service consumes and its handler. Every service but identity (which
    /// records its revocations itself) also consumes `identity.users` for `session.revoked`.
    fn consumer(self) -> Option<(Vec<&'static str>, Arc<dyn Handler>)> {
        let (topics, handler): (&[&str], Arc<dyn Handler>) = match self {
            Service::Identity => return None,
            Service::Catalog => (sneakerstop_catalog::CONSUMES, Arc::new(sneakerstop_catalog::events::CatalogHandler)),
            Service::Orders => (sneakerstop_orders::CONSUMES, Arc::new(sneakerstop_orders::events::OrdersHandler)),
            Service::Payments => {
                (sneakerstop_payments::CONSUMES, Arc::new(sneakerstop_payments::events::PaymentsHandler))
            }
        };
        let mut topics = topics.to_vec();
        topics.push(sneakerstop_events::topics::USERS);
        Some((topics, Arc::new(crate::sessions::WithRevocations(handler))))
    }
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
    /// PostgreSQL settings.
    pub db: DbConfig,
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
    /// Password hashes running or waiting, at most.
    pub password_hash_queue: usize,
    /// Failed sign-ins allowed per account and address.
    pub throttle: sneakerstop_identity::throttle::Throttle,
    /// Whose `X-Forwarded-For` is believed.
    pub proxies: sneakerstop_auth::client::TrustedProxies,
    /// How long a request waits for a replica to hear of an id.
    pub replica_wait: std::time::Duration,
    /// Every consumer group's lag and stalls, for `/healthz`.
    pub consumers: sneakerstop_messaging::ConsumerHealth,
    /// The process's one `LISTEN` connection: relays and the catalog cache subscribe to it
    /// while services start; it runs once they all have.
    pub changes: sneakerstop_messaging::ChangeFeed,
    /// The catalog's read cache.
    pub catalog: sneakerstop_settings::CatalogSettings,
    /// Orders' reservation window and sweep interval.
    pub orders: sneakerstop_settings::OrderSettings,
    /// Which payment provider, and its settings.
    pub payments: sneakerstop_settings::PaymentSettings,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("db", &self.db).field("kafka", &self.kafka).finish_non_exhaustive()
    }
}

/// Creates the service's schema and applies its migrations.
pub async fn migrate(service: Service, db: &DbConfig) -> anyhow::Result<PgPool> {
    let migrations = match service {
        Service::Identity => sneakerstop_identity::migrations(),
        Service::Catalog => sneakerstop_catalog::migrations(),
        Service::Orders => sneakerstop_orders::migrations(),
        Service::Payments => sneakerstop_payments::migrations(),
    };
    sneakerstop_db::connect_and_migrate(db, service.name(), &migrations).await
}

/// Migrates and starts `service`; its background tasks go into `tasks` and stop on `cancel`.
pub async fn start(
    service: Service,
    shared: &Shared,
    tasks: &mut JoinSet<()>,
    cancel: &CancellationToken,
) -> anyhow::Result<Started> {
    let pool = migrate(service, &shared.db).await?;
    shared.kafka.ensure_topics(service.publishes()).await?;
    let relay = Relay::new(pool.clone(), service.name(), shared.producer.clone(), shared.poll_interval)
        .woken_by(&shared.changes);
    tasks.spawn(relay.run(cancel.clone()));
    tasks.spawn(crate::sessions::follow(service.name(), pool.clone(), shared, cancel.clone()));
    if let Some((topics, handler)) = service.consumer() {
        let group = format!("{}-{}", shared.group_prefix, service.name());
        // Create what we consume too, so a consumer started before its producer subscribes
        // to an existing topic.
        shared.kafka.ensure_topics(&topics).await?;
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
        tasks.spawn(async move {
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
        });
    }

    let checks = vec![postgres_check(service, pool.clone())];
    let service_pool = pool.clone();
    let router = match service {
        Service::Identity => {
            let (throttle, forget_from) = (shared.throttle, pool.clone());
            tasks.spawn(sneakerstop_messaging::every(
                std::time::Duration::from_secs(60),
                cancel.clone(),
                "forgot expired sign-in failures and sessions",
                move || {
                    let pool = forget_from.clone();
                    async move { sneakerstop_identity::forget_expired(&pool, throttle).await }
                },
            ));
            let state = sneakerstop_identity::AppState {
                pool,
                keys: shared.keys.clone(),
                passwords: sneakerstop_identity::password::Passwords::new(shared.password_hash_queue)?,
                throttle: shared.throttle,
                proxies: shared.proxies.clone(),
            };
            sneakerstop_identity::app(state)
        }
        Service::Catalog => {
            let cache = sneakerstop_catalog::cache::ReadCache::new(shared.catalog.cache_max_age);
            cache.follow(&shared.changes, &sneakerstop_catalog::change_channel());
            let state = sneakerstop_catalog::AppState { pool, keys: shared.keys.clone(), cache };
            sneakerstop_catalog::app(state)
        }
        Service::Orders => {
            tasks.spawn(sneakerstop_orders::expiry::run(pool.clone(), shared.orders.sweep_interval, cancel.clone()));
            let state = sneakerstop_orders::AppState {
                pool,
                keys: shared.keys.clone(),
                reservation_ttl: shared.orders.reservation_ttl,
                replica: replica_wait(shared, service),
                max_holds: shared.orders.max_unpaid_per_buyer,
            };
            sneakerstop_orders::app(state)
        }
        Service::Payments => {
            let provider = payment_provider(&shared.payments)?;
            tasks.spawn(sneakerstop_payments::refunds::run(
                pool.clone(),
                provider.clone(),
                std::time::Duration::from_secs(1),
                cancel.clone(),
            ));
            let recovery_after = shared.payments.recovery_after;
            tasks.spawn(sneakerstop_payments::recovery::run(
                pool.clone(),
                provider.clone(),
                shared.payments.currency.clone(),
                (recovery_after / 4).clamp(std::time::Duration::from_millis(200), std::time::Duration::from_secs(5)),
                recovery_after,
                cancel.clone(),
            ));
            let state = sneakerstop_payments::AppState {
                pool,
                keys: shared.keys.clone(),
                provider,
                currency: shared.payments.currency.clone(),
                // A request still waiting for the provider keeps its key; one that died
                // frees it soon after the provider timeout.
                claim_lease: shared.payments.timeout * 2,
                replica: replica_wait(shared, service),
            };
            sneakerstop_payments::app(state)
        }
    };
    Ok(Started { router, checks, pool: service_pool })
}

/// Wakes the service's requests waiting for its replica, from the process's change feed.
fn replica_wait(shared: &Shared, service: Service) -> sneakerstop_messaging::ReplicaWait {
    let wait = sneakerstop_messaging::ReplicaWait::new(shared.replica_wait);
    wait.follow(&shared.changes, &sneakerstop_messaging::ReplicaWait::channel(service.name()));
    wait
}

/// The configured payment provider.
fn payment_provider(
    settings: &sneakerstop_settings::PaymentSettings,
) -> anyhow::Result<Arc<dyn sneakerstop_payments::PaymentProvider>> {
    use sneakerstop_payments::provider::{simulated::Simulated, stripe::Stripe};
    use sneakerstop_settings::PaymentProviderKind;
    Ok(match settings.provider {
        PaymentProviderKind::Simulated => {
            tracing::warn!(
                "PAYMENT_PROVIDER=simulated: no money moves (tok_visa succeeds, tok_chargeDeclined declines)"
            );
            Arc::new(Simulated::default())
        }
        PaymentProviderKind::Stripe => {
            let secret = settings.stripe_secret.clone().context("PAYMENT_PROVIDER=stripe needs STRIPE_SECRET")?;
            Arc::new(Stripe::new(&settings.stripe_api_base, secret, settings.timeout)?)
        }
    })
}

fn postgres_check(service: Service, pool: PgPool) -> Check {
    Check::new(format!("postgres:{}", service.name()), move || {
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

/// The broker readiness check, shared by all services of the process.
pub fn kafka_check(producer: rdkafka::producer::FutureProducer) -> Check {
    Check::new("kafka", move || {
        let producer = producer.clone();
        async move { Kafka::ping(&producer).await }
    })
}
