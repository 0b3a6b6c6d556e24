//! `/api/payments`: pay for an order, see your payments.
//!
//! Paying is three steps, so that no path charges without a stored payment and no payment
//! is stored that was not charged:
//! 1. one transaction checks the order (replica), claims the `Idempotency-Key` and writes a
//!    `pending` attempt — the partial unique index allows one live payment per order, so a
//!    concurrent second request stops here;
//! 2. the provider is called with an idempotency key derived from the order and attempt;
//! 3. one transaction records the outcome: `succeeded` with `payment.succeeded` (or, if the
//!    order was cancelled meanwhile, `refund_pending`), `declined`, or — when the provider
//!    gave no outcome — the attempt is removed so a retry reuses its key.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sneakerstop_auth::CurrentUser;
use sneakerstop_idempotency::IdempotencyKey;
use sneakerstop_problem::page::{Page, PageOf, PageParams};
use sneakerstop_problem::{ApiJson, ApiQuery, FieldError, Problem};
use tracing::Instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use anyhow::Context;
use sneakerstop_idempotency::Start;

use crate::domain::{Payment, PaymentStatus};
use crate::provider::{ChargeRequest, ProviderError, provider_span};
use crate::settle::{self, Settled, Unknown};
use crate::store;
use crate::{AppState, PaymentsError};

pub(super) fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/api/payments", get(list).post(create))
}

/// What to pay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewPayment {
    /// The order to pay.
    pub order_id: Uuid,
    /// A card token from the provider (`tok_visa`, ...).
    #[schema(example = "tok_visa", min_length = 1, max_length = 255, pattern = "[^\\s]")]
    pub token: String,
}

/// A payment as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    id: Uuid,
    order_id: Uuid,
    /// Amount in currency units.
    #[schema(example = 250.0)]
    amount: f64,
    /// `succeeded`, `declined`, `refund_pending` or `refunded` (an attempt still `pending`
    /// is never shown).
    status: PaymentStatus,
    /// Why it was declined.
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<Payment> for PaymentView {
    fn from(row: Payment) -> Self {
        let amount = sneakerstop_problem::money::units(row.amount_cents);
        Self {
            id: row.id,
            order_id: row.order_id,
            amount,
            status: row.status,
            failure_reason: row.failure_reason,
            created_at: row.created_at,
        }
    }
}

/// A page of payments.
pub type PaymentPage = PageOf<PaymentView>;

/// Pay for your order.
#[utoipa::path(
    post, path = "/api/payments", tag = "payments",
    request_body = NewPayment,
    params(sneakerstop_idempotency::IdempotencyKeyHeader),
    responses(
        (status = 201, description = "Charged; `payment.succeeded` is published and the order completes", body = PaymentView),
        (status = 400, description = "Malformed body, orderId or token", body = Problem, content_type = "application/problem+json"),
        (status = 402, description = "The card was declined (the provider's reason); nothing is recorded as paid", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not your order", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (after waiting up to REPLICA_WAIT for an order placed a moment ago to reach payments)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Order cancelled, its reservation lapsed unpaid, already paid, or a payment for it is in progress", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A well-formed `token` the provider does not know", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The provider is unavailable; safe to retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub(super) async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    key: Option<IdempotencyKey>,
    ApiJson(body): ApiJson<NewPayment>,
) -> Result<Response, PaymentsError> {
    // An order placed a moment ago may not have reached this replica yet: wait (bounded)
    // for it, then pay as if it had been there.
    state
        .replica
        .after_arrival(
            body.order_id,
            || pay(&state, &user, key.as_ref(), &body),
            |error| matches!(error, PaymentsError::OrderNotFound),
        )
        .await
}

/// One attempt at paying, in the three steps above.
#[tracing::instrument(skip_all, fields(order_id = %body.order_id, buyer_id = %user.id))]
async fn pay(
    state: &AppState,
    user: &CurrentUser,
    key: Option<&IdempotencyKey>,
    body: &NewPayment,
) -> Result<Response, PaymentsError> {
    let token = body.token.trim().to_owned();
    if token.is_empty() || token.len() > 255 {
        return Err(FieldError::new("token", "must be a card token of 1 to 255 characters, e.g. tok_visa").into());
    }
    sneakerstop_problem::storable_text("token", &token)?;

    // 1. Claim the key, check the order, write the pending attempt.
    let _transaction = sneakerstop_db::transaction_span("paying");
    let mut tx = state.pool.begin().await.context("begin paying")?;
    let request = json!({"orderId": body.order_id, "token": token});
    let start = sneakerstop_idempotency::begin(&mut tx, user.id, key, &request, state.claim_lease).await?;
    let recovered = match start {
        Start::Answer(answer) => return Ok(answer),
        Start::Recovered => true,
        Start::New => false,
    };
    // Locked: the lapse task closes an order's payment window under the same lock, so an
    // attempt either starts before the window closes (and is announced before any lapse) or
    // is refused.
    let order = store::find_order(&mut tx, body.order_id, true).await?.ok_or(PaymentsError::OrderNotFound)?;
    order.check_buyer(user.id)?;
    if recovered {
        // This key's first request committed its attempt and died before answering: answer
        // with what became of that attempt (the recovery task settles it once it is stale).
        if let Some(previous) = store::latest_attempt(&mut tx, order.id).await? {
            let view = answer_for(previous)?;
            if let Some(key) = key {
                sneakerstop_idempotency::store(&mut tx, user.id, key, StatusCode::CREATED.as_u16(), &view).await?;
            }
            tx.commit().await.context("commit recovered answer")?;
            return Ok((StatusCode::CREATED, Json(view)).into_response());
        }
    }
    let attempt = store::next_attempt(&mut tx, order.id).await?;
    let payment = Payment::begin(Uuid::now_v7(), user.id, &order, attempt, Utc::now())?;
    if !store::insert(&mut tx, &payment, &token).await? {
        // A live payment of the order exists: say whether it is done or under way.
        drop(tx);
        let mut conn = state.pool.acquire().await.context("acquire a connection")?;
        let live = store::live_payment(&mut conn, order.id).await?;
        return Err(match live.map(|p| p.status) {
            Some(status) if status != PaymentStatus::Pending => PaymentsError::AlreadyPaid,
            _ => PaymentsError::InProgress,
        });
    }
    tx.commit().await.context("commit pending attempt")?;

    // 2. Charge. Same order and attempt, same key: a retry never charges twice.
    let charge = ChargeRequest {
        amount_cents: order.amount_cents,
        currency: state.currency.clone(),
        token,
        idempotency_key: charge_key(order.id, payment.attempt),
        order_id: order.id,
        off_session: None,
    };
    let outcome = state.provider.charge(&charge).instrument(provider_span("charge")).await;

    // 3. Record the outcome.
    let _transaction = sneakerstop_db::transaction_span("recording the outcome");
    let mut tx = state.pool.begin().await.context("begin recording the outcome")?;
    let result = match settle::record(&mut tx, &payment, outcome, Unknown::Abandon, false).await? {
        Settled::Charged(row) => answer_for(row),
        Settled::Declined(reason) => Err(PaymentsError::Declined(reason)),
        Settled::Unresolved(ProviderError::Unavailable(reason)) => Err(PaymentsError::ProviderUnavailable(reason)),
        Settled::Unresolved(ProviderError::Invalid(reason) | ProviderError::Declined(reason)) => {
            Err(PaymentsError::Unprocessable(vec![FieldError::new("token", reason)]))
        }
        // Taken too long: the recovery task recorded this attempt first.
        Settled::AlreadySettled => match store::latest_attempt(&mut tx, order.id).await? {
            Some(row) => answer_for(row),
            None => Err(PaymentsError::InProgress),
        },
    };
    match (&result, key) {
        (Ok(view), Some(key)) => {
            sneakerstop_idempotency::store(&mut tx, user.id, key, StatusCode::CREATED.as_u16(), view).await?;
        }
        // Only successes are remembered; a failed request may be retried with its key.
        (Err(_), Some(key)) => sneakerstop_idempotency::release(&mut tx, user.id, key).await?,
        (_, None) => {}
    }
    tx.commit().await.context("commit outcome")?;
    result.map(|view| (StatusCode::CREATED, Json(view)).into_response())
}

/// The provider idempotency key of an order's attempt: the same attempt always charges
/// under the same key, whoever asks (the request, or the recovery task after a crash).
pub fn charge_key(order_id: Uuid, attempt: i32) -> String {
    format!("sneakerstop-order-{order_id}-attempt-{attempt}")
}

/// The answer a settled attempt gives its request: the payment (201), or why not.
fn answer_for(row: Payment) -> Result<serde_json::Value, PaymentsError> {
    match row.status {
        PaymentStatus::Succeeded => Ok(serde_json::to_value(PaymentView::from(row)).context("serialize payment")?),
        PaymentStatus::RefundPending | PaymentStatus::Refunded => {
            Err(PaymentsError::OrderCancelled { refunding: true })
        }
        PaymentStatus::Declined => Err(PaymentsError::Declined(row.failure_reason.unwrap_or_default())),
        PaymentStatus::Pending => Err(PaymentsError::InProgress),
    }
}

/// Your payments, newest first (declined attempts included, in-flight ones not).
#[utoipa::path(
    get, path = "/api/payments", tag = "payments",
    params(PageParams),
    responses(
        (status = 200, description = "A page of your payments", body = PageOf<PaymentView>),
        (status = 400, description = "Invalid limit or cursor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<PaymentPage>, PaymentsError> {
    let page = Page::try_from(params).map_err(PaymentsError::Invalid)?;
    let rows = store::list_for_buyer(&state.pool, user.id, &page).await?;
    Ok(Json(page.answer(rows, |row| row.id, PaymentView::from)))
}
