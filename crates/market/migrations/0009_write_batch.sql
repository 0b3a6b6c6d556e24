-- A writer batch's changes in one call (crates/market/src/batch.rs): the bids it placed, the
-- bids of before it that changed (each guarded by the version the batch saw), the matches it
-- made (each taking its ask off the book, guarded by the ask as the book saw it) and every
-- event, in order. Returns the ids each guard let through; the caller fails the batch if one
-- is missing.
--
-- A function, for the planner settings it runs with and nothing else: called as a plain
-- statement PostgreSQL planned it afresh on every call (a custom plan for each set of array
-- lengths looked cheaper than the generic one), which cost as much as running it. Here its
-- plan is made once per connection, and by index: a generic plan lives until the next
-- ANALYZE, and one made while `bids` was small joined every later batch to a sequential scan
-- of the whole table. Every row here is looked up by its primary key.
CREATE FUNCTION write_batch(
    uuid[], uuid[], float8[], uuid[], int8[], text[], uuid[], timestamptz[], int8[], timestamptz[], timestamptz[],
    uuid[], text[], uuid[], int8[], timestamptz[], int8[],
    uuid[], uuid[], uuid[], uuid[], float8[], uuid[], uuid[], int8[], text[], timestamptz[],
    uuid[], text[], text[], text[], text[], text[]
) RETURNS TABLE (placed_ids uuid[], saved_ids uuid[], held_ids uuid[])
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH placed AS (
        INSERT INTO bids (id, product_id, size, buyer_id, price_cents, status, match_id, expires_at, version,
                          created_at, updated_at)
        SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                   AS b(id, product_id, size, buyer_id, price_cents, status, match_id, expires_at, version,
                        created_at, updated_at)
         WHERE b.status <> 'matched' OR b.expires_at > now()
        RETURNING bids.id
    ), saved AS (
        UPDATE bids b SET status = c.status, match_id = c.match_id, version = c.version, updated_at = c.updated_at
          FROM unnest($12, $13, $14, $15, $16, $17) AS c(id, status, match_id, version, updated_at, before)
         WHERE b.id = c.id AND b.version = c.before AND (c.status <> 'matched' OR b.expires_at > now())
        RETURNING b.id
    ), made AS (
        INSERT INTO matches (id, bid_id, ask_id, product_id, size, buyer_id, seller_id, price_cents, status,
                             created_at, updated_at)
        SELECT m.*, m.created_at
          FROM unnest($18, $19, $20, $21, $22, $23, $24, $25, $26, $27)
               AS m(id, bid_id, ask_id, product_id, size, buyer_id, seller_id, price_cents, status, created_at)
    ), held AS (
        UPDATE asks a SET match_id = m.id
          FROM unnest($18, $20, $21, $22, $25) AS m(id, ask_id, product_id, size, price_cents)
         WHERE a.id = m.ask_id AND a.match_id IS NULL AND a.held_by IS NULL AND a.status = 'available'
           AND a.product_id = m.product_id AND a.size = m.size AND a.price_cents <= m.price_cents
        RETURNING a.id
    ), sent AS (
        -- The outbox's ids follow the events' order (the relay publishes in id order).
        INSERT INTO outbox (event_id, topic, message_key, event_type, headers, payload)
        SELECT e.id, e.topic, e.message_key, e.event_type, e.headers::jsonb, e.payload::json
          FROM unnest($28, $29, $30, $31, $32, $33) WITH ORDINALITY
               AS e(id, topic, message_key, event_type, headers, payload, n)
         ORDER BY e.n
    )
    SELECT ARRAY(SELECT p.id FROM placed p), ARRAY(SELECT s.id FROM saved s), ARRAY(SELECT h.id FROM held h);
END
$$;
