//! Identifiers and time as the engine sees them.
//!
//! Ids are UUIDs (v7, so they sort by creation time and index well in PostgreSQL);
//! the newtypes keep a hold id from being passed where a ticket id is expected.
//! Time is milliseconds since the Unix epoch: the pure inventory never reads a clock,
//! it is told `now`, which keeps it deterministic under test.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

id_type!(
    /// A published event; one `EventActor` per event.
    EventId
);
id_type!(
    /// A user buying tickets.
    BuyerId
);
id_type!(
    /// A hold on seats; once paid, the same id names the order.
    HoldId
);

impl HoldId {
    /// A fresh v7 id for the millisecond `now` (the engine's clock), with 74
    /// random bits. What `new` makes, less its process-wide ordering within one
    /// millisecond, so making one takes no shared lock and reads no clock (the
    /// actor already knows `now`). Ids still sort by millisecond.
    pub fn at(now: UnixMs) -> Self {
        let r = Uuid::new_v4().into_bytes();
        // Bytes 6 and 8 of a v4 carry its version and variant; skip them.
        let random = [r[0], r[1], r[2], r[3], r[4], r[5], r[7], r[9], r[10], r[11]];
        let millis = u64::try_from(now.0).unwrap_or(0);
        Self(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }
}
id_type!(
    /// One admission: a seat, or one unit of a general-admission section.
    TicketId
);

/// Milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixMs(pub i64);

impl UnixMs {
    /// The wall clock now.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    /// `self + ms`, saturating instead of overflowing on absurd input.
    pub fn plus_ms(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }
}

/// The key a client sends so that a retried request returns the first result.
///
/// Parsed, not validated: holding one means it is 1–255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(Box<str>);

/// The longest idempotency key accepted (Stripe's limit).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

impl IdempotencyKey {
    /// Accepts 1–255 printable ASCII characters (no spaces or control characters).
    pub fn parse(raw: &str) -> Result<Self, InvalidIdempotencyKey> {
        let ok = !raw.is_empty() && raw.len() <= MAX_IDEMPOTENCY_KEY_LEN && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok { Ok(Self(raw.into())) } else { Err(InvalidIdempotencyKey) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = InvalidIdempotencyKey;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<IdempotencyKey> for String {
    fn from(key: IdempotencyKey) -> Self {
        key.0.into()
    }
}

/// An idempotency key that is empty, too long, or has characters other than printable ASCII.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an idempotency key is 1 to 255 printable ASCII characters")]
pub struct InvalidIdempotencyKey;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_bounded_printable_ascii() {
        assert!(IdempotencyKey::parse("order-123_abc").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse("tab\t").is_err());
        assert!(IdempotencyKey::parse("ünïcode").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }

    #[test]
    fn hold_ids_at_a_time_are_v7_of_that_millisecond_and_distinct() {
        let now = UnixMs(1_700_000_000_123);
        let a = HoldId::at(now);
        let b = HoldId::at(now);
        assert_ne!(a, b);
        assert_eq!(a.0.get_version_num(), 7);
        assert_eq!(a.0.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = a.0.get_timestamp().expect("v7 has a timestamp").to_unix();
        assert_eq!(secs * 1000 + u64::from(nanos) / 1_000_000, 1_700_000_000_123);
        assert!(HoldId::at(UnixMs(1_700_000_000_124)) > a, "later milliseconds sort later");
    }

    #[test]
    fn time_arithmetic_saturates() {
        assert_eq!(UnixMs(i64::MAX - 1).plus_ms(10), UnixMs(i64::MAX));
        assert_eq!(UnixMs(5).plus_ms(10), UnixMs(15));
    }
}
