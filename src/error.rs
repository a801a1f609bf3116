//! `ApiError`: every failure the API reports, as an RFC 9457 problem document
//! (`application/problem+json`) with a stable machine-readable [`ProblemCode`].
//!
//! Bad input is always a 4xx that changed nothing. Unexpected errors are logged
//! with their detail and answered with a bare 500 that reveals none of it.
//!
//! This is the whole service's error vocabulary (HTTP routes, auth, money), so it
//! lives at the crate root, below everything that reports errors.

use crate::store::db;
use crate::store::loader::HoldsError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use boxoffice_actors::{EventError, InventoryError};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::time::Duration;
use utoipa::ToSchema;

/// Declares [`ProblemCode`] and its wire names from one list.
macro_rules! problem_codes {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// The stable, machine-readable `code` of a problem document. Clients branch
        /// on it; the `detail` is for people. Listed in full in the OpenAPI document.
        /// (Wire names are the variants in snake_case; a unit test holds `as_str` to it.)
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ProblemCode {
            $($(#[$doc])* $variant,)*
        }

        impl ProblemCode {
            /// Every code, in the order declared.
            pub const ALL: &[ProblemCode] = &[$(ProblemCode::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ProblemCode::$variant => $name,)*
                }
            }
        }
    };
}

problem_codes! {
    /// the ticket was already checked in (`first_checked_in_at`, `checked_in_by` say when and by whom)
    AlreadyUsed = "already_used",
    /// the request body could not be read
    BadBody = "bad_body",
    /// a quantity outside what a hold may take
    BadQuantity = "bad_quantity",
    /// a request the server could not understand
    BadRequest = "bad_request",
    /// a webhook whose signature does not verify
    BadSignature = "bad_signature",
    /// the hold has a change in flight; retry after `Retry-After`
    Busy = "busy",
    /// the same seat named twice in one selection
    DuplicateSeat = "duplicate_seat",
    /// an account with that email exists
    EmailTaken = "email_taken",
    /// the event is cancelled
    EventCancelled = "event_cancelled",
    /// the event has holds or tickets, so it cannot be changed that way
    EventHasSales = "event_has_sales",
    /// the event has started
    EventStarted = "event_started",
    /// the caller may not do this
    Forbidden = "forbidden",
    /// the hold is purchased, expired or released
    HoldNotActive = "hold_not_active",
    /// an `Idempotency-Key` reused with a different request
    IdempotencyKeyReused = "idempotency_key_reused",
    /// an unexpected failure on the server (logged, not detailed)
    Internal = "internal",
    /// a JSON body of the wrong shape
    InvalidBody = "invalid_body",
    /// wrong email or password
    InvalidCredentials = "invalid_credentials",
    /// not an ISO 4217 currency code
    InvalidCurrency = "invalid_currency",
    /// not an email address
    InvalidEmail = "invalid_email",
    /// a field out of bounds (`field` names it)
    InvalidField = "invalid_field",
    /// an `Idempotency-Key` header that is not 1-255 visible ASCII characters
    InvalidIdempotencyKey = "invalid_idempotency_key",
    /// a name that is empty or too long
    InvalidName = "invalid_name",
    /// a path parameter that does not parse
    InvalidPath = "invalid_path",
    /// a ticket code that is forged, altered or for another event
    InvalidQr = "invalid_qr",
    /// a signed ticket link whose signature does not verify (altered, or for another ticket)
    InvalidLink = "invalid_link",
    /// a query string out of bounds
    InvalidQuery = "invalid_query",
    /// a refresh token that is unknown, expired or revoked
    InvalidRefreshToken = "invalid_refresh_token",
    /// a sales window that contradicts itself
    InvalidSalesWindow = "invalid_sales_window",
    /// a seat map that does not validate
    InvalidSeatMap = "invalid_seat_map",
    /// a hold selection that is neither seats nor a quantity
    InvalidSelection = "invalid_selection",
    /// an access token that does not verify
    InvalidToken = "invalid_token",
    /// an event status change that is not allowed
    InvalidTransition = "invalid_transition",
    /// a signed ticket link past its expiry; the owner signs in to see the ticket
    LinkExpired = "link_expired",
    /// over the per-buyer ticket limit (`limit`, `current`)
    LimitExceeded = "limit_exceeded",
    /// a body that is not JSON
    MalformedJson = "malformed_json",
    /// the route does not take that method
    MethodNotAllowed = "method_not_allowed",
    /// no refresh token in cookie or body
    MissingRefreshToken = "missing_refresh_token",
    /// no `Authorization: Bearer` token
    MissingToken = "missing_token",
    /// no row has that many seats side by side
    NoAdjacentSeats = "no_adjacent_seats",
    /// the event has no seat map yet
    NoSeatMap = "no_seat_map",
    /// the event has no waiting room to join
    NoWaitingRoom = "no_waiting_room",
    /// the event's waiting room is active and the caller has no valid admission for it
    /// (`queue_state`, `position`, `ahead` say where they stand)
    NotAdmitted = "not_admitted",
    /// no such resource (or not yours)
    NotFound = "not_found",
    /// the user is not an organizer (only organizers are approved)
    NotOrganizer = "not_organizer",
    /// the caller is not staff of this event
    NotStaff = "not_staff",
    /// the organizer's account waits for an administrator's approval before it may publish
    OrganizerNotApproved = "organizer_not_approved",
    /// signing up as an organizer is closed; an administrator grants the role
    OrganizerSignupClosed = "organizer_signup_closed",
    /// the event is at capacity; retry after `Retry-After`
    Overloaded = "overloaded",
    /// the body is over the size limit
    PayloadTooLarge = "payload_too_large",
    /// the payment provider declined (`decline_code`)
    PaymentDeclined = "payment_declined",
    /// a payment method the provider does not accept
    PaymentInvalid = "payment_invalid",
    /// the payment provider is unreachable; nothing was charged or issued
    PaymentUnavailable = "payment_unavailable",
    /// too many attempts; retry after `Retry-After`
    RateLimited = "rate_limited",
    /// a rotated refresh token presented again: its whole family is revoked
    RefreshTokenReused = "refresh_token_reused",
    /// the sales window has closed
    SaleClosed = "sale_closed",
    /// the sales window has not opened (`opens_at`)
    SaleNotOpen = "sale_not_open",
    /// a seat map change that would remove held or sold seats
    SeatMapConflict = "seat_map_conflict",
    /// the hold lapsed and its seats were taken (any payment was refunded)
    SeatsGone = "seats_gone",
    /// some seats are held or sold (`seats`)
    SeatsTaken = "seats_taken",
    /// no places left
    SoldOut = "sold_out",
    /// the ticket is cancelled
    TicketCancelled = "ticket_cancelled",
    /// the ticket was used, so it cannot be cancelled
    TicketUsed = "ticket_used",
    /// no answer in time; retry with the same `Idempotency-Key` to learn the outcome
    Timeout = "timeout",
    /// the access token has expired; refresh it
    TokenExpired = "token_expired",
    /// too many failed payment attempts by this buyer or on this hold (card testing); see Retry-After
    TooManyPaymentAttempts = "too_many_payment_attempts",
    /// a dependency is down; retry after `Retry-After`
    Unavailable = "unavailable",
    /// no such seat at this event (`seat`)
    UnknownSeat = "unknown_seat",
    /// no such section at this event
    UnknownSection = "unknown_section",
    /// a body without `Content-Type: application/json`
    UnsupportedMediaType = "unsupported_media_type",
    /// a password too short or too long
    WeakPassword = "weak_password",
    /// a genuine ticket code scanned at another event's door (`ticket_event_id`)
    WrongEvent = "wrong_event",
    /// seats asked of a general-admission section, or the reverse
    WrongSectionKind = "wrong_section_kind",
}

impl std::fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer (RFC 9457), as the OpenAPI document shows it.
/// Some codes add members of their own (`opens_at`, `seats`, `limit`, …).
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// `/problems/{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    pub status: u16,
    pub code: ProblemCode,
    /// What went wrong, for people.
    pub detail: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ProblemCode,
    pub detail: String,
    /// Extra members of the problem document (e.g. `opens_at`).
    pub extra: Map<String, Value>,
    pub retry_after: Option<Duration>,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Members every problem document has (RFC 9457 plus our `code`).
const RESERVED_MEMBERS: [&str; 5] = ["type", "title", "status", "detail", "code"];

impl ApiError {
    pub fn new(status: StatusCode, code: ProblemCode, detail: impl Into<String>) -> Self {
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

    /// Answers with `Retry-After`.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn bad_request(code: ProblemCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn invalid(code: ProblemCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn unauthorized(code: ProblemCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ProblemCode::Forbidden, detail)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, ProblemCode::NotFound, format!("no such {what}"))
    }

    pub fn conflict(code: ProblemCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// 503 `unavailable` with `Retry-After`.
    pub fn unavailable(detail: impl Into<String>, retry_after: Duration) -> Self {
        Self::unavailable_as(ProblemCode::Unavailable, detail, retry_after)
    }

    /// 503 with a more specific code (`overloaded`, `timeout`, …) and `Retry-After`.
    pub fn unavailable_as(code: ProblemCode, detail: impl Into<String>, retry_after: Duration) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail).retry_after(retry_after)
    }

    pub fn too_many(detail: impl Into<String>, retry_after: Duration) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, ProblemCode::RateLimited, detail).retry_after(retry_after)
    }

    /// An unexpected failure: logged in full, answered without detail.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ProblemCode::Internal, "something went wrong on our side")
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
        if db::is_unavailable(&e) {
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
                ApiError::conflict(ProblemCode::SaleNotOpen, format!("sales open at {at}")).with("opens_at", at)
            }
            InventoryError::SalesClosed => ApiError::conflict(ProblemCode::SaleClosed, detail),
            InventoryError::BadQuantity => ApiError::invalid(ProblemCode::BadQuantity, detail),
            InventoryError::UnknownSeat(seat) => ApiError::invalid(ProblemCode::UnknownSeat, detail).with("seat", seat),
            InventoryError::DuplicateSeat(seat) => {
                ApiError::invalid(ProblemCode::DuplicateSeat, detail).with("seat", seat)
            }
            InventoryError::UnknownSection(_) => ApiError::invalid(ProblemCode::UnknownSection, detail),
            InventoryError::WrongSectionKind(..) => ApiError::invalid(ProblemCode::WrongSectionKind, detail),
            InventoryError::SeatsTaken(seats) => {
                ApiError::conflict(ProblemCode::SeatsTaken, detail).with("seats", seats)
            }
            InventoryError::SoldOut => ApiError::conflict(ProblemCode::SoldOut, detail),
            InventoryError::NoAdjacentSeats(_) => ApiError::conflict(ProblemCode::NoAdjacentSeats, detail),
            InventoryError::LimitExceeded { limit, current } => {
                ApiError::conflict(ProblemCode::LimitExceeded, detail).with("limit", limit).with("current", current)
            }
            InventoryError::IdempotencyMismatch => ApiError::invalid(ProblemCode::IdempotencyKeyReused, detail),
            InventoryError::HoldNotFound => ApiError::not_found("hold"),
            InventoryError::HoldNotActive(status) => {
                ApiError::conflict(ProblemCode::HoldNotActive, detail).with("hold_status", status.as_str())
            }
            InventoryError::SeatsGone => ApiError::conflict(ProblemCode::SeatsGone, detail),
            InventoryError::Busy => ApiError::conflict(ProblemCode::Busy, detail).retry_after(Duration::from_secs(1)),
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
                ApiError::unavailable_as(
                    ProblemCode::Overloaded,
                    "this event is at capacity; retry shortly",
                    retry_after,
                )
            }
            EventError::Unavailable(msg) => ApiError::unavailable(msg, Duration::from_secs(1)),
            EventError::Timeout => ApiError::unavailable_as(
                ProblemCode::Timeout,
                "the event did not answer in time; retry with the same Idempotency-Key to learn the outcome",
                Duration::from_secs(1),
            ),
            EventError::Stopped => ApiError::unavailable("the event is restarting; retry", Duration::from_secs(1)),
            EventError::EventNotFound => ApiError::not_found("event on sale"),
            // Routing normally resolves this by sending the request to the owner;
            // it reaches a client only while ownership moves.
            EventError::NotOwner(_) => {
                ApiError::unavailable("the event is moving to another node; retry", Duration::from_millis(200))
            }
        }
    }
}

impl From<HoldsError> for ApiError {
    fn from(e: HoldsError) -> Self {
        match e {
            HoldsError::Db(e) => e.into(),
            HoldsError::Corrupt(msg) => ApiError::internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_are_unique_snake_case_and_match_serde() {
        let mut seen = std::collections::HashSet::new();
        for code in ProblemCode::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "{name} listed twice");
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{name}");
            assert_eq!(serde_json::to_value(code).unwrap(), json!(name));
        }
    }
}
