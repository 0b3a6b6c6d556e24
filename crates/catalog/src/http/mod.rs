//! The catalog HTTP API and its OpenAPI description.

mod sneakers;

use axum::Router;
use sneakerstop_auth::SecuritySchemes;
use utoipa::OpenApi;

use crate::AppState;

/// OpenAPI description of the catalog endpoints.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(sneakers::create, sneakers::list, sneakers::get_one, sneakers::update),
    components(schemas(
        crate::domain::ListingInput,
        crate::domain::SortParam,
        crate::domain::StatusParam,
        sneakers::SneakerView,
        sneakerstop_problem::page::PageOf<sneakers::SneakerView>
    )),
    modifiers(&SecuritySchemes),
    tags((name = "catalog", description = "Sneaker listings"))
)]
pub struct ApiDoc;

/// The catalog router, ready to merge into the server.
pub fn app(state: AppState) -> Router {
    sneakers::router().with_state(state)
}
