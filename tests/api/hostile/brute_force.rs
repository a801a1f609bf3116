//! Login brute force is rate limited per email and per client address (behind trusted
//! proxies, per forwarded client).

use boxoffice_testkit::{TestApp, fresh_database, problem, spawn_app_on};
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

/// A login with `X-Forwarded-For: forwarded` and a fresh email, so only the address counts.
async fn login_via(app: &TestApp, forwarded: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/auth/login", app.base))
        .json(&json!({"email": format!("{}@example.com", uuid::Uuid::new_v4().simple()), "password": "whatever1"}));
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    request.send().await.unwrap()
}

/// `X-Forwarded-For` names the client only when the TCP peer is one of `TRUSTED_PROXIES`:
/// from an untrusted peer a new forwarded address per attempt does not escape the per-address
/// limit; with 127.0.0.1 trusted, each forwarded client is counted on its own, and addresses
/// a client prepends itself do not reset its count.
#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let untrusted = spawn_app_on(fresh_database().await, &[("AUTH_RATE_LIMIT_PER_MINUTE", "3")]).await;
    for i in 0..3 {
        let r = login_via(&untrusted, Some(&format!("203.0.113.{i}"))).await;
        problem(r, &[StatusCode::UNAUTHORIZED], Some("invalid_credentials")).await.unwrap();
    }
    let r = login_via(&untrusted, Some("203.0.113.99")).await;
    problem(r, &[StatusCode::TOO_MANY_REQUESTS], Some("rate_limited")).await.unwrap();
    untrusted.stop().await;

    let behind_proxy = spawn_app_on(
        fresh_database().await,
        &[("AUTH_RATE_LIMIT_PER_MINUTE", "3"), ("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")],
    )
    .await;
    let app = &behind_proxy;
    for forwarded in ["203.0.113.7", "198.51.100.1, 203.0.113.7", "203.0.113.7, 10.0.0.2"] {
        let r = login_via(app, Some(forwarded)).await;
        problem(r, &[StatusCode::UNAUTHORIZED], Some("invalid_credentials")).await.unwrap();
    }
    // 203.0.113.7 is at its limit, however much it prepends.
    for forwarded in ["203.0.113.7", "192.0.2.50, 203.0.113.7", "192.0.2.51,203.0.113.7, 10.9.9.9"] {
        let r = login_via(app, Some(forwarded)).await;
        problem(r, &[StatusCode::TOO_MANY_REQUESTS], Some("rate_limited")).await.unwrap();
    }
    // Other clients behind the same proxy are not.
    let r = login_via(app, Some("203.0.113.8")).await;
    problem(r, &[StatusCode::UNAUTHORIZED], Some("invalid_credentials")).await.unwrap();
    // Without the header the proxy itself is the client.
    let r = login_via(app, None).await;
    problem(r, &[StatusCode::UNAUTHORIZED], Some("invalid_credentials")).await.unwrap();
    behind_proxy.stop().await;
}
