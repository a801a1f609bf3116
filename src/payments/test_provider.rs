//! The built-in test payment provider, used when no `STRIPE_SECRET_KEY` is
//! configured: in memory, deterministic, and shaped like Stripe's test mode so
//! the same client code and the same test tokens work against both.
//!
//! - `pm_card_visa`, `pm_card_visa_debit`, `pm_card_mastercard`, `pm_card_amex`
//!   succeed at once;
//! - `pm_card_chargeDeclined` and its variants (`...InsufficientFunds`,
//!   `...ExpiredCard`, ...) are declined with Stripe's code;
//! - `pm_card_threeDSecure2Required` needs 3-D Secure: the charge is pending,
//!   with a `client_secret`, until [`TestProvider::authenticate`] decides it
//!   (Stripe test mode's "complete / fail authentication" page);
//! - `pm_card_refundFailsThrice` charges at once, but the first three refund
//!   attempts on it find the provider unavailable (to exercise refund retries);
//! - any other `pm_...` is an unknown payment method, and anything else is not a
//!   payment method id at all (both [`PaymentError::Invalid`]).
//!
//! **Guarantees** (the ones Stripe gives, see docs/domain.md, "Orders and payments"): a charge or refund
//! retried with the same idempotency key answers the first result, declines
//! included, and never moves money twice; reusing a key with other parameters is
//! refused, as Stripe refuses it. Refunds never exceed what was charged. The
//! state lives as long as the provider: a restart forgets it (references are
//! derived from the idempotency key, so a retry after a restart still gets the
//! same reference).

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    Charge, ChargeRequest, ChargeStatus, PaymentError, PaymentFuture, PaymentProvider, Refund, RefundRequest,
    WebhookEvent,
};

/// Stripe's limit on an idempotency key's length.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Hex digits of the key's SHA-256 kept in a reference (96 bits: collisions are
/// not a concern for an in-memory test provider).
const REFERENCE_HASH_HEX_LEN: usize = 24;

/// Payment methods that succeed.
const APPROVED: &[&str] =
    &["pm_card_visa", "pm_card_visa_debit", "pm_card_mastercard", "pm_card_amex", REFUND_FAILS_THRICE];

/// Needs the buyer to authenticate (3-D Secure) before it succeeds.
const THREE_D_SECURE: &str = "pm_card_threeDSecure2Required";

/// Succeeds; its refunds fail (provider unavailable) three times first.
const REFUND_FAILS_THRICE: &str = "pm_card_refundFailsThrice";

/// Payment methods that are declined: `(id, Stripe decline code, message)`.
const DECLINED: &[(&str, &str, &str)] = &[
    ("pm_card_chargeDeclined", "card_declined", "Your card was declined."),
    ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds", "Your card has insufficient funds."),
    ("pm_card_chargeDeclinedLostCard", "lost_card", "Your card was declined."),
    ("pm_card_chargeDeclinedStolenCard", "stolen_card", "Your card was declined."),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "Your card has expired."),
    ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "Your card's security code is incorrect."),
    ("pm_card_chargeDeclinedProcessingError", "processing_error", "An error occurred while processing your card."),
    ("pm_card_chargeDeclinedFraudulent", "fraudulent", "Your card was declined."),
];

const KEY_REUSED: &str = "idempotency key reused with different parameters";

/// The in-memory payment provider. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct TestProvider {
    /// A std `Mutex`, not tokio's: it is held only for a few map operations and
    /// never across an `.await`, and holding it for the whole
    /// check-then-record makes every call atomic.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Idempotency key → the parameters and the first answer (success or decline).
    charges_by_key: HashMap<String, (ChargeParams, Result<Charge, PaymentError>)>,
    /// Charge reference → what it captured and what has been refunded since.
    captured: HashMap<String, Captured>,
    /// Idempotency key → the parameters and the refund made.
    refunds_by_key: HashMap<String, (RefundParams, Refund)>,
    /// Charge reference → a 3-D Secure charge not decided yet.
    awaiting: HashMap<String, AwaitingAuthentication>,
    /// Charge reference → why a 3-D Secure charge failed.
    failed: HashMap<String, String>,
}

/// What identifies a charge request, to detect a key reused for another one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChargeParams {
    amount: i64,
    currency: String,
    payment_method: String,
    hold_id: Uuid,
    event_id: Uuid,
    buyer_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RefundParams {
    reference: String,
    amount: Option<i64>,
}

#[derive(Debug)]
struct Captured {
    amount: i64,
    refunded: i64,
    /// Refund attempts still to fail (see `REFUND_FAILS_THRICE`).
    refund_failures_left: u32,
}

/// A 3-D Secure charge waiting for the buyer.
#[derive(Debug)]
struct AwaitingAuthentication {
    amount: i64,
    payment_method: String,
}

impl TestProvider {
    pub fn new() -> Self {
        Self::default()
    }

    fn charge_now(&self, req: ChargeRequest) -> Result<Charge, PaymentError> {
        check_idempotency_key(&req.idempotency_key)?;
        let params = ChargeParams {
            amount: req.amount,
            currency: req.currency,
            payment_method: req.payment_method,
            hold_id: req.hold_id,
            event_id: req.event_id,
            buyer_id: req.buyer_id,
        };
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((first, answer)) = state.charges_by_key.get(&req.idempotency_key) {
            return if *first == params { answer.clone() } else { Err(PaymentError::Invalid(KEY_REUSED.into())) };
        }
        // Like Stripe, a request that fails validation is not recorded: fixing it
        // and retrying with the same key is allowed.
        validate_charge(&params)?;
        let reference = derive_reference("pi_test_", &req.idempotency_key);
        let answer = authorize(&params.payment_method).map(|()| {
            if params.payment_method == THREE_D_SECURE {
                Charge {
                    client_secret: Some(format!("{reference}_secret_test")),
                    next_action: Some(serde_json::json!({"type": "use_stripe_sdk"})),
                    reference: reference.clone(),
                    status: ChargeStatus::Pending,
                    amount: params.amount,
                }
            } else {
                Charge::succeeded(reference.clone(), params.amount)
            }
        });
        match &answer {
            Ok(charge) if charge.status == ChargeStatus::Pending => {
                let waiting =
                    AwaitingAuthentication { amount: params.amount, payment_method: params.payment_method.clone() };
                state.awaiting.insert(reference, waiting);
            }
            Ok(_) => {
                let refund_failures_left = if params.payment_method == REFUND_FAILS_THRICE { 3 } else { 0 };
                state.captured.insert(reference, Captured { amount: params.amount, refunded: 0, refund_failures_left });
            }
            Err(_) => {}
        }
        state.charges_by_key.insert(req.idempotency_key, (params, answer.clone()));
        answer
    }

    fn refund_now(&self, req: RefundRequest) -> Result<Refund, PaymentError> {
        check_idempotency_key(&req.idempotency_key)?;
        let params = RefundParams { reference: req.reference, amount: req.amount };
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((first, refund)) = state.refunds_by_key.get(&req.idempotency_key) {
            return if *first == params { Ok(refund.clone()) } else { Err(PaymentError::Invalid(KEY_REUSED.into())) };
        }
        if !state.captured.contains_key(&params.reference) {
            match params.amount {
                // Charged before this provider's memory began (a restart): how much
                // is not known, so each refund is taken as asked.
                Some(_)
                    if params.reference.starts_with("pi_test_") && !state.awaiting.contains_key(&params.reference) =>
                {
                    let forgotten = Captured { amount: i64::MAX, refunded: 0, refund_failures_left: 0 };
                    state.captured.insert(params.reference.clone(), forgotten);
                }
                _ => return Err(PaymentError::Invalid(format!("no such charge: {}", params.reference))),
            }
        }
        let captured = state.captured.get_mut(&params.reference).expect("inserted above");
        if captured.refund_failures_left > 0 {
            captured.refund_failures_left -= 1;
            return Err(PaymentError::Unavailable("the test provider is failing refunds on this charge".into()));
        }
        let remaining = captured.amount - captured.refunded;
        let amount = match params.amount {
            Some(amount) if amount <= 0 => {
                return Err(PaymentError::Invalid("the refund amount must be positive".into()));
            }
            Some(amount) if amount > remaining => {
                return Err(PaymentError::Invalid(format!(
                    "refund amount {amount} exceeds the {remaining} left to refund on {}",
                    params.reference
                )));
            }
            Some(amount) => amount,
            None if remaining == 0 => {
                return Err(PaymentError::Invalid(format!("charge {} is already fully refunded", params.reference)));
            }
            None => remaining,
        };
        captured.refunded += amount;
        let refund = Refund { reference: derive_reference("re_test_", &req.idempotency_key), amount };
        state.refunds_by_key.insert(req.idempotency_key, (params, refund.clone()));
        Ok(refund)
    }
}

impl TestProvider {
    /// Where a charge stands.
    fn retrieve_now(&self, reference: &str) -> Result<Charge, PaymentError> {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(c) = state.captured.get(reference) {
            return Ok(Charge::succeeded(reference.to_owned(), c.amount));
        }
        if let Some(w) = state.awaiting.get(reference) {
            return Ok(Charge {
                reference: reference.to_owned(),
                status: ChargeStatus::Pending,
                amount: w.amount,
                client_secret: Some(format!("{reference}_secret_test")),
                next_action: Some(serde_json::json!({"type": "use_stripe_sdk"})),
            });
        }
        if let Some(reason) = state.failed.get(reference) {
            return Err(PaymentError::Declined { code: "authentication_failed".into(), message: reason.clone() });
        }
        Err(PaymentError::Invalid(format!("no such charge: {reference}")))
    }

    /// The buyer completes (`approve`) or fails 3-D Secure for a pending charge.
    /// Returns whether there was such a charge waiting.
    pub fn authenticate(&self, reference: &str, approve: bool) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(waiting) = state.awaiting.remove(reference) else { return false };
        debug_assert_eq!(waiting.payment_method, THREE_D_SECURE);
        if approve {
            let captured = Captured { amount: waiting.amount, refunded: 0, refund_failures_left: 0 };
            state.captured.insert(reference.to_owned(), captured);
        } else {
            state.failed.insert(reference.to_owned(), "The buyer failed 3-D Secure authentication.".into());
        }
        true
    }
}

impl PaymentProvider for TestProvider {
    fn name(&self) -> &'static str {
        "test"
    }

    fn charge(&self, req: ChargeRequest) -> PaymentFuture<'_, Charge> {
        Box::pin(std::future::ready(self.charge_now(req)))
    }

    fn refund(&self, req: RefundRequest) -> PaymentFuture<'_, Refund> {
        Box::pin(std::future::ready(self.refund_now(req)))
    }

    fn retrieve(&self, reference: &str) -> PaymentFuture<'_, Charge> {
        Box::pin(std::future::ready(self.retrieve_now(reference)))
    }

    fn authenticate_for_test(&self, reference: &str, approve: bool) -> bool {
        self.authenticate(reference, approve)
    }

    fn parse_webhook(&self, _payload: &[u8], _signature: Option<&str>) -> Result<WebhookEvent, PaymentError> {
        Err(PaymentError::BadSignature("the test provider sends no webhooks".into()))
    }
}

fn check_idempotency_key(key: &str) -> Result<(), PaymentError> {
    if key.is_empty() {
        return Err(PaymentError::Invalid("the idempotency key is empty".into()));
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(PaymentError::Invalid(format!(
            "the idempotency key is longer than {MAX_IDEMPOTENCY_KEY_LEN} characters"
        )));
    }
    Ok(())
}

fn validate_charge(params: &ChargeParams) -> Result<(), PaymentError> {
    if params.amount <= 0 {
        return Err(PaymentError::Invalid("the amount must be positive".into()));
    }
    if params.currency.len() != 3 || !params.currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(PaymentError::Invalid(format!("invalid currency: {:?}", params.currency)));
    }
    if !params.payment_method.starts_with("pm_") {
        return Err(PaymentError::Invalid("the payment method must be a payment method id (pm_...)".into()));
    }
    if !APPROVED.contains(&params.payment_method.as_str())
        && params.payment_method != THREE_D_SECURE
        && !DECLINED.iter().any(|(id, _, _)| *id == params.payment_method)
    {
        return Err(PaymentError::Invalid("no such payment method".into()));
    }
    Ok(())
}

/// The card network's answer for a known payment method.
fn authorize(payment_method: &str) -> Result<(), PaymentError> {
    match DECLINED.iter().find(|(id, _, _)| *id == payment_method) {
        Some((_, code, message)) => Err(PaymentError::Declined { code: (*code).into(), message: (*message).into() }),
        None => Ok(()),
    }
}

/// `{prefix}{first hex digits of SHA-256(key)}`: stable for a key, so the same
/// request always names the same object, even after a restart.
fn derive_reference(prefix: &str, idempotency_key: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    let mut reference = String::with_capacity(prefix.len() + REFERENCE_HASH_HEX_LEN);
    reference.push_str(prefix);
    for byte in &digest[..REFERENCE_HASH_HEX_LEN / 2] {
        reference.push_str(&format!("{byte:02x}"));
    }
    reference
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge_request(key: &str, payment_method: &str) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: key.into(),
            amount: 5000,
            currency: "JPY".into(),
            payment_method: payment_method.into(),
            hold_id: Uuid::from_u128(1),
            event_id: Uuid::from_u128(2),
            buyer_id: Uuid::from_u128(3),
        }
    }

    fn refund_request(key: &str, reference: &str, amount: Option<i64>) -> RefundRequest {
        RefundRequest { idempotency_key: key.into(), reference: reference.into(), amount }
    }

    fn charge(provider: &TestProvider, req: ChargeRequest) -> Result<Charge, PaymentError> {
        provider.charge_now(req)
    }

    fn declined_code(result: Result<Charge, PaymentError>) -> String {
        match result {
            Err(PaymentError::Declined { code, .. }) => code,
            other => panic!("expected a decline, got {other:?}"),
        }
    }

    #[test]
    fn is_named_test_and_has_no_webhooks() {
        let provider = TestProvider::new();
        assert_eq!(provider.name(), "test");
        assert!(matches!(provider.parse_webhook(b"{}", Some("t=1,v1=00")), Err(PaymentError::BadSignature(_))));
        assert!(matches!(provider.parse_webhook(b"{}", None), Err(PaymentError::BadSignature(_))));
    }

    #[test]
    fn approved_cards_succeed_with_a_pi_test_reference() {
        let provider = TestProvider::new();
        for (i, pm) in ["pm_card_visa", "pm_card_mastercard"].into_iter().enumerate() {
            let charge = charge(&provider, charge_request(&format!("hold-{i}"), pm)).unwrap();
            assert_eq!(charge.status, ChargeStatus::Succeeded);
            assert_eq!(charge.amount, 5000);
            assert!(charge.reference.starts_with("pi_test_"), "{}", charge.reference);
            assert_eq!(charge.reference.len(), "pi_test_".len() + REFERENCE_HASH_HEX_LEN);
        }
    }

    #[test]
    fn declined_cards_carry_stripes_decline_code() {
        let provider = TestProvider::new();
        assert_eq!(declined_code(charge(&provider, charge_request("a", "pm_card_chargeDeclined"))), "card_declined");
        assert_eq!(
            declined_code(charge(&provider, charge_request("b", "pm_card_chargeDeclinedInsufficientFunds"))),
            "insufficient_funds"
        );
        assert_eq!(
            declined_code(charge(&provider, charge_request("c", "pm_card_chargeDeclinedExpiredCard"))),
            "expired_card"
        );
    }

    #[test]
    fn unknown_or_malformed_payment_methods_are_invalid() {
        let provider = TestProvider::new();
        assert_eq!(
            charge(&provider, charge_request("a", "pm_card_doesNotExist")).unwrap_err(),
            PaymentError::Invalid("no such payment method".into())
        );
        for not_a_pm in ["4242424242424242", "tok_visa", "", "card_123"] {
            assert!(
                matches!(charge(&provider, charge_request("b", not_a_pm)), Err(PaymentError::Invalid(_))),
                "{not_a_pm:?}"
            );
        }
    }

    #[test]
    fn bad_amounts_currencies_and_keys_are_invalid() {
        let provider = TestProvider::new();
        for amount in [0, -1] {
            let req = ChargeRequest { amount, ..charge_request("a", "pm_card_visa") };
            assert!(matches!(charge(&provider, req), Err(PaymentError::Invalid(_))));
        }
        for currency in ["", "YEN!", "JP"] {
            let req = ChargeRequest { currency: currency.into(), ..charge_request("b", "pm_card_visa") };
            assert!(matches!(charge(&provider, req), Err(PaymentError::Invalid(_))), "{currency:?}");
        }
        assert!(matches!(charge(&provider, charge_request("", "pm_card_visa")), Err(PaymentError::Invalid(_))));
        let long_key = "k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1);
        assert!(matches!(charge(&provider, charge_request(&long_key, "pm_card_visa")), Err(PaymentError::Invalid(_))));
    }

    #[test]
    fn the_same_key_answers_the_first_charge() {
        let provider = TestProvider::new();
        let first = charge(&provider, charge_request("hold-1", "pm_card_visa")).unwrap();
        let again = charge(&provider, charge_request("hold-1", "pm_card_visa")).unwrap();
        assert_eq!(first.reference, again.reference);
        let other = charge(&provider, charge_request("hold-2", "pm_card_visa")).unwrap();
        assert_ne!(first.reference, other.reference);
        // One capture only: a full refund of the first charge takes exactly its amount.
        let refund = provider.refund_now(refund_request("r", &first.reference, None)).unwrap();
        assert_eq!(refund.amount, 5000);
    }

    #[test]
    fn the_same_key_answers_the_first_decline() {
        let provider = TestProvider::new();
        let first = charge(&provider, charge_request("hold-1", "pm_card_chargeDeclined"));
        let again = charge(&provider, charge_request("hold-1", "pm_card_chargeDeclined"));
        assert_eq!(first.unwrap_err(), again.unwrap_err());
    }

    #[test]
    fn reusing_a_key_with_other_parameters_is_refused() {
        let provider = TestProvider::new();
        let first = charge(&provider, charge_request("hold-1", "pm_card_visa")).unwrap();
        let other_amount = ChargeRequest { amount: 9999, ..charge_request("hold-1", "pm_card_visa") };
        assert_eq!(charge(&provider, other_amount).unwrap_err(), PaymentError::Invalid(KEY_REUSED.into()));
        let other_card = charge_request("hold-1", "pm_card_mastercard");
        assert_eq!(charge(&provider, other_card).unwrap_err(), PaymentError::Invalid(KEY_REUSED.into()));
        // The first charge still stands.
        assert_eq!(charge(&provider, charge_request("hold-1", "pm_card_visa")).unwrap().reference, first.reference);
    }

    #[test]
    fn a_rejected_request_does_not_burn_its_key() {
        let provider = TestProvider::new();
        let bad = ChargeRequest { amount: 0, ..charge_request("hold-1", "pm_card_visa") };
        assert!(charge(&provider, bad).is_err());
        assert!(charge(&provider, charge_request("hold-1", "pm_card_visa")).is_ok());
    }

    #[test]
    fn references_are_deterministic_across_providers() {
        let a = charge(&TestProvider::new(), charge_request("hold-1", "pm_card_visa")).unwrap();
        let b = charge(&TestProvider::new(), charge_request("hold-1", "pm_card_visa")).unwrap();
        assert_eq!(a.reference, b.reference);
    }

    #[test]
    fn partial_refunds_add_up_to_the_charge_and_no_more() {
        let provider = TestProvider::new();
        let charge = charge(&provider, charge_request("hold-1", "pm_card_visa")).unwrap();
        let r1 = provider.refund_now(refund_request("r1", &charge.reference, Some(2000))).unwrap();
        assert_eq!(r1.amount, 2000);
        assert!(r1.reference.starts_with("re_test_"));
        let too_much = provider.refund_now(refund_request("r2", &charge.reference, Some(3001)));
        assert!(matches!(too_much, Err(PaymentError::Invalid(_))), "{too_much:?}");
        let rest = provider.refund_now(refund_request("r3", &charge.reference, None)).unwrap();
        assert_eq!(rest.amount, 3000);
        assert_ne!(rest.reference, r1.reference);
        let nothing_left = provider.refund_now(refund_request("r4", &charge.reference, None));
        assert!(matches!(nothing_left, Err(PaymentError::Invalid(_))), "{nothing_left:?}");
        let one_more = provider.refund_now(refund_request("r5", &charge.reference, Some(1)));
        assert!(matches!(one_more, Err(PaymentError::Invalid(_))), "{one_more:?}");
    }

    #[test]
    fn refunds_are_idempotent_per_key() {
        let provider = TestProvider::new();
        let charge = charge(&provider, charge_request("hold-1", "pm_card_visa")).unwrap();
        let first = provider.refund_now(refund_request("refund-t1", &charge.reference, Some(1000))).unwrap();
        let again = provider.refund_now(refund_request("refund-t1", &charge.reference, Some(1000))).unwrap();
        assert_eq!((first.reference.as_str(), first.amount), (again.reference.as_str(), again.amount));
        // Only 1000 was taken: the remaining 4000 can still be refunded.
        assert_eq!(provider.refund_now(refund_request("refund-t2", &charge.reference, None)).unwrap().amount, 4000);
        // The key is bound to its parameters.
        let reused = provider.refund_now(refund_request("refund-t1", &charge.reference, Some(500)));
        assert_eq!(reused.unwrap_err(), PaymentError::Invalid(KEY_REUSED.into()));
    }

    #[test]
    fn refunds_need_a_captured_charge_and_a_positive_amount() {
        let provider = TestProvider::new();
        assert!(matches!(
            provider.refund_now(refund_request("r", "pi_test_nope", None)),
            Err(PaymentError::Invalid(_))
        ));
        let declined = charge(&provider, charge_request("hold-1", "pm_card_chargeDeclined"));
        assert!(declined.is_err());
        let reference = derive_reference("pi_test_", "hold-1");
        assert!(matches!(provider.refund_now(refund_request("r", &reference, None)), Err(PaymentError::Invalid(_))));
        let charge = charge(&provider, charge_request("hold-2", "pm_card_visa")).unwrap();
        for amount in [0, -5] {
            let result = provider.refund_now(refund_request("r", &charge.reference, Some(amount)));
            assert!(matches!(result, Err(PaymentError::Invalid(_))), "{amount}");
        }
    }

    #[tokio::test]
    async fn the_trait_methods_answer_like_the_synchronous_core() {
        let provider: Box<dyn PaymentProvider> = Box::new(TestProvider::new());
        let charge = provider.charge(charge_request("hold-1", "pm_card_visa")).await.unwrap();
        assert_eq!(charge.status, ChargeStatus::Succeeded);
        let refund = provider.refund(refund_request("r", &charge.reference, None)).await.unwrap();
        assert_eq!(refund.amount, charge.amount);
        let declined = provider.charge(charge_request("hold-2", "pm_card_chargeDeclinedInsufficientFunds")).await;
        assert_eq!(declined_code(declined), "insufficient_funds");
    }

    #[test]
    fn concurrent_retries_charge_once() {
        let provider = std::sync::Arc::new(TestProvider::new());
        let references: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let provider = &provider;
                    scope
                        .spawn(move || provider.charge_now(charge_request("hold-1", "pm_card_visa")).unwrap().reference)
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(references.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(provider.state.lock().unwrap().captured.len(), 1);
    }

    #[test]
    fn refunds_of_charges_made_before_a_restart_are_taken_as_asked() {
        let provider = TestProvider::new();
        let reference = derive_reference("pi_test_", "earlier:pm_card_visa");
        for n in 0..3 {
            let refund = provider.refund_now(refund_request(&format!("r{n}"), &reference, Some(4000))).unwrap();
            assert_eq!(refund.amount, 4000);
        }
        assert!(matches!(
            provider.refund_now(refund_request("r9", "pi_elsewhere", Some(1))),
            Err(PaymentError::Invalid(_))
        ));
        let unknown_amount = derive_reference("pi_test_", "other:pm_card_visa");
        assert!(
            matches!(provider.refund_now(refund_request("r8", &unknown_amount, None)), Err(PaymentError::Invalid(_))),
            "a whole refund needs to know the amount"
        );
    }

    #[test]
    fn three_d_secure_waits_for_the_buyer_and_refund_failures_run_out() {
        let provider = TestProvider::new();
        let pending = charge(&provider, charge_request("3ds", "pm_card_threeDSecure2Required")).unwrap();
        assert_eq!(pending.status, ChargeStatus::Pending);
        assert!(pending.client_secret.is_some());
        assert_eq!(provider.retrieve_now(&pending.reference).unwrap().status, ChargeStatus::Pending);
        assert!(provider.authenticate(&pending.reference, true));
        assert!(!provider.authenticate(&pending.reference, true), "decided once");
        assert_eq!(provider.retrieve_now(&pending.reference).unwrap().status, ChargeStatus::Succeeded);

        let flaky = charge(&provider, charge_request("flaky", "pm_card_refundFailsThrice")).unwrap();
        for _ in 0..3 {
            let r = provider.refund_now(refund_request("refund-flaky", &flaky.reference, Some(100)));
            assert!(matches!(r, Err(PaymentError::Unavailable(_))));
        }
        assert!(provider.refund_now(refund_request("refund-flaky", &flaky.reference, Some(100))).is_ok());
    }
}
