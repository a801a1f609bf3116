//! Middleware every route runs through: per-route metrics, the request timeout
//! and problem documents for errors that did not come from a handler.

use crate::error::{ApiError, ProblemCode};
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::time::{Duration, Instant};

/// Error answers that did not come from our handlers — the body limit's 413, the
/// router's 405, axum's own rejections of raw `Bytes` bodies — become problem
/// documents like every other error.
pub(super) async fn bare_errors_as_problems(response: Response) -> Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut problem = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(status, ProblemCode::PayloadTooLarge, "the request body is too large")
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::new(status, ProblemCode::MethodNotAllowed, "this route does not take that method")
        }
        other => ApiError::new(other, ProblemCode::BadRequest, other.canonical_reason().unwrap_or("bad request")),
    }
    .into_response();
    if let Some(allow) = allow {
        problem.headers_mut().insert(header::ALLOW, allow);
    }
    problem
}

/// Per-route latency and status counts.
pub(super) async fn record_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("boxoffice_http_request_duration_seconds", "route" => route.clone(), "method" => method.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("boxoffice_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

/// Cuts a request off after REQUEST_TIMEOUT_MS with a problem document (503 `timeout`,
/// Retry-After), like every other error.
pub(super) async fn request_timeout(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => axum::response::IntoResponse::into_response(ApiError::unavailable_as(
            ProblemCode::Timeout,
            "the request took too long; retry (with the same Idempotency-Key) to learn the outcome",
            Duration::from_secs(1),
        )),
    }
}
