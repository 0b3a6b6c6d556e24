//! `/api/bids`: place a bid on a product's book in a size, see yours, cancel one.

use anyhow::Context;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sneakerstop_auth::CurrentUser;
use sneakerstop_idempotency::IdempotencyKey;
use sneakerstop_problem::money::units;
use sneakerstop_problem::page::{Page, PageOf, PageParams};
use sneakerstop_problem::{ApiJson, ApiQuery, FieldError, Problem};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{
    Bid, BidStatus, Bidder, DEFAULT_EXPIRY_DAYS, MAX_BID_CENTS, MAX_EXPIRY_DAYS, MIN_BID_CENTS, NewBid, Product,
};
use crate::{AppState, MarketError, book, store};

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
    ApiJson(input): ApiJson<NewBidInput>,
) -> Result<Response, MarketError> {
    let new = NewBid::try_from(input).map_err(MarketError::Invalid)?;
    // A product created or a payment method saved a moment ago may not have reached the
    // market's replicas yet: wait for them (bounded by REPLICA_WAIT) before refusing. What
    // the refusals need is read before the book is locked, to hold the lock briefly (an own
    // ask listed meanwhile is never bought: matching skips own asks).
    let pool = &state.pool;
    let read = || async move {
        let mut conn = pool.acquire().await.context("acquire")?;
        store::bidder(&mut conn, new.product_id, new.size, user.id).await
    };
    let ready = state
        .replica
        .until(new.product_id, || async { Ok(read().await?.filter(|(_, bidder)| bidder.has_payment_method)) })
        .await?;
    let (product, mut bidder) = match ready {
        Some(found) => found,
        None => read().await?.ok_or(MarketError::ProductNotFound)?,
    };
    bidder.open_bids_allowed = state.max_open_bids;
    let (product_id, size) = (new.product_id, new.size);
    let placing = Placing { buyer: user.id, key, new, product, bidder };
    Ok(match state.books.request(&state.pool, product_id, size, placing).await? {
        Placed::Now(view, _, _) => {
            // Committed: the buyer's next look at the market shows it.
            state.markets.changed(product_id);
            (StatusCode::CREATED, Json(view)).into_response()
        }
        Placed::Before(answer) => answer,
    })
}

/// A bid to place, in its book's next batch.
struct Placing {
    buyer: Uuid,
    key: Option<IdempotencyKey>,
    new: NewBid,
    product: Product,
    bidder: Bidder,
}

impl book::BookRequest for Placing {
    type Answer = Placed;

    async fn on_book(&self, tx: &mut PgConnection) -> Result<Placed, MarketError> {
        place_on(tx, self.buyer, self.key.as_ref(), &self.new, &self.product, self.bidder).await
    }

    fn committed(answer: &Result<Placed, MarketError>) {
        if let Ok(Placed::Now(_, bid_id, status)) = answer {
            metrics::counter!("market_bids_placed_total").increment(1);
            tracing::info!(%bid_id, status = status.as_str(), "bid placed");
        }
    }
}

/// What placing a bid came to.
enum Placed {
    /// Placed now: its view, id and status.
    Now(serde_json::Value, Uuid, BidStatus),
    /// The Idempotency-Key's first request placed it: that request's answer.
    Before(Response),
}

/// Places one bid, on a transaction that holds its book's lock.
async fn place_on(
    tx: &mut PgConnection,
    buyer: Uuid,
    key: Option<&IdempotencyKey>,
    new: &NewBid,
    product: &Product,
    bidder: Bidder,
) -> Result<Placed, MarketError> {
    // Claimed, used and answered on the batch's transaction: a crash rolls the claim back
    // too. A retry waits for the book behind the first request, so it finds the first answer.
    let request = json!({"productId": new.product_id, "size": new.size, "priceCents": new.price_cents,
                         "expiresInDays": new.expires_in_days});
    let start =
        sneakerstop_idempotency::begin(tx, buyer, key, &request, sneakerstop_idempotency::WITHIN_TRANSACTION).await?;
    if let sneakerstop_idempotency::Start::Answer(answer) = start {
        return Ok(Placed::Before(answer));
    }
    // Counted again on the book's turn: what was read before it does not include the bids
    // this buyer sent at the same moment (a burst, or a script), and the limit is exact.
    let bidder = Bidder { open_bids: store::open_bids(tx, buyer, new.product_id, new.size).await?, ..bidder };
    let now = Utc::now().trunc_subsecs(6);
    let placed = match Bid::place(Uuid::now_v7(), buyer, new, product, bidder, now) {
        Ok(placed) => placed,
        Err(refusal) => {
            // Others' bids in the batch commit: the claim must not (a retry runs again).
            if let Some(key) = key {
                sneakerstop_idempotency::release(tx, buyer, key).await?;
            }
            return Err(refusal.into());
        }
    };
    store::insert_bid(tx, &placed).await?;
    let bid = match book::trade_bid(tx, &placed.bid, now).await? {
        Some(traded) => traded.bid,
        None => placed.bid,
    };
    let (bid_id, status) = (bid.id, bid.status);
    let view = serde_json::to_value(BidView::from(bid)).context("a bid view serializes")?;
    if let Some(key) = key {
        sneakerstop_idempotency::store(tx, buyer, key, StatusCode::CREATED.as_u16(), &view).await?;
    }
    Ok(Placed::Now(view, bid_id, status))
}

/// Your bids, newest first, whatever became of them.
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
    Path(id): Path<String>,
) -> Result<Json<BidView>, MarketError> {
    let id = parse_id(&id)?;
    let found =
        store::bid(&state.pool, id).await?.filter(|bid| bid.buyer_id == user.id).ok_or(MarketError::BidNotFound)?;
    let cancelling = Cancelling { id, buyer: user.id };
    let cancelled = state.books.request(&state.pool, found.product_id, found.size, cancelling).await?;
    state.markets.changed(found.product_id);
    Ok(Json(cancelled.into()))
}

/// A bid to cancel, in its book's next batch.
struct Cancelling {
    id: Uuid,
    buyer: Uuid,
}

impl book::BookRequest for Cancelling {
    type Answer = Bid;

    async fn on_book(&self, tx: &mut PgConnection) -> Result<Bid, MarketError> {
        // The book (locked by the batch) first, then the bid: the order every change to a
        // book takes its locks in.
        let bid = store::lock_bid(tx, self.id).await?.ok_or(MarketError::BidNotFound)?;
        let cancelled = bid.cancel(self.buyer, Utc::now().trunc_subsecs(6))?;
        store::save_bid(tx, &cancelled).await?;
        Ok(cancelled.bid)
    }

    fn committed(answer: &Result<Bid, MarketError>) {
        if answer.is_ok() {
            metrics::counter!("market_bids_cancelled_total").increment(1);
        }
    }
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
