//! Operational routes: health, readiness, metrics and the OpenAPI document;
//! plus the fallback 404.

use crate::error::{ApiError, Problem, ProblemCode};
use crate::state::AppState;
use crate::store::db;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(prometheus))
}

/// The OpenAPI document (`/docs`, the page that browses it, is part of the web app).
pub fn docs_router(openapi: Arc<utoipa::openapi::OpenApi>) -> axum::Router<AppState> {
    let doc = Arc::clone(&openapi);
    axum::Router::new().route("/openapi.json", get(move || async move { axum::Json(doc.as_ref().clone()) }))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, description = "alive")))]
async fn healthz() -> &'static str {
    "ok"
}

/// The database is reachable and migrated.
#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, description = "ready"),
              (status = 503, description = "not ready: the database is unreachable or not migrated (`unavailable`)", body = Problem, content_type = "application/problem+json")))]
async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    match db::migrations_applied(&state.db).await {
        Ok(true) => Ok("ready"),
        Ok(false) => Err(ApiError::unavailable("migrations are not applied", Duration::from_secs(5))),
        Err(e) => Err(ApiError::unavailable(
            format!("database unreachable: {}", e.to_string().lines().next().unwrap_or("")),
            Duration::from_secs(1),
        )),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, description = "Prometheus text format")))]
async fn prometheus(State(state): State<AppState>) -> Response {
    metrics::gauge!("boxoffice_event_actors").set(state.registry.len() as f64);
    let body = state.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ProblemCode::NotFound, "no such route; see /docs")
}
