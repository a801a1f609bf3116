//! API integration tests: each test starts the real server on a random port
//! against a fresh PostgreSQL database (from BOXOFFICE_TEST_DATABASE_URL, which
//! `./scripts/test.sh` provides) and talks to it over HTTP.

mod auth;
mod events;
mod helpers;
mod holds;
mod purchases;
mod redis;
mod stripe;
mod system;
