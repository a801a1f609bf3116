//! `ApiError`: every failure the API reports, as an RFC 9457 problem document
//! (`application/problem+json`) with a stable machine-readable `code`.
//!
//! Bad input is always a 4xx that changed nothing. Unexpected errors are logged
//! with their detail and answered with a bare 500 that reveals none of it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use boxoffice_actors::{EventError, InventoryError};
use serde_json::{Map, Value, json};
use std::time::Duration;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    /// Extra members of the problem document (e.g. `opens_at`).
    pub extra: Map<String, Value>,
    pub retry_after: Option<Duration>,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Members every problem document has (RFC 9457 plus our `code`).
const RESERVED_MEMBERS: [&str; 5] = ["type", "title", "status", "detail", "code"];

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), extra: Map::new(), retry_after: None }
    }

    /// Adds a member to the problem document; the standard members cannot be overwritten.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        debug_assert!(!RESERVED_MEMBERS.contains(&key), "problem member {key} is reserved");
        if !RESERVED_MEMBERS.contains(&key) {
            self.extra.insert(key.into(), value.into());
        }
        self
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn unavailable(detail: impl Into<String>, retry_after: Duration) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail);
        e.retry_after = Some(retry_after);
        e
    }

    pub fn too_many(detail: impl Into<String>, retry_after: Duration) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail);
        e.retry_after = Some(retry_after);
        e
    }

    /// An unexpected failure: logged in full, answered without detail.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "something went wrong on our side")
    }

    fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("/problems/{}", self.code),
            "title": self.title(),
            "status": self.status.as_u16(),
            "code": self.code,
            "detail": self.detail,
        });
        if let Some(obj) = body.as_object_mut() {
            obj.extend(self.extra);
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(after) = self.retry_after {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            return ApiError::unavailable("the database is unavailable; retry shortly", Duration::from_secs(1));
        }
        ApiError::internal(e)
    }
}

fn ms_to_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339()).unwrap_or_default()
}

impl From<InventoryError> for ApiError {
    fn from(e: InventoryError) -> Self {
        let detail = e.to_string();
        match e {
            InventoryError::NotOpenYet { opens_at } => {
                let at = ms_to_rfc3339(opens_at.0);
                ApiError::conflict("sale_not_open", format!("sales open at {at}")).with("opens_at", at)
            }
            InventoryError::SalesClosed => ApiError::conflict("sale_closed", detail),
            InventoryError::BadQuantity => ApiError::invalid("bad_quantity", detail),
            InventoryError::UnknownSeat(seat) => ApiError::invalid("unknown_seat", detail).with("seat", seat),
            InventoryError::DuplicateSeat(seat) => ApiError::invalid("duplicate_seat", detail).with("seat", seat),
            InventoryError::UnknownSection(_) => ApiError::invalid("unknown_section", detail),
            InventoryError::WrongSectionKind(..) => ApiError::invalid("wrong_section_kind", detail),
            InventoryError::SeatsTaken(seats) => ApiError::conflict("seats_taken", detail).with("seats", seats),
            InventoryError::SoldOut => ApiError::conflict("sold_out", detail),
            InventoryError::NoAdjacentSeats(_) => ApiError::conflict("no_adjacent_seats", detail),
            InventoryError::LimitExceeded { limit, current } => {
                ApiError::conflict("limit_exceeded", detail).with("limit", limit).with("current", current)
            }
            InventoryError::IdempotencyMismatch => ApiError::invalid("idempotency_key_reused", detail),
            InventoryError::HoldNotFound => ApiError::not_found("hold"),
            InventoryError::HoldNotActive(status) => {
                ApiError::conflict("hold_not_active", detail).with("hold_status", status.as_str())
            }
            InventoryError::SeatsGone => ApiError::conflict("seats_gone", detail),
            InventoryError::Busy => {
                let mut e = ApiError::conflict("busy", detail);
                e.retry_after = Some(Duration::from_secs(1));
                e
            }
            InventoryError::TicketNotFound => ApiError::not_found("ticket"),
        }
    }
}

impl From<EventError> for ApiError {
    fn from(e: EventError) -> Self {
        match e {
            EventError::Inventory(e) => e.into(),
            EventError::Overloaded { retry_after } => {
                metrics::counter!("boxoffice_http_shed_total").increment(1);
                let mut e = ApiError::unavailable("this event is at capacity; retry shortly", retry_after);
                e.code = "overloaded";
                e
            }
            EventError::Unavailable(msg) => ApiError::unavailable(msg, Duration::from_secs(1)),
            EventError::Timeout => {
                let mut e = ApiError::unavailable(
                    "the event did not answer in time; retry with the same Idempotency-Key to learn the outcome",
                    Duration::from_secs(1),
                );
                e.code = "timeout";
                e
            }
            EventError::Stopped => ApiError::unavailable("the event is restarting; retry", Duration::from_secs(1)),
            EventError::EventNotFound => ApiError::not_found("event on sale"),
        }
    }
}
