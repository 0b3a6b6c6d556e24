//! Selling: a seller's listings, listing a pair, editing one while it is available, taking
//! one off sale.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{Paged, at_cursor, done, form_key, next_page, number, optional_number, optional_text, path_id};
use crate::api::Write;
use crate::page::{Ctx, FormState, Layout, form_failure, refused_status, see_other};
use crate::views::{Listing, Page, amount, size};

#[derive(Template)]
#[template(path = "my_listings.html")]
struct MyListingsPage {
    l: Layout,
    /// The status shown (the API lists one status at a time).
    status: &'static str,
    statuses: &'static [&'static str],
    listings: Vec<Listing>,
    f: FormState,
    next: Option<String>,
}

/// Listings per page of a seller's list.
const PER_PAGE: u32 = 50;

/// The statuses a listing can be in, in the order a seller looks for them.
const STATUSES: &[&str] = &["available", "reserved", "sold", "expired", "withdrawn"];

#[derive(Debug, Default, Deserialize)]
pub(crate) struct MineQuery {
    status: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

/// `/account/listings?status=...`: the seller's listings in one status (on sale unless
/// another is asked for), newest first.
pub(crate) async fn mine(ctx: Ctx, Query(query): Query<MineQuery>) -> Response {
    let status = STATUSES.iter().find(|s| Some(**s) == query.status.as_deref()).copied().unwrap_or("available");
    let paged = Paged { cursor: query.cursor, done: query.done };
    mine_page(&ctx, status, paged, FormState::default(), StatusCode::OK).await
}

async fn mine_page(ctx: &Ctx, status: &'static str, paged: Paged, f: FormState, code: StatusCode) -> Response {
    let viewer = match ctx.require_viewer() {
        Ok(viewer) => viewer,
        Err(redirect) => return redirect,
    };
    let path = format!("/api/sneakers?sellerId={}&status={status}&limit={PER_PAGE}", viewer.id);
    match ctx.shop.api.get::<Page<Listing>>(&ctx.caller, &at_cursor(&path, paged.cursor.as_deref())).await {
        Ok(page) => ctx.page(
            code,
            &MyListingsPage {
                l: ctx.layout("Your listings").with_notice(paged.done.as_deref()),
                status,
                statuses: STATUSES,
                listings: page.items,
                f,
                next: next_page(&format!("/account/listings?status={status}"), page.next_cursor),
            },
        ),
        Err(failure) => ctx.failed(failure),
    }
}

#[derive(Template)]
#[template(path = "listing_form.html")]
struct ListingFormPage {
    l: Layout,
    f: FormState,
    /// Where the form posts.
    action: String,
    /// The listing being edited (its version goes with the form), or none for a new one.
    editing: Option<Listing>,
    key: String,
}

/// A listing as its form sends it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListingForm {
    title: String,
    price: String,
    size: String,
    #[serde(default)]
    brand: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    expires_in_days: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    idempotency_key: String,
}

const LISTING_FIELDS: &[&str] = &["title", "price", "size", "brand", "description", "expiresInDays"];

impl ListingForm {
    fn state(&self) -> FormState {
        FormState::filled([
            ("title", self.title.clone()),
            ("price", self.price.clone()),
            ("size", self.size.clone()),
            ("brand", self.brand.clone()),
            ("description", self.description.clone()),
            ("expiresInDays", self.expires_in_days.clone()),
        ])
    }

    /// The API's body; `product` is the listing's product, which an edit keeps.
    fn body(&self, product: Option<uuid::Uuid>) -> serde_json::Value {
        let mut body = serde_json::json!({
            "title": self.title.trim(),
            "price": number(&self.price),
            "size": number(&self.size),
            "brand": optional_text(&self.brand),
            "description": optional_text(&self.description),
            "productId": product,
        });
        if let Some(days) = optional_number(&self.expires_in_days) {
            body["expiresInDays"] = days;
        }
        body
    }
}

/// `/sell`: list a pair (one that is not a product's ask: those are placed from the
/// product's page).
pub(crate) async fn new_form(ctx: Ctx) -> Response {
    if let Err(redirect) = ctx.require_viewer() {
        return redirect;
    }
    form_page(&ctx, FormState::default(), "/sell".to_owned(), None, StatusCode::OK)
}

fn form_page(ctx: &Ctx, f: FormState, action: String, editing: Option<Listing>, status: StatusCode) -> Response {
    let title = if editing.is_some() { "Edit your listing" } else { "List a pair" };
    ctx.page(status, &ListingFormPage { l: ctx.layout(title), f, action, editing, key: form_key() })
}

pub(crate) async fn create(ctx: Ctx, Form(form): Form<ListingForm>) -> Response {
    if let Err(redirect) = ctx.require_viewer() {
        return redirect;
    }
    let write =
        Write { idempotency_key: Some(form.idempotency_key.as_str()).filter(|k| !k.is_empty()), if_match: None };
    let body = form.body(None);
    match ctx.shop.api.send::<Listing, _>(&ctx.caller, Method::POST, "/api/sneakers", Some(&body), write).await {
        Ok(sent) => see_other(&done(&format!("/listings/{}", sent.value.id), "listed"), Vec::new()),
        Err(failure) if failure.is_unauthorized() => ctx.sign_in_first(),
        Err(failure) => {
            let f = form_failure(form.state(), &failure, LISTING_FIELDS);
            form_page(&ctx, f, "/sell".to_owned(), None, refused_status(&failure))
        }
    }
}

/// `/account/listings/{id}/edit`: the listing's form, filled in as it is now.
pub(crate) async fn edit_form(ctx: Ctx, Path(id): Path<String>) -> Response {
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    if let Err(redirect) = ctx.require_viewer() {
        return redirect;
    }
    match ctx.shop.api.get::<Listing>(&ctx.caller, &format!("/api/sneakers/{id}")).await {
        Ok(listing) => {
            let f = FormState::filled([
                ("title", listing.title.clone()),
                ("price", amount(listing.price)),
                ("size", size(listing.size)),
                ("brand", listing.brand_text().to_owned()),
                ("description", listing.description_text().to_owned()),
            ]);
            form_page(&ctx, f, format!("/account/listings/{id}/edit"), Some(listing), StatusCode::OK)
        }
        Err(failure) => ctx.failed(failure),
    }
}

/// Saves an edit, against the version the form was filled from (`If-Match`): an edit made
/// meanwhile elsewhere is not overwritten but reported.
pub(crate) async fn update(ctx: Ctx, Path(id): Path<String>, Form(form): Form<ListingForm>) -> Response {
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    let current = match ctx.shop.api.get::<Listing>(&ctx.caller, &format!("/api/sneakers/{id}")).await {
        Ok(listing) => listing,
        Err(failure) => return ctx.failed(failure),
    };
    let write = Write { idempotency_key: None, if_match: form.version.trim().parse().ok() };
    let body = form.body(current.product_id);
    let path = format!("/api/sneakers/{id}");
    match ctx.shop.api.send::<Listing, _>(&ctx.caller, Method::PUT, &path, Some(&body), write).await {
        Ok(_) => see_other(&done(&format!("/listings/{id}"), "listing-saved"), Vec::new()),
        Err(failure) if failure.is_unauthorized() => ctx.sign_in_first(),
        Err(failure) => {
            let f = form_failure(form.state(), &failure, LISTING_FIELDS);
            form_page(&ctx, f, format!("/account/listings/{id}/edit"), Some(current), refused_status(&failure))
        }
    }
}

/// Only the CSRF token and the version the seller saw.
#[derive(Debug, Deserialize)]
pub(crate) struct Withdraw {
    #[serde(default)]
    version: String,
}

/// Takes an available listing off sale, for good.
pub(crate) async fn withdraw(ctx: Ctx, Path(id): Path<String>, Form(form): Form<Withdraw>) -> Response {
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    let write = Write { idempotency_key: None, if_match: form.version.trim().parse().ok() };
    let path = format!("/api/sneakers/{id}/withdraw");
    match ctx.shop.api.send::<Listing, ()>(&ctx.caller, Method::POST, &path, None, write).await {
        Ok(_) => see_other(&done("/account/listings?status=withdrawn", "withdrawn"), Vec::new()),
        Err(failure) if failure.is_unauthorized() => ctx.sign_in_first(),
        Err(failure) => {
            let f = form_failure(FormState::default(), &failure, &[]);
            mine_page(&ctx, "available", Paged::default(), f, refused_status(&failure)).await
        }
    }
}
