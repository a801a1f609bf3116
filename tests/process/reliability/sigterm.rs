//! SIGTERM under load: in-flight work finishes, the process exits 0, later requests are
//! refused at connect (never a 5xx), and every 2xx is durable.

use super::CLIENT_TIMEOUT;
use super::checks::{assert_counts_match, assert_no_seat_twice, assert_sales_durable};
use super::client::{
    Reply, Sale, create_event, create_users, http_client, purchase, seated_map, send, wait_until_sold,
};
use super::figures::status_breakdown;
use crate::Rig;
use boxoffice::auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_work() {
    const BUYERS: usize = 100;
    const ROWS: usize = 20;
    const PER_ROW: usize = 20;
    /// How long a drained shutdown may take.
    const EXIT_BOUND: Duration = Duration::from_secs(20);
    let capacity = ROWS * PER_ROW;

    let Rig { serial: _serial, dir: _dir, db_url: _, db, spec } = Rig::new("sigterm", &[]).await;
    let mut server = spec.start().await;
    let base = spec.base();
    let client = http_client(BUYERS);
    let organizer = create_users(&db, 1, Role::Organizer).await.remove(0);
    let buyers = create_users(&db, BUYERS, Role::Customer).await;
    let event =
        create_event(&client, &base, &organizer, seated_map(ROWS, PER_ROW), json!({"per_buyer_limit": 10})).await;

    let sold = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = buyers
        .into_iter()
        .enumerate()
        .map(|(i, buyer)| {
            let (client, base, event, sold) = (client.clone(), base.clone(), event.clone(), Arc::clone(&sold));
            tokio::spawn(async move {
                let mut replies = Vec::new();
                for attempt in 0..200 {
                    let reply = send(purchase(&client, &base, &buyer, &event, &format!("t{i}-{attempt}"))).await;
                    let end = reply.status.is_none() || reply.code == "sold_out" || reply.code == "limit_exceeded";
                    if reply.is(StatusCode::CREATED) {
                        sold.fetch_add(1, Ordering::AcqRel);
                    }
                    replies.push(reply);
                    if end {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(rand::random_range(0..50))).await;
                }
                replies
            })
        })
        .collect();

    let threshold = capacity / 4 + rand::random_range(0..capacity / 4);
    wait_until_sold(&sold, threshold).await;
    tokio::time::sleep(Duration::from_millis(rand::random_range(0..200))).await;
    let term_at = Instant::now();
    let sold_at_term = sold.load(Ordering::Acquire);
    server.sigterm();
    let status = server
        .wait_exit(EXIT_BOUND)
        .await
        .unwrap_or_else(|| panic!("the server did not exit within {EXIT_BOUND:?} of SIGTERM"));
    let exited_after = term_at.elapsed();
    assert!(status.success(), "the server exited with {status}:\n{}", spec.log_tail());

    let mut replies = Vec::new();
    for t in tasks {
        replies.extend(
            tokio::time::timeout(CLIENT_TIMEOUT + Duration::from_secs(5), t).await.expect("buyers stop").unwrap(),
        );
    }
    // After shutdown: connection errors, not 5xx.
    let leftover = create_users(&db, 1, Role::Customer).await.remove(0);
    for n in 0..5 {
        let r = send(purchase(&client, &base, &leftover, &event, &format!("late-{n}"))).await;
        assert!(r.status.is_none() && r.connect_error, "after shutdown: {}", r.describe());
    }
    let all: Vec<&Reply> = replies.iter().collect();
    for r in &all {
        assert!(r.status.is_none_or(|s| !s.is_server_error()), "5xx around shutdown: {}", r.describe());
        assert!(!r.timed_out, "a request hung: {}", r.describe());
    }
    let answered_after_term: Vec<&Reply> =
        all.iter().copied().filter(|r| r.status.is_some() && r.started + r.latency >= term_at).collect();
    let created_after_term = answered_after_term.iter().filter(|r| r.is(StatusCode::CREATED)).count();

    // Restart: every 2xx is there.
    server = spec.start().await;
    let sales: Vec<Sale> = all.iter().filter(|r| r.is(StatusCode::CREATED)).map(|r| Sale::from_body(&r.body)).collect();
    assert_sales_durable(&db, &sales).await;
    assert_no_seat_twice(&db, &event).await;
    let counts = assert_counts_match(&client, &base, &db, &event).await;
    assert_eq!(counts.sold as usize, sales.len(), "sold seats are exactly the acknowledged sales");
    spec.assert_no_panic_in_log();

    println!(
        "sigterm: SIGTERM with {sold_at_term} seats sold; exit 0 after {exited_after:?}; {} answers finished after the \
         signal ({created_after_term} of them 201); {} sales acknowledged in all, all durable; {:?}",
        answered_after_term.len(),
        sales.len(),
        status_breakdown(&all)
    );
    drop(server);
}
