//! The journal's answer to a lost COMMIT reply: it looks its batch up, waiting for
//! a commit still in progress on another connection, instead of guessing.

use boxoffice::store::journal::{batch_committed, batch_lock};
use boxoffice_testkit::migrated_database;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[tokio::test]
async fn a_batch_is_looked_up_only_once_its_transaction_has_ended() {
    let pool = migrated_database().await;
    assert!(!batch_committed(&pool, Uuid::now_v7()).await.unwrap(), "an unknown batch did not commit");

    // A batch transaction that is still committing when the lookup starts.
    let batch = Uuid::now_v7();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO journal_batches (batch_id) SELECT $1 FROM (SELECT pg_advisory_xact_lock($2)) l")
        .bind(batch)
        .bind(batch_lock(batch))
        .execute(&mut *tx)
        .await
        .unwrap();
    let lookup = tokio::spawn({
        let pool = pool.clone();
        async move { (batch_committed(&pool, batch).await.unwrap(), Instant::now()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!lookup.is_finished(), "the lookup waits for the batch's transaction");
    let committed_at = Instant::now();
    tx.commit().await.unwrap();
    let (landed, answered_at) = lookup.await.unwrap();
    assert!(landed && answered_at >= committed_at, "the lookup sees the commit it waited for");

    // One that rolls back is not in.
    let other = Uuid::now_v7();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO journal_batches (batch_id) SELECT $1 FROM (SELECT pg_advisory_xact_lock($2)) l")
        .bind(other)
        .bind(batch_lock(other))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert!(!batch_committed(&pool, other).await.unwrap());
}
