//! The money path shared by the routes that take or give back money (paying for
//! a hold, the one-shot purchase, the payment webhook, cancelling a ticket):
//! charge, record the sale in the event's actor, refund when the seats cannot be
//! had.
//!
//! **Guarantees.** At most one charge per hold and payment method (the charge's
//! idempotency key); a payment that arrives for seats that are gone is refunded;
//! a refund is recorded (`pending`) before the provider is asked, under a key that
//! makes asking twice harmless.

use crate::error::{ApiError, ApiResult, ProblemCode};
use crate::payments::{ChargeRequest, ChargeStatus, PaymentError, RefundRequest};
use crate::state::AppState;
use crate::store::outbox::{self, Topic};
use axum::http::StatusCode;
use boxoffice_actors::{BuyerId, EventError, EventId, HoldId, HoldStatus, HoldView, InventoryError, Payment};
use uuid::Uuid;

/// How a payment attempt ended.
pub enum Paid {
    Sold(HoldView, Option<Payment>),
    /// The provider has not decided yet; the webhook will complete the order.
    Pending(String),
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
                "the payment provider is unavailable; nothing was issued — retry shortly",
                std::time::Duration::from_secs(2),
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
    // One key per hold and payment method: a retry with the same card is the same
    // charge; another card after a decline is a new attempt (as Stripe requires).
    let charge = state
        .payments
        .charge(ChargeRequest {
            idempotency_key: format!("{}:{payment_method}", view.id),
            amount: view.amount,
            currency: currency.to_owned(),
            payment_method: payment_method.to_owned(),
            hold_id: view.id.0,
            event_id,
            buyer_id: view.buyer.0,
        })
        .await
        .map_err(payment_error)?;
    if charge.status == ChargeStatus::Pending {
        return Ok(Paid::Pending(charge.reference));
    }
    let payment = Payment {
        provider: state.payments.name().to_owned(),
        reference: charge.reference,
        amount: charge.amount,
        currency: currency.to_owned(),
    };
    record_sale(state, event_id, view.id, view.buyer, payment).await
}

/// Tells the actor a payment succeeded; refunds when the seats cannot be had.
pub async fn record_sale(
    state: &AppState,
    event_id: Uuid,
    hold: HoldId,
    buyer: BuyerId,
    payment: Payment,
) -> ApiResult<Paid> {
    let result = state
        .registry
        .with(EventId(event_id), |h| {
            let payment = payment.clone();
            async move { h.purchase(hold, buyer, Some(payment)).await }
        })
        .await;
    match result {
        Ok(sale) => {
            if let Some(first) = superseded_by(state, hold, &sale.payment, &payment.reference).await? {
                // Two payments raced for one hold (two cards at once): keep the first, refund ours.
                let key = format!("refund-dup-{}", payment.reference);
                let refunded = refund(state, hold, None, &payment.reference, payment.amount, &key).await;
                tracing::warn!(%hold, %first, refunded, "a second payment for a purchased hold was refunded");
            }
            metrics::counter!("boxoffice_purchases_total").increment(1);
            metrics::counter!("boxoffice_tickets_issued_total").increment(sale.hold.tickets.len() as u64);
            Ok(Paid::Sold(sale.hold, sale.payment))
        }
        Err(EventError::Inventory(
            e @ (InventoryError::SeatsGone | InventoryError::LimitExceeded { .. } | InventoryError::HoldNotFound),
        )) => {
            let refunded =
                refund(state, hold, None, &payment.reference, payment.amount, &format!("refund-hold-{hold}")).await;
            tracing::info!(%hold, reason = %e, refunded, "payment arrived but the seats cannot be had; refunded");
            Err(ApiError::conflict(ProblemCode::SeatsGone, format!("{e}; your payment was refunded"))
                .with("refunded", refunded)
                .with("payment_reference", payment.reference))
        }
        Err(e) => Err(e.into()),
    }
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

/// Records a refund as pending, asks the provider, and records the outcome.
/// Returns whether the money went back. A pending refund is retried by the next
/// request that reaches it.
pub async fn refund(
    state: &AppState,
    hold: HoldId,
    ticket: Option<Uuid>,
    payment_ref: &str,
    amount: i64,
    key: &str,
) -> bool {
    let recorded = sqlx::query(
        "INSERT INTO refunds (refund_key, hold_id, ticket_id, provider, payment_ref, amount, status)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending') ON CONFLICT (refund_key) DO NOTHING",
    )
    .bind(key)
    .bind(hold.0)
    .bind(ticket)
    .bind(state.payments.name())
    .bind(payment_ref)
    .bind(amount)
    .execute(&state.db)
    .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, %hold, "could not record a refund; not attempting it");
        return false;
    }
    let done: Option<String> = sqlx::query_scalar("SELECT status FROM refunds WHERE refund_key = $1")
        .bind(key)
        .fetch_optional(&state.db)
        .await
        .ok()
        .flatten();
    if done.as_deref() == Some("succeeded") {
        return true;
    }
    let outcome = state
        .payments
        .refund(RefundRequest {
            idempotency_key: key.to_owned(),
            reference: payment_ref.to_owned(),
            amount: Some(amount),
        })
        .await;
    let (status, provider_ref) = match &outcome {
        Ok(r) => ("succeeded", Some(r.reference.clone())),
        Err(PaymentError::Unavailable(_)) => ("pending", None),
        Err(_) => ("failed", None),
    };
    if let Err(e) = &outcome {
        tracing::error!(error = %e, %hold, "refund failed");
    }
    let _ = sqlx::query("UPDATE refunds SET status = $2, provider_ref = $3, updated_at = now() WHERE refund_key = $1")
        .bind(key)
        .bind(status)
        .bind(provider_ref)
        .execute(&state.db)
        .await;
    let _ = outbox::record(
        &state.db,
        Topic::PaymentRefunded,
        hold.0,
        serde_json::json!({"hold_id": hold.0, "ticket_id": ticket, "amount": amount, "status": status}),
    )
    .await;
    if status == "succeeded" {
        metrics::counter!("boxoffice_refunds_total").increment(1);
    }
    status == "succeeded"
}
