//! The payment port. Two implementations: Stripe (through async-stripe, see
//! `stripe.rs`) and the built-in test provider used when no `STRIPE_SECRET_KEY`
//! is configured (`test_provider.rs`).
//!
//! Card data never reaches the server: callers pass a payment method id
//! (`pm_...`) obtained by the client from the provider.
//!
//! Every call is idempotent on its key (the hold id for a charge, a refund key
//! for a refund): retrying after a timeout can never charge or refund twice.

pub mod stripe;
pub mod test_provider;

use std::future::Future;
use std::pin::Pin;
use uuid::Uuid;

pub type PaymentFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, PaymentError>> + Send + 'a>>;

/// What to charge.
#[derive(Clone, Debug)]
pub struct ChargeRequest {
    /// Idempotency key: the hold id. The same key always answers the first charge.
    pub idempotency_key: String,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217, upper case (providers that want lower case convert).
    pub currency: String,
    /// The client's payment method id, e.g. `pm_card_visa`.
    pub payment_method: String,
    pub hold_id: Uuid,
    pub event_id: Uuid,
    pub buyer_id: Uuid,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeStatus {
    /// Money captured.
    Succeeded,
    /// Not final yet (e.g. 3-D Secure); the webhook will tell.
    Pending,
}

#[derive(Clone, Debug)]
pub struct Charge {
    /// The provider's id (a PaymentIntent id `pi_...` for Stripe).
    pub reference: String,
    pub status: ChargeStatus,
    pub amount: i64,
    /// For a pending charge the buyer must authenticate (3-D Secure): the secret
    /// the client passes to the provider's SDK (Stripe.js `handleNextAction`).
    pub client_secret: Option<String>,
    /// The provider's description of that next step, as it gave it.
    pub next_action: Option<serde_json::Value>,
}

impl Charge {
    /// A charge that captured `amount` at once.
    pub fn succeeded(reference: String, amount: i64) -> Self {
        Self { reference, status: ChargeStatus::Succeeded, amount, client_secret: None, next_action: None }
    }
}

#[derive(Clone, Debug)]
pub struct RefundRequest {
    /// Idempotency key, e.g. `refund-{ticket_id}`.
    pub idempotency_key: String,
    /// The charge's reference.
    pub reference: String,
    /// Minor units; `None` refunds the whole charge.
    pub amount: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct Refund {
    pub reference: String,
    pub amount: i64,
}

/// A charge as the provider's own records show it (for `boxoffice reconcile`).
#[derive(Clone, Debug)]
pub struct ProviderCharge {
    pub reference: String,
    /// Captured: the money moved.
    pub succeeded: bool,
    pub amount: i64,
    /// From the charge's metadata, when this engine made it.
    pub event_id: Option<Uuid>,
    pub hold_id: Option<Uuid>,
}

/// A verified webhook delivery.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WebhookEvent {
    /// The provider's event id (`evt_...`): deliveries are deduplicated on it.
    pub id: String,
    pub kind: WebhookKind,
}

/// Stored as JSON in the webhook inbox (`webhook_events.kind`) until processed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WebhookKind {
    /// `payment_intent.succeeded`
    PaymentSucceeded { reference: String, amount: i64, hold_id: Option<Uuid> },
    /// `payment_intent.payment_failed`
    PaymentFailed { reference: String, reason: String, hold_id: Option<Uuid> },
    /// `charge.refunded` (reference = the PaymentIntent id)
    Refunded { reference: String, amount_refunded: i64 },
    /// Any other type, acknowledged and ignored.
    Other { name: String },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The card was declined: the buyer should try another (HTTP 402).
    #[error("payment declined: {message}")]
    Declined { code: String, message: String },
    /// The request was wrong (unknown payment method, bad amount): HTTP 422.
    #[error("payment refused: {0}")]
    Invalid(String),
    /// The provider could not be reached or failed: HTTP 503; nothing is charged
    /// twice on retry thanks to the idempotency key.
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
    /// A webhook whose signature does not verify: HTTP 400.
    #[error("webhook signature invalid: {0}")]
    BadSignature(String),
}

/// A payment provider.
pub trait PaymentProvider: Send + Sync + 'static {
    /// `stripe` or `test`; stored with each payment.
    fn name(&self) -> &'static str;
    /// Creates and confirms a payment, idempotently on `req.idempotency_key`.
    fn charge(&self, req: ChargeRequest) -> PaymentFuture<'_, Charge>;
    /// Refunds (part of) a charge, idempotently on `req.idempotency_key`.
    fn refund(&self, req: RefundRequest) -> PaymentFuture<'_, Refund>;
    /// Where a charge stands now (e.g. after the buyer authenticated a pending
    /// one): `Succeeded` or `Pending`; a failed charge is `Declined`, a
    /// cancelled or unknown one `Invalid`.
    fn retrieve(&self, reference: &str) -> PaymentFuture<'_, Charge>;
    /// Every charge the provider holds for this account, or `None` if it keeps
    /// no records another process can read (the in-memory test provider).
    fn list_charges(&self) -> PaymentFuture<'_, Option<Vec<ProviderCharge>>> {
        Box::pin(std::future::ready(Ok(None)))
    }
    /// Completes (`approve`) or fails a pending 3-D Secure charge, as the buyer
    /// does on the provider's page; only the test provider can. Returns whether
    /// such a charge was waiting.
    fn authenticate_for_test(&self, _reference: &str, _approve: bool) -> bool {
        false
    }
    /// Verifies a webhook's signature (`Stripe-Signature` header) and parses it.
    fn parse_webhook(&self, payload: &[u8], signature: Option<&str>) -> Result<WebhookEvent, PaymentError>;
}
