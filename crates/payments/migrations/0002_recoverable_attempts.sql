-- A pending attempt keeps the card token until its outcome is recorded, so that the
-- recovery task can ask the provider again with the same request and idempotency key if
-- the process that made the attempt died before recording it (see recovery.rs). The token
-- is cleared once the attempt is settled.
ALTER TABLE payments ADD COLUMN token text;
CREATE INDEX payments_pending_since ON payments (updated_at) WHERE status = 'pending';
