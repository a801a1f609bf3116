//! The process test binary: the real `boxoffice` binary run as a child process against a
//! fresh database — a flash sale over HTTP surviving SIGKILL (acceptance), the faults of
//! production (reliability), what it writes to its log (secrets), a start that must fail
//! (startup), and the `user create` command. `./scripts/test.sh` provides the services; a test
//! that cannot find the one it needs fails.
//!
//! The tests take a process-wide lock and run one at a time: each drives a server hard on a
//! machine of few cores, and their printed figures must not mix.

mod acceptance;
mod reliability;
mod secrets_in_logs;
mod startup;
mod user_create;

use boxoffice_testkit::{ServerSpec, TempDir, fresh_database};
use sqlx::PgPool;
use std::path::Path;
use tokio::sync::{Mutex, MutexGuard};

/// The server binary cargo built for these tests.
const BOXOFFICE: &str = env!("CARGO_BIN_EXE_boxoffice");
/// The servers' JWT_SECRET: tests sign access tokens with it.
const JWT_SECRET: &str = "reliability-jwt-secret-that-is-long-enough-0123456789";
const QR_SIGNING_KEY: &str = "reliability-qr-signing-key";

/// One test at a time (see above).
static SERIAL: Mutex<()> = Mutex::const_new(());

/// The server on `db_url` with its files in `dir`, as these tests run it: the keys above, the
/// login rate limit out of the way, cookies over plain HTTP, warnings and errors in its log;
/// then `env` (which wins).
fn server_on(db_url: &str, dir: &Path, env: &[(&str, &str)]) -> ServerSpec {
    let spec = ServerSpec::new(BOXOFFICE, db_url, dir)
        .env("JWT_SECRET", JWT_SECRET)
        .env("QR_SIGNING_KEY", QR_SIGNING_KEY)
        .env("AUTH_RATE_LIMIT_PER_MINUTE", "100000")
        .env("COOKIE_SECURE", "false")
        .env("RUST_LOG", "warn");
    env.iter().fold(spec, |spec, (name, value)| spec.env(name, value))
}

/// What a test here runs on: its turn (`SERIAL`), a directory of its own, a fresh database
/// (URL and a pool on it) and the spec of the server on them, not yet started.
struct Rig {
    serial: MutexGuard<'static, ()>,
    dir: TempDir,
    db_url: String,
    db: PgPool,
    spec: ServerSpec,
}

impl Rig {
    /// Waits for the turn, then makes the directory (named after `name`) and the database;
    /// `env` configures the server as in [`server_on`].
    async fn new(name: &str, env: &[(&str, &str)]) -> Self {
        let serial = SERIAL.lock().await;
        let dir = TempDir::new(name);
        let db_url = fresh_database().await;
        let spec = server_on(&db_url, dir.path(), env);
        let db = PgPool::connect(&db_url).await.expect("connect to the test database");
        Self { serial, dir, db_url, db, spec }
    }
}
