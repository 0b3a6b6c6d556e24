//! `market.bids`: bids. `market.matches`: the matches the market makes. Key: the **product**
//! id, so that everything about one product's books (every size) stays in order.
//!
//! Bids are published whole (`bid.placed`, then `bid.updated` per change, by `version`);
//! `match.made` is what orders turns into an order for the bidder. Matches have a topic of
//! their own so that orders reads them without reading every bid.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topics;

crate::contract! {
    /// Events on `market.bids`.
    pub enum MarketEvent on topics::BIDS, key product_id {
        /// A buyer placed a bid (version 1).
        Placed("bid.placed", v 1) => Bid,
        /// A bid changed: matched, filled, back on the book, cancelled, expired or declined
        /// (version + 1).
        Updated("bid.updated", v 1) => Bid,
    }
}

crate::contract! {
    /// Events on `market.matches`.
    pub enum MatchEvent on topics::MATCHES, key product_id {
        /// A bid met an ask: the pair is to be sold to the bidder at `priceCents`.
        Made("match.made", v 1) => MatchMade,
    }
}

/// Where a bid is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BidStatus {
    /// On the book.
    Open,
    /// Met an ask; its order is being placed and paid.
    Matched,
    /// Bought: the order completed.
    Filled,
    /// Withdrawn by its buyer.
    Cancelled,
    /// Its time ran out.
    Expired,
    /// The saved payment method was declined when it matched: closed.
    Declined,
}

/// A whole bid, as of `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bid {
    /// The bid.
    pub bid_id: Uuid,
    /// The product (also the key).
    pub product_id: Uuid,
    /// The US size.
    pub size: f64,
    /// Who bids.
    pub buyer_id: Uuid,
    /// The most the buyer pays, in cents.
    pub price_cents: i64,
    /// Status after this change.
    pub status: BidStatus,
    /// The match it is in or was filled by, while matched or once filled.
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

/// `match.made` v1: a bid met an ask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchMade {
    /// The match; the order that fills it has this id.
    pub match_id: Uuid,
    /// The bid.
    pub bid_id: Uuid,
    /// The ask: the listing to sell.
    pub sneaker_id: Uuid,
    /// The product (also the key).
    pub product_id: Uuid,
    /// The size.
    pub size: f64,
    /// The bidder, who buys.
    pub buyer_id: Uuid,
    /// The seller.
    pub seller_id: Uuid,
    /// The sale price in cents: the resting order's price.
    pub price_cents: i64,
    /// When it was made.
    pub made_at: DateTime<Utc>,
}
