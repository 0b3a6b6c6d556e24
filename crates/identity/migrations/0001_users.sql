-- Accounts. Emails are stored trimmed and lower-cased, so the unique constraint is the
-- one place that decides "is this email taken" (no read-before-write race).
CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email)
);
