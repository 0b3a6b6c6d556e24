//! What every page shares: who is looking ([`Ctx`]), the layout around each page, forms that
//! remember what was typed and why it was refused, and the pages for "not found",
//! "unavailable" and "forbidden".

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sneakerstop_problem::Problem;

use crate::Shop;
use crate::api::{Caller, Failure};

pub use sneakerstop_auth::cookie_value as cookie;

/// The id of the session the request's cookie names (ended or not), or "" — what CSRF
/// tokens are bound to.
pub fn session_id(shop: &Shop, headers: &HeaderMap) -> String {
    cookie(headers, sneakerstop_auth::SESSION_COOKIE)
        .and_then(|token| shop.keys.session_of(&token))
        .map(|(session, _, _)| session.to_string())
        .unwrap_or_default()
}

/// Who is signed in, for the header and the account pages.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Their id.
    pub id: uuid::Uuid,
    /// Their email.
    pub email: String,
    /// Whether they may manage products.
    pub admin: bool,
}

/// The request as a page sees it: who, their API credentials, their CSRF token.
#[derive(Debug)]
pub struct Ctx {
    pub shop: Arc<Shop>,
    /// Who is signed in (their session cookie verified here; the API checks it again).
    pub viewer: Option<Viewer>,
    /// How the API is called for them.
    pub caller: Caller,
    /// The token this page's forms carry.
    pub csrf: String,
    /// A new CSRF cookie to set (the browser had none).
    new_cookie: Option<HeaderValue>,
    /// The path and query asked for (where sign-in returns to).
    pub here: String,
}

impl FromRequestParts<Arc<Shop>> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, shop: &Arc<Shop>) -> Result<Self, Self::Rejection> {
        Ok(Ctx::of(shop, parts))
    }
}

impl Ctx {
    /// The context of the request `parts`.
    pub fn of(shop: &Arc<Shop>, parts: &Parts) -> Self {
        let session = cookie(&parts.headers, sneakerstop_auth::SESSION_COOKIE);
        let user = session.as_deref().and_then(|token| shop.keys.verify(token));
        // The session forms are bound to: a verified user's, read once; an ended session's
        // id is read again only then (signing out twice is not an error, nor its form).
        let session_id = match &user {
            Some(user) => user.session.to_string(),
            None => session_id(shop, &parts.headers),
        };
        let viewer = user.map(|user| Viewer { id: user.id, email: user.email, admin: user.admin });
        let (cookie_value, new_cookie) = match cookie(&parts.headers, crate::csrf::COOKIE) {
            Some(value) if value.len() == 64 => (value, None),
            _ => {
                let (value, header) = shop.csrf.new_cookie();
                (value, Some(header))
            }
        };
        let csrf = shop.csrf.token(&cookie_value, &session_id);
        let caller = Caller {
            session,
            devices: sneakerstop_auth::cookie_values(&parts.headers, sneakerstop_auth::DEVICE_COOKIE).collect(),
            peer: parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0),
            forwarded: parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).map(str::to_owned),
            traceparent: parts.headers.get("traceparent").cloned(),
        };
        let here = parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Self { shop: shop.clone(), viewer, caller, csrf, new_cookie, here }
    }

    /// The layout around a page titled `title`.
    pub fn layout(&self, title: impl Into<String>) -> Layout {
        Layout { title: title.into(), viewer: self.viewer.clone(), csrf: self.csrf.clone(), notice: None }
    }

    /// `template` as the answer, with `status`.
    pub fn page(&self, status: StatusCode, template: &impl Template) -> Response {
        let mut response = match template.render() {
            Ok(html) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
            Err(error) => {
                tracing::error!(error = %error, "a storefront page failed to render");
                (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render").into_response()
            }
        };
        if let Some(cookie) = &self.new_cookie {
            response.headers_mut().append(header::SET_COOKIE, cookie.clone());
        }
        response
    }

    /// `template` as a 200 answer.
    pub fn ok(&self, template: &impl Template) -> Response {
        self.page(StatusCode::OK, template)
    }

    /// The page for a failed read: not found, sign in first, unavailable, or the refusal.
    pub fn failed(&self, failure: Failure) -> Response {
        match failure {
            failure if failure.is_unauthorized() => self.sign_in_first(),
            Failure::Refused(problem) if problem.status == 404 => self.not_found_page(),
            Failure::Refused(problem) => self.message(
                StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST),
                &problem.title,
                problem.detail.as_deref().unwrap_or("The marketplace refused this."),
            ),
            Failure::Unavailable(why) => self.message(
                StatusCode::SERVICE_UNAVAILABLE,
                "The marketplace is unavailable",
                &format!("Sorry: {why}. Nothing was changed by this page; try again in a moment."),
            ),
        }
    }

    /// To the sign-in page, coming back here afterwards.
    pub fn sign_in_first(&self) -> Response {
        Redirect::to(&format!("/signin?next={}", encode(&self.here))).into_response()
    }

    /// The signed-in viewer, or the redirect to sign in.
    pub fn require_viewer(&self) -> Result<&Viewer, Response> {
        self.viewer.as_ref().ok_or_else(|| self.sign_in_first())
    }

    /// The 404 page.
    pub fn not_found_page(&self) -> Response {
        self.message(StatusCode::NOT_FOUND, "Not found", "There is no such page, or what it showed is gone.")
    }

    /// A page that only says something.
    pub fn message(&self, status: StatusCode, title: &str, text: &str) -> Response {
        self.page(status, &MessagePage { l: self.layout(title), text: text.to_owned() })
    }
}

/// The frame of every page: title, header (who is signed in), the sign-out form's token.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    pub viewer: Option<Viewer>,
    pub csrf: String,
    /// A one-line confirmation after a redirect ("Bid placed").
    pub notice: Option<&'static str>,
}

impl Layout {
    /// With the notice a redirect asked for (`?done=...`), if it is one of ours.
    pub fn with_notice(mut self, done: Option<&str>) -> Self {
        self.notice = done.and_then(notice);
        self
    }
}

/// The confirmations redirects may ask for: a fixed list, so a link cannot put words on
/// the page.
fn notice(key: &str) -> Option<&'static str> {
    Some(match key {
        "signed-up" => "Welcome! Your account is ready.",
        "signed-in" => "Signed in.",
        "signed-out" => "Signed out.",
        "signed-out-everywhere" => "Signed out on every device.",
        "password-changed" => "Password changed. Other devices have been signed out.",
        "ordered" => "Reserved for you: pay before the deadline to complete the order.",
        "paid" => "Payment sent.",
        "order-cancelled" => "Order cancelled.",
        "bid-placed" => "Bid placed.",
        "bid-cancelled" => "Bid cancelled.",
        "listed" => "Listed.",
        "listing-saved" => "Listing saved.",
        "withdrawn" => "Listing withdrawn.",
        "card-saved" => "Card saved.",
        "product-saved" => "Product saved.",
        _ => return None,
    })
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    l: Layout,
    text: String,
}

/// What a form was filled in with and why it was refused, to show it again.
#[derive(Debug, Default, Clone)]
pub struct FormState {
    values: HashMap<String, String>,
    errors: HashMap<String, String>,
    /// The refusal's detail, shown above the form.
    pub detail: Option<String>,
}

impl FormState {
    /// A form filled in with `values`.
    pub fn filled<'a>(values: impl IntoIterator<Item = (&'a str, String)>) -> Self {
        Self { values: values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(), ..Self::default() }
    }

    /// `field`'s value as typed.
    pub fn value(&self, field: &str) -> &str {
        self.values.get(field).map_or("", String::as_str)
    }

    /// Why `field` was refused.
    pub fn error(&self, field: &str) -> Option<&str> {
        self.errors.get(field).map(String::as_str)
    }

    /// `aria-invalid` of `field`: whether it was refused.
    pub fn invalid(&self, field: &str) -> &'static str {
        if self.errors.contains_key(field) { "true" } else { "false" }
    }

    /// With `field` set to `value`.
    pub fn set(mut self, field: &str, value: String) -> Self {
        self.values.insert(field.to_owned(), value);
        self
    }

    /// With `detail` shown above the form.
    pub fn with_detail(mut self, detail: &str) -> Self {
        self.detail = Some(detail.to_owned());
        self
    }

    /// With a field's refusal of our own (checked before calling the API).
    pub fn with_error(mut self, field: &str, reason: &str) -> Self {
        self.errors.insert(field.to_owned(), reason.to_owned());
        self
    }

    /// With the API's refusal: its detail, and each field's reason by field name. A reason
    /// for a field this form does not show stays in the detail.
    pub fn refused(mut self, problem: &Problem, fields: &[&str]) -> Self {
        let mut loose = Vec::new();
        for error in &problem.errors {
            let field = error.field.rsplit('.').next().unwrap_or(&error.field);
            if fields.contains(&field) {
                self.errors.insert(field.to_owned(), error.reason.clone());
            } else {
                loose.push(format!("{}: {}", error.field, error.reason));
            }
        }
        self.detail = Some(if problem.errors.is_empty() || !loose.is_empty() {
            problem.detail.clone().unwrap_or_else(|| problem.title.clone())
        } else {
            problem.title.clone()
        });
        self
    }
}

/// A POST's refusal shown on its form: the status the API gave (or 503).
pub fn refused_status(failure: &Failure) -> StatusCode {
    match failure {
        Failure::Refused(problem) => StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST),
        Failure::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A form's state after `failure`: the API's reasons on `fields`, or "unavailable".
pub fn form_failure(form: FormState, failure: &Failure, fields: &[&str]) -> FormState {
    match failure {
        Failure::Refused(problem) => form.refused(problem, fields),
        Failure::Unavailable(why) => FormState { detail: Some(format!("Not sent: {why}. Try again.")), ..form },
    }
}

/// See other: where a form sends the browser once it succeeded, with the cookies the API set.
pub fn see_other(to: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut response = Redirect::to(to).into_response();
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `text` percent-encoded for a query value.
pub fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Where to go after signing in: only a path on this site (never `//host` or a URL).
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => path.to_owned(),
        _ => "/".to_owned(),
    }
}

/// The 403 a form without a valid CSRF token gets.
pub fn forbidden(shop: &Arc<Shop>, parts: &Parts, text: &str) -> Response {
    Ctx::of(shop, parts).message(StatusCode::FORBIDDEN, "Form refused", text)
}

/// Any path no other route serves: the storefront's 404 page, or problem+json under `/api`
/// (an API client asked for an endpoint that does not exist).
pub async fn not_found(ctx: Ctx, uri: axum::http::Uri) -> Response {
    if uri.path() == "/api" || uri.path().starts_with("/api/") {
        return Problem::not_found("no such endpoint").into_response();
    }
    ctx.not_found_page()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_returns_only_to_this_site() {
        assert_eq!(local_path(Some("/account/orders?x=1")), "/account/orders?x=1");
        for away in ["//evil.example/", "https://evil.example/", "/\\evil.example", "account", ""] {
            assert_eq!(local_path(Some(away)), "/", "{away}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn a_notice_is_one_of_ours_or_none() {
        assert_eq!(notice("bid-placed"), Some("Bid placed."));
        assert_eq!(notice("<script>alert(1)</script>"), None);
    }

    #[test]
    fn refusals_land_on_their_fields() {
        let problem = Problem {
            kind: "x".into(),
            title: "Invalid request".into(),
            status: 400,
            detail: Some("price: must be at least 25.00".into()),
            errors: vec![sneakerstop_problem::FieldError::new("price", "must be at least 25.00")],
        };
        let form = FormState::default().refused(&problem, &["price", "size"]);
        assert_eq!(form.error("price"), Some("must be at least 25.00"));
        assert_eq!(form.invalid("price"), "true");
        assert_eq!(form.invalid("size"), "false");
        let elsewhere = FormState::default().refused(&problem, &["size"]);
        assert_eq!(elsewhere.error("price"), None);
        assert_eq!(elsewhere.detail.as_deref(), Some("price: must be at least 25.00"), "kept in the detail");
    }
}
