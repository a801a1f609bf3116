//! The journal's transactions: what one batch writes when its changes depend on
//! each other, and its answer to a lost COMMIT reply (it looks its batch up,
//! waiting for a commit still in progress on another connection, instead of guessing).

use boxoffice::store::journal::{JournalConfig, PgJournal, batch_committed, batch_lock};
use boxoffice_actors::journal::{Ack, Journal};
use boxoffice_actors::{
    BuyerId, Change, EventId, HoldId, HoldRecord, HoldStatus, Items, Payment, Record, TicketId, TicketRecord, UnixMs,
};
use boxoffice_testkit::{buyer_and_published_event, migrated_database};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn created(event: Uuid, buyer: Uuid, hold: HoldId, quantity: u32) -> Record {
    let now = UnixMs::now();
    let items = Arc::new(Items::General { section: "Floor".into(), quantity });
    Record {
        event: EventId(event),
        epoch: 0,
        change: Change::HoldCreated {
            hold: HoldRecord {
                id: hold,
                buyer: BuyerId(buyer),
                items,
                amount: 5000 * i64::from(quantity),
                created_at: now,
                expires_at: now.plus_ms(600_000),
                status: HoldStatus::Active,
                idempotency_key: None,
                fingerprint: 0,
                tickets: vec![],
            },
        },
    }
}

#[tokio::test]
async fn one_batch_writes_changes_that_build_on_each_other() {
    let pool = migrated_database().await;
    let (buyer, event) = buyer_and_published_event(&pool, "buyer@example.com", "Buyer").await;
    // One writer that waits long enough for every record below to join its first batch.
    let config = JournalConfig { max_batch: 64, max_wait: Duration::from_millis(500), writers: 1 };
    let (journal, _) = PgJournal::start(pool.clone(), config, None);

    let (bought, lapsed) = (HoldId::new(), HoldId::new());
    let tickets = [TicketId::new(), TicketId::new()];
    let at = UnixMs::now();
    let issued = tickets
        .iter()
        .map(|id| TicketRecord { id: *id, section: "Floor".into(), seat: None, price: 5000, cancelled: false })
        .collect();
    let payment = Payment {
        provider: "test".into(),
        reference: format!("pi_{}", Uuid::now_v7().simple()),
        amount: 10_000,
        currency: "JPY".into(),
        charge_key: None,
    };
    let records = [
        created(event, buyer, bought, 2),
        // Bought, then one of its tickets cancelled (an event cancelled at that moment, say).
        Record {
            event: EventId(event),
            epoch: 0,
            change: Change::HoldPurchased {
                hold: bought,
                buyer: BuyerId(buyer),
                amount: 10_000,
                tickets: issued,
                payment: Some(Box::new(payment)),
                retaken: false,
                at,
            },
        },
        Record {
            event: EventId(event),
            epoch: 0,
            change: Change::TicketsCancelled { hold: bought, tickets: vec![tickets[0]], at },
        },
        // Held and lapsed before the batch was written.
        created(event, buyer, lapsed, 1),
        Record { event: EventId(event), epoch: 0, change: Change::HoldExpired { hold: lapsed, at } },
    ];
    let mut answers = Vec::new();
    for record in records {
        let (tx, rx) = tokio::sync::oneshot::channel();
        journal.append(record, Ack::new(move |r| drop(tx.send(r))));
        answers.push(rx);
    }
    for answer in answers {
        answer.await.expect("the journal answers").expect("the batch commits");
    }

    let batches: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_batches").fetch_one(&pool).await.unwrap();
    assert_eq!(batches, 1, "the five changes were written in one transaction");
    let holds: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT hold_id, status FROM holds ORDER BY hold_id").fetch_all(&pool).await.unwrap();
    assert_eq!(holds, vec![(bought.0, "purchased".to_owned()), (lapsed.0, "expired".to_owned())]);
    let stored: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT ticket_id, status FROM tickets ORDER BY ticket_id").fetch_all(&pool).await.unwrap();
    assert_eq!(stored, vec![(tickets[0].0, "cancelled".to_owned()), (tickets[1].0, "valid".to_owned())]);
    let payments: Vec<(Uuid, i64, String)> =
        sqlx::query_as("SELECT hold_id, amount, status FROM payments").fetch_all(&pool).await.unwrap();
    assert_eq!(payments, vec![(bought.0, 10_000, "succeeded".to_owned())]);
    let outbox: Vec<(String, Uuid)> =
        sqlx::query_as("SELECT topic, aggregate_id FROM outbox ORDER BY id").fetch_all(&pool).await.unwrap();
    let expected = [
        ("hold:created", bought),
        ("payment:created", bought),
        ("ticket:issued", bought),
        ("ticket:cancelled", bought),
        ("hold:created", lapsed),
        ("hold:expired", lapsed),
    ];
    assert_eq!(outbox, expected.map(|(topic, hold)| (topic.to_owned(), hold.0)).to_vec(), "in the changes' order");
    let same: bool = sqlx::query_scalar(
        "SELECT a.payload::text = b.payload::text FROM outbox a, outbox b
         WHERE a.topic = 'payment:created' AND b.topic = 'ticket:issued'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(same, "a sale's payment and tickets rows carry the same change");
}

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
