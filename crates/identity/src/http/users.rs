//! `/api/users/*`: signup, signin, signout, current user.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sneakerstop_auth::client::ClientAddress;
use sneakerstop_auth::{CurrentUser, SessionKeys};
use sneakerstop_problem::{ApiJson, Problem};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Email, NewAccount};
use crate::{AppState, IdentityError, store};

pub(super) fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/users/signup", post(signup))
        .route("/api/users/signin", post(signin))
        .route("/api/users/signout", post(signout).get(signout_get))
        .route("/api/users/currentuser", get(current_user))
}

/// Email and password, for signup and signin.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Credentials {
    /// Email address; trimmed and lower-cased, at most 254 characters.
    #[schema(example = "ann@example.com", max_length = 254, format = Email)]
    pub email: String,
    /// Password, 8 to 128 characters.
    #[schema(example = "correct horse battery", min_length = 8, max_length = 128, format = Password)]
    pub password: String,
}

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// The user's id.
    pub id: Uuid,
    /// The user's normalized email.
    #[schema(example = "ann@example.com")]
    pub email: String,
}

/// Who the session belongs to, if anyone.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentUserView {
    /// The signed-in user, or `null`.
    pub current_user: Option<UserView>,
}

/// Sets the session cookie and answers with the user.
fn signed_in(keys: &SessionKeys, status: StatusCode, user: CurrentUser) -> Response {
    let cookie = keys.session_cookie(keys.issue(&user));
    (status, [(SET_COOKIE, cookie)], Json(UserView { id: user.id, email: user.email })).into_response()
}

/// Create an account and start a session.
#[utoipa::path(
    post, path = "/api/users/signup", tag = "identity",
    request_body = Credentials,
    responses(
        (status = 201, description = "Account created; the `session` cookie is set", body = UserView,
            headers(("set-cookie" = String, description = "session=<jwt>; HttpOnly; SameSite=Lax; Path=/"))),
        (status = 400, description = "Malformed body or invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email already registered", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Password hashing is at capacity; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn signup(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response, IdentityError> {
    let account = NewAccount::parse(&body.email, body.password).map_err(IdentityError::Invalid)?;
    let hash = state.passwords.hash(account.password).await?;
    let id = Uuid::now_v7();
    store::register(&state.pool, id, &account.email, &hash).await?;
    tracing::info!(user_id = %id, "account created");
    let user = CurrentUser { id, email: account.email.as_str().to_owned() };
    Ok(signed_in(&state.keys, StatusCode::CREATED, user))
}

/// Start a session with email and password.
#[utoipa::path(
    post, path = "/api/users/signin", tag = "identity",
    request_body = Credentials,
    responses(
        (status = 200, description = "Signed in; the `session` cookie is set", body = UserView,
            headers(("set-cookie" = String, description = "session=<jwt>; HttpOnly; SameSite=Lax; Path=/"))),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown email or wrong password (indistinguishable)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed sign-ins for this account or from this address; `Retry-After` says when to try again", body = Problem, content_type = "application/problem+json",
            headers(("retry-after" = String, description = "Seconds to wait"))),
        (status = 503, description = "Password checking is at capacity; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn signin(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response, IdentityError> {
    let email = Email::normalize(&body.email);
    sneakerstop_problem::storable_text("email", &email).map_err(|e| IdentityError::Invalid(vec![e]))?;
    // A blocked account or address is refused before any password work.
    if let Some(wait) = state.throttle.blocked(&state.pool, &email, address).await? {
        return Err(IdentityError::Throttled(wait));
    }
    let row = store::find_by_email(&state.pool, &email).await?;
    let (stored_hash, user) = match row {
        Some(row) => (Some(row.password_hash), Some(CurrentUser { id: row.id, email: row.email })),
        None => (None, None),
    };
    // Verifies against a dummy hash when there is no such user: same work, same answer.
    let valid = state.passwords.verify(body.password, stored_hash).await?;
    match user {
        Some(user) if valid => {
            state.throttle.succeeded(&state.pool, &email).await?;
            Ok(signed_in(&state.keys, StatusCode::OK, user))
        }
        _ => {
            state.throttle.failed(&state.pool, &email, address).await?;
            Err(IdentityError::InvalidCredentials)
        }
    }
}

/// End the session (clears the cookie). Always succeeds.
#[utoipa::path(
    post, path = "/api/users/signout", tag = "identity",
    responses((status = 200, description = "Cookie cleared; the body is `{}`", body = Object,
        headers(("set-cookie" = String, description = "session=; Max-Age=0"))))
)]
pub(super) async fn signout(State(state): State<AppState>) -> Response {
    let keys = &state.keys;
    // A JWT cannot be revoked server-side; clearing the cookie ends the browser's session.
    // Bearer clients simply discard the token.
    ([(SET_COOKIE, keys.cleared_cookie())], Json(serde_json::json!({}))).into_response()
}

/// End the session (clears the cookie); kept for clients of the original API.
///
/// A `SameSite=Lax` cookie travels with a top-level GET from another site, so a link on
/// any page could sign the user out. Browsers say where a request came from in
/// `Sec-Fetch-Site`; a cross-site GET is refused with 403 and changes nothing. API clients
/// (which send no such header) and this site's own pages are served as before.
#[utoipa::path(
    get, path = "/api/users/signout", tag = "identity",
    params(("sec-fetch-site" = Option<String>, Header, description = "Set by browsers; `cross-site` is refused")),
    responses(
        (status = 200, description = "Cookie cleared; the body is `{}`", body = Object),
        (status = 403, description = "A cross-site navigation; use POST from this site", body = Problem,
            content_type = "application/problem+json")
    )
)]
pub(super) async fn signout_get(state: State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if headers.get("sec-fetch-site").is_some_and(|site| site.as_bytes().eq_ignore_ascii_case(b"cross-site")) {
        return Problem::new(StatusCode::FORBIDDEN, "cross-site-signout", "Cross-site sign-out refused")
            .with_detail("another site linked here; sign out with POST /api/users/signout from this site")
            .into_response();
    }
    signout(state).await
}

/// Who is signed in. Never fails: no, invalid or expired session gives `currentUser: null`.
#[utoipa::path(
    get, path = "/api/users/currentuser", tag = "identity",
    responses((status = 200, description = "The signed-in user, or null", body = CurrentUserView)),
    security((), ("session_cookie" = []), ("bearer" = []))
)]
pub(super) async fn current_user(user: Option<CurrentUser>) -> Json<CurrentUserView> {
    Json(CurrentUserView { current_user: user.map(|u| UserView { id: u.id, email: u.email }) })
}
