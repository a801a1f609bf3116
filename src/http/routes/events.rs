//! Events: the seed's `/events/*` endpoints plus publish, close, cancel, seat map
//! and sales window.
//!
//! Lifecycle: `draft → published → closed`, and `cancelled` from any of them.
//! What may change when:
//! - descriptive fields (title, venue, date, …): any time before cancellation;
//! - currency: only while the event has no holds;
//! - seat map: freely while draft; once published only if every seat that is held
//!   or sold — and every GA place taken — is still in the new map (the event's
//!   actor checks this against its live state);
//! - sales window: any time before cancellation, applied to the live actor at once;
//! - delete: only while nothing was ever held or sold (close or cancel instead).

use crate::auth::{AuthUser, MaybeAuthUser, Role};
use crate::config::OrganizerSignup;
use crate::error::{ApiError, ApiResult, Problem, ProblemCode};
use crate::http::access::{EventRow, fetch_event, owned_event, visible_event};
use crate::http::extract::{Json, OptionalJson, Path};
use crate::http::problems::{BadPath, Conflict, Forbidden, JsonBody, SignedIn, Unavailable};
use crate::http::schema::{EventOut, SeatMapDoc, WaitingRoomIn, in_range};
use crate::money::cancel::{self, CancellationOut};
use crate::state::{AppState, ENDED_HOLD_RETENTION};
use crate::store::leases::Leases;
use crate::store::loader::sales_window;
use crate::store::outbox::{self, Topic};
use crate::store::queue::{self, RoomSettings};
use axum::extract::State;
use axum::http::StatusCode;
use boxoffice_actors::{Availability, EventId, Layout, SeatMap};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_event))
        .routes(routes!(update_event))
        .routes(routes!(delete_event))
        .routes(routes!(event_details))
        .routes(routes!(publish_event))
        .routes(routes!(close_event))
        .routes(routes!(cancel_event))
        .routes(routes!(cancellation_progress))
        .routes(routes!(get_seat_map, put_seat_map))
        .routes(routes!(put_sales_window))
}

/// When and how an event sells.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SalesWindowIn {
    /// `null` = on sale from publication; left out = unchanged on update.
    #[serde(default, deserialize_with = "sent")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub opens_at: Option<Option<DateTime<Utc>>>,
    /// `null` = never closes (until the event); left out = unchanged on update.
    #[serde(default, deserialize_with = "sent")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub closes_at: Option<Option<DateTime<Utc>>>,
    /// 1–50 tickets per buyer (held + bought); default 10.
    #[schema(minimum = 1, maximum = 50)]
    pub per_buyer_limit: Option<u32>,
    /// 5 s – 24 h; default 600 (10 minutes).
    #[schema(minimum = 5, maximum = 86_400)]
    pub hold_ttl_secs: Option<u32>,
    /// The waiting room (off unless given; `{"enabled": false}` turns it off).
    #[serde(default)]
    pub waiting_room: Option<WaitingRoomIn>,
}

/// A field that was sent, `null` included (`Some(None)`), as opposed to left out
/// (`None`, through `#[serde(default)]`).
fn sent<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEvent {
    /// 1 to 200 characters once trimmed; no control characters but tab and newline.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
    )]
    pub title: String,
    #[serde(default)]
    #[schema(max_length = 10_000, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(max_length = 50, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    pub category: Option<String>,
    /// 1 to 200 characters once trimmed; no control characters but tab and newline.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
    )]
    pub venue_name: String,
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    pub venue_address: Option<String>,
    pub event_date: DateTime<Utc>,
    /// ISO 4217 code; default JPY. Prices are integer minor units.
    #[serde(default)]
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// Seed shape: with no `seat_map`, `total_seats` places of general admission at `base_price`.
    #[serde(default)]
    pub total_seats: Option<u32>,
    #[serde(default)]
    pub base_price: Option<i64>,
    /// Price tiers and sections (seated rows or general admission).
    #[serde(default)]
    #[schema(value_type = Option<SeatMapDoc>)]
    pub seat_map: Option<serde_json::Value>,
    #[serde(default)]
    pub sales_window: Option<SalesWindowIn>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateEvent {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
    )]
    pub title: Option<String>,
    #[schema(max_length = 10_000, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    pub description: Option<String>,
    #[schema(max_length = 50, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    pub category: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
    )]
    pub venue_name: Option<String>,
    #[schema(max_length = 500, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    pub venue_address: Option<String>,
    pub event_date: Option<DateTime<Utc>>,
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    #[schema(value_type = Option<SeatMapDoc>)]
    pub seat_map: Option<serde_json::Value>,
    pub sales_window: Option<SalesWindowIn>,
}

#[derive(Serialize, ToSchema)]
pub struct EventDetails {
    #[serde(flatten)]
    pub event: EventOut,
    #[schema(value_type = Option<SeatMapDoc>)]
    pub seat_map: Option<serde_json::Value>,
    /// Live counts per section (published events).
    pub availability: Option<AvailabilityOut>,
}

/// An event's live counts and the sales window its actor applies.
#[derive(Serialize, ToSchema)]
pub struct AvailabilityOut {
    pub total: CountsOut,
    pub sections: Vec<SectionAvailabilityOut>,
    pub window: LiveWindowOut,
}

#[derive(Serialize, ToSchema)]
pub struct CountsOut {
    pub capacity: u64,
    pub available: u64,
    pub held: u64,
    pub sold: u64,
    /// Seats off sale: available + held + sold + blocked = capacity.
    pub blocked: u64,
}

#[derive(Serialize, ToSchema)]
pub struct SectionAvailabilityOut {
    pub section: String,
    pub general_admission: bool,
    pub counts: CountsOut,
}

/// The sales window in force: `opens_at` null = open since publication,
/// `closes_at` null = never closes on its own (the event date still ends it);
/// `on_sale` says whether holds and purchases are taken right now.
#[derive(Serialize, ToSchema)]
pub struct LiveWindowOut {
    pub opens_at: Option<DateTime<Utc>>,
    pub closes_at: Option<DateTime<Utc>>,
    pub on_sale: bool,
    pub per_buyer_limit: u32,
    pub hold_ttl_secs: i64,
}

impl From<&boxoffice_actors::Counts> for CountsOut {
    fn from(c: &boxoffice_actors::Counts) -> Self {
        Self { capacity: c.capacity, available: c.available, held: c.held, sold: c.sold, blocked: c.blocked }
    }
}

impl From<Availability> for AvailabilityOut {
    fn from(a: Availability) -> Self {
        // The actor's "since always" and "never" are the extreme instants.
        let time = |ms: i64| match ms {
            i64::MIN | i64::MAX => None,
            ms => DateTime::<Utc>::from_timestamp_millis(ms),
        };
        let now = boxoffice_actors::UnixMs::now();
        let w = a.window;
        Self {
            total: (&a.total).into(),
            sections: a
                .sections
                .iter()
                .map(|s| SectionAvailabilityOut {
                    section: s.section.clone(),
                    general_admission: s.general_admission,
                    counts: (&s.counts).into(),
                })
                .collect(),
            window: LiveWindowOut {
                opens_at: if w.closes_at.0 == i64::MIN { None } else { time(w.opens_at.0) },
                closes_at: time(w.closes_at.0),
                on_sale: w.opens_at <= now && now < w.closes_at,
                per_buyer_limit: w.per_buyer_limit,
                hold_ttl_secs: w.hold_ttl_ms / 1000,
            },
        }
    }
}

/// The part of an event's details that changes only when the event does.
#[derive(Serialize, Deserialize)]
struct CachedEvent {
    event: EventOut,
    seat_map: Option<serde_json::Value>,
}

/// How long cached details live (they are also invalidated on every change).
const DETAILS_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

// ---- validation ---------------------------------------------------------------

fn text(field: &'static str, raw: &str, max: usize, required: bool) -> ApiResult<Option<String>> {
    let v = raw.trim();
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::invalid(ProblemCode::InvalidField, format!("{field} has control characters"))
            .with("field", field));
    }
    if v.chars().count() > max {
        return Err(ApiError::invalid(ProblemCode::InvalidField, format!("{field} is longer than {max} characters"))
            .with("field", field));
    }
    if v.is_empty() {
        return if required {
            Err(ApiError::invalid(ProblemCode::InvalidField, format!("{field} is required")).with("field", field))
        } else {
            Ok(None)
        };
    }
    Ok(Some(v.to_owned()))
}

fn currency(raw: &str) -> ApiResult<String> {
    if raw.len() == 3 && raw.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::invalid(ProblemCode::InvalidCurrency, "currency is a three-letter ISO 4217 code such as JPY"))
    }
}

/// A parsed and compiled seat map with the figures stored beside it.
struct CheckedMap {
    json: serde_json::Value,
    layout: Layout,
    total: i32,
    min_price: i64,
    max_price: i64,
}

fn check_seat_map(raw: serde_json::Value) -> ApiResult<CheckedMap> {
    let map: SeatMap =
        serde_json::from_value(raw).map_err(|e| ApiError::invalid(ProblemCode::InvalidSeatMap, e.to_string()))?;
    let layout = Layout::compile(&map).map_err(|e| ApiError::invalid(ProblemCode::InvalidSeatMap, e.to_string()))?;
    let total = i32::try_from(layout.capacity())
        .map_err(|_| ApiError::invalid(ProblemCode::InvalidSeatMap, "too many seats"))?;
    let min_price = map.tiers.iter().map(|t| t.price).min().unwrap_or(0);
    let max_price = map.tiers.iter().map(|t| t.price).max().unwrap_or(0);
    // Store the map as parsed: members the map does not define (which could carry
    // anything, a NUL that jsonb refuses included) are dropped.
    let json = serde_json::to_value(&map).map_err(ApiError::internal)?;
    Ok(CheckedMap { json, layout, total, min_price, max_price })
}

/// The seed's `total_seats` + `base_price`: one general-admission section.
fn general_admission_map(total_seats: u32, base_price: i64) -> serde_json::Value {
    serde_json::json!({
        "tiers": [{"code": "GA", "price": base_price}],
        "sections": [{"name": "General Admission", "tier": "GA", "kind": "general", "capacity": total_seats}]
    })
}

struct CheckedWindow {
    opens_at: Option<DateTime<Utc>>,
    closes_at: Option<DateTime<Utc>>,
    per_buyer_limit: i32,
    hold_ttl_secs: i32,
    /// `Some` when the request sets the waiting room.
    waiting_room: Option<RoomSettings>,
}

fn check_window(w: &SalesWindowIn, current: Option<&EventRow>) -> ApiResult<CheckedWindow> {
    if w.opens_at.flatten().into_iter().chain(w.closes_at.flatten()).any(|t| !in_range(t)) {
        return Err(ApiError::invalid(
            ProblemCode::InvalidSalesWindow,
            "opens_at and closes_at are in years 1 to 9999",
        ));
    }
    let per_buyer_limit = match w.per_buyer_limit {
        Some(n) if (1..=50).contains(&n) => n as i32,
        Some(_) => return Err(ApiError::invalid(ProblemCode::InvalidSalesWindow, "per_buyer_limit is 1 to 50")),
        None => current.map_or(10, |c| c.per_buyer_limit),
    };
    let hold_ttl_secs = match w.hold_ttl_secs {
        Some(n) if (5..=86_400).contains(&n) => n as i32,
        Some(_) => return Err(ApiError::invalid(ProblemCode::InvalidSalesWindow, "hold_ttl_secs is 5 to 86400")),
        None => current.map_or(600, |c| c.hold_ttl_secs),
    };
    let opens_at = w.opens_at.unwrap_or_else(|| current.and_then(|c| c.opens_at));
    let closes_at = w.closes_at.unwrap_or_else(|| current.and_then(|c| c.closes_at));
    if let (Some(o), Some(c)) = (opens_at, closes_at)
        && c <= o
    {
        return Err(ApiError::invalid(ProblemCode::InvalidSalesWindow, "closes_at must be after opens_at"));
    }
    let waiting_room = w.waiting_room.as_ref().map(WaitingRoomIn::settings).transpose()?;
    Ok(CheckedWindow { opens_at, closes_at, per_buyer_limit, hold_ttl_secs, waiting_room })
}

// ---- handlers -------------------------------------------------------------------

/// Create an event (organizers). Starts as a draft.
#[utoipa::path(post, path = "/events/create", tag = "events", request_body = CreateEvent, security(("bearer" = [])),
    responses((status = 201, body = EventOut), JsonBody, SignedIn, Unavailable,
              (status = 403, description = "not an organizer", body = Problem, content_type = "application/problem+json")))]
async fn create_event(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<CreateEvent>,
) -> ApiResult<(StatusCode, axum::Json<EventOut>)> {
    user.require(&[Role::Organizer])?;
    let title = text("title", &req.title, 200, true)?;
    let venue_name = text("venue_name", &req.venue_name, 200, true)?;
    let description = text("description", req.description.as_deref().unwrap_or(""), 10_000, false)?;
    let category = text("category", req.category.as_deref().unwrap_or(""), 50, false)?;
    let venue_address = text("venue_address", req.venue_address.as_deref().unwrap_or(""), 500, false)?;
    let currency = currency(req.currency.as_deref().unwrap_or("JPY"))?;
    if !in_range(req.event_date) {
        return Err(ApiError::invalid(ProblemCode::InvalidField, "event_date is in years 1 to 9999")
            .with("field", "event_date"));
    }
    if req.event_date <= Utc::now() {
        return Err(ApiError::invalid(ProblemCode::InvalidField, "event_date must be in the future")
            .with("field", "event_date"));
    }
    let raw_map = match (req.seat_map, req.total_seats, req.base_price) {
        (Some(map), None, None) => Some(map),
        (None, Some(total), Some(price)) => Some(general_admission_map(total, price)),
        (None, None, None) => None,
        _ => {
            return Err(ApiError::invalid(
                ProblemCode::InvalidSeatMap,
                "give either seat_map, or total_seats with base_price (general admission)",
            ));
        }
    };
    let map = raw_map.map(check_seat_map).transpose()?;
    let window = check_window(&req.sales_window.unwrap_or_default(), None)?;
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO events (event_id, organizer_id, title, description, category, venue_name, venue_address, event_date,
                             currency, seat_map, total_seats, min_price, max_price, opens_at, closes_at, per_buyer_limit,
                             hold_ttl_secs)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(id)
    .bind(user.id)
    .bind(title)
    .bind(description.unwrap_or_default())
    .bind(category)
    .bind(venue_name)
    .bind(venue_address)
    .bind(req.event_date)
    .bind(currency)
    .bind(map.as_ref().map(|m| &m.json))
    .bind(map.as_ref().map_or(0, |m| m.total))
    .bind(map.as_ref().map(|m| m.min_price))
    .bind(map.as_ref().map(|m| m.max_price))
    .bind(window.opens_at)
    .bind(window.closes_at)
    .bind(window.per_buyer_limit)
    .bind(window.hold_ttl_secs)
    .execute(&state.db)
    .await?;
    if let Some(room) = &window.waiting_room {
        queue::save_settings(&mut *state.db.acquire().await?, id, room, window.opens_at).await?;
    }
    outbox::record(&state.db, Topic::EventCreated, id, serde_json::json!({"event_id": id})).await?;
    state.invalidate_event(id).await;
    let row = fetch_event(&state, id).await?.ok_or_else(|| ApiError::internal("created event vanished"))?;
    Ok((StatusCode::CREATED, axum::Json(row.into())))
}

/// Update an event (its organizer). See the module docs for what may change when.
#[utoipa::path(put, path = "/events/{event_id}/update", tag = "events", request_body = UpdateEvent, security(("bearer" = [])),
    params(("event_id" = Uuid, Path)),
    responses((status = 200, body = EventOut), BadPath, JsonBody, SignedIn, Forbidden, Unavailable,
              (status = 409, description = "not allowed in this state", body = Problem, content_type = "application/problem+json")))]
async fn update_event(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
    Json(req): Json<UpdateEvent>,
) -> ApiResult<axum::Json<EventOut>> {
    let current = owned_event(&state, &user, event_id).await?;
    if current.status == "cancelled" {
        return Err(ApiError::conflict(ProblemCode::EventCancelled, "a cancelled event cannot change"));
    }
    let title = req.title.as_deref().map(|t| text("title", t, 200, true)).transpose()?.flatten();
    let venue_name = req.venue_name.as_deref().map(|t| text("venue_name", t, 200, true)).transpose()?.flatten();
    let description = req.description.as_deref().map(|t| text("description", t, 10_000, false)).transpose()?;
    let category = req.category.as_deref().map(|t| text("category", t, 50, false)).transpose()?;
    let venue_address = req.venue_address.as_deref().map(|t| text("venue_address", t, 500, false)).transpose()?;
    let new_currency = req.currency.as_deref().map(currency).transpose()?;
    let map = req.seat_map.map(check_seat_map).transpose()?;
    let window = req.sales_window.as_ref().map(|w| check_window(w, Some(&current))).transpose()?;
    if req.event_date.is_some_and(|d| !in_range(d)) {
        return Err(ApiError::invalid(ProblemCode::InvalidField, "event_date is in years 1 to 9999")
            .with("field", "event_date"));
    }

    let mut tx = state.db.begin().await?;
    if new_currency.as_ref().is_some_and(|c| *c != current.currency) {
        let has_holds: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM holds WHERE event_id = $1)")
            .bind(event_id)
            .fetch_one(&mut *tx)
            .await?;
        if has_holds {
            return Err(ApiError::conflict(
                ProblemCode::EventHasSales,
                "the currency cannot change once seats were held",
            ));
        }
    }
    sqlx::query(
        "UPDATE events SET
            title = coalesce($2, title),
            description = CASE WHEN $3 THEN coalesce($4, '') ELSE description END,
            category = CASE WHEN $5 THEN $6 ELSE category END,
            venue_name = coalesce($7, venue_name),
            venue_address = CASE WHEN $8 THEN $9 ELSE venue_address END,
            event_date = coalesce($10, event_date),
            currency = coalesce($11, currency),
            updated_at = now()
         WHERE event_id = $1",
    )
    .bind(event_id)
    .bind(title)
    .bind(description.is_some())
    .bind(description.clone().flatten())
    .bind(category.is_some())
    .bind(category.clone().flatten())
    .bind(venue_name)
    .bind(venue_address.is_some())
    .bind(venue_address.clone().flatten())
    .bind(req.event_date)
    .bind(new_currency)
    .execute(&mut *tx)
    .await?;
    if let Some(w) = &window {
        sqlx::query(
            "UPDATE events SET opens_at = $2, closes_at = $3, per_buyer_limit = $4, hold_ttl_secs = $5 WHERE event_id = $1",
        )
        .bind(event_id)
        .bind(w.opens_at)
        .bind(w.closes_at)
        .bind(w.per_buyer_limit)
        .bind(w.hold_ttl_secs)
        .execute(&mut *tx)
        .await?;
        if let Some(room) = &w.waiting_room {
            queue::save_settings(&mut tx, event_id, room, w.opens_at).await?;
        }
    }
    if let Some(m) = &map {
        sqlx::query(
            "UPDATE events SET seat_map = $2, total_seats = $3, min_price = $4, max_price = $5 WHERE event_id = $1",
        )
        .bind(event_id)
        .bind(&m.json)
        .bind(m.total)
        .bind(m.min_price)
        .bind(m.max_price)
        .execute(&mut *tx)
        .await?;
    }
    // The live actor must accept the new map before the change commits; it alone
    // knows what is held right now.
    let live = state.registry.running(EventId(event_id));
    if let (Some(m), Some(handle)) = (&map, &live) {
        handle
            .reconfigure(m.layout.clone())
            .await?
            .map_err(|e| ApiError::conflict(ProblemCode::SeatMapConflict, e.to_string()))?;
    } else if let Some(m) = &map
        && current.status != "draft"
    {
        check_map_against_db(&mut tx, event_id, &m.layout).await?;
    }
    outbox::record(&mut *tx, Topic::EventUpdated, event_id, serde_json::json!({"event_id": event_id})).await?;
    if let Err(e) = tx.commit().await {
        // The actor may have adopted a map that was not stored: reload it from the database.
        state.event(EventId(event_id)).evict().await;
        return Err(e.into());
    }
    if let Some(handle) = live.as_ref().filter(|_| window.is_some() || req.event_date.is_some()) {
        let w = window.unwrap_or(CheckedWindow {
            opens_at: current.opens_at,
            closes_at: current.closes_at,
            per_buyer_limit: current.per_buyer_limit,
            hold_ttl_secs: current.hold_ttl_secs,
            waiting_room: None,
        });
        let event_date = req.event_date.unwrap_or(current.event_date);
        let sw = sales_window(&current.status, event_date, w.opens_at, w.closes_at, w.per_buyer_limit, w.hold_ttl_secs);
        handle.set_window(sw).await?;
    }
    state.rooms.invalidate(event_id);
    state.invalidate_event(event_id).await;
    let row = fetch_event(&state, event_id).await?.ok_or_else(|| ApiError::not_found("event"))?;
    Ok(axum::Json(row.into()))
}

/// With no live actor, checks a new seat map against the stored holds and tickets.
async fn check_map_against_db(tx: &mut sqlx::PgConnection, event_id: Uuid, layout: &Layout) -> ApiResult<()> {
    let holds = crate::store::loader::load_holds(tx, event_id, ENDED_HOLD_RETENTION).await?;
    boxoffice_actors::SeatInventory::restore(layout.clone(), boxoffice_actors::SalesWindow::always_open(), holds)
        .map(|_| ())
        .map_err(|e| {
            ApiError::conflict(ProblemCode::SeatMapConflict, format!("the new seat map does not fit the sales: {e}"))
        })
}

/// Delete an event that never sold or held anything.
#[utoipa::path(delete, path = "/events/{event_id}/delete", tag = "events", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)),
    responses((status = 204), BadPath, SignedIn, Forbidden, Unavailable,
              (status = 409, description = "has holds or sales: close or cancel it", body = Problem, content_type = "application/problem+json")))]
async fn delete_event(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    owned_event(&state, &user, event_id).await?;
    // Stop the actor first so nothing can be held while we check.
    state.event(EventId(event_id)).evict().await;
    let mut tx = state.db.begin().await?;
    // Holds written before this (by an actor that woke up again meanwhile) are
    // committed first and seen below; any written after are refused.
    Leases::end_for_deletion(&mut tx, event_id).await?;
    let has_holds: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM holds WHERE event_id = $1)")
        .bind(event_id)
        .fetch_one(&mut *tx)
        .await?;
    if has_holds {
        return Err(ApiError::conflict(
            ProblemCode::EventHasSales,
            "seats were held or sold: close or cancel the event instead",
        ));
    }
    sqlx::query("DELETE FROM events WHERE event_id = $1").bind(event_id).execute(&mut *tx).await?;
    // Its waiting room's queue goes with it (`queue_entries` has no foreign key).
    sqlx::query("DELETE FROM queue_entries WHERE event_id = $1").bind(event_id).execute(&mut *tx).await?;
    outbox::record(&mut *tx, Topic::EventDeleted, event_id, serde_json::json!({"event_id": event_id})).await?;
    tx.commit().await?;
    state.invalidate_event(event_id).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn transition(
    state: &AppState,
    user: &AuthUser,
    event_id: Uuid,
    from: &[&str],
    to: &'static str,
) -> ApiResult<axum::Json<EventOut>> {
    let current = owned_event(state, user, event_id).await?;
    if !from.contains(&current.status.as_str()) {
        return Err(ApiError::conflict(
            ProblemCode::InvalidTransition,
            format!("cannot go from {} to {to}", current.status),
        )
        .with("event_status", current.status));
    }
    if to == "published" && !current.has_seat_map {
        return Err(ApiError::conflict(ProblemCode::NoSeatMap, "add a seat map before publishing"));
    }
    if to == "published" {
        require_approved_organizer(state, user).await?;
    }
    let mut tx = state.db.begin().await?;
    sqlx::query("UPDATE events SET status = $2, updated_at = now() WHERE event_id = $1")
        .bind(event_id)
        .bind(to)
        .execute(&mut *tx)
        .await?;
    outbox::record(&mut *tx, Topic::EventUpdated, event_id, serde_json::json!({"event_id": event_id, "status": to}))
        .await?;
    tx.commit().await?;
    // The actor reloads with the new status (closed and cancelled events do not sell).
    state.event(EventId(event_id)).evict().await;
    state.invalidate_event(event_id).await;
    let row = fetch_event(state, event_id).await?.ok_or_else(|| ApiError::not_found("event"))?;
    Ok(axum::Json(row.into()))
}

/// Unless `ORGANIZER_SIGNUP=open`, an organizer publishes only once an administrator
/// approved the account (administrators publish anything).
async fn require_approved_organizer(state: &AppState, user: &AuthUser) -> ApiResult<()> {
    if state.settings.organizer_signup == OrganizerSignup::Open || user.is_admin() {
        return Ok(());
    }
    let approved: Option<bool> = sqlx::query_scalar("SELECT approved_at IS NOT NULL FROM users WHERE user_id = $1")
        .bind(user.id)
        .fetch_optional(&state.db)
        .await?;
    if approved == Some(true) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        ProblemCode::OrganizerNotApproved,
        "your organizer account waits for an administrator's approval before it may publish",
    ))
}

/// Publish a draft: it becomes searchable and sells within its window.
#[utoipa::path(post, path = "/events/{event_id}/publish", tag = "events", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)),
    responses((status = 200, body = EventOut), BadPath, SignedIn, Conflict, Unavailable,
              (status = 403, description = "not the event's organizer, or not approved yet", body = Problem, content_type = "application/problem+json")))]
async fn publish_event(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
) -> ApiResult<axum::Json<EventOut>> {
    transition(&state, &user, event_id, &["draft"], "published").await
}

/// Close sales; tickets sold stay valid.
#[utoipa::path(post, path = "/events/{event_id}/close", tag = "events", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)),
    responses((status = 200, body = EventOut), BadPath, SignedIn, Forbidden, Conflict, Unavailable))]
async fn close_event(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
) -> ApiResult<axum::Json<EventOut>> {
    transition(&state, &user, event_id, &["published"], "closed").await
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CancelEventRequest {
    /// Why, in a sentence buyers are shown (1 to 1,000 characters). Default:
    /// "The organizer cancelled the event."
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"
    )]
    pub reason: Option<String>,
}

/// An event with where its cancellation stands.
#[derive(Serialize, ToSchema)]
pub struct CancelledEventOut {
    #[serde(flatten)]
    pub event: EventOut,
    pub cancellation: CancellationOut,
}

/// How long the cancel request waits for the job before answering with its progress.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Cancel the event: its sale stops at once; every valid ticket is cancelled and
/// refunded, every active hold released, and buyers are emailed. The work is
/// durable (a crash midway resumes it) and the answer shows its progress (also at
/// `GET /events/{id}/cancellation`). Idempotent: cancelling again answers the progress.
#[utoipa::path(post, path = "/events/{event_id}/cancel", tag = "events", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)), request_body(content = Option<CancelEventRequest>),
    responses((status = 200, body = CancelledEventOut), BadPath, JsonBody, SignedIn, Forbidden, Unavailable))]
async fn cancel_event(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
    OptionalJson(req): OptionalJson<CancelEventRequest>,
) -> ApiResult<axum::Json<CancelledEventOut>> {
    let reason = match req.unwrap_or_default().reason {
        None => "The organizer cancelled the event.".to_owned(),
        Some(r) => text("reason", &r, 1000, true)?.ok_or_else(|| {
            ApiError::invalid(ProblemCode::InvalidField, "reason cannot be blank").with("field", "reason")
        })?,
    };
    owned_event(&state, &user, event_id).await?;
    cancel::request(&state, event_id, user.id, &reason).await?;
    // The job runs on its own task: it finishes even if this client goes away.
    let job = {
        let state = state.clone();
        tokio::spawn(async move { cancel::run(&state, event_id).await })
    };
    let _ = tokio::time::timeout(CANCEL_WAIT, job).await;
    let row = fetch_event(&state, event_id).await?.ok_or_else(|| ApiError::not_found("event"))?;
    let cancellation =
        cancel::progress(&state, event_id).await?.ok_or_else(|| ApiError::internal("cancellation not recorded"))?;
    Ok(axum::Json(CancelledEventOut { event: row.into(), cancellation }))
}

/// Where the event's cancellation stands (its organizer and admins).
#[utoipa::path(get, path = "/events/{event_id}/cancellation", tag = "events", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)),
    responses((status = 200, body = CancellationOut), BadPath, SignedIn, Forbidden, Unavailable,
              (status = 404, description = "no such event, or not cancelled", body = Problem, content_type = "application/problem+json")))]
async fn cancellation_progress(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
) -> ApiResult<axum::Json<CancellationOut>> {
    owned_event(&state, &user, event_id).await?;
    cancel::progress(&state, event_id).await?.map(axum::Json).ok_or_else(|| ApiError::not_found("cancellation"))
}

/// The event's seat map.
#[utoipa::path(get, path = "/events/{event_id}/seatmap", tag = "events", security((), ("bearer" = [])), params(("event_id" = Uuid, Path)),
    responses((status = 200, body = SeatMapDoc), BadPath, SignedIn, Unavailable,
              (status = 404, description = "no such event, or no seat map yet", body = Problem, content_type = "application/problem+json")))]
async fn get_seat_map(
    State(state): State<AppState>,
    MaybeAuthUser(user): MaybeAuthUser,
    Path(event_id): Path<Uuid>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let row = visible_event(&state, user.as_ref(), event_id).await?;
    let map: Option<serde_json::Value> = sqlx::query_scalar("SELECT seat_map FROM events WHERE event_id = $1")
        .bind(row.event_id)
        .fetch_one(&state.db)
        .await?;
    map.map(axum::Json).ok_or_else(|| ApiError::not_found("seat map"))
}

/// Replace the seat map (same rules as update).
#[utoipa::path(put, path = "/events/{event_id}/seatmap", tag = "events", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)), request_body = SeatMapDoc,
    responses((status = 200, body = EventOut), BadPath, JsonBody, SignedIn, Forbidden, Conflict, Unavailable))]
async fn put_seat_map(
    state: State<AppState>,
    user: AuthUser,
    path: Path<Uuid>,
    Json(map): Json<serde_json::Value>,
) -> ApiResult<axum::Json<EventOut>> {
    update_event(state, user, path, Json(UpdateEvent { seat_map: Some(map), ..Default::default() })).await
}

/// Set the sales window.
#[utoipa::path(put, path = "/events/{event_id}/sales-window", tag = "events", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)), request_body = SalesWindowIn,
    responses((status = 200, body = EventOut), BadPath, JsonBody, SignedIn, Forbidden, Conflict, Unavailable))]
async fn put_sales_window(
    state: State<AppState>,
    user: AuthUser,
    path: Path<Uuid>,
    Json(window): Json<SalesWindowIn>,
) -> ApiResult<axum::Json<EventOut>> {
    update_event(state, user, path, Json(UpdateEvent { sales_window: Some(window), ..Default::default() })).await
}

/// An event with live availability.
#[utoipa::path(get, path = "/events/{event_id}/details", tag = "events", security((), ("bearer" = [])), params(("event_id" = Uuid, Path)),
    responses((status = 200, body = EventDetails), BadPath, SignedIn, Unavailable))]
async fn event_details(
    State(state): State<AppState>,
    MaybeAuthUser(user): MaybeAuthUser,
    Path(event_id): Path<Uuid>,
) -> ApiResult<axum::Json<EventDetails>> {
    // Published events' static part is cached (Redis, when configured); drafts are
    // private and always read fresh.
    let cache_key = state.cache.namespace_key("event", &event_id.to_string()).await;
    let cached: Option<CachedEvent> = match &cache_key {
        Some(key) => state.cache.get_json(key).await,
        None => None,
    };
    let CachedEvent { mut event, seat_map } = match cached {
        Some(c) => c,
        None => {
            let row = visible_event(&state, user.as_ref(), event_id).await?;
            let public = row.status == "published" || row.status == "closed";
            let seat_map: Option<serde_json::Value> =
                sqlx::query_scalar("SELECT seat_map FROM events WHERE event_id = $1")
                    .bind(event_id)
                    .fetch_one(&state.db)
                    .await?;
            let fresh = CachedEvent { event: row.into(), seat_map };
            if let (true, Some(key)) = (public, &cache_key) {
                state.cache.set_json(key, &fresh, DETAILS_CACHE_TTL).await;
            }
            fresh
        }
    };
    let availability = if event.has_seat_map && event.status != "draft" {
        let a = state.event(EventId(event_id)).availability().await?;
        event.available_seats = a.total.available as i64;
        Some(a.into())
    } else {
        None
    };
    Ok(axum::Json(EventDetails { event, seat_map, availability }))
}
