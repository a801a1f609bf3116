//! Reliability: the faults a flash sale meets in production, run against the real
//! `boxoffice` binary as a child process.
//!
//! - `crash_loop_keeps_every_acknowledged_sale`: `kill -9` three times in the middle of a
//!   sale; every 201 survives, no seat is sold twice, the engine's counts equal the database.
//! - `database_outage_fails_fast_and_recovers`: PostgreSQL stops for ~5 s under traffic;
//!   requests answer 503 (problem+json, Retry-After) quickly, nothing acknowledged is lost,
//!   and the service recovers by itself.
//! - `overload_sheds_with_503_and_keeps_latency_bounded`: 2,000 concurrent clients on one
//!   event with a small in-flight limit; the excess is shed with 503 `overloaded`.
//! - `sigterm_drains_in_flight_work`: SIGTERM under load; in-flight work finishes, the
//!   process exits 0, and every 2xx is durable.
//! - `stalled_database_times_out_with_a_problem_document`: a request stuck behind a locked
//!   table is cut off by REQUEST_TIMEOUT_MS with a proper 503 problem document.
//!
//! See RELIABILITY.md for what each found and the figures they print.
//!
//! Needs BOXOFFICE_TEST_DATABASE_URL (admin URL of a PostgreSQL; each test creates its own
//! database) and BOXOFFICE_TEST_PG_BIN_DIR (PostgreSQL's bin directory, for the test that
//! runs its own cluster so it can stop it). `./scripts/test.sh` provides both; a missing one
//! fails the test. The tests take a process-wide lock and run one at a time, so that their
//! load and their printed figures do not mix. Buyers are inserted straight into `users` and
//! get access tokens signed with the server's `JWT_SECRET` (argon2 registration of
//! thousands of users would dominate the run time and is not what is under test).
//!
//! Every wait is bounded; all traffic goes to 127.0.0.1. Figures are printed (run with
//! `--nocapture` to see them), never asserted: timed assertions only bound failures.
//! BOXOFFICE_TEST_KEEP_DIRS=1 keeps each test's directory (server log included).

use boxoffice::auth::Role;
use boxoffice::auth::tokens::TokenKeys;
use boxoffice::embedded_pg::EmbeddedPostgres;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const JWT_SECRET: &str = "reliability-jwt-secret-that-is-long-enough-0123456789";
const QR_SIGNING_KEY: &str = "reliability-qr-signing-key";
/// A request slower than this counts as hung.
const HANG_BOUND: Duration = Duration::from_secs(15);
/// The client gives up on a request after this; such a request is reported as hung.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to answer /readyz after it is spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the engine's counts may take to agree with the database (expiries included).
const COUNTS_PATIENCE: Duration = Duration::from_secs(30);

/// One test at a time: each drives a server hard, and the machine has few cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------------
// Environment, directories, databases
// ---------------------------------------------------------------------------------------------

fn required_env(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("{name} is not set: run the tests with ./scripts/test.sh, which provides PostgreSQL"))
}

/// A fresh, empty database on the shared test PostgreSQL; the server migrates it.
async fn fresh_database() -> String {
    let admin = required_env("BOXOFFICE_TEST_DATABASE_URL");
    let name = format!("test_{}", Uuid::new_v4().simple());
    let pool = PgPool::connect(&admin).await.expect("connect to the test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.expect("create database");
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

/// A directory under /tmp (reachable by the `postgres` user when we are root), removed on
/// drop unless the test failed or BOXOFFICE_TEST_KEEP_DIRS is set (then it is kept, with the
/// server log, and its path printed).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = PathBuf::from("/tmp").join(format!("boxoffice-reliability-{name}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        // The embedded cluster's service account must be able to traverse it.
        let _ = Command::new("chmod").arg("755").arg(&dir).status();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("BOXOFFICE_TEST_KEEP_DIRS").is_some() {
            eprintln!("reliability: kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

/// How to start the server; the same spec restarts it on the same port, database and keys.
struct ServerSpec {
    db_url: String,
    data_dir: PathBuf,
    port: u16,
    env: Vec<(&'static str, String)>,
    log: PathBuf,
}

struct Server {
    child: Child,
    pid: u32,
}

impl ServerSpec {
    fn new(db_url: &str, dir: &Path, env: &[(&'static str, &str)]) -> Self {
        Self {
            db_url: db_url.to_owned(),
            data_dir: dir.join("server"),
            port: free_port(),
            env: env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            log: dir.join("server.log"),
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open server log");
        Command::new(env!("CARGO_BIN_EXE_boxoffice"))
            .env("DATABASE_URL", &self.db_url)
            .env("BIND", format!("127.0.0.1:{}", self.port))
            .env("BOXOFFICE_DATA_DIR", &self.data_dir)
            .env("JWT_SECRET", JWT_SECRET)
            .env("QR_SIGNING_KEY", QR_SIGNING_KEY)
            .env("AUTH_RATE_LIMIT_PER_MINUTE", "100000")
            .env("COOKIE_SECURE", "false")
            .env("RUST_LOG", "warn")
            .env_remove("REDIS_URL")
            .env_remove("STRIPE_SECRET_KEY")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the boxoffice binary")
    }

    /// Spawns the server and waits until /readyz answers 200. A start that dies at once (the
    /// port still held by the previous process) is retried.
    async fn start(&self) -> Server {
        let probe = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        for attempt in 1..=3 {
            let mut child = self.spawn();
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(attempt < 3, "the server exited during start-up ({status}):\n{}", self.log_tail());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
                if let Ok(r) = probe.get(format!("{}/readyz", self.base())).send().await
                    && r.status() == StatusCode::OK
                {
                    let pid = child.id();
                    return Server { child, pid };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the server was not ready within {READY_TIMEOUT:?}:\n{}", self.log_tail());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        unreachable!("every start attempt returns or panics")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The server never panics, whatever happened to it.
    fn assert_no_panic_in_log(&self) {
        let log = self.log_text();
        assert!(!log.contains("panicked at"), "the server panicked:\n{}", self.log_tail());
    }
}

impl Server {
    /// `kill -9`, and reap it.
    fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    /// Peak resident set size in KiB (VmHWM), while the process lives.
    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An embedded PostgreSQL cluster the test can stop and start (same data directory, same
/// port). On drop — a failed test — the postmaster gets SIGQUIT (immediate shutdown), so no
/// cluster outlives the test.
struct Pg {
    cluster: Option<EmbeddedPostgres>,
    url: String,
    data_dir: PathBuf,
    bin_dir: PathBuf,
}

impl Pg {
    async fn start(data_dir: &Path, bin_dir: &Path) -> Self {
        let cluster = EmbeddedPostgres::start_with_bin_dir(data_dir, Some(bin_dir)).await.expect("start PostgreSQL");
        Self { url: cluster.url(), cluster: Some(cluster), data_dir: data_dir.to_owned(), bin_dir: bin_dir.to_owned() }
    }

    async fn stop(&mut self) {
        if let Some(cluster) = self.cluster.take() {
            cluster.stop().await.expect("stop PostgreSQL");
        }
    }

    async fn restart(&mut self) {
        let cluster = EmbeddedPostgres::start_with_bin_dir(&self.data_dir, Some(&self.bin_dir))
            .await
            .expect("restart PostgreSQL");
        assert_eq!(cluster.url(), self.url, "PostgreSQL came back on another port or password");
        self.cluster = Some(cluster);
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Ok(pid_file) = std::fs::read_to_string(self.data_dir.join("postmaster.pid"))
            && let Some(pid) = pid_file.lines().next().map(str::trim).filter(|p| !p.is_empty())
        {
            let _ = Command::new("kill").args(["-QUIT", pid]).status();
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Users, events, HTTP
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct User {
    token: String,
}

/// `n` users of `role`, inserted directly, with access tokens the server accepts.
async fn create_users(db: &PgPool, n: usize, role: Role) -> Vec<User> {
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO users (user_id, email, password_hash, name, user_type)
         SELECT id, 'reliability-' || id || '@example.com', 'not-a-password-hash', 'Reliability', $2
         FROM UNNEST($1::uuid[]) AS id",
    )
    .bind(&ids)
    .bind(role.as_str())
    .execute(db)
    .await
    .expect("insert users");
    let keys = TokenKeys::new(
        &SecretString::from(JWT_SECRET),
        "boxoffice",
        "boxoffice-api",
        Duration::from_secs(3600),
        Duration::from_secs(3600),
    );
    ids.into_iter().map(|id| User { token: keys.issue(id, role).expect("sign a token") }).collect()
}

fn seated_map(rows: usize, per_row: usize) -> Value {
    let rows: Vec<Value> = (0..rows).map(|r| json!({"label": format!("R{r}"), "seats": per_row})).collect();
    json!({"tiers": [{"code": "A", "price": 7000}], "sections": [{"name": "Main", "tier": "A", "kind": "seated", "rows": rows}]})
}

fn general_map(capacity: usize) -> Value {
    json!({"tiers": [{"code": "A", "price": 5000}],
           "sections": [{"name": "Floor", "tier": "A", "kind": "general", "capacity": capacity}]})
}

/// Creates and publishes an event; returns its id.
async fn create_event(
    client: &reqwest::Client,
    base: &str,
    organizer: &User,
    seat_map: Value,
    window: Value,
) -> String {
    let r = client
        .post(format!("{base}/events/create"))
        .bearer_auth(&organizer.token)
        .json(&json!({"title": "Reliability", "venue_name": "Dome", "event_date": "2031-01-01T20:00:00Z",
                      "seat_map": seat_map, "sales_window": window}))
        .send()
        .await
        .expect("create event");
    assert_eq!(r.status(), StatusCode::CREATED, "create event: {}", r.text().await.unwrap_or_default());
    let event: Value = r.json().await.unwrap();
    let id = event["event_id"].as_str().expect("event_id").to_owned();
    let r = client.post(format!("{base}/events/{id}/publish")).bearer_auth(&organizer.token).send().await.unwrap();
    assert!(r.status().is_success(), "publish: {}", r.text().await.unwrap_or_default());
    id
}

fn http_client(max_idle: usize) -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(max_idle).timeout(CLIENT_TIMEOUT).build().unwrap()
}

/// One request's outcome. `status: None` is a transport error (refused, reset, timed out).
#[derive(Clone, Debug)]
struct Reply {
    started: Instant,
    latency: Duration,
    status: Option<StatusCode>,
    /// The problem document's `code`, if any.
    code: String,
    /// The Retry-After header, in seconds.
    retry_after: Option<u64>,
    problem_json: bool,
    body: Value,
    error: String,
    connect_error: bool,
    timed_out: bool,
}

impl Reply {
    fn describe(&self) -> String {
        match self.status {
            Some(s) => format!("{s} {} after {:?}: {}", self.code, self.latency, truncate(&self.body.to_string())),
            None => format!("transport error after {:?}: {}", self.latency, self.error),
        }
    }

    fn is(&self, status: StatusCode) -> bool {
        self.status == Some(status)
    }

    /// Worth retrying with the same Idempotency-Key: nothing definite came back.
    fn retryable(&self) -> bool {
        match self.status {
            None => true,
            Some(StatusCode::SERVICE_UNAVAILABLE) => true,
            Some(StatusCode::CONFLICT) => self.code == "busy",
            _ => false,
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let started = Instant::now();
    let mut reply = Reply {
        started,
        latency: Duration::ZERO,
        status: None,
        code: String::new(),
        retry_after: None,
        problem_json: false,
        body: Value::Null,
        error: String::new(),
        connect_error: false,
        timed_out: false,
    };
    match request.send().await {
        Err(e) => {
            reply.connect_error = e.is_connect();
            reply.timed_out = e.is_timeout();
            reply.error = e.to_string();
        }
        Ok(response) => {
            let status = response.status();
            reply.retry_after =
                response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
            reply.problem_json = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/problem+json"));
            match response.bytes().await {
                Ok(bytes) => {
                    reply.status = Some(status);
                    reply.body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    reply.code = reply.body["code"].as_str().unwrap_or_default().to_owned();
                }
                Err(e) => {
                    reply.timed_out = e.is_timeout();
                    reply.error = format!("reading the body: {e}");
                }
            }
        }
    }
    reply.latency = started.elapsed();
    reply
}

/// Sends until the server gives a definite answer (anything but a transport error, 503 or
/// `busy`), with the same request — so the same Idempotency-Key — each time, backing off;
/// gives up at `deadline`. Returns the last reply and the number of retries.
async fn until_answered(make: impl Fn() -> reqwest::RequestBuilder, deadline: Instant) -> (Reply, usize) {
    let mut backoff = Duration::from_millis(50);
    let mut retries = 0;
    loop {
        let reply = send(make()).await;
        if !reply.retryable() || Instant::now() >= deadline {
            return (reply, retries);
        }
        retries += 1;
        let jitter = Duration::from_millis(rand::random_range(0..50));
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

fn purchase(client: &reqwest::Client, base: &str, buyer: &User, event: &str, key: &str) -> reqwest::RequestBuilder {
    client
        .post(format!("{base}/tickets/purchase"))
        .bearer_auth(&buyer.token)
        .header("Idempotency-Key", key)
        .json(&json!({"event_id": event, "quantity": 1, "payment_method": "pm_card_visa", "include_qr_image": false}))
}

fn hold(client: &reqwest::Client, base: &str, buyer: &User, event: &str, key: &str) -> reqwest::RequestBuilder {
    client
        .post(format!("{base}/events/{event}/holds"))
        .bearer_auth(&buyer.token)
        .header("Idempotency-Key", key)
        .json(&json!({"quantity": 1}))
}

/// A 201 from POST /tickets/purchase.
#[derive(Clone, Debug)]
struct Sale {
    order_id: Uuid,
    amount: i64,
    /// (ticket id, seat)
    tickets: Vec<(Uuid, Option<String>)>,
}

impl Sale {
    fn from_body(body: &Value) -> Self {
        let uuid =
            |v: &Value| v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a uuid in {body}"));
        Sale {
            order_id: uuid(&body["order_id"]),
            amount: body["amount"].as_i64().expect("amount"),
            tickets: body["tickets"]
                .as_array()
                .expect("tickets")
                .iter()
                .map(|t| (uuid(&t["ticket_id"]), t["seat_number"].as_str().map(str::to_owned)))
                .collect(),
        }
    }
}

/// A 201 from POST /events/{id}/holds.
#[derive(Clone, Debug)]
struct Held {
    hold_id: Uuid,
    seats: Vec<String>,
    quantity: i64,
}

impl Held {
    fn from_body(body: &Value) -> Self {
        Held {
            hold_id: body["hold_id"].as_str().and_then(|s| s.parse().ok()).expect("hold_id"),
            seats: body["seats"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            quantity: body["quantity"].as_i64().expect("quantity"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checks against the database
// ---------------------------------------------------------------------------------------------

/// Every acknowledged sale is in the database: its tickets valid on its order, the order
/// purchased, exactly one succeeded payment of the order's amount. And no seat appears in
/// two acknowledged sales.
async fn assert_sales_durable(db: &PgPool, sales: &[Sale]) {
    let mut seats = HashSet::new();
    for sale in sales {
        for (_, seat) in &sale.tickets {
            if let Some(seat) = seat {
                assert!(seats.insert(seat.clone()), "seat {seat} was acknowledged to two buyers");
            }
        }
    }
    let ticket_ids: Vec<Uuid> = sales.iter().flat_map(|s| s.tickets.iter().map(|t| t.0)).collect();
    let rows: Vec<(Uuid, Uuid, String, Option<String>, String)> = sqlx::query_as(
        "SELECT t.ticket_id, t.hold_id, t.status, t.seat_number, h.status
         FROM tickets t JOIN holds h ON h.hold_id = t.hold_id WHERE t.ticket_id = ANY($1)",
    )
    .bind(&ticket_ids)
    .fetch_all(db)
    .await
    .unwrap();
    let stored: HashMap<Uuid, (Uuid, String, Option<String>, String)> =
        rows.into_iter().map(|(t, h, ts, seat, hs)| (t, (h, ts, seat, hs))).collect();
    let order_ids: Vec<Uuid> = sales.iter().map(|s| s.order_id).collect();
    let payments: Vec<(Uuid, String, i64)> =
        sqlx::query_as("SELECT hold_id, status, amount FROM payments WHERE hold_id = ANY($1)")
            .bind(&order_ids)
            .fetch_all(db)
            .await
            .unwrap();
    let mut paid: HashMap<Uuid, Vec<(String, i64)>> = HashMap::new();
    for (hold, status, amount) in payments {
        paid.entry(hold).or_default().push((status, amount));
    }
    for sale in sales {
        for (ticket, seat) in &sale.tickets {
            let Some((hold, status, stored_seat, hold_status)) = stored.get(ticket) else {
                panic!("acknowledged ticket {ticket} (order {}) is not in the database", sale.order_id);
            };
            assert_eq!(*hold, sale.order_id, "ticket {ticket} belongs to another order");
            assert_eq!(status, "valid", "acknowledged ticket {ticket} is {status}");
            assert_eq!(stored_seat, seat, "ticket {ticket} has another seat in the database");
            assert_eq!(hold_status, "purchased", "order {hold} of an acknowledged ticket is {hold_status}");
        }
        let payments = paid.get(&sale.order_id).cloned().unwrap_or_default();
        let succeeded: Vec<i64> = payments.iter().filter(|(s, _)| s == "succeeded").map(|(_, a)| *a).collect();
        assert_eq!(succeeded, vec![sale.amount], "order {}: payments {payments:?}", sale.order_id);
    }
}

/// Every acknowledged hold is in the database, on the same seats.
async fn assert_holds_durable(db: &PgPool, holds: &[Held]) {
    let ids: Vec<Uuid> = holds.iter().map(|h| h.hold_id).collect();
    let rows: Vec<(Uuid, String, i32, Value)> =
        sqlx::query_as("SELECT hold_id, status, quantity, items FROM holds WHERE hold_id = ANY($1)")
            .bind(&ids)
            .fetch_all(db)
            .await
            .unwrap();
    let stored: HashMap<Uuid, (String, i32, Value)> = rows.into_iter().map(|(id, s, q, i)| (id, (s, q, i))).collect();
    for held in holds {
        let Some((status, quantity, items)) = stored.get(&held.hold_id) else {
            panic!("acknowledged hold {} is not in the database", held.hold_id);
        };
        assert!(["active", "purchased", "expired", "released"].contains(&status.as_str()));
        assert_eq!(i64::from(*quantity), held.quantity, "hold {}", held.hold_id);
        let seats: Vec<String> = items["seats"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        assert_eq!(seats, held.seats, "hold {} has other seats in the database", held.hold_id);
    }
}

/// No seat is in two live places: two non-cancelled tickets, two active holds, or an active
/// hold and another order's ticket.
async fn assert_no_seat_twice(db: &PgPool, event: &str) {
    let event: Uuid = event.parse().unwrap();
    let doubles: Vec<(String, i64)> = sqlx::query_as(
        "SELECT seat, count(*) FROM (
             SELECT jsonb_array_elements_text(items->'seats') AS seat FROM holds WHERE event_id = $1 AND status = 'active'
             UNION ALL
             SELECT seat_number FROM tickets WHERE event_id = $1 AND status <> 'cancelled' AND seat_number IS NOT NULL
         ) s GROUP BY seat HAVING count(*) > 1",
    )
    .bind(event)
    .fetch_all(db)
    .await
    .unwrap();
    assert!(doubles.is_empty(), "seats taken twice: {doubles:?}");
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Counts {
    capacity: i64,
    available: i64,
    held: i64,
    sold: i64,
}

async fn engine_counts(client: &reqwest::Client, base: &str, event: &str) -> Result<Counts, String> {
    let reply = send(client.get(format!("{base}/events/{event}/details"))).await;
    if !reply.is(StatusCode::OK) {
        return Err(reply.describe());
    }
    let t = &reply.body["availability"]["total"];
    let n = |k: &str| t[k].as_i64().ok_or_else(|| format!("no {k} in {t}"));
    Ok(Counts { capacity: n("capacity")?, available: n("available")?, held: n("held")?, sold: n("sold")? })
}

/// (seats sold: valid or used tickets; seats held: sum of active holds; active holds past expiry)
async fn db_counts(db: &PgPool, event: &str) -> (i64, i64, i64) {
    let event: Uuid = event.parse().unwrap();
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM tickets WHERE event_id = $1 AND status IN ('valid', 'used')),
                (SELECT coalesce(sum(quantity), 0)::int8 FROM holds WHERE event_id = $1 AND status = 'active'),
                (SELECT count(*) FROM holds WHERE event_id = $1 AND status = 'active' AND expires_at <= now())",
    )
    .bind(event)
    .fetch_one(db)
    .await
    .unwrap()
}

/// Waits (bounded) until the engine's live counts equal the database's, no active hold is
/// past its expiry, and available + held + sold = capacity. Returns the agreed counts.
async fn assert_counts_match(client: &reqwest::Client, base: &str, db: &PgPool, event: &str) -> Counts {
    let deadline = Instant::now() + COUNTS_PATIENCE;
    loop {
        let engine = engine_counts(client, base, event).await;
        let (sold, held, lapsed) = db_counts(db, event).await;
        if let Ok(c) = &engine
            && c.sold == sold
            && c.held == held
            && lapsed == 0
            && c.available + c.held + c.sold == c.capacity
        {
            return *c;
        }
        assert!(
            Instant::now() < deadline,
            "engine and database disagree: engine {engine:?}; database sold {sold}, held {held}, {lapsed} active holds past expiry"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------------------------

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn latency_summary(replies: &[&Reply]) -> String {
    let mut l: Vec<Duration> = replies.iter().map(|r| r.latency).collect();
    l.sort();
    format!(
        "n={} p50={:?} p99={:?} max={:?}",
        l.len(),
        percentile(&l, 0.50),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or_default()
    )
}

fn status_breakdown(replies: &[&Reply]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in replies {
        let key = match r.status {
            Some(s) if r.code.is_empty() => s.as_u16().to_string(),
            Some(s) => format!("{} {}", s.as_u16(), r.code),
            None if r.connect_error => "connect error".into(),
            None if r.timed_out => "client timeout".into(),
            None => "transport error".into(),
        };
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

/// No 5xx but 503; every 503 a problem document with Retry-After.
fn assert_clean_failures(replies: &[&Reply]) {
    for r in replies {
        if let Some(s) = r.status {
            assert!(!s.is_server_error() || s == StatusCode::SERVICE_UNAVAILABLE, "server error: {}", r.describe());
            if s == StatusCode::SERVICE_UNAVAILABLE {
                assert!(r.problem_json, "503 without application/problem+json: {}", r.describe());
                assert!(r.retry_after.is_some(), "503 without Retry-After (in seconds): {}", r.describe());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. kill -9 in a loop
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct BuyerReport {
    sales: Vec<Sale>,
    shop_hold: Option<Held>,
    unexpected: Vec<String>,
    retries: usize,
}

struct CrashCtx {
    client: reqwest::Client,
    base: String,
    event: String,
    sold: AtomicUsize,
    deadline: Instant,
}

/// Buys one seat at a time, each purchase under its own Idempotency-Key, retried through
/// crashes until the server answers; stops at sold out or at its per-buyer limit. The first
/// few buyers also leave one hold unpaid, to expire across the crashes.
async fn crash_buyer(ctx: Arc<CrashCtx>, idx: usize, buyer: User, shopper: bool) -> BuyerReport {
    let mut report = BuyerReport::default();
    let (client, base, event) = (&ctx.client, ctx.base.as_str(), ctx.event.as_str());
    if shopper {
        let key = format!("shop-{idx}");
        let (reply, retries) = until_answered(|| hold(client, base, &buyer, event, &key), ctx.deadline).await;
        report.retries += retries;
        match reply.status {
            Some(StatusCode::CREATED) => report.shop_hold = Some(Held::from_body(&reply.body)),
            Some(StatusCode::CONFLICT) if reply.code == "sold_out" => {}
            _ => report.unexpected.push(format!("hold: {}", reply.describe())),
        }
    }
    for attempt in 0.. {
        if Instant::now() >= ctx.deadline {
            report.unexpected.push("buyer still buying at the deadline".into());
            break;
        }
        let key = format!("buy-{idx}-{attempt}");
        let (reply, retries) = until_answered(|| purchase(client, base, &buyer, event, &key), ctx.deadline).await;
        report.retries += retries;
        match (reply.status, reply.code.as_str()) {
            (Some(StatusCode::CREATED), _) => {
                report.sales.push(Sale::from_body(&reply.body));
                ctx.sold.fetch_add(1, Ordering::AcqRel);
            }
            (Some(StatusCode::CONFLICT), "sold_out" | "limit_exceeded" | "no_adjacent_seats") => break,
            // The hold lapsed while the server was down, and its seat went to someone else:
            // refunded, nothing sold; try again with a new purchase.
            (Some(StatusCode::CONFLICT), "seats_gone" | "hold_not_active") => {}
            _ => report.unexpected.push(format!("purchase: {}", reply.describe())),
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..100))).await;
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loop_keeps_every_acknowledged_sale() {
    const BUYERS: usize = 200;
    const SHOPPERS: usize = 20;
    const ROWS: usize = 30;
    const PER_ROW: usize = 20;
    /// Each kill comes once this many more seats (drawn at random) were sold since the
    /// server last came up, plus a random delay of up to 50 ms: in the middle of the sale,
    /// with purchases in flight.
    const SOLD_BETWEEN_KILLS: std::ops::Range<usize> = 20..60;
    const KILLS: usize = 3;
    let _serial = SERIAL.lock().await;
    let capacity = ROWS * PER_ROW;

    let dir = TempDir::new("crash-loop");
    let db_url = fresh_database().await;
    let spec = ServerSpec::new(&db_url, dir.path(), &[]);
    let mut server = spec.start().await;
    let db = PgPool::connect(&db_url).await.unwrap();
    let client = http_client(BUYERS);
    let base = spec.base();
    let organizer = create_users(&db, 1, Role::Organizer).await.remove(0);
    let buyers = create_users(&db, BUYERS, Role::Customer).await;
    // Short holds, so that unpaid ones expire during the test (across the crashes).
    let event = create_event(
        &client,
        &base,
        &organizer,
        seated_map(ROWS, PER_ROW),
        json!({"per_buyer_limit": 4, "hold_ttl_secs": 8}),
    )
    .await;

    let started = Instant::now();
    let ctx = Arc::new(CrashCtx {
        client: client.clone(),
        base: base.clone(),
        event: event.clone(),
        sold: AtomicUsize::new(0),
        deadline: started + Duration::from_secs(90),
    });
    let tasks: Vec<_> = buyers
        .into_iter()
        .enumerate()
        .map(|(i, buyer)| tokio::spawn(crash_buyer(Arc::clone(&ctx), i, buyer, i < SHOPPERS)))
        .collect();

    let mut kills = Vec::new();
    for _ in 0..KILLS {
        // Capped well below the seats on sale, so the sale is still going at the kill.
        let threshold =
            (ctx.sold.load(Ordering::Acquire) + rand::random_range(SOLD_BETWEEN_KILLS)).min(capacity * 3 / 5);
        let wait_until = Instant::now() + Duration::from_secs(60);
        while ctx.sold.load(Ordering::Acquire) < threshold {
            assert!(Instant::now() < wait_until, "sales stalled below {threshold} seats");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..50))).await;
        let sold_at_kill = ctx.sold.load(Ordering::Acquire);
        let killed_at = started.elapsed();
        server.sigkill();
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..500))).await;
        server = spec.start().await;
        kills.push((killed_at, sold_at_kill, started.elapsed() - killed_at));
    }
    for (i, (_, sold_at_kill, _)) in kills.iter().enumerate() {
        assert!(*sold_at_kill < capacity - SHOPPERS, "kill #{} came after the sale was over", i + 1);
    }

    let mut sales = Vec::new();
    let mut shop_holds = Vec::new();
    let mut unexpected = Vec::new();
    let mut retries = 0;
    for task in tasks {
        let report = tokio::time::timeout(Duration::from_secs(120), task).await.expect("buyers finish").unwrap();
        sales.extend(report.sales);
        shop_holds.extend(report.shop_hold);
        unexpected.extend(report.unexpected);
        retries += report.retries;
    }
    let selling = started.elapsed();
    assert!(
        unexpected.is_empty(),
        "{} unexpected answers, e.g. {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)]
    );

    assert_sales_durable(&db, &sales).await;
    assert_holds_durable(&db, &shop_holds).await;
    assert_no_seat_twice(&db, &event).await;
    // The unpaid holds expire, whichever process was running when their time came.
    let shop_ids: Vec<Uuid> = shop_holds.iter().map(|h| h.hold_id).collect();
    let _ = engine_counts(&client, &base, &event).await; // wakes the event's actor
    let deadline = Instant::now() + COUNTS_PATIENCE;
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM holds WHERE hold_id = ANY($1) AND status <> 'expired'")
                .bind(&shop_ids)
                .fetch_one(&db)
                .await
                .unwrap();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} unpaid holds did not expire");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let counts = assert_counts_match(&client, &base, &db, &event).await;
    assert_eq!(counts.sold as usize, sales.len(), "sold seats are exactly the acknowledged sales");
    spec.assert_no_panic_in_log();

    println!(
        "crash loop: {} seats, {BUYERS} buyers; {} sales acknowledged in {selling:?}; {} unpaid holds expired; \
         {retries} retries (connection errors / 503 while down); final counts {counts:?}",
        capacity,
        sales.len(),
        shop_holds.len()
    );
    for (i, (at, sold, down)) in kills.iter().enumerate() {
        println!("  kill -9 #{} at {at:?} with {sold} seats sold; ready again after {down:?}", i + 1);
    }
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// 2. PostgreSQL outage
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Purchase,
    Hold,
    Details,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_fails_fast_and_recovers() {
    const WORKERS: usize = 24;
    const READERS: usize = 4;
    const BUYERS: usize = 1000;
    const STEADY: Duration = Duration::from_secs(3);
    const OUTAGE: Duration = Duration::from_secs(5);
    /// How long after PostgreSQL is back the service must be selling again.
    const RECOVERY_BOUND: Duration = Duration::from_secs(15);
    let _serial = SERIAL.lock().await;
    let bin_dir = PathBuf::from(required_env("BOXOFFICE_TEST_PG_BIN_DIR"));

    let dir = TempDir::new("db-outage");
    let mut pg = Pg::start(&dir.path().join("pg"), &bin_dir).await;
    // Default timeouts (EVENT_CALL_TIMEOUT_MS 5 s, pool acquire 2 s): the figures printed are
    // what production would see.
    let spec = ServerSpec::new(&pg.url, dir.path(), &[]);
    let server = spec.start().await;
    let base = spec.base();
    let client = http_client(WORKERS * 2);
    let (organizer, buyers) = {
        let db = PgPool::connect(&pg.url).await.unwrap();
        let organizer = create_users(&db, 1, Role::Organizer).await.remove(0);
        let buyers = create_users(&db, BUYERS, Role::Customer).await;
        db.close().await;
        (organizer, Arc::new(buyers))
    };
    let event = create_event(&client, &base, &organizer, general_map(100_000), json!({"per_buyer_limit": 50})).await;

    let stop = Arc::new(AtomicBool::new(false));
    let samples: Arc<Mutex<Vec<(Op, Reply)>>> = Arc::default();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (client, base, event, buyers) = (client.clone(), base.clone(), event.clone(), Arc::clone(&buyers));
            let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
            tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Acquire) {
                    let buyer = &buyers[rand::random_range(0..buyers.len())];
                    let key = format!("w{w}-{n}");
                    let op = match n % 5 {
                        0 | 1 => Op::Purchase,
                        2 | 3 => Op::Hold,
                        _ => Op::Details,
                    };
                    let request = match op {
                        Op::Purchase => purchase(&client, &base, buyer, &event, &key),
                        Op::Hold => hold(&client, &base, buyer, &event, &key),
                        Op::Details => client.get(format!("{base}/events/{event}/details")),
                    };
                    let reply = send(request).await;
                    samples.lock().unwrap().push((op, reply));
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(rand::random_range(50..100))).await;
                }
            })
        })
        .collect();

    // Readers: back-to-back reads that go to PostgreSQL directly (GET /events/{id}/details),
    // so some query is always in flight when the database goes away or comes back.
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (client, base, event) = (client.clone(), base.clone(), event.clone());
            let (stop, samples) = (Arc::clone(&stop), Arc::clone(&samples));
            tokio::spawn(async move {
                while !stop.load(Ordering::Acquire) {
                    let reply = send(client.get(format!("{base}/events/{event}/details"))).await;
                    samples.lock().unwrap().push((Op::Details, reply));
                    tokio::time::sleep(Duration::from_millis(rand::random_range(0..10))).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(STEADY).await;
    let outage_start = Instant::now();
    // The database goes away with queries in flight: a lock first parks the readers' queries
    // (and the journal's writes) for a moment, then a fast shutdown terminates them.
    let mut locker = PgConnection::connect(&pg.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").execute(&mut locker).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.stop().await;
    drop(locker);
    let stopped_in = outage_start.elapsed();
    tokio::time::sleep(OUTAGE).await;
    pg.restart().await;
    let outage_end = Instant::now();

    // Recovered: a purchase and a hold that started after PostgreSQL came back succeeded.
    let recovered_after = loop {
        let done = {
            let samples = samples.lock().unwrap();
            let ok = |op: Op| {
                samples
                    .iter()
                    .filter(|(o, r)| *o == op && r.started >= outage_end && r.is(StatusCode::CREATED))
                    .map(|(_, r)| r.started + r.latency)
                    .min()
            };
            ok(Op::Purchase).zip(ok(Op::Hold)).map(|(a, b)| a.max(b))
        };
        if let Some(at) = done {
            break at - outage_end;
        }
        assert!(
            outage_end.elapsed() < RECOVERY_BOUND,
            "no purchase and hold succeeded within {RECOVERY_BOUND:?} after PostgreSQL came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Some steady traffic after recovery, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Release);
    for w in workers.into_iter().chain(readers) {
        tokio::time::timeout(CLIENT_TIMEOUT + Duration::from_secs(5), w).await.expect("workers stop").unwrap();
    }
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let all: Vec<&Reply> = samples.iter().map(|(_, r)| r).collect();

    let slowest = all.iter().map(|r| r.latency).max().unwrap_or_default();
    let phase = |from: Option<Instant>, to: Option<Instant>| -> Vec<&Reply> {
        all.iter()
            .copied()
            .filter(|r| from.is_none_or(|f| r.started >= f) && to.is_none_or(|t| r.started < t))
            .collect()
    };
    let (before, during, after) =
        (phase(None, Some(outage_start)), phase(Some(outage_start), Some(outage_end)), phase(Some(outage_end), None));
    let during_503: Vec<&Reply> = during.iter().copied().filter(|r| r.is(StatusCode::SERVICE_UNAVAILABLE)).collect();
    let sales: Vec<Sale> = samples
        .iter()
        .filter(|(op, r)| *op == Op::Purchase && r.is(StatusCode::CREATED))
        .map(|(_, r)| Sale::from_body(&r.body))
        .collect();
    let holds: Vec<Held> = samples
        .iter()
        .filter(|(op, r)| *op == Op::Hold && r.is(StatusCode::CREATED))
        .map(|(_, r)| Held::from_body(&r.body))
        .collect();
    // Figures first, so that a failure still shows them.
    println!(
        "database outage: PostgreSQL stopped in {stopped_in:?} (after a 300 ms lock), down {:?} in all; {} requests \
         ({} purchases and {} holds acknowledged)",
        outage_end - outage_start,
        all.len(),
        sales.len(),
        holds.len()
    );
    println!("  before:  {} {:?}", latency_summary(&before), status_breakdown(&before));
    println!("  during:  {} {:?}", latency_summary(&during), status_breakdown(&during));
    for op in [Op::Purchase, Op::Hold, Op::Details] {
        let these: Vec<&Reply> = samples
            .iter()
            .filter(|(o, r)| *o == op && r.started >= outage_start && r.started < outage_end)
            .map(|(_, r)| r)
            .collect();
        println!("    {op:?}: {} {:?}", latency_summary(&these), status_breakdown(&these));
    }
    println!("    503 only: {}", latency_summary(&during_503));
    println!("  after:   {} {:?}", latency_summary(&after), status_breakdown(&after));
    println!(
        "  recovered (a purchase and a hold succeed) {recovered_after:?} after PostgreSQL was back; slowest request {slowest:?}"
    );

    // Failing fast and cleanly: no hang, no dropped connection, no 500, 503s well formed.
    for r in &all {
        assert!(r.status.is_some(), "the server dropped a request: {}", r.describe());
        assert!(r.latency <= HANG_BOUND, "a request hung: {}", r.describe());
    }
    assert_clean_failures(&all);
    assert!(!during_503.is_empty(), "the outage went unnoticed: {:?}", status_breakdown(&during));
    // Failing fast: once the database is known to be gone, a sale is refused at once
    // (503 `unavailable`, from the journal's breaker), not left to time out. Requests that
    // started in the first second after the stop may still have raced the breaker.
    let settled = outage_start + stopped_in + Duration::from_secs(1);
    let actor_replies: Vec<&Reply> = samples
        .iter()
        .filter(|(op, r)| *op != Op::Details && r.started >= settled && r.started < outage_end)
        .map(|(_, r)| r)
        .collect();
    let timed_out: Vec<String> = actor_replies.iter().filter(|r| r.code == "timeout").map(|r| r.describe()).collect();
    assert!(timed_out.is_empty(), "sales waited out the call timeout during the outage: {timed_out:?}");
    assert!(
        actor_replies.iter().any(|r| r.is(StatusCode::SERVICE_UNAVAILABLE) && r.code == "unavailable"),
        "no sale was refused with 503 unavailable during the outage: {:?}",
        status_breakdown(&actor_replies)
    );

    // Nothing acknowledged was lost.
    let db = PgPool::connect(&pg.url).await.unwrap();
    assert_sales_durable(&db, &sales).await;
    assert_holds_durable(&db, &holds).await;
    let counts = assert_counts_match(&client, &base, &db, &event).await;
    spec.assert_no_panic_in_log();
    println!("  final counts {counts:?}");
    db.close().await;
    drop(server);
    pg.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Overload
// ---------------------------------------------------------------------------------------------

const OVERLOAD_CLIENTS: usize = 2000;
const OVERLOAD_MAX_IN_FLIGHT: &str = "64";
const OVERLOAD_RUN: Duration = Duration::from_secs(5);
/// Requests per client at most (bounds the total).
const OVERLOAD_PER_CLIENT: usize = 200;

/// One client per buyer, all at once (ramped over ~0.5 s), each asking for one seat after
/// another until `OVERLOAD_RUN` is over, sold out or at its limit. Shed, a polite client
/// waits what Retry-After says (with jitter); an impatient one comes back in 10–50 ms.
async fn overload_phase(
    client: &reqwest::Client,
    base: &str,
    event: &str,
    buyers: &[User],
    polite: bool,
) -> Vec<Reply> {
    let deadline = Instant::now() + OVERLOAD_RUN;
    let mut tasks = Vec::with_capacity(buyers.len());
    for (i, buyer) in buyers.iter().enumerate() {
        let (client, base, event, buyer) = (client.clone(), base.to_owned(), event.to_owned(), buyer.clone());
        tasks.push(tokio::spawn(async move {
            let mut replies = Vec::new();
            for n in 0..OVERLOAD_PER_CLIENT {
                if Instant::now() >= deadline {
                    break;
                }
                let reply = send(hold(&client, &base, &buyer, &event, &format!("c{i}-{n}"))).await;
                let (status, code, after) = (reply.status, reply.code.clone(), reply.retry_after);
                replies.push(reply);
                match (status, code.as_str()) {
                    (Some(StatusCode::CONFLICT), "sold_out" | "limit_exceeded") => break,
                    (Some(StatusCode::SERVICE_UNAVAILABLE), _) | (None, _) => {
                        let pause = if polite {
                            Duration::from_secs(after.unwrap_or(1)).mul_f64(rand::random_range(0.5..1.5))
                        } else {
                            Duration::from_millis(rand::random_range(10..50))
                        };
                        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
                    }
                    _ => {}
                }
            }
            replies
        }));
        // Ramp up over ~0.5 s rather than 2,000 SYNs at once.
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let mut replies = Vec::new();
    for t in tasks {
        let bound = CLIENT_TIMEOUT + OVERLOAD_RUN + Duration::from_secs(10);
        replies.extend(tokio::time::timeout(bound, t).await.expect("clients stop").unwrap());
    }
    replies
}

/// Prints a phase's figures, then checks it: shed with 503 `overloaded` + Retry-After, no
/// 5xx but 503, no hang, no seat held twice, every 201 durable, counts agree.
async fn check_overload_phase(
    name: &str,
    replies: &[Reply],
    elapsed: Duration,
    ctx: (&reqwest::Client, &str, &PgPool, &str),
    capacity: usize,
) {
    let (client, base, db, event) = ctx;
    let all: Vec<&Reply> = replies.iter().collect();
    let shed: Vec<&Reply> =
        all.iter().copied().filter(|r| r.is(StatusCode::SERVICE_UNAVAILABLE) && r.code == "overloaded").collect();
    // Past admission control: all answers but the shed (a 503 `timeout` was admitted, and
    // then waited for its event too long).
    let admitted: Vec<&Reply> = all
        .iter()
        .copied()
        .filter(|r| r.status.is_some() && !(r.is(StatusCode::SERVICE_UNAVAILABLE) && r.code == "overloaded"))
        .collect();
    let created: Vec<Held> =
        all.iter().filter(|r| r.is(StatusCode::CREATED)).map(|r| Held::from_body(&r.body)).collect();
    let timeouts = all.iter().filter(|r| r.is(StatusCode::SERVICE_UNAVAILABLE) && r.code == "timeout").count();
    let breakdown = status_breakdown(&all);
    println!("  {name}: {} requests in {elapsed:?}: {breakdown:?}", all.len());
    println!(
        "    admitted: {} ({:.0}/s); holds created {} ({:.0}/s)",
        latency_summary(&admitted),
        admitted.len() as f64 / elapsed.as_secs_f64(),
        created.len(),
        created.len() as f64 / elapsed.as_secs_f64()
    );
    println!("    shed (503 overloaded): {}", latency_summary(&shed));

    assert_clean_failures(&all);
    assert!(!shed.is_empty(), "{name}: nothing was shed: {breakdown:?}");
    for r in &all {
        assert!(!r.timed_out && r.latency <= HANG_BOUND, "{name}: a request hung: {}", r.describe());
    }
    // Seats in acknowledged holds are all different, and all durable.
    let mut seats = HashSet::new();
    for h in &created {
        for s in &h.seats {
            assert!(seats.insert(s.clone()), "{name}: seat {s} held twice");
        }
    }
    assert!(seats.len() <= capacity, "{name}: oversold: {} seats held of {capacity}", seats.len());
    assert_holds_durable(db, &created).await;
    assert_no_seat_twice(db, event).await;
    let counts = assert_counts_match(client, base, db, event).await;
    // A hold answered 503 `timeout` may still have been made (the client learns it by
    // retrying with its Idempotency-Key); nothing else is held.
    let held = counts.held as usize;
    assert!(
        held >= created.len() && held <= created.len() + timeouts,
        "{name}: {held} seats held for {} acknowledged holds and {timeouts} timeouts",
        created.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_sheds_with_503_and_keeps_latency_bounded() {
    const ROWS: usize = 60;
    const PER_ROW: usize = 100;
    let _serial = SERIAL.lock().await;
    let capacity = ROWS * PER_ROW;

    let dir = TempDir::new("overload");
    let db_url = fresh_database().await;
    let spec = ServerSpec::new(&db_url, dir.path(), &[("EVENT_MAX_IN_FLIGHT", OVERLOAD_MAX_IN_FLIGHT)]);
    let server = spec.start().await;
    let base = spec.base();
    let db = PgPool::connect(&db_url).await.unwrap();
    let client = http_client(OVERLOAD_CLIENTS);
    let organizer = create_users(&db, 1, Role::Organizer).await.remove(0);
    let buyers = create_users(&db, OVERLOAD_CLIENTS, Role::Customer).await;
    // Three phases, each on an event of its own; per event, 2,000 buyers × 4 = 8,000 seats
    // wanted, 6,000 on sale. Cold: the first requests for the event are the rush (a sale
    // opening right after a deploy). Warm: one hold was made and released before.
    let phases = [
        ("cold, clients honouring Retry-After", false, true),
        ("warm, clients honouring Retry-After", true, true),
        ("warm, impatient clients (back in 10-50 ms)", true, false),
    ];
    let rss_before = server.peak_rss_kib();
    println!(
        "overload: {OVERLOAD_CLIENTS} clients on one event for {OVERLOAD_RUN:?}, \
         EVENT_MAX_IN_FLIGHT={OVERLOAD_MAX_IN_FLIGHT}, {capacity} seats"
    );
    let warmer = create_users(&db, 1, Role::Customer).await.remove(0);
    for (name, warm, polite) in phases {
        let map = seated_map(ROWS, PER_ROW);
        let event = create_event(&client, &base, &organizer, map, json!({"per_buyer_limit": 4})).await;
        engine_counts(&client, &base, &event).await.expect("event is on sale");
        if warm {
            let r = send(hold(&client, &base, &warmer, &event, "warm-up")).await;
            assert!(r.is(StatusCode::CREATED), "warm-up hold: {}", r.describe());
            let id = r.body["hold_id"].as_str().unwrap();
            let r = send(client.delete(format!("{base}/holds/{id}")).bearer_auth(&warmer.token)).await;
            assert!(r.is(StatusCode::OK), "warm-up release: {}", r.describe());
        }
        let started = Instant::now();
        let replies = overload_phase(&client, &base, &event, &buyers, polite).await;
        check_overload_phase(name, &replies, started.elapsed(), (&client, &base, &db, &event), capacity).await;
    }
    let peak_rss = server.peak_rss_kib();
    println!(
        "  server peak RSS (VmHWM): {} MiB (before the load: {} MiB)",
        peak_rss.unwrap_or(0) / 1024,
        rss_before.unwrap_or(0) / 1024
    );
    spec.assert_no_panic_in_log();
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// 4. SIGTERM under load
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_work() {
    const BUYERS: usize = 100;
    const ROWS: usize = 20;
    const PER_ROW: usize = 20;
    /// How long a drained shutdown may take.
    const EXIT_BOUND: Duration = Duration::from_secs(20);
    let _serial = SERIAL.lock().await;
    let capacity = ROWS * PER_ROW;

    let dir = TempDir::new("sigterm");
    let db_url = fresh_database().await;
    let spec = ServerSpec::new(&db_url, dir.path(), &[]);
    let mut server = spec.start().await;
    let base = spec.base();
    let db = PgPool::connect(&db_url).await.unwrap();
    let client = http_client(BUYERS);
    let organizer = create_users(&db, 1, Role::Organizer).await.remove(0);
    let buyers = create_users(&db, BUYERS, Role::Customer).await;
    let event =
        create_event(&client, &base, &organizer, seated_map(ROWS, PER_ROW), json!({"per_buyer_limit": 10})).await;

    let sold = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = buyers
        .into_iter()
        .enumerate()
        .map(|(i, buyer)| {
            let (client, base, event, sold) = (client.clone(), base.clone(), event.clone(), Arc::clone(&sold));
            tokio::spawn(async move {
                let mut replies = Vec::new();
                for attempt in 0..200 {
                    let reply = send(purchase(&client, &base, &buyer, &event, &format!("t{i}-{attempt}"))).await;
                    let end = reply.status.is_none() || reply.code == "sold_out" || reply.code == "limit_exceeded";
                    if reply.is(StatusCode::CREATED) {
                        sold.fetch_add(1, Ordering::AcqRel);
                    }
                    replies.push(reply);
                    if end {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(rand::random_range(0..50))).await;
                }
                replies
            })
        })
        .collect();

    let threshold = capacity / 4 + rand::random_range(0..capacity / 4);
    let wait_until = Instant::now() + Duration::from_secs(60);
    while sold.load(Ordering::Acquire) < threshold {
        assert!(Instant::now() < wait_until, "sales stalled below {threshold}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(rand::random_range(0..200))).await;
    let term_at = Instant::now();
    let sold_at_term = sold.load(Ordering::Acquire);
    let killed = Command::new("kill").args(["-TERM", &server.pid.to_string()]).status().expect("run kill");
    assert!(killed.success());
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(term_at.elapsed() < EXIT_BOUND, "the server did not exit within {EXIT_BOUND:?} of SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exited_after = term_at.elapsed();
    assert!(status.success(), "the server exited with {status}:\n{}", spec.log_tail());

    let mut replies = Vec::new();
    for t in tasks {
        replies.extend(
            tokio::time::timeout(CLIENT_TIMEOUT + Duration::from_secs(5), t).await.expect("buyers stop").unwrap(),
        );
    }
    // After shutdown: connection errors, not 5xx.
    let leftover = create_users(&db, 1, Role::Customer).await.remove(0);
    for n in 0..5 {
        let r = send(purchase(&client, &base, &leftover, &event, &format!("late-{n}"))).await;
        assert!(r.status.is_none() && r.connect_error, "after shutdown: {}", r.describe());
    }
    let all: Vec<&Reply> = replies.iter().collect();
    for r in &all {
        assert!(r.status.is_none_or(|s| !s.is_server_error()), "5xx around shutdown: {}", r.describe());
        assert!(!r.timed_out, "a request hung: {}", r.describe());
    }
    let answered_after_term: Vec<&Reply> =
        all.iter().copied().filter(|r| r.status.is_some() && r.started + r.latency >= term_at).collect();
    let created_after_term = answered_after_term.iter().filter(|r| r.is(StatusCode::CREATED)).count();

    // Restart: every 2xx is there.
    server = spec.start().await;
    let sales: Vec<Sale> = all.iter().filter(|r| r.is(StatusCode::CREATED)).map(|r| Sale::from_body(&r.body)).collect();
    assert_sales_durable(&db, &sales).await;
    assert_no_seat_twice(&db, &event).await;
    let counts = assert_counts_match(&client, &base, &db, &event).await;
    assert_eq!(counts.sold as usize, sales.len(), "sold seats are exactly the acknowledged sales");
    spec.assert_no_panic_in_log();

    println!(
        "sigterm: SIGTERM with {sold_at_term} seats sold; exit 0 after {exited_after:?}; {} answers finished after the \
         signal ({created_after_term} of them 201); {} sales acknowledged in all, all durable; {:?}",
        answered_after_term.len(),
        sales.len(),
        status_breakdown(&all)
    );
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// 5. A stalled database (a lock, a hung query): the request timeout answers
// ---------------------------------------------------------------------------------------------

/// A request stuck behind a stalled database is cut off by REQUEST_TIMEOUT_MS (default
/// 10 s; 1 s here to keep the test short — same code path). The answer must still be a
/// problem document with Retry-After, like every other 503, and the service must carry on
/// once the stall ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_database_times_out_with_a_problem_document() {
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new("stall");
    let db_url = fresh_database().await;
    let spec = ServerSpec::new(&db_url, dir.path(), &[("REQUEST_TIMEOUT_MS", "1000")]);
    let server = spec.start().await;
    let base = spec.base();
    let db = PgPool::connect(&db_url).await.unwrap();
    let client = http_client(8);
    let organizer = create_users(&db, 1, Role::Organizer).await.remove(0);
    let event = create_event(&client, &base, &organizer, general_map(100), json!({})).await;
    engine_counts(&client, &base, &event).await.expect("event is on sale");

    // Stall: every query on `events` waits behind this lock.
    let mut locker = PgConnection::connect(&db_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").execute(&mut locker).await.unwrap();
    let stalled = send(client.get(format!("{base}/events/{event}/details"))).await;
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let after = send(client.get(format!("{base}/events/{event}/details"))).await;
    println!("stalled database: {} / then {}", stalled.describe(), after.describe());

    assert!(stalled.latency < REQUEST_TIMEOUT + Duration::from_secs(2), "{}", stalled.describe());
    assert!(stalled.is(StatusCode::SERVICE_UNAVAILABLE), "{}", stalled.describe());
    assert!(stalled.problem_json, "the request timeout's 503 is not a problem document: {}", stalled.describe());
    assert!(stalled.retry_after.is_some(), "the request timeout's 503 has no Retry-After: {}", stalled.describe());
    assert!(after.is(StatusCode::OK), "{}", after.describe());
    spec.assert_no_panic_in_log();
    drop(server);
}
