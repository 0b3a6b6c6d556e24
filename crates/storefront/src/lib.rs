//! The storefront: the marketplace as pages a person uses in a browser, at `/`.
//!
//! It owns no business data. Every page is rendered on the server from the **public API**
//! (the same JSON, sessions and problem+json refusals any client sees): beside the services,
//! by handing the request to this process's API router; run apart, over HTTP at
//! `STOREFRONT_API_URL` (the ingress). So the storefront holds no table, consumes no topic, and a
//! rule lives in exactly one place: the service that owns it.
//!
//! - Every form works without JavaScript (POST, then a redirect to the page that shows the
//!   outcome: post/redirect/get). One small script, `product.js`, keeps a product page's
//!   market live from the market stream (`/api/products/{id}/market/stream`).
//! - Templates (askama) are compiled into the binary and escape every value by default;
//!   the CSS and the script are embedded too: no asset comes from anywhere else.
//! - Every POST carries a CSRF token bound to the browser and its session ([`csrf`]), and
//!   every page a Content-Security-Policy that allows only this origin's script, styles and
//!   connections (no inline script or style).
//! - A refusal is shown where it happened: the problem's `detail` above the form and each
//!   field's reason next to that field.

// A page that cannot go on answers at once with what to show instead (sign in first, not
// found): `Result<_, Response>` says so, and the response moves once per request.
#![allow(clippy::result_large_err, reason = "an early page is moved once per request; boxing buys nothing")]

mod api;
mod csrf;
mod page;
mod pages;
mod views;

use std::sync::Arc;

use axum::Router;
use sneakerstop_auth::SessionKeys;
use sneakerstop_settings::Secret;

/// The storefront's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Where the storefront calls the public API (`http://host:port`). Unset, it calls the
    /// services of its own process directly (required when it runs alone).
    #[arg(long = "storefront-api-url", env = "STOREFRONT_API_URL")]
    pub api_url: Option<String>,
    /// Show the simulated payment provider's test cards on the pay and card pages (`serve
    /// --dev` shows them too). Only where PAYMENT_PROVIDER is `simulated`.
    #[arg(long = "storefront-test-cards", env = "STOREFRONT_TEST_CARDS")]
    pub test_cards: bool,
}

/// What every storefront handler shares.
#[derive(Debug)]
pub(crate) struct Shop {
    /// The public API.
    pub api: api::Api,
    /// Reads the session cookie (who is signed in, for the header).
    pub keys: SessionKeys,
    /// Signs and checks the forms' CSRF tokens.
    pub csrf: csrf::CsrfKeys,
    /// Whether the pay and card pages list the simulated provider's test cards.
    pub test_cards: bool,
}

/// The storefront's routes. Its API is `local` — this process's API router — unless
/// `STOREFRONT_API_URL` names another; `secret` is the session secret, from which the CSRF
/// key is derived; `secure_cookies` marks its cookie `Secure` as the session cookie is; `dev`
/// shows the simulated provider's test cards.
pub fn router(
    settings: &Settings,
    local: Router,
    keys: SessionKeys,
    secret: &Secret,
    secure_cookies: bool,
    dev: bool,
) -> anyhow::Result<Router> {
    let api = match &settings.api_url {
        Some(base) => api::Api::remote(base)?,
        None => api::Api::local(local),
    };
    let shop = Arc::new(Shop {
        api,
        keys,
        csrf: csrf::CsrfKeys::new(secret, secure_cookies),
        test_cards: settings.test_cards || dev,
    });
    Ok(pages::router(shop))
}
