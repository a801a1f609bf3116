//! The journal's group-commit path into PostgreSQL: records per second made
//! durable by `PgJournal`, with many appends in flight as under a flash sale.
//!
//! Needs PostgreSQL: `BOXOFFICE_BENCH_DATABASE_URL` (an admin URL; a fresh
//! database is created), or, when unset, an embedded cluster started under a
//! temporary directory (fsync on, as in production).
//! Run: `cargo bench -p boxoffice-benches --bench journal`.

use boxoffice::store::embedded_pg::EmbeddedPostgres;
use boxoffice::store::journal::{JournalConfig, PgJournal};
use boxoffice::store::leases::Leases;
use boxoffice_actors::journal::{Ack, Journal};
use boxoffice_actors::{BuyerId, Change, EventId, HoldId, HoldRecord, HoldStatus, Items, Record, UnixMs};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Appends in flight at once (the actors' pipelining).
const IN_FLIGHT: u64 = 4_096;

struct Db {
    pool: PgPool,
    event: Uuid,
    buyer: Uuid,
    _embedded: Option<EmbeddedPostgres>,
}

async fn database() -> Db {
    let (url, embedded) = match std::env::var("BOXOFFICE_BENCH_DATABASE_URL") {
        Ok(admin) => {
            let name = format!("bench_{}", Uuid::new_v4().simple());
            let pool = PgPool::connect(&admin).await.expect("connect");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&pool)
                .await
                .expect("create db");
            let (base, _) = admin.rsplit_once('/').expect("URL with a path");
            (format!("{base}/{name}"), None)
        }
        Err(_) => {
            let dir = std::env::temp_dir().join(format!("boxoffice-bench-{}", Uuid::new_v4().simple()));
            let pg = EmbeddedPostgres::start(&dir).await.expect("embedded PostgreSQL");
            (pg.url(), Some(pg))
        }
    };
    let pool = PgPool::connect(&url).await.expect("connect");
    boxoffice::store::db::migrator().run(&pool).await.expect("migrate");
    let (event, buyer) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query("INSERT INTO users (user_id, email, password_hash, name, user_type) VALUES ($1, 'b@x.io', 'x', 'B', 'organizer')")
        .bind(buyer)
        .execute(&pool)
        .await
        .expect("user");
    sqlx::query("INSERT INTO events (event_id, organizer_id, title, venue_name, event_date, status) VALUES ($1, $2, 'Bench', 'Hall', now(), 'published')")
        .bind(event)
        .bind(buyer)
        .execute(&pool)
        .await
        .expect("event");
    Db { pool, event, buyer, _embedded: embedded }
}

fn hold_created(event: Uuid, epoch: i64, buyer: Uuid, n: u64) -> Record {
    Record {
        event: EventId(event),
        epoch,
        change: Change::HoldCreated {
            hold: HoldRecord {
                id: HoldId::new(),
                buyer: BuyerId(buyer),
                items: Arc::new(Items::Seats { seats: vec![format!("R{}-{}", n / 100, n % 100 + 1)].into() }),
                amount: 5000,
                created_at: UnixMs::now(),
                expires_at: UnixMs::now().plus_ms(600_000),
                status: HoldStatus::Active,
                idempotency_key: None,
                fingerprint: n,
                tickets: vec![],
            },
        },
    }
}

/// Appends `n` records with up to IN_FLIGHT outstanding and waits for every ack.
async fn append_all(journal: &PgJournal, db: &Db, epoch: i64, n: u64) -> Duration {
    let start = Instant::now();
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT as usize));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..n {
        let permit = Arc::clone(&permits).acquire_owned().await.expect("semaphore");
        let tx = done_tx.clone();
        journal.append(
            hold_created(db.event, epoch, db.buyer, i),
            Ack::new(move |result| {
                drop(permit);
                let _ = tx.send(result.is_ok());
            }),
        );
    }
    drop(done_tx);
    let mut ok = 0;
    while let Some(r) = done_rx.recv().await {
        ok += u64::from(r);
    }
    assert_eq!(ok, n, "every record committed");
    start.elapsed()
}

fn group_commit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let db = rt.block_on(database());
    let mut group = c.benchmark_group("journal/group commit to PostgreSQL");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    // As the server runs it: every transaction checks the event's lease (fencing),
    // and each record carries the epoch the lease was taken at, as an actor's do.
    let leases = Arc::new(Leases::new("bench".into(), Duration::from_secs(3600)));
    let epoch = rt.block_on(leases.acquire(&db.pool, db.event)).expect("the event's lease");
    for writers in [1, 2, 4] {
        let config = JournalConfig { writers, ..JournalConfig::default() };
        let journal = rt.block_on(async { PgJournal::start(db.pool.clone(), config, Some(Arc::clone(&leases))).0 });
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("hold records/s, {writers} writer(s)"), |b| {
            b.iter_custom(|iters| rt.block_on(append_all(&journal, &db, epoch, iters)))
        });
    }
    group.finish();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
