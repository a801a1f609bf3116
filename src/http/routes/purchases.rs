//! Purchases: pay for a hold (`POST /holds/{id}/purchase`), the one-shot
//! flash-sale path (`POST /tickets/purchase`: hold + pay + issue), the payment
//! provider's webhook, and order history.
//!
//! The money path is idempotent end to end, so a retried request can never
//! charge twice or issue twice:
//! - a hold made with an `Idempotency-Key` is the same hold on retry (the actor
//!   remembers the key);
//! - the charge's idempotency key is the hold id and payment method;
//! - paying for a hold that is already purchased answers the first sale and
//!   charges nothing.
//!
//! Failure paths: a declined card is a 402 and the hold stays until it expires
//! (the one-shot path releases it at once); a payment that succeeds after the
//! hold lapsed re-takes its seats if they are free, and is refunded
//! automatically if not; a provider outage is a 503 with nothing issued.

use crate::auth::AuthUser;
use crate::auth::qr::{self, TicketClaim};
use crate::error::Problem;
use crate::error::{ApiError, ApiResult, ProblemCode};
use crate::http::admission;
use crate::http::extract::{Json, Path, Query, idempotency_key};
use crate::http::problems::{BadPath, BadQuery, JsonBody, LooseJsonBody, NotFound, RateLimited, SignedIn, Unavailable};
use crate::http::schema::{HoldOut, HoldRequest, PageParams, QuantitySelectionDoc, SeatsSelectionDoc};
use crate::money::{self, Paid, pay, payment_error, webhook};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use boxoffice_actors::{BuyerId, EventId, HoldId, HoldStatus, HoldView, Payment};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, OneOfBuilder, Schema};
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(purchase_hold))
        .routes(routes!(purchase_tickets))
        .routes(routes!(stripe_webhook))
        .routes(routes!(test_authenticate))
        .routes(routes!(order_history))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    /// A payment method id from the provider, e.g. `pm_card_visa`: 1 to 255 visible ASCII characters.
    #[schema(min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
    pub payment_method: String,
    /// Include each ticket's QR code as a base64 PNG (default true).
    #[serde(default = "yes")]
    pub include_qr_image: bool,
}

fn yes() -> bool {
    true
}

/// The seed's purchase request: one seat (`seat_number`), several (`seats`) or a quantity.
/// Documented as [`PurchaseRequestDoc`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchaseRequest {
    pub event_id: Uuid,
    /// Optional; must be the caller if given (the buyer comes from the token).
    pub purchaser_id: Option<Uuid>,
    pub seat_number: Option<String>,
    pub seats: Option<Vec<String>>,
    pub quantity: Option<u32>,
    pub section: Option<String>,
    #[serde(default)]
    pub allow_split: bool,
    pub payment_method: String,
    #[serde(default = "yes")]
    pub include_qr_image: bool,
}

/// The document's view of [`PurchaseRequest`]: the event and the payment
/// ([`PurchaseCommonDoc`]) with exactly one way to choose places — one seat
/// ([`OneSeatDoc`]), seats or a quantity (as a hold takes them) — each shape a
/// closed object, so `oneOf` them is exactly what the handler accepts.
pub struct PurchaseRequestDoc;

impl PartialSchema for PurchaseRequestDoc {
    fn schema() -> RefOr<Schema> {
        let shapes = [OneSeatDoc::schema(), SeatsSelectionDoc::schema(), QuantitySelectionDoc::schema()]
            .map(|selection| closed_union(PurchaseCommonDoc::schema(), selection));
        shapes
            .into_iter()
            .fold(OneOfBuilder::new(), OneOfBuilder::item)
            .description(Some("One seat (`seat_number`), several (`seats`) or a `quantity`, with the payment."))
            .into()
    }
}

impl ToSchema for PurchaseRequestDoc {
    fn name() -> std::borrow::Cow<'static, str> {
        "PurchaseRequest".into()
    }
}

/// The members of both objects, and no others.
fn closed_union(a: RefOr<Schema>, b: RefOr<Schema>) -> RefOr<Schema> {
    let (RefOr::T(Schema::Object(mut a)), RefOr::T(Schema::Object(b))) = (a, b) else {
        unreachable!("derived struct schemas are inline objects")
    };
    a.properties.extend(b.properties);
    a.required.extend(b.required);
    a.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
    a.description = None;
    a.into()
}

/// What every purchase names besides its places.
#[derive(ToSchema)]
#[allow(dead_code)] // schema only
pub struct PurchaseCommonDoc {
    pub event_id: Uuid,
    /// Optional; must be the caller if given (the buyer comes from the token).
    pub purchaser_id: Option<Uuid>,
    /// A payment method id, e.g. `pm_card_visa` (the test provider also takes the seed's `card`):
    /// 1 to 255 visible ASCII characters.
    #[schema(min_length = 1, max_length = 255, pattern = "^[!-~]+$")]
    pub payment_method: String,
    /// Include each ticket's QR code as a base64 PNG (default true).
    pub include_qr_image: Option<bool>,
}

/// One seat.
#[derive(ToSchema)]
#[allow(dead_code)] // schema only
pub struct OneSeatDoc {
    /// A seat label such as `A-12`.
    #[schema(min_length = 1, max_length = 80)]
    pub seat_number: String,
}

#[derive(Serialize, ToSchema)]
pub struct IssuedTicket {
    pub ticket_id: Uuid,
    pub section: String,
    pub seat_number: Option<String>,
    pub price: i64,
    pub status: &'static str,
    /// The signed code the QR image encodes.
    pub qr_token: String,
    /// base64 PNG (absent when `include_qr_image` is false).
    pub qr_code: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PurchaseOut {
    /// The first ticket (seed fields).
    pub ticket_id: Uuid,
    pub qr_code: Option<String>,
    pub purchase_date: DateTime<Utc>,
    pub price: i64,
    /// The order (same id as the hold it came from).
    pub order_id: Uuid,
    pub event_id: Uuid,
    pub amount: i64,
    pub currency: String,
    pub payment_provider: Option<String>,
    pub payment_reference: Option<String>,
    pub tickets: Vec<IssuedTicket>,
}

/// A payment not finished yet (202).
#[derive(Serialize, ToSchema)]
pub struct PendingOut {
    pub order_id: Uuid,
    /// `requires_action`: the buyer must authenticate (3-D Secure) with
    /// `client_secret` (Stripe.js `handleNextAction`), then pay again with the same
    /// payment method (or wait for the webhook) to get the tickets.
    /// `processing`: the money was taken and the tickets are being issued (or the
    /// payment refunded) by the reconciler; `GET /orders` shows them shortly, and
    /// paying again with the same payment method answers the outcome.
    pub status: &'static str,
    pub payment_reference: String,
    pub client_secret: Option<String>,
    /// The provider's description of the next step.
    #[schema(value_type = Option<Object>)]
    pub next_action: Option<serde_json::Value>,
}

fn purchase_out(
    state: &AppState,
    event_id: Uuid,
    currency: String,
    view: HoldView,
    payment: Option<Payment>,
    images: bool,
) -> PurchaseOut {
    let tickets: Vec<IssuedTicket> = view
        .tickets
        .iter()
        .map(|t| {
            let token = state.qr.sign(TicketClaim { ticket_id: t.id.0, event_id });
            IssuedTicket {
                ticket_id: t.id.0,
                section: t.section.clone(),
                seat_number: t.seat.clone(),
                price: t.price,
                status: if t.cancelled { "cancelled" } else { "valid" },
                qr_code: images.then(|| qr::png_base64(&token)),
                qr_token: token,
            }
        })
        .collect();
    let first = tickets.first();
    PurchaseOut {
        ticket_id: first.map_or(view.id.0, |t| t.ticket_id),
        qr_code: first.and_then(|t| t.qr_code.clone()),
        purchase_date: Utc::now(),
        price: first.map_or(0, |t| t.price),
        order_id: view.id.0,
        event_id,
        amount: view.amount,
        currency,
        payment_provider: payment.as_ref().map(|p| p.provider.clone()),
        payment_reference: payment.map(|p| p.reference),
        tickets,
    }
}

fn paid_response(
    state: &AppState,
    event_id: Uuid,
    order: Uuid,
    currency: String,
    paid: Paid,
    images: bool,
) -> Response {
    match paid {
        Paid::Sold(view, payment) => {
            (StatusCode::CREATED, axum::Json(purchase_out(state, event_id, currency, view, payment, images)))
                .into_response()
        }
        Paid::Pending(charge) => (
            StatusCode::ACCEPTED,
            axum::Json(PendingOut {
                order_id: order,
                status: "requires_action",
                payment_reference: charge.reference,
                client_secret: charge.client_secret,
                next_action: charge.next_action,
            }),
        )
            .into_response(),
        Paid::Processing(reference) => (
            StatusCode::ACCEPTED,
            axum::Json(PendingOut {
                order_id: order,
                status: "processing",
                payment_reference: reference,
                client_secret: None,
                next_action: None,
            }),
        )
            .into_response(),
    }
}

fn check_payment_method(pm: &str) -> ApiResult<()> {
    if pm.is_empty() || pm.len() > 255 || !pm.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            ProblemCode::PaymentInvalid,
            "payment_method is a provider id such as pm_card_visa",
        ));
    }
    Ok(())
}

/// Pay for one of your holds; issues its tickets.
#[utoipa::path(post, path = "/holds/{hold_id}/purchase", tag = "purchases", security(("bearer" = [])),
    params(("hold_id" = Uuid, Path)), request_body = PayRequest,
    responses((status = 201, body = PurchaseOut), (status = 202, body = PendingOut, description = "payment needs the buyer's action, or tickets are being issued"),
              BadPath, JsonBody, SignedIn, RateLimited, Unavailable,
              (status = 402, description = "declined (`payment_declined`)", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "seats gone or sale closed (refunded if charged)", body = Problem, content_type = "application/problem+json")))]
async fn purchase_hold(
    State(state): State<AppState>,
    user: AuthUser,
    Path(hold_id): Path<Uuid>,
    Json(req): Json<PayRequest>,
) -> ApiResult<Response> {
    check_payment_method(&req.payment_method)?;
    let row = state.hold_event_and_buyer(hold_id).await?;
    let Some((event_id, buyer)) = row.filter(|(_, b)| *b == user.id) else { return Err(ApiError::not_found("hold")) };
    let currency = state.event_currency(event_id).await?;
    let view = state
        .event(EventId(event_id))
        .payable_hold(HoldId(hold_id), BuyerId(buyer))
        .await?
        .ok_or_else(|| ApiError::not_found("hold"))?;
    let paid = pay(&state, event_id, &currency, view, &req.payment_method).await?;
    Ok(paid_response(&state, event_id, hold_id, currency, paid, req.include_qr_image))
}

/// Hold, pay and issue in one request: the flash-sale path. Send an
/// `Idempotency-Key` so a retry returns the first result and never charges twice.
#[utoipa::path(post, path = "/tickets/purchase", tag = "purchases", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "retries return the first result (1 to 255 visible ASCII characters)", pattern = "^[!-~]{1,255}$"),
           ("Queue-Admission" = Option<String>, Header, description = "the admission token from `GET /events/{id}/queue/me`, while the event's waiting room is active")),
    request_body = PurchaseRequestDoc,
    responses((status = 201, body = PurchaseOut), (status = 202, body = PendingOut, description = "payment needs the buyer's action, or tickets are being issued"),
              JsonBody, SignedIn, NotFound, RateLimited, Unavailable,
              (status = 402, description = "declined (`payment_declined`)", body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "purchaser_id is not you (`forbidden`), or the waiting room is active and this request has no valid admission (`not_admitted`)", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "sold out / seats taken / limit / not open", body = Problem, content_type = "application/problem+json")))]
async fn purchase_tickets(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Json(req): Json<PurchaseRequest>,
) -> ApiResult<Response> {
    if req.purchaser_id.is_some_and(|p| p != user.id) {
        return Err(ApiError::forbidden("purchaser_id must be your own user id"));
    }
    check_payment_method(&req.payment_method)?;
    let key = idempotency_key(&headers)?;
    let seats = match (req.seat_number, req.seats) {
        (Some(one), None) => Some(vec![one]),
        (None, many) => many,
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(ProblemCode::InvalidSelection, "give seat_number or seats, not both"));
        }
    };
    let selection = HoldRequest { seats, quantity: req.quantity, section: req.section, allow_split: req.allow_split }
        .selection()?;
    let event_id = req.event_id;
    let currency = state.event_currency(event_id).await?;
    let buyer = BuyerId(user.id);
    let admitted = admission::require(&state, event_id, user.id, &headers).await?;
    // Before any seat is held: a buyer out of payment attempts holds nothing
    // (the payment asks again, with the hold, as for any hold).
    money::check_payment_allowed(&state, user.id, None).await?;
    let view = state.event(EventId(event_id)).hold(buyer, selection, key).await?;
    if admitted {
        admission::used(&state, event_id, user.id).await;
    }
    let hold = view.id;
    match pay(&state, event_id, &currency, view, &req.payment_method).await {
        Ok(paid) => Ok(paid_response(&state, event_id, hold.0, currency, paid, req.include_qr_image)),
        Err(e) => {
            // A declined or refused payment frees the seats for the next buyer at once.
            if e.status == StatusCode::PAYMENT_REQUIRED || e.code == ProblemCode::PaymentInvalid {
                let _ = state.event(EventId(event_id)).release(hold, buyer).await;
            }
            Err(e)
        }
    }
}

/// Stripe's webhook: signature-verified, stored in the inbox, then processed
/// exactly once (retried by the reconciler until it succeeds). 200 means stored.
#[utoipa::path(post, path = "/payments/stripe/webhook", tag = "purchases", request_body(content = Object),
    responses((status = 200, description = "stored (and processed, or to be processed); or seen before"),
              LooseJsonBody, Unavailable,
              (status = 400, description = "no, a malformed or a wrong signature (`bad_signature`)", body = Problem, content_type = "application/problem+json")))]
async fn stripe_webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<StatusCode> {
    let signature = headers.get("stripe-signature").and_then(|v| v.to_str().ok());
    let event = state.payments.parse_webhook(&body, signature).map_err(payment_error)?;
    if webhook::receive(&state, &event).await? {
        // Stored: from here a failure (or this request being cut off) only delays
        // it; the reconciler processes it until it succeeds.
        webhook::process_stored(&state, &event.id, event.kind, 0).await;
    }
    Ok(StatusCode::OK)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestAuthentication {
    pub payment_reference: String,
    /// The `client_secret` the 202 answer gave.
    pub client_secret: String,
    /// Complete (true) or fail (false) the authentication.
    pub approve: bool,
}

/// The built-in test provider's stand-in for the card issuer's 3-D Secure page
/// (`pm_card_threeDSecure2Required`). Then pay again with the same payment
/// method to get the tickets. 404 with Stripe.
#[utoipa::path(post, path = "/payments/test/authenticate", tag = "purchases", request_body = TestAuthentication,
    responses((status = 204, description = "decided"), JsonBody,
              (status = 404, description = "no such pending charge, or not the test provider", body = Problem, content_type = "application/problem+json")))]
async fn test_authenticate(
    State(state): State<AppState>,
    Json(req): Json<TestAuthentication>,
) -> ApiResult<StatusCode> {
    let expected = format!("{}_secret_test", req.payment_reference);
    let secret_ok: bool = subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), req.client_secret.as_bytes()).into();
    if secret_ok && state.payments.authenticate_for_test(&req.payment_reference, req.approve) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("pending charge"))
    }
}

#[derive(Serialize, ToSchema)]
pub struct OrdersOut {
    pub orders: Vec<HoldOut>,
    pub page: u32,
    pub per_page: u32,
}

/// Your orders (purchased holds), newest first.
#[utoipa::path(get, path = "/orders", tag = "purchases", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = OrdersOut), BadQuery, SignedIn, Unavailable))]
async fn order_history(
    State(state): State<AppState>,
    user: AuthUser,
    Query(p): Query<PageParams>,
) -> ApiResult<axum::Json<OrdersOut>> {
    let (page, per_page, limit, offset) = p.limits()?;
    #[derive(sqlx::FromRow)]
    struct Row {
        hold_id: Uuid,
        event_id: Uuid,
        currency: String,
        items: sqlx::types::Json<boxoffice_actors::Items>,
        amount: i64,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT h.hold_id, h.event_id, e.currency, h.items, h.amount, h.created_at, h.expires_at
         FROM holds h JOIN events e ON e.event_id = h.event_id
         WHERE h.buyer_id = $1 AND h.status = 'purchased'
         ORDER BY h.created_at DESC LIMIT $2 OFFSET $3",
    )
    .bind(user.id)
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.db)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.hold_id).collect();
    #[derive(sqlx::FromRow)]
    struct T {
        hold_id: Uuid,
        ticket_id: Uuid,
        section: String,
        seat_number: Option<String>,
        price: i64,
        status: String,
    }
    let tickets: Vec<T> = sqlx::query_as(
        "SELECT hold_id, ticket_id, section, seat_number, price, status FROM tickets WHERE hold_id = ANY($1) ORDER BY ticket_id",
    )
    .bind(&ids)
    .fetch_all(&state.db)
    .await?;
    let orders = rows
        .into_iter()
        .map(|r| {
            let mut out = HoldOut::new(
                r.event_id,
                r.currency,
                HoldView {
                    id: HoldId(r.hold_id),
                    buyer: BuyerId(user.id),
                    items: r.items.0.into(),
                    amount: r.amount,
                    created_at: boxoffice_actors::UnixMs(r.created_at.timestamp_millis()),
                    expires_at: boxoffice_actors::UnixMs(r.expires_at.timestamp_millis()),
                    status: HoldStatus::Purchased,
                    tickets: vec![],
                },
            );
            out.tickets = tickets
                .iter()
                .filter(|t| t.hold_id == r.hold_id)
                .map(|t| crate::http::schema::TicketOut {
                    ticket_id: t.ticket_id,
                    section: t.section.clone(),
                    seat_number: t.seat_number.clone(),
                    price: t.price,
                    status: match t.status.as_str() {
                        "used" => "used",
                        "cancelled" => "cancelled",
                        _ => "valid",
                    },
                })
                .collect();
            out
        })
        .collect();
    Ok(axum::Json(OrdersOut { orders, page, per_page }))
}
