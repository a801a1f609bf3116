//! The relay publishes each outbox row to its topic's stream and marks it: once, across
//! restarts and with two relays racing; rows a failure left unmarked go again under the same id.

use super::{
    Buyer, PATIENCE, PLAIN_TOPICS, TestRedis, capture, config, link, outbox_row, plain_rows, redis_conn, spawn, stream,
    streamed_ids, unpublished,
};
use boxoffice::workers::relay::{OutboxRelay, RelayConfig, stream_key};
use boxoffice_testkit::{eventually, heap_pages, migrated_database};
use redis::AsyncTypedCommands;
use std::collections::HashSet;
use uuid::Uuid;

#[tokio::test]
async fn relay_publishes_each_row_to_its_topic_stream_and_marks_it() {
    let pool = migrated_database().await;
    let redis = TestRedis::new().await;
    let aggregate = Uuid::now_v7();
    let payload = serde_json::json!({"type": "hold_released", "hold": aggregate, "at": 1, "event_id": Uuid::nil()});
    let released = outbox_row(&pool, "hold:released", aggregate, payload.clone()).await;
    let created = outbox_row(&pool, "event:created", Uuid::now_v7(), serde_json::json!({"event_id": 1})).await;

    let (_, notifier) = capture();
    let mut relay =
        OutboxRelay::new(pool.clone(), Some(&link(&redis.url)), notifier).with_config(config(&redis.prefix));
    let pass = relay.relay_once().await.expect("a pass");

    assert_eq!((pass.fetched, pass.published), (2, 2));
    assert_eq!(unpublished(&pool).await, 0);
    let mut conn = redis_conn(&redis.url).await;
    let entries = stream(&mut conn, &format!("{}hold:released", redis.prefix)).await;
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e["outbox_id"], released.to_string());
    assert_eq!(e["topic"], "hold:released");
    assert_eq!(e["aggregate_id"], aggregate.to_string());
    assert_eq!(serde_json::from_str::<serde_json::Value>(&e["payload"]).unwrap(), payload);
    assert!(
        chrono::DateTime::parse_from_rfc3339(&e["created_at"]).is_ok(),
        "created_at is RFC 3339: {}",
        e["created_at"]
    );
    let events = stream(&mut conn, &format!("{}event:created", redis.prefix)).await;
    assert_eq!(events.iter().map(|e| e["outbox_id"].clone()).collect::<Vec<_>>(), vec![created.to_string()]);

    // Caught up: the next pass finds nothing.
    assert_eq!(relay.relay_once().await.unwrap().fetched, 0);
}

#[tokio::test]
async fn a_restarted_relay_republishes_nothing_already_marked() {
    let pool = migrated_database().await;
    let redis = TestRedis::new().await;
    let first = plain_rows(&pool, 40).await;
    let (_, notifier) = capture();
    let relay =
        OutboxRelay::new(pool.clone(), Some(&link(&redis.url)), notifier.clone()).with_config(config(&redis.prefix));
    let (stop, task) = spawn(relay);
    eventually("the first rows are published", PATIENCE, || async { unpublished(&pool).await == 0 }).await;
    // Like a crash: the task is gone, whatever it was doing.
    task.abort();
    let _ = task.await;
    drop(stop);

    let second = plain_rows(&pool, 10).await;
    let mut restarted =
        OutboxRelay::new(pool.clone(), Some(&link(&redis.url)), notifier).with_config(config(&redis.prefix));
    // Passes until the new rows are out. A pass may find nothing while the killed
    // relay's transaction still holds the relay lock (it ends when its connection
    // is next used or closed); the next pass goes on.
    let deadline = std::time::Instant::now() + PATIENCE;
    while unpublished(&pool).await > 0 {
        assert!(std::time::Instant::now() < deadline, "the restarted relay publishes the new rows");
        if restarted.relay_once().await.expect("a pass").fetched == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    let mut conn = redis_conn(&redis.url).await;
    let streamed = streamed_ids(&mut conn, &redis.prefix, &PLAIN_TOPICS).await;
    let mut expected: Vec<i64> = first.into_iter().chain(second).collect();
    expected.sort_unstable();
    assert_eq!(streamed, expected, "every row exactly once");
    assert_eq!(unpublished(&pool).await, 0);
}

#[tokio::test]
async fn rows_left_unmarked_by_a_failure_are_published_again_under_the_same_outbox_id() {
    let pool = migrated_database().await;
    let redis = TestRedis::new().await;
    let buyer = Buyer::new(&pool, "carol@example.com").await;
    let before = outbox_row(&pool, "hold:created", buyer.hold, serde_json::json!({})).await;
    let issued = outbox_row(&pool, "ticket:issued", buyer.hold, buyer.issued_payload()).await;
    let after = outbox_row(&pool, "hold:released", Uuid::now_v7(), serde_json::json!({})).await;
    let (mailer, notifier) = capture();
    *mailer.outages.lock().unwrap() = 1;
    let mut relay =
        OutboxRelay::new(pool.clone(), Some(&link(&redis.url)), notifier).with_config(config(&redis.prefix));

    // The mail server is down at the second row: the first is done, the rest wait.
    let err = relay.relay_once().await.expect_err("the mail outage is reported");
    assert_eq!(err.sink(), "mail");
    assert_eq!(unpublished(&pool).await, 2);
    assert!(mailer.sent().is_empty());

    let pass = relay.relay_once().await.expect("the retry goes through");
    assert_eq!((pass.fetched, pass.published), (2, 2));
    assert_eq!(unpublished(&pool).await, 0);

    // The stream saw the unmarked rows twice, under the same ids; people saw one email.
    let mut conn = redis_conn(&redis.url).await;
    let streamed = streamed_ids(&mut conn, &redis.prefix, &["hold:created", "ticket:issued", "hold:released"]).await;
    assert_eq!(streamed, vec![before, issued, issued, after, after]);
    let distinct: HashSet<i64> = streamed.into_iter().collect();
    assert_eq!(distinct, HashSet::from([before, issued, after]), "consumers dedupe on outbox_id");
    assert_eq!(mailer.sent().iter().map(|e| e.outbox_id).collect::<Vec<_>>(), vec![issued]);
}

#[tokio::test]
async fn two_relays_never_publish_the_same_row() {
    const ROWS: i64 = 2000;
    let pool = migrated_database().await;
    let redis = TestRedis::new().await;
    sqlx::query(
        "INSERT INTO outbox (topic, aggregate_id, payload)
         SELECT (ARRAY['event:created', 'hold:created', 'hold:released', 'ticket:used'])[1 + n % 4],
                gen_random_uuid(), jsonb_build_object('n', n)
         FROM generate_series(1, $1) AS n",
    )
    .bind(ROWS)
    .execute(&pool)
    .await
    .unwrap();
    let small_batches = RelayConfig { batch_size: 50, ..config(&redis.prefix) };
    let relays: Vec<_> = (0..2)
        .map(|_| {
            let (_, notifier) = capture();
            spawn(OutboxRelay::new(pool.clone(), Some(&link(&redis.url)), notifier).with_config(small_batches.clone()))
        })
        .collect();

    eventually("both relays drain the outbox", PATIENCE, || async { unpublished(&pool).await == 0 }).await;
    for (stop, task) in relays {
        stop.send(()).unwrap();
        task.await.unwrap();
    }

    let mut conn = redis_conn(&redis.url).await;
    let mut entries = 0;
    for topic in PLAIN_TOPICS {
        entries += conn.xlen(stream_key(&redis.prefix, topic)).await.unwrap();
    }
    assert_eq!(entries as i64, ROWS, "one stream entry per row");
    let distinct: HashSet<i64> = streamed_ids(&mut conn, &redis.prefix, &PLAIN_TOPICS).await.into_iter().collect();
    assert_eq!(distinct.len() as i64, ROWS);
}

/// A running relay whose journal is in a rush (300 records every 100 ms: 3,000 a
/// second) that has been seen by the relay, with `max_defer` as its longest wait.
struct Rushing {
    pool: sqlx::PgPool,
    redis: TestRedis,
    journal: tokio::task::JoinHandle<()>,
    relay: (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>),
}

impl Rushing {
    async fn start(max_defer: std::time::Duration) -> Self {
        use std::sync::{Arc, atomic::AtomicU64, atomic::Ordering};
        let pool = migrated_database().await;
        let redis = TestRedis::new().await;
        let (_, notifier) = capture();
        let committed = Arc::new(AtomicU64::new(0));
        let config = RelayConfig { rush_max_defer: max_defer, ..config(&redis.prefix) };
        let relay = OutboxRelay::new(pool.clone(), Some(&link(&redis.url)), notifier)
            .with_config(config)
            .with_rush_gate(Arc::clone(&committed));
        let relay = spawn(relay);
        let journal = tokio::spawn(async move {
            loop {
                committed.fetch_add(300, Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        });
        // The relay reads the pace every 250 ms: let it see the rush.
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        Self { pool, redis, journal, relay }
    }

    async fn stop(self) {
        self.journal.abort();
        let (stop, task) = self.relay;
        let _ = stop.send(());
        task.await.unwrap();
    }
}

#[tokio::test]
async fn during_a_rush_rows_wait_and_go_out_once_it_ends() {
    let rushing = Rushing::start(std::time::Duration::from_secs(30)).await;
    let pool = rushing.pool.clone();
    let ids = plain_rows(&pool, 5).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(unpublished(&pool).await, 5, "rows wait while the journal is in a rush");

    rushing.journal.abort();
    eventually("the rows go out once the rush is over", PATIENCE, || async { unpublished(&pool).await == 0 }).await;
    let mut conn = redis_conn(&rushing.redis.url).await;
    let streamed: HashSet<i64> =
        streamed_ids(&mut conn, &rushing.redis.prefix, &PLAIN_TOPICS).await.into_iter().collect();
    assert_eq!(streamed, ids.into_iter().collect::<HashSet<_>>());
    rushing.stop().await;
}

#[tokio::test]
async fn a_rush_longer_than_the_longest_deferral_does_not_hold_rows_back_for_good() {
    let rushing = Rushing::start(std::time::Duration::from_secs(2)).await;
    let pool = rushing.pool.clone();
    plain_rows(&pool, 5).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(unpublished(&pool).await, 5, "rows wait at first");
    eventually("the rows go out while the rush goes on", PATIENCE, || async { unpublished(&pool).await == 0 }).await;
    assert!(!rushing.journal.is_finished(), "the rush was still on");
    rushing.stop().await;
}

/// Marking a row published keeps its new version on the row's page, which the
/// table leaves room for (fillfactor). A version moved to another page logs the
/// whole row again, payload and all: more WAL than the insert.
#[tokio::test]
async fn marking_rows_published_keeps_them_on_their_pages() {
    let pool = migrated_database().await;
    // Purchase-sized payloads: a `hold_purchased` is ~630 bytes of JSON.
    let filler = "x".repeat(560);
    for _ in 0..40 {
        let aggregate = Uuid::now_v7();
        let payload = serde_json::json!({
            "type": "hold_released", "hold": aggregate, "at": 1, "event_id": Uuid::nil(), "note": filler,
        });
        outbox_row(&pool, "hold:released", aggregate, payload).await;
    }
    let before: Vec<(i64, i64)> = heap_pages(&pool, "outbox", "id").await;
    assert!(before.iter().map(|(_, page)| page).collect::<HashSet<_>>().len() > 1, "rows span pages: {before:?}");

    let (_, notifier) = capture();
    let mut relay = OutboxRelay::new(pool.clone(), None, notifier).with_config(config("unused:"));
    assert_eq!(relay.relay_once().await.expect("a pass").fetched, 40);
    assert_eq!(unpublished(&pool).await, 0);
    assert_eq!(
        heap_pages::<i64>(&pool, "outbox", "id").await,
        before,
        "each marked row's new version is on the page of the old one"
    );
}
