//! The relay through Redis outages: it keeps running, marks nothing while Redis is down, and
//! drains the backlog once it is back, also when it started while Redis was down.

use super::{PATIENCE, PLAIN_TOPICS, capture, config, link, plain_rows, redis_conn, spawn, streamed_ids, unpublished};
use boxoffice::workers::relay::OutboxRelay;
use boxoffice_testkit::{RedisServer, eventually, migrated_database};
use std::time::Duration;

#[tokio::test]
async fn relay_keeps_running_through_a_redis_outage_and_drains_the_backlog_after() {
    let pool = migrated_database().await;
    let mut server = RedisServer::start().await;
    let prefix = "boxoffice:";
    let (_, notifier) = capture();
    let relay = OutboxRelay::new(pool.clone(), Some(&link(&server.url())), notifier).with_config(config(prefix));
    let (stop, task) = spawn(relay);

    plain_rows(&pool, 20).await;
    eventually("rows are published while Redis is up", PATIENCE, || async { unpublished(&pool).await == 0 }).await;

    server.stop();
    let backlog = plain_rows(&pool, 30).await;
    // A window to watch, not a wait for something to happen: long enough for several failed
    // passes and backoffs, during which nothing may be marked.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(unpublished(&pool).await, 30, "nothing is marked while Redis is down");
    assert!(!task.is_finished(), "the relay keeps running");

    server.restart().await;
    eventually("the backlog drains once Redis is back", PATIENCE, || async { unpublished(&pool).await == 0 }).await;
    // The restarted server kept nothing from before (no persistence): exactly the backlog.
    let mut conn = redis_conn(&server.url()).await;
    assert_eq!(streamed_ids(&mut conn, prefix, &PLAIN_TOPICS).await, backlog);

    stop.send(()).unwrap();
    task.await.expect("the relay stops cleanly, without a panic");
}

#[tokio::test]
async fn a_relay_started_while_redis_is_down_waits_for_it() {
    let pool = migrated_database().await;
    let mut server = RedisServer::start().await;
    server.stop();
    let rows = plain_rows(&pool, 5).await;
    let (_, notifier) = capture();
    let (stop, task) =
        spawn(OutboxRelay::new(pool.clone(), Some(&link(&server.url())), notifier).with_config(config("b:")));
    // A window to watch: the relay runs, and marks nothing while Redis is down.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(unpublished(&pool).await, 5);

    server.restart().await;
    eventually("the rows are published once Redis is up", PATIENCE, || async { unpublished(&pool).await == 0 }).await;
    let mut conn = redis_conn(&server.url()).await;
    assert_eq!(streamed_ids(&mut conn, "b:", &PLAIN_TOPICS).await, rows);
    stop.send(()).unwrap();
    task.await.unwrap();
}
