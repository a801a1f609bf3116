//! argon2id password hashing, off the async threads (it is deliberately slow) and
//! bounded: at most `concurrency` hashes or verifications run at once, each holding
//! its 19 MiB until it ends, so a login storm cannot grow memory without bound.
//! Callers past the bound queue; one that waits longer than `max_wait` is answered
//! 503 `overloaded` with `Retry-After` instead of piling up.

use crate::error::{ApiError, ProblemCode};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a caller waits for an argon2 slot before 503 `overloaded`.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(5);

/// argon2id with OWASP's minimum memory setting (19 MiB, 2 passes).
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("static argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Verified against when the email is unknown, so both cases take the same time.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::encode_b64(b"boxoffice-dummy-salt").expect("valid salt");
    argon2().hash_password(b"not a real password", &salt).expect("hashing works").to_string()
});

/// Hashes and verifies passwords, at most `concurrency` at a time. Cheap to share
/// behind the application state; one per process.
pub struct Passwords {
    permits: Arc<Semaphore>,
    concurrency: usize,
    max_wait: Duration,
}

impl Passwords {
    /// At most `concurrency` (at least 1) computations at once; callers wait for a
    /// slot at most `max_wait`.
    pub fn new(concurrency: usize, max_wait: Duration) -> Self {
        let concurrency = concurrency.max(1);
        Self { permits: Arc::new(Semaphore::new(concurrency)), concurrency, max_wait }
    }

    /// How many computations may run at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Runs `work` on a blocking thread once a slot is free. The slot is held by the
    /// blocking task itself, so it stays taken until the computation ends even if
    /// the caller gives up (a request timeout drops the caller, not the thread).
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = match tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(closed)) => return Err(ApiError::internal(closed)),
            Err(_) => {
                metrics::counter!("boxoffice_password_hash_shed_total").increment(1);
                return Err(ApiError::unavailable_as(
                    ProblemCode::Overloaded,
                    "too many sign-ins at once; retry shortly",
                    Duration::from_secs(1),
                ));
            }
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(ApiError::internal)?
    }

    pub async fn hash(&self, password: SecretString) -> Result<String, ApiError> {
        self.run(move || {
            let mut salt_bytes = [0u8; 16];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt_bytes);
            let salt = SaltString::encode_b64(&salt_bytes).map_err(ApiError::internal)?;
            argon2()
                .hash_password(password.expose_secret().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(ApiError::internal)
        })
        .await
    }

    /// Whether `password` matches `stored` (or, with no stored hash, spends the same
    /// time and says no).
    pub async fn verify(&self, password: SecretString, stored: Option<String>) -> Result<bool, ApiError> {
        self.run(move || {
            let known = stored.is_some();
            let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
            let parsed = PasswordHash::new(&stored).map_err(ApiError::internal)?;
            let ok = argon2().verify_password(password.expose_secret().as_bytes(), &parsed).is_ok();
            Ok(ok && known)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn at_most_the_bound_run_at_once() {
        let passwords = Arc::new(Passwords::new(2, Duration::from_secs(30)));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (passwords, running, peak) = (passwords.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    passwords
                        .run(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(50));
                            running.fetch_sub(1, Ordering::SeqCst);
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2, "two slots, eight callers");
    }

    #[tokio::test]
    async fn a_slot_stays_taken_until_its_computation_ends_even_if_the_caller_leaves() {
        let passwords = Arc::new(Passwords::new(1, Duration::from_millis(100)));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let first = {
            let passwords = passwords.clone();
            tokio::spawn(async move {
                passwords
                    .run(move || {
                        started_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                        Ok(())
                    })
                    .await
            })
        };
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap()).await.unwrap();
        // The caller goes away; its computation still runs and keeps the slot.
        first.abort();
        let err = passwords.run(|| Ok(())).await.expect_err("no slot free");
        assert_eq!(err.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.code, ProblemCode::Overloaded);
        assert!(err.retry_after.is_some());
        release_tx.send(()).unwrap();
        // Once it ends, the slot is free again.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match passwords.run(|| Ok(())).await {
                Ok(()) => break,
                Err(_) if tokio::time::Instant::now() < deadline => {}
                Err(e) => panic!("the slot was never given back: {e}"),
            }
        }
    }

    #[tokio::test]
    async fn hashes_verify() {
        let passwords = Passwords::new(2, DEFAULT_MAX_WAIT);
        let hash = passwords.hash(SecretString::from("correct horse")).await.unwrap();
        assert!(passwords.verify(SecretString::from("correct horse"), Some(hash.clone())).await.unwrap());
        assert!(!passwords.verify(SecretString::from("wrong horse"), Some(hash)).await.unwrap());
        assert!(!passwords.verify(SecretString::from("correct horse"), None).await.unwrap());
    }
}
