//! The charge log: every payment's `charges` row is durable before the provider is
//! asked, written in group commits; a payment sent twice at once is one row.

use boxoffice::store::charges::{ChargeLog, ChargeRow};
use boxoffice_testkit::migrated_database;
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

fn intent(key: &str, amount: i64) -> ChargeRow {
    ChargeRow {
        charge_key: key.to_owned(),
        provider: "test".into(),
        hold_id: Uuid::now_v7(),
        event_id: Uuid::now_v7(),
        buyer_id: Uuid::now_v7(),
        payment_method: "pm_card_visa".into(),
        amount,
        currency: "EUR".into(),
        provider_ref: None,
        status: String::new(),
        attempts: 0,
    }
}

async fn rows_with_key(pool: &sqlx::PgPool, key: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM charges WHERE charge_key = $1").bind(key).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn a_charge_another_transaction_records_meanwhile_is_answered_not_lost() {
    let pool = migrated_database().await;
    let log = ChargeLog::start(pool.clone(), Duration::from_secs(60));
    let key = format!("{}:pm_card_visa", Uuid::now_v7());

    // The same payment, sent at once to another node, is in that node's batch: its
    // transaction has written the row and not committed yet.
    let mut other = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO charges (charge_key, provider, hold_id, event_id, buyer_id, payment_method, amount, currency,
                              status, next_check_at)
         VALUES ($1, 'test', $2, $2, $2, 'pm_card_visa', 4200, 'EUR', 'started', now())",
    )
    .bind(&key)
    .bind(Uuid::now_v7())
    .execute(&mut *other)
    .await
    .unwrap();
    let recording = tokio::spawn({
        let (log, row) = (log.clone(), intent(&key, 4200));
        async move { log.record(row).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!recording.is_finished(), "the second waits for the first's transaction");
    other.commit().await.unwrap();

    let stored = tokio::time::timeout(Duration::from_secs(10), recording).await.unwrap().unwrap();
    let stored = stored.expect("the row the other transaction recorded is answered");
    assert_eq!((stored.charge_key.as_str(), stored.status.as_str(), stored.amount), (key.as_str(), "started", 4200));
    assert_eq!(rows_with_key(&pool, &key).await, 1);
}

#[tokio::test]
async fn payments_sent_twice_at_once_share_one_row_each() {
    let pool = migrated_database().await;
    let log = ChargeLog::start(pool.clone(), Duration::from_secs(60));
    let keys: Vec<String> = (0..150).map(|_| format!("{}:pm_card_visa", Uuid::now_v7())).collect();
    let calls: Vec<_> = keys
        .iter()
        .chain(keys.iter())
        .enumerate()
        .map(|(i, key)| {
            let (log, row) = (log.clone(), intent(key, 100 + (i % keys.len()) as i64));
            tokio::spawn(async move { log.record(row).await })
        })
        .collect();
    let mut answers: HashMap<String, Vec<ChargeRow>> = HashMap::new();
    for call in calls {
        let row = call.await.unwrap().expect("every payment gets its row");
        answers.entry(row.charge_key.clone()).or_default().push(row);
    }
    assert_eq!(answers.len(), keys.len());
    for key in &keys {
        let both = &answers[key];
        assert_eq!(both.len(), 2, "both calls of {key} answered with its row");
        assert_eq!(both[0].hold_id, both[1].hold_id, "one row, the first recorded");
        assert_eq!(rows_with_key(&pool, key).await, 1);
        let stored: (Uuid, i64, String) =
            sqlx::query_as("SELECT hold_id, amount, status FROM charges WHERE charge_key = $1")
                .bind(key)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(stored, (both[0].hold_id, both[0].amount, both[0].status.clone()), "the answer is the stored row");
        assert_eq!(stored.2, "started");
    }
}
