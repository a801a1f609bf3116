//! boxoffice, the service: HTTP, auth, persistence and the wiring around the
//! sales engine in `boxoffice-actors`.
//!
//! **Invariant:** the engine decides every seat; this crate never arbitrates one
//! in SQL. It authenticates, routes each request to its event's actor, and makes
//! the actor's changes durable through the `PgJournal`.

pub mod app;
pub mod auth;
pub mod cache;
pub mod config;
pub mod db;
pub mod embedded_pg;
pub mod error;
pub mod events;
pub mod extract;
pub mod holds;
pub mod journal;
pub mod loader;
pub mod notify;
pub mod outbox;
pub mod payments;
pub mod purchases;
pub mod qr;
pub mod relay;
pub mod search;
pub mod system;
pub mod telemetry;
pub mod tickets;

pub use app::{AppState, Application};
pub use config::Settings;
