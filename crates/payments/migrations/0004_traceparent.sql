-- The trace a payment attempt was made in, so the refund and recovery rounds that later act
-- on it can link to that trace. NULL for attempts made before this column existed.
ALTER TABLE payments ADD COLUMN traceparent text;
