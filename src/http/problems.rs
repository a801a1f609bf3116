//! The error answers routes declare in their OpenAPI operations, as reusable sets
//! for `#[utoipa::path(responses(...))]`: each set is the problem documents one
//! cause of failure gives, wherever it applies —
//!
//! - [`BadPath`]: a path parameter that does not parse (400) or names nothing the
//!   caller may see (404);
//! - [`BadQuery`]: a query string that does not parse or is out of bounds (400);
//! - [`JsonBody`]: a JSON body that is malformed (400), too large (413), not
//!   `application/json` (415) or of the wrong shape (422); [`LooseJsonBody`] the
//!   same without 415, for an optional body read whatever its `Content-Type`;
//! - [`SignedIn`]: a bearer token that is missing, malformed or expired (401);
//! - [`Forbidden`] (403), [`NotFound`] (404), [`Conflict`] (409);
//! - [`RateLimited`] (429) and [`Unavailable`] (503), both with `Retry-After`.
//!
//! A route lists the sets that apply to it and may follow them with its own
//! tuple for a status to describe it more precisely (the last one listed wins).
//! A unit test in `http` holds every operation to the sets its parameters, body
//! and security imply.

use std::collections::BTreeMap;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Type};

/// The content type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One problem-document response.
fn problem(status: u16, description: &str) -> RefOr<utoipa::openapi::Response> {
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build());
    if status == 429 || status == 503 {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(utoipa::openapi::ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1))))
                .description(Some("seconds to wait before retrying"))
                .build(),
        );
    }
    response.build().into()
}

/// Declares a response set: a unit struct whose `IntoResponses` is its statuses.
macro_rules! problem_set {
    ($($(#[$doc:meta])* $name:ident { $($status:literal => $description:expr),+ $(,)? })*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                BTreeMap::from([$(($status.to_string(), problem($status, $description)),)+])
            }
        }
    )*};
}

/// 400, whichever part of the request could not be read: one description, so that
/// sets that share the status agree on it.
const BAD_REQUEST: &str = "the request could not be read: a malformed path parameter (`invalid_path`), \
     query string (`invalid_query`), JSON body (`malformed_json`, `bad_body`) or header (see `code`)";

problem_set! {
    /// Routes with a path parameter: it does not parse, or names nothing the caller may see.
    BadPath {
        400 => BAD_REQUEST,
        404 => "no such resource, or not yours (`not_found`)",
    }
    /// Routes with query parameters.
    BadQuery { 400 => BAD_REQUEST }
    /// Routes with a JSON request body.
    JsonBody {
        400 => BAD_REQUEST,
        413 => "the request body is over the size limit (`payload_too_large`)",
        415 => "the body is not `Content-Type: application/json` (`unsupported_media_type`)",
        422 => "a body of the wrong shape (`invalid_body`) or a value out of bounds (see `code`)",
    }
    /// Routes that read an optional JSON body whatever its `Content-Type` (no 415).
    LooseJsonBody {
        400 => BAD_REQUEST,
        413 => "the request body is over the size limit (`payload_too_large`)",
        422 => "a body of the wrong shape (`invalid_body`) or a value out of bounds (see `code`)",
    }
    /// Routes that need a bearer token.
    SignedIn {
        401 => "no access token, or one that is malformed or expired (`missing_token`, `invalid_token`, `token_expired`)",
    }
    /// Routes for some roles or owners only.
    Forbidden { 403 => "the caller may not do this (see `code`)" }
    /// Routes whose object is found some other way than by a path parameter.
    NotFound { 404 => "no such resource, or not yours (`not_found`)" }
    /// Routes whose change the object's state may refuse.
    Conflict { 409 => "the object's state does not allow it (see `code`)" }
    /// Routes with a rate limit.
    RateLimited {
        429 => "too many attempts (`rate_limited`, `too_many_payment_attempts`); retry after `Retry-After`",
    }
    /// Routes that read the database or an event's actor (and every route's request timeout).
    Unavailable {
        503 => "a dependency is down, the event is at capacity or restarting, or no answer in time \
                (`unavailable`, `overloaded`, `timeout`); retry after `Retry-After`",
    }
}
