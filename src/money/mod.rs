//! The money path shared by the routes that take or give back money (paying for
//! a hold, the one-shot purchase, the payment webhook, cancelling a ticket or an
//! event) and by the reconciler that finishes what they could not.
//!
//! **Guarantees.** Every charge ends as tickets or a refund, never both, never
//! neither:
//! - a charge is recorded (`charges`, state `started`) before the provider is
//!   asked, under the idempotency key the provider sees (`{hold}:{payment
//!   method}`): at most one charge per hold and payment method, and a charge
//!   whose request died is found again;
//! - the journal marks the charge `completed` in the transaction that issues its
//!   tickets; a charge whose seats cannot be had (gone, sale closed or
//!   cancelled, limit) is marked `refunded` in the transaction that records its
//!   refund (`refunds`, `pending`), and the refund is carried to `succeeded`;
//! - anything left in between (shed, timeout, journal failure, crash) is carried
//!   on by the reconciler ([`reconcile`]).

pub mod cancel;
pub mod ledger;
pub mod reconcile;
pub mod report;
pub mod webhook;

use crate::error::{ApiError, ApiResult, ProblemCode};
use crate::payments::{Charge, ChargeRequest, ChargeStatus, PaymentError};
use crate::state::AppState;
use axum::http::StatusCode;
use boxoffice_actors::{BuyerId, EventError, EventId, HoldId, HoldStatus, HoldView, InventoryError, Payment};
use ledger::{ChargeRow, ChargeState, RefundIntent};
use std::time::Duration;
use uuid::Uuid;

/// Pauses before retrying to record a sale the event could not take at once.
const SALE_RETRIES: [Duration; 3] =
    [Duration::from_millis(100), Duration::from_millis(250), Duration::from_millis(500)];

/// How a payment attempt ended.
pub enum Paid {
    Sold(HoldView, Option<Payment>),
    /// The provider has not decided yet (3-D Secure): the buyer completes the
    /// next action with the client secret, then the webhook (or paying again)
    /// completes the order.
    Pending(Charge),
    /// The money was taken but the tickets could not be issued right away (the
    /// event was busy or the database slow): the reconciler issues them, or
    /// refunds, within moments. Paying again is safe and answers the outcome.
    Processing(String),
}

pub fn payment_error(e: PaymentError) -> ApiError {
    match e {
        PaymentError::Declined { code, message } => {
            ApiError::new(StatusCode::PAYMENT_REQUIRED, ProblemCode::PaymentDeclined, message)
                .with("decline_code", code)
        }
        PaymentError::Invalid(msg) => ApiError::invalid(ProblemCode::PaymentInvalid, msg),
        PaymentError::Unavailable(msg) => {
            tracing::warn!(error = %msg, "payment provider unavailable");
            ApiError::unavailable_as(
                ProblemCode::PaymentUnavailable,
                "the payment provider did not answer; if the charge went through, your tickets are issued or \
                 the money refunded automatically — paying again with the same card is safe",
                Duration::from_secs(2),
            )
        }
        PaymentError::BadSignature(msg) => ApiError::bad_request(ProblemCode::BadSignature, msg),
    }
}

/// Charges for `view` and records the sale in the event's actor. If the seats
/// are gone by then, refunds and says so.
///
/// Runs on a task of its own: once the charge has started, the payment is carried
/// to its end (sale or refund) even if the client goes away or the request is
/// cut off, instead of being dropped between charge and sale.
pub async fn pay(
    state: &AppState,
    event_id: Uuid,
    currency: &str,
    view: HoldView,
    payment_method: &str,
) -> ApiResult<Paid> {
    let (state, currency, payment_method) = (state.clone(), currency.to_owned(), payment_method.to_owned());
    tokio::spawn(async move { charge_and_record(&state, event_id, &currency, view, &payment_method).await })
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("payment task failed: {e}"))))
}

/// 429 `too_many_payment_attempts` when `buyer` (or `hold`, once there is one) has
/// used up its failed payment attempts.
pub async fn check_payment_allowed(state: &AppState, buyer: Uuid, hold: Option<Uuid>) -> ApiResult<()> {
    payment_allowed(state, buyer, hold).await.map_err(|wait| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ProblemCode::TooManyPaymentAttempts,
            "too many failed payment attempts; try again later or contact support",
        )
        .retry_after(wait)
    })
}

/// The window over which failed payment attempts are counted.
const PAYMENT_FAILURE_WINDOW: Duration = Duration::from_secs(3600);

/// Whether `buyer` may try to pay now, for `hold` once there is one (card testing, see
/// `state::PaymentThrottle`): counted in Redis when configured, so every node
/// sees the same failures; in this process otherwise (or when Redis is away).
async fn payment_allowed(state: &AppState, buyer: Uuid, hold: Option<Uuid>) -> Result<(), Duration> {
    if state.cache.is_enabled() {
        let buyer_limit = (format!("payfail:buyer:{buyer}"), crate::state::FAILED_PAYMENTS_PER_BUYER_HOUR);
        let hold_limit = hold.map(|hold| (format!("payfail:hold:{hold}"), crate::state::FAILED_PAYMENTS_PER_HOLD));
        let mut shared = true;
        for (key, limit) in std::iter::once(&buyer_limit).chain(&hold_limit) {
            match state.cache.window_count(key, PAYMENT_FAILURE_WINDOW).await {
                Some((count, left)) if count >= u64::from(*limit) => return Err(left),
                Some(_) => {}
                None => shared = false,
            }
        }
        if shared {
            return Ok(());
        }
    }
    state.payment_throttle.allowed(buyer, hold)
}

/// Counts a failed payment attempt (declined or refused card).
async fn payment_failed(state: &AppState, buyer: Uuid, hold: Uuid) {
    state.payment_throttle.failed(buyer, hold);
    if state.cache.is_enabled() {
        for key in [format!("payfail:buyer:{buyer}"), format!("payfail:hold:{hold}")] {
            let _ = state.cache.incr_window(&key, PAYMENT_FAILURE_WINDOW).await;
        }
    }
}

/// The charge request for a `charges` row: the same parameters every time, as
/// reusing an idempotency key requires.
pub(crate) fn charge_request(row: &ChargeRow) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: row.charge_key.clone(),
        amount: row.amount,
        currency: row.currency.clone(),
        payment_method: row.payment_method.clone(),
        hold_id: row.hold_id,
        event_id: row.event_id,
        buyer_id: row.buyer_id,
    }
}

async fn charge_and_record(
    state: &AppState,
    event_id: Uuid,
    currency: &str,
    view: HoldView,
    payment_method: &str,
) -> ApiResult<Paid> {
    if view.status == HoldStatus::Purchased {
        return Ok(Paid::Sold(view, None));
    }
    // The seed's `"payment_method": "card"` means the test provider's good card.
    let payment_method = match payment_method {
        "card" if state.payments.name() == "test" => "pm_card_visa",
        other => other,
    };
    check_payment_allowed(state, view.buyer.0, Some(view.id.0)).await?;
    let intent = ChargeRow {
        // One key per hold and payment method: a retry with the same card is the
        // same charge; another card after a decline is a new attempt (as Stripe requires).
        charge_key: format!("{}:{payment_method}", view.id),
        provider: state.payments.name().to_owned(),
        hold_id: view.id.0,
        event_id,
        buyer_id: view.buyer.0,
        payment_method: payment_method.to_owned(),
        amount: view.amount,
        currency: currency.to_owned(),
        provider_ref: None,
        status: String::new(),
        attempts: 0,
    };
    let row = ledger::start_charge(state, &intent).await?;
    if row.amount != intent.amount || row.currency != intent.currency {
        // The hold's amount cannot change; a different one means a corrupted row.
        return Err(ApiError::internal(format!("charge {} does not match its hold", row.charge_key)));
    }
    let answer = match (row.state(), &row.provider_ref) {
        // 3-D Secure: paying again after authenticating asks where the charge stands.
        (Some(ChargeState::Pending), Some(reference)) => state.payments.retrieve(reference).await,
        _ => state.payments.charge(charge_request(&row)).await,
    };
    if matches!(answer, Err(PaymentError::Declined { .. } | PaymentError::Invalid(_))) {
        payment_failed(state, view.buyer.0, view.id.0).await;
    }
    settle_answer(state, &row, answer).await
}

/// Records the provider's answer about `row` and carries a captured charge on to
/// a sale (or a refund).
pub(crate) async fn settle_answer(
    state: &AppState,
    row: &ChargeRow,
    answer: Result<Charge, PaymentError>,
) -> ApiResult<Paid> {
    let key = &row.charge_key;
    let charge = match answer {
        Ok(charge) => charge,
        Err(e @ (PaymentError::Declined { .. } | PaymentError::Invalid(_))) => {
            ledger::mark_charge(&state.db, key, ChargeState::Declined, None, Duration::ZERO, Some(&e.to_string()))
                .await?;
            return Err(payment_error(e));
        }
        Err(e) => {
            // Unknown outcome: the reconciler asks again after the grace period.
            let retry = state.settings.charge_grace.max(state.settings.reconcile_interval);
            ledger::mark_charge(&state.db, key, ChargeState::Started, None, retry, Some(&e.to_string())).await?;
            return Err(payment_error(e));
        }
    };
    if charge.status == ChargeStatus::Pending {
        // The buyer has an hour to authenticate before the reconciler starts asking.
        let poll = Duration::from_secs(3600).max(state.settings.charge_grace);
        ledger::mark_charge(&state.db, key, ChargeState::Pending, Some(&charge.reference), poll, None).await?;
        return Ok(Paid::Pending(charge));
    }
    // Not marked `charged` here: the journal completes the charge by its key in
    // the sale's transaction, and if the sale cannot be recorded `record_sale`
    // marks it; after a crash in between, the reconciler asks the provider again.
    let payment = Payment {
        provider: row.provider.clone(),
        reference: charge.reference,
        amount: charge.amount,
        currency: row.currency.clone(),
        charge_key: Some(key.clone()),
    };
    record_sale(state, row.event_id, HoldId(row.hold_id), BuyerId(row.buyer_id), payment).await
}

/// Tells the actor a payment succeeded; refunds when the seats cannot be had.
/// When the sale cannot be recorded right now, the charge stays `charged` and
/// the reconciler carries it on.
pub async fn record_sale(
    state: &AppState,
    event_id: Uuid,
    hold: HoldId,
    buyer: BuyerId,
    payment: Payment,
) -> ApiResult<Paid> {
    // The money has moved: a transient refusal (the event moving between nodes,
    // draining, busy) is retried a few times before the reconciler takes over.
    // Safe: a purchased hold answers its first sale.
    let mut result = state.event(EventId(event_id)).purchase(hold, buyer, Some(payment.clone())).await;
    for pause in SALE_RETRIES {
        match &result {
            Err(e) if e.is_transient() => {
                tokio::time::sleep(pause).await;
                result = state.event(EventId(event_id)).purchase(hold, buyer, Some(payment.clone())).await;
            }
            _ => break,
        }
    }
    match result {
        Ok(sale) => {
            if let Some(first) = superseded_by(state, hold, &sale.payment, &payment.reference).await? {
                // Two payments raced for one hold (two cards at once): keep the first, refund ours.
                let status = refund_charge(state, event_id, hold, &payment).await?;
                tracing::warn!(%hold, %first, ?status, "a second payment for a purchased hold was refunded");
            }
            // The charge was marked `completed` by the journal, in the sale's transaction.
            metrics::counter!("boxoffice_purchases_total").increment(1);
            metrics::counter!("boxoffice_tickets_issued_total").increment(sale.hold.tickets.len() as u64);
            Ok(Paid::Sold(sale.hold, sale.payment))
        }
        Err(EventError::Inventory(
            e @ (InventoryError::SeatsGone
            | InventoryError::LimitExceeded { .. }
            | InventoryError::HoldNotFound
            | InventoryError::SalesClosed
            | InventoryError::HoldNotActive(_)),
        )) => {
            let status = refund_charge(state, event_id, hold, &payment).await?;
            tracing::info!(%hold, reason = %e, ?status, "payment arrived but the seats cannot be had; refunded");
            let (code, why) = match e {
                InventoryError::SalesClosed => (ProblemCode::SaleClosed, "sales for this event are closed".to_owned()),
                other => (ProblemCode::SeatsGone, other.to_string()),
            };
            Err(ApiError::conflict(code, format!("{why}; your payment is refunded"))
                .with("refunded", status == ledger::RefundStatus::Succeeded)
                .with("refund_status", status.as_str())
                .with("payment_reference", payment.reference))
        }
        Err(EventError::EventNotFound) => {
            let status = refund_charge(state, event_id, hold, &payment).await?;
            Err(ApiError::not_found("event").with("refund_status", status.as_str()))
        }
        Err(e) => {
            // Busy, shed, timed out, stopped, or the journal failed: the money is
            // taken; marked `charged`, the reconciler finishes it.
            if let Some(key) = &payment.charge_key {
                let retry = state.settings.reconcile_interval;
                ledger::mark_charge(&state.db, key, ChargeState::Charged, Some(&payment.reference), retry, None)
                    .await?;
            }
            tracing::warn!(%hold, error = %e, "sale not recorded after a charge; the reconciler will finish it");
            metrics::counter!("boxoffice_sales_deferred_total").increment(1);
            Ok(Paid::Processing(payment.reference))
        }
    }
}

/// Hands a whole charge back: records the refund and marks the charge
/// `refunded` in one transaction, then asks the provider (the reconciler retries
/// until it succeeds).
pub async fn refund_charge(
    state: &AppState,
    event_id: Uuid,
    hold: HoldId,
    payment: &Payment,
) -> ApiResult<ledger::RefundStatus> {
    let key = format!("refund-{}", payment.reference);
    let mut tx = state.db.begin().await?;
    ledger::request_refund(
        &mut *tx,
        &RefundIntent {
            key: key.clone(),
            hold: hold.0,
            event: event_id,
            ticket: None,
            provider: payment.provider.clone(),
            payment_ref: payment.reference.clone(),
            amount: payment.amount,
        },
    )
    .await?;
    match &payment.charge_key {
        Some(key) => {
            ledger::mark_charge(&mut *tx, key, ChargeState::Refunded, Some(&payment.reference), Duration::ZERO, None)
                .await?;
        }
        None => {
            sqlx::query(
                "UPDATE charges SET status = 'refunded', updated_at = now()
                 WHERE provider = $1 AND provider_ref = $2 AND status IN ('started', 'pending', 'charged')",
            )
            .bind(&payment.provider)
            .bind(&payment.reference)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(ledger::attempt_refund(state, &key).await?)
}

/// The reference of a different payment that already bought `hold`, if any.
async fn superseded_by(
    state: &AppState,
    hold: HoldId,
    recorded: &Option<Payment>,
    ours: &str,
) -> ApiResult<Option<String>> {
    if let Some(p) = recorded {
        return Ok((p.reference != ours).then(|| p.reference.clone()));
    }
    // Restored after a restart: the database knows which payment bought it.
    let refs: Vec<String> = sqlx::query_scalar("SELECT provider_ref FROM payments WHERE hold_id = $1")
        .bind(hold.0)
        .fetch_all(&state.db)
        .await?;
    Ok(if refs.is_empty() || refs.iter().any(|r| r == ours) { None } else { refs.into_iter().next() })
}

/// Records the refund of one cancelled ticket and asks the provider for it.
pub async fn refund_ticket(
    state: &AppState,
    event_id: Uuid,
    hold: HoldId,
    ticket: Uuid,
    provider: &str,
    payment_ref: &str,
    amount: i64,
) -> ApiResult<ledger::RefundStatus> {
    let key = format!("refund-{ticket}");
    let intent = RefundIntent {
        key: key.clone(),
        hold: hold.0,
        event: event_id,
        ticket: Some(ticket),
        provider: provider.to_owned(),
        payment_ref: payment_ref.to_owned(),
        amount,
    };
    ledger::request_refund(&state.db, &intent).await?;
    Ok(ledger::attempt_refund(state, &key).await?)
}
