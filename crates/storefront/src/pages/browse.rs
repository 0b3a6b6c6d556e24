//! Browsing: the products (searchable, each with its lowest ask), the plain listings with
//! the API's filters, and one listing's page with its "buy" button.

use askama::Template;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{Done, done, path_id};
use crate::api::{Failure, Write};
use crate::page::{Ctx, FormState, Layout, encode, form_failure, refused_status, see_other};
use crate::views::{Listing, Markets, Order, Page, Product, ProductMarket, money};

/// Products per page of the home page.
const PRODUCTS_PER_PAGE: usize = 24;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ProductSearch {
    #[serde(default)]
    q: String,
    cursor: Option<String>,
    done: Option<String>,
}

/// A product on the home page, with what a pair costs now.
#[derive(Debug)]
struct Card {
    product: Product,
    lowest_ask: String,
    last_sale: String,
}

#[derive(Template)]
#[template(path = "products.html")]
struct ProductsPage {
    l: Layout,
    q: String,
    cards: Vec<Card>,
    next: Option<String>,
    /// Why prices are missing, when the market did not answer.
    market_note: Option<&'static str>,
}

/// `/`: products matching the search, each with its lowest ask — one call for the page's
/// products and one for their markets, never one per product.
pub(crate) async fn products(ctx: Ctx, Query(search): Query<ProductSearch>) -> Response {
    let mut path = format!("/api/products?limit={PRODUCTS_PER_PAGE}");
    if !search.q.trim().is_empty() {
        path.push_str(&format!("&q={}", encode(search.q.trim())));
    }
    if let Some(cursor) = &search.cursor {
        path.push_str(&format!("&cursor={}", encode(cursor)));
    }
    let page: Page<Product> = match ctx.shop.api.get(&ctx.caller, &path).await {
        Ok(page) => page,
        Err(failure) => return ctx.failed(failure),
    };
    let (mut markets, mut market_note) = (Vec::new(), None);
    if !page.items.is_empty() {
        let ids: Vec<String> = page.items.iter().map(|p| p.id.to_string()).collect();
        match ctx.shop.api.get::<Markets>(&ctx.caller, &format!("/api/markets?products={}", ids.join(","))).await {
            Ok(found) => markets = found.items,
            Err(_) => market_note = Some("Prices are unavailable for a moment; the products are shown without them."),
        }
    }
    let cards = page
        .items
        .into_iter()
        .map(|product| {
            let market: Option<&ProductMarket> = markets.iter().find(|m| m.product_id == product.id);
            Card {
                lowest_ask: market.and_then(|m| m.lowest_ask).map_or_else(|| "No asks yet".to_owned(), money),
                last_sale: market.and_then(|m| m.last_sale.as_ref()).map_or_else(String::new, |s| s.price_text()),
                product,
            }
        })
        .collect();
    let next = page.next_cursor.map(|cursor| format!("/?q={}&cursor={}", encode(search.q.trim()), encode(&cursor)));
    let title = if search.q.trim().is_empty() { "Sneakers" } else { "Search results" };
    ctx.ok(&ProductsPage {
        l: ctx.layout(title).with_notice(search.done.as_deref()),
        q: search.q,
        cards,
        next,
        market_note,
    })
}

/// The listing filters, as the form sends them and the API takes them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListingFilters {
    #[serde(default)]
    q: String,
    #[serde(default)]
    size: String,
    #[serde(default)]
    min_price: String,
    #[serde(default)]
    max_price: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    sort: String,
    cursor: Option<String>,
}

impl ListingFilters {
    /// The filters set, as a query string (without the cursor).
    fn query(&self) -> String {
        [
            ("q", &self.q),
            ("size", &self.size),
            ("minPrice", &self.min_price),
            ("maxPrice", &self.max_price),
            ("status", &self.status),
            ("sort", &self.sort),
        ]
        .iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(name, value)| format!("{name}={}", encode(value.trim())))
        .collect::<Vec<_>>()
        .join("&")
    }
}

#[derive(Template)]
#[template(path = "listings.html")]
struct ListingsPage {
    l: Layout,
    f: FormState,
    status: String,
    sort: String,
    listings: Vec<Listing>,
    next: Option<String>,
}

/// `/listings`: the plain listings, with the API's filters and paging.
pub(crate) async fn listings(ctx: Ctx, Query(filters): Query<ListingFilters>) -> Response {
    let query = filters.query();
    let mut path = format!("/api/sneakers?limit=24&{query}");
    if let Some(cursor) = &filters.cursor {
        path.push_str(&format!("&cursor={}", encode(cursor)));
    }
    let form = FormState::filled([
        ("q", filters.q.clone()),
        ("size", filters.size.clone()),
        ("minPrice", filters.min_price.clone()),
        ("maxPrice", filters.max_price.clone()),
    ]);
    let (form, listings, next, status) = match ctx.shop.api.get::<Page<Listing>>(&ctx.caller, &path).await {
        Ok(page) => {
            let next = page.next_cursor.map(|cursor| format!("/listings?{query}&cursor={}", encode(&cursor)));
            (form, page.items, next, StatusCode::OK)
        }
        // A filter the API refused: the form again, the reason by its field.
        Err(Failure::Refused(problem)) if problem.status == 400 => {
            let form = form.refused(&problem, &["q", "size", "minPrice", "maxPrice", "status", "sort", "cursor"]);
            (form, Vec::new(), None, StatusCode::BAD_REQUEST)
        }
        Err(failure) => return ctx.failed(failure),
    };
    ctx.page(
        status,
        &ListingsPage {
            l: ctx.layout("Listings"),
            f: form,
            status: filters.status,
            sort: filters.sort,
            listings,
            next,
        },
    )
}

#[derive(Template)]
#[template(path = "listing.html")]
struct ListingPage {
    l: Layout,
    listing: Listing,
    f: FormState,
    mine: bool,
}

/// `/listings/{id}`: one listing and, while it is available, its "buy" button.
pub(crate) async fn listing(ctx: Ctx, Path(id): Path<String>, Query(done): Query<Done>) -> Response {
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    show_listing(&ctx, id, FormState::default(), StatusCode::OK, done.done.as_deref()).await
}

async fn show_listing(ctx: &Ctx, id: uuid::Uuid, form: FormState, status: StatusCode, done: Option<&str>) -> Response {
    match ctx.shop.api.get::<Listing>(&ctx.caller, &format!("/api/sneakers/{id}")).await {
        Ok(listing) => {
            let mine = ctx.viewer.as_ref().is_some_and(|v| v.id == listing.seller_id);
            ctx.page(
                status,
                &ListingPage { l: ctx.layout(listing.title.clone()).with_notice(done), listing, f: form, mine },
            )
        }
        Err(failure) => ctx.failed(failure),
    }
}

/// Buys a listing: an order that reserves the pair until its payment deadline.
pub(crate) async fn buy(ctx: Ctx, Path(id): Path<String>) -> Response {
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    if ctx.viewer.is_none() {
        return see_other(&format!("/signin?next={}", encode(&format!("/listings/{id}"))), Vec::new());
    }
    match order(&ctx, id).await {
        Ok(response) => response,
        Err(failure) if failure.is_unauthorized() => ctx.sign_in_first(),
        Err(failure) => {
            let form = form_failure(FormState::default(), &failure, &[]);
            show_listing(&ctx, id, form, refused_status(&failure), None).await
        }
    }
}

/// Orders the pair `sneaker` and sends the buyer to the order, to pay.
pub(crate) async fn order(ctx: &Ctx, sneaker: uuid::Uuid) -> Result<Response, Failure> {
    let body = serde_json::json!({ "sneakerId": sneaker });
    let sent =
        ctx.shop.api.send::<Order, _>(&ctx.caller, Method::POST, "/api/orders", Some(&body), Write::default()).await?;
    Ok(see_other(&done(&format!("/account/orders/{}", sent.value.id), "ordered"), Vec::new()))
}
