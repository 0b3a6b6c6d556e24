-- Sessions that were ended before their token expired, as every service knows them (see
-- sneakerstop_auth::revocation). Identity writes a row in the transaction that ends the
-- session; every other service writes one when `session.revoked` reaches its consumer.
-- Shared by every schema; versions from 3000000001 on so they never collide.
CREATE TABLE revoked_sessions (
    session_id uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL,
    -- The token's own expiry: after it the token is refused anyway and the row is forgotten.
    expires_at timestamptz NOT NULL,
    -- Order of arrival, so each process reads only what is new since its last look.
    seq        bigint      GENERATED ALWAYS AS IDENTITY UNIQUE
);

CREATE INDEX revoked_sessions_expires_at ON revoked_sessions (expires_at);

-- Wake every process's cache when a revocation commits (the function is messaging's, whose
-- migrations every schema runs first).
CREATE TRIGGER revoked_sessions_notify AFTER INSERT ON revoked_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION notify_schema_channel('revoked_sessions');
