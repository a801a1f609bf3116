//! The reconciler: a worker in every server process that carries money to its
//! end when the request that started it could not.
//!
//! Every `RECONCILE_INTERVAL_MS` it claims due rows and settles them:
//! - **charges** not finished (`started` past their grace, `pending`, `charged`):
//!   asks the provider again with the same idempotency key (or where a pending
//!   charge stands), then completes the sale if the seats are still held, or
//!   refunds;
//! - **refunds** not `succeeded`: asks the provider again, with backoff, until it
//!   says succeeded (idempotent on the refund key);
//! - **webhook deliveries** received but not processed;
//! - **event cancellations** not finished (after a crash midway).
//!
//! Rows are claimed with `FOR UPDATE SKIP LOCKED` and pushed `next_check_at`
//! ahead by their backoff in the same statement, so several processes share the
//! work without doing a row twice at once; every step is idempotent, so a
//! process killed midway leaves nothing a later pass cannot finish.
//!
//! What stays unsettled is surfaced: `boxoffice_money_unreconciled{kind}` (rows
//! past their grace) and `boxoffice_money_unreconciled_oldest_seconds`, and one
//! log line per row when it first becomes overdue.

use super::ledger::{self, CHARGE_COLUMNS, ChargeRow, ChargeState};
use super::{Paid, cancel, record_sale, settle_answer, webhook};
use crate::payments::{ChargeStatus, PaymentError};
use crate::state::AppState;
use boxoffice_actors::{BuyerId, HoldId, Payment};
use std::collections::HashSet;
use std::time::Duration;

/// Rows claimed per kind and pass.
const CLAIM_BATCH: i64 = 200;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub charges: usize,
    pub refunds: usize,
    pub webhooks: usize,
    pub cancellations: usize,
}

/// Runs passes forever (the task is aborted at shutdown; every step is durable
/// and idempotent, so an aborted pass is finished by the next one).
pub async fn run(state: AppState) {
    let mut tick = tokio::time::interval(state.settings.reconcile_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut overdue_logged = HashSet::new();
    loop {
        tick.tick().await;
        if let Err(e) = pass(&state).await {
            tracing::warn!(error = %e, "reconciler pass failed; retrying");
        }
        if let Err(e) = surface(&state, &mut overdue_logged).await {
            tracing::debug!(error = %e, "unreconciled money not measured");
        }
    }
}

/// One pass over everything due.
pub async fn pass(state: &AppState) -> sqlx::Result<PassReport> {
    let mut report = PassReport::default();
    for row in claim_charges(state).await? {
        settle_charge(state, &row).await;
        report.charges += 1;
    }
    for key in claim_refunds(state).await? {
        if let Err(e) = ledger::attempt_refund(state, &key).await {
            tracing::warn!(refund_key = %key, error = %e, "refund attempt not recorded");
        }
        report.refunds += 1;
    }
    report.webhooks = webhook::process_due(state).await?;
    report.cancellations = cancel::resume_due(state).await?;
    Ok(report)
}

/// Claims due charges: `next_check_at` moves ahead by the backoff of the
/// attempt, so a process that dies holding them leaves them to the next pass.
async fn claim_charges(state: &AppState) -> sqlx::Result<Vec<ChargeRow>> {
    let base = state.settings.reconcile_interval.as_secs_f64();
    let max = ledger::MAX_BACKOFF.as_secs_f64();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE charges SET attempts = attempts + 1,
                next_check_at = now() + make_interval(secs => least($1 * power(2, least(attempts, 16)), $2))
         WHERE charge_key IN (
             SELECT charge_key FROM charges
             WHERE status IN ('started', 'pending', 'charged') AND next_check_at <= now()
             ORDER BY next_check_at LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING {CHARGE_COLUMNS}"
    )))
    .bind(base)
    .bind(max)
    .bind(CLAIM_BATCH)
    .fetch_all(&state.db)
    .await
}

async fn claim_refunds(state: &AppState) -> sqlx::Result<Vec<String>> {
    // `attempt_refund` sets the next attempt from its outcome; the claim only
    // keeps another process off the row meanwhile.
    let lease = (state.settings.reconcile_interval * 10).as_secs_f64();
    sqlx::query_scalar(
        "UPDATE refunds SET next_attempt_at = now() + make_interval(secs => $1)
         WHERE refund_key IN (
             SELECT refund_key FROM refunds WHERE status <> 'succeeded' AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING refund_key",
    )
    .bind(lease)
    .bind(CLAIM_BATCH)
    .fetch_all(&state.db)
    .await
}

/// Carries one charge a step further; what cannot be done now is retried at
/// the row's next check.
pub async fn settle_charge(state: &AppState, row: &ChargeRow) {
    if row.provider != state.payments.name() {
        tracing::error!(charge = %row.charge_key, provider = %row.provider, "charge through a provider this server is not configured for");
        return;
    }
    let outcome = match (row.state(), &row.provider_ref) {
        (Some(ChargeState::Started), _) | (Some(ChargeState::Pending), None) => {
            // The request died before the provider's answer was recorded: the same
            // key answers the first charge (or makes it, which the buyer asked for).
            let answer = state.payments.charge(super::charge_request(row)).await;
            settle_answer(state, row, answer).await
        }
        (Some(ChargeState::Pending), Some(reference)) => match state.payments.retrieve(reference).await {
            Ok(c) if c.status == ChargeStatus::Pending => return,
            answer @ (Ok(_) | Err(PaymentError::Declined { .. } | PaymentError::Invalid(_))) => {
                settle_answer(state, row, answer).await
            }
            Err(e) => {
                tracing::debug!(charge = %row.charge_key, error = %e, "pending charge not checked");
                return;
            }
        },
        (Some(ChargeState::Charged), Some(reference)) => {
            let payment = Payment {
                provider: row.provider.clone(),
                reference: reference.clone(),
                amount: row.amount,
                currency: row.currency.clone(),
                charge_key: Some(row.charge_key.clone()),
            };
            let sold = record_sale(state, row.event_id, HoldId(row.hold_id), BuyerId(row.buyer_id), payment).await;
            if let Ok(Paid::Sold(..)) = sold {
                // Sold now, or before (the journal marked it then, unless the sale
                // came from memory): either way this charge is done.
                let done =
                    ledger::mark_charge(&state.db, &row.charge_key, ChargeState::Completed, None, Duration::ZERO, None)
                        .await;
                if let Err(e) = done {
                    tracing::warn!(charge = %row.charge_key, error = %e, "completed charge not marked");
                }
            }
            sold
        }
        _ => return,
    };
    match outcome {
        Ok(Paid::Sold(..)) => tracing::info!(charge = %row.charge_key, "reconciler completed a charge: tickets issued"),
        Ok(Paid::Pending(_)) => tracing::info!(charge = %row.charge_key, "charge awaits the buyer's authentication"),
        Ok(Paid::Processing(_)) => {}
        Err(e) => {
            tracing::info!(charge = %row.charge_key, code = %e.code, detail = %e.detail, "reconciler settled a charge")
        }
    }
}

/// Updates the unreconciled gauges and logs each row once when it becomes overdue.
async fn surface(state: &AppState, logged: &mut HashSet<String>) -> sqlx::Result<()> {
    // Overdue: a charge not finished a minute past its grace, a refund not
    // succeeded after a minute, a webhook not processed after a minute, a
    // cancellation not finished after ten.
    let grace = state.settings.charge_grace.as_secs_f64() + 60.0;
    let rows: Vec<(String, String, f64)> = sqlx::query_as(
        "SELECT 'charge', charge_key, extract(epoch FROM now() - created_at)::float8 FROM charges
           WHERE status IN ('started', 'charged') AND created_at < now() - make_interval(secs => $1)
         UNION ALL
         SELECT 'refund', refund_key, extract(epoch FROM now() - created_at)::float8 FROM refunds
           WHERE status <> 'succeeded' AND created_at < now() - interval '60 seconds'
         UNION ALL
         SELECT 'webhook', event_id, extract(epoch FROM now() - received_at)::float8 FROM webhook_events
           WHERE status = 'received' AND received_at < now() - interval '60 seconds'
         UNION ALL
         SELECT 'cancellation', event_id::text, extract(epoch FROM now() - requested_at)::float8 FROM event_cancellations
           WHERE completed_at IS NULL AND requested_at < now() - interval '600 seconds'
         LIMIT 10000",
    )
    .bind(grace)
    .fetch_all(&state.db)
    .await?;
    let mut oldest = 0.0f64;
    for kind in ["charge", "refund", "webhook", "cancellation"] {
        let n = rows.iter().filter(|(k, _, _)| k == kind).count();
        metrics::gauge!("boxoffice_money_unreconciled", "kind" => kind).set(n as f64);
    }
    let mut current = HashSet::with_capacity(rows.len());
    for (kind, id, age) in rows {
        oldest = oldest.max(age);
        let tag = format!("{kind}:{id}");
        if !logged.contains(&tag) {
            tracing::error!(kind, id = %id, age_secs = age as u64, "money not reconciled in time; still retrying");
        }
        current.insert(tag);
    }
    *logged = current;
    metrics::gauge!("boxoffice_money_unreconciled_oldest_seconds").set(oldest);
    Ok(())
}
