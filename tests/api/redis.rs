//! The service with Redis: outbox relayed to streams, caches invalidated on change, and sales
//! unaffected when Redis goes away (a redis-server of each test's own).

use boxoffice_testkit::{RedisServer, fresh_database, poll, spawn_app_on};
use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

async fn stream_aggregates(url: &str, stream: &str) -> Vec<String> {
    let client = redis::Client::open(url).unwrap();
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return vec![] };
    let entries: redis::streams::StreamRangeReply = conn.xrange_all(stream).await.unwrap_or_default();
    entries.ids.iter().filter_map(|e| e.get::<String>("aggregate_id")).collect()
}

async fn wait_for_stream_entry(url: &str, stream: &str, aggregate: &str) {
    let reached = || async {
        let found = stream_aggregates(url, stream).await;
        if found.iter().any(|a| a == aggregate) { Ok(()) } else { Err(found) }
    };
    poll(Duration::from_secs(20), Duration::from_millis(200), reached)
        .await
        .unwrap_or_else(|found| panic!("{aggregate} never reached {stream}; it has {found:?}"));
}

#[tokio::test]
async fn purchases_reach_redis_streams_and_caches_follow_changes() {
    let redis = RedisServer::start().await;
    let app = spawn_app_on(fresh_database().await, &[("REDIS_URL", &redis.url())]).await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;

    let sale: Value = app.buy(&buyer, id, "A-1").await;
    let order = sale["order_id"].as_str().unwrap();
    wait_for_stream_entry(&redis.url(), "boxoffice:ticket:issued", order).await;
    wait_for_stream_entry(&redis.url(), "boxoffice:hold:created", order).await;
    wait_for_stream_entry(&redis.url(), "boxoffice:event:created", &id.to_string()).await;

    // Details are cached and search is indexed in memory; an update shows in both at once.
    let before: Value = app.get(&format!("/events/{id}/details"), None).await.json().await.unwrap();
    assert_eq!(before["title"], "Test concert");
    let found: Value = app.get("/events/search?q=concert", None).await.json().await.unwrap();
    assert_eq!(found["total"], 1);
    let r = app
        .request(Method::PUT, &format!("/events/{id}/update"), Some(&org), Some(json!({"title": "Renamed gala"})))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let after: Value = app.get(&format!("/events/{id}/details"), None).await.json().await.unwrap();
    assert_eq!(after["title"], "Renamed gala");
    let found: Value = app.get("/events/search?q=gala", None).await.json().await.unwrap();
    assert_eq!(found["total"], 1);
    let stale: Value = app.get("/events/search?q=concert", None).await.json().await.unwrap();
    assert_eq!(stale["total"], 0, "the old title no longer matches");
    // Live availability is never served from the cache.
    assert_eq!(after["availability"]["total"]["sold"], 1);
}

#[tokio::test]
async fn sales_go_on_when_redis_dies_and_the_backlog_drains_when_it_returns() {
    let mut redis = RedisServer::start().await;
    let app = spawn_app_on(fresh_database().await, &[("REDIS_URL", &redis.url())]).await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    app.get(&format!("/events/{id}/details"), None).await;

    redis.stop();
    let mut orders = Vec::new();
    for seat in ["B-1", "B-2", "B-3"] {
        let r = app
            .post(
                "/tickets/purchase",
                Some(&buyer),
                json!({"event_id": id, "seat_number": seat, "payment_method": "pm_card_visa"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "sales continue without Redis");
        orders.push(r.json::<Value>().await.unwrap()["order_id"].as_str().unwrap().to_owned());
    }
    let details = app.get(&format!("/events/{id}/details"), None).await;
    assert_eq!(details.status(), StatusCode::OK, "the cache is bypassed");
    assert_eq!(app.get("/events/search", None).await.status(), StatusCode::OK);
    let unpublished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL AND topic = 'ticket:issued'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(unpublished, 3, "rows wait in the outbox");

    redis.restart().await;
    for order in &orders {
        wait_for_stream_entry(&redis.url(), "boxoffice:ticket:issued", order).await;
    }
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let len: usize = conn.xlen("boxoffice:ticket:issued").await.unwrap();
    assert_eq!(len, 3, "each row published once");
}
