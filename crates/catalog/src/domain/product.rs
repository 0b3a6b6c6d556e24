//! Products: the models (style code, name, brand, sizes) that asks and bids refer to.
//!
//! A product is created by an admin, who may correct it later (a typo in the name, a size
//! added); each correction is a new version, announced whole. Its sizes are the books the
//! market keeps for it: an ask (a listing naming the product) or a bid must be in one of
//! them, so a correction may add sizes but never drop one.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use sneakerstop_events::catalog::{Product as Snapshot, ProductEvent};
use sneakerstop_problem::FieldError;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{keep, optional_text, price_cents, size};

/// Longest product name, in characters.
pub const MAX_NAME: usize = 120;
/// Longest colorway, in characters.
pub const MAX_COLORWAY: usize = 80;
/// Most sizes a product may list (every half size from 1 to 22).
pub const MAX_SIZES: usize = 43;

/// A product as an admin sends it (`POST /api/products`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductInput {
    /// The manufacturer's style code: 3 to 20 letters, digits and dashes, starting with a
    /// letter or digit; stored upper case and unique.
    #[schema(example = "DZ5485-612", pattern = "^[A-Za-z0-9][A-Za-z0-9-]{2,19}$")]
    pub style_code: String,
    /// 1 to 120 characters.
    #[schema(example = "Air Jordan 1 Retro High OG", min_length = 1, max_length = 120)]
    pub name: String,
    /// 1 to 60 characters.
    #[schema(example = "Jordan", min_length = 1, max_length = 60)]
    pub brand: String,
    /// Up to 80 characters.
    #[schema(example = "Varsity Red/Black", max_length = 80)]
    pub colorway: Option<String>,
    /// Retail price in currency units, if known.
    #[schema(example = 180.0, minimum = 0.01, maximum = 100000, multiple_of = 0.01)]
    pub retail_price: Option<f64>,
    /// Release date (`YYYY-MM-DD`), if known.
    #[schema(value_type = Option<String>, format = Date, example = "2023-11-18")]
    pub release_date: Option<NaiveDate>,
    /// The US sizes it is made in: 1 to 43 distinct sizes, 1 to 22 in half steps.
    #[schema(example = json!([8.0, 8.5, 9.0, 9.5, 10.0, 10.5, 11.0, 12.0]), min_items = 1, max_items = 43)]
    pub sizes: Vec<f64>,
}

/// `GET /api/products` query parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductSearch {
    /// A style code or its beginning (`DZ5485`), or words of the name or brand (each
    /// matches as a prefix).
    #[serde(default, deserialize_with = "sneakerstop_problem::empty_as_none")]
    #[param(max_length = 100)]
    pub q: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `nextCursor` of the previous page.
    #[param(pattern = "^[0-9a-fA-F]{32}$")]
    pub cursor: Option<String>,
}

/// A product.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Product {
    /// Its id, a UUIDv7.
    pub id: Uuid,
    /// Upper-case style code.
    pub style_code: String,
    /// Name.
    pub name: String,
    /// Brand.
    pub brand: String,
    /// Colorway.
    pub colorway: Option<String>,
    /// Retail price in cents.
    pub retail_price_cents: Option<i64>,
    /// Release date.
    pub release_date: Option<NaiveDate>,
    /// Sizes, ascending.
    pub sizes: Vec<f64>,
    /// 1 when created, + 1 per correction.
    pub version: i64,
    /// The admin who created it.
    pub created_by: Uuid,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it was last changed (created or corrected).
    pub updated_at: DateTime<Utc>,
}

/// Why a correction of a product is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProductRefusal {
    /// Fields that are not valid, each named.
    #[error("invalid product")]
    Invalid(Vec<FieldError>),
    /// `If-Match` named another version.
    #[error("the product is at version {current}")]
    VersionMismatch {
        /// The current version.
        current: i64,
    },
    /// The correction leaves out sizes the product is made in.
    #[error("sizes dropped")]
    SizesDropped(Vec<f64>),
}

impl Product {
    /// Validates `input` into a product created by `admin` at `now`, with every bad field
    /// named at once.
    pub fn create(id: Uuid, admin: Uuid, input: ProductInput, now: DateTime<Utc>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let style_code = input.style_code.trim().to_ascii_uppercase();
        let valid_code = (3..=20).contains(&style_code.len())
            && style_code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && style_code.as_bytes()[0].is_ascii_alphanumeric();
        if !valid_code {
            errors.push(FieldError::new("styleCode", "must be 3 to 20 letters, digits and dashes (e.g. DZ5485-612)"));
        }
        let name = keep(&mut errors, required("name", &input.name, MAX_NAME));
        let brand = keep(&mut errors, required("brand", &input.brand, super::MAX_BRAND));
        let colorway = keep(&mut errors, optional_text("colorway", input.colorway, MAX_COLORWAY));
        let retail = input.retail_price.map(|p| price_cents("retailPrice", p, false)).transpose();
        let retail_price_cents = keep(&mut errors, retail);
        let sizes = keep(&mut errors, sizes(&input.sizes));
        match (name, brand, colorway, retail_price_cents, sizes) {
            (Some(name), Some(brand), Some(colorway), Some(retail_price_cents), Some(sizes)) if errors.is_empty() => {
                Ok(Self {
                    id,
                    style_code,
                    name,
                    brand,
                    colorway,
                    retail_price_cents,
                    release_date: input.release_date,
                    sizes,
                    version: 1,
                    created_by: admin,
                    created_at: now,
                    updated_at: now,
                })
            }
            _ => Err(errors),
        }
    }

    /// The product as corrected by `input` (every field, as when created) at `now`: the next
    /// version. Refused if `if_match` names another version, or if a size it is made in is
    /// left out (its book may hold bids and asks).
    pub fn revise(
        &self,
        input: ProductInput,
        if_match: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Self, ProductRefusal> {
        let revised =
            Self::create(self.id, self.created_by, input, self.created_at).map_err(ProductRefusal::Invalid)?;
        if if_match.is_some_and(|version| version != self.version) {
            return Err(ProductRefusal::VersionMismatch { current: self.version });
        }
        let dropped: Vec<f64> = self.sizes.iter().copied().filter(|size| !revised.has_size(*size)).collect();
        if !dropped.is_empty() {
            return Err(ProductRefusal::SizesDropped(dropped));
        }
        Ok(Self { version: self.version + 1, updated_at: now, ..revised })
    }

    /// Whether the product is made in `size`.
    pub fn has_size(&self, size: f64) -> bool {
        self.sizes.contains(&size)
    }

    /// Refuses a listing of this product in a size it is not made in.
    pub fn check_size(&self, size: f64) -> Result<(), FieldError> {
        if self.has_size(size) {
            Ok(())
        } else {
            Err(FieldError::new(
                "size",
                format!("{} is not made in size {size}; its sizes are {}", self.style_code, self.size_list()),
            ))
        }
    }

    fn size_list(&self) -> String {
        self.sizes.iter().map(f64::to_string).collect::<Vec<_>>().join(", ")
    }

    /// `product.created` (version 1) or `product.updated`, carrying the whole product.
    pub fn event(&self) -> ProductEvent {
        let snapshot = Snapshot {
            product_id: self.id,
            style_code: self.style_code.clone(),
            name: self.name.clone(),
            brand: self.brand.clone(),
            colorway: self.colorway.clone(),
            retail_price_cents: self.retail_price_cents,
            release_date: self.release_date,
            sizes: self.sizes.clone(),
            version: self.version,
            created_at: self.created_at,
        };
        if self.version == 1 { ProductEvent::Created(snapshot) } else { ProductEvent::Updated(snapshot) }
    }
}

fn required(field: &str, value: &str, max: usize) -> Result<String, FieldError> {
    optional_text(field, Some(value.to_owned()), max)?.ok_or_else(|| FieldError::new(field, "is required"))
}

/// Distinct valid sizes, ascending.
fn sizes(raw: &[f64]) -> Result<Vec<f64>, FieldError> {
    if raw.is_empty() || raw.len() > MAX_SIZES {
        return Err(FieldError::new("sizes", format!("must list 1 to {MAX_SIZES} sizes")));
    }
    let mut sizes = Vec::with_capacity(raw.len());
    for &one in raw {
        let one = size(one).map_err(|e| FieldError::new("sizes", e.reason))?;
        if sizes.contains(&one) {
            return Err(FieldError::new("sizes", format!("lists {one} twice")));
        }
        sizes.push(one);
    }
    sizes.sort_by(f64::total_cmp);
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ProductInput {
        ProductInput {
            style_code: " dz5485-612 ".into(),
            name: "Air Jordan 1 Retro High OG".into(),
            brand: "Jordan".into(),
            colorway: Some("Varsity Red/Black".into()),
            retail_price: Some(180.0),
            release_date: NaiveDate::from_ymd_opt(2023, 11, 18),
            sizes: vec![10.5, 9.0, 10.0],
        }
    }

    #[test]
    fn a_valid_product_is_normalized_and_announced_whole() {
        let product = Product::create(Uuid::now_v7(), Uuid::now_v7(), input(), Utc::now()).unwrap();
        assert_eq!(product.style_code, "DZ5485-612");
        assert_eq!(product.sizes, vec![9.0, 10.0, 10.5]);
        assert_eq!(product.retail_price_cents, Some(18_000));
        let ProductEvent::Created(event) = product.event() else { panic!("a new product is announced as created") };
        assert_eq!((event.product_id, event.sizes, event.version), (product.id, product.sizes.clone(), 1));
        assert!(product.check_size(10.5).is_ok());
        let refused = product.check_size(11.0).unwrap_err();
        assert_eq!(refused.field, "size");
        assert!(refused.reason.contains("9, 10, 10.5"), "{}", refused.reason);
    }

    #[test]
    fn every_bad_field_is_named() {
        let bad = ProductInput {
            style_code: "-x".into(),
            name: "  ".into(),
            brand: "b".repeat(61),
            colorway: None,
            retail_price: Some(0.0),
            release_date: None,
            sizes: vec![9.0, 9.0],
        };
        let errors = Product::create(Uuid::now_v7(), Uuid::now_v7(), bad, Utc::now()).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["styleCode", "name", "brand", "retailPrice", "sizes"]);
        for sizes in [vec![], vec![23.0], vec![9.25]] {
            let errors = Product::create(Uuid::now_v7(), Uuid::now_v7(), ProductInput { sizes, ..input() }, Utc::now())
                .unwrap_err();
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].field, "sizes");
        }
    }

    #[test]
    fn a_correction_is_the_next_version_and_may_add_sizes_but_not_drop_one() {
        let product = Product::create(Uuid::now_v7(), Uuid::now_v7(), input(), Utc::now()).unwrap();
        let fixed = ProductInput { name: "Air Jordan 1 High OG".into(), sizes: vec![9.0, 10.0, 10.5, 11.0], ..input() };
        let later = Utc::now();
        let revised = product.revise(fixed, Some(1), later).unwrap();
        assert_eq!((revised.version, revised.updated_at, revised.created_at), (2, later, product.created_at));
        assert_eq!((revised.id, revised.created_by), (product.id, product.created_by));
        assert_eq!(
            (revised.name.as_str(), revised.sizes.clone()),
            ("Air Jordan 1 High OG", vec![9.0, 10.0, 10.5, 11.0])
        );
        let ProductEvent::Updated(event) = revised.event() else { panic!("a correction is announced as updated") };
        assert_eq!((event.version, event.sizes), (2, revised.sizes.clone()));

        let dropped = ProductInput { sizes: vec![9.0, 11.0], ..input() };
        assert_eq!(revised.revise(dropped, None, later), Err(ProductRefusal::SizesDropped(vec![10.0, 10.5])));
        assert_eq!(revised.revise(input(), Some(1), later), Err(ProductRefusal::VersionMismatch { current: 2 }));
        let invalid = ProductInput { name: String::new(), ..input() };
        assert!(
            matches!(revised.revise(invalid, Some(1), later), Err(ProductRefusal::Invalid(errors)) if errors[0].field == "name")
        );
    }
}
