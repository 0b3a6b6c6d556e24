//! The market as a [`Service`]: its settings, and how it starts.

use std::time::Duration;

use sneakerstop_service::{Service, Wiring};
use utoipa::OpenApi;

use crate::{ApiDoc, AppState, SCHEMA, engine, events, expiry, live, owners};

/// Market settings.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "market-settings")]
#[command(next_help_heading = "Market")]
pub struct Settings {
    /// How often the sweeper looks for bids whose time ran out (they are off the book at
    /// once regardless; the sweep makes state and events say so).
    #[arg(long = "bid-sweep-interval", env = "BID_SWEEP_INTERVAL", default_value = "1s", value_parser = sneakerstop_settings::parse_duration)]
    pub bid_sweep_interval: Duration,
    /// How often, at most, a live market stream sends a product's market data.
    #[arg(long = "market-stream-interval", env = "MARKET_STREAM_INTERVAL", default_value = "100ms", value_parser = sneakerstop_settings::parse_duration)]
    pub market_stream_interval: Duration,
    /// How long, at most, a read of a product's market answers requests while the product's
    /// book does not change (a backstop: any change makes it stale at once); `0s` reads
    /// PostgreSQL on every request.
    #[arg(long = "market-cache-max-age", env = "MARKET_CACHE_MAX_AGE", default_value = "60s", value_parser = sneakerstop_settings::parse_duration)]
    pub market_cache_max_age: Duration,
    /// The most open bids one buyer may have on one book (product and size); one more is
    /// refused with 409 `too-many-bids`.
    #[arg(long = "max-open-bids-per-book", env = "MAX_OPEN_BIDS_PER_BOOK", default_value_t = crate::domain::DEFAULT_MAX_OPEN_BIDS_PER_BOOK, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    pub max_open_bids_per_book: i64,
    /// Where the other market instances reach this one (`http://host:port`), for requests
    /// on books this instance owns that reach another ([`crate::owners`]). The address the
    /// server is bound to unless set (the loopback address if bound to every interface); in
    /// Kubernetes, the pod's address.
    #[arg(long = "market-advertise-url", env = "MARKET_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
}

/// The market service.
#[derive(Debug, Clone)]
pub struct Market {
    settings: Settings,
    /// The consumer's handler, which tells the writer when arrivals wait.
    handler: events::MarketHandler,
}

impl Market {
    /// The market with `settings`.
    pub fn new(settings: Settings) -> Self {
        Self { settings, handler: events::MarketHandler::default() }
    }
}

impl Service for Market {
    fn name(&self) -> &'static str {
        SCHEMA
    }

    fn migrations(&self) -> Vec<&'static sqlx::migrate::Migrator> {
        crate::migrations()
    }

    fn publishes(&self) -> &'static [&'static str] {
        &[sneakerstop_events::topics::BIDS, sneakerstop_events::topics::MATCHES]
    }

    fn consumes(&self) -> &'static [&'static str] {
        use sneakerstop_events::topics::{ORDERS, PAYMENT_METHODS, PRODUCTS, SNEAKERS};
        &[PRODUCTS, SNEAKERS, ORDERS, PAYMENT_METHODS]
    }

    fn handler(&self) -> Option<std::sync::Arc<dyn sneakerstop_messaging::Handler>> {
        Some(std::sync::Arc::new(self.handler.clone()))
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        ApiDoc::openapi()
    }

    fn start(&self, wiring: &mut Wiring<'_>) -> anyhow::Result<axum::Router> {
        wiring.spawn(expiry::run(wiring.pool.clone(), self.settings.bid_sweep_interval, wiring.cancel.clone()));
        let address = self.settings.advertise_url.as_deref().unwrap_or(&wiring.address);
        let ownership = owners::Ownership::new(address.trim_end_matches('/'));
        wiring.spawn(ownership.clone().run(wiring.pool.clone(), wiring.cancel.clone()));
        let (engine, writer) = engine::Engine::start(
            wiring.pool.clone(),
            ownership,
            self.settings.max_open_bids_per_book,
            engine::ARRIVALS_INTERVAL,
            wiring.cancel.clone(),
        );
        wiring.spawn(writer);
        // Set once: a second start of the same service value keeps the first writer.
        let _ = self.handler.engine.set(engine.clone());
        let markets = live::Markets::new(self.settings.market_stream_interval, self.settings.market_cache_max_age);
        markets.follow(wiring.changes);
        Ok(crate::app(AppState {
            pool: wiring.pool.clone(),
            keys: wiring.keys.clone(),
            replica: wiring.replica_wait(SCHEMA),
            markets,
            engine,
            forward: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|error| anyhow::anyhow!("the client that forwards to other instances: {error}"))?,
            max_open_bids: self.settings.max_open_bids_per_book,
        }))
    }
}
