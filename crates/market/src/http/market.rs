//! `/api/products/{id}/market`, `/sales` and `/market/stream`: what a product page shows,
//! per size — the lowest ask, the highest bid, the last sale, how many asks and bids — its
//! sales history, and the same market live.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sneakerstop_messaging::CacheSource;
use sneakerstop_problem::money::units;
use sneakerstop_problem::page::{self, DEFAULT_LIMIT, PageOf};
use sneakerstop_problem::{ApiQuery, FieldError, Problem};
use utoipa::ToSchema;
use uuid::Uuid;

use super::query::SalesParams;
use crate::store::{self, Sale, SizeMarket};
use crate::{AppState, MarketError};

pub(super) fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/products/{id}/market", get(market))
        .route("/api/products/{id}/market/stream", get(stream))
        .route("/api/products/{id}/sales", get(sales))
        .route("/api/markets", get(markets))
}

/// The most products one `GET /api/markets` asks about (a page of a products list).
const MAX_PRODUCTS: usize = 100;

/// One product's market over all its sizes, for a list of products.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductMarketView {
    product_id: Uuid,
    /// The lowest ask in any size: the least a pair of it costs now (in currency units).
    #[schema(example = 210.0)]
    lowest_ask: Option<f64>,
    /// The highest bid in any size.
    #[schema(example = 190.0)]
    highest_bid: Option<f64>,
    /// Asks on its books.
    asks: i64,
    /// Bids on its books.
    bids: i64,
    /// Its last sale, in whichever size.
    last_sale: Option<SaleView>,
}

/// The markets of many products, in one call.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketsView {
    /// One entry per product the market knows, in the order asked; unknown ids are left out.
    items: Vec<ProductMarketView>,
}

/// The markets of a page of products — the lowest ask, highest bid, counts and last sale of
/// each over all its sizes — in one call (a products list asks once per page, not once per
/// product). Ids the market has not heard of are left out.
#[utoipa::path(
    get, path = "/api/markets", tag = "market",
    params(super::query::MarketsParams),
    responses(
        (status = 200, description = "The markets, in the order asked", body = MarketsView),
        (status = 400, description = "`products` missing, not UUIDs, or more than 100", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn markets(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<super::query::MarketsParams>,
) -> Result<Json<MarketsView>, MarketError> {
    let ids = parse_products(params.products.as_deref())?;
    let mut found: std::collections::HashMap<Uuid, ProductMarketView> = store::markets(&state.pool, &ids)
        .await?
        .into_iter()
        .map(|m| {
            let view = ProductMarketView {
                product_id: m.product_id,
                lowest_ask: m.lowest_ask.map(units),
                highest_bid: m.highest_bid.map(units),
                asks: m.asks,
                bids: m.bids,
                last_sale: m.last_sale.map(|(size, price, sold_at)| SaleView { size, price: units(price), sold_at }),
            };
            (m.product_id, view)
        })
        .collect();
    Ok(Json(MarketsView { items: ids.iter().filter_map(|id| found.remove(id)).collect() }))
}

fn parse_products(products: Option<&str>) -> Result<Vec<Uuid>, MarketError> {
    let field = |reason: &str| MarketError::from(FieldError::new("products", reason));
    let products =
        products.filter(|p| !p.trim().is_empty()).ok_or_else(|| field("is required: product ids, comma-separated"))?;
    let mut ids = Vec::new();
    for part in products.split(',') {
        let id = Uuid::try_parse(part.trim()).map_err(|_| field(&format!("{:?} is not a UUID", part.trim())))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.len() > MAX_PRODUCTS {
        return Err(field(&format!("at most {MAX_PRODUCTS} products at once")));
    }
    Ok(ids)
}

/// A product's market: one entry per size it is made in.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketView {
    product_id: Uuid,
    sizes: Vec<SizeView>,
}

impl MarketView {
    /// The view of `product`'s market.
    pub fn new(product: Uuid, sizes: Vec<SizeMarket>) -> Self {
        Self { product_id: product, sizes: sizes.into_iter().map(SizeView::from).collect() }
    }
}

/// One size's book.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SizeView {
    #[schema(example = 10.5)]
    size: f64,
    /// The lowest ask: "buy now" buys at this price (in currency units).
    lowest_ask: Option<f64>,
    /// The listing that is the lowest ask (the first listed at that price): "buy now" orders
    /// it (`POST /api/orders`).
    lowest_ask_id: Option<Uuid>,
    /// The highest bid: "sell now" sells at this price.
    highest_bid: Option<f64>,
    /// Asks on the book.
    asks: i64,
    /// Bids on the book.
    bids: i64,
    /// The last sale of this size.
    last_sale: Option<SaleView>,
}

impl From<SizeMarket> for SizeView {
    fn from(m: SizeMarket) -> Self {
        Self {
            size: m.size,
            lowest_ask: m.lowest_ask.map(units),
            lowest_ask_id: m.lowest_ask_id,
            highest_bid: m.highest_bid.map(units),
            asks: m.asks,
            bids: m.bids,
            last_sale: m.last_sale.map(|(price, sold_at)| SaleView { size: m.size, price: units(price), sold_at }),
        }
    }
}

/// A sale.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SaleView {
    #[schema(example = 10.5)]
    size: f64,
    /// The price it sold at, in currency units.
    #[schema(example = 240.0)]
    price: f64,
    sold_at: DateTime<Utc>,
}

impl From<Sale> for SaleView {
    fn from(sale: Sale) -> Self {
        Self { size: sale.size, price: units(sale.price_cents), sold_at: sale.sold_at }
    }
}

fn product_id(id: &str) -> Result<Uuid, MarketError> {
    Uuid::try_parse(id).map_err(|_| FieldError::new("id", "must be a UUID").into())
}

/// The product's market now, or 404 if the market has not heard of it. A product created
/// a moment ago may not have reached the market's replica yet: as for a bid, that waits
/// (bounded by `REPLICA_WAIT`) for it before answering 404.
async fn current(state: &AppState, product: Uuid) -> Result<(Arc<MarketView>, CacheSource), MarketError> {
    let read = || async move {
        match state.markets.market(&state.pool, product).await? {
            (Some(view), source) => Ok((view, source)),
            (None, _) => Err(MarketError::ProductNotFound),
        }
    };
    state.replica.after_arrival(product, read, |error| matches!(error, MarketError::ProductNotFound)).await
}

/// A product's market: per size, the lowest ask, the highest bid, the last sale and how
/// many asks and bids are on the book. Served from memory until the product's book changes
/// (docs/market.md, "Market data").
#[utoipa::path(
    get, path = "/api/products/{id}/market", tag = "market",
    params(("id" = Uuid, Path, description = "The product's id")),
    responses(
        (status = 200, description = "The product's market, size by size", body = MarketView,
            headers(("x-cache" = String, description = "`hit`, `miss` or `bypass`: whether the market was read for this request"))),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
pub(super) async fn market(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, MarketError> {
    let (view, source) = current(&state, product_id(&id)?).await?;
    Ok(([("x-cache", source.as_str())], Json(view)).into_response())
}

/// A product's sales, newest first, of one size or all.
#[utoipa::path(
    get, path = "/api/products/{id}/sales", tag = "market",
    params(("id" = Uuid, Path, description = "The product's id"), SalesParams),
    responses(
        (status = 200, description = "A page of sales", body = PageOf<SaleView>),
        (status = 400, description = "Invalid id, size, limit or cursor", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
pub(super) async fn sales(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<SalesParams>,
) -> Result<Json<PageOf<SaleView>>, MarketError> {
    let product = product_id(&id)?;
    let mut errors = Vec::new();
    let size = params.size.as_deref().map(|raw| {
        raw.trim()
            .parse::<f64>()
            .ok()
            .filter(|s| (1.0..=22.0).contains(s) && (s * 2.0).fract() == 0.0)
            .ok_or_else(|| FieldError::new("size", "must be between 1 and 22 in half steps (e.g. 9, 9.5, 10)"))
    });
    let size = match size.transpose() {
        Ok(size) => size,
        Err(error) => {
            errors.push(error);
            None
        }
    };
    let limit = page::limit(params.limit.as_deref()).unwrap_or_else(|error| {
        errors.push(error);
        DEFAULT_LIMIT
    });
    let before = match params.cursor.as_deref().map(decode_cursor) {
        None => None,
        Some(Some(cursor)) => Some(cursor),
        Some(None) => {
            errors.push(FieldError::new("cursor", "is not a cursor this endpoint returned"));
            None
        }
    };
    if !errors.is_empty() {
        return Err(MarketError::Invalid(errors));
    }
    let mut rows = store::sales(&state.pool, product, size, before, limit + 1).await?;
    let next_cursor = if rows.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        rows.last().map(|last| format!("{}.{}", last.sold_at.timestamp_micros(), last.order_id.simple()))
    } else {
        None
    };
    Ok(Json(PageOf { items: rows.into_iter().map(SaleView::from).collect(), next_cursor }))
}

/// `<microseconds>.<order id>` → the sale to continue after.
fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = cursor.split_once('.')?;
    Some((DateTime::from_timestamp_micros(micros.parse().ok()?)?, Uuid::try_parse(id).ok()?))
}

/// The product's market, live, as Server-Sent Events: a `market` event with the whole
/// market (as `GET /api/products/{id}/market` answers) at once, then again whenever it
/// changes (at most every `MARKET_STREAM_INTERVAL`, 100 ms), and a comment every 15 s to
/// keep the connection open.
#[utoipa::path(
    get, path = "/api/products/{id}/market/stream", tag = "market",
    params(("id" = Uuid, Path, description = "The product's id")),
    responses(
        (status = 200, description = "`text/event-stream` of `market` events, each a MarketView", body = MarketView, content_type = "text/event-stream"),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "This instance has as many live streams open as it serves", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
pub(super) async fn stream(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, MarketError> {
    let product = product_id(&id)?;
    let (first, _) = current(&state, product).await?;
    match state.markets.subscribe(state.pool.clone(), product, first) {
        // Proxies that buffer (nginx) pass each event on at once when told so.
        Some(sse) => Ok(([("x-accel-buffering", "no")], sse).into_response()),
        None => {
            Ok(Problem::unavailable("too many live market streams on this instance; retry shortly").into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sales_cursors_round_trip() {
        let at = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let id = Uuid::now_v7();
        let cursor = format!("{}.{}", at.timestamp_micros(), id.simple());
        assert_eq!(decode_cursor(&cursor), Some((at, id)));
        for bad in ["", "1", "x.y", "1.zz"] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
