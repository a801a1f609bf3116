//! boxoffice, the service: HTTP, auth, persistence and the wiring around the
//! sales engine in `boxoffice-actors`.
//!
//! **Invariant:** the engine decides every seat; this crate never arbitrates one
//! in SQL. It authenticates, routes each request to its event's actor, and makes
//! the actor's changes durable through the `PgJournal`.
//!
//! The layout follows a request: `http` (routes) → `state` (the registry of event
//! actors, in `boxoffice-actors`) → the actor and its inventory → `store::journal`.
//! ARCHITECTURE.md has the code map and which folder may depend on which.

pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod money;
pub mod payments;
pub mod startup;
pub mod state;
pub mod store;
pub mod workers;

pub use config::Settings;
pub use startup::Application;
pub use state::AppState;
