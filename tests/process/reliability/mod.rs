//! Reliability: the faults a flash sale meets in production, run against the real
//! `boxoffice` binary as a child process, one fault a file:
//!
//! - `crash_loop`: `kill -9` three times in the middle of a sale; every 201 survives, no
//!   seat is sold twice, the engine's counts equal the database.
//! - `db_outage`: PostgreSQL stops for ~5 s under traffic; requests answer 503
//!   (problem+json, Retry-After) quickly, nothing acknowledged is lost, and the service
//!   recovers by itself.
//! - `overload`: 2,000 concurrent clients on one event with a small in-flight limit; the
//!   excess is shed with 503 `overloaded`.
//! - `sigterm`: SIGTERM under load; in-flight work finishes, the process exits 0, and every
//!   2xx is durable.
//! - `stalled_db`: a request stuck behind a locked table is cut off by REQUEST_TIMEOUT_MS
//!   with a proper 503 problem document.
//!
//! See RELIABILITY.md for what each found and the figures they print. This file: the limits
//! the tests share; `client` (users, events, requests and their outcomes), `checks` (what must
//! hold in the database) and `figures` (what is printed) are their vocabulary.
//!
//! Needs BOXOFFICE_TEST_DATABASE_URL (admin URL of a PostgreSQL; each test creates its own
//! database) and BOXOFFICE_TEST_PG_BIN_DIR (PostgreSQL's bin directory, for the test that
//! runs its own cluster so it can stop it). `./scripts/test.sh` provides both; a missing one
//! fails the test. Buyers are inserted straight into `users` and get access tokens signed
//! with the server's `JWT_SECRET` (argon2 registration of thousands of users would dominate
//! the run time and is not what is under test).
//!
//! Every wait is bounded; all traffic goes to 127.0.0.1. Figures are printed (run with
//! `--nocapture` to see them), never asserted: timed assertions only bound failures.
//! BOXOFFICE_TEST_KEEP_DIRS=1 keeps each test's directory (server log included).

mod checks;
mod client;
mod cluster;
mod crash_loop;
mod db_outage;
mod figures;
mod money;
mod overload;
mod sigterm;
mod stalled_db;

use std::time::Duration;

/// A request slower than this counts as hung.
const HANG_BOUND: Duration = Duration::from_secs(15);
/// The client gives up on a request after this; such a request is reported as hung.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the engine's counts may take to agree with the database (expiries included).
const COUNTS_PATIENCE: Duration = Duration::from_secs(30);
