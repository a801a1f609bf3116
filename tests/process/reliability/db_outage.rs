//! A PostgreSQL outage under traffic: requests fail fast with a well-formed 503, nothing
//! acknowledged is lost, and the service recovers by itself once the database is back.

use super::checks::{assert_counts_match, assert_holds_durable, assert_sales_durable};
use super::client::{Held, Reply, Sale, create_event, create_users, general_map, hold, http_client, purchase, send};
use super::figures::{assert_clean_failures, latency_summary, status_breakdown};
use super::{CLIENT_TIMEOUT, HANG_BOUND};
use crate::{SERIAL, server_on};
use boxoffice::auth::Role;
use boxoffice_testkit::{PrivatePostgres, TempDir, poll};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Purchase,
    Hold,
    Details,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_fails_fast_and_recovers() {
    const WORKERS: usize = 24;
    const READERS: usize = 4;
    const BUYERS: usize = 1000;
    const STEADY: Duration = Duration::from_secs(3);
    const OUTAGE: Duration = Duration::from_secs(5);
    /// How long after PostgreSQL is back the service must be selling again.
    const RECOVERY_BOUND: Duration = Duration::from_secs(15);
    let _serial = SERIAL.lock().await;

    let dir = TempDir::new("db-outage");
    let mut pg = PrivatePostgres::start(&dir.path().join("pg")).await;
    // Default timeouts (EVENT_CALL_TIMEOUT_MS 5 s, pool acquire 2 s): the figures printed are
    // what production would see.
    let spec = server_on(pg.url(), dir.path(), &[]);
    let server = spec.start().await;
    let base = spec.base();
    let client = http_client(WORKERS * 2);
    let (organizer, buyers) = {
        let db = PgPool::connect(pg.url()).await.unwrap();
        let organizer = create_users(&db, 1, Role::Organizer).await.remove(0);
        let buyers = create_users(&db, BUYERS, Role::Customer).await;
        db.close().await;
        (organizer, Arc::new(buyers))
    };
    let event = create_event(&client, &base, &organizer, general_map(100_000), json!({"per_buyer_limit": 50})).await;

    let stop = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<(Op, Reply)>>> = Arc::default();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (client, base, event, buyers) = (client.clone(), base.clone(), event.clone(), Arc::clone(&buyers));
            let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
            tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Acquire) {
                    let buyer = &buyers[rand::random_range(0..buyers.len())];
                    let key = format!("w{w}-{n}");
                    let op = match n % 5 {
                        0 | 1 => Op::Purchase,
                        2 | 3 => Op::Hold,
                        _ => Op::Details,
                    };
                    let request = match op {
                        Op::Purchase => purchase(&client, &base, buyer, &event, &key),
                        Op::Hold => hold(&client, &base, buyer, &event, &key),
                        Op::Details => client.get(format!("{base}/events/{event}/details")),
                    };
                    let reply = send(request).await;
                    samples.lock().unwrap().push((op, reply));
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(rand::random_range(50..100))).await;
                }
            })
        })
        .collect();

    // Readers: back-to-back reads that go to PostgreSQL directly (GET /events/{id}/details),
    // so some query is always in flight when the database goes away or comes back.
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (client, base, event) = (client.clone(), base.clone(), event.clone());
            let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
            tokio::spawn(async move {
                while !stop.load(Ordering::Acquire) {
                    let reply = send(client.get(format!("{base}/events/{event}/details"))).await;
                    samples.lock().unwrap().push((Op::Details, reply));
                    tokio::time::sleep(Duration::from_millis(rand::random_range(0..10))).await;
                }
            })
        })
        .collect();

    // Traffic before the outage: a window, not a wait.
    tokio::time::sleep(STEADY).await;
    let outage_start = Instant::now();
    // The database goes away with queries in flight: a lock first parks the readers' queries
    // (and the journal's writes), then a fast shutdown terminates them.
    let watcher = PgPool::connect(pg.url()).await.unwrap();
    let mut locker = PgConnection::connect(pg.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").execute(&mut locker).await.unwrap();
    let parked = || async {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'events'::regclass")
                .fetch_one(&watcher)
                .await
                .unwrap();
        if waiting >= READERS as i64 { Ok(()) } else { Err(waiting) }
    };
    poll(Duration::from_secs(10), Duration::from_millis(10), parked)
        .await
        .unwrap_or_else(|waiting| panic!("the lock parked {waiting} queries, not every reader's"));
    watcher.close().await;
    pg.stop().await;
    drop(locker);
    let stopped_in = outage_start.elapsed();
    tokio::time::sleep(OUTAGE).await;
    pg.restart().await;
    let outage_end = Instant::now();

    // Recovered: a purchase and a hold that started after PostgreSQL came back succeeded.
    let recovered = || async {
        let samples = samples.lock().unwrap();
        let ok = |op: Op| {
            samples
                .iter()
                .filter(|(o, r)| *o == op && r.started >= outage_end && r.is(StatusCode::CREATED))
                .map(|(_, r)| r.started + r.latency)
                .min()
        };
        ok(Op::Purchase).zip(ok(Op::Hold)).map(|(a, b)| a.max(b) - outage_end).ok_or(())
    };
    let recovered_after = poll(RECOVERY_BOUND, Duration::from_millis(100), recovered).await.unwrap_or_else(|()| {
        panic!("no purchase and hold succeeded within {RECOVERY_BOUND:?} after PostgreSQL came back")
    });
    // Some steady traffic after recovery (a window, not a wait), then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Release);
    for w in workers.into_iter().chain(readers) {
        tokio::time::timeout(CLIENT_TIMEOUT + Duration::from_secs(5), w).await.expect("workers stop").unwrap();
    }
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let all: Vec<&Reply> = samples.iter().map(|(_, r)| r).collect();

    let slowest = all.iter().map(|r| r.latency).max().unwrap_or_default();
    let phase = |from: Option<Instant>, to: Option<Instant>| -> Vec<&Reply> {
        all.iter()
            .copied()
            .filter(|r| from.is_none_or(|f| r.started >= f) && to.is_none_or(|t| r.started < t))
            .collect()
    };
    let (before, during, after) =
        (phase(None, Some(outage_start)), phase(Some(outage_start), Some(outage_end)), phase(Some(outage_end), None));
    let during_503: Vec<&Reply> = during.iter().copied().filter(|r| r.is(StatusCode::SERVICE_UNAVAILABLE)).collect();
    let sales: Vec<Sale> = samples
        .iter()
        .filter(|(op, r)| *op == Op::Purchase && r.is(StatusCode::CREATED))
        .map(|(_, r)| Sale::from_body(&r.body))
        .collect();
    let holds: Vec<Held> = samples
        .iter()
        .filter(|(op, r)| *op == Op::Hold && r.is(StatusCode::CREATED))
        .map(|(_, r)| Held::from_body(&r.body))
        .collect();
    // Figures first, so that a failure still shows them.
    println!(
        "database outage: PostgreSQL stopped in {stopped_in:?} (after a lock parked the readers), down {:?} in all; {} requests \
         ({} purchases and {} holds acknowledged)",
        outage_end - outage_start,
        all.len(),
        sales.len(),
        holds.len()
    );
    println!("  before:  {} {:?}", latency_summary(&before), status_breakdown(&before));
    println!("  during:  {} {:?}", latency_summary(&during), status_breakdown(&during));
    for op in [Op::Purchase, Op::Hold, Op::Details] {
        let these: Vec<&Reply> = samples
            .iter()
            .filter(|(o, r)| *o == op && r.started >= outage_start && r.started < outage_end)
            .map(|(_, r)| r)
            .collect();
        println!("    {op:?}: {} {:?}", latency_summary(&these), status_breakdown(&these));
    }
    println!("    503 only: {}", latency_summary(&during_503));
    println!("  after:   {} {:?}", latency_summary(&after), status_breakdown(&after));
    println!(
        "  recovered (a purchase and a hold succeed) {recovered_after:?} after PostgreSQL was back; slowest request {slowest:?}"
    );

    // Failing fast and cleanly: no hang, no dropped connection, no 500, 503s well formed.
    for r in &all {
        assert!(r.status.is_some(), "the server dropped a request: {}", r.describe());
        assert!(r.latency <= HANG_BOUND, "a request hung: {}", r.describe());
    }
    assert_clean_failures(&all);
    assert!(!during_503.is_empty(), "the outage went unnoticed: {:?}", status_breakdown(&during));
    // Failing fast: once the database is known to be gone, a sale is refused at once
    // (503 `unavailable`, from the journal's breaker), not left to time out. Requests that
    // started in the first second after the stop may still have raced the breaker.
    let settled = outage_start + stopped_in + Duration::from_secs(1);
    let actor_replies: Vec<&Reply> = samples
        .iter()
        .filter(|(op, r)| *op != Op::Details && r.started >= settled && r.started < outage_end)
        .map(|(_, r)| r)
        .collect();
    let timed_out: Vec<String> = actor_replies.iter().filter(|r| r.code == "timeout").map(|r| r.describe()).collect();
    assert!(timed_out.is_empty(), "sales waited out the call timeout during the outage: {timed_out:?}");
    assert!(
        actor_replies.iter().any(|r| r.is(StatusCode::SERVICE_UNAVAILABLE) && r.code == "unavailable"),
        "no sale was refused with 503 unavailable during the outage: {:?}",
        status_breakdown(&actor_replies)
    );

    // Nothing acknowledged was lost.
    let db = PgPool::connect(pg.url()).await.unwrap();
    assert_sales_durable(&db, &sales).await;
    assert_holds_durable(&db, &holds).await;
    let counts = assert_counts_match(&client, &base, &db, &event).await;
    spec.assert_no_panic_in_log();
    println!("  final counts {counts:?}");
    db.close().await;
    drop(server);
    pg.stop().await;
}
