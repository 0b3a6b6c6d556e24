//! Keyset pagination by id, shared by the list endpoints that page newest first
//! (`GET /api/orders`, `GET /api/payments`): `limit` and an opaque `cursor` in, a page and
//! `nextCursor` out.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::FieldError;

/// Largest page.
pub const MAX_LIMIT: i64 = 100;
/// Page size when none is asked for.
pub const DEFAULT_LIMIT: i64 = 20;

/// `limit` and `cursor` query parameters, as sent.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `nextCursor` of the previous page.
    #[param(pattern = "^[0-9a-fA-F]{32}$")]
    pub cursor: Option<String>,
}

/// A page of `T`s, as every list endpoint answers.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageOf<T: ToSchema> {
    /// The items, in the endpoint's order.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A valid page request: at most `limit` items with ids below `before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Page size.
    pub limit: i64,
    /// Continue after this id (ids are UUIDv7, so "below" means "older").
    pub before: Option<Uuid>,
}

/// A page's `limit` as sent: [`DEFAULT_LIMIT`] when absent, else a whole number from 1 to
/// [`MAX_LIMIT`] (for endpoints whose cursor is not an id, which parse the rest themselves).
pub fn limit(raw: Option<&str>) -> Result<i64, FieldError> {
    match raw.map(str::parse::<i64>) {
        None => Ok(DEFAULT_LIMIT),
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(FieldError::new("limit", format!("must be a whole number from 1 to {MAX_LIMIT}"))),
    }
}

impl TryFrom<PageParams> for Page {
    type Error = Vec<FieldError>;

    fn try_from(params: PageParams) -> Result<Self, Self::Error> {
        let mut errors = Vec::new();
        let limit = limit(params.limit.as_deref()).unwrap_or_else(|error| {
            errors.push(error);
            DEFAULT_LIMIT
        });
        let before = match params.cursor.as_deref().map(Uuid::try_parse) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => {
                errors.push(FieldError::new("cursor", "is not a cursor this endpoint returned"));
                None
            }
        };
        if errors.is_empty() { Ok(Self { limit, before }) } else { Err(errors) }
    }
}

impl Page {
    /// The page of `rows` (fetched with `limit + 1`), each shown as `view` shows it.
    pub fn answer<R, V: ToSchema>(
        &self,
        mut rows: Vec<R>,
        id: impl Fn(&R) -> Uuid,
        view: impl Fn(R) -> V,
    ) -> PageOf<V> {
        let next_cursor = self.finish(&mut rows, id);
        PageOf { items: rows.into_iter().map(view).collect(), next_cursor }
    }

    /// Trims `rows` (fetched with `limit + 1`) to the page and returns `nextCursor`: the last
    /// item's id when there is more, `None` on the last page.
    pub fn finish<T>(&self, rows: &mut Vec<T>, id: impl Fn(&T) -> Uuid) -> Option<String> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        if rows.len() <= limit {
            return None;
        }
        rows.truncate(limit);
        rows.last().map(|row| id(row).simple().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(limit: Option<&str>, cursor: Option<&str>) -> PageParams {
        PageParams { limit: limit.map(str::to_owned), cursor: cursor.map(str::to_owned) }
    }

    #[test]
    fn pages_default_and_validate() {
        assert_eq!(Page::try_from(params(None, None)), Ok(Page { limit: 20, before: None }));
        let id = Uuid::now_v7();
        let page = Page::try_from(params(Some("5"), Some(&id.simple().to_string()))).unwrap();
        assert_eq!(page, Page { limit: 5, before: Some(id) });
        let errors = Page::try_from(params(Some("0"), Some("nope"))).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["limit", "cursor"]);
        assert!(Page::try_from(params(Some("101"), None)).is_err());
    }

    #[test]
    fn finish_trims_and_points_at_the_last_item() {
        let page = Page { limit: 2, before: None };
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let mut rows = ids.clone();
        assert_eq!(page.finish(&mut rows, |id| *id), Some(ids[1].simple().to_string()));
        assert_eq!(rows, ids[..2]);
        let mut last = ids[..2].to_vec();
        assert_eq!(page.finish(&mut last, |id| *id), None);
        assert_eq!(last.len(), 2);
    }
}
