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
    /// The current password given to change it is wrong.
    #[error("wrong current password")]
    WrongPassword,
    /// The session's account no longer exists.
    #[error("not signed in")]
    NotSignedIn,
    /// Too many failed sign-ins for this account or address: wait this long.
    #[error("too many failed sign-ins")]
    Throttled(std::time::Duration),
    /// Password hashing is at capacity: retry in a moment.
    #[error("password hashing is at capacity")]
    Busy,
    /// Anything else: a bug or an unavailable dependency.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::password::HashingError> for IdentityError {
    fn from(error: crate::password::HashingError) -> Self {
        match error {
            crate::password::HashingError::Busy => Self::Busy,
            crate::password::HashingError::Failed(error) => Self::Internal(error),
        }
    }
}

impl IntoResponse for IdentityError {
    fn into_response(self) -> Response {
        match self {
            Self::Invalid(errors) => Problem::validation(errors),
            Self::EmailTaken => Problem::conflict("email-taken", "an account with this email already exists"),
            Self::InvalidCredentials => Problem::unauthorized("email or password is incorrect"),
            Self::WrongPassword => Problem::new(axum::http::StatusCode::FORBIDDEN, "wrong-password", "Wrong password")
                .with_detail("currentPassword is not this account's password"),
            Self::NotSignedIn => Problem::unauthorized("this session's account no longer exists"),
            Self::Throttled(wait) => {
                return Problem::too_many_requests(
                    "too-many-attempts",
                    "Too many failed sign-ins",
                    "too many failed sign-ins for this account or from this address",
                    wait,
                );
            }
            Self::Busy => {
                let mut response = Problem::unavailable(
                    "too many sign-ins and sign-ups are being checked right now; retry in a second",
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
                return response;
            }
            Self::Internal(error) => Problem::internal(error.as_ref()),
        }
        .into_response()
    }
}
