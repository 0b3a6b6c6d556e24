-- A buyer's open bids on one book, counted as each bid is placed (at most
-- MAX_OPEN_BIDS_PER_BOOK, crates/market/src/domain.rs): without this index the count would
-- read every open bid on a hot book, or every bid the buyer ever placed.
CREATE INDEX bids_buyer_book_open ON bids (buyer_id, product_id, size) WHERE status = 'open';
