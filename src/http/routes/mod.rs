//! One module per resource, each exposing `router()`. Routes translate HTTP to
//! engine and store calls; they share only what lives in `http` itself.

pub mod admin;
pub mod auth;
pub mod cluster;
pub mod events;
pub mod holds;
pub mod organizer;
pub mod purchases;
pub mod queue;
pub mod search;
pub mod seats;
pub mod system;
pub mod tickets;
