//! Authentication and authorisation: roles, the proven caller (`AuthUser`),
//! passwords, access and refresh tokens, login rate limits, and the signed codes
//! tickets carry (`qr`) and waiting-room admissions (`admission`). The routes are in `http::routes::auth`; the extractors
//! that produce an `AuthUser` from a request are in `http::extract`.
//!
//! Access tokens are 15-minute HS256 JWTs checked for `exp`, `iss` and `aud`.
//! Refresh tokens are opaque, hashed at rest, rotated on every use; presenting a
//! rotated one again revokes its whole family. See docs/domain.md, "Accounts and tokens".

pub mod accounts;
pub mod admission;
pub mod password;
pub mod qr;
pub mod rate_limit;
pub mod tokens;

use crate::error::{ApiError, ProblemCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Organizer,
    Staff,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Organizer => "organizer",
            Role::Staff => "staff",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "customer" => Role::Customer,
            "organizer" => Role::Organizer,
            "staff" => Role::Staff,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}

/// The caller, proven by a valid access token.
#[derive(Clone, Copy, Debug)]
pub struct AuthUser {
    pub id: Uuid,
    pub role: Role,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// 403 unless the caller has one of `roles` (admins always pass).
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.is_admin() || roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the role {}",
                roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" or ")
            )))
        }
    }
}

/// The caller if a valid token was sent; anonymous otherwise. A token that is
/// sent but invalid is still an error, so a client learns its token expired.
#[derive(Clone, Copy, Debug)]
pub struct MaybeAuthUser(pub Option<AuthUser>);

/// An email address, trimmed; compared case-insensitively by the database.
#[derive(Clone, Debug)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let email = raw.trim();
        let valid = email.len() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !email.chars().any(|c| c.is_whitespace() || c.is_control())
                    && !domain.contains('@')
            });
        if valid {
            Ok(Self(email.to_owned()))
        } else {
            Err(ApiError::invalid(ProblemCode::InvalidEmail, "that is not an email address"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Passwords are 8 to 128 characters.
pub fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if !(8..=128).contains(&n) {
        return Err(ApiError::invalid(ProblemCode::WeakPassword, "a password is 8 to 128 characters"));
    }
    Ok(())
}

/// A display name: 1 to 100 characters after trimming, no control characters.
pub fn parse_name(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(ProblemCode::InvalidName, "a name is 1 to 100 characters"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_parse_or_refuse() {
        assert!(Email::parse(" Ann@Example.com ").is_ok());
        for bad in ["", "ann", "@x.com", "ann@", "ann@com", "ann@.com", "a b@x.com", "ann@x.com.", "a@b@c.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn passwords_and_names_are_bounded() {
        assert!(check_password("short").is_err());
        assert!(check_password("long enough").is_ok());
        assert!(check_password(&"x".repeat(129)).is_err());
        assert!(parse_name("  ").is_err());
        assert!(parse_name("Ann\u{0}").is_err());
        assert_eq!(parse_name(" Ann ").unwrap(), "Ann");
    }
}
