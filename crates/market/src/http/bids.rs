//! `/api/bids`: place a bid on a product's book in a size, see yours, cancel one.

use anyhow::Context;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sneakerstop_auth::CurrentUser;
use sneakerstop_idempotency::IdempotencyKey;
use sneakerstop_problem::money::units;
use sneakerstop_problem::page::{Page, PageOf, PageParams};
use sneakerstop_problem::{ApiJson, ApiQuery, FieldError, Problem};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Bid, BidStatus, DEFAULT_EXPIRY_DAYS, MAX_BID_CENTS, MAX_EXPIRY_DAYS, MIN_BID_CENTS, NewBid};
use crate::engine::{Placed, Placing};
use crate::owners::Owner;
use crate::{AppState, MarketError, store};

pub(super) fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/api/bids", get(list).post(place)).route("/api/bids/{id}", get(get_one).delete(cancel))
}

/// A bid as a buyer places it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewBidInput {
    /// The product (see `/api/products`).
    #[schema(value_type = String, format = Uuid, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub product_id: Uuid,
    /// A US size the product is made in.
    #[schema(example = 10.5, minimum = 1, maximum = 22, multiple_of = 0.5)]
    pub size: f64,
    /// The most you pay, in currency units: at least 25, at most 100000, two decimals at most.
    #[schema(example = 240.0, minimum = 25, maximum = 100000, multiple_of = 0.01)]
    pub price: f64,
    /// Days the bid stays on the book unless it matches: 1 to 90 (default 30).
    #[schema(example = 30, minimum = 1, maximum = 90)]
    #[serde(default, deserialize_with = "sneakerstop_problem::whole_number")]
    pub expires_in_days: Option<i64>,
}

/// A bid as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BidView {
    id: Uuid,
    product_id: Uuid,
    #[schema(example = 10.5)]
    size: f64,
    /// The most you pay, in currency units.
    #[schema(example = 240.0)]
    price: f64,
    status: BidStatus,
    /// The match it is in or was filled by; the order that fills it has this id.
    match_id: Option<Uuid>,
    expires_at: DateTime<Utc>,
    /// 1 when placed, +1 per change.
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Bid> for BidView {
    fn from(bid: Bid) -> Self {
        Self {
            id: bid.id,
            product_id: bid.product_id,
            size: bid.size,
            price: units(bid.price_cents),
            status: bid.status,
            match_id: bid.match_id,
            expires_at: bid.expires_at,
            version: bid.version,
            created_at: bid.created_at,
            updated_at: bid.updated_at,
        }
    }
}

impl TryFrom<NewBidInput> for NewBid {
    type Error = Vec<FieldError>;

    fn try_from(input: NewBidInput) -> Result<Self, Self::Error> {
        let mut errors = Vec::new();
        if !(1.0..=22.0).contains(&input.size) || (input.size * 2.0).fract() != 0.0 {
            errors.push(FieldError::new("size", "must be between 1 and 22 in half steps (e.g. 9, 9.5, 10)"));
        }
        let cents = input.price * 100.0;
        let price_cents = if !cents.is_finite() || (cents - cents.round()).abs() > 1e-6 {
            errors.push(FieldError::new("price", "must be a number with at most 2 decimal places"));
            0
        } else {
            #[allow(clippy::cast_possible_truncation, reason = "finite, and bounded just below")]
            let cents = cents.round().clamp(0.0, (MAX_BID_CENTS + 1) as f64) as i64;
            if !(MIN_BID_CENTS..=MAX_BID_CENTS).contains(&cents) {
                errors.push(FieldError::new(
                    "price",
                    format!("must be at least {} and at most {}", units(MIN_BID_CENTS), units(MAX_BID_CENTS)),
                ));
            }
            cents
        };
        let expires_in_days = input.expires_in_days.unwrap_or(DEFAULT_EXPIRY_DAYS);
        if !(1..=MAX_EXPIRY_DAYS).contains(&expires_in_days) {
            errors.push(FieldError::new("expiresInDays", format!("must be from 1 to {MAX_EXPIRY_DAYS}")));
        }
        if errors.is_empty() {
            Ok(Self { product_id: input.product_id, size: input.size, price_cents, expires_in_days })
        } else {
            Err(errors)
        }
    }
}

/// Place a bid: the most you pay for one pair of a product in a size. If an ask on the
/// book is at or below it, you buy the lowest (earliest listed among equals) at once, at
/// the ask's price: the bid answers `matched`, an order with the match's id is placed for
/// you and charged to your saved payment method. Otherwise it rests on the book until an
/// ask meets it, you cancel it, or it expires. `bid.placed` is published. Send an
/// `Idempotency-Key` so that a retry (after a timeout, a double click) cannot place a
/// second bid — and buy a second pair.
#[utoipa::path(
    post, path = "/api/bids", tag = "market",
    request_body = NewBidInput,
    params(sneakerstop_idempotency::IdempotencyKeyHeader),
    responses(
        (status = 201, description = "Placed: `open` on the book, or `matched` at once", body = BidView),
        (status = 400, description = "Malformed body or invalid field (a price below 25, a size not in half steps)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No product has the `productId`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No saved payment method (`payment-method-required`), as many open bids of yours on this size as one buyer may have, 25 unless set otherwise (`too-many-bids`), it would buy your own ask (`own-ask`), or a request with the same Idempotency-Key is still running", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A size the product is not made in, or the Idempotency-Key was used with another body", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(buyer_id = %user.id))]
pub(super) async fn place(
    State(state): State<AppState>,
    user: CurrentUser,
    key: Option<IdempotencyKey>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<NewBidInput>,
) -> Result<Response, MarketError> {
    let new = NewBid::try_from(input).map_err(MarketError::Invalid)?;
    let product_id = new.product_id;
    if let Some(address) = elsewhere(&state, product_id, &headers)? {
        let body = json!({"productId": new.product_id, "size": new.size, "price": units(new.price_cents),
                          "expiresInDays": new.expires_in_days});
        return forward(&state, &address, Method::POST, "/api/bids", &headers, Some(body)).await;
    }
    // A product created or a payment method saved a moment ago may not have reached the
    // market's replicas yet: wait for them (bounded by REPLICA_WAIT) before refusing.
    let pool = &state.pool;
    let read = || async move {
        let mut conn = pool.acquire().await.context("acquire")?;
        store::bidder(&mut conn, product_id, user.id).await
    };
    // Woken by either: the product's row or the buyer's card.
    let ready = state
        .replica
        .until(&[product_id, user.id], || async { Ok(read().await?.filter(|(_, has_method)| *has_method)) })
        .await?;
    let (product, has_payment_method) = match ready {
        Some(found) => found,
        None => read().await?.ok_or(MarketError::ProductNotFound)?,
    };
    let placing = Placing { buyer: user.id, key, new, product, has_payment_method };
    Ok(match state.engine.place(placing).await? {
        Placed::Now(view, _, _) => {
            // Committed: the buyer's next look at the market shows it.
            state.markets.changed(product_id);
            (StatusCode::CREATED, Json(view)).into_response()
        }
        Placed::Before(answer) => answer,
    })
}

/// Marks a request one instance sent on to another: it is never sent on again.
const FORWARDED: &str = "x-sneakerstop-forwarded";

/// Where `product`'s books are if not here: the owner's address. A request sent on once
/// that finds the book moved again is answered 503 (retry), not sent on a second time.
fn elsewhere(state: &AppState, product: Uuid, headers: &HeaderMap) -> Result<Option<String>, MarketError> {
    match state.engine.owner(product) {
        Owner::Here(_) => Ok(None),
        Owner::There(address) if !headers.contains_key(FORWARDED) => Ok(Some(address)),
        Owner::There(_) | Owner::Nobody => Err(MarketError::Moved),
    }
}

/// Sends a request on to the instance that owns the book (with the caller's credentials,
/// key and trace context) and its answer back as it is.
async fn forward(
    state: &AppState,
    address: &str,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Option<serde_json::Value>,
) -> Result<Response, MarketError> {
    metrics::counter!("market_requests_forwarded_total").increment(1);
    let mut request = state.forward.request(method, format!("{address}{path}")).header(FORWARDED, "1");
    for name in ["cookie", "authorization", "idempotency-key", "traceparent", "tracestate", "x-request-id"] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let unavailable = |_| MarketError::Unavailable("the instance that owns the book did not answer; retry");
    let answer = request.send().await.map_err(unavailable)?;
    let status = answer.status();
    let mut response = Response::builder().status(status.as_u16());
    for name in ["content-type", "retry-after"] {
        if let Some(value) = answer.headers().get(name) {
            response = response.header(name, value.as_bytes());
        }
    }
    let bytes = answer.bytes().await.map_err(unavailable)?;
    response
        .body(axum::body::Body::from(bytes))
        .map_err(|error| MarketError::Internal(anyhow::anyhow!("an answer sent on: {error}")))
}

#[utoipa::path(
    get, path = "/api/bids", tag = "market",
    params(PageParams),
    responses(
        (status = 200, description = "A page of your bids", body = PageOf<BidView>),
        (status = 400, description = "Invalid limit or cursor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<PageOf<BidView>>, MarketError> {
    let page = Page::try_from(params).map_err(MarketError::Invalid)?;
    let rows = store::bids_of(&state.pool, user.id, &page).await?;
    Ok(Json(page.answer(rows, |bid| bid.id, BidView::from)))
}

/// One of your bids: whether it is still open, matched, filled, and if not, why
/// (`declined`: your saved card was declined when it matched).
#[utoipa::path(
    get, path = "/api/bids/{id}", tag = "market",
    params(("id" = Uuid, Path, description = "The bid's id")),
    responses(
        (status = 200, description = "The bid", body = BidView),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No bid of yours has this id", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub(super) async fn get_one(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<BidView>, MarketError> {
    let id = parse_id(&id)?;
    let bid =
        store::bid(&state.pool, id).await?.filter(|bid| bid.buyer_id == user.id).ok_or(MarketError::BidNotFound)?;
    Ok(Json(bid.into()))
}

/// Cancel your open bid: it leaves the book at once (`bid.updated`). A matched bid cannot
/// be cancelled (its order is being paid); cancel that order instead.
#[utoipa::path(
    delete, path = "/api/bids/{id}", tag = "market",
    params(("id" = Uuid, Path, description = "The bid's id")),
    responses(
        (status = 200, description = "Cancelled", body = BidView),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No bid of yours has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The bid is no longer open (matched, filled, expired, ...)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(bid_id = %id, buyer_id = %user.id))]
pub(super) async fn cancel(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, MarketError> {
    let id = parse_id(&id)?;
    let found =
        store::bid(&state.pool, id).await?.filter(|bid| bid.buyer_id == user.id).ok_or(MarketError::BidNotFound)?;
    if let Some(address) = elsewhere(&state, found.product_id, &headers)? {
        return forward(&state, &address, Method::DELETE, &format!("/api/bids/{id}"), &headers, None).await;
    }
    let cancelled = state.engine.cancel(id, user.id, found.product_id, found.size).await?;
    state.markets.changed(found.product_id);
    Ok(Json(BidView::from(cancelled)).into_response())
}

fn parse_id(id: &str) -> Result<Uuid, MarketError> {
    Uuid::try_parse(id).map_err(|_| FieldError::new("id", "must be a UUID").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(price: f64, size: f64, days: Option<i64>) -> NewBidInput {
        NewBidInput { product_id: Uuid::now_v7(), size, price, expires_in_days: days }
    }

    #[test]
    fn bids_are_validated_field_by_field() {
        let ok = NewBid::try_from(input(240.5, 10.5, None)).unwrap();
        assert_eq!((ok.price_cents, ok.expires_in_days), (24_050, 30));
        let errors = NewBid::try_from(input(24.99, 10.25, Some(91))).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["size", "price", "expiresInDays"]);
        assert!(errors[1].reason.contains("at least 25"), "{}", errors[1].reason);
        for price in [f64::NAN, 100.001, 1e12] {
            assert_eq!(NewBid::try_from(input(price, 10.0, None)).unwrap_err()[0].field, "price", "{price}");
        }
    }
}
