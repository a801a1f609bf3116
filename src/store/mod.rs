//! Persistence and the outside services the engine's state flows to: the
//! connection pool and migrations (`db`), the group-commit journal the actors
//! write through (`journal`), activation from PostgreSQL (`loader`), the outbox
//! (`outbox`), the embedded PostgreSQL of the default set-up (`embedded_pg`), the
//! Redis link and cache (`cache`) and the in-memory search index that follows the
//! `events` table (`search`).
//!
//! Depends on the engine (`boxoffice-actors`) and `config`; never on HTTP.

pub mod cache;
pub mod charges;
pub mod db;
pub mod embedded_pg;
pub mod journal;
pub mod leases;
pub mod loader;
pub mod outbox;
pub mod queue;
pub mod search;

use boxoffice_actors::UnixMs;
use chrono::{DateTime, Utc};

/// An engine timestamp as stored and shown (the latest representable time if out of range).
pub fn datetime(ms: UnixMs) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms.0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
