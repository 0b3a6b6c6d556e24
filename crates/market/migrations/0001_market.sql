-- The market: one book per product and size. Asks are catalog's listings that name a
-- product (a replica, by version); bids are the market's own. Matching runs with the book
-- locked (a transaction-scoped advisory lock per product and size), so two crossings of
-- one book never interleave; the unique indexes below hold even if that lock were missed.

-- Replica of catalog.products: which sizes each product has a book for.
CREATE TABLE products (
    id         uuid     PRIMARY KEY,
    style_code text     NOT NULL,
    sizes      float8[] NOT NULL,
    version    bigint   NOT NULL
);

-- Replica of catalog.sneakers, for listings that name a product (asks).
CREATE TABLE asks (
    id          uuid        PRIMARY KEY,
    product_id  uuid        NOT NULL,
    size        float8      NOT NULL,
    seller_id   uuid        NOT NULL,
    price_cents bigint      NOT NULL,
    status      text        NOT NULL CHECK (status IN ('available', 'reserved', 'sold')),
    version     bigint      NOT NULL,
    listed_at   timestamptz NOT NULL,
    -- The pending match holding it: off the book until that match ends.
    match_id    uuid,
    -- The live order holding it (from orders.orders, which decides who holds a pair): off
    -- the book until that order ends, even before catalog says `reserved`.
    held_by     uuid
);
-- The book's ask side in price-time priority: lowest price, then earliest listed.
CREATE INDEX asks_book ON asks (product_id, size, price_cents, listed_at, id)
    WHERE status = 'available' AND match_id IS NULL AND held_by IS NULL;

CREATE TABLE bids (
    id          uuid        PRIMARY KEY,            -- UUIDv7: id order is placing order
    product_id  uuid        NOT NULL,
    size        float8      NOT NULL,
    buyer_id    uuid        NOT NULL,
    price_cents bigint      NOT NULL CHECK (price_cents > 0 AND price_cents <= 10000000),
    status      text        NOT NULL CHECK (status IN ('open', 'matched', 'filled', 'cancelled', 'expired', 'declined')),
    match_id    uuid,
    expires_at  timestamptz NOT NULL,
    version     bigint      NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    CHECK ((status IN ('matched', 'filled')) = (match_id IS NOT NULL))
);
-- The book's bid side in price-time priority: highest price, then earliest placed.
CREATE INDEX bids_book ON bids (product_id, size, price_cents DESC, id) WHERE status = 'open';
CREATE INDEX bids_buyer_newest ON bids (buyer_id, id DESC);
-- The expiry sweeper's work list.
CREATE INDEX bids_expiring ON bids (expires_at) WHERE status = 'open';

CREATE TABLE matches (
    id          uuid        PRIMARY KEY,            -- also the id of the order that fills it
    bid_id      uuid        NOT NULL REFERENCES bids (id),
    ask_id      uuid        NOT NULL,
    product_id  uuid        NOT NULL,
    size        float8      NOT NULL,
    buyer_id    uuid        NOT NULL,
    seller_id   uuid        NOT NULL,
    price_cents bigint      NOT NULL,
    status      text        NOT NULL CHECK (status IN ('pending', 'filled', 'refused', 'declined', 'cancelled')),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
-- Never two sales of one pair, never two purchases by one bid: a pair is in at most one
-- pending match, and a bid in at most one pending or filled one.
CREATE UNIQUE INDEX matches_one_pending_per_ask ON matches (ask_id) WHERE status = 'pending';
CREATE UNIQUE INDEX matches_one_live_per_bid ON matches (bid_id) WHERE status IN ('pending', 'filled');

-- Prices of orders of asks (from order.created), so a completed order becomes a sale at
-- the price it was made at (a match's price may differ from the listing's).
CREATE TABLE order_prices (
    order_id    uuid   PRIMARY KEY,
    sneaker_id  uuid   NOT NULL,
    price_cents bigint NOT NULL
);

-- Completed sales of asks: the last sale and the price history of each book.
CREATE TABLE sales (
    order_id    uuid        PRIMARY KEY,
    product_id  uuid        NOT NULL,
    size        float8      NOT NULL,
    price_cents bigint      NOT NULL,
    sold_at     timestamptz NOT NULL
);
CREATE INDEX sales_book_newest ON sales (product_id, size, sold_at DESC, order_id DESC);

-- Buyers who have a saved payment method (from payment_method.saved): a bid needs one.
CREATE TABLE payment_methods (
    buyer_id  uuid   PRIMARY KEY,
    method_id uuid   NOT NULL,
    version   bigint NOT NULL
);

-- Wake requests waiting for a product or payment method this replica has not heard of yet.
CREATE FUNCTION replica_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_replica', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER products_replica_notify AFTER INSERT ON products FOR EACH STATEMENT EXECUTE FUNCTION replica_notify();
CREATE TRIGGER payment_methods_replica_notify AFTER INSERT OR UPDATE ON payment_methods
    FOR EACH STATEMENT EXECUTE FUNCTION replica_notify();

-- A book changed (an ask or bid came, went or moved; a sale): `<product id>` on
-- `market_book`, delivered at commit, so every instance's live streams (SSE) re-read it.
CREATE FUNCTION book_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('market_book', COALESCE(NEW.product_id, OLD.product_id)::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER asks_book_notify AFTER INSERT OR UPDATE ON asks FOR EACH ROW EXECUTE FUNCTION book_notify();
CREATE TRIGGER bids_book_notify AFTER INSERT OR UPDATE ON bids FOR EACH ROW EXECUTE FUNCTION book_notify();
CREATE TRIGGER sales_book_notify AFTER INSERT ON sales FOR EACH ROW EXECUTE FUNCTION book_notify();
