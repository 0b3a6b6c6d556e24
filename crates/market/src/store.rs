//! Persistence for the market: bids, matches, the replicas it keeps (products, asks, order
//! prices, payment methods) and the sales. Writes go with their events, on the caller's
//! transaction. The books live in the writer's memory ([`crate::engine`]); what is read
//! here of a book is read once, when the writer loads it. The unique indexes on matches
//! and the guards of a batch's write (`crate::batch`) hold the line should memory be stale.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sneakerstop_events::catalog::{Product as ProductSnapshot, Sneaker, SneakerStatus};
use sneakerstop_messaging::ReplicaWait;
use sneakerstop_problem::page::Page;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::SCHEMA;
use crate::domain::{Ask, Bid, BidStatus, Match, MatchStatus, Product};
use crate::live::book_changed;
use crate::owners::SHARDS;

/// An order that joined, left or changed on its book in a consumer's transaction, for the
/// book's writer to take once that transaction has committed (see the `pending_trades`
/// table and [`crate::engine`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// An ask listed, changed, held or free again: the writer reads where it is now.
    Ask(Uuid),
    /// A bid back on the book after its match ended.
    Bid(Uuid),
}

/// Records, on the caller's transaction, that `arrival` changed on the book, for its writer.
pub async fn trade_later(conn: &mut PgConnection, product: Uuid, size: f64, arrival: Arrival) -> anyhow::Result<()> {
    let (ask, bid) = match arrival {
        Arrival::Ask(id) => (Some(id), None),
        Arrival::Bid(id) => (None, Some(id)),
    };
    sqlx::query!(
        "INSERT INTO pending_trades (product_id, size, ask_id, bid_id) VALUES ($1, $2, $3, $4)",
        product,
        size,
        ask,
        bid
    )
    .execute(conn)
    .await
    .context("record a pending trade")?;
    Ok(())
}

/// The shard of a product's books in SQL, its id's last byte modulo the shards
/// ([`crate::owners::shard`]), the number of shards bound as parameter `$count`.
macro_rules! shard_of {
    ($column:literal, $count:literal) => {
        concat!("(get_byte(uuid_send(", $column, "), 15) % ", $count, ")::int2")
    };
}

/// Takes the pending arrivals of the books of `shards` (or only the one with `id`), in the
/// order they were recorded, leaving those set aside: (product, size, arrival).
pub async fn take_arrivals(
    tx: &mut PgConnection,
    shards: &[i16],
    id: Option<i64>,
) -> anyhow::Result<Vec<(Uuid, f64, Arrival)>> {
    let sql = concat!(
        "DELETE FROM pending_trades
          WHERE set_aside_at IS NULL AND ($2::bigint IS NULL OR id = $2) AND ",
        shard_of!("product_id", "$3"),
        " = ANY($1)
          RETURNING id, product_id, size, ask_id, bid_id"
    );
    type Row = (i64, Uuid, f64, Option<Uuid>, Option<Uuid>);
    let mut rows: Vec<Row> = sqlx::query_as(sql)
        .bind(shards)
        .bind(id)
        .bind(i32::from(SHARDS))
        .fetch_all(tx)
        .await
        .context("take pending arrivals")?;
    rows.sort_by_key(|row| row.0);
    Ok(rows
        .into_iter()
        .filter_map(|(_, product, size, ask, bid)| {
            let arrival = ask.map(Arrival::Ask).or(bid.map(Arrival::Bid))?;
            Some((product, size, arrival))
        })
        .collect())
}

/// The ids of the pending arrivals (not set aside) of the books of `shards`, oldest first.
pub async fn pending_trade_ids(pool: &PgPool, shards: &[i16]) -> anyhow::Result<Vec<i64>> {
    let sql = concat!(
        "SELECT id FROM pending_trades WHERE set_aside_at IS NULL AND ",
        shard_of!("product_id", "$2"),
        " = ANY($1) ORDER BY id"
    );
    sqlx::query_scalar(sql).bind(shards).bind(i32::from(SHARDS)).fetch_all(pool).await.context("list pending arrivals")
}

/// How many pending arrivals are set aside (failed for good), for the gauge.
pub async fn set_aside_count(pool: &PgPool) -> anyhow::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM pending_trades WHERE set_aside_at IS NOT NULL"#)
        .fetch_one(pool)
        .await
        .context("count set-aside arrivals")
}

/// Counts a failed attempt at the pending trade `id` and keeps its error; at `max_attempts`
/// sets it aside. Returns whether it is now set aside.
pub async fn pending_trade_failed(pool: &PgPool, id: i64, error: &str, max_attempts: i32) -> anyhow::Result<bool> {
    let set_aside = sqlx::query_scalar!(
        r#"UPDATE pending_trades
              SET attempts = attempts + 1, last_error = $2,
                  set_aside_at = CASE WHEN attempts + 1 >= $3 THEN now() END
            WHERE id = $1
        RETURNING set_aside_at IS NOT NULL AS "set_aside!""#,
        id,
        error,
        max_attempts
    )
    .fetch_optional(pool)
    .await
    .context("count a failed pending trade")?;
    Ok(set_aside.unwrap_or(false))
}

/// Locks the asks with these ids, in one order (by id), so that consumer transactions
/// that change several asks never wait for each other in a cycle.
pub async fn lock_asks(tx: &mut PgConnection, mut ids: Vec<Uuid>) -> anyhow::Result<()> {
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query!("SELECT id FROM asks WHERE id = ANY($1) ORDER BY id FOR UPDATE", &ids)
        .fetch_all(tx)
        .await
        .context("lock the asks")?;
    Ok(())
}

/// What placing a bid needs from the replicas, in one round trip: the product (if the
/// replica has heard of it) and whether the buyer has a saved payment method. What the
/// buyer has on the book is the writer's to say, from memory.
pub async fn bidder(conn: &mut PgConnection, product: Uuid, buyer: Uuid) -> anyhow::Result<Option<(Product, bool)>> {
    let row = sqlx::query!(
        r#"SELECT p.id, p.style_code, p.sizes,
                  EXISTS (SELECT 1 FROM payment_methods m WHERE m.buyer_id = $2) AS "has_payment_method!"
             FROM products p WHERE p.id = $1"#,
        product,
        buyer
    )
    .fetch_optional(conn)
    .await
    .context("find the product and the bidder")?;
    Ok(row.map(|row| (Product { id: row.id, style_code: row.style_code, sizes: row.sizes }, row.has_payment_method)))
}

/// A book's live bids, as the writer loads it.
pub async fn book_bids(tx: &mut PgConnection, product: Uuid, size: f64) -> anyhow::Result<Vec<Bid>> {
    sqlx::query_as!(
        Bid,
        r#"SELECT id, product_id, size, buyer_id, price_cents, status AS "status: BidStatus", match_id, expires_at,
                  version, created_at, updated_at
             FROM bids WHERE product_id = $1 AND size = $2 AND status = 'open' AND expires_at > now()"#,
        product,
        size,
    )
    .fetch_all(tx)
    .await
    .context("load a book's bids")
}

/// A book's asks (listings available, held by no order or match, not expired), as the
/// writer loads it.
pub async fn book_asks(tx: &mut PgConnection, product: Uuid, size: f64) -> anyhow::Result<Vec<Ask>> {
    sqlx::query_as!(
        Ask,
        "SELECT id, product_id, size, seller_id, price_cents, listed_at, expires_at FROM asks
          WHERE product_id = $1 AND size = $2 AND status = 'available' AND held_by IS NULL AND match_id IS NULL
            AND (expires_at IS NULL OR expires_at > now())",
        product,
        size,
    )
    .fetch_all(tx)
    .await
    .context("load a book's asks")
}

/// The asks with these ids that are on their books now, by id (one read for a batch's
/// arrivals).
pub async fn asks_on_book(tx: &mut PgConnection, ids: &[Uuid]) -> anyhow::Result<std::collections::HashMap<Uuid, Ask>> {
    let asks = sqlx::query_as!(
        Ask,
        "SELECT id, product_id, size, seller_id, price_cents, listed_at, expires_at FROM asks
          WHERE id = ANY($1) AND status = 'available' AND held_by IS NULL AND match_id IS NULL
            AND (expires_at IS NULL OR expires_at > now())",
        ids
    )
    .fetch_all(tx)
    .await
    .context("find the arrived asks")?;
    Ok(asks.into_iter().map(|ask| (ask.id, ask)).collect())
}

/// The bids with these ids, by id (one read for a batch's arrivals).
pub async fn bids_by_id(tx: &mut PgConnection, ids: &[Uuid]) -> anyhow::Result<std::collections::HashMap<Uuid, Bid>> {
    let bids = sqlx::query_as!(
        Bid,
        r#"SELECT id, product_id, size, buyer_id, price_cents, status AS "status: BidStatus", match_id, expires_at,
                  version, created_at, updated_at
             FROM bids WHERE id = ANY($1)"#,
        ids
    )
    .fetch_all(tx)
    .await
    .context("find the arrived bids")?;
    Ok(bids.into_iter().map(|bid| (bid.id, bid)).collect())
}

/// One bid, locked for this transaction.
pub async fn lock_bid(tx: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<Bid>> {
    sqlx::query_as!(
        Bid,
        r#"SELECT id, product_id, size, buyer_id, price_cents, status AS "status: BidStatus", match_id, expires_at,
                  version, created_at, updated_at
             FROM bids WHERE id = $1 FOR UPDATE"#,
        id
    )
    .fetch_optional(tx)
    .await
    .with_context(|| format!("lock bid {id}"))
}

/// One bid, whoever's it is.
pub async fn bid(pool: &PgPool, id: Uuid) -> anyhow::Result<Option<Bid>> {
    sqlx::query_as!(
        Bid,
        r#"SELECT id, product_id, size, buyer_id, price_cents, status AS "status: BidStatus", match_id, expires_at,
                  version, created_at, updated_at
             FROM bids WHERE id = $1"#,
        id
    )
    .fetch_optional(pool)
    .await
    .with_context(|| format!("find bid {id}"))
}

/// A page of the buyer's bids, newest first (plus one row).
pub async fn bids_of(pool: &PgPool, buyer: Uuid, page: &Page) -> anyhow::Result<Vec<Bid>> {
    let select = "SELECT id, product_id, size, buyer_id, price_cents, status, match_id, expires_at, version, created_at, \
                  updated_at FROM bids WHERE buyer_id = $1";
    sneakerstop_db::newest_first(pool, select, buyer, page.before, page.limit).await.context("list bids")
}

/// The match with this id, locked, if it is still pending.
pub async fn lock_pending_match(tx: &mut PgConnection, id: Uuid) -> anyhow::Result<Option<Match>> {
    sqlx::query_as!(
        Match,
        r#"SELECT id, bid_id, ask_id, product_id, size, buyer_id, seller_id, price_cents,
                  status AS "status: MatchStatus", created_at, updated_at
             FROM matches WHERE id = $1 AND status = 'pending' FOR UPDATE"#,
        id
    )
    .fetch_optional(tx)
    .await
    .with_context(|| format!("lock match {id}"))
}

/// Ends a pending match with `status`; its ask leaves it (whether the ask is back on the
/// book is for its listing's and orders' state to say).
pub async fn end_match(tx: &mut PgConnection, ended: &Match, status: MatchStatus) -> anyhow::Result<()> {
    sqlx::query!(
        "UPDATE matches SET status = $2, updated_at = now() WHERE id = $1 AND status = 'pending'",
        ended.id,
        status as MatchStatus
    )
    .execute(&mut *tx)
    .await
    .context("end match")?;
    sqlx::query!("UPDATE asks SET match_id = NULL WHERE id = $1 AND match_id = $2", ended.ask_id, ended.id)
        .execute(&mut *tx)
        .await
        .context("release the ask from its match")?;
    book_changed(ended.product_id);
    Ok(())
}

/// Up to `batch` open bids whose time has run out by the database's clock, locked (`SKIP
/// LOCKED`: several sweepers never take one bid), and that clock's time.
pub async fn lock_expired(tx: &mut PgConnection, batch: i64) -> anyhow::Result<(Vec<Bid>, DateTime<Utc>)> {
    let now = sneakerstop_db::now(&mut *tx).await?;
    let due = sqlx::query_as!(
        Bid,
        r#"SELECT id, product_id, size, buyer_id, price_cents, status AS "status: BidStatus", match_id, expires_at,
                  version, created_at, updated_at
             FROM bids WHERE status = 'open' AND expires_at <= $1
            ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED"#,
        now,
        batch,
    )
    .fetch_all(&mut *tx)
    .await
    .context("find expired bids")?;
    Ok((due, now))
}

/// Applies `product.created`.
pub async fn apply_product(conn: &mut PgConnection, product: &ProductSnapshot) -> anyhow::Result<()> {
    sqlx::query!(
        "INSERT INTO products (id, style_code, sizes, version) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET style_code = EXCLUDED.style_code, sizes = EXCLUDED.sizes,
             version = EXCLUDED.version
         WHERE products.version < EXCLUDED.version",
        product.product_id,
        &product.style_code,
        &product.sizes,
        product.version,
    )
    .execute(conn)
    .await
    .context("apply product")?;
    // Bids waiting for this product re-check once the event's transaction commits.
    ReplicaWait::inserted(SCHEMA, product.product_id);
    Ok(())
}

/// Applies a listing of a product (an ask) by version; older or repeated versions change
/// nothing. Returns whether the change may move it on or off its book: it changed, and it
/// was on a book before or is now (an ask in a match or held by an order being sold, say,
/// concerns no book: the writer took it off when the match or order began).
pub async fn apply_ask(conn: &mut PgConnection, product: Uuid, listing: &Sneaker) -> anyhow::Result<bool> {
    let status = match listing.status {
        SneakerStatus::Available => "available",
        SneakerStatus::Reserved => "reserved",
        SneakerStatus::Sold => "sold",
        SneakerStatus::Expired => "expired",
        SneakerStatus::Withdrawn => "withdrawn",
    };
    let concerns_a_book = sqlx::query_scalar!(
        r#"WITH before AS (
               SELECT status = 'available' AND held_by IS NULL AND match_id IS NULL AS on_book FROM asks WHERE id = $1
           ), applied AS (
               INSERT INTO asks (id, product_id, size, seller_id, price_cents, status, version, listed_at, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (id) DO UPDATE SET size = EXCLUDED.size, price_cents = EXCLUDED.price_cents,
                   status = EXCLUDED.status, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at
               WHERE asks.version < EXCLUDED.version
               RETURNING status = 'available' AND held_by IS NULL AND match_id IS NULL AS on_book
           )
           SELECT EXISTS (SELECT 1 FROM applied)
                  AND (COALESCE((SELECT on_book FROM before), false) OR (SELECT on_book FROM applied)) AS "concerns!""#,
        listing.sneaker_id,
        product,
        listing.size,
        listing.seller_id,
        listing.price_cents,
        status,
        listing.version,
        listing.created_at,
        listing.expires_at,
    )
    .fetch_one(conn)
    .await
    .context("apply ask")?;
    if concerns_a_book {
        book_changed(product);
    }
    Ok(concerns_a_book)
}

/// An order was placed for a listing: remember its price (a sale is at the order's price)
/// and, if the listing is an ask, that the order holds it (off the book until the order
/// ends). Returns the ask's book if it is one.
pub async fn order_placed(
    conn: &mut PgConnection,
    order: Uuid,
    sneaker: Uuid,
    price_cents: i64,
) -> anyhow::Result<Option<(Uuid, f64)>> {
    // One statement. The price is kept whether or not the listing is an ask the market has
    // heard of yet: its `sneaker.listed` may come after the order's event.
    let book = sqlx::query!(
        "WITH priced AS (
             INSERT INTO order_prices (order_id, sneaker_id, price_cents) VALUES ($2, $1, $3) ON CONFLICT DO NOTHING
         )
         UPDATE asks SET held_by = $2 WHERE id = $1 RETURNING product_id, size",
        sneaker,
        order,
        price_cents
    )
    .fetch_optional(conn)
    .await
    .context("remember the order's price and hold the ask")?;
    let book = book.map(|row| (row.product_id, row.size));
    if let Some((product, _)) = book {
        book_changed(product);
    }
    Ok(book)
}

/// An order ended unpaid: it no longer holds its listing, and its price is forgotten.
/// Returns the ask's book if it is an ask the order held.
pub async fn order_ended(conn: &mut PgConnection, order: Uuid, sneaker: Uuid) -> anyhow::Result<Option<(Uuid, f64)>> {
    let book = sqlx::query!(
        "WITH forgotten AS (DELETE FROM order_prices WHERE order_id = $2)
         UPDATE asks SET held_by = NULL WHERE id = $1 AND held_by = $2 RETURNING product_id, size",
        sneaker,
        order
    )
    .fetch_optional(conn)
    .await
    .context("release the ask")?;
    let book = book.map(|row| (row.product_id, row.size));
    if let Some((product, _)) = book {
        book_changed(product);
    }
    Ok(book)
}

/// An order completed: if its listing is an ask, a sale at the order's price (which is
/// then forgotten: only live orders' prices are kept). Returns whether it was one.
pub async fn record_sale(
    conn: &mut PgConnection,
    order: Uuid,
    sneaker: Uuid,
    sold_at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let product = sqlx::query_scalar!(
        "WITH price AS (DELETE FROM order_prices WHERE order_id = $1 RETURNING price_cents)
         INSERT INTO sales (order_id, product_id, size, price_cents, sold_at)
         SELECT $1, a.product_id, a.size, p.price_cents, $3
           FROM asks a, price p
          WHERE a.id = $2
         ON CONFLICT DO NOTHING
         RETURNING product_id",
        order,
        sneaker,
        sold_at
    )
    .fetch_optional(conn)
    .await
    .context("record sale")?;
    if let Some(product) = product {
        book_changed(product);
    }
    Ok(product.is_some())
}

/// Applies `payment_method.saved` by version.
pub async fn apply_payment_method(
    conn: &mut PgConnection,
    buyer: Uuid,
    method: Uuid,
    version: i64,
) -> anyhow::Result<()> {
    sqlx::query!(
        "INSERT INTO payment_methods (buyer_id, method_id, version) VALUES ($1, $2, $3)
         ON CONFLICT (buyer_id) DO UPDATE SET method_id = EXCLUDED.method_id, version = EXCLUDED.version
         WHERE payment_methods.version < EXCLUDED.version",
        buyer,
        method,
        version
    )
    .execute(conn)
    .await
    .context("apply payment method")?;
    // Bids waiting for this buyer's card re-check once the event's transaction commits.
    ReplicaWait::inserted(SCHEMA, buyer);
    Ok(())
}

/// One size of a product's market.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeMarket {
    /// The size.
    pub size: f64,
    /// The lowest ask on the book, in cents.
    pub lowest_ask: Option<i64>,
    /// The listing that is the lowest ask (price, then time): the pair "buy now" orders.
    pub lowest_ask_id: Option<Uuid>,
    /// The highest live bid, in cents.
    pub highest_bid: Option<i64>,
    /// Asks on the book.
    pub asks: i64,
    /// Live bids on the book.
    pub bids: i64,
    /// The last sale's price, in cents, and when.
    pub last_sale: Option<(i64, DateTime<Utc>)>,
}

/// Every size of a product's market, as of now (one indexed look per side per size).
pub async fn market(pool: &PgPool, product: Uuid) -> anyhow::Result<Vec<SizeMarket>> {
    let rows = sqlx::query!(
        r#"SELECT s.size AS "size!",
                  ask.lowest, ask.count AS "asks!", first_ask.id AS "lowest_ask_id?", bid.highest, bid.count AS "bids!",
                  sale.price_cents AS "last_price?", sale.sold_at AS "last_sold_at?"
             FROM products p
             CROSS JOIN LATERAL unnest(p.sizes) AS s(size)
             CROSS JOIN LATERAL (
                 SELECT min(price_cents) AS lowest, count(*) AS count FROM asks a
                  WHERE a.product_id = p.id AND a.size = s.size
                    AND a.status = 'available' AND a.held_by IS NULL AND a.match_id IS NULL
                    AND (a.expires_at IS NULL OR a.expires_at > now())) ask
             LEFT JOIN LATERAL (
                 SELECT a.id FROM asks a
                  WHERE a.product_id = p.id AND a.size = s.size
                    AND a.status = 'available' AND a.held_by IS NULL AND a.match_id IS NULL
                    AND (a.expires_at IS NULL OR a.expires_at > now())
                  ORDER BY a.price_cents, a.listed_at, a.id LIMIT 1) first_ask ON true
             CROSS JOIN LATERAL (
                 SELECT max(price_cents) AS highest, count(*) AS count FROM bids b
                  WHERE b.product_id = p.id AND b.size = s.size AND b.status = 'open' AND b.expires_at > now()) bid
             LEFT JOIN LATERAL (
                 SELECT price_cents, sold_at FROM sales x
                  WHERE x.product_id = p.id AND x.size = s.size ORDER BY sold_at DESC, order_id DESC LIMIT 1) sale ON true
            WHERE p.id = $1
            ORDER BY s.size"#,
        product
    )
    .fetch_all(pool)
    .await
    .context("read the market")?;
    Ok(rows
        .into_iter()
        .map(|row| SizeMarket {
            size: row.size,
            lowest_ask: row.lowest,
            lowest_ask_id: row.lowest_ask_id,
            highest_bid: row.highest,
            asks: row.asks,
            bids: row.bids,
            last_sale: row.last_price.zip(row.last_sold_at),
        })
        .collect())
}

/// A product's market over all its sizes, for a list of products.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductMarket {
    /// The product.
    pub product_id: Uuid,
    /// The lowest ask on any of its books, in cents.
    pub lowest_ask: Option<i64>,
    /// The highest live bid on any of its books, in cents.
    pub highest_bid: Option<i64>,
    /// Asks on its books.
    pub asks: i64,
    /// Live bids on its books.
    pub bids: i64,
    /// Its last sale: size, price in cents, when.
    pub last_sale: Option<(f64, i64, DateTime<Utc>)>,
}

/// The markets of `products` (those the market has heard of), in one read: for each, the
/// lowest ask and highest bid over its sizes, how many, and its last sale.
pub async fn markets(pool: &PgPool, products: &[Uuid]) -> anyhow::Result<Vec<ProductMarket>> {
    let rows = sqlx::query!(
        r#"SELECT p.id, ask.lowest, ask.count AS "asks!", bid.highest, bid.count AS "bids!",
                  sale.size AS "last_size?", sale.price_cents AS "last_price?", sale.sold_at AS "last_sold_at?"
             FROM products p
             CROSS JOIN LATERAL (
                 SELECT min(price_cents) AS lowest, count(*) AS count FROM asks a
                  WHERE a.product_id = p.id AND a.status = 'available' AND a.held_by IS NULL AND a.match_id IS NULL
                    AND (a.expires_at IS NULL OR a.expires_at > now())) ask
             CROSS JOIN LATERAL (
                 SELECT max(price_cents) AS highest, count(*) AS count FROM bids b
                  WHERE b.product_id = p.id AND b.status = 'open' AND b.expires_at > now()) bid
             LEFT JOIN LATERAL (
                 SELECT size, price_cents, sold_at FROM sales x
                  WHERE x.product_id = p.id ORDER BY sold_at DESC, order_id DESC LIMIT 1) sale ON true
            WHERE p.id = ANY($1)"#,
        products
    )
    .fetch_all(pool)
    .await
    .context("read the markets of products")?;
    Ok(rows
        .into_iter()
        .map(|row| ProductMarket {
            product_id: row.id,
            lowest_ask: row.lowest,
            highest_bid: row.highest,
            asks: row.asks,
            bids: row.bids,
            last_sale: row.last_size.zip(row.last_price).zip(row.last_sold_at).map(|((s, p), at)| (s, p, at)),
        })
        .collect())
}

/// A sale.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Sale {
    /// The order that completed it.
    pub order_id: Uuid,
    /// The size.
    pub size: f64,
    /// The price, in cents.
    pub price_cents: i64,
    /// When.
    pub sold_at: DateTime<Utc>,
}

/// A page of a product's sales (of one size, or all), newest first, before `before` (a
/// sale's time and order id), plus one row.
pub async fn sales(
    pool: &PgPool,
    product: Uuid,
    size: Option<f64>,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> anyhow::Result<Vec<Sale>> {
    let (before_at, before_id) = before.unzip();
    sqlx::query_as!(
        Sale,
        "SELECT order_id, size, price_cents, sold_at FROM sales
          WHERE product_id = $1 AND ($2::float8 IS NULL OR size = $2)
            AND ($3::timestamptz IS NULL OR (sold_at, order_id) < ($3, $4))
          ORDER BY sold_at DESC, order_id DESC LIMIT $5",
        product,
        size,
        before_at,
        before_id,
        limit
    )
    .fetch_all(pool)
    .await
    .context("list sales")
}
