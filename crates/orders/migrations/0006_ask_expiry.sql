-- Asks expire (catalog.sneakers carries `expiresAt` and, once swept, `expired`): an ask
-- past its time is refused an order before the sweep comes.
ALTER TABLE sneakers ADD COLUMN expires_at timestamptz;
