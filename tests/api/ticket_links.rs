//! Signed ticket links: `GET /tickets/{id}/qr?exp=…&sig=…` serves the QR image without an
//! access token until the link expires; an altered, foreign or expired link is a 403.

use boxoffice::auth::qr::QrSigner;
use boxoffice_testkit::{assert_problem, fresh_database, spawn_app_on};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;

const QR_KEY: &str = "ticket-links-test-qr-signing-key";

#[tokio::test]
async fn a_signed_link_serves_the_image_to_anyone_until_it_expires_and_only_for_its_ticket() {
    let app = spawn_app_on(fresh_database().await, &[("QR_SIGNING_KEY", QR_KEY)]).await;
    let (_, org, _) = app.user("organizer").await;
    let (buyer_id, buyer, _) = app.user("customer").await;
    let event = app.published_event(&org, None, None).await;
    app.buy_seats(&buyer, event, &["A-1", "A-2"]).await;

    let r = app.get(&format!("/tickets/user/{buyer_id}"), Some(&buyer)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let list: Value = r.json().await.unwrap();
    let tickets = list["tickets"].as_array().unwrap();
    let (a, b) = (&tickets[0], &tickets[1]);
    let (id_a, id_b) = (a["ticket_id"].as_str().unwrap(), b["ticket_id"].as_str().unwrap());
    let link_a = a["qr_link"].as_str().unwrap();
    let link_b = b["qr_link"].as_str().unwrap();
    // A day after the event (2030-01-01T19:00:00Z) starts.
    let exp = 1_893_524_400 + 86_400;
    assert_eq!(a["qr_link_expires_at"], "2030-01-02T19:00:00Z");
    assert!(link_a.starts_with(&format!("/tickets/{id_a}/qr?exp={exp}&sig=")), "{link_a}");

    for link in [link_a.to_owned(), format!("{link_a}&format=svg")] {
        let r = app.get(&link, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{link}");
        let kind = r.headers()["content-type"].to_str().unwrap().to_owned();
        let body = r.bytes().await.unwrap();
        match kind.as_str() {
            "image/png" => assert_eq!(&body[..8], b"\x89PNG\r\n\x1a\n"),
            "image/svg+xml" => assert!(body.starts_with(b"<?xml")),
            other => panic!("{other}"),
        }
    }
    // The image is the same as the owner gets with a token; the token route is unchanged.
    let signed = app.get(link_a, None).await.bytes().await.unwrap();
    let r = app.get(&format!("/tickets/{id_a}/qr"), Some(&buyer)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap(), signed);
    assert_problem(app.get(&format!("/tickets/{id_a}/qr"), None).await, StatusCode::UNAUTHORIZED, "missing_token")
        .await;

    let sig_a = link_a.split("&sig=").nth(1).unwrap();
    let sig_b = link_b.split("&sig=").nth(1).unwrap();
    let flipped = {
        let first = if sig_a.starts_with('A') { 'B' } else { 'A' };
        format!("{first}{}", &sig_a[1..])
    };
    for (what, path) in [
        ("tampered signature", format!("/tickets/{id_a}/qr?exp={exp}&sig={flipped}")),
        ("ticket B's signature on ticket A", format!("/tickets/{id_a}/qr?exp={exp}&sig={sig_b}")),
        ("ticket A's signature on ticket B", format!("/tickets/{id_b}/qr?exp={exp}&sig={sig_a}")),
        ("a later expiry", format!("/tickets/{id_a}/qr?exp={}&sig={sig_a}", exp + 86_400)),
        ("not base64", format!("/tickets/{id_a}/qr?exp={exp}&sig=%25%25")),
        ("no expiry", format!("/tickets/{id_a}/qr?sig={sig_a}")),
        ("no signature", format!("/tickets/{id_a}/qr?exp={exp}")),
    ] {
        let p = assert_problem(app.get(&path, None).await, StatusCode::FORBIDDEN, "invalid_link").await;
        assert!(p["detail"].is_string(), "{what}");
    }
    // A correctly signed link whose time is up (signed here with the server's key).
    let signer = QrSigner::new(("k1".into(), SecretString::from(QR_KEY)), vec![]);
    let past = chrono::Utc::now().timestamp() - 60;
    assert_eq!(signer.link_path(id_a.parse().unwrap(), exp), link_a, "the test signs like the server");
    let expired = signer.link_path(id_a.parse().unwrap(), past);
    assert_problem(app.get(&expired, None).await, StatusCode::FORBIDDEN, "link_expired").await;
    // A valid link works even beside a stale token.
    let r = app.get(link_a, Some("not-a-token")).await;
    assert_eq!(r.status(), StatusCode::OK);
    app.stop().await;
}
