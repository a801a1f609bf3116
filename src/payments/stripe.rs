//! The Stripe payment provider, through async-stripe 1.0 (`stripe::Client`, the
//! request builders of `stripe_core`).
//!
//! - A charge is one PaymentIntent created *and confirmed* in one call, with the
//!   hold id as its `Idempotency-Key`: a retry, however late (Stripe keeps keys
//!   24 h), answers the first PaymentIntent instead of charging again.
//! - A refund is a Refund on that PaymentIntent, idempotent on its own key.
//! - Webhooks are verified here (HMAC-SHA256 of `"{t}.{payload}"` with the
//!   endpoint secret, constant-time comparison, 5 min tolerance) and only the few
//!   fields the service needs are read, with serde_json, so new Stripe API
//!   versions or event shapes cannot break deserialization.
//!
//! Responses are read the same way: the request goes out through async-stripe's
//! typed builder but comes back as a JSON value from which only `id`, `status`
//! and the amounts are taken. The crate's full `PaymentIntent` type requires
//! fields that fakes such as localstripe leave out.
//!
//! Errors map to [`PaymentError`]: a card error (HTTP 402 / `card_error`) is
//! `Declined` with Stripe's decline code; other 4xx are `Invalid`; network
//! failures, timeouts, 409 (a concurrent request with the same key), 429 and 5xx
//! are `Unavailable`, safe to retry with the same key. The secret key and the
//! webhook secret are held as [`SecretString`] and never logged.
//!
//! One file because it is one adapter: charge, refund and webhook verification
//! share the client, the error mapping and the idempotency rules; a third of it
//! is tests.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::stripe::{
    ApiErrors, ApiErrorsType, Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest,
};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;
use stripe_core::PaymentIntentAllowedPaymentMethodTypes;
use stripe_core::payment_intent::{CreatePaymentIntent, ListPaymentIntent, RetrievePaymentIntent};
use stripe_core::refund::CreateRefund;
use stripe_types::Currency;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{
    Charge, ChargeRequest, ChargeStatus, PaymentError, PaymentFuture, PaymentProvider, ProviderCharge, Refund,
    RefundRequest, WebhookEvent, WebhookKind,
};

/// Per-attempt budget of a Stripe call (connect, send, read the body). Stripe
/// answers in well under a second. It is shorter than the default request
/// timeout (10 s), so the server answers the buyer itself; and the charge runs on
/// a task of its own, so a request cut off anyway never abandons a charge (the
/// reconciler learns its outcome by asking again with the same key).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6);

/// How far a webhook's signed timestamp may be from now, either way (Stripe's
/// libraries use the same 300 s): limits the replay of a captured delivery.
pub const WEBHOOK_TOLERANCE_SECS: i64 = 300;

/// Longest `Stripe-Signature` header read. Stripe's carries a timestamp and one
/// `v1` per active secret (two while one is rolled): a few hundred bytes.
pub const MAX_SIGNATURE_HEADER_BYTES: usize = 1024;

/// Most `v1` signatures read from one header; more is refused unread.
pub const MAX_V1_SIGNATURES: usize = 8;

/// The host of the real Stripe API.
const STRIPE_API_HOST: &str = "api.stripe.com";

type HmacSha256 = Hmac<Sha256>;

/// Which API the provider talks to: the parameters of a PaymentIntent differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    /// Stripe itself, at the API version async-stripe pins (2026-09-30.endive),
    /// where `payment_method_types` is gone: card-only is asked for with
    /// `allowed_payment_method_types[]=card`, which also means no redirect-based
    /// method and so no `return_url` when confirming server-side.
    Stripe,
    /// A fake (localstripe) at a custom `api_base`: it refuses any parameter it
    /// does not know, `allowed_payment_method_types` included, and only knows
    /// cards anyway, so the parameter is left out.
    Fake,
}

/// Payments through Stripe. Share it behind an `Arc`. (async-stripe's hyper
/// client keeps no idle connection: each call opens its own.)
pub struct StripeProvider {
    client: Client,
    /// `None` when `STRIPE_WEBHOOK_SECRET` is not configured: every webhook is
    /// then refused, never accepted unverified.
    webhook_secret: Option<SecretString>,
    /// Applied to each call; see [`DEFAULT_TIMEOUT`].
    timeout: Duration,
    dialect: Dialect,
}

impl fmt::Debug for StripeProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither secret, not even redacted: nothing to leak through a log line.
        f.debug_struct("StripeProvider")
            .field("dialect", &self.dialect)
            .field("timeout", &self.timeout)
            .field("webhooks", &self.webhook_secret.is_some())
            .finish_non_exhaustive()
    }
}

impl StripeProvider {
    /// A provider using `secret_key` (`sk_...` or a restricted `rk_...`).
    ///
    /// `webhook_secret` is the endpoint's signing secret (`whsec_...`); without
    /// it [`PaymentProvider::parse_webhook`] refuses every delivery.
    ///
    /// `api_base` replaces `https://api.stripe.com/`, e.g. with
    /// `http://127.0.0.1:PORT` to use localstripe (plain HTTP works). Any base
    /// other than Stripe's own host is treated as such a fake: the PaymentIntent
    /// is then created without `allowed_payment_method_types`, which fakes reject.
    ///
    /// # Errors
    /// [`PaymentError::Invalid`] if the key or the URL is malformed.
    pub fn new(
        secret_key: &SecretString,
        webhook_secret: Option<SecretString>,
        api_base: Option<&str>,
    ) -> Result<Self, PaymentError> {
        let key = secret_key.expose_secret();
        if !(key.starts_with("sk_") || key.starts_with("rk_")) || key.len() <= 3 {
            // The key itself stays out of the message.
            return Err(PaymentError::Invalid("the Stripe secret key must start with sk_ or rk_".into()));
        }
        let mut builder = ClientBuilder::new(key).timeout(DEFAULT_TIMEOUT).app_info(
            "boxoffice",
            Some(env!("CARGO_PKG_VERSION").into()),
            None,
        );
        let mut dialect = Dialect::Stripe;
        if let Some(base) = api_base {
            let base = normalize_api_base(base)?;
            if host_of(&base) != Some(STRIPE_API_HOST) {
                dialect = Dialect::Fake;
            }
            builder = builder.url(base);
        }
        let client = builder
            .build()
            .map_err(|err| PaymentError::Invalid(format!("cannot configure the Stripe client: {err}")))?;
        Ok(Self { client, webhook_secret, timeout: DEFAULT_TIMEOUT, dialect })
    }

    /// Replaces [`DEFAULT_TIMEOUT`] for every call (tests use a short one).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn create_charge(&self, req: ChargeRequest) -> Result<Charge, PaymentError> {
        let key = idempotency_key(&req.idempotency_key)?;
        let intent: PaymentIntentView =
            self.send(&self.payment_intent_request(req), RequestStrategy::Idempotent(key)).await?;
        charge_from_intent(intent)
    }

    /// The PaymentIntent for a charge, confirmed at creation. Its parameters
    /// depend only on the request, so a retry sends the very same body, as
    /// Stripe requires of a request reusing an idempotency key.
    fn payment_intent_request(&self, req: ChargeRequest) -> CreatePaymentIntent {
        let Ok(currency) = req.currency.to_ascii_lowercase().parse::<Currency>();
        let metadata = HashMap::from([
            ("hold_id".to_owned(), req.hold_id.to_string()),
            ("event_id".to_owned(), req.event_id.to_string()),
            ("buyer_id".to_owned(), req.buyer_id.to_string()),
        ]);
        let create = CreatePaymentIntent::new(req.amount, currency)
            .payment_method(req.payment_method)
            .confirm(true)
            .metadata(metadata);
        match self.dialect {
            Dialect::Stripe => create.allowed_payment_method_types(vec![PaymentIntentAllowedPaymentMethodTypes::Card]),
            Dialect::Fake => create,
        }
    }

    async fn retrieve_charge(&self, reference: &str) -> Result<Charge, PaymentError> {
        if !reference.starts_with("pi_") || reference.len() > 255 {
            return Err(PaymentError::Invalid(format!("not a PaymentIntent id: {reference}")));
        }
        let request = RetrievePaymentIntent::new(reference.to_owned());
        let intent: PaymentIntentView = self.send(&request, RequestStrategy::Once).await?;
        charge_from_intent(intent)
    }

    /// Every PaymentIntent of the account, a page of 100 at a time.
    async fn list_all_charges(&self) -> Result<Vec<ProviderCharge>, PaymentError> {
        #[derive(Deserialize)]
        struct Page {
            data: Vec<PaymentIntentView>,
            #[serde(default)]
            has_more: bool,
        }
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut request = ListPaymentIntent::new().limit(100);
            if let Some(last) = &after {
                request = request.starting_after(last.clone());
            }
            let page: Page = self.send(&request, RequestStrategy::Once).await?;
            after = page.data.last().map(|i| i.id.clone());
            all.extend(page.data.into_iter().map(|i| ProviderCharge {
                succeeded: i.status == "succeeded",
                amount: i.amount_received.filter(|&r| r > 0).unwrap_or(i.amount),
                event_id: i.metadata.get("event_id").and_then(|id| Uuid::parse_str(id).ok()),
                hold_id: hold_id(&i.metadata),
                reference: i.id,
            }));
            if !page.has_more || after.is_none() {
                return Ok(all);
            }
        }
    }

    async fn create_refund(&self, req: RefundRequest) -> Result<Refund, PaymentError> {
        let key = idempotency_key(&req.idempotency_key)?;
        let mut create = CreateRefund::new().payment_intent(req.reference);
        if let Some(amount) = req.amount {
            create = create.amount(amount);
        }
        let refund: RefundView = self.send(&create, RequestStrategy::Idempotent(key)).await?;
        match refund.status.as_deref() {
            Some(status @ ("failed" | "canceled")) => {
                Err(PaymentError::Invalid(format!("refund {} is {status}", refund.id)))
            }
            _ => Ok(Refund { reference: refund.id, amount: refund.amount }),
        }
    }

    /// Sends one request (idempotently on a key, for writes) and reads the fields `T` names.
    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: &impl StripeRequest,
        strategy: RequestStrategy,
    ) -> Result<T, PaymentError> {
        let value: miniserde::json::Value = request
            .build()
            .customize()
            .request_strategy(strategy)
            .timeout(self.timeout)
            .send(&self.client)
            .await
            .map_err(error_from_stripe)?;
        // Stripe answered 2xx, so the request may have taken effect: an unreadable
        // answer is "unavailable", and the retry with the same key reads it again.
        serde_json::from_str(&miniserde::json::to_string(&value))
            .map_err(|err| PaymentError::Unavailable(format!("unexpected answer from Stripe: {err}")))
    }
}

impl PaymentProvider for StripeProvider {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn charge(&self, req: ChargeRequest) -> PaymentFuture<'_, Charge> {
        Box::pin(self.create_charge(req))
    }

    fn refund(&self, req: RefundRequest) -> PaymentFuture<'_, Refund> {
        Box::pin(self.create_refund(req))
    }

    fn list_charges(&self) -> PaymentFuture<'_, Option<Vec<ProviderCharge>>> {
        Box::pin(async move { self.list_all_charges().await.map(Some) })
    }

    fn retrieve(&self, reference: &str) -> PaymentFuture<'_, Charge> {
        let reference = reference.to_owned();
        Box::pin(async move { self.retrieve_charge(&reference).await })
    }

    fn parse_webhook(&self, payload: &[u8], signature: Option<&str>) -> Result<WebhookEvent, PaymentError> {
        let secret = self
            .webhook_secret
            .as_ref()
            .ok_or_else(|| PaymentError::BadSignature("no webhook secret is configured".into()))?;
        let header = signature.ok_or_else(|| PaymentError::BadSignature("no Stripe-Signature header".into()))?;
        verify_signature(secret.expose_secret().as_bytes(), payload, header, unix_now())
            .map_err(PaymentError::BadSignature)?;
        parse_event(payload)
    }
}

/// A `Stripe-Signature` header value signing `payload` at `timestamp` (Unix
/// seconds) with `secret`, as Stripe builds it: used by tests to build a valid
/// header (and by nothing else).
pub fn sign_webhook_for_tests(secret: &str, payload: &str, timestamp: i64) -> String {
    let digest = signing_mac(secret.as_bytes(), timestamp, payload.as_bytes()).finalize().into_bytes();
    let mut header = format!("t={timestamp},v1=");
    for byte in digest {
        header.push_str(&format!("{byte:02x}"));
    }
    header
}

fn signing_mac(secret: &[u8], timestamp: i64, payload: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// Checks a `t=TIMESTAMP,v1=HEX[,v1=HEX...]` header (other schemes, such as
/// Stripe's test-mode `v0`, are ignored): the timestamp must be within
/// [`WEBHOOK_TOLERANCE_SECS`] of `now` and one `v1` must match, compared in
/// constant time. Several `v1` appear while a secret is being rolled.
///
/// The header is refused before any hashing if it is longer than
/// [`MAX_SIGNATURE_HEADER_BYTES`] or has more than [`MAX_V1_SIGNATURES`], and the
/// body is hashed once whatever the number of signatures: an unauthenticated
/// caller cannot make the server hash a large body many times.
fn verify_signature(secret: &[u8], payload: &[u8], header: &str, now: i64) -> Result<(), String> {
    if header.len() > MAX_SIGNATURE_HEADER_BYTES {
        return Err(format!("Stripe-Signature is longer than {MAX_SIGNATURE_HEADER_BYTES} bytes"));
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((name, value)) = part.trim().split_once('=') else {
            return Err("malformed Stripe-Signature header".into());
        };
        match name {
            "t" => timestamp = Some(value.parse::<i64>().map_err(|_| "malformed timestamp in Stripe-Signature")?),
            "v1" => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or("no timestamp in Stripe-Signature")?;
    if signatures.is_empty() {
        return Err("no v1 signature in Stripe-Signature".into());
    }
    if signatures.len() > MAX_V1_SIGNATURES {
        return Err(format!("more than {MAX_V1_SIGNATURES} v1 signatures in Stripe-Signature"));
    }
    if now.abs_diff(timestamp) > WEBHOOK_TOLERANCE_SECS.unsigned_abs() {
        return Err("the signature timestamp is outside the tolerance".into());
    }
    let expected = signing_mac(secret, timestamp, payload).finalize().into_bytes();
    // Constant-time comparison; a signature of another length never matches.
    let matches =
        signatures.iter().filter_map(|hex| decode_hex(hex)).any(|given| bool::from(given.as_slice().ct_eq(&expected)));
    if matches { Ok(()) } else { Err("no signature matches the payload".into()) }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect()
}

fn unix_now() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

/// The parts of a Stripe event the service reads.
#[derive(Deserialize)]
struct EventView {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: serde_json::Value,
}

/// The parts of a PaymentIntent (in an event or an API answer) the service reads.
#[derive(Deserialize)]
struct PaymentIntentView {
    id: String,
    #[serde(default)]
    status: String,
    amount: i64,
    #[serde(default)]
    amount_received: Option<i64>,
    #[serde(default)]
    metadata: HashMap<String, String>,
    #[serde(default)]
    last_payment_error: Option<PaymentErrorView>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    next_action: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct PaymentErrorView {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The parts of a Charge (`charge.refunded`) the service reads.
#[derive(Deserialize)]
struct ChargeView {
    #[serde(default)]
    payment_intent: Option<String>,
    amount_refunded: i64,
}

#[derive(Deserialize)]
struct RefundView {
    id: String,
    amount: i64,
    #[serde(default)]
    status: Option<String>,
}

/// A verified event → the service's view of it. A signed payload that does not
/// have the shape its type promises is `Invalid` (HTTP 422), not `BadSignature`.
fn parse_event(payload: &[u8]) -> Result<WebhookEvent, PaymentError> {
    let malformed = |err: serde_json::Error| PaymentError::Invalid(format!("malformed webhook event: {err}"));
    let event: EventView = serde_json::from_slice(payload).map_err(malformed)?;
    let kind = match event.kind.as_str() {
        "payment_intent.succeeded" => {
            let intent: PaymentIntentView = serde_json::from_value(event.data.object).map_err(malformed)?;
            WebhookKind::PaymentSucceeded {
                amount: intent.amount_received.filter(|&received| received > 0).unwrap_or(intent.amount),
                hold_id: hold_id(&intent.metadata),
                reference: intent.id,
            }
        }
        "payment_intent.payment_failed" => {
            let intent: PaymentIntentView = serde_json::from_value(event.data.object).map_err(malformed)?;
            WebhookKind::PaymentFailed {
                reason: intent
                    .last_payment_error
                    .and_then(|error| error.message)
                    .unwrap_or_else(|| "the payment failed".into()),
                hold_id: hold_id(&intent.metadata),
                reference: intent.id,
            }
        }
        "charge.refunded" => {
            let charge: ChargeView = serde_json::from_value(event.data.object).map_err(malformed)?;
            match charge.payment_intent {
                Some(reference) => WebhookKind::Refunded { reference, amount_refunded: charge.amount_refunded },
                // A charge made outside PaymentIntents is none of ours.
                None => WebhookKind::Other { name: event.kind },
            }
        }
        _ => WebhookKind::Other { name: event.kind },
    };
    Ok(WebhookEvent { id: event.id, kind })
}

fn hold_id(metadata: &HashMap<String, String>) -> Option<Uuid> {
    metadata.get("hold_id").and_then(|id| Uuid::parse_str(id).ok())
}

/// A confirmed PaymentIntent → the charge's outcome.
fn charge_from_intent(intent: PaymentIntentView) -> Result<Charge, PaymentError> {
    let status = match intent.status.as_str() {
        "succeeded" => ChargeStatus::Succeeded,
        // 3-D Secure, or a payment method that settles later: the webhook tells.
        "processing" | "requires_action" | "requires_capture" => ChargeStatus::Pending,
        // Confirmation failed without an HTTP error (Stripe normally answers 402).
        "requires_payment_method" => {
            let error =
                intent.last_payment_error.unwrap_or(PaymentErrorView { code: None, decline_code: None, message: None });
            return Err(PaymentError::Declined {
                code: error.decline_code.or(error.code).unwrap_or_else(|| "card_declined".into()),
                message: error.message.unwrap_or_else(|| "The payment was declined.".into()),
            });
        }
        "canceled" => return Err(PaymentError::Invalid(format!("PaymentIntent {} is canceled", intent.id))),
        other => {
            tracing::warn!(reference = %intent.id, status = other, "unexpected PaymentIntent status after confirmation");
            ChargeStatus::Pending
        }
    };
    let amount = match status {
        ChargeStatus::Succeeded => intent.amount_received.filter(|&received| received > 0).unwrap_or(intent.amount),
        ChargeStatus::Pending => intent.amount,
    };
    let (client_secret, next_action) = match status {
        ChargeStatus::Pending => (intent.client_secret, intent.next_action),
        ChargeStatus::Succeeded => (None, None),
    };
    Ok(Charge { reference: intent.id, status, amount, client_secret, next_action })
}

fn idempotency_key(key: &str) -> Result<IdempotencyKey, PaymentError> {
    IdempotencyKey::new(key).map_err(|err| PaymentError::Invalid(err.to_string()))
}

fn error_from_stripe(err: StripeError) -> PaymentError {
    match err {
        StripeError::Stripe(error, status) => error_from_api(&error, status),
        StripeError::Timeout => PaymentError::Unavailable("Stripe did not answer in time".into()),
        StripeError::ClientError(message) => PaymentError::Unavailable(format!("cannot reach Stripe: {message}")),
        StripeError::JSONDeserialize(message) => {
            PaymentError::Unavailable(format!("unexpected answer from Stripe: {message}"))
        }
        StripeError::ConfigError(message) => {
            PaymentError::Unavailable(format!("Stripe client misconfigured: {message}"))
        }
    }
}

/// An error Stripe reported, by HTTP status and error type. See
/// <https://docs.stripe.com/error-handling>.
fn error_from_api(error: &ApiErrors, status: u16) -> PaymentError {
    let message = error.message.clone().unwrap_or_else(|| format!("Stripe answered HTTP {status}"));
    match (status, &error.type_) {
        (402, _) | (_, ApiErrorsType::CardError) => PaymentError::Declined {
            code: error
                .decline_code
                .clone()
                .or_else(|| error.code.as_ref().map(|code| code.as_str().to_owned()))
                .unwrap_or_else(|| "card_declined".into()),
            message,
        },
        // The key is wrong or lacks a permission: nothing the buyer can fix. The
        // message is dropped: Stripe echoes part of the key in it.
        (401 | 403, _) => PaymentError::Unavailable(format!("Stripe refused the API key (HTTP {status})")),
        // 409: another request with the same key is still running; 424: an
        // upstream failure; 429: rate limited. All worth a retry.
        (409 | 424 | 429 | 500.., _) | (_, ApiErrorsType::ApiError) => PaymentError::Unavailable(message),
        (_, ApiErrorsType::IdempotencyError) => {
            PaymentError::Invalid(format!("idempotency key reused with different parameters: {message}"))
        }
        _ => PaymentError::Invalid(message),
    }
}

/// Checks the URL and gives it the trailing `/` async-stripe appends `v1/...` to.
fn normalize_api_base(base: &str) -> Result<String, PaymentError> {
    let invalid = || PaymentError::Invalid(format!("the Stripe API base must be an http(s) URL, got {base:?}"));
    let rest = base.strip_prefix("http://").or_else(|| base.strip_prefix("https://")).ok_or_else(invalid)?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(invalid());
    }
    Ok(if base.ends_with('/') { base.to_owned() } else { format!("{base}/") })
}

fn host_of(base: &str) -> Option<&str> {
    let rest = base.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    Some(authority.rsplit_once(':').map_or(authority, |(host, _port)| host))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";

    fn provider(webhook_secret: Option<&str>) -> StripeProvider {
        StripeProvider::new(
            &SecretString::from("sk_test_123"),
            webhook_secret.map(SecretString::from),
            Some("http://127.0.0.1:9"),
        )
        .unwrap()
    }

    fn event(kind: &str, object: serde_json::Value) -> String {
        serde_json::json!({"id": "evt_1", "object": "event", "type": kind, "data": {"object": object}}).to_string()
    }

    #[test]
    fn signature_round_trip_and_rejections() {
        let payload = r#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        let header = sign_webhook_for_tests(SECRET, payload, now);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
        let verify = |secret: &str, payload: &str, header: &str, now: i64| {
            verify_signature(secret.as_bytes(), payload.as_bytes(), header, now)
        };
        assert_eq!(verify(SECRET, payload, &header, now), Ok(()));
        assert_eq!(verify(SECRET, payload, &header, now + WEBHOOK_TOLERANCE_SECS), Ok(()));
        assert!(verify(SECRET, payload, &header, now + WEBHOOK_TOLERANCE_SECS + 1).is_err());
        assert!(verify(SECRET, payload, &header, now - WEBHOOK_TOLERANCE_SECS - 1).is_err());
        assert!(verify("whsec_other", payload, &header, now).is_err());
        assert!(verify(SECRET, r#"{"id":"evt_2"}"#, &header, now).is_err());
        // A second, rolled secret's signature may come first.
        let other = sign_webhook_for_tests("whsec_other", payload, now);
        let both = format!("{},{}", other, header.split_once(',').unwrap().1);
        assert_eq!(verify(SECRET, payload, &both, now), Ok(()));
        // Re-signing the timestamp alone is not enough.
        let moved = header.replacen("t=1700000000", "t=1700000001", 1);
        assert!(verify(SECRET, payload, &moved, now).is_err());
        for malformed in
            ["", "garbage", "t=abc,v1=00", "v1=00", "t=1700000000", "t=1700000000,v1=zz", "t=1700000000,v0=00"]
        {
            assert!(verify(SECRET, payload, malformed, now).is_err(), "{malformed:?}");
        }
    }

    #[test]
    fn oversized_signature_headers_are_refused_before_hashing() {
        let payload = r#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        let good = sign_webhook_for_tests(SECRET, payload, now);
        let good_v1 = good.split_once(',').unwrap().1;
        let verify = |header: &str| verify_signature(SECRET.as_bytes(), payload.as_bytes(), header, now);
        // The most v1 entries allowed, the valid one last: accepted.
        let decoys = ["v1=00"; MAX_V1_SIGNATURES - 1].join(",");
        assert_eq!(verify(&format!("t={now},{decoys},{good_v1}")), Ok(()));
        // One more, even with the valid one among them: refused.
        let too_many = ["v1=00"; MAX_V1_SIGNATURES].join(",");
        let err = verify(&format!("t={now},{too_many},{good_v1}")).unwrap_err();
        assert!(err.contains("v1 signatures"), "{err}");
        // A header of 100,000 entries is refused by its length.
        let flood = format!("t={now},{}", vec!["v1=00"; 100_000].join(","));
        let err = verify(&flood).unwrap_err();
        assert!(err.contains("longer than"), "{err}");
    }

    #[test]
    fn webhooks_need_a_secret_and_a_header() {
        let payload = event("payment_intent.succeeded", serde_json::json!({"id": "pi_1", "amount": 10}));
        let header = sign_webhook_for_tests(SECRET, &payload, unix_now());
        assert!(matches!(
            provider(None).parse_webhook(payload.as_bytes(), Some(&header)),
            Err(PaymentError::BadSignature(_))
        ));
        assert!(matches!(
            provider(Some(SECRET)).parse_webhook(payload.as_bytes(), None),
            Err(PaymentError::BadSignature(_))
        ));
        assert!(provider(Some(SECRET)).parse_webhook(payload.as_bytes(), Some(&header)).is_ok());
    }

    #[test]
    fn events_parse_into_the_service_view() {
        let hold = Uuid::from_u128(7);
        let succeeded = event(
            "payment_intent.succeeded",
            serde_json::json!({"id": "pi_1", "amount": 5000, "amount_received": 4000, "metadata": {"hold_id": hold.to_string()}}),
        );
        assert_eq!(
            parse_event(succeeded.as_bytes()).unwrap(),
            WebhookEvent {
                id: "evt_1".into(),
                kind: WebhookKind::PaymentSucceeded { reference: "pi_1".into(), amount: 4000, hold_id: Some(hold) }
            }
        );
        // localstripe sends no `amount_received`.
        let no_received =
            event("payment_intent.succeeded", serde_json::json!({"id": "pi_1", "amount": 5000, "metadata": {}}));
        assert_eq!(
            parse_event(no_received.as_bytes()).unwrap().kind,
            WebhookKind::PaymentSucceeded { reference: "pi_1".into(), amount: 5000, hold_id: None }
        );
        let failed = event(
            "payment_intent.payment_failed",
            serde_json::json!({"id": "pi_2", "amount": 5000, "metadata": {"hold_id": "not-a-uuid"},
                "last_payment_error": {"code": "card_declined", "message": "Your card was declined."}}),
        );
        assert_eq!(
            parse_event(failed.as_bytes()).unwrap().kind,
            WebhookKind::PaymentFailed {
                reference: "pi_2".into(),
                reason: "Your card was declined.".into(),
                hold_id: None
            }
        );
        let refunded = event(
            "charge.refunded",
            serde_json::json!({"id": "ch_1", "payment_intent": "pi_3", "amount": 5000, "amount_refunded": 2000}),
        );
        assert_eq!(
            parse_event(refunded.as_bytes()).unwrap().kind,
            WebhookKind::Refunded { reference: "pi_3".into(), amount_refunded: 2000 }
        );
        let other = event("customer.created", serde_json::json!({"id": "cus_1"}));
        assert_eq!(parse_event(other.as_bytes()).unwrap().kind, WebhookKind::Other { name: "customer.created".into() });
        let bare_charge =
            event("charge.refunded", serde_json::json!({"id": "ch_1", "payment_intent": null, "amount_refunded": 1}));
        assert_eq!(
            parse_event(bare_charge.as_bytes()).unwrap().kind,
            WebhookKind::Other { name: "charge.refunded".into() }
        );
    }

    #[test]
    fn malformed_events_are_invalid() {
        for payload in [
            "not json".to_owned(),
            r#"{"id": "evt_1"}"#.to_owned(),
            event("payment_intent.succeeded", serde_json::json!({"amount": 1})),
            event("charge.refunded", serde_json::json!({"id": "ch_1"})),
        ] {
            assert!(matches!(parse_event(payload.as_bytes()), Err(PaymentError::Invalid(_))), "{payload}");
        }
    }

    fn api_error(json: serde_json::Value) -> ApiErrors {
        let text = json.to_string();
        *miniserde::json::from_str::<::stripe::ApiErrors>(&text).map(Box::new).unwrap()
    }

    #[test]
    fn stripe_errors_map_to_payment_errors() {
        let card = api_error(serde_json::json!({"type": "card_error", "code": "card_declined",
            "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}));
        assert_eq!(
            error_from_api(&card, 402),
            PaymentError::Declined {
                code: "insufficient_funds".into(),
                message: "Your card has insufficient funds.".into()
            }
        );
        // localstripe: 402 with type invalid_request_error and only `code`.
        let fake = api_error(serde_json::json!({"type": "invalid_request_error", "code": "card_declined",
            "message": "Your card was declined."}));
        assert!(matches!(error_from_api(&fake, 402), PaymentError::Declined { code, .. } if code == "card_declined"));
        let invalid =
            api_error(serde_json::json!({"type": "invalid_request_error", "message": "No such PaymentMethod"}));
        assert_eq!(error_from_api(&invalid, 400), PaymentError::Invalid("No such PaymentMethod".into()));
        assert!(matches!(error_from_api(&invalid, 404), PaymentError::Invalid(_)));
        let reused = api_error(
            serde_json::json!({"type": "idempotency_error", "message": "Keys for idempotent requests can only be used with the same parameters"}),
        );
        assert!(
            matches!(error_from_api(&reused, 400), PaymentError::Invalid(m) if m.starts_with("idempotency key reused"))
        );
        let auth = api_error(
            serde_json::json!({"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****1234"}),
        );
        assert!(matches!(error_from_api(&auth, 401), PaymentError::Unavailable(m) if !m.contains("sk_")));
        for status in [409, 429, 500, 502, 503] {
            assert!(matches!(error_from_api(&invalid, status), PaymentError::Unavailable(_)), "{status}");
        }
        let api = api_error(serde_json::json!({"type": "api_error"}));
        assert!(matches!(error_from_api(&api, 400), PaymentError::Unavailable(_)));
        assert!(matches!(error_from_stripe(StripeError::Timeout), PaymentError::Unavailable(_)));
    }

    #[test]
    fn intent_statuses_map_to_charges() {
        let intent = |status: &str| PaymentIntentView {
            id: "pi_1".into(),
            status: status.into(),
            amount: 5000,
            amount_received: None,
            metadata: HashMap::new(),
            last_payment_error: None,
            client_secret: Some("pi_1_secret_x".into()),
            next_action: Some(serde_json::json!({"type": "use_stripe_sdk"})),
        };
        let succeeded = charge_from_intent(intent("succeeded")).unwrap();
        assert_eq!(succeeded.status, ChargeStatus::Succeeded);
        assert_eq!(succeeded.client_secret, None, "a finished charge needs no client secret");
        for pending in ["processing", "requires_action", "requires_capture"] {
            let charge = charge_from_intent(intent(pending)).unwrap();
            assert_eq!(charge.status, ChargeStatus::Pending);
            assert_eq!(charge.client_secret.as_deref(), Some("pi_1_secret_x"), "the buyer needs it to authenticate");
            assert!(charge.next_action.is_some());
        }
        assert!(matches!(charge_from_intent(intent("requires_payment_method")), Err(PaymentError::Declined { .. })));
        assert!(matches!(charge_from_intent(intent("canceled")), Err(PaymentError::Invalid(_))));
    }

    #[test]
    fn the_payment_intent_is_confirmed_card_only_with_the_ids_in_metadata() {
        let req = ChargeRequest {
            idempotency_key: "hold".into(),
            amount: 5000,
            currency: "JPY".into(),
            payment_method: "pm_card_visa".into(),
            hold_id: Uuid::from_u128(1),
            event_id: Uuid::from_u128(2),
            buyer_id: Uuid::from_u128(3),
        };
        let body = |provider: &StripeProvider| {
            let form = provider.payment_intent_request(req.clone()).build().body.unwrap();
            serde_json::to_value(
                form.split('&')
                    .map(|pair| pair.split_once('=').unwrap())
                    .map(|(k, v)| (k.replace("%5B", "[").replace("%5D", "]"), v.to_owned()))
                    .collect::<HashMap<_, _>>(),
            )
            .unwrap()
        };
        let real = StripeProvider::new(&SecretString::from("sk_test_123"), None, None).unwrap();
        let sent = body(&real);
        assert_eq!(sent["amount"], "5000");
        assert_eq!(sent["currency"], "jpy");
        assert_eq!(sent["payment_method"], "pm_card_visa");
        assert_eq!(sent["confirm"], "true");
        assert_eq!(sent["metadata[hold_id]"], Uuid::from_u128(1).to_string());
        assert_eq!(sent["metadata[event_id]"], Uuid::from_u128(2).to_string());
        assert_eq!(sent["metadata[buyer_id]"], Uuid::from_u128(3).to_string());
        assert_eq!(sent["allowed_payment_method_types[0]"], "card");
        let fake = body(&provider(None));
        assert!(fake.get("allowed_payment_method_types[0]").is_none(), "{fake}");
        assert_eq!(fake["confirm"], "true");
        // Same request, same body: what reusing an idempotency key requires.
        assert_eq!(body(&real), sent);
    }

    #[test]
    fn configuration_is_checked() {
        let key = SecretString::from("sk_test_123");
        assert!(StripeProvider::new(&SecretString::from("pk_test_123"), None, None).is_err());
        assert!(StripeProvider::new(&SecretString::from(""), None, None).is_err());
        assert!(StripeProvider::new(&key, None, Some("ftp://x")).is_err());
        assert!(StripeProvider::new(&key, None, Some("http://")).is_err());
        assert_eq!(StripeProvider::new(&key, None, None).unwrap().dialect, Dialect::Stripe);
        assert_eq!(StripeProvider::new(&key, None, Some("https://api.stripe.com")).unwrap().dialect, Dialect::Stripe);
        assert_eq!(StripeProvider::new(&key, None, Some("http://127.0.0.1:12111")).unwrap().dialect, Dialect::Fake);
        assert_eq!(normalize_api_base("http://127.0.0.1:1").unwrap(), "http://127.0.0.1:1/");
        assert_eq!(host_of("http://127.0.0.1:1/"), Some("127.0.0.1"));
        let debug = format!("{:?}", StripeProvider::new(&key, Some(SecretString::from(SECRET)), None).unwrap());
        assert!(!debug.contains("sk_test") && !debug.contains("whsec"), "{debug}");
    }
}
