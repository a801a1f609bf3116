//! Extractors whose rejections are problem documents, so malformed JSON, a bad
//! id in the path or a bad query string is a clear 4xx, never axum's plain text;
//! the caller from its access token (`AuthUser`, `MaybeAuthUser`); the
//! `Idempotency-Key` header; the client's address (`ClientIp`).

use crate::auth::{AuthUser, MaybeAuthUser};
use crate::config::TrustedProxies;
use crate::error::{ApiError, ApiResult, ProblemCode};
use crate::state::AppState;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use boxoffice_actors::IdempotencyKey;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};

/// JSON body.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<Value>::from_request(req, state).await {
            Ok(axum::Json(value)) => from_json_value(value).map(Json),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `T` from a parsed body. JSON has one kind of number: `50.0` is the integer 50 to
/// JSON Schema (and so to the OpenAPI document), so integral numbers written with a
/// fraction are read as integers first; serde alone would refuse them for integer fields.
fn from_json_value<T: DeserializeOwned>(mut value: Value) -> ApiResult<T> {
    // Every body is an object (serde would also read a struct from an array).
    if value.is_array() {
        return Err(ApiError::invalid(ProblemCode::InvalidBody, "the body is a JSON object, not an array"));
    }
    integral_numbers_as_integers(&mut value);
    serde_json::from_value(value).map_err(|e| {
        ApiError::invalid(
            ProblemCode::InvalidBody,
            format!("Failed to deserialize the JSON body into the target type: {e}"),
        )
    })
}

fn integral_numbers_as_integers(value: &mut Value) {
    /// 2^63: integral floats below it in magnitude are exact `i64`s.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < LIMIT) {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(members) => members.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

/// A JSON body that may be left out entirely (no body, no `Content-Type`), or be
/// `null`: `None`. A body that is sent is read like [`Json`], with the same errors.
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let empty = !req.headers().contains_key(axum::http::header::CONTENT_TYPE)
            && req
                .headers()
                .get(axum::http::header::CONTENT_LENGTH)
                .is_none_or(|v| v.to_str().ok().and_then(|n| n.parse::<u64>().ok()) == Some(0));
        if empty {
            return Ok(OptionalJson(None));
        }
        Json::<Option<T>>::from_request(req, state).await.map(|Json(v)| OptionalJson(v))
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let detail = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => ApiError::invalid(ProblemCode::InvalidBody, detail),
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request(ProblemCode::MalformedJson, detail),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemCode::UnsupportedMediaType,
            "send Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, ProblemCode::PayloadTooLarge, "the request body is too large")
        }
        other => ApiError::bad_request(ProblemCode::BadBody, other.body_text()),
    }
}

/// Path parameters.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::bad_request(ProblemCode::InvalidPath, rejection.body_text())
}

/// Query string.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // PostgreSQL text cannot hold NUL: refuse it here rather than fail in SQL.
        if parts.uri.query().is_some_and(|q| q.as_bytes().windows(3).any(|w| w.eq_ignore_ascii_case(b"%00"))) {
            return Err(ApiError::bad_request(ProblemCode::InvalidQuery, "a query string cannot contain NUL (%00)"));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request(ProblemCode::InvalidQuery, rejection.body_text())
}

/// An optional JSON body: none at all, or `null`, means `None`. Whitespace alone is
/// not a JSON document, so it is refused like any other malformed body.
pub fn optional_json<T: DeserializeOwned>(body: &[u8]) -> Result<Option<T>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(ProblemCode::MalformedJson, e.to_string()))?;
    from_json_value(value)
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized(ProblemCode::MissingToken, "send Authorization: Bearer <access token>")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized(ProblemCode::InvalidToken, "the Authorization header is not a Bearer token")
            })?;
        let (id, role) = state.tokens.authenticate(token)?;
        Ok(AuthUser { id, role })
    }
}

impl FromRequestParts<AppState> for MaybeAuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.headers.contains_key(AUTHORIZATION) {
            AuthUser::from_request_parts(parts, state).await.map(|u| MaybeAuthUser(Some(u)))
        } else {
            Ok(MaybeAuthUser(None))
        }
    }
}

/// The `Idempotency-Key` header, if sent.
pub fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<IdempotencyKey>> {
    let Some(raw) = headers.get("idempotency-key") else { return Ok(None) };
    let raw = raw
        .to_str()
        .map_err(|_| ApiError::bad_request(ProblemCode::InvalidIdempotencyKey, "Idempotency-Key must be ASCII"))?;
    IdempotencyKey::parse(raw)
        .map(Some)
        .map_err(|e| ApiError::bad_request(ProblemCode::InvalidIdempotencyKey, e.to_string()))
}

/// The client's address, as rate limits count it: the TCP peer, unless the peer is
/// one of `TRUSTED_PROXIES`; then the right-most `X-Forwarded-For` address that is
/// not itself a trusted proxy (everything left of it was written by the client and
/// proves nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip())
            .ok_or_else(|| ApiError::internal("no peer address on the request"))?;
        Ok(ClientIp(client_ip(peer, &parts.headers, &state.settings.trusted_proxies)))
    }
}

/// See [`ClientIp`]. Several `X-Forwarded-For` headers read as one list, in order. An
/// entry that is not an address ends the walk: the trusted hop that passed it on is
/// the client then.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let mut client = peer.to_canonical();
    if !trusted.contains(client) {
        return client;
    }
    let values: Vec<&[u8]> = headers.get_all("x-forwarded-for").iter().map(|v| v.as_bytes()).collect();
    for hop in values.iter().rev().flat_map(|v| v.rsplit(|b| *b == b',')) {
        let Some(ip) = std::str::from_utf8(hop).ok().and_then(forwarded_address) else { break };
        client = ip;
        if !trusted.contains(ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, perhaps with a port (`1.2.3.4:5`, `[::1]:5`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_bytes(v).unwrap());
        }
        headers
    }

    #[test]
    fn integral_numbers_read_as_integers_and_null_as_no_body() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Body {
            n: u32,
            prices: Vec<i64>,
        }
        let body = serde_json::json!({"n": 50.0, "prices": [-3.0, 7]});
        assert_eq!(from_json_value::<Body>(body).unwrap(), Body { n: 50, prices: vec![-3, 7] });
        let fraction = serde_json::json!({"n": 50.5, "prices": []});
        assert_eq!(from_json_value::<Body>(fraction).unwrap_err().code, ProblemCode::InvalidBody);
        let huge = serde_json::json!({"n": 1e300, "prices": []});
        assert_eq!(from_json_value::<Body>(huge).unwrap_err().code, ProblemCode::InvalidBody);
        assert!(optional_json::<Body>(b" null ").unwrap().is_none());
        assert_eq!(optional_json::<Body>(b"[50, []]").unwrap_err().code, ProblemCode::InvalidBody);
        assert!(optional_json::<Body>(b"").unwrap().is_none());
        assert_eq!(optional_json::<Body>(b"  ").unwrap_err().code, ProblemCode::MalformedJson);
        assert_eq!(optional_json::<Body>(b"{").unwrap_err().code, ProblemCode::MalformedJson);
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = TrustedProxies::default();
        let headers = forwarded(&[b"203.0.113.9"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &headers, &none), ip("127.0.0.1"));
        let other = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(client_ip(ip("192.0.2.1"), &headers, &other), ip("192.0.2.1"));
    }

    #[test]
    fn a_trusted_peer_names_the_right_most_untrusted_address() {
        let trusted = TrustedProxies::parse("127.0.0.1,10.0.0.0/8").unwrap();
        let peer = ip("127.0.0.1");
        let pick = |values: &[&[u8]]| client_ip(peer, &forwarded(values), &trusted);
        assert_eq!(pick(&[b"203.0.113.9"]), ip("203.0.113.9"));
        // Spoofed entries on the left do not matter; trusted hops on the right are skipped.
        assert_eq!(pick(&[b"1.1.1.1, 203.0.113.9"]), ip("203.0.113.9"));
        assert_eq!(pick(&[b"1.1.1.1, 203.0.113.9, 10.1.2.3"]), ip("203.0.113.9"));
        assert_eq!(pick(&[b"1.1.1.1", b"203.0.113.9,10.1.2.3"]), ip("203.0.113.9"));
        // Ports, brackets and IPv6.
        assert_eq!(pick(&[b"203.0.113.9:4711"]), ip("203.0.113.9"));
        assert_eq!(pick(&[b"[2001:db8::1]:443"]), ip("2001:db8::1"));
        assert_eq!(pick(&[b"[2001:db8::1]"]), ip("2001:db8::1"));
        assert_eq!(pick(&[b"::ffff:203.0.113.9"]), ip("203.0.113.9"));
        // No header: the peer. Only trusted hops: the left-most of them.
        assert_eq!(pick(&[]), peer);
        assert_eq!(pick(&[b"10.0.0.5, 10.0.0.6"]), ip("10.0.0.5"));
        // Garbage ends the walk at the trusted hop that passed it on.
        assert_eq!(pick(&[b"203.0.113.9, unknown"]), peer);
        assert_eq!(pick(&[b"203.0.113.9, garbage, 10.0.0.7"]), ip("10.0.0.7"));
        assert_eq!(pick(&[b"\xff\xfe, 203.0.113.9"]), ip("203.0.113.9"));
        assert_eq!(pick(&[b""]), peer);
        // An IPv4-mapped peer is matched as IPv4.
        assert_eq!(client_ip(ip("::ffff:127.0.0.1"), &forwarded(&[b"203.0.113.9"]), &trusted), ip("203.0.113.9"));
    }
}
