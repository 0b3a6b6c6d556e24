-- Failed sign-ins per account (`account:<email>`) and per client address (`address:<ip>`),
-- in a window; `blocked_until` is set once a key is past its allowance (see throttle.rs).
-- Every instance reads these rows, so they enforce one limit together.
CREATE TABLE signin_failures (
    key           text        PRIMARY KEY,
    failures      integer     NOT NULL,
    window_start  timestamptz NOT NULL,
    blocked_until timestamptz
);
