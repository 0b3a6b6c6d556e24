//! Persistence for payments and the order replica: what the domain decided, written with
//! the event that announces it, on the caller's transaction. Only what the database alone
//! can decide across requests is decided here: one live payment per order (a unique index)
//! and whether a payment is still in the state a decision was made from.

use std::sync::LazyLock;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sneakerstop_events::payments::PaymentEvent;
use sneakerstop_messaging::{Outgoing, ReplicaWait, WriteQuery};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use sneakerstop_problem::page::Page;

use crate::SOURCE;
use crate::domain::{Decision, OrderReplica, OrderState, Payment, PaymentStatus};

/// The [`Payment`] in a `query!` row that selected its columns (besides others): the
/// macros' rows are anonymous types, so this names the fields once.
macro_rules! payment_of {
    ($row:ident) => {
        Payment {
            id: $row.id,
            order_id: $row.order_id,
            buyer_id: $row.buyer_id,
            amount_cents: $row.amount_cents,
            attempt: $row.attempt,
            status: $row.status,
            failure_reason: $row.failure_reason,
            provider_ref: $row.provider_ref,
            refund_ref: $row.refund_ref,
            created_at: $row.created_at,
            updated_at: $row.updated_at,
        }
    };
}

const COLUMNS: &str = "id, order_id, buyer_id, amount_cents, attempt, status, failure_reason, provider_ref, refund_ref, \
                       created_at, updated_at";

/// Records a new order (version 1) in the replica, with the match it fills if it is an
/// order of the market; returns whether it is new (repeats change nothing).
pub async fn order_created(
    conn: &mut PgConnection,
    order: &OrderReplica,
    match_id: Option<Uuid>,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query!(
        "INSERT INTO orders (id, buyer_id, amount_cents, status, version, match_id, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO NOTHING",
        order.id,
        order.buyer_id,
        order.amount_cents,
        order.status as OrderState,
        order.version,
        match_id,
        order.expires_at,
    )
    .execute(conn)
    .await
    .with_context(|| format!("record order {}", order.id))?
    .rows_affected();
    if inserted == 1 {
        // Requests waiting for this order re-check once the event's transaction commits.
        ReplicaWait::inserted(crate::SCHEMA, order.id);
    }
    Ok(inserted == 1)
}

/// A buyer's current saved payment method: its id, the provider's id and customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedMethodRow {
    /// Payments' id of it.
    pub id: Uuid,
    /// The provider's id of the method (`pm_...`).
    pub method_ref: String,
    /// The provider's customer.
    pub customer_ref: Option<String>,
    /// When it was saved.
    pub created_at: DateTime<Utc>,
}

/// The buyer's current saved payment method, if any.
pub async fn current_method(conn: &mut PgConnection, buyer: Uuid) -> anyhow::Result<Option<SavedMethodRow>> {
    sqlx::query_as!(
        SavedMethodRow,
        "SELECT id, method_ref, customer_ref, created_at FROM payment_methods WHERE buyer_id = $1 AND replaced_at IS NULL",
        buyer
    )
    .fetch_optional(conn)
    .await
    .context("find the saved payment method")
}

/// The buyer's customer at the provider, if one was made.
pub async fn customer(conn: &mut PgConnection, buyer: Uuid) -> anyhow::Result<Option<String>> {
    sqlx::query_scalar!("SELECT customer_ref FROM customers WHERE buyer_id = $1", buyer)
        .fetch_optional(conn)
        .await
        .context("find the customer")
}

/// Makes `method` the buyer's current one (replacing the one they had), remembers their
/// customer, and announces `payment_method.saved`, on the caller's transaction.
pub async fn save_method(tx: &mut PgConnection, buyer: Uuid, method: &SavedMethodRow) -> anyhow::Result<()> {
    // Two saves of one buyer take turns (a row lock on the current method would not do for
    // the first, when there is none), so each replaces the one before and counts its version.
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtextextended('payment_method/' || $1::uuid::text, 0))", buyer)
        .execute(&mut *tx)
        .await
        .context("take the buyer's turn to save a payment method")?;
    if let Some(customer) = &method.customer_ref {
        sqlx::query!(
            "INSERT INTO customers (buyer_id, customer_ref) VALUES ($1, $2)
             ON CONFLICT (buyer_id) DO UPDATE SET customer_ref = EXCLUDED.customer_ref",
            buyer,
            customer
        )
        .execute(&mut *tx)
        .await
        .context("remember the customer")?;
    }
    sqlx::query!(
        "UPDATE payment_methods SET replaced_at = $2 WHERE buyer_id = $1 AND replaced_at IS NULL",
        buyer,
        method.created_at
    )
    .execute(&mut *tx)
    .await
    .context("replace the saved payment method")?;
    let saved = sqlx::query_scalar!(
        r#"WITH saved AS (
               INSERT INTO payment_methods (id, buyer_id, method_ref, customer_ref, created_at) VALUES ($1, $2, $3, $4, $5)
           )
           SELECT count(*) + 1 AS "count!" FROM payment_methods WHERE buyer_id = $2"#,
        method.id,
        buyer,
        &method.method_ref,
        method.customer_ref.as_deref(),
        method.created_at,
    )
    .fetch_one(&mut *tx)
    .await
    .context("save the payment method")?;
    let event =
        sneakerstop_events::payments::PaymentMethodEvent::Saved(sneakerstop_events::payments::PaymentMethodSaved {
            method_id: method.id,
            buyer_id: buyer,
            saved_at: method.created_at,
        });
    sneakerstop_messaging::enqueue(tx, SOURCE, buyer, saved, &event).await?;
    Ok(())
}

/// Writes the attempt to charge an order of the market without its buyer: `pending` with
/// the saved method and customer, for the off-session task. Returns `false` if the order
/// has a live payment already.
pub async fn insert_off_session(
    tx: &mut PgConnection,
    payment: &Payment,
    method: &SavedMethodRow,
) -> anyhow::Result<bool> {
    let inserted = sqlx::query!(
        "INSERT INTO payments (id, order_id, buyer_id, amount_cents, attempt, status, token, customer_ref, off_session,
                               created_at, updated_at, traceparent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true, $9, $9, $10)",
        payment.id,
        payment.order_id,
        payment.buyer_id,
        payment.amount_cents,
        payment.attempt,
        payment.status as PaymentStatus,
        &method.method_ref,
        method.customer_ref.as_deref(),
        payment.created_at,
        sneakerstop_telemetry::trace::current_traceparent(),
    )
    .execute(tx)
    .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(e) if is_live_payment_conflict(&e) => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("insert off-session payment")),
    }
}

/// An off-session attempt due: the payment, the saved method's id and the customer.
pub type OffSessionAttempt = (Payment, String, Option<String>);

/// Off-session attempts still pending, oldest first, locked for the caller's transaction
/// (`SKIP LOCKED`: several instances never charge one at once).
pub async fn due_off_session(tx: &mut PgConnection, batch: i64) -> anyhow::Result<Vec<OffSessionAttempt>> {
    let due = sqlx::query!(
        r#"SELECT id, order_id, buyer_id, amount_cents, attempt, status AS "status: PaymentStatus", failure_reason,
                  provider_ref, refund_ref, created_at, updated_at, token AS "token!", customer_ref
             FROM payments
            WHERE status = 'pending' AND off_session AND token IS NOT NULL
            ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED"#,
        batch,
    )
    .fetch_all(tx)
    .await
    .context("find off-session attempts")?;
    Ok(due
        .into_iter()
        .map(|row| {
            let payment = payment_of!(row);
            (payment, row.token, row.customer_ref)
        })
        .collect())
}

/// Moves a replicated order to `status` at `version`, if that is newer. Returns whether it changed.
pub async fn order_status(conn: &mut PgConnection, id: Uuid, status: OrderState, version: i64) -> anyhow::Result<bool> {
    let changed = sqlx::query!(
        "UPDATE orders SET status = $2, version = $3 WHERE id = $1 AND version < $3",
        id,
        status as OrderState,
        version,
    )
    .execute(conn)
    .await
    .with_context(|| format!("update the status of order {id}"))?
    .rows_affected();
    Ok(changed == 1)
}

/// The replicated order, optionally locked (serializes with the consumer's updates).
pub async fn find_order(conn: &mut PgConnection, id: Uuid, lock: bool) -> anyhow::Result<Option<OrderReplica>> {
    if lock {
        sqlx::query_as!(
            OrderReplica,
            r#"SELECT id, buyer_id, amount_cents, status AS "status: OrderState", version, expires_at, lapsed_at
                 FROM orders WHERE id = $1 FOR UPDATE"#,
            id,
        )
        .fetch_optional(conn)
        .await
    } else {
        sqlx::query_as!(
            OrderReplica,
            r#"SELECT id, buyer_id, amount_cents, status AS "status: OrderState", version, expires_at, lapsed_at
                 FROM orders WHERE id = $1"#,
            id,
        )
        .fetch_optional(conn)
        .await
    }
    .with_context(|| format!("find order {id}"))
}

/// Up to `batch` payable orders whose deadline has passed by the database's clock, with no
/// charge accepted or under way, locked (`SKIP LOCKED`: several instances may look at
/// once), and that clock's time. A charge starts only under the same row lock, so none can
/// start between this look and the lapse it leads to.
pub async fn lock_lapsed(tx: &mut PgConnection, batch: i64) -> anyhow::Result<(Vec<OrderReplica>, DateTime<Utc>)> {
    let now = sneakerstop_db::now(&mut *tx).await?;
    let due = sqlx::query_as!(
        OrderReplica,
        r#"SELECT id, buyer_id, amount_cents, status AS "status: OrderState", version, expires_at, lapsed_at
             FROM orders o
            WHERE status = 'created' AND lapsed_at IS NULL AND expires_at <= $1
              AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id AND p.status <> 'declined')
            ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED"#,
        now,
        batch,
    )
    .fetch_all(&mut *tx)
    .await
    .context("find orders whose payment window closed")?;
    Ok((due, now))
}

/// Records that `order`'s payment window closed, and its `payment.lapsed`, on `tx`.
pub async fn save_lapse(tx: &mut PgConnection, order: &OrderReplica, event: &PaymentEvent) -> anyhow::Result<()> {
    sqlx::query!("UPDATE orders SET lapsed_at = $2 WHERE id = $1", order.id, order.lapsed_at)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("close the payment window of order {}", order.id))?;
    sneakerstop_messaging::enqueue(tx, SOURCE, order.id, 1, event).await?;
    Ok(())
}

/// The number the order's next attempt gets.
pub async fn next_attempt(conn: &mut PgConnection, order_id: Uuid) -> anyhow::Result<i32> {
    sqlx::query_scalar!(
        r#"SELECT coalesce(max(attempt), 0) + 1 AS "next!" FROM payments WHERE order_id = $1"#,
        order_id
    )
    .fetch_one(conn)
    .await
    .context("number the next attempt")
}

/// Writes a new `pending` attempt with the card token it will be charged with (kept until
/// its outcome is recorded, for recovery). Returns `false` when a live (non-declined)
/// payment of the order exists: a concurrent second request stops here.
#[tracing::instrument(skip_all, fields(payment_id = %payment.id, attempt = payment.attempt), err)]
pub async fn insert(tx: &mut PgConnection, payment: &Payment, token: &str) -> anyhow::Result<bool> {
    let inserted = sqlx::query!(
        "INSERT INTO payments (id, order_id, buyer_id, amount_cents, attempt, status, token, created_at, updated_at,
                               traceparent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
        payment.id,
        payment.order_id,
        payment.buyer_id,
        payment.amount_cents,
        payment.attempt,
        payment.status as PaymentStatus,
        token,
        payment.created_at,
        sneakerstop_telemetry::trace::current_traceparent(),
    )
    .execute(tx)
    .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(e) if is_live_payment_conflict(&e) => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("insert payment")),
    }
}

/// The traces `payments` were attempted in (those that recorded one).
pub async fn traces(tx: &mut PgConnection, payments: &[Uuid]) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"SELECT traceparent AS "traceparent!" FROM payments WHERE id = ANY($1) AND traceparent IS NOT NULL"#,
        payments
    )
    .fetch_all(tx)
    .await
    .context("read the payments' traces")
}

fn is_live_payment_conflict(error: &sqlx::Error) -> bool {
    sneakerstop_db::is_unique_violation(error, "payments_one_charge_per_order")
        || sneakerstop_db::is_unique_violation(error, "payments_order_id_attempt_key")
}

/// Writes a decision and its event, if the payment is still in the status the decision was
/// made from; returns whether it was (if not, someone else recorded it first and nothing is
/// written). The card token is dropped once the attempt is no longer pending.
#[tracing::instrument(skip_all, fields(payment_id = %decided.payment.id, status = ?decided.payment.status), err)]
pub async fn save(tx: &mut PgConnection, decided: &Decision) -> anyhow::Result<bool> {
    let payment = &decided.payment;
    const UPDATE: &str = "UPDATE payments SET status = $3, failure_reason = $4, provider_ref = $5, refund_ref = $6,
                                 updated_at = $7, token = CASE WHEN $3 = 'pending' THEN token END
                           WHERE id = $1 AND status = $2
                          RETURNING id";
    let Some((event, version)) = &decided.event else {
        let saved = bind_save(sqlx::query_as(UPDATE), payment, decided.from)
            .fetch_optional(&mut *tx)
            .await
            .with_context(|| format!("save payment {}", payment.id))?;
        return Ok(saved.is_some());
    };
    // With its event: both in one statement.
    static SQL: LazyLock<String> = LazyLock::new(|| Outgoing::after_write_sql(UPDATE, 8));
    let event = Outgoing::new(SOURCE, payment.id, *version, event);
    event
        .after_write(bind_save(sqlx::query_as(&SQL), payment, decided.from), tx)
        .await
        .with_context(|| format!("save payment {}", payment.id))
}

/// Binds [`save`]'s seven parameters.
fn bind_save<'q>(query: WriteQuery<'q>, payment: &'q Payment, from: PaymentStatus) -> WriteQuery<'q> {
    query
        .bind(payment.id)
        .bind(from)
        .bind(payment.status)
        .bind(payment.failure_reason.as_deref())
        .bind(payment.provider_ref.as_deref())
        .bind(payment.refund_ref.as_deref())
        .bind(payment.updated_at)
}

/// The order's live payment, if any (to tell "already paid" from "in progress").
pub async fn live_payment(conn: &mut PgConnection, order_id: Uuid) -> anyhow::Result<Option<Payment>> {
    sqlx::query_as!(
        Payment,
        r#"SELECT id, order_id, buyer_id, amount_cents, attempt, status AS "status: PaymentStatus", failure_reason,
                  provider_ref, refund_ref, created_at, updated_at
             FROM payments WHERE order_id = $1 AND status <> 'declined'"#,
        order_id,
    )
    .fetch_optional(conn)
    .await
    .context("find live payment")
}

/// The order's successful charge, locked for this transaction, if it has one.
pub async fn lock_succeeded(conn: &mut PgConnection, order_id: Uuid) -> anyhow::Result<Option<Payment>> {
    sqlx::query_as!(
        Payment,
        r#"SELECT id, order_id, buyer_id, amount_cents, attempt, status AS "status: PaymentStatus", failure_reason,
                  provider_ref, refund_ref, created_at, updated_at
             FROM payments WHERE order_id = $1 AND status = 'succeeded' FOR UPDATE"#,
        order_id,
    )
    .fetch_optional(conn)
    .await
    .context("find the order's charge")
}

/// Forgets an attempt whose outcome the provider did not give (unavailable, invalid token).
/// Its attempt number is reused by the retry, so the retry carries the same idempotency
/// key: if the provider did charge after all, it returns that charge instead of a new one.
pub async fn abandon(conn: &mut PgConnection, payment: &Payment) -> anyhow::Result<()> {
    sqlx::query!("DELETE FROM payments WHERE id = $1 AND status = 'pending'", payment.id,)
        .execute(conn)
        .await
        .context("abandon attempt")?;
    Ok(())
}

/// The order's newest attempt, whatever became of it.
pub async fn latest_attempt(conn: &mut PgConnection, order_id: Uuid) -> anyhow::Result<Option<Payment>> {
    sqlx::query_as!(
        Payment,
        r#"SELECT id, order_id, buyer_id, amount_cents, attempt, status AS "status: PaymentStatus", failure_reason,
                  provider_ref, refund_ref, created_at, updated_at
             FROM payments WHERE order_id = $1 ORDER BY attempt DESC LIMIT 1"#,
        order_id,
    )
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
) -> anyhow::Result<Vec<(Payment, Option<String>)>> {
    let stale = sqlx::query!(
        r#"SELECT id, order_id, buyer_id, amount_cents, attempt, status AS "status: PaymentStatus", failure_reason,
                  provider_ref, refund_ref, created_at, updated_at, token
             FROM payments
            WHERE status = 'pending' AND NOT off_session AND updated_at < now() - make_interval(secs => $1)
            ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED"#,
        older_than.as_secs_f64(),
        batch,
    )
    .fetch_all(tx)
    .await
    .context("find stale attempts")?;
    Ok(stale
        .into_iter()
        .map(|row| {
            let payment = payment_of!(row);
            (payment, row.token)
        })
        .collect())
}

/// How many charges wait for a refund (the `payments_refunds_pending` gauge).
pub async fn count_refunds_pending(pool: &PgPool) -> anyhow::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "pending!" FROM payments WHERE status = 'refund_pending'"#)
        .fetch_one(pool)
        .await
        .context("count pending refunds")
}

/// Payments waiting for a refund, locked for this transaction (`SKIP LOCKED`: several
/// instances never refund the same one at once).
pub async fn due_refunds(tx: &mut PgConnection, batch: i64) -> anyhow::Result<Vec<Payment>> {
    sqlx::query_as!(
        Payment,
        r#"SELECT id, order_id, buyer_id, amount_cents, attempt, status AS "status: PaymentStatus", failure_reason,
                  provider_ref, refund_ref, created_at, updated_at
             FROM payments WHERE status = 'refund_pending' ORDER BY updated_at LIMIT $1 FOR UPDATE SKIP LOCKED"#,
        batch,
    )
    .fetch_all(tx)
    .await
    .context("find due refunds")
}

/// One page of the buyer's payments, newest first (plus one row), in-flight attempts left out.
pub async fn list_for_buyer(pool: &PgPool, buyer_id: Uuid, page: &Page) -> anyhow::Result<Vec<Payment>> {
    let select = format!("SELECT {COLUMNS} FROM payments WHERE buyer_id = $1 AND status <> 'pending'");
    sneakerstop_db::newest_first(pool, &select, buyer_id, page.before, page.limit).await.context("list payments")
}
