//! Money through a `kill -9`: a charge whose sale was not yet written, and an event
//! cancellation (1,000 tickets, 100 holds) killed halfway. After a restart the reconciler
//! finishes both: tickets or a refund for every charge, never both, never neither; every
//! ticket cancelled and refunded exactly once; and `boxoffice reconcile` exits 0.

use super::client::{User, create_event, create_users, general_map, http_client};
use crate::{BOXOFFICE, Rig};
use boxoffice::auth::Role;
use boxoffice_testkit::{eventually, poll};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use std::time::{Duration, Instant};
use uuid::Uuid;

const FAST_RECONCILER: [(&str, &str); 2] = [("RECONCILE_INTERVAL_MS", "200"), ("CHARGE_GRACE_MS", "500")];

/// Runs `boxoffice reconcile` against `db_url`; its exit code and output.
fn reconcile(db_url: &str, event: Option<&str>) -> (i32, String) {
    let mut cmd = std::process::Command::new(BOXOFFICE);
    cmd.arg("reconcile").env_clear().env("DATABASE_URL", db_url).env("RUST_LOG", "warn");
    if let Some(e) = event {
        cmd.args(["--event", e]);
    }
    let out = cmd.output().expect("run boxoffice reconcile");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

async fn count(db: &PgPool, sql: &'static str, id: Uuid) -> i64 {
    sqlx::query_scalar(sql).bind(id).fetch_one(db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_charge_killed_before_its_sale_was_written_ends_as_tickets() {
    let Rig { serial: _serial, dir: _dir, db_url, db, spec } = Rig::new("money-kill", &FAST_RECONCILER).await;
    let server = spec.start().await;
    let base = spec.base();
    let client = http_client(8);
    let organizer = create_users(&db, 1, Role::Organizer).await.remove(0);
    let buyer = create_users(&db, 1, Role::Customer).await.remove(0);
    let event = create_event(&client, &base, &organizer, general_map(100), json!({})).await;
    let r = client
        .post(format!("{base}/events/{event}/holds"))
        .bearer_auth(&buyer.token)
        .json(&json!({"quantity": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let hold: Uuid = r.json::<Value>().await.unwrap()["hold_id"].as_str().unwrap().parse().unwrap();

    // The journal cannot write tickets: the charge goes through, the sale waits.
    let mut locker = PgConnection::connect(&db_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE tickets IN ACCESS EXCLUSIVE MODE").execute(&mut locker).await.unwrap();
    let paying = {
        let (client, token) = (client.clone(), buyer.token.clone());
        let url = format!("{base}/holds/{hold}/purchase");
        tokio::spawn(async move {
            client.post(url).bearer_auth(token).json(&json!({"payment_method": "pm_card_visa"})).send().await
        })
    };
    let charged = || async {
        let n = count(&db, "SELECT count(*) FROM charges WHERE hold_id = $1 AND status = 'charged'", hold).await;
        if n == 1 { Ok(()) } else { Err(()) }
    };
    poll(Duration::from_secs(15), Duration::from_millis(20), charged).await.expect("the card is charged");
    // The sale's journal call is parked behind the lock; the process dies, and the
    // call with it. (A call already sent outlives its client: PostgreSQL would
    // finish and commit it once the lock is free, and the sale would be in. Ending
    // it stands for the crash coming before the call went out.)
    let parked = || async {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_locks WHERE NOT granted AND relation = 'tickets'::regclass AND pid <> pg_backend_pid()",
        )
        .fetch_all(&db)
        .await
        .unwrap();
        if pids.is_empty() { Err(()) } else { Ok(pids) }
    };
    let pids = poll(Duration::from_secs(15), Duration::from_millis(20), parked).await.expect("the sale waits");
    server.sigkill();
    let _ = paying.await;
    for pid in pids {
        // Waits until the backend is gone, so it cannot take the lock first.
        let ended: bool =
            sqlx::query_scalar("SELECT pg_terminate_backend($1, 10000)").bind(pid).fetch_one(&db).await.unwrap();
        assert!(ended, "the parked call ended");
    }
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM tickets WHERE hold_id = $1", hold).await, 0, "killed before the sale");

    let started = Instant::now();
    let server = spec.start().await;
    eventually("the restarted server issues the tickets", Duration::from_secs(30), || async {
        count(&db, "SELECT count(*) FROM tickets WHERE hold_id = $1", hold).await == 3
    })
    .await;
    println!("charge killed before its sale: tickets issued {:?} after the restart", started.elapsed());
    eventually("the charge is completed", Duration::from_secs(10), || async {
        count(&db, "SELECT count(*) FROM charges WHERE hold_id = $1 AND status = 'completed'", hold).await == 1
    })
    .await;
    assert_eq!(count(&db, "SELECT count(*) FROM refunds WHERE hold_id = $1", hold).await, 0, "never both");
    let (code, out) = reconcile(&db_url, None);
    assert_eq!(code, 0, "boxoffice reconcile:\n{out}");
    assert!(out.contains(&event) && out.trim_end().ends_with("clean"), "{out}");
    // A refund recorded as made that is not: the check no longer adds up.
    sqlx::query("DELETE FROM tickets WHERE hold_id = $1 AND ticket_id = (SELECT ticket_id FROM tickets WHERE hold_id = $1 ORDER BY ticket_id LIMIT 1)")
        .bind(hold)
        .execute(&db)
        .await
        .unwrap();
    let (code, out) = reconcile(&db_url, Some(&event));
    assert_eq!(code, 1, "a ticket gone missing is an unexplained difference:\n{out}");
    assert!(out.contains("NOT CLEAN"), "{out}");
    spec.assert_no_panic_in_log();
    drop(server);
}

const ORDERS: usize = 250;
const TICKETS_PER_ORDER: usize = 4;
const HOLDS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_an_event_killed_halfway_cancels_and_refunds_every_ticket_once() {
    let Rig { serial: _serial, dir: _dir, db_url, db, spec } =
        Rig::new("money-cancel", &[FAST_RECONCILER[0], ("EVENT_MAX_IN_FLIGHT", "10000")]).await;
    let server = spec.start().await;
    let base = spec.base();
    let client = http_client(64);
    let organizer = create_users(&db, 1, Role::Organizer).await.remove(0);
    let buyers = create_users(&db, ORDERS + HOLDS, Role::Customer).await;
    let event = create_event(
        &client,
        &base,
        &organizer,
        general_map(ORDERS * TICKETS_PER_ORDER + HOLDS + 50),
        json!({"hold_ttl_secs": 3600}),
    )
    .await;
    let event_id: Uuid = event.parse().unwrap();

    // 1,000 tickets in 250 orders, and 100 active holds.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, buyer) in buyers.iter().cloned().enumerate() {
        let (client, base, event) = (client.clone(), base.clone(), event.clone());
        tasks.spawn(async move { buy_or_hold(&client, &base, &event, &buyer, i < ORDERS).await });
        if tasks.len() >= 32 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert_eq!(
        count(&db, "SELECT count(*) FROM tickets WHERE event_id = $1 AND status = 'valid'", event_id).await,
        (ORDERS * TICKETS_PER_ORDER) as i64
    );

    // Refunds cannot be written while the cancellation runs: it is cut off before
    // recording them, whatever it got done by then.
    let mut locker = PgConnection::connect(&db_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE refunds IN EXCLUSIVE MODE").execute(&mut locker).await.unwrap();
    let cancelling = {
        let (client, token) = (client.clone(), organizer.token.clone());
        let url = format!("{base}/events/{event}/cancel");
        tokio::spawn(
            async move { client.post(url).bearer_auth(token).json(&json!({"reason": "Power cut"})).send().await },
        )
    };
    let some_cancelled = || async {
        let n = count(&db, "SELECT count(*) FROM tickets WHERE event_id = $1 AND status = 'cancelled'", event_id).await;
        if n > 0 { Ok(n) } else { Err(n) }
    };
    poll(Duration::from_secs(20), Duration::from_millis(5), some_cancelled).await.expect("the cancellation starts");
    server.sigkill();
    let _ = cancelling.await;
    let at_kill =
        count(&db, "SELECT count(*) FROM tickets WHERE event_id = $1 AND status = 'cancelled'", event_id).await;
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM refunds WHERE event_id = $1", event_id).await, 0);
    println!("event cancellation killed with {at_kill} of 1000 tickets cancelled and no refund recorded");

    let started = Instant::now();
    let server = spec.start().await;
    eventually("the cancellation completes after the restart", Duration::from_secs(60), || async {
        count(
            &db,
            "SELECT count(*) FROM event_cancellations WHERE event_id = $1 AND completed_at IS NOT NULL",
            event_id,
        )
        .await
            == 1
    })
    .await;
    eventually("every refund succeeds", Duration::from_secs(60), || async {
        count(&db, "SELECT count(*) FROM refunds WHERE event_id = $1 AND status = 'succeeded'", event_id).await
            == (ORDERS * TICKETS_PER_ORDER) as i64
    })
    .await;
    println!("event cancellation resumed and finished {:?} after the restart", started.elapsed());
    let (valid, active, refunds, refunded_tickets): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tickets WHERE event_id = $1 AND status = 'valid'),
                (SELECT count(*) FROM holds WHERE event_id = $1 AND status = 'active'),
                (SELECT count(*) FROM refunds WHERE event_id = $1),
                (SELECT count(DISTINCT ticket_id) FROM refunds WHERE event_id = $1)",
    )
    .bind(event_id)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((valid, active), (0, 0), "every ticket cancelled, every hold released");
    assert_eq!((refunds, refunded_tickets), (1000, 1000), "one refund per ticket");
    let progress: Value = client
        .get(format!("{base}/events/{event}/cancellation"))
        .bearer_auth(&organizer.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(progress["status"], "completed", "{progress}");
    assert_eq!(progress["refunds"]["succeeded"], 1000);
    let (code, out) = reconcile(&db_url, Some(&event));
    assert_eq!(code, 0, "boxoffice reconcile:\n{out}");
    spec.assert_no_panic_in_log();
    drop(server);
}

async fn buy_or_hold(client: &reqwest::Client, base: &str, event: &str, buyer: &User, buy: bool) {
    let r = if buy {
        client
            .post(format!("{base}/tickets/purchase"))
            .bearer_auth(&buyer.token)
            .json(&json!({"event_id": event, "quantity": TICKETS_PER_ORDER, "payment_method": "pm_card_visa",
                          "include_qr_image": false}))
            .send()
            .await
    } else {
        client
            .post(format!("{base}/events/{event}/holds"))
            .bearer_auth(&buyer.token)
            .json(&json!({"quantity": 1}))
            .send()
            .await
    };
    let r = r.expect("request sent");
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap_or_default());
}
