//! Stripe webhooks: signatures verified (and forgeries refused) by the provider, and real
//! deliveries from localstripe.

use super::{SECRET_KEY, WEBHOOK_SECRET, charge_request, declined_code, provider, serve};
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use boxoffice::payments::stripe::{StripeProvider, WEBHOOK_TOLERANCE_SECS, sign_webhook_for_tests};
use boxoffice::payments::{PaymentError, PaymentProvider, WebhookEvent, WebhookKind};
use boxoffice_testkit::localstripe_url;
use secrecy::SecretString;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

/// localstripe waits 1 s before sending a webhook; leave room on a busy machine.
const WEBHOOK_DELIVERY_TIMEOUT: Duration = Duration::from_secs(20);

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn event_payload(kind: &str, object: serde_json::Value) -> String {
    serde_json::json!({
        "id": "evt_1Test", "object": "event", "api_version": "2026-09-30.endive", "created": unix_now(),
        "livemode": false, "type": kind, "data": {"object": object},
    })
    .to_string()
}

fn signed(payload: &str) -> String {
    sign_webhook_for_tests(WEBHOOK_SECRET, payload, unix_now())
}

#[test]
fn a_validly_signed_webhook_parses_each_kind() {
    let stripe = provider("http://127.0.0.1:9");
    let hold = Uuid::new_v4();

    let succeeded = event_payload(
        "payment_intent.succeeded",
        serde_json::json!({"id": "pi_1", "object": "payment_intent", "amount": 5000, "amount_received": 5000,
            "status": "succeeded", "metadata": {"hold_id": hold.to_string()}}),
    );
    assert_eq!(
        stripe.parse_webhook(succeeded.as_bytes(), Some(&signed(&succeeded))).unwrap(),
        WebhookEvent {
            id: "evt_1Test".into(),
            kind: WebhookKind::PaymentSucceeded { reference: "pi_1".into(), amount: 5000, hold_id: Some(hold) },
        }
    );

    let failed = event_payload(
        "payment_intent.payment_failed",
        serde_json::json!({"id": "pi_2", "object": "payment_intent", "amount": 5000, "status": "requires_payment_method",
            "metadata": {"hold_id": hold.to_string()},
            "last_payment_error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds."}}),
    );
    assert_eq!(
        stripe.parse_webhook(failed.as_bytes(), Some(&signed(&failed))).unwrap().kind,
        WebhookKind::PaymentFailed {
            reference: "pi_2".into(),
            reason: "Your card has insufficient funds.".into(),
            hold_id: Some(hold),
        }
    );

    let refunded = event_payload(
        "charge.refunded",
        serde_json::json!({"id": "ch_3", "object": "charge", "amount": 5000, "amount_refunded": 5000,
            "payment_intent": "pi_3", "refunded": true}),
    );
    assert_eq!(
        stripe.parse_webhook(refunded.as_bytes(), Some(&signed(&refunded))).unwrap().kind,
        WebhookKind::Refunded { reference: "pi_3".into(), amount_refunded: 5000 }
    );

    let other = event_payload("balance.available", serde_json::json!({"object": "balance"}));
    assert_eq!(
        stripe.parse_webhook(other.as_bytes(), Some(&signed(&other))).unwrap().kind,
        WebhookKind::Other { name: "balance.available".into() }
    );
}

#[test]
fn a_webhook_that_does_not_verify_is_refused() {
    let stripe = provider("http://127.0.0.1:9");
    let payload = event_payload("payment_intent.succeeded", serde_json::json!({"id": "pi_1", "amount": 5000}));
    let now = unix_now();
    let valid = sign_webhook_for_tests(WEBHOOK_SECRET, &payload, now);
    assert!(stripe.parse_webhook(payload.as_bytes(), Some(&valid)).is_ok());

    let tampered = payload.replace("5000", "1");
    let wrong_secret = sign_webhook_for_tests("whsec_someone_else", &payload, now);
    let stale = sign_webhook_for_tests(WEBHOOK_SECRET, &payload, now - WEBHOOK_TOLERANCE_SECS - 60);
    let cases: [(&str, &[u8], Option<&str>); 6] = [
        ("tampered payload", tampered.as_bytes(), Some(&valid)),
        ("wrong secret", payload.as_bytes(), Some(&wrong_secret)),
        ("stale timestamp", payload.as_bytes(), Some(&stale)),
        ("missing header", payload.as_bytes(), None),
        ("garbage header", payload.as_bytes(), Some("t=now,v1=signature")),
        ("empty header", payload.as_bytes(), Some("")),
    ];
    for (case, payload, header) in cases {
        let result = stripe.parse_webhook(payload, header);
        assert!(matches!(result, Err(PaymentError::BadSignature(_))), "{case}: {result:?}");
    }

    let no_secret = StripeProvider::new(&SecretString::from(SECRET_KEY), None, Some("http://127.0.0.1:9")).unwrap();
    let result = no_secret.parse_webhook(payload.as_bytes(), Some(&valid));
    assert!(matches!(result, Err(PaymentError::BadSignature(_))), "no secret: {result:?}");
}

/// An endpoint registered with localstripe, receiving its deliveries.
struct WebhookEndpoint {
    id: String,
    deliveries: mpsc::UnboundedReceiver<(Option<String>, Bytes)>,
}

impl WebhookEndpoint {
    async fn register(base: &str, events: &[&str]) -> Self {
        let (tx, deliveries) = mpsc::unbounded_channel();
        let router = Router::new().route(
            "/webhook",
            post(move |headers: HeaderMap, body: Bytes| async move {
                let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let _ = tx.send((signature, body));
                StatusCode::OK
            }),
        );
        let addr = serve(router).await;
        let id = format!("boxoffice-test-{}", Uuid::new_v4());
        let mut form = vec![("url", format!("http://{addr}/webhook")), ("secret", WEBHOOK_SECRET.to_owned())];
        form.extend(events.iter().map(|event| ("events[]", (*event).to_owned())));
        let response =
            reqwest::Client::new().post(format!("{base}/_config/webhooks/{id}")).form(&form).send().await.unwrap();
        assert!(response.status().is_success(), "registering the webhook: {}", response.status());
        Self { id, deliveries }
    }

    /// Stops deliveries to this endpoint: localstripe cannot forget one, but an
    /// event filter matching nothing silences it.
    async fn unregister(&self, base: &str) {
        let form = [("url", "http://127.0.0.1:9/"), ("secret", "unused"), ("events[]", "none.none")];
        let _ = reqwest::Client::new().post(format!("{base}/_config/webhooks/{}", self.id)).form(&form).send().await;
    }

    /// The first delivery `stripe` verifies and `wanted` accepts; deliveries for
    /// other tests' payments are skipped.
    async fn wait_for(
        &mut self,
        stripe: &StripeProvider,
        wanted: impl Fn(&WebhookKind) -> bool,
    ) -> Result<WebhookEvent, String> {
        let deadline = tokio::time::Instant::now() + WEBHOOK_DELIVERY_TIMEOUT;
        loop {
            let Ok(Some((signature, body))) = tokio::time::timeout_at(deadline, self.deliveries.recv()).await else {
                return Err(format!("no matching webhook within {WEBHOOK_DELIVERY_TIMEOUT:?}"));
            };
            let event = stripe
                .parse_webhook(&body, signature.as_deref())
                .map_err(|err| format!("a delivery was refused: {err} ({signature:?})"))?;
            if wanted(&event.kind) {
                return Ok(event);
            }
        }
    }
}

#[tokio::test]
async fn localstripe_delivers_webhooks_that_verify() {
    let base = localstripe_url();
    let stripe = provider(&base);
    let mut endpoint =
        WebhookEndpoint::register(&base, &["payment_intent.succeeded", "payment_intent.payment_failed"]).await;

    let paid = charge_request("pm_card_visa");
    let charge = stripe.charge(paid.clone()).await.unwrap();
    let succeeded = endpoint
        .wait_for(
            &stripe,
            |kind| matches!(kind, WebhookKind::PaymentSucceeded { reference, .. } if *reference == charge.reference),
        )
        .await;

    let refused = charge_request("pm_card_chargeCustomerFail");
    let declined = stripe.charge(refused.clone()).await;
    let failed = endpoint
        .wait_for(
            &stripe,
            |kind| matches!(kind, WebhookKind::PaymentFailed { hold_id, .. } if *hold_id == Some(refused.hold_id)),
        )
        .await;
    endpoint.unregister(&base).await;

    let succeeded = succeeded.unwrap();
    assert!(succeeded.id.starts_with("evt_"), "{}", succeeded.id);
    assert_eq!(
        succeeded.kind,
        WebhookKind::PaymentSucceeded {
            reference: charge.reference.clone(),
            amount: 5000,
            hold_id: Some(paid.hold_id)
        }
    );
    assert_eq!(declined_code(declined), "card_declined");
    match failed.unwrap().kind {
        WebhookKind::PaymentFailed { reference, reason, .. } => {
            assert!(reference.starts_with("pi_"), "{reference}");
            assert_eq!(reason, "Your card was declined.");
        }
        other => panic!("expected a payment failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_provider_with_another_secret_refuses_localstripes_webhooks() {
    let base = localstripe_url();
    let mut endpoint = WebhookEndpoint::register(&base, &["payment_intent.succeeded"]).await;
    let charge = provider(&base).charge(charge_request("pm_card_visa")).await.unwrap();
    let other_secret = StripeProvider::new(
        &SecretString::from(SECRET_KEY),
        Some(SecretString::from("whsec_not_the_endpoints")),
        Some(&base),
    )
    .unwrap();

    // Read raw deliveries until ours arrives, then check it does not verify.
    let deadline = tokio::time::Instant::now() + WEBHOOK_DELIVERY_TIMEOUT;
    let delivery = loop {
        match tokio::time::timeout_at(deadline, endpoint.deliveries.recv()).await {
            Ok(Some((signature, body))) if String::from_utf8_lossy(&body).contains(&charge.reference) => {
                break Some((signature, body));
            }
            Ok(Some(_)) => continue,
            _ => break None,
        }
    };
    endpoint.unregister(&base).await;

    let (signature, body) = delivery.expect("localstripe delivered the event");
    let result = other_secret.parse_webhook(&body, signature.as_deref());
    assert!(matches!(result, Err(PaymentError::BadSignature(_))), "{result:?}");
    assert!(provider(&base).parse_webhook(&body, signature.as_deref()).is_ok());
}
