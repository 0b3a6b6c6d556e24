//! The storefront's routes, one module per part of the shop, and what wraps them all: the
//! CSRF check on every form, the security headers on every answer, the embedded assets.

mod account;
mod admin;
mod browse;
mod orders;
mod product;
mod selling;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Deserialize;

use crate::Shop;
use crate::page::{Ctx, encode};

/// Only this origin's scripts, styles, images, connections (the market stream) and form
/// targets; no inline script or style; never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const SITE_CSS: &str = include_str!("../../assets/site.css");
const PRODUCT_JS: &str = include_str!("../../assets/product.js");

pub(crate) fn router(shop: Arc<Shop>) -> Router {
    Router::new()
        .route("/", get(browse::products))
        .route("/listings", get(browse::listings))
        .route("/listings/{id}", get(browse::listing))
        .route("/listings/{id}/buy", post(browse::buy))
        .route("/products/{id}", get(product::show))
        .route("/products/{id}/chart", get(product::chart))
        .route("/products/{id}/buy", post(product::buy))
        .route("/products/{id}/bid", post(product::bid))
        .route("/products/{id}/ask", post(product::ask))
        .route("/signup", get(account::signup_form).post(account::signup))
        .route(account::SIGN_IN, get(account::signin_form).post(account::signin))
        .route("/signout", post(account::signout))
        .route("/signout/everywhere", post(account::signout_everywhere))
        .route("/account", get(account::overview))
        .route("/account/password", post(account::change_password))
        .route("/account/card", get(account::card).post(account::save_card))
        .route("/account/orders", get(orders::list))
        .route("/account/orders/{id}", get(orders::show))
        .route("/account/orders/{id}/pay", post(orders::pay))
        .route("/account/orders/{id}/cancel", post(orders::cancel))
        .route("/account/bids", get(orders::bids))
        .route("/account/bids/{id}/cancel", post(orders::cancel_bid))
        .route("/account/listings", get(selling::mine))
        .route("/sell", get(selling::new_form).post(selling::create))
        .route("/account/listings/{id}/edit", get(selling::edit_form).post(selling::update))
        .route("/account/listings/{id}/withdraw", post(selling::withdraw))
        .route("/admin/products", get(admin::list).post(admin::create))
        .route("/admin/products/new", get(admin::new_form))
        .route("/admin/products/{id}", get(admin::edit_form).post(admin::update))
        .route("/static/site.css", get(|| asset("text/css; charset=utf-8", SITE_CSS)))
        .route("/static/product.js", get(|| asset("text/javascript; charset=utf-8", PRODUCT_JS)))
        .route("/{*path}", any(crate::page::not_found))
        .layer(middleware::from_fn_with_state(shop.clone(), crate::csrf::protect))
        .layer(middleware::from_fn(security_headers))
        .with_state(shop)
}

async fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=300")], body).into_response()
}

/// The headers of every storefront answer (the API's own answers are not wrapped by this).
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        // Pages carry a CSRF token and what only this user may see.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// `?done=` after a redirect.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Done {
    pub done: Option<String>,
}

/// A page of one of the account's lists: where it continues and the confirmation to show.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Paged {
    pub cursor: Option<String>,
    pub done: Option<String>,
}

/// `path` (which has a query) continued at `cursor`.
pub(crate) fn at_cursor(path: &str, cursor: Option<&str>) -> String {
    match cursor {
        Some(cursor) => format!("{path}&cursor={}", encode(cursor)),
        None => path.to_owned(),
    }
}

/// The link to the next page of a list shown at `page` (which has a query), if there is one.
pub(crate) fn next_page(page: &str, next_cursor: Option<String>) -> Option<String> {
    next_cursor.map(|cursor| format!("{page}&cursor={}", encode(&cursor)))
}

/// Each of a list page's `items` with what it is about, read at once: the distinct ids
/// (`id_of`) are read from the API (`path_of`) and named (`name_of`), so a row says
/// "Storefront Runner", not "the product". A row whose read failed gets `fallback`.
pub(crate) async fn labelled<I, T: serde::de::DeserializeOwned>(
    ctx: &Ctx,
    items: Vec<I>,
    id_of: impl Fn(&I) -> uuid::Uuid,
    path_of: impl Fn(uuid::Uuid) -> String,
    name_of: impl Fn(T) -> String,
    fallback: &str,
) -> Vec<(I, String)> {
    let mut distinct: Vec<uuid::Uuid> = items.iter().map(&id_of).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let reads = distinct.iter().map(|id| {
        let path = path_of(*id);
        async move { (*id, ctx.shop.api.get::<T>(&ctx.caller, &path).await) }
    });
    let names: std::collections::HashMap<uuid::Uuid, String> = futures::future::join_all(reads)
        .await
        .into_iter()
        .filter_map(|(id, read)| read.ok().map(|value| (id, name_of(value))))
        .collect();
    items
        .into_iter()
        .map(|item| {
            let name = names.get(&id_of(&item)).cloned().unwrap_or_else(|| fallback.to_owned());
            (item, name)
        })
        .collect()
}

/// `path` with `?done=key` (or `&done=key`) for the page to confirm what happened.
pub(crate) fn done(path: &str, key: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}done={}", encode(key))
}

/// A fresh `Idempotency-Key` for a form: sent twice (a double click, a reload), it acts once.
pub(crate) fn form_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A form's amount or size as JSON: the number typed, or the text as it was (the API then
/// names the field and says why it is not a number).
pub(crate) fn number(text: &str) -> serde_json::Value {
    let text = text.trim();
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => serde_json::json!(value),
        _ => serde_json::json!(text),
    }
}

/// A form's optional whole number (days): absent when left empty.
pub(crate) fn optional_number(text: &str) -> Option<serde_json::Value> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.parse::<i64>().map_or_else(|_| serde_json::json!(text), |v| serde_json::json!(v)))
}

/// A form's optional text: absent when left empty.
pub(crate) fn optional_text(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The id in a path, or the 404 page.
pub(crate) fn path_id(ctx: &Ctx, id: &str) -> Result<uuid::Uuid, Response> {
    uuid::Uuid::try_parse(id).map_err(|_| ctx.not_found_page())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_go_to_the_api_as_typed() {
        assert_eq!(number(" 250.5 "), serde_json::json!(250.5));
        assert_eq!(number("abc"), serde_json::json!("abc"));
        assert_eq!(number("NaN"), serde_json::json!("NaN"));
        assert_eq!(optional_number(""), None);
        assert_eq!(optional_number("30"), Some(serde_json::json!(30)));
        assert_eq!(done("/account?x=1", "bid-placed"), "/account?x=1&done=bid-placed");
        assert_eq!(done("/account", "paid"), "/account?done=paid");
    }
}
