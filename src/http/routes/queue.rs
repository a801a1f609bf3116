//! The waiting room: `POST /events/{id}/queue` (join), `GET /events/{id}/queue/me`
//! (where you stand, and your admission when it comes) and `GET /events/{id}/queue`
//! (the organizer's view: counts and the opening's audit record).
//!
//! Joining is per account (joining again answers the same entry) and limited per
//! client address. The event's owner opens the room and admits people
//! (`workers::waiting_room`); the gate on holds is `http::admission`. Rules:
//! `docs/domain.md`, section "Waiting room".

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, ProblemCode};
use crate::http::access::{EventRow, owned_event, visible_event};
use crate::http::admission::{QueueOut, queue_out, rate_for_estimate};
use crate::http::extract::{ClientIp, Path};
use crate::http::problems::{BadPath, Forbidden, RateLimited, SignedIn, Unavailable};
use crate::http::schema::WaitingRoomOut;
use crate::state::AppState;
use crate::store::queue::{self, RoomSettings};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(join_queue, room_overview)).routes(routes!(my_place))
}

/// The event's room settings, if it has an enabled room.
fn room_settings(row: &EventRow) -> Option<RoomSettings> {
    row.waiting_room.clone().and_then(|v| serde_json::from_value::<RoomSettings>(v).ok()).filter(|s| s.enabled)
}

/// Counts a join attempt from `client`: in Redis when configured (shared by
/// every node), else in this process.
async fn limit_joins(state: &AppState, client: std::net::IpAddr) -> ApiResult<()> {
    let window = Duration::from_secs(60);
    let key = format!("ip:{client}");
    let verdict = match state.cache.incr_window(&format!("ratelimit:queue:{key}"), window).await {
        Some(count) if count > u64::from(state.settings.queue_joins_per_ip_per_minute) => Err(window),
        Some(_) => Ok(()),
        None => state.queue_join_limiter.check(&key),
    };
    verdict.map_err(|wait| ApiError::too_many("too many queue joins from this address; wait and try again", wait))
}

/// Join the event's waiting room (signed-in buyers; one entry per account:
/// joining again answers the same entry with 200).
#[utoipa::path(post, path = "/events/{event_id}/queue", tag = "waiting room", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)),
    responses((status = 201, body = QueueOut, description = "joined"), (status = 200, body = QueueOut, description = "already in the queue"),
              BadPath, SignedIn, RateLimited, Unavailable,
              (status = 409, description = "the event has no waiting room (`no_waiting_room`) or its sale is over (`sale_closed`)", body = crate::error::Problem, content_type = "application/problem+json")))]
async fn join_queue(
    State(state): State<AppState>,
    user: AuthUser,
    ClientIp(client): ClientIp,
    Path(event_id): Path<Uuid>,
) -> ApiResult<(StatusCode, axum::Json<QueueOut>)> {
    let row = visible_event(&state, Some(&user), event_id).await?;
    let settings = room_settings(&row)
        .ok_or_else(|| ApiError::conflict(ProblemCode::NoWaitingRoom, "this event has no waiting room"))?;
    if row.status != "published" || row.closes_at.is_some_and(|c| c <= Utc::now()) {
        return Err(ApiError::conflict(ProblemCode::SaleClosed, "this sale is over"));
    }
    let (entry, created) = match queue::entry(&state.db, event_id, user.id).await? {
        Some(entry) => (entry, false),
        None => {
            limit_joins(&state, client).await?;
            state.joins.join(event_id, user.id, row.opens_at).await?
        }
    };
    metrics::counter!("boxoffice_queue_joins_total", "outcome" => if created { "joined" } else { "again" })
        .increment(1);
    // Nothing to read of the room before the opening.
    let room = match entry.position {
        Some(_) => queue::room(&state.db, event_id).await?,
        None => queue::Room::default(),
    };
    let out = queue_out(&state, event_id, &entry, &room, Some(&settings), row.opens_at);
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, axum::Json(out)))
}

/// Where you stand in the event's waiting room; your admission once admitted.
#[utoipa::path(get, path = "/events/{event_id}/queue/me", tag = "waiting room", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)),
    responses((status = 200, body = QueueOut), BadPath, SignedIn, Unavailable))]
async fn my_place(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
) -> ApiResult<axum::Json<QueueOut>> {
    // One query: every waiting buyer polls this. Having joined, the caller could see the event.
    let (entry, room, opens_at) =
        queue::place(&state.db, event_id, user.id).await?.ok_or_else(|| ApiError::not_found("queue entry"))?;
    let settings = state.rooms.active(&state.db, event_id).await?;
    Ok(axum::Json(queue_out(&state, event_id, &entry, &room, settings.as_ref(), opens_at)))
}

/// The organizer's view of an event's waiting room.
#[derive(Serialize, ToSchema)]
pub struct RoomOut {
    pub event_id: Uuid,
    /// `None` when the event has no waiting room.
    pub settings: Option<WaitingRoomOut>,
    pub opens_at: Option<DateTime<Utc>>,
    /// Entries by state (`waiting` counts the pre-queue too).
    #[schema(value_type = Object)]
    pub counts: BTreeMap<String, i64>,
    /// Joined before the opening and not placed yet.
    pub pre_queue: i64,
    pub admitted_through: i64,
    pub admitted_total: i64,
    pub expired_total: i64,
    /// Admissions per minute now (the setting, or observed with `auto`).
    pub rate_per_minute: u64,
    pub sold_out: bool,
    /// The opening, for audit.
    pub opening: Option<OpeningOut>,
}

/// How the pre-queue was ordered at the opening: the places `1..=shuffled` are
/// the pre-queue in join order permuted by a Fisher–Yates shuffle over SplitMix64
/// seeded with `seed` (`boxoffice_actors::waiting_room::shuffle`), so anyone with
/// the join order can re-derive them.
#[derive(Serialize, ToSchema)]
pub struct OpeningOut {
    pub opened_at: DateTime<Utc>,
    /// The seed, as an unsigned 64-bit decimal string.
    pub seed: String,
    pub shuffled: i32,
    pub node: Option<String>,
    pub epoch: Option<i64>,
}

/// The event's waiting room: counts and the opening's audit record (its organizer and admins).
#[utoipa::path(get, path = "/events/{event_id}/queue", tag = "waiting room", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)),
    responses((status = 200, body = RoomOut), BadPath, SignedIn, Forbidden, Unavailable))]
async fn room_overview(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
) -> ApiResult<axum::Json<RoomOut>> {
    let row = owned_event(&state, &user, event_id).await?;
    let settings = row.waiting_room.clone().and_then(|v| serde_json::from_value::<RoomSettings>(v).ok());
    let room = queue::room(&state.db, event_id).await?;
    let counts = queue::counts(&state.db, event_id).await?.into_iter().collect();
    let pre_queue = queue::pre_queue_len(&state.db, event_id).await?;
    let opening = room.opened_at.map(|opened_at| OpeningOut {
        opened_at,
        seed: (room.shuffle_seed.unwrap_or(0) as u64).to_string(),
        shuffled: room.shuffled,
        node: room.opened_by_node.clone(),
        epoch: room.opened_epoch,
    });
    Ok(axum::Json(RoomOut {
        event_id,
        settings: settings.map(Into::into),
        opens_at: row.opens_at,
        counts,
        pre_queue,
        admitted_through: room.admitted_through,
        admitted_total: room.admitted_total,
        expired_total: room.expired_total,
        rate_per_minute: rate_for_estimate(settings.as_ref(), &room, Utc::now()),
        sold_out: room.sold_out_at.is_some(),
        opening,
    }))
}
