//! Admin: creating products and correcting them. The API decides who is an admin; these
//! pages only spare others a form they cannot send.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{done, form_key, number, optional_text, path_id};
use crate::api::Write;
use crate::page::{Ctx, FormState, Layout, encode, form_failure, refused_status, see_other};
use crate::views::{Page, Product, amount, size};

/// The admin pages are for admins: others get 403 (the API would refuse their forms too).
fn admin_only(ctx: &Ctx) -> Result<(), Response> {
    match &ctx.viewer {
        None => Err(ctx.sign_in_first()),
        Some(viewer) if !viewer.admin => {
            Err(ctx.message(StatusCode::FORBIDDEN, "Admins only", "Only an admin may create or correct products."))
        }
        Some(_) => Ok(()),
    }
}

#[derive(Template)]
#[template(path = "admin_products.html")]
struct ProductsPage {
    l: Layout,
    q: String,
    products: Vec<Product>,
    next: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Search {
    #[serde(default)]
    q: String,
    cursor: Option<String>,
    done: Option<String>,
}

/// `/admin/products`: the products, searchable, each with its edit link.
pub(crate) async fn list(ctx: Ctx, Query(search): Query<Search>) -> Response {
    if let Err(page) = admin_only(&ctx) {
        return page;
    }
    let mut path = "/api/products?limit=50".to_owned();
    if !search.q.trim().is_empty() {
        path.push_str(&format!("&q={}", encode(search.q.trim())));
    }
    if let Some(cursor) = &search.cursor {
        path.push_str(&format!("&cursor={}", encode(cursor)));
    }
    match ctx.shop.api.get::<Page<Product>>(&ctx.caller, &path).await {
        Ok(page) => ctx.ok(&ProductsPage {
            l: ctx.layout("Products").with_notice(search.done.as_deref()),
            next: page
                .next_cursor
                .map(|c| format!("/admin/products?q={}&cursor={}", encode(search.q.trim()), encode(&c))),
            q: search.q,
            products: page.items,
        }),
        Err(failure) => ctx.failed(failure),
    }
}

#[derive(Template)]
#[template(path = "product_form.html")]
struct ProductFormPage {
    l: Layout,
    f: FormState,
    action: String,
    /// The version an edit is made against.
    version: Option<i64>,
    key: String,
}

/// A product as its form sends it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProductForm {
    style_code: String,
    name: String,
    brand: String,
    #[serde(default)]
    colorway: String,
    #[serde(default)]
    retail_price: String,
    #[serde(default)]
    release_date: String,
    sizes: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    idempotency_key: String,
}

const PRODUCT_FIELDS: &[&str] = &["styleCode", "name", "brand", "colorway", "retailPrice", "releaseDate", "sizes"];

impl ProductForm {
    fn state(&self) -> FormState {
        FormState::filled([
            ("styleCode", self.style_code.clone()),
            ("name", self.name.clone()),
            ("brand", self.brand.clone()),
            ("colorway", self.colorway.clone()),
            ("retailPrice", self.retail_price.clone()),
            ("releaseDate", self.release_date.clone()),
            ("sizes", self.sizes.clone()),
        ])
    }

    fn body(&self) -> serde_json::Value {
        let sizes: Vec<serde_json::Value> =
            self.sizes.split([',', ' ']).filter(|s| !s.trim().is_empty()).map(number).collect();
        serde_json::json!({
            "styleCode": self.style_code.trim(),
            "name": self.name.trim(),
            "brand": self.brand.trim(),
            "colorway": optional_text(&self.colorway),
            "retailPrice": optional_text(&self.retail_price).map(|p| number(&p)),
            "releaseDate": optional_text(&self.release_date),
            "sizes": sizes,
        })
    }
}

/// `/admin/products/new`.
pub(crate) async fn new_form(ctx: Ctx) -> Response {
    if let Err(page) = admin_only(&ctx) {
        return page;
    }
    form_page(&ctx, FormState::default(), "/admin/products".to_owned(), None, StatusCode::OK)
}

fn form_page(ctx: &Ctx, f: FormState, action: String, version: Option<i64>, status: StatusCode) -> Response {
    let title = if version.is_some() { "Correct a product" } else { "New product" };
    ctx.page(status, &ProductFormPage { l: ctx.layout(title), f, action, version, key: form_key() })
}

/// Creates a product.
pub(crate) async fn create(ctx: Ctx, Form(form): Form<ProductForm>) -> Response {
    if let Err(page) = admin_only(&ctx) {
        return page;
    }
    let write =
        Write { idempotency_key: Some(form.idempotency_key.as_str()).filter(|k| !k.is_empty()), if_match: None };
    let body = form.body();
    match ctx.shop.api.send::<Product, _>(&ctx.caller, Method::POST, "/api/products", Some(&body), write).await {
        Ok(sent) => see_other(&done(&format!("/products/{}", sent.value.id), "product-saved"), Vec::new()),
        Err(failure) if failure.is_unauthorized() => ctx.sign_in_first(),
        Err(failure) => {
            let f = form_failure(form.state(), &failure, PRODUCT_FIELDS);
            form_page(&ctx, f, "/admin/products".to_owned(), None, refused_status(&failure))
        }
    }
}

/// `/admin/products/{id}`: the product's form, as it is now.
pub(crate) async fn edit_form(ctx: Ctx, Path(id): Path<String>) -> Response {
    if let Err(page) = admin_only(&ctx) {
        return page;
    }
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    match ctx.shop.api.get::<Product>(&ctx.caller, &format!("/api/products/{id}")).await {
        Ok(p) => {
            let f = FormState::filled([
                ("styleCode", p.style_code.clone()),
                ("name", p.name.clone()),
                ("brand", p.brand.clone()),
                ("colorway", p.colorway.clone().unwrap_or_default()),
                ("retailPrice", p.retail_price.map(amount).unwrap_or_default()),
                ("releaseDate", p.release_date.map(|d| d.to_string()).unwrap_or_default()),
                ("sizes", p.sizes.iter().map(|s| size(*s)).collect::<Vec<_>>().join(", ")),
            ]);
            form_page(&ctx, f, format!("/admin/products/{id}"), Some(p.version), StatusCode::OK)
        }
        Err(failure) => ctx.failed(failure),
    }
}

/// Saves a correction against the version the form showed.
pub(crate) async fn update(ctx: Ctx, Path(id): Path<String>, Form(form): Form<ProductForm>) -> Response {
    if let Err(page) = admin_only(&ctx) {
        return page;
    }
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    let version = form.version.trim().parse().ok();
    let write = Write { idempotency_key: None, if_match: version };
    let body = form.body();
    let path = format!("/api/products/{id}");
    match ctx.shop.api.send::<Product, _>(&ctx.caller, Method::PUT, &path, Some(&body), write).await {
        Ok(_) => see_other(&done(&format!("/products/{id}"), "product-saved"), Vec::new()),
        Err(failure) if failure.is_unauthorized() => ctx.sign_in_first(),
        Err(failure) => {
            let f = form_failure(form.state(), &failure, PRODUCT_FIELDS);
            form_page(&ctx, f, format!("/admin/products/{id}"), version, refused_status(&failure))
        }
    }
}
