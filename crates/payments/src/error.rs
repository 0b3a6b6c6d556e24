//! The payments service's errors and how each becomes an HTTP problem.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sneakerstop_problem::{FieldError, Problem};

/// Everything a payments endpoint can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    /// Input failed validation.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// Well-formed input the provider cannot use (a test token or method it does not know).
    #[error("unprocessable input")]
    Unprocessable(Vec<FieldError>),
    /// The order is unknown to payments.
    #[error("no such order")]
    OrderNotFound,
    /// The order belongs to someone else.
    #[error("not your order")]
    NotYourOrder,
    /// The order was cancelled (before or while paying).
    #[error("order cancelled")]
    OrderCancelled {
        /// Whether a charge went through and is being refunded.
        refunding: bool,
    },
    /// The order is already paid.
    #[error("already paid")]
    AlreadyPaid,
    /// The order's reservation lapsed before this payment started.
    #[error("reservation lapsed")]
    Lapsed,
    /// Another payment for this order is being processed.
    #[error("payment in progress")]
    InProgress,
    /// The provider declined the card.
    #[error("declined: {0}")]
    Declined(String),
    /// The provider is unavailable; nothing was recorded, retry is safe.
    #[error("provider unavailable: {0}")]
    ProviderUnavailable(String),
    /// The Idempotency-Key cannot be used for this request.
    #[error(transparent)]
    Key(#[from] sneakerstop_idempotency::KeyError),
    /// Anything else.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::domain::Refusal> for PaymentsError {
    fn from(refusal: crate::domain::Refusal) -> Self {
        use crate::domain::Refusal;
        match refusal {
            Refusal::NotYourOrder => Self::NotYourOrder,
            Refusal::OrderCancelled => Self::OrderCancelled { refunding: false },
            Refusal::AlreadyPaid => Self::AlreadyPaid,
            Refusal::Lapsed => Self::Lapsed,
            Refusal::Transition { .. } | Refusal::NotDue(_) | Refusal::NoDeadline => {
                Self::Internal(anyhow::Error::new(refusal).context("payment state"))
            }
        }
    }
}

impl From<FieldError> for PaymentsError {
    fn from(error: FieldError) -> Self {
        Self::Invalid(vec![error])
    }
}

impl IntoResponse for PaymentsError {
    fn into_response(self) -> Response {
        match self {
            Self::Invalid(errors) => Problem::validation(errors),
            Self::Unprocessable(errors) => Problem::unprocessable(errors),
            Self::OrderNotFound => Problem::not_found("no order with this id"),
            Self::NotYourOrder => Problem::forbidden("this order belongs to another buyer"),
            Self::OrderCancelled { refunding: false } => {
                Problem::conflict("order-cancelled", "the order was cancelled; it can no longer be paid")
            }
            Self::OrderCancelled { refunding: true } => Problem::conflict(
                "order-cancelled",
                "the order was cancelled while it was being paid; the charge is being refunded",
            ),
            Self::AlreadyPaid => Problem::conflict("order-paid", "this order is already paid"),
            Self::Lapsed => Problem::conflict(
                "reservation-lapsed",
                "the order's reservation lapsed before it was paid; the pair is released — order it again",
            ),
            Self::InProgress => Problem::conflict(
                "payment-in-progress",
                "a payment for this order is being processed; check back shortly",
            ),
            Self::Declined(reason) => {
                Problem::new(StatusCode::PAYMENT_REQUIRED, "card-declined", "Payment declined").with_detail(reason)
            }
            Self::ProviderUnavailable(reason) => {
                tracing::warn!(%reason, "payment provider unavailable");
                Problem::unavailable("the payment provider is unavailable; retry later (a retry never charges twice)")
            }
            Self::Key(error) => match error.problem() {
                Some(problem) => problem,
                None => Problem::internal(&error),
            },
            Self::Internal(error) => Problem::internal(error.as_ref()),
        }
        .into_response()
    }
}
