//! `/auth/*`: register, login, refresh, logout, me.

use crate::auth::accounts::{self, Account, NewAccount};
use crate::auth::tokens::{hash_refresh_token, new_refresh_token};
use crate::auth::{AuthUser, Email, Role, check_password, parse_name};
use crate::config::OrganizerSignup;
use crate::error::{ApiError, ApiResult, Problem, ProblemCode};
use crate::http::extract::{ClientIp, Json, optional_json};
use crate::http::problems::{JsonBody, LooseJsonBody, RateLimited, SignedIn, Unavailable};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

const REFRESH_COOKIE: &str = "refresh_token";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// At most 254 characters.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// 1 to 100 characters once trimmed, not all spaces, no control characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// `customer` (default), `organizer` or `staff`; `admin` cannot be registered, and
    /// `organizer` not when `ORGANIZER_SIGNUP=closed`.
    #[serde(default)]
    pub user_type: Option<Role>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// Body of refresh and logout; browsers send the cookie instead.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[serde(default)]
    pub refresh_token: Option<String>,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct UserOut {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub user_type: String,
    pub created_at: DateTime<Utc>,
}

impl From<Account> for UserOut {
    fn from(a: Account) -> Self {
        UserOut { user_id: a.user_id, email: a.email, name: a.name, user_type: a.user_type, created_at: a.created_at }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuthResponse {
    pub user: UserOut,
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Also set as an HttpOnly cookie; for clients that are not browsers.
    pub refresh_token: String,
}

/// Counts an attempt under each key: in Redis when configured (shared by every
/// server process), else in this process.
async fn limit(state: &AppState, keys: &[String]) -> ApiResult<()> {
    let window = std::time::Duration::from_secs(60);
    for key in keys {
        let verdict = match state.cache.incr_window(&format!("ratelimit:auth:{key}"), window).await {
            Some(count) if count > u64::from(state.settings.auth_rate_limit_per_minute) => Err(window),
            Some(_) => Ok(()),
            None => state.auth_limiter.check(key),
        };
        if let Err(wait) = verdict {
            return Err(ApiError::too_many("too many attempts; wait and try again", wait));
        }
    }
    Ok(())
}

fn refresh_cookie(state: &AppState, token: &str, max_age: u64) -> HeaderValue {
    let secure = if state.settings.cookie_secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{REFRESH_COOKIE}={token}; HttpOnly{secure}; SameSite=Strict; Path=/auth; Max-Age={max_age}"
    ))
    .expect("cookie is ASCII")
}

/// Starts a new refresh-token family for `user` and answers with both tokens.
async fn sign_in(state: &AppState, user: UserOut, status: StatusCode) -> ApiResult<Response> {
    let role = Role::parse(&user.user_type).ok_or_else(|| ApiError::internal("user has an unknown role"))?;
    let refresh = new_refresh_token();
    let expires_at = Utc::now() + state.tokens.refresh_ttl;
    sqlx::query("INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(hash_refresh_token(&refresh))
        .bind(Uuid::now_v7())
        .bind(user.user_id)
        .bind(expires_at)
        .execute(&state.db)
        .await?;
    respond_with_tokens(state, user, role, refresh, status)
}

fn respond_with_tokens(
    state: &AppState,
    user: UserOut,
    role: Role,
    refresh: String,
    status: StatusCode,
) -> ApiResult<Response> {
    let access = state.tokens.issue(user.user_id, role)?;
    let cookie = refresh_cookie(state, &refresh, state.tokens.refresh_ttl.as_secs());
    let body = AuthResponse {
        user,
        access_token: access,
        token_type: "Bearer",
        expires_in: state.tokens.access_ttl.as_secs(),
        refresh_token: refresh,
    };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(SET_COOKIE, cookie);
    Ok(response)
}

/// Create an account (and sign in).
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = AuthResponse), JsonBody, RateLimited, Unavailable,
              (status = 403, description = "admin, or organizer while ORGANIZER_SIGNUP=closed", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "email taken (`email_taken`)", body = Problem, content_type = "application/problem+json")))]
async fn register(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<Response> {
    let email = Email::parse(&req.email)?;
    limit(&state, &[format!("ip:{client}"), format!("email:{}", email.as_str().to_lowercase())]).await?;
    check_password(&req.password)?;
    let name = parse_name(&req.name)?;
    let role = req.user_type.unwrap_or(Role::Customer);
    if role == Role::Admin {
        return Err(ApiError::forbidden("administrators cannot be registered through the API"));
    }
    let signup = state.settings.organizer_signup;
    if role == Role::Organizer && signup == OrganizerSignup::Closed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ProblemCode::OrganizerSignupClosed,
            "signing up as an organizer is closed: an administrator grants the role",
        ));
    }
    // Under `open` an organizer may publish at once; under `approval` an admin decides.
    let approved = role == Role::Organizer && signup == OrganizerSignup::Open;
    let hash = state.passwords.hash(SecretString::from(req.password)).await?;
    let account = NewAccount { email: &email, password_hash: hash, name, role, approved };
    let user = accounts::insert(&state.db, account)
        .await?
        .map(UserOut::from)
        .ok_or_else(|| ApiError::conflict(ProblemCode::EmailTaken, "an account with this email exists"))?;
    tracing::info!(user = %user.user_id, role = role.as_str(), "user registered");
    sign_in(&state, user, StatusCode::CREATED).await
}

/// Sign in with email and password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = AuthResponse), JsonBody, RateLimited, Unavailable,
              (status = 401, description = "wrong email or password (`invalid_credentials`)", body = Problem, content_type = "application/problem+json")))]
async fn login(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Response> {
    let email = Email::parse(&req.email)
        .map_err(|_| ApiError::unauthorized(ProblemCode::InvalidCredentials, "wrong email or password"))?;
    limit(&state, &[format!("ip:{client}"), format!("email:{}", email.as_str().to_lowercase())]).await?;
    #[derive(sqlx::FromRow)]
    struct Row {
        user_id: Uuid,
        email: String,
        name: String,
        user_type: String,
        created_at: DateTime<Utc>,
        password_hash: String,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT user_id, email, name, user_type, created_at, password_hash FROM users WHERE lower(email) = lower($1)",
    )
    .bind(email.as_str())
    .fetch_optional(&state.db)
    .await?;
    let stored = row.as_ref().map(|r| r.password_hash.clone());
    if !state.passwords.verify(SecretString::from(req.password), stored).await? {
        return Err(ApiError::unauthorized(ProblemCode::InvalidCredentials, "wrong email or password"));
    }
    let row = row.expect("verified users exist");
    let user = UserOut {
        user_id: row.user_id,
        email: row.email,
        name: row.name,
        user_type: row.user_type,
        created_at: row.created_at,
    };
    sign_in(&state, user, StatusCode::OK).await
}

fn presented_refresh_token(headers: &HeaderMap, body: Option<RefreshRequest>) -> ApiResult<String> {
    if let Some(token) = body.and_then(|b| b.refresh_token).filter(|t| !t.is_empty()) {
        return Ok(token);
    }
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == REFRESH_COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized(ProblemCode::MissingRefreshToken, "send the refresh token (cookie or body)")
        })
}

/// Exchange a refresh token for new tokens. The old refresh token stops working;
/// presenting it again revokes every token of its family.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body(content = Option<RefreshRequest>),
    responses((status = 200, body = AuthResponse), LooseJsonBody, Unavailable,
              (status = 401, description = "no, an invalid, expired or reused refresh token", body = Problem, content_type = "application/problem+json")))]
async fn refresh(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let presented = presented_refresh_token(&headers, optional_json(&body)?)?;
    let hash = hash_refresh_token(&presented);
    let mut tx = state.db.begin().await?;
    #[derive(sqlx::FromRow)]
    struct Token {
        family_id: Uuid,
        user_id: Uuid,
        expires_at: DateTime<Utc>,
        rotated_at: Option<DateTime<Utc>>,
        revoked_at: Option<DateTime<Utc>>,
    }
    // FOR UPDATE on the token's own row serialises two refreshes of the same
    // token, so exactly one rotates it and the other is seen as reuse.
    let token: Option<Token> = sqlx::query_as(
        "SELECT family_id, user_id, expires_at, rotated_at, revoked_at FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(&hash)
    .fetch_optional(&mut *tx)
    .await?;
    let invalid =
        || ApiError::unauthorized(ProblemCode::InvalidRefreshToken, "the refresh token is not valid; sign in again");
    let Some(token) = token else { return Err(invalid()) };
    if token.revoked_at.is_some() {
        return Err(invalid());
    }
    if token.rotated_at.is_some() {
        sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL")
            .bind(token.family_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::warn!(user = %token.user_id, "refresh token reused; family revoked");
        return Err(ApiError::unauthorized(
            ProblemCode::RefreshTokenReused,
            "this refresh token was already used; sign in again",
        ));
    }
    if token.expires_at <= Utc::now() {
        return Err(invalid());
    }
    sqlx::query("UPDATE refresh_tokens SET rotated_at = now() WHERE token_hash = $1")
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
    let next = new_refresh_token();
    sqlx::query("INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(hash_refresh_token(&next))
        .bind(token.family_id)
        .bind(token.user_id)
        .bind(Utc::now() + state.tokens.refresh_ttl)
        .execute(&mut *tx)
        .await?;
    let user: UserOut =
        sqlx::query_as("SELECT user_id, email, name, user_type, created_at FROM users WHERE user_id = $1")
            .bind(token.user_id)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    let role = Role::parse(&user.user_type).ok_or_else(|| ApiError::internal("user has an unknown role"))?;
    respond_with_tokens(&state, user, role, next, StatusCode::OK)
}

/// Sign out: revokes the refresh token's whole family and clears the cookie.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body(content = Option<RefreshRequest>),
    responses((status = 204, description = "signed out"), LooseJsonBody, Unavailable))]
async fn logout(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    if let Ok(token) = presented_refresh_token(&headers, optional_json(&body)?) {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = now()
             WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1) AND revoked_at IS NULL",
        )
        .bind(hash_refresh_token(&token))
        .execute(&state.db)
        .await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(SET_COOKIE, refresh_cookie(&state, "", 0));
    Ok(response)
}

/// The signed-in user.
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserOut), SignedIn, Unavailable))]
async fn me(State(state): State<AppState>, user: AuthUser) -> ApiResult<axum::Json<UserOut>> {
    let row: Option<UserOut> =
        sqlx::query_as("SELECT user_id, email, name, user_type, created_at FROM users WHERE user_id = $1")
            .bind(user.id)
            .fetch_optional(&state.db)
            .await?;
    row.map(axum::Json)
        .ok_or_else(|| ApiError::unauthorized(ProblemCode::InvalidToken, "this account no longer exists"))
}
