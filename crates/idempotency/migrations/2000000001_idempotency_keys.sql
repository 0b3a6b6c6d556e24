-- Idempotency-Key: the first successful response per (user, key), replayed to retries.
-- Applied in the schema of every service that uses crates/idempotency.
CREATE TABLE idempotency_keys (
    user_id     uuid        NOT NULL,
    key         text        NOT NULL,
    request     jsonb       NOT NULL,
    status_code integer,
    response    jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
