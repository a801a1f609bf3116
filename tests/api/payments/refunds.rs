//! Refunds through localstripe: in part or in full, idempotent under retries, of unknown
//! payments.

use super::proxy::IdempotencyProxy;
use super::{charge_request, provider, refund_request};
use axum::http::Method;
use boxoffice::payments::{PaymentError, PaymentProvider};
use boxoffice_testkit::localstripe_url;

#[tokio::test]
async fn a_charge_can_be_refunded_in_part_or_in_full() {
    let stripe = provider(&localstripe_url());
    let partly = stripe.charge(charge_request("pm_card_visa")).await.unwrap();
    let fully = stripe.charge(charge_request("pm_card_visa")).await.unwrap();

    let part = stripe.refund(refund_request(&partly.reference, Some(1500))).await.unwrap();
    let full = stripe.refund(refund_request(&fully.reference, None)).await.unwrap();

    assert!(part.reference.starts_with("re_"), "{}", part.reference);
    assert_eq!(part.amount, 1500);
    assert!(full.reference.starts_with("re_"), "{}", full.reference);
    assert_eq!(full.amount, 5000);
    assert_ne!(part.reference, full.reference);
}

#[tokio::test]
async fn retrying_a_refund_with_the_same_key_refunds_once() {
    let (proxy, base) = IdempotencyProxy::start(localstripe_url()).await;
    let stripe = provider(&base);
    let charge = stripe.charge(charge_request("pm_card_visa")).await.unwrap();
    let req = refund_request(&charge.reference, Some(2000));

    let first = stripe.refund(req.clone()).await.unwrap();
    let retry = stripe.refund(req.clone()).await.unwrap();

    assert_eq!((retry.reference.as_str(), retry.amount), (first.reference.as_str(), 2000));
    assert_eq!(proxy.forwarded(Method::POST, "/v1/refunds").await, vec![Some(req.idempotency_key)]);
}

#[tokio::test]
async fn refunding_an_unknown_payment_is_invalid() {
    let stripe = provider(&localstripe_url());

    let refund = stripe.refund(refund_request("pi_does_not_exist", None)).await;

    assert!(matches!(refund, Err(PaymentError::Invalid(_))), "{refund:?}");
}
