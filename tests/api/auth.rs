//! Accounts and sessions: registration, login, access-token checks, refresh rotation and reuse, logout, login rate limit.

use boxoffice::auth::Role;
use boxoffice::auth::tokens::Claims;
use boxoffice_testkit::{TEST_JWT_SECRET, TestApp, assert_problem, fresh_database, spawn_app, spawn_app_on};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn register_login_me_and_password_is_hashed() {
    let app = spawn_app().await;
    let r = app
        .post("/auth/register", None, json!({"email": "Ann@Example.com", "password": "s3cret-pass", "name": "Ann"}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/auth"),
        "{cookie}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["user_type"], "customer");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);

    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users").fetch_one(&app.db).await.unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");

    // Case-insensitive email, for login and uniqueness.
    let r = app.post("/auth/login", None, json!({"email": "ann@example.COM", "password": "s3cret-pass"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let token = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let me: Value = app.get("/auth/me", Some(&token)).await.json().await.unwrap();
    assert_eq!(me["email"], "Ann@Example.com");
    let r = app
        .post("/auth/register", None, json!({"email": "ANN@example.com", "password": "another-pass", "name": "Ann 2"}))
        .await;
    assert_problem(r, StatusCode::CONFLICT, "email_taken").await;

    let r = app.post("/auth/login", None, json!({"email": "ann@example.com", "password": "wrong-pass"})).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let r = app.post("/auth/login", None, json!({"email": "nobody@example.com", "password": "wrong-pass"})).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn registration_refuses_admins_and_bad_input() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/auth/register",
            None,
            json!({"email": "a@b.co", "password": "password1", "name": "X", "user_type": "admin"}),
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r =
        app.post("/auth/register", None, json!({"email": "not-an-email", "password": "password1", "name": "X"})).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_email").await;
    let r = app.post("/auth/register", None, json!({"email": "a@b.co", "password": "short", "name": "X"})).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "weak_password").await;
    let r = app.post("/auth/register", None, json!({"email": "a@b.co", "password": "password1", "name": "  "})).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_name").await;
    let r = app
        .post(
            "/auth/register",
            None,
            json!({"email": "a@b.co", "password": "password1", "name": "X", "user_type": "king"}),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let r = app.post("/auth/register", None, json!({"email": "a@b.co"})).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let r = app
        .client
        .post(format!("{}/auth/register", app.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::BAD_REQUEST, "malformed_json").await;
    let r = app.client.post(format!("{}/auth/register", app.base)).body("email=a").send().await.unwrap();
    assert_problem(r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.unwrap();
    assert_eq!(n, 0, "bad input wrote nothing");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let app = spawn_app().await;
    let (_, _, first) = app.user("customer").await;
    let r = app.post("/auth/refresh", None, json!({"refresh_token": first})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let second = r.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);

    // The cookie works too (browsers).
    let r = post_with_refresh_cookie(&app, "/auth/refresh", &second).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let third = r.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned();

    // Replaying a rotated token: refused, and the whole family is revoked.
    let r = app.post("/auth/refresh", None, json!({"refresh_token": first})).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "refresh_token_reused").await;
    let r = app.post("/auth/refresh", None, json!({"refresh_token": third})).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;

    let stored: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT token_hash FROM refresh_tokens").fetch_all(&app.db).await.unwrap();
    assert!(stored.iter().all(|h| h.len() == 32), "only SHA-256 hashes are stored");
    let r = app.post("/auth/refresh", None, json!({"refresh_token": "made-up"})).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    let r = app.post("/auth/refresh", None, json!({})).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "missing_refresh_token").await;
}

#[tokio::test]
async fn logout_revokes_the_refresh_token() {
    let app = spawn_app().await;
    let (_, _, refresh) = app.user("customer").await;
    let r = app.post("/auth/logout", None, json!({"refresh_token": refresh})).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.headers().get("set-cookie").unwrap().to_str().unwrap().contains("Max-Age=0"));
    let r = app.post("/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
}

#[tokio::test]
async fn logout_with_a_body_that_is_not_json_is_refused_and_revokes_nothing() {
    let app = spawn_app().await;
    let (_, _, refresh) = app.user("customer").await;
    let logout = |body: &'static str| {
        post_with_refresh_cookie(&app, "/auth/logout", &refresh)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Whitespace alone is not a JSON document: the cookie's session stays.
    for body in [" ", "\n\t ", "{"] {
        assert_problem(logout(body).await.unwrap(), StatusCode::BAD_REQUEST, "malformed_json").await;
    }
    let r = app.post("/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rotated = r.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned();
    // No body at all: the cookie says which session ends.
    let r = post_with_refresh_cookie(&app, "/auth/logout", &rotated).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.post("/auth/refresh", None, json!({"refresh_token": rotated})).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
}

/// A POST carrying the refresh token as a browser does: in the cookie.
fn post_with_refresh_cookie(app: &TestApp, path: &str, token: &str) -> reqwest::RequestBuilder {
    app.client.post(format!("{}{path}", app.base)).header("cookie", format!("refresh_token={token}"))
}

fn forge(claims: &Claims, secret: &str, alg: Algorithm) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

#[tokio::test]
async fn tampered_expired_and_foreign_tokens_are_refused() {
    let app = spawn_app().await;
    let (user, token, _) = app.user("customer").await;
    let now = chrono::Utc::now().timestamp();
    let good = Claims {
        sub: user,
        role: Role::Customer,
        iss: "boxoffice".into(),
        aud: "boxoffice-api".into(),
        iat: now,
        exp: now + 600,
    };
    assert_eq!(
        app.get("/auth/me", Some(&forge(&good, TEST_JWT_SECRET, Algorithm::HS256))).await.status(),
        StatusCode::OK
    );

    let expired = Claims { exp: now - 120, iat: now - 1000, ..clone_claims(&good) };
    let r = app.get("/auth/me", Some(&forge(&expired, TEST_JWT_SECRET, Algorithm::HS256))).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "token_expired").await;
    let wrong_key = forge(&good, "some-other-secret-of-sufficient-length!!", Algorithm::HS256);
    assert_problem(app.get("/auth/me", Some(&wrong_key)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let wrong_aud = Claims { aud: "someone-else".into(), ..clone_claims(&good) };
    let r = app.get("/auth/me", Some(&forge(&wrong_aud, TEST_JWT_SECRET, Algorithm::HS256))).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let wrong_iss = Claims { iss: "evil".into(), ..clone_claims(&good) };
    let r = app.get("/auth/me", Some(&forge(&wrong_iss, TEST_JWT_SECRET, Algorithm::HS256))).await;
    assert_problem(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let other_alg = forge(&good, TEST_JWT_SECRET, Algorithm::HS512);
    assert_problem(app.get("/auth/me", Some(&other_alg)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // alg: none, built by hand.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none =
        format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), b64.encode(serde_json::to_vec(&good).unwrap()));
    assert_problem(app.get("/auth/me", Some(&none)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // Flip a character of the signature, and of the payload.
    let mut bad_sig = token.clone();
    let last = bad_sig.pop().unwrap();
    bad_sig.push(if last == 'A' { 'B' } else { 'A' });
    assert_problem(app.get("/auth/me", Some(&bad_sig)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["role"] = json!("admin");
    let escalated = format!("{}.{}.{}", parts[0], b64.encode(payload.to_string()), parts[2]);
    assert_problem(app.get("/auth/me", Some(&escalated)).await, StatusCode::UNAUTHORIZED, "invalid_token").await;

    assert_problem(app.get("/auth/me", None).await, StatusCode::UNAUTHORIZED, "missing_token").await;
    let r = app.client.get(format!("{}/auth/me", app.base)).header("authorization", "Basic abc").send().await.unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

fn clone_claims(c: &Claims) -> Claims {
    Claims { sub: c.sub, role: c.role, iss: c.iss.clone(), aud: c.aud.clone(), iat: c.iat, exp: c.exp }
}

#[tokio::test]
async fn login_is_rate_limited_per_email() {
    let app = spawn_app_on(fresh_database().await, &[("AUTH_RATE_LIMIT_PER_MINUTE", "5")]).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = app.post("/auth/login", None, json!({"email": "victim@example.com", "password": "guess-guess"})).await;
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().get("retry-after").is_some());
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count(), 5);
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 3);
}
