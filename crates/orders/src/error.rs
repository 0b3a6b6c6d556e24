//! The orders service's errors and how each becomes an HTTP problem.

use axum::response::{IntoResponse, Response};
use sneakerstop_problem::{FieldError, Problem};

/// Everything an orders endpoint can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    /// Input failed validation.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// No such order, or not the caller's (indistinguishable on purpose).
    #[error("no such order")]
    OrderNotFound,
    /// The sneaker is unknown to this service.
    #[error("no such sneaker")]
    SneakerNotFound,
    /// The pair is sold.
    #[error("pair sold")]
    Sold,
    /// The ask expired.
    #[error("ask expired")]
    Expired,
    /// Its seller took the pair off sale.
    #[error("listing withdrawn")]
    Withdrawn,
    /// Another live order holds the pair.
    #[error("pair reserved")]
    Reserved,
    /// The buyer is its seller.
    #[error("own listing")]
    OwnListing,
    /// The buyer already holds as many unpaid reservations as one buyer may.
    #[error("too many unpaid reservations")]
    TooManyHolds {
        /// The cap (`ORDER_MAX_UNPAID_PER_BUYER`).
        cap: u32,
    },
    /// The order's status does not allow this.
    #[error("{0}")]
    Transition(crate::domain::Refusal),
    /// The Idempotency-Key cannot be used for this request.
    #[error(transparent)]
    Key(#[from] sneakerstop_idempotency::KeyError),
    /// Anything else.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::domain::Refusal> for OrdersError {
    fn from(refusal: crate::domain::Refusal) -> Self {
        use crate::domain::Refusal;
        match refusal {
            Refusal::Sold => Self::Sold,
            Refusal::Expired => Self::Expired,
            Refusal::Withdrawn => Self::Withdrawn,
            Refusal::OwnListing => Self::OwnListing,
            Refusal::Transition { .. } | Refusal::NotDue(_) => Self::Transition(refusal),
        }
    }
}

impl From<FieldError> for OrdersError {
    fn from(error: FieldError) -> Self {
        Self::Invalid(vec![error])
    }
}

impl IntoResponse for OrdersError {
    fn into_response(self) -> Response {
        match self {
            Self::Invalid(errors) => Problem::validation(errors),
            Self::OrderNotFound => Problem::not_found("no order with this id among yours"),
            Self::SneakerNotFound => Problem::not_found("no sneaker with this id is listed"),
            Self::Sold => Problem::conflict("pair-sold", "this pair has been sold"),
            Self::Expired => Problem::conflict("ask-expired", "this ask's time ran out; it is no longer for sale"),
            Self::Withdrawn => Problem::conflict("listing-withdrawn", "its seller took this pair off sale"),
            Self::Reserved => Problem::conflict(
                "pair-reserved",
                "another order holds this pair; it may be released if that order lapses",
            ),
            Self::OwnListing => Problem::conflict("own-listing", "you cannot order a pair you are selling"),
            Self::TooManyHolds { cap } => Problem::conflict(
                "too-many-reservations",
                format!(
                    "you already hold {cap} unpaid reservations, the most one buyer may; pay for or cancel one first"
                ),
            ),
            Self::Transition(error) => Problem::conflict("order-state", error.to_string()),
            Self::Key(error) => match error.problem() {
                Some(problem) => problem,
                None => Problem::internal(&error),
            },
            Self::Internal(error) => Problem::internal(error.as_ref()),
        }
        .into_response()
    }
}
