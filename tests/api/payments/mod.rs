//! The Stripe provider (`boxoffice::payments::stripe`, no server) against localstripe, a
//! stateful fake of the Stripe API, and against tiny canned servers for the answers
//! localstripe cannot give. This file: the arrangements the tests share.
//!
//! localstripe comes from `BOXOFFICE_TEST_STRIPE_URL` (set by scripts/test.sh); without it
//! the first test that needs it starts one (`boxoffice_testkit::localstripe_url`). If none can
//! be found or started, those tests fail: they never skip.
//!
//! localstripe 1.15 quirks, found reading its source and checked here:
//! - **No idempotency.** It ignores `Idempotency-Key`: the same request twice
//!   makes two PaymentIntents. The idempotency tests therefore put
//!   [`IdempotencyProxy`] in front of it, which replays as Stripe does (the
//!   answer of the first request for a key; `idempotency_error` if the
//!   parameters differ), and check the provider sends the key and that only one
//!   request reached localstripe.
//! - **Strict parameters.** Any unknown parameter is `400 Unexpected ...`: it
//!   accepts neither `automatic_payment_methods` nor the
//!   `allowed_payment_method_types` Stripe's current API wants (the provider
//!   leaves it out when `api_base` is set), and knows only a few test tokens:
//!   `pm_card_visa` succeeds; `pm_card_chargeCustomerFail` (card
//!   4000000000000341) is declined with HTTP 402, but with error type
//!   `invalid_request_error` (Stripe says `card_error`) and code `card_declined`,
//!   without a `decline_code`; `pm_card_chargeDeclined`, `pm_card_mastercard`
//!   and other tokens are unknown (404, so `Invalid`); `pm_card_visa_chargeDeclined`
//!   *succeeds* for a PaymentIntent (localstripe only declines it when attached to
//!   a customer). Other declined cards can be made with `POST /v1/payment_methods`
//!   and the numbers 4000000000000341, 4000008260003178 or 4000008400001629.
//! - **Thin objects.** A PaymentIntent has no `amount_received`,
//!   `payment_method_types` or `confirmation_method`: async-stripe's typed
//!   `PaymentIntent` cannot deserialize it, which is one reason the provider
//!   reads answers as plain JSON.
//! - **Refunds are not checked.** It refunds more than was charged, and a refund
//!   without an amount refunds the whole charge even after partial refunds.
//! - **Webhooks.** `POST /_config/webhooks/{id}` (form: `url`, `secret`,
//!   optional `events[]`) registers an endpoint for the whole server, for all
//!   later events, and there is no way to remove one (re-registering the id
//!   with an event filter that matches nothing silences it). Events are sent
//!   one second after they happen, signed like Stripe's (`t=<event.created>,
//!   v1=<HMAC-SHA256>`), for `payment_intent.succeeded` and
//!   `payment_intent.payment_failed` among others, but never `charge.refunded`.
//!   Endpoints of concurrent tests receive each other's events: filter on ids.

mod charges;
mod outages;
mod proxy;
mod refunds;
mod webhooks;

use axum::Router;
use boxoffice::payments::stripe::StripeProvider;
use boxoffice::payments::{Charge, ChargeRequest, PaymentError, RefundRequest};
use secrecy::SecretString;
use std::net::{Ipv4Addr, SocketAddr};
use uuid::Uuid;

/// Any `sk_` key: localstripe checks only the prefix.
const SECRET_KEY: &str = "sk_test_boxoffice";
const WEBHOOK_SECRET: &str = "whsec_boxoffice_test";

fn provider(api_base: &str) -> StripeProvider {
    StripeProvider::new(&SecretString::from(SECRET_KEY), Some(SecretString::from(WEBHOOK_SECRET)), Some(api_base))
        .expect("valid configuration")
}

/// A charge for a fresh hold, keyed on the hold id as the purchase flow does.
fn charge_request(payment_method: &str) -> ChargeRequest {
    let hold_id = Uuid::new_v4();
    ChargeRequest {
        idempotency_key: hold_id.to_string(),
        amount: 5000,
        currency: "JPY".into(),
        payment_method: payment_method.into(),
        hold_id,
        event_id: Uuid::new_v4(),
        buyer_id: Uuid::new_v4(),
    }
}

fn refund_request(reference: &str, amount: Option<i64>) -> RefundRequest {
    RefundRequest { idempotency_key: format!("refund-{}", Uuid::new_v4()), reference: reference.into(), amount }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn declined_code(result: Result<Charge, PaymentError>) -> String {
    match result {
        Err(PaymentError::Declined { code, .. }) => code,
        other => panic!("expected a decline, got {other:?}"),
    }
}
