//! The expiry sweeper: unpaid orders become `cancelled` (reason `expired`) once their
//! reservation lapses.
//!
//! The deadline is `orders.expires_at` in the database, so it survives restarts: a sweeper
//! started later cancels whatever lapsed while no process ran. Any number of instances may
//! sweep at once (see [`store::expire_due`]).

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store;

/// Orders cancelled per transaction.
const BATCH: i64 = 100;

/// Sweeps every `interval` until `cancel`.
pub async fn run(pool: PgPool, interval: Duration, cancel: CancellationToken) {
    sneakerstop_messaging::every(interval, cancel, "expired unpaid orders", || sweep(&pool)).await;
}

/// Cancels every lapsed order now; returns how many.
pub async fn sweep(pool: &PgPool) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let expired = store::expire_due(pool, BATCH).await?;
        total += expired.len();
        if expired.len() < usize::try_from(BATCH).unwrap_or(usize::MAX) {
            return Ok(total);
        }
    }
}
