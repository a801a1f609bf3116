//! A stalled database (a lock, a hung query): the request timeout answers with a 503 problem
//! document and Retry-After, and the service carries on once the stall ends.

use super::checks::engine_counts;
use super::client::{create_event, create_users, general_map, http_client, send};
use crate::Rig;
use boxoffice::auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use std::time::Duration;

/// A request stuck behind a stalled database is cut off by REQUEST_TIMEOUT_MS (default
/// 10 s; 1 s here to keep the test short — same code path). The answer must still be a
/// problem document with Retry-After, like every other 503, and the service must carry on
/// once the stall ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_database_times_out_with_a_problem_document() {
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
    let Rig { serial: _serial, dir: _dir, db_url, db, spec } =
        Rig::new("stall", &[("REQUEST_TIMEOUT_MS", "1000")]).await;
    let server = spec.start().await;
    let base = spec.base();
    let client = http_client(8);
    let organizer = create_users(&db, 1, Role::Organizer).await.remove(0);
    let event = create_event(&client, &base, &organizer, general_map(100), json!({})).await;
    engine_counts(&client, &base, &event).await.expect("event is on sale");

    // Stall: every query on `events` waits behind this lock.
    let mut locker = PgConnection::connect(&db_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").execute(&mut locker).await.unwrap();
    let stalled = send(client.get(format!("{base}/events/{event}/details"))).await;
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let after = send(client.get(format!("{base}/events/{event}/details"))).await;
    println!("stalled database: {} / then {}", stalled.describe(), after.describe());

    assert!(stalled.latency < REQUEST_TIMEOUT + Duration::from_secs(2), "{}", stalled.describe());
    assert!(stalled.is(StatusCode::SERVICE_UNAVAILABLE), "{}", stalled.describe());
    assert!(stalled.problem_json, "the request timeout's 503 is not a problem document: {}", stalled.describe());
    assert!(stalled.retry_after.is_some(), "the request timeout's 503 has no Retry-After: {}", stalled.describe());
    assert!(after.is(StatusCode::OK), "{}", after.describe());
    spec.assert_no_panic_in_log();
    drop(server);
}
