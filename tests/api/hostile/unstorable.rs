//! Input PostgreSQL cannot store (NUL bytes, timestamps out of its range) is a 4xx, never a
//! 500, and writes nothing.

use super::{assert_none, assert_unchanged, snapshot};
use boxoffice_testkit::{problem, small_map, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// NUL bytes and timestamps outside PostgreSQL's range are bad input: a 4xx problem,
/// never a 500, and nothing written. (Found by scripts/fuzz_api.sh and the search
/// property test.)
#[tokio::test]
async fn nul_bytes_and_out_of_range_timestamps_are_4xx_not_500() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let event = app.published_event(&org, None, None).await;
    let before = snapshot(&app.db).await;
    let mut violations = Vec::new();
    let bad_input = [StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY];
    for query in [
        "q=a%00b",
        "category=a%00b",
        "from=-200000-01-01T00:00:00Z",
        "to=-4714-01-01T00:00:00Z",
        "from=%2B262143-12-31T23:59:59Z&to=-262143-01-01T00:00:00Z",
    ] {
        let r = app.get(&format!("/events/search?{query}"), None).await;
        if let Err(e) = problem(r, &bad_input, None).await {
            violations.push(format!("search ?{query}: {e}"));
        }
    }
    let general = |window: Value| {
        json!({"title": "T", "venue_name": "V", "event_date": "2031-01-01T19:00:00Z", "total_seats": 5,
               "base_price": 100, "sales_window": window})
    };
    for (what, body) in [
        ("opens_at in year -200000", general(json!({"opens_at": "-200000-01-01T00:00:00Z"}))),
        ("closes_at in 4714 BC", general(json!({"closes_at": "-4714-01-01T00:00:00Z"}))),
    ] {
        let r = app.post("/events/create", Some(&org), body).await;
        if let Err(e) = problem(r, &bad_input, None).await {
            violations.push(format!("create event, {what}: {e}"));
        }
    }
    for (path, body) in [
        (format!("/events/{event}/sales-window"), json!({"opens_at": "-200000-01-01T00:00:00Z"})),
        (format!("/events/{event}/update"), json!({"sales_window": {"closes_at": "-4714-01-01T00:00:00Z"}})),
    ] {
        let r = app.request(Method::PUT, &path, Some(&org), Some(body)).await;
        if let Err(e) = problem(r, &bad_input, None).await {
            violations.push(format!("PUT {path}: {e}"));
        }
    }
    // A NUL in a JSON string that would reach SQL: a 4xx problem, nothing stored.
    for (path, body, code) in [
        (format!("/events/{event}/staff"), json!({"email": "staff\u{0}@example.com"}), Some("not_staff")),
        (format!("/events/{event}/holds"), json!({"section": "Floor\u{0}", "quantity": 1}), None),
        ("/tickets/purchase".to_owned(), json!({"event_id": event, "quantity": 1, "payment_method": "pm\u{0}"}), None),
        (
            "/auth/register".to_owned(),
            json!({"email": "x@example.com", "password": "p4ssw0rd!!", "name": "a\u{0}"}),
            None,
        ),
    ] {
        let r = app.post(&path, Some(&org), body).await;
        if let Err(e) = problem(r, &bad_input, code).await {
            violations.push(format!("POST {path} with a NUL: {e}"));
        }
    }
    assert_unchanged(&before, &snapshot(&app.db).await);

    // Seat maps with a NUL in a member the map does not define: refused, or stored
    // without it — never a 500.
    let mut map_with_nul = small_map();
    map_with_nul["note"] = json!("\u{0}");
    let mut row_with_nul = small_map();
    row_with_nul["sections"][0]["rows"][0]["note"] = json!("a\u{0}b");
    for (what, map) in [("top level", map_with_nul), ("in a row", row_with_nul)] {
        let body =
            json!({"title": "T", "venue_name": "V", "event_date": "2031-01-01T19:00:00Z", "seat_map": map.clone()});
        let r = app.post("/events/create", Some(&org), body).await;
        if r.status() == StatusCode::CREATED {
            let id = r.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_owned();
            let stored = app.get(&format!("/events/{id}/seatmap"), Some(&org)).await.text().await.unwrap();
            if stored.contains("note") {
                violations.push(format!("seat map, NUL {what}: stored with the unknown member: {stored:.200}"));
            }
        } else if let Err(e) = problem(r, &bad_input, None).await {
            violations.push(format!("seat map, NUL {what}: {e}"));
        }
        let r = app.request(Method::PUT, &format!("/events/{event}/seatmap"), Some(&org), Some(map)).await;
        if r.status() != StatusCode::OK
            && let Err(e) = problem(r, &bad_input, None).await
        {
            violations.push(format!("PUT seatmap, NUL {what}: {e}"));
        }
    }
    assert_none(&violations, "NUL bytes and out-of-range timestamps");
    app.stop().await;
}
