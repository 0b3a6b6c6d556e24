//! Snapshot tests: every event type's JSON payload is pinned in `tests/snapshots/`.
//!
//! A contract change shows up as a failing test and, after `UPDATE_SNAPSHOTS=1 cargo test
//! -p sneakerstop-events`, as a diff of the snapshot file in review. Each test also decodes
//! the pinned JSON back, so what we publish is what we can read.

use std::path::PathBuf;

use chrono::{TimeZone, Utc};
use sneakerstop_events::catalog::{Product, ProductEvent, Sneaker, SneakerEvent, SneakerStatus};
use sneakerstop_events::identity::{RevokeReason, SessionRevoked, UserEvent, UserRegistered};
use sneakerstop_events::market::{Bid, BidStatus, MarketEvent, MatchEvent, MatchMade};
use sneakerstop_events::orders::{
    CancelReason, OrderCancelled, OrderCompleted, OrderCreated, OrderEvent, OrderRefused, RefusedBecause,
};
use sneakerstop_events::payments::{
    PaymentDeclined, PaymentEvent, PaymentLapsed, PaymentMethodEvent, PaymentMethodSaved, PaymentRefunded,
    PaymentSucceeded,
};
use sneakerstop_events::{Contract, DecodeError};
use uuid::Uuid;

/// Checks `event`'s pinned payload, and that its contract keys it by `key`.
fn check_snapshot<C: Contract + PartialEq + std::fmt::Debug>(key: Uuid, event: &C) {
    assert_eq!(event.key(), key, "{} is keyed by the wrong field", event.event_type());
    let name = format!("{}.v{}.json", event.event_type(), event.schema_version());
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(&name);
    let actual = serde_json::to_string_pretty(&event.payload()).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    let pinned = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("no snapshot {name}; run with UPDATE_SNAPSHOTS=1 to create it"));
    assert_eq!(actual, pinned, "the contract of {name} changed; if intended, bump its version or update the snapshot");
    let decoded = C::decode(event.event_type(), event.schema_version(), pinned.as_bytes()).unwrap();
    assert_eq!(&decoded, event);
}

const USER: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0002);
const ORDER: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0003);
/// Orders' events are keyed by the pair, so one pair's orders stay in order.
const SNEAKER: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001);

fn time(secs: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_764_000_000 + secs, 0).unwrap()
}

fn sneaker(status: SneakerStatus, version: i64) -> Sneaker {
    Sneaker {
        sneaker_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001),
        seller_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0002),
        title: "Air Jordan 1 Retro High OG".into(),
        brand: Some("Nike".into()),
        description: Some("Chicago colourway, worn twice".into()),
        price_cents: 25_000,
        size: 10.5,
        product_id: None,
        expires_at: None,
        status,
        version,
        created_at: time(0),
        updated_at: time(60),
    }
}

#[test]
fn user_registered_v1() {
    check_snapshot(
        USER,
        &UserEvent::Registered(UserRegistered {
            user_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0002),
            email: "ann@example.com".into(),
            registered_at: time(0),
        }),
    );
}

#[test]
fn session_revoked_v1() {
    check_snapshot(
        USER,
        &UserEvent::SessionRevoked(SessionRevoked {
            session_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0009),
            user_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0002),
            expires_at: time(86_400),
            revoked_at: time(600),
            reason: RevokeReason::SignedOutEverywhere,
        }),
    );
}

#[test]
fn sneaker_listed_v1() {
    check_snapshot(SNEAKER, &SneakerEvent::Listed(sneaker(SneakerStatus::Available, 1)));
}

#[test]
fn sneaker_updated_v1() {
    check_snapshot(SNEAKER, &SneakerEvent::Updated(sneaker(SneakerStatus::Reserved, 2)));
}

const PRODUCT: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0004);

fn product(version: i64) -> Product {
    Product {
        product_id: PRODUCT,
        style_code: "DZ5485-612".into(),
        name: "Air Jordan 1 Retro High OG".into(),
        brand: "Jordan".into(),
        colorway: Some("Varsity Red/Black".into()),
        retail_price_cents: Some(18_000),
        release_date: chrono::NaiveDate::from_ymd_opt(2023, 11, 18),
        sizes: vec![9.0, 9.5, 10.0],
        version,
        created_at: time(0),
    }
}

#[test]
fn product_created_v1() {
    check_snapshot(PRODUCT, &ProductEvent::Created(product(1)));
}

#[test]
fn product_updated_v1() {
    check_snapshot(PRODUCT, &ProductEvent::Updated(Product { sizes: vec![9.0, 9.5, 10.0, 10.5], ..product(2) }));
}

#[test]
fn an_ask_is_announced_with_its_product_and_a_free_listing_as_before() {
    let ask = SneakerEvent::Listed(Sneaker { product_id: Some(PRODUCT), ..sneaker(SneakerStatus::Available, 1) });
    assert_eq!(ask.payload()["productId"], PRODUCT.to_string());
    let decoded = SneakerEvent::decode("sneaker.listed", 1, ask.payload().to_string().as_bytes()).unwrap();
    assert_eq!(decoded, ask);
    let free = SneakerEvent::Listed(sneaker(SneakerStatus::Available, 1));
    assert!(free.payload().get("productId").is_none(), "the pinned v1 payload is unchanged");
    assert!(free.payload().get("expiresAt").is_none());
    let expired = SneakerEvent::Updated(Sneaker {
        product_id: Some(PRODUCT),
        expires_at: Some(time(60)),
        ..sneaker(SneakerStatus::Expired, 2)
    });
    assert_eq!(
        (expired.payload()["status"].as_str(), expired.payload()["expiresAt"].as_str()),
        (Some("expired"), Some("2025-11-24T16:01:00Z"))
    );
}

#[test]
fn order_created_v1() {
    check_snapshot(
        SNEAKER,
        &OrderEvent::Created(OrderCreated {
            order_id: ORDER,
            sneaker_id: SNEAKER,
            buyer_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0004),
            seller_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0002),
            price_cents: 25_000,
            expires_at: time(900),
            match_id: None,
        }),
    );
}

#[test]
fn order_cancelled_v1() {
    check_snapshot(
        SNEAKER,
        &OrderEvent::Cancelled(OrderCancelled { order_id: ORDER, sneaker_id: SNEAKER, reason: CancelReason::Expired }),
    );
}

#[test]
fn order_completed_v1() {
    check_snapshot(
        SNEAKER,
        &OrderEvent::Completed(OrderCompleted {
            order_id: ORDER,
            sneaker_id: SNEAKER,
            payment_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0005),
        }),
    );
}

const PAYMENT: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0005);

#[test]
fn payment_succeeded_v1() {
    check_snapshot(
        ORDER,
        &PaymentEvent::Succeeded(PaymentSucceeded {
            payment_id: PAYMENT,
            order_id: ORDER,
            amount_cents: 25_000,
            provider_ref: "pi_3MtwBwLkdIwHu7ix28a3tqPa".into(),
        }),
    );
}

#[test]
fn payment_refunded_v1() {
    check_snapshot(
        ORDER,
        &PaymentEvent::Refunded(PaymentRefunded {
            payment_id: PAYMENT,
            order_id: ORDER,
            amount_cents: 25_000,
            refund_ref: "re_1Nispe2eZvKYlo2Cd31jOCgZ".into(),
        }),
    );
}

#[test]
fn order_refused_v1() {
    check_snapshot(
        SNEAKER,
        &OrderEvent::Refused(OrderRefused {
            match_id: MATCH,
            sneaker_id: SNEAKER,
            buyer_id: USER,
            reason: RefusedBecause::PairTaken,
        }),
    );
}

#[test]
fn an_order_of_the_market_names_its_match_and_a_buyers_order_is_as_before() {
    let created = OrderCreated {
        order_id: MATCH,
        sneaker_id: SNEAKER,
        buyer_id: USER,
        seller_id: USER,
        price_cents: 25_000,
        expires_at: time(900),
        match_id: Some(MATCH),
    };
    let event = OrderEvent::Created(created.clone());
    assert_eq!(event.payload()["matchId"], MATCH.to_string());
    assert_eq!(OrderEvent::decode("order.created", 1, event.payload().to_string().as_bytes()).unwrap(), event);
    let own = OrderEvent::Created(OrderCreated { match_id: None, ..created });
    assert!(own.payload().get("matchId").is_none(), "the pinned v1 payload is unchanged");
    let declined = OrderCancelled { order_id: MATCH, sneaker_id: SNEAKER, reason: CancelReason::Declined };
    assert_eq!(OrderEvent::Cancelled(declined).payload()["reason"], "declined");
}

#[test]
fn payment_declined_v1() {
    check_snapshot(
        ORDER,
        &PaymentEvent::Declined(PaymentDeclined {
            payment_id: PAYMENT,
            order_id: ORDER,
            reason: "Your card was declined.".into(),
        }),
    );
}

#[test]
fn payment_lapsed_v1() {
    check_snapshot(
        ORDER,
        &PaymentEvent::Lapsed(PaymentLapsed { order_id: ORDER, expires_at: time(900), lapsed_at: time(901) }),
    );
}

#[test]
fn payment_method_saved_v1() {
    check_snapshot(
        USER,
        &PaymentMethodEvent::Saved(PaymentMethodSaved {
            method_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0007),
            buyer_id: USER,
            saved_at: time(0),
        }),
    );
}

const MATCH: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0008);
const BID: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0009);

fn bid(status: BidStatus, version: i64) -> Bid {
    Bid {
        bid_id: BID,
        product_id: PRODUCT,
        size: 10.5,
        buyer_id: USER,
        price_cents: 24_000,
        status,
        match_id: (status == BidStatus::Matched).then_some(MATCH),
        expires_at: time(30 * 86_400),
        version,
        created_at: time(0),
        updated_at: time(version),
    }
}

#[test]
fn bid_placed_v1() {
    check_snapshot(PRODUCT, &MarketEvent::Placed(bid(BidStatus::Open, 1)));
}

#[test]
fn bid_updated_v1() {
    check_snapshot(PRODUCT, &MarketEvent::Updated(bid(BidStatus::Matched, 2)));
}

#[test]
fn match_made_v1() {
    check_snapshot(
        PRODUCT,
        &MatchEvent::Made(MatchMade {
            match_id: MATCH,
            bid_id: BID,
            sneaker_id: SNEAKER,
            product_id: PRODUCT,
            size: 10.5,
            buyer_id: USER,
            seller_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_000a),
            price_cents: 23_500,
            made_at: time(2),
        }),
    );
}

#[test]
fn every_type_of_every_topic_has_a_snapshot() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    for (event_type, version) in UserEvent::TYPES
        .iter()
        .chain(SneakerEvent::TYPES)
        .chain(ProductEvent::TYPES)
        .chain(OrderEvent::TYPES)
        .chain(PaymentEvent::TYPES)
        .chain(PaymentMethodEvent::TYPES)
        .chain(MarketEvent::TYPES)
        .chain(MatchEvent::TYPES)
    {
        let path = dir.join(format!("{event_type}.v{version}.json"));
        assert!(path.exists(), "{event_type} v{version} has no pinned snapshot");
    }
}

#[test]
fn unknown_types_and_newer_versions_are_refused() {
    let payload = serde_json::to_vec(&SneakerEvent::Listed(sneaker(SneakerStatus::Available, 1)).payload()).unwrap();
    assert!(
        matches!(SneakerEvent::decode("sneaker.painted", 1, &payload), Err(DecodeError::UnknownType(t)) if t == "sneaker.painted")
    );
    assert!(matches!(
        SneakerEvent::decode("sneaker.listed", 2, &payload),
        Err(DecodeError::UnsupportedVersion { found: 2, supported: 1, .. })
    ));
    assert!(matches!(SneakerEvent::decode("sneaker.listed", 1, b"{}"), Err(DecodeError::Payload { .. })));
}
