//! SQL for `sneakers`. Every change writes its event to the outbox in the same transaction.

use anyhow::Context;
use chrono::{DateTime, SubsecRound, Utc};
use sneakerstop_events::catalog::{Sneaker, SneakerEvent, SneakerStatus};
use sneakerstop_messaging::Outgoing;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::domain::{ListQuery, Listing, Sort};
use crate::{CatalogError, SOURCE};

const COLUMNS: &str =
    "id, seller_id, title, brand, description, price_cents, size, status, version, created_at, updated_at";

/// A listing as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SneakerRow {
    pub id: Uuid,
    pub seller_id: Uuid,
    pub title: String,
    pub brand: Option<String>,
    pub description: Option<String>,
    pub price_cents: i64,
    pub size: f64,
    pub status: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SneakerRow {
    pub fn status(&self) -> SneakerStatus {
        match self.status.as_str() {
            "reserved" => SneakerStatus::Reserved,
            "sold" => SneakerStatus::Sold,
            _ => SneakerStatus::Available,
        }
    }

    /// The event payload: the whole listing at this version.
    pub fn snapshot(&self) -> Sneaker {
        Sneaker {
            sneaker_id: self.id,
            seller_id: self.seller_id,
            title: self.title.clone(),
            brand: self.brand.clone(),
            description: self.description.clone(),
            price_cents: self.price_cents,
            size: self.size,
            status: self.status(),
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Lists a pair (version 1) and writes `sneaker.listed`, atomically, in one statement:
/// the listing is the busiest write, and one round trip (with its implicit transaction)
/// instead of four is most of its cost.
pub async fn insert(
    executor: impl sqlx::PgExecutor<'_>,
    seller_id: Uuid,
    listing: &Listing,
) -> anyhow::Result<SneakerRow> {
    // PostgreSQL keeps microseconds: the event must carry the time the row will show.
    let now = Utc::now().trunc_subsecs(6);
    let row = SneakerRow {
        id: Uuid::now_v7(),
        seller_id,
        title: listing.title.clone(),
        brand: listing.brand.clone(),
        description: listing.description.clone(),
        price_cents: listing.price_cents,
        size: listing.size,
        status: "available".to_owned(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    let event = Outgoing::new(SOURCE, row.id, row.version, &SneakerEvent::Listed(row.snapshot()));
    let sql = format!(
        "WITH listed AS (
             INSERT INTO sneakers (id, seller_id, title, brand, description, price_cents, size, status, version,
                                   created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
         ) {}",
        Outgoing::insert_sql(11)
    );
    let query = sqlx::query(&sql)
        .bind(row.id)
        .bind(row.seller_id)
        .bind(&row.title)
        .bind(&row.brand)
        .bind(&row.description)
        .bind(row.price_cents)
        .bind(row.size)
        .bind(&row.status)
        .bind(row.version)
        .bind(row.created_at);
    event.bind(query).execute(executor).await.context("insert sneaker and sneaker.listed")?;
    Ok(row)
}

/// The listing with this id.
pub async fn get(pool: &PgPool, id: Uuid) -> anyhow::Result<Option<SneakerRow>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM sneakers WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
        .context("get sneaker")
}

/// The seller's edit: checks owner, status and `If-Match` under a row lock, bumps the
/// version and writes `sneaker.updated`, atomically.
pub async fn update(
    pool: &PgPool,
    id: Uuid,
    seller_id: Uuid,
    listing: &Listing,
    if_match: Option<i64>,
) -> Result<SneakerRow, CatalogError> {
    let mut tx = pool.begin().await.context("begin")?;
    let current: SneakerRow = sqlx::query_as(&format!("SELECT {COLUMNS} FROM sneakers WHERE id = $1 FOR UPDATE"))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .context("lock sneaker")?
        .ok_or(CatalogError::NotFound)?;
    if current.seller_id != seller_id {
        return Err(CatalogError::NotOwner);
    }
    match current.status() {
        SneakerStatus::Available => {}
        SneakerStatus::Reserved => return Err(CatalogError::NotEditable("reserved")),
        SneakerStatus::Sold => return Err(CatalogError::NotEditable("sold")),
    }
    if if_match.is_some_and(|version| version != current.version) {
        return Err(CatalogError::VersionMismatch { current: current.version });
    }
    let row: SneakerRow = sqlx::query_as(&format!(
        "UPDATE sneakers SET title = $2, brand = $3, description = $4, price_cents = $5, size = $6,
                version = version + 1, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(&listing.title)
    .bind(&listing.brand)
    .bind(&listing.description)
    .bind(listing.price_cents)
    .bind(listing.size)
    .fetch_one(&mut *tx)
    .await
    .context("update sneaker")?;
    sneakerstop_messaging::enqueue(&mut tx, SOURCE, row.id, row.version, &SneakerEvent::Updated(row.snapshot()))
        .await?;
    tx.commit().await.context("commit update")?;
    Ok(row)
}

/// What an order does to the pair it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// An order reserved it.
    Reserve,
    /// The order that held it was cancelled.
    Release,
    /// The order that held it was paid.
    Sell,
}

/// Moves the pair as `order` says, if it applies; bumps the version and writes
/// `sneaker.updated` on the caller's transaction. `None` when it does not apply.
pub async fn apply_hold(
    tx: &mut sqlx::PgConnection,
    sneaker_id: Uuid,
    order_id: Uuid,
    hold: Hold,
) -> anyhow::Result<Option<SneakerRow>> {
    let (set, condition) = match hold {
        Hold::Reserve => ("status = 'reserved', held_by_order = $2", "status = 'available'"),
        Hold::Release => ("status = 'available', held_by_order = NULL", "status = 'reserved' AND held_by_order = $2"),
        Hold::Sell => ("status = 'sold'", "status = 'reserved' AND held_by_order = $2"),
    };
    let row: Option<SneakerRow> = sqlx::query_as(&format!(
        "UPDATE sneakers SET {set}, version = version + 1, updated_at = now()
         WHERE id = $1 AND {condition} RETURNING {COLUMNS}"
    ))
    .bind(sneaker_id)
    .bind(order_id)
    .fetch_optional(&mut *tx)
    .await
    .context("change pair status")?;
    if let Some(row) = &row {
        sneakerstop_messaging::enqueue(tx, SOURCE, row.id, row.version, &SneakerEvent::Updated(row.snapshot())).await?;
    }
    Ok(row)
}

/// One page (plus one row, to know whether there is a next page).
pub async fn list(pool: &PgPool, query: &ListQuery) -> anyhow::Result<Vec<SneakerRow>> {
    let mut sql = QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM sneakers WHERE status = "));
    sql.push_bind(status_text(query.status));
    if let Some(search) = &query.search {
        sql.push(" AND search @@ to_tsquery('simple', ").push_bind(search).push(")");
    }
    if let Some(size) = query.size {
        sql.push(" AND size = ").push_bind(size);
    }
    if let Some(min) = query.min_price_cents {
        sql.push(" AND price_cents >= ").push_bind(min);
    }
    if let Some(max) = query.max_price_cents {
        sql.push(" AND price_cents <= ").push_bind(max);
    }
    if let Some(seller) = query.seller_id {
        sql.push(" AND seller_id = ").push_bind(seller);
    }
    // Keyset pagination: continue strictly after the previous page's last row.
    if let Some(cursor) = query.cursor {
        match query.sort {
            Sort::Newest => sql.push(" AND id < ").push_bind(cursor.id),
            Sort::PriceAsc => sql
                .push(" AND (price_cents, id) > (")
                .push_bind(cursor.price_cents)
                .push(", ")
                .push_bind(cursor.id)
                .push(")"),
            Sort::PriceDesc => sql
                .push(" AND (price_cents, id) < (")
                .push_bind(cursor.price_cents)
                .push(", ")
                .push_bind(cursor.id)
                .push(")"),
        };
    }
    sql.push(match query.sort {
        // ids are UUIDv7, so id order is listing order.
        Sort::Newest => " ORDER BY id DESC",
        Sort::PriceAsc => " ORDER BY price_cents ASC, id ASC",
        Sort::PriceDesc => " ORDER BY price_cents DESC, id DESC",
    });
    sql.push(" LIMIT ").push_bind(query.limit + 1);
    sql.build_query_as().fetch_all(pool).await.context("list sneakers")
}

fn status_text(status: SneakerStatus) -> &'static str {
    match status {
        SneakerStatus::Available => "available",
        SneakerStatus::Reserved => "reserved",
        SneakerStatus::Sold => "sold",
    }
}
