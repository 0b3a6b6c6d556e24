//! Orders as a [`Service`]: its settings, and how it starts.

use std::time::Duration;

use sneakerstop_service::{Service, Wiring};
use utoipa::OpenApi;

use crate::{ApiDoc, AppState, SCHEMA, events, expiry};

/// Orders settings: how long a reservation holds a pair.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "orders-settings")]
#[command(next_help_heading = "Orders")]
pub struct Settings {
    /// How long an unpaid order reserves its pair before it expires.
    #[arg(long = "order-reservation-ttl", env = "ORDER_RESERVATION_TTL", default_value = "15m", value_parser = sneakerstop_settings::parse_duration)]
    pub reservation_ttl: Duration,
    /// How long past its deadline an unpaid order waits for payments to say it lapsed
    /// (`payment.lapsed`) before it expires anyway: the bound on how long a pair stays
    /// held while payments or its events are stuck. A charge accepted in time but heard of
    /// after this is refunded (docs/reliability.md).
    #[arg(long = "order-expiry-grace", env = "ORDER_EXPIRY_GRACE", default_value = "2m", value_parser = sneakerstop_settings::parse_duration)]
    pub expiry_grace: Duration,
    /// How often the expiry sweeper looks for lapsed reservations.
    #[arg(long = "order-sweep-interval", env = "ORDER_SWEEP_INTERVAL", default_value = "1s", value_parser = sneakerstop_settings::parse_duration)]
    pub sweep_interval: Duration,
    /// The most unpaid reservations one buyer may hold at once, so that no script can take a
    /// whole release-day drop off the market without paying. Enforced by the database.
    #[arg(long = "order-max-unpaid-per-buyer", env = "ORDER_MAX_UNPAID_PER_BUYER", default_value_t = 3)]
    pub max_unpaid_per_buyer: u32,
    /// A buyer at that cap is refused only once orders has heard every payment published
    /// before the request (a paid order is not an unpaid hold, even when its
    /// `payment.succeeded` is late); this is the longest the request waits for that.
    #[arg(long = "order-hold-wait", env = "ORDER_HOLD_WAIT", default_value = "10s", value_parser = sneakerstop_settings::parse_duration)]
    pub hold_wait: Duration,
}

/// The orders service.
#[derive(Debug, Clone)]
pub struct Orders {
    settings: Settings,
}

impl Orders {
    /// Orders with `settings`.
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }
}

impl Service for Orders {
    fn name(&self) -> &'static str {
        SCHEMA
    }

    fn migrations(&self) -> Vec<&'static sqlx::migrate::Migrator> {
        crate::migrations()
    }

    fn publishes(&self) -> &'static [&'static str] {
        &[sneakerstop_events::topics::ORDERS]
    }

    fn consumes(&self) -> &'static [&'static str] {
        &[
            sneakerstop_events::topics::SNEAKERS,
            sneakerstop_events::topics::PAYMENTS,
            sneakerstop_events::topics::MATCHES,
        ]
    }

    fn handler(&self) -> Option<std::sync::Arc<dyn sneakerstop_messaging::Handler>> {
        let reservation_ttl =
            chrono::Duration::from_std(self.settings.reservation_ttl).unwrap_or(chrono::Duration::MAX);
        Some(std::sync::Arc::new(events::OrdersHandler { reservation_ttl }))
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        ApiDoc::openapi()
    }

    fn start(&self, wiring: &mut Wiring<'_>) -> anyhow::Result<axum::Router> {
        wiring.spawn(expiry::run(
            wiring.pool.clone(),
            self.settings.sweep_interval,
            self.settings.expiry_grace,
            wiring.cancel.clone(),
        ));
        Ok(crate::app(AppState {
            pool: wiring.pool.clone(),
            keys: wiring.keys.clone(),
            reservation_ttl: self.settings.reservation_ttl,
            replica: wiring.replica_wait(SCHEMA),
            max_holds: self.settings.max_unpaid_per_buyer,
            heard: wiring.heard.clone().map(|heard| (heard, self.settings.hold_wait)),
        }))
    }
}
