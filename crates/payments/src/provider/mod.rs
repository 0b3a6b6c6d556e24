//! Payment providers: who actually moves the money.
//!
//! Two implementations, chosen by `PAYMENT_PROVIDER`: [`simulated::Simulated`] (local use and
//! tests; no money moves) and [`stripe::Stripe`] (Stripe's PaymentIntents and Refunds APIs).
//! Both follow the same rule: a request repeated with the same idempotency key returns the
//! first outcome and never charges (or refunds) twice.

pub mod simulated;
pub mod stripe;

use futures::future::BoxFuture;
use uuid::Uuid;

/// A charge to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Amount in minor units.
    pub amount_cents: i64,
    /// Lower-case ISO currency.
    pub currency: String,
    /// The card token the buyer's client obtained from the provider.
    pub token: String,
    /// Same key, same charge: derived from the order and attempt.
    pub idempotency_key: String,
    /// The order paid for (sent as metadata).
    pub order_id: Uuid,
    /// Set for a charge without the buyer present: `token` is then a saved method's id
    /// (`pm_...`) and this the provider's customer it is attached to, if the provider has
    /// customers (Stripe does; the simulated provider does not).
    pub off_session: Option<OffSession>,
}

/// A charge of a saved method without the buyer present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffSession {
    /// The provider's customer the method is attached to.
    pub customer: Option<String>,
}

/// A payment method to save for later charges without the buyer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveRequest {
    /// The buyer.
    pub buyer_id: Uuid,
    /// The method the buyer's client obtained from the provider (`pm_card_visa`, ...).
    pub payment_method: String,
    /// The buyer's customer at the provider, if one was made before.
    pub customer: Option<String>,
}

/// A saved method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedMethod {
    /// The provider's id of the method, to charge.
    pub method_ref: String,
    /// The provider's customer it is attached to.
    pub customer: Option<String>,
}

/// A successful charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The provider's id for it.
    pub provider_ref: String,
}

/// A successful refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// The provider's id for it.
    pub refund_ref: String,
}

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The card was declined; the reason is the provider's, safe to show the buyer.
    #[error("declined: {0}")]
    Declined(String),
    /// The request was refused as invalid (an unknown token, say); safe to show.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The provider could not be reached, timed out or failed; the outcome is unknown, and
    /// the same request (same idempotency key) may be retried.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

/// A payment provider.
pub trait PaymentProvider: Send + Sync + 'static {
    /// Charges a card.
    fn charge<'a>(&'a self, request: &'a ChargeRequest) -> BoxFuture<'a, Result<Charge, ProviderError>>;

    /// Saves a payment method for charges without the buyer (Stripe: a Customer and a
    /// confirmed SetupIntent for off-session use). Repeating a request saves nothing twice.
    /// A provider that cannot save methods refuses every one.
    fn save_method<'a>(&'a self, request: &'a SaveRequest) -> BoxFuture<'a, Result<SavedMethod, ProviderError>> {
        let _ = request;
        Box::pin(async { Err(ProviderError::Invalid("this payment provider cannot save payment methods".into())) })
    }

    /// Refunds a charge in full.
    fn refund<'a>(
        &'a self,
        provider_ref: &'a str,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<Refund, ProviderError>>;
}

/// The client span of one call to the payment provider (`charge`, `refund`), whichever it is;
/// Stripe's HTTP request is its child.
pub fn provider_span(operation: &'static str) -> tracing::Span {
    tracing::info_span!(
        "provider",
        otel.name = format!("payment provider {operation}"),
        otel.kind = "client",
        payment.operation = operation,
    )
}
