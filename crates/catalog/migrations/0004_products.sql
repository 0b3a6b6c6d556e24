-- Products: the models asks and bids refer to. Created by admins, never changed (yet).
CREATE TABLE products (
    id                 uuid        PRIMARY KEY,       -- UUIDv7: id order is creation order
    style_code         text        NOT NULL CHECK (style_code ~ '^[A-Z0-9][A-Z0-9-]{2,19}$'),
    name               text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 120),
    brand              text        NOT NULL CHECK (char_length(brand) BETWEEN 1 AND 60),
    colorway           text        CHECK (char_length(colorway) <= 80),
    retail_price_cents bigint      CHECK (retail_price_cents > 0 AND retail_price_cents <= 10000000),
    release_date       date,
    sizes              float8[]    NOT NULL CHECK (cardinality(sizes) BETWEEN 1 AND 43),
    created_by         uuid        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    -- Words of name and brand, for `q` (prefix match per word); the style code is matched
    -- whole or by prefix through its unique index.
    search             tsvector    GENERATED ALWAYS AS (to_tsvector('simple', name || ' ' || brand)) STORED,
    CONSTRAINT products_style_code_key UNIQUE (style_code)
);
CREATE INDEX products_search ON products USING gin (search);

-- A listing that names a product is an ask on that product's market in its size.
ALTER TABLE sneakers ADD COLUMN product_id uuid REFERENCES products (id);
CREATE INDEX sneakers_product ON sneakers (product_id, size, price_cents) WHERE product_id IS NOT NULL;
