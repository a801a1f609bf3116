//! Ticket QR codes: a compact token signed by the server, and its image.
//!
//! Token: `BO1.` + base64url(`kid_len | kid | ticket id (16) | event id (16) | tag (16)`)
//! where `tag` is HMAC-SHA256 over everything before it, truncated to 128 bits.
//! A door scanner (or the server) verifies it offline: a forged or altered code
//! fails, and a code for another event is recognised as such. The key id lets keys
//! rotate: new codes are signed with the active key, old ones still verify with
//! the retired keys kept for verification.

use base64::Engine;
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

/// The signing keys: one active, any number kept for verification.
pub struct QrSigner {
    active: (String, SecretString),
    retired: Vec<(String, SecretString)>,
}

impl QrSigner {
    pub fn new(active: (String, SecretString), retired: Vec<(String, SecretString)>) -> Self {
        Self { active, retired }
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
    fn images_render() {
        let token = signer().sign(TicketClaim { ticket_id: Uuid::nil(), event_id: Uuid::nil() });
        let png = png(&token);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(svg(&token).starts_with("<?xml"));
    }
}
