-- The messaging tables every service has in its own schema. Versions from 1000000001 on,
-- so they never collide with a service's own migrations (which start at 1).

-- Transactional outbox: a state change and the event describing it commit together.
-- The relay publishes rows in `id` order and deletes them once the broker acknowledged.
-- Per-aggregate order holds because a change to one aggregate locks its row first, so a
-- second change to it gets a larger id only after the first one committed.
CREATE TABLE outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid        NOT NULL UNIQUE,
    topic       text        NOT NULL,
    message_key text        NOT NULL,
    event_type  text        NOT NULL,
    headers     jsonb       NOT NULL,
    -- json, not jsonb: the payload is published byte for byte as the contract serialized it.
    payload     json        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Wake the relay when events commit (NOTIFY is delivered at commit; the relay also polls).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_outbox', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Inbox: ids of events this service has handled. A handler's changes and its event id
-- commit in one transaction, so a redelivered event is recognised and changes nothing.
CREATE TABLE inbox (
    event_id     uuid        PRIMARY KEY,
    topic        text        NOT NULL,
    event_type   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
