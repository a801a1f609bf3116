//! Seat-level status for seat maps: `GET /events/{id}/seats` (every seat's
//! state, answered by the event's actor), `GET /events/{id}/live` (the same,
//! kept current over Server-Sent Events; see `http::live`), and the organizer's
//! blocked seats (`POST /events/{id}/seats/block` and `/unblock`).

use crate::auth::{AuthUser, MaybeAuthUser};
use crate::error::{ApiError, ApiResult, Problem, ProblemCode};
use crate::http::access::{EventRow, owned_event, visible_event};
use crate::http::extract::{Json, Path};
use crate::http::live::{LiveEventOut, LiveHub, SeatsOut, seats_out};
use crate::http::problems::{BadPath, JsonBody, SignedIn, Unavailable};
use crate::state::AppState;
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{KeepAlive, Sse};
use boxoffice_actors::EventId;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(seat_status))
        .routes(routes!(live))
        .routes(routes!(block_seats))
        .routes(routes!(unblock_seats))
}

/// The event must be visible to the caller and have a seat map.
async fn check_event(state: &AppState, user: Option<&AuthUser>, event_id: Uuid) -> ApiResult<EventRow> {
    let row = visible_event(state, user, event_id).await?;
    if !row.has_seat_map {
        return Err(ApiError::conflict(ProblemCode::NoSeatMap, "the event has no seat map yet"));
    }
    Ok(row)
}

/// Every seat's state — one letter per seat, a string per row — and each
/// section's counts, with the version a live stream continues from. Answered from
/// the event's live state, not the database.
#[utoipa::path(get, path = "/events/{event_id}/seats", tag = "events", security((), ("bearer" = [])),
    params(("event_id" = Uuid, Path)),
    responses((status = 200, body = SeatsOut), BadPath, SignedIn, Unavailable,
              (status = 404, description = "no such event (drafts are visible to their organizer only)", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "the event has no seat map yet", body = Problem, content_type = "application/problem+json")))]
async fn seat_status(
    State(state): State<AppState>,
    MaybeAuthUser(user): MaybeAuthUser,
    Path(event_id): Path<Uuid>,
) -> ApiResult<axum::Json<SeatsOut>> {
    check_event(&state, user.as_ref(), event_id).await?;
    let status = state.event(EventId(event_id)).seat_status().await?;
    Ok(axum::Json(seats_out(event_id, status)))
}

/// Server-Sent Events: a `snapshot` (the body of `GET /events/{id}/seats`), then
/// `changes` frames at most five times a second, each with every seat that
/// changed since the previous frame (label → `F`/`H`/`S`) and the counts of the
/// sections that changed. Each frame's `id` is its version: a client that
/// reconnects with `Last-Event-ID` gets the changes since then, or a new
/// snapshot when that is too long ago. Signed in as the event's organizer (or an
/// admin), the stream also carries a `stats` frame every 2 s (SaleStatsOut):
/// orders in the last minute, orders, revenue, holds expiring within a minute.
#[utoipa::path(get, path = "/events/{event_id}/live", tag = "events", security((), ("bearer" = [])),
    params(("event_id" = Uuid, Path), ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "version of the last frame received")),
    responses((status = 200, description = "text/event-stream of `snapshot` (SeatsOut), `changes` (ChangesOut) and, for organizers, `stats` (SaleStatsOut) frames", body = LiveEventOut, content_type = "text/event-stream"),
              BadPath, SignedIn, Unavailable,
              (status = 404, description = "no such event (drafts are visible to their organizer only)", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "the event has no seat map yet", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "a Last-Event-ID that is not a frame's version (`invalid_field`)", body = Problem, content_type = "application/problem+json")))]
async fn live(
    State(state): State<AppState>,
    Extension(hub): Extension<Arc<LiveHub>>,
    MaybeAuthUser(user): MaybeAuthUser,
    Path(event_id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl futures_util::Stream<Item = Result<axum::response::sse::Event, Infallible>>>> {
    let last_seen = match headers.get("last-event-id") {
        None => None,
        // Read as the document's int64 (a version never reaches 2^63).
        Some(v) => Some(
            v.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok()).and_then(|v| u64::try_from(v).ok()).ok_or_else(
                || {
                    ApiError::invalid(ProblemCode::InvalidField, "Last-Event-ID is the version of a frame (a number)")
                        .with("field", "Last-Event-ID")
                },
            )?,
        ),
    };
    let row = check_event(&state, user.as_ref(), event_id).await?;
    let organizer = user.as_ref().is_some_and(|u| u.is_admin() || u.id == row.organizer_id);
    let subscription = hub.subscribe(event_id, last_seen, organizer).await?;
    let first = subscription.first.event(subscription.sent());
    let rest = futures_util::stream::unfold(subscription, |mut s| async move {
        let frame = s.next().await?;
        Some((Ok(frame.event(s.sent())), s))
    });
    let stream = futures_util::StreamExt::chain(futures_util::stream::once(async move { Ok(first) }), rest);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Seats to take off sale or put back, by label (`A-12`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeatLabelsIn {
    #[schema(min_items = 1, max_items = 1000, example = json!(["A-1", "A-2"]))]
    pub seats: Vec<String>,
}

/// Every seat of the event that is off sale now.
#[derive(Serialize, ToSchema)]
pub struct BlockedOut {
    pub blocked: Vec<String>,
}

/// Most seats one block or unblock names.
const MAX_LABELS: usize = 1_000;

/// Longest seat label: a row label (64 characters), `-`, a seat number.
const MAX_LABEL_LEN: usize = 64 + 1 + 10;

fn labels(input: SeatLabelsIn) -> ApiResult<Vec<String>> {
    if input.seats.is_empty() || input.seats.len() > MAX_LABELS {
        return Err(ApiError::invalid(ProblemCode::InvalidField, format!("seats lists 1 to {MAX_LABELS} seat labels"))
            .with("field", "seats"));
    }
    // Checked before anything is stored: a label that cannot name a seat is refused whole.
    if let Some(bad) =
        input.seats.iter().find(|l| l.is_empty() || l.len() > MAX_LABEL_LEN || l.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(ProblemCode::UnknownSeat, "a seat label is `{row}-{number}`, such as A-12")
            .with("seat", bad.chars().take(MAX_LABEL_LEN).collect::<String>()));
    }
    Ok(input.seats)
}

/// Takes free seats off sale (house seats, broken seats): nobody can hold them
/// until they are unblocked. All or nothing: a held or sold seat refuses the lot
/// (409 `seats_taken`), an unknown label too (422 `unknown_seat`).
#[utoipa::path(post, path = "/events/{event_id}/seats/block", tag = "events", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)), request_body = SeatLabelsIn,
    responses((status = 200, body = BlockedOut), BadPath, JsonBody, SignedIn, Unavailable,
              (status = 403, description = "not the event's organizer", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "a seat is held or sold (`seats` lists them)", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "no seats, too many, or an unknown label", body = Problem, content_type = "application/problem+json")))]
async fn block_seats(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
    Json(input): Json<SeatLabelsIn>,
) -> ApiResult<axum::Json<BlockedOut>> {
    owned_event(&state, &user, event_id).await?;
    let seats = labels(input)?;
    // The actor decides (free seats only) and takes them at once; then they are
    // stored. This write is not fenced like the journal's: should the event move to
    // another node between the two, the new owner may load without the block (the
    // organizer blocks again); no seat can be sold twice either way.
    let event = state.event(EventId(event_id));
    let blocked = event.block_seats(seats.clone(), true).await?;
    let stored = sqlx::query(
        "UPDATE events SET blocked_seats = ARRAY(SELECT DISTINCT s FROM unnest(blocked_seats || $2::text[]) s ORDER BY s)
         WHERE event_id = $1",
    )
    .bind(event_id)
    .bind(&seats)
    .execute(&state.db)
    .await;
    if let Err(e) = stored {
        // Not stored: put them back on sale, so memory never keeps what the database does not.
        let _ = event.block_seats(seats, false).await;
        return Err(e.into());
    }
    Ok(axum::Json(BlockedOut { blocked }))
}

/// Puts blocked seats back on sale; seats that are not blocked are left as they are.
#[utoipa::path(post, path = "/events/{event_id}/seats/unblock", tag = "events", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)), request_body = SeatLabelsIn,
    responses((status = 200, body = BlockedOut), BadPath, JsonBody, SignedIn, Unavailable,
              (status = 403, description = "not the event's organizer", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "no seats, too many, or an unknown label", body = Problem, content_type = "application/problem+json")))]
async fn unblock_seats(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
    Json(input): Json<SeatLabelsIn>,
) -> ApiResult<axum::Json<BlockedOut>> {
    owned_event(&state, &user, event_id).await?;
    let seats = labels(input)?;
    // Stored first, then freed: a seat is offered again only once the database says so.
    sqlx::query(
        "UPDATE events SET blocked_seats = ARRAY(SELECT s FROM unnest(blocked_seats) s WHERE s <> ALL($2::text[]) ORDER BY s)
         WHERE event_id = $1",
    )
    .bind(event_id)
    .bind(&seats)
    .execute(&state.db)
    .await?;
    let blocked = state.event(EventId(event_id)).block_seats(seats, false).await?;
    Ok(axum::Json(BlockedOut { blocked }))
}
