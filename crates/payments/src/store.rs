//! SQL for payments and the order replica.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sneakerstop_events::payments::{PaymentEvent, PaymentRefunded, PaymentSucceeded};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{PaymentsError, SOURCE};

const COLUMNS: &str = "id, order_id, buyer_id, amount_cents, attempt, status, failure_reason, provider_ref, refund_ref, \
                       created_at, updated_at";

/// A payment attempt as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: Uuid,
    pub order_id: Uuid,
    pub buyer_id: Uuid,
    pub amount_cents: i64,
    pub attempt: i32,
    pub status: String,
    pub failure_reason: Option<String>,
    pub provider_ref: Option<String>,
    pub refund_ref: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What payments knows of an order.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OrderReplica {
    pub id: Uuid,
    pub buyer_id: Uuid,
    pub amount_cents: i64,
    pub status: String,
    pub version: i64,
}

/// Records a new order (version 1) in the replica; repeats change nothing.
pub async fn order_created(conn: &mut PgConnection, order: &OrderReplica) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO orders (id, buyer_id, amount_cents, status, version) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(order.id)
    .bind(order.buyer_id)
    .bind(order.amount_cents)
    .bind(&order.status)
    .bind(order.version)
    .execute(conn)
    .await
    .context("record order")?;
    Ok(())
}

/// Moves a replicated order to `status` at `version`, if that is newer. Returns whether it changed.
pub async fn order_status(conn: &mut PgConnection, id: Uuid, status: &str, version: i64) -> anyhow::Result<bool> {
    let changed = sqlx::query("UPDATE orders SET status = $2, version = $3 WHERE id = $1 AND version < $3")
        .bind(id)
        .bind(status)
        .bind(version)
        .execute(conn)
        .await
        .context("update order status")?
        .rows_affected();
    Ok(changed == 1)
}

/// The replicated order, optionally locked (serializes with the consumer's updates).
pub async fn find_order(conn: &mut PgConnection, id: Uuid, lock: bool) -> anyhow::Result<Option<OrderReplica>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as(&format!("SELECT id, buyer_id, amount_cents, status, version FROM orders WHERE id = $1{lock}"))
        .bind(id)
        .fetch_optional(conn)
        .await
        .context("find order")
}

/// Writes a `pending` attempt for `order` — before the provider is called, so no charge
/// exists without a stored payment. A live (non-declined) payment of the order makes this
/// fail: [`PaymentsError::AlreadyPaid`] or [`PaymentsError::InProgress`].
pub async fn begin_attempt(
    tx: &mut PgConnection,
    order: &OrderReplica,
    token: &str,
) -> Result<PaymentRow, PaymentsError> {
    let attempt: i32 = sqlx::query_scalar("SELECT coalesce(max(attempt), 0) + 1 FROM payments WHERE order_id = $1")
        .bind(order.id)
        .fetch_one(&mut *tx)
        .await
        .context("next attempt")?;
    let inserted = sqlx::query_as(&format!(
        "INSERT INTO payments (id, order_id, buyer_id, amount_cents, attempt, status, token)
         VALUES ($1, $2, $3, $4, $5, 'pending', $6) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(order.id)
    .bind(order.buyer_id)
    .bind(order.amount_cents)
    .bind(attempt)
    .bind(token)
    .fetch_one(&mut *tx)
    .await;
    match inserted {
        Ok(row) => Ok(row),
        Err(e) if is_live_payment_conflict(&e) => Err(PaymentsError::InProgress),
        Err(e) => Err(anyhow::Error::new(e).context("insert payment").into()),
    }
}

fn is_live_payment_conflict(error: &sqlx::Error) -> bool {
    sneakerstop_db::is_unique_violation(error, "payments_one_charge_per_order")
        || sneakerstop_db::is_unique_violation(error, "payments_order_id_attempt_key")
}

/// The order's live payment, if any (to tell "already paid" from "in progress").
pub async fn live_payment(conn: &mut PgConnection, order_id: Uuid) -> anyhow::Result<Option<PaymentRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM payments WHERE order_id = $1 AND status <> 'declined'"))
        .bind(order_id)
        .fetch_optional(conn)
        .await
        .context("find live payment")
}

/// Records a successful charge and writes `payment.succeeded`. If the order was cancelled
/// meanwhile the payment is marked `refund_pending` instead of `succeeded` (the refund task
/// takes it from there); the charge happened either way, so the event is written either way.
/// `None` when the attempt is no longer pending (another process recorded it first).
pub async fn charged(
    tx: &mut PgConnection,
    payment: &PaymentRow,
    provider_ref: &str,
    refund: bool,
) -> anyhow::Result<Option<PaymentRow>> {
    let status = if refund { "refund_pending" } else { "succeeded" };
    let row: Option<PaymentRow> = sqlx::query_as(&format!(
        "UPDATE payments SET status = $2, provider_ref = $3, token = NULL, updated_at = now()
         WHERE id = $1 AND status = 'pending' RETURNING {COLUMNS}"
    ))
    .bind(payment.id)
    .bind(status)
    .bind(provider_ref)
    .fetch_optional(&mut *tx)
    .await
    .context("record charge")?;
    let Some(row) = row else { return Ok(None) };
    let event = PaymentEvent::Succeeded(PaymentSucceeded {
        payment_id: row.id,
        order_id: row.order_id,
        amount_cents: row.amount_cents,
        provider_ref: provider_ref.to_owned(),
    });
    sneakerstop_messaging::enqueue(tx, SOURCE, row.id, 1, &event).await?;
    Ok(Some(row))
}

/// Records a declined attempt (kept, with the reason; the next attempt gets a new key).
/// Returns whether it was still pending.
pub async fn declined(conn: &mut PgConnection, payment: &PaymentRow, reason: &str) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE payments SET status = 'declined', failure_reason = $2, token = NULL, updated_at = now()
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(payment.id)
    .bind(reason)
    .execute(conn)
    .await
    .context("record decline")?
    .rows_affected();
    Ok(done == 1)
}

/// Forgets an attempt whose outcome the provider did not give (unavailable, invalid token).
/// Its attempt number is reused by the retry, so the retry carries the same idempotency
/// key: if the provider did charge after all, it returns that charge instead of a new one.
pub async fn abandon(conn: &mut PgConnection, payment: &PaymentRow) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM payments WHERE id = $1 AND status = 'pending'")
        .bind(payment.id)
        .execute(conn)
        .await
        .context("abandon attempt")?;
    Ok(())
}

/// The order's newest attempt, whatever became of it.
pub async fn latest_attempt(conn: &mut PgConnection, order_id: Uuid) -> anyhow::Result<Option<PaymentRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM payments WHERE order_id = $1 ORDER BY attempt DESC LIMIT 1"))
        .bind(order_id)
        .fetch_optional(conn)
        .await
        .context("find latest attempt")
}

/// Attempts left `pending` for longer than `older_than` — their process died between
/// charging and recording — with the card token each was made with; locked for the caller's
/// transaction (`SKIP LOCKED`: several instances never resolve one at once).
pub async fn stale_attempts(
    tx: &mut PgConnection,
    older_than: std::time::Duration,
    batch: i64,
) -> anyhow::Result<Vec<(PaymentRow, Option<String>)>> {
    #[derive(sqlx::FromRow)]
    struct Stale {
        #[sqlx(flatten)]
        row: PaymentRow,
        token: Option<String>,
    }
    let stale: Vec<Stale> = sqlx::query_as(&format!(
        "SELECT {COLUMNS}, token FROM payments
         WHERE status = 'pending' AND updated_at < now() - make_interval(secs => $1)
         ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    ))
    .bind(older_than.as_secs_f64())
    .bind(batch)
    .fetch_all(tx)
    .await
    .context("find stale attempts")?;
    Ok(stale.into_iter().map(|s| (s.row, s.token)).collect())
}

/// Marks the order's successful charge for refund (its order was cancelled). Returns
/// whether there was one.
pub async fn mark_for_refund(conn: &mut PgConnection, order_id: Uuid) -> anyhow::Result<bool> {
    let marked = sqlx::query(
        "UPDATE payments SET status = 'refund_pending', updated_at = now() WHERE order_id = $1 AND status = 'succeeded'",
    )
    .bind(order_id)
    .execute(conn)
    .await
    .context("mark for refund")?
    .rows_affected();
    Ok(marked > 0)
}

/// Payments waiting for a refund, locked for this transaction (`SKIP LOCKED`: several
/// instances never refund the same one at once).
pub async fn due_refunds(tx: &mut PgConnection, batch: i64) -> anyhow::Result<Vec<PaymentRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM payments WHERE status = 'refund_pending' ORDER BY updated_at LIMIT $1 FOR UPDATE SKIP LOCKED"
    ))
    .bind(batch)
    .fetch_all(tx)
    .await
    .context("find due refunds")
}

/// Records a refund and writes `payment.refunded`.
pub async fn refunded(tx: &mut PgConnection, payment: &PaymentRow, refund_ref: &str) -> anyhow::Result<()> {
    sqlx::query("UPDATE payments SET status = 'refunded', refund_ref = $2, updated_at = now() WHERE id = $1")
        .bind(payment.id)
        .bind(refund_ref)
        .execute(&mut *tx)
        .await
        .context("record refund")?;
    let event = PaymentEvent::Refunded(PaymentRefunded {
        payment_id: payment.id,
        order_id: payment.order_id,
        amount_cents: payment.amount_cents,
        refund_ref: refund_ref.to_owned(),
    });
    sneakerstop_messaging::enqueue(tx, SOURCE, payment.id, 2, &event).await?;
    Ok(())
}

/// One page of the buyer's payments, newest first (plus one row).
pub async fn list_for_buyer(
    pool: &PgPool,
    buyer_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> anyhow::Result<Vec<PaymentRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM payments WHERE buyer_id = $1 AND status <> 'pending' AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(buyer_id)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(pool)
    .await
    .context("list payments")
}
