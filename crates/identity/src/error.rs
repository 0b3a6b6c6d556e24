//! The identity service's errors and how each becomes an HTTP problem.

use axum::response::{IntoResponse, Response};
use sneakerstop_problem::{FieldError, Problem};

/// Everything an identity endpoint can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Input failed validation.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// The email is already registered (decided by the unique constraint).
    #[error("email already registered")]
    EmailTaken,
    /// Unknown email or wrong password; deliberately indistinguishable.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Anything else: a bug or an unavailable dependency.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for IdentityError {
    fn into_response(self) -> Response {
        match self {
            Self::Invalid(errors) => Problem::validation(errors),
            Self::EmailTaken => Problem::conflict("email-taken", "an account with this email already exists"),
            Self::InvalidCredentials => Problem::unauthorized("email or password is incorrect"),
            Self::Internal(error) => Problem::internal(error.as_ref()),
        }
        .into_response()
    }
}
