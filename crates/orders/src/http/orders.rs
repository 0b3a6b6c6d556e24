//! `/api/orders`: reserve a pair, see your orders, cancel one.

use anyhow::Context;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sneakerstop_auth::CurrentUser;
use sneakerstop_events::orders::CancelReason;
use sneakerstop_idempotency::IdempotencyKey;
use sneakerstop_problem::page::{Page, PageOf, PageParams};
use sneakerstop_problem::{ApiJson, ApiQuery, FieldError, Problem};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Order, OrderStatus};
use crate::store::{self, InsertError};
use crate::{AppState, OrdersError};

pub(super) fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/orders", get(list).post(create))
        .route("/api/orders/{id}", get(get_one).delete(cancel))
}

/// What to order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewOrder {
    /// The listing to reserve.
    pub sneaker_id: Uuid,
}

/// An order as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    id: Uuid,
    sneaker_id: Uuid,
    buyer_id: Uuid,
    seller_id: Uuid,
    /// The price at ordering time, in currency units.
    #[schema(example = 250.0)]
    price: f64,
    status: OrderStatus,
    /// `buyer` or `expired` when cancelled; otherwise null.
    #[schema(example = json!(null))]
    cancel_reason: Option<String>,
    /// The payment that completed it, when complete.
    payment_id: Option<Uuid>,
    /// The reservation lapses at this time unless paid.
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// 1 when created, +1 per change.
    version: i64,
}

impl From<Order> for OrderView {
    fn from(row: Order) -> Self {
        let price = sneakerstop_problem::money::units(row.price_cents);
        Self {
            status: row.status,
            id: row.id,
            sneaker_id: row.sneaker_id,
            buyer_id: row.buyer_id,
            seller_id: row.seller_id,
            price,
            cancel_reason: row.cancel_reason.map(|reason| reason.as_str().to_owned()),
            payment_id: row.payment_id,
            expires_at: row.expires_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        }
    }
}

/// A page of orders.
pub type OrderPage = PageOf<OrderView>;

fn parse_id(id: &str) -> Result<Uuid, OrdersError> {
    Uuid::try_parse(id).map_err(|_| FieldError::new("id", "must be a UUID").into())
}

fn view_json(row: Order) -> serde_json::Value {
    serde_json::to_value(OrderView::from(row)).unwrap_or_else(|e| unreachable!("an order view serializes: {e}"))
}

/// Reserve a pair.
#[utoipa::path(
    post, path = "/api/orders", tag = "orders",
    request_body = NewOrder,
    params(sneakerstop_idempotency::IdempotencyKeyHeader),
    responses(
        (status = 201, description = "Reserved until `expiresAt`; `order.created` is published", body = OrderView),
        (status = 400, description = "Malformed body or sneakerId", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sneaker (after waiting up to REPLICA_WAIT for a listing made a moment ago to reach orders)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Sold, withdrawn by its seller (`listing-withdrawn`), an ask past its time, held by another order, your own listing, or you already hold the most unpaid reservations one buyer may (`ORDER_MAX_UNPAID_PER_BUYER`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub(super) async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    key: Option<IdempotencyKey>,
    ApiJson(body): ApiJson<NewOrder>,
) -> Result<Response, OrdersError> {
    // A listing made a moment ago may not have reached this replica yet: wait (bounded) for
    // it to arrive, then place the order as if it had been there.
    let placed = state
        .replica
        .after_arrival(
            body.sneaker_id,
            || place(&state, &user, key.as_ref(), &body),
            |error| matches!(error, OrdersError::SneakerNotFound),
        )
        .await;
    // At the cap on unpaid holds: one of them may be paid, its `payment.succeeded` not
    // applied here yet (a consumer recovering from a crash). Refuse only on what payments
    // had said by the time this request came: once orders has heard all of it, try again.
    match (placed, &state.heard) {
        (Err(OrdersError::TooManyHolds { .. }), Some((heard, wait)))
            if heard.caught_up(sneakerstop_events::topics::PAYMENTS, *wait).await =>
        {
            place(&state, &user, key.as_ref(), &body).await
        }
        (placed, _) => placed,
    }
}

/// One attempt at placing the order, in one transaction.
#[tracing::instrument(skip_all, fields(sneaker_id = %body.sneaker_id, buyer_id = %user.id))]
async fn place(
    state: &AppState,
    user: &CurrentUser,
    key: Option<&IdempotencyKey>,
    body: &NewOrder,
) -> Result<Response, OrdersError> {
    // Without an Idempotency-Key, the listing first, before the transaction: a listing this
    // replica has not heard of yet (an order placed the moment the pair is listed) costs one
    // read, not a transaction begun and rolled back, before the wait for it. It is the same
    // read as the transaction's first statement would be: READ COMMITTED gives each statement
    // its own snapshot, this read locks nothing, and the pair is guarded by the order's unique
    // hold, not by it. With a key, the key is claimed first, so that a replay is answered as
    // the first request was (or refused as a reuse) whatever the replica holds.
    let mut conn = state.pool.acquire().await.context("acquire")?;
    let read_first = match key {
        None => Some(store::find_sneaker(&mut conn, body.sneaker_id).await?.ok_or(OrdersError::SneakerNotFound)?),
        Some(_) => None,
    };
    let _transaction = sneakerstop_db::transaction_span("placing an order");
    let mut tx = sqlx::Connection::begin(&mut *conn).await.context("begin placing an order")?;
    let request = json!({"sneakerId": body.sneaker_id});
    // Claimed, used and answered in this one transaction: a crash rolls the claim back too.
    let start =
        sneakerstop_idempotency::begin(&mut tx, user.id, key, &request, sneakerstop_idempotency::WITHIN_TRANSACTION)
            .await?;
    if let sneakerstop_idempotency::Start::Answer(answer) = start {
        return Ok(answer);
    }
    let listing = match read_first {
        Some(listing) => listing,
        None => store::find_sneaker(&mut tx, body.sneaker_id).await?.ok_or(OrdersError::SneakerNotFound)?,
    };
    let ttl = chrono::Duration::from_std(state.reservation_ttl).context("ORDER_RESERVATION_TTL out of range")?;
    let placed = Order::place(Uuid::now_v7(), user.id, &listing, Utc::now(), ttl)?;
    if !store::take_hold(&mut tx, user.id, state.max_holds).await? {
        return Err(OrdersError::TooManyHolds { cap: state.max_holds });
    }
    store::insert(&mut tx, &placed).await.map_err(|e| match e {
        InsertError::PairHeld => OrdersError::Reserved,
        InsertError::Other(e) => OrdersError::Internal(e),
    })?;
    let order_id = placed.order.id;
    let view = view_json(placed.order);
    if let Some(key) = key {
        sneakerstop_idempotency::store(&mut tx, user.id, key, StatusCode::CREATED.as_u16(), &view).await?;
    }
    tx.commit().await.context("commit the order")?;
    metrics::counter!("orders_created_total").increment(1);
    tracing::info!(%order_id, sneaker_id = %body.sneaker_id, buyer_id = %user.id, "order created");
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Your orders, newest first.
#[utoipa::path(
    get, path = "/api/orders", tag = "orders",
    params(PageParams),
    responses(
        (status = 200, description = "A page of your orders", body = PageOf<OrderView>),
        (status = 400, description = "Invalid limit or cursor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<OrderPage>, OrdersError> {
    let page = Page::try_from(params).map_err(OrdersError::Invalid)?;
    let rows = store::list_for_buyer(&state.pool, user.id, &page).await?;
    Ok(Json(page.answer(rows, |row| row.id, OrderView::from)))
}

/// One of your orders.
#[utoipa::path(
    get, path = "/api/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order among yours", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub(super) async fn get_one(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, OrdersError> {
    let id = parse_id(&id)?;
    let mut conn = state.pool.acquire().await.context("acquire a connection")?;
    let row = store::find_for_buyer(&mut conn, id, user.id, false).await?.ok_or(OrdersError::OrderNotFound)?;
    Ok(Json(OrderView::from(row)))
}

/// Cancel your unpaid order; its pair is released.
#[utoipa::path(
    delete, path = "/api/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "Cancelled (`cancelReason: buyer`), or already cancelled; `order.cancelled` is published when it changed", body = OrderView),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order among yours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order is complete (paid)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(order_id = %id, buyer_id = %user.id))]
pub(super) async fn cancel(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, OrdersError> {
    let id = parse_id(&id)?;
    let _transaction = sneakerstop_db::transaction_span("cancelling an order");
    let mut tx = state.pool.begin().await.context("begin cancelling an order")?;
    let order = store::find_for_buyer(&mut tx, id, user.id, true).await?.ok_or(OrdersError::OrderNotFound)?;
    if order.status == OrderStatus::Cancelled {
        // DELETE is idempotent: cancelling a cancelled order changes nothing.
        return Ok(Json(OrderView::from(order)));
    }
    let cancelled = order.cancel(CancelReason::Buyer, Utc::now())?;
    store::save(&mut tx, &cancelled).await?;
    tx.commit().await.context("commit the cancellation")?;
    metrics::counter!("orders_cancelled_total", "reason" => "buyer").increment(1);
    tracing::info!(order_id = %cancelled.order.id, "order cancelled by its buyer");
    Ok(Json(OrderView::from(cancelled.order)))
}
