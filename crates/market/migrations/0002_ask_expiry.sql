-- Asks expire: an ask past `expires_at` is off its book at once (matching and market data
-- read only asks whose time is ahead), before catalog's sweep marks it `expired`.
ALTER TABLE asks ADD COLUMN expires_at timestamptz;
ALTER TABLE asks DROP CONSTRAINT asks_status_check;
ALTER TABLE asks ADD CONSTRAINT asks_status_check CHECK (status IN ('available', 'reserved', 'sold', 'expired'));
