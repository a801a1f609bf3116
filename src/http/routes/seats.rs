//! Seat-level status for seat maps: `GET /events/{id}/seats` (every seat's
//! state, answered by the event's actor) and `GET /events/{id}/live` (the same,
//! kept current over Server-Sent Events; see `http::live`).

use crate::auth::MaybeAuthUser;
use crate::error::{ApiError, ApiResult, Problem, ProblemCode};
use crate::http::access::visible_event;
use crate::http::extract::Path;
use crate::http::live::{ChangesOut, LiveHub, SeatsOut, seats_out};
use crate::state::AppState;
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{KeepAlive, Sse};
use boxoffice_actors::EventId;
use std::convert::Infallible;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(seat_status)).routes(routes!(live))
}

/// The event must be visible to the caller and have a seat map.
async fn check_event(state: &AppState, user: Option<&crate::auth::AuthUser>, event_id: Uuid) -> ApiResult<()> {
    let row = visible_event(state, user, event_id).await?;
    if !row.has_seat_map {
        return Err(ApiError::conflict(ProblemCode::NoSeatMap, "the event has no seat map yet"));
    }
    Ok(())
}

/// Every seat's state — one letter per seat, a string per row — and each
/// section's counts, with the version a live stream continues from. Answered from
/// the event's live state, not the database.
#[utoipa::path(get, path = "/events/{event_id}/seats", tag = "events", params(("event_id" = Uuid, Path)),
    responses((status = 200, body = SeatsOut),
              (status = 400, description = "malformed event id", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "no such event (drafts are visible to their organizer only)", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "the event has no seat map yet", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "the event is busy or moving between nodes; retry after Retry-After", body = Problem, content_type = "application/problem+json")))]
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
/// snapshot when that is too long ago.
#[utoipa::path(get, path = "/events/{event_id}/live", tag = "events",
    params(("event_id" = Uuid, Path), ("Last-Event-ID" = Option<u64>, Header, description = "version of the last frame received")),
    responses((status = 200, description = "text/event-stream of `snapshot` (SeatsOut) and `changes` (ChangesOut) frames", body = ChangesOut, content_type = "text/event-stream"),
              (status = 400, description = "malformed event id or Last-Event-ID", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "no such event", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "the event has no seat map yet", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "the event is busy or moving between nodes", body = Problem, content_type = "application/problem+json")))]
async fn live(
    State(state): State<AppState>,
    Extension(hub): Extension<Arc<LiveHub>>,
    MaybeAuthUser(user): MaybeAuthUser,
    Path(event_id): Path<Uuid>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl futures_util::Stream<Item = Result<axum::response::sse::Event, Infallible>>>> {
    let last_seen = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or_else(|| {
            ApiError::invalid(ProblemCode::InvalidField, "Last-Event-ID is the version of a frame (a number)")
                .with("field", "Last-Event-ID")
        })?),
    };
    check_event(&state, user.as_ref(), event_id).await?;
    let subscription = hub.subscribe(event_id, last_seen).await?;
    let first = subscription.first.clone();
    let rest = futures_util::stream::unfold(subscription, |mut s| async move {
        let frame = s.next().await?;
        Some((Ok(frame.event()), s))
    });
    let stream = futures_util::StreamExt::chain(futures_util::stream::once(async move { Ok(first.event()) }), rest);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
