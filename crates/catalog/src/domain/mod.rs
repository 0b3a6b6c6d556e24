//! Catalog's rules: listing values that cannot be invalid once constructed, the list query,
//! and the listing aggregate ([`Sneaker`]), whose commands decide every change.

mod product;
mod sneaker;

pub use product::{Product, ProductInput, ProductRefusal, ProductSearch};
pub use sneaker::{Decision, Refusal, Sneaker, Status};

use serde::Deserialize;
use sneakerstop_events::catalog::SneakerStatus;
use sneakerstop_problem::FieldError;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Longest title, in characters.
pub const MAX_TITLE: usize = 120;
/// Longest brand, in characters.
pub const MAX_BRAND: usize = 60;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 2000;
/// Highest price, in whole currency units.
pub const MAX_PRICE: f64 = 100_000.0;
/// Largest page.
pub const MAX_LIMIT: i64 = 100;
/// Days an ask stays on its book when its seller does not say.
pub const DEFAULT_ASK_DAYS: i64 = 30;
/// The longest an ask may stay on its book.
pub const MAX_ASK_DAYS: i64 = 90;
/// Page size when none is asked for.
pub const DEFAULT_LIMIT: i64 = 20;

/// A listing as a seller sends it (`POST` and `PUT`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ListingInput {
    /// 1 to 120 characters, trimmed.
    #[schema(example = "Air Jordan 1 Retro High OG", min_length = 1, max_length = 120)]
    pub title: String,
    /// Price in currency units: at least 0.01, at most 100000, at most 2 decimals.
    #[schema(example = 250.0, minimum = 0.01, maximum = 100000, multiple_of = 0.01)]
    pub price: f64,
    /// US size, 1 to 22 in half steps.
    #[schema(example = 10.5, minimum = 1, maximum = 22, multiple_of = 0.5)]
    pub size: f64,
    /// Brand, up to 60 characters.
    #[schema(example = "Nike", max_length = 60)]
    pub brand: Option<String>,
    /// Description, up to 2000 characters.
    #[schema(example = "Chicago colourway, worn twice", max_length = 2000)]
    pub description: Option<String>,
    /// The product this pair is (see `/api/products`): the listing becomes an ask on that
    /// product's market in its size, which must be one the product is made in. Set when
    /// listing; an edit may repeat it but not change it.
    #[serde(rename = "productId")]
    #[schema(value_type = Option<String>, format = Uuid, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub product_id: Option<Uuid>,
    /// For an ask: days it stays on its book unless sold, 1 to 90 (default 30). Set when
    /// listing; an edit keeps the time it was given.
    #[serde(rename = "expiresInDays", default, deserialize_with = "sneakerstop_problem::whole_number")]
    #[schema(minimum = 1, maximum = 90, example = 30)]
    pub expires_in_days: Option<i64>,
}

/// A valid listing's fields (serialized as the request an `Idempotency-Key` is bound to).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    /// Trimmed title.
    pub title: String,
    /// Price in cents.
    pub price_cents: i64,
    /// Size in half steps.
    pub size: f64,
    /// Trimmed brand, `None` when absent or blank.
    pub brand: Option<String>,
    /// Trimmed description, `None` when absent or blank.
    pub description: Option<String>,
    /// The product, for an ask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<Uuid>,
    /// For an ask: days on its book, if the seller said (only asks expire).
    #[serde(skip)]
    pub expires_in_days: Option<i64>,
}

impl TryFrom<ListingInput> for Listing {
    type Error = Vec<FieldError>;

    fn try_from(input: ListingInput) -> Result<Self, Self::Error> {
        let title = input.title.trim().to_owned();
        let title = match title.chars().count() {
            0 => Err(FieldError::new("title", "is required")),
            n if n > MAX_TITLE => Err(FieldError::new("title", format!("must be at most {MAX_TITLE} characters"))),
            _ => sneakerstop_problem::storable_text("title", &title).map(|()| title),
        };
        let price = price_cents("price", input.price, false);
        let size = size(input.size);
        let brand = optional_text("brand", input.brand, MAX_BRAND);
        let description = optional_text("description", input.description, MAX_DESCRIPTION);
        let expires_in_days = match input.expires_in_days {
            None => Ok(None),
            Some(days) if (1..=MAX_ASK_DAYS).contains(&days) => Ok(Some(days)),
            Some(_) => Err(FieldError::new("expiresInDays", format!("must be from 1 to {MAX_ASK_DAYS}"))),
        };
        match (title, price, size, brand, description, expires_in_days) {
            (Ok(title), Ok(price_cents), Ok(size), Ok(brand), Ok(description), Ok(expires_in_days)) => {
                Ok(Self { title, price_cents, size, brand, description, product_id: input.product_id, expires_in_days })
            }
            (title, price, size, brand, description, expires_in_days) => {
                Err([title.err(), price.err(), size.err(), brand.err(), description.err(), expires_in_days.err()]
                    .into_iter()
                    .flatten()
                    .collect())
            }
        }
    }
}

/// Converts an amount in currency units to cents, insisting on at most two decimals.
/// `allow_zero` is for filters (`minPrice=0`), never for prices.
pub fn price_cents(field: &str, amount: f64, allow_zero: bool) -> Result<i64, FieldError> {
    if !amount.is_finite() || amount < 0.0 || (amount == 0.0 && !allow_zero) {
        return Err(FieldError::new(field, "must be greater than 0"));
    }
    if amount > MAX_PRICE {
        return Err(FieldError::new(field, format!("must be at most {MAX_PRICE}")));
    }
    let cents = (amount * 100.0).round();
    if (amount * 100.0 - cents).abs() > 1e-6 {
        return Err(FieldError::new(field, "must have at most 2 decimal places"));
    }
    // 1e-9 is "more than 0" and has no third decimal worth the name, yet it is 0 cents.
    if cents < 1.0 && !allow_zero {
        return Err(FieldError::new(field, "must be at least 0.01"));
    }
    #[allow(clippy::cast_possible_truncation, reason = "bounded by MAX_PRICE * 100 above")]
    Ok(cents as i64)
}

pub(crate) fn size(size: f64) -> Result<f64, FieldError> {
    if !(1.0..=22.0).contains(&size) || (size * 2.0).fract() != 0.0 {
        return Err(FieldError::new("size", "must be between 1 and 22 in half steps (e.g. 9, 9.5, 10)"));
    }
    Ok(size)
}

pub(crate) fn optional_text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, FieldError> {
    let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else { return Ok(None) };
    if value.chars().count() > max {
        return Err(FieldError::new(field, format!("must be at most {max} characters")));
    }
    sneakerstop_problem::storable_text(field, &value)?;
    Ok(Some(value))
}

/// How a page of listings is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Most recently listed first.
    Newest,
    /// Cheapest first.
    PriceAsc,
    /// Most expensive first.
    PriceDesc,
}

impl Sort {
    fn tag(self) -> char {
        match self {
            Self::Newest => 'n',
            Self::PriceAsc => 'a',
            Self::PriceDesc => 'd',
        }
    }
}

/// Where the previous page ended: the last item's sort key and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The sort the cursor belongs to.
    pub sort: Sort,
    /// The last item's price, for price sorts.
    pub price_cents: i64,
    /// The last item's id.
    pub id: Uuid,
}

impl Cursor {
    /// An opaque token: `<sort>.<price>.<id>`.
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.sort.tag(), self.price_cents, self.id.simple())
    }

    fn decode(token: &str) -> Result<Self, FieldError> {
        let invalid = || FieldError::new("cursor", "is not a cursor this endpoint returned");
        let mut parts = token.split('.');
        let (Some(tag), Some(price), Some(id), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        let sort = [Sort::Newest, Sort::PriceAsc, Sort::PriceDesc]
            .into_iter()
            .find(|sort| tag.len() == 1 && tag.starts_with(sort.tag()))
            .ok_or_else(invalid)?;
        Ok(Self {
            sort,
            price_cents: price.parse().map_err(|_| invalid())?,
            id: Uuid::try_parse(id).map_err(|_| invalid())?,
        })
    }
}

/// `GET /api/sneakers` query parameters, as sent. Each is read as text and validated by
/// [`ListQuery`], so a bad value is a 400 naming it. The OpenAPI types say what the
/// validation accepts: an empty number, id, choice or cursor is refused as the type says; an
/// empty `q` (free text) counts as absent.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Words to find in title or brand (each word matches as a prefix).
    #[serde(default, deserialize_with = "sneakerstop_problem::empty_as_none")]
    #[param(max_length = 100)]
    pub q: Option<String>,
    /// Exact size.
    #[param(value_type = Option<f64>, minimum = 1, maximum = 22, multiple_of = 0.5)]
    pub size: Option<String>,
    /// Lowest price, inclusive.
    #[param(value_type = Option<f64>, minimum = 0, maximum = 100000, multiple_of = 0.01)]
    pub min_price: Option<String>,
    /// Highest price, inclusive.
    #[param(value_type = Option<f64>, minimum = 0, maximum = 100000, multiple_of = 0.01)]
    pub max_price: Option<String>,
    /// `available` (default), `reserved` or `sold`.
    #[param(value_type = Option<StatusParam>)]
    pub status: Option<String>,
    /// Only this seller's listings.
    #[param(value_type = Option<Uuid>)]
    pub seller_id: Option<String>,
    /// `newest` (default), `price_asc` or `price_desc`.
    #[param(value_type = Option<SortParam>)]
    pub sort: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `nextCursor` of the previous page. It carries that page's sort, which wins over `sort`.
    #[param(pattern = "^[nad][.][0-9]{1,10}[.][0-9a-fA-F]{32}$")]
    pub cursor: Option<String>,
}

/// The orders a page of listings can come in (for the OpenAPI document).
#[derive(Debug, ToSchema)]
#[schema(as = Sort)]
#[allow(dead_code, non_camel_case_types, reason = "documents the accepted values only")]
pub enum SortParam {
    newest,
    price_asc,
    price_desc,
}

/// A listing's status (for the OpenAPI document; the type is `SneakerStatus`).
#[derive(Debug, ToSchema)]
#[schema(as = ListingStatus)]
#[allow(dead_code, non_camel_case_types, reason = "documents the accepted values only")]
pub enum StatusParam {
    available,
    reserved,
    sold,
    expired,
}

/// A valid list query.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// A `to_tsquery` expression, when searching.
    pub search: Option<String>,
    /// Exact size.
    pub size: Option<f64>,
    /// Lowest price in cents.
    pub min_price_cents: Option<i64>,
    /// Highest price in cents.
    pub max_price_cents: Option<i64>,
    /// Status filter.
    pub status: SneakerStatus,
    /// Seller filter.
    pub seller_id: Option<Uuid>,
    /// Order.
    pub sort: Sort,
    /// Page size.
    pub limit: i64,
    /// Continue after this.
    pub cursor: Option<Cursor>,
}

impl TryFrom<ListParams> for ListQuery {
    type Error = Vec<FieldError>;

    fn try_from(p: ListParams) -> Result<Self, Self::Error> {
        let mut errors = Vec::new();

        let search = keep(&mut errors, p.q.as_deref().map(search_expression).transpose()).flatten().flatten();
        let size = keep(&mut errors, p.size.as_deref().map(|s| number("size", s).and_then(size)).transpose()).flatten();
        let min = keep(
            &mut errors,
            p.min_price
                .as_deref()
                .map(|s| number("minPrice", s).and_then(|v| price_cents("minPrice", v, true)))
                .transpose(),
        )
        .flatten();
        let max = keep(
            &mut errors,
            p.max_price
                .as_deref()
                .map(|s| number("maxPrice", s).and_then(|v| price_cents("maxPrice", v, true)))
                .transpose(),
        )
        .flatten();
        let status = keep(
            &mut errors,
            match p.status.as_deref() {
                None | Some("available") => Ok(SneakerStatus::Available),
                Some("reserved") => Ok(SneakerStatus::Reserved),
                Some("sold") => Ok(SneakerStatus::Sold),
                Some("expired") => Ok(SneakerStatus::Expired),
                Some("withdrawn") => Ok(SneakerStatus::Withdrawn),
                Some(_) => {
                    Err(FieldError::new("status", "must be one of available, reserved, sold, expired, withdrawn"))
                }
            },
        );
        let seller_id = keep(
            &mut errors,
            p.seller_id
                .as_deref()
                .map(|s| Uuid::try_parse(s).map_err(|_| FieldError::new("sellerId", "must be a UUID")))
                .transpose(),
        )
        .flatten();
        let sort = keep(
            &mut errors,
            match p.sort.as_deref() {
                None | Some("newest") => Ok(Sort::Newest),
                Some("price_asc") => Ok(Sort::PriceAsc),
                Some("price_desc") => Ok(Sort::PriceDesc),
                Some(_) => Err(FieldError::new("sort", "must be one of newest, price_asc, price_desc")),
            },
        );
        let limit =
            keep(
                &mut errors,
                match p.limit.as_deref() {
                    None => Ok(DEFAULT_LIMIT),
                    Some(s) => s.parse::<i64>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                        FieldError::new("limit", format!("must be a whole number from 1 to {MAX_LIMIT}"))
                    }),
                },
            );
        // A cursor carries the sort of the pages it continues, and that sort wins: the next
        // page follows on from the previous one whatever `sort` says.
        let cursor = p.cursor.as_deref().and_then(|token| keep(&mut errors, Cursor::decode(token)));
        let sort = cursor.map(|c| c.sort).or(sort);
        // minPrice above maxPrice is a valid question whose answer is "nothing".
        match (status, sort, limit) {
            (Some(status), Some(sort), Some(limit)) if errors.is_empty() => Ok(Self {
                search,
                size,
                min_price_cents: min,
                max_price_cents: max,
                status,
                seller_id,
                sort,
                limit,
                cursor,
            }),
            _ => Err(errors),
        }
    }
}

/// The value, or `None` after recording the error.
pub(crate) fn keep<T>(errors: &mut Vec<FieldError>, result: Result<T, FieldError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

fn number(field: &str, text: &str) -> Result<f64, FieldError> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| FieldError::new(field, "must be a number"))
}

/// Turns free text into a prefix-matching `to_tsquery('simple', ...)` expression:
/// `air jord` → `air:* & jord:*`. Only letters and digits survive, so the user cannot
/// inject tsquery operators.
pub(crate) fn search_expression(q: &str) -> Result<Option<String>, FieldError> {
    if q.chars().count() > 100 {
        return Err(FieldError::new("q", "must be at most 100 characters"));
    }
    let words: Vec<String> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(8)
        .map(|w| format!("{}:*", w.to_lowercase()))
        .collect();
    Ok((!words.is_empty()).then(|| words.join(" & ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_price_that_rounds_to_no_cents_is_refused() {
        for tiny in [1e-9, 5e-324, 1e-300] {
            let error = price_cents("price", tiny, false).unwrap_err();
            assert_eq!((error.field.as_str(), error.reason.as_str()), ("price", "must be at least 0.01"), "{tiny}");
        }
        assert_eq!(price_cents("price", 0.01, false).unwrap(), 1);
        assert_eq!(price_cents("minPrice", 0.0, true).unwrap(), 0);
    }

    fn input(title: &str, price: f64, size: f64) -> ListingInput {
        ListingInput {
            title: title.into(),
            price,
            size,
            brand: Some("  Nike ".into()),
            description: Some("  ".into()),
            product_id: None,
            expires_in_days: None,
        }
    }

    #[test]
    fn a_valid_listing_is_normalized() {
        let listing = Listing::try_from(input("  Air Max 90 ", 129.99, 9.5)).unwrap();
        assert_eq!(listing.title, "Air Max 90");
        assert_eq!(listing.price_cents, 12_999);
        assert_eq!(listing.brand.as_deref(), Some("Nike"));
        assert_eq!(listing.description, None, "blank becomes absent");
    }

    #[test]
    fn prices_are_positive_bounded_cents() {
        assert_eq!(price_cents("price", 0.01, false), Ok(1));
        assert_eq!(price_cents("price", 19.99, false), Ok(1999));
        assert_eq!(price_cents("price", 100_000.0, false), Ok(10_000_000));
        for (bad, reason) in
            [(0.0, "greater than 0"), (-5.0, "greater than 0"), (100_000.01, "at most"), (1.005, "2 decimal")]
        {
            let err = price_cents("price", bad, false).unwrap_err();
            assert!(err.reason.contains(reason), "{bad}: {}", err.reason);
        }
        assert_eq!(price_cents("minPrice", 0.0, true), Ok(0));
        assert_eq!(sneakerstop_problem::money::units(1999), 19.99, "and back");
    }

    #[test]
    fn sizes_are_half_steps_from_1_to_22() {
        assert!(size(1.0).is_ok() && size(22.0).is_ok() && size(10.5).is_ok());
        for bad in [0.5, 22.5, 10.25, f64::NAN] {
            assert_eq!(size(bad).unwrap_err().field, "size", "{bad}");
        }
    }

    #[test]
    fn every_invalid_field_is_reported() {
        let errors = Listing::try_from(ListingInput {
            title: " ".into(),
            price: 0.0,
            size: 30.0,
            brand: Some("b".repeat(61)),
            description: Some("d".repeat(2001)),
            product_id: None,
            expires_in_days: None,
        })
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["title", "price", "size", "brand", "description"]);
        let long_title = Listing::try_from(input(&"t".repeat(121), 1.0, 9.0)).unwrap_err();
        assert!(long_title[0].reason.contains("120"));
    }

    #[test]
    fn search_text_becomes_a_safe_prefix_query() {
        assert_eq!(search_expression("Air  JORD").unwrap().as_deref(), Some("air:* & jord:*"));
        assert_eq!(search_expression("a&b|!c:*").unwrap().as_deref(), Some("a:* & b:* & c:*"));
        assert_eq!(search_expression("  !! ").unwrap(), None);
        assert!(search_expression(&"x".repeat(101)).is_err());
    }

    #[test]
    fn list_queries_default_and_validate() {
        let query = ListQuery::try_from(ListParams::default()).unwrap();
        assert_eq!(
            (query.status, query.sort, query.limit, query.cursor),
            (SneakerStatus::Available, Sort::Newest, 20, None)
        );

        let errors = ListQuery::try_from(ListParams {
            size: Some("big".into()),
            min_price: Some("50".into()),
            max_price: Some("10".into()),
            status: Some("lost".into()),
            seller_id: Some("nope".into()),
            sort: Some("random".into()),
            limit: Some("101".into()),
            ..ListParams::default()
        })
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["size", "status", "sellerId", "sort", "limit"]);

        // A price range with nothing in it is a question with an empty answer, not an error.
        let empty = ListQuery::try_from(ListParams {
            min_price: Some("50".into()),
            max_price: Some("10".into()),
            ..ListParams::default()
        })
        .unwrap();
        assert_eq!((empty.min_price_cents, empty.max_price_cents), (Some(5000), Some(1000)));
    }

    #[test]
    fn cursors_round_trip_and_belong_to_their_sort() {
        let cursor = Cursor { sort: Sort::PriceAsc, price_cents: 1999, id: Uuid::now_v7() };
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap().sort, cursor.sort, "the cursor knows its sort");
        assert_eq!(Cursor::decode("garbage").unwrap_err().field, "cursor");
    }
}
