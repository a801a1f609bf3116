//! The cluster's routes: `GET /cluster` (administrators: the nodes, their
//! heartbeats and leases) and `POST /internal/events/{id}` — how one node asks the
//! owner of an event to run a call on its actor (see `crate::cluster`). The
//! internal route is not part of the public API: it answers only callers that
//! present the cluster key, and runs the call here without forwarding it again.

use crate::auth::AuthUser;
use crate::cluster::rpc::{self, EventCall};
use crate::cluster::{CLUSTER_KEY_HEADER, Member, NodeOut};
use crate::error::{ApiError, ApiResult, Problem};
use crate::http::extract::{Json, Path};
use crate::http::problems::{SignedIn, Unavailable};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use boxoffice_actors::EventId;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(cluster_state))
}

/// Routes between nodes, outside the OpenAPI document.
pub fn internal_router() -> axum::Router<AppState> {
    axum::Router::new().route("/internal/events/{event_id}", post(internal_event_call))
}

#[derive(Serialize, ToSchema)]
pub struct ClusterOut {
    /// The node that answered.
    pub node_id: String,
    /// The members it routes to (live, this node included).
    pub members: Vec<Member>,
    /// Events this node runs.
    pub events_here: usize,
    /// Every node that ever joined, with its heartbeat and live leases.
    pub nodes: Vec<NodeOut>,
}

/// The nodes sharing this database, their heartbeats and how many events each runs.
#[utoipa::path(get, path = "/cluster", tag = "system", security(("bearer" = [])),
    responses((status = 200, body = ClusterOut), SignedIn, Unavailable,
              (status = 403, description = "not an administrator", body = Problem, content_type = "application/problem+json")))]
async fn cluster_state(State(state): State<AppState>, user: AuthUser) -> ApiResult<axum::Json<ClusterOut>> {
    if !user.is_admin() {
        return Err(ApiError::forbidden("this needs the role admin"));
    }
    Ok(axum::Json(ClusterOut {
        node_id: state.cluster.node_id().to_owned(),
        members: state.cluster.members(),
        events_here: state.registry.len(),
        nodes: state.cluster.describe().await?,
    }))
}

/// Runs a call on this node's actor of the event; the answer is the call's own
/// `Result`, serialized. 404 without the cluster key.
async fn internal_event_call(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(event_id): Path<Uuid>,
    Json(call): Json<EventCall>,
) -> Result<axum::Json<Result<rpc::EventReply, boxoffice_actors::EventError>>, ApiError> {
    let presented = headers.get(CLUSTER_KEY_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !state.cluster.accepts_key(presented) {
        // Indistinguishable from a route that does not exist.
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            crate::error::ProblemCode::NotFound,
            "no such route; see /docs",
        ));
    }
    metrics::counter!("boxoffice_cluster_calls_served_total").increment(1);
    Ok(axum::Json(state.cluster.serve_here(&state.registry, EventId(event_id), call).await))
}
