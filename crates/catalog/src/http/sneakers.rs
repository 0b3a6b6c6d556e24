//! `/api/sneakers`: list a pair, browse and search, view one, edit your own.

use anyhow::Context;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use sneakerstop_auth::CurrentUser;
use sneakerstop_events::catalog::SneakerStatus;
use sneakerstop_idempotency::IdempotencyKey;
use sneakerstop_problem::page::PageOf;
use sneakerstop_problem::{ApiJson, ApiQuery, FieldError, Problem};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::cache::{Entry, Key};
use crate::domain::{Cursor, ListParams, ListQuery, Listing, ListingInput, Sneaker};
use crate::store;
use crate::{AppState, CatalogError};
use sneakerstop_messaging::CacheSource;
use sneakerstop_problem::money::units as price_units;

pub(super) fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/sneakers", get(list).post(create))
        .route("/api/sneakers/{id}", get(get_one).put(update))
        .route("/api/sneakers/{id}/withdraw", axum::routing::post(withdraw))
}

/// A listing as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SneakerView {
    id: Uuid,
    #[schema(example = "Air Jordan 1 Retro High OG")]
    title: String,
    /// Price in currency units (two decimals at most).
    #[schema(example = 250.0)]
    price: f64,
    #[schema(example = 10.5)]
    size: f64,
    brand: Option<String>,
    description: Option<String>,
    /// The product, when the listing is an ask on its market; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    product_id: Option<Uuid>,
    /// When an ask leaves its book unless sold; absent for free listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
    seller_id: Uuid,
    /// `available`, `reserved`, `sold` or (an ask whose time ran out) `expired`.
    #[schema(value_type = crate::domain::StatusParam, example = "available")]
    status: SneakerStatus,
    /// Starts at 1, +1 per change; send it as `If-Match` to edit safely.
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Sneaker> for SneakerView {
    fn from(row: Sneaker) -> Self {
        Self {
            status: row.status.into(),
            id: row.id,
            title: row.title,
            price: price_units(row.price_cents),
            size: row.size,
            brand: row.brand,
            description: row.description,
            product_id: row.product_id,
            expires_at: row.expires_at,
            seller_id: row.seller_id,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A page of listings.
pub type SneakerPage = PageOf<SneakerView>;

/// The listing with an `ETag` of its version.
fn with_etag(status: StatusCode, row: Sneaker) -> Response {
    let etag = etag(row.version);
    let mut response = (status, Json(SneakerView::from(row))).into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn etag(version: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{version}\"")).ok()
}

/// An answer from the read cache (or just loaded into it), JSON as it was rendered.
fn cached(entry: Entry, source: CacheSource) -> Response {
    let mut response =
        ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], entry.body).into_response();
    let headers = response.headers_mut();
    headers.insert("x-cache", HeaderValue::from_static(source.as_str()));
    if let Some(etag) = entry.version.and_then(etag) {
        headers.insert(header::ETAG, etag);
    }
    response
}

fn json_bytes(value: &impl Serialize) -> Result<axum::body::Bytes, CatalogError> {
    Ok(serde_json::to_vec(value).context("render JSON")?.into())
}

fn parse_id(id: &str) -> Result<Uuid, CatalogError> {
    Uuid::try_parse(id).map_err(|_| FieldError::new("id", "must be a UUID").into())
}

/// List a pair for sale.
#[utoipa::path(
    post, path = "/api/sneakers", tag = "catalog",
    request_body = ListingInput,
    params(sneakerstop_idempotency::IdempotencyKeyHeader),
    responses(
        (status = 201, description = "Listed; `sneaker.listed` is published", body = SneakerView),
        (status = 400, description = "Malformed body or invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No product has the `productId`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A size the product is not made in, or `expiresInDays` on a listing without `productId`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(seller_id = %user.id))]
pub(super) async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    key: Option<IdempotencyKey>,
    ApiJson(input): ApiJson<ListingInput>,
) -> Result<Response, CatalogError> {
    let listing = Listing::try_from(input).map_err(CatalogError::Invalid)?;
    if listing.product_id.is_none() && listing.expires_in_days.is_some() {
        let only = FieldError::new("expiresInDays", "only an ask (a listing with productId) expires");
        return Err(CatalogError::Unprocessable(vec![only]));
    }
    check_product(&state, listing.product_id, listing.size).await?;
    let listed = Sneaker::list(Uuid::now_v7(), user.id, &listing, now());
    match &key {
        // Without a key: the listing and its event in one statement (the fast path).
        None => store::insert(&state.pool, &listed).await?,
        // With one: claimed, used and answered in one transaction, so a seller retrying
        // after a timeout gets the first listing back instead of listing the pair twice.
        Some(key) => {
            let _transaction = sneakerstop_db::transaction_span("listing with an idempotency key");
            let mut tx = state.pool.begin().await.context("begin listing")?;
            let request = serde_json::to_value(&listing).context("listing as JSON")?;
            let start = sneakerstop_idempotency::begin(
                &mut tx,
                user.id,
                Some(key),
                &request,
                sneakerstop_idempotency::WITHIN_TRANSACTION,
            )
            .await?;
            if let sneakerstop_idempotency::Start::Answer(answer) = start {
                return Ok(answer);
            }
            store::insert(&mut *tx, &listed).await?;
            let view =
                serde_json::to_value(SneakerView::from(listed.sneaker.clone())).context("listing view as JSON")?;
            sneakerstop_idempotency::store(&mut tx, user.id, key, StatusCode::CREATED.as_u16(), &view).await?;
            tx.commit().await.context("commit listing")?;
        }
    }
    state.cache.invalidate();
    tracing::info!(sneaker_id = %listed.sneaker.id, seller_id = %user.id, "sneaker listed");
    Ok(with_etag(StatusCode::CREATED, listed.sneaker))
}

/// An ask's product must exist (404) and be made in its size (422). Products never change
/// or go, so reading it outside the listing's transaction is enough.
async fn check_product(state: &AppState, product: Option<Uuid>, size: f64) -> Result<(), CatalogError> {
    let Some(id) = product else { return Ok(()) };
    let product = store::product(&state.pool, id).await?.ok_or(CatalogError::ProductNotFound)?;
    product.check_size(size).map_err(|e| CatalogError::Unprocessable(vec![e]))
}

/// The time a change is made at, to the microsecond PostgreSQL keeps, so that the event
/// carries the time the row will show.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Browse and search listings, a page at a time.
#[utoipa::path(
    get, path = "/api/sneakers", tag = "catalog",
    params(ListParams),
    responses(
        (status = 200, description = "A page of listings", body = PageOf<SneakerView>,
            headers(("x-cache" = String, description = "`hit`, `miss` or `bypass`: whether the catalog read cache answered"))),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
pub(super) async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, CatalogError> {
    let query = ListQuery::try_from(params).map_err(CatalogError::Invalid)?;
    let load = async {
        let mut rows = store::list(&state.pool, &query).await?;
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|last| Cursor { sort: query.sort, price_cents: last.price_cents, id: last.id }.encode())
        } else {
            None
        };
        let page = SneakerPage { items: rows.into_iter().map(SneakerView::from).collect(), next_cursor };
        Ok::<_, CatalogError>(Entry::new(json_bytes(&page)?, None))
    };
    let (entry, source) = state.cache.get_or_load(Key::Page(raw.unwrap_or_default()), load).await?;
    Ok(cached(entry, source))
}

/// View one listing.
#[utoipa::path(
    get, path = "/api/sneakers/{id}", tag = "catalog",
    params(("id" = Uuid, Path, description = "The listing's id")),
    responses(
        (status = 200, description = "The listing; `ETag` is its version", body = SneakerView,
            headers(
                ("ETag" = String, description = "The listing's version, e.g. `\"3\"`"),
                ("x-cache" = String, description = "`hit`, `miss` or `bypass`: whether the catalog read cache answered"),
            )),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such listing", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
pub(super) async fn get_one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, CatalogError> {
    let id = parse_id(&id)?;
    let load = async {
        let row = store::get(&state.pool, id).await?.ok_or(CatalogError::NotFound)?;
        let version = row.version;
        Ok::<_, CatalogError>(Entry::new(json_bytes(&SneakerView::from(row))?, Some(version)))
    };
    let (entry, source) = state.cache.get_or_load(Key::Listing(id), load).await?;
    Ok(cached(entry, source))
}

/// Take your listing off sale: an available pair becomes `withdrawn`, for good (an ask
/// leaves its product's book). A reserved pair belongs to its order until that order ends.
#[utoipa::path(
    post, path = "/api/sneakers/{id}/withdraw", tag = "catalog",
    params(("id" = Uuid, Path, description = "The listing's id"), super::IfMatchHeader),
    responses(
        (status = 200, description = "Withdrawn; version + 1 and `sneaker.updated` (status `withdrawn`) is published", body = SneakerView),
        (status = 400, description = "Malformed id or If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not your listing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such listing", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The pair is reserved, sold, expired or withdrawn already", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match does not match the current version", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(sneaker_id = %id, seller_id = %user.id))]
pub(super) async fn withdraw(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, CatalogError> {
    let id = parse_id(&id)?;
    let if_match = super::if_match(&headers)?;
    let _transaction = sneakerstop_db::transaction_span("withdrawing a listing");
    let mut tx = state.pool.begin().await.context("begin withdrawing a listing")?;
    let current = store::lock(&mut tx, id).await?.ok_or(CatalogError::NotFound)?;
    let withdrawn = current.withdraw(user.id, if_match, now())?;
    store::save(&mut tx, &withdrawn).await?;
    tx.commit().await.context("commit the withdrawal")?;
    state.cache.invalidate();
    metrics::counter!("catalog_listings_withdrawn_total").increment(1);
    tracing::info!(sneaker_id = %id, version = withdrawn.sneaker.version, "sneaker withdrawn");
    Ok(with_etag(StatusCode::OK, withdrawn.sneaker))
}

/// Edit your listing (title, price, size, brand, description).
#[utoipa::path(
    put, path = "/api/sneakers/{id}", tag = "catalog",
    params(("id" = Uuid, Path, description = "The listing's id"), super::IfMatchHeader),
    request_body = ListingInput,
    responses(
        (status = 200, description = "Updated; version + 1 and `sneaker.updated` is published", body = SneakerView),
        (status = 400, description = "Malformed body, id or If-Match; another `productId`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not your listing", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such listing", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The pair is reserved or sold", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match does not match the current version", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A size the ask's product is not made in, or `expiresInDays` (set when listing)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(sneaker_id = %id, seller_id = %user.id))]
pub(super) async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(input): ApiJson<ListingInput>,
) -> Result<Response, CatalogError> {
    let id = parse_id(&id)?;
    let if_match = super::if_match(&headers)?;
    let listing = Listing::try_from(input).map_err(CatalogError::Invalid)?;
    if listing.expires_in_days.is_some() {
        let fixed = FieldError::new("expiresInDays", "an ask's time is set when listing and cannot change");
        return Err(CatalogError::Unprocessable(vec![fixed]));
    }
    let _transaction = sneakerstop_db::transaction_span("editing a listing");
    let mut tx = state.pool.begin().await.context("begin editing a listing")?;
    let current = store::lock(&mut tx, id).await?.ok_or(CatalogError::NotFound)?;
    let edited = current.edit(user.id, &listing, if_match, now())?;
    check_product(&state, edited.sneaker.product_id, edited.sneaker.size).await?;
    store::save(&mut tx, &edited).await?;
    tx.commit().await.context("commit the edit")?;
    state.cache.invalidate();
    tracing::info!(sneaker_id = %id, version = edited.sneaker.version, "sneaker updated");
    Ok(with_etag(StatusCode::OK, edited.sneaker))
}
