//! Operational routes: health, readiness, metrics, the OpenAPI document and a
//! browsable API page; plus the fallback 404.

use crate::error::{ApiError, Problem, ProblemCode};
use crate::state::AppState;
use crate::store::db;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(prometheus))
}

/// The OpenAPI document and a page that lists it.
pub fn docs_router(openapi: Arc<utoipa::openapi::OpenApi>) -> axum::Router<AppState> {
    let doc = Arc::clone(&openapi);
    axum::Router::new()
        .route("/openapi.json", get(move || async move { axum::Json(doc.as_ref().clone()) }))
        .route("/docs", get(|| async { Html(DOCS_PAGE) }))
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

const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>boxoffice API</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code{background:#f3f3f3;padding:0 .3em}h2{margin-top:2rem;text-transform:capitalize}
.op{margin:.4rem 0}.m{display:inline-block;width:4.5rem;font-weight:bold}</style></head>
<body><h1>boxoffice API</h1><p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3).
Errors are <code>application/problem+json</code> with a stable <code>code</code>.</p><div id="api">loading…</div>
<script>
fetch('/openapi.json').then(r=>r.json()).then(doc=>{
  const byTag={};
  for(const [path,item] of Object.entries(doc.paths)) for(const [m,op] of Object.entries(item)){
    const t=(op.tags||['other'])[0];(byTag[t]=byTag[t]||[]).push({m,path,op});}
  const el=document.getElementById('api');el.textContent='';
  for(const [tag,ops] of Object.entries(byTag)){
    const h=document.createElement('h2');h.textContent=tag;el.appendChild(h);
    for(const {m,path,op} of ops){const d=document.createElement('div');d.className='op';
      const s=document.createElement('span');s.className='m';s.textContent=m.toUpperCase();
      const c=document.createElement('code');c.textContent=path;
      d.append(s,c,document.createTextNode(' — '+(op.summary||op.description||'')));el.appendChild(d);}}
});
</script></body></html>"#;
