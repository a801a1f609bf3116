//! What an organizer sees of their own events: the list of them (drafts included),
//! each event's orders (JSON, or CSV for a spreadsheet) and its sales summary.
//!
//! Only the event's organizer and administrators. Everyone else is answered as
//! every organizer-only route answers (`access::owned_event`): a draft is a 404,
//! as if it did not exist; a published, closed or cancelled event — which anyone
//! can see anyway — is a 403. Everything here is read from the database (tickets
//! as the journal wrote them), never from the event's actor.

use crate::auth::{AuthUser, Role};
use crate::error::{ApiResult, Problem};
use crate::http::access::owned_event;
use crate::http::csv;
use crate::http::extract::{Path, Query};
use crate::http::problems::{BadPath, BadQuery, SignedIn, Unavailable};
use crate::http::schema::PageParams;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(my_events)).routes(routes!(event_orders)).routes(routes!(event_summary))
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct OrganizerEvent {
    pub event_id: Uuid,
    pub title: String,
    /// `draft`, `published`, `closed` or `cancelled`.
    pub status: String,
    pub event_date: DateTime<Utc>,
    /// Sales window; unset = open on publishing, closed when the event starts.
    pub opens_at: Option<DateTime<Utc>>,
    pub closes_at: Option<DateTime<Utc>>,
    /// Seats and places in the seat map (0 without one).
    pub capacity: i32,
    /// Tickets issued and not cancelled.
    pub sold: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizerEvents {
    pub events: Vec<OrganizerEvent>,
    pub page: u32,
    pub per_page: u32,
}

/// Your own events, every status (drafts included), newest first.
#[utoipa::path(get, path = "/organizer/events", tag = "organizer", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = OrganizerEvents), BadQuery, SignedIn, Unavailable,
              (status = 403, description = "not an organizer", body = Problem, content_type = "application/problem+json")))]
async fn my_events(
    State(state): State<AppState>,
    user: AuthUser,
    Query(p): Query<PageParams>,
) -> ApiResult<axum::Json<OrganizerEvents>> {
    user.require(&[Role::Organizer])?;
    let (page, per_page, limit, offset) = p.limits()?;
    // A page of at most 100 events; each count reads that event's tickets by index.
    let events = sqlx::query_as(
        "SELECT e.event_id, e.title, e.status, e.event_date, e.opens_at, e.closes_at, e.total_seats AS capacity,
                (SELECT count(*) FROM tickets t WHERE t.event_id = e.event_id AND t.status <> 'cancelled') AS sold,
                e.created_at
         FROM events e WHERE e.organizer_id = $1
         ORDER BY e.created_at DESC, e.event_id DESC LIMIT $2 OFFSET $3",
    )
    .bind(user.id)
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(OrganizerEvents { events, page, per_page }))
}

#[derive(Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrdersFormat {
    Json,
    Csv,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OrdersParams {
    /// Page number, from 1 (default 1).
    #[param(minimum = 1, maximum = 10000)]
    pub page: Option<u32>,
    /// Orders per page (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
    /// `json` (default) or `csv`; without it, `Accept: text/csv` asks for CSV. A CSV
    /// export without `page` and `per_page` has every order of the event.
    #[param(inline)]
    pub format: Option<OrdersFormat>,
}

#[derive(Serialize, ToSchema)]
pub struct OrderTicket {
    pub ticket_id: Uuid,
    pub section: String,
    pub seat_number: Option<String>,
    pub price: i64,
    /// `valid`, `used` or `cancelled`.
    pub status: String,
}

/// A purchased hold: its id is the order id.
#[derive(Serialize, ToSchema)]
pub struct EventOrder {
    pub order_id: Uuid,
    pub buyer_id: Uuid,
    pub buyer_email: String,
    pub buyer_name: String,
    pub tickets: Vec<OrderTicket>,
    /// What was paid: the tickets' prices as sold, cancelled ones included.
    pub total: i64,
    pub currency: String,
    pub purchased_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct EventOrders {
    pub event_id: Uuid,
    pub orders: Vec<EventOrder>,
    pub page: u32,
    pub per_page: u32,
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    order_id: Uuid,
    purchased_at: DateTime<Utc>,
    buyer_id: Uuid,
    buyer_email: String,
    buyer_name: String,
    ticket_id: Uuid,
    section: String,
    seat_number: Option<String>,
    price: i64,
    status: String,
}

/// The CSV columns, one line per ticket.
const CSV_HEADER: [&str; 12] = [
    "order_id",
    "purchased_at",
    "buyer_id",
    "buyer_email",
    "buyer_name",
    "ticket_id",
    "section",
    "seat_number",
    "price",
    "ticket_status",
    "order_total",
    "currency",
];

/// The event's orders, newest first, as JSON or as CSV (one line per ticket): CSV
/// with `format=csv` or a standard `Accept: text/csv` header, every order unless
/// `page` or `per_page` is given. Its organizer or an admin.
#[utoipa::path(get, path = "/events/{event_id}/orders", tag = "organizer", security(("bearer" = [])),
    params(("event_id" = Uuid, Path), OrdersParams),
    responses((status = 200, description = "JSON, or CSV (`Content-Disposition: attachment`): a header line, then one \
                line per ticket; cells that would start a formula are prefixed with `'`",
               content((EventOrders = "application/json"), (String = "text/csv; charset=utf-8"))),
              BadPath, BadQuery, SignedIn, Unavailable,
              (status = 403, description = "another's published event", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "no such event, or another's draft", body = Problem,
               content_type = "application/problem+json")))]
async fn event_orders(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
    Query(p): Query<OrdersParams>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (page, per_page, limit, offset) = PageParams { page: p.page, per_page: p.per_page }.limits()?;
    let event = owned_event(&state, &user, event_id).await?;
    let format = p.format.unwrap_or_else(|| {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        if accept.split(',').any(|m| m.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv"))) {
            OrdersFormat::Csv
        } else {
            OrdersFormat::Json
        }
    });
    // A CSV export without page or per_page is the whole event (LIMIT NULL is no limit).
    let whole = format == OrdersFormat::Csv && p.page.is_none() && p.per_page.is_none();
    let (limit, offset) = if whole { (None, 0) } else { (Some(limit), offset) };
    // The page of orders (by index on tickets.event_id), then their tickets and buyers.
    let rows: Vec<OrderRow> = sqlx::query_as(
        "WITH page AS (
             SELECT hold_id, min(purchase_date) AS purchased_at FROM tickets WHERE event_id = $1
             GROUP BY hold_id ORDER BY purchased_at DESC, hold_id DESC LIMIT $2 OFFSET $3)
         SELECT p.hold_id AS order_id, p.purchased_at, t.purchaser_id AS buyer_id, u.email AS buyer_email,
                u.name AS buyer_name, t.ticket_id, t.section, t.seat_number, t.price, t.status
         FROM page p JOIN tickets t ON t.hold_id = p.hold_id JOIN users u ON u.user_id = t.purchaser_id
         ORDER BY p.purchased_at DESC, p.hold_id DESC, t.section, t.seat_number, t.ticket_id",
    )
    .bind(event_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.db)
    .await?;
    let orders = group_orders(rows, &event.currency);
    match format {
        OrdersFormat::Json => Ok(axum::Json(EventOrders { event_id, orders, page, per_page }).into_response()),
        OrdersFormat::Csv => Ok(csv_response(event_id, &orders)),
    }
}

/// Rows (ordered by order, then ticket) into orders.
fn group_orders(rows: Vec<OrderRow>, currency: &str) -> Vec<EventOrder> {
    let mut orders: Vec<EventOrder> = Vec::new();
    for r in rows {
        let ticket = OrderTicket {
            ticket_id: r.ticket_id,
            section: r.section,
            seat_number: r.seat_number,
            price: r.price,
            status: r.status,
        };
        match orders.last_mut() {
            Some(o) if o.order_id == r.order_id => {
                o.total += ticket.price;
                o.tickets.push(ticket);
            }
            _ => orders.push(EventOrder {
                order_id: r.order_id,
                buyer_id: r.buyer_id,
                buyer_email: r.buyer_email,
                buyer_name: r.buyer_name,
                total: ticket.price,
                tickets: vec![ticket],
                currency: currency.to_owned(),
                purchased_at: r.purchased_at,
            }),
        }
    }
    orders
}

fn csv_response(event_id: Uuid, orders: &[EventOrder]) -> Response {
    let mut out = String::new();
    csv::write_row(&mut out, CSV_HEADER);
    for o in orders {
        let (order_id, buyer_id, total) = (o.order_id.to_string(), o.buyer_id.to_string(), o.total.to_string());
        let purchased_at = o.purchased_at.to_rfc3339_opts(SecondsFormat::Micros, true);
        for t in &o.tickets {
            let (ticket_id, price) = (t.ticket_id.to_string(), t.price.to_string());
            csv::write_row(
                &mut out,
                [
                    order_id.as_str(),
                    &purchased_at,
                    &buyer_id,
                    &o.buyer_email,
                    &o.buyer_name,
                    &ticket_id,
                    &t.section,
                    t.seat_number.as_deref().unwrap_or(""),
                    &price,
                    &t.status,
                    &total,
                    &o.currency,
                ],
            );
        }
    }
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"orders-{event_id}.csv\""))
        .expect("a uuid is a valid header value");
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8")),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response()
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct SectionSales {
    pub section: String,
    /// Tickets issued and not cancelled.
    pub sold: i64,
    /// Their prices.
    pub revenue: i64,
}

#[derive(Serialize, ToSchema)]
pub struct SalesSummary {
    pub event_id: Uuid,
    pub currency: String,
    /// Tickets issued and not cancelled (`used` ones included).
    pub tickets_sold: i64,
    pub tickets_cancelled: i64,
    /// Tickets checked in.
    pub tickets_used: i64,
    /// Prices of the tickets kept (sold and not cancelled).
    pub revenue: i64,
    /// Refunds the provider confirmed.
    pub refunded: i64,
    /// Refunds recorded and not yet confirmed (retried until they are).
    pub refunds_pending: i64,
    /// Purchased holds.
    pub orders: i64,
    /// Per section, by name.
    pub sections: Vec<SectionSales>,
}

/// The event's sales so far: tickets sold, cancelled and checked in, revenue,
/// refunds, orders, and sales per section. Its organizer or an admin.
#[utoipa::path(get, path = "/events/{event_id}/summary", tag = "organizer", security(("bearer" = [])),
    params(("event_id" = Uuid, Path)),
    responses((status = 200, body = SalesSummary), BadPath, SignedIn, Unavailable,
              (status = 403, description = "another's published event", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "no such event, or another's draft", body = Problem,
               content_type = "application/problem+json")))]
async fn event_summary(
    State(state): State<AppState>,
    user: AuthUser,
    Path(event_id): Path<Uuid>,
) -> ApiResult<axum::Json<SalesSummary>> {
    let event = owned_event(&state, &user, event_id).await?;
    #[derive(sqlx::FromRow)]
    struct Totals {
        cancelled: i64,
        used: i64,
        orders: i64,
        refunded: i64,
        refunds_pending: i64,
    }
    let totals: Totals = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
                count(*) FILTER (WHERE status = 'used') AS used,
                count(DISTINCT hold_id) AS orders,
                (SELECT COALESCE(sum(amount) FILTER (WHERE status = 'succeeded'), 0)::int8 FROM refunds WHERE event_id = $1)
                    AS refunded,
                (SELECT COALESCE(sum(amount) FILTER (WHERE status <> 'succeeded'), 0)::int8 FROM refunds WHERE event_id = $1)
                    AS refunds_pending
         FROM tickets WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_one(&state.db)
    .await?;
    let sections: Vec<SectionSales> = sqlx::query_as(
        "SELECT section, count(*) AS sold, COALESCE(sum(price), 0)::int8 AS revenue
         FROM tickets WHERE event_id = $1 AND status <> 'cancelled' GROUP BY section ORDER BY section",
    )
    .bind(event_id)
    .fetch_all(&state.db)
    .await?;
    Ok(axum::Json(SalesSummary {
        event_id,
        currency: event.currency,
        tickets_sold: sections.iter().map(|s| s.sold).sum(),
        tickets_cancelled: totals.cancelled,
        tickets_used: totals.used,
        revenue: sections.iter().map(|s| s.revenue).sum(),
        refunded: totals.refunded,
        refunds_pending: totals.refunds_pending,
        orders: totals.orders,
        sections,
    }))
}
