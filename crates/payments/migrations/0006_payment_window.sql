-- Paid in time means sold: payments knows each order's deadline (from order.created) and
-- when it declared the order lapsed unpaid (payment.lapsed). After that no charge starts;
-- before it, every charge that started is announced before any lapse could be.
ALTER TABLE orders ADD COLUMN expires_at timestamptz, ADD COLUMN lapsed_at timestamptz;

-- What the lapse task looks at: orders still payable, by deadline.
CREATE INDEX orders_lapse_due ON orders (expires_at) WHERE status = 'created' AND lapsed_at IS NULL;
