//! The catalog HTTP API and its OpenAPI description.

mod products;
mod sneakers;

use axum::Router;
use axum::http::{HeaderMap, header};
use sneakerstop_auth::SecuritySchemes;
use sneakerstop_problem::FieldError;
use utoipa::OpenApi;

use crate::{AppState, CatalogError};

/// OpenAPI description of the catalog endpoints.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(
        sneakers::create,
        sneakers::list,
        sneakers::get_one,
        sneakers::update,
        sneakers::withdraw,
        products::create,
        products::list,
        products::get_one,
        products::update
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

/// The `If-Match` header as an OpenAPI parameter: `params(IfMatchHeader)` on every edit
/// that takes one (read with [`if_match`]).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
struct IfMatchHeader {
    /// The version you last saw (`"3"` or `3`); 412 if it changed since
    #[param(rename = "If-Match", nullable = false, pattern = "^(W/)?\"?[0-9]{1,18}\"?$")]
    #[allow(dead_code, reason = "read by if_match; this type only describes it")]
    if_match: Option<String>,
}

/// `If-Match: "3"` (or `3`, or `W/"3"`) → `Some(3)`: the version of a listing or product the
/// client last saw.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, CatalogError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse::<i64>()
        .map(Some)
        .map_err(|_| FieldError::new("If-Match", "must be the version you last saw, e.g. \"3\"").into())
}
