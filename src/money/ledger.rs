//! The money ledger in PostgreSQL: one `charges` row per charge attempt, written
//! before the provider is asked, and one `refunds` row per refund, written before
//! the provider is asked. Both are carried to their end by whoever gets there
//! first — the request that started them or the reconciler — and every provider
//! call is idempotent on the row's key, so getting there twice is harmless.

use crate::payments::{PaymentError, RefundRequest};
use crate::state::AppState;
use crate::store::outbox::{self, Topic};
use sqlx::PgExecutor;
use std::time::Duration;
use uuid::Uuid;

/// Longest wait between two attempts at the same charge or refund.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The `attempts`-th retry waits `base × 2^attempts`, at most [`MAX_BACKOFF`].
pub fn backoff(base: Duration, attempts: i32) -> Duration {
    let factor = 1u32 << attempts.clamp(0, 16);
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Where a charge stands (see the `charges` table's comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChargeState {
    Started,
    Pending,
    Charged,
    Completed,
    Refunded,
    Declined,
}

impl ChargeState {
    pub const fn as_str(self) -> &'static str {
        match self {
            ChargeState::Started => "started",
            ChargeState::Pending => "pending",
            ChargeState::Charged => "charged",
            ChargeState::Completed => "completed",
            ChargeState::Refunded => "refunded",
            ChargeState::Declined => "declined",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "started" => ChargeState::Started,
            "pending" => ChargeState::Pending,
            "charged" => ChargeState::Charged,
            "completed" => ChargeState::Completed,
            "refunded" => ChargeState::Refunded,
            "declined" => ChargeState::Declined,
            _ => return None,
        })
    }
}

pub use crate::store::charges::{CHARGE_COLUMNS, ChargeRow};

impl ChargeRow {
    pub fn state(&self) -> Option<ChargeState> {
        ChargeState::parse(&self.status)
    }
}

/// Records the intent to charge (`started`, first looked at by the reconciler
/// after `CHARGE_GRACE_MS`), or returns the row already there for this key. Group
/// committed with the other payments of the moment (`store::charges`).
pub async fn start_charge(state: &AppState, row: &ChargeRow) -> Result<ChargeRow, crate::error::ApiError> {
    state.charges.record(row.clone()).await.map_err(|e| {
        crate::error::ApiError::unavailable(format!("the payment could not be recorded: {e}"), Duration::from_secs(1))
    })
}

/// Moves a charge on. Never moves a finished charge (`completed`, `refunded`)
/// back, and never moves `charged` back to `started`/`pending`/`declined`.
pub async fn mark_charge(
    db: impl PgExecutor<'_>,
    key: &str,
    to: ChargeState,
    reference: Option<&str>,
    next_check_in: Duration,
    error: Option<&str>,
) -> sqlx::Result<bool> {
    let from: &[&str] = match to {
        ChargeState::Started => &["started"],
        ChargeState::Pending => &["started", "pending"],
        // A provider's success after a reported failure: the money moved after all.
        ChargeState::Charged => &["started", "pending", "charged", "declined"],
        ChargeState::Declined => &["started", "pending"],
        ChargeState::Completed | ChargeState::Refunded => &["started", "pending", "charged"],
    };
    let done = sqlx::query(
        "UPDATE charges SET status = $2, provider_ref = coalesce($3, provider_ref),
                next_check_at = now() + make_interval(secs => $4), last_error = coalesce($5, last_error),
                updated_at = now()
         WHERE charge_key = $1 AND status = ANY($6)",
    )
    .bind(key)
    .bind(to.as_str())
    .bind(reference)
    .bind(next_check_in.as_secs_f64())
    .bind(error)
    .bind(from)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The charge behind a provider reference, if this server started it or a
/// webhook announced it.
pub async fn charge_by_reference(
    db: impl PgExecutor<'_>,
    provider: &str,
    reference: &str,
) -> sqlx::Result<Option<ChargeRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CHARGE_COLUMNS} FROM charges WHERE provider = $1 AND provider_ref = $2"
    )))
    .bind(provider)
    .bind(reference)
    .fetch_optional(db)
    .await
}

/// What to refund.
#[derive(Clone, Debug)]
pub struct RefundIntent {
    /// The provider's idempotency key and the row's primary key.
    pub key: String,
    pub hold: Uuid,
    pub event: Uuid,
    pub ticket: Option<Uuid>,
    pub provider: String,
    pub payment_ref: String,
    pub amount: i64,
}

/// Records a refund to make (`pending`), once per key. Returns whether it is new.
pub async fn request_refund(db: impl PgExecutor<'_>, r: &RefundIntent) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "WITH new AS (
            INSERT INTO refunds (refund_key, hold_id, event_id, ticket_id, provider, payment_ref, amount, status)
            VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') ON CONFLICT (refund_key) DO NOTHING
            RETURNING refund_key)
         INSERT INTO outbox (topic, aggregate_id, payload)
         SELECT $8, $2, jsonb_build_object('refund_key', $1::text, 'hold_id', $2::uuid, 'event_id', $3::uuid,
                                           'ticket_id', $4::uuid, 'amount', $7::int8)
         FROM new",
    )
    .bind(&r.key)
    .bind(r.hold)
    .bind(r.event)
    .bind(r.ticket)
    .bind(&r.provider)
    .bind(&r.payment_ref)
    .bind(r.amount)
    .bind(Topic::RefundRequested.as_str())
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Where a refund stands after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundStatus {
    Succeeded,
    /// The provider could not be reached; retried.
    Pending,
    /// The provider refused; retried too (with backoff), and surfaced as unreconciled.
    Failed,
}

impl RefundStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Pending => "pending",
            RefundStatus::Failed => "failed",
        }
    }
}

#[derive(sqlx::FromRow)]
struct RefundRow {
    hold_id: Uuid,
    event_id: Option<Uuid>,
    ticket_id: Option<Uuid>,
    provider: String,
    payment_ref: String,
    amount: i64,
    status: String,
    attempts: i32,
}

/// Asks the provider for the refund recorded under `key` (unless it already
/// succeeded) and records the answer. Idempotent on `key` at the provider.
pub async fn attempt_refund(state: &AppState, key: &str) -> sqlx::Result<RefundStatus> {
    let row: Option<RefundRow> = sqlx::query_as(
        "SELECT hold_id, event_id, ticket_id, provider, payment_ref, amount, status, attempts
         FROM refunds WHERE refund_key = $1",
    )
    .bind(key)
    .fetch_optional(&state.db)
    .await?;
    let Some(row) = row else { return Err(sqlx::Error::RowNotFound) };
    if row.status == "succeeded" {
        return Ok(RefundStatus::Succeeded);
    }
    if row.provider != state.payments.name() {
        tracing::error!(refund_key = key, provider = %row.provider, "refund through a provider this server is not configured for");
        return Ok(RefundStatus::Failed);
    }
    let outcome = state
        .payments
        .refund(RefundRequest {
            idempotency_key: key.to_owned(),
            reference: row.payment_ref.clone(),
            amount: Some(row.amount),
        })
        .await;
    let (status, provider_ref, error) = match &outcome {
        Ok(r) => (RefundStatus::Succeeded, Some(r.reference.clone()), None),
        Err(e @ PaymentError::Unavailable(_)) => (RefundStatus::Pending, None, Some(e.to_string())),
        Err(e) => (RefundStatus::Failed, None, Some(e.to_string())),
    };
    let retry_in = backoff(state.settings.reconcile_interval, row.attempts);
    let mut tx = state.db.begin().await?;
    let changed = sqlx::query(
        "UPDATE refunds SET status = $2, provider_ref = coalesce($3, provider_ref), attempts = attempts + 1,
                next_attempt_at = now() + make_interval(secs => $4), last_error = $5, updated_at = now()
         WHERE refund_key = $1 AND status <> 'succeeded'",
    )
    .bind(key)
    .bind(status.as_str())
    .bind(&provider_ref)
    .bind(retry_in.as_secs_f64())
    .bind(&error)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if changed {
        let payload = serde_json::json!({
            "refund_key": key, "hold_id": row.hold_id, "event_id": row.event_id, "ticket_id": row.ticket_id,
            "amount": row.amount, "status": status.as_str(), "error": error,
        });
        match status {
            RefundStatus::Succeeded => {
                outbox::record(&mut *tx, Topic::RefundSucceeded, row.hold_id, payload.clone()).await?;
                // What buyers are emailed about (and what consumers of earlier
                // versions subscribe to).
                outbox::record(&mut *tx, Topic::PaymentRefunded, row.hold_id, payload).await?;
            }
            RefundStatus::Failed | RefundStatus::Pending => {
                outbox::record(&mut *tx, Topic::RefundFailed, row.hold_id, payload).await?;
            }
        }
    }
    tx.commit().await?;
    match status {
        RefundStatus::Succeeded if changed => metrics::counter!("boxoffice_refunds_total").increment(1),
        RefundStatus::Succeeded => {}
        _ => {
            metrics::counter!("boxoffice_refund_failures_total").increment(1);
            tracing::warn!(
                refund_key = key,
                error = error.as_deref().unwrap_or(""),
                attempts = row.attempts + 1,
                "refund attempt failed; retried later"
            );
        }
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_millis(500);
        assert_eq!(backoff(base, 0), Duration::from_millis(500));
        assert_eq!(backoff(base, 3), Duration::from_secs(4));
        assert_eq!(backoff(base, 40), MAX_BACKOFF);
        assert_eq!(backoff(base, -1), base);
    }

    #[test]
    fn charge_states_round_trip() {
        for s in [
            ChargeState::Started,
            ChargeState::Pending,
            ChargeState::Charged,
            ChargeState::Completed,
            ChargeState::Refunded,
            ChargeState::Declined,
        ] {
            assert_eq!(ChargeState::parse(s.as_str()), Some(s));
        }
        assert_eq!(ChargeState::parse("nope"), None);
    }
}
