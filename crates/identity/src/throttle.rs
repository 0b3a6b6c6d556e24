//! Sign-in throttling: password guessing is slowed for an account and for a client address.
//!
//! Failed sign-ins are counted in PostgreSQL (`signin_failures`), per account (the normalized
//! email) and per client address, within a window (`SIGNIN_FAILURE_WINDOW`, 15 min). Past the
//! allowance (`SIGNIN_MAX_FAILURES` per account, `SIGNIN_MAX_FAILURES_PER_ADDRESS` per
//! address) every further failure blocks that key twice as long as the one before — 1 s,
//! 2 s, 4 s, … at most the window — and while a key is blocked, sign-in answers 429 with
//! `Retry-After` without looking at the password. A successful sign-in clears its account's
//! count (not its address's: one good password does not excuse a thousand guesses). The
//! counts live in the database every instance uses, so several instances enforce one limit.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;

/// The allowances.
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    /// Failures per account within the window before it is blocked.
    pub per_account: u32,
    /// Failures per client address within the window before it is blocked.
    pub per_address: u32,
    /// How long failures are remembered; also the longest block.
    pub window: Duration,
}

impl Default for Throttle {
    fn default() -> Self {
        Self { per_account: 5, per_address: 20, window: Duration::from_secs(15 * 60) }
    }
}

fn keys(account: &str, address: Option<IpAddr>) -> Vec<(String, &'static str)> {
    let mut keys = vec![(format!("account:{account}"), "account")];
    if let Some(address) = address {
        keys.push((format!("address:{address}"), "address"));
    }
    keys
}

impl Throttle {
    /// How long the caller must wait before this account or address may try again, if it
    /// is blocked.
    pub async fn blocked(
        &self,
        pool: &PgPool,
        account: &str,
        address: Option<IpAddr>,
    ) -> anyhow::Result<Option<Duration>> {
        let keys: Vec<String> = keys(account, address).into_iter().map(|(key, _)| key).collect();
        let wait: Option<f64> = sqlx::query_scalar!(
            "SELECT extract(epoch FROM max(blocked_until) - now())::float8 FROM signin_failures
             WHERE key = ANY($1) AND blocked_until > now()",
            &keys,
        )
        .fetch_one(pool)
        .await
        .context("read sign-in blocks")?;
        Ok(wait.filter(|s| *s > 0.0).map(Duration::from_secs_f64))
    }

    /// Counts a failed sign-in against the account and the address, blocking whichever is
    /// past its allowance.
    pub async fn failed(&self, pool: &PgPool, account: &str, address: Option<IpAddr>) -> anyhow::Result<()> {
        for (key, scope) in keys(account, address) {
            let allowance =
                i32::try_from(if scope == "account" { self.per_account } else { self.per_address }).unwrap_or(i32::MAX);
            // A window that has passed starts again at one failure; past the allowance the
            // block doubles with each failure (2^(n - allowance - 1) s), up to the window.
            let failures: i32 = sqlx::query_scalar!(
                "INSERT INTO signin_failures AS f (key, failures, window_start) VALUES ($1, 1, now())
                 ON CONFLICT (key) DO UPDATE SET
                     failures = CASE WHEN f.window_start < now() - make_interval(secs => $2) THEN 1 ELSE f.failures + 1 END,
                     window_start = CASE WHEN f.window_start < now() - make_interval(secs => $2) THEN now() ELSE f.window_start END
                 RETURNING failures",
                &key,
                self.window.as_secs_f64(),
            )
            .fetch_one(pool)
            .await
            .context("count a failed sign-in")?;
            metrics::counter!("signin_failures_total", "scope" => scope).increment(1);
            if failures > allowance {
                let seconds = 2f64.powi((failures - allowance - 1).min(30)).min(self.window.as_secs_f64());
                sqlx::query!(
                    "UPDATE signin_failures SET blocked_until = now() + make_interval(secs => $2) WHERE key = $1",
                    &key,
                    seconds,
                )
                .execute(pool)
                .await
                .context("block sign-in")?;
                metrics::counter!("signin_blocked_total", "scope" => scope).increment(1);
                // Never the password; the account or address is what an operator acts on.
                tracing::warn!(%key, failures, block_seconds = seconds, "repeated failed sign-ins; blocking");
            }
        }
        Ok(())
    }

    /// Forgets counts whose window has passed and that block nothing, so the table holds
    /// only what is still in force (a flood from many addresses would otherwise grow it
    /// for ever); returns how many. Run now and then (`every` minute by the server).
    pub async fn forget_expired(&self, pool: &PgPool) -> anyhow::Result<usize> {
        let forgotten = sqlx::query!(
            "DELETE FROM signin_failures
             WHERE window_start < now() - make_interval(secs => $1)
               AND (blocked_until IS NULL OR blocked_until < now())",
            self.window.as_secs_f64(),
        )
        .execute(pool)
        .await
        .context("forget expired sign-in failures")?
        .rows_affected();
        Ok(usize::try_from(forgotten).unwrap_or(usize::MAX))
    }

    /// A successful sign-in: the account's failures are forgiven.
    pub async fn succeeded(&self, pool: &PgPool, account: &str) -> anyhow::Result<()> {
        sqlx::query!("DELETE FROM signin_failures WHERE key = $1", format!("account:{account}"))
            .execute(pool)
            .await
            .context("clear sign-in failures")?;
        Ok(())
    }
}
