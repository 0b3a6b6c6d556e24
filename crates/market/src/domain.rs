//! The rules of the market, decided without a database.
//!
//! A **book** is one product in one size. Its asks are catalog's listings of that product
//! in that size; its bids are the market's. The book crosses when the highest bid is at or
//! above the lowest ask, and the market never lets it stay crossed: the order that arrives
//! (a new bid, a new or cheaper ask, a bid or ask back on the book) trades at once with the
//! best order resting on the other side, **at the resting order's price**. "Best" is
//! price-then-time priority: the lowest ask, earliest listed among equals; the highest bid,
//! earliest placed among equals. Nobody trades with themselves.
//!
//! ```text
//!        ┌──cancel──▶ cancelled
//! open ──┼──expiry──▶ expired
//!   ▲    └──crosses an ask──▶ matched ──order completed──▶ filled
//!   │                           │
//!   └──pair taken meanwhile, ───┤
//!      order lapsed unpaid      └──saved card declined──▶ declined
//!                                └──buyer cancelled the order──▶ cancelled
//! ```
//!
//! Every command takes the current state and returns a [`Decision`] (the bid's new state
//! and its events) or a [`Refusal`]. The store runs them with the book locked, so what the
//! domain sees of the book is what the book is; the unique indexes on matches hold even if
//! it did not.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sneakerstop_events::market::{Bid as Snapshot, BidStatus as EventStatus, MarketEvent, MatchEvent, MatchMade};
use utoipa::ToSchema;
use uuid::Uuid;

/// The lowest bid accepted, in cents (25.00, as sneaker marketplaces do: lower bids are
/// noise on a book).
pub const MIN_BID_CENTS: i64 = 2_500;
/// The highest bid accepted, in cents.
pub const MAX_BID_CENTS: i64 = 10_000_000;
/// How long a bid stays on the book when its buyer does not say.
pub const DEFAULT_EXPIRY_DAYS: i64 = 30;
/// The longest a bid may stay on the book.
pub const MAX_EXPIRY_DAYS: i64 = 90;
/// The most open bids one buyer may have on one book, unless `MAX_OPEN_BIDS_PER_BOOK` says
/// otherwise: enough to buy several pairs of a size at several prices, not enough to flood
/// a book (every ask and every page of the market reads its bids).
pub const DEFAULT_MAX_OPEN_BIDS_PER_BOOK: i64 = 25;

/// Where a bid is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum BidStatus {
    /// On the book.
    Open,
    /// Met an ask; its order is being placed and paid.
    Matched,
    /// Bought.
    Filled,
    /// Withdrawn by its buyer (or its order cancelled by them).
    Cancelled,
    /// Its time ran out.
    Expired,
    /// The saved payment method was declined when it matched.
    Declined,
}

impl BidStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Matched => "matched",
            Self::Filled => "filled",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Declined => "declined",
        }
    }
}

impl From<BidStatus> for EventStatus {
    fn from(status: BidStatus) -> Self {
        match status {
            BidStatus::Open => Self::Open,
            BidStatus::Matched => Self::Matched,
            BidStatus::Filled => Self::Filled,
            BidStatus::Cancelled => Self::Cancelled,
            BidStatus::Expired => Self::Expired,
            BidStatus::Declined => Self::Declined,
        }
    }
}

/// Where a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum MatchStatus {
    /// Its order is being placed and paid.
    Pending,
    /// The order completed: a sale.
    Filled,
    /// It could not become an order (the pair was taken meanwhile) or the order lapsed.
    Refused,
    /// The saved payment method was declined.
    Declined,
    /// The buyer cancelled its order.
    Cancelled,
}

impl MatchStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Filled => "filled",
            Self::Refused => "refused",
            Self::Declined => "declined",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A bid.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Bid {
    /// Its id, a UUIDv7 (id order is placing order: time priority).
    pub id: Uuid,
    /// The product.
    pub product_id: Uuid,
    /// The US size.
    pub size: f64,
    /// Who bids.
    pub buyer_id: Uuid,
    /// The most they pay, in cents.
    pub price_cents: i64,
    /// Where it is.
    pub status: BidStatus,
    /// The match it is in or was filled by.
    pub match_id: Option<Uuid>,
    /// When it leaves the book unless matched.
    pub expires_at: DateTime<Utc>,
    /// 1 when placed, +1 per change.
    pub version: i64,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// An ask resting on a book: a listing of the product in the size, available and in no
/// pending match.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Ask {
    /// The listing's id.
    pub id: Uuid,
    /// The product.
    pub product_id: Uuid,
    /// The size.
    pub size: f64,
    /// Who sells.
    pub seller_id: Uuid,
    /// The least they take, in cents.
    pub price_cents: i64,
    /// When it was listed (time priority).
    pub listed_at: DateTime<Utc>,
    /// When it leaves the book unless sold; `None` never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A bid met an ask.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Match {
    /// Its id; the order that fills it has the same.
    pub id: Uuid,
    /// The bid.
    pub bid_id: Uuid,
    /// The ask (the listing).
    pub ask_id: Uuid,
    /// The product.
    pub product_id: Uuid,
    /// The size.
    pub size: f64,
    /// The bidder.
    pub buyer_id: Uuid,
    /// The seller.
    pub seller_id: Uuid,
    /// The sale price: the resting order's.
    pub price_cents: i64,
    /// Where it is.
    pub status: MatchStatus,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// What the market knows of a product: its sizes.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Product {
    /// Its id.
    pub id: Uuid,
    /// Its style code, for messages.
    pub style_code: String,
    /// The sizes it has a book for.
    pub sizes: Vec<f64>,
}

/// A bid as its buyer asks for it, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBid {
    /// The product.
    pub product_id: Uuid,
    /// The size.
    pub size: f64,
    /// The price, in cents (at least [`MIN_BID_CENTS`]).
    pub price_cents: i64,
    /// Days on the book, 1 to [`MAX_EXPIRY_DAYS`].
    pub expires_in_days: i64,
}

/// The buyer, as far as placing a bid on a book cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bidder {
    /// Whether the buyer has a saved payment method (a matched bid is charged with it).
    pub has_payment_method: bool,
    /// The buyer's own lowest ask on this book, if they sell this size too.
    pub own_lowest_ask: Option<i64>,
    /// The buyer's open bids on this book.
    pub open_bids: i64,
    /// How many open bids on one book the buyer may have.
    pub open_bids_allowed: i64,
}

impl Default for Bidder {
    /// A buyer with no card, no ask and no bid on the book, allowed the default.
    fn default() -> Self {
        Self {
            has_payment_method: false,
            own_lowest_ask: None,
            open_bids: 0,
            open_bids_allowed: DEFAULT_MAX_OPEN_BIDS_PER_BOOK,
        }
    }
}

/// A command's outcome: the bid's new state and its events; a match when one was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The bid after the command.
    pub bid: Bid,
    /// The match made, if the command made one.
    pub matched: Option<Match>,
    /// What to publish on `market.bids`, in order.
    pub events: Vec<MarketEvent>,
    /// What to publish on `market.matches`: `match.made`, when a match was made.
    pub announced: Option<MatchEvent>,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The product has no book in this size.
    #[error("{style_code} is not made in size {size}")]
    UnknownSize {
        /// The product's style code.
        style_code: String,
        /// The size asked for.
        size: f64,
        /// The sizes it is made in.
        sizes: Vec<f64>,
    },
    /// The buyer has no saved payment method to charge when the bid matches.
    #[error("save a payment method first (POST /api/payment-methods): a matched bid is charged with it")]
    NoPaymentMethod,
    /// The bid would buy the buyer's own ask.
    #[error("you ask {0} cents for this size yourself; a bid at or above it would buy your own pair")]
    OwnAsk(i64),
    /// The buyer has as many open bids on the book as they may have.
    #[error("you have {0} open bids on this size already, the most one buyer may have")]
    TooManyBids(i64),
    /// Someone other than its buyer tried to change the bid.
    #[error("not your bid")]
    NotYours,
    /// The bid's status does not allow the command.
    #[error("a {} bid cannot be {to}", from.as_str())]
    Transition {
        /// The status it is in.
        from: BidStatus,
        /// What was attempted.
        to: &'static str,
    },
    /// The bid has not expired yet.
    #[error("the bid lasts until {0}")]
    NotDue(DateTime<Utc>),
}

impl Bid {
    /// `buyer` places `new` on `product`'s book at `now` (version 1, open): refused for a size
    /// the product has no book for, without a saved payment method, with as many open bids
    /// on the book as the buyer may have, or at or above the buyer's own ask. Whether it
    /// crosses the book is [`Bid::trade`]'s to say.
    pub fn place(
        id: Uuid,
        buyer: Uuid,
        new: &NewBid,
        product: &Product,
        bidder: Bidder,
        now: DateTime<Utc>,
    ) -> Result<Decision, Refusal> {
        if !product.sizes.contains(&new.size) {
            return Err(Refusal::UnknownSize {
                style_code: product.style_code.clone(),
                size: new.size,
                sizes: product.sizes.clone(),
            });
        }
        if !bidder.has_payment_method {
            return Err(Refusal::NoPaymentMethod);
        }
        if bidder.open_bids >= bidder.open_bids_allowed {
            return Err(Refusal::TooManyBids(bidder.open_bids));
        }
        if let Some(own) = bidder.own_lowest_ask.filter(|&own| own <= new.price_cents) {
            return Err(Refusal::OwnAsk(own));
        }
        let bid = Bid {
            id,
            product_id: product.id,
            size: new.size,
            buyer_id: buyer,
            price_cents: new.price_cents,
            status: BidStatus::Open,
            match_id: None,
            expires_at: now + chrono::Duration::days(new.expires_in_days),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let events = vec![MarketEvent::Placed(bid.snapshot())];
        Ok(Decision { bid, matched: None, events, announced: None })
    }

    /// Whether the bid is on the book at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.status == BidStatus::Open && now < self.expires_at
    }

    /// The bid trades with `ask` as match `id`, at `price_cents` (the resting side's): it
    /// is matched, and the match is announced for orders to fill.
    pub fn trade(&self, ask: &Ask, id: Uuid, price_cents: i64, now: DateTime<Utc>) -> Result<Decision, Refusal> {
        if !self.is_live(now) {
            return Err(Refusal::Transition { from: self.status, to: "matched" });
        }
        let matched = Match {
            id,
            bid_id: self.id,
            ask_id: ask.id,
            product_id: self.product_id,
            size: self.size,
            buyer_id: self.buyer_id,
            seller_id: ask.seller_id,
            price_cents,
            status: MatchStatus::Pending,
            created_at: now,
            updated_at: now,
        };
        let bid = self.changed(BidStatus::Matched, Some(id), now);
        let made = MatchMade {
            match_id: id,
            bid_id: self.id,
            sneaker_id: ask.id,
            product_id: self.product_id,
            size: self.size,
            buyer_id: self.buyer_id,
            seller_id: ask.seller_id,
            price_cents,
            made_at: now,
        };
        let events = vec![MarketEvent::Updated(bid.snapshot())];
        Ok(Decision { bid, matched: Some(matched), events, announced: Some(MatchEvent::Made(made)) })
    }

    /// Its buyer withdraws it.
    pub fn cancel(&self, by: Uuid, now: DateTime<Utc>) -> Result<Decision, Refusal> {
        if self.buyer_id != by {
            return Err(Refusal::NotYours);
        }
        self.require(BidStatus::Open, "cancelled")?;
        Ok(self.decided(self.changed(BidStatus::Cancelled, None, now)))
    }

    /// Its time ran out (only once it has).
    pub fn expire(&self, now: DateTime<Utc>) -> Result<Decision, Refusal> {
        self.require(BidStatus::Open, "expired")?;
        if now < self.expires_at {
            return Err(Refusal::NotDue(self.expires_at));
        }
        Ok(self.decided(self.changed(BidStatus::Expired, None, now)))
    }

    /// Its match ended with `outcome`: filled (a sale), back on the book (the pair was taken
    /// meanwhile, or the order lapsed unpaid — unless the bid has expired by then), closed
    /// as declined (the saved card) or cancelled (its buyer cancelled the order).
    pub fn match_ended(&self, outcome: MatchStatus, now: DateTime<Utc>) -> Result<Decision, Refusal> {
        self.require(BidStatus::Matched, "unmatched")?;
        let bid = match outcome {
            MatchStatus::Pending => return Err(Refusal::Transition { from: self.status, to: "pending" }),
            MatchStatus::Filled => self.changed(BidStatus::Filled, self.match_id, now),
            MatchStatus::Refused if now < self.expires_at => self.changed(BidStatus::Open, None, now),
            MatchStatus::Refused => self.changed(BidStatus::Expired, None, now),
            MatchStatus::Declined => self.changed(BidStatus::Declined, None, now),
            MatchStatus::Cancelled => self.changed(BidStatus::Cancelled, None, now),
        };
        Ok(self.decided(bid))
    }

    /// The event payload: the whole bid at this version.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            bid_id: self.id,
            product_id: self.product_id,
            size: self.size,
            buyer_id: self.buyer_id,
            price_cents: self.price_cents,
            status: self.status.into(),
            match_id: self.match_id,
            expires_at: self.expires_at,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    fn require(&self, status: BidStatus, to: &'static str) -> Result<(), Refusal> {
        if self.status == status { Ok(()) } else { Err(Refusal::Transition { from: self.status, to }) }
    }

    fn changed(&self, status: BidStatus, match_id: Option<Uuid>, now: DateTime<Utc>) -> Bid {
        Bid { status, match_id, version: self.version + 1, updated_at: now, ..self.clone() }
    }

    fn decided(&self, bid: Bid) -> Decision {
        let events = vec![MarketEvent::Updated(bid.snapshot())];
        Decision { bid, matched: None, events, announced: None }
    }
}

/// The ask a bid arriving on the book trades with: among `asks` (the book's), the lowest
/// priced at or below the bid, earliest listed among equals, not the bidder's own.
pub fn best_ask<'a>(bid: &Bid, asks: &'a [Ask]) -> Option<&'a Ask> {
    asks.iter()
        .filter(|ask| ask.price_cents <= bid.price_cents && ask.seller_id != bid.buyer_id)
        .min_by(|a, b| (a.price_cents, a.listed_at, a.id).cmp(&(b.price_cents, b.listed_at, b.id)))
}

/// The bid an ask arriving on the book trades with: among `bids` (the book's), the highest
/// priced at or above the ask, earliest placed among equals, live at `now`, not the
/// seller's own.
pub fn best_bid<'a>(ask: &Ask, bids: &'a [Bid], now: DateTime<Utc>) -> Option<&'a Bid> {
    bids.iter()
        .filter(|bid| bid.is_live(now) && bid.price_cents >= ask.price_cents && bid.buyer_id != ask.seller_id)
        .min_by(|a, b| (std::cmp::Reverse(a.price_cents), a.id).cmp(&(std::cmp::Reverse(b.price_cents), b.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + seconds, 0).unwrap()
    }

    const PRODUCT: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00d1);
    const BUYER: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00b1);
    const SELLER: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00c1);
    const MATCH: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00e1);

    fn product() -> Product {
        Product { id: PRODUCT, style_code: "DZ5485-612".into(), sizes: vec![9.0, 10.0, 10.5] }
    }

    fn with_card() -> Bidder {
        Bidder { has_payment_method: true, ..Bidder::default() }
    }

    fn new_bid(price_cents: i64) -> NewBid {
        NewBid { product_id: PRODUCT, size: 10.0, price_cents, expires_in_days: DEFAULT_EXPIRY_DAYS }
    }

    fn bid(n: u128, price_cents: i64, seconds: i64) -> Bid {
        let id = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_1000 + n);
        Bid::place(id, BUYER, &new_bid(price_cents), &product(), with_card(), at(seconds)).unwrap().bid
    }

    fn ask(n: u128, seller: Uuid, price_cents: i64, seconds: i64) -> Ask {
        let id = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_2000 + n);
        Ask {
            id,
            product_id: PRODUCT,
            size: 10.0,
            seller_id: seller,
            price_cents,
            listed_at: at(seconds),
            expires_at: None,
        }
    }

    #[test]
    fn given_a_product_when_a_bid_is_placed_then_it_is_open_for_30_days_and_announced() {
        let decision = Bid::place(MATCH, BUYER, &new_bid(20_000), &product(), with_card(), at(0)).unwrap();
        assert_eq!((decision.bid.status, decision.bid.version), (BidStatus::Open, 1));
        assert_eq!(decision.bid.expires_at, at(0) + chrono::Duration::days(30));
        assert_eq!(decision.events, vec![MarketEvent::Placed(decision.bid.snapshot())]);
    }

    #[test]
    fn given_a_bid_when_the_size_is_unknown_or_there_is_no_card_or_too_many_bids_or_it_crosses_an_own_ask_then_refused()
    {
        let off_size = NewBid { size: 12.0, ..new_bid(20_000) };
        assert!(matches!(
            Bid::place(MATCH, BUYER, &off_size, &product(), with_card(), at(0)),
            Err(Refusal::UnknownSize { size: 12.0, .. })
        ));
        assert_eq!(
            Bid::place(MATCH, BUYER, &new_bid(20_000), &product(), Bidder::default(), at(0)),
            Err(Refusal::NoPaymentMethod)
        );
        let selling = Bidder { own_lowest_ask: Some(19_000), ..with_card() };
        assert_eq!(
            Bid::place(MATCH, BUYER, &new_bid(20_000), &product(), selling, at(0)),
            Err(Refusal::OwnAsk(19_000))
        );
        assert!(Bid::place(MATCH, BUYER, &new_bid(18_000), &product(), selling, at(0)).is_ok(), "below it rests");
        let busy = Bidder { open_bids: 3, open_bids_allowed: 3, ..with_card() };
        assert_eq!(Bid::place(MATCH, BUYER, &new_bid(20_000), &product(), busy, at(0)), Err(Refusal::TooManyBids(3)));
        let one_less = Bidder { open_bids: 2, ..busy };
        assert!(Bid::place(MATCH, BUYER, &new_bid(20_000), &product(), one_less, at(0)).is_ok());
    }

    #[test]
    fn given_asks_when_a_bid_arrives_then_it_takes_the_lowest_then_the_earliest_at_that_price() {
        let asks = [
            ask(1, SELLER, 21_000, 0),
            ask(2, SELLER, 19_000, 5),
            ask(3, SELLER, 19_000, 1),
            ask(4, SELLER, 25_000, 0),
        ];
        assert_eq!(best_ask(&bid(1, 20_000, 10), &asks).map(|a| a.id), Some(asks[2].id), "19,000 listed first");
        assert_eq!(best_ask(&bid(1, 18_000, 10), &asks), None, "no ask at or below 18,000: the bid rests");
        let own = [ask(5, BUYER, 15_000, 0), ask(6, SELLER, 19_500, 0)];
        assert_eq!(best_ask(&bid(1, 20_000, 10), &own).map(|a| a.id), Some(own[1].id), "never one's own");
    }

    #[test]
    fn given_bids_when_an_ask_arrives_then_it_takes_the_highest_then_the_earliest_live_one() {
        let bids = [bid(1, 20_000, 0), bid(2, 22_000, 5), bid(3, 22_000, 1), bid(4, 18_000, 0)];
        let arriving = ask(1, SELLER, 19_000, 10);
        // Ids are UUIDv7, made in placing order: bid 2's id is below bid 3's here, so it is
        // "earlier" by id even though placed later in this made-up clock.
        assert_eq!(best_bid(&arriving, &bids, at(10)).map(|b| b.id), Some(bids[1].id));
        let expired = at(0) + chrono::Duration::days(31);
        assert_eq!(best_bid(&arriving, &bids, expired), None, "expired bids are off the book at once");
        assert_eq!(best_bid(&ask(2, SELLER, 23_000, 10), &bids, at(10)), None, "nothing at or above 23,000");
        assert_eq!(best_bid(&ask(3, BUYER, 1_000, 10), &bids, at(10)), None, "never one's own");
    }

    #[test]
    fn given_a_crossing_bid_when_it_trades_then_matched_at_the_price_given_and_the_match_announced() {
        let incoming = bid(1, 20_000, 0);
        let resting = ask(1, SELLER, 19_000, 0);
        let decision = incoming.trade(&resting, MATCH, resting.price_cents, at(1)).unwrap();
        assert_eq!(
            (decision.bid.status, decision.bid.match_id, decision.bid.version),
            (BidStatus::Matched, Some(MATCH), 2)
        );
        let matched = decision.matched.clone().unwrap();
        assert_eq!((matched.price_cents, matched.seller_id, matched.status), (19_000, SELLER, MatchStatus::Pending));
        assert!(
            matches!((&decision.events[..], &decision.announced), ([MarketEvent::Updated(_)], Some(MatchEvent::Made(m))) if m.price_cents == 19_000)
        );
        assert!(decision.bid.trade(&resting, MATCH, 19_000, at(2)).is_err(), "a matched bid trades no more");
    }

    #[test]
    fn given_a_matched_bid_when_its_match_ends_then_filled_reopened_declined_or_cancelled() {
        let matched = bid(1, 20_000, 0).trade(&ask(1, SELLER, 19_000, 0), MATCH, 19_000, at(1)).unwrap().bid;
        let filled = matched.match_ended(MatchStatus::Filled, at(2)).unwrap().bid;
        assert_eq!((filled.status, filled.match_id), (BidStatus::Filled, Some(MATCH)));
        let back = matched.match_ended(MatchStatus::Refused, at(2)).unwrap().bid;
        assert_eq!((back.status, back.match_id, back.version), (BidStatus::Open, None, 3), "back on the book");
        let late = matched.match_ended(MatchStatus::Refused, at(0) + chrono::Duration::days(31)).unwrap().bid;
        assert_eq!(late.status, BidStatus::Expired, "not back on the book after its time");
        assert_eq!(matched.match_ended(MatchStatus::Declined, at(2)).unwrap().bid.status, BidStatus::Declined);
        assert_eq!(matched.match_ended(MatchStatus::Cancelled, at(2)).unwrap().bid.status, BidStatus::Cancelled);
        assert!(filled.match_ended(MatchStatus::Refused, at(3)).is_err());
    }

    #[test]
    fn given_an_open_bid_when_cancelled_or_expired_then_it_leaves_the_book_only_by_its_rules() {
        let open = bid(1, 20_000, 0);
        assert_eq!(open.cancel(SELLER, at(1)), Err(Refusal::NotYours));
        let cancelled = open.cancel(BUYER, at(1)).unwrap();
        assert_eq!(cancelled.bid.status, BidStatus::Cancelled);
        assert_eq!(cancelled.events, vec![MarketEvent::Updated(cancelled.bid.snapshot())]);
        assert!(cancelled.bid.cancel(BUYER, at(2)).is_err(), "once");
        assert_eq!(open.expire(at(5)), Err(Refusal::NotDue(open.expires_at)));
        let expired = open.expire(open.expires_at).unwrap().bid;
        assert_eq!(expired.status, BidStatus::Expired);
        assert!(!expired.is_live(at(1)));
        assert!(!open.is_live(open.expires_at), "off the book the moment it expires, swept or not");
    }
}
