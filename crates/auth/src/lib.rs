//! Who is calling: session tokens and the extractors that read them.
//!
//! A session is an HS256 JWT signed with `JWT_SECRET`, holding the user's id and email, the
//! session's id and an expiry. Identity issues it in the `session` cookie (HttpOnly, SameSite=Lax, Path=/,
//! Secure when configured); every service accepts it from that cookie or from
//! `Authorization: Bearer <jwt>`, so browsers and API clients both work. Tokens are checked
//! locally with the shared key: no service calls identity to authenticate a request. A
//! session ended early (sign-out, sign-out everywhere, a password change) is refused from the
//! moment the process hears of it; see [`revocation`].

pub mod client;
pub mod limit;
pub mod revocation;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sneakerstop_problem::Problem;
use sneakerstop_settings::Secret;
use uuid::Uuid;

/// Name of the session cookie (the original service's name, so its clients keep working).
pub const SESSION_COOKIE: &str = "session";
/// Name of the known-device cookie (see [`SessionKeys::device_cookie`]).
pub const DEVICE_COOKIE: &str = "device";
/// How long a browser stays a known device of an account after signing in to it.
pub const DEVICE_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// What a known-device token says: which account signed in on this browser, and until when
/// that counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DeviceClaims {
    sub: Uuid,
    iat: i64,
    exp: i64,
}

/// What a session token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    /// The user's email at sign-in time.
    pub email: String,
    /// The session's id, which identity can end before the token expires.
    pub sid: Uuid,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// Whether the user was an admin when the session began. Absent (not an admin) in
    /// tokens issued before roles existed; a role change ends the user's sessions, so a
    /// token never outlives the role it states.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

/// The signed-in user of a request. Extracting it answers 401 when there is no valid session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    /// The user's id.
    pub id: Uuid,
    /// The user's email.
    pub email: String,
    /// The session the request belongs to.
    pub session: Uuid,
    /// Whether the user may do what only admins may (create products).
    pub admin: bool,
}

impl CurrentUser {
    /// A member (not an admin) in a new session; tests and sign-ups make these.
    pub fn member(id: Uuid, email: impl Into<String>) -> Self {
        Self { id, email: email.into(), session: Uuid::now_v7(), admin: false }
    }

    /// The user, if they are an admin; otherwise a 403 saying what needed the role.
    pub fn require_admin(self, to: &str) -> Result<Self, Problem> {
        if self.admin {
            Ok(self)
        } else {
            Err(Problem::forbidden(format!("only an admin may {to}; ask an operator to grant the role")))
        }
    }
}

/// Signs and verifies session tokens. Cheap to clone.
#[derive(Clone)]
pub struct SessionKeys(Arc<Keys>);

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Known-device tokens have a key of their own, derived from the secret: neither kind
    /// of token can pass for the other.
    device_encoding: EncodingKey,
    device_decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    cookie_secure: bool,
    revoked: revocation::Revocations,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("ttl", &self.0.ttl)
            .field("cookie_secure", &self.0.cookie_secure)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Keys for `secret`; sessions last `ttl`; the cookie is `Secure` when `cookie_secure`.
    pub fn new(secret: &Secret, ttl: Duration, cookie_secure: bool) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let encoding = EncodingKey::from_secret(secret.expose().as_bytes());
        // HMAC-SHA256(secret, label): a key only this purpose uses.
        let device_key = jsonwebtoken::crypto::sign(b"sneakerstop known-device token v1", &encoding, Algorithm::HS256)
            .unwrap_or_else(|e| unreachable!("HMAC-SHA256 of a constant cannot fail: {e}"));
        Self(Arc::new(Keys {
            encoding,
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            device_encoding: EncodingKey::from_secret(device_key.as_bytes()),
            device_decoding: DecodingKey::from_secret(device_key.as_bytes()),
            validation,
            ttl,
            cookie_secure,
            revoked: revocation::Revocations::default(),
        }))
    }

    /// The sessions this process knows were ended early; shared by every clone.
    pub fn revocations(&self) -> &revocation::Revocations {
        &self.0.revoked
    }

    /// A signed token for `user`'s session, valid for the configured time from now.
    pub fn issue(&self, user: &CurrentUser) -> String {
        self.issue_with_expiry(user).0
    }

    /// A signed token for `user`'s session and the moment it expires.
    pub fn issue_with_expiry(&self, user: &CurrentUser) -> (String, chrono::DateTime<chrono::Utc>) {
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(self.0.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let exp = now.saturating_add(ttl);
        let claims =
            Claims { sub: user.id, email: user.email.clone(), sid: user.session, iat: now, exp, admin: user.admin };
        // Encoding HS256 claims made of plain strings and numbers cannot fail.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.0.encoding)
            .unwrap_or_else(|e| unreachable!("HS256 encoding of plain claims failed: {e}"));
        (token, chrono::DateTime::from_timestamp(exp, 0).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC))
    }

    /// The user a token names, if it is well-formed, correctly signed, not expired, and its
    /// session has not been ended.
    pub fn verify(&self, token: &str) -> Option<CurrentUser> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation).ok()?.claims;
        if self.0.revoked.is_revoked(claims.sid) {
            return None;
        }
        Some(CurrentUser { id: claims.sub, email: claims.email, session: claims.sid, admin: claims.admin })
    }

    /// The token's session and user and when it expires, if it is valid, whether or not the
    /// session was ended (signing out twice is not an error).
    pub fn session_of(&self, token: &str) -> Option<(Uuid, Uuid, i64)> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation).ok()?.claims;
        Some((claims.sid, claims.sub, claims.exp))
    }

    /// The `Set-Cookie` value that stores `token` in the browser.
    pub fn session_cookie(&self, token: String) -> String {
        let max_age = cookie::time::Duration::seconds(i64::try_from(self.0.ttl.as_secs()).unwrap_or(i64::MAX / 2));
        self.cookie_builder(token).max_age(max_age).build().to_string()
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn cleared_cookie(&self) -> String {
        self.cookie_builder(String::new())
            .max_age(cookie::time::Duration::ZERO)
            .expires(cookie::time::OffsetDateTime::UNIX_EPOCH)
            .build()
            .to_string()
    }

    fn cookie_builder(&self, value: String) -> cookie::CookieBuilder<'static> {
        cookie::Cookie::build((SESSION_COOKIE, value))
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .path("/")
            .secure(self.0.cookie_secure)
    }

    /// The `Set-Cookie` value that makes this browser a known device of `user`'s account for
    /// [`DEVICE_TTL`]: set when they sign in, sent back only to sign-in, and worth a reserved
    /// place in the password-hashing queue when that account is signed in to again (a
    /// credential-stuffing flood holds no such cookie for the accounts it tries; OWASP's
    /// "device cookie"). It outlives sign-out on purpose: it says the browser has signed in
    /// before, not that it is signed in.
    pub fn device_cookie(&self, user: Uuid) -> String {
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(DEVICE_TTL.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = DeviceClaims { sub: user, iat: now, exp: now.saturating_add(ttl) };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.0.device_encoding)
            .unwrap_or_else(|e| unreachable!("HS256 encoding of plain claims failed: {e}"));
        cookie::Cookie::build((DEVICE_COOKIE, token))
            .http_only(true)
            .same_site(cookie::SameSite::Strict)
            .path("/api/users/signin")
            .secure(self.0.cookie_secure)
            .max_age(cookie::time::Duration::seconds(ttl))
            .build()
            .to_string()
    }

    /// The accounts a request's valid, unexpired known-device cookies name.
    pub fn known_devices(&self, parts: &Parts) -> Vec<Uuid> {
        cookies_named(parts, DEVICE_COOKIE)
            .filter_map(|token| {
                jsonwebtoken::decode::<DeviceClaims>(&token, &self.0.device_decoding, &self.0.validation).ok()
            })
            .map(|data| data.claims.sub)
            .collect()
    }

    /// Whose correctly signed, unexpired token a request carries first, ended session or not:
    /// the key of per-user limits, which need no more than that (the handler still refuses
    /// an ended session).
    pub fn holder_of(&self, parts: &Parts) -> Option<Uuid> {
        let token = tokens_of(parts)?.into_iter().next()?;
        let claims = jsonwebtoken::decode::<Claims>(&token, &self.0.decoding, &self.0.validation).ok()?.claims;
        Some(claims.sub)
    }

    /// The user of a request, from its bearer token and/or its session cookie. Every
    /// credential the request presents must be valid and name the same user: a request with
    /// a good token and a forged or expired cookie (or the reverse) is not signed in, rather
    /// than signed in by whichever one happened to be read first.
    pub fn user_of(&self, parts: &Parts) -> Option<CurrentUser> {
        let mut tokens = tokens_of(parts)?.into_iter();
        let user = self.verify(&tokens.next()?)?;
        tokens.all(|token| self.verify(&token).is_some_and(|other| other.id == user.id)).then_some(user)
    }
}

/// Every credential a request carries: the `Authorization: Bearer` token and the session
/// cookies. `None` when an `Authorization` header is there but is not a bearer token.
fn tokens_of(parts: &Parts) -> Option<Vec<String>> {
    let mut tokens = Vec::new();
    if let Some(value) = parts.headers.get(AUTHORIZATION) {
        let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        tokens.push(token.trim().to_owned());
    }
    tokens.extend(cookies_named(parts, SESSION_COOKIE));
    Some(tokens)
}

/// `set_cookie` (a `Set-Cookie` value) with its path made `path`, if it sets the
/// known-device cookie; `None` for any other cookie. For a site in front of the API (the
/// storefront) whose own sign-in is where the browser should send the cookie back.
pub fn device_cookie_at(set_cookie: &str, path: &str) -> Option<String> {
    let mut cookie = cookie::Cookie::parse(set_cookie).ok()?;
    if cookie.name() != DEVICE_COOKIE {
        return None;
    }
    cookie.set_path(path.to_owned());
    Some(cookie.to_string())
}

/// The values of the request's cookies called `name`.
fn cookies_named<'a>(parts: &'a Parts, name: &'a str) -> impl Iterator<Item = String> + 'a {
    cookie_values(&parts.headers, name)
}

/// The value of the first cookie called `name` in `headers` (the storefront's cookies, the
/// session cookie it hands on).
pub fn cookie_value(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    cookie_values(headers, name).next()
}

/// The values of every cookie called `name` in `headers` (a browser may send several: the
/// storefront hands the API all of its known-device cookies).
pub fn cookie_values<'a>(headers: &'a axum::http::HeaderMap, name: &'a str) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(move |c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// The accounts whose known device the request comes from (its valid `device` cookies; see
/// [`SessionKeys::device_cookie`]). Empty for most requests; never a refusal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownDevices(pub Vec<Uuid>);

impl<S> FromRequestParts<S> for KnownDevices
where
    S: Send + Sync,
    SessionKeys: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(SessionKeys::from_ref(state).known_devices(parts)))
    }
}

impl<S> FromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    SessionKeys: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        SessionKeys::from_ref(state).user_of(parts).ok_or_else(|| {
            Problem::unauthorized("sign in first: send the session cookie or an `Authorization: Bearer` token")
        })
    }
}

impl<S> OptionalFromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    SessionKeys: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(SessionKeys::from_ref(state).user_of(parts))
    }
}

/// Adds the two ways to authenticate to an OpenAPI document, as `session_cookie` and `bearer`.
#[derive(Debug)]
pub struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The session cookie set by signup and signin.",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("The same session token, sent as `Authorization: Bearer <jwt>`."))
                    .build(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn keys(ttl: Duration) -> SessionKeys {
        SessionKeys::new(&Secret::new("test-secret-test-secret-test-secret"), ttl, false)
    }

    fn user() -> CurrentUser {
        CurrentUser::member(Uuid::now_v7(), "ann@example.com")
    }

    fn parts(header: (&str, &str)) -> Parts {
        Request::builder().header(header.0, header.1).body(()).unwrap().into_parts().0
    }

    #[test]
    fn issued_tokens_verify_and_round_trip_the_user() {
        let keys = keys(Duration::from_secs(60));
        let user = user();
        assert_eq!(keys.verify(&keys.issue(&user)), Some(user));
    }

    #[test]
    fn tokens_from_another_key_or_tampered_are_refused() {
        let token = keys(Duration::from_secs(60)).issue(&user());
        let other = SessionKeys::new(&Secret::new("another-secret-another-secret"), Duration::from_secs(60), false);
        assert_eq!(other.verify(&token), None);
        let mut tampered = token.clone();
        tampered.pop();
        assert_eq!(keys(Duration::from_secs(60)).verify(&tampered), None);
        assert_eq!(keys(Duration::from_secs(60)).verify("not-a-jwt"), None);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let keys = keys(Duration::from_secs(60));
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: Uuid::now_v7(),
            email: "ann@example.com".into(),
            sid: Uuid::now_v7(),
            iat: now - 120,
            exp: now - 60,
            admin: false,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.0.encoding).unwrap();
        assert_eq!(keys.verify(&token), None);
        let claims = Claims { exp: now + 60, ..claims };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.0.encoding).unwrap();
        assert!(keys.verify(&token).is_some(), "the same token unexpired must verify");
    }

    #[test]
    fn bearer_header_and_cookie_are_both_read() {
        let keys = keys(Duration::from_secs(60));
        let user = user();
        let token = keys.issue(&user);
        assert_eq!(keys.user_of(&parts(("authorization", &format!("Bearer {token}")))), Some(user.clone()));
        assert_eq!(keys.user_of(&parts(("authorization", &format!("bearer  {token}")))), Some(user.clone()));
        assert_eq!(keys.user_of(&parts(("cookie", &format!("theme=dark; session={token}")))), Some(user));
        assert_eq!(keys.user_of(&parts(("authorization", &format!("Basic {token}")))), None);
        assert_eq!(keys.user_of(&parts(("cookie", "theme=dark"))), None);
    }

    #[test]
    fn every_credential_presented_must_be_valid_and_name_one_user() {
        let keys = keys(Duration::from_secs(60));
        let (ann, bo) = (user(), CurrentUser::member(Uuid::now_v7(), "bo@example.com"));
        let (ann_token, bo_token) = (keys.issue(&ann), keys.issue(&bo));
        let both = |bearer: &str, cookie: &str| {
            let mut request = Request::builder()
                .header("authorization", format!("Bearer {bearer}"))
                .header("cookie", format!("session={cookie}"));
            request = request.uri("/");
            request.body(()).unwrap().into_parts().0
        };
        assert_eq!(keys.user_of(&both(&ann_token, &ann_token)), Some(ann.clone()));
        assert_eq!(keys.user_of(&both(&ann_token, "forged")), None, "a forged cookie beside a good token");
        assert_eq!(keys.user_of(&both("forged", &ann_token)), None, "a forged token beside a good cookie");
        assert_eq!(keys.user_of(&both(&ann_token, &bo_token)), None, "two users at once");
    }

    #[test]
    fn a_revoked_session_is_refused_and_the_users_other_sessions_are_not() {
        let keys = keys(Duration::from_secs(60));
        let phone = user();
        let laptop = CurrentUser { session: Uuid::now_v7(), ..phone.clone() };
        let (phone_token, expires_at) = keys.issue_with_expiry(&phone);
        let laptop_token = keys.issue(&laptop);
        keys.revocations().insert(phone.session, expires_at.timestamp());
        assert_eq!(keys.verify(&phone_token), None);
        assert_eq!(keys.verify(&laptop_token), Some(laptop));
        assert_eq!(
            keys.session_of(&phone_token),
            Some((phone.session, phone.id, expires_at.timestamp())),
            "still readable, to sign out of it again"
        );
        let clone = keys.clone();
        assert_eq!(clone.verify(&phone_token), None, "clones share what is revoked");
    }

    #[test]
    fn the_admin_role_round_trips_and_is_absent_from_members_tokens() {
        let keys = keys(Duration::from_secs(60));
        let admin = CurrentUser { admin: true, ..user() };
        assert_eq!(keys.verify(&keys.issue(&admin)), Some(admin.clone()));
        assert!(admin.clone().require_admin("create products").is_ok());
        let member = user();
        let token = keys.issue(&member);
        #[derive(Deserialize)]
        struct Raw {
            admin: Option<bool>,
        }
        let raw = jsonwebtoken::decode::<Raw>(&token, &keys.0.decoding, &keys.0.validation).unwrap().claims;
        assert_eq!(raw.admin, None, "members' tokens are as before");
        assert_eq!(keys.verify(&token).map(|u| u.admin), Some(false));
        let refused = member.require_admin("create products").unwrap_err();
        assert_eq!(refused.status, 403);
    }

    #[test]
    fn tokens_without_a_session_id_are_refused() {
        #[derive(Serialize)]
        struct Old {
            sub: Uuid,
            email: String,
            iat: i64,
            exp: i64,
        }
        let keys = keys(Duration::from_secs(60));
        let now = chrono::Utc::now().timestamp();
        let old = Old { sub: Uuid::now_v7(), email: "ann@example.com".into(), iat: now, exp: now + 60 };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &old, &keys.0.encoding).unwrap();
        assert_eq!(keys.verify(&token), None, "a session that cannot be revoked is no session");
    }

    #[test]
    fn a_known_device_cookie_names_its_account_and_is_no_session() {
        let keys = keys(Duration::from_secs(60));
        let user = Uuid::now_v7();
        let set = keys.device_cookie(user);
        for part in ["device=", "HttpOnly", "SameSite=Strict", "Path=/api/users/signin", "Max-Age=7776000"] {
            assert!(set.contains(part), "{set} lacks {part}");
        }
        let token = set.split(';').next().unwrap().strip_prefix("device=").unwrap().to_owned();
        assert_eq!(keys.known_devices(&parts(("cookie", &format!("a=b; device={token}")))), [user]);

        // Neither kind of token passes for the other, and another secret's counts for nothing.
        assert_eq!(keys.user_of(&parts(("authorization", &format!("Bearer {token}")))), None);
        assert_eq!(keys.user_of(&parts(("cookie", &format!("session={token}")))), None);
        let session = keys.issue(&CurrentUser::member(user, "ann@example.com"));
        assert!(keys.known_devices(&parts(("cookie", &format!("device={session}")))).is_empty());
        let other = SessionKeys::new(&Secret::new("another-secret-0123456789-abcdef"), Duration::from_secs(60), false);
        let forged = other.device_cookie(user);
        assert!(keys.known_devices(&parts(("cookie", forged.split(';').next().unwrap()))).is_empty());
    }

    #[test]
    fn a_known_device_cookie_moved_to_another_path_keeps_everything_else() {
        let keys = SessionKeys::new(&Secret::new("test-secret-test-secret-test-secret"), Duration::from_secs(60), true);
        let user = Uuid::now_v7();
        let moved = device_cookie_at(&keys.device_cookie(user), "/signin").expect("a device cookie");
        for part in ["Path=/signin", "HttpOnly", "SameSite=Strict", "Secure", "Max-Age=7776000"] {
            assert!(moved.contains(part), "{moved} lacks {part}");
        }
        assert!(!moved.contains("/api/users/signin"), "{moved}");
        let token = moved.split(';').next().unwrap().strip_prefix("device=").unwrap().to_owned();
        assert_eq!(keys.known_devices(&parts(("cookie", &format!("device={token}")))), [user]);
        assert_eq!(device_cookie_at(&keys.session_cookie("tok".into()), "/signin"), None, "only the device cookie");
        assert_eq!(device_cookie_at("not a cookie", "/signin"), None);
    }

    #[test]
    fn session_cookie_has_the_promised_attributes() {
        let secure = SessionKeys::new(&Secret::new("s"), Duration::from_secs(3600), true);
        let cookie = secure.session_cookie("tok".into());
        for part in ["session=tok", "HttpOnly", "SameSite=Lax", "Path=/", "Secure", "Max-Age=3600"] {
            assert!(cookie.contains(part), "{cookie} lacks {part}");
        }
        let plain = keys(Duration::from_secs(60)).session_cookie("tok".into());
        assert!(!plain.contains("Secure"), "{plain}");
        let cleared = secure.cleared_cookie();
        assert!(cleared.starts_with("session=;"), "{cleared}");
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
    }
}
