//! Access tokens (JWT, HS256, short-lived) and refresh tokens (opaque random,
//! stored only as a SHA-256 hash).

use crate::error::{ApiError, ProblemCode};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use uuid::Uuid;

use super::Role;

/// Claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

/// Most tokens [`TokenKeys::authenticate`] remembers; past it, it starts afresh.
const VERIFIED_MAX: usize = 32_768;

/// Signs and checks access tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Tokens that verified, by their whole text: the account, role and expiry
    /// they carry. In a rush every request of a buyer carries the same token, and
    /// verifying one decodes two JSON documents and computes an HMAC.
    verified: dashmap::DashMap<Box<str>, (Uuid, Role, i64), rustc_hash::FxBuildHasher>,
    /// Entries added since the map was last emptied (bounds its memory).
    verified_added: AtomicUsize,
    /// The bound: [`VERIFIED_MAX`].
    verified_max: usize,
    issuer: String,
    audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

impl TokenKeys {
    pub fn new(
        secret: &SecretString,
        issuer: &str,
        audience: &str,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        // Only HS256 is accepted: `alg: none` or another algorithm fails validation.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
            verified: dashmap::DashMap::with_hasher(rustc_hash::FxBuildHasher),
            verified_added: AtomicUsize::new(0),
            verified_max: VERIFIED_MAX,
            issuer: issuer.into(),
            audience: audience.into(),
            access_ttl,
            refresh_ttl,
        }
    }

    /// A signed access token for `user`.
    pub fn issue(&self, user: Uuid, role: Role) -> Result<String, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + self.access_ttl.as_secs() as i64,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(ApiError::internal)
    }

    /// The account and role of a valid access token; 401 otherwise. Like
    /// [`TokenKeys::verify`], remembering the tokens that verified: a token seen
    /// before answers from memory until its `exp` (the full check, leeway
    /// included, decides after that).
    pub fn authenticate(&self, token: &str) -> Result<(Uuid, Role), ApiError> {
        if let Some(known) = self.remembered(token, chrono::Utc::now().timestamp()) {
            return Ok(known);
        }
        let claims = self.verify(token)?;
        if self.verified_added.fetch_add(1, Ordering::Relaxed) >= self.verified_max {
            self.verified.clear();
            self.verified_added.store(1, Ordering::Relaxed);
        }
        self.verified.insert(token.into(), (claims.sub, claims.role, claims.exp));
        Ok((claims.sub, claims.role))
    }

    /// The account and role of `token` if it verified before and is still before
    /// its expiry at `now` (seconds).
    fn remembered(&self, token: &str, now: i64) -> Option<(Uuid, Role)> {
        let entry = self.verified.get(token)?;
        let (user, role, exp) = *entry;
        (now < exp).then_some((user, role))
    }

    /// The claims of a valid token; 401 otherwise.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::unauthorized(ProblemCode::TokenExpired, "the access token has expired; refresh it")
                }
                _ => ApiError::unauthorized(ProblemCode::InvalidToken, "the access token is not valid"),
            }
        })
    }
}

/// A new opaque refresh token (256 random bits, URL-safe base64).
pub fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored for a refresh token.
pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> TokenKeys {
        let hour = Duration::from_secs(3600);
        TokenKeys::new(&SecretString::from(secret.to_owned()), "boxoffice", "boxoffice-api", hour, hour)
    }

    #[test]
    fn a_verified_token_is_remembered_until_its_expiry() {
        let keys = keys("a-secret-long-enough-for-hs256-0123456789");
        let user = Uuid::now_v7();
        let token = keys.issue(user, Role::Organizer).unwrap();
        let now = chrono::Utc::now().timestamp();
        assert_eq!(keys.remembered(&token, now), None, "not before it verified");
        assert_eq!(keys.authenticate(&token).unwrap(), (user, Role::Organizer));
        assert_eq!(keys.remembered(&token, now), Some((user, Role::Organizer)));
        assert_eq!(keys.authenticate(&token).unwrap(), (user, Role::Organizer), "answered from memory");
        let exp = keys.verify(&token).unwrap().exp;
        assert_eq!(keys.remembered(&token, exp - 1), Some((user, Role::Organizer)));
        assert_eq!(keys.remembered(&token, exp), None, "at its expiry the full check decides again");
    }

    #[test]
    fn a_token_that_did_not_verify_is_neither_accepted_nor_remembered() {
        let keys = keys("a-secret-long-enough-for-hs256-0123456789");
        let token = keys.issue(Uuid::now_v7(), Role::Customer).unwrap();
        keys.authenticate(&token).unwrap();
        // The same claims with another signature, and a token signed with another key.
        let (unsigned, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{unsigned}.{}", "A".repeat(43));
        let elsewhere =
            super::tests::keys("another-secret-long-enough-for-hs256-987").issue(Uuid::now_v7(), Role::Admin);
        for bad in [forged, elsewhere.unwrap()] {
            assert!(keys.authenticate(&bad).is_err());
            assert!(keys.authenticate(&bad).is_err(), "refused again");
            assert_eq!(keys.remembered(&bad, 0), None);
        }
        assert_eq!(keys.verified.len(), 1);
    }

    #[test]
    fn the_memory_of_verified_tokens_is_bounded() {
        let mut keys = keys("a-secret-long-enough-for-hs256-0123456789");
        keys.verified_max = 8;
        for _ in 0..50 {
            let token = keys.issue(Uuid::now_v7(), Role::Customer).unwrap();
            keys.authenticate(&token).unwrap();
            assert!(keys.verified.len() <= 8, "{} remembered", keys.verified.len());
        }
    }
}
