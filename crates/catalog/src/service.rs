//! Catalog as a [`Service`]: its settings, and how it starts.

use std::time::Duration;

use sneakerstop_service::{Service, Wiring};
use utoipa::OpenApi;

use crate::{ApiDoc, AppState, SCHEMA, cache, events};

/// Catalog settings: the read cache in front of browsing.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "catalog-settings")]
#[command(next_help_heading = "Catalog")]
pub struct Settings {
    /// Longest a cached page or listing is served (changes invalidate it sooner, as they
    /// commit); `0s` turns the cache off.
    #[arg(long = "catalog-cache-max-age", env = "CATALOG_CACHE_MAX_AGE", default_value = "60s", value_parser = sneakerstop_settings::parse_duration)]
    pub cache_max_age: Duration,
    /// How often the sweeper looks for asks whose time ran out (they are off the market at
    /// once regardless: orders and the market read `expiresAt`).
    #[arg(long = "ask-sweep-interval", env = "ASK_SWEEP_INTERVAL", default_value = "1s", value_parser = sneakerstop_settings::parse_duration)]
    pub ask_sweep_interval: Duration,
}

/// The catalog service.
#[derive(Debug, Clone)]
pub struct Catalog {
    settings: Settings,
}

impl Catalog {
    /// Catalog with `settings`.
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }
}

impl Service for Catalog {
    fn name(&self) -> &'static str {
        SCHEMA
    }

    fn migrations(&self) -> Vec<&'static sqlx::migrate::Migrator> {
        crate::migrations()
    }

    fn publishes(&self) -> &'static [&'static str] {
        &[sneakerstop_events::topics::SNEAKERS, sneakerstop_events::topics::PRODUCTS]
    }

    fn consumes(&self) -> &'static [&'static str] {
        &[sneakerstop_events::topics::ORDERS]
    }

    fn handler(&self) -> Option<std::sync::Arc<dyn sneakerstop_messaging::Handler>> {
        Some(std::sync::Arc::new(events::CatalogHandler))
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        ApiDoc::openapi()
    }

    fn start(&self, wiring: &mut Wiring<'_>) -> anyhow::Result<axum::Router> {
        wiring.spawn(crate::expiry::run(wiring.pool.clone(), self.settings.ask_sweep_interval, wiring.cancel.clone()));
        let cache = cache::ReadCache::new(self.settings.cache_max_age);
        cache.follow(wiring.changes, &crate::change_channel());
        Ok(crate::app(AppState { pool: wiring.pool.clone(), keys: wiring.keys.clone(), cache }))
    }
}
