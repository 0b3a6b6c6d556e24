-- Replica of orders, fed by orders.orders and applied by version.
CREATE TABLE orders (
    id           uuid   PRIMARY KEY,
    buyer_id     uuid   NOT NULL,
    amount_cents bigint NOT NULL,
    status       text   NOT NULL,
    version      bigint NOT NULL
);

-- One row per charge attempt. A row is written as `pending` *before* the provider is
-- called, so no charge can exist without a stored payment; it becomes `succeeded`,
-- `declined`, or (if the order was cancelled meanwhile) `refund_pending` → `refunded`.
CREATE TABLE payments (
    id             uuid        PRIMARY KEY,
    order_id       uuid        NOT NULL,
    buyer_id       uuid        NOT NULL,
    amount_cents   bigint      NOT NULL,
    attempt        integer     NOT NULL,
    status         text        NOT NULL CHECK (status IN ('pending', 'declined', 'succeeded', 'refund_pending', 'refunded')),
    failure_reason text,
    provider_ref   text,
    refund_ref     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, attempt)
);

-- At most one charge per order that is not a declined attempt: paying twice charges once.
CREATE UNIQUE INDEX payments_one_charge_per_order ON payments (order_id) WHERE status <> 'declined';
CREATE INDEX payments_buyer_newest ON payments (buyer_id, id DESC);
CREATE INDEX payments_refund_due ON payments (updated_at) WHERE status = 'refund_pending';
