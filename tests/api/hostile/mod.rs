//! Hostile input and attacks: property tests on the parsers we own (seat maps, QR codes,
//! idempotency keys, search query strings) and security tests over HTTP (IDOR on every
//! id-bearing route, forged JWTs, refresh-token reuse, forged and replayed QR codes, SQL
//! injection, input PostgreSQL cannot store, oversized bodies, slow clients, login brute
//! force, routes that do not exist). Secrets in the logs are checked in `tests/process`, which
//! runs the server binary. This file: the vocabulary the attacks are written in.

mod bodies;
mod brute_force;
mod idor;
mod injection;
mod parsers;
mod qr;
mod raw;
mod refresh;
mod routes;
mod search;
mod slow_clients;
mod tokens;
mod unstorable;

use boxoffice_testkit::{TestApp, small_map};
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// Proptest settings that write nothing to the source tree.
fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, max_shrink_iters: 512, ..ProptestConfig::default() }
}

/// Panics listing every violation, so one run shows them all.
fn assert_none(violations: &[String], what: &str) {
    assert!(violations.is_empty(), "{what}: {} violation(s):\n  {}", violations.len(), violations.join("\n  "));
}

/// Everything a request could change, as text: compared before and after an attack.
async fn snapshot(db: &PgPool) -> Vec<(String, String)> {
    let tables = [
        (
            "events",
            "event_id, organizer_id, status, title, description, category, venue_name, venue_address, event_date,
             currency, seat_map::text, total_seats, min_price, max_price, opens_at, closes_at, per_buyer_limit,
             hold_ttl_secs, updated_at",
        ),
        ("holds", "*"),
        ("tickets", "*"),
        ("payments", "*"),
        ("refunds", "*"),
        ("check_ins", "*"),
        ("staff_assignments", "*"),
        ("users", "*"),
        ("refresh_tokens", "*"),
        // The relay may mark rows published; what matters is that no row was added.
        ("outbox", "id, topic, aggregate_id"),
    ];
    let mut out = Vec::new();
    for (table, columns) in tables {
        let sql = format!(
            "SELECT coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '') FROM (SELECT {columns} FROM {table}) r"
        );
        let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(db).await.expect("snapshot");
        out.push((table.to_owned(), rows));
    }
    out
}

fn assert_unchanged(before: &[(String, String)], after: &[(String, String)]) {
    for ((table, a), (_, b)) in before.iter().zip(after) {
        assert_eq!(a, b, "table {table} changed");
    }
}

async fn json_of(r: reqwest::Response) -> Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// A draft event (never published) of `organizer`.
async fn draft_event(app: &TestApp, organizer: &str) -> Uuid {
    let r = app
        .post(
            "/events/create",
            Some(organizer),
            json!({"title": "Draft", "venue_name": "Hall", "event_date": "2031-01-01T19:00:00Z", "seat_map": small_map()}),
        )
        .await;
    json_of(r).await["event_id"].as_str().unwrap().parse().unwrap()
}

/// Buys `seats` at `event` in one shot: (ticket ids, QR tokens).
async fn buy(app: &TestApp, buyer: &str, event: Uuid, seats: &[&str]) -> (Vec<String>, Vec<String>) {
    let r = app
        .post(
            "/tickets/purchase",
            Some(buyer),
            json!({"event_id": event, "seats": seats, "payment_method": "pm_card_visa", "include_qr_image": false}),
        )
        .await;
    let sale = json_of(r).await;
    let tickets = sale["tickets"].as_array().unwrap();
    (
        tickets.iter().map(|t| t["ticket_id"].as_str().unwrap().to_owned()).collect(),
        tickets.iter().map(|t| t["qr_token"].as_str().unwrap().to_owned()).collect(),
    )
}
