//! Payments as a [`Service`]: its settings, its provider, and how it starts.

use std::sync::Arc;
use std::time::Duration;

use sneakerstop_service::{Service, Wiring};
use utoipa::OpenApi;

use anyhow::Context;

use crate::provider::{PaymentProvider, simulated::Simulated, stripe::Stripe};
use crate::{ApiDoc, AppState, SCHEMA, events, lapse, offsession, recovery, refunds};

/// Payments settings: which provider charges cards.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "payments-settings")]
#[command(next_help_heading = "Payments")]
pub struct Settings {
    /// `simulated` (no money moves; tok_visa succeeds, tok_chargeDeclined declines,
    /// tok_processingError fails as a provider error) or `stripe`.
    #[arg(long = "payment-provider", env = "PAYMENT_PROVIDER", default_value = "simulated")]
    pub provider: PaymentProviderKind,
    /// Stripe secret key (`sk_...`); required with `PAYMENT_PROVIDER=stripe`.
    #[arg(long = "stripe-secret", env = "STRIPE_SECRET", hide_env_values = true)]
    pub stripe_secret: Option<sneakerstop_settings::Secret>,
    /// Stripe API base URL (change only to point at a test double).
    #[arg(long = "stripe-api-base", env = "STRIPE_API_BASE", default_value = "https://api.stripe.com")]
    pub stripe_api_base: String,
    /// ISO currency of all prices, lower-case.
    #[arg(long = "payment-currency", env = "PAYMENT_CURRENCY", default_value = "usd")]
    pub currency: String,
    /// How long to wait for the provider before answering 503.
    #[arg(long = "payment-provider-timeout", env = "PAYMENT_PROVIDER_TIMEOUT", default_value = "20s", value_parser = sneakerstop_settings::parse_duration)]
    pub timeout: Duration,
    /// An attempt still `pending` this long after it was made belongs to a process that
    /// died mid-charge: the recovery task asks the provider again and records the outcome.
    /// Keep it well above the provider timeout.
    #[arg(long = "payment-recovery-after", env = "PAYMENT_RECOVERY_AFTER", default_value = "60s", value_parser = sneakerstop_settings::parse_duration)]
    pub recovery_after: Duration,
    /// How often the off-session task looks for orders of the market to charge with their
    /// buyers' saved methods.
    #[arg(long = "payment-off-session-interval", env = "PAYMENT_OFF_SESSION_INTERVAL", default_value = "100ms", value_parser = sneakerstop_settings::parse_duration)]
    pub off_session_interval: Duration,
    /// How often the lapse task looks for orders whose deadline passed unpaid, to close
    /// their payment window and tell orders (`payment.lapsed`).
    #[arg(long = "payment-lapse-interval", env = "PAYMENT_LAPSE_INTERVAL", default_value = "1s", value_parser = sneakerstop_settings::parse_duration)]
    pub lapse_interval: Duration,
    /// How often the refund task looks for charges whose order was cancelled.
    #[arg(long = "payment-refund-interval", env = "PAYMENT_REFUND_INTERVAL", default_value = "1s", value_parser = sneakerstop_settings::parse_duration)]
    pub refund_interval: Duration,
}

/// Which payment provider to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PaymentProviderKind {
    /// In-process, for local use and tests.
    Simulated,
    /// Stripe's PaymentIntents and Refunds APIs.
    Stripe,
}

/// The payments service.
#[derive(Debug, Clone)]
pub struct Payments {
    settings: Settings,
}

impl Payments {
    /// Payments with `settings`.
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }

    /// The configured payment provider.
    pub fn provider(&self) -> anyhow::Result<Arc<dyn PaymentProvider>> {
        let settings = &self.settings;
        Ok(match settings.provider {
            PaymentProviderKind::Simulated => {
                tracing::warn!(
                    "PAYMENT_PROVIDER=simulated: no money moves (tok_visa succeeds, tok_chargeDeclined declines)"
                );
                Arc::new(Simulated::default())
            }
            PaymentProviderKind::Stripe => {
                // An empty key (a Secret created without its value) would fail every charge
                // with 401 at Stripe; refuse to start instead, naming the setting only.
                let secret = settings
                    .stripe_secret
                    .clone()
                    .filter(|secret| !secret.expose().trim().is_empty())
                    .context("PAYMENT_PROVIDER=stripe needs STRIPE_SECRET, and it is unset or empty")?;
                Arc::new(Stripe::new(&settings.stripe_api_base, secret, settings.timeout)?)
            }
        })
    }
}

impl Service for Payments {
    fn name(&self) -> &'static str {
        SCHEMA
    }

    fn migrations(&self) -> Vec<&'static sqlx::migrate::Migrator> {
        crate::migrations()
    }

    fn publishes(&self) -> &'static [&'static str] {
        &[sneakerstop_events::topics::PAYMENTS, sneakerstop_events::topics::PAYMENT_METHODS]
    }

    fn consumes(&self) -> &'static [&'static str] {
        &[sneakerstop_events::topics::ORDERS]
    }

    fn handler(&self) -> Option<Arc<dyn sneakerstop_messaging::Handler>> {
        Some(Arc::new(events::PaymentsHandler))
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        ApiDoc::openapi()
    }

    fn start(&self, wiring: &mut Wiring<'_>) -> anyhow::Result<axum::Router> {
        let settings = &self.settings;
        let provider = self.provider()?;
        let (pool, cancel) = (wiring.pool.clone(), wiring.cancel.clone());
        wiring.spawn(refunds::run(pool.clone(), provider.clone(), settings.refund_interval, cancel.clone()));
        wiring.spawn(lapse::run(pool.clone(), settings.lapse_interval, cancel.clone()));
        wiring.spawn(offsession::run(
            pool.clone(),
            provider.clone(),
            settings.currency.clone(),
            settings.off_session_interval,
            cancel.clone(),
        ));
        let recovery_after = settings.recovery_after;
        wiring.spawn(recovery::run(
            pool.clone(),
            provider.clone(),
            settings.currency.clone(),
            (recovery_after / 4).clamp(Duration::from_millis(200), Duration::from_secs(5)),
            recovery_after,
            cancel,
        ));
        Ok(crate::app(AppState {
            pool,
            keys: wiring.keys.clone(),
            provider,
            currency: settings.currency.clone(),
            // A request still waiting for the provider keeps its key; one that died frees
            // it soon after the provider timeout.
            claim_lease: settings.timeout * 2,
            replica: wiring.replica_wait(SCHEMA),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Args {
        #[command(flatten)]
        settings: Settings,
    }

    fn provider(args: &[&str]) -> anyhow::Result<Arc<dyn PaymentProvider>> {
        Payments::new(Args::parse_from(std::iter::once("test").chain(args.iter().copied())).settings).provider()
    }

    #[test]
    fn stripe_needs_a_key_that_is_not_empty_and_never_shows_it() {
        for args in [&["--payment-provider", "stripe"][..], &["--payment-provider", "stripe", "--stripe-secret", " "]] {
            let error = provider(args).err().expect("refused").to_string();
            assert!(error.contains("STRIPE_SECRET"), "{error}");
        }
        assert!(provider(&["--payment-provider", "stripe", "--stripe-secret", "sk_test_123"]).is_ok());
        assert!(provider(&[]).is_ok(), "the simulated provider needs no key");
    }
}
