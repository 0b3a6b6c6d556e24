//! A provider that moves no money, with Stripe's test tokens:
//! `tok_visa` succeeds, `tok_chargeDeclined` is declined, `tok_processingError` fails as a
//! provider error, anything else is an invalid request. Charges and declines are remembered
//! per idempotency key, as Stripe does.
//!
//! Saved methods are Stripe's test PaymentMethods: `pm_card_visa` (and the other
//! `pm_card_<brand>` of Stripe's list below) saves and charges; `pm_card_chargeDeclined` and
//! `pm_card_visa_chargeDeclined` save, and every charge of them is declined; anything else is
//! an invalid request.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::BoxFuture;

use super::{Charge, ChargeRequest, PaymentProvider, ProviderError, Refund, SaveRequest, SavedMethod};

/// Stripe's test PaymentMethods that save and charge.
const GOOD_METHODS: &[&str] =
    &["pm_card_visa", "pm_card_visa_debit", "pm_card_mastercard", "pm_card_amex", "pm_card_discover"];
/// Stripe's test PaymentMethods that save but whose charges are declined.
const DECLINING_METHODS: &[&str] = &["pm_card_chargeDeclined", "pm_card_visa_chargeDeclined"];

/// The simulated provider.
#[derive(Debug, Default)]
pub struct Simulated {
    charges: Mutex<HashMap<String, Result<Charge, ProviderError>>>,
    refunds: Mutex<HashMap<String, Refund>>,
}

impl Simulated {
    /// How many charges or declines happened (one per idempotency key).
    pub fn charges_attempted(&self) -> usize {
        self.charges.lock().map_or(0, |c| c.len())
    }

    fn outcome(token: &str) -> Result<Charge, ProviderError> {
        match token {
            method if GOOD_METHODS.contains(&method) => {
                Ok(Charge { provider_ref: format!("pi_sim_{}", uuid::Uuid::new_v4().simple()) })
            }
            method if DECLINING_METHODS.contains(&method) => {
                Err(ProviderError::Declined("Your card was declined.".into()))
            }
            "tok_visa" => Ok(Charge { provider_ref: format!("pi_sim_{}", uuid::Uuid::new_v4().simple()) }),
            "tok_chargeDeclined" => Err(ProviderError::Declined("Your card was declined.".into())),
            "tok_processingError" => {
                Err(ProviderError::Unavailable("An error occurred while processing your card. Try again.".into()))
            }
            _ => Err(ProviderError::Invalid(
                "unknown test token; use tok_visa, tok_chargeDeclined or tok_processingError".into(),
            )),
        }
    }
}

impl PaymentProvider for Simulated {
    fn charge<'a>(&'a self, request: &'a ChargeRequest) -> BoxFuture<'a, Result<Charge, ProviderError>> {
        Box::pin(async move {
            let mut charges =
                self.charges.lock().map_err(|_| ProviderError::Unavailable("simulator poisoned".into()))?;
            // Like Stripe, only requests that ran are remembered: a charge or a decline. An
            // invalid request or an outage is not, so a retry with the same key runs anew.
            let outcome =
                charges.get(&request.idempotency_key).cloned().unwrap_or_else(|| Self::outcome(&request.token));
            if matches!(outcome, Ok(_) | Err(ProviderError::Declined(_))) {
                charges.insert(request.idempotency_key.clone(), outcome.clone());
            }
            outcome
        })
    }

    fn save_method<'a>(&'a self, request: &'a SaveRequest) -> BoxFuture<'a, Result<SavedMethod, ProviderError>> {
        Box::pin(async move {
            let method = request.payment_method.as_str();
            if GOOD_METHODS.contains(&method) || DECLINING_METHODS.contains(&method) {
                Ok(SavedMethod { method_ref: method.to_owned(), customer: None })
            } else {
                Err(ProviderError::Invalid(format!(
                    "unknown test payment method; use one of {}",
                    GOOD_METHODS.iter().chain(DECLINING_METHODS).copied().collect::<Vec<_>>().join(", ")
                )))
            }
        })
    }

    fn refund<'a>(
        &'a self,
        provider_ref: &'a str,
        idempotency_key: &'a str,
    ) -> BoxFuture<'a, Result<Refund, ProviderError>> {
        Box::pin(async move {
            let mut refunds =
                self.refunds.lock().map_err(|_| ProviderError::Unavailable("simulator poisoned".into()))?;
            let refund = refunds.entry(idempotency_key.to_owned()).or_insert_with(|| Refund {
                refund_ref: format!("re_sim_{}", provider_ref.trim_start_matches("pi_sim_")),
            });
            Ok(refund.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(token: &str, key: &str) -> ChargeRequest {
        ChargeRequest {
            amount_cents: 100,
            currency: "usd".into(),
            token: token.into(),
            idempotency_key: key.into(),
            order_id: uuid::Uuid::nil(),
            off_session: None,
        }
    }

    #[tokio::test]
    async fn test_tokens_behave_like_stripes() {
        let provider = Simulated::default();
        assert!(provider.charge(&request("tok_visa", "a")).await.is_ok());
        assert!(matches!(provider.charge(&request("tok_chargeDeclined", "b")).await, Err(ProviderError::Declined(_))));
        assert!(matches!(
            provider.charge(&request("tok_processingError", "c")).await,
            Err(ProviderError::Unavailable(_))
        ));
        assert!(matches!(provider.charge(&request("tok_bogus", "d")).await, Err(ProviderError::Invalid(_))));
    }

    #[tokio::test]
    async fn test_payment_methods_save_and_charge_like_stripes() {
        let provider = Simulated::default();
        let save =
            |method: &str| SaveRequest { buyer_id: uuid::Uuid::nil(), payment_method: method.into(), customer: None };
        for method in ["pm_card_visa", "pm_card_chargeDeclined"] {
            assert_eq!(provider.save_method(&save(method)).await.unwrap().method_ref, method);
        }
        assert!(matches!(provider.save_method(&save("pm_bogus")).await, Err(ProviderError::Invalid(_))));
        assert!(provider.charge(&request("pm_card_visa", "m1")).await.is_ok());
        assert!(matches!(
            provider.charge(&request("pm_card_chargeDeclined", "m2")).await,
            Err(ProviderError::Declined(_))
        ));
    }

    #[tokio::test]
    async fn the_same_key_gives_the_same_charge() {
        let provider = Simulated::default();
        let first = provider.charge(&request("tok_visa", "k")).await.unwrap();
        let again = provider.charge(&request("tok_visa", "k")).await.unwrap();
        assert_eq!(first, again);
        assert_eq!(provider.charges_attempted(), 1);
        let refund = provider.refund(&first.provider_ref, "r").await.unwrap();
        assert_eq!(provider.refund(&first.provider_ref, "r").await.unwrap(), refund);
    }
}
