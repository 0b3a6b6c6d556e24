//! The Stripe client against a local HTTP server that plays Stripe: it checks every request
//! exactly and answers with the responses Stripe documents, errors included.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use sneakerstop_payments::provider::stripe::Stripe;
use sneakerstop_payments::provider::{ChargeRequest, PaymentProvider, ProviderError};
use sneakerstop_settings::Secret;
use uuid::Uuid;

const KEY: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";

/// One request as the fake Stripe received it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: String,
    idempotency_key: String,
    content_type: String,
    form: HashMap<String, String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn seen(path: &str, headers: &HeaderMap, body: &Bytes) -> Seen {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    Seen {
        path: path.to_owned(),
        authorization: header("authorization"),
        idempotency_key: header("idempotency-key"),
        content_type: header("content-type"),
        form: url::form_urlencoded::parse(body).into_owned().collect(),
    }
}

async fn payment_intents(State(log): State<Log>, headers: HeaderMap, body: Bytes) -> Response {
    let request = seen("/v1/payment_intents", &headers, &body);
    log.lock().unwrap().push(request.clone());
    if request.authorization != format!("Bearer {KEY}") {
        let error =
            json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****"}});
        return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    if let Some(method) = request.form.get("payment_method") {
        // Off-session: a saved method of a customer, without the card holder.
        let complete = request.form.get("off_session").map(String::as_str) == Some("true")
            && request.form.get("customer").map(String::as_str) == Some("cus_NffrFeUfNV2Hib")
            && !request.form.contains_key("payment_method_data[card][token]");
        return match method.as_str() {
            "pm_card_visa" if complete => axum::Json(json!({
                "id": "pi_3OffSession", "object": "payment_intent", "amount": 24000, "status": "succeeded"
            }))
            .into_response(),
            _ => (
                StatusCode::PAYMENT_REQUIRED,
                axum::Json(json!({"error": {
                    "type": "card_error", "code": "authentication_required",
                    "message": "This payment requires authentication by the card holder."
                }})),
            )
                .into_response(),
        };
    }
    match request.form.get("payment_method_data[card][token]").map(String::as_str) {
        Some("tok_visa") => axum::Json(json!({
            "id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "object": "payment_intent", "amount": 25000,
            "currency": "usd", "status": "succeeded"
        }))
        .into_response(),
        Some("tok_chargeDeclined") => (
            StatusCode::PAYMENT_REQUIRED,
            axum::Json(json!({"error": {
                "type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                "message": "Your card was declined.", "param": ""
            }})),
        )
            .into_response(),
        Some("tok_threeDSecure2Required") => axum::Json(json!({
            "id": "pi_3Mtw", "object": "payment_intent", "status": "requires_action"
        }))
        .into_response(),
        Some("tok_rateLimited") => (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}})),
        )
            .into_response(),
        Some("tok_apiError") => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": {"type": "api_error", "message": "An unknown error occurred"}})),
        )
            .into_response(),
        Some("tok_slow") => {
            // Slower than the client's timeout: the client must give up, not hang.
            tokio::time::sleep(Duration::from_secs(5)).await;
            axum::Json(json!({"id": "pi_late", "status": "succeeded"})).into_response()
        }
        other => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {
                "type": "invalid_request_error", "code": "resource_missing",
                "message": format!("No such token: '{}'", other.unwrap_or_default()),
                "param": "payment_method_data[card][token]"
            }})),
        )
            .into_response(),
    }
}

async fn refunds(State(log): State<Log>, headers: HeaderMap, body: Bytes) -> Response {
    let request = seen("/v1/refunds", &headers, &body);
    log.lock().unwrap().push(request.clone());
    match request.form.get("payment_intent").map(String::as_str) {
        Some("pi_3MtwBwLkdIwHu7ix28a3tqPa") => axum::Json(json!({
            "id": "re_1Nispe2eZvKYlo2Cd31jOCgZ", "object": "refund", "amount": 25000, "status": "succeeded",
            "payment_intent": "pi_3MtwBwLkdIwHu7ix28a3tqPa"
        }))
        .into_response(),
        _ => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"type": "invalid_request_error", "code": "charge_already_refunded",
                "message": "Charge has already been refunded."}})),
        )
            .into_response(),
    }
}

async fn customers(State(log): State<Log>, headers: HeaderMap, body: Bytes) -> Response {
    log.lock().unwrap().push(seen("/v1/customers", &headers, &body));
    axum::Json(json!({"id": "cus_NffrFeUfNV2Hib", "object": "customer"})).into_response()
}

async fn setup_intents(State(log): State<Log>, headers: HeaderMap, body: Bytes) -> Response {
    let request = seen("/v1/setup_intents", &headers, &body);
    log.lock().unwrap().push(request.clone());
    let status = match request.form.get("payment_method").map(String::as_str) {
        Some("pm_card_visa") => "succeeded",
        _ => "requires_action",
    };
    axum::Json(json!({"id": "seti_1Mm8s8LkdIwHu7ix0OXBfTRG", "object": "setup_intent", "status": status}))
        .into_response()
}

async fn fake_stripe() -> (String, Log) {
    let log: Log = Arc::default();
    let app = Router::new()
        .route("/v1/payment_intents", post(payment_intents))
        .route("/v1/refunds", post(refunds))
        .route("/v1/customers", post(customers))
        .route("/v1/setup_intents", post(setup_intents))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, log)
}

fn charge(token: &str) -> ChargeRequest {
    ChargeRequest {
        amount_cents: 25_000,
        currency: "usd".into(),
        token: token.into(),
        idempotency_key: format!("sneakerstop-order-x-attempt-1-{token}"),
        order_id: Uuid::from_u128(7),
        off_session: None,
    }
}

fn client(base: &str, key: &str) -> Stripe {
    Stripe::new(base, Secret::new(key), Duration::from_millis(800)).unwrap()
}

#[tokio::test]
async fn a_charge_is_a_confirmed_payment_intent_with_the_exact_request() {
    let (base, log) = fake_stripe().await;
    let stripe = client(&base, KEY);
    let charged = stripe.charge(&charge("tok_visa")).await.unwrap();
    assert_eq!(charged.provider_ref, "pi_3MtwBwLkdIwHu7ix28a3tqPa");

    let request = log.lock().unwrap()[0].clone();
    assert_eq!(request.path, "/v1/payment_intents");
    assert_eq!(request.authorization, format!("Bearer {KEY}"));
    assert_eq!(request.idempotency_key, "sneakerstop-order-x-attempt-1-tok_visa");
    assert_eq!(request.content_type, "application/x-www-form-urlencoded");
    let expected: HashMap<String, String> = [
        ("amount", "25000"),
        ("currency", "usd"),
        ("confirm", "true"),
        ("payment_method_types[]", "card"),
        ("payment_method_data[type]", "card"),
        ("payment_method_data[card][token]", "tok_visa"),
        ("metadata[order_id]", "00000000-0000-0000-0000-000000000007"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(request.form, expected);
}

#[tokio::test]
async fn a_refund_names_the_payment_intent() {
    let (base, log) = fake_stripe().await;
    let stripe = client(&base, KEY);
    let refund = stripe.refund("pi_3MtwBwLkdIwHu7ix28a3tqPa", "refund-123").await.unwrap();
    assert_eq!(refund.refund_ref, "re_1Nispe2eZvKYlo2Cd31jOCgZ");
    let request = log.lock().unwrap()[0].clone();
    assert_eq!(request.path, "/v1/refunds");
    assert_eq!(request.idempotency_key, "refund-123");
    assert_eq!(request.authorization, format!("Bearer {KEY}"));
    assert_eq!(request.form, HashMap::from([("payment_intent".to_owned(), "pi_3MtwBwLkdIwHu7ix28a3tqPa".to_owned())]));
    let again = stripe.refund("pi_other", "refund-456").await.unwrap_err();
    assert!(matches!(again, ProviderError::Invalid(ref m) if m.contains("already been refunded")), "{again:?}");
}

#[tokio::test]
async fn stripes_errors_map_to_ours() {
    let (base, _) = fake_stripe().await;
    let stripe = client(&base, KEY);
    assert_eq!(
        stripe.charge(&charge("tok_chargeDeclined")).await,
        Err(ProviderError::Declined("Your card was declined.".into()))
    );
    assert!(
        matches!(stripe.charge(&charge("tok_threeDSecure2Required")).await, Err(ProviderError::Declined(m)) if m.contains("requires_action"))
    );
    assert!(
        matches!(stripe.charge(&charge("tok_nope")).await, Err(ProviderError::Invalid(m)) if m.contains("No such token"))
    );
    assert!(
        matches!(stripe.charge(&charge("tok_rateLimited")).await, Err(ProviderError::Unavailable(m)) if m.contains("rate limited"))
    );
    assert!(
        matches!(stripe.charge(&charge("tok_apiError")).await, Err(ProviderError::Unavailable(m)) if m.contains("500"))
    );
    assert!(
        matches!(stripe.charge(&charge("tok_slow")).await, Err(ProviderError::Unavailable(_))),
        "a timeout is an outage"
    );

    let wrong_key = client(&base, "sk_test_wrong").charge(&charge("tok_visa")).await.unwrap_err();
    assert!(matches!(wrong_key, ProviderError::Unavailable(ref m) if !m.contains("sk_test")), "{wrong_key:?}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = client(&nobody, KEY).charge(&charge("tok_visa")).await.unwrap_err();
    assert!(matches!(unreachable, ProviderError::Unavailable(ref m) if !m.contains(KEY)), "{unreachable:?}");
}

#[tokio::test]
async fn a_method_is_saved_on_a_customer_once_and_charged_off_session() {
    use sneakerstop_payments::provider::{OffSession, SaveRequest};
    let (base, log) = fake_stripe().await;
    let stripe = client(&base, KEY);
    let buyer = Uuid::from_u128(42);
    let save = |customer: Option<&str>| SaveRequest {
        buyer_id: buyer,
        payment_method: "pm_card_visa".into(),
        customer: customer.map(str::to_owned),
    };
    let saved = stripe.save_method(&save(None)).await.unwrap();
    assert_eq!((saved.method_ref.as_str(), saved.customer.as_deref()), ("pm_card_visa", Some("cus_NffrFeUfNV2Hib")));
    {
        let seen = log.lock().unwrap();
        assert_eq!(seen.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(), ["/v1/customers", "/v1/setup_intents"]);
        assert_eq!(seen[0].form["metadata[buyer_id]"], buyer.to_string());
        assert_eq!(seen[0].idempotency_key, format!("customer-{buyer}"), "one customer per buyer, however often");
        let setup = &seen[1].form;
        assert_eq!((setup["customer"].as_str(), setup["usage"].as_str()), ("cus_NffrFeUfNV2Hib", "off_session"));
        assert_eq!((setup["payment_method"].as_str(), setup["confirm"].as_str()), ("pm_card_visa", "true"));
    }
    // A buyer with a customer already: no second customer.
    stripe.save_method(&save(Some("cus_NffrFeUfNV2Hib"))).await.unwrap();
    assert_eq!(log.lock().unwrap().iter().filter(|s| s.path == "/v1/customers").count(), 1);
    let refused = stripe
        .save_method(&SaveRequest {
            payment_method: "pm_card_authenticationRequired".into(),
            ..save(Some("cus_NffrFeUfNV2Hib"))
        })
        .await;
    assert!(matches!(refused, Err(ProviderError::Declined(_))), "{refused:?}");

    let off_session = |method: &str| ChargeRequest {
        token: method.into(),
        off_session: Some(OffSession { customer: Some("cus_NffrFeUfNV2Hib".into()) }),
        ..charge("unused")
    };
    let charged = stripe.charge(&off_session("pm_card_visa")).await.unwrap();
    assert_eq!(charged.provider_ref, "pi_3OffSession");
    let declined = stripe.charge(&off_session("pm_card_authenticationRequired")).await;
    assert!(matches!(declined, Err(ProviderError::Declined(ref m)) if m.contains("authentication")), "{declined:?}");
}
