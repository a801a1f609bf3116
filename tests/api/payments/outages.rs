//! Stripe unreachable, silent, or answering errors localstripe never gives: the provider
//! reports each as the right payment error, at once.

use super::{charge_request, declined_code, provider, refund_request, serve};
use axum::Router;
use axum::http::StatusCode;
use boxoffice::payments::{ChargeStatus, PaymentError, PaymentProvider};
use boxoffice_testkit::free_port;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// A port nothing listens on (bound, then released).
fn closed_port_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// A server answering every request with `status` and `body` (Stripe's shapes
/// for what localstripe never says).
async fn canned_stripe(status: u16, body: &'static str) -> String {
    let status = StatusCode::from_u16(status).unwrap();
    let router = Router::new().fallback(move || async move { (status, body) });
    format!("http://{}", serve(router).await)
}

#[tokio::test]
async fn an_unreachable_stripe_is_unavailable_at_once() {
    let stripe = provider(&closed_port_url());
    let started = Instant::now();

    let charge = stripe.charge(charge_request("pm_card_visa")).await;
    let refund = stripe.refund(refund_request("pi_123", None)).await;

    assert!(matches!(charge, Err(PaymentError::Unavailable(_))), "{charge:?}");
    assert!(matches!(refund, Err(PaymentError::Unavailable(_))), "{refund:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_silent_stripe_times_out_as_unavailable() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let stripe = provider(&base).with_timeout(Duration::from_millis(300));
    let started = Instant::now();

    let charge = stripe.charge(charge_request("pm_card_visa")).await;

    assert!(matches!(charge, Err(PaymentError::Unavailable(_))), "{charge:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn stripes_error_answers_map_to_payment_errors() {
    const CARD_ERROR: &str = r#"{"error": {"type": "card_error", "code": "card_declined",
        "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}}"#;
    const RATE_LIMITED: &str = r#"{"error": {"type": "invalid_request_error", "code": "rate_limit",
        "message": "Too many requests"}}"#;
    const API_ERROR: &str = r#"{"error": {"type": "api_error", "message": "Something went wrong"}}"#;
    const BAD_KEY: &str = r#"{"error": {"type": "invalid_request_error",
        "message": "Invalid API Key provided: sk_test_****doff"}}"#;
    const IN_USE: &str = r#"{"error": {"type": "idempotency_error", "code": "idempotency_key_in_use",
        "message": "There is currently another in-progress request using this Idempotent Key"}}"#;

    let declined = provider(&canned_stripe(402, CARD_ERROR).await).charge(charge_request("pm_card_visa")).await;
    assert_eq!(declined_code(declined), "insufficient_funds");

    for (status, body) in
        [(429, RATE_LIMITED), (500, API_ERROR), (401, BAD_KEY), (409, IN_USE), (502, "<html>bad gateway</html>")]
    {
        let result = provider(&canned_stripe(status, body).await).charge(charge_request("pm_card_visa")).await;
        assert!(matches!(&result, Err(PaymentError::Unavailable(m)) if !m.contains("sk_")), "{status}: {result:?}");
    }
}

#[tokio::test]
async fn a_payment_intent_waiting_for_3d_secure_is_pending() {
    // Trimmed from a real Stripe answer to a confirmation that needs 3-D Secure.
    const REQUIRES_ACTION: &str = r#"{"id": "pi_3Pending", "object": "payment_intent", "amount": 5000,
        "amount_received": 0, "currency": "jpy", "status": "requires_action",
        "next_action": {"type": "use_stripe_sdk"}, "payment_method_types": ["card"], "livemode": false}"#;

    let charge =
        provider(&canned_stripe(200, REQUIRES_ACTION).await).charge(charge_request("pm_card_visa")).await.unwrap();

    assert_eq!(charge.status, ChargeStatus::Pending);
    assert_eq!((charge.reference.as_str(), charge.amount), ("pi_3Pending", 5000));
}
