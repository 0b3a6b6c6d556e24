//! Stripe: PaymentIntents (charge) and Refunds, over Stripe's form-encoded HTTP API.
//!
//! - `POST /v1/payment_intents` with `amount` (cents), `currency`, `confirm=true`,
//!   `payment_method_types[]=card`, `payment_method_data[type]=card`,
//!   `payment_method_data[card][token]=<token>` and `metadata[order_id]`;
//! - off-session (a saved method, the buyer absent): `POST /v1/payment_intents` with
//!   `customer`, `payment_method=<pm_...>`, `off_session=true` and `confirm=true`; a card that
//!   needs its holder (`authentication_required`) is a decline;
//! - saving a method: `POST /v1/customers` once per buyer (`metadata[buyer_id]`), then
//!   `POST /v1/setup_intents` with `customer`, `payment_method`, `confirm=true` and
//!   `usage=off_session`, which attaches the method to the customer;
//! - `POST /v1/refunds` with `payment_intent=<pi_...>`;
//! - both with `Authorization: Bearer <STRIPE_SECRET>` and an `Idempotency-Key` header, so a
//!   retry returns the original result instead of charging again.
//!
//! Stripe's error JSON (`{"error": {"type", "code", "message", ...}}`) is mapped:
//! `card_error` (HTTP 402) → declined, with Stripe's message for the buyer;
//! `invalid_request_error` → invalid; authentication errors, 409 idempotency conflicts,
//! 429 and 5xx, timeouts and connection failures → unavailable (retry is safe).

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use sneakerstop_settings::Secret;
use tracing::Instrument;

use super::{Charge, ChargeRequest, PaymentProvider, ProviderError, Refund, SaveRequest, SavedMethod};

/// The Stripe provider.
#[derive(Debug, Clone)]
pub struct Stripe {
    http: reqwest::Client,
    base: String,
    /// `base`'s host, for the client span's `server.address`.
    host: String,
    secret: Secret,
}

#[derive(Debug, Deserialize)]
struct Object {
    id: String,
    /// Customers have none.
    #[serde(default)]
    status: String,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: StripeError,
}

#[derive(Debug, Deserialize)]
struct StripeError {
    #[serde(rename = "type")]
    kind: String,
    message: Option<String>,
    code: Option<String>,
}

impl Stripe {
    /// A client for the API at `base` (`https://api.stripe.com`), with a per-request timeout.
    pub fn new(base: &str, secret: Secret, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("sneakerstop/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let base = base.trim_end_matches('/').to_owned();
        let host =
            base.split("://").last().and_then(|rest| rest.split(['/', ':']).next()).unwrap_or_default().to_owned();
        Ok(Self { http, base, host, secret })
    }

    async fn post(&self, path: &str, idempotency_key: &str, form: &[(&str, String)]) -> Result<Object, ProviderError> {
        // The HTTP client span (OpenTelemetry's conventions): never the form, never the key.
        let span = tracing::info_span!(
            "stripe",
            otel.name = format!("POST {path}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = "POST",
            server.address = %self.host,
            url.template = path,
            http.response.status_code = tracing::field::Empty,
        );
        let answer = self.send(path, idempotency_key, form).instrument(span.clone()).await;
        if answer.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        answer
    }

    async fn send(&self, path: &str, idempotency_key: &str, form: &[(&str, String)]) -> Result<Object, ProviderError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.secret.expose())
            .header("Idempotency-Key", idempotency_key)
            .form(form)
            .send()
            .await
            // The error text may hold the URL but never the key (it is a header).
            .map_err(|e| ProviderError::Unavailable(format!("could not reach Stripe: {e}")))?;
        let status = response.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        let body =
            response.bytes().await.map_err(|e| ProviderError::Unavailable(format!("reading Stripe's answer: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| {
                ProviderError::Unavailable(format!("Stripe answered {status} with unexpected JSON: {e}"))
            });
        }
        let error = serde_json::from_slice::<ErrorBody>(&body).ok().map(|b| b.error);
        Err(map_error(status.as_u16(), error))
    }
}

fn map_error(status: u16, error: Option<StripeError>) -> ProviderError {
    let message = error.as_ref().and_then(|e| e.message.clone()).unwrap_or_else(|| format!("HTTP {status}"));
    match (status, error.as_ref().map(|e| e.kind.as_str())) {
        (_, Some("card_error")) | (402, _) => ProviderError::Declined(message),
        (401 | 403, _) | (_, Some("authentication_error")) => {
            tracing::error!(status, "Stripe refused our credentials; check STRIPE_SECRET");
            ProviderError::Unavailable("the payment provider refused our credentials".into())
        }
        (409, _) | (_, Some("idempotency_error")) => {
            ProviderError::Unavailable(format!("a request with this idempotency key is in flight: {message}"))
        }
        (429, _) => ProviderError::Unavailable("rate limited by the payment provider".into()),
        (400 | 404, Some("invalid_request_error")) => {
            let code = error.and_then(|e| e.code).map(|c| format!(" ({c})")).unwrap_or_default();
            ProviderError::Invalid(format!("{message}{code}"))
        }
        _ => ProviderError::Unavailable(format!("Stripe answered HTTP {status}: {message}")),
    }
}

impl PaymentProvider for Stripe {
    fn charge<'a>(&'a self, request: &'a ChargeRequest) -> BoxFuture<'a, Result<Charge, ProviderError>> {
        Box::pin(async move {
            let mut form = vec![
                ("amount", request.amount_cents.to_string()),
                ("currency", request.currency.clone()),
                ("confirm", "true".to_owned()),
                ("payment_method_types[]", "card".to_owned()),
                ("metadata[order_id]", request.order_id.to_string()),
            ];
            match &request.off_session {
                None => {
                    form.push(("payment_method_data[type]", "card".to_owned()));
                    form.push(("payment_method_data[card][token]", request.token.clone()));
                }
                Some(off_session) => {
                    form.push(("payment_method", request.token.clone()));
                    form.push(("off_session", "true".to_owned()));
                    if let Some(customer) = &off_session.customer {
                        form.push(("customer", customer.clone()));
                    }
                }
            }
            let intent = self.post("/v1/payment_intents", &request.idempotency_key, &form).await?;
            match intent.status.as_str() {
                "succeeded" => Ok(Charge { provider_ref: intent.id }),
                "processing" => Err(ProviderError::Unavailable(format!("payment {} is still processing", intent.id))),
                other => Err(ProviderError::Declined(format!("the payment needs more from the card holder ({other})"))),
            }
        })
    }

    fn save_method<'a>(&'a self, request: &'a SaveRequest) -> BoxFuture<'a, Result<SavedMethod, ProviderError>> {
        Box::pin(async move {
            let customer = match &request.customer {
                Some(customer) => customer.clone(),
                None => {
                    let key = format!("customer-{}", request.buyer_id);
                    let form = [("metadata[buyer_id]", request.buyer_id.to_string())];
                    self.post("/v1/customers", &key, &form).await?.id
                }
            };
            let form = [
                ("customer", customer.clone()),
                ("payment_method", request.payment_method.clone()),
                ("confirm", "true".to_owned()),
                ("usage", "off_session".to_owned()),
                ("payment_method_types[]", "card".to_owned()),
            ];
            let key = format!("setup-{}-{}", request.buyer_id, request.payment_method);
            let setup = self.post("/v1/setup_intents", &key, &form).await?;
            match setup.status.as_str() {
                "succeeded" => Ok(SavedMethod { method_ref: request.payment_method.clone(), customer: Some(customer) }),
                other => Err(ProviderError::Declined(format!(
                    "the card cannot be saved for later charges without its holder ({other})"
                ))),
            }
        })
    }

    fn refund<'a>(
        &'a self,
        provider_ref: &'a str,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<Refund, ProviderError>> {
        Box::pin(async move {
            let refund =
                self.post("/v1/refunds", idempotency_key, &[("payment_intent", provider_ref.to_owned())]).await?;
            match refund.status.as_str() {
                "succeeded" | "pending" => Ok(Refund { refund_ref: refund.id }),
                other => Err(ProviderError::Unavailable(format!("refund {} is {other}", refund.id))),
            }
        })
    }
}
