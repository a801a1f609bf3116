//! `ORGANIZER_SIGNUP`: who may sell — `open` (anyone signs up as an organizer and publishes),
//! `approval` (publishing waits for an administrator) and `closed` (only administrators make
//! organizers) — and the `/admin` endpoints behind it.

use boxoffice_testkit::{TestApp, assert_problem, fresh_database, small_map, spawn_app_on};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

async fn app_with(signup: &str) -> TestApp {
    spawn_app_on(fresh_database().await, &[("ORGANIZER_SIGNUP", signup)]).await
}

async fn draft(app: &TestApp, organizer: &str) -> Uuid {
    let r = app
        .post(
            "/events/create",
            Some(organizer),
            json!({"title": "Draft", "venue_name": "Hall", "event_date": "2031-01-01T19:00:00Z", "seat_map": small_map()}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "create event: {}", r.text().await.unwrap());
    r.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().parse().unwrap()
}

async fn publish(app: &TestApp, token: &str, event: Uuid) -> reqwest::Response {
    app.post(&format!("/events/{event}/publish"), Some(token), json!({})).await
}

async fn event_status(app: &TestApp, event: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM events WHERE event_id = $1").bind(event).fetch_one(&app.db).await.unwrap()
}

async fn approve(app: &TestApp, token: &str, user: Uuid) -> reqwest::Response {
    app.post(&format!("/admin/organizers/{user}/approve"), Some(token), json!({})).await
}

async fn set_role(app: &TestApp, token: &str, user: Uuid, body: Value) -> reqwest::Response {
    app.request(Method::PUT, &format!("/admin/users/{user}/role"), Some(token), Some(body)).await
}

#[tokio::test]
async fn open_signup_lets_a_new_organizer_publish_at_once() {
    let app = app_with("open").await;
    let (_, organizer, _) = app.user("organizer").await;
    let event = draft(&app, &organizer).await;
    assert_eq!(publish(&app, &organizer, event).await.status(), StatusCode::OK);
    assert_eq!(event_status(&app, event).await, "published");
    app.stop().await;
}

#[tokio::test]
async fn approval_signup_holds_publishing_until_an_admin_approves() {
    let app = app_with("approval").await;
    let (organizer_id, organizer, _) = app.user("organizer").await;
    let event = draft(&app, &organizer).await;
    let r = app.request(Method::PUT, &format!("/events/{event}/seatmap"), Some(&organizer), Some(small_map())).await;
    assert!(r.status().is_success(), "a waiting organizer edits drafts: {}", r.status());
    assert_problem(publish(&app, &organizer, event).await, StatusCode::FORBIDDEN, "organizer_not_approved").await;
    assert_eq!(event_status(&app, event).await, "draft");

    // Only administrators approve, and only organizers.
    let (customer_id, customer, _) = app.user("customer").await;
    for token in [&organizer, &customer] {
        assert_problem(approve(&app, token, organizer_id).await, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let (_, admin) = app.admin().await;
    assert_problem(approve(&app, &admin, customer_id).await, StatusCode::UNPROCESSABLE_ENTITY, "not_organizer").await;
    assert_problem(approve(&app, &admin, Uuid::new_v4()).await, StatusCode::NOT_FOUND, "not_found").await;
    let pending: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT approved_at FROM users WHERE user_id = $1")
            .bind(organizer_id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(pending, None, "refused approvals changed nothing");

    let r = approve(&app, &admin, organizer_id).await;
    assert_eq!(r.status(), StatusCode::OK);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["user_type"], "organizer");
    assert!(first["approved_at"].is_string(), "{first}");
    let again: Value = approve(&app, &admin, organizer_id).await.json().await.unwrap();
    assert_eq!(again["approved_at"], first["approved_at"], "approving twice keeps the first approval");

    // Approved: the same token publishes now.
    assert_eq!(publish(&app, &organizer, event).await.status(), StatusCode::OK);
    assert_eq!(event_status(&app, event).await, "published");

    // An administrator may publish a waiting organizer's event.
    let (_, waiting, _) = app.user("organizer").await;
    let other = draft(&app, &waiting).await;
    assert_eq!(publish(&app, &admin, other).await.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn closed_signup_leaves_the_organizer_role_to_admins() {
    let app = app_with("closed").await;
    let email = format!("seller-{}@example.com", Uuid::new_v4().simple());
    let r = app
        .post(
            "/auth/register",
            None,
            json!({"email": email, "password": "correct horse battery", "name": "S", "user_type": "organizer"}),
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "organizer_signup_closed").await;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.unwrap();
    assert_eq!(users, 0, "a refused sign-up creates nothing");

    // Customers and staff still sign up; a customer cannot sell.
    app.user("staff").await;
    let (customer_id, customer, refresh) = app.user("customer").await;
    let r = app
        .post(
            "/events/create",
            Some(&customer),
            json!({"title": "Mine", "venue_name": "Hall", "event_date": "2031-01-01T19:00:00Z"}),
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;

    // Only administrators set roles; bad input changes nothing.
    let (admin_id, admin) = app.admin().await;
    let organizer_role = json!({"role": "organizer"});
    assert_problem(
        set_role(&app, &customer, customer_id, organizer_role.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    for bad in [json!({"role": "owner"}), json!({"role": "organizer", "approved": true}), json!({})] {
        assert_problem(
            set_role(&app, &admin, customer_id, bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        )
        .await;
    }
    assert_problem(
        set_role(&app, &admin, admin_id, json!({"role": "customer"})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_problem(
        set_role(&app, &admin, Uuid::new_v4(), organizer_role.clone()).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let role: String = sqlx::query_scalar("SELECT user_type FROM users WHERE user_id = $1")
        .bind(customer_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(role, "customer");

    let r = set_role(&app, &admin, customer_id, organizer_role).await;
    assert_eq!(r.status(), StatusCode::OK);
    let account: Value = r.json().await.unwrap();
    assert_eq!(account["user_type"], "organizer");
    assert!(account["approved_at"].is_string(), "an organizer made by an admin is approved: {account}");

    // The role is in the next access token.
    let r = app.post("/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let organizer = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let event = draft(&app, &organizer).await;
    assert_eq!(publish(&app, &organizer, event).await.status(), StatusCode::OK);
    app.stop().await;
}
