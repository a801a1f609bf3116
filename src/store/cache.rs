//! Redis, shared: one self-reconnecting connection ([`RedisLink`]) used by the
//! outbox relay and by [`Cache`], a best-effort cache and rate-limit counter.
//!
//! **Guarantee:** Redis is never on the critical path. Every `Cache` call is
//! bounded by a short timeout ([`CALL_TIMEOUT`]); when Redis is absent, slow or
//! failing, reads return `None` (a miss), writes do nothing, and the failure is
//! logged at debug level and counted in `boxoffice_cache_errors_total`. Callers
//! always have the database to fall back on, so a dead Redis costs speed, never
//! correctness and never a request.
//!
//! Keys (with the default prefix `boxoffice:`):
//! - `boxoffice:c:{key}` — a cached JSON value, always with a TTL;
//! - `boxoffice:v:{namespace}` — the version of a namespace (see below);
//! - `boxoffice:w:{key}:{window_ms}:{n}` — the counter of fixed window `n`.
//!
//! **Invalidating a whole namespace** (every cached search page, say) does not
//! SCAN and DEL: each namespace has a version counter, cache keys of that
//! namespace embed the version ([`Cache::namespace_key`]), and
//! [`Cache::invalidate_prefix`] increments it, so every old key becomes
//! unreachable at once and expires by its TTL. A reader takes the key (and so
//! the version) *before* reading the database and stores its result under that
//! same key: if the namespace is invalidated meanwhile, the stale result lands
//! under the old version, where nobody looks. An invalidation lost to a Redis
//! outage is bounded by the TTLs, which is why every value has one.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncTypedCommands, RedisResult};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest a cache call may take before it counts as a miss: a dead or
/// overloaded Redis must never slow a request down noticeably.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(50);

/// Prefix of every key this service writes, so it can share a Redis.
pub const DEFAULT_PREFIX: &str = "boxoffice:";

/// How long one attempt to (re)connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the server may take to answer one command (or pipeline) once connected.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per reconnection round; the next command after a failed round starts another.
const RECONNECT_ATTEMPTS: usize = 3;
/// Longest pause between two reconnection attempts in a round.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// One multiplexed connection to Redis, shared by every clone. It connects in the
/// background, and reconnects by itself after the server goes away: commands
/// sent meanwhile fail (or wait, up to the caller's timeout) instead of panicking.
#[derive(Clone)]
pub struct RedisLink {
    manager: ConnectionManager,
}

impl RedisLink {
    /// Prepares the connection to `url` and starts connecting in the background.
    /// Fails only if the URL is invalid — an unreachable server is not an error
    /// here. Must be called inside a Tokio runtime.
    pub fn open(url: &SecretString) -> RedisResult<Self> {
        let client = redis::Client::open(url.expose_secret())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_ATTEMPTS)
            .set_max_delay(RECONNECT_MAX_DELAY);
        let manager = ConnectionManager::new_lazy_with_config(client, config)?;
        // The lazy connection is made by the first command; make it now, so the
        // first request does not pay for it.
        let mut warm = manager.clone();
        tokio::spawn(async move {
            if let Err(e) = warm.ping().await {
                tracing::debug!(error = %e, "Redis not reachable yet; will reconnect on use");
            }
        });
        Ok(Self { manager })
    }

    /// A handle on the shared connection (cheap: the connection is behind an `Arc`).
    pub fn connection(&self) -> ConnectionManager {
        self.manager.clone()
    }
}

/// A best-effort JSON cache and window counter on an optional Redis. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    /// `None` when Redis is not configured: every call is then a miss or a no-op.
    redis: Option<ConnectionManager>,
    prefix: String,
    timeout: Duration,
}

impl Cache {
    /// A cache on `redis`, or a disabled one when it is `None`.
    pub fn new(redis: Option<&RedisLink>) -> Self {
        Self { redis: redis.map(RedisLink::connection), prefix: DEFAULT_PREFIX.to_owned(), timeout: CALL_TIMEOUT }
    }

    /// A cache that never hits and never stores.
    pub fn disabled() -> Self {
        Self::new(None)
    }

    /// Uses `prefix` instead of [`DEFAULT_PREFIX`] for every key (tests, or
    /// several deployments sharing one Redis).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Bounds each call by `timeout` instead of [`CALL_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether Redis is configured (not whether it is up).
    pub fn is_enabled(&self) -> bool {
        self.redis.is_some()
    }

    /// The cached value under `key`, if Redis has one that decodes as `T`.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let full = value_key(&self.prefix, key);
        let raw = self.call("get", |mut c| async move { c.get(&full).await }).await.flatten();
        let Some(raw) = raw else {
            metrics::counter!("boxoffice_cache_lookups_total", "result" => "miss").increment(1);
            return None;
        };
        match serde_json::from_str(&raw) {
            Ok(value) => {
                metrics::counter!("boxoffice_cache_lookups_total", "result" => "hit").increment(1);
                Some(value)
            }
            Err(e) => {
                // An entry written by another version of the service: a miss.
                tracing::debug!(error = %e, "cached value does not decode; ignoring it");
                metrics::counter!("boxoffice_cache_errors_total", "op" => "decode").increment(1);
                None
            }
        }
    }

    /// Stores `value` under `key` for `ttl` (at least a millisecond).
    pub async fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T, ttl: Duration) {
        let Ok(raw) = serde_json::to_string(value) else {
            metrics::counter!("boxoffice_cache_errors_total", "op" => "encode").increment(1);
            return;
        };
        let full = value_key(&self.prefix, key);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.call("set", |mut c| async move { c.pset_ex(&full, raw, ms).await }).await;
    }

    /// Forgets the values under `keys`.
    pub async fn invalidate(&self, keys: &[&str]) {
        if keys.is_empty() {
            return;
        }
        let full: Vec<String> = keys.iter().map(|k| value_key(&self.prefix, k)).collect();
        self.call("del", |mut c| async move { c.del(&full).await }).await;
    }

    /// The cache key of `id` in the current version of `namespace`, to pass to
    /// [`get_json`](Self::get_json) and then to [`set_json`](Self::set_json)
    /// (take it before reading the database; see the module doc). `None` when
    /// Redis cannot say which version is current: skip the cache then. `id`
    /// should be short — hash long inputs such as full search queries.
    pub async fn namespace_key(&self, namespace: &str, id: &str) -> Option<String> {
        let vkey = version_key(&self.prefix, namespace);
        let version = self.call("version", |mut c| async move { c.get(&vkey).await }).await?;
        // A namespace never invalidated has no counter yet: version 0.
        let version = version.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Some(versioned_key(namespace, version, id))
    }

    /// Makes every key of `namespace` handed out so far unreachable, by moving the
    /// namespace to its next version.
    pub async fn invalidate_prefix(&self, namespace: &str) {
        let vkey = version_key(&self.prefix, namespace);
        self.call("invalidate_prefix", |mut c| async move { c.incr(&vkey, 1).await }).await;
    }

    /// Counts one hit on `key` in the current fixed window of length `window`
    /// and returns the hits so far in that window (this one included). `None`
    /// when Redis is unavailable: the caller decides (for a rate limit, fall
    /// back to a local limiter rather than refuse everyone).
    pub async fn incr_window(&self, key: &str, window: Duration) -> Option<u64> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let wkey = window_key(&self.prefix, key, window_ms, now_ms);
        // The key names its window, so it only has to outlive it; twice the
        // window covers clock differences between servers.
        let expire_ms = i64::try_from(window_ms.saturating_mul(2)).unwrap_or(i64::MAX);
        self.call("incr_window", |mut c| async move {
            let (count, _): (u64, bool) =
                redis::pipe().atomic().incr(&wkey, 1).pexpire(&wkey, expire_ms).query_async(&mut c).await?;
            Ok(count)
        })
        .await
    }

    /// The hits counted on `key` in the current window of length `window` (see
    /// [`Cache::incr_window`]), without counting one; `None` when Redis is
    /// unavailable, and the window's end.
    pub async fn window_count(&self, key: &str, window: Duration) -> Option<(u64, Duration)> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let wkey = window_key(&self.prefix, key, window_ms, now_ms);
        let left = Duration::from_millis(window_ms - now_ms % window_ms);
        self.call("window_count", |mut c| async move {
            let count: Option<u64> = redis::cmd("GET").arg(&wkey).query_async(&mut c).await?;
            Ok((count.unwrap_or(0), left))
        })
        .await
    }

    /// Runs one Redis call under the timeout; any failure is a `None`.
    async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let conn = self.redis.clone()?;
        match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                tracing::debug!(op, error = %e, "cache call failed");
                metrics::counter!("boxoffice_cache_errors_total", "op" => op).increment(1);
                None
            }
            Err(_) => {
                tracing::debug!(op, "cache call timed out");
                metrics::counter!("boxoffice_cache_errors_total", "op" => op).increment(1);
                None
            }
        }
    }
}

/// Where a cached value lives.
pub fn value_key(prefix: &str, key: &str) -> String {
    format!("{prefix}c:{key}")
}

/// The version counter of a namespace.
pub fn version_key(prefix: &str, namespace: &str) -> String {
    format!("{prefix}v:{namespace}")
}

/// The key of `id` in version `version` of `namespace` (before [`value_key`]).
pub fn versioned_key(namespace: &str, version: u64, id: &str) -> String {
    format!("{namespace}:v{version}:{id}")
}

/// The counter of the fixed window of `window_ms` that contains `now_ms`.
pub fn window_key(prefix: &str, key: &str, window_ms: u64, now_ms: u64) -> String {
    format!("{prefix}w:{key}:{window_ms}:{}", now_ms / window_ms.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_versions_live_under_their_own_prefixes() {
        assert_eq!(value_key(DEFAULT_PREFIX, "event:42"), "boxoffice:c:event:42");
        assert_eq!(version_key(DEFAULT_PREFIX, "search"), "boxoffice:v:search");
        assert_eq!(value_key("t1:", "k"), "t1:c:k");
    }

    #[test]
    fn a_namespace_key_changes_with_the_version() {
        let v0 = versioned_key("search", 0, "q=rock&page=1");
        let v1 = versioned_key("search", 1, "q=rock&page=1");
        assert_eq!(v0, "search:v0:q=rock&page=1");
        assert_ne!(v0, v1);
        assert_eq!(value_key(DEFAULT_PREFIX, &v1), "boxoffice:c:search:v1:q=rock&page=1");
    }

    #[test]
    fn window_keys_change_at_window_boundaries_only() {
        let at = |ms| window_key(DEFAULT_PREFIX, "login:1.2.3.4", 60_000, ms);
        assert_eq!(at(120_000), "boxoffice:w:login:1.2.3.4:60000:2");
        assert_eq!(at(120_000), at(179_999));
        assert_ne!(at(179_999), at(180_000));
        // Windows of different lengths never share a counter.
        assert_ne!(window_key(DEFAULT_PREFIX, "k", 1000, 0), window_key(DEFAULT_PREFIX, "k", 2000, 0));
        // A zero window cannot divide by zero.
        assert_eq!(window_key(DEFAULT_PREFIX, "k", 0, 5), "boxoffice:w:k:0:5");
    }

    #[tokio::test]
    async fn a_disabled_cache_misses_and_ignores_writes() {
        let cache = Cache::disabled();
        assert!(!cache.is_enabled());
        cache.set_json("k", &1u32, Duration::from_secs(1)).await;
        assert_eq!(cache.get_json::<u32>("k").await, None);
        assert_eq!(cache.namespace_key("search", "x").await, None);
        assert_eq!(cache.incr_window("k", Duration::from_secs(1)).await, None);
        cache.invalidate(&["k"]).await;
        cache.invalidate_prefix("search").await;
    }
}
