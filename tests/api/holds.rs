//! Holds: seats held and released, isolation between buyers, races for one seat, idempotency, expiry, restarts, bad requests.

use boxoffice_testkit::{assert_problem, poll, spawn_app, spawn_app_on};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn hold_view_release_and_isolation_between_buyers() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (alice_id, alice, _) = app.user("customer").await;
    let (_, bob, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;

    let r = app.post(&format!("/events/{id}/holds"), Some(&alice), json!({"quantity": 2})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let hold: Value = r.json().await.unwrap();
    assert_eq!(hold["seats"], json!(["A-5", "A-6"]), "best available: middle of the best row");
    assert_eq!(hold["amount"], 24000);
    assert_eq!(hold["currency"], "JPY");
    assert_eq!(hold["status"], "active");
    let hid = hold["hold_id"].as_str().unwrap().to_owned();
    let stored: (Uuid, String) = sqlx::query_as("SELECT buyer_id, status FROM holds WHERE hold_id = $1")
        .bind(hid.parse::<Uuid>().unwrap())
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, (alice_id, "active".to_owned()), "acknowledged hold is in PostgreSQL");

    // Bob can neither see nor release Alice's hold, and cannot tell it exists.
    assert_problem(app.get(&format!("/holds/{hid}"), Some(&bob)).await, StatusCode::NOT_FOUND, "not_found").await;
    let r = app.request(Method::DELETE, &format!("/holds/{hid}"), Some(&bob), None).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    assert_problem(
        app.get(&format!("/holds/{}", Uuid::new_v4()), Some(&bob)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(app.get(&format!("/holds/{hid}"), Some(&alice)).await.status(), StatusCode::OK);

    let r = app.request(Method::DELETE, &format!("/holds/{hid}"), Some(&alice), None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "released");
    let r = app.post(&format!("/events/{id}/holds"), Some(&bob), json!({"seats": ["A-5", "A-6"]})).await;
    assert_eq!(r.status(), StatusCode::CREATED, "released seats are on sale again");
    let status: String = sqlx::query_scalar("SELECT status FROM holds WHERE hold_id = $1")
        .bind(hid.parse::<Uuid>().unwrap())
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(status, "released");
}

#[tokio::test]
async fn racing_buyers_get_each_seat_exactly_once() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let id = app.published_event(&org, None, None).await;
    let mut buyers = Vec::new();
    for _ in 0..40 {
        buyers.push(app.user("customer").await.1);
    }
    // 40 buyers, one seat.
    let tasks: Vec<_> = buyers
        .iter()
        .map(|b| {
            let (client, url, b) = (app.client.clone(), format!("{}/events/{id}/holds", app.base), b.clone());
            tokio::spawn(async move {
                client.post(url).bearer_auth(b).json(&json!({"seats": ["B-7"]})).send().await.unwrap().status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 39);

    // 40 buyers, 20 standing places, 1 each.
    let tasks: Vec<_> = buyers
        .iter()
        .map(|b| {
            let (client, url, b) = (app.client.clone(), format!("{}/events/{id}/holds", app.base), b.clone());
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(b)
                    .json(&json!({"quantity": 1, "section": "Standing"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::CREATED {
            won += 1;
        }
    }
    assert_eq!(won, 20);
    let held: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(quantity), 0)::int8 FROM holds WHERE status = 'active' AND items->>'kind' = 'general'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(held, 20, "the database agrees: never more than capacity");
}

#[tokio::test]
async fn idempotency_key_returns_the_first_hold() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let send = |key: &str, qty: u32| {
        app.client
            .post(format!("{}/events/{id}/holds", app.base))
            .bearer_auth(&buyer)
            .header("Idempotency-Key", key)
            .json(&json!({"quantity": qty}))
            .send()
    };
    let first: Value = send("try-1", 2).await.unwrap().json().await.unwrap();
    let again: Value = send("try-1", 2).await.unwrap().json().await.unwrap();
    assert_eq!(first["hold_id"], again["hold_id"]);
    assert_problem(send("try-1", 3).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
    assert_problem(send("has space", 1).await.unwrap(), StatusCode::BAD_REQUEST, "invalid_idempotency_key").await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM holds").fetch_one(&app.db).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn holds_expire_and_seats_return() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let (_, other, _) = app.user("customer").await;
    let id = app.published_event(&org, None, Some(json!({"hold_ttl_secs": 5}))).await;
    let hold: Value =
        app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"seats": ["A-1"]})).await.json().await.unwrap();
    let hid = hold["hold_id"].as_str().unwrap().to_owned();
    let r = app.post(&format!("/events/{id}/holds"), Some(&other), json!({"seats": ["A-1"]})).await;
    assert_problem(r, StatusCode::CONFLICT, "seats_taken").await;

    let expired = || async {
        let v: Value = app.get(&format!("/holds/{hid}"), Some(&buyer)).await.json().await.unwrap();
        if v["status"] == "expired" { Ok(()) } else { Err(v) }
    };
    poll(Duration::from_secs(20), Duration::from_millis(250), expired)
        .await
        .unwrap_or_else(|v| panic!("hold never expired: {v}"));
    let r = app.post(&format!("/events/{id}/holds"), Some(&other), json!({"seats": ["A-1"]})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let topics: Vec<String> = sqlx::query_scalar("SELECT topic FROM outbox WHERE topic LIKE 'hold:%' ORDER BY id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(topics, ["hold:created", "hold:expired", "hold:created"]);
}

#[tokio::test]
async fn restart_keeps_every_acknowledged_hold() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let mut held = Vec::new();
    for seats in [json!(["A-1", "A-2"]), json!(["B-3"])] {
        let v: Value =
            app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"seats": seats})).await.json().await.unwrap();
        held.push(v["hold_id"].as_str().unwrap().to_owned());
    }
    app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"quantity": 3, "section": "Standing"})).await;
    let before: Value = app.get(&format!("/events/{id}/details"), None).await.json().await.unwrap();

    let db_url = app.stop().await;
    let app = spawn_app_on(db_url, &[]).await;
    let after: Value = app.get(&format!("/events/{id}/details"), None).await.json().await.unwrap();
    assert_eq!(before["availability"], after["availability"]);
    assert_eq!(after["availability"]["total"]["held"], 6);
    for hid in &held {
        let v: Value = app.get(&format!("/holds/{hid}"), Some(&buyer)).await.json().await.unwrap();
        assert_eq!(v["status"], "active");
    }
    let (_, other, _) = app.user("customer").await;
    let r = app.post(&format!("/events/{id}/holds"), Some(&other), json!({"seats": ["A-2"]})).await;
    assert_problem(r, StatusCode::CONFLICT, "seats_taken").await;
}

#[tokio::test]
async fn bad_hold_requests_are_clear_4xx_and_hold_nothing() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let url = format!("/events/{id}/holds");
    let cases = [
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_selection"),
        (json!({"seats": ["A-1"], "quantity": 1}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_selection"),
        (json!({"seats": []}), StatusCode::UNPROCESSABLE_ENTITY, "bad_quantity"),
        (json!({"quantity": 0}), StatusCode::UNPROCESSABLE_ENTITY, "bad_quantity"),
        (json!({"quantity": 51}), StatusCode::UNPROCESSABLE_ENTITY, "bad_quantity"),
        (json!({"quantity": -1}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (json!({"quantity": "two"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (json!({"seats": ["Z-99"]}), StatusCode::UNPROCESSABLE_ENTITY, "unknown_seat"),
        (json!({"seats": ["A-1", "A-1"]}), StatusCode::UNPROCESSABLE_ENTITY, "duplicate_seat"),
        (json!({"seats": ["x".repeat(10_000)]}), StatusCode::UNPROCESSABLE_ENTITY, "unknown_seat"),
        (json!({"quantity": 1, "section": "Balcony"}), StatusCode::UNPROCESSABLE_ENTITY, "unknown_section"),
        (json!({"quantity": 11}), StatusCode::CONFLICT, "limit_exceeded"),
        (json!({"quantity": 1, "hack": true}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let r = app.post(&url, Some(&buyer), body.clone()).await;
        assert_eq!(r.status(), status, "{body}");
        assert_problem(r, status, code).await;
    }
    assert_problem(app.post(&url, None, json!({"quantity": 1})).await, StatusCode::UNAUTHORIZED, "missing_token").await;
    assert_problem(
        app.post("/events/nope/holds", Some(&buyer), json!({"quantity": 1})).await,
        StatusCode::BAD_REQUEST,
        "invalid_path",
    )
    .await;
    let r = app.post(&format!("/events/{}/holds", Uuid::new_v4()), Some(&buyer), json!({"quantity": 1})).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM holds").fetch_one(&app.db).await.unwrap();
    assert_eq!(n, 0, "refused requests held nothing");
    let details: Value = app.get(&format!("/events/{id}/details"), None).await.json().await.unwrap();
    assert_eq!(details["availability"]["total"]["held"], 0);
}
