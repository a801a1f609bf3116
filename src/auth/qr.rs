//! Ticket QR codes: a compact token signed by the server, and its image.
//!
//! Token: `BO1.` + base64url(`kid_len | kid | ticket id (16) | event id (16) | tag (16)`)
//! where `tag` is HMAC-SHA256 over everything before it, truncated to 128 bits.
//! A door scanner (or the server) verifies it offline: a forged or altered code
//! fails, and a code for another event is recognised as such. The key id lets keys
//! rotate: new codes are signed with the active key, old ones still verify with
//! the retired keys kept for verification.
//!
//! Signed links: `GET /tickets/{id}/qr?exp=…&sig=…` serves a ticket's image to
//! whoever holds the link, without an access token (the purchase email's link).
//! `sig` is base64url(HMAC-SHA256(link key, ticket id (16 bytes) | exp (8 bytes,
//! big-endian unix seconds))), untruncated; the link key is HMAC-SHA256 of a fixed
//! label under the QR key, so a link signature can never be replayed as a ticket
//! code or the other way round. Links signed with a retired key still verify.
//! A link lives until a day after its event starts ([`link_expiry`]): the email
//! must still work at the door, and a ticket is worth nothing after its event.

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use qrcode::{Color, EcLevel, QrCode};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

const PREFIX: &str = "BO1.";
const TAG_LEN: usize = 16;
pub use crate::config::MAX_KID_LEN;
/// Longest token accepted for verification (anything longer is not ours).
const MAX_TOKEN_LEN: usize = 256;
/// Pixels per QR module in the PNG, and the quiet zone in modules.
const SCALE: usize = 6;
const QUIET: usize = 4;

/// What a valid code says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TicketClaim {
    pub ticket_id: Uuid,
    pub event_id: Uuid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    #[error("this is not a boxoffice ticket code")]
    Malformed,
    #[error("the code was signed with an unknown key")]
    UnknownKey,
    #[error("the code's signature does not verify: forged or altered")]
    BadSignature,
}

/// Why a signed ticket link is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this ticket link has expired; sign in to see the ticket")]
    Expired,
    #[error("this ticket link is not valid: altered, or for another ticket")]
    BadSignature,
}

/// Domain separation between ticket codes and link signatures.
const LINK_KEY_LABEL: &[u8] = b"boxoffice ticket link v1";
/// How long after its event starts a ticket link still works.
pub const LINK_GRACE: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// When a link to a ticket of an event starting at `event_date` expires (unix seconds).
pub fn link_expiry(event_date: DateTime<Utc>) -> i64 {
    (event_date + LINK_GRACE).timestamp()
}

/// The signing keys: one active, any number kept for verification.
#[derive(Clone)]
pub struct QrSigner {
    active: (String, SecretString),
    retired: Vec<(String, SecretString)>,
    /// Link keys derived from `active` then `retired`, in that order.
    link_keys: Vec<[u8; 32]>,
}

impl QrSigner {
    pub fn new(active: (String, SecretString), retired: Vec<(String, SecretString)>) -> Self {
        let link_keys = std::iter::once(&active)
            .chain(&retired)
            .map(|(_, key)| {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes()).expect("HMAC takes any key length");
                mac.update(LINK_KEY_LABEL);
                mac.finalize().into_bytes().into()
            })
            .collect();
        Self { active, retired, link_keys }
    }

    /// Keys for another kind of signature, derived from the active then the retired
    /// keys under `label` (as the link keys are), so signatures of different kinds
    /// never verify as each other.
    pub fn derived_keys(&self, label: &[u8]) -> Vec<[u8; 32]> {
        std::iter::once(&self.active)
            .chain(&self.retired)
            .map(|(_, key)| {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes()).expect("HMAC takes any key length");
                mac.update(label);
                mac.finalize().into_bytes().into()
            })
            .collect()
    }

    fn link_mac(key: &[u8; 32], ticket_id: Uuid, exp: i64) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(ticket_id.as_bytes());
        mac.update(&exp.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The `sig` of a link to `ticket_id`'s image valid until `exp` (unix seconds).
    pub fn link_sig(&self, ticket_id: Uuid, exp: i64) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Self::link_mac(&self.link_keys[0], ticket_id, exp))
    }

    /// The path and query of a signed link to `ticket_id`'s QR image, valid until `exp`.
    pub fn link_path(&self, ticket_id: Uuid, exp: i64) -> String {
        format!("/tickets/{ticket_id}/qr?exp={exp}&sig={}", self.link_sig(ticket_id, exp))
    }

    /// Checks a link's signature (any known key), then its expiry against `now` (unix seconds).
    pub fn verify_link(&self, ticket_id: Uuid, exp: i64, sig: &str, now: i64) -> Result<(), LinkError> {
        let given =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig.trim()).map_err(|_| LinkError::BadSignature)?;
        let known = self.link_keys.iter().any(|key| bool::from(Self::link_mac(key, ticket_id, exp).ct_eq(&given)));
        if !known {
            return Err(LinkError::BadSignature);
        }
        if now >= exp {
            return Err(LinkError::Expired);
        }
        Ok(())
    }

    fn key(&self, kid: &str) -> Option<&SecretString> {
        std::iter::once(&self.active).chain(&self.retired).find(|(k, _)| k == kid).map(|(_, s)| s)
    }

    fn tag(key: &SecretString, body: &[u8]) -> [u8; TAG_LEN] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes()).expect("HMAC takes any key length");
        mac.update(body);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// The signed token for a ticket.
    pub fn sign(&self, claim: TicketClaim) -> String {
        let (kid, key) = &self.active;
        let mut body = Vec::with_capacity(1 + kid.len() + 32 + TAG_LEN);
        body.push(kid.len() as u8);
        body.extend_from_slice(kid.as_bytes());
        body.extend_from_slice(claim.ticket_id.as_bytes());
        body.extend_from_slice(claim.event_id.as_bytes());
        let tag = Self::tag(key, &body);
        body.extend_from_slice(&tag);
        format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body))
    }

    /// Checks a scanned token and says which ticket it is for.
    pub fn verify(&self, token: &str) -> Result<TicketClaim, QrError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_LEN {
            return Err(QrError::Malformed);
        }
        let encoded = token.strip_prefix(PREFIX).ok_or(QrError::Malformed)?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).map_err(|_| QrError::Malformed)?;
        let kid_len = *raw.first().ok_or(QrError::Malformed)? as usize;
        if kid_len == 0 || kid_len > MAX_KID_LEN || raw.len() != 1 + kid_len + 32 + TAG_LEN {
            return Err(QrError::Malformed);
        }
        let kid = std::str::from_utf8(&raw[1..1 + kid_len]).map_err(|_| QrError::Malformed)?;
        let key = self.key(kid).ok_or(QrError::UnknownKey)?;
        let (body, tag) = raw.split_at(raw.len() - TAG_LEN);
        if !bool::from(Self::tag(key, body).ct_eq(tag)) {
            return Err(QrError::BadSignature);
        }
        let ids = &body[1 + kid_len..];
        let ticket_id = Uuid::from_slice(&ids[..16]).map_err(|_| QrError::Malformed)?;
        let event_id = Uuid::from_slice(&ids[16..32]).map_err(|_| QrError::Malformed)?;
        Ok(TicketClaim { ticket_id, event_id })
    }
}

fn code(token: &str) -> QrCode {
    QrCode::with_error_correction_level(token.as_bytes(), EcLevel::M).expect("a short token always fits a QR code")
}

/// The token as a PNG image (black on white, grayscale).
pub fn png(token: &str) -> Vec<u8> {
    let code = code(token);
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color == Color::Dark {
            let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
            for y in my * SCALE..(my + 1) * SCALE {
                pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().expect("PNG header into a Vec");
    writer.write_image_data(&pixels).expect("PNG data into a Vec");
    writer.finish().expect("PNG into a Vec");
    out
}

/// The token as an SVG image.
pub fn svg(token: &str) -> String {
    code(token).render::<qrcode::render::svg::Color>().min_dimensions(200, 200).quiet_zone(true).build()
}

/// The PNG, base64 encoded (the seed's `qr_code` field).
pub fn png_base64(token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(png(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> QrSigner {
        QrSigner::new(("k2".into(), SecretString::from("new-key")), vec![("k1".into(), SecretString::from("old-key"))])
    }

    #[test]
    fn signs_and_verifies_and_rotates() {
        let claim = TicketClaim { ticket_id: Uuid::now_v7(), event_id: Uuid::now_v7() };
        let token = signer().sign(claim);
        assert!(token.len() < 100, "{token}");
        assert_eq!(signer().verify(&token), Ok(claim));
        // A code signed with the retired key still verifies after rotation.
        let old = QrSigner::new(("k1".into(), SecretString::from("old-key")), vec![]).sign(claim);
        assert_eq!(signer().verify(&old), Ok(claim));
        // A code from a key we never had does not.
        let foreign = QrSigner::new(("k1".into(), SecretString::from("evil")), vec![]).sign(claim);
        assert_eq!(signer().verify(&foreign), Err(QrError::BadSignature));
        let unknown = QrSigner::new(("k9".into(), SecretString::from("x")), vec![]).sign(claim);
        assert_eq!(signer().verify(&unknown), Err(QrError::UnknownKey));
    }

    #[test]
    fn altered_codes_fail() {
        let claim = TicketClaim { ticket_id: Uuid::now_v7(), event_id: Uuid::now_v7() };
        let token = signer().sign(claim);
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&token[4..]).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            let altered = format!("BO1.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw));
            assert!(signer().verify(&altered).is_err(), "byte {i} altered still verifies");
            raw[i] ^= 1;
        }
        for junk in ["", "BO1.", "BO1.!!!", "hello", &"A".repeat(10_000), &format!("BO2.{}", &token[4..])] {
            assert!(signer().verify(junk).is_err());
        }
    }

    #[test]
    fn links_verify_until_they_expire_and_only_for_their_ticket() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let exp = 2_000_000_000;
        let sig = signer().link_sig(a, exp);
        assert_eq!(signer().verify_link(a, exp, &sig, exp - 1), Ok(()));
        assert_eq!(signer().verify_link(a, exp, &sig, exp), Err(LinkError::Expired));
        assert_eq!(signer().verify_link(b, exp, &sig, 0), Err(LinkError::BadSignature), "another ticket");
        assert_eq!(signer().verify_link(a, exp + 1, &sig, 0), Err(LinkError::BadSignature), "a later expiry");
        for junk in ["", "!!", &sig[1..], &sig.replace(&sig[..1], if sig.starts_with('A') { "B" } else { "A" })] {
            assert_eq!(signer().verify_link(a, exp, junk, 0), Err(LinkError::BadSignature), "{junk}");
        }
        // Rotation: a link signed with the retired key still verifies; another key's does not.
        let old = QrSigner::new(("k1".into(), SecretString::from("old-key")), vec![]).link_sig(a, exp);
        assert_eq!(signer().verify_link(a, exp, &old, 0), Ok(()));
        let evil = QrSigner::new(("k2".into(), SecretString::from("evil")), vec![]).link_sig(a, exp);
        assert_eq!(signer().verify_link(a, exp, &evil, 0), Err(LinkError::BadSignature));
        assert!(signer().link_path(a, exp).starts_with(&format!("/tickets/{a}/qr?exp={exp}&sig=")));
        let date = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(link_expiry(date), 1_800_000_000 + 86_400);
    }

    #[test]
    fn images_render() {
        let token = signer().sign(TicketClaim { ticket_id: Uuid::nil(), event_id: Uuid::nil() });
        let png = png(&token);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(svg(&token).starts_with("<?xml"));
    }
}
