//! Published outbox rows are kept for the retention, then deleted; unpublished rows never are.

use super::{PATIENCE, capture, config, outbox_row, spawn};
use boxoffice::workers::relay::{OutboxRelay, RelayConfig, prune_published};
use boxoffice_testkit::{eventually, migrated_database};
use sqlx::PgPool;
use std::time::Duration;
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A row created `created_days` ago and published `published_days` ago (`None`: unpublished).
async fn aged_row(pool: &PgPool, created_days: i32, published_days: Option<i32>) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO outbox (topic, aggregate_id, payload, created_at, published_at)
         VALUES ('event:created', $1, '{}', now() - make_interval(days => $2),
                 now() - make_interval(days => $3))
         RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(created_days)
    .bind(published_days)
    .fetch_one(pool)
    .await
    .expect("insert an aged outbox row")
}

async fn ids(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM outbox ORDER BY id").fetch_all(pool).await.unwrap()
}

async fn published(pool: &PgPool, id: i64) -> bool {
    sqlx::query_scalar("SELECT published_at IS NOT NULL FROM outbox WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap()
        .unwrap_or(false)
}

#[tokio::test]
async fn pruning_deletes_only_rows_published_before_the_retention_in_chunks() {
    let pool = migrated_database().await;
    // Seven rows published ten days ago: more than two chunks of three.
    let mut old = Vec::new();
    for _ in 0..7 {
        old.push(aged_row(&pool, 10, Some(10)).await);
    }
    let recent = aged_row(&pool, 10, Some(1)).await;
    // Never published, however old: still owed to the streams and the buyers' emails.
    let stuck = aged_row(&pool, 30, None).await;
    let fresh = aged_row(&pool, 0, None).await;

    let deleted = prune_published(&pool, 7 * DAY, 3).await.expect("prune");
    assert_eq!(deleted, 7, "the rows published more than a week ago, over three chunks");
    assert_eq!(ids(&pool).await, vec![recent, stuck, fresh]);

    // Nothing left to prune: a second run deletes nothing.
    assert_eq!(prune_published(&pool, 7 * DAY, 3).await.unwrap(), 0);
    // A shorter retention reaches the row published a day ago, still not the unpublished ones.
    assert_eq!(prune_published(&pool, DAY / 2, 100).await.unwrap(), 1);
    assert_eq!(ids(&pool).await, vec![stuck, fresh]);
}

#[tokio::test]
async fn a_running_relay_prunes_published_rows_past_its_retention() {
    let pool = migrated_database().await;
    let old = aged_row(&pool, 9, Some(8)).await;
    let kept = aged_row(&pool, 2, Some(2)).await;
    let stuck = aged_row(&pool, 9, None).await;
    let (_, notifier) = capture();
    let relay_config = RelayConfig { retention: Some(7 * DAY), ..config("unused:") };
    let (stop, task) = spawn(OutboxRelay::new(pool.clone(), None, notifier).with_config(relay_config));

    eventually("the relay prunes the row published eight days ago", PATIENCE, || {
        let pool = pool.clone();
        async move { !ids(&pool).await.contains(&old) }
    })
    .await;
    // The old unpublished row was published by the same relay (just now), so it is kept.
    assert!(published(&pool, stuck).await);
    assert_eq!(ids(&pool).await, vec![kept, stuck]);
    let _ = stop.send(());
    task.await.unwrap();
}

#[tokio::test]
async fn without_a_retention_published_rows_are_kept() {
    let pool = migrated_database().await;
    let old = aged_row(&pool, 400, Some(400)).await;
    let (_, notifier) = capture();
    let relay_config = RelayConfig { retention: None, ..config("unused:") };
    let (stop, task) = spawn(OutboxRelay::new(pool.clone(), None, notifier).with_config(relay_config));

    // Two rows published one after the other: the relay has finished the pass that
    // published the first, and what follows it (pruning, when due), before it publishes
    // the second.
    for _ in 0..2 {
        let row = outbox_row(&pool, "event:created", Uuid::now_v7(), serde_json::json!({})).await;
        eventually("the relay publishes the new row", PATIENCE, || {
            let pool = pool.clone();
            async move { published(&pool, row).await }
        })
        .await;
    }
    assert!(ids(&pool).await.contains(&old), "a relay without a retention deleted a published row");
    let _ = stop.send(());
    task.await.unwrap();
}
