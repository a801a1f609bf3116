//! Who may see or change what (isolation): events by their organizer (drafts are
//! private; published events are public), with the `events` row routes read.
//! Another user's private thing is a 404, indistinguishable from a missing one.

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::http::schema::{EventOut, SalesWindowOut};
use crate::state::AppState;
use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(sqlx::FromRow)]
pub struct EventRow {
    pub event_id: Uuid,
    pub organizer_id: Uuid,
    pub organizer_name: String,
    pub title: String,
    pub description: String,
    pub category: Option<String>,
    pub venue_name: String,
    pub venue_address: Option<String>,
    pub event_date: DateTime<Utc>,
    pub currency: String,
    pub status: String,
    pub total_seats: i32,
    pub taken_count: i32,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub opens_at: Option<DateTime<Utc>>,
    pub closes_at: Option<DateTime<Utc>>,
    pub per_buyer_limit: i32,
    pub hold_ttl_secs: i32,
    pub has_seat_map: bool,
    /// The waiting room's settings (`events.waiting_room`), if any.
    pub waiting_room: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const EVENT_COLUMNS: &str =
    "e.event_id, e.organizer_id, u.name AS organizer_name, e.title, e.description, e.category,
    e.venue_name, e.venue_address, e.event_date, e.currency, e.status, e.total_seats, e.taken_count, e.min_price,
    e.max_price, e.opens_at, e.closes_at, e.per_buyer_limit, e.hold_ttl_secs, (e.seat_map IS NOT NULL) AS has_seat_map,
    e.waiting_room, e.created_at, e.updated_at";

impl From<EventRow> for EventOut {
    fn from(r: EventRow) -> Self {
        EventOut {
            event_id: r.event_id,
            organizer_id: r.organizer_id,
            organizer_name: r.organizer_name,
            title: r.title,
            description: r.description,
            category: r.category,
            venue_name: r.venue_name,
            venue_address: r.venue_address,
            event_date: r.event_date,
            currency: r.currency,
            status: r.status,
            total_seats: r.total_seats,
            available_seats: i64::from(r.total_seats - r.taken_count).max(0),
            base_price: r.min_price,
            max_price: r.max_price,
            sales_window: SalesWindowOut {
                opens_at: r.opens_at,
                closes_at: r.closes_at,
                per_buyer_limit: r.per_buyer_limit,
                hold_ttl_secs: r.hold_ttl_secs,
                waiting_room: r
                    .waiting_room
                    .and_then(|v| serde_json::from_value::<crate::store::queue::RoomSettings>(v).ok())
                    .map(Into::into),
            },
            has_seat_map: r.has_seat_map,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

pub async fn fetch_event(state: &AppState, id: Uuid) -> ApiResult<Option<EventRow>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events e JOIN users u ON u.user_id = e.organizer_id WHERE e.event_id = $1"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&state.db).await?)
}

/// The event, if `user` may manage it (owner or admin). Others get 404 for events
/// they cannot see and 403 for published ones they do not own.
pub async fn owned_event(state: &AppState, user: &AuthUser, id: Uuid) -> ApiResult<EventRow> {
    let row = fetch_event(state, id).await?.ok_or_else(|| ApiError::not_found("event"))?;
    if user.is_admin() || row.organizer_id == user.id {
        return Ok(row);
    }
    if row.status == "draft" {
        Err(ApiError::not_found("event"))
    } else {
        Err(ApiError::forbidden("only the event's organizer may do this"))
    }
}

/// Published events are public; others only to their organizer and admins.
pub async fn visible_event(state: &AppState, user: Option<&AuthUser>, id: Uuid) -> ApiResult<EventRow> {
    let row = fetch_event(state, id).await?.ok_or_else(|| ApiError::not_found("event"))?;
    let privileged = user.is_some_and(|u| u.is_admin() || u.id == row.organizer_id);
    if row.status == "published" || row.status == "closed" || privileged {
        Ok(row)
    } else {
        Err(ApiError::not_found("event"))
    }
}
