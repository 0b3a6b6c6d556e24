//! What a buyer has going: orders (a reserved one shows its deadline and the pay step) and
//! bids (and why one was declined).

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{Done, Paged, at_cursor, done, labelled, next_page, path_id};
use crate::api::Write;
use crate::page::{Ctx, FormState, Layout, form_failure, refused_status, see_other};
use crate::views::{Bid, Listing, Order, Page, Payment, Product};

/// Orders or bids per page of the account's lists.
const PER_PAGE: u32 = 50;

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    l: Layout,
    /// Each order and what it bought (the listing's title).
    orders: Vec<(Order, String)>,
    next: Option<String>,
}

/// `/account/orders`: the buyer's orders, newest first.
pub(crate) async fn list(ctx: Ctx, Query(paged): Query<Paged>) -> Response {
    if let Err(redirect) = ctx.require_viewer() {
        return redirect;
    }
    let path = at_cursor(&format!("/api/orders?limit={PER_PAGE}"), paged.cursor.as_deref());
    let page = match ctx.shop.api.get::<Page<Order>>(&ctx.caller, &path).await {
        Ok(page) => page,
        Err(failure) => return ctx.failed(failure),
    };
    let orders = labelled(
        &ctx,
        page.items,
        |o: &Order| o.sneaker_id,
        |id| format!("/api/sneakers/{id}"),
        |l: Listing| l.title,
        "a pair",
    )
    .await;
    ctx.ok(&OrdersPage {
        l: ctx.layout("Your orders").with_notice(paged.done.as_deref()),
        orders,
        next: next_page("/account/orders?", page.next_cursor),
    })
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    l: Layout,
    order: Order,
    /// The pair's listing, when it could be read.
    listing: Option<Listing>,
    f: FormState,
    test_cards: bool,
    /// The pay form's `Idempotency-Key`: a double click pays once.
    pay_key: String,
}

/// `/account/orders/{id}`: one order; while reserved, its deadline and the pay form.
pub(crate) async fn show(ctx: Ctx, Path(id): Path<String>, Query(done): Query<Done>) -> Response {
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    order_page(&ctx, id, FormState::default(), StatusCode::OK, done.done.as_deref()).await
}

async fn order_page(ctx: &Ctx, id: uuid::Uuid, f: FormState, status: StatusCode, done: Option<&str>) -> Response {
    if let Err(redirect) = ctx.require_viewer() {
        return redirect;
    }
    let order = match ctx.shop.api.get::<Order>(&ctx.caller, &format!("/api/orders/{id}")).await {
        Ok(order) => order,
        Err(failure) => return ctx.failed(failure),
    };
    let listing = ctx.shop.api.get::<Listing>(&ctx.caller, &format!("/api/sneakers/{}", order.sneaker_id)).await.ok();
    ctx.page(
        status,
        &OrderPage {
            l: ctx.layout("Order").with_notice(done),
            order,
            listing,
            f,
            test_cards: ctx.shop.test_cards,
            pay_key: super::form_key(),
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct PayForm {
    token: String,
    #[serde(default, rename = "idempotencyKey")]
    idempotency_key: String,
}

/// Pays a reserved order with the card token typed (a declined card is shown by the field).
pub(crate) async fn pay(ctx: Ctx, Path(id): Path<String>, Form(form): Form<PayForm>) -> Response {
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    let body = serde_json::json!({ "orderId": id, "token": form.token.trim() });
    let write =
        Write { idempotency_key: Some(form.idempotency_key.as_str()).filter(|k| !k.is_empty()), if_match: None };
    match ctx.shop.api.send::<Payment, _>(&ctx.caller, Method::POST, "/api/payments", Some(&body), write).await {
        Ok(sent) if sent.value.status == "declined" => {
            let reason = sent.value.failure_reason.unwrap_or_else(|| "declined".to_owned());
            let f = FormState::filled([("token", form.token)]).with_error("token", &format!("declined: {reason}"));
            order_page(&ctx, id, f, StatusCode::PAYMENT_REQUIRED, None).await
        }
        Ok(_) => see_other(&done(&format!("/account/orders/{id}"), "paid"), Vec::new()),
        Err(failure) if failure.is_unauthorized() => ctx.sign_in_first(),
        Err(failure) => {
            let f = form_failure(FormState::filled([("token", form.token)]), &failure, &["token"]);
            // A declined card's reason is the refusal itself: put it by the card field.
            let f = match (&failure, f.error("token")) {
                (crate::api::Failure::Refused(problem), None) if problem.status == 402 => {
                    let reason = problem.detail.clone().unwrap_or_else(|| problem.title.clone());
                    f.with_error("token", &reason)
                }
                _ => f,
            };
            order_page(&ctx, id, f, refused_status(&failure), None).await
        }
    }
}

/// Cancels a reserved order: the pair goes back on sale.
pub(crate) async fn cancel(ctx: Ctx, Path(id): Path<String>) -> Response {
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    let path = format!("/api/orders/{id}");
    match ctx.shop.api.send::<serde_json::Value, ()>(&ctx.caller, Method::DELETE, &path, None, Write::default()).await {
        Ok(_) => see_other(&done(&format!("/account/orders/{id}"), "order-cancelled"), Vec::new()),
        Err(failure) if failure.is_unauthorized() => ctx.sign_in_first(),
        Err(failure) => {
            let f = form_failure(FormState::default(), &failure, &[]);
            order_page(&ctx, id, f, refused_status(&failure), None).await
        }
    }
}

#[derive(Template)]
#[template(path = "bids.html")]
struct BidsPage {
    l: Layout,
    /// Each bid and its product's name.
    bids: Vec<(Bid, String)>,
    f: FormState,
    next: Option<String>,
}

/// `/account/bids`: the buyer's bids and what became of each.
pub(crate) async fn bids(ctx: Ctx, Query(paged): Query<Paged>) -> Response {
    bids_page(&ctx, paged, FormState::default(), StatusCode::OK).await
}

async fn bids_page(ctx: &Ctx, paged: Paged, f: FormState, status: StatusCode) -> Response {
    if let Err(redirect) = ctx.require_viewer() {
        return redirect;
    }
    let path = at_cursor(&format!("/api/bids?limit={PER_PAGE}"), paged.cursor.as_deref());
    let page = match ctx.shop.api.get::<Page<Bid>>(&ctx.caller, &path).await {
        Ok(page) => page,
        Err(failure) => return ctx.failed(failure),
    };
    let bids = labelled(
        ctx,
        page.items,
        |b: &Bid| b.product_id,
        |id| format!("/api/products/{id}"),
        |p: Product| p.name,
        "the product",
    )
    .await;
    ctx.page(
        status,
        &BidsPage {
            l: ctx.layout("Your bids").with_notice(paged.done.as_deref()),
            bids,
            f,
            next: next_page("/account/bids?", page.next_cursor),
        },
    )
}

/// Takes an open bid off its book.
pub(crate) async fn cancel_bid(ctx: Ctx, Path(id): Path<String>) -> Response {
    let id = match path_id(&ctx, &id) {
        Ok(id) => id,
        Err(page) => return page,
    };
    let path = format!("/api/bids/{id}");
    match ctx.shop.api.send::<serde_json::Value, ()>(&ctx.caller, Method::DELETE, &path, None, Write::default()).await {
        Ok(_) => see_other(&done("/account/bids", "bid-cancelled"), Vec::new()),
        Err(failure) if failure.is_unauthorized() => ctx.sign_in_first(),
        Err(failure) => {
            let f = form_failure(FormState::default(), &failure, &[]);
            bids_page(&ctx, Paged::default(), f, refused_status(&failure)).await
        }
    }
}
