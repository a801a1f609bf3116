//! Tickets: a buyer's list, the QR image (to its owner, or to whoever holds a
//! signed link), cancellation with refund, check-in at the door, and the staff
//! assigned to scan.
//!
//! Check-in is one conditional `UPDATE … WHERE status = 'valid'` plus the
//! `check_ins` row (whose primary key is the ticket) in one transaction: two
//! scanners racing on the same code admit once, and the second learns when and
//! by whom the first scan was. Both ways in — `POST /tickets/{id}/validate` and
//! the scan alone, `POST /events/{id}/check-ins` — go through [`check_in`].

use crate::auth::qr::{self, LinkError, TicketClaim, link_expiry};
use crate::auth::{AuthUser, Role};
use crate::error::{ApiError, ApiResult, Problem, ProblemCode};
use crate::http::access::owned_event;
use crate::http::extract::{Json, Path, Query};
use crate::http::problems::{BadPath, BadQuery, Forbidden, JsonBody, SignedIn, Unavailable};
use crate::http::schema::PageParams;
use crate::money::refund_ticket;
use crate::state::AppState;
use crate::store::outbox::{self, Topic};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use boxoffice_actors::{BuyerId, EventError, EventId, HoldId, InventoryError, TicketId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(user_tickets))
        .routes(routes!(ticket_qr))
        .routes(routes!(cancel_ticket))
        .routes(routes!(validate_ticket))
        .routes(routes!(check_in_by_scan))
        .routes(routes!(list_staff, assign_staff))
        .routes(routes!(unassign_staff))
        .routes(routes!(staff_events))
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct TicketItem {
    pub ticket_id: Uuid,
    pub event_id: Uuid,
    pub order_id: Uuid,
    /// Joined from the event (not copied into the ticket).
    pub event_title: String,
    pub event_date: DateTime<Utc>,
    pub venue_name: String,
    pub section: String,
    pub seat_number: Option<String>,
    pub price: i64,
    pub currency: String,
    pub status: String,
    pub purchase_date: DateTime<Utc>,
    #[sqlx(skip)]
    pub qr_token: String,
    /// Path (and query) of a signed link to the QR image that needs no access token,
    /// valid until `qr_link_expires_at` (a day after the event starts).
    #[sqlx(skip)]
    pub qr_link: String,
    #[sqlx(skip)]
    pub qr_link_expires_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct TicketList {
    pub tickets: Vec<TicketItem>,
    pub page: u32,
    pub per_page: u32,
}

/// A user's tickets, newest first: `$1` the user, `$2` the limit, `$3` the offset.
/// Found through the user's holds (`holds_buyer`) and each hold's tickets
/// (`tickets_hold`): a ticket's owner is its hold's buyer, and tickets keep no
/// index by owner, which would cost every sold ticket an index entry at a random
/// place in the rush.
pub const USER_TICKETS: &str =
    "SELECT t.ticket_id, t.event_id, t.hold_id AS order_id, e.title AS event_title, e.event_date, e.venue_name,
            t.section, t.seat_number, t.price, e.currency, t.status, t.purchase_date
     FROM holds h
     JOIN tickets t ON t.hold_id = h.hold_id AND t.purchaser_id = h.buyer_id
     JOIN events e ON e.event_id = t.event_id
     WHERE h.buyer_id = $1
     ORDER BY t.purchase_date DESC, t.ticket_id LIMIT $2 OFFSET $3";

/// A user's tickets (only their own, or any for administrators).
#[utoipa::path(get, path = "/tickets/user/{user_id}", tag = "tickets", security(("bearer" = [])),
    params(("user_id" = Uuid, Path), PageParams),
    responses((status = 200, body = TicketList), BadPath, BadQuery, SignedIn, Forbidden, Unavailable))]
async fn user_tickets(
    State(state): State<AppState>,
    user: AuthUser,
    Path(user_id): Path<Uuid>,
    Query(p): Query<PageParams>,
) -> ApiResult<axum::Json<TicketList>> {
    if user.id != user_id && !user.is_admin() {
        return Err(ApiError::forbidden("you can list only your own tickets"));
    }
    let (page, per_page, limit, offset) = p.limits()?;
    let mut tickets: Vec<TicketItem> =
        sqlx::query_as(USER_TICKETS).bind(user_id).bind(limit).bind(offset).fetch_all(&state.db).await?;
    for t in &mut tickets {
        t.qr_token = state.qr.sign(TicketClaim { ticket_id: t.ticket_id, event_id: t.event_id });
        let exp = link_expiry(t.event_date);
        t.qr_link = state.qr.link_path(t.ticket_id, exp);
        t.qr_link_expires_at = DateTime::from_timestamp(exp, 0).unwrap_or(t.event_date);
    }
    Ok(axum::Json(TicketList { tickets, page, per_page }))
}

#[derive(sqlx::FromRow)]
struct TicketRow {
    event_id: Uuid,
    hold_id: Uuid,
    purchaser_id: Uuid,
    status: String,
    price: i64,
    event_date: DateTime<Utc>,
    payment_provider: Option<String>,
    payment_ref: Option<String>,
}

/// The ticket if `user` owns it (or is an admin); 404 otherwise.
async fn owned_ticket(state: &AppState, user: &AuthUser, ticket_id: Uuid) -> ApiResult<TicketRow> {
    let row: Option<TicketRow> = sqlx::query_as(
        "SELECT t.event_id, t.hold_id, t.purchaser_id, t.status, t.price, e.event_date,
                p.provider AS payment_provider, p.provider_ref AS payment_ref
         FROM tickets t JOIN events e ON e.event_id = t.event_id
         LEFT JOIN LATERAL (SELECT provider, provider_ref FROM payments WHERE hold_id = t.hold_id ORDER BY created_at LIMIT 1) p ON true
         WHERE t.ticket_id = $1",
    )
    .bind(ticket_id)
    .fetch_optional(&state.db)
    .await?;
    row.filter(|t| t.purchaser_id == user.id || user.is_admin()).ok_or_else(|| ApiError::not_found("ticket"))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QrParams {
    /// `png` (default) or `svg`.
    #[param(pattern = "^(png|svg)$")]
    pub format: Option<String>,
    /// Signed link: its expiry, unix seconds. With `sig`, no access token is needed.
    pub exp: Option<i64>,
    /// Signed link: base64url HMAC-SHA256 over the ticket id and `exp` (the ticket's `qr_link`).
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub sig: Option<String>,
}

/// The ticket's QR code as an image: to its owner (bearer token) or to whoever holds a
/// signed link (`exp` and `sig`, from the purchase email or the ticket's `qr_link`).
#[utoipa::path(get, path = "/tickets/{ticket_id}/qr", tag = "tickets", security((), ("bearer" = [])),
    params(("ticket_id" = Uuid, Path), QrParams),
    responses((status = 200, description = "image/png or image/svg+xml"), BadPath, BadQuery, Unavailable,
              (status = 400, description = "bad query", body = Problem, content_type = "application/problem+json"),
              (status = 401, description = "no link and no token", body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "link expired (`link_expired`) or not valid (`invalid_link`)",
               body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "no such ticket (or not yours)", body = Problem, content_type = "application/problem+json")))]
async fn ticket_qr(
    State(state): State<AppState>,
    user: Result<AuthUser, ApiError>,
    Path(ticket_id): Path<Uuid>,
    Query(p): Query<QrParams>,
) -> ApiResult<Response> {
    let event_id = match (p.exp, p.sig.as_deref()) {
        (None, None) => owned_ticket(&state, &user?, ticket_id).await?.event_id,
        (Some(exp), Some(sig)) => {
            state.qr.verify_link(ticket_id, exp, sig, Utc::now().timestamp()).map_err(|e| {
                let code = match e {
                    LinkError::Expired => ProblemCode::LinkExpired,
                    LinkError::BadSignature => ProblemCode::InvalidLink,
                };
                ApiError::new(StatusCode::FORBIDDEN, code, e.to_string())
            })?;
            let event: Option<Uuid> = sqlx::query_scalar("SELECT event_id FROM tickets WHERE ticket_id = $1")
                .bind(ticket_id)
                .fetch_optional(&state.db)
                .await?;
            event.ok_or_else(|| ApiError::not_found("ticket"))?
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ProblemCode::InvalidLink,
                "a signed link has exp and sig",
            ));
        }
    };
    let token = state.qr.sign(TicketClaim { ticket_id, event_id });
    match p.format.as_deref().unwrap_or("png") {
        "png" => Ok(([(header::CONTENT_TYPE, "image/png")], qr::png(&token)).into_response()),
        "svg" => Ok(([(header::CONTENT_TYPE, "image/svg+xml")], qr::svg(&token)).into_response()),
        other => Err(ApiError::bad_request(ProblemCode::InvalidQuery, format!("format {other:?} is not png or svg"))),
    }
}

#[derive(Serialize, ToSchema)]
pub struct CancelOut {
    pub ticket_id: Uuid,
    pub status: &'static str,
    pub refund_amount: i64,
    /// `succeeded`, `pending` (retried later) or `failed`.
    pub refund_status: String,
}

/// Cancel one of your tickets before the event: refunds it and puts the seat back on sale. Idempotent.
#[utoipa::path(post, path = "/tickets/{ticket_id}/cancel", tag = "tickets", security(("bearer" = [])),
    params(("ticket_id" = Uuid, Path)),
    responses((status = 200, body = CancelOut), BadPath, SignedIn, Unavailable,
              (status = 409, description = "used, or the event has started", body = Problem, content_type = "application/problem+json")))]
async fn cancel_ticket(
    State(state): State<AppState>,
    user: AuthUser,
    Path(ticket_id): Path<Uuid>,
) -> ApiResult<axum::Json<CancelOut>> {
    let t = owned_ticket(&state, &user, ticket_id).await?;
    match t.status.as_str() {
        "used" => {
            return Err(ApiError::conflict(ProblemCode::TicketUsed, "a ticket that was scanned cannot be cancelled"));
        }
        "cancelled" => {}
        _ if t.event_date <= Utc::now() => {
            return Err(ApiError::conflict(
                ProblemCode::EventStarted,
                "tickets cannot be cancelled once the event has started",
            ));
        }
        _ => {
            let (hold, buyer) = (HoldId(t.hold_id), BuyerId(t.purchaser_id));
            let result = state.event(EventId(t.event_id)).cancel_tickets(hold, buyer, vec![TicketId(ticket_id)]).await;
            match result {
                Ok(_) | Err(EventError::Inventory(InventoryError::TicketNotFound)) => {}
                Err(e) => return Err(e.into()),
            }
            metrics::counter!("boxoffice_tickets_cancelled_total").increment(1);
        }
    }
    // Cancelled (now or before): make sure the money went back.
    let refund_status = match (&t.payment_provider, &t.payment_ref) {
        (Some(provider), Some(reference)) if t.price > 0 => {
            let hold = HoldId(t.hold_id);
            refund_ticket(&state, t.event_id, hold, ticket_id, provider, reference, t.price).await?.as_str().to_owned()
        }
        _ => "none".to_owned(),
    };
    Ok(axum::Json(CancelOut { ticket_id, status: "cancelled", refund_amount: t.price, refund_status }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    /// The scanned QR payload (`BO1.…`).
    pub qr: String,
}

#[derive(Serialize, ToSchema)]
pub struct ValidateOut {
    pub ticket_id: Uuid,
    pub event_id: Uuid,
    /// The ticket holder's name, to compare with their ID at the door.
    pub holder_name: String,
    pub section: String,
    pub seat_number: Option<String>,
    pub status: &'static str,
    pub admitted: bool,
    pub checked_in_at: DateTime<Utc>,
}

/// May `user` scan tickets of `event_id`: admin, the organizer, or assigned staff.
async fn may_scan(state: &AppState, user: &AuthUser, event_id: Uuid) -> ApiResult<bool> {
    if user.is_admin() {
        return Ok(true);
    }
    if !matches!(user.role, Role::Staff | Role::Organizer) {
        return Ok(false);
    }
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events WHERE event_id = $1 AND organizer_id = $2)
             OR EXISTS (SELECT 1 FROM staff_assignments WHERE event_id = $1 AND staff_id = $2)",
    )
    .bind(event_id)
    .bind(user.id)
    .fetch_one(&state.db)
    .await?)
}

/// The claim of a scanned code, or 422 `invalid_qr` for a forged or altered one.
fn verify_code(state: &AppState, code: &str) -> ApiResult<TicketClaim> {
    state.qr.verify(code).map_err(|e| ApiError::invalid(ProblemCode::InvalidQr, e.to_string()))
}

/// Check a ticket in at the door: verifies the signed code, then admits once.
#[utoipa::path(post, path = "/tickets/{ticket_id}/validate", tag = "tickets", security(("bearer" = [])),
    params(("ticket_id" = Uuid, Path)), request_body = ValidateRequest,
    responses((status = 200, body = ValidateOut), BadPath, JsonBody, SignedIn, Unavailable,
              (status = 403, description = "not staff of this event", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "already used (says when and by whom) or cancelled", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "forged, altered or foreign code", body = Problem, content_type = "application/problem+json")))]
async fn validate_ticket(
    State(state): State<AppState>,
    user: AuthUser,
    Path(ticket_id): Path<Uuid>,
    Json(req): Json<ValidateRequest>,
) -> ApiResult<axum::Json<ValidateOut>> {
    let claim = verify_code(&state, &req.qr)?;
    if claim.ticket_id != ticket_id {
        return Err(ApiError::invalid(ProblemCode::InvalidQr, "this code belongs to another ticket"));
    }
    if !may_scan(&state, &user, claim.event_id).await? {
        return Err(ApiError::forbidden("you are not assigned to scan this event"));
    }
    check_in(&state, &user, claim).await.map(axum::Json)
}

/// Check in at the door of this event by the scanned code alone (the code names the
/// ticket): staff assigned to the event, its organizer or an admin. Admits once.
#[utoipa::path(post, path = "/events/{event_id}/check-ins", tag = "tickets", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)), request_body = ValidateRequest,
    responses((status = 200, body = ValidateOut), BadPath, JsonBody, SignedIn, Unavailable,
              (status = 403, description = "not staff of this event", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "no such ticket", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "`already_used` (with `first_checked_in_at` and `checked_in_by`), \
                `ticket_cancelled` or `event_cancelled`", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "`invalid_qr` (forged or altered code), `wrong_event` (a genuine code for \
                another event) or `invalid_body`", body = Problem, content_type = "application/problem+json"),
              (status = 503, description = "retry after `Retry-After`", body = Problem, content_type = "application/problem+json")))]
async fn check_in_by_scan(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
    Json(req): Json<ValidateRequest>,
) -> ApiResult<axum::Json<ValidateOut>> {
    let claim = verify_code(&state, &req.qr)?;
    if !may_scan(&state, &user, event_id).await? {
        return Err(ApiError::forbidden("you are not assigned to scan this event"));
    }
    if claim.event_id != event_id {
        return Err(ApiError::invalid(ProblemCode::WrongEvent, "this ticket is for another event")
            .with("ticket_event_id", claim.event_id.to_string()));
    }
    check_in(&state, &user, claim).await.map(axum::Json)
}

/// Admits the ticket of a verified `claim` once, scanned by `user` (who may scan its
/// event): marks it used and writes its `check_ins` row and outbox row in one
/// transaction, or says why not.
async fn check_in(state: &AppState, user: &AuthUser, claim: TicketClaim) -> ApiResult<ValidateOut> {
    let TicketClaim { ticket_id, event_id } = claim;
    let mut tx = state.db.begin().await?;
    #[derive(sqlx::FromRow)]
    struct Admitted {
        event_id: Uuid,
        section: String,
        seat_number: Option<String>,
        holder_name: String,
    }
    let admitted: Option<Admitted> = sqlx::query_as(
        "UPDATE tickets SET status = 'used' WHERE ticket_id = $1 AND event_id = $2 AND status = 'valid'
           AND NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = $2 AND e.status = 'cancelled')
         RETURNING event_id, section, seat_number,
                   COALESCE((SELECT name FROM users WHERE user_id = purchaser_id), '') AS holder_name",
    )
    .bind(ticket_id)
    .bind(event_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(a) = admitted else {
        drop(tx);
        return Err(refusal(state, ticket_id, event_id).await);
    };
    let at: DateTime<Utc> =
        sqlx::query_scalar("INSERT INTO check_ins (ticket_id, staff_id) VALUES ($1, $2) RETURNING checked_in_at")
            .bind(ticket_id)
            .bind(user.id)
            .fetch_one(&mut *tx)
            .await?;
    outbox::record(
        &mut *tx,
        Topic::TicketUsed,
        ticket_id,
        serde_json::json!({"ticket_id": ticket_id, "event_id": a.event_id, "staff_id": user.id, "at": at}),
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("boxoffice_check_ins_total").increment(1);
    Ok(ValidateOut {
        ticket_id,
        event_id: a.event_id,
        holder_name: a.holder_name,
        section: a.section,
        seat_number: a.seat_number,
        status: "used",
        admitted: true,
        checked_in_at: at,
    })
}

/// Why a ticket was not admitted.
async fn refusal(state: &AppState, ticket_id: Uuid, event_id: Uuid) -> ApiError {
    #[derive(sqlx::FromRow)]
    struct Scan {
        status: String,
        event_id: Uuid,
        event_status: String,
        checked_in_at: Option<DateTime<Utc>>,
        staff_id: Option<Uuid>,
        staff_name: Option<String>,
    }
    let row: Result<Option<Scan>, _> = sqlx::query_as(
        "SELECT t.status, t.event_id, e.status AS event_status, c.checked_in_at, c.staff_id, s.name AS staff_name
         FROM tickets t JOIN events e ON e.event_id = t.event_id
         LEFT JOIN check_ins c ON c.ticket_id = t.ticket_id LEFT JOIN users s ON s.user_id = c.staff_id
         WHERE t.ticket_id = $1",
    )
    .bind(ticket_id)
    .fetch_optional(&state.db)
    .await;
    match row {
        Err(e) => e.into(),
        Ok(None) => ApiError::not_found("ticket"),
        Ok(Some(s)) if s.event_id != event_id => {
            ApiError::invalid(ProblemCode::InvalidQr, "this code is for another event")
        }
        Ok(Some(Scan { status, checked_in_at: Some(at), staff_id, staff_name, .. })) if status == "used" => {
            ApiError::conflict(
                ProblemCode::AlreadyUsed,
                format!("this ticket was already scanned at {}", at.to_rfc3339()),
            )
            .with("first_checked_in_at", at.to_rfc3339())
            .with("checked_in_by", staff_id.map(|s| s.to_string()).unwrap_or_default())
            .with("checked_in_by_name", staff_name.unwrap_or_default())
        }
        // The event's cancellation cancels its tickets too: say the bigger news.
        Ok(Some(s)) if s.event_status == "cancelled" => {
            ApiError::conflict(ProblemCode::EventCancelled, "this event is cancelled; its tickets admit no one")
        }
        Ok(Some(s)) if s.status == "cancelled" => {
            ApiError::conflict(ProblemCode::TicketCancelled, "this ticket was cancelled")
        }
        Ok(Some(_)) => ApiError::unavailable("the ticket is changing; scan again", std::time::Duration::from_secs(1)),
    }
}

/// Who to assign: a staff user's id, or the email of their account.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AssignStaff {
    ById(StaffById),
    ByEmail(StaffByEmail),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffById {
    /// A user whose role is `staff`.
    pub staff_id: Uuid,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffByEmail {
    /// The email of a user whose role is `staff` (case-insensitive).
    #[schema(max_length = 254)]
    pub email: String,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct StaffOut {
    pub staff_id: Uuid,
    pub name: String,
    pub email: String,
    pub assigned_at: DateTime<Utc>,
}

/// Staff assigned to scan this event (its organizer).
#[utoipa::path(get, path = "/events/{event_id}/staff", tag = "tickets", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)),
    responses((status = 200, body = Vec<StaffOut>), BadPath, SignedIn, Forbidden, Unavailable))]
async fn list_staff(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
) -> ApiResult<axum::Json<Vec<StaffOut>>> {
    owned_event(&state, &user, event_id).await?;
    let staff = sqlx::query_as(
        "SELECT s.staff_id, u.name, u.email, s.created_at AS assigned_at FROM staff_assignments s
         JOIN users u ON u.user_id = s.staff_id WHERE s.event_id = $1 ORDER BY s.created_at",
    )
    .bind(event_id)
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(staff))
}

/// Assign a staff member to scan this event (its organizer).
#[utoipa::path(post, path = "/events/{event_id}/staff", tag = "tickets", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)), request_body = AssignStaff,
    responses((status = 204), BadPath, JsonBody, SignedIn, Forbidden, Unavailable,
              (status = 422, description = "not a staff user", body = Problem, content_type = "application/problem+json")))]
async fn assign_staff(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
    Json(req): Json<AssignStaff>,
) -> ApiResult<StatusCode> {
    owned_event(&state, &user, event_id).await?;
    // Either way the answer for a missing account is the one for a non-staff account.
    let staff: Option<(Uuid, String)> = match &req {
        AssignStaff::ById(by) => {
            sqlx::query_as("SELECT user_id, user_type FROM users WHERE user_id = $1")
                .bind(by.staff_id)
                .fetch_optional(&state.db)
                .await?
        }
        // No account's email holds a NUL (and PostgreSQL text cannot): no such account.
        AssignStaff::ByEmail(by) if by.email.contains('\0') => None,
        AssignStaff::ByEmail(by) => {
            sqlx::query_as("SELECT user_id, user_type FROM users WHERE lower(email) = lower($1)")
                .bind(by.email.trim())
                .fetch_optional(&state.db)
                .await?
        }
    };
    let Some((staff_id, "staff")) = staff.as_ref().map(|(id, role)| (*id, role.as_str())) else {
        let what = match req {
            AssignStaff::ById(_) => "staff_id must be a user with the staff role",
            AssignStaff::ByEmail(_) => "email must be the account of a user with the staff role",
        };
        return Err(ApiError::invalid(ProblemCode::NotStaff, what));
    };
    sqlx::query("INSERT INTO staff_assignments (event_id, staff_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(event_id)
        .bind(staff_id)
        .execute(&state.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a staff member from this event (its organizer).
#[utoipa::path(delete, path = "/events/{event_id}/staff/{staff_id}", tag = "tickets", security(("bearer" = [])),
    params(("event_id" = Uuid, Path), ("staff_id" = Uuid, Path)),
    responses((status = 204), BadPath, SignedIn, Forbidden, Unavailable))]
async fn unassign_staff(
    State(state): State<AppState>,
    user: AuthUser,
    Path((event_id, staff_id)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    owned_event(&state, &user, event_id).await?;
    sqlx::query("DELETE FROM staff_assignments WHERE event_id = $1 AND staff_id = $2")
        .bind(event_id)
        .bind(staff_id)
        .execute(&state.db)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct StaffEvent {
    pub event_id: Uuid,
    pub title: String,
    /// `published`, `closed` or `cancelled` (drafts are not listed).
    pub status: String,
    pub event_date: DateTime<Utc>,
    pub venue_name: String,
    pub assigned_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct StaffEvents {
    pub events: Vec<StaffEvent>,
    pub page: u32,
    pub per_page: u32,
}

/// The events you are assigned to scan (staff), soonest first; events that started
/// more than a day ago are left out.
#[utoipa::path(get, path = "/staff/events", tag = "tickets", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = StaffEvents), BadQuery, SignedIn, Unavailable,
              (status = 403, description = "not a staff user", body = Problem, content_type = "application/problem+json")))]
async fn staff_events(
    State(state): State<AppState>,
    user: AuthUser,
    Query(p): Query<PageParams>,
) -> ApiResult<axum::Json<StaffEvents>> {
    user.require(&[Role::Staff])?;
    let (page, per_page, limit, offset) = p.limits()?;
    let events = sqlx::query_as(
        "SELECT e.event_id, e.title, e.status, e.event_date, e.venue_name, s.created_at AS assigned_at
         FROM staff_assignments s JOIN events e ON e.event_id = s.event_id
         WHERE s.staff_id = $1 AND e.status <> 'draft' AND e.event_date > now() - interval '1 day'
         ORDER BY e.event_date, e.event_id LIMIT $2 OFFSET $3",
    )
    .bind(user.id)
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(StaffEvents { events, page, per_page }))
}
