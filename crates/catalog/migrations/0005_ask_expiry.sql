-- Asks expire: a listing that names a product leaves its book at `expires_at` unless sold
-- (the seller chose 1 to 90 days, 30 by default). The sweeper then marks it `expired`, a
-- status free listings never reach.
ALTER TABLE sneakers ADD COLUMN expires_at timestamptz;
ALTER TABLE sneakers DROP CONSTRAINT sneakers_status_check;
ALTER TABLE sneakers ADD CONSTRAINT sneakers_status_check CHECK (status IN ('available', 'reserved', 'sold', 'expired'));
ALTER TABLE sneakers ADD CONSTRAINT sneakers_only_asks_expire CHECK (expires_at IS NULL OR product_id IS NOT NULL);
-- The sweeper's work list.
CREATE INDEX sneakers_asks_expiring ON sneakers (expires_at) WHERE status = 'available' AND expires_at IS NOT NULL;
