//! The account: signing up, in and out (here or everywhere), the password, the saved card.
//! Sessions are the API's own: its `Set-Cookie` answers are handed to the browser (the
//! known-device cookie re-scoped to this site's sign-in), so a session made here is the same
//! one every API call sees.

use askama::Template;
use axum::Form;
use axum::extract::Query;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{Done, done};
use crate::api::Write;
use crate::page::{Ctx, FormState, Layout, encode, form_failure, local_path, refused_status, see_other};
use crate::views::{Page, PaymentMethod};

/// Where the sign-in form is, and the path the browser's known-device cookie is kept for.
pub(crate) const SIGN_IN: &str = "/signin";

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    l: Layout,
    f: FormState,
    /// `signin` or `signup`.
    action: &'static str,
    next: String,
    /// `next`, percent-encoded for the link to the other form.
    next_query: String,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Credentials {
    email: String,
    password: String,
    #[serde(default)]
    next: String,
}

const CREDENTIAL_FIELDS: &[&str] = &["email", "password"];

pub(crate) async fn signin_form(ctx: Ctx, Query(next): Query<Next>) -> Response {
    credentials_page(&ctx, "signin", FormState::default(), &local_path(next.next.as_deref()), StatusCode::OK)
}

pub(crate) async fn signup_form(ctx: Ctx, Query(next): Query<Next>) -> Response {
    credentials_page(&ctx, "signup", FormState::default(), &local_path(next.next.as_deref()), StatusCode::OK)
}

fn credentials_page(ctx: &Ctx, action: &'static str, f: FormState, next: &str, status: StatusCode) -> Response {
    let title = if action == "signup" { "Create an account" } else { "Sign in" };
    ctx.page(status, &SignInPage { l: ctx.layout(title), f, action, next: next.to_owned(), next_query: encode(next) })
}

pub(crate) async fn signin(ctx: Ctx, Form(form): Form<Credentials>) -> Response {
    enter(ctx, "signin", form).await
}

pub(crate) async fn signup(ctx: Ctx, Form(form): Form<Credentials>) -> Response {
    enter(ctx, "signup", form).await
}

/// Signs in or up through the API and hands its session cookie to the browser.
async fn enter(ctx: Ctx, action: &'static str, form: Credentials) -> Response {
    let next = local_path(Some(&form.next));
    let body = serde_json::json!({ "email": form.email.trim(), "password": form.password });
    let path = format!("/api/users/{action}");
    match ctx
        .shop
        .api
        .send::<serde::de::IgnoredAny, _>(&ctx.caller, Method::POST, &path, Some(&body), Write::default())
        .await
    {
        Ok(sent) => {
            let key = if action == "signup" { "signed-up" } else { "signed-in" };
            see_other(&done(&next, key), handed_on(sent.cookies))
        }
        Err(failure) => {
            // The password is never sent back into the page.
            let f = form_failure(FormState::filled([("email", form.email)]), &failure, CREDENTIAL_FIELDS);
            credentials_page(&ctx, action, f, &next, refused_status(&failure))
        }
    }
}

/// The API's cookies as this site hands them on: the known-device cookie, which the API
/// scopes to its own sign-in path, is scoped to this site's sign-in instead, so the browser
/// sends it back when it signs in here again (and its sign-in keeps a reserved place in the
/// password-hashing queue during a credential-stuffing flood, as the API's own does).
fn handed_on(cookies: Vec<HeaderValue>) -> Vec<HeaderValue> {
    cookies
        .into_iter()
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|text| sneakerstop_auth::device_cookie_at(text, SIGN_IN))
                .and_then(|text| HeaderValue::from_str(&text).ok())
                .unwrap_or(value)
        })
        .collect()
}

pub(crate) async fn signout(ctx: Ctx) -> Response {
    leave(ctx, "/api/users/signout", "signed-out").await
}

pub(crate) async fn signout_everywhere(ctx: Ctx) -> Response {
    leave(ctx, "/api/users/signout/everywhere", "signed-out-everywhere").await
}

async fn leave(ctx: Ctx, path: &str, key: &str) -> Response {
    match ctx.shop.api.send::<serde_json::Value, ()>(&ctx.caller, Method::POST, path, None, Write::default()).await {
        Ok(sent) => see_other(&done("/", key), sent.cookies),
        // Already signed out: nothing to end.
        Err(failure) if failure.is_unauthorized() => see_other(&done("/", "signed-out"), Vec::new()),
        Err(failure) => ctx.failed(failure),
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    l: Layout,
    email: String,
    f: FormState,
}

/// `/account`: links to what the account holds, the password form, sign out everywhere.
pub(crate) async fn overview(ctx: Ctx, Query(done): Query<Done>) -> Response {
    account_page(&ctx, FormState::default(), StatusCode::OK, done.done.as_deref())
}

fn account_page(ctx: &Ctx, f: FormState, status: StatusCode, done: Option<&str>) -> Response {
    let viewer = match ctx.require_viewer() {
        Ok(viewer) => viewer.clone(),
        Err(redirect) => return redirect,
    };
    ctx.page(status, &AccountPage { l: ctx.layout("Your account").with_notice(done), email: viewer.email, f })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PasswordForm {
    current_password: String,
    new_password: String,
}

/// Changes the password: the API ends every other session and sets this one's new cookie.
pub(crate) async fn change_password(ctx: Ctx, Form(form): Form<PasswordForm>) -> Response {
    let body = serde_json::json!({ "currentPassword": form.current_password, "newPassword": form.new_password });
    let sent = ctx
        .shop
        .api
        .send::<serde_json::Value, _>(&ctx.caller, Method::POST, "/api/users/password", Some(&body), Write::default())
        .await;
    match sent {
        Ok(sent) => see_other(&done("/account", "password-changed"), sent.cookies),
        Err(failure) if failure.is_unauthorized() && ctx.viewer.is_none() => ctx.sign_in_first(),
        Err(failure) => {
            let f = form_failure(FormState::default(), &failure, &["currentPassword", "newPassword"]);
            account_page(&ctx, f, refused_status(&failure), None)
        }
    }
}

#[derive(Template)]
#[template(path = "card.html")]
struct CardPage {
    l: Layout,
    cards: Vec<PaymentMethod>,
    f: FormState,
    test_cards: bool,
}

/// `/account/card`: the saved card bids are charged with.
pub(crate) async fn card(ctx: Ctx, Query(done): Query<Done>) -> Response {
    card_page(&ctx, FormState::default(), StatusCode::OK, done.done.as_deref()).await
}

async fn card_page(ctx: &Ctx, f: FormState, status: StatusCode, done: Option<&str>) -> Response {
    if let Err(redirect) = ctx.require_viewer() {
        return redirect;
    }
    match ctx.shop.api.get::<Page<PaymentMethod>>(&ctx.caller, "/api/payment-methods").await {
        Ok(cards) => ctx.page(
            status,
            &CardPage {
                l: ctx.layout("Your card").with_notice(done),
                cards: cards.items,
                f,
                test_cards: ctx.shop.test_cards,
            },
        ),
        Err(failure) => ctx.failed(failure),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CardForm {
    payment_method: String,
}

pub(crate) async fn save_card(ctx: Ctx, Form(form): Form<CardForm>) -> Response {
    let body = serde_json::json!({ "paymentMethod": form.payment_method.trim() });
    let sent = ctx
        .shop
        .api
        .send::<serde_json::Value, _>(&ctx.caller, Method::POST, "/api/payment-methods", Some(&body), Write::default())
        .await;
    match sent {
        Ok(_) => see_other(&done("/account/card", "card-saved"), Vec::new()),
        Err(failure) if failure.is_unauthorized() => ctx.sign_in_first(),
        Err(failure) => {
            let f =
                form_failure(FormState::filled([("paymentMethod", form.payment_method)]), &failure, &["paymentMethod"]);
            card_page(&ctx, f, refused_status(&failure), None).await
        }
    }
}
