//! Waiting-room admissions: a short-lived token the owner of an event's room
//! hands a buyer when their turn comes (`docs/domain.md`, section "Waiting room").
//!
//! Token: `QA1.` + base64url(`event id (16) | user id (16) | exp (8, big-endian
//! unix seconds) | tag (32)`), `tag` = HMAC-SHA256 over everything before it under
//! a key derived from the QR key with its own label (see `qr::QrSigner::derived_keys`),
//! so an admission never verifies as a ticket code or link, nor the reverse.
//!
//! **Guarantees.** A token verifies only for the event and the account it names
//! and only until `exp`: it cannot be moved to another account or event, and an
//! altered one fails. Tokens signed with a retired QR key still verify.

use crate::auth::qr::QrSigner;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

const PREFIX: &str = "QA1.";
const LABEL: &[u8] = b"boxoffice queue admission v1";
const BODY_LEN: usize = 16 + 16 + 8;
const TAG_LEN: usize = 32;
/// Longest token looked at (anything longer is not ours).
pub const MAX_TOKEN_LEN: usize = 128;

/// Why an admission token is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("not an admission token, or altered")]
    Invalid,
    #[error("the admission is for another event or account")]
    NotYours,
    #[error("the admission has expired")]
    Expired,
}

#[derive(Clone)]
pub struct AdmissionSigner {
    /// The active key first.
    keys: Vec<[u8; 32]>,
}

impl AdmissionSigner {
    pub fn new(qr: &QrSigner) -> Self {
        Self { keys: qr.derived_keys(LABEL) }
    }

    fn tag(key: &[u8; 32], body: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    fn body(event: Uuid, user: Uuid, exp: i64) -> [u8; BODY_LEN] {
        let mut body = [0u8; BODY_LEN];
        body[..16].copy_from_slice(event.as_bytes());
        body[16..32].copy_from_slice(user.as_bytes());
        body[32..].copy_from_slice(&exp.to_be_bytes());
        body
    }

    /// An admission of `user` to `event` valid until `exp` (unix seconds).
    pub fn sign(&self, event: Uuid, user: Uuid, exp: i64) -> String {
        let body = Self::body(event, user, exp);
        let mut raw = body.to_vec();
        raw.extend_from_slice(&Self::tag(&self.keys[0], &body));
        format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
    }

    /// Checks `token` is an admission of `user` to `event` still valid at `now`
    /// (unix seconds); returns its expiry.
    pub fn verify(&self, token: &str, event: Uuid, user: Uuid, now: i64) -> Result<i64, AdmissionError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_LEN {
            return Err(AdmissionError::Invalid);
        }
        let raw = token
            .strip_prefix(PREFIX)
            .and_then(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b).ok())
            .filter(|raw| raw.len() == BODY_LEN + TAG_LEN)
            .ok_or(AdmissionError::Invalid)?;
        let (body, tag) = raw.split_at(BODY_LEN);
        if !self.keys.iter().any(|k| bool::from(Self::tag(k, body).ct_eq(tag))) {
            return Err(AdmissionError::Invalid);
        }
        if body[..16] != *event.as_bytes() || body[16..32] != *user.as_bytes() {
            return Err(AdmissionError::NotYours);
        }
        let exp = i64::from_be_bytes(body[32..].try_into().expect("8 bytes"));
        if now >= exp {
            return Err(AdmissionError::Expired);
        }
        Ok(exp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn signer(key: &str) -> AdmissionSigner {
        AdmissionSigner::new(&QrSigner::new(("k1".into(), SecretString::from(key.to_owned())), vec![]))
    }

    #[test]
    fn verifies_only_for_its_event_account_and_time() {
        let s = signer("a-very-secret-key-of-enough-length");
        let (event, user, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let token = s.sign(event, user, 1_000);
        assert_eq!(s.verify(&token, event, user, 999), Ok(1_000));
        assert_eq!(s.verify(&token, event, user, 1_000), Err(AdmissionError::Expired));
        assert_eq!(s.verify(&token, other, user, 0), Err(AdmissionError::NotYours), "another event");
        assert_eq!(s.verify(&token, event, other, 0), Err(AdmissionError::NotYours), "another account");
        let mut altered = token.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(s.verify(&String::from_utf8(altered).unwrap(), event, user, 0), Err(AdmissionError::Invalid));
        assert_eq!(s.verify("BO1.xyz", event, user, 0), Err(AdmissionError::Invalid));
        let other_key = signer("another-very-secret-key-of-length");
        assert_eq!(other_key.verify(&token, event, user, 0), Err(AdmissionError::Invalid), "signed elsewhere");
    }
}
