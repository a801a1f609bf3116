//! Oversized bodies get 413 as a problem document, announced or chunked, and write nothing.

use super::raw::raw_post;
use super::{assert_none, assert_unchanged, snapshot};
use boxoffice_testkit::{fresh_database, spawn_app_on};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Bodies over MAX_BODY_BYTES get 413 as a problem document — whether the client
/// announces the length or streams the body chunked, on JSON routes and on the
/// routes that read raw bytes — and nothing is written.
#[tokio::test]
async fn oversized_bodies_get_413_problem_json() {
    let app = spawn_app_on(fresh_database().await, &[("MAX_BODY_BYTES", "2048")]).await;
    let (_, org, _) = app.user("organizer").await;
    let before = snapshot(&app.db).await;
    let big_name = "x".repeat(4096);
    let register = json!({"email": "big@example.com", "password": "long enough", "name": big_name}).to_string();
    let rows: Vec<Value> = (0..200).map(|i| json!({"label": format!("R{i}"), "seats": 10})).collect();
    let map = json!({"tiers": [{"code": "S", "price": 1}],
                     "sections": [{"name": "F", "tier": "S", "kind": "seated", "rows": rows}]});
    let event =
        json!({"title": "Big", "venue_name": "V", "event_date": "2031-01-01T19:00:00Z", "seat_map": map}).to_string();
    let refresh = json!({"refresh_token": "y".repeat(4096)}).to_string();
    let mut violations = Vec::new();
    for (path, body, token) in [
        ("/auth/register", &register, None),
        ("/events/create", &event, Some(org.as_str())),
        ("/auth/refresh", &refresh, None),
        ("/auth/logout", &refresh, None),
        ("/payments/stripe/webhook", &refresh, None),
    ] {
        for chunked in [false, true] {
            let how = if chunked { "chunked" } else { "with Content-Length" };
            let answer = raw_post(&app, path, token, body, chunked).await;
            if let Err(e) = answer.problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large") {
                violations.push(format!("POST {path} {how}: {e}"));
            }
        }
    }
    let after = snapshot(&app.db).await;
    assert_none(&violations, "oversized bodies");
    assert_unchanged(&before, &after);
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    app.stop().await;
}
