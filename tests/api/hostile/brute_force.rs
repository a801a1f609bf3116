//! Login brute force is rate limited per email and per client address.

use boxoffice_testkit::{fresh_database, problem, spawn_app_on};
use reqwest::StatusCode;
use serde_json::json;

/// Login attempts are limited per email and per client address: past the limit even
/// the right password gets 429 with Retry-After; another address cannot continue on
/// the same email, and X-Forwarded-For does not reset the count.
#[tokio::test]
async fn login_brute_force_is_rate_limited() {
    let app = spawn_app_on(fresh_database().await, &[("AUTH_RATE_LIMIT_PER_MINUTE", "5")]).await;
    let email = "victim@example.com";
    let r = app.post("/auth/register", None, json!({"email": email, "password": "the-right-one", "name": "V"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for i in 0..4 {
        let r = app.post("/auth/login", None, json!({"email": email, "password": format!("guess-{i}-guess")})).await;
        problem(r, &[StatusCode::UNAUTHORIZED], Some("invalid_credentials")).await.unwrap();
    }
    let limited = |r: reqwest::Response| async move {
        let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "Retry-After: {retry:?}");
        problem(r, &[StatusCode::TOO_MANY_REQUESTS], Some("rate_limited")).await.unwrap();
    };
    // The right password, once limited: still refused.
    limited(app.post("/auth/login", None, json!({"email": email, "password": "the-right-one"})).await).await;
    // Same address, other emails: the address is limited.
    limited(app.post("/auth/login", None, json!({"email": "other@example.com", "password": "whatever1"})).await).await;
    limited(
        app.post("/auth/register", None, json!({"email": "new@example.com", "password": "whatever1", "name": "N"}))
            .await,
    )
    .await;
    let spoofed = app
        .client
        .post(format!("{}/auth/login", app.base))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"email": "third@example.com", "password": "whatever1"}))
        .send()
        .await
        .unwrap();
    limited(spoofed).await;
    // From another address (127.0.0.2): the victim's email is still limited, other
    // accounts are not.
    let elsewhere = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    let r = elsewhere
        .post(format!("{}/auth/login", app.base))
        .json(&json!({"email": email, "password": "the-right-one"}))
        .send()
        .await
        .unwrap();
    limited(r).await;
    let r = elsewhere
        .post(format!("{}/auth/login", app.base))
        .json(&json!({"email": "nobody@example.com", "password": "whatever1"}))
        .send()
        .await
        .unwrap();
    problem(r, &[StatusCode::UNAUTHORIZED], Some("invalid_credentials")).await.unwrap();
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens").fetch_one(&app.db).await.unwrap();
    assert_eq!(tokens, 1, "no login succeeded past the limit");
    app.stop().await;
}
