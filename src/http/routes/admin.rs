//! `/admin/*`: what only administrators do with accounts — approve an organizer to
//! publish (`ORGANIZER_SIGNUP=approval`) and set a user's role (how organizers are
//! made under `ORGANIZER_SIGNUP=closed`). See docs/domain.md, "Accounts and tokens".

use crate::auth::{AuthUser, Role};
use crate::error::{ApiError, ApiResult, Problem, ProblemCode};
use crate::http::extract::{Json, Path};
use crate::http::problems::{BadPath, JsonBody, SignedIn, Unavailable};
use crate::state::AppState;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(approve_organizer)).routes(routes!(set_role))
}

/// An account as administrators see it.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct AccountOut {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub user_type: String,
    /// When the account was approved to publish events; null while it waits (or is not an organizer).
    pub approved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const ACCOUNT_COLUMNS: &str = "user_id, email, name, user_type, approved_at, created_at";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRoleRequest {
    /// `customer`, `organizer`, `staff` or `admin`.
    pub role: Role,
}

fn require_admin(user: &AuthUser) -> ApiResult<()> {
    if user.is_admin() { Ok(()) } else { Err(ApiError::forbidden("this needs the role admin")) }
}

/// Approve an organizer to publish events. Approving twice keeps the first approval.
#[utoipa::path(post, path = "/admin/organizers/{user_id}/approve", tag = "admin", security(("bearer" = [])),
    params(("user_id" = Uuid, Path)),
    responses((status = 200, body = AccountOut), BadPath, SignedIn, Unavailable,
              (status = 403, description = "not an administrator", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "not an organizer (`not_organizer`)", body = Problem, content_type = "application/problem+json")))]
async fn approve_organizer(
    State(state): State<AppState>,
    user: AuthUser,
    Path(user_id): Path<Uuid>,
) -> ApiResult<axum::Json<AccountOut>> {
    require_admin(&user)?;
    let sql = format!(
        "UPDATE users SET approved_at = coalesce(approved_at, now()) WHERE user_id = $1 AND user_type = 'organizer'
         RETURNING {ACCOUNT_COLUMNS}"
    );
    let approved: Option<AccountOut> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_optional(&state.db).await?;
    if let Some(account) = approved {
        tracing::info!(user = %user_id, admin = %user.id, "organizer approved");
        return Ok(axum::Json(account));
    }
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE user_id = $1)")
        .bind(user_id)
        .fetch_one(&state.db)
        .await?;
    if exists {
        Err(ApiError::invalid(ProblemCode::NotOrganizer, "only organizers are approved; set the role first"))
    } else {
        Err(ApiError::not_found("user"))
    }
}

/// Set a user's role. Making someone an organizer also approves them to publish.
/// The new role is in the user's next access token (at the next refresh or sign-in).
#[utoipa::path(put, path = "/admin/users/{user_id}/role", tag = "admin", security(("bearer" = [])),
    params(("user_id" = Uuid, Path)), request_body = SetRoleRequest,
    responses((status = 200, body = AccountOut), BadPath, JsonBody, SignedIn, Unavailable,
              (status = 403, description = "not an administrator, or your own role", body = Problem, content_type = "application/problem+json")))]
async fn set_role(
    State(state): State<AppState>,
    user: AuthUser,
    Path(user_id): Path<Uuid>,
    Json(req): Json<SetRoleRequest>,
) -> ApiResult<axum::Json<AccountOut>> {
    require_admin(&user)?;
    if user_id == user.id {
        return Err(ApiError::forbidden("administrators cannot change their own role"));
    }
    let sql = format!(
        "UPDATE users SET user_type = $2,
             approved_at = CASE WHEN $2 = 'organizer' THEN coalesce(approved_at, now()) ELSE approved_at END
         WHERE user_id = $1 RETURNING {ACCOUNT_COLUMNS}"
    );
    let account: Option<AccountOut> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(req.role.as_str())
        .fetch_optional(&state.db)
        .await?;
    let account = account.ok_or_else(|| ApiError::not_found("user"))?;
    tracing::info!(user = %user_id, admin = %user.id, role = req.role.as_str(), "role set");
    Ok(axum::Json(account))
}
