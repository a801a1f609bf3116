//! Request and response bodies that more than one route uses (a hold is created
//! by `POST /events/{id}/holds` and by the one-shot purchase, and shown by both,
//! by `GET /holds/{id}` and in order history), and the paging parameters.

use crate::error::{ApiError, ApiResult, ProblemCode};
use crate::store::datetime;
use boxoffice_actors::inventory::MAX_UNITS_PER_HOLD;
use boxoffice_actors::{HoldView, Items, Selection};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Either `seats`, or a `quantity` (best available seats, or general-admission places).
#[derive(Clone, Deserialize, ToSchema)]
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
                if let Some(bad) = seats.iter().find(|s| s.is_empty() || s.len() > 80) {
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
    /// Page number, from 1 (default 1).
    #[param(minimum = 1, maximum = 10000)]
    pub page: Option<u32>,
    /// Items per page (default 20).
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
