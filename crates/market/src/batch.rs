//! What one writer batch changed, kept in memory until the batch ends and then written in
//! one statement ([`Writes::write`]): the bids placed, the bids of before the batch that
//! changed, the matches made (each taking its ask off the book) and every event, in the
//! order they happened.
//!
//! One statement per batch instead of one per command is what lets the writer keep up:
//! a batch of fifty commands is still four round trips (`BEGIN`, the fence, this, `COMMIT`).
//! While a batch runs, what it changed is not in the database yet, so whatever the batch
//! reads back (a bid to cancel that is not on the book, the bids and asks that arrived)
//! looks here first ([`Writes::bid`], [`Writes::ask_taken`]).

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sneakerstop_events::market::MatchEvent;
use sneakerstop_messaging::{Outgoing, OutgoingBatch};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::SOURCE;
use crate::domain::{Bid, Decision, Match};
use crate::live::book_changed;

/// Where a bid the batch wrote is kept.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// Placed in this batch: `placed[n]`, inserted as it ends up.
    Placed(usize),
    /// Of before the batch: `changed[n]`, updated from the version it had.
    Changed(usize),
}

/// A batch's changes, in memory until [`Writes::write`].
#[derive(Debug, Default)]
pub struct Writes {
    placed: Vec<Bid>,
    /// Each with the version it had before the batch: the update requires it still.
    changed: Vec<(Bid, i64)>,
    slots: HashMap<Uuid, Slot>,
    matches: Vec<Match>,
    asks_taken: HashSet<Uuid>,
    events: OutgoingBatch,
}

impl Writes {
    /// A bid placed in this batch, and its events.
    pub fn place(&mut self, decided: &Decision) -> anyhow::Result<()> {
        self.slots.insert(decided.bid.id, Slot::Placed(self.placed.len()));
        self.placed.push(decided.bid.clone());
        self.record(decided)
    }

    /// A bid changed by a command of this batch (cancelled, traded), and its events. A bid
    /// the batch already changed must be changed from that state (its version), never from
    /// what the database held before the batch.
    pub fn change(&mut self, decided: &Decision) -> anyhow::Result<()> {
        let bid = &decided.bid;
        match self.slots.get(&bid.id).copied() {
            Some(slot) => {
                let written = match slot {
                    Slot::Placed(n) => &mut self.placed[n],
                    Slot::Changed(n) => &mut self.changed[n].0,
                };
                anyhow::ensure!(
                    written.version + 1 == bid.version,
                    "bid {} changed to version {} from a state other than this batch's (version {})",
                    bid.id,
                    bid.version,
                    written.version
                );
                bid.clone_into(written);
            }
            None => {
                self.slots.insert(bid.id, Slot::Changed(self.changed.len()));
                self.changed.push((bid.clone(), bid.version - 1));
            }
        }
        self.record(decided)
    }

    fn record(&mut self, decided: &Decision) -> anyhow::Result<()> {
        let bid = &decided.bid;
        for event in &decided.events {
            self.events.push(Outgoing::new(SOURCE, bid.id, bid.version, event))?;
        }
        if let Some(MatchEvent::Made(made)) = &decided.announced {
            self.events.push(Outgoing::new(SOURCE, made.match_id, 1, &MatchEvent::Made(made.clone())))?;
        }
        if let Some(made) = &decided.matched {
            anyhow::ensure!(self.asks_taken.insert(made.ask_id), "ask {} matched twice in one batch", made.ask_id);
            self.matches.push(made.clone());
        }
        book_changed(bid.product_id);
        Ok(())
    }

    /// The bid as this batch left it, if the batch wrote it.
    pub fn bid(&self, id: Uuid) -> Option<&Bid> {
        self.slots.get(&id).map(|slot| match *slot {
            Slot::Placed(n) => &self.placed[n],
            Slot::Changed(n) => &self.changed[n].0,
        })
    }

    /// Whether a match of this batch took the ask.
    pub fn ask_taken(&self, id: Uuid) -> bool {
        self.asks_taken.contains(&id)
    }

    /// Writes everything in one statement. Each write carries its guard, and any that does
    /// not hold fails the batch (whose transaction then rolls back): a bid changed must
    /// still be at the version the batch saw, a bid matched must be live by the database's
    /// clock too (a writer whose clock is behind), and an ask matched must be on its book
    /// as the batch saw it, free and at or below the price (a book in memory that missed a
    /// change). The writer then reloads the books.
    #[tracing::instrument(name = "write a batch", skip_all, err,
                          fields(placed = self.placed.len(), changed = self.changed.len(), matches = self.matches.len()))]
    pub async fn write(self, tx: &mut PgConnection) -> anyhow::Result<()> {
        // Every event belongs to a bid recorded here.
        if self.slots.is_empty() {
            return Ok(());
        }
        let placed = Columns::of(&self.placed);
        let changed = Columns::of(self.changed.iter().map(|(bid, _)| bid));
        let before: Vec<i64> = self.changed.iter().map(|(_, version)| *version).collect();
        let matches = MatchColumns::of(&self.matches);
        let query = sqlx::query_as::<_, (Vec<Uuid>, Vec<Uuid>, Vec<Uuid>)>(WRITE)
            .bind(placed.ids)
            .bind(placed.products)
            .bind(placed.sizes)
            .bind(placed.buyers)
            .bind(placed.prices)
            .bind(placed.statuses)
            .bind(placed.matches)
            .bind(placed.expiries)
            .bind(placed.versions)
            .bind(placed.created)
            .bind(placed.updated)
            .bind(changed.ids)
            .bind(changed.statuses)
            .bind(changed.matches)
            .bind(changed.versions)
            .bind(changed.updated)
            .bind(before)
            .bind(matches.ids)
            .bind(matches.bids)
            .bind(matches.asks)
            .bind(matches.products)
            .bind(matches.sizes)
            .bind(matches.buyers)
            .bind(matches.sellers)
            .bind(matches.prices)
            .bind(matches.statuses)
            .bind(matches.created);
        let (inserted, updated, held) =
            self.events.bind_as(query).fetch_one(tx).await.context("write a batch on the books")?;
        let missing = |wanted: &mut dyn Iterator<Item = Uuid>, got: &[Uuid]| -> Vec<Uuid> {
            let got: HashSet<&Uuid> = got.iter().collect();
            wanted.filter(|id| !got.contains(id)).collect()
        };
        let late = missing(&mut self.placed.iter().map(|bid| bid.id), &inserted);
        anyhow::ensure!(late.is_empty(), "bids {late:?} matched after their time ran out");
        let stale = missing(&mut self.changed.iter().map(|(bid, _)| bid.id), &updated);
        anyhow::ensure!(stale.is_empty(), "bids {stale:?} changed, or their time ran out, before this write");
        let gone = missing(&mut self.matches.iter().map(|made| made.ask_id), &held);
        anyhow::ensure!(gone.is_empty(), "asks {gone:?} are no longer on their books as the book saw them");
        Ok(())
    }
}

/// The batch's statement: `write_batch` (migration `0009_write_batch.sql`, which says why it
/// is a function), its parameters arrays.
const WRITE: &str = "SELECT * FROM write_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                     $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33)";

/// Bids as the statement's columns.
#[derive(Default)]
struct Columns {
    ids: Vec<Uuid>,
    products: Vec<Uuid>,
    sizes: Vec<f64>,
    buyers: Vec<Uuid>,
    prices: Vec<i64>,
    statuses: Vec<&'static str>,
    matches: Vec<Option<Uuid>>,
    expiries: Vec<DateTime<Utc>>,
    versions: Vec<i64>,
    created: Vec<DateTime<Utc>>,
    updated: Vec<DateTime<Utc>>,
}

impl Columns {
    fn of<'a>(bids: impl IntoIterator<Item = &'a Bid>) -> Self {
        let mut columns = Self::default();
        for bid in bids {
            columns.ids.push(bid.id);
            columns.products.push(bid.product_id);
            columns.sizes.push(bid.size);
            columns.buyers.push(bid.buyer_id);
            columns.prices.push(bid.price_cents);
            columns.statuses.push(bid.status.as_str());
            columns.matches.push(bid.match_id);
            columns.expiries.push(bid.expires_at);
            columns.versions.push(bid.version);
            columns.created.push(bid.created_at);
            columns.updated.push(bid.updated_at);
        }
        columns
    }
}

/// Matches as the statement's columns.
#[derive(Default)]
struct MatchColumns {
    ids: Vec<Uuid>,
    bids: Vec<Uuid>,
    asks: Vec<Uuid>,
    products: Vec<Uuid>,
    sizes: Vec<f64>,
    buyers: Vec<Uuid>,
    sellers: Vec<Uuid>,
    prices: Vec<i64>,
    statuses: Vec<&'static str>,
    created: Vec<DateTime<Utc>>,
}

impl MatchColumns {
    fn of(matches: &[Match]) -> Self {
        let mut columns = Self::default();
        for made in matches {
            columns.ids.push(made.id);
            columns.bids.push(made.bid_id);
            columns.asks.push(made.ask_id);
            columns.products.push(made.product_id);
            columns.sizes.push(made.size);
            columns.buyers.push(made.buyer_id);
            columns.sellers.push(made.seller_id);
            columns.prices.push(made.price_cents);
            columns.statuses.push(made.status.as_str());
            columns.created.push(made.created_at);
        }
        columns
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::domain::{Ask, Bidder, DEFAULT_EXPIRY_DAYS, NewBid, Product};

    const PRODUCT: Uuid = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00d1);

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + seconds, 0).unwrap()
    }

    fn placed(n: u128) -> Decision {
        let product = Product { id: PRODUCT, style_code: "DZ5485-612".into(), sizes: vec![10.0] };
        let new = NewBid { product_id: PRODUCT, size: 10.0, price_cents: 20_000, expires_in_days: DEFAULT_EXPIRY_DAYS };
        let bidder = Bidder { has_payment_method: true, ..Bidder::default() };
        Bid::place(Uuid::from_u128(0x1000 + n), Uuid::from_u128(0xb1), &new, &product, bidder, at(0)).unwrap()
    }

    fn ask(n: u128) -> Ask {
        Ask {
            id: Uuid::from_u128(0x2000 + n),
            product_id: PRODUCT,
            size: 10.0,
            seller_id: Uuid::from_u128(0xc1),
            price_cents: 19_000,
            listed_at: at(0),
            expires_at: None,
        }
    }

    #[test]
    fn a_bid_placed_and_traded_in_one_batch_is_written_once_as_it_ends_up() {
        let mut writes = Writes::default();
        let new = placed(1);
        writes.place(&new).unwrap();
        let traded = new.bid.trade(&ask(1), Uuid::from_u128(0xe1), 19_000, at(1)).unwrap();
        writes.change(&traded).unwrap();

        assert_eq!(writes.placed, std::slice::from_ref(&traded.bid), "inserted once, already matched");
        assert!(writes.changed.is_empty());
        assert_eq!(writes.bid(new.bid.id), Some(&traded.bid));
        assert!(writes.ask_taken(ask(1).id));
        assert_eq!(writes.matches.len(), 1);
    }

    #[test]
    fn a_bid_of_before_the_batch_keeps_the_version_it_had_and_is_changed_only_from_the_batchs_state() {
        let mut writes = Writes::default();
        let open = placed(2).bid; // as the database held it before the batch: version 1
        let traded = open.trade(&ask(2), Uuid::from_u128(0xe2), 19_000, at(1)).unwrap();
        writes.change(&traded).unwrap();
        assert_eq!(writes.changed, [(traded.bid.clone(), 1)], "updated from version 1");

        // A cancel decided from the state the database still shows (version 1, open) is not
        // the batch's state (version 2, matched): refused, so the batch fails and runs again.
        let stale = open.cancel(open.buyer_id, at(2)).unwrap();
        let refused = writes.change(&stale).unwrap_err().to_string();
        assert!(refused.contains("from a state other than this batch's"), "{refused}");
        assert_eq!(writes.bid(open.id), Some(&traded.bid), "the batch's state is kept");
    }

    #[test]
    fn an_ask_taken_twice_in_one_batch_fails_it() {
        let mut writes = Writes::default();
        let (first, second) = (placed(3).bid, placed(4).bid);
        writes.change(&first.trade(&ask(3), Uuid::from_u128(0xe3), 19_000, at(1)).unwrap()).unwrap();
        let twice = writes.change(&second.trade(&ask(3), Uuid::from_u128(0xe4), 19_000, at(1)).unwrap());
        assert!(twice.unwrap_err().to_string().contains("matched twice"));
    }
}
