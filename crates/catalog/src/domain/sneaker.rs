//! The rules of a listing (a pair for sale), decided without a database.
//!
//! ```text
//! available ──order.created──▶ reserved ──order.completed (same order)──▶ sold
//!  │  │  ▲                        │
//!  │  │  └──order.cancelled (same order)
//!  │  └──its seller withdraws it──▶ withdrawn
//!  └──an ask's time runs out──▶ expired
//! ```
//!
//! Only its seller may edit a listing, and only while it is available (and, with
//! `If-Match`, only the version they saw). An order event moves the pair only if it applies:
//! a pair is reserved only while available, and released or sold only by the order that
//! holds it, so a stale or foreign order changes nothing. Every change is one version on
//! and is announced with the whole listing (`sneaker.updated`).

use chrono::{DateTime, Utc};
use sneakerstop_events::catalog::{Sneaker as Snapshot, SneakerEvent, SneakerStatus};
use uuid::Uuid;

use super::Listing;

/// A listing's status, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Status {
    /// Can be ordered.
    Available,
    /// Held by a live order.
    Reserved,
    /// Bought.
    Sold,
    /// An ask whose time ran out unsold.
    Expired,
    /// Taken off sale by its seller.
    Withdrawn,
}

impl Status {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Reserved => "reserved",
            Self::Sold => "sold",
            Self::Expired => "expired",
            Self::Withdrawn => "withdrawn",
        }
    }
}

impl From<Status> for SneakerStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Available => Self::Available,
            Status::Reserved => Self::Reserved,
            Status::Sold => Self::Sold,
            Status::Expired => Self::Expired,
            Status::Withdrawn => Self::Withdrawn,
        }
    }
}

impl From<SneakerStatus> for Status {
    fn from(status: SneakerStatus) -> Self {
        match status {
            SneakerStatus::Available => Self::Available,
            SneakerStatus::Reserved => Self::Reserved,
            SneakerStatus::Sold => Self::Sold,
            SneakerStatus::Expired => Self::Expired,
            SneakerStatus::Withdrawn => Self::Withdrawn,
        }
    }
}

/// A listing.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Sneaker {
    /// Its id, a UUIDv7.
    pub id: Uuid,
    /// Who sells it.
    pub seller_id: Uuid,
    /// Its title.
    pub title: String,
    /// Its brand.
    pub brand: Option<String>,
    /// Its description.
    pub description: Option<String>,
    /// Its price, in cents.
    pub price_cents: i64,
    /// Its US size.
    pub size: f64,
    /// The product it is, when the listing is an ask on that product's market.
    pub product_id: Option<Uuid>,
    /// When an ask leaves its book unless sold (asks only).
    pub expires_at: Option<DateTime<Utc>>,
    /// Where it is.
    pub status: Status,
    /// The order that reserved it, while one does.
    pub held_by_order: Option<Uuid>,
    /// 1 when listed, +1 per change.
    pub version: i64,
    /// When it was listed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A command's outcome: the listing's new state and the event that announces it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The listing after the command.
    pub sneaker: Sneaker,
    /// What to publish (on `catalog.sneakers`, at `sneaker.version`).
    pub event: SneakerEvent,
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Someone other than its seller tried to edit it.
    #[error("not the seller")]
    NotOwner,
    /// It is reserved or sold, so it cannot be edited.
    #[error("the listing is {}", .0.as_str())]
    NotEditable(Status),
    /// The listing is not an available ask whose time has come.
    #[error("a {} listing does not expire now", .0.as_str())]
    NotExpiring(Status),
    /// An edit named another product than the listing's.
    #[error("a listing's product cannot change")]
    ProductFixed,
    /// `If-Match` named another version.
    #[error("the listing is at version {current}")]
    VersionMismatch {
        /// The current version.
        current: i64,
    },
    /// An order event that does not apply to the pair as it is (stale, repeated, or about
    /// an order that does not hold it).
    #[error("a {} pair cannot be {to} by order {order}", .from.as_str())]
    DoesNotApply {
        /// Where the pair is.
        from: Status,
        /// What the order would do.
        to: &'static str,
        /// The order.
        order: Uuid,
    },
}

impl Sneaker {
    /// `seller` lists `listing` at `now` (version 1, available).
    pub fn list(id: Uuid, seller: Uuid, listing: &Listing, now: DateTime<Utc>) -> Decision {
        let sneaker = Sneaker {
            id,
            seller_id: seller,
            title: listing.title.clone(),
            brand: listing.brand.clone(),
            description: listing.description.clone(),
            price_cents: listing.price_cents,
            size: listing.size,
            product_id: listing.product_id,
            expires_at: listing
                .product_id
                .map(|_| now + chrono::Duration::days(listing.expires_in_days.unwrap_or(super::DEFAULT_ASK_DAYS))),
            status: Status::Available,
            held_by_order: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let event = SneakerEvent::Listed(sneaker.snapshot());
        Decision { sneaker, event }
    }

    /// `by` replaces the listing's fields with `listing`, having seen version `if_match`.
    pub fn edit(
        &self,
        by: Uuid,
        listing: &Listing,
        if_match: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Decision, Refusal> {
        self.require_seller_and_available(by, if_match)?;
        if listing.product_id.is_some_and(|product| Some(product) != self.product_id) {
            return Err(Refusal::ProductFixed);
        }
        Ok(self.changed(
            Sneaker {
                title: listing.title.clone(),
                brand: listing.brand.clone(),
                description: listing.description.clone(),
                price_cents: listing.price_cents,
                size: listing.size,
                ..self.clone()
            },
            now,
        ))
    }

    /// `by`, its seller, takes the listing off sale (having seen version `if_match`): only
    /// while it is available — a reserved pair is an order's until that order ends.
    pub fn withdraw(&self, by: Uuid, if_match: Option<i64>, now: DateTime<Utc>) -> Result<Decision, Refusal> {
        self.require_seller_and_available(by, if_match)?;
        Ok(self.changed(Sneaker { status: Status::Withdrawn, ..self.clone() }, now))
    }

    /// An ask's time ran out: it leaves the market unsold. Only an available ask, and only
    /// once its time has come (a reserved one is expired when its order releases it).
    pub fn expire(&self, now: DateTime<Utc>) -> Result<Decision, Refusal> {
        match self.expires_at {
            Some(at) if self.status == Status::Available && at <= now => {
                Ok(self.changed(Sneaker { status: Status::Expired, ..self.clone() }, now))
            }
            _ => Err(Refusal::NotExpiring(self.status)),
        }
    }

    /// `order` reserved the pair.
    pub fn reserve(&self, order: Uuid, now: DateTime<Utc>) -> Result<Decision, Refusal> {
        if self.status != Status::Available {
            return Err(Refusal::DoesNotApply { from: self.status, to: "reserved", order });
        }
        Ok(self.changed(Sneaker { status: Status::Reserved, held_by_order: Some(order), ..self.clone() }, now))
    }

    /// `order`, which held the pair, was cancelled.
    pub fn release(&self, order: Uuid, now: DateTime<Utc>) -> Result<Decision, Refusal> {
        self.require_held_by(order, "released")?;
        Ok(self.changed(Sneaker { status: Status::Available, held_by_order: None, ..self.clone() }, now))
    }

    /// `order`, which held the pair, was paid.
    pub fn sell(&self, order: Uuid, now: DateTime<Utc>) -> Result<Decision, Refusal> {
        self.require_held_by(order, "sold")?;
        Ok(self.changed(Sneaker { status: Status::Sold, ..self.clone() }, now))
    }

    /// The event payload: the whole listing at this version.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            sneaker_id: self.id,
            seller_id: self.seller_id,
            title: self.title.clone(),
            brand: self.brand.clone(),
            description: self.description.clone(),
            price_cents: self.price_cents,
            size: self.size,
            product_id: self.product_id,
            expires_at: self.expires_at,
            status: self.status.into(),
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// Only its seller changes a listing, only while it is available, and (with `If-Match`)
    /// only from the version they saw.
    fn require_seller_and_available(&self, by: Uuid, if_match: Option<i64>) -> Result<(), Refusal> {
        if self.seller_id != by {
            return Err(Refusal::NotOwner);
        }
        if self.status != Status::Available {
            return Err(Refusal::NotEditable(self.status));
        }
        if if_match.is_some_and(|version| version != self.version) {
            return Err(Refusal::VersionMismatch { current: self.version });
        }
        Ok(())
    }

    fn require_held_by(&self, order: Uuid, to: &'static str) -> Result<(), Refusal> {
        if self.status == Status::Reserved && self.held_by_order == Some(order) {
            Ok(())
        } else {
            Err(Refusal::DoesNotApply { from: self.status, to, order })
        }
    }

    /// `next` as the listing one version on, changed at `now`, announced as updated.
    fn changed(&self, next: Sneaker, now: DateTime<Utc>) -> Decision {
        let sneaker = Sneaker { version: self.version + 1, updated_at: now, ..next };
        let event = SneakerEvent::Updated(sneaker.snapshot());
        Decision { sneaker, event }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + seconds, 0).unwrap()
    }

    const SELLER: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00c1);
    const PAIR: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00a1);
    const ORDER: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001);
    const OTHER_ORDER: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0002);

    fn listing(title: &str, price_cents: i64) -> Listing {
        Listing {
            title: title.into(),
            price_cents,
            size: 10.0,
            brand: Some("Nike".into()),
            description: None,
            product_id: None,
            expires_in_days: None,
        }
    }

    /// Given a pair listed at 0.
    fn listed() -> Sneaker {
        Sneaker::list(PAIR, SELLER, &listing("Dunk Low", 11_000), at(0)).sneaker
    }

    #[test]
    fn given_a_seller_when_they_list_a_pair_then_it_is_available_at_version_1_and_announced() {
        let decision = Sneaker::list(PAIR, SELLER, &listing("Dunk Low", 11_000), at(0));
        assert_eq!((decision.sneaker.status, decision.sneaker.version), (Status::Available, 1));
        assert_eq!(decision.event, SneakerEvent::Listed(decision.sneaker.snapshot()));
    }

    #[test]
    fn given_an_available_pair_when_its_seller_edits_it_then_one_version_on_with_the_new_fields() {
        let decision = listed().edit(SELLER, &listing("Dunk Low Panda", 12_000), Some(1), at(5)).unwrap();
        assert_eq!((decision.sneaker.title.as_str(), decision.sneaker.price_cents), ("Dunk Low Panda", 12_000));
        assert_eq!((decision.sneaker.version, decision.sneaker.updated_at), (2, at(5)));
        assert_eq!(decision.event, SneakerEvent::Updated(decision.sneaker.snapshot()));
    }

    #[test]
    fn given_an_available_pair_when_its_seller_withdraws_it_then_it_is_off_sale_for_good() {
        let withdrawn = listed().withdraw(SELLER, Some(1), at(5)).unwrap();
        assert_eq!((withdrawn.sneaker.status, withdrawn.sneaker.version), (Status::Withdrawn, 2));
        assert_eq!(withdrawn.event, SneakerEvent::Updated(withdrawn.sneaker.snapshot()));
        assert_eq!(withdrawn.sneaker.snapshot().status, SneakerStatus::Withdrawn);
        let pair = withdrawn.sneaker;
        assert_eq!(pair.withdraw(SELLER, None, at(6)), Err(Refusal::NotEditable(Status::Withdrawn)));
        assert_eq!(pair.edit(SELLER, &listing("x", 1), None, at(6)), Err(Refusal::NotEditable(Status::Withdrawn)));
        assert!(matches!(pair.reserve(ORDER, at(6)), Err(Refusal::DoesNotApply { .. })), "no order takes it");
        assert_eq!(listed().withdraw(Uuid::now_v7(), None, at(1)), Err(Refusal::NotOwner));
        assert_eq!(listed().withdraw(SELLER, Some(3), at(1)), Err(Refusal::VersionMismatch { current: 1 }));
        let reserved = listed().reserve(ORDER, at(1)).unwrap().sneaker;
        assert_eq!(reserved.withdraw(SELLER, None, at(2)), Err(Refusal::NotEditable(Status::Reserved)));
    }

    #[test]
    fn given_a_pair_when_edited_by_another_or_from_a_stale_version_or_while_held_then_refused() {
        let pair = listed();
        assert_eq!(pair.edit(Uuid::now_v7(), &listing("x", 1), None, at(1)), Err(Refusal::NotOwner));
        assert_eq!(pair.edit(SELLER, &listing("x", 1), Some(7), at(1)), Err(Refusal::VersionMismatch { current: 1 }));
        let reserved = pair.reserve(ORDER, at(1)).unwrap().sneaker;
        assert_eq!(reserved.edit(SELLER, &listing("x", 1), None, at(2)), Err(Refusal::NotEditable(Status::Reserved)));
    }

    #[test]
    fn given_an_ask_when_its_time_runs_out_then_it_expires_and_a_free_listing_never_does() {
        let product = Uuid::now_v7();
        let ask = Sneaker::list(PAIR, SELLER, &Listing { product_id: Some(product), ..listing("AJ1", 20_000) }, at(0));
        let due = at(0) + chrono::Duration::days(30);
        assert_eq!(ask.sneaker.expires_at, Some(due), "30 days by default");
        assert_eq!(ask.sneaker.snapshot().expires_at, Some(due), "announced with the ask");
        assert_eq!(ask.sneaker.expire(at(60)), Err(Refusal::NotExpiring(Status::Available)), "not yet");
        let expired = ask.sneaker.expire(due).unwrap();
        assert_eq!((expired.sneaker.status, expired.sneaker.version), (Status::Expired, 2));
        assert_eq!(expired.event, SneakerEvent::Updated(expired.sneaker.snapshot()));
        assert!(expired.sneaker.reserve(ORDER, due).is_err(), "an expired ask cannot be ordered");
        let reserved = ask.sneaker.reserve(ORDER, at(1)).unwrap().sneaker;
        assert!(reserved.expire(due).is_err(), "a held ask waits for its order");
        assert_eq!(listed().expires_at, None);
        assert!(listed().expire(at(100_000_000)).is_err(), "free listings never expire");
    }

    #[test]
    fn given_an_ask_when_edited_then_it_stays_on_its_product_and_is_announced_with_it() {
        let product = Uuid::now_v7();
        let ask = Sneaker::list(PAIR, SELLER, &Listing { product_id: Some(product), ..listing("AJ1", 20_000) }, at(0));
        assert_eq!(ask.event, SneakerEvent::Listed(ask.sneaker.snapshot()));
        assert_eq!(ask.sneaker.snapshot().product_id, Some(product));
        let cheaper = ask.sneaker.edit(SELLER, &listing("AJ1", 19_000), None, at(1)).unwrap().sneaker;
        assert_eq!((cheaper.product_id, cheaper.price_cents), (Some(product), 19_000), "the product is kept");
        let moved = Listing { product_id: Some(Uuid::now_v7()), ..listing("AJ1", 19_000) };
        assert_eq!(ask.sneaker.edit(SELLER, &moved, None, at(1)), Err(Refusal::ProductFixed));
        let free = listed();
        let made_an_ask = Listing { product_id: Some(product), ..listing("AJ1", 1) };
        assert_eq!(free.edit(SELLER, &made_an_ask, None, at(1)), Err(Refusal::ProductFixed));
    }

    #[test]
    fn given_an_available_pair_when_an_order_reserves_it_then_reserved_by_that_order() {
        let decision = listed().reserve(ORDER, at(1)).unwrap();
        assert_eq!((decision.sneaker.status, decision.sneaker.held_by_order), (Status::Reserved, Some(ORDER)));
        assert!(decision.sneaker.reserve(OTHER_ORDER, at(2)).is_err(), "a second order does not apply");
    }

    #[test]
    fn given_a_reserved_pair_when_its_order_is_cancelled_or_paid_then_released_or_sold() {
        let reserved = listed().reserve(ORDER, at(1)).unwrap().sneaker;
        let released = reserved.release(ORDER, at(2)).unwrap().sneaker;
        assert_eq!((released.status, released.held_by_order, released.version), (Status::Available, None, 3));
        let sold = reserved.sell(ORDER, at(2)).unwrap().sneaker;
        assert_eq!((sold.status, sold.version), (Status::Sold, 3));
        assert_eq!(sold.snapshot().status, SneakerStatus::Sold, "announced as sold");
    }

    #[test]
    fn given_a_pair_held_by_one_order_when_another_order_ends_then_nothing_changes() {
        let reserved = listed().reserve(ORDER, at(1)).unwrap().sneaker;
        assert_eq!(
            reserved.release(OTHER_ORDER, at(2)),
            Err(Refusal::DoesNotApply { from: Status::Reserved, to: "released", order: OTHER_ORDER })
        );
        assert!(reserved.sell(OTHER_ORDER, at(2)).is_err());
        assert!(listed().sell(ORDER, at(2)).is_err(), "an available pair is sold only through its reservation");
    }
}
