//! The orders HTTP API and its OpenAPI description.

mod orders;

use axum::Router;
use sneakerstop_auth::SecuritySchemes;
use utoipa::OpenApi;

use crate::AppState;

pub use orders::OrderView;

/// OpenAPI description of the orders endpoints.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(orders::create, orders::list, orders::get_one, orders::cancel),
    components(schemas(orders::NewOrder, OrderView, sneakerstop_problem::page::PageOf<OrderView>, crate::domain::OrderStatus)),
    modifiers(&SecuritySchemes),
    tags((name = "orders", description = "Reservations that expire unless paid"))
)]
pub struct ApiDoc;

/// The orders router, ready to merge into the server.
pub fn app(state: AppState) -> Router {
    orders::router().with_state(state)
}
