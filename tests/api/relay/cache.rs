//! The Redis cache: JSON round trips, TTLs, invalidation of keys and namespaces, fixed-window
//! counters, and misses (never errors) while Redis is down.

use super::{PATIENCE, TestRedis, link, redis_conn};
use boxoffice::store::cache::Cache;
use boxoffice_testkit::{RedisServer, eventually};
use redis::AsyncTypedCommands;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Listing {
    title: String,
    seats: u32,
}

#[tokio::test]
async fn cache_round_trips_json_and_invalidates_keys_and_namespaces() {
    let redis = TestRedis::new().await;
    let cache =
        Cache::new(Some(&link(&redis.url))).with_prefix(redis.prefix.clone()).with_timeout(Duration::from_secs(2));
    assert!(cache.is_enabled());
    let listing = Listing { title: "Rock Night".into(), seats: 200 };

    cache.set_json("event:1", &listing, Duration::from_secs(60)).await;
    assert_eq!(cache.get_json::<Listing>("event:1").await, Some(listing));
    assert_eq!(cache.get_json::<Listing>("event:2").await, None);
    // A value of another shape is a miss, not an error.
    assert_eq!(cache.get_json::<Vec<u8>>("event:1").await, None);
    cache.invalidate(&["event:1"]).await;
    assert_eq!(cache.get_json::<Listing>("event:1").await, None);

    // Values expire with their TTL.
    cache.set_json("short", &1u32, Duration::from_millis(50)).await;
    eventually("the value expires", PATIENCE, || async { cache.get_json::<u32>("short").await.is_none() }).await;

    // A namespace: one increment hides every key handed out before it.
    let page1 = cache.namespace_key("search", "page=1").await.expect("Redis is up");
    cache.set_json(&page1, &vec![1, 2, 3], Duration::from_secs(60)).await;
    assert_eq!(cache.namespace_key("search", "page=1").await.as_deref(), Some(page1.as_str()));
    assert_eq!(cache.get_json::<Vec<u32>>(&page1).await, Some(vec![1, 2, 3]));
    cache.invalidate_prefix("search").await;
    let page1_now = cache.namespace_key("search", "page=1").await.unwrap();
    assert_ne!(page1_now, page1);
    assert_eq!(cache.get_json::<Vec<u32>>(&page1_now).await, None);
    let mut conn = redis_conn(&redis.url).await;
    assert_eq!(conn.get(format!("{}v:search", redis.prefix)).await.unwrap().as_deref(), Some("1"));

    // A fixed window counts hits; another key has its own count.
    let window = Duration::from_secs(3600);
    assert_eq!(cache.incr_window("login:1.2.3.4", window).await, Some(1));
    assert_eq!(cache.incr_window("login:1.2.3.4", window).await, Some(2));
    assert_eq!(cache.incr_window("login:5.6.7.8", window).await, Some(1));
}

#[tokio::test]
async fn cache_misses_and_ignores_writes_while_redis_is_down_then_recovers() {
    let mut server = RedisServer::start().await;
    let cache = Cache::new(Some(&link(&server.url())));
    cache.set_json("k", &"v", Duration::from_secs(60)).await;
    eventually("the cache works while Redis is up", PATIENCE, || async {
        cache.set_json("k", &"v", Duration::from_secs(60)).await;
        cache.get_json::<String>("k").await.as_deref() == Some("v")
    })
    .await;

    server.stop();
    for _ in 0..20 {
        assert_eq!(cache.get_json::<String>("k").await, None);
        cache.set_json("k", &"w", Duration::from_secs(60)).await;
        cache.invalidate(&["k"]).await;
        assert_eq!(cache.namespace_key("search", "page=1").await, None, "no version: skip the cache");
        cache.invalidate_prefix("search").await;
        assert_eq!(cache.incr_window("login", Duration::from_secs(60)).await, None);
    }

    server.restart().await;
    eventually("the cache reconnects by itself", PATIENCE, || async {
        cache.set_json("k", &"x", Duration::from_secs(60)).await;
        cache.get_json::<String>("k").await.as_deref() == Some("x")
    })
    .await;
}
