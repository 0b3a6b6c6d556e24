-- Asks may be withdrawn by their sellers (catalog.sneakers says `withdrawn`): off their
-- book for good.
ALTER TABLE asks DROP CONSTRAINT asks_status_check;
ALTER TABLE asks ADD CONSTRAINT asks_status_check CHECK (status IN ('available', 'reserved', 'sold', 'expired', 'withdrawn'));
