//! The HTTP front: the router, its middleware and the server loop. Routes (one
//! file per resource in `routes/`) authenticate the caller, translate HTTP into
//! engine calls on the event's actor and answer; they never decide a seat.
//!
//! Shared by several routes and so kept here, not in a route file: extractors
//! (`extract`), request/response bodies used by more than one route (`schema`)
//! and ownership look-ups (`access`); CSV writing for exports (`csv`), kept out
//! of routes so it is tested on its own; and the live seat-map feeds (`live`, one
//! fan-out per event for `GET /events/{id}/live`). Route modules never import
//! each other.

pub mod access;
pub mod csv;
pub mod extract;
pub mod live;
mod middleware;
pub mod routes;
pub mod schema;
pub mod server;

use crate::error::{Problem, ProblemCode};
use crate::state::AppState;
use axum::middleware as layers;
use std::sync::Arc;
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

#[derive(OpenApi)]
#[openapi(
    info(title = "boxoffice", description = "Ticket sales built for flash sales. Errors are RFC 9457 problem documents with a stable `code`."),
    modifiers(&BearerAuth),
    components(schemas(Problem, ProblemCode, live::ChangesOut, live::SaleStatsOut))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// Every route, with the OpenAPI document built from the same definitions.
pub fn router(state: AppState) -> axum::Router {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::auth::router())
        .merge(routes::admin::router())
        .merge(routes::events::router())
        .merge(routes::seats::router())
        .merge(routes::search::router())
        .merge(routes::holds::router())
        .merge(routes::purchases::router())
        .merge(routes::tickets::router())
        .merge(routes::organizer::router())
        .merge(routes::system::router())
        .merge(routes::cluster::router())
        .split_for_parts();
    let openapi = Arc::new(openapi);
    api.merge(routes::system::docs_router(openapi))
        .merge(routes::cluster::internal_router())
        .layer(layers::from_fn(middleware::record_request))
        .layer(layers::from_fn_with_state(state.settings.request_timeout, middleware::request_timeout))
        .layer(RequestBodyLimitLayer::new(state.settings.max_body_bytes))
        .layer(layers::map_response(middleware::bare_errors_as_problems))
        .layer(axum::Extension(live::LiveHub::new(state.clone())))
        .fallback(routes::system::not_found)
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::ApiDoc;
    use crate::error::ProblemCode;
    use utoipa::OpenApi;

    #[test]
    fn the_openapi_document_lists_every_problem_code() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serialisable");
        let listed = &doc["components"]["schemas"]["ProblemCode"]["enum"];
        let listed: Vec<&str> =
            listed.as_array().expect("an enum of strings").iter().filter_map(|v| v.as_str()).collect();
        for code in ProblemCode::ALL {
            assert!(listed.contains(&code.as_str()), "{code} missing");
        }
        assert_eq!(listed.len(), ProblemCode::ALL.len());
        assert!(doc["components"]["schemas"]["Problem"]["properties"]["code"].is_object());
    }
}
