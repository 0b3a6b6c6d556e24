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

use std::sync::Arc;

use anyhow::Context;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};

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

/// One thread per core, taking hashing jobs from a shared queue.
struct HashPool {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
}

impl HashPool {
    fn new(threads: usize) -> anyhow::Result<Self> {
        let (sender, receiver) = std::sync::mpsc::channel::<Job>();
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for i in 0..threads {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while taking a job, not while running it.
                        let job = match receiver.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // every sender is gone
                        }
                    }
                })
                .context("start a password hashing thread")?;
        }
        Ok(Self { jobs: std::sync::Mutex::new(sender) })
    }

    /// Runs `work` on a hashing thread and waits for its result without blocking the executor.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        self.jobs
            .lock()
            .map_err(|_| anyhow::anyhow!("password hashing pool poisoned"))?
            .send(job)
            .map_err(|_| anyhow::anyhow!("password hashing threads are gone"))?;
        result.await.context("password hashing job was dropped")
    }
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").field("params", &self.params).finish_non_exhaustive()
    }
}

impl Passwords {
    /// argon2id with OWASP's recommended minimum: 19 MiB of memory, 2 passes, 1 lane; at
    /// most `queue` hashes running or waiting at once.
    pub fn new(queue: usize) -> anyhow::Result<Self> {
        let params = Params::new(19 * 1024, 2, 1, None).context("argon2 parameters")?;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let pool = Arc::new(HashPool::new(cores)?);
        let queue = Arc::new(tokio::sync::Semaphore::new(queue.max(1)));
        let mut passwords = Self { params, dummy_hash: Arc::from(""), pool, queue };
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
    fn enqueue(&self) -> Result<tokio::sync::OwnedSemaphorePermit, HashingError> {
        self.queue.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!("password_hashing_refused_total").increment(1);
            HashingError::Busy
        })
    }

    /// The PHC string (`$argon2id$v=19$...`) for `password`, computed off the executor.
    pub async fn hash(&self, password: Password) -> Result<String, HashingError> {
        let _place = self.enqueue()?;
        let this = self.clone();
        Ok(self.pool.run(move || this.hash_now(password.expose())).await??)
    }

    /// Whether `password` matches `stored`; with `None` it checks the dummy hash and
    /// returns false, taking the same time as a real check.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, HashingError> {
        let _place = self.enqueue()?;
        let this = self.clone();
        let verified = self
            .pool
            .run(move || {
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
        let passwords = Passwords::new(4).unwrap();
        let hash = passwords.hash(Password::parse("correct horse".into()).unwrap()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(passwords.verify("correct horse".into(), Some(hash.clone())).await.unwrap());
        assert!(!passwords.verify("wrong horse".into(), Some(hash)).await.unwrap());
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        let passwords = Passwords::new(4).unwrap();
        assert!(!passwords.verify("anything at all".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_frees_its_place_when_a_hash_is_done() {
        let passwords = Passwords::new(1).unwrap();
        // The first takes the only place (at its first poll), the second finds none.
        let (first, second) =
            tokio::join!(passwords.verify("a password".into(), None), passwords.verify("another one".into(), None));
        assert!(matches!(first, Ok(false)), "{first:?}");
        assert!(matches!(second, Err(HashingError::Busy)), "{second:?}");
        // The place is free again once the first is done.
        assert!(matches!(passwords.verify("a third".into(), None).await, Ok(false)));
    }
}
