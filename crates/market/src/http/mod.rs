//! The market HTTP API and its OpenAPI description.

mod bids;
mod market;
mod query;

use axum::Router;
use sneakerstop_auth::SecuritySchemes;
use utoipa::OpenApi;

use crate::AppState;

pub use bids::BidView;
pub use market::{MarketView, SaleView, SizeView};

/// OpenAPI description of the market endpoints.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(
        bids::place,
        bids::list,
        bids::get_one,
        bids::cancel,
        market::market,
        market::markets,
        market::sales,
        market::stream
    ),
    components(schemas(
        bids::NewBidInput,
        BidView,
        crate::domain::BidStatus,
        sneakerstop_problem::page::PageOf<BidView>,
        MarketView,
        market::MarketsView,
        market::ProductMarketView,
        SizeView,
        SaleView,
        sneakerstop_problem::page::PageOf<SaleView>
    )),
    modifiers(&SecuritySchemes),
    tags((name = "market", description = "Bids and asks per product and size, matched the moment they cross"))
)]
pub struct ApiDoc;

/// The market router, ready to merge into the server.
pub fn app(state: AppState) -> Router {
    bids::router().merge(market::router()).with_state(state)
}
