//! The waiting room's gate and views, shared by the hold, one-shot purchase and
//! queue routes (`docs/domain.md`, section "Waiting room").
//!
//! **Guarantees.** While an event's room is enabled, a hold or one-shot purchase
//! goes to the event's actor only with a valid admission (`Queue-Admission`
//! header) naming this event and this account and not yet expired; otherwise the
//! answer is 403 `not_admitted` with where the buyer stands. A node learns of a
//! room switched on elsewhere within `store::queue::SETTINGS_TTL`.

use crate::auth::admission::AdmissionError;
use crate::error::{ApiError, ApiResult, ProblemCode};
use crate::state::AppState;
use crate::store::queue::{self, Entry, Room, RoomSettings};
use axum::http::{HeaderMap, StatusCode};
use boxoffice_actors::waiting_room::estimated_wait_secs;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// The request header that carries an admission token.
pub const HEADER: &str = "queue-admission";

/// Where a buyer stands in an event's waiting room.
#[derive(Serialize, ToSchema)]
pub struct QueueOut {
    pub event_id: Uuid,
    /// `pre_queue` (joined before the opening: the place is drawn at `opens_at`),
    /// `waiting` (without a `position` for a moment at the opening, until placed), `admitted` (see `admission`), `used` (a hold was made with the
    /// admission), `expired` (the admission lapsed unused) or `sold_out`.
    pub state: String,
    /// Place in line (1 = first); absent in the pre-queue.
    pub position: Option<i64>,
    /// People still ahead.
    pub ahead: Option<i64>,
    /// Estimated seconds until admission, at the current rate.
    pub estimated_wait_secs: Option<u64>,
    /// When the pre-queue is shuffled and the sale opens.
    pub opens_at: Option<DateTime<Utc>>,
    pub joined_at: DateTime<Utc>,
    /// The event is sold out (with a waitlist, waiting goes on for returns).
    pub sold_out: bool,
    /// Present once admitted and until the admission expires.
    pub admission: Option<AdmissionOut>,
}

/// An admission: send `token` as the `Queue-Admission` header of
/// `POST /events/{id}/holds` or `POST /tickets/purchase` before `expires_at`.
#[derive(Serialize, ToSchema)]
pub struct AdmissionOut {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Admissions per minute to base estimates on: the configured rate, or with
/// `auto` the rate observed since the opening.
pub fn rate_for_estimate(settings: Option<&RoomSettings>, room: &Room, now: DateTime<Utc>) -> u64 {
    if let Some(rate) = settings.and_then(|s| s.rate_per_minute) {
        return u64::from(rate);
    }
    match room.opened_at {
        Some(opened) => {
            let minutes = ((now - opened).num_milliseconds().max(1) as f64 / 60_000.0).max(1.0 / 60.0);
            (room.admitted_total as f64 / minutes).round() as u64
        }
        None => 0,
    }
}

/// `entry` as the buyer sees it.
pub fn queue_out(
    state: &AppState,
    event: Uuid,
    entry: &Entry,
    room: &Room,
    settings: Option<&RoomSettings>,
    opens_at: Option<DateTime<Utc>>,
) -> QueueOut {
    let now = Utc::now();
    let admission = match (entry.state.as_str(), entry.admission_expires_at) {
        ("admitted" | "used", Some(exp)) if exp > now => {
            Some(AdmissionOut { token: state.admissions.sign(event, entry.user_id, exp.timestamp()), expires_at: exp })
        }
        _ => None,
    };
    let state_name = match entry.state.as_str() {
        "waiting" if entry.position.is_none() && entry.pre_queue => "pre_queue",
        "admitted" if admission.is_none() => "expired",
        other => other,
    };
    let ahead =
        (state_name == "waiting").then(|| entry.position.map(|p| (p - room.admitted_through - 1).max(0))).flatten();
    let rate = rate_for_estimate(settings, room, now);
    QueueOut {
        event_id: event,
        state: state_name.to_owned(),
        position: entry.position,
        ahead,
        estimated_wait_secs: ahead.and_then(|a| estimated_wait_secs(a as u64, rate)),
        opens_at,
        joined_at: entry.joined_at,
        sold_out: room.sold_out_at.is_some() || entry.state == "sold_out",
        admission,
    }
}

/// Lets the request through when `event` has no active room, or the request
/// carries a valid admission of `user`; answers `Ok(true)` in that second case
/// (the caller marks the admission used once its hold is made).
pub async fn require(state: &AppState, event: Uuid, user: Uuid, headers: &HeaderMap) -> ApiResult<bool> {
    let Some(settings) = state.rooms.active(&state.db, event).await? else { return Ok(false) };
    let token = headers.get(HEADER).and_then(|v| v.to_str().ok());
    let why = match token.map(|t| state.admissions.verify(t, event, user, Utc::now().timestamp())) {
        Some(Ok(_)) => return Ok(true),
        None => "this sale has a waiting room: join it (POST /events/{id}/queue) and wait for your admission",
        Some(Err(AdmissionError::Invalid)) => "the admission token is not valid",
        Some(Err(AdmissionError::NotYours)) => "the admission token is for another event or account",
        Some(Err(AdmissionError::Expired)) => "your admission has expired",
    };
    let mut error = ApiError::new(StatusCode::FORBIDDEN, ProblemCode::NotAdmitted, why);
    match queue::entry(&state.db, event, user).await? {
        Some(entry) => {
            let room = queue::room(&state.db, event).await?;
            let out = queue_out(state, event, &entry, &room, Some(&settings), None);
            error = error.with("queue_state", out.state).with("position", out.position).with("ahead", out.ahead);
        }
        None => error = error.with("queue_state", "not_joined"),
    }
    Err(error)
}

/// Records that `user`'s admission to `event` was used (a hold was made with it),
/// so its slot does not come back when it expires.
pub async fn used(state: &AppState, event: Uuid, user: Uuid) {
    if let Err(e) = queue::mark_used(&state.db, event, user).await {
        tracing::warn!(error = %e, %event, "admission not marked used");
    }
}
