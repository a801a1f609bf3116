//! Charges through localstripe: approved, idempotent under retries, declined, invalid.

use super::proxy::IdempotencyProxy;
use super::{SECRET_KEY, charge_request, declined_code, provider};
use axum::http::Method;
use boxoffice::payments::{ChargeRequest, ChargeStatus, PaymentError, PaymentProvider};
use boxoffice_testkit::localstripe_url;

#[tokio::test]
async fn a_visa_charge_succeeds_with_a_payment_intent_reference() {
    let stripe = provider(&localstripe_url());
    assert_eq!(stripe.name(), "stripe");

    let charge = stripe.charge(charge_request("pm_card_visa")).await.unwrap();

    assert_eq!(charge.status, ChargeStatus::Succeeded);
    assert!(charge.reference.starts_with("pi_"), "{}", charge.reference);
    assert_eq!(charge.amount, 5000);
}

#[tokio::test]
async fn the_payment_intent_carries_the_ids_and_the_currency_in_lower_case() {
    let base = localstripe_url();
    let req = charge_request("pm_card_visa");
    let charge = provider(&base).charge(req.clone()).await.unwrap();

    let intent: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/v1/payment_intents/{}", charge.reference))
        .bearer_auth(SECRET_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(intent["currency"], "jpy");
    assert_eq!(intent["amount"], 5000);
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(intent["metadata"]["hold_id"], req.hold_id.to_string());
    assert_eq!(intent["metadata"]["event_id"], req.event_id.to_string());
    assert_eq!(intent["metadata"]["buyer_id"], req.buyer_id.to_string());
}

#[tokio::test]
async fn retrying_a_charge_with_the_same_key_charges_once() {
    let (proxy, base) = IdempotencyProxy::start(localstripe_url()).await;
    let stripe = provider(&base);
    let req = charge_request("pm_card_visa");

    let first = stripe.charge(req.clone()).await.unwrap();
    let retry = stripe.charge(req.clone()).await.unwrap();

    assert_eq!(retry.reference, first.reference);
    assert_eq!(retry.status, ChargeStatus::Succeeded);
    // One PaymentIntent was created, under the hold id.
    assert_eq!(proxy.forwarded(Method::POST, "/v1/payment_intents").await, vec![Some(req.idempotency_key.clone())]);
}

#[tokio::test]
async fn reusing_a_charge_key_with_other_parameters_is_invalid() {
    let (proxy, base) = IdempotencyProxy::start(localstripe_url()).await;
    let stripe = provider(&base);
    let req = charge_request("pm_card_visa");
    stripe.charge(req.clone()).await.unwrap();

    let other_amount = stripe.charge(ChargeRequest { amount: 7000, ..req }).await;

    assert!(
        matches!(&other_amount, Err(PaymentError::Invalid(m)) if m.contains("idempotency key reused")),
        "{other_amount:?}"
    );
    assert_eq!(proxy.forwarded(Method::POST, "/v1/payment_intents").await.len(), 1);
}

#[tokio::test]
async fn a_declining_card_is_declined() {
    let stripe = provider(&localstripe_url());

    let declined = stripe.charge(charge_request("pm_card_chargeCustomerFail")).await;

    assert!(
        matches!(&declined, Err(PaymentError::Declined { code, message })
            if code == "card_declined" && message == "Your card was declined."),
        "{declined:?}"
    );
}

#[tokio::test]
async fn a_payment_method_made_from_a_declining_card_number_is_declined() {
    let base = localstripe_url();
    // What a browser would do with Stripe.js: card data goes to Stripe, never to us.
    let payment_method: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/v1/payment_methods"))
        .bearer_auth(SECRET_KEY)
        .form(&[
            ("type", "card"),
            ("card[number]", "4000000000000341"),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2030"),
            ("card[cvc]", "123"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pm = payment_method["id"].as_str().unwrap();

    let declined = provider(&base).charge(charge_request(pm)).await;

    assert_eq!(declined_code(declined), "card_declined");
}

#[tokio::test]
async fn an_unknown_payment_method_is_invalid() {
    let stripe = provider(&localstripe_url());

    let unknown = stripe.charge(charge_request("pm_does_not_exist")).await;

    assert!(matches!(unknown, Err(PaymentError::Invalid(_))), "{unknown:?}");
}

#[tokio::test]
async fn an_invalid_amount_is_invalid() {
    let stripe = provider(&localstripe_url());

    let zero = stripe.charge(ChargeRequest { amount: 0, ..charge_request("pm_card_visa") }).await;

    assert!(matches!(zero, Err(PaymentError::Invalid(_))), "{zero:?}");
}
