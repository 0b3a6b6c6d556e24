//! The payments HTTP API and its OpenAPI description.

mod methods;
mod payments;

pub use payments::charge_key;

use axum::Router;
use sneakerstop_auth::SecuritySchemes;
use utoipa::OpenApi;

use crate::AppState;

/// OpenAPI description of the payments endpoints.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(payments::create, payments::list, methods::save, methods::list),
    components(schemas(methods::NewPaymentMethod, methods::PaymentMethodView, methods::PaymentMethods, payments::NewPayment, payments::PaymentView, sneakerstop_problem::page::PageOf<payments::PaymentView>)),
    modifiers(&SecuritySchemes),
    tags((name = "payments", description = "Charges and refunds"))
)]
pub struct ApiDoc;

/// The payments router, ready to merge into the server.
pub fn app(state: AppState) -> Router {
    payments::router().merge(methods::router()).with_state(state)
}
