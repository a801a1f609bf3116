//! The service's own routes: health, readiness, metrics, the OpenAPI document and docs, unknown routes.

use boxoffice_testkit::{assert_problem, spawn_app};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz", None).await.text().await.unwrap(), "ok");
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains("boxoffice_http_requests_total"), "{metrics}");

    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/auth/me",
        "/events/create",
        "/events/{event_id}/update",
        "/events/{event_id}/delete",
        "/events/search",
        "/events/{event_id}/details",
        "/events/{event_id}/publish",
        "/events/{event_id}/close",
        "/events/{event_id}/cancel",
        "/events/{event_id}/seatmap",
        "/events/{event_id}/sales-window",
        "/events/{event_id}/holds",
        "/holds/{hold_id}",
        "/admin/organizers/{user_id}/approve",
        "/admin/users/{user_id}/role",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "OpenAPI document lacks {path}");
    }
    assert!(app.get("/docs", None).await.text().await.unwrap().contains("openapi.json"));
    assert_problem(app.get("/no/such/route", None).await, StatusCode::NOT_FOUND, "not_found").await;
}
