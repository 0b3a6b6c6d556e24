//! `/api/products`: the models the market trades (create as an admin, view, search).

use anyhow::Context;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde::Serialize;
use sneakerstop_auth::CurrentUser;
use sneakerstop_problem::money::units;
use sneakerstop_problem::page::{Page, PageOf, PageParams};
use sneakerstop_problem::{ApiJson, ApiQuery, FieldError, Problem};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Product, ProductInput, ProductSearch, search_expression};
use crate::store;
use crate::{AppState, CatalogError};

pub(super) fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/products", get(list).post(create))
        .route("/api/products/{id}", get(get_one).put(update))
}

/// A product as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    id: Uuid,
    #[schema(example = "DZ5485-612")]
    style_code: String,
    #[schema(example = "Air Jordan 1 Retro High OG")]
    name: String,
    #[schema(example = "Jordan")]
    brand: String,
    colorway: Option<String>,
    /// Retail price in currency units.
    retail_price: Option<f64>,
    #[schema(value_type = Option<String>, format = Date)]
    release_date: Option<NaiveDate>,
    /// The sizes its market has a book for, ascending.
    sizes: Vec<f64>,
    /// 1 when created, + 1 per correction; send it as `If-Match` to correct it safely.
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Product> for ProductView {
    fn from(p: Product) -> Self {
        Self {
            id: p.id,
            style_code: p.style_code,
            name: p.name,
            brand: p.brand,
            colorway: p.colorway,
            retail_price: p.retail_price_cents.map(units),
            release_date: p.release_date,
            sizes: p.sizes,
            version: p.version,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// Create a product. Admins only (`sneakerstop admin grant <email>`).
#[utoipa::path(
    post, path = "/api/products", tag = "products",
    request_body = ProductInput,
    responses(
        (status = 201, description = "Created; `product.created` is published", body = ProductView),
        (status = 400, description = "Malformed body or invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A product with this style code exists", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(admin_id = %user.id))]
pub(super) async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(input): ApiJson<ProductInput>,
) -> Result<(StatusCode, Json<ProductView>), CatalogError> {
    let user = user.require_admin("create products").map_err(CatalogError::AdminOnly)?;
    let product =
        Product::create(Uuid::now_v7(), user.id, input, Utc::now().trunc_subsecs(6)).map_err(CatalogError::Invalid)?;
    store::insert_product(&state.pool, &product).await?;
    tracing::info!(product_id = %product.id, style_code = %product.style_code, "product created");
    Ok((StatusCode::CREATED, Json(product.into())))
}

/// Correct a product (a typo, a size added): every field, as when creating it. Admins only.
/// Sizes may be added, never dropped: a size's book may hold bids and asks.
#[utoipa::path(
    put, path = "/api/products/{id}", tag = "products",
    params(("id" = Uuid, Path, description = "The product's id"), super::IfMatchHeader),
    request_body = ProductInput,
    responses(
        (status = 200, description = "Corrected; version + 1 and `product.updated` is published", body = ProductView),
        (status = 400, description = "Malformed body, id or If-Match, or an invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another product has this style code", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match does not match the current version", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A size the product is made in is left out", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(product_id = %id, admin_id = %user.id))]
pub(super) async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<ProductInput>,
) -> Result<Json<ProductView>, CatalogError> {
    user.require_admin("correct products").map_err(CatalogError::AdminOnly)?;
    let id = parse_id(&id)?;
    let if_match = super::if_match(&headers)?;
    let _transaction = sneakerstop_db::transaction_span("correcting a product");
    let mut tx = state.pool.begin().await.context("begin correcting a product")?;
    let current = store::lock_product(&mut tx, id).await?.ok_or(CatalogError::ProductNotFound)?;
    let revised = current.revise(input, if_match, Utc::now().trunc_subsecs(6))?;
    store::save_product(&mut tx, &revised).await?;
    tx.commit().await.context("commit the correction")?;
    tracing::info!(product_id = %id, version = revised.version, "product corrected");
    Ok(Json(revised.into()))
}

fn parse_id(id: &str) -> Result<Uuid, CatalogError> {
    Uuid::try_parse(id).map_err(|_| FieldError::new("id", "must be a UUID").into())
}

/// Find products by style code, name or brand, newest first.
#[utoipa::path(
    get, path = "/api/products", tag = "products",
    params(ProductSearch),
    responses(
        (status = 200, description = "A page of products", body = PageOf<ProductView>),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
pub(super) async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ProductSearch>,
) -> Result<Json<PageOf<ProductView>>, CatalogError> {
    let q = params.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let search = q.map(search_expression).transpose();
    let page = Page::try_from(PageParams { limit: params.limit, cursor: params.cursor });
    let (search, page) = match (search, page) {
        (Ok(search), Ok(page)) => (search.flatten(), page),
        (search, page) => {
            let mut errors: Vec<FieldError> = search.err().into_iter().collect();
            errors.extend(page.err().unwrap_or_default());
            return Err(CatalogError::Invalid(errors));
        }
    };
    // A style code is matched by its beginning, upper case (`dz5485` finds DZ5485-612).
    let code = q.map(str::to_ascii_uppercase);
    let rows = store::products(&state.pool, search.as_deref(), code.as_deref(), page.before, page.limit + 1).await?;
    Ok(Json(page.answer(rows, |p| p.id, ProductView::from)))
}

/// View one product.
#[utoipa::path(
    get, path = "/api/products/{id}", tag = "products",
    params(("id" = Uuid, Path, description = "The product's id")),
    responses(
        (status = 200, description = "The product", body = ProductView),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
pub(super) async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ProductView>, CatalogError> {
    let product = store::product(&state.pool, parse_id(&id)?).await?.ok_or(CatalogError::ProductNotFound)?;
    Ok(Json(product.into()))
}
