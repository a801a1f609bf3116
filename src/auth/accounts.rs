//! Creating accounts: the one insert behind `POST /auth/register` and
//! `boxoffice user create`, so both store the same thing and treat a taken email
//! (case-insensitively, by the `users_email_key` index) the same way.

use super::{Email, Role};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// An account to create; its fields already checked (`Email::parse`, `parse_name`,
/// `check_password` before hashing).
pub struct NewAccount<'a> {
    pub email: &'a Email,
    pub password_hash: String,
    pub name: String,
    pub role: Role,
    /// Approved to publish events (`ORGANIZER_SIGNUP=approval`).
    pub approved: bool,
}

/// An account as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct Account {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub user_type: String,
    pub created_at: DateTime<Utc>,
}

/// Inserts the account; `None` when an account with that email exists.
pub async fn insert(db: &PgPool, new: NewAccount<'_>) -> Result<Option<Account>, sqlx::Error> {
    let inserted = sqlx::query_as(
        "INSERT INTO users (user_id, email, password_hash, name, user_type, approved_at)
         VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END)
         RETURNING user_id, email, name, user_type, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(new.email.as_str())
    .bind(new.password_hash)
    .bind(new.name)
    .bind(new.role.as_str())
    .bind(new.approved)
    .fetch_one(db)
    .await;
    match inserted {
        Ok(account) => Ok(Some(account)),
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("users_email_key") => Ok(None),
        Err(e) => Err(e),
    }
}
