//! Secrets never reach the logs: the server binary at RUST_LOG=debug, through a whole session,
//! writes no password, token, QR code, configured secret, email address or payment method id.
//! (One of the hostile tests, here because it runs the binary.)

use crate::{BOXOFFICE, SERIAL};
use boxoffice_testkit::{ServerSpec, TempDir, fresh_database, small_map};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// The server binary at RUST_LOG=debug through a whole session — register, login
/// (right and wrong), refresh (body and cookie), purchase (approved, declined,
/// unknown card), check-in, forged code, logout — never writes a password, an access
/// or refresh token, a QR code, a configured secret, an email address or a payment
/// method id to its output.
#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new("secrets-in-logs");
    let db_url = fresh_database().await;
    let jwt_secret = format!("jwt-{}-{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let qr_key = format!("qr-{}", Uuid::new_v4().simple());
    let spec = ServerSpec::new(BOXOFFICE, &db_url, dir.path())
        .env("JWT_SECRET", &jwt_secret)
        .env("QR_SIGNING_KEY", &qr_key)
        .env("COOKIE_SECURE", "false")
        .env("RUST_LOG", "debug")
        .env("LOG_FORMAT", "text");
    let server = spec.start().await;
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let session = run_session(&client, &spec.base()).await;
    // Graceful stop (SIGTERM), so everything buffered is written.
    server.terminate(Duration::from_secs(20)).await;
    let raw = spec.log_text();
    let session = session.unwrap_or_else(|e| panic!("session failed: {e}\n--- log ---\n{raw:.4000}"));

    assert!(raw.contains("DEBUG"), "RUST_LOG=debug took effect");
    assert!(raw.contains("user registered"), "the session was logged");
    // The start-up notice names the test provider's cards; it is not card data.
    let scanned: String = raw.lines().filter(|l| !l.contains("no STRIPE_SECRET_KEY")).collect::<Vec<_>>().join("\n");
    let mut secrets = session.secrets;
    secrets.push(("JWT secret".to_owned(), jwt_secret));
    secrets.push(("QR signing key".to_owned(), qr_key));
    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        if secret.len() >= 8 && scanned.contains(secret.as_str()) {
            leaks.push(format!("{what}: {secret:.40}"));
        }
    }
    // Nothing after a `pm_` prefix: no payment method id at all.
    for (at, _) in scanned.match_indices("pm_") {
        if scanned[at + 3..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
            let line = scanned[..at].rfind('\n').map_or(0, |n| n + 1);
            let end = scanned[at..].find('\n').map_or(scanned.len(), |n| at + n);
            leaks.push(format!("a payment method id: {:.300}", &scanned[line..end]));
        }
    }
    if scanned.to_ascii_lowercase().contains("bearer ") {
        leaks.push("an Authorization header".into());
    }
    assert!(leaks.is_empty(), "the log contains:\n  {}", leaks.join("\n  "));
}

struct Session {
    /// (what, value) of everything that must not be logged.
    secrets: Vec<(String, String)>,
}

/// A whole session against the server at `base`, collecting every secret it sees.
async fn run_session(client: &reqwest::Client, base: &str) -> Result<Session, String> {
    let mut secrets = Vec::new();
    let call = |method: Method, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut req = client.request(method, format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
    };
    let expect = |r: reqwest::Response, status: StatusCode| async move {
        let got = r.status();
        let text = r.text().await.map_err(|e| e.to_string())?;
        if got != status {
            return Err(format!("{got} (wanted {status}): {text:.300}"));
        }
        Ok::<Value, String>(serde_json::from_str(&text).unwrap_or(Value::Null))
    };
    let tag = Uuid::new_v4().simple().to_string();
    let password = format!("Pw-{tag}");
    let email = format!("buyer-{tag}@example.com");
    let org_password = format!("OrgPw-{tag}");
    let org_email = format!("org-{tag}@example.com");
    secrets.push(("password".into(), password.clone()));
    secrets.push(("organizer password".into(), org_password.clone()));
    secrets.push(("email".into(), email.clone()));
    secrets.push(("organizer email".into(), org_email.clone()));
    let keep = |what: &str, v: &Value, secrets: &mut Vec<(String, String)>| {
        let s = v.as_str().unwrap_or_default().to_owned();
        secrets.push((what.to_owned(), s.clone()));
        // A JWT's signature alone is a secret too.
        if let Some(sig) = s.rsplit('.').next().filter(|_| s.matches('.').count() == 2) {
            secrets.push((format!("{what} (signature)"), sig.to_owned()));
        }
        s
    };
    let r = call(
        Method::POST,
        "/auth/register",
        None,
        Some(json!({"email": email, "password": password, "name": "Buyer"})),
    )
    .await
    .map_err(|e| e.to_string())?;
    let reg = expect(r, StatusCode::CREATED).await?;
    keep("access token (register)", &reg["access_token"], &mut secrets);
    keep("refresh token (register)", &reg["refresh_token"], &mut secrets);
    let r = call(Method::POST, "/auth/login", None, Some(json!({"email": email, "password": format!("Wrong-{tag}")})))
        .await
        .map_err(|e| e.to_string())?;
    expect(r, StatusCode::UNAUTHORIZED).await?;
    secrets.push(("wrong password".into(), format!("Wrong-{tag}")));
    let r = call(Method::POST, "/auth/login", None, Some(json!({"email": email, "password": password})))
        .await
        .map_err(|e| e.to_string())?;
    let login = expect(r, StatusCode::OK).await?;
    let access = keep("access token (login)", &login["access_token"], &mut secrets);
    let refresh = keep("refresh token (login)", &login["refresh_token"], &mut secrets);
    let r = call(Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": refresh})))
        .await
        .map_err(|e| e.to_string())?;
    let refreshed = expect(r, StatusCode::OK).await?;
    keep("access token (refresh)", &refreshed["access_token"], &mut secrets);
    keep("refresh token (refresh)", &refreshed["refresh_token"], &mut secrets);
    // The cookie jar now holds the newest refresh token: refresh by cookie.
    let r = call(Method::POST, "/auth/refresh", None, None).await.map_err(|e| e.to_string())?;
    let by_cookie = expect(r, StatusCode::OK).await?;
    keep("access token (cookie refresh)", &by_cookie["access_token"], &mut secrets);
    let last_refresh = keep("refresh token (cookie refresh)", &by_cookie["refresh_token"], &mut secrets);
    // Reusing a rotated one (logged as a warning: the user id only).
    let r = call(Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": refresh})))
        .await
        .map_err(|e| e.to_string())?;
    expect(r, StatusCode::UNAUTHORIZED).await?;
    let r = call(Method::GET, "/auth/me", Some(&access), None).await.map_err(|e| e.to_string())?;
    expect(r, StatusCode::OK).await?;

    let r = call(
        Method::POST,
        "/auth/register",
        None,
        Some(json!({"email": org_email, "password": org_password, "name": "Org", "user_type": "organizer"})),
    )
    .await
    .map_err(|e| e.to_string())?;
    let org_reg = expect(r, StatusCode::CREATED).await?;
    let org = keep("organizer access token", &org_reg["access_token"], &mut secrets);
    keep("organizer refresh token", &org_reg["refresh_token"], &mut secrets);
    let r = call(
        Method::POST,
        "/events/create",
        Some(&org),
        Some(json!({"title": "Log test", "venue_name": "Hall", "event_date": "2031-01-01T19:00:00Z", "seat_map": small_map()})),
    )
    .await
    .map_err(|e| e.to_string())?;
    let event = expect(r, StatusCode::CREATED).await?["event_id"].as_str().unwrap_or_default().to_owned();
    let r = call(Method::POST, &format!("/events/{event}/publish"), Some(&org), Some(json!({})))
        .await
        .map_err(|e| e.to_string())?;
    expect(r, StatusCode::OK).await?;

    let unknown_card = format!("pm_hostile{tag}");
    for (card, status) in [
        ("pm_card_chargeDeclined".to_owned(), StatusCode::PAYMENT_REQUIRED),
        (unknown_card, StatusCode::UNPROCESSABLE_ENTITY),
        ("pm_card_visa".to_owned(), StatusCode::CREATED),
    ] {
        let r = call(
            Method::POST,
            "/tickets/purchase",
            Some(&access),
            Some(json!({"event_id": event, "seats": ["A-1"], "payment_method": card})),
        )
        .await
        .map_err(|e| e.to_string())?;
        let sale = expect(r, status).await.map_err(|e| format!("purchase with {card}: {e}"))?;
        if status == StatusCode::CREATED {
            let qr = keep("QR token", &sale["tickets"][0]["qr_token"], &mut secrets);
            let ticket = sale["tickets"][0]["ticket_id"].as_str().unwrap_or_default().to_owned();
            let r = call(Method::POST, &format!("/tickets/{ticket}/validate"), Some(&org), Some(json!({"qr": qr})))
                .await
                .map_err(|e| e.to_string())?;
            expect(r, StatusCode::OK).await?;
            let r = call(Method::POST, &format!("/tickets/{ticket}/validate"), Some(&org), Some(json!({"qr": qr})))
                .await
                .map_err(|e| e.to_string())?;
            expect(r, StatusCode::CONFLICT).await?;
            let last = if qr.ends_with('A') { 'B' } else { 'A' };
            let forged = format!("{}{last}", &qr[..qr.len() - 1]);
            let r = call(Method::POST, &format!("/tickets/{ticket}/validate"), Some(&org), Some(json!({"qr": forged})))
                .await
                .map_err(|e| e.to_string())?;
            expect(r, StatusCode::UNPROCESSABLE_ENTITY).await?;
        }
    }
    let r = call(Method::POST, "/auth/logout", None, Some(json!({"refresh_token": last_refresh})))
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != StatusCode::NO_CONTENT {
        return Err(format!("logout: {}", r.status()));
    }
    Ok(Session { secrets })
}
