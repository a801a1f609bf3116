//! The payment provider's webhooks, through a durable inbox: a verified delivery
//! is committed to `webhook_events` (`received`) before the provider gets its
//! 2xx, then processed — at once, and by the reconciler until it succeeds. A
//! delivery seen before is acknowledged without a second processing; a
//! processing failure (the hold busy, the database away, a crash) never
//! consumes it.

use super::ledger::{self, ChargeRow, ChargeState};
use super::reconcile;
use crate::error::{ApiError, ApiResult};
use crate::payments::{WebhookEvent, WebhookKind};
use crate::state::AppState;
use crate::store::outbox::{self, Topic};
use std::time::Duration;

/// Stores a verified delivery; returns whether it is new. Once this returns,
/// the provider may be told 2xx.
pub async fn receive(state: &AppState, event: &WebhookEvent) -> ApiResult<bool> {
    let kind = serde_json::to_value(&event.kind).map_err(ApiError::internal)?;
    let fresh = sqlx::query(
        "INSERT INTO webhook_events (provider, event_id, kind, status) VALUES ($1, $2, $3, 'received')
         ON CONFLICT DO NOTHING",
    )
    .bind(state.payments.name())
    .bind(&event.id)
    .bind(kind)
    .execute(&state.db)
    .await?
    .rows_affected()
        == 1;
    Ok(fresh)
}

/// Processes one stored delivery and records the outcome: `processed`, or the
/// error and a later retry.
pub async fn process_stored(state: &AppState, event_id: &str, kind: WebhookKind, attempts: i32) -> bool {
    let outcome = process(state, kind).await;
    let result = match &outcome {
        Ok(()) => {
            sqlx::query(
                "UPDATE webhook_events SET status = 'processed', processed_at = now(), attempts = attempts + 1,
                        last_error = NULL
                 WHERE provider = $1 AND event_id = $2",
            )
            .bind(state.payments.name())
            .bind(event_id)
            .execute(&state.db)
            .await
        }
        Err(e) => {
            let retry = ledger::backoff(state.settings.reconcile_interval, attempts);
            tracing::info!(event_id, code = %e.code, detail = %e.detail, "webhook not processed yet; retried later");
            sqlx::query(
                "UPDATE webhook_events SET attempts = attempts + 1, last_error = $3,
                        next_attempt_at = now() + make_interval(secs => $4)
                 WHERE provider = $1 AND event_id = $2",
            )
            .bind(state.payments.name())
            .bind(event_id)
            .bind(format!("{}: {}", e.code, e.detail))
            .bind(retry.as_secs_f64())
            .execute(&state.db)
            .await
        }
    };
    if let Err(e) = result {
        tracing::warn!(event_id, error = %e, "webhook outcome not recorded; it will be processed again");
    }
    outcome.is_ok()
}

/// Processes the due deliveries of the inbox (for the reconciler).
pub async fn process_due(state: &AppState) -> sqlx::Result<usize> {
    let lease = (state.settings.reconcile_interval * 10).as_secs_f64();
    let due: Vec<(String, sqlx::types::Json<WebhookKind>, i32)> = sqlx::query_as(
        "UPDATE webhook_events SET next_attempt_at = now() + make_interval(secs => $2)
         WHERE (provider, event_id) IN (
             SELECT provider, event_id FROM webhook_events
             WHERE provider = $1 AND status = 'received' AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT 200 FOR UPDATE SKIP LOCKED)
         RETURNING event_id, kind, attempts",
    )
    .bind(state.payments.name())
    .bind(lease)
    .fetch_all(&state.db)
    .await?;
    let n = due.len();
    for (event_id, kind, attempts) in due {
        process_stored(state, &event_id, kind.0, attempts).await;
    }
    Ok(n)
}

/// What a delivery means for the ledger. `Ok` once nothing more is to be done
/// with it; an error leaves it to be processed again.
async fn process(state: &AppState, kind: WebhookKind) -> ApiResult<()> {
    let provider = state.payments.name();
    match kind {
        WebhookKind::PaymentSucceeded { reference, amount, hold_id } => {
            let charge = match ledger::charge_by_reference(&state.db, provider, &reference).await? {
                Some(c) => c,
                None => {
                    let Some(hold_id) = hold_id else {
                        tracing::warn!(%reference, "payment without a hold id in its metadata; ignored");
                        return Ok(());
                    };
                    // A charge of this hold whose answer is not recorded yet is
                    // probably this one: let its request (or the reconciler) record
                    // the reference first, and process this delivery after.
                    let in_flight: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM charges WHERE hold_id = $1 AND provider = $2
                                          AND provider_ref IS NULL AND status IN ('started', 'pending'))",
                    )
                    .bind(hold_id)
                    .bind(provider)
                    .fetch_one(&state.db)
                    .await?;
                    if in_flight {
                        return Err(ApiError::conflict(
                            crate::error::ProblemCode::Busy,
                            "a charge of this hold is still being recorded",
                        ));
                    }
                    let Some(c) = adopt_charge(state, &reference, amount, hold_id).await? else {
                        tracing::warn!(%hold_id, %reference, "payment for an unknown hold; ignored");
                        return Ok(());
                    };
                    c
                }
            };
            match charge.state() {
                // A decline reported first and a success after: the provider's
                // last word is that the money moved.
                Some(ChargeState::Started | ChargeState::Pending | ChargeState::Charged | ChargeState::Declined) => {
                    ledger::mark_charge(
                        &state.db,
                        &charge.charge_key,
                        ChargeState::Charged,
                        Some(&reference),
                        state.settings.reconcile_interval,
                        None,
                    )
                    .await?;
                    let charged = ChargeRow { status: "charged".into(), provider_ref: Some(reference), ..charge };
                    reconcile::settle_charge(state, &charged).await;
                    // Settled, or left `charged` for the reconciler: either way the
                    // ledger now carries it, and this delivery is done.
                    Ok(())
                }
                // Finished already: tickets issued, or refunded.
                _ => Ok(()),
            }
        }
        WebhookKind::PaymentFailed { reference, reason, hold_id } => {
            tracing::info!(%reference, %reason, ?hold_id, "payment failed");
            if let Some(c) = ledger::charge_by_reference(&state.db, provider, &reference).await? {
                ledger::mark_charge(
                    &state.db,
                    &c.charge_key,
                    ChargeState::Declined,
                    None,
                    Duration::ZERO,
                    Some(&reason),
                )
                .await?;
            }
            outbox::record(
                &state.db,
                Topic::PaymentFailed,
                hold_id.unwrap_or_default(),
                serde_json::json!({"reference": reference, "reason": reason}),
            )
            .await?;
            Ok(())
        }
        WebhookKind::Refunded { reference, amount_refunded } => {
            sqlx::query(
                "UPDATE payments SET status = 'refunded', updated_at = now() WHERE provider_ref = $1 AND amount <= $2",
            )
            .bind(reference)
            .bind(amount_refunded)
            .execute(&state.db)
            .await?;
            Ok(())
        }
        WebhookKind::Other { .. } => Ok(()),
    }
}

/// A charge this server did not start (or whose row was lost): recorded as
/// `charged` so the ledger carries it like any other.
async fn adopt_charge(
    state: &AppState,
    reference: &str,
    amount: i64,
    hold_id: uuid::Uuid,
) -> ApiResult<Option<ChargeRow>> {
    let Some((event_id, buyer_id)) = state.hold_event_and_buyer(hold_id).await? else { return Ok(None) };
    let currency = state.event_currency(event_id).await?;
    let row = ChargeRow {
        charge_key: format!("webhook:{reference}"),
        provider: state.payments.name().to_owned(),
        hold_id,
        event_id,
        buyer_id,
        payment_method: "unknown".into(),
        amount,
        currency,
        provider_ref: None,
        status: String::new(),
        attempts: 0,
    };
    let stored = ledger::start_charge(state, &row).await?;
    ledger::mark_charge(&state.db, &stored.charge_key, ChargeState::Charged, Some(reference), Duration::ZERO, None)
        .await?;
    Ok(Some(ChargeRow { status: "charged".into(), provider_ref: Some(reference.to_owned()), ..stored }))
}
