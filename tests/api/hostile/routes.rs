//! Routes that do not exist, and methods a route does not take, are problem documents.

use super::assert_none;
use boxoffice_testkit::{assert_problem, problem, spawn_app};
use reqwest::{Method, StatusCode};

/// An unknown route, and a known route with a method it does not take, are problem
/// documents like every other error (found by scripts/fuzz_api.sh: `TRACE` and friends).
#[tokio::test]
async fn unknown_routes_and_methods_are_problem_documents() {
    let app = spawn_app().await;
    assert_problem(app.get("/no/such/route", None).await, StatusCode::NOT_FOUND, "not_found").await;
    let mut violations = Vec::new();
    for (method, path) in [
        (Method::PATCH, "/auth/login"),
        (Method::GET, "/auth/login"),
        (Method::DELETE, "/events/search"),
        (Method::TRACE, "/healthz"),
        (Method::PUT, "/orders"),
    ] {
        let r = app.request(method.clone(), path, None, None).await;
        if let Err(e) = problem(r, &[StatusCode::METHOD_NOT_ALLOWED], None).await {
            violations.push(format!("{method} {path}: {e}"));
        }
    }
    assert_none(&violations, "wrong methods");
    app.stop().await;
}
