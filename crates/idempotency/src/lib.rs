//! `Idempotency-Key` for POSTs that create things (orders, payments).
//!
//! A client that sends the same key again — a retry after a timeout, a double click — gets
//! the first response back and nothing new is created. The same key with a different body
//! is a client bug and answers 422.
//!
//! How: the key is claimed inside the transaction that does the work, by inserting
//! `(user, key, request)` into the service's `idempotency_keys` table. A concurrent request
//! with the same key blocks on that row's unique index until the first transaction ends,
//! then sees its stored response. Only successful responses are stored (in the same
//! transaction as the work); a failed request rolls its claim back, so a retry runs again.
//!
//! A claim committed *before* slow work (payments commits it with the pending attempt, then
//! calls the provider) is a lease: it holds the key until `locked_until`. If the process
//! dies before storing a response, a retry after the lease lapsed takes the key over
//! ([`Start::Recovered`]) and the handler finds out what became of the first request,
//! instead of answering "in progress" forever. A claim made and finished in one transaction
//! (orders, catalog) dies with that transaction, so it never outlives a crash.
//!
//! Each service that uses this applies [`MIGRATOR`] in its own schema, which creates the
//! `idempotency_keys` table there.

use std::sync::LazyLock;

use anyhow::Context;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use serde_json::Value;
use sneakerstop_problem::Problem;
use sqlx::PgConnection;
use uuid::Uuid;

/// The `idempotency_keys` table, for the schema of every service that uses this crate.
pub static MIGRATOR: LazyLock<sqlx::migrate::Migrator> =
    LazyLock::new(|| sneakerstop_db::shared_schema(sqlx::migrate!("./migrations")));

/// The header's name.
pub const HEADER: &str = "idempotency-key";

/// The lease for a claim that is made, used and answered in one transaction (a crash
/// rolls such a claim back with everything else, so it needs no lease).
pub const WITHIN_TRANSACTION: std::time::Duration = std::time::Duration::ZERO;

/// Longest key accepted.
pub const MAX_LEN: usize = 255;

/// The `Idempotency-Key` request header as the OpenAPI document describes it, for
/// `params(IdempotencyKeyHeader)` on every operation that takes one.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// Any unique string (a UUID): a retry with the same key and body is answered with the
    /// first response and changes nothing; the same key with another body is a 422.
    #[param(rename = "Idempotency-Key", min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
    pub key: Option<String>,
}

/// A valid `Idempotency-Key` header value. Use as `Option<IdempotencyKey>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub String);

impl IdempotencyKey {
    /// Validates a header value: 1 to 255 visible ASCII characters.
    pub fn parse(value: &[u8]) -> Result<Self, Problem> {
        let valid = !value.is_empty() && value.len() <= MAX_LEN && value.iter().all(u8::is_ascii_graphic);
        if !valid {
            return Err(Problem::invalid_field(
                "Idempotency-Key",
                format!("must be 1 to {MAX_LEN} visible ASCII characters, e.g. a UUID"),
            ));
        }
        Ok(Self(String::from_utf8_lossy(value).into_owned()))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for IdempotencyKey {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        parts.headers.get(HEADER).map(|v| Self::parse(v.as_bytes())).transpose()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <Self as OptionalFromRequestParts<S>>::from_request_parts(parts, state)
            .await?
            .ok_or_else(|| Problem::invalid_field("Idempotency-Key", "is required"))
    }
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The key is new: do the work, then [`store`] the response before committing.
    Fresh,
    /// The key's first request never finished and its lease lapsed: the key is this
    /// request's now; find out what the first one did, then [`store`] the response.
    Recovered,
    /// The key was used before with the same request: answer this instead.
    Replay {
        /// The first response's status code.
        status: u16,
        /// The first response's body.
        body: Value,
    },
    /// The key was used before with a different request.
    Mismatch,
    /// A request with this key is still being processed (its claim was committed before
    /// slow work, such as a call to a payment provider).
    InProgress,
}

/// Claims `key` for `user` and `request` on the caller's transaction, holding it for
/// `lease` should the claim be committed before a response is stored.
pub async fn claim(
    tx: &mut PgConnection,
    user: Uuid,
    key: &IdempotencyKey,
    request: &Value,
    lease: std::time::Duration,
) -> anyhow::Result<Claim> {
    // Inserted: a new key. Updated: the same request's claim had lapsed without a response
    // (`xmax` is set on a row this statement updated). Nothing: someone else holds it.
    let claimed: Option<bool> = sqlx::query_scalar!(
        r#"INSERT INTO idempotency_keys (user_id, key, request, locked_until)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))
         ON CONFLICT (user_id, key) DO UPDATE SET locked_until = EXCLUDED.locked_until
           WHERE idempotency_keys.status_code IS NULL
             AND idempotency_keys.locked_until < now()
             AND idempotency_keys.request = EXCLUDED.request
         RETURNING xmax = 0 AS "fresh!""#,
        user,
        &key.0,
        request,
        lease.as_secs_f64(),
    )
    .fetch_optional(&mut *tx)
    .await
    .context("claim idempotency key")?;
    match claimed {
        Some(true) => return Ok(Claim::Fresh),
        Some(false) => return Ok(Claim::Recovered),
        None => {}
    }
    let row = sqlx::query!(
        "SELECT request, status_code, response FROM idempotency_keys WHERE user_id = $1 AND key = $2",
        user,
        &key.0,
    )
    .fetch_one(&mut *tx)
    .await
    .context("read idempotency key")?;
    let (stored, status, body) = (row.request, row.status_code, row.response);
    if &stored != request {
        return Ok(Claim::Mismatch);
    }
    match status.and_then(|s| u16::try_from(s).ok()) {
        Some(status) => Ok(Claim::Replay { status, body: body.unwrap_or(Value::Null) }),
        None => Ok(Claim::InProgress),
    }
}

/// Why a request cannot go ahead with its key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key was used with a different request (422).
    #[error("idempotency key reused with a different request")]
    Reused,
    /// The key's first request is still running (409).
    #[error("idempotency key in progress")]
    InProgress,
    /// The database failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl KeyError {
    /// The problem to answer with; `None` for an internal error (the caller's 500).
    pub fn problem(&self) -> Option<Problem> {
        match self {
            Self::Reused => Some(mismatch()),
            Self::InProgress => Some(in_progress()),
            Self::Internal(_) => None,
        }
    }
}

/// How an idempotent handler goes on after [`begin`].
#[derive(Debug)]
pub enum Start {
    /// No key, or a new one: do the work.
    New,
    /// The key's first request died before answering and its lease lapsed: find out what
    /// it did before doing anything again.
    Recovered,
    /// The key was answered before: send this back as is.
    Answer(axum::response::Response),
}

/// The first step of an idempotent handler: without a key, or with a new one (claimed for
/// `lease`), [`Start::New`]; with a key seen before, the first response to send back; with a
/// key whose first request died, [`Start::Recovered`].
pub async fn begin(
    tx: &mut PgConnection,
    user: Uuid,
    key: Option<&IdempotencyKey>,
    request: &Value,
    lease: std::time::Duration,
) -> Result<Start, KeyError> {
    use axum::response::IntoResponse;
    let Some(key) = key else { return Ok(Start::New) };
    match claim(tx, user, key, request, lease).await? {
        Claim::Fresh => Ok(Start::New),
        Claim::Recovered => Ok(Start::Recovered),
        Claim::Replay { status, body } => {
            let status = axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK);
            Ok(Start::Answer((status, axum::Json(body)).into_response()))
        }
        Claim::Mismatch => Err(KeyError::Reused),
        Claim::InProgress => Err(KeyError::InProgress),
    }
}

/// Records the response for a [`Claim::Fresh`] key, on the same transaction as the work.
pub async fn store(
    tx: &mut PgConnection,
    user: Uuid,
    key: &IdempotencyKey,
    status: u16,
    body: &Value,
) -> anyhow::Result<()> {
    sqlx::query!(
        "UPDATE idempotency_keys SET status_code = $3, response = $4 WHERE user_id = $1 AND key = $2",
        user,
        &key.0,
        i32::from(status),
        body,
    )
    .execute(tx)
    .await
    .context("store idempotent response")?;
    Ok(())
}

/// Gives a claimed key up (the request failed), so a retry with it runs again.
pub async fn release(conn: &mut PgConnection, user: Uuid, key: &IdempotencyKey) -> anyhow::Result<()> {
    sqlx::query!("DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND status_code IS NULL", user, &key.0,)
        .execute(conn)
        .await
        .context("release idempotency key")?;
    Ok(())
}

/// The 409 for a key whose first request is still running.
pub fn in_progress() -> Problem {
    Problem::conflict(
        "idempotency-key-in-progress",
        "a request with this Idempotency-Key is still being processed; retry shortly",
    )
}

/// The 422 for a key reused with a different request.
pub fn mismatch() -> Problem {
    Problem::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", "Idempotency key reused")
        .with_detail("this Idempotency-Key was already used with a different request; use a new key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_visible_ascii() {
        assert_eq!(IdempotencyKey::parse(b"0193a1b2-c3d4").unwrap().0, "0193a1b2-c3d4");
        for bad in [&b""[..], b"has space", "é".as_bytes(), &[b'k'; MAX_LEN + 1]] {
            let problem = IdempotencyKey::parse(bad).unwrap_err();
            assert_eq!(problem.errors[0].field, "Idempotency-Key");
        }
        assert!(IdempotencyKey::parse(&[b'k'; MAX_LEN]).is_ok());
    }
}
