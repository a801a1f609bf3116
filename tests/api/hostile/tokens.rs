//! Forged access tokens (wrong key, `alg: none`, other algorithms, expired, other audience or
//! issuer, edited roles) reach no route.

use super::{assert_none, assert_unchanged, buy, json_of, snapshot};
use boxoffice_testkit::{TEST_JWT_SECRET, problem, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn claims(sub: Uuid, role: &str, aud: &str, iss: &str, exp_in: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": sub, "role": role, "iss": iss, "aud": aud, "iat": now, "exp": now + exp_in})
}

fn hs(alg: jsonwebtoken::Algorithm, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), claims, &jsonwebtoken::EncodingKey::from_secret(secret))
        .unwrap()
}

/// Admin tokens an attacker can make — wrong key, `alg: none`, another algorithm,
/// expired, another audience or issuer, a role edited into a real token — reach
/// nothing: every route answers 401, and nothing changes. A genuine admin token
/// does reach the same routes, so the refusals are the forgeries'.
#[tokio::test]
async fn forged_admin_tokens_reach_no_route() {
    let app = spawn_app().await;
    let (org_id, org, _) = app.user("organizer").await;
    let (buyer_id, buyer, _) = app.user("customer").await;
    let (attacker_id, attacker, _) = app.user("customer").await;
    let event = app.published_event(&org, None, None).await;
    let (tickets, _) = buy(&app, &buyer, event, &["A-1"]).await;
    let ticket = &tickets[0];
    let hold = json_of(app.post(&format!("/events/{event}/holds"), Some(&buyer), json!({"quantity": 2})).await).await
        ["hold_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let secret = TEST_JWT_SECRET.as_bytes();
    let admin = |aud: &str, iss: &str, exp_in: i64| claims(attacker_id, "admin", aud, iss, exp_in);
    let good_admin = admin("boxoffice-api", "boxoffice", 600);
    let parts: Vec<&str> = attacker.split('.').collect();
    let mut payload: Value = {
        use base64::Engine;
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
    };
    payload["role"] = json!("admin");
    let forgeries = [
        ("wrong key", hs(jsonwebtoken::Algorithm::HS256, &good_admin, b"not-the-server-secret-but-long-enough!!")),
        (
            "alg none",
            format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), b64url(good_admin.to_string().as_bytes())),
        ),
        (
            "alg None, signature kept",
            format!(
                "{}.{}.{}",
                b64url(br#"{"alg":"None","typ":"JWT"}"#),
                b64url(good_admin.to_string().as_bytes()),
                parts[2]
            ),
        ),
        ("HS512 with the real key", hs(jsonwebtoken::Algorithm::HS512, &good_admin, secret)),
        ("expired", hs(jsonwebtoken::Algorithm::HS256, &admin("boxoffice-api", "boxoffice", -3600), secret)),
        ("wrong audience", hs(jsonwebtoken::Algorithm::HS256, &admin("other-api", "boxoffice", 600), secret)),
        ("wrong issuer", hs(jsonwebtoken::Algorithm::HS256, &admin("boxoffice-api", "evil", 600), secret)),
        ("empty key", hs(jsonwebtoken::Algorithm::HS256, &good_admin, b"")),
        (
            "role edited into a real token",
            format!("{}.{}.{}", parts[0], b64url(payload.to_string().as_bytes()), parts[2]),
        ),
        ("signature stripped", format!("{}.{}.", parts[0], b64url(payload.to_string().as_bytes()))),
        ("no exp", {
            let mut c = good_admin.clone();
            c.as_object_mut().unwrap().remove("exp");
            hs(jsonwebtoken::Algorithm::HS256, &c, secret)
        }),
        ("a refresh token", app.user("customer").await.2),
    ];
    let routes = [
        (Method::GET, format!("/tickets/user/{buyer_id}"), None),
        (Method::GET, format!("/holds/{hold}"), None),
        (Method::DELETE, format!("/holds/{hold}"), None),
        (Method::GET, format!("/tickets/{ticket}/qr"), None),
        (Method::POST, format!("/tickets/{ticket}/cancel"), Some(json!({}))),
        (Method::GET, format!("/events/{event}/staff"), None),
        (Method::POST, format!("/events/{event}/close"), Some(json!({}))),
        (Method::DELETE, format!("/events/{event}/delete"), None),
        (Method::GET, "/auth/me".to_owned(), None),
        (Method::PUT, format!("/admin/users/{attacker_id}/role"), Some(json!({"role": "admin"}))),
        (Method::POST, format!("/admin/organizers/{org_id}/approve"), Some(json!({}))),
    ];
    let before = snapshot(&app.db).await;
    let mut violations = Vec::new();
    for (what, token) in &forgeries {
        for (method, path, body) in &routes {
            let r = app.request(method.clone(), path, Some(token), body.clone()).await;
            if let Err(e) = problem(r, &[StatusCode::UNAUTHORIZED], None).await {
                violations.push(format!("{what}: {method} {e}"));
            }
        }
    }
    assert_none(&violations, "forged tokens");
    assert_unchanged(&before, &snapshot(&app.db).await);

    // Control: the genuine article (signed with the server's key) is let through.
    let real_admin = hs(jsonwebtoken::Algorithm::HS256, &good_admin, secret);
    let listed: Value = json_of(app.get(&format!("/tickets/user/{buyer_id}"), Some(&real_admin)).await).await;
    assert_eq!(listed["tickets"][0]["ticket_id"], ticket.as_str());
    app.stop().await;
}
