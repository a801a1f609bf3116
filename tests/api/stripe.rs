//! The service configured for Stripe, against localstripe: purchases, declines and refunds
//! through Stripe, and its webhooks (signed, forged, redelivered, and real ones from localstripe).

use boxoffice::payments::stripe::sign_webhook_for_tests;
use boxoffice_testkit::{TestApp, assert_problem, fresh_database, localstripe_url, poll, spawn_app_on};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const WEBHOOK_SECRET: &str = "whsec_boxoffice_api_tests";

async fn spawn_stripe_app() -> TestApp {
    let url = localstripe_url();
    spawn_app_on(
        fresh_database().await,
        &[
            ("STRIPE_SECRET_KEY", "sk_test_boxoffice"),
            ("STRIPE_API_BASE", &url),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
    )
    .await
}

async fn post_webhook(app: &TestApp, payload: &str, signature: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/payments/stripe/webhook", app.base))
        .header("Stripe-Signature", signature)
        .header("content-type", "application/json")
        .body(payload.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn stripe_purchase_decline_and_refund() {
    let app = spawn_stripe_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let r = app
        .post(
            "/tickets/purchase",
            Some(&buyer),
            json!({"event_id": id, "seat_number": "A-1", "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let sale: Value = r.json().await.unwrap();
    assert_eq!(sale["payment_provider"], "stripe");
    let reference = sale["payment_reference"].as_str().unwrap().to_owned();
    assert!(reference.starts_with("pi_"), "{reference}");
    let stored: (String, String, i64) =
        sqlx::query_as("SELECT provider, provider_ref, amount FROM payments").fetch_one(&app.db).await.unwrap();
    assert_eq!(stored, ("stripe".into(), reference.clone(), 12000));

    let r = app
        .post(
            "/tickets/purchase",
            Some(&buyer),
            json!({"event_id": id, "seat_number": "A-2", "payment_method": "pm_card_chargeCustomerFail"}),
        )
        .await;
    assert_problem(r, StatusCode::PAYMENT_REQUIRED, "payment_declined").await;
    let sold: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets").fetch_one(&app.db).await.unwrap();
    assert_eq!(sold, 1);

    let ticket = sale["tickets"][0]["ticket_id"].as_str().unwrap();
    let c: Value = app.post(&format!("/tickets/{ticket}/cancel"), Some(&buyer), json!({})).await.json().await.unwrap();
    assert_eq!(c["refund_status"], "succeeded", "{c}");
    let refund: (String, String) =
        sqlx::query_as("SELECT status, payment_ref FROM refunds").fetch_one(&app.db).await.unwrap();
    assert_eq!(refund, ("succeeded".into(), reference));
}

#[tokio::test]
async fn a_signed_webhook_completes_a_sale_once_even_when_delivered_twice() {
    let app = spawn_stripe_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let hold: Value =
        app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"seats": ["B-5"]})).await.json().await.unwrap();
    let hold_id = hold["hold_id"].as_str().unwrap();

    // The payment was confirmed asynchronously (e.g. after 3-D Secure): only the webhook tells us.
    let payload = json!({
        "id": "evt_async_1", "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_async_1", "object": "payment_intent", "amount": 12000, "amount_received": 12000,
                            "currency": "jpy", "status": "succeeded", "metadata": {"hold_id": hold_id}}}
    })
    .to_string();
    let now = chrono::Utc::now().timestamp();
    let signature = sign_webhook_for_tests(WEBHOOK_SECRET, &payload, now);
    assert_eq!(post_webhook(&app, &payload, &signature).await.status(), StatusCode::OK);
    assert_eq!(post_webhook(&app, &payload, &signature).await.status(), StatusCode::OK, "a redelivery is acknowledged");
    let v: Value = app.get(&format!("/holds/{hold_id}"), Some(&buyer)).await.json().await.unwrap();
    assert_eq!(v["status"], "purchased");
    let counts: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tickets), (SELECT count(*) FROM payments WHERE provider_ref = 'pi_async_1'), (SELECT count(*) FROM webhook_events)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(counts, (1, 1, 1), "processed once");

    // Forged or tampered deliveries change nothing.
    let forged = sign_webhook_for_tests("whsec_someone_else", &payload, now);
    assert_problem(post_webhook(&app, &payload, &forged).await, StatusCode::BAD_REQUEST, "bad_signature").await;
    let tampered = payload.replace("12000", "1");
    assert_problem(post_webhook(&app, &tampered, &signature).await, StatusCode::BAD_REQUEST, "bad_signature").await;
    let stale = sign_webhook_for_tests(WEBHOOK_SECRET, &payload, now - 3600);
    assert_problem(post_webhook(&app, &payload, &stale).await, StatusCode::BAD_REQUEST, "bad_signature").await;
    let r =
        app.client.post(format!("{}/payments/stripe/webhook", app.base)).body(payload.clone()).send().await.unwrap();
    assert_problem(r, StatusCode::BAD_REQUEST, "bad_signature").await;
}

#[tokio::test]
async fn localstripe_delivers_a_real_webhook_that_is_processed() {
    let app = spawn_stripe_app().await;
    // Register our endpoint with localstripe (its registrations are process-wide).
    let hook_id = format!("boxoffice_{}", uuid::Uuid::new_v4().simple());
    let r = app
        .client
        .post(format!("{}/_config/webhooks/{hook_id}", localstripe_url()))
        .form(&[("url", format!("{}/payments/stripe/webhook", app.base)), ("secret", WEBHOOK_SECRET.to_owned())])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "register webhook: {}", r.status());
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let r = app
        .post(
            "/tickets/purchase",
            Some(&buyer),
            json!({"event_id": id, "seat_number": "A-9", "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let arrived = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events").fetch_one(&app.db).await.unwrap();
        if n > 0 { Ok(()) } else { Err(()) }
    };
    poll(Duration::from_secs(20), Duration::from_millis(200), arrived)
        .await
        .unwrap_or_else(|()| panic!("localstripe's webhook never arrived"));
    let tickets: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets").fetch_one(&app.db).await.unwrap();
    assert_eq!(tickets, 1, "the webhook for an already recorded sale issues nothing more");
    // Silence our endpoint for the rest of the run (registrations cannot be removed).
    let _ = app
        .client
        .post(format!("{}/_config/webhooks/{hook_id}", localstripe_url()))
        .form(&[
            ("url", "http://127.0.0.1:9/".to_owned()),
            ("secret", WEBHOOK_SECRET.to_owned()),
            ("events[]", "none.none".to_owned()),
        ])
        .send()
        .await;
}

/// `Stripe-Signature` with 100,000 `v1=` entries of the realistic shape (64 hex digits,
/// ~6.8 MB): refused with 400 `bad_signature` by its length, before any HMAC, and the server
/// stays responsive. The time is printed, not asserted.
#[tokio::test]
async fn a_webhook_with_100k_signatures_is_refused_at_once() {
    let app = spawn_stripe_app().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let entry = format!("v1={}", "0123456789abcdef".repeat(4));
    let mut signature = format!("t={now}");
    for _ in 0..100_000 {
        signature.push(',');
        signature.push_str(&entry);
    }
    let payload = serde_json::json!({"id": "evt_flood", "type": "payment_intent.succeeded"}).to_string();
    let started = std::time::Instant::now();
    let r = post_webhook(&app, &payload, &signature).await;
    let took = started.elapsed();
    println!("a {}-byte Stripe-Signature (100,000 v1 entries) answered {} in {took:?}", signature.len(), r.status());
    assert_problem(r, StatusCode::BAD_REQUEST, "bad_signature").await;
    let started = std::time::Instant::now();
    let r = app.get("/healthz", None).await;
    println!("/healthz afterwards: {} in {:?}", r.status(), started.elapsed());
    assert_eq!(r.status(), StatusCode::OK);
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events").fetch_one(&app.db).await.unwrap();
    assert_eq!(seen, 0, "nothing recorded");
    app.stop().await;
}
