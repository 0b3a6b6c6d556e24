-- The trace an order was placed in (its request's span), so the expiry round that later
-- cancels it can link to that trace. NULL for orders placed before this column existed.
ALTER TABLE orders ADD COLUMN traceparent text;
