//! Access tokens (JWT, HS256, short-lived) and refresh tokens (opaque random,
//! stored only as a SHA-256 hash).

use crate::error::{ApiError, ProblemCode};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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

/// Signs and checks access tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
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
