//! Waiting for a condition with a deadline, instead of sleeping a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// Calls `probe` every `every` until it returns `Ok`, and returns that. After `patience` it
/// returns the last `Err`: what was seen, for the caller's failure message.
pub async fn poll<T, E, F, Fut>(patience: Duration, every: Duration, mut probe: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + patience;
    loop {
        match probe().await {
            Ok(done) => return Ok(done),
            Err(seen) if Instant::now() >= deadline => return Err(seen),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// Waits until `check` holds (polled every 50 ms); fails the test after `patience`.
pub async fn eventually<F, Fut>(what: &str, patience: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let outcome = poll(patience, Duration::from_millis(50), || {
        let holds = check();
        async move { if holds.await { Ok(()) } else { Err(()) } }
    })
    .await;
    assert!(outcome.is_ok(), "timed out after {patience:?} waiting until {what}");
}
