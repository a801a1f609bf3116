//! Overload: 2,000 concurrent clients on one event with a small in-flight limit; the excess
//! is shed with 503 `overloaded` + Retry-After, nothing hangs, and nothing is held twice.

use super::checks::{assert_counts_match, assert_holds_durable, assert_no_seat_twice, engine_counts};
use super::client::{Held, Reply, User, create_event, create_users, hold, http_client, seated_map, send};
use super::figures::{assert_clean_failures, latency_summary, status_breakdown};
use super::{CLIENT_TIMEOUT, HANG_BOUND};
use crate::Rig;
use boxoffice::auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const OVERLOAD_CLIENTS: usize = 2000;
const OVERLOAD_MAX_IN_FLIGHT: &str = "64";
const OVERLOAD_RUN: Duration = Duration::from_secs(5);
/// Requests per client at most (bounds the total).
const OVERLOAD_PER_CLIENT: usize = 200;

/// One client per buyer, all at once (ramped over ~0.5 s), each asking for one seat after
/// another until `OVERLOAD_RUN` is over, sold out or at its limit. Shed, a polite client
/// waits what Retry-After says (with jitter); an impatient one comes back in 10–50 ms.
async fn overload_phase(
    client: &reqwest::Client,
    base: &str,
    event: &str,
    buyers: &[User],
    polite: bool,
) -> Vec<Reply> {
    let deadline = Instant::now() + OVERLOAD_RUN;
    let mut tasks = Vec::with_capacity(buyers.len());
    for (i, buyer) in buyers.iter().enumerate() {
        let (client, base, event, buyer) = (client.clone(), base.to_owned(), event.to_owned(), buyer.clone());
        tasks.push(tokio::spawn(async move {
            let mut replies = Vec::new();
            for n in 0..OVERLOAD_PER_CLIENT {
                if Instant::now() >= deadline {
                    break;
                }
                let reply = send(hold(&client, &base, &buyer, &event, &format!("c{i}-{n}"))).await;
                let (status, code, after) = (reply.status, reply.code.clone(), reply.retry_after);
                replies.push(reply);
                match (status, code.as_str()) {
                    (Some(StatusCode::CONFLICT), "sold_out" | "limit_exceeded") => break,
                    (Some(StatusCode::SERVICE_UNAVAILABLE), _) | (None, _) => {
                        let pause = if polite {
                            Duration::from_secs(after.unwrap_or(1)).mul_f64(rand::random_range(0.5..1.5))
                        } else {
                            Duration::from_millis(rand::random_range(10..50))
                        };
                        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
                    }
                    _ => {}
                }
            }
            replies
        }));
        // Ramp up over ~0.5 s rather than 2,000 SYNs at once.
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let mut replies = Vec::new();
    for t in tasks {
        let bound = CLIENT_TIMEOUT + OVERLOAD_RUN + Duration::from_secs(10);
        replies.extend(tokio::time::timeout(bound, t).await.expect("clients stop").unwrap());
    }
    replies
}

/// Prints a phase's figures, then checks it: shed with 503 `overloaded` + Retry-After, no
/// 5xx but 503, no hang, no seat held twice, every 201 durable, counts agree.
async fn check_overload_phase(
    name: &str,
    replies: &[Reply],
    elapsed: Duration,
    ctx: (&reqwest::Client, &str, &PgPool, &str),
    capacity: usize,
) {
    let (client, base, db, event) = ctx;
    let all: Vec<&Reply> = replies.iter().collect();
    let shed: Vec<&Reply> =
        all.iter().copied().filter(|r| r.is(StatusCode::SERVICE_UNAVAILABLE) && r.code == "overloaded").collect();
    // Past admission control: all answers but the shed (a 503 `timeout` was admitted, and
    // then waited for its event too long).
    let admitted: Vec<&Reply> = all
        .iter()
        .copied()
        .filter(|r| r.status.is_some() && !(r.is(StatusCode::SERVICE_UNAVAILABLE) && r.code == "overloaded"))
        .collect();
    let created: Vec<Held> =
        all.iter().filter(|r| r.is(StatusCode::CREATED)).map(|r| Held::from_body(&r.body)).collect();
    let timeouts = all.iter().filter(|r| r.is(StatusCode::SERVICE_UNAVAILABLE) && r.code == "timeout").count();
    let breakdown = status_breakdown(&all);
    println!("  {name}: {} requests in {elapsed:?}: {breakdown:?}", all.len());
    println!(
        "    admitted: {} ({:.0}/s); holds created {} ({:.0}/s)",
        latency_summary(&admitted),
        admitted.len() as f64 / elapsed.as_secs_f64(),
        created.len(),
        created.len() as f64 / elapsed.as_secs_f64()
    );
    println!("    shed (503 overloaded): {}", latency_summary(&shed));

    assert_clean_failures(&all);
    assert!(!shed.is_empty(), "{name}: nothing was shed: {breakdown:?}");
    for r in &all {
        assert!(!r.timed_out && r.latency <= HANG_BOUND, "{name}: a request hung: {}", r.describe());
    }
    // Seats in acknowledged holds are all different, and all durable.
    let mut seats = HashSet::new();
    for h in &created {
        for s in &h.seats {
            assert!(seats.insert(s.clone()), "{name}: seat {s} held twice");
        }
    }
    assert!(seats.len() <= capacity, "{name}: oversold: {} seats held of {capacity}", seats.len());
    assert_holds_durable(db, &created).await;
    assert_no_seat_twice(db, event).await;
    let counts = assert_counts_match(client, base, db, event).await;
    // A hold answered 503 `timeout` may still have been made (the client learns it by
    // retrying with its Idempotency-Key); nothing else is held.
    let held = counts.held as usize;
    assert!(
        held >= created.len() && held <= created.len() + timeouts,
        "{name}: {held} seats held for {} acknowledged holds and {timeouts} timeouts",
        created.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_sheds_with_503_and_keeps_latency_bounded() {
    const ROWS: usize = 60;
    const PER_ROW: usize = 100;
    let capacity = ROWS * PER_ROW;

    let Rig { serial: _serial, dir: _dir, db_url: _, db, spec } =
        Rig::new("overload", &[("EVENT_MAX_IN_FLIGHT", OVERLOAD_MAX_IN_FLIGHT)]).await;
    let server = spec.start().await;
    let base = spec.base();
    let client = http_client(OVERLOAD_CLIENTS);
    let organizer = create_users(&db, 1, Role::Organizer).await.remove(0);
    let buyers = create_users(&db, OVERLOAD_CLIENTS, Role::Customer).await;
    // Three phases, each on an event of its own; per event, 2,000 buyers × 4 = 8,000 seats
    // wanted, 6,000 on sale. Cold: the first requests for the event are the rush (a sale
    // opening right after a deploy). Warm: one hold was made and released before.
    let phases = [
        ("cold, clients honouring Retry-After", false, true),
        ("warm, clients honouring Retry-After", true, true),
        ("warm, impatient clients (back in 10-50 ms)", true, false),
    ];
    let rss_before = server.peak_rss_kib();
    println!(
        "overload: {OVERLOAD_CLIENTS} clients on one event for {OVERLOAD_RUN:?}, \
         EVENT_MAX_IN_FLIGHT={OVERLOAD_MAX_IN_FLIGHT}, {capacity} seats"
    );
    let warmer = create_users(&db, 1, Role::Customer).await.remove(0);
    for (name, warm, polite) in phases {
        let map = seated_map(ROWS, PER_ROW);
        let event = create_event(&client, &base, &organizer, map, json!({"per_buyer_limit": 4})).await;
        engine_counts(&client, &base, &event).await.expect("event is on sale");
        if warm {
            let r = send(hold(&client, &base, &warmer, &event, "warm-up")).await;
            assert!(r.is(StatusCode::CREATED), "warm-up hold: {}", r.describe());
            let id = r.body["hold_id"].as_str().unwrap();
            let r = send(client.delete(format!("{base}/holds/{id}")).bearer_auth(&warmer.token)).await;
            assert!(r.is(StatusCode::OK), "warm-up release: {}", r.describe());
        }
        let started = Instant::now();
        let replies = overload_phase(&client, &base, &event, &buyers, polite).await;
        check_overload_phase(name, &replies, started.elapsed(), (&client, &base, &db, &event), capacity).await;
    }
    let peak_rss = server.peak_rss_kib();
    println!(
        "  server peak RSS (VmHWM): {} MiB (before the load: {} MiB)",
        peak_rss.unwrap_or(0) / 1024,
        rss_before.unwrap_or(0) / 1024
    );
    spec.assert_no_panic_in_log();
    drop(server);
}
