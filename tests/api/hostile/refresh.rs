//! Refresh tokens: reuse revokes the family even when two refreshes race; expired ones are
//! refused.

use super::json_of;
use boxoffice_testkit::{fresh_database, poll, problem, spawn_app, spawn_app_on};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

/// Two refreshes racing with one token: exactly one wins, and the loser's reuse
/// revokes the winner's new token too. Other sessions of the same user survive;
/// an expired refresh token is refused.
#[tokio::test]
async fn refresh_token_reuse_revokes_the_family_even_when_racing() {
    let app = spawn_app().await;
    let (_, _, first) = app.user("customer").await;
    let email: String = sqlx::query_scalar("SELECT email FROM users").fetch_one(&app.db).await.unwrap();
    let other_session =
        json_of(app.post("/auth/login", None, json!({"email": email, "password": "correct horse battery"})).await)
            .await["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();

    let refresh = |token: String| {
        let app = &app;
        async move { app.post("/auth/refresh", None, json!({"refresh_token": token})).await }
    };
    let (a, b) = tokio::join!(refresh(first.clone()), refresh(first.clone()));
    let (winner, loser) = if a.status() == StatusCode::OK { (a, b) } else { (b, a) };
    assert_eq!(winner.status(), StatusCode::OK, "one refresh wins");
    let next = json_of(winner).await["refresh_token"].as_str().unwrap().to_owned();
    problem(loser, &[StatusCode::UNAUTHORIZED], Some("refresh_token_reused")).await.unwrap();
    // The family is gone: the winner's fresh token no longer works.
    let r = refresh(next).await;
    problem(r, &[StatusCode::UNAUTHORIZED], None).await.unwrap();
    // Another login is another family.
    assert_eq!(refresh(other_session).await.status(), StatusCode::OK);
    // An access token is not a refresh token.
    let (_, access, _) = app.user("customer").await;
    problem(refresh(access).await, &[StatusCode::UNAUTHORIZED], Some("invalid_refresh_token")).await.unwrap();
    let revoked: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NOT NULL")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(revoked >= 2, "the reused family was revoked");
    app.stop().await;

    // Expired: refused even though never used.
    let app = spawn_app_on(fresh_database().await, &[("REFRESH_TTL_SECS", "1")]).await;
    let (_, _, short) = app.user("customer").await;
    // The server compares the stored expiry with its clock, which is ours: wait until it passed.
    let expires_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT expires_at FROM refresh_tokens").fetch_one(&app.db).await.unwrap();
    let expired = || async { if chrono::Utc::now() > expires_at { Ok(()) } else { Err(()) } };
    poll(Duration::from_secs(10), Duration::from_millis(20), expired).await.expect("the refresh token expires");
    let r = app.post("/auth/refresh", None, json!({"refresh_token": short})).await;
    problem(r, &[StatusCode::UNAUTHORIZED], Some("invalid_refresh_token")).await.unwrap();
    app.stop().await;
}
