-- A claim whose request died (the process crashed after committing the claim and before
-- storing a response) must not answer "in progress" forever: it holds the key only until
-- locked_until, after which a retry with the same key takes it over.
ALTER TABLE idempotency_keys ADD COLUMN locked_until timestamptz NOT NULL DEFAULT now();
