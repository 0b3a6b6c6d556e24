//! Query parameters of the market endpoints, as sent.

use serde::Deserialize;
use utoipa::IntoParams;

/// `GET /api/markets` query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MarketsParams {
    /// The products, comma-separated: 1 to 100 ids (a page of a products list).
    #[param(
        value_type = String,
        required = true,
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(,[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}){0,99}$",
        example = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b,0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"
    )]
    pub products: Option<String>,
}

/// `GET /api/products/{id}/sales` query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SalesParams {
    /// Only this size.
    #[param(value_type = Option<f64>, minimum = 1, maximum = 22, multiple_of = 0.5)]
    pub size: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `nextCursor` of the previous page.
    #[param(pattern = "^[0-9]{1,19}\\.[0-9a-fA-F]{32}$")]
    pub cursor: Option<String>,
}
