//! SQL injection strings in search parameters, path ids and stored fields are inert.

use super::{assert_none, json_of};
use boxoffice_testkit::{problem, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const INJECTIONS: &[&str] = &[
    "' OR '1'='1",
    "'; DROP TABLE users; --",
    "\" OR 1=1 --",
    "1) OR (1=1",
    "%' OR 1=1 --",
    "' UNION SELECT password_hash, null FROM users --",
    "$1",
    "$$; DROP TABLE events; $$",
    "\\'; DELETE FROM tickets; --",
    "e.event_id",
    "relevance; DROP TABLE events",
    "date, (SELECT pg_sleep(5))",
];

/// Injection strings in every search parameter, in path ids and in stored fields are
/// inert: 4xx or literal data, never a wider result, never a changed schema.
#[tokio::test]
async fn sql_injection_strings_are_inert() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let event = app.published_event(&org, None, None).await;
    let all: Value = json_of(app.get("/events/search", None).await).await;
    assert_eq!(all["total"], 1);
    let mut violations = Vec::new();
    let started = Instant::now();
    for inj in INJECTIONS {
        for param in ["q", "category", "sort", "from", "to", "max_price", "min_price", "available", "page", "per_page"]
        {
            let r = app.client.get(format!("{}/events/search", app.base)).query(&[(param, inj)]).send().await.unwrap();
            match r.status() {
                StatusCode::OK => {
                    let body: Value = r.json().await.unwrap();
                    if body["total"].as_i64().unwrap_or(99) > 0 && param != "q" {
                        violations.push(format!("search {param}={inj:?} matched events: {body}"));
                    }
                }
                s if s.is_client_error() => {
                    if let Err(e) = problem(r, &[s], None).await {
                        violations.push(format!("search {param}={inj:?}: {e}"));
                    }
                }
                s => violations.push(format!("search {param}={inj:?}: {s}")),
            }
        }
        let encoded: String = url_encode(inj);
        for (method, path) in [
            (Method::GET, format!("/events/{encoded}/details")),
            (Method::GET, format!("/holds/{encoded}")),
            (Method::GET, format!("/tickets/{encoded}/qr")),
            (Method::GET, format!("/tickets/user/{encoded}")),
            (Method::DELETE, format!("/events/{event}/staff/{encoded}")),
            (Method::POST, format!("/tickets/{encoded}/validate")),
        ] {
            let r = app.request(method, &path, Some(&org), Some(json!({"qr": inj}))).await;
            if let Err(e) = problem(r, &[StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND], None).await {
                violations.push(format!("path {path}: {e}"));
            }
        }
        let r = app.post("/auth/login", None, json!({"email": format!("{inj}@example.com"), "password": inj})).await;
        if let Err(e) = problem(r, &[StatusCode::UNAUTHORIZED, StatusCode::UNPROCESSABLE_ENTITY], None).await {
            violations.push(format!("login with {inj:?}: {e}"));
        }
    }
    assert!(started.elapsed() < Duration::from_secs(60), "pg_sleep ran? {:?}", started.elapsed());
    // Stored verbatim, returned verbatim.
    let title = INJECTIONS[1];
    let created = json_of(
        app.post(
            "/events/create",
            Some(&org),
            json!({"title": title, "venue_name": INJECTIONS[0], "category": INJECTIONS[2],
                   "event_date": "2031-01-01T19:00:00Z", "total_seats": 5, "base_price": 100}),
        )
        .await,
    )
    .await;
    assert_eq!((created["title"].as_str(), created["venue_name"].as_str()), (Some(title), Some(INJECTIONS[0])));
    let r = app
        .post(
            "/auth/register",
            None,
            json!({"email": "bobby@example.com", "password": INJECTIONS[5], "name": INJECTIONS[5]}),
        )
        .await;
    assert_eq!(json_of(r).await["user"]["name"], INJECTIONS[5]);
    assert_none(&violations, "injection strings");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.unwrap();
    assert_eq!((users, events), (2, 2), "tables intact, nothing extra written");
    app.stop().await;
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
