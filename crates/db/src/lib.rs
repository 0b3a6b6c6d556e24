//! Database access shared by the services: one pool per service, each in its own schema.
//!
//! A service owns a PostgreSQL schema named after it (`identity`, `catalog`, ...). Its pool
//! sets `search_path` to that schema, so its SQL names its own tables unqualified, its
//! migrations (and sqlx's `_sqlx_migrations` bookkeeping table) land there, and it cannot
//! read another service's tables by accident. All services may share one database locally,
//! or each have its own in a deployment: only `DATABASE_URL` changes.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

pub use sqlx;

/// How to reach a service's data: the server, the schema, and the pool size.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Connection options for the database (without the schema).
    pub options: PgConnectOptions,
    /// Largest number of pooled connections.
    pub pool_size: u32,
}

impl DbConfig {
    /// Parses a `postgres://` URL.
    pub fn from_url(url: &str, pool_size: u32) -> anyhow::Result<Self> {
        // The URL may hold a password: never put it in the error.
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid postgres:// URL"))?;
        Ok(Self { options, pool_size })
    }

    /// From the shared settings.
    pub fn from_settings(settings: &sneakerstop_settings::DatabaseSettings) -> anyhow::Result<Self> {
        Self::from_url(settings.url.expose(), settings.pool_size)
    }
}

/// Creates the database if it does not exist yet (several processes may race to do so).
pub async fn ensure_database(config: &DbConfig) -> anyhow::Result<()> {
    let Some(name) = config.options.get_database().map(str::to_owned) else {
        return Ok(()); // the server's default database always exists
    };
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(config.options.clone().database("postgres"))
        .await
        .context("connect to PostgreSQL's `postgres` database to create ours")?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&admin)
        .await
        .context("check whether the database exists")?;
    let result = if exists {
        Ok(())
    } else {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&format!("CREATE DATABASE {quoted}")).execute(&admin).await {
            Ok(_) => {
                tracing::info!(database = %name, "created database");
                Ok(())
            }
            // Another process created it between our check and our CREATE.
            Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P04" | "23505")) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("create database {name}")),
        }
    };
    admin.close().await;
    result
}

/// Connects a service to its schema, creating database and schema if needed, and applies
/// `migrators` in order (a service's own, then shared ones such as the outbox tables; each
/// must ignore the others' versions, see `Migrator::set_ignore_missing`).
pub async fn connect_and_migrate(config: &DbConfig, schema: &str, migrators: &[&Migrator]) -> anyhow::Result<PgPool> {
    ensure_database(config).await?;
    create_schema(config, schema).await?;
    let pool = pool(config, schema).await?;
    for migrator in migrators {
        migrator.run(&pool).await.with_context(|| format!("run the {schema} migrations"))?;
    }
    Ok(pool)
}

/// Connects a service to its schema without migrating it, and waits until every migration
/// of `migrators` has been applied by someone else (`sneakerstop migrate`, run as a Job
/// before a rollout), saying so in the log every 10 s meanwhile. For deployments where
/// serving pods must not change the schema (`MIGRATE_ON_START=false`).
pub async fn connect_when_migrated(config: &DbConfig, schema: &str, migrators: &[&Migrator]) -> anyhow::Result<PgPool> {
    let pool = pool(config, schema).await?;
    let wanted: Vec<i64> = migrators.iter().flat_map(|m| m.iter().map(|migration| migration.version)).collect();
    let started = std::time::Instant::now();
    let mut told = started;
    loop {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
        let missing: Vec<i64> = wanted.iter().copied().filter(|v| !applied.contains(v)).collect();
        if missing.is_empty() {
            return Ok(pool);
        }
        if told.elapsed() >= Duration::from_secs(10) || told == started {
            told = std::time::Instant::now();
            tracing::warn!(%schema, ?missing, "waiting for the schema to be migrated (`sneakerstop migrate`); MIGRATE_ON_START=false");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A pooled connection used within this long is handed out again without a ping first.
///
/// sqlx pings every connection it hands out by default: a round trip, and a wake-up of
/// the server's backend, before each transaction or statement of every request and
/// consumer batch — under load most of the connections were used a millisecond earlier.
/// A connection that sat idle longer is pinged, and replaced if the server ended it. One
/// the server ended within the window fails the statement it is handed to (a request
/// answered 500, a consumer batch retried), as it would had it died just after a ping.
/// HikariCP's default (`aliveBypassWindowMs`) is the same half second.
pub const ALIVE_WITHOUT_PING: Duration = Duration::from_millis(500);

/// A pool whose connections use `schema` as their search path. Does not migrate.
pub async fn pool(config: &DbConfig, schema: &str) -> anyhow::Result<PgPool> {
    use sqlx::Connection;
    let options = config.options.clone().options([("search_path", schema)]);
    PgPoolOptions::new()
        .max_connections(config.pool_size)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= ALIVE_WITHOUT_PING {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .with_context(|| format!("connect to PostgreSQL for the {schema} schema"))
}

async fn create_schema(config: &DbConfig, schema: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !schema.is_empty() && schema.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "schema names are lower-case letters and underscores, got {schema:?}"
    );
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(config.options.clone())
        .await
        .context("connect to PostgreSQL")?;
    let result = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).execute(&pool).await;
    pool.close().await;
    match result {
        Ok(_) => Ok(()),
        // Two processes creating the schema at once: the loser sees a unique violation.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => Ok(()),
        Err(e) => Err(e).with_context(|| format!("create schema {schema}")),
    }
}

/// A migrator that shares its schema with others: a service's own migrations and the shared
/// ones (outbox/inbox, idempotency keys) live in one schema and one bookkeeping table, each
/// ignoring the others' versions. Versions never collide: services number from 1, shared
/// crates from 1,000,000,001 (messaging), 2,000,000,001 (idempotency) and 3,000,000,001
/// (auth's revoked sessions).
pub fn shared_schema(mut migrator: Migrator) -> Migrator {
    migrator.set_ignore_missing(true);
    migrator
}

/// One page of the rows `select` picks for `owner` (a `SELECT … FROM … WHERE <owner> = $1`
/// statement, possibly with more conditions), newest first by id (UUIDv7), continuing
/// below `before`, with one row more than `limit` so the caller can tell whether a next
/// page exists.
pub async fn newest_first<T>(
    pool: &PgPool,
    select: &str,
    owner: sqlx::types::Uuid,
    before: Option<sqlx::types::Uuid>,
    limit: i64,
) -> anyhow::Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    sqlx::query_as(&format!("{select} AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"))
        .bind(owner)
        .bind(before)
        .bind(limit + 1)
        .fetch_all(pool)
        .await
        .context("read a page")
}

/// The database's clock (`now()`: inside a transaction, its start). Deadlines are stored and
/// compared on this one clock, so instances whose clocks drift agree on what is due.
pub async fn now(
    conn: &mut sqlx::PgConnection,
) -> anyhow::Result<sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc>> {
    sqlx::query_scalar("SELECT now()").fetch_one(conn).await.context("read the clock")
}

/// Whether the database answers a trivial query; used by `/readyz`.
/// A client span for one database transaction, named for what it does (`placing an order`),
/// with OpenTelemetry's `db.*` attributes; it ends when dropped, so bind it for as long as the
/// transaction runs: `let _transaction = transaction_span("placing an order");`. Statements'
/// parameters are never recorded.
pub fn transaction_span(what: &'static str) -> tracing::Span {
    tracing::info_span!(
        "transaction",
        otel.name = what,
        otel.kind = "client",
        db.system.name = "postgresql",
        db.operation.name = "TRANSACTION",
    )
}

pub async fn ping(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("SELECT 1").execute(pool).await.context("PostgreSQL did not answer")?;
    Ok(())
}

/// Whether `error` is a unique-constraint violation of the constraint or index `name`.
pub fn is_unique_violation(error: &sqlx::Error, name: &str) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation() && e.constraint() == Some(name))
}
