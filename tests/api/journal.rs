//! The journal's transactions: what one batch writes when its changes depend on
//! each other, and its answer to a lost reply (it looks its batch up, waiting for a
//! commit still in progress on another connection, instead of guessing): a batch
//! that committed is acknowledged once, one that did not is written again.

use boxoffice::store::journal::{JournalConfig, PgJournal, batch_committed, batch_lock};
use boxoffice_actors::journal::{Ack, Journal};
use boxoffice_actors::{
    BuyerId, Change, EventId, HoldId, HoldRecord, HoldStatus, Items, Payment, Record, TicketId, TicketRecord, UnixMs,
};
use boxoffice_testkit::{buyer_and_published_event, fresh_database, heap_pages, migrated_database};
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
    // The charge behind the payment, recorded with its reference: the sale completes
    // it, found by the reference (the payment carries no charge key).
    sqlx::query(
        "INSERT INTO charges (charge_key, provider, hold_id, event_id, buyer_id, payment_method, amount, currency,
                              provider_ref, status, next_check_at)
         VALUES ('by-reference', 'test', $1, $2, $3, 'pm_card_visa', 10000, 'JPY', $4, 'charged', now())",
    )
    .bind(bought.0)
    .bind(event)
    .bind(buyer)
    .bind(&payment.reference)
    .execute(&pool)
    .await
    .unwrap();
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
    write_all(&journal, records.into_iter()).await;

    let batches: i64 = sqlx::query_scalar("SELECT count(*) FROM journal_batches").fetch_one(&pool).await.unwrap();
    assert_eq!(batches, 1, "the five changes were written in one transaction");
    let holds: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT hold_id, status FROM holds ORDER BY hold_id").fetch_all(&pool).await.unwrap();
    assert_eq!(holds, vec![(bought.0, "purchased".to_owned()), (lapsed.0, "expired".to_owned())]);
    let charge: String = sqlx::query_scalar("SELECT status FROM charges WHERE charge_key = 'by-reference'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(charge, "completed", "the charge ended as the tickets, in the same batch");
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

/// A TCP relay in front of PostgreSQL whose open connections can be cut at once,
/// as a network fault would: the database side sees its client vanish only when it
/// next writes to it.
struct CuttableLink {
    port: u16,
    open: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CuttableLink {
    async fn start(upstream: (String, u16)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let links = Arc::clone(&open);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                links.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self { port, open }
    }

    /// Drops every connection open now; new ones go through.
    fn cut(&self) {
        for link in self.open.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

/// A database, a buyer and an event; a journal (one writer) that reaches the
/// database through a [`CuttableLink`]; and a lock on `holds` that parks the
/// journal's next batch inside its call, before it commits.
struct ParkedBatch {
    direct: sqlx::PgPool,
    link: CuttableLink,
    /// Kept alive: its writers stop once it is dropped.
    _journal: PgJournal,
    locker: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
    hold: HoldId,
    answer: tokio::sync::oneshot::Receiver<Result<(), boxoffice_actors::journal::JournalError>>,
    /// The backend running the parked call.
    pid: i32,
}

/// The backends waiting for a lock of `locktype`, other than `except`.
async fn waiting(pool: &sqlx::PgPool, locktype: &str, except: i32) -> Result<i32, ()> {
    let pid: Option<i32> =
        sqlx::query_scalar("SELECT pid FROM pg_locks WHERE NOT granted AND locktype = $1 AND pid <> $2")
            .bind(locktype)
            .bind(except)
            .fetch_optional(pool)
            .await
            .unwrap();
    pid.ok_or(())
}

impl ParkedBatch {
    async fn start() -> Self {
        use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
        let url = boxoffice_testkit::fresh_database().await;
        let options: PgConnectOptions = url.parse().unwrap();
        let direct = sqlx::PgPool::connect_with(options.clone()).await.unwrap();
        boxoffice::store::db::migrator().run(&direct).await.unwrap();
        let (buyer, event) = buyer_and_published_event(&direct, "buyer@example.com", "Buyer").await;
        let link = CuttableLink::start((options.get_host().to_owned(), options.get_port())).await;
        let through_link = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.host("127.0.0.1").port(link.port))
            .await
            .unwrap();
        let config = JournalConfig { max_batch: 64, max_wait: Duration::from_millis(1), writers: 1 };
        let (journal, _) = PgJournal::start(through_link, config, None);

        let mut locker = direct.begin().await.unwrap();
        sqlx::query("LOCK TABLE holds IN ACCESS EXCLUSIVE MODE").execute(&mut *locker).await.unwrap();
        let hold = HoldId::new();
        let (tx, answer) = tokio::sync::oneshot::channel();
        journal.append(created(event, buyer, hold, 1), Ack::new(move |r| drop(tx.send(r))));
        let pid = boxoffice_testkit::poll(Duration::from_secs(10), Duration::from_millis(10), || {
            waiting(&direct, "relation", 0)
        })
        .await
        .expect("the journal's call waits for the lock on holds");
        Self { direct, link, _journal: journal, locker: Some(locker), hold, answer, pid }
    }

    /// Waits until another backend than the parked call's waits for a lock of
    /// `locktype`, and checks the record is not answered yet.
    async fn next_waiter(&mut self, locktype: &str, what: &str) {
        let pid = boxoffice_testkit::poll(Duration::from_secs(10), Duration::from_millis(10), || {
            waiting(&self.direct, locktype, self.pid)
        })
        .await
        .unwrap_or_else(|()| panic!("{what}"));
        assert_ne!(pid, self.pid);
        assert!(self.answer.try_recv().is_err(), "no answer before the batch's fate is known");
    }

    /// Frees `holds`; the record must then be acknowledged, and written once.
    async fn release_and_expect_one_write(mut self) {
        self.locker.take().unwrap().commit().await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), &mut self.answer).await.expect("an answer");
        answer.unwrap().expect("the batch is in: the record is acknowledged");
        self.assert_written_once().await;
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).bind(self.hold.0).fetch_one(&self.direct).await.unwrap()
    }

    /// The hold is in exactly once, with its batch marker and its outbox row.
    async fn assert_written_once(&self) {
        assert_eq!(self.count("SELECT count(*) FROM holds WHERE hold_id = $1").await, 1, "the hold is in once");
        assert_eq!(self.count("SELECT count(*) FROM outbox WHERE aggregate_id = $1").await, 1, "one outbox row");
        let batches: i64 =
            sqlx::query_scalar("SELECT count(*) FROM journal_batches").fetch_one(&self.direct).await.unwrap();
        assert_eq!(batches, 1, "one batch committed");
    }
}

#[tokio::test]
async fn a_batch_whose_answer_is_lost_after_it_committed_is_acknowledged_once() {
    let mut parked = ParkedBatch::start().await;
    // The link drops while the call waits: PostgreSQL goes on, and commits the call
    // once the lock is free, but its answer has nowhere to go.
    parked.link.cut();
    // The journal looks the batch up; the lookup waits for the call's transaction.
    parked.next_waiter("advisory", "the lookup waits for the batch's transaction").await;
    parked.release_and_expect_one_write().await;
}

#[tokio::test]
async fn a_batch_cut_off_before_it_committed_is_written_again() {
    let mut parked = ParkedBatch::start().await;
    // The call's backend ends before the commit: its transaction rolls back.
    let ended: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(parked.pid).fetch_one(&parked.direct).await.unwrap();
    assert!(ended);
    // The journal finds the batch not in and writes it again: the new call waits for
    // the lock in turn.
    parked.next_waiter("relation", "the batch is written again").await;
    parked.release_and_expect_one_write().await;
}

/// A sale's updates keep each hold's and each charge's new version on the row's
/// page, which the tables leave room for (fillfactor): the hold's status change is
/// then HOT (no index entry), and neither logs a row lock and the whole row again
/// on another page.
#[tokio::test]
async fn a_sale_updates_holds_and_charges_on_their_pages() {
    let pool = migrated_database().await;
    let (buyer, event) = buyer_and_published_event(&pool, "buyer@example.com", "Buyer").await;
    let config = JournalConfig { max_batch: 1024, max_wait: Duration::ZERO, writers: 1 };
    let (journal, _) = PgJournal::start(pool.clone(), config, None);
    let holds: Vec<HoldId> = (0..300).map(|_| HoldId::new()).collect();
    write_all(&journal, holds.iter().map(|hold| created(event, buyer, *hold, 1))).await;
    record_charges(&pool, event, buyer, &holds).await;
    let before =
        (heap_pages::<Uuid>(&pool, "holds", "hold_id").await, heap_pages::<Uuid>(&pool, "charges", "hold_id").await);
    for rows in [&before.0, &before.1] {
        assert!(rows.iter().map(|(_, page)| page).collect::<std::collections::HashSet<_>>().len() > 1, "{rows:?}");
    }

    let at = UnixMs::now();
    write_all(&journal, holds.iter().map(|hold| paid(event, buyer, *hold, Some(charge_key(*hold)), at))).await;

    let sold: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM holds h JOIN charges c USING (hold_id)
         WHERE h.status = 'purchased' AND c.status = 'completed' AND c.provider_ref IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(sold, 300, "every hold purchased and its charge completed");
    let after =
        (heap_pages::<Uuid>(&pool, "holds", "hold_id").await, heap_pages::<Uuid>(&pool, "charges", "hold_id").await);
    assert_eq!(after.0, before.0, "each hold's new version is on the page of the old one");
    assert_eq!(after.1, before.1, "each charge's new version is on the page of the old one");
}

/// The charge of each hold, as the charge log records it before it asks the
/// provider (key: the hold and the card).
async fn record_charges(pool: &sqlx::PgPool, event: Uuid, buyer: Uuid, holds: &[HoldId]) {
    sqlx::query(
        "INSERT INTO charges (charge_key, provider, hold_id, event_id, buyer_id, payment_method, amount, currency,
                              status, next_check_at)
         SELECT h || ':pm_card_visa', 'test', h, $2, $3, 'pm_card_visa', 5000, 'JPY', 'started', now()
         FROM unnest($1::uuid[]) AS h",
    )
    .bind(holds.iter().map(|h| h.0).collect::<Vec<_>>())
    .bind(event)
    .bind(buyer)
    .execute(pool)
    .await
    .unwrap();
}

fn charge_key(hold: HoldId) -> String {
    format!("{}:pm_card_visa", hold.0)
}

/// The sale of `hold`: one general-admission ticket, paid with the test provider;
/// the payment completes the charge `charge_key` (or, without one, the charge
/// with its reference).
fn paid(event: Uuid, buyer: Uuid, hold: HoldId, charge_key: Option<String>, at: UnixMs) -> Record {
    Record {
        event: EventId(event),
        epoch: 0,
        change: Change::HoldPurchased {
            hold,
            buyer: BuyerId(buyer),
            amount: 5000,
            tickets: vec![TicketRecord {
                id: TicketId::new(),
                section: "Floor".into(),
                seat: None,
                price: 5000,
                cancelled: false,
            }],
            payment: Some(Box::new(Payment {
                provider: "test".into(),
                reference: format!("pi_{}", Uuid::now_v7().simple()),
                amount: 5000,
                currency: "JPY".into(),
                charge_key,
            })),
            retaken: false,
            at,
        },
    }
}

/// Appends every record and waits until each is committed.
async fn write_all(journal: &PgJournal, records: impl Iterator<Item = Record>) {
    let mut answers = Vec::new();
    for record in records {
        let (tx, rx) = tokio::sync::oneshot::channel();
        journal.append(record, Ack::new(move |r| drop(tx.send(r))));
        answers.push(rx);
    }
    for answer in answers {
        answer.await.expect("the journal answers").expect("the batch commits");
    }
}

/// The journal's updates (a hold's status, the charge a payment completes) find
/// each row by its key, with plans cached in the writer's session: planned while
/// the tables held a few rows, they still do not scan them once they hold many.
#[tokio::test]
async fn the_journal_s_updates_find_rows_by_key_however_the_tables_grew() {
    // One connection, for the migrations too: the journal's session, whose table
    // statistics are read below, and no other session's arriving late.
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&fresh_database().await).await.unwrap();
    boxoffice::store::db::migrator().run(&pool).await.unwrap();
    let (buyer, event) = buyer_and_published_event(&pool, "buyer@example.com", "Buyer").await;
    let config = JournalConfig { max_batch: 1024, max_wait: Duration::ZERO, writers: 1 };
    let (journal, _) = PgJournal::start(pool.clone(), config, None);
    let before = scans(&pool).await;

    // Eight rounds on nearly empty tables (plans are cached after five), then
    // 20,000 more holds and charges, then four rounds more.
    for round in 0..12 {
        if round == 8 {
            sqlx::query(
                "WITH h AS (SELECT gen_random_uuid() AS id FROM generate_series(1, 20000)),
                 held AS (INSERT INTO holds (hold_id, event_id, buyer_id, items, quantity, amount, status, fingerprint,
                                             created_at, expires_at, updated_at)
                          SELECT id, $1, $2, '{}', 1, 5000, 'active', 0, now(), now(), now() FROM h)
                 INSERT INTO charges (charge_key, provider, hold_id, event_id, buyer_id, payment_method, amount,
                                      currency, status, next_check_at)
                 SELECT id || ':pm_card_visa', 'test', id, $1, $2, 'pm_card_visa', 5000, 'JPY', 'started', now()
                 FROM h",
            )
            .bind(event)
            .bind(buyer)
            .execute(&pool)
            .await
            .unwrap();
        }
        let holds: Vec<HoldId> = (0..3).map(|_| HoldId::new()).collect();
        write_all(&journal, holds.iter().map(|hold| created(event, buyer, *hold, 1))).await;
        record_charges(&pool, event, buyer, &holds).await;
        let at = UnixMs::now();
        // The last hold's payment names no charge: its charge is found by reference.
        write_all(
            &journal,
            holds.iter().enumerate().map(|(i, hold)| paid(event, buyer, *hold, (i < 2).then(|| charge_key(*hold)), at)),
        )
        .await;
    }

    let after = scans(&pool).await;
    let sold: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM holds h JOIN charges c USING (hold_id)
         WHERE h.status = 'purchased' AND c.status = 'completed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(sold, 24, "every hold purchased, and the charges named by key completed");
    for (table, (seq_before, idx_before), (seq_after, idx_after)) in
        [("holds", before.0, after.0), ("charges", before.1, after.1)]
    {
        assert_eq!(seq_after, seq_before, "sequential scans of {table}");
        assert!(idx_after > idx_before, "{table} read through an index: {idx_before} → {idx_after}");
    }
}

/// (sequential scans, index scans) of holds and of charges so far, this pool's
/// one session's included.
async fn scans(pool: &sqlx::PgPool) -> ((i64, i64), (i64, i64)) {
    // Stats are sent when a session goes idle, at most once a second unless forced.
    sqlx::query("SELECT pg_stat_force_next_flush()").execute(pool).await.unwrap();
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT relname::text, seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables
         WHERE relname IN ('holds', 'charges') ORDER BY relname DESC",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    ((rows[0].1, rows[0].2), (rows[1].1, rows[1].2))
}
