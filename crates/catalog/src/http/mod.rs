//! The catalog HTTP API and its OpenAPI description.

mod products;
mod sneakers;

use axum::Router;
use sneakerstop_auth::SecuritySchemes;
use utoipa::OpenApi;

use crate::AppState;

/// OpenAPI description of the catalog endpoints.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(
        sneakers::create,
        sneakers::list,
        sneakers::get_one,
        sneakers::update,
        products::create,
        products::list,
        products::get_one
    ),
    components(schemas(
        crate::domain::ProductInput,
        products::ProductView,
        sneakerstop_problem::page::PageOf<products::ProductView>,
        crate::domain::ListingInput,
        crate::domain::SortParam,
        crate::domain::StatusParam,
        sneakers::SneakerView,
        sneakerstop_problem::page::PageOf<sneakers::SneakerView>
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "catalog", description = "Sneaker listings"),
        (name = "products", description = "Products: the models the market trades, each with a book per size")
    )
)]
pub struct ApiDoc;

/// The catalog router, ready to merge into the server.
pub fn app(state: AppState) -> Router {
    sneakers::router().merge(products::router()).with_state(state)
}
