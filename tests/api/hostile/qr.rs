//! QR codes at the door: forged, foreign, re-pointed and replayed codes are refused; a code
//! admits once however many scanners race on it.

use super::{assert_none, buy};
use boxoffice_testkit::{fresh_database, problem, spawn_app_on};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

const QR_KEY: &str = "hostile-test-qr-signing-key";

/// Codes the attacker makes or copies: a replayed code is refused (and says when it
/// was first scanned) however many scanners race on it; codes signed with another key,
/// for a ticket that does not exist, or re-pointed at another event are refused.
#[tokio::test]
async fn forged_and_replayed_qr_codes_are_refused() {
    use boxoffice::auth::qr::{QrSigner, TicketClaim};
    use secrecy::SecretString;
    let app = spawn_app_on(fresh_database().await, &[("QR_SIGNING_KEY", QR_KEY), ("QR_KEY_ID", "k1")]).await;
    let (_, org, _) = app.user("organizer").await;
    let (_, org2, _) = app.user("organizer").await;
    let (staff_id, staff, _) = app.user("staff").await;
    let (_, buyer, _) = app.user("customer").await;
    let event = app.published_event(&org, None, None).await;
    let other_event = app.published_event(&org2, None, None).await;
    app.post(&format!("/events/{event}/staff"), Some(&org), json!({"staff_id": staff_id})).await;
    app.post(&format!("/events/{other_event}/staff"), Some(&org2), json!({"staff_id": staff_id})).await;
    let (tickets, qrs) = buy(&app, &buyer, event, &["A-1", "A-2"]).await;
    let (t1, t2) = (tickets[0].parse::<Uuid>().unwrap(), tickets[1].parse::<Uuid>().unwrap());
    let real = QrSigner::new(("k1".into(), SecretString::from(QR_KEY)), vec![]);
    assert_eq!(real.verify(&qrs[0]).unwrap().ticket_id, t1, "the test signs like the server");

    let validate = |ticket: Uuid, token: &str, qr: String| {
        let app = &app;
        let token = token.to_owned();
        async move { app.post(&format!("/tickets/{ticket}/validate"), Some(&token), json!({"qr": qr})).await }
    };
    let mut violations = Vec::new();
    let mut expect = |what: &str, result: Result<Value, String>| {
        if let Err(e) = result {
            violations.push(format!("{what}: {e}"));
        }
    };
    let foreign = QrSigner::new(("k1".into(), SecretString::from("attacker-key")), vec![]);
    let unknown_kid = QrSigner::new(("k9".into(), SecretString::from(QR_KEY)), vec![]);
    let claim = TicketClaim { ticket_id: t1, event_id: event };
    let r = validate(t1, &staff, foreign.sign(claim)).await;
    expect("signed with another key", problem(r, &[StatusCode::UNPROCESSABLE_ENTITY], Some("invalid_qr")).await);
    let r = validate(t1, &staff, unknown_kid.sign(claim)).await;
    expect("unknown key id", problem(r, &[StatusCode::UNPROCESSABLE_ENTITY], Some("invalid_qr")).await);
    let ghost = Uuid::now_v7();
    let r = validate(ghost, &staff, real.sign(TicketClaim { ticket_id: ghost, event_id: event })).await;
    expect("validly signed, no such ticket", problem(r, &[StatusCode::NOT_FOUND], None).await);
    // A genuine ticket re-pointed at another event the scanner works for.
    let r = validate(t1, &staff, real.sign(TicketClaim { ticket_id: t1, event_id: other_event })).await;
    expect(
        "re-pointed at another event (its staff)",
        problem(r, &[StatusCode::UNPROCESSABLE_ENTITY], Some("invalid_qr")).await,
    );
    let r = validate(t1, &org2, real.sign(TicketClaim { ticket_id: t1, event_id: other_event })).await;
    expect(
        "re-pointed at another event (its organizer)",
        problem(r, &[StatusCode::UNPROCESSABLE_ENTITY], Some("invalid_qr")).await,
    );
    let r = validate(t1, &staff, qrs[1].clone()).await;
    expect("another ticket's code", problem(r, &[StatusCode::UNPROCESSABLE_ENTITY], Some("invalid_qr")).await);
    for junk in [String::new(), "BO1.".into(), "x".repeat(100_000), format!("{}\u{0}", qrs[0]), qrs[0].to_lowercase()] {
        let r = validate(t1, &staff, junk.clone()).await;
        let what = format!("junk {:?}", junk.chars().take(20).collect::<String>());
        expect(&what, problem(r, &[StatusCode::UNPROCESSABLE_ENTITY], Some("invalid_qr")).await);
    }
    let used: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tickets WHERE status = 'used'").fetch_one(&app.db).await.unwrap();
    assert_none(&violations, "forged codes");
    assert_eq!(used, 0, "no forged code admitted anyone");

    // Replay: eight scanners at once, then again later; one admission.
    let scans = (0..8)
        .map(|_| {
            let request = app
                .client
                .post(format!("{}/tickets/{t2}/validate", app.base))
                .bearer_auth(&staff)
                .json(&json!({"qr": qrs[1]}));
            tokio::spawn(async move { request.send().await.expect("scan sent") })
        })
        .collect::<Vec<_>>();
    let mut results = Vec::new();
    for scan in scans {
        results.push(scan.await.expect("scan task"));
    }
    let admitted = results.iter().filter(|r| r.status() == StatusCode::OK).count();
    assert_eq!(admitted, 1, "statuses {:?}", results.iter().map(|r| r.status()).collect::<Vec<_>>());
    for r in results.into_iter().filter(|r| r.status() != StatusCode::OK) {
        let body = problem(r, &[StatusCode::CONFLICT], Some("already_used")).await.unwrap();
        assert!(body["first_checked_in_at"].is_string(), "{body}");
    }
    let r = validate(t2, &org, qrs[1].clone()).await;
    let body = problem(r, &[StatusCode::CONFLICT], Some("already_used")).await.unwrap();
    assert_eq!(body["checked_in_by"], staff_id.to_string());
    let check_ins: i64 = sqlx::query_scalar("SELECT count(*) FROM check_ins").fetch_one(&app.db).await.unwrap();
    let used_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE topic = 'ticket:used'").fetch_one(&app.db).await.unwrap();
    assert_eq!((check_ins, used_events), (1, 1), "one check-in, one ticket:used event");
    app.stop().await;
}
