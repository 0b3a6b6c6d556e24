//! The catalog service's errors and how each becomes an HTTP problem.

use axum::response::{IntoResponse, Response};
use sneakerstop_problem::{FieldError, Problem};

/// Everything a catalog endpoint can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Input failed validation.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// Well-formed input that cannot be done as things stand (a size the product is not
    /// made in).
    #[error("unprocessable input")]
    Unprocessable(Vec<FieldError>),
    /// No listing with that id.
    #[error("no such sneaker")]
    NotFound,
    /// No product with that id.
    #[error("no such product")]
    ProductNotFound,
    /// Another product has this style code.
    #[error("style code taken")]
    StyleCodeTaken(String),
    /// Only admins may do this.
    #[error("admins only")]
    AdminOnly(Problem),
    /// The caller does not own the listing.
    #[error("not the seller")]
    NotOwner,
    /// The listing is reserved or sold and cannot change.
    #[error("listing is {}", .0.as_str())]
    NotEditable(crate::domain::Status),
    /// `If-Match` named another version.
    #[error("version mismatch")]
    VersionMismatch {
        /// The current version.
        current: i64,
    },
    /// The Idempotency-Key cannot be used for this request.
    #[error(transparent)]
    Key(#[from] sneakerstop_idempotency::KeyError),
    /// Anything else.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::domain::Refusal> for CatalogError {
    fn from(refusal: crate::domain::Refusal) -> Self {
        use crate::domain::Refusal;
        match refusal {
            Refusal::NotOwner => Self::NotOwner,
            Refusal::NotEditable(status) => Self::NotEditable(status),
            Refusal::VersionMismatch { current } => Self::VersionMismatch { current },
            Refusal::ProductFixed => Self::Invalid(vec![FieldError::new(
                "productId",
                "a listing's product is set when listing and cannot change",
            )]),
            Refusal::DoesNotApply { .. } | Refusal::NotExpiring(_) => Self::Internal(anyhow::Error::new(refusal)),
        }
    }
}

impl From<crate::domain::ProductRefusal> for CatalogError {
    fn from(refusal: crate::domain::ProductRefusal) -> Self {
        use crate::domain::ProductRefusal;
        match refusal {
            ProductRefusal::Invalid(errors) => Self::Invalid(errors),
            ProductRefusal::VersionMismatch { current } => Self::VersionMismatch { current },
            ProductRefusal::SizesDropped(sizes) => {
                let sizes = sizes.iter().map(f64::to_string).collect::<Vec<_>>().join(", ");
                Self::Unprocessable(vec![FieldError::new(
                    "sizes",
                    format!(
                        "must keep every size the product is made in (its book may hold bids and asks): {sizes} left out"
                    ),
                )])
            }
        }
    }
}

impl From<crate::store::ProductInsert> for CatalogError {
    fn from(refusal: crate::store::ProductInsert) -> Self {
        match refusal {
            crate::store::ProductInsert::StyleCodeTaken(code) => Self::StyleCodeTaken(code),
            crate::store::ProductInsert::Other(error) => Self::Internal(error),
        }
    }
}

impl From<FieldError> for CatalogError {
    fn from(error: FieldError) -> Self {
        Self::Invalid(vec![error])
    }
}

impl IntoResponse for CatalogError {
    fn into_response(self) -> Response {
        match self {
            Self::Invalid(errors) => Problem::validation(errors),
            Self::Unprocessable(errors) => Problem::unprocessable(errors),
            Self::NotFound => Problem::not_found("no sneaker with this id"),
            Self::ProductNotFound => Problem::not_found("no product has this id (see GET /api/products)"),
            Self::StyleCodeTaken(code) => {
                Problem::conflict("style-code-taken", format!("a product with style code {code} exists already"))
            }
            Self::AdminOnly(problem) => problem,
            Self::NotOwner => Problem::forbidden("only the seller can change this listing"),
            Self::NotEditable(status) => Problem::conflict(
                "listing-locked",
                format!("the pair is {} and can no longer be edited or withdrawn", status.as_str()),
            ),
            Self::VersionMismatch { current } => {
                Problem::new(axum::http::StatusCode::PRECONDITION_FAILED, "version-mismatch", "Precondition failed")
                    .with_detail(format!("If-Match does not match the current version {current}; fetch it and retry"))
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
