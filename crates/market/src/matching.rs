//! The matching engine: one book (a product in one size) held in memory, its resting bids
//! and asks in price-time order, and what happens when an order arrives on either side.
//!
//! Nothing here touches a database or a clock: the caller says what `now` is, decides the
//! refusals it needs to ([`crate::domain::Bid::place`] with what [`OrderBook::bidder`]
//! reports), writes the outcome durably, and answers only after that write has committed.
//! Keeping the book in memory is what lets one writer do thousands of operations per
//! second where reading the book from PostgreSQL on every operation did hundreds
//! (docs/market.md, "The engine").
//!
//! The rules are the market's ([`crate::domain`]):
//! - **Price, then time.** The best ask is the lowest, the earliest listed among equals
//!   (then the lowest id); the best bid is the highest, the earliest placed among equals
//!   (bid ids are UUIDv7, so id order is placing order).
//! - **The resting order's price.** An arriving bid buys at the ask's price; an arriving ask
//!   sells at the bid's price.
//! - **One pair per trade.** An ask is one pair and a bid buys one pair, so an arrival
//!   trades at most once; what does not trade rests.
//! - **No self-trade.** Matching skips the arriving side's own orders.
//! - **Expiry.** An order whose `expires_at` is not ahead of `now` is off the book: it never
//!   trades and is not counted; the walk that meets one drops it (the sweeper records its
//!   end).
//!
//! Every operation is `O(log n)` in the book's depth, plus the orders a walk skips (own or
//! expired ones). `benches/matching.rs` measures it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// An order resting on a book, with whatever the caller keeps with it (`T`).
#[derive(Debug, Clone, PartialEq)]
pub struct Resting<T> {
    /// The bid's id, or the ask's (the listing's).
    pub id: Uuid,
    /// The buyer of a bid, the seller of an ask.
    pub owner: Uuid,
    /// The price, in cents.
    pub price_cents: i64,
    /// When it was placed or listed (an ask's time priority; a bid's is its id).
    pub at: DateTime<Utc>,
    /// When it leaves the book; `None` never.
    pub expires_at: Option<DateTime<Utc>>,
    /// The caller's record of it.
    pub payload: T,
}

impl<T> Resting<T> {
    fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|expires| now < expires)
    }
}

/// A bid met an ask.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade<B, A> {
    /// The bid, as it rested or arrived.
    pub bid: Resting<B>,
    /// The ask, as it rested or arrived.
    pub ask: Resting<A>,
    /// The price: the resting order's.
    pub price_cents: i64,
}

/// Where a bid sorts: highest price first, then by id (UUIDv7: placing order).
type BidKey = (Reverse<i64>, Uuid);
/// Where an ask sorts: lowest price first, then the earliest listed, then by id.
type AskKey = (i64, DateTime<Utc>, Uuid);

fn bid_key<T>(bid: &Resting<T>) -> BidKey {
    (Reverse(bid.price_cents), bid.id)
}

fn ask_key<T>(ask: &Resting<T>) -> AskKey {
    (ask.price_cents, ask.at, ask.id)
}

/// One side of a book: its orders in priority order, where each one is, and each owner's.
#[derive(Debug)]
struct Side<K, T> {
    orders: BTreeMap<K, Resting<T>>,
    keys: HashMap<Uuid, K>,
    by_owner: HashMap<Uuid, BTreeSet<K>>,
}

impl<K, T> Default for Side<K, T> {
    fn default() -> Self {
        Self { orders: BTreeMap::new(), keys: HashMap::new(), by_owner: HashMap::new() }
    }
}

impl<K: Ord + Copy, T> Side<K, T> {
    fn insert(&mut self, key: K, order: Resting<T>) {
        self.keys.insert(order.id, key);
        self.by_owner.entry(order.owner).or_default().insert(key);
        self.orders.insert(key, order);
    }

    fn remove(&mut self, id: Uuid) -> Option<Resting<T>> {
        let key = self.keys.remove(&id)?;
        let order = self.orders.remove(&key)?;
        if let std::collections::hash_map::Entry::Occupied(mut owned) = self.by_owner.entry(order.owner) {
            owned.get_mut().remove(&key);
            if owned.get().is_empty() {
                owned.remove();
            }
        }
        Some(order)
    }

    /// The best live order of someone other than `not`, within `crosses`; drops the expired
    /// orders it walks past.
    fn best(&mut self, not: Uuid, now: DateTime<Utc>, crosses: impl Fn(i64) -> bool) -> Option<Resting<T>> {
        let mut expired = Vec::new();
        let mut found = None;
        for order in self.orders.values() {
            if !crosses(order.price_cents) {
                break;
            }
            if !order.is_live(now) {
                expired.push(order.id);
            } else if order.owner != not {
                found = Some(order.id);
                break;
            }
        }
        for id in expired {
            self.remove(id);
        }
        found.and_then(|id| self.remove(id))
    }

    /// The owner's live orders, best first.
    fn owned(&self, owner: Uuid, now: DateTime<Utc>) -> impl Iterator<Item = &Resting<T>> {
        self.by_owner
            .get(&owner)
            .into_iter()
            .flatten()
            .filter_map(|key| self.orders.get(key))
            .filter(move |order| order.is_live(now))
    }

    fn live(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Resting<T>> {
        self.orders.values().filter(move |order| order.is_live(now))
    }
}

/// One book in memory: its live bids and asks in price-time order.
#[derive(Debug)]
pub struct OrderBook<B, A> {
    bids: Side<BidKey, B>,
    asks: Side<AskKey, A>,
}

impl<B, A> Default for OrderBook<B, A> {
    fn default() -> Self {
        Self { bids: Side::default(), asks: Side::default() }
    }
}

/// What a bidder has on a book, for the refusals placing a bid decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OnBook {
    /// The bidder's live bids on the book.
    pub open_bids: i64,
    /// The bidder's own lowest live ask on the book, if they sell this size too.
    pub own_lowest_ask: Option<i64>,
}

impl<B, A> OrderBook<B, A> {
    /// A bid arrives: it trades with the best live ask at or below its price that is not its
    /// buyer's own, at the ask's price, or rests on the book. An expired bid does neither.
    pub fn place_bid(&mut self, bid: Resting<B>, now: DateTime<Utc>) -> Option<Trade<B, A>> {
        if !bid.is_live(now) {
            return None;
        }
        let price = bid.price_cents;
        match self.asks.best(bid.owner, now, |ask| ask <= price) {
            Some(ask) => Some(Trade { price_cents: ask.price_cents, bid, ask }),
            None => {
                self.bids.insert(bid_key(&bid), bid);
                None
            }
        }
    }

    /// An ask arrives (listed, made cheaper or dearer, or free again): it replaces the ask of
    /// that id if one rests, then trades with the best live bid at or above its price that
    /// is not its seller's own, at the bid's price, or rests on the book. An expired ask
    /// does neither.
    pub fn place_ask(&mut self, ask: Resting<A>, now: DateTime<Utc>) -> Option<Trade<B, A>> {
        self.asks.remove(ask.id);
        if !ask.is_live(now) {
            return None;
        }
        let price = ask.price_cents;
        match self.bids.best(ask.owner, now, |bid| bid >= price) {
            Some(bid) => Some(Trade { price_cents: bid.price_cents, bid, ask }),
            None => {
                self.asks.insert(ask_key(&ask), ask);
                None
            }
        }
    }

    /// Puts an ask on the book as it is, trading nothing: a book loaded from storage. (A
    /// loaded book is crossed only while an arrival that committed waits to be taken, and
    /// taking it trades.)
    pub fn load_ask(&mut self, ask: Resting<A>) {
        self.asks.remove(ask.id);
        self.asks.insert(ask_key(&ask), ask);
    }

    /// Takes a bid off the book (cancelled, expired); returns it if it rested here.
    pub fn remove_bid(&mut self, id: Uuid) -> Option<Resting<B>> {
        self.bids.remove(id)
    }

    /// Takes an ask off the book (reserved, sold, withdrawn, expired); returns it if it
    /// rested here.
    pub fn remove_ask(&mut self, id: Uuid) -> Option<Resting<A>> {
        self.asks.remove(id)
    }

    /// The bid with this id, if it rests here.
    pub fn bid(&self, id: Uuid) -> Option<&Resting<B>> {
        self.bids.keys.get(&id).and_then(|key| self.bids.orders.get(key))
    }

    /// What `bidder` has on the book at `now`.
    pub fn bidder(&self, bidder: Uuid, now: DateTime<Utc>) -> OnBook {
        let open_bids = i64::try_from(self.bids.owned(bidder, now).count()).unwrap_or(i64::MAX);
        let own_lowest_ask = self.asks.owned(bidder, now).next().map(|ask| ask.price_cents);
        OnBook { open_bids, own_lowest_ask }
    }

    /// The live bids, best first.
    pub fn bids(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Resting<B>> {
        self.bids.live(now)
    }

    /// The live asks, best first.
    pub fn asks(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Resting<A>> {
        self.asks.live(now)
    }

    /// Whether nothing rests on the book, live or not.
    pub fn is_empty(&self) -> bool {
        self.bids.orders.is_empty() && self.asks.orders.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + seconds, 0).unwrap()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn order(n: u128, owner: u128, price_cents: i64, seconds: i64) -> Resting<()> {
        Resting { id: id(n), owner: id(owner), price_cents, at: at(seconds), expires_at: None, payload: () }
    }

    #[test]
    fn a_bid_takes_the_lowest_ask_then_the_earliest_at_the_asks_price_skipping_its_own() {
        let mut book = OrderBook::<(), ()>::default();
        assert!(book.place_ask(order(1, 100, 21_000, 0), at(0)).is_none());
        assert!(book.place_ask(order(2, 200, 19_000, 5), at(5)).is_none());
        assert!(book.place_ask(order(3, 300, 19_000, 1), at(5)).is_none());
        assert!(book.place_ask(order(4, 900, 18_000, 1), at(5)).is_none(), "the bidder's own");
        let trade = book.place_bid(order(10, 900, 20_000, 6), at(6)).expect("crosses");
        assert_eq!((trade.ask.id, trade.price_cents), (id(3), 19_000));
        let trade = book.place_bid(order(11, 901, 20_000, 7), at(7)).expect("crosses");
        assert_eq!((trade.ask.id, trade.price_cents), (id(4), 18_000), "not the first bidder's, so theirs");
        assert!(book.place_bid(order(12, 900, 18_500, 8), at(8)).is_none(), "below every other ask: rests");
        assert_eq!(book.bids(at(8)).map(|bid| bid.id).collect::<Vec<_>>(), [id(12)]);
    }

    #[test]
    fn an_ask_takes_the_highest_bid_then_the_earliest_at_the_bids_price() {
        let mut book = OrderBook::<(), ()>::default();
        book.place_bid(order(1, 100, 20_000, 0), at(0));
        book.place_bid(order(2, 200, 22_000, 1), at(1));
        book.place_bid(order(3, 300, 22_000, 2), at(2));
        let trade = book.place_ask(order(10, 400, 21_000, 3), at(3)).expect("crosses");
        assert_eq!((trade.bid.id, trade.price_cents), (id(2), 22_000));
        assert_eq!(book.bidder(id(300), at(3)), OnBook { open_bids: 1, own_lowest_ask: None });
    }

    #[test]
    fn expired_orders_neither_trade_nor_count_and_an_ask_placed_again_replaces_itself() {
        let mut book = OrderBook::<(), ()>::default();
        book.place_bid(Resting { expires_at: Some(at(10)), ..order(1, 100, 30_000, 0) }, at(0));
        book.place_ask(order(2, 200, 40_000, 0), at(0));
        assert_eq!(book.bidder(id(100), at(9)).open_bids, 1);
        assert_eq!(book.bidder(id(100), at(10)).open_bids, 0);
        assert!(book.place_ask(order(2, 200, 25_000, 0), at(10)).is_none(), "the bid expired");
        assert_eq!(book.asks(at(10)).map(|ask| ask.price_cents).collect::<Vec<_>>(), [25_000]);
        assert_eq!(book.bidder(id(200), at(10)).own_lowest_ask, Some(25_000));
        assert!(book.remove_ask(id(2)).is_some());
        assert!(book.is_empty(), "the expired bid was dropped by the walk");
    }
}

/// The engine against a plain model of the rules that shares no code with it: random
/// sequences of places, cancels, ask arrivals (new and repriced), removals and the clock
/// moving on must give the same trades and the same book after every step.
#[cfg(test)]
mod model {
    use proptest::prelude::*;

    use super::{OrderBook, Resting};

    /// An order as the model keeps it: plain numbers.
    #[derive(Debug, Clone, Copy)]
    struct Order {
        id: u128,
        owner: u8,
        price: i64,
        at: i64,
        expires: Option<i64>,
    }

    impl Order {
        fn live(&self, now: i64) -> bool {
            self.expires.is_none_or(|expires| now < expires)
        }
    }

    /// The rules, written as directly as they read: search everything, every time.
    #[derive(Debug, Default)]
    struct Model {
        bids: Vec<Order>,
        asks: Vec<Order>,
    }

    impl Model {
        fn place_bid(&mut self, bid: Order, now: i64) -> Option<(u128, u128, i64)> {
            if !bid.live(now) {
                return None;
            }
            let best = self
                .asks
                .iter()
                .filter(|ask| ask.live(now) && ask.price <= bid.price && ask.owner != bid.owner)
                .min_by_key(|ask| (ask.price, ask.at, ask.id))
                .copied();
            match best {
                Some(ask) => {
                    self.asks.retain(|other| other.id != ask.id);
                    Some((bid.id, ask.id, ask.price))
                }
                None => {
                    self.bids.push(bid);
                    None
                }
            }
        }

        fn place_ask(&mut self, ask: Order, now: i64) -> Option<(u128, u128, i64)> {
            self.asks.retain(|other| other.id != ask.id);
            if !ask.live(now) {
                return None;
            }
            let best = self
                .bids
                .iter()
                .filter(|bid| bid.live(now) && bid.price >= ask.price && bid.owner != ask.owner)
                .min_by_key(|bid| (-bid.price, bid.id))
                .copied();
            match best {
                Some(bid) => {
                    self.bids.retain(|other| other.id != bid.id);
                    Some((bid.id, ask.id, bid.price))
                }
                None => {
                    self.asks.push(ask);
                    None
                }
            }
        }

        fn bids(&self, now: i64) -> Vec<u128> {
            let mut live: Vec<_> = self.bids.iter().filter(|bid| bid.live(now)).collect();
            live.sort_by_key(|bid| (-bid.price, bid.id));
            live.into_iter().map(|bid| bid.id).collect()
        }

        fn asks(&self, now: i64) -> Vec<u128> {
            let mut live: Vec<_> = self.asks.iter().filter(|ask| ask.live(now)).collect();
            live.sort_by_key(|ask| (ask.price, ask.at, ask.id));
            live.into_iter().map(|ask| ask.id).collect()
        }

        fn bidder(&self, owner: u8, now: i64) -> (i64, Option<i64>) {
            let open = self.bids.iter().filter(|bid| bid.owner == owner && bid.live(now)).count();
            let own = self.asks.iter().filter(|ask| ask.owner == owner && ask.live(now)).map(|ask| ask.price).min();
            (i64::try_from(open).unwrap(), own)
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Bid {
            owner: u8,
            price: i64,
            lasts: Option<i64>,
        },
        /// `which` picks an ask listed before (repriced, or free again) or, past them, a new one.
        Ask {
            which: usize,
            owner: u8,
            price: i64,
            lasts: Option<i64>,
        },
        CancelBid {
            which: usize,
        },
        RemoveAsk {
            which: usize,
        },
        Wait {
            seconds: i64,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        let lasts = proptest::option::of(1..6i64);
        prop_oneof![
            4 => (0..4u8, 20..30i64, lasts.clone()).prop_map(|(owner, price, lasts)| Step::Bid { owner, price, lasts }),
            4 => (0..12usize, 0..4u8, 20..30i64, lasts)
                .prop_map(|(which, owner, price, lasts)| Step::Ask { which, owner, price, lasts }),
            2 => (0..12usize).prop_map(|which| Step::CancelBid { which }),
            2 => (0..12usize).prop_map(|which| Step::RemoveAsk { which }),
            1 => (1..3i64).prop_map(|seconds| Step::Wait { seconds }),
        ]
    }

    fn time(seconds: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_764_000_000 + seconds, 0).unwrap()
    }

    fn uuid(n: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(n)
    }

    fn resting(order: Order) -> Resting<()> {
        Resting {
            id: uuid(order.id),
            owner: uuid(u128::from(order.owner)),
            price_cents: order.price,
            at: time(order.at),
            expires_at: order.expires.map(time),
            payload: (),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn the_engine_trades_and_rests_exactly_as_the_rules_say(steps in proptest::collection::vec(step(), 1..120)) {
            let mut engine = OrderBook::<(), ()>::default();
            let mut model = Model::default();
            let (mut now, mut next_bid) = (0i64, 1u128);
            // Asks listed so far (id, listed at): ids are not in listing order, so equal
            // prices listed in the same second are ordered by id.
            let mut listed: Vec<(u128, i64)> = Vec::new();
            let mut placed_bids: Vec<u128> = Vec::new();
            for step in steps {
                let (ours, theirs) = match step {
                    Step::Bid { owner, price, lasts } => {
                        let bid = Order { id: next_bid, owner, price, at: now, expires: lasts.map(|s| now + s) };
                        next_bid += 1;
                        placed_bids.push(bid.id);
                        let ours = engine.place_bid(resting(bid), time(now));
                        (ours.map(|t| (t.bid.id, t.ask.id, t.price_cents)), model.place_bid(bid, now))
                    }
                    Step::Ask { which, owner, price, lasts } => {
                        let (id, at) = match listed.get(which) {
                            Some(&known) => known,
                            None => {
                                let id = 1_000_000 + u128::try_from((listed.len() * 7_919) % 1_009).unwrap();
                                listed.push((id, now));
                                (id, now)
                            }
                        };
                        let ask = Order { id, owner, price, at, expires: lasts.map(|s| now + s) };
                        let ours = engine.place_ask(resting(ask), time(now));
                        (ours.map(|t| (t.bid.id, t.ask.id, t.price_cents)), model.place_ask(ask, now))
                    }
                    Step::CancelBid { which } => {
                        if let Some(&id) = placed_bids.get(which) {
                            engine.remove_bid(uuid(id));
                            model.bids.retain(|bid| bid.id != id);
                        }
                        (None, None)
                    }
                    Step::RemoveAsk { which } => {
                        if let Some(&(id, _)) = listed.get(which) {
                            engine.remove_ask(uuid(id));
                            model.asks.retain(|ask| ask.id != id);
                        }
                        (None, None)
                    }
                    Step::Wait { seconds } => {
                        now += seconds;
                        (None, None)
                    }
                };
                let theirs = theirs.map(|(bid, ask, price)| (uuid(bid), uuid(ask), price));
                prop_assert_eq!(ours, theirs);
                let bids: Vec<_> = engine.bids(time(now)).map(|bid| bid.id).collect();
                prop_assert_eq!(bids, model.bids(now).into_iter().map(uuid).collect::<Vec<_>>());
                let asks: Vec<_> = engine.asks(time(now)).map(|ask| ask.id).collect();
                prop_assert_eq!(asks, model.asks(now).into_iter().map(uuid).collect::<Vec<_>>());
                for owner in 0..4u8 {
                    let on_book = engine.bidder(uuid(u128::from(owner)), time(now));
                    prop_assert_eq!((on_book.open_bids, on_book.own_lowest_ask), model.bidder(owner, now));
                }
            }
        }
    }
}
