-- How many unpaid reservations each buyer holds, kept where concurrent orders cannot race
-- past a cap: placing an order increments its buyer's row only while it is below the cap
-- (the row lock orders concurrent orders of one buyer), and an order that leaves `created`
-- (paid, cancelled, expired) gives its hold back through the trigger below.
CREATE TABLE buyer_holds (
    buyer_id uuid    PRIMARY KEY,
    live     integer NOT NULL CHECK (live >= 0)
);

INSERT INTO buyer_holds (buyer_id, live)
SELECT buyer_id, count(*) FROM orders WHERE status = 'created' GROUP BY buyer_id;

CREATE FUNCTION release_buyer_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE buyer_holds SET live = live - 1 WHERE buyer_id = OLD.buyer_id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER orders_release_buyer_hold AFTER UPDATE OF status ON orders
    FOR EACH ROW WHEN (OLD.status = 'created' AND NEW.status <> 'created')
    EXECUTE FUNCTION release_buyer_hold();
