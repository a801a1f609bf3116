//! A fixed-window rate limiter for login and registration, per client IP and per
//! email. In memory: it protects one process; with several processes behind a
//! balancer each enforces its own share.

use dashmap::DashMap;
use std::time::{Duration, Instant};

/// Keys older than this are swept so the map cannot grow without bound.
const SWEEP_EVERY: usize = 4096;

pub struct RateLimiter {
    limit: u32,
    window: Duration,
    hits: DashMap<String, (Instant, u32)>,
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self { limit, window, hits: DashMap::new() }
    }

    /// `Err(wait)` if `key` has used up its window's limit; counts nothing.
    pub fn peek(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        match self.hits.get(key) {
            Some(e) if now.duration_since(e.0) < self.window && e.1 >= self.limit => {
                Err(self.window.saturating_sub(now.duration_since(e.0)))
            }
            _ => Ok(()),
        }
    }

    /// Counts one attempt under `key`; `Err(wait)` when over the limit.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        if self.hits.len() > SWEEP_EVERY {
            self.hits.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let mut entry = self.hits.entry(key.to_owned()).or_insert((now, 0));
        let (start, count) = entry.value_mut();
        if now.duration_since(*start) >= self.window {
            *start = now;
            *count = 0;
        }
        *count += 1;
        if *count > self.limit {
            return Err(self.window.saturating_sub(now.duration_since(*start)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_then_refuses_per_key() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(limiter.check("ip:1").is_ok());
        }
        assert!(limiter.check("ip:1").is_err());
        assert!(limiter.check("ip:2").is_ok());
    }

    #[test]
    fn peeking_counts_nothing() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        assert!(limiter.peek("k").is_ok());
        assert!(limiter.check("k").is_ok());
        assert!(limiter.peek("k").is_ok());
        assert!(limiter.check("k").is_ok());
        assert!(limiter.peek("k").is_err(), "the limit is used up");
        assert!(limiter.peek("other").is_ok());
    }
}
