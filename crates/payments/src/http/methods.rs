//! `/api/payment-methods`: the card a buyer saves so that a bid can be charged when it
//! matches, without them there.

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sneakerstop_auth::CurrentUser;
use sneakerstop_problem::{ApiJson, FieldError, Problem};
use tracing::Instrument;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::provider::{ProviderError, SaveRequest, provider_span};
use crate::store::{self, SavedMethodRow};
use crate::{AppState, PaymentsError};

pub(super) fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/api/payment-methods", get(list).post(save))
}

/// A payment method to save.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewPaymentMethod {
    /// A PaymentMethod id from the provider (Stripe's `pm_...`; with the simulated provider
    /// `pm_card_visa`, or `pm_card_chargeDeclined` whose charges are declined).
    #[schema(example = "pm_card_visa", pattern = "^pm_[A-Za-z0-9_]{1,250}$")]
    pub payment_method: String,
}

/// A saved payment method.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentMethodView {
    id: Uuid,
    /// The provider's id of the method.
    #[schema(example = "pm_card_visa")]
    payment_method: String,
    created_at: DateTime<Utc>,
}

impl From<SavedMethodRow> for PaymentMethodView {
    fn from(row: SavedMethodRow) -> Self {
        Self { id: row.id, payment_method: row.method_ref, created_at: row.created_at }
    }
}

/// Your saved payment methods.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentMethods {
    /// The current method, if you saved one (a buyer has at most one).
    items: Vec<PaymentMethodView>,
}

/// Save a payment method for charges made without you (your bids, when they match). It
/// replaces the one you had; `payment_method.saved` is published.
#[utoipa::path(
    post, path = "/api/payment-methods", tag = "payments",
    request_body = NewPaymentMethod,
    responses(
        (status = 201, description = "Saved; it replaces your previous one", body = PaymentMethodView),
        (status = 400, description = "Malformed body, or `paymentMethod` not of the form pm_…", body = Problem, content_type = "application/problem+json"),
        (status = 402, description = "The provider would not save the card for charges without you", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A well-formed `paymentMethod` the provider does not know", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The provider is unavailable; safe to retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(buyer_id = %user.id))]
pub(super) async fn save(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewPaymentMethod>,
) -> Result<(StatusCode, Json<PaymentMethodView>), PaymentsError> {
    let method = body.payment_method.trim();
    let valid = method.strip_prefix("pm_").is_some_and(|rest| {
        (1..=250).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    if !valid {
        return Err(FieldError::new("paymentMethod", "must be a PaymentMethod id such as pm_card_visa").into());
    }
    let customer = {
        let mut conn = state.pool.acquire().await.context("acquire")?;
        store::customer(&mut conn, user.id).await?
    };
    // The provider first: a method it refuses is never stored; one it saved but we failed to
    // record is saved again by the retry (the same request and key at the provider).
    let request = SaveRequest { buyer_id: user.id, payment_method: method.to_owned(), customer };
    let saved = match state.provider.save_method(&request).instrument(provider_span("save method")).await {
        Ok(saved) => saved,
        Err(ProviderError::Invalid(reason)) => {
            return Err(PaymentsError::Unprocessable(vec![FieldError::new("paymentMethod", reason)]));
        }
        Err(ProviderError::Declined(reason)) => return Err(PaymentsError::Declined(reason)),
        Err(ProviderError::Unavailable(reason)) => return Err(PaymentsError::ProviderUnavailable(reason)),
    };
    let row = SavedMethodRow {
        id: Uuid::now_v7(),
        method_ref: saved.method_ref,
        customer_ref: saved.customer,
        created_at: Utc::now().trunc_subsecs(6),
    };
    let _transaction = sneakerstop_db::transaction_span("saving a payment method");
    let mut tx = state.pool.begin().await.context("begin")?;
    store::save_method(&mut tx, user.id, &row).await?;
    tx.commit().await.context("commit saved method")?;
    tracing::info!(method_id = %row.id, "payment method saved");
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// Your saved payment method, if any.
#[utoipa::path(
    get, path = "/api/payment-methods", tag = "payments",
    responses((status = 200, description = "Your current method (none or one)", body = PaymentMethods)),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<PaymentMethods>, PaymentsError> {
    let mut conn = state.pool.acquire().await.context("acquire")?;
    let current = store::current_method(&mut conn, user.id).await?;
    Ok(Json(PaymentMethods { items: current.into_iter().map(PaymentMethodView::from).collect() }))
}
