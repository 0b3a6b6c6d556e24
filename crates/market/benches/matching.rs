//! The matching engine alone ([`sneakerstop_market::matching`]): no database, no network,
//! one core. `make bench` runs it and reports operations per second; the target is
//! 1,000,000 (docs/performance.md).
//!
//! The mix, on a book 1,000 deep (500 bids below 500 asks), after which it stays about that
//! deep: half the operations are places that rest (a bid below the lowest ask or an ask
//! above the highest bid, alternately), a third cancel a resting order picked at random,
//! and the rest cross (a bid at the lowest ask, or an ask at the highest bid: a trade).
//! Owners are drawn from 200 buyers and sellers, so walks skip own orders now and then.

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sneakerstop_market::matching::{OrderBook, Resting};
use uuid::Uuid;

/// Operations per measured batch.
const OPERATIONS: usize = 10_000;
/// Orders on each side before the batch.
const DEPTH: usize = 500;
/// Where the two sides meet, in cents.
const MID: i64 = 20_000;

#[derive(Debug, Clone, Copy)]
enum Operation {
    Bid(Order),
    Ask(Order),
    CancelBid(Uuid),
    CancelAsk(Uuid),
}

#[derive(Debug, Clone, Copy)]
struct Order {
    id: Uuid,
    owner: Uuid,
    price_cents: i64,
}

/// A small deterministic generator (xorshift64*): the same mix on every run.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % below
    }
}

/// The book as the batch finds it, and the batch's operations.
struct Scenario {
    book: OrderBook<(), ()>,
    operations: Vec<Operation>,
    now: DateTime<Utc>,
}

fn resting(order: Order, now: DateTime<Utc>) -> Resting<()> {
    Resting { id: order.id, owner: order.owner, price_cents: order.price_cents, at: now, expires_at: None, payload: () }
}

/// Orders with fresh ids, owners drawn from 200, prices on either side of [`MID`].
struct Orders {
    dice: Dice,
    next: u128,
}

impl Orders {
    fn order(&mut self, price_cents: i64) -> Order {
        self.next += 1;
        let owner = Uuid::from_u128(u128::from(self.dice.roll(200)) + 1);
        Order { id: Uuid::from_u128(self.next << 64), owner, price_cents }
    }

    /// A bid that rests: below every ask.
    fn low_bid(&mut self) -> Order {
        let below = i64::try_from(self.dice.roll(2_000)).expect("small");
        self.order(MID - 1 - below)
    }

    /// An ask that rests: above every bid.
    fn high_ask(&mut self) -> Order {
        let above = i64::try_from(self.dice.roll(2_000)).expect("small");
        self.order(MID + above)
    }

    fn pick(&mut self, ids: &mut Vec<Uuid>) -> Uuid {
        let which = usize::try_from(self.dice.roll(ids.len() as u64)).expect("small");
        ids.swap_remove(which)
    }
}

fn scenario() -> Scenario {
    let now = DateTime::from_timestamp(1_764_000_000, 0).expect("a valid time");
    let mut orders = Orders { dice: Dice(0x9e37_79b9_7f4a_7c15), next: 1 };
    let mut book = OrderBook::default();
    // Resting orders the batch may cancel (some will have traded: a cancel that finds
    // nothing is an operation too, as a late cancel is in the market).
    let (mut bids, mut asks) = (Vec::new(), Vec::new());
    for _ in 0..DEPTH {
        let (bid, ask) = (orders.low_bid(), orders.high_ask());
        book.place_bid(resting(bid, now), now);
        book.place_ask(resting(ask, now), now);
        bids.push(bid.id);
        asks.push(ask.id);
    }
    let mut operations = Vec::with_capacity(OPERATIONS);
    for n in 0..OPERATIONS {
        let operation = match orders.dice.roll(6) {
            // Half: places that rest.
            0..=2 if n % 2 == 0 => {
                let bid = orders.low_bid();
                bids.push(bid.id);
                Operation::Bid(bid)
            }
            0..=2 => {
                let ask = orders.high_ask();
                asks.push(ask.id);
                Operation::Ask(ask)
            }
            // A third: cancels.
            3 | 4 if n % 2 == 0 && !bids.is_empty() => Operation::CancelBid(orders.pick(&mut bids)),
            3 | 4 if !asks.is_empty() => Operation::CancelAsk(orders.pick(&mut asks)),
            // The rest: crossing, at a price through the whole other side.
            _ if n % 2 == 0 => Operation::Bid(orders.order(MID + 2_000)),
            _ => Operation::Ask(orders.order(MID - 2_000)),
        };
        operations.push(operation);
    }
    Scenario { book, operations, now }
}

fn run(scenario: Scenario) -> usize {
    let Scenario { mut book, operations, now } = scenario;
    let mut trades = 0;
    for operation in operations {
        let traded = match operation {
            Operation::Bid(bid) => book.place_bid(resting(bid, now), now).is_some(),
            Operation::Ask(ask) => book.place_ask(resting(ask, now), now).is_some(),
            Operation::CancelBid(id) => {
                black_box(book.remove_bid(id));
                false
            }
            Operation::CancelAsk(id) => {
                black_box(book.remove_ask(id));
                false
            }
        };
        trades += usize::from(traded);
    }
    black_box(book);
    trades
}

fn matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("matching");
    group.throughput(Throughput::Elements(OPERATIONS as u64));
    group.bench_function("mixed-1000-deep", |b| {
        b.iter_batched(scenario, |scenario| black_box(run(scenario)), BatchSize::LargeInput);
    });
    group.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
