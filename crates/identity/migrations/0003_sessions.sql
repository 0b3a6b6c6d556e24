-- Sessions: one row per sign-in (or sign-up), named by the token's `sid`. Ending one early
-- sets `revoked_at` and, in the same transaction, records it in `revoked_sessions` and
-- publishes `session.revoked` (see store.rs), so every service refuses its token.
CREATE TABLE sessions (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The token's expiry: after it the row is of no use and is deleted.
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);

-- "Every live session of this user", for signing out everywhere and password changes.
CREATE INDEX sessions_live_by_user ON sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX sessions_expires_at ON sessions (expires_at);
