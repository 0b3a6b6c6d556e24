//! A product's page: its facts, its market per size (kept live by `product.js` from the
//! market stream), a chart of its sales, and the four ways to trade — buy now at the lowest
//! ask, place a bid, sell now at the highest bid, place an ask.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{done, form_key, number, optional_number, path_id};
use crate::api::{Failure, Write};
use crate::page::{Ctx, FormState, Layout, encode, form_failure, refused_status, see_other};
use crate::views::{Listing, Market, Page, Product, Sale, SizeMarket, money, size};

/// What the chart shows without a size chosen.
const EVERY_SIZE: &str = "every size";

/// Sales the chart draws.
const CHART_SALES: usize = 50;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ProductQuery {
    /// The size whose sales the chart shows (all sizes when absent).
    size: Option<String>,
    done: Option<String>,
}

/// The chart of sales, drawn on the server as SVG (no script needed to see it).
#[derive(Debug, Default)]
struct Chart {
    /// `x,y` points of the line, oldest sale first.
    points: String,
    /// One sentence saying what the chart shows, for those who cannot see it.
    summary: String,
    low: String,
    high: String,
    /// The sales, newest first, as a table beneath.
    sales: Vec<Sale>,
}

impl Chart {
    const WIDTH: f64 = 600.0;
    const HEIGHT: f64 = 180.0;
    const PAD: f64 = 20.0;

    /// When the newest sale drawn was made (milliseconds since the epoch; "" for none):
    /// `product.js` fetches the chart again when the market stream reports a newer one.
    fn latest(&self) -> String {
        self.sales.first().map(|sale| sale.sold_at.timestamp_millis().to_string()).unwrap_or_default()
    }

    fn of(mut sales: Vec<Sale>, of_size: &str) -> Self {
        if sales.is_empty() {
            let summary =
                if of_size == EVERY_SIZE { "No sales yet.".to_owned() } else { format!("No sales of {of_size} yet.") };
            return Self { summary, ..Self::default() };
        }
        if sales.len() == 1 {
            let summary = format!("One sale of {of_size}: {}.", sales[0].price_text());
            return Self { summary, sales, ..Self::default() };
        }
        let low = sales.iter().map(|s| s.price).fold(f64::INFINITY, f64::min);
        let high = sales.iter().map(|s| s.price).fold(f64::NEG_INFINITY, f64::max);
        let span = (high - low).max(1.0);
        let last = (sales.len() - 1) as f64;
        let points = sales
            .iter()
            .rev()
            .enumerate()
            .map(|(i, sale)| {
                let x = Self::PAD + (Self::WIDTH - 2.0 * Self::PAD) * (i as f64 / last);
                let y = Self::HEIGHT - Self::PAD - (Self::HEIGHT - 2.0 * Self::PAD) * ((sale.price - low) / span);
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ");
        let summary = format!(
            "The last {} sales of {of_size}, oldest to newest: from {} to {}; the latest {}.",
            sales.len(),
            money(low),
            money(high),
            money(sales[0].price)
        );
        sales.truncate(10);
        Self { points, summary, low: money(low), high: money(high), sales }
    }
}

#[derive(Template)]
#[template(path = "product.html")]
struct ProductPage {
    l: Layout,
    product: Product,
    rows: Vec<SizeMarket>,
    sizes: Vec<String>,
    /// The size the chart shows, or "" for all.
    chosen: String,
    chart: Chart,
    /// The outcome of a "buy now" or "sell now" that failed.
    trade: FormState,
    bid: FormState,
    ask: FormState,
    bid_key: String,
    ask_key: String,
    signed_in: bool,
}

/// The chart alone, for `product.js` to put in place of the one a page shows.
#[derive(Template)]
#[template(path = "chart.html")]
struct ChartFragment {
    /// The size the chart shows, or "" for all.
    chosen: String,
    chart: Chart,
}

/// The forms' states when the page is shown again after one of them failed.
#[derive(Debug, Default)]
struct Forms {
    trade: FormState,
    bid: FormState,
    ask: FormState,
}

/// `/products/{id}`.
pub(crate) async fn show(ctx: Ctx, Path(id): Path<String>, Query(query): Query<ProductQuery>) -> Response {
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    render(&ctx, id, query.size.as_deref(), Forms::default(), StatusCode::OK, query.done.as_deref()).await
}

/// `/products/{id}/chart`: the sales chart of `/products/{id}` alone, as `product.js`
/// fetches it when a sale is made while the page is open.
pub(crate) async fn chart(ctx: Ctx, Path(id): Path<String>, Query(query): Query<ProductQuery>) -> Response {
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    let chosen = chosen_size(query.size.as_deref());
    match ctx.shop.api.get::<Page<Sale>>(&ctx.caller, &sales_path(id, &chosen)).await {
        Ok(sales) => ctx.ok(&ChartFragment { chart: Chart::of(sales.items, &of_size(&chosen)), chosen }),
        Err(failure) => ctx.failed(failure),
    }
}

/// The size a page's chart shows ("" for every size), from the query's `size`.
fn chosen_size(query: Option<&str>) -> String {
    query.and_then(|s| s.trim().parse::<f64>().ok()).map(size).unwrap_or_default()
}

/// The API read of the sales the chart draws.
fn sales_path(id: uuid::Uuid, chosen: &str) -> String {
    if chosen.is_empty() {
        format!("/api/products/{id}/sales?limit={CHART_SALES}")
    } else {
        format!("/api/products/{id}/sales?limit={CHART_SALES}&size={chosen}")
    }
}

/// What the chart is of, in words.
fn of_size(chosen: &str) -> String {
    if chosen.is_empty() { EVERY_SIZE.to_owned() } else { format!("size {chosen}") }
}

async fn render(
    ctx: &Ctx,
    id: uuid::Uuid,
    chosen: Option<&str>,
    forms: Forms,
    status: StatusCode,
    done: Option<&str>,
) -> Response {
    let chosen = chosen_size(chosen);
    let sales_path = sales_path(id, &chosen);
    let api = &ctx.shop.api;
    let (product_path, market_path) = (format!("/api/products/{id}"), format!("/api/products/{id}/market"));
    // The three reads of the page, at once.
    let (product, market, sales) = tokio::join!(
        api.get::<Product>(&ctx.caller, &product_path),
        api.get::<Market>(&ctx.caller, &market_path),
        api.get::<Page<Sale>>(&ctx.caller, &sales_path),
    );
    let product = match product {
        Ok(product) => product,
        Err(failure) => return ctx.failed(failure),
    };
    // A product created a moment ago may not have reached the market yet: its sizes, empty.
    let rows = match market {
        Ok(market) => market.sizes,
        Err(Failure::Refused(problem)) if problem.status == 404 => product.sizes.iter().map(|s| empty(*s)).collect(),
        Err(failure) => return ctx.failed(failure),
    };
    let sales = sales.map(|page| page.items).unwrap_or_default();
    let sizes = product.sizes.iter().map(|s| size(*s)).collect();
    let forms = Forms {
        bid: with_default_size(forms.bid, &chosen, &product),
        ask: with_default_size(forms.ask, &chosen, &product),
        ..forms
    };
    ctx.page(
        status,
        &ProductPage {
            l: ctx.layout(product.name.clone()).with_notice(done),
            chart: Chart::of(sales, &of_size(&chosen)),
            rows,
            sizes,
            chosen,
            trade: forms.trade,
            bid: forms.bid,
            ask: forms.ask,
            bid_key: form_key(),
            ask_key: form_key(),
            signed_in: ctx.viewer.is_some(),
            product,
        },
    )
}

fn empty(size: f64) -> SizeMarket {
    SizeMarket { size, lowest_ask: None, lowest_ask_id: None, highest_bid: None, asks: 0, bids: 0, last_sale: None }
}

fn with_default_size(form: FormState, chosen: &str, product: &Product) -> FormState {
    if !form.value("size").is_empty() {
        return form;
    }
    let size =
        if chosen.is_empty() { product.sizes.first().map(|s| size(*s)).unwrap_or_default() } else { chosen.to_owned() };
    form.set("size", size)
}

/// "Buy now": the lowest ask the page showed (its listing id).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BuyNow {
    sneaker_id: String,
}

/// Orders the lowest ask the buyer saw; they pay on the order's page.
pub(crate) async fn buy(ctx: Ctx, Path(id): Path<String>, Form(form): Form<BuyNow>) -> Response {
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    if ctx.viewer.is_none() {
        return see_other(&format!("/signin?next={}", encode(&format!("/products/{id}"))), Vec::new());
    }
    let Ok(sneaker) = uuid::Uuid::try_parse(form.sneaker_id.trim()) else {
        let trade = FormState::default().with_detail("Nobody is selling this size right now: place a bid instead.");
        return render(&ctx, id, None, Forms { trade, ..Forms::default() }, StatusCode::CONFLICT, None).await;
    };
    match super::browse::order(&ctx, sneaker).await {
        Ok(response) => response,
        Err(failure) if failure.is_unauthorized() => ctx.sign_in_first(),
        Err(failure) => {
            let trade = form_failure(FormState::default(), &failure, &[]);
            render(&ctx, id, None, Forms { trade, ..Forms::default() }, refused_status(&failure), None).await
        }
    }
}

/// A bid or an ask as the product page's forms send it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Offer {
    size: String,
    price: String,
    #[serde(default)]
    expires_in_days: String,
    #[serde(default)]
    idempotency_key: String,
    /// Set by the "sell now" buttons (an ask at the highest bid).
    #[serde(default)]
    sell_now: String,
}

impl Offer {
    fn form(&self) -> FormState {
        FormState::filled([
            ("size", self.size.clone()),
            ("price", self.price.clone()),
            ("expiresInDays", self.expires_in_days.clone()),
        ])
    }
}

const OFFER_FIELDS: &[&str] = &["size", "price", "expiresInDays"];

/// Places a bid: the most the buyer pays for this size; charged to their saved card when an
/// ask meets it.
pub(crate) async fn bid(ctx: Ctx, Path(id): Path<String>, Form(offer): Form<Offer>) -> Response {
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    if ctx.viewer.is_none() {
        return see_other(&format!("/signin?next={}", encode(&format!("/products/{id}"))), Vec::new());
    }
    let mut body = serde_json::json!({ "productId": id, "size": number(&offer.size), "price": number(&offer.price) });
    if let Some(days) = optional_number(&offer.expires_in_days) {
        body["expiresInDays"] = days;
    }
    let write =
        Write { idempotency_key: Some(offer.idempotency_key.as_str()).filter(|k| !k.is_empty()), if_match: None };
    match ctx.shop.api.send::<serde_json::Value, _>(&ctx.caller, Method::POST, "/api/bids", Some(&body), write).await {
        Ok(_) => see_other(&done("/account/bids", "bid-placed"), Vec::new()),
        Err(failure) if failure.is_unauthorized() => ctx.sign_in_first(),
        Err(failure) => {
            let bid = form_failure(offer.form(), &failure, OFFER_FIELDS);
            let status = refused_status(&failure);
            render(&ctx, id, Some(&offer.size), Forms { bid, ..Forms::default() }, status, None).await
        }
    }
}

/// Places an ask (a listing of this product in a size), or sells now at the highest bid.
pub(crate) async fn ask(ctx: Ctx, Path(id): Path<String>, Form(offer): Form<Offer>) -> Response {
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    if ctx.viewer.is_none() {
        return see_other(&format!("/signin?next={}", encode(&format!("/products/{id}"))), Vec::new());
    }
    let product = match ctx.shop.api.get::<Product>(&ctx.caller, &format!("/api/products/{id}")).await {
        Ok(product) => product,
        Err(failure) => return ctx.failed(failure),
    };
    let mut body = serde_json::json!({
        "title": product.name,
        "brand": product.brand,
        "productId": id,
        "size": number(&offer.size),
        "price": number(&offer.price),
    });
    if let Some(days) = optional_number(&offer.expires_in_days) {
        body["expiresInDays"] = days;
    }
    let write =
        Write { idempotency_key: Some(offer.idempotency_key.as_str()).filter(|k| !k.is_empty()), if_match: None };
    match ctx.shop.api.send::<Listing, _>(&ctx.caller, Method::POST, "/api/sneakers", Some(&body), write).await {
        Ok(sent) => see_other(&done(&format!("/listings/{}", sent.value.id), "listed"), Vec::new()),
        Err(failure) if failure.is_unauthorized() => ctx.sign_in_first(),
        Err(failure) => {
            let status = refused_status(&failure);
            let forms = if offer.sell_now.is_empty() {
                Forms { ask: form_failure(offer.form(), &failure, OFFER_FIELDS), ..Forms::default() }
            } else {
                Forms { trade: form_failure(FormState::default(), &failure, &[]), ..Forms::default() }
            };
            render(&ctx, id, Some(&offer.size), forms, status, None).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(price: f64) -> Sale {
        Sale { size: 10.0, price, sold_at: chrono::Utc::now() }
    }

    #[test]
    fn the_chart_draws_oldest_to_newest_between_the_lowest_and_highest_price() {
        // Newest first, as the API answers.
        let chart = Chart::of(vec![sale(300.0), sale(100.0), sale(200.0)], "size 10");
        let points: Vec<(f64, f64)> = chart
            .points
            .split(' ')
            .map(|p| p.split_once(',').map(|(x, y)| (x.parse().unwrap(), y.parse().unwrap())).unwrap())
            .collect();
        assert_eq!(points.len(), 3);
        assert_eq!(points[0], (Chart::PAD, (Chart::HEIGHT / 2.0)), "the oldest, $200, halfway");
        assert_eq!(points[1].1, Chart::HEIGHT - Chart::PAD, "$100 at the bottom");
        assert_eq!(points[2], (Chart::WIDTH - Chart::PAD, Chart::PAD), "the newest, $300, top right");
        assert_eq!((chart.low.as_str(), chart.high.as_str()), ("$100.00", "$300.00"));
        assert!(chart.summary.contains("the latest $300.00"), "{}", chart.summary);
        assert!(Chart::of(vec![sale(150.0)], "size 10").points.is_empty(), "one sale is no line");
        assert_eq!(Chart::of(Vec::new(), EVERY_SIZE).summary, "No sales yet.");
    }

    #[test]
    fn the_chart_says_when_its_newest_sale_was_made_for_the_script_to_compare() {
        let newest = sale(300.0);
        let at = newest.sold_at.timestamp_millis().to_string();
        assert_eq!(Chart::of(vec![newest.clone(), sale(100.0)], "size 10").latest(), at);
        assert_eq!(Chart::of(vec![newest], "size 10").latest(), at, "one sale, no line, still a time");
        assert_eq!(Chart::of(Vec::new(), EVERY_SIZE).latest(), "");
    }
}
