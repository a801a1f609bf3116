//! Money is never stranded: every charge ends as tickets or a refund, never both, never
//! neither — through journal failures, sales that close under a payment, refunds the
//! provider refuses, 3-D Secure, webhooks that cannot be processed at once, and event
//! cancellation. Faults are real: a constraint that makes PostgreSQL refuse the journal's
//! ticket rows, a payment method whose refunds fail.

use boxoffice::money::report;
use boxoffice::payments::stripe::sign_webhook_for_tests;
use boxoffice::payments::test_provider::TestProvider;
use boxoffice_testkit::{TestApp, assert_problem, eventually, fresh_database, localstripe_url, spawn_app_on};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// A reconciler that looks every 100 ms and gives a charge 300 ms before asking again.
const FAST_RECONCILER: [(&str, &str); 2] = [("RECONCILE_INTERVAL_MS", "100"), ("CHARGE_GRACE_MS", "300")];

async fn app() -> TestApp {
    spawn_app_on(fresh_database().await, &FAST_RECONCILER).await
}

/// From now on every ticket row the journal writes is refused by PostgreSQL.
async fn fail_ticket_writes(app: &TestApp) {
    sqlx::query("ALTER TABLE tickets ADD CONSTRAINT test_no_ticket_writes CHECK (price < 0) NOT VALID")
        .execute(&app.db)
        .await
        .unwrap();
}

async fn allow_ticket_writes(app: &TestApp) {
    sqlx::query("ALTER TABLE tickets DROP CONSTRAINT test_no_ticket_writes").execute(&app.db).await.unwrap();
}

async fn hold(app: &TestApp, buyer: &str, event: Uuid, seats: &[&str]) -> String {
    let r = app.post(&format!("/events/{event}/holds"), Some(buyer), json!({"seats": seats})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["hold_id"].as_str().unwrap().to_owned()
}

async fn pay(app: &TestApp, buyer: &str, hold: &str, payment_method: &str) -> reqwest::Response {
    app.post(&format!("/holds/{hold}/purchase"), Some(buyer), json!({"payment_method": payment_method})).await
}

async fn scalar(app: &TestApp, sql: &'static str, hold: &str) -> i64 {
    sqlx::query_scalar(sql).bind(hold.parse::<Uuid>().unwrap()).fetch_one(&app.db).await.unwrap()
}

async fn charge_status(app: &TestApp, hold: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT status FROM charges WHERE hold_id = $1 ORDER BY created_at")
        .bind(hold.parse::<Uuid>().unwrap())
        .fetch_all(&app.db)
        .await
        .unwrap()
}

async fn assert_ledger_clean(app: &TestApp, event: Uuid) {
    let r = report::build(&app.db, &TestProvider::new(), Some(event), Duration::from_secs(60)).await.unwrap();
    assert!(r.is_clean(), "the ledger does not add up:\n{}", r.render());
}

#[tokio::test]
async fn a_charge_the_journal_cannot_record_ends_as_tickets() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let hold = hold(&app, &buyer, id, &["A-1", "A-2"]).await;

    fail_ticket_writes(&app).await;
    let r = pay(&app, &buyer, &hold, "pm_card_visa").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "the money is taken, the tickets follow");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "processing", "{body}");
    assert_eq!(charge_status(&app, &hold).await, ["charged"]);
    assert_eq!(scalar(&app, "SELECT count(*) FROM tickets WHERE hold_id = $1", &hold).await, 0);

    allow_ticket_writes(&app).await;
    eventually("the reconciler issues the tickets", Duration::from_secs(20), || async {
        scalar(&app, "SELECT count(*) FROM tickets WHERE hold_id = $1", &hold).await == 2
    })
    .await;
    eventually("the charge is completed", Duration::from_secs(10), || async {
        charge_status(&app, &hold).await == ["completed"]
    })
    .await;
    assert_eq!(scalar(&app, "SELECT count(*) FROM refunds WHERE hold_id = $1", &hold).await, 0, "never both");
    // Paying again answers the sale; nothing is charged twice.
    let r = pay(&app, &buyer, &hold, "pm_card_visa").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(charge_status(&app, &hold).await, ["completed"]);
    assert_ledger_clean(&app, id).await;
}

#[tokio::test]
async fn a_charge_whose_sale_closed_while_it_waited_is_refunded_once() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let hold = hold(&app, &buyer, id, &["B-3"]).await;

    fail_ticket_writes(&app).await;
    let r = pay(&app, &buyer, &hold, "pm_card_visa").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // The organizer cancels the event before the sale could be recorded.
    let r = app.post(&format!("/events/{id}/cancel"), Some(&org), json!({"reason": "Storm warning"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    eventually("the charge is refunded", Duration::from_secs(20), || async {
        scalar(&app, "SELECT count(*) FROM refunds WHERE hold_id = $1 AND status = 'succeeded'", &hold).await == 1
    })
    .await;
    allow_ticket_writes(&app).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(charge_status(&app, &hold).await, ["refunded"]);
    assert_eq!(scalar(&app, "SELECT count(*) FROM tickets WHERE hold_id = $1", &hold).await, 0, "never both");
    assert_eq!(scalar(&app, "SELECT count(*) FROM refunds WHERE hold_id = $1", &hold).await, 1, "refunded once");
    assert_ledger_clean(&app, id).await;
}

#[tokio::test]
async fn holds_of_a_closed_or_cancelled_event_cannot_be_paid_and_nothing_is_charged() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    for end in ["close", "cancel"] {
        let id = app.published_event(&org, None, None).await;
        let hold = hold(&app, &buyer, id, &["A-5"]).await;
        let r = app.post(&format!("/events/{id}/{end}"), Some(&org), json!({})).await;
        assert_eq!(r.status(), StatusCode::OK, "{end}");
        let r = pay(&app, &buyer, &hold, "pm_card_visa").await;
        assert_problem(r, StatusCode::CONFLICT, "sale_closed").await;
        assert!(charge_status(&app, &hold).await.is_empty(), "{end}: no card is charged for a sale that is over");
        let r = app
            .post(
                "/tickets/purchase",
                Some(&buyer),
                json!({"event_id": id, "seat_number": "A-6", "payment_method": "pm_card_visa"}),
            )
            .await;
        assert_problem(r, StatusCode::CONFLICT, "sale_closed").await;
    }
    let charges: i64 = sqlx::query_scalar("SELECT count(*) FROM charges").fetch_one(&app.db).await.unwrap();
    assert_eq!(charges, 0);
}

#[tokio::test]
async fn a_refund_the_provider_fails_three_times_is_made_exactly_once() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let hold = hold(&app, &buyer, id, &["A-7"]).await;
    let sale: Value = pay(&app, &buyer, &hold, "pm_card_refundFailsThrice").await.json().await.unwrap();
    let ticket = sale["tickets"][0]["ticket_id"].as_str().unwrap();

    let c: Value = app.post(&format!("/tickets/{ticket}/cancel"), Some(&buyer), json!({})).await.json().await.unwrap();
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["refund_status"], "pending", "the provider failed the first attempt: {c}");
    eventually("the refund succeeds", Duration::from_secs(20), || async {
        scalar(&app, "SELECT count(*) FROM refunds WHERE hold_id = $1 AND status = 'succeeded'", &hold).await == 1
    })
    .await;
    let (attempts, n): (i32, i64) = sqlx::query_as("SELECT max(attempts), count(*) FROM refunds WHERE hold_id = $1")
        .bind(hold.parse::<Uuid>().unwrap())
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!((attempts, n), (4, 1), "three failures, one success, one refund");
    let topics: Vec<(String, i64)> = sqlx::query_as(
        "SELECT topic, count(*) FROM outbox WHERE topic LIKE 'refund:%' AND aggregate_id = $1 GROUP BY topic ORDER BY topic",
    )
    .bind(hold.parse::<Uuid>().unwrap())
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(topics, [("refund:failed".into(), 3), ("refund:requested".into(), 1), ("refund:succeeded".into(), 1)]);
    // Cancelling again does not refund again.
    let c: Value = app.post(&format!("/tickets/{ticket}/cancel"), Some(&buyer), json!({})).await.json().await.unwrap();
    assert_eq!(c["refund_status"], "succeeded");
    assert_eq!(scalar(&app, "SELECT count(*) FROM refunds WHERE hold_id = $1", &hold).await, 1);
    assert_ledger_clean(&app, id).await;
}

#[tokio::test]
async fn three_d_secure_returns_the_client_secret_and_completes_after_authentication() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;

    let approved = hold(&app, &buyer, id, &["A-8", "A-9"]).await;
    let r = pay(&app, &buyer, &approved, "pm_card_threeDSecure2Required").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let pending: Value = r.json().await.unwrap();
    assert_eq!(pending["status"], "requires_action", "{pending}");
    let reference = pending["payment_reference"].as_str().unwrap().to_owned();
    let secret = pending["client_secret"].as_str().expect("the buyer needs the client secret").to_owned();
    assert!(pending["next_action"].is_object());
    // Paying again before authenticating: still waiting, nothing new charged.
    let again: Value = pay(&app, &buyer, &approved, "pm_card_threeDSecure2Required").await.json().await.unwrap();
    assert_eq!(again["status"], "requires_action");
    assert_eq!(charge_status(&app, &approved).await, ["pending"]);

    let auth = |reference: String, secret: String, approve: bool| {
        let app = &app;
        async move {
            app.post(
                "/payments/test/authenticate",
                None,
                json!({"payment_reference": reference, "client_secret": secret, "approve": approve}),
            )
            .await
        }
    };
    assert_problem(auth(reference.clone(), "wrong".into(), true).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(auth(reference.clone(), secret.clone(), true).await.status(), StatusCode::NO_CONTENT);
    let r = pay(&app, &buyer, &approved, "pm_card_threeDSecure2Required").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let sale: Value = r.json().await.unwrap();
    assert_eq!(sale["tickets"].as_array().unwrap().len(), 2);
    assert_eq!(charge_status(&app, &approved).await, ["completed"]);

    // A failed authentication is a decline; the hold stays for another card.
    let failed = hold(&app, &buyer, id, &["B-1"]).await;
    let pending: Value = pay(&app, &buyer, &failed, "pm_card_threeDSecure2Required").await.json().await.unwrap();
    let (reference, secret) = (
        pending["payment_reference"].as_str().unwrap().to_owned(),
        pending["client_secret"].as_str().unwrap().to_owned(),
    );
    assert_eq!(auth(reference, secret, false).await.status(), StatusCode::NO_CONTENT);
    let r = pay(&app, &buyer, &failed, "pm_card_threeDSecure2Required").await;
    assert_problem(r, StatusCode::PAYMENT_REQUIRED, "payment_declined").await;
    assert_eq!(charge_status(&app, &failed).await, ["declined"]);
    assert_eq!(pay(&app, &buyer, &failed, "pm_card_visa").await.status(), StatusCode::CREATED);
    assert_ledger_clean(&app, id).await;
}

#[tokio::test]
async fn cancelling_an_event_cancels_refunds_releases_and_reports_progress() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, other_org, _) = app.user("organizer").await;
    let (_, alice, _) = app.user("customer").await;
    let (_, bob, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let two = hold(&app, &alice, id, &["A-1", "A-2"]).await;
    assert_eq!(pay(&app, &alice, &two, "pm_card_visa").await.status(), StatusCode::CREATED);
    let one: Value = app.buy(&bob, id, "B-1").await;
    let gone: Value = app.buy(&bob, id, "B-2").await;
    let active = hold(&app, &bob, id, &["B-3"]).await;
    // Bob cancelled one ticket himself before: it is refunded once, not twice.
    let gone_ticket = gone["tickets"][0]["ticket_id"].as_str().unwrap();
    let c: Value =
        app.post(&format!("/tickets/{gone_ticket}/cancel"), Some(&bob), json!({})).await.json().await.unwrap();
    assert_eq!(c["refund_status"], "succeeded");

    let r = app.post(&format!("/events/{id}/cancel"), Some(&other_org), json!({"reason": "x"})).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app.post(&format!("/events/{id}/cancel"), Some(&org), json!({"reason": "  "})).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let r = app.post(&format!("/events/{id}/cancel"), Some(&org), json!({"reason": "Venue flooded", "x": 1})).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let untouched: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tickets WHERE status = 'valid'").fetch_one(&app.db).await.unwrap();
    assert_eq!(untouched, 3, "refused requests change nothing");

    let r = app.post(&format!("/events/{id}/cancel"), Some(&org), json!({"reason": "Venue flooded"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["status"], "cancelled");
    // The route waits a moment for the job; on a busy machine it answers while the job
    // still runs (`in_progress`), and the job finishes on its own.
    let status = out["cancellation"]["status"].as_str().unwrap().to_owned();
    assert!(status == "completed" || status == "in_progress", "{out}");
    let progress = format!("/events/{id}/cancellation");
    let finished: Value = boxoffice_testkit::poll(Duration::from_secs(30), Duration::from_millis(200), || async {
        let c: Value = app.get(&progress, Some(&org)).await.json().await.unwrap();
        if c["status"] == "completed" { Ok(c) } else { Err(c) }
    })
    .await
    .unwrap_or_else(|c| panic!("the cancellation finishes: {c}"));
    let c = &finished;
    assert_eq!(c["status"], "completed", "{out}");
    assert_eq!(c["reason"], "Venue flooded");
    assert_eq!(c["tickets_cancelled"], 4);
    assert_eq!(c["tickets_remaining"], 0);
    assert_eq!(c["holds_active"], 0);
    assert_eq!(c["refunds"]["total"], 4, "{c}");
    assert_eq!(c["refunds"]["succeeded"], 4);
    assert_eq!(c["refunds"]["amount_refunded"], 4 * 12000);

    let v: Value = app.get(&format!("/holds/{active}"), Some(&bob)).await.json().await.unwrap();
    assert_eq!(v["status"], "released", "active holds are released");
    assert_problem(pay(&app, &bob, &active, "pm_card_visa").await, StatusCode::CONFLICT, "sale_closed").await;
    let qr = one["tickets"][0]["qr_token"].as_str().unwrap();
    let ticket = one["tickets"][0]["ticket_id"].as_str().unwrap();
    let r = app.post(&format!("/tickets/{ticket}/validate"), Some(&org), json!({"qr": qr})).await;
    assert_problem(r, StatusCode::CONFLICT, "event_cancelled").await;

    // Idempotent, and the progress is readable by the organizer only.
    let again: Value = app
        .post(&format!("/events/{id}/cancel"), Some(&org), json!({"reason": "Something else"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["cancellation"]["reason"], "Venue flooded");
    assert_eq!(again["cancellation"]["refunds"]["total"], 4);
    let p: Value = app.get(&format!("/events/{id}/cancellation"), Some(&org)).await.json().await.unwrap();
    assert_eq!(p["tickets_cancelled"], 4);
    let r = app.get(&format!("/events/{id}/cancellation"), Some(&alice)).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let outbox: Vec<(String, Value)> =
        sqlx::query_as("SELECT topic, payload FROM outbox WHERE topic = 'event:cancelled'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].1["reason"], "Venue flooded");
    let refunds: i64 = sqlx::query_scalar("SELECT count(*) FROM refunds").fetch_one(&app.db).await.unwrap();
    assert_eq!(refunds, 4, "one refund per paid ticket, the earlier one included once");
    assert_ledger_clean(&app, id).await;
}

#[tokio::test]
async fn the_ledger_check_finds_a_charge_without_tickets_or_refund() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    app.buy(&buyer, id, "A-3").await;
    assert_ledger_clean(&app, id).await;
    // A charge captured long ago that never became tickets or a refund.
    let hold = hold(&app, &buyer, id, &["A-4"]).await;
    sqlx::query(
        "INSERT INTO charges (charge_key, provider, hold_id, event_id, buyer_id, payment_method, amount, currency,
                              provider_ref, status, next_check_at, created_at)
         SELECT 'stranded', 'elsewhere', hold_id, event_id, buyer_id, 'pm_card_visa', amount, 'JPY', 'pi_lost',
                'charged', now() + interval '1 day', now() - interval '1 hour' FROM holds WHERE hold_id = $1",
    )
    .bind(hold.parse::<Uuid>().unwrap())
    .execute(&app.db)
    .await
    .unwrap();
    let r = report::build(&app.db, &TestProvider::new(), Some(id), Duration::from_secs(60)).await.unwrap();
    assert!(!r.is_clean(), "{}", r.render());
    assert_eq!(r.events[0].stranded, 1);
}

// ---- webhooks (Stripe, against localstripe) ----

const WEBHOOK_SECRET: &str = "whsec_boxoffice_money_tests";

async fn stripe_app() -> TestApp {
    let url = localstripe_url();
    let mut settings = vec![
        ("STRIPE_SECRET_KEY", "sk_test_boxoffice"),
        ("STRIPE_API_BASE", url.as_str()),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ];
    settings.extend(FAST_RECONCILER);
    spawn_app_on(fresh_database().await, &settings).await
}

async fn deliver(app: &TestApp, event_id: &str, hold: &str, reference: &str) -> StatusCode {
    let payload = json!({
        "id": event_id, "type": "payment_intent.succeeded",
        "data": {"object": {"id": reference, "object": "payment_intent", "amount": 12000, "amount_received": 12000,
                            "currency": "jpy", "status": "succeeded", "metadata": {"hold_id": hold}}}
    })
    .to_string();
    let signature = sign_webhook_for_tests(WEBHOOK_SECRET, &payload, chrono::Utc::now().timestamp());
    app.client
        .post(format!("{}/payments/stripe/webhook", app.base))
        .header("Stripe-Signature", signature)
        .header("content-type", "application/json")
        .body(payload)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_webhook_that_cannot_be_recorded_at_once_is_not_lost() {
    let app = stripe_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let h = hold(&app, &buyer, id, &["A-1"]).await;

    fail_ticket_writes(&app).await;
    assert_eq!(deliver(&app, "evt_busy_1", &h, "pi_busy_1").await, StatusCode::OK, "stored, then acknowledged");
    assert_eq!(deliver(&app, "evt_busy_1", &h, "pi_busy_1").await, StatusCode::OK, "a redelivery is acknowledged");
    assert_eq!(scalar(&app, "SELECT count(*) FROM tickets WHERE hold_id = $1", &h).await, 0);
    allow_ticket_writes(&app).await;
    eventually("the delivery's sale is recorded", Duration::from_secs(20), || async {
        scalar(&app, "SELECT count(*) FROM tickets WHERE hold_id = $1", &h).await == 1
    })
    .await;
    let (events, charges): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM webhook_events), (SELECT count(*) FROM charges WHERE provider_ref = 'pi_busy_1')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((events, charges), (1, 1), "one delivery, one charge");
    eventually("the charge is completed", Duration::from_secs(10), || async {
        charge_status(&app, &h).await == ["completed"]
    })
    .await;
}

#[tokio::test]
async fn a_stored_delivery_interrupted_by_a_crash_is_processed_by_the_reconciler() {
    let app = stripe_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let h = hold(&app, &buyer, id, &["A-2"]).await;
    // What a process killed between committing the delivery and processing it leaves.
    let kind = json!({"type": "payment_succeeded", "reference": "pi_crash_1", "amount": 12000, "hold_id": h});
    sqlx::query("INSERT INTO webhook_events (provider, event_id, kind, status) VALUES ('stripe', 'evt_crash_1', $1, 'received')")
        .bind(kind)
        .execute(&app.db)
        .await
        .unwrap();
    eventually("the reconciler processes it", Duration::from_secs(20), || async {
        scalar(&app, "SELECT count(*) FROM tickets WHERE hold_id = $1", &h).await == 1
    })
    .await;
    // The delivery is marked processed just after its sale is recorded.
    eventually("the delivery is marked processed", Duration::from_secs(10), || async {
        let status: String = sqlx::query_scalar("SELECT status FROM webhook_events WHERE event_id = 'evt_crash_1'")
            .fetch_one(&app.db)
            .await
            .unwrap();
        status == "processed"
    })
    .await;
    // The provider delivers it again: acknowledged, nothing more.
    assert_eq!(deliver(&app, "evt_crash_1", &h, "pi_crash_1").await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(scalar(&app, "SELECT count(*) FROM tickets WHERE hold_id = $1", &h).await, 1);
}

#[tokio::test]
async fn a_charge_whose_answer_was_lost_is_asked_again_and_completed() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let h = hold(&app, &buyer, id, &["A-10"]).await;
    // What a process killed after recording the intent, while the provider charged the
    // card, leaves: a `started` charge whose outcome nobody recorded.
    sqlx::query(
        "INSERT INTO charges (charge_key, provider, hold_id, event_id, buyer_id, payment_method, amount, currency,
                              status, next_check_at)
         SELECT hold_id || ':pm_card_visa', 'test', hold_id, event_id, buyer_id, 'pm_card_visa', amount, 'JPY',
                'started', now() FROM holds WHERE hold_id = $1",
    )
    .bind(h.parse::<Uuid>().unwrap())
    .execute(&app.db)
    .await
    .unwrap();
    eventually("the reconciler learns the outcome and issues the tickets", Duration::from_secs(20), || async {
        scalar(&app, "SELECT count(*) FROM tickets WHERE hold_id = $1", &h).await == 1
    })
    .await;
    eventually("the charge is completed", Duration::from_secs(10), || async {
        charge_status(&app, &h).await == ["completed"]
    })
    .await;
    // The buyer, told nothing, pays again with the same card: the same charge answers.
    let r = pay(&app, &buyer, &h, "pm_card_visa").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let charges: i64 = sqlx::query_scalar("SELECT count(*) FROM charges").fetch_one(&app.db).await.unwrap();
    assert_eq!(charges, 1);
    assert_ledger_clean(&app, id).await;
}

/// A one-shot purchase of `seats` with `card`.
async fn one_shot(app: &TestApp, buyer: &str, event: Uuid, seats: &[&str], card: &str) -> reqwest::Response {
    let body = json!({"event_id": event, "seats": seats, "payment_method": card});
    app.post("/tickets/purchase", Some(buyer), body).await
}

#[tokio::test]
async fn a_one_shot_buyer_out_of_payment_attempts_holds_nothing() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let (buyer_id, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let cards = ["pm_card_chargeDeclined", "pm_card_chargeDeclinedInsufficientFunds"];
    for i in 0..10 {
        let r = one_shot(&app, &buyer, id, &["A-4"], cards[i % 2]).await;
        assert_problem(r, StatusCode::PAYMENT_REQUIRED, "payment_declined").await;
    }
    let r = one_shot(&app, &buyer, id, &["A-4"], "pm_card_visa").await;
    assert!(r.headers().contains_key("retry-after"));
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "too_many_payment_attempts").await;
    let (holds, active, charges): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'active'), (SELECT count(*) FROM charges)
         FROM holds WHERE buyer_id = $1",
    )
    .bind(buyer_id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((holds, active, charges), (10, 0, 10), "the refused request held no seat and charged nothing");
    // The seat is free for the next buyer.
    let (_, other, _) = app.user("customer").await;
    assert_eq!(one_shot(&app, &other, id, &["A-4"], "pm_card_visa").await.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn card_testing_is_refused_before_it_reaches_the_provider() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let h = hold(&app, &buyer, id, &["B-7"]).await;
    let cards = [
        "pm_card_chargeDeclined",
        "pm_card_chargeDeclinedInsufficientFunds",
        "pm_card_chargeDeclinedLostCard",
        "pm_card_chargeDeclinedStolenCard",
        "pm_card_chargeDeclinedExpiredCard",
    ];
    for card in cards {
        assert_problem(pay(&app, &buyer, &h, card).await, StatusCode::PAYMENT_REQUIRED, "payment_declined").await;
    }
    let r = pay(&app, &buyer, &h, "pm_card_visa").await;
    assert!(r.headers().contains_key("retry-after"));
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "too_many_payment_attempts").await;
    let charges: i64 = sqlx::query_scalar("SELECT count(*) FROM charges").fetch_one(&app.db).await.unwrap();
    assert_eq!(charges, 5, "the refused attempt never reached the provider");
    // Another hold of the same buyer still sells (the buyer's allowance is larger) …
    let other = hold(&app, &buyer, id, &["B-8"]).await;
    assert_eq!(pay(&app, &buyer, &other, "pm_card_visa").await.status(), StatusCode::CREATED);
    // … until the buyer's own allowance is used up too.
    for card in cards {
        let h = hold(&app, &buyer, id, &["B-9"]).await;
        assert_problem(pay(&app, &buyer, &h, card).await, StatusCode::PAYMENT_REQUIRED, "payment_declined").await;
        app.request(reqwest::Method::DELETE, &format!("/holds/{h}"), Some(&buyer), None).await;
    }
    let h = hold(&app, &buyer, id, &["B-10"]).await;
    assert_problem(
        pay(&app, &buyer, &h, "pm_card_visa").await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_payment_attempts",
    )
    .await;
}

#[tokio::test]
async fn the_ledger_check_compares_the_providers_charges_with_the_ledger() {
    let app = stripe_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let sale = app.buy(&buyer, id, "A-1").await;
    let reference = sale["payment_reference"].as_str().unwrap().to_owned();
    let provider = boxoffice::payments::stripe::StripeProvider::new(
        &secrecy::SecretString::from("sk_test_boxoffice"),
        None,
        Some(&localstripe_url()),
    )
    .unwrap();
    let r = report::build(&app.db, &provider, Some(id), Duration::from_secs(60)).await.unwrap();
    assert!(r.provider_checked.is_some_and(|n| n >= 1), "{}", r.render());
    assert!(r.is_clean(), "{}", r.render());
    // A charge the ledger lost: the provider still has it.
    sqlx::query("DELETE FROM charges WHERE provider_ref = $1").bind(&reference).execute(&app.db).await.unwrap();
    let r = report::build(&app.db, &provider, Some(id), Duration::from_secs(60)).await.unwrap();
    assert!(
        r.provider_mismatches.iter().any(|m| m.contains(&reference) && m.contains("unknown to the ledger")),
        "{}",
        r.render()
    );
    assert!(!r.is_clean());
}

#[tokio::test]
async fn card_testing_limits_are_shared_by_every_node_through_redis() {
    let redis = boxoffice_testkit::RedisServer::start().await;
    let db = fresh_database().await;
    let url = redis.url();
    let a = spawn_app_on(db.clone(), &[("REDIS_URL", url.as_str()), ("NODE_ID", "node-a")]).await;
    let b = spawn_app_on(db, &[("REDIS_URL", url.as_str()), ("NODE_ID", "node-b")]).await;
    let (_, org, _) = a.user("organizer").await;
    let (_, buyer, _) = a.user("customer").await;
    let id = a.published_event(&org, None, None).await;
    let h = hold(&a, &buyer, id, &["A-3"]).await;
    for card in [
        "pm_card_chargeDeclined",
        "pm_card_chargeDeclinedInsufficientFunds",
        "pm_card_chargeDeclinedLostCard",
        "pm_card_chargeDeclinedStolenCard",
        "pm_card_chargeDeclinedExpiredCard",
    ] {
        assert_problem(pay(&a, &buyer, &h, card).await, StatusCode::PAYMENT_REQUIRED, "payment_declined").await;
    }
    // The other node has seen none of these failures itself, yet refuses the next attempt.
    let r = pay(&b, &buyer, &h, "pm_card_visa").await;
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "too_many_payment_attempts").await;
}
