//! The command line: `sneakerstop serve`, `migrate`, `dlq`, `load`, `admin`.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sneakerstop_auth::SessionKeys;
use sneakerstop_db::DbConfig;
use sneakerstop_messaging::Kafka;
use sneakerstop_settings::{DatabaseSettings, HttpSettings, KafkaSettings, LogSettings, Secret, SessionSettings};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::services::{self, ServiceSettings, Shared};

/// SneakerStop: an event-driven sneaker marketplace.
#[derive(Debug, Parser)]
#[command(name = "sneakerstop", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    log: LogSettings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve one, several or all services behind one HTTP port.
    Serve(Box<ServeArgs>),
    /// Create the database and schemas and apply migrations, then exit.
    Migrate(MigrateArgs),
    /// Inspect and replay dead letters (events a consumer gave up on).
    Dlq(crate::dlq::DlqArgs),
    /// Drive a running marketplace over HTTP and report throughput and latency.
    Load(sneakerstop_load::LoadArgs),
    /// Grant or take away the admin role.
    Admin(crate::admin::AdminArgs),
}

/// The storefront's name on the command line.
const STOREFRONT: &str = "storefront";

/// Arguments of `sneakerstop serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Services to run (identity, catalog, orders, payments, market, storefront); all of them
    /// when none are named.
    services: Vec<String>,
    /// Local development: without JWT_SECRET, sign sessions with a random per-process secret
    /// instead of refusing to start.
    #[arg(long)]
    dev: bool,
    #[command(flatten)]
    http: HttpSettings,
    #[command(flatten)]
    database: DatabaseSettings,
    #[command(flatten)]
    session: SessionSettings,
    #[command(flatten)]
    kafka: KafkaSettings,
    #[command(flatten)]
    service: ServiceSettings,
    #[command(flatten)]
    storefront: sneakerstop_storefront::Settings,
}

/// Arguments of `sneakerstop migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Services to migrate (identity, catalog, orders, payments, market); all of them when none are named.
    services: Vec<String>,
    #[command(flatten)]
    database: DatabaseSettings,
    #[command(flatten)]
    service: ServiceSettings,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    sneakerstop_telemetry::init_logging(&cli.log);
    let result = match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Dlq(args) => crate::dlq::run(args).await,
        Command::Load(args) => sneakerstop_load::run(args).await,
        Command::Admin(args) => crate::admin::run(args).await,
    };
    // The last spans leave before the process does (the export runs on this runtime, so
    // wait for it off its worker threads).
    let _ = tokio::task::spawn_blocking(sneakerstop_telemetry::shutdown).await;
    result
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let db = DbConfig::from_settings(&args.database)?;
    for service in services::selected(&args.service.services(), &args.services)? {
        services::migrate(service.as_ref(), &db).await?.close().await;
        tracing::info!(service = service.name(), "migrated");
    }
    Ok(())
}

fn jwt_secret(settings: &SessionSettings, dev: bool) -> anyhow::Result<Secret> {
    match (&settings.jwt_secret, dev) {
        (Some(secret), _) if secret.expose().len() >= 32 => Ok(secret.clone()),
        (Some(_), _) => anyhow::bail!("JWT_SECRET must be at least 32 characters"),
        (None, true) => {
            tracing::warn!(
                "JWT_SECRET is not set: using a random DEVELOPMENT secret for this process only; \
                 sessions end when it stops. Never run production like this."
            );
            Ok(Secret::new(format!("dev-{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())))
        }
        (None, false) => anyhow::bail!("JWT_SECRET is required (use `serve --dev` for local development only)"),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let secret = jwt_secret(&args.session, args.dev)?;
    let kafka = Kafka::from_settings(&args.kafka)?;
    let producer = kafka.producer()?;
    let keys = SessionKeys::new(&secret, args.session.ttl, args.session.cookie_secure);
    let write_limit = sneakerstop_auth::limit::WriteLimit::new(
        args.session.write_limit_per_second,
        args.session.write_limit_burst,
        keys.clone(),
    );
    // Bound before the services start, so they know where this process is reached (the
    // market tells the other instances); connections wait in the backlog until it serves.
    let listener = TcpListener::bind((args.http.host, args.http.port))
        .await
        .with_context(|| format!("bind {}:{}", args.http.host, args.http.port))?;
    let addr = listener.local_addr()?;
    let shared = Shared {
        address: reachable_at(addr),
        db: DbConfig::from_settings(&args.database)?,
        migrate_on_start: args.database.migrate_on_start,
        keys,
        revocation_poll: args.session.revocation_poll,
        kafka,
        producer: producer.clone(),
        poll_interval: args.kafka.poll_interval,
        max_attempts: args.kafka.max_attempts,
        group_prefix: args.kafka.group_prefix.clone(),
        consumers: sneakerstop_messaging::ConsumerHealth::new(args.kafka.stall_after),
        replica_wait: args.kafka.replica_wait,
        changes: sneakerstop_messaging::ChangeFeed::new(),
        proxies: sneakerstop_auth::client::TrustedProxies::parse(&args.http.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("TRUSTED_PROXIES: {e}"))?,
    };
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let all = args.service.services();
    // The storefront owns no data (no schema, topics or consumer): it is routes only.
    let storefront = args.services.is_empty() || args.services.iter().any(|name| name == STOREFRONT);
    let named: Vec<String> = args.services.iter().filter(|name| *name != STOREFRONT).cloned().collect();
    let selected =
        if named.is_empty() && !args.services.is_empty() { Vec::new() } else { services::selected(&all, &named)? };
    let mut router = axum::Router::new();
    let mut checks = Vec::new();
    let broker = sneakerstop_messaging::BrokerHealth::default();
    tasks.spawn(broker.clone().watch(producer.clone(), cancel.clone()));
    let mut feed_pool = None;
    // Migrations and topics for every service at once (a restarted pod is back in the
    // consumer groups sooner); then each service starts, in order.
    let pools = futures::future::try_join_all(selected.iter().map(|service| async {
        services::prepare(service.as_ref(), &shared)
            .await
            .with_context(|| format!("prepare the {} service", service.name()))
    }))
    .await?;
    for (service, pool) in selected.iter().zip(pools) {
        let started = services::start(service.as_ref(), pool, &shared, &mut tasks, &cancel)
            .await
            .with_context(|| format!("start the {} service", service.name()))?;
        router = router.merge(started.router);
        checks.extend(started.checks);
        feed_pool.get_or_insert(started.pool);
    }
    // Every relay and cache has subscribed: one LISTEN connection serves them all.
    if let Some(pool) = feed_pool {
        tasks.spawn(shared.changes.clone().run(pool, cancel.clone()));
    }
    // Every process documents the whole API, whichever services it runs: behind the
    // ingress, /docs reaches one of them and should show everything.
    let docs = all.iter().map(|s| s.openapi());
    let details = vec![services::consumers_detail(shared.consumers.clone()), services::broker_detail(broker)];
    let idle = write_limit.clone();
    tasks.spawn(sneakerstop_messaging::every(
        std::time::Duration::from_secs(60),
        cancel.clone(),
        "forgot idle write-limit buckets",
        move || {
            idle.forget_idle();
            std::future::ready(Ok(0))
        },
    ));
    let router = router
        .layer(axum::middleware::from_fn_with_state(write_limit, sneakerstop_auth::limit::WriteLimit::layer))
        .layer(axum::middleware::from_fn_with_state(shared.changes.clone(), announce_commits));
    let router = if storefront {
        anyhow::ensure!(
            !selected.is_empty() || args.storefront.api_url.is_some(),
            "the storefront alone needs STOREFRONT_API_URL: the address of the API it shows"
        );
        let pages = sneakerstop_storefront::router(
            &args.storefront,
            router.clone(),
            shared.keys.clone(),
            &secret,
            args.session.cookie_secure,
            args.dev,
        )?;
        router.merge(pages)
    } else {
        router
    };
    let app = crate::server::app(
        router,
        checks,
        details,
        crate::server::openapi(docs),
        &args.http.cors_allowed_origins,
        !storefront,
    );

    let mut names: Vec<_> = selected.iter().map(|s| s.name()).collect();
    if storefront {
        names.push(STOREFRONT);
    }
    tracing::info!(%addr, services = ?names, "listening");
    // Peers' addresses reach the handlers (sign-in throttling per client address).
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await;

    // HTTP is drained; now stop relays and consumers (they finish the event in hand and
    // commit their offsets), then flush what the producer still holds.
    cancel.cancel();
    let drained = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(result) = tasks.join_next().await {
            if let Err(error) = result {
                tracing::error!(%error, "background task panicked");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("background tasks did not stop within 20s");
    }
    {
        use rdkafka::producer::Producer;
        let _ = producer.flush(std::time::Duration::from_secs(5));
    }
    served.context("HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// `http://` and the address others reach `addr` at: the loopback address for a server
/// bound to every interface (a deployment says better: MARKET_ADVERTISE_URL).
fn reachable_at(addr: std::net::SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() { std::net::Ipv4Addr::LOCALHOST.into() } else { addr.ip() };
    format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// Resolves on SIGTERM or ctrl-c; in-flight requests are then drained.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Runs a request so that the outboxes it wrote are announced once it has answered (its
/// transactions committed before), waking the relays at once (`sneakerstop_messaging::announce`).
async fn announce_commits(
    axum::extract::State(feed): axum::extract::State<sneakerstop_messaging::ChangeFeed>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    sneakerstop_messaging::announcing(&feed, next.run(request)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn production_serve_refuses_to_start_without_a_secret() {
        let settings = SessionSettings {
            jwt_secret: None,
            ttl: std::time::Duration::from_secs(60),
            cookie_secure: false,
            revocation_poll: std::time::Duration::from_secs(2),
            write_limit_per_second: std::num::NonZeroU32::MIN,
            write_limit_burst: std::num::NonZeroU32::MIN,
        };
        let error = jwt_secret(&settings, false).unwrap_err().to_string();
        assert!(error.contains("JWT_SECRET is required"), "{error}");
        let dev = jwt_secret(&settings, true).unwrap();
        assert!(dev.expose().len() >= 32);
        assert_ne!(dev, jwt_secret(&settings, true).unwrap(), "dev secrets are random per process");
        let short = SessionSettings { jwt_secret: Some(Secret::new("short")), ..settings };
        let error = jwt_secret(&short, false).unwrap_err().to_string();
        assert!(!error.contains("short"), "the secret is never echoed: {error}");
    }
}
