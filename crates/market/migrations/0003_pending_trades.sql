-- Orders that joined (or rejoined) their book in a consumer's transaction and are yet to
-- trade. The consumer writes one with the change that put the order on the book and trades
-- nothing itself: the trader takes them book by book, each under that book's lock, right
-- after the consumer's transaction commits (or after a restart, should the process die in
-- between). So a consumer batch never holds a book while requests wait for it, and no
-- crossing is lost.
CREATE TABLE pending_trades (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id uuid   NOT NULL,
    size       float8 NOT NULL,
    ask_id     uuid,
    bid_id     uuid,
    CHECK (num_nonnulls(ask_id, bid_id) = 1)
);
CREATE INDEX pending_trades_book ON pending_trades (product_id, size);
