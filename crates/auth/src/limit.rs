//! Per-user limits on the write endpoints.
//!
//! Every signed-in user has a token bucket per process ([governor]'s GCRA): `burst` writes at
//! once, refilled at `per_second`. A write past it is answered `429 Too Many Requests` with
//! `Retry-After` and problem+json, before the handler runs, so it costs neither a database
//! transaction nor an event. Reads, anonymous requests (they are refused with 401 anyway)
//! and `/api/users/*` (sign-in has its own throttle in identity; signing out must always
//! work) are not limited. The buckets live in memory: each instance of a service enforces
//! the limit on its own, so behind a load balancer spreading one user over N instances the
//! user gets up to N times the rate — a bound on abuse, not a billing quota.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use sneakerstop_problem::Problem;
use uuid::Uuid;

use crate::SessionKeys;

type Buckets = RateLimiter<Uuid, HashMapStateStore<Uuid>, DefaultClock>;

/// The write limit of one process. Cheap to clone; clones share the buckets.
#[derive(Clone)]
pub struct WriteLimit {
    buckets: Arc<Buckets>,
    clock: DefaultClock,
    keys: SessionKeys,
}

impl std::fmt::Debug for WriteLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteLimit").field("users", &self.buckets.len()).finish_non_exhaustive()
    }
}

impl WriteLimit {
    /// `burst` writes at once per user, refilled at `per_second`; users are told apart by
    /// the sessions `keys` verify.
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32, keys: SessionKeys) -> Self {
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self { buckets: Arc::new(RateLimiter::hashmap(quota)), clock: DefaultClock::default(), keys }
    }

    /// Whether `user` may write now; if not, how long until it may.
    pub fn check(&self, user: Uuid) -> Result<(), Duration> {
        self.buckets.check_key(&user).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets users whose buckets are full again (they would start afresh anyway), so the
    /// map holds only recent writers. Call it every minute or so.
    pub fn forget_idle(&self) {
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
    }

    /// How many users have a bucket.
    pub fn users(&self) -> usize {
        self.buckets.len()
    }

    /// The middleware: refuses a signed-in user's write beyond the limit.
    pub async fn layer(State(limit): State<WriteLimit>, request: Request, next: Next) -> Response {
        if is_limited(request.method(), request.uri().path()) {
            let (parts, body) = request.into_parts();
            if let Some(user) = limit.keys.holder_of(&parts)
                && let Err(wait) = limit.check(user)
            {
                metrics::counter!("write_limit_refusals_total").increment(1);
                tracing::info!(user_id = %user, method = %parts.method, path = parts.uri.path(), "write limit reached");
                return Problem::too_many_requests(
                    "rate-limited",
                    "Too many writes",
                    "this account is making changes faster than the per-user limit allows",
                    wait,
                );
            }
            return next.run(Request::from_parts(parts, body)).await;
        }
        next.run(request).await
    }
}

/// Whether a request counts against the write limit.
pub fn is_limited(method: &Method, path: &str) -> bool {
    let write = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    write && path.starts_with("/api/") && !path.starts_with("/api/users/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sneakerstop_settings::Secret;

    fn limit(per_second: u32, burst: u32) -> WriteLimit {
        let keys = SessionKeys::new(&Secret::new("test-secret-test-secret"), Duration::from_secs(60), false);
        WriteLimit::new(NonZeroU32::new(per_second).unwrap(), NonZeroU32::new(burst).unwrap(), keys)
    }

    #[test]
    fn a_user_gets_the_burst_then_waits_and_others_are_unaffected() {
        let limit = limit(1, 3);
        let (ann, bo) = (Uuid::now_v7(), Uuid::now_v7());
        for n in 0..3 {
            assert_eq!(limit.check(ann), Ok(()), "write {n} of the burst");
        }
        let wait = limit.check(ann).expect_err("the fourth write at once is over the limit");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(limit.check(bo), Ok(()), "another user has a bucket of their own");
        assert_eq!(limit.users(), 2);
    }

    #[test]
    fn only_writes_to_the_api_outside_identity_are_limited() {
        assert!(is_limited(&Method::POST, "/api/sneakers"));
        assert!(is_limited(&Method::PUT, "/api/sneakers/1"));
        assert!(is_limited(&Method::DELETE, "/api/orders/1"));
        assert!(!is_limited(&Method::GET, "/api/sneakers"));
        assert!(!is_limited(&Method::OPTIONS, "/api/sneakers"));
        assert!(!is_limited(&Method::POST, "/api/users/signin"));
        assert!(!is_limited(&Method::POST, "/healthz"));
    }
}
