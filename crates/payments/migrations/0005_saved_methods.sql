-- Saved payment methods: what a matched bid is charged with when its buyer is not there.
-- A buyer has at most one current method; saving another replaces it (the old row stays,
-- `replaced_at` set, for the record).
CREATE TABLE payment_methods (
    id           uuid        PRIMARY KEY,
    buyer_id     uuid        NOT NULL,
    -- The provider's id of the method (Stripe `pm_...`); charged with `customer_ref`.
    method_ref   text        NOT NULL,
    customer_ref text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    replaced_at  timestamptz
);
CREATE UNIQUE INDEX payment_methods_one_current ON payment_methods (buyer_id) WHERE replaced_at IS NULL;

-- The provider's customer of each buyer (Stripe attaches methods to a Customer).
CREATE TABLE customers (
    buyer_id     uuid PRIMARY KEY,
    customer_ref text NOT NULL
);

-- Attempts made without the buyer (an order of the market): charged by the off-session
-- task with the saved method (`token` holds its provider id) and the customer; a decline is
-- announced (`payment.declined`) so the order is cancelled.
ALTER TABLE payments ADD COLUMN off_session boolean NOT NULL DEFAULT false;
ALTER TABLE payments ADD COLUMN customer_ref text;
CREATE INDEX payments_off_session_due ON payments (created_at) WHERE status = 'pending' AND off_session;

-- Orders of the market, to be charged off-session when they arrive.
ALTER TABLE orders ADD COLUMN match_id uuid;
