//! What a SneakerStop service is to the binary that runs it.
//!
//! Each service crate (identity, catalog, orders, payments) implements [`Service`]: its name
//! (also its PostgreSQL schema and its consumer group's suffix), its migrations, the topics
//! it publishes and consumes, its event handler, its OpenAPI description, and [`Service::start`],
//! which builds its state from its own settings and the process's [`Wiring`], spawns its
//! background tasks and returns its routes. The binary runs any set of services by iterating
//! over them — migrate, create topics, start the relay and the consumer, call `start` — so a
//! fifth service is one more value in its list, not one more arm in a `match`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sneakerstop_auth::SessionKeys;
use sneakerstop_auth::client::TrustedProxies;
use sneakerstop_messaging::{ChangeFeed, Handler, ReplicaWait};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A service's migrations followed by the shared ones every service's schema needs because
/// the binary wires them for every service: the outbox and inbox (`messaging`) and the
/// ended sessions (`auth::revocation`).
pub fn with_shared_migrations(own: &[&'static Migrator]) -> Vec<&'static Migrator> {
    let mut all = own.to_vec();
    all.push(&sneakerstop_messaging::MIGRATOR);
    all.push(&sneakerstop_auth::revocation::MIGRATOR);
    all
}

/// Declares what makes a crate a service's home: `SCHEMA` (its PostgreSQL schema and name),
/// `SOURCE` (the `ce_source` of its events), `MIGRATOR` (its own `migrations/`, embedded) and
/// `migrations()` — its own, then those it `uses`, then the ones every service needs.
///
/// ```ignore
/// sneakerstop_service::service_schema!("orders", uses &sneakerstop_idempotency::MIGRATOR);
/// ```
#[macro_export]
macro_rules! service_schema {
    ($schema:literal $(, uses $($shared:expr),+)?) => {
        /// The PostgreSQL schema that holds this service's tables (also its name).
        pub const SCHEMA: &str = $schema;

        /// `ce_source` of the events this service publishes.
        pub const SOURCE: &str = concat!("/sneakerstop/", $schema);

        /// This service's own migrations, embedded in the binary.
        pub static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
            std::sync::LazyLock::new(|| sneakerstop_db::shared_schema(sqlx::migrate!("./migrations")));

        /// Everything this service's schema needs, in order: its own migrations, then the
        /// shared ones.
        pub fn migrations() -> Vec<&'static sqlx::migrate::Migrator> {
            $crate::with_shared_migrations(&[&MIGRATOR $($(, $shared)+)?])
        }
    };
}

/// A service the binary can run.
pub trait Service: Send + Sync {
    /// Its name: on the command line, as its schema, in its consumer group.
    fn name(&self) -> &'static str;

    /// Everything its schema needs, in order: its own migrations, then the shared ones.
    fn migrations(&self) -> Vec<&'static Migrator>;

    /// The topics it publishes to.
    fn publishes(&self) -> &'static [&'static str];

    /// The topics its handler consumes (none by default).
    fn consumes(&self) -> &'static [&'static str] {
        &[]
    }

    /// Its event handler, for the topics it consumes.
    fn handler(&self) -> Option<Arc<dyn Handler>> {
        None
    }

    /// Whether it records ended sessions itself, in the transaction that ends them
    /// (identity); every other service learns of them from `session.revoked`.
    fn ends_sessions(&self) -> bool {
        false
    }

    /// Its OpenAPI description.
    fn openapi(&self) -> utoipa::openapi::OpenApi;

    /// Builds its state, spawns its background tasks into `wiring` and returns its routes.
    fn start(&self, wiring: &mut Wiring<'_>) -> anyhow::Result<axum::Router>;
}

/// What the process gives a starting service.
#[derive(Debug)]
pub struct Wiring<'a> {
    /// A pool on the service's own schema, migrated.
    pub pool: PgPool,
    /// Signs and verifies session tokens; knows ended sessions.
    pub keys: SessionKeys,
    /// Whose `X-Forwarded-For` names the client.
    pub proxies: TrustedProxies,
    /// The process's `LISTEN` connection, to subscribe to while services start.
    pub changes: &'a ChangeFeed,
    /// How long a request waits for the service's replica to hear of an id.
    pub replica_wait: Duration,
    /// The service's consumer group as the brokers see it (`None` if it consumes nothing):
    /// whether it has heard everything another service published.
    pub heard: Option<sneakerstop_messaging::Heard>,
    /// Where background tasks go; they stop on `cancel`.
    pub tasks: &'a mut JoinSet<()>,
    /// Cancelled when the process shuts down.
    pub cancel: CancellationToken,
    /// Where this process's HTTP server is reached (`http://host:port`, bound already).
    pub address: String,
}

impl Wiring<'_> {
    /// Runs `task` in the background until the process stops. The outboxes it writes are
    /// announced after each of its rounds ([`sneakerstop_messaging::every`]) or
    /// [`sneakerstop_messaging::announce::flush`], so the relays wake at once.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        let feed = self.changes.clone();
        self.tasks.spawn(async move { sneakerstop_messaging::announcing(&feed, task).await });
    }

    /// A replica wait for `schema`, woken by its replica inserts on the change feed.
    pub fn replica_wait(&self, schema: &str) -> ReplicaWait {
        let wait = ReplicaWait::new(self.replica_wait);
        wait.follow(self.changes, &ReplicaWait::channel(schema));
        wait
    }
}
