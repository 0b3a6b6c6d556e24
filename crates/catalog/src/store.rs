//! Persistence for `sneakers`: what the domain decided, written with the event that
//! announces it, in the same transaction (or the same statement).

use std::sync::LazyLock;

use anyhow::Context;
use sneakerstop_messaging::{Outgoing, WriteQuery};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::SOURCE;
use crate::domain::{Decision, ListQuery, Product, Sneaker, Sort, Status};

const COLUMNS: &str = "id, seller_id, title, brand, description, price_cents, size, product_id, expires_at, status, \
                       held_by_order, version, created_at, updated_at";

/// Writes a newly listed pair and its `sneaker.listed`, atomically, in one statement: the
/// listing is the busiest write, and one round trip (with its implicit transaction)
/// instead of four is most of its cost.
#[tracing::instrument(skip_all, fields(sneaker_id = %listed.sneaker.id), err)]
pub async fn insert(executor: impl sqlx::PgExecutor<'_>, listed: &Decision) -> anyhow::Result<()> {
    let row = &listed.sneaker;
    let event = Outgoing::new(SOURCE, row.id, row.version, &listed.event);
    static SQL: LazyLock<String> = LazyLock::new(|| {
        Outgoing::after_write_sql(
            "INSERT INTO sneakers (id, title, brand, description, price_cents, size, status, version, created_at,
                               updated_at, seller_id, product_id, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12)
         RETURNING id",
            13,
        )
    });
    let query = bind_listing(sqlx::query_as(&SQL), row).bind(row.seller_id).bind(row.product_id).bind(row.expires_at);
    event.after_write(query, executor).await.context("insert sneaker and sneaker.listed")?;
    Ok(())
}

/// Binds what both writes of a listing set, as `$1` to `$9`: id, title, brand, description,
/// price, size, status, version and the time of the change.
fn bind_listing<'q>(query: WriteQuery<'q>, row: &'q Sneaker) -> WriteQuery<'q> {
    query
        .bind(row.id)
        .bind(&row.title)
        .bind(&row.brand)
        .bind(&row.description)
        .bind(row.price_cents)
        .bind(row.size)
        .bind(row.status)
        .bind(row.version)
        .bind(row.updated_at)
}

/// The listing with this id.
pub async fn get(pool: &PgPool, id: Uuid) -> anyhow::Result<Option<Sneaker>> {
    sqlx::query_as!(Sneaker, r#"SELECT id, seller_id, title, brand, description, price_cents, size, product_id, expires_at, status AS "status: Status", held_by_order,
                  version, created_at, updated_at
             FROM sneakers WHERE id = $1"#, id).fetch_optional(pool)
        .await
        .with_context(|| format!("get sneaker {id}"))
}

/// The listing with this id, locked for this transaction.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<Sneaker>> {
    sqlx::query_as!(Sneaker, r#"SELECT id, seller_id, title, brand, description, price_cents, size, product_id, expires_at, status AS "status: Status", held_by_order,
                  version, created_at, updated_at
             FROM sneakers WHERE id = $1 FOR UPDATE"#, id).fetch_optional(conn)
        .await
        .with_context(|| format!("lock sneaker {id}"))
}

/// Writes a listing's new state and its `sneaker.updated`, in one statement. The listing
/// must still be at the version the decision was made from (it was loaded locked; anything
/// else is a bug).
#[tracing::instrument(skip_all, fields(sneaker_id = %decided.sneaker.id, version = decided.sneaker.version), err)]
pub async fn save(tx: &mut PgConnection, decided: &Decision) -> anyhow::Result<()> {
    let row = &decided.sneaker;
    let event = Outgoing::new(SOURCE, row.id, row.version, &decided.event);
    static SQL: LazyLock<String> = LazyLock::new(|| {
        Outgoing::after_write_sql(
            "UPDATE sneakers SET title = $2, brand = $3, description = $4, price_cents = $5, size = $6, status = $7,
                version = $8, updated_at = $9, held_by_order = $10
          WHERE id = $1 AND version = $8::bigint - 1
         RETURNING id",
            11,
        )
    });
    let query = bind_listing(sqlx::query_as(&SQL), row).bind(row.held_by_order);
    let saved = event.after_write(query, tx).await.with_context(|| format!("save sneaker {}", row.id))?;
    anyhow::ensure!(saved, "sneaker {} changed under its lock", row.id);
    Ok(())
}

/// Up to `batch` available asks whose time has run out by the database's clock, locked for
/// this transaction (`SKIP LOCKED`: several sweepers never take one ask), and that clock.
pub async fn lock_expired(
    tx: &mut PgConnection,
    batch: i64,
) -> anyhow::Result<(Vec<Sneaker>, chrono::DateTime<chrono::Utc>)> {
    let now = sneakerstop_db::now(&mut *tx).await?;
    let due = sqlx::query_as!(
        Sneaker,
        r#"SELECT id, seller_id, title, brand, description, price_cents, size, product_id, expires_at,
                  status AS "status: Status", held_by_order, version, created_at, updated_at
             FROM sneakers WHERE status = 'available' AND expires_at <= $1
            ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED"#,
        now,
        batch,
    )
    .fetch_all(&mut *tx)
    .await
    .context("find expired asks")?;
    Ok((due, now))
}

/// Writes a new product and its `product.created`. A taken style code is
/// [`ProductInsert::StyleCodeTaken`], decided by the unique constraint.
#[tracing::instrument(skip_all, fields(product_id = %product.id), err)]
pub async fn insert_product(pool: &PgPool, product: &Product) -> Result<(), ProductInsert> {
    let _transaction = sneakerstop_db::transaction_span("creating a product");
    let mut tx = pool.begin().await.context("begin")?;
    save_product(&mut tx, product).await?;
    tx.commit().await.context("commit product")?;
    Ok(())
}

/// The product, locked until `tx` ends: the row a correction changes.
pub async fn lock_product(tx: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<Product>> {
    sqlx::query_as!(
        Product,
        "SELECT id, style_code, name, brand, colorway, retail_price_cents, release_date, sizes, version, created_by,
                created_at, updated_at
           FROM products WHERE id = $1 FOR UPDATE",
        id
    )
    .fetch_optional(tx)
    .await
    .with_context(|| format!("lock product {id}"))
}

/// Writes `product` as it is now — new (version 1) or corrected — and its event
/// (`product.created` or `product.updated`) on `tx`. A taken style code is
/// [`ProductInsert::StyleCodeTaken`].
pub async fn save_product(tx: &mut PgConnection, product: &Product) -> Result<(), ProductInsert> {
    sqlx::query!(
        "INSERT INTO products (id, style_code, name, brand, colorway, retail_price_cents, release_date, sizes, version,
                               created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (id) DO UPDATE SET style_code = EXCLUDED.style_code, name = EXCLUDED.name, brand = EXCLUDED.brand,
             colorway = EXCLUDED.colorway, retail_price_cents = EXCLUDED.retail_price_cents,
             release_date = EXCLUDED.release_date, sizes = EXCLUDED.sizes, version = EXCLUDED.version,
             updated_at = EXCLUDED.updated_at",
        product.id,
        &product.style_code,
        &product.name,
        &product.brand,
        product.colorway.as_deref(),
        product.retail_price_cents,
        product.release_date,
        &product.sizes,
        product.version,
        product.created_by,
        product.created_at,
        product.updated_at,
    )
    .execute(&mut *tx)
    .await
    .map_err(|e| style_code_taken(e, &product.style_code))?;
    sneakerstop_messaging::enqueue(tx, SOURCE, product.id, product.version, &product.event()).await?;
    Ok(())
}

fn style_code_taken(error: sqlx::Error, style_code: &str) -> ProductInsert {
    if sneakerstop_db::is_unique_violation(&error, "products_style_code_key") {
        ProductInsert::StyleCodeTaken(style_code.to_owned())
    } else {
        ProductInsert::Other(anyhow::Error::new(error).context("write product"))
    }
}

/// What only the database can refuse when a product is created or corrected.
#[derive(Debug, thiserror::Error)]
pub enum ProductInsert {
    /// Another product has the style code.
    #[error("style code {0} taken")]
    StyleCodeTaken(String),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The product with this id.
pub async fn product(executor: impl sqlx::PgExecutor<'_>, id: Uuid) -> anyhow::Result<Option<Product>> {
    sqlx::query_as!(
        Product,
        "SELECT id, style_code, name, brand, colorway, retail_price_cents, release_date, sizes, version, created_by,
                created_at, updated_at
           FROM products WHERE id = $1",
        id
    )
    .fetch_optional(executor)
    .await
    .with_context(|| format!("get product {id}"))
}

/// A page of products, newest first, after `before`. With `code` (the query, upper case),
/// only products whose style code begins with it or whose name and brand match `search` (a
/// prefix `tsquery`); every product without.
pub async fn products(
    pool: &PgPool,
    search: Option<&str>,
    code: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> anyhow::Result<Vec<Product>> {
    sqlx::query_as!(
        Product,
        "SELECT id, style_code, name, brand, colorway, retail_price_cents, release_date, sizes, version, created_by,
                created_at, updated_at
           FROM products
          WHERE ($2::text IS NULL OR starts_with(style_code, $2)
                 OR ($1::text IS NOT NULL AND search @@ to_tsquery('simple', $1)))
            AND ($3::uuid IS NULL OR id < $3)
          ORDER BY id DESC LIMIT $4",
        search,
        code,
        before,
        limit,
    )
    .fetch_all(pool)
    .await
    .context("list products")
}

/// One page (plus one row, to know whether there is a next page).
pub async fn list(pool: &PgPool, query: &ListQuery) -> anyhow::Result<Vec<Sneaker>> {
    // The status is part of the statement's text, not a parameter: browsing reads partial
    // indexes (`WHERE status = 'available'`), which only a plan that knows the status can
    // use, and after five executions PostgreSQL may run a prepared statement on a generic
    // plan, which does not know it. `as_str` gives one of four fixed words.
    let status = Status::from(query.status).as_str();
    let mut sql = QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM sneakers WHERE status = '{status}'"));
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
