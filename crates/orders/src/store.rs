//! Persistence for orders and the sneaker replica: what the domain decided, written with
//! the event that announces it, on the caller's transaction. No rule is decided here except
//! the ones only the database can decide across concurrent requests: one live order per
//! pair (a unique index) and the per-buyer cap on unpaid holds (a locked counter).

use std::sync::LazyLock;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sneakerstop_events::catalog::{Sneaker, SneakerStatus};
use sneakerstop_events::orders::{OrderEvent, OrderRefused};
use sneakerstop_messaging::{Outgoing, ReplicaWait};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use sneakerstop_problem::page::Page;

use crate::SOURCE;
use crate::domain::{Cancellation, Decision, Listing, ListingStatus, Order, OrderStatus};

const COLUMNS: &str = "id, sneaker_id, buyer_id, seller_id, price_cents, status, cancel_reason, payment_id, match_id, \
                       version, expires_at, created_at, updated_at";

/// What only the database can refuse when a new order is written.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// Another live order holds the pair (`orders_one_live_order_per_sneaker`).
    #[error("another live order holds the pair")]
    PairHeld,
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Applies a listing's latest state; older or repeated versions change nothing.
/// Returns whether the replica changed.
pub async fn apply_sneaker(conn: &mut PgConnection, sneaker: &Sneaker) -> anyhow::Result<bool> {
    let status = match sneaker.status {
        SneakerStatus::Available => ListingStatus::Available,
        SneakerStatus::Reserved => ListingStatus::Reserved,
        SneakerStatus::Sold => ListingStatus::Sold,
        SneakerStatus::Expired => ListingStatus::Expired,
        SneakerStatus::Withdrawn => ListingStatus::Withdrawn,
    };
    let changed = sqlx::query!(
        "INSERT INTO sneakers (id, title, price_cents, seller_id, status, version, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, price_cents = EXCLUDED.price_cents,
             seller_id = EXCLUDED.seller_id, status = EXCLUDED.status, version = EXCLUDED.version,
             expires_at = EXCLUDED.expires_at
         WHERE sneakers.version < EXCLUDED.version",
        sneaker.sneaker_id,
        &sneaker.title,
        sneaker.price_cents,
        sneaker.seller_id,
        status as ListingStatus,
        sneaker.version,
        sneaker.expires_at,
    )
    .execute(conn)
    .await
    .context("apply sneaker to replica")?
    .rows_affected();
    if changed == 1 {
        // Requests waiting for this listing re-check once the event's transaction commits.
        ReplicaWait::inserted(crate::SCHEMA, sneaker.sneaker_id);
    }
    Ok(changed == 1)
}

/// The replica of one listing.
pub async fn find_sneaker(conn: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<Listing>> {
    sqlx::query_as!(
        Listing,
        r#"SELECT id, price_cents, seller_id, status AS "status: ListingStatus", expires_at FROM sneakers WHERE id = $1"#,
        id,
    )
    .fetch_optional(conn)
    .await
    .context("find sneaker")
}

/// Takes one of `buyer`'s unpaid holds if they hold fewer than `cap`; returns whether it
/// did. The row lock makes concurrent orders of one buyer take turns, so they cannot all
/// see room for one more; the hold is given back (by trigger) when the order leaves
/// `created`, and with the rest of the transaction if it rolls back.
#[tracing::instrument(skip(tx), err)]
pub async fn take_hold(tx: &mut PgConnection, buyer: Uuid, cap: u32) -> anyhow::Result<bool> {
    if cap == 0 {
        return Ok(false);
    }
    let held: Option<i32> = sqlx::query_scalar!(
        "INSERT INTO buyer_holds (buyer_id, live) VALUES ($1, 1)
         ON CONFLICT (buyer_id) DO UPDATE SET live = buyer_holds.live + 1 WHERE buyer_holds.live < $2
         RETURNING live",
        buyer,
        i32::try_from(cap).unwrap_or(i32::MAX),
    )
    .fetch_optional(tx)
    .await
    .context("take a buyer hold")?;
    Ok(held.is_some())
}

/// Writes a new order and its `order.created`. A concurrent order for the same pair makes
/// the insert fail: [`InsertError::PairHeld`].
#[tracing::instrument(skip_all, fields(order_id = %placed.order.id), err)]
pub async fn insert(tx: &mut PgConnection, placed: &Decision) -> Result<(), InsertError> {
    // A new order's id is new: the only conflict is another live order of the pair.
    if insert_new(tx, placed).await? { Ok(()) } else { Err(InsertError::PairHeld) }
}

/// How writing the order of a match went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filled {
    /// Written, with its `order.created`.
    Placed,
    /// Another live order holds the pair: nothing written.
    PairHeld,
    /// The match was filled before (a redelivered `match.made`): nothing written.
    AlreadyFilled,
}

/// Writes the order that fills a match and its `order.created`, unless another live order
/// holds the pair or the match was filled already. Conflicts are not errors (`ON CONFLICT
/// DO NOTHING`), so the consumer's transaction stays usable to announce a refusal.
#[tracing::instrument(skip_all, fields(order_id = %filled.order.id), err)]
pub async fn insert_fill(tx: &mut PgConnection, filled: &Decision) -> anyhow::Result<Filled> {
    if insert_new(tx, filled).await? {
        return Ok(Filled::Placed);
    }
    let exists = sqlx::query_scalar!(r#"SELECT true AS "exists!" FROM orders WHERE id = $1"#, filled.order.id)
        .fetch_optional(&mut *tx)
        .await
        .context("find the order of a match")?;
    Ok(if exists.is_some() { Filled::AlreadyFilled } else { Filled::PairHeld })
}

/// Writes `decided`'s new order and its `order.created`, unless a unique index refuses it
/// (this id, or another live order of the pair): then nothing, and `false`. A conflict is
/// not an error, so the transaction stays usable.
async fn insert_new(tx: &mut PgConnection, decided: &Decision) -> anyhow::Result<bool> {
    let order = &decided.order;
    static SQL: LazyLock<String> = LazyLock::new(|| {
        Outgoing::after_write_sql(
        "INSERT INTO orders (id, sneaker_id, buyer_id, seller_id, price_cents, status, expires_at, created_at, updated_at,
                             traceparent, match_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10)
         ON CONFLICT DO NOTHING
         RETURNING id",
        11,
    )
    });
    let query = sqlx::query_as(&SQL)
        .bind(order.id)
        .bind(order.sneaker_id)
        .bind(order.buyer_id)
        .bind(order.seller_id)
        .bind(order.price_cents)
        .bind(order.status)
        .bind(order.expires_at)
        .bind(order.created_at)
        .bind(sneakerstop_telemetry::trace::current_traceparent())
        .bind(order.match_id);
    event(decided).after_write(query, tx).await.context("insert order")
}

/// Writes an order's new state and its event, in one statement. The order must still be at
/// the version the decision was made from (it was loaded locked, so it is; anything else is
/// a bug).
#[tracing::instrument(skip_all, fields(order_id = %decided.order.id, version = decided.order.version), err)]
pub async fn save(tx: &mut PgConnection, decided: &Decision) -> anyhow::Result<()> {
    let order = &decided.order;
    static SQL: LazyLock<String> = LazyLock::new(|| {
        Outgoing::after_write_sql(
            "UPDATE orders SET status = $2, cancel_reason = $3, payment_id = $4, version = $5, updated_at = $6
          WHERE id = $1 AND version = $5::bigint - 1
         RETURNING id",
            7,
        )
    });
    let query = sqlx::query_as(&SQL)
        .bind(order.id)
        .bind(order.status)
        .bind(order.cancel_reason)
        .bind(order.payment_id)
        .bind(order.version)
        .bind(order.updated_at);
    let saved = event(decided).after_write(query, tx).await.with_context(|| format!("save order {}", order.id))?;
    anyhow::ensure!(saved, "order {} changed under its lock", order.id);
    Ok(())
}

/// One order, locked for this transaction, whoever's it is.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<Order>> {
    sqlx::query_as!(
        Order,
        r#"SELECT id, sneaker_id, buyer_id, seller_id, price_cents, status AS "status: OrderStatus",
                  cancel_reason AS "cancel_reason: Cancellation", payment_id, match_id, version, expires_at, created_at, updated_at
             FROM orders WHERE id = $1 FOR UPDATE"#,
        id,
    )
    .fetch_optional(conn)
        .await
        .with_context(|| format!("lock order {id}"))
}

/// The buyer's order, optionally locked for an update. Someone else's order is `None`.
pub async fn find_for_buyer(
    conn: &mut PgConnection,
    id: Uuid,
    buyer_id: Uuid,
    lock: bool,
) -> anyhow::Result<Option<Order>> {
    if lock {
        sqlx::query_as!(
            Order,
            r#"SELECT id, sneaker_id, buyer_id, seller_id, price_cents, status AS "status: OrderStatus",
                  cancel_reason AS "cancel_reason: Cancellation", payment_id, match_id, version, expires_at, created_at, updated_at
             FROM orders WHERE id = $1 AND buyer_id = $2 FOR UPDATE"#,
            id,
            buyer_id
        )
    .fetch_optional(conn)
    .await
    } else {
        sqlx::query_as!(
            Order,
            r#"SELECT id, sneaker_id, buyer_id, seller_id, price_cents, status AS "status: OrderStatus",
                  cancel_reason AS "cancel_reason: Cancellation", payment_id, match_id, version, expires_at, created_at, updated_at
             FROM orders WHERE id = $1 AND buyer_id = $2"#,
            id,
            buyer_id
        )
        .fetch_optional(conn)
        .await
    }
    .context("find order")
}

/// One page of the buyer's orders, newest first, continuing after `before` (plus one row).
pub async fn list_for_buyer(pool: &PgPool, buyer_id: Uuid, page: &Page) -> anyhow::Result<Vec<Order>> {
    let select = format!("SELECT {COLUMNS} FROM orders WHERE buyer_id = $1");
    sneakerstop_db::newest_first(pool, &select, buyer_id, page.before, page.limit).await.context("list orders")
}

/// Announces that a match could not become an order (`order.refused`, its subject the
/// match, which no order will carry).
pub async fn refuse(tx: &mut PgConnection, refused: &OrderRefused) -> anyhow::Result<()> {
    sneakerstop_messaging::enqueue(tx, SOURCE, refused.match_id, 1, &OrderEvent::Refused(refused.clone())).await?;
    Ok(())
}

/// A decision's event, at the order's new version; the contract keys it by the pair (see
/// `sneakerstop_events::orders`).
fn event(decided: &Decision) -> Outgoing {
    Outgoing::new(SOURCE, decided.order.id, decided.order.version, &decided.event)
}

/// The traces `orders` were placed in (those that recorded one).
pub async fn traces(tx: &mut PgConnection, orders: &[Uuid]) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"SELECT traceparent AS "traceparent!" FROM orders WHERE id = ANY($1) AND traceparent IS NOT NULL"#,
        orders
    )
    .fetch_all(tx)
    .await
    .context("read the orders' traces")
}

/// Up to `batch` orders `grace` past their deadline by the database's clock, locked for
/// this transaction, and that clock's time. `SKIP LOCKED` lets several instances sweep at
/// once without ever touching the same order.
pub async fn lock_due(
    tx: &mut PgConnection,
    batch: i64,
    grace: chrono::Duration,
) -> anyhow::Result<(Vec<Order>, DateTime<Utc>)> {
    let now = sneakerstop_db::now(&mut *tx).await?;
    let cutoff = now - grace;
    let due = sqlx::query_as!(
        Order,
        r#"SELECT id, sneaker_id, buyer_id, seller_id, price_cents, status AS "status: OrderStatus",
                  cancel_reason AS "cancel_reason: Cancellation", payment_id, match_id, version, expires_at, created_at, updated_at
             FROM orders WHERE status = 'created' AND expires_at <= $1
            ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED"#,
        cutoff,
        batch,
    )
    .fetch_all(&mut *tx)
    .await
    .context("find lapsed orders")?;
    Ok((due, now))
}
