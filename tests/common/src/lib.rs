//! The harness of boxoffice's integration tests (`tests/api`, `tests/process`), in one place:
//! a fresh database, a free port, a private Redis server, localstripe, a private PostgreSQL
//! cluster, the server in-process ([`spawn_app`]) or as a child process ([`ServerSpec`]),
//! bounded waiting ([`poll`], [`eventually`]) and the checks every HTTP test uses
//! ([`assert_problem`], [`problem`]); and a real browser for the web app ([`browser`]).
//!
//! The services come from the environment `./scripts/test.sh` sets up (see [`required_env`]).
//! A test that needs one it cannot find fails with a message saying so; nothing is skipped.

mod app;
pub mod browser;
mod db;
mod localstripe;
mod postgres;
mod process;
mod redis;
mod wait;

pub use app::{
    Registered, TEST_JWT_SECRET, TEST_PASSWORD, TestApp, assert_problem, problem, small_map, spawn_app, spawn_app_on,
};
pub use db::{buyer_and_published_event, expire_lease, fresh_database, heap_pages, migrated_database};
pub use localstripe::localstripe_url;
pub use postgres::PrivatePostgres;
pub use process::{ServerProcess, ServerSpec, TempDir};
pub use redis::RedisServer;
pub use wait::{eventually, poll};

/// The value of the environment variable `name`, which `./scripts/test.sh` sets; panics
/// saying so when it is unset or empty.
pub fn required_env(name: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!("{name} is not set: run the tests with ./scripts/test.sh, which starts the services they need")
    })
}

/// A loopback port the kernel reports free (bound, then released): a service started on it
/// may still lose it to someone else, so starters retry with another.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind a loopback port").local_addr().unwrap().port()
}
