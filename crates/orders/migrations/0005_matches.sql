-- Orders of the market: a bid met an ask, and the order's id is the match's. They are paid
-- at once with the buyer's saved method, so they take no unpaid hold (the cap is for
-- reservations a buyer holds without paying), and end `declined` if that method is.
ALTER TABLE orders ADD COLUMN match_id uuid;
ALTER TABLE orders DROP CONSTRAINT orders_cancel_reason_check;
ALTER TABLE orders ADD CONSTRAINT orders_cancel_reason_check CHECK (cancel_reason IN ('buyer', 'expired', 'declined'));

DROP TRIGGER orders_release_buyer_hold ON orders;
CREATE TRIGGER orders_release_buyer_hold AFTER UPDATE OF status ON orders
    FOR EACH ROW WHEN (OLD.status = 'created' AND NEW.status <> 'created' AND OLD.match_id IS NULL)
    EXECUTE FUNCTION release_buyer_hold();
