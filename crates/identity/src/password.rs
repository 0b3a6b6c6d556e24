//! Password hashing with argon2id, on a small pool of dedicated threads.
//!
//! Hashing deliberately costs tens of milliseconds of CPU and 19 MiB of memory; run on the
//! async executor it would stall every other request on that worker. It runs on one thread
//! per core instead of tokio's blocking pool: more hashes at once than cores only adds
//! latency, and every extra thread kept its own 19 MiB in the allocator's per-thread arena
//! (a burst of signups grew the process by hundreds of MiB). Sign-in for an unknown email still
//! verifies against a fixed dummy hash, so "no such user" and "wrong password" take the
//! same time and an attacker cannot enumerate accounts by timing.
//!
//! The queue in front of those threads is bounded (`PASSWORD_HASH_QUEUE` hashes running or
//! waiting): argon2 caps the server at a few dozen sign-ins a second, and an unbounded queue
//! lets a flood make every honest sign-in wait seconds. A request that finds the queue full
//! is refused at once ([`HashingError::Busy`], answered 503 with `Retry-After`).
//!
//! A bounded queue cannot tell an honest sign-in from a credential-stuffing flood: when the
//! flood asks sixty times as often, honest users get a sixtieth of the places. So a few
//! places (`PASSWORD_HASH_RESERVED`) are kept for sign-ins from a **known device** of the
//! account — a browser that signed in to it before and holds its device cookie
//! (`sneakerstop_auth::SessionKeys::device_cookie`), which a flood trying other people's
//! passwords does not have. One account holds at most one reserved place at a time, so one
//! account's own device cannot take them all; without a free one, the sign-in queues with
//! everyone else.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};

use uuid::Uuid;

use crate::domain::Password;

/// Hashes and verifies passwords. Cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    /// A hash of a random password, verified against when the account does not exist.
    dummy_hash: Arc<str>,
    /// The hashing threads.
    pool: Arc<HashPool>,
    /// One permit per hash running or waiting.
    queue: Arc<tokio::sync::Semaphore>,
    /// Places kept for sign-ins from a known device of the account.
    reserved: Arc<tokio::sync::Semaphore>,
    /// The accounts in a reserved place now (one place each).
    reserving: Arc<Mutex<HashSet<Uuid>>>,
}

/// A place in the queue or a reserved one, given back when dropped.
struct Place {
    _permit: tokio::sync::OwnedSemaphorePermit,
    reserved_for: Option<ReservedFor>,
}

/// The account a reserved place is held for; forgotten when dropped.
struct ReservedFor {
    account: Uuid,
    reserving: Arc<Mutex<HashSet<Uuid>>>,
}

impl Drop for ReservedFor {
    fn drop(&mut self) {
        self.reserving.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.account);
    }
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    /// As many hashes as the queue holds are already running or waiting; retry shortly.
    #[error("password hashing is at capacity")]
    Busy,
    /// The hashing itself failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

type Job = Box<dyn FnOnce() + Send>;

/// One thread per core, taking hashing jobs from a shared queue: those of reserved places
/// first, so a known device's sign-in waits for a hash to finish, not for the queue.
struct HashPool {
    shared: Arc<PoolShared>,
}

struct PoolShared {
    jobs: Mutex<Jobs>,
    ready: std::sync::Condvar,
}

#[derive(Default)]
struct Jobs {
    first: std::collections::VecDeque<Job>,
    rest: std::collections::VecDeque<Job>,
    /// The pool was dropped: threads finish what is queued and end.
    closed: bool,
}

impl HashPool {
    fn new(threads: usize) -> anyhow::Result<Self> {
        let shared = Arc::new(PoolShared { jobs: Mutex::default(), ready: std::sync::Condvar::new() });
        for i in 0..threads {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    while let Some(job) = shared.next() {
                        job();
                    }
                })
                .context("start a password hashing thread")?;
        }
        Ok(Self { shared })
    }

    /// Runs `work` on a hashing thread (before every job not `first` when `first`) and waits
    /// for its result without blocking the executor.
    async fn run<T: Send + 'static>(
        &self,
        first: bool,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        {
            let mut jobs = self.shared.lock();
            if first { jobs.first.push_back(job) } else { jobs.rest.push_back(job) }
        }
        self.shared.ready.notify_one();
        result.await.context("password hashing job was dropped")
    }
}

impl PoolShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Jobs> {
        // Jobs run outside the lock, so a poisoned queue is still consistent.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next job, waiting for one; `None` once the pool is closed and drained.
    fn next(&self) -> Option<Job> {
        let mut jobs = self.lock();
        loop {
            if let Some(job) = jobs.first.pop_front().or_else(|| jobs.rest.pop_front()) {
                return Some(job);
            }
            if jobs.closed {
                return None;
            }
            jobs = self.ready.wait(jobs).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").field("params", &self.params).finish_non_exhaustive()
    }
}

impl Passwords {
    /// argon2id with OWASP's recommended minimum: 19 MiB of memory, 2 passes, 1 lane; at
    /// most `queue` hashes running or waiting at once, and `reserved` more for sign-ins from
    /// known devices.
    pub fn new(queue: usize, reserved: usize) -> anyhow::Result<Self> {
        let params = Params::new(19 * 1024, 2, 1, None).context("argon2 parameters")?;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let pool = Arc::new(HashPool::new(cores)?);
        let queue = Arc::new(tokio::sync::Semaphore::new(queue.max(1)));
        let reserved = Arc::new(tokio::sync::Semaphore::new(reserved));
        let mut passwords =
            Self { params, dummy_hash: Arc::from(""), pool, queue, reserved, reserving: Arc::default() };
        let random = SaltString::generate(&mut OsRng);
        passwords.dummy_hash = Arc::from(passwords.hash_now(random.as_str())?);
        Ok(passwords)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn hash_now(&self, password: &str) -> anyhow::Result<String> {
        let salt = SaltString::generate(&mut OsRng);
        let hash = self.argon2().hash_password(password.as_bytes(), &salt).context("argon2 hashing failed")?;
        Ok(hash.to_string())
    }

    /// A place in the queue, or [`HashingError::Busy`] at once.
    fn enqueue(&self) -> Result<Place, HashingError> {
        let place = |permit| Place { _permit: permit, reserved_for: None };
        self.queue.clone().try_acquire_owned().map(place).map_err(|_| {
            metrics::counter!("password_hashing_refused_total").increment(1);
            HashingError::Busy
        })
    }

    /// A reserved place for `account`'s known device if one is free and the account holds
    /// none; otherwise a place in the queue.
    fn enqueue_known(&self, account: Uuid) -> Result<Place, HashingError> {
        let mut reserving = self.reserving.lock().unwrap_or_else(PoisonError::into_inner);
        if !reserving.contains(&account)
            && let Ok(permit) = self.reserved.clone().try_acquire_owned()
        {
            reserving.insert(account);
            metrics::counter!("password_hashing_known_device_total").increment(1);
            let reserved_for = ReservedFor { account, reserving: self.reserving.clone() };
            return Ok(Place { _permit: permit, reserved_for: Some(reserved_for) });
        }
        drop(reserving);
        self.enqueue()
    }

    /// The PHC string (`$argon2id$v=19$...`) for `password`, computed off the executor.
    pub async fn hash(&self, password: Password) -> Result<String, HashingError> {
        let _place = self.enqueue()?;
        let this = self.clone();
        Ok(self.pool.run(false, move || this.hash_now(password.expose())).await??)
    }

    /// Whether `password` matches `stored`; with `None` it checks the dummy hash and
    /// returns false, taking the same time as a real check. `known_device_of`: the account,
    /// when the request comes from a known device of it (a reserved place, if one is free).
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
        known_device_of: Option<Uuid>,
    ) -> Result<bool, HashingError> {
        let place = match known_device_of {
            Some(account) => self.enqueue_known(account)?,
            None => self.enqueue()?,
        };
        // A reserved place is served before the queue.
        let first = place.reserved_for.is_some();
        let this = self.clone();
        let verified = self
            .pool
            .run(first, move || {
                let exists = stored.is_some();
                let phc = stored.as_deref().unwrap_or(&this.dummy_hash);
                let parsed = PasswordHash::new(phc).context("stored password hash is corrupt")?;
                let matches = this.argon2().verify_password(password.as_bytes(), &parsed).is_ok();
                Ok::<_, anyhow::Error>(exists && matches)
            })
            .await??;
        Ok(verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let passwords = Passwords::new(4, 0).unwrap();
        let hash = passwords.hash(Password::parse("correct horse".into()).unwrap()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(passwords.verify("correct horse".into(), Some(hash.clone()), None).await.unwrap());
        assert!(!passwords.verify("wrong horse".into(), Some(hash), None).await.unwrap());
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        let passwords = Passwords::new(4, 0).unwrap();
        assert!(!passwords.verify("anything at all".into(), None, None).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_frees_its_place_when_a_hash_is_done() {
        let passwords = Passwords::new(1, 0).unwrap();
        // The first takes the only place (at its first poll), the second finds none.
        let (first, second) = tokio::join!(
            passwords.verify("a password".into(), None, None),
            passwords.verify("another one".into(), None, None)
        );
        assert!(matches!(first, Ok(false)), "{first:?}");
        assert!(matches!(second, Err(HashingError::Busy)), "{second:?}");
        // The place is free again once the first is done.
        assert!(matches!(passwords.verify("a third".into(), None, None).await, Ok(false)));
    }

    #[tokio::test]
    async fn a_known_device_gets_a_reserved_place_one_per_account_when_the_queue_is_full() {
        let passwords = Passwords::new(1, 2).unwrap();
        let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let check = |known| passwords.verify("a password".into(), None, known);
        // In join order, each takes its place at its first poll: the flood's first sign-in
        // fills the queue; Ann's known device takes a reserved place; a second sign-in from
        // it may not take the other (one per account) and finds the queue full; Bob's takes
        // the other; the flood's next finds the queue full.
        let (flood, ann_first, ann_second, bob_first, flood_next) =
            tokio::join!(check(None), check(Some(ann)), check(Some(ann)), check(Some(bob)), check(None));
        for (who, answer) in [("flood", &flood), ("ann", &ann_first), ("bob", &bob_first)] {
            assert!(matches!(answer, Ok(false)), "{who}: {answer:?}");
        }
        assert!(matches!(ann_second, Err(HashingError::Busy)), "{ann_second:?}");
        assert!(matches!(flood_next, Err(HashingError::Busy)), "{flood_next:?}");
        // The places come back when the checks are done.
        assert!(matches!(check(Some(ann)).await, Ok(false)));
        assert!(passwords.reserving.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn reserved_places_are_hashed_before_the_queue() {
        let pool = HashPool::new(1).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        // The only thread is busy until told; meanwhile two queued jobs and a reserved one wait.
        let (release, busy) = std::sync::mpsc::channel::<()>();
        let running = pool.run(false, move || busy.recv().unwrap());
        let job = |name: &'static str, first: bool| {
            let order = order.clone();
            pool.run(first, move || order.lock().unwrap().push(name))
        };
        let (queued, queued_too, reserved) = (job("queued", false), job("queued too", false), job("reserved", true));
        let all = async { tokio::join!(running, queued, queued_too, reserved) };
        let (all, ()) = tokio::join!(all, async {
            // Let every job be submitted (each is at its first poll), then free the thread.
            tokio::task::yield_now().await;
            release.send(()).unwrap();
        });
        assert!(all.0.is_ok() && all.1.is_ok() && all.2.is_ok() && all.3.is_ok());
        assert_eq!(*order.lock().unwrap(), ["reserved", "queued", "queued too"]);
    }
}
