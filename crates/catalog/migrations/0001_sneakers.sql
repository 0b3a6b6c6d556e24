-- Sneaker listings. Money is integer cents; sizes are US sizes in half steps.
CREATE TABLE sneakers (
    id          uuid        PRIMARY KEY,            -- UUIDv7: ordering by id is ordering by listing time
    seller_id   uuid        NOT NULL,
    title       text        NOT NULL CHECK (char_length(title) BETWEEN 1 AND 120),
    brand       text,
    description text,
    price_cents bigint      NOT NULL CHECK (price_cents > 0 AND price_cents <= 10000000),
    size        float8      NOT NULL CHECK (size BETWEEN 1 AND 22 AND size * 2 = floor(size * 2)),
    status      text        NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'reserved', 'sold')),
    version     bigint      NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Words of title and brand, for `q` (prefix match per word).
    search      tsvector    GENERATED ALWAYS AS (to_tsvector('simple', title || ' ' || coalesce(brand, ''))) STORED
);

-- Keyset pagination for each sort, within a status (the default filter).
CREATE INDEX sneakers_status_newest ON sneakers (status, id DESC);
CREATE INDEX sneakers_status_price ON sneakers (status, price_cents, id);
CREATE INDEX sneakers_seller_newest ON sneakers (seller_id, id DESC);
CREATE INDEX sneakers_search ON sneakers USING gin (search);
