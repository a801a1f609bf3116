//! The hard guarantee of several nodes, on the journal itself: a node whose lease on an
//! event was taken over has every write for that event refused (fencing), whatever it
//! believes, while the new owner's writes go through. The process tests
//! (tests/process/reliability/cluster.rs) show the whole story with real nodes; this one
//! takes the soft guarantees (renewal, local lease clocks) out of the way.

use boxoffice::store::journal::{JournalConfig, PgJournal};
use boxoffice::store::leases::Leases;
use boxoffice_actors::journal::{Ack, Journal, JournalError};
use boxoffice_actors::{BuyerId, Change, EventId, HoldId, HoldRecord, HoldStatus, Items, Record, UnixMs};
use boxoffice_testkit::{TestApp, expire_lease, spawn_app};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

fn hold_created(event: Uuid, buyer: Uuid, seat: &str, epoch: i64) -> Record {
    Record {
        event: EventId(event),
        epoch,
        change: Change::HoldCreated {
            hold: HoldRecord {
                id: HoldId::new(),
                buyer: BuyerId(buyer),
                items: Arc::new(Items::Seats { seats: vec![seat.to_owned()].into() }),
                amount: 12000,
                created_at: UnixMs::now(),
                expires_at: UnixMs::now().plus_ms(600_000),
                status: HoldStatus::Active,
                idempotency_key: None,
                fingerprint: 1,
                tickets: vec![],
            },
        },
    }
}

async fn append(journal: &PgJournal, record: Record) -> Result<(), JournalError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    journal.append(record, Ack::new(move |r| drop(tx.send(r))));
    rx.await.expect("the journal answers")
}

/// A published event, a buyer, and the leases of two nodes, A and B (TTL one minute).
async fn two_nodes() -> (TestApp, Uuid, Uuid, Arc<Leases>, Arc<Leases>) {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (buyer, _, _) = app.user("customer").await;
    let event = app.published_event(&org, None, None).await;
    let ttl = Duration::from_secs(60);
    let (a, b) = (Arc::new(Leases::new("node-a".into(), ttl)), Arc::new(Leases::new("node-b".into(), ttl)));
    (app, buyer, event, a, b)
}

#[tokio::test]
async fn a_deposed_owners_writes_are_refused_and_the_new_owners_go_through() {
    let (app, buyer, event, a, b) = two_nodes().await;
    let config = JournalConfig::default();
    let (journal_a, _) = PgJournal::start(app.db.clone(), config, Some(Arc::clone(&a)));
    let (journal_b, _) = PgJournal::start(app.db.clone(), config, Some(Arc::clone(&b)));

    let epoch_a = a.acquire(&app.db, event).await.expect("A takes the free lease");
    assert!(b.acquire(&app.db, event).await.is_err(), "B cannot take a live lease");
    assert_eq!(append(&journal_a, hold_created(event, buyer, "A-1", epoch_a)).await, Ok(()), "the owner writes");
    assert_eq!(append(&journal_b, hold_created(event, buyer, "A-2", epoch_a)).await, Err(JournalError::Fenced));

    // A stalls past its lease; B takes the event over. A still believes it owns it.
    expire_lease(&app.db, event).await;
    let epoch_b = b.acquire(&app.db, event).await.expect("B takes the expired lease");
    assert!(epoch_b > epoch_a, "taking over increments the epoch");
    assert_eq!(a.epoch(event), Some(epoch_a), "A has not noticed");
    assert_eq!(append(&journal_a, hold_created(event, buyer, "A-3", epoch_a)).await, Err(JournalError::Fenced));
    assert_eq!(append(&journal_b, hold_created(event, buyer, "A-3", epoch_b)).await, Ok(()));
    let seats: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT items FROM holds WHERE event_id = $1 ORDER BY created_at")
            .bind(event)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(seats.len(), 2, "only the owners' writes are stored: {seats:?}");
    assert_eq!(a.epoch(event), None, "a fenced writer forgets the lease");
}

#[tokio::test]
async fn a_stopped_activations_late_write_is_refused_after_the_same_node_loads_the_event_again() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (buyer, _, _) = app.user("customer").await;
    let event = app.published_event(&org, None, None).await;
    let node = Arc::new(Leases::new("node-a".into(), Duration::from_secs(60)));
    let (journal, _) = PgJournal::start(app.db.clone(), JournalConfig::default(), Some(Arc::clone(&node)));

    // An activation writes under its epoch; the node then loads the event again (after
    // stepping down in an outage, say), which takes a new epoch.
    let first = node.acquire(&app.db, event).await.expect("the node takes the lease");
    assert_eq!(append(&journal, hold_created(event, buyer, "A-1", first)).await, Ok(()));
    let second = node.acquire(&app.db, event).await.expect("the node takes it again");
    assert!(second > first, "every activation takes a new epoch");
    // The earlier activation's late record is refused; the current one's is written, and
    // the refusal does not make the node forget the lease it holds now.
    assert_eq!(append(&journal, hold_created(event, buyer, "A-2", first)).await, Err(JournalError::Fenced));
    assert_eq!(node.epoch(event), Some(second));
    assert_eq!(append(&journal, hold_created(event, buyer, "A-3", second)).await, Ok(()));
    let stored: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT items->'seats'->0 FROM holds WHERE event_id = $1 ORDER BY created_at")
            .bind(event)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(stored, [serde_json::json!("A-1"), serde_json::json!("A-3")]);
}

/// How many of this database's sessions wait for a lock.
async fn waiting_for_locks(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

/// Waits (bounded) until `n` of this database's sessions wait for a lock.
async fn until_waiting(db: &sqlx::PgPool, n: i64) {
    for _ in 0..400 {
        if waiting_for_locks(db).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{n} sessions never waited for a lock (now {})", waiting_for_locks(db).await);
}

/// The race the fence exists for: the old owner's write is in flight (past the
/// fence, not yet committed) when another node takes the event over. The takeover
/// waits for that write, so the new owner's load sees it; the old owner's writes
/// after the takeover are refused.
#[tokio::test]
async fn a_takeover_waits_for_the_old_owners_write_in_flight() {
    let (app, buyer, event, a, b) = two_nodes().await;
    let epoch_a = a.acquire(&app.db, event).await.expect("A takes the free lease");
    expire_lease(&app.db, event).await;

    // A's write has passed the fence (its epoch is still the lease's) and is not committed.
    let mut in_flight = app.db.begin().await.unwrap();
    assert_eq!(a.fenced_in(&mut in_flight, &[(event, epoch_a)]).await.unwrap(), []);
    let write = Uuid::now_v7();
    sqlx::query("INSERT INTO journal_batches (batch_id) VALUES ($1)")
        .bind(write)
        .execute(&mut *in_flight)
        .await
        .unwrap();

    let takeover = tokio::spawn({
        let (b, db) = (Arc::clone(&b), app.db.clone());
        async move {
            let epoch = b.acquire(&db, event).await.map_err(|e| format!("{e:?}"))?;
            // What the new owner's load would see as soon as it holds the lease.
            let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_batches WHERE batch_id = $1")
                .bind(write)
                .fetch_one(&db)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((epoch, seen))
        }
    });
    until_waiting(&app.db, 1).await;
    assert!(!takeover.is_finished(), "the takeover waits for the write in flight");

    in_flight.commit().await.unwrap();
    let (epoch_b, seen) = takeover.await.unwrap().expect("B takes the expired lease once the write is in");
    assert!(epoch_b > epoch_a, "taking over increments the epoch");
    assert_eq!(seen, 1, "the new owner sees the write that was in flight");
    let mut late = app.db.begin().await.unwrap();
    assert_eq!(a.fenced_in(&mut late, &[(event, epoch_a)]).await.unwrap(), [(event, epoch_a)]);
    late.rollback().await.unwrap();
    let journal_b = PgJournal::start(app.db.clone(), JournalConfig::default(), Some(Arc::clone(&b))).0;
    assert_eq!(append(&journal_b, hold_created(event, buyer, "A-1", epoch_b)).await, Ok(()));
}

/// Deleting an event used to rest on `holds.event_id`'s foreign key; it rests on the
/// fence now. A hold in flight when the deletion starts is waited for and stops it
/// (409); a write after the deletion, under the lease taken before, is refused.
#[tokio::test]
async fn deleting_an_event_waits_for_a_hold_in_flight_and_refuses_writes_after_it() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (buyer, _, _) = app.user("customer").await;
    let (kept, deleted) = (app.published_event(&org, None, None).await, app.published_event(&org, None, None).await);
    let a = Arc::new(Leases::new("node-a".into(), Duration::from_secs(60)));
    let (journal, _) = PgJournal::start(app.db.clone(), JournalConfig::default(), Some(Arc::clone(&a)));

    // A hold of `kept` has passed the fence and is not committed when its deletion starts.
    let epoch = a.acquire(&app.db, kept).await.expect("A takes the lease");
    let mut in_flight = app.db.begin().await.unwrap();
    assert_eq!(a.fenced_in(&mut in_flight, &[(kept, epoch)]).await.unwrap(), []);
    sqlx::query(
        "INSERT INTO holds (hold_id, event_id, buyer_id, items, quantity, amount, status, fingerprint,
                            created_at, expires_at, updated_at)
         VALUES ($1, $2, $3, '{\"seats\": [\"A-1\"]}', 1, 0, 'active', 0, now(), now() + interval '10 minutes', now())",
    )
    .bind(Uuid::now_v7())
    .bind(kept)
    .bind(buyer)
    .execute(&mut *in_flight)
    .await
    .unwrap();
    let deletion = tokio::spawn({
        let request = app.client.delete(format!("{}/events/{kept}/delete", app.base)).bearer_auth(&org);
        async move { request.send().await.map(|r| r.status()) }
    });
    until_waiting(&app.db, 1).await;
    assert!(!deletion.is_finished(), "the deletion waits for the hold in flight");
    in_flight.commit().await.unwrap();
    let status = deletion.await.unwrap().expect("the deletion answers");
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "the deletion sees the hold and refuses");
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events WHERE event_id = $1)")
        .bind(kept)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(exists, "an event with a hold is not deleted");

    // `deleted` has no holds and goes; a write after that, under the lease taken before, is refused.
    let epoch = a.acquire(&app.db, deleted).await.expect("A takes the lease");
    let r = app.request(reqwest::Method::DELETE, &format!("/events/{deleted}/delete"), Some(&org), None).await;
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    assert_eq!(append(&journal, hold_created(deleted, buyer, "A-2", epoch)).await, Err(JournalError::Fenced));
    let holds: i64 = sqlx::query_scalar("SELECT count(*) FROM holds WHERE event_id = $1")
        .bind(deleted)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(holds, 0, "no hold of a deleted event");
}
