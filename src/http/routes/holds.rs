//! Holds: `POST /events/{id}/holds`, `GET /holds/{id}`, `DELETE /holds/{id}`.
//!
//! The event's actor decides; this module translates HTTP to engine calls. A
//! buyer sees and releases only their own holds (another buyer's hold is a 404,
//! indistinguishable from a missing one); administrators may act on any.

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::admission;
use crate::http::extract::{Json, Path, idempotency_key};
use crate::http::problems::{BadPath, JsonBody, SignedIn, Unavailable};
use crate::http::schema::{HoldOut, HoldRequest, HoldSelectionDoc};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use boxoffice_actors::{BuyerId, EventId, HoldId, HoldView};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_hold)).routes(routes!(get_hold, release_hold))
}

/// Hold seats for a while (the hold TTL of the event's sales window).
#[utoipa::path(post, path = "/events/{event_id}/holds", tag = "holds", security(("bearer" = [])),
    params(("event_id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "retries return the first hold (1 to 255 visible ASCII characters)", pattern = "^[!-~]{1,255}$"),
           ("Queue-Admission" = Option<String>, Header, description = "the admission token from `GET /events/{id}/queue/me`, while the event's waiting room is active")),
    request_body = HoldSelectionDoc,
    responses((status = 201, body = HoldOut), BadPath, JsonBody, SignedIn, Unavailable,
              (status = 403, description = "the waiting room is active and this request has no valid admission (`not_admitted`, with `queue_state`, `position`, `ahead`)", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "no such event on sale", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "sold out, seats taken, limit, sale not open or closed", body = Problem, content_type = "application/problem+json")))]
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
    let admitted = admission::require(&state, event_id, user.id, &headers).await?;
    let result = state.event(EventId(event_id)).hold(BuyerId(user.id), selection, key).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) if e.is_transient() => "shed",
        Err(_) => "refused",
    };
    metrics::counter!("boxoffice_holds_total", "outcome" => outcome).increment(1);
    let view = result?;
    state.hold_owners.insert(view.id.0, event_id, user.id);
    if admitted {
        admission::used(&state, event_id, user.id).await;
    }
    Ok((StatusCode::CREATED, axum::Json(HoldOut::new(event_id, currency, view))))
}

/// The hold's event and buyer, if `user` may see it.
async fn hold_owner(state: &AppState, user: &AuthUser, hold_id: Uuid) -> ApiResult<(Uuid, Uuid)> {
    match state.hold_event_and_buyer(hold_id).await? {
        Some((event, buyer)) if buyer == user.id || user.is_admin() => Ok((event, buyer)),
        _ => Err(ApiError::not_found("hold")),
    }
}

/// One of your holds.
#[utoipa::path(get, path = "/holds/{hold_id}", tag = "holds", security(("bearer" = [])), params(("hold_id" = Uuid, Path)),
    responses((status = 200, body = HoldOut), BadPath, SignedIn, Unavailable))]
async fn get_hold(
    State(state): State<AppState>,
    user: AuthUser,
    Path(hold_id): Path<Uuid>,
) -> ApiResult<axum::Json<HoldOut>> {
    let (event_id, buyer) = hold_owner(&state, &user, hold_id).await?;
    let currency = state.event_currency(event_id).await?;
    let view = state.event(EventId(event_id)).get_hold(HoldId(hold_id), BuyerId(buyer)).await?;
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
        crate::store::loader::load_holds(&mut conn, event_id, std::time::Duration::from_secs(100 * 365 * 86_400))
            .await?;
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
    responses((status = 200, body = HoldOut), BadPath, SignedIn, Unavailable,
              (status = 409, description = "already purchased or expired", body = Problem, content_type = "application/problem+json")))]
async fn release_hold(
    State(state): State<AppState>,
    user: AuthUser,
    Path(hold_id): Path<Uuid>,
) -> ApiResult<axum::Json<HoldOut>> {
    let (event_id, buyer) = hold_owner(&state, &user, hold_id).await?;
    let currency = state.event_currency(event_id).await?;
    let view = state.event(EventId(event_id)).release(HoldId(hold_id), BuyerId(buyer)).await?;
    metrics::counter!("boxoffice_holds_released_total").increment(1);
    Ok(axum::Json(HoldOut::new(event_id, currency, view)))
}
