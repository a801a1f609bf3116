//! Request and response bodies that more than one route uses (a hold is created
//! by `POST /events/{id}/holds` and by the one-shot purchase, and shown by both,
//! by `GET /holds/{id}` and in order history), and the paging parameters.

use crate::error::{ApiError, ApiResult, ProblemCode};
use crate::store::datetime;
use crate::store::queue::RoomSettings;
use boxoffice_actors::inventory::MAX_UNITS_PER_HOLD;
use boxoffice_actors::{HoldView, Items, Selection};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Either `seats`, or a `quantity` (best available seats, or general-admission places).
/// Documented as [`HoldSelectionDoc`].
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// Seat labels such as `A-12`.
    pub seats: Option<Vec<String>>,
    pub quantity: Option<u32>,
    /// Restrict a quantity to one section.
    pub section: Option<String>,
    /// Accept seats that are not side by side when no row has room.
    #[serde(default)]
    pub allow_split: bool,
}

impl HoldRequest {
    /// The engine's selection, or a 422 saying what is wrong.
    pub fn selection(self) -> ApiResult<Selection> {
        let too_many =
            || ApiError::invalid(ProblemCode::BadQuantity, format!("a hold is 1 to {MAX_UNITS_PER_HOLD} seats"));
        match (self.seats, self.quantity) {
            (Some(seats), None) => {
                if seats.is_empty() || seats.len() > MAX_UNITS_PER_HOLD as usize {
                    return Err(too_many());
                }
                if let Some(bad) = seats.iter().find(|s| s.is_empty() || s.chars().count() > MAX_LABEL_CHARS) {
                    return Err(ApiError::invalid(ProblemCode::UnknownSeat, format!("no seat {bad:?} at this event")));
                }
                if self.section.is_some() || self.allow_split {
                    return Err(ApiError::invalid(
                        ProblemCode::InvalidSelection,
                        "section and allow_split go with quantity",
                    ));
                }
                Ok(Selection::Seats { seats })
            }
            (None, Some(quantity)) => {
                if quantity == 0 || quantity > MAX_UNITS_PER_HOLD {
                    return Err(too_many());
                }
                Ok(Selection::BestAvailable { quantity, section: self.section, allow_split: self.allow_split })
            }
            _ => Err(ApiError::invalid(ProblemCode::InvalidSelection, "give either seats or quantity")),
        }
    }
}

/// Longest seat label a selection may name, in characters.
const MAX_LABEL_CHARS: usize = 80;

/// The document's view of [`HoldRequest`]: exactly one of its two shapes.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = HoldRequest)]
#[allow(dead_code)] // schema only
pub enum HoldSelectionDoc {
    Seats(SeatsSelectionDoc),
    Quantity(QuantitySelectionDoc),
}

/// Named seats.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SeatsSelection)]
#[allow(dead_code)] // schema only
pub struct SeatsSelectionDoc {
    /// 1 to 50 seat labels such as `A-12`, each 1 to 80 characters.
    #[schema(min_items = 1, max_items = 50, inline)]
    pub seats: Vec<SeatLabelDoc>,
}

/// A seat label such as `A-12`.
#[derive(Deserialize, ToSchema)]
#[schema(min_length = 1, max_length = 80)]
#[allow(dead_code)] // schema only
pub struct SeatLabelDoc(pub String);

/// A number of places: the best available seats, or general-admission places.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = QuantitySelection)]
#[allow(dead_code)] // schema only
pub struct QuantitySelectionDoc {
    #[schema(minimum = 1, maximum = 50)]
    pub quantity: u32,
    /// Restrict the quantity to one section.
    pub section: Option<String>,
    /// Accept seats that are not side by side when no row has room.
    pub allow_split: Option<bool>,
}

/// The seat map as an organizer writes it: price tiers (best first) and sections
/// (best first), each seated (rows of numbered seats) or general admission. The
/// document's copy of `boxoffice_actors::SeatMap`, whose crate stays free of web
/// dependencies. Rules beyond the shape (unique tier codes, section names and row
/// labels; tiers that exist; at most 1,000,000 places) answer 422 `invalid_seat_map`.
#[derive(Serialize, ToSchema)]
#[schema(as = SeatMap)]
#[allow(dead_code)] // schema only
pub struct SeatMapDoc {
    /// Price tiers, best first; "best available" prefers earlier tiers.
    #[schema(min_items = 1, max_items = 64)]
    pub tiers: Vec<PriceTierDoc>,
    /// Sections, best first within a tier.
    #[schema(min_items = 1, max_items = 1000)]
    pub sections: Vec<SectionDoc>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PriceTier)]
#[allow(dead_code)] // schema only
pub struct PriceTierDoc {
    /// Letters, digits, space, `_`, `.` or `-`; 1 to 64 bytes, no leading or trailing space.
    #[schema(min_length = 1, max_length = 64)]
    pub code: String,
    /// Minor units of the event's currency.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub price: i64,
}

/// A section: `kind` is `seated` (with `rows`) or `general` (with `capacity`).
#[derive(Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[schema(as = Section)]
#[allow(dead_code)] // schema only
pub enum SectionDoc {
    Seated {
        /// Letters, digits, space, `_`, `.` or `-`; 1 to 64 bytes, unique.
        #[schema(min_length = 1, max_length = 64)]
        name: String,
        /// The tier code of every row that does not name its own.
        #[schema(min_length = 1, max_length = 64)]
        tier: String,
        #[schema(min_items = 1, max_items = 100_000)]
        rows: Vec<RowDoc>,
    },
    General {
        #[schema(min_length = 1, max_length = 64)]
        name: String,
        #[schema(min_length = 1, max_length = 64)]
        tier: String,
        #[schema(minimum = 1, maximum = 1_000_000)]
        capacity: u32,
    },
}

/// A row of consecutively numbered seats.
#[derive(Serialize, ToSchema)]
#[schema(as = Row)]
#[allow(dead_code)] // schema only
pub struct RowDoc {
    /// Letters, digits, `_` or `.` (no `-` or space), 1 to 64 bytes, unique across the event.
    #[schema(min_length = 1, max_length = 64)]
    pub label: String,
    /// Number of seats, numbered `first, first+1, …`.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub seats: u32,
    /// The first seat's number (default 1).
    pub first: Option<u32>,
    /// Overrides the section's tier for this row.
    pub tier: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TicketOut {
    pub ticket_id: Uuid,
    pub section: String,
    pub seat_number: Option<String>,
    pub price: i64,
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct HoldOut {
    pub hold_id: Uuid,
    pub event_id: Uuid,
    /// `active`, `purchased`, `expired` or `released`.
    pub status: &'static str,
    /// Seat labels (empty for general admission).
    pub seats: Vec<String>,
    /// The general-admission section, if any.
    pub section: Option<String>,
    pub quantity: u32,
    pub amount: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Issued once paid.
    pub tickets: Vec<TicketOut>,
}

impl HoldOut {
    pub fn new(event_id: Uuid, currency: String, view: HoldView) -> Self {
        let (seats, section) = match view.items.as_ref() {
            Items::Seats { seats } => (seats.to_vec(), None),
            Items::General { section, .. } => (vec![], Some(section.clone())),
        };
        HoldOut {
            hold_id: view.id.0,
            event_id,
            status: view.status.as_str(),
            quantity: view.items.quantity(),
            seats,
            section,
            amount: view.amount,
            currency,
            created_at: datetime(view.created_at),
            expires_at: datetime(view.expires_at),
            tickets: view
                .tickets
                .into_iter()
                .map(|t| TicketOut {
                    ticket_id: t.id.0,
                    section: t.section,
                    seat_number: t.seat,
                    price: t.price,
                    status: if t.cancelled { "cancelled" } else { "valid" },
                })
                .collect(),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// From 1 (default) to 10,000.
    #[param(minimum = 1, maximum = 10_000)]
    pub page: Option<u32>,
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

impl PageParams {
    /// (limit, offset), validated.
    pub fn limits(&self) -> ApiResult<(u32, u32, i64, i64)> {
        let per_page = self.per_page.unwrap_or(20);
        let page = self.page.unwrap_or(1);
        if !(1..=100).contains(&per_page) || page == 0 || page > 10_000 {
            return Err(ApiError::bad_request(ProblemCode::InvalidQuery, "page is 1-10000 and per_page 1-100"));
        }
        Ok((page, per_page, i64::from(per_page), i64::from((page - 1) * per_page)))
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SalesWindowOut {
    pub opens_at: Option<DateTime<Utc>>,
    pub closes_at: Option<DateTime<Utc>>,
    pub per_buyer_limit: i32,
    pub hold_ttl_secs: i32,
    /// The waiting room, when the event has one (see `docs/domain.md`, "Waiting room").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_room: Option<WaitingRoomOut>,
}

/// `"auto"`: admit as many as the sale can absorb.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AutoRate {
    Auto,
}

/// Admissions per minute (1 to 1,000,000), or `"auto"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RateIn {
    PerMinute(u32),
    Auto(AutoRate),
}

/// The waiting room of an event: off by default.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitingRoomIn {
    pub enabled: bool,
    /// Admissions per minute, or `"auto"` (default).
    #[serde(default)]
    pub rate_per_minute: Option<RateIn>,
    /// How long an admission lasts to start a hold: 5 s – 1 h; default 600.
    #[serde(default)]
    #[schema(minimum = 5, maximum = 3600)]
    pub admission_ttl_secs: Option<u32>,
    /// Keep people queued after a sell-out, for returns (default false).
    #[serde(default)]
    pub waitlist: Option<bool>,
}

impl WaitingRoomIn {
    /// The stored settings, or a 422 `invalid_sales_window`.
    pub fn settings(&self) -> ApiResult<RoomSettings> {
        let rate_per_minute = match self.rate_per_minute {
            None | Some(RateIn::Auto(_)) => None,
            Some(RateIn::PerMinute(n)) if (1..=1_000_000).contains(&n) => Some(n),
            Some(RateIn::PerMinute(_)) => {
                return Err(ApiError::invalid(
                    ProblemCode::InvalidSalesWindow,
                    "waiting_room.rate_per_minute is 1 to 1000000 or \"auto\"",
                ));
            }
        };
        let admission_ttl_secs = match self.admission_ttl_secs {
            None => 600,
            Some(n) if (5..=3600).contains(&n) => n,
            Some(_) => {
                return Err(ApiError::invalid(
                    ProblemCode::InvalidSalesWindow,
                    "waiting_room.admission_ttl_secs is 5 to 3600",
                ));
            }
        };
        Ok(RoomSettings {
            enabled: self.enabled,
            rate_per_minute,
            admission_ttl_secs,
            waitlist: self.waitlist.unwrap_or(false),
        })
    }
}

/// An event's waiting-room settings.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WaitingRoomOut {
    pub enabled: bool,
    /// Admissions per minute, or `"auto"`.
    pub rate_per_minute: RateIn,
    pub admission_ttl_secs: u32,
    pub waitlist: bool,
}

impl From<RoomSettings> for WaitingRoomOut {
    fn from(s: RoomSettings) -> Self {
        Self {
            enabled: s.enabled,
            rate_per_minute: s.rate_per_minute.map_or(RateIn::Auto(AutoRate::Auto), RateIn::PerMinute),
            admission_ttl_secs: s.admission_ttl_secs,
            waitlist: s.waitlist,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct EventOut {
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
    /// Live from the event's actor in details; a recent snapshot in search results.
    pub available_seats: i64,
    /// Lowest price (seed field).
    pub base_price: Option<i64>,
    pub max_price: Option<i64>,
    pub sales_window: SalesWindowOut,
    pub has_seat_map: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Timestamps are years 1 to 9999: PostgreSQL cannot store all that chrono parses
/// (its range starts at 4713 BC), and no sale is planned outside it.
pub fn in_range(t: DateTime<Utc>) -> bool {
    use chrono::Datelike;
    (1..=9999).contains(&t.year())
}
