//! SQL for orders and the sneaker replica. Every change to an order writes its event to the
//! outbox on the same transaction.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sneakerstop_events::catalog::{Sneaker, SneakerStatus};
use sneakerstop_events::orders::{CancelReason, OrderCancelled, OrderCompleted, OrderCreated, OrderEvent};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{OrderStatus, reason_str};
use crate::{OrdersError, SOURCE};

const COLUMNS: &str = "id, sneaker_id, buyer_id, seller_id, price_cents, status, cancel_reason, payment_id, version, \
                       expires_at, created_at, updated_at";

/// An order as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OrderRow {
    pub id: Uuid,
    pub sneaker_id: Uuid,
    pub buyer_id: Uuid,
    pub seller_id: Uuid,
    pub price_cents: i64,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub payment_id: Option<Uuid>,
    pub version: i64,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OrderRow {
    /// The parsed status (the column's CHECK keeps it one of the three).
    pub fn status(&self) -> OrderStatus {
        OrderStatus::parse(&self.status).unwrap_or(OrderStatus::Cancelled)
    }
}

/// What orders knows of a listing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SneakerReplica {
    pub id: Uuid,
    pub price_cents: i64,
    pub seller_id: Uuid,
    pub status: String,
}

/// Applies a listing's latest state; older or repeated versions change nothing.
/// Returns whether the replica changed.
pub async fn apply_sneaker(conn: &mut PgConnection, sneaker: &Sneaker) -> anyhow::Result<bool> {
    let status = match sneaker.status {
        SneakerStatus::Available => "available",
        SneakerStatus::Reserved => "reserved",
        SneakerStatus::Sold => "sold",
    };
    let changed = sqlx::query(
        "INSERT INTO sneakers (id, title, price_cents, seller_id, status, version) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, price_cents = EXCLUDED.price_cents,
             seller_id = EXCLUDED.seller_id, status = EXCLUDED.status, version = EXCLUDED.version
         WHERE sneakers.version < EXCLUDED.version",
    )
    .bind(sneaker.sneaker_id)
    .bind(&sneaker.title)
    .bind(sneaker.price_cents)
    .bind(sneaker.seller_id)
    .bind(status)
    .bind(sneaker.version)
    .execute(conn)
    .await
    .context("apply sneaker to replica")?
    .rows_affected();
    Ok(changed == 1)
}

/// The replica of one listing.
pub async fn find_sneaker(conn: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<SneakerReplica>> {
    sqlx::query_as("SELECT id, price_cents, seller_id, status FROM sneakers WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
        .context("find sneaker")
}

/// Creates an order for `sneaker` and writes `order.created`, on the caller's transaction.
///
/// Availability is decided by the partial unique index: a concurrent order for the same
/// pair makes this insert fail with [`OrdersError::Reserved`]. The replica's own status is
/// only consulted for `sold`; its `reserved` merely echoes our own orders (and lags them).
pub async fn create(
    tx: &mut PgConnection,
    buyer_id: Uuid,
    sneaker: &SneakerReplica,
    expires_at: DateTime<Utc>,
    max_holds: u32,
) -> Result<OrderRow, OrdersError> {
    if sneaker.status == "sold" {
        return Err(OrdersError::Sold);
    }
    if sneaker.seller_id == buyer_id {
        return Err(OrdersError::OwnListing);
    }
    // Take one of the buyer's holds, only while below the cap; the row lock makes concurrent
    // orders of one buyer take turns, so they cannot all see room for one more. A failure
    // below rolls this back with the rest of the transaction.
    let held: Option<i32> = sqlx::query_scalar(
        "INSERT INTO buyer_holds (buyer_id, live) VALUES ($1, 1)
         ON CONFLICT (buyer_id) DO UPDATE SET live = buyer_holds.live + 1 WHERE buyer_holds.live < $2
         RETURNING live",
    )
    .bind(buyer_id)
    .bind(i32::try_from(max_holds).unwrap_or(i32::MAX))
    .fetch_optional(&mut *tx)
    .await
    .context("take a buyer hold")?;
    if held.is_none() || max_holds == 0 {
        return Err(OrdersError::TooManyHolds { cap: max_holds });
    }
    let row: OrderRow = sqlx::query_as(&format!(
        "INSERT INTO orders (id, sneaker_id, buyer_id, seller_id, price_cents, status, expires_at)
         VALUES ($1, $2, $3, $4, $5, 'created', $6) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(sneaker.id)
    .bind(buyer_id)
    .bind(sneaker.seller_id)
    .bind(sneaker.price_cents)
    .bind(expires_at)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        if sneakerstop_db::is_unique_violation(&e, "orders_one_live_order_per_sneaker") {
            OrdersError::Reserved
        } else {
            OrdersError::Internal(anyhow::Error::new(e).context("insert order"))
        }
    })?;
    let event = OrderEvent::Created(OrderCreated {
        order_id: row.id,
        sneaker_id: row.sneaker_id,
        buyer_id: row.buyer_id,
        seller_id: row.seller_id,
        price_cents: row.price_cents,
        expires_at: row.expires_at,
    });
    publish(tx, &row, &event).await?;
    Ok(row)
}

/// The buyer's order, optionally locked for an update. Someone else's order is `None`.
pub async fn find_for_buyer(
    conn: &mut PgConnection,
    id: Uuid,
    buyer_id: Uuid,
    lock: bool,
) -> anyhow::Result<Option<OrderRow>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM orders WHERE id = $1 AND buyer_id = $2{lock}"))
        .bind(id)
        .bind(buyer_id)
        .fetch_optional(conn)
        .await
        .context("find order")
}

/// One page of the buyer's orders, newest first, continuing after `before` (plus one row).
pub async fn list_for_buyer(
    pool: &PgPool,
    buyer_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> anyhow::Result<Vec<OrderRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM orders WHERE buyer_id = $1 AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(buyer_id)
    .bind(before)
    .bind(limit + 1)
    .fetch_all(pool)
    .await
    .context("list orders")
}

/// Cancels a locked `created` order and writes `order.cancelled`, on the caller's transaction.
pub async fn cancel(tx: &mut PgConnection, order: &OrderRow, reason: CancelReason) -> Result<OrderRow, OrdersError> {
    order.status().cancel(reason)?;
    let row: OrderRow = sqlx::query_as(&format!(
        "UPDATE orders SET status = 'cancelled', cancel_reason = $2, version = version + 1, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(order.id)
    .bind(reason_str(reason))
    .fetch_one(&mut *tx)
    .await
    .context("cancel order")?;
    let event = OrderEvent::Cancelled(OrderCancelled { order_id: row.id, sneaker_id: row.sneaker_id, reason });
    publish(tx, &row, &event).await?;
    metrics::counter!("orders_cancelled_total", "reason" => reason_str(reason)).increment(1);
    Ok(row)
}

/// Completes a `created` order with `payment_id` and writes `order.completed`, on the
/// caller's transaction. A cancelled or already complete order is refused: a payment that
/// lost the race with expiry never completes it (payments refunds it instead).
pub async fn complete(tx: &mut PgConnection, order_id: Uuid, payment_id: Uuid) -> Result<OrderRow, OrdersError> {
    let order: OrderRow = sqlx::query_as(&format!("SELECT {COLUMNS} FROM orders WHERE id = $1 FOR UPDATE"))
        .bind(order_id)
        .fetch_optional(&mut *tx)
        .await
        .context("lock order")?
        .ok_or(OrdersError::OrderNotFound)?;
    order.status().complete()?;
    let row: OrderRow = sqlx::query_as(&format!(
        "UPDATE orders SET status = 'complete', payment_id = $2, version = version + 1, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(order_id)
    .bind(payment_id)
    .fetch_one(&mut *tx)
    .await
    .context("complete order")?;
    let event = OrderEvent::Completed(OrderCompleted { order_id: row.id, sneaker_id: row.sneaker_id, payment_id });
    publish(tx, &row, &event).await?;
    metrics::counter!("orders_completed_total").increment(1);
    Ok(row)
}

/// Writes an order's event to the outbox, keyed by its **sneaker**: every order event of
/// one pair lands on one partition in commit order, so catalog sees "A cancelled" before
/// "B created" for the same pair. (Keyed by order id, two orders' events could overtake each
/// other.) `ce_subject` is still the order id.
async fn publish(tx: &mut PgConnection, row: &OrderRow, event: &OrderEvent) -> anyhow::Result<()> {
    sneakerstop_messaging::enqueue(tx, SOURCE, row.id, row.version, event).await?;
    Ok(())
}

/// Cancels up to `batch` orders whose reservation has lapsed, each with its event, in one
/// transaction. `SKIP LOCKED` lets several instances sweep at once without ever touching
/// the same order, and `status = 'created'` makes a second cancellation impossible.
pub async fn expire_due(pool: &PgPool, batch: i64) -> anyhow::Result<Vec<OrderRow>> {
    let mut tx = pool.begin().await.context("begin")?;
    let due: Vec<OrderRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM orders WHERE status = 'created' AND expires_at <= now()
         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED"
    ))
    .bind(batch)
    .fetch_all(&mut *tx)
    .await
    .context("find lapsed orders")?;
    let mut expired = Vec::with_capacity(due.len());
    for order in &due {
        let row =
            cancel(&mut tx, order, CancelReason::Expired).await.map_err(|e| anyhow::anyhow!("expire order: {e}"))?;
        expired.push(row);
    }
    tx.commit().await.context("commit expiry")?;
    Ok(expired)
}
