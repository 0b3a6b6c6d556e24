//! Errors as RFC 9457 problem details (`application/problem+json`).
//!
//! Every error a SneakerStop endpoint returns is a [`Problem`]. Input errors carry
//! `errors: [{field, reason}]` so a client learns which field was wrong and why. Internal
//! errors become [`Problem::internal`]: a generic body for the client and a log line with the
//! whole cause chain for us.
//!
//! [`ApiJson`] replaces `axum::Json` as the body extractor so that a missing body, a wrong
//! content type, malformed JSON or a value of the wrong type is a 400 naming the field,
//! never axum's plain-text 415/422.

pub mod money;
pub mod page;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// JSON path of the field (`email`, `items[2].price`), or the query/header name.
    pub field: String,
    /// Why the value was refused, in words a client developer can act on.
    pub reason: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "https://sneakerstop.dev/problems/validation",
    "title": "Invalid request",
    "status": 400,
    "detail": "email: not a valid email address",
    "errors": [{"field": "email", "reason": "not a valid email address"}]
}))]
pub struct Problem {
    /// A URI naming the kind of problem; stable, so clients can branch on it.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The fields that were invalid, for validation problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

const TYPE_BASE: &str = "https://sneakerstop.dev/problems/";

impl Problem {
    /// A problem of kind `slug` (appended to the SneakerStop problem type base URI).
    pub fn new(status: StatusCode, slug: &str, title: &str) -> Self {
        Self {
            kind: format!("{TYPE_BASE}{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            errors: Vec::new(),
        }
    }

    /// Adds a human-readable detail.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// 400: the request was malformed or a field was invalid.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self::fields(StatusCode::BAD_REQUEST, "validation", "Invalid request", errors)
    }

    /// A problem about fields: each error names its field and why, and the detail lists them.
    fn fields(status: StatusCode, slug: &str, title: &str, errors: Vec<FieldError>) -> Self {
        let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.reason)).collect::<Vec<_>>().join("; ");
        Self { errors, ..Self::new(status, slug, title).with_detail(detail) }
    }

    /// 422: every field is well-formed, but what they say cannot be done as things stand
    /// (a size the named product is not made in); each reason names its field.
    pub fn unprocessable(errors: Vec<FieldError>) -> Self {
        Self::fields(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", "Cannot be done as asked", errors)
    }

    /// 400 for a single invalid field.
    pub fn invalid_field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, reason)])
    }

    /// 401: no valid session.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Not signed in").with_detail(detail)
    }

    /// 403: signed in, but not allowed to touch this resource.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed").with_detail(detail)
    }

    /// 404: no such resource (or not one the caller may see).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found").with_detail(detail)
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(slug: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, slug, "Conflict").with_detail(detail)
    }

    /// 503: a dependency is unavailable; retrying later may work.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable").with_detail(detail)
    }

    /// 429 of kind `slug`, with `Retry-After` set to `wait` rounded up to whole seconds.
    pub fn too_many_requests(slug: &str, title: &str, detail: &str, wait: std::time::Duration) -> Response {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = Self::new(StatusCode::TOO_MANY_REQUESTS, slug, title)
            .with_detail(format!("{detail}; try again in {seconds} s"))
            .into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        response
    }

    /// 500: logs the error with its cause chain and returns a body that reveals nothing.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::error!(error = %chain, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal server error")
            .with_detail("something went wrong on our side; it has been logged")
    }

    /// The HTTP status as a [`StatusCode`].
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let mut response = (status, axum::Json(self)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

/// Largest request body any endpoint accepts; the server applies it with
/// `axum::extract::DefaultBodyLimit`, and [`ApiJson`] reports it as a 413 problem.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body extractor whose every rejection is a 400 problem naming the field.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(Problem::invalid_field(
                "content-type",
                "the body must be JSON, sent with `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "Payload too large")
                    .with_detail(format!("the body may be at most {MAX_BODY_BYTES} bytes"))
            } else {
                Problem::invalid_field("body", format!("could not read the body: {}", rejection.body_text()))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A query-string extractor whose rejection (a duplicated or malformed parameter) is a
/// 400 problem like every other, never axum's plain-text answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(Problem::invalid_field("query", strip_position(&rejection.body_text()))),
        }
    }
}

/// Deserializes a JSON object from `bytes`, turning any failure into a problem that names
/// the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::invalid_field("body", "the body is empty; a JSON object is required"));
    }
    // Every body we accept is an object. (serde would also read a struct from an array.)
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(Problem::invalid_field("body", "must be a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        json_problem(&path, &inner)
    })?;
    deserializer.end().map_err(|err| json_problem(".", &err))?;
    Ok(value)
}

/// For query parameters: `?limit=` is the same as no `limit` (what HTML forms and many
/// clients send for an unset field). Use as `#[serde(default, deserialize_with = ...)]`.
pub fn empty_as_none<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value: Option<String> = Option::deserialize(deserializer)?;
    Ok(value.filter(|v| !v.is_empty()))
}

/// For a body's integer fields: a whole number however JSON spells it. JSON Schema's
/// `integer` (what the OpenAPI document says) counts `21.0` as an integer, and so does this;
/// `21.5` is refused as "must be a whole number". Use as
/// `#[serde(default, deserialize_with = ...)]` on an `Option<i64>`.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(number) => number
            .as_i64()
            .or_else(|| {
                let float = number.as_f64()?;
                #[allow(clippy::cast_possible_truncation, reason = "range and fraction checked first")]
                (float.fract() == 0.0 && float.abs() < 9.0e15).then_some(float as i64)
            })
            .map(Some)
            .ok_or_else(|| D::Error::custom("must be a whole number")),
    }
}

/// Refuses text that PostgreSQL cannot store (U+0000). Every domain type whose text is
/// stored or queried calls it, so such input is a 400 naming the field, never a failed
/// statement (a 500).
pub fn storable_text(field: &str, text: &str) -> Result<(), FieldError> {
    if text.contains('\0') {
        return Err(FieldError::new(field, "must not contain the NUL character (\\u0000)"));
    }
    Ok(())
}

fn json_problem(path: &str, err: &serde_json::Error) -> Problem {
    use serde_json::error::Category;
    let message = strip_position(&err.to_string());
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            Problem::invalid_field("body", format!("malformed JSON: {message}"))
        }
        Category::Data => {
            // serde reports a missing field against its parent, as "missing field `x`".
            if let Some(name) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
                let field = if path == "." { name.to_owned() } else { format!("{path}.{name}") };
                return Problem::invalid_field(field, "is required");
            }
            let field = if path == "." { "body".to_owned() } else { path.to_owned() };
            Problem::invalid_field(field, message)
        }
    }
}

/// serde_json appends " at line 1 column 17"; clients do not need it for a field error.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_postgresql_cannot_store_is_refused_naming_the_field() {
        assert!(storable_text("title", "Air Max 1").is_ok());
        let error = storable_text("title", "Air\0Max").unwrap_err();
        assert_eq!(error.field, "title");
        assert!(error.reason.contains("NUL"), "{error:?}");
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code, reason = "fields are only deserialized")]
    struct Signup {
        email: String,
        password: String,
        address: Option<Address>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code, reason = "fields are only deserialized")]
    struct Address {
        zip: u32,
    }

    fn only_error(problem: &Problem) -> &FieldError {
        assert_eq!(problem.status, 400);
        assert_eq!(problem.errors.len(), 1, "{problem:?}");
        &problem.errors[0]
    }

    #[test]
    fn missing_field_is_named() {
        let problem = parse_json::<Signup>(br#"{"email":"a@b.co"}"#).unwrap_err();
        assert_eq!(only_error(&problem), &FieldError::new("password", "is required"));
    }

    #[test]
    fn wrong_type_names_the_field_and_the_expected_type() {
        let problem = parse_json::<Signup>(br#"{"email":5,"password":"x"}"#).unwrap_err();
        let error = only_error(&problem);
        assert_eq!(error.field, "email");
        assert!(error.reason.contains("expected a string"), "{}", error.reason);
        assert!(!error.reason.contains("line"), "{}", error.reason);
    }

    #[test]
    fn nested_fields_use_their_path() {
        let problem = parse_json::<Signup>(br#"{"email":"a","password":"b","address":{"zip":"x"}}"#).unwrap_err();
        assert_eq!(only_error(&problem).field, "address.zip");
        let problem = parse_json::<Signup>(br#"{"email":"a","password":"b","address":{}}"#).unwrap_err();
        assert_eq!(only_error(&problem), &FieldError::new("address.zip", "is required"));
    }

    #[test]
    fn malformed_and_empty_bodies_are_body_errors() {
        let problem = parse_json::<Signup>(br#"{"email":"#).unwrap_err();
        let error = only_error(&problem);
        assert_eq!(error.field, "body");
        assert!(error.reason.starts_with("malformed JSON"), "{}", error.reason);
        let problem = parse_json::<Signup>(b"  ").unwrap_err();
        assert_eq!(only_error(&problem).field, "body");
        let problem = parse_json::<Signup>(br#"[1,2]"#).unwrap_err();
        assert_eq!(only_error(&problem).field, "body");
        let problem = parse_json::<Signup>(br#"{"email":"a","password":"b"} trailing"#).unwrap_err();
        assert_eq!(only_error(&problem).field, "body");
    }

    #[test]
    fn json_content_types_are_recognised() {
        let ok = |v: &'static str| is_json(Some(&HeaderValue::from_static(v)));
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("Application/JSON"));
        assert!(ok("application/merge-patch+json"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(!is_json(None));
    }

    #[tokio::test]
    async fn problems_render_as_problem_json() {
        let response = Problem::conflict("email-taken", "that email is already registered").into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["type"], "https://sneakerstop.dev/problems/email-taken");
        assert_eq!(json["status"], 409);
        assert_eq!(json["detail"], "that email is already registered");
        assert!(json.get("errors").is_none());
    }
}
