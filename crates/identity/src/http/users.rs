//! `/api/users/*`: signup, signin, signout (of this session or all), password change,
//! current user.

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::SET_COOKIE;
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sneakerstop_auth::client::ClientAddress;
use sneakerstop_auth::{CurrentUser, KnownDevices, SessionKeys};
use sneakerstop_problem::{ApiJson, Problem};
use utoipa::ToSchema;
use uuid::Uuid;

use sneakerstop_events::identity::RevokeReason;

use crate::domain::{Email, NewAccount, Password};
use crate::store::{Ending, NewSession};
use crate::{AppState, IdentityError, store};

pub(super) fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/users/signup", post(signup))
        .route("/api/users/signin", post(signin))
        .route("/api/users/signout", post(signout).get(signout_get))
        .route("/api/users/signout/everywhere", post(signout_everywhere))
        .route("/api/users/password", post(change_password))
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
    /// `admin` or `member`, as of the session's start.
    pub role: Role,
}

/// What a user may do: members buy and sell; admins also create products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Buys and sells.
    Member,
    /// Also creates products.
    Admin,
}

impl From<CurrentUser> for UserView {
    fn from(user: CurrentUser) -> Self {
        let role = if user.admin { Role::Admin } else { Role::Member };
        Self { id: user.id, email: user.email, role }
    }
}

/// Who the session belongs to, if anyone.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentUserView {
    /// The signed-in user, or `null`.
    pub current_user: Option<UserView>,
}

/// A password change: the current password (again, so a borrowed session cannot change
/// it) and the new one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordChange {
    /// The password in use now.
    #[schema(example = "correct horse battery", format = Password)]
    pub current_password: String,
    /// The new password, 8 to 128 characters.
    #[schema(example = "battery staple horse correct", min_length = 8, max_length = 128, format = Password)]
    pub new_password: String,
}

/// How many sessions a request ended.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionsEnded {
    /// Sessions ended, on every device.
    pub sessions_ended: usize,
}

/// A new session for `user`: its token, signed with its expiry, and its row.
fn new_session(keys: &SessionKeys, id: Uuid, email: &str, admin: bool) -> (CurrentUser, String, NewSession) {
    let user = CurrentUser { admin, ..CurrentUser::member(id, email) };
    let (token, expires_at) = keys.issue_with_expiry(&user);
    let session = NewSession { id: user.session, user: id, expires_at };
    (user, token, session)
}

/// Sets the session cookie, makes the browser a known device of the account (see
/// `SessionKeys::device_cookie`) and answers with the user.
fn signed_in(keys: &SessionKeys, status: StatusCode, user: CurrentUser, token: String) -> Response {
    let cookies = [(SET_COOKIE, keys.session_cookie(token)), (SET_COOKIE, keys.device_cookie(user.id))];
    (status, AppendHeaders(cookies), Json(UserView::from(user))).into_response()
}

/// This process refuses `ended` sessions at once; other processes learn of them from their
/// revocation followers (see `sneakerstop_auth::revocation`).
fn forget(keys: &SessionKeys, ended: &[(Uuid, chrono::DateTime<chrono::Utc>)]) {
    for &(session, expires_at) in ended {
        keys.revocations().insert(session, expires_at.timestamp());
    }
}

/// Create an account and start a session.
#[utoipa::path(
    post, path = "/api/users/signup", tag = "identity",
    request_body = Credentials,
    responses(
        (status = 201, description = "Account created; the `session` cookie is set, and the `device` cookie that makes this browser a known device of the account", body = UserView,
            headers(("set-cookie" = String, description = "session=<jwt>; HttpOnly; SameSite=Lax; Path=/ — and device=<token>; HttpOnly; SameSite=Strict; Path=/api/users/signin; Max-Age=7776000"))),
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
    let (user, token, session) = new_session(&state.keys, Uuid::now_v7(), account.email.as_str(), false);
    store::register(&state.pool, &account.email, &hash, session).await?;
    tracing::info!(user_id = %user.id, "account created");
    Ok(signed_in(&state.keys, StatusCode::CREATED, user, token))
}

/// Start a session with email and password.
#[utoipa::path(
    post, path = "/api/users/signin", tag = "identity",
    request_body = Credentials,
    responses(
        (status = 200, description = "Signed in; the `session` cookie is set, and the `device` cookie (90 days) with which the next sign-in to this account from this browser gets a reserved place when password checking is busy", body = UserView,
            headers(("set-cookie" = String, description = "session=<jwt>; HttpOnly; SameSite=Lax; Path=/ — and device=<token>; HttpOnly; SameSite=Strict; Path=/api/users/signin; Max-Age=7776000"))),
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
    KnownDevices(devices): KnownDevices,
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
        Some(row) => (Some(row.password_hash), Some((row.id, row.email, row.admin))),
        None => (None, None),
    };
    // A browser that signed in to this account before may take a reserved place.
    let known_device_of = user.as_ref().map(|(id, _, _)| *id).filter(|id| devices.contains(id));
    // Verifies against a dummy hash when there is no such user: same work, same answer.
    let valid = state.passwords.verify(body.password, stored_hash, known_device_of).await?;
    match user {
        Some((id, email, admin)) if valid => {
            state.throttle.succeeded(&state.pool, &email).await?;
            let (user, token, session) = new_session(&state.keys, id, &email, admin);
            store::start_session(&state.pool, session).await?;
            Ok(signed_in(&state.keys, StatusCode::OK, user, token))
        }
        _ => {
            state.throttle.failed(&state.pool, &email, address).await?;
            Err(IdentityError::InvalidCredentials)
        }
    }
}

/// End the session: its token is refused by every service from now on (this instance at
/// once, the others within the bound docs/operations.md states), and the cookie is cleared.
/// Always succeeds, signed in or not.
#[utoipa::path(
    post, path = "/api/users/signout", tag = "identity",
    responses((status = 200, description = "Session ended and cookie cleared; the body is `{}`", body = Object,
        headers(("set-cookie" = String, description = "session=; Max-Age=0")))),
    security((), ("session_cookie" = []), ("bearer" = []))
)]
pub(super) async fn signout(
    State(state): State<AppState>,
    user: Option<CurrentUser>,
) -> Result<Response, IdentityError> {
    if let Some(user) = user {
        end(&state, &user, Ending::Only(user.session), RevokeReason::SignedOut).await?;
    }
    Ok(([(SET_COOKIE, state.keys.cleared_cookie())], Json(serde_json::json!({}))).into_response())
}

/// Ends `user`'s sessions that `ending` names; returns how many.
#[tracing::instrument(skip_all, fields(user_id = %user.id, ?ending), err)]
async fn end(state: &AppState, user: &CurrentUser, ending: Ending, reason: RevokeReason) -> anyhow::Result<usize> {
    let _transaction = sneakerstop_db::transaction_span("ending sessions");
    let mut tx = state.pool.begin().await.context("begin")?;
    let ended = store::end_sessions(&mut tx, user.id, ending, reason).await?;
    tx.commit().await.context("commit ended sessions")?;
    forget(&state.keys, &ended);
    tracing::info!(user_id = %user.id, sessions = ended.len(), ?reason, "sessions ended");
    Ok(ended.len())
}

/// End every session of the signed-in user, on every device, this one included.
#[utoipa::path(
    post, path = "/api/users/signout/everywhere", tag = "identity",
    responses(
        (status = 200, description = "Every session ended and this cookie cleared", body = SessionsEnded,
            headers(("set-cookie" = String, description = "session=; Max-Age=0"))),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
pub(super) async fn signout_everywhere(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Response, IdentityError> {
    let sessions_ended = end(&state, &user, Ending::All, RevokeReason::SignedOutEverywhere).await?;
    Ok(([(SET_COOKIE, state.keys.cleared_cookie())], Json(SessionsEnded { sessions_ended })).into_response())
}

/// Change the signed-in user's password. Every other session of theirs ends; this one
/// goes on. A wrong current password counts as a failed sign-in for the account and the
/// address (see `POST /api/users/signin`'s 429).
#[utoipa::path(
    post, path = "/api/users/password", tag = "identity",
    request_body = PasswordChange,
    responses(
        (status = 200, description = "Password changed; the user's other sessions ended", body = SessionsEnded),
        (status = 400, description = "Malformed body, or the new password is not acceptable", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The current password is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts for this account or from this address", body = Problem, content_type = "application/problem+json",
            headers(("retry-after" = String, description = "Seconds to wait"))),
        (status = 503, description = "Password hashing is at capacity; retry after `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user_id = %user.id))]
pub(super) async fn change_password(
    State(state): State<AppState>,
    user: CurrentUser,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<Json<SessionsEnded>, IdentityError> {
    let new_password = Password::parse(body.new_password)
        .map_err(|e| IdentityError::Invalid(vec![sneakerstop_problem::FieldError::new("newPassword", e.reason)]))?;
    if let Some(wait) = state.throttle.blocked(&state.pool, &user.email, address).await? {
        return Err(IdentityError::Throttled(wait));
    }
    // The account may have been deleted since the token was issued: then there is no one
    // to change a password for.
    let row = store::find_by_id(&state.pool, user.id).await?.ok_or(IdentityError::NotSignedIn)?;
    if !state.passwords.verify(body.current_password, Some(row.password_hash), None).await? {
        state.throttle.failed(&state.pool, &user.email, address).await?;
        return Err(IdentityError::WrongPassword);
    }
    let hash = state.passwords.hash(new_password).await?;
    let ended = store::change_password(&state.pool, user.id, &hash, user.session).await?;
    forget(&state.keys, &ended);
    tracing::info!(user_id = %user.id, sessions_ended = ended.len(), "password changed");
    Ok(Json(SessionsEnded { sessions_ended: ended.len() }))
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
pub(super) async fn signout_get(
    state: State<AppState>,
    headers: axum::http::HeaderMap,
    user: Option<CurrentUser>,
) -> Result<Response, IdentityError> {
    if headers.get("sec-fetch-site").is_some_and(|site| site.as_bytes().eq_ignore_ascii_case(b"cross-site")) {
        return Ok(Problem::new(StatusCode::FORBIDDEN, "cross-site-signout", "Cross-site sign-out refused")
            .with_detail("another site linked here; sign out with POST /api/users/signout from this site")
            .into_response());
    }
    signout(state, user).await
}

/// Who is signed in. Never fails: no, invalid or expired session gives `currentUser: null`.
#[utoipa::path(
    get, path = "/api/users/currentuser", tag = "identity",
    responses((status = 200, description = "The signed-in user, or null", body = CurrentUserView)),
    security((), ("session_cookie" = []), ("bearer" = []))
)]
pub(super) async fn current_user(user: Option<CurrentUser>) -> Json<CurrentUserView> {
    Json(CurrentUserView { current_user: user.map(UserView::from) })
}
