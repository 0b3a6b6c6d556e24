//! Password hashing with argon2id, on a small pool of dedicated threads.
//!
//! Hashing deliberately costs tens of milliseconds of CPU and 19 MiB of memory; run on the
//! async executor it would stall every other request on that worker. It runs on one thread
//! per core instead of tokio's blocking pool: more hashes at once than cores only adds
//! latency, and every extra thread kept its own 19 MiB in the allocator's per-thread arena
//! (a burst of signups grew the process by hundreds of MiB). Sign-in for an unknown email still
//! verifies against a fixed dummy hash, so "no such user" and "wrong password" take the
//! same time and an attacker cannot enumerate accounts by timing.

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
    /// argon2id with OWASP's recommended minimum: 19 MiB of memory, 2 passes, 1 lane.
    pub fn new() -> anyhow::Result<Self> {
        let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let pool = Arc::new(HashPool::new(cores)?);
        let mut passwords = Self { params, dummy_hash: Arc::from(""), pool };
        let random = SaltString::generate(&mut OsRng);
        passwords.dummy_hash = Arc::from(passwords.hash_now(random.as_str())?);
        Ok(passwords)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn hash_now(&self, password: &str) -> anyhow::Result<String> {
        let salt = SaltString::generate(&mut OsRng);
        let hash = self
            .argon2()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?;
        Ok(hash.to_string())
    }

    /// The PHC string (`$argon2id$v=19$...`) for `password`, computed off the executor.
    pub async fn hash(&self, password: Password) -> anyhow::Result<String> {
        let this = self.clone();
        self.pool.run(move || this.hash_now(password.expose())).await?
    }

    /// Whether `password` matches `stored`; with `None` it checks the dummy hash and
    /// returns false, taking the same time as a real check.
    pub async fn verify(&self, password: String, stored: Option<String>) -> anyhow::Result<bool> {
        let this = self.clone();
        self.pool
            .run(move || {
                let exists = stored.is_some();
                let phc = stored.as_deref().unwrap_or(&this.dummy_hash);
                let parsed =
                    PasswordHash::new(phc).map_err(|e| anyhow::anyhow!("stored password hash is corrupt: {e}"))?;
                let matches = this.argon2().verify_password(password.as_bytes(), &parsed).is_ok();
                Ok(exists && matches)
            })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let passwords = Passwords::new().unwrap();
        let hash = passwords.hash(Password::parse("correct horse".into()).unwrap()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(passwords.verify("correct horse".into(), Some(hash.clone())).await.unwrap());
        assert!(!passwords.verify("wrong horse".into(), Some(hash)).await.unwrap());
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        let passwords = Passwords::new().unwrap();
        assert!(!passwords.verify("anything at all".into(), None).await.unwrap());
    }
}
