-- A pending trade that fails on its own, round after round, is set aside instead of being
-- tried forever: a bug, or a row no trade can be made of, must not keep its book's other
-- pending trades from trading. The trader first trades a book's rows together; when that
-- fails it trades them one by one, and a row that fails alone counts an attempt; at
-- MAX_ATTEMPTS (crates/market/src/trader.rs) it is set aside with its last error, for an
-- operator to look at and put back (docs/operations.md).
ALTER TABLE pending_trades
    ADD COLUMN attempts     integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error   text,
    ADD COLUMN set_aside_at timestamptz;
