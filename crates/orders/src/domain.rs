//! The rules of an order, decided without a database.
//!
//! ```text
//! created ──buyer cancels / reservation lapses──▶ cancelled
//!    │
//!    └──────────────payment succeeded───────────▶ complete
//! ```
//!
//! `cancelled` and `complete` are final. A live order (`created` or `complete`) holds its
//! pair; the database allows at most one per pair (a rule only the database can enforce
//! across concurrent orders, so the store reports it).
//!
//! Every command takes the current state and returns a [`Decision`] — the order's new state
//! and the event that announces it — or a [`Refusal`]. Handlers and consumers load the
//! order, call a command, and hand the decision to the store, which persists both in one
//! transaction. The commands are tested below in given/when/then form, with no database.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sneakerstop_events::orders::{CancelReason, OrderCancelled, OrderCompleted, OrderCreated, OrderEvent};
use utoipa::ToSchema;
use uuid::Uuid;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum OrderStatus {
    /// Reserving its pair, awaiting payment until `expiresAt`.
    Created,
    /// Ended unpaid (see `cancelReason`).
    Cancelled,
    /// Paid; the pair is sold.
    Complete,
}

impl OrderStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Cancelled => "cancelled",
            Self::Complete => "complete",
        }
    }
}

/// Why an order was cancelled, as stored (the event's [`CancelReason`], made storable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Cancellation {
    /// Its buyer cancelled it.
    Buyer,
    /// It was not paid in time.
    Expired,
    /// The buyer's saved payment method was declined (an order of the market).
    Declined,
}

impl From<CancelReason> for Cancellation {
    fn from(reason: CancelReason) -> Self {
        match reason {
            CancelReason::Buyer => Self::Buyer,
            CancelReason::Expired => Self::Expired,
            CancelReason::Declined => Self::Declined,
        }
    }
}

impl From<Cancellation> for CancelReason {
    fn from(reason: Cancellation) -> Self {
        match reason {
            Cancellation::Buyer => Self::Buyer,
            Cancellation::Expired => Self::Expired,
            Cancellation::Declined => Self::Declined,
        }
    }
}

impl Cancellation {
    /// The reason as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buyer => "buyer",
            Self::Expired => "expired",
            Self::Declined => "declined",
        }
    }
}

/// A listing's status as orders knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum ListingStatus {
    /// Can be ordered.
    Available,
    /// Held by a live order.
    Reserved,
    /// Bought.
    Sold,
    /// An ask whose time ran out.
    Expired,
    /// Taken off sale by its seller.
    Withdrawn,
}

/// What orders knows of a listing (its replica of `catalog.sneakers`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Listing {
    /// The listing's id.
    pub id: Uuid,
    /// Its price, in cents.
    pub price_cents: i64,
    /// Who sells it.
    pub seller_id: Uuid,
    /// Its status as of the last event applied.
    pub status: ListingStatus,
    /// When an ask leaves the market unless sold (asks only).
    pub expires_at: Option<DateTime<Utc>>,
}

impl Listing {
    /// Whether the listing is an ask whose time has run out at `now` (swept or not yet).
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.status == ListingStatus::Expired || self.expires_at.is_some_and(|at| at <= now)
    }
}

/// A match of the market, to become an order (from `match.made`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// The match (and the order's id).
    pub match_id: Uuid,
    /// The pair.
    pub sneaker_id: Uuid,
    /// The bidder.
    pub buyer_id: Uuid,
    /// The seller.
    pub seller_id: Uuid,
    /// The sale price, in cents.
    pub price_cents: i64,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Order {
    /// Its id, a UUIDv7 (id order is creation order).
    pub id: Uuid,
    /// The pair it reserves.
    pub sneaker_id: Uuid,
    /// Who ordered.
    pub buyer_id: Uuid,
    /// Who sells.
    pub seller_id: Uuid,
    /// The price at ordering time, in cents.
    pub price_cents: i64,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// Why it was cancelled, when it was.
    pub cancel_reason: Option<Cancellation>,
    /// The payment that completed it, when it did.
    pub payment_id: Option<Uuid>,
    /// The market's match it fills (then its id is the match's), if it is an order of the
    /// market.
    pub match_id: Option<Uuid>,
    /// 1 when created, +1 per change; the version of the event that announced the change.
    pub version: i64,
    /// When its reservation lapses unless paid.
    pub expires_at: DateTime<Utc>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A command's outcome: the order's new state and the event that announces it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The order after the command.
    pub order: Order,
    /// What to publish (on `orders.orders`, at `order.version`).
    pub event: OrderEvent,
}

/// Why a command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The pair has been sold.
    #[error("this pair has been sold")]
    Sold,
    /// The ask's time ran out.
    #[error("this ask has expired")]
    Expired,
    /// Its seller took the pair off sale.
    #[error("its seller took this pair off sale")]
    Withdrawn,
    /// The buyer is the pair's seller.
    #[error("you cannot order a pair you are selling")]
    OwnListing,
    /// The order's status does not allow the command.
    #[error("a {from} order cannot be {to}", from = from.as_str())]
    Transition {
        /// The status it is in.
        from: OrderStatus,
        /// What was attempted, as a word.
        to: &'static str,
    },
    /// The reservation has not lapsed yet.
    #[error("the reservation lasts until {0}")]
    NotDue(DateTime<Utc>),
}

impl Order {
    /// `buyer` orders `listing` at `now`; the reservation lasts `ttl`. Whether another live
    /// order holds the pair, and whether the buyer may hold one more, is the store's to say
    /// (only the database sees concurrent orders); the replica's own `reserved` merely
    /// echoes our orders, and lags them.
    pub fn place(
        id: Uuid,
        buyer: Uuid,
        listing: &Listing,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<Decision, Refusal> {
        if listing.status == ListingStatus::Sold {
            return Err(Refusal::Sold);
        }
        if listing.expired(now) {
            return Err(Refusal::Expired);
        }
        if listing.status == ListingStatus::Withdrawn {
            return Err(Refusal::Withdrawn);
        }
        if listing.seller_id == buyer {
            return Err(Refusal::OwnListing);
        }
        let order = Order {
            id,
            sneaker_id: listing.id,
            buyer_id: buyer,
            seller_id: listing.seller_id,
            price_cents: listing.price_cents,
            status: OrderStatus::Created,
            cancel_reason: None,
            payment_id: None,
            match_id: None,
            version: 1,
            expires_at: now + ttl,
            created_at: now,
            updated_at: now,
        };
        Ok(Self::created(order))
    }

    /// The market matched `matched`'s bid with an ask: the bidder orders the pair at the
    /// match's price (which may differ from the listing's), under the match's id. `listing`
    /// is what the replica knows of the pair, if it has heard of it: a pair it knows is sold
    /// is refused; one held by another live order is refused by the store.
    pub fn fill(
        matched: &Matched,
        listing: Option<&Listing>,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<Decision, Refusal> {
        if listing.is_some_and(|l| l.status == ListingStatus::Sold) {
            return Err(Refusal::Sold);
        }
        if listing.is_some_and(|l| l.expired(now)) {
            return Err(Refusal::Expired);
        }
        if listing.is_some_and(|l| l.status == ListingStatus::Withdrawn) {
            return Err(Refusal::Withdrawn);
        }
        if matched.seller_id == matched.buyer_id {
            return Err(Refusal::OwnListing);
        }
        Ok(Self::created(Order {
            id: matched.match_id,
            sneaker_id: matched.sneaker_id,
            buyer_id: matched.buyer_id,
            seller_id: matched.seller_id,
            price_cents: matched.price_cents,
            status: OrderStatus::Created,
            cancel_reason: None,
            payment_id: None,
            match_id: Some(matched.match_id),
            version: 1,
            expires_at: now + ttl,
            created_at: now,
            updated_at: now,
        }))
    }

    /// A new order and its `order.created`.
    fn created(order: Order) -> Decision {
        let event = OrderEvent::Created(OrderCreated {
            order_id: order.id,
            sneaker_id: order.sneaker_id,
            buyer_id: order.buyer_id,
            seller_id: order.seller_id,
            price_cents: order.price_cents,
            expires_at: order.expires_at,
            match_id: order.match_id,
        });
        Decision { order, event }
    }

    /// Its buyer cancels it (or expiry does, see [`Self::expire`]).
    pub fn cancel(&self, reason: CancelReason, now: DateTime<Utc>) -> Result<Decision, Refusal> {
        self.require_created("cancelled")?;
        let order = Order { status: OrderStatus::Cancelled, cancel_reason: Some(reason.into()), ..self.next(now) };
        let event = OrderEvent::Cancelled(OrderCancelled { order_id: order.id, sneaker_id: order.sneaker_id, reason });
        Ok(Decision { order, event })
    }

    /// Payments closed the order's payment window unpaid (`payment.lapsed`): cancelled as
    /// `expired`. Payments decides at the deadline, by its clock, after announcing every
    /// charge it accepted before it; orders takes its word rather than its own clock's.
    pub fn lapse(&self, now: DateTime<Utc>) -> Result<Decision, Refusal> {
        self.cancel(CancelReason::Expired, now)
    }

    /// Orders has heard nothing from payments for `grace` past the deadline (payments or its
    /// events are stuck): the reservation expires anyway, so that no pair is held for ever.
    /// Not before — a charge accepted in time may still be on its way. A charge accepted in
    /// time and heard of only after this is refunded.
    pub fn expire(&self, now: DateTime<Utc>, grace: chrono::Duration) -> Result<Decision, Refusal> {
        let due = self.expires_at + grace;
        if self.status == OrderStatus::Created && now < due {
            return Err(Refusal::NotDue(due));
        }
        self.cancel(CancelReason::Expired, now)
    }

    /// A payment for it succeeded. A payment that lost the race with expiry or the buyer's
    /// cancellation never completes the order: payments refunds it instead.
    pub fn complete(&self, payment: Uuid, now: DateTime<Utc>) -> Result<Decision, Refusal> {
        self.require_created("completed")?;
        let order = Order { status: OrderStatus::Complete, payment_id: Some(payment), ..self.next(now) };
        let event = OrderEvent::Completed(OrderCompleted {
            order_id: order.id,
            sneaker_id: order.sneaker_id,
            payment_id: payment,
        });
        Ok(Decision { order, event })
    }

    fn require_created(&self, to: &'static str) -> Result<(), Refusal> {
        match self.status {
            OrderStatus::Created => Ok(()),
            from => Err(Refusal::Transition { from, to }),
        }
    }

    /// The order one version on, changed at `now`.
    fn next(&self, now: DateTime<Utc>) -> Order {
        Order { version: self.version + 1, updated_at: now, ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + seconds, 0).unwrap()
    }

    const BUYER: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00b1);
    const SELLER: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00c1);
    const PAIR: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00a1);
    const ORDER: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001);

    fn listing(status: ListingStatus) -> Listing {
        Listing { id: PAIR, price_cents: 25_000, seller_id: SELLER, status, expires_at: None }
    }

    fn matched() -> Matched {
        Matched { match_id: ORDER, sneaker_id: PAIR, buyer_id: BUYER, seller_id: SELLER, price_cents: 27_000 }
    }

    #[test]
    fn given_a_match_when_filled_then_the_bidder_orders_the_pair_at_the_match_price_under_its_id() {
        let decision =
            Order::fill(&matched(), Some(&listing(ListingStatus::Available)), at(0), chrono::Duration::minutes(15))
                .unwrap();
        assert_eq!((decision.order.id, decision.order.match_id), (ORDER, Some(ORDER)));
        assert_eq!((decision.order.buyer_id, decision.order.price_cents), (BUYER, 27_000), "the match's price");
        let OrderEvent::Created(created) = decision.event else { panic!("order.created") };
        assert_eq!(created.match_id, Some(ORDER), "payments charges it without the buyer");
        let unknown = Order::fill(&matched(), None, at(0), chrono::Duration::minutes(15));
        assert!(unknown.is_ok(), "a pair the replica has not heard of yet is left to the store's unique index");
    }

    #[test]
    fn given_an_ask_past_its_time_when_ordered_or_matched_then_refused_before_any_sweep() {
        let ask = Listing { expires_at: Some(at(10)), ..listing(ListingStatus::Available) };
        let ttl = chrono::Duration::minutes(15);
        assert!(Order::place(ORDER, BUYER, &ask, at(9), ttl).is_ok(), "still on the market");
        assert_eq!(Order::place(ORDER, BUYER, &ask, at(10), ttl), Err(Refusal::Expired));
        assert_eq!(Order::fill(&matched(), Some(&ask), at(11), ttl), Err(Refusal::Expired));
        let withdrawn = listing(ListingStatus::Withdrawn);
        assert_eq!(Order::place(ORDER, BUYER, &withdrawn, at(0), ttl), Err(Refusal::Withdrawn));
        assert_eq!(Order::fill(&matched(), Some(&withdrawn), at(0), ttl), Err(Refusal::Withdrawn));
        let swept = listing(ListingStatus::Expired);
        assert_eq!(Order::place(ORDER, BUYER, &swept, at(0), ttl), Err(Refusal::Expired));
    }

    #[test]
    fn given_a_sold_pair_when_a_match_is_filled_then_refused() {
        let sold = listing(ListingStatus::Sold);
        assert_eq!(Order::fill(&matched(), Some(&sold), at(0), chrono::Duration::minutes(15)), Err(Refusal::Sold));
    }

    #[test]
    fn given_an_order_of_the_market_when_its_saved_card_is_declined_then_cancelled_as_declined() {
        let order = Order::fill(&matched(), None, at(0), chrono::Duration::minutes(15)).unwrap().order;
        let decision = order.cancel(CancelReason::Declined, at(1)).unwrap();
        assert_eq!(decision.order.cancel_reason, Some(Cancellation::Declined));
    }

    /// Given an order placed at 0 with a 15-minute reservation.
    fn placed() -> Order {
        Order::place(ORDER, BUYER, &listing(ListingStatus::Available), at(0), chrono::Duration::minutes(15))
            .unwrap()
            .order
    }

    #[test]
    fn given_an_available_pair_when_a_buyer_orders_it_then_it_is_reserved_and_announced() {
        let decision =
            Order::place(ORDER, BUYER, &listing(ListingStatus::Available), at(0), chrono::Duration::minutes(15))
                .unwrap();
        assert_eq!(decision.order.status, OrderStatus::Created);
        assert_eq!((decision.order.version, decision.order.price_cents), (1, 25_000));
        assert_eq!(decision.order.expires_at, at(900));
        assert_eq!(
            decision.event,
            OrderEvent::Created(OrderCreated {
                order_id: ORDER,
                sneaker_id: PAIR,
                buyer_id: BUYER,
                seller_id: SELLER,
                price_cents: 25_000,
                expires_at: at(900),
                match_id: None,
            })
        );
    }

    #[test]
    fn given_a_reserved_pair_when_ordered_then_the_store_decides() {
        // Reserved in the replica only echoes our own orders: the unique index decides.
        assert!(Order::place(ORDER, BUYER, &listing(ListingStatus::Reserved), at(0), chrono::Duration::zero()).is_ok());
    }

    #[test]
    fn given_a_sold_pair_or_ones_own_when_ordered_then_refused() {
        let ttl = chrono::Duration::minutes(15);
        assert_eq!(Order::place(ORDER, BUYER, &listing(ListingStatus::Sold), at(0), ttl), Err(Refusal::Sold));
        assert_eq!(
            Order::place(ORDER, SELLER, &listing(ListingStatus::Available), at(0), ttl),
            Err(Refusal::OwnListing)
        );
    }

    #[test]
    fn given_a_created_order_when_its_buyer_cancels_then_it_is_cancelled_once() {
        let decision = placed().cancel(CancelReason::Buyer, at(60)).unwrap();
        assert_eq!(decision.order.status, OrderStatus::Cancelled);
        assert_eq!(decision.order.cancel_reason, Some(Cancellation::Buyer));
        assert_eq!((decision.order.version, decision.order.updated_at), (2, at(60)));
        assert_eq!(
            decision.event,
            OrderEvent::Cancelled(OrderCancelled { order_id: ORDER, sneaker_id: PAIR, reason: CancelReason::Buyer })
        );
        let again = decision.order.cancel(CancelReason::Buyer, at(61)).unwrap_err();
        assert_eq!(again.to_string(), "a cancelled order cannot be cancelled");
    }

    #[test]
    fn given_a_created_order_when_payments_says_it_lapsed_then_it_expires() {
        let decision = placed().lapse(at(901)).unwrap();
        assert_eq!(decision.order.cancel_reason, Some(Cancellation::Expired));
        assert!(matches!(decision.event, OrderEvent::Cancelled(OrderCancelled { reason: CancelReason::Expired, .. })));
        assert!(decision.order.lapse(at(902)).is_err(), "an order lapses once");
    }

    #[test]
    fn given_a_created_order_when_payments_is_silent_then_it_expires_only_after_the_grace() {
        let order = placed();
        let grace = chrono::Duration::seconds(120);
        assert_eq!(order.expire(at(1019), grace), Err(Refusal::NotDue(at(1020))));
        let decision = order.expire(at(1020), grace).unwrap();
        assert_eq!(decision.order.cancel_reason, Some(Cancellation::Expired));
    }

    #[test]
    fn given_a_created_order_when_paid_then_complete_and_final() {
        let payment = Uuid::now_v7();
        let decision = placed().complete(payment, at(120)).unwrap();
        assert_eq!((decision.order.status, decision.order.payment_id), (OrderStatus::Complete, Some(payment)));
        assert_eq!(
            decision.event,
            OrderEvent::Completed(OrderCompleted { order_id: ORDER, sneaker_id: PAIR, payment_id: payment })
        );
        let complete = decision.order;
        assert_eq!(
            complete.cancel(CancelReason::Buyer, at(121)),
            Err(Refusal::Transition { from: OrderStatus::Complete, to: "cancelled" })
        );
        assert!(complete.expire(at(10_000), chrono::Duration::zero()).is_err(), "a paid order never expires");
        assert!(complete.lapse(at(10_000)).is_err(), "nor lapses");
    }

    #[test]
    fn given_a_cancelled_order_when_a_payment_arrives_then_it_stays_cancelled() {
        let cancelled = placed().lapse(at(900)).unwrap().order;
        let refused = cancelled.complete(Uuid::now_v7(), at(901)).unwrap_err();
        assert_eq!(refused.to_string(), "a cancelled order cannot be completed");
    }
}
