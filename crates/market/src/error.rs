//! The market service's errors and how each becomes an HTTP problem.

use axum::response::{IntoResponse, Response};
use sneakerstop_problem::{FieldError, Problem};

use crate::domain::Refusal;

/// Everything a market endpoint can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// Input failed validation.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// No such product (as far as the market has heard).
    #[error("no such product")]
    ProductNotFound,
    /// No such bid, or not the caller's (indistinguishable on purpose).
    #[error("no such bid")]
    BidNotFound,
    /// The domain refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The Idempotency-Key cannot be used for this request.
    #[error(transparent)]
    Key(#[from] sneakerstop_idempotency::KeyError),
    /// The book is owned by another instance now (it moved while the request waited).
    #[error("the book moved to another instance")]
    Moved,
    /// The market cannot take the request now; it may be retried.
    #[error("{0}")]
    Unavailable(&'static str),
    /// Anything else.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<FieldError> for MarketError {
    fn from(error: FieldError) -> Self {
        Self::Invalid(vec![error])
    }
}

impl IntoResponse for MarketError {
    fn into_response(self) -> Response {
        match self {
            Self::Invalid(errors) => Problem::validation(errors),
            Self::ProductNotFound => Problem::not_found("no product has this id (see GET /api/products)"),
            Self::BidNotFound => Problem::not_found("no bid of yours has this id"),
            Self::Refused(refusal) => match refusal {
                Refusal::UnknownSize { style_code, size, sizes } => {
                    let sizes = sizes.iter().map(f64::to_string).collect::<Vec<_>>().join(", ");
                    let reason = format!("{style_code} is not made in size {size}; its sizes are {sizes}");
                    Problem::unprocessable(vec![FieldError::new("size", reason)])
                }
                Refusal::NoPaymentMethod => Problem::conflict("payment-method-required", refusal.to_string()),
                Refusal::OwnAsk(price) => Problem::conflict(
                    "own-ask",
                    format!(
                        "you ask {} for this size yourself; a bid at or above it would buy your own pair",
                        sneakerstop_problem::money::units(price)
                    ),
                ),
                Refusal::TooManyBids(open) => Problem::conflict(
                    "too-many-bids",
                    format!(
                        "you have {open} open bids on this size of this product, the most one buyer may have; \
                         cancel one (DELETE /api/bids/{{id}}) or wait for one to match or expire"
                    ),
                ),
                Refusal::NotYours => Problem::not_found("no bid of yours has this id"),
                Refusal::Transition { from, .. } => {
                    Problem::conflict("bid-closed", format!("the bid is {} and can no longer change", from.as_str()))
                }
                Refusal::NotDue(_) => Problem::internal(&refusal),
            },
            Self::Key(error) => match error.problem() {
                Some(problem) => problem,
                None => Problem::internal(&error),
            },
            Self::Moved => {
                return retry_soon(Problem::unavailable("the book is changing hands between instances; retry"));
            }
            Self::Unavailable(detail) => return retry_soon(Problem::unavailable(detail)),
            Self::Internal(error) => Problem::internal(error.as_ref()),
        }
        .into_response()
    }
}

/// A 503 with `Retry-After: 1`: the request may be sent again in a second.
fn retry_soon(problem: Problem) -> Response {
    let mut response = problem.into_response();
    response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
    response
}
