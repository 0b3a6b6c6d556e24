//! Identity as a [`Service`]: its settings, and how it starts.

use std::time::Duration;

use sneakerstop_service::{Service, Wiring};
use utoipa::OpenApi;

use crate::{ApiDoc, AppState, SCHEMA, password, throttle};

/// Identity's settings.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "identity-settings")]
#[command(next_help_heading = "Identity")]
pub struct Settings {
    /// Sign-ins and sign-ups whose password is being hashed or waiting for it, at most;
    /// beyond that they are refused at once with 503 and `Retry-After` instead of queueing
    /// (a hash takes tens of milliseconds of a core).
    #[arg(long = "password-hash-queue", env = "PASSWORD_HASH_QUEUE", default_value_t = 16)]
    pub password_hash_queue: usize,
    /// Places beyond that queue kept for sign-ins from a known device of the account (a
    /// browser that signed in to it before, by its `device` cookie), one per account at a
    /// time: honest users still sign in while a credential-stuffing flood fills the queue.
    /// 0 keeps none.
    #[arg(long = "password-hash-reserved", env = "PASSWORD_HASH_RESERVED", default_value_t = 4)]
    pub password_hash_reserved: usize,
    /// Failed sign-ins per account within `SIGNIN_FAILURE_WINDOW` before the account is
    /// blocked, for 1 s, then twice as long with each further failure.
    #[arg(long = "signin-max-failures", env = "SIGNIN_MAX_FAILURES", default_value_t = 5)]
    pub signin_max_failures: u32,
    /// The same, per client address (many accounts guessed from one place).
    #[arg(long = "signin-max-failures-per-address", env = "SIGNIN_MAX_FAILURES_PER_ADDRESS", default_value_t = 20)]
    pub signin_max_failures_per_address: u32,
    /// How long failed sign-ins are remembered; also the longest block.
    #[arg(long = "signin-failure-window", env = "SIGNIN_FAILURE_WINDOW", default_value = "15m", value_parser = sneakerstop_settings::parse_duration)]
    pub signin_failure_window: Duration,
}

/// The identity service.
#[derive(Debug, Clone)]
pub struct Identity {
    settings: Settings,
}

impl Identity {
    /// Identity with `settings`.
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }

    /// The sign-in allowances its settings give.
    pub fn throttle(&self) -> throttle::Throttle {
        throttle::Throttle {
            per_account: self.settings.signin_max_failures,
            per_address: self.settings.signin_max_failures_per_address,
            window: self.settings.signin_failure_window,
        }
    }
}

impl Service for Identity {
    fn name(&self) -> &'static str {
        SCHEMA
    }

    fn migrations(&self) -> Vec<&'static sqlx::migrate::Migrator> {
        crate::migrations()
    }

    fn publishes(&self) -> &'static [&'static str] {
        &[sneakerstop_events::topics::USERS]
    }

    fn ends_sessions(&self) -> bool {
        true
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        ApiDoc::openapi()
    }

    fn start(&self, wiring: &mut Wiring<'_>) -> anyhow::Result<axum::Router> {
        let (throttle, pool) = (self.throttle(), wiring.pool.clone());
        wiring.spawn(sneakerstop_messaging::every(
            Duration::from_secs(60),
            wiring.cancel.clone(),
            "forgot expired sign-in failures and sessions",
            move || {
                let pool = pool.clone();
                async move { crate::forget_expired(&pool, throttle).await }
            },
        ));
        let state = AppState {
            pool: wiring.pool.clone(),
            keys: wiring.keys.clone(),
            passwords: password::Passwords::new(
                self.settings.password_hash_queue,
                self.settings.password_hash_reserved,
            )?,
            throttle,
            proxies: wiring.proxies.clone(),
        };
        Ok(crate::app(state))
    }
}
