//! Holds: `POST /events/{id}/holds`, `GET /holds/{id}`, `DELETE /holds/{id}`.
//!
//! The event's actor decides; this module translates HTTP to engine calls. A
//! buyer sees and releases only their own holds (another buyer's hold is a 404,
//! indistinguishable from a missing one); administrators may act on any.

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path};
use crate::journal::ts;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use boxoffice_actors::inventory::MAX_UNITS_PER_HOLD;
use boxoffice_actors::{BuyerId, EventId, HoldId, HoldView, IdempotencyKey, Items, Selection};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_hold)).routes(routes!(get_hold, release_hold))
}

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
        let too_many = || ApiError::invalid("bad_quantity", format!("a hold is 1 to {MAX_UNITS_PER_HOLD} seats"));
        match (self.seats, self.quantity) {
            (Some(seats), None) => {
                if seats.is_empty() || seats.len() > MAX_UNITS_PER_HOLD as usize {
                    return Err(too_many());
                }
                if let Some(bad) = seats.iter().find(|s| s.is_empty() || s.len() > 80) {
                    return Err(ApiError::invalid("unknown_seat", format!("no seat {bad:?} at this event")));
                }
                if self.section.is_some() || self.allow_split {
                    return Err(ApiError::invalid("invalid_selection", "section and allow_split go with quantity"));
                }
                Ok(Selection::Seats { seats })
            }
            (None, Some(quantity)) => {
                if quantity == 0 || quantity > MAX_UNITS_PER_HOLD {
                    return Err(too_many());
                }
                Ok(Selection::BestAvailable { quantity, section: self.section, allow_split: self.allow_split })
            }
            _ => Err(ApiError::invalid("invalid_selection", "give either seats or quantity")),
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
            created_at: ts(view.created_at),
            expires_at: ts(view.expires_at),
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

/// The `Idempotency-Key` header, if sent.
pub fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<IdempotencyKey>> {
    let Some(raw) = headers.get("idempotency-key") else { return Ok(None) };
    let raw =
        raw.to_str().map_err(|_| ApiError::bad_request("invalid_idempotency_key", "Idempotency-Key must be ASCII"))?;
    IdempotencyKey::parse(raw).map(Some).map_err(|e| ApiError::bad_request("invalid_idempotency_key", e.to_string()))
}

/// Hold seats for a while (the hold TTL of the event's sales window).
#[utoipa::path(post, path = "/events/{event_id}/holds", tag = "holds", security(("bearer" = [])),
    params(("event_id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "retries return the first hold")),
    request_body = HoldRequest,
    responses((status = 201, body = HoldOut), (status = 404, description = "no such event on sale"),
              (status = 409, description = "sold out, seats taken, limit, sale not open or closed"),
              (status = 422, description = "invalid selection"), (status = 503, description = "overloaded; see Retry-After")))]
async fn create_hold(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
    headers: HeaderMap,
    Json(req): Json<HoldRequest>,
) -> ApiResult<(StatusCode, axum::Json<HoldOut>)> {
    let key = idempotency_key(&headers)?;
    let selection = req.selection()?;
    let currency = state.event_currency(event_id).await?;
    let result = state
        .registry
        .with(EventId(event_id), |h| {
            let (selection, key) = (selection.clone(), key.clone());
            async move { h.hold(BuyerId(user.id), selection, key).await }
        })
        .await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) if e.is_transient() => "shed",
        Err(_) => "refused",
    };
    metrics::counter!("boxoffice_holds_total", "outcome" => outcome).increment(1);
    let view = result?;
    state.hold_owners.insert(view.id.0, event_id, user.id);
    Ok((StatusCode::CREATED, axum::Json(HoldOut::new(event_id, currency, view))))
}

/// The hold's event and buyer, if `user` may see it.
async fn hold_owner(state: &AppState, user: &AuthUser, hold_id: Uuid) -> ApiResult<(Uuid, Uuid)> {
    match hold_event_and_buyer(state, hold_id).await? {
        Some((event, buyer)) if buyer == user.id || user.is_admin() => Ok((event, buyer)),
        _ => Err(ApiError::not_found("hold")),
    }
}

/// The event and buyer of a stored hold: from memory for holds created here
/// lately, else from the database.
pub(crate) async fn hold_event_and_buyer(state: &AppState, hold_id: Uuid) -> ApiResult<Option<(Uuid, Uuid)>> {
    if let Some(known) = state.hold_owners.get(hold_id) {
        return Ok(Some(known));
    }
    Ok(sqlx::query_as("SELECT event_id, buyer_id FROM holds WHERE hold_id = $1")
        .bind(hold_id)
        .fetch_optional(&state.db)
        .await?)
}

/// Event and buyer of recently created holds (a hold never changes either).
/// Bounded: two generations of at most [`HoldOwners::GENERATION`] entries each;
/// when the young one fills up, the old one is dropped. A miss costs one query.
#[derive(Default)]
pub struct HoldOwners {
    generations: std::sync::RwLock<[rustc_hash::FxHashMap<Uuid, (Uuid, Uuid)>; 2]>,
}

impl HoldOwners {
    pub const GENERATION: usize = 100_000;

    pub fn insert(&self, hold: Uuid, event: Uuid, buyer: Uuid) {
        let mut g = self.generations.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if g[0].len() >= Self::GENERATION {
            g[1] = std::mem::take(&mut g[0]);
        }
        g[0].insert(hold, (event, buyer));
    }

    pub fn get(&self, hold: Uuid) -> Option<(Uuid, Uuid)> {
        let g = self.generations.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        g[0].get(&hold).or_else(|| g[1].get(&hold)).copied()
    }
}

/// One of your holds.
#[utoipa::path(get, path = "/holds/{hold_id}", tag = "holds", security(("bearer" = [])), params(("hold_id" = Uuid, Path)),
    responses((status = 200, body = HoldOut), (status = 404)))]
async fn get_hold(
    State(state): State<AppState>,
    user: AuthUser,
    Path(hold_id): Path<Uuid>,
) -> ApiResult<axum::Json<HoldOut>> {
    let (event_id, buyer) = hold_owner(&state, &user, hold_id).await?;
    let currency = state.event_currency(event_id).await?;
    let view = state
        .registry
        .with(EventId(event_id), |h| async move { h.get_hold(HoldId(hold_id), BuyerId(buyer)).await })
        .await?;
    let view = match view {
        Some(v) => v,
        // Ended long ago and pruned from memory: the database has it.
        None => stored_hold(&state, event_id, hold_id).await?,
    };
    Ok(axum::Json(HoldOut::new(event_id, currency, view)))
}

async fn stored_hold(state: &AppState, event_id: Uuid, hold_id: Uuid) -> ApiResult<HoldView> {
    let mut conn = state.db.acquire().await?;
    let holds =
        crate::loader::load_holds(&mut conn, event_id, std::time::Duration::from_secs(100 * 365 * 86_400)).await?;
    let rec = holds.into_iter().find(|h| h.id.0 == hold_id).ok_or_else(|| ApiError::not_found("hold"))?;
    Ok(HoldView {
        id: rec.id,
        buyer: rec.buyer,
        items: rec.items,
        amount: rec.amount,
        created_at: rec.created_at,
        expires_at: rec.expires_at,
        status: rec.status,
        tickets: rec.tickets,
    })
}

/// Release one of your holds; its seats go back on sale.
#[utoipa::path(delete, path = "/holds/{hold_id}", tag = "holds", security(("bearer" = [])), params(("hold_id" = Uuid, Path)),
    responses((status = 200, body = HoldOut), (status = 404), (status = 409, description = "already purchased or expired")))]
async fn release_hold(
    State(state): State<AppState>,
    user: AuthUser,
    Path(hold_id): Path<Uuid>,
) -> ApiResult<axum::Json<HoldOut>> {
    let (event_id, buyer) = hold_owner(&state, &user, hold_id).await?;
    let currency = state.event_currency(event_id).await?;
    let view = state
        .registry
        .with(EventId(event_id), |h| async move { h.release(HoldId(hold_id), BuyerId(buyer)).await })
        .await?;
    metrics::counter!("boxoffice_holds_released_total").increment(1);
    Ok(axum::Json(HoldOut::new(event_id, currency, view)))
}

#[cfg(test)]
mod tests {
    use super::HoldOwners;
    use uuid::Uuid;

    #[test]
    fn hold_owners_remember_two_generations_and_forget_older() {
        let owners = HoldOwners::default();
        let (event, buyer) = (Uuid::now_v7(), Uuid::now_v7());
        let first = Uuid::now_v7();
        owners.insert(first, event, buyer);
        assert_eq!(owners.get(first), Some((event, buyer)));
        assert_eq!(owners.get(Uuid::now_v7()), None);
        // Fill the young generation: `first` moves to the old one and is still known.
        for _ in 0..HoldOwners::GENERATION {
            owners.insert(Uuid::now_v7(), event, buyer);
        }
        assert_eq!(owners.get(first), Some((event, buyer)));
        // Another generation later it is forgotten (the database answers then).
        for _ in 0..HoldOwners::GENERATION {
            owners.insert(Uuid::now_v7(), event, buyer);
        }
        assert_eq!(owners.get(first), None);
    }
}
