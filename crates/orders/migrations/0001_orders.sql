-- Replica of catalog's listings, fed by catalog.sneakers and applied by version.
CREATE TABLE sneakers (
    id          uuid   PRIMARY KEY,
    title       text   NOT NULL,
    price_cents bigint NOT NULL,
    seller_id   uuid   NOT NULL,
    status      text   NOT NULL,
    version     bigint NOT NULL
);

CREATE TABLE orders (
    id            uuid        PRIMARY KEY,          -- UUIDv7: id order is creation order
    sneaker_id    uuid        NOT NULL,
    buyer_id      uuid        NOT NULL,
    seller_id     uuid        NOT NULL,
    price_cents   bigint      NOT NULL,
    status        text        NOT NULL CHECK (status IN ('created', 'cancelled', 'complete')),
    cancel_reason text        CHECK (cancel_reason IN ('buyer', 'expired')),
    payment_id    uuid,
    version       bigint      NOT NULL DEFAULT 1,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'cancelled') = (cancel_reason IS NOT NULL)),
    CHECK ((status = 'complete') = (payment_id IS NOT NULL))
);

-- The rule "a pair is held by at most one live order" lives here, not in a read-then-write:
-- of any number of concurrent orders for one pair, exactly one insert succeeds.
CREATE UNIQUE INDEX orders_one_live_order_per_sneaker ON orders (sneaker_id) WHERE status IN ('created', 'complete');
CREATE INDEX orders_buyer_newest ON orders (buyer_id, id DESC);
-- The expiry sweeper's work list.
CREATE INDEX orders_expiring ON orders (expires_at) WHERE status = 'created';
