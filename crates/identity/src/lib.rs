//! Identity service (the original's auth-service): accounts, password hashes and sessions.
//!
//! - `http/` — the `/api/users/*` endpoints and their OpenAPI description.
//! - `domain` — [`domain::Email`] and [`domain::Password`], which validate on construction.
//! - `password` — argon2id hashing on the blocking pool, with constant-shape sign-in.
//! - `store` — the SQL for the `users` and `sessions` tables; ending sessions.
//! - `service` — its settings and how the binary starts it.
//! - `throttle` — failed sign-ins counted per account and per client address, in the
//!   database every instance shares; past the allowance, 429 with a doubling back-off.
//!
//! Its tables live in the `identity` schema; see `migrations/`. Publishes `user.registered`
//! and `session.revoked` on `identity.users` through the outbox.

pub mod domain;
mod error;
pub mod http;
pub mod password;
pub mod service;
mod store;
pub mod throttle;

use axum::extract::FromRef;
use sneakerstop_auth::SessionKeys;
use sqlx::PgPool;

pub use error::IdentityError;
pub use http::{ApiDoc, app};
pub use service::Identity;

sneakerstop_service::service_schema!("identity");

/// Grants (`admin`) or takes away the admin role of the account with `email`, ending its
/// sessions so that the next sign-in states the new role; `sneakerstop admin` calls this.
/// Returns how many sessions ended, or `None` when no account has that email.
pub async fn set_admin(pool: &PgPool, email: &str, admin: bool) -> anyhow::Result<Option<usize>> {
    let ended = store::set_role(pool, &domain::Email::normalize(email), admin).await?;
    Ok(ended.map(|ended| ended.len()))
}

/// Deletes what identity no longer needs: sign-in failures whose window has passed and
/// sessions whose tokens have expired. Returns how many rows went.
pub async fn forget_expired(pool: &PgPool, throttle: throttle::Throttle) -> anyhow::Result<usize> {
    let failures = throttle.forget_expired(pool).await?;
    let sessions = store::forget_expired_sessions(pool).await?;
    Ok(failures + usize::try_from(sessions).unwrap_or(usize::MAX))
}

/// What the identity handlers share.
#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    /// Pool on the `identity` schema.
    pub pool: PgPool,
    /// Signs and verifies session tokens.
    pub keys: SessionKeys,
    /// Hashes and verifies passwords.
    pub passwords: password::Passwords,
    /// How many failed sign-ins an account or address gets.
    pub throttle: throttle::Throttle,
    /// Whose `X-Forwarded-For` names the client.
    pub proxies: sneakerstop_auth::client::TrustedProxies,
}
