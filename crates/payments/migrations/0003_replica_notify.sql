-- Wake requests waiting for an order this replica has not heard of yet (see
-- sneakerstop_messaging::replica): NOTIFY is delivered when the inserting transaction commits.
CREATE FUNCTION replica_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_replica', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER orders_replica_notify AFTER INSERT ON orders
    FOR EACH STATEMENT EXECUTE FUNCTION replica_notify();
