//! Cancelling an event: every valid ticket cancelled and refunded once, every
//! active hold released, buyers told.
//!
//! The request commits the intent (`event_cancellations`) with the status
//! change; the job then works from the database, so a crash midway is resumed
//! by the reconciler and repeats nothing: tickets are cancelled through the
//! event's actor (which refuses sales from the moment the event is cancelled),
//! each cancelled ticket's refund is recorded under the ticket's own key
//! (`refund-{ticket}`, the key a buyer's own cancellation uses too, so no ticket
//! is refunded twice), and the refunds are carried to `succeeded` like any other.
//! One job per event at a time, across processes (a PostgreSQL advisory lock).

use super::ledger;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::outbox::{self, Topic};
use boxoffice_actors::{BuyerId, EventError, EventId, HoldId, InventoryError, TicketId};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// Actor calls in flight at once for one cancellation.
const CONCURRENCY: usize = 16;

/// Where an event's cancellation stands.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CancellationOut {
    pub event_id: Uuid,
    pub reason: String,
    pub requested_at: DateTime<Utc>,
    /// `in_progress` or `completed` (every ticket cancelled and its refund recorded;
    /// refunds may still be on their way, see `refunds`).
    pub status: &'static str,
    pub completed_at: Option<DateTime<Utc>>,
    pub tickets_cancelled: i64,
    /// Valid tickets still to cancel.
    pub tickets_remaining: i64,
    /// Tickets checked in before the cancellation: they stay `used` and are refunded too.
    pub tickets_used: i64,
    pub holds_active: i64,
    pub refunds: RefundProgress,
}

#[derive(Clone, Debug, Default, Serialize, ToSchema, sqlx::FromRow)]
pub struct RefundProgress {
    pub total: i64,
    pub succeeded: i64,
    /// Recorded, not yet confirmed by the provider (retried until it is).
    pub pending: i64,
    /// Refused by the provider so far (retried with backoff, and alerted on).
    pub failed: i64,
    /// Minor units.
    pub amount_refunded: i64,
    pub amount_outstanding: i64,
}

/// Cancels `event_id` (already checked to be the caller's): the status change and
/// the durable intent in one transaction. Idempotent: a second call keeps the
/// first reason.
pub async fn request(state: &AppState, event_id: Uuid, by: Uuid, reason: &str) -> ApiResult<()> {
    let mut tx = state.db.begin().await?;
    let changed = sqlx::query(
        "UPDATE events SET status = 'cancelled', updated_at = now() WHERE event_id = $1 AND status <> 'cancelled'",
    )
    .bind(event_id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let new = sqlx::query(
        "INSERT INTO event_cancellations (event_id, reason, requested_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(event_id)
    .bind(reason)
    .bind(by)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if changed {
        let payload = serde_json::json!({"event_id": event_id, "status": "cancelled"});
        outbox::record(&mut *tx, Topic::EventUpdated, event_id, payload).await?;
    }
    if new {
        let payload = serde_json::json!({"event_id": event_id, "reason": reason});
        outbox::record(&mut *tx, Topic::EventCancelled, event_id, payload).await?;
    }
    tx.commit().await?;
    if changed {
        // The actor reloads as cancelled: it sells nothing from now on.
        state.event(EventId(event_id)).evict().await;
        state.invalidate_event(event_id).await;
    }
    Ok(())
}

/// Runs (or resumes) the cancellation job of `event_id`. Returns whether it is
/// complete; `false` also when another process is running it.
pub async fn run(state: &AppState, event_id: Uuid) -> ApiResult<bool> {
    // Held on this connection for the job's length; released when it returns to
    // the pool (or dies with the process).
    let mut lock = state.db.acquire().await?;
    let key = advisory_key(event_id);
    let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut *lock).await?;
    if !mine {
        return Ok(false);
    }
    let result = run_locked(state, event_id).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(key).execute(&mut *lock).await;
    result
}

async fn run_locked(state: &AppState, event_id: Uuid) -> ApiResult<bool> {
    let open: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT completed_at FROM event_cancellations WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(&state.db)
            .await?;
    match open {
        None => return Err(ApiError::not_found("cancellation")),
        Some(Some(_)) => return Ok(true),
        Some(None) => {}
    }
    let event = EventId(event_id);

    // 1. Active holds go back (nobody can pay for them any more anyway).
    let holds: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT hold_id, buyer_id FROM holds WHERE event_id = $1 AND status = 'active'")
            .bind(event_id)
            .fetch_all(&state.db)
            .await?;
    let released = futures_util::stream::iter(holds)
        .map(|(hold, buyer)| async move {
            let r = state.event(event).release(HoldId(hold), BuyerId(buyer)).await;
            match r {
                Ok(_) | Err(EventError::Inventory(InventoryError::HoldNotActive(_) | InventoryError::HoldNotFound)) => {
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;

    // 2. Valid tickets are cancelled, one actor call per order.
    let orders: Vec<(Uuid, Uuid, Vec<Uuid>)> = sqlx::query_as(
        "SELECT hold_id, purchaser_id, array_agg(ticket_id ORDER BY ticket_id) FROM tickets
         WHERE event_id = $1 AND status = 'valid' GROUP BY hold_id, purchaser_id",
    )
    .bind(event_id)
    .fetch_all(&state.db)
    .await?;
    let cancelled = futures_util::stream::iter(orders)
        .map(|(hold, buyer, tickets)| async move {
            let ids: Vec<TicketId> = tickets.into_iter().map(TicketId).collect();
            let r = state.event(event).cancel_tickets(HoldId(hold), BuyerId(buyer), ids).await;
            match r {
                Ok(_) | Err(EventError::Inventory(InventoryError::TicketNotFound)) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let failures = released.iter().chain(&cancelled).filter(|r| r.is_err()).count();
    if let Some(Err(e)) = released.iter().chain(&cancelled).find(|r| r.is_err()) {
        tracing::warn!(%event_id, failures, error = %e, "event cancellation: some holds or tickets not done yet; resumed later");
    }
    metrics::counter!("boxoffice_tickets_cancelled_total")
        .increment(cancelled.iter().filter(|r| r.is_ok()).count() as u64);

    // 3. Every cancelled or used ticket of a paid order has its refund recorded
    //    (once: the key is the ticket's), then asked for.
    let keys: Vec<String> = sqlx::query_scalar(
        "WITH new AS (
            INSERT INTO refunds (refund_key, hold_id, event_id, ticket_id, provider, payment_ref, amount, status)
            SELECT 'refund-' || t.ticket_id, t.hold_id, t.event_id, t.ticket_id, p.provider, p.provider_ref, t.price,
                   'pending'
            FROM tickets t JOIN payments p ON p.hold_id = t.hold_id AND p.status = 'succeeded'
            WHERE t.event_id = $1 AND t.status IN ('cancelled', 'used') AND t.price > 0
            ON CONFLICT (refund_key) DO NOTHING
            RETURNING refund_key, hold_id, event_id, ticket_id, amount),
         announced AS (
            INSERT INTO outbox (topic, aggregate_id, payload)
            SELECT $2, hold_id, jsonb_build_object('refund_key', refund_key, 'hold_id', hold_id, 'event_id', event_id,
                                                   'ticket_id', ticket_id, 'amount', amount, 'reason', 'event_cancelled')
            FROM new)
         SELECT refund_key FROM new",
    )
    .bind(event_id)
    .bind(Topic::RefundRequested.as_str())
    .fetch_all(&state.db)
    .await?;
    let attempted = futures_util::stream::iter(keys)
        .map(|key: String| async move { ledger::attempt_refund(state, &key).await })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    if let Some(Err(e)) = attempted.iter().find(|r| r.is_err()) {
        tracing::warn!(%event_id, error = %e, "event cancellation: a refund attempt was not recorded; retried later");
    }

    // 4. Done when nothing is left to cancel or release.
    if failures > 0 {
        return Ok(false);
    }
    let done = sqlx::query(
        "UPDATE event_cancellations SET completed_at = now()
         WHERE event_id = $1 AND completed_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM tickets WHERE event_id = $1 AND status = 'valid')
           AND NOT EXISTS (SELECT 1 FROM holds WHERE event_id = $1 AND status = 'active')",
    )
    .bind(event_id)
    .execute(&state.db)
    .await?
    .rows_affected()
        == 1;
    if done {
        tracing::info!(%event_id, "event cancellation complete");
    }
    Ok(done)
}

/// Resumes the unfinished cancellations (for the reconciler).
pub async fn resume_due(state: &AppState) -> sqlx::Result<usize> {
    let open: Vec<Uuid> = sqlx::query_scalar(
        "SELECT event_id FROM event_cancellations WHERE completed_at IS NULL ORDER BY requested_at LIMIT 20",
    )
    .fetch_all(&state.db)
    .await?;
    for &event_id in &open {
        if let Err(e) = run(state, event_id).await {
            tracing::warn!(%event_id, code = %e.code, detail = %e.detail, "event cancellation not resumed");
        }
    }
    Ok(open.len())
}

/// Where the cancellation of `event_id` stands, if it was cancelled.
pub async fn progress(state: &AppState, event_id: Uuid) -> ApiResult<Option<CancellationOut>> {
    let row: Option<(String, DateTime<Utc>, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT reason, requested_at, completed_at FROM event_cancellations WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(&state.db)
            .await?;
    let Some((reason, requested_at, completed_at)) = row else { return Ok(None) };
    let (cancelled, remaining, used, holds_active): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'cancelled'), count(*) FILTER (WHERE status = 'valid'),
                count(*) FILTER (WHERE status = 'used'),
                (SELECT count(*) FROM holds WHERE event_id = $1 AND status = 'active')
         FROM tickets WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_one(&state.db)
    .await?;
    let refunds: RefundProgress = sqlx::query_as(
        "SELECT count(*) AS total,
                count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                count(*) FILTER (WHERE status = 'pending') AS pending,
                count(*) FILTER (WHERE status = 'failed') AS failed,
                coalesce(sum(amount) FILTER (WHERE status = 'succeeded'), 0)::int8 AS amount_refunded,
                coalesce(sum(amount) FILTER (WHERE status <> 'succeeded'), 0)::int8 AS amount_outstanding
         FROM refunds WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_one(&state.db)
    .await?;
    Ok(Some(CancellationOut {
        event_id,
        reason,
        requested_at,
        status: if completed_at.is_some() { "completed" } else { "in_progress" },
        completed_at,
        tickets_cancelled: cancelled,
        tickets_remaining: remaining,
        tickets_used: used,
        holds_active,
        refunds,
    }))
}

/// The advisory lock's key for an event's cancellation job.
fn advisory_key(event_id: Uuid) -> i64 {
    // A fixed tag in the high half keeps it apart from any other advisory lock.
    let low = (event_id.as_u128() as u64) & 0xffff_ffff;
    (0x6361_6e63_i64 << 32) | low as i64
}
