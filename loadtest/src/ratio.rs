//! `loadtest http-ratio`: how much of what the HTTP stack alone can do the
//! server's hottest writes get, measured side by side in one run on one machine.
//!
//! Setup (not timed): the echo server (`loadtest echo-server`, a child process),
//! an organizer, `--buyers` buyers, and two pools of published general-admission
//! events, one for holds and one for one-shot purchases, sized from
//! `--expected-max-rate` so that no event sells out and no buyer reaches the
//! per-buyer limit (50) while measuring: request *i* goes to buyer `i mod B` on
//! event `i / (50 B)`, so every (buyer, event) pair gets at most 50 requests.
//!
//! Then each endpoint in turn, `--measure-secs` each, by the same closed-loop
//! client: `--connections` requests in flight on one tokio current-thread runtime
//! (one thread, like `wrk -t1`):
//! - `POST /echo` on the echo server (a purchase-sized JSON body parsed and echoed);
//! - `POST /events/{id}/holds` `{"quantity":1}`;
//! - `POST /tickets/purchase` (quantity 1, `pm_card_visa`, an `Idempotency-Key`).
//!
//! With `--wrk PATH` the same three again with wrk and a generated Lua script that
//! rotates tokens and events the same way. The report gives req/s (2xx answers
//! only), p50/p99, the CPU of each process, and the ratios holds/echo and
//! purchases/echo against the issue's targets (0.30 and 0.12; a miss is shown,
//! not failed). A run fails when more than 1 % of requests were not answered 2xx
//! or an event pool ran out.

use crate::checks::Check;
use crate::cli::{Cli, RatioArgs};
use crate::http::{Api, Failure};
use crate::report::{LatencyRow, Report, Timeline, fact};
use crate::server::Target;
use crate::setup::{Buyer, register};
use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Method;
use hyper::header::HeaderValue;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use uuid::Uuid;

/// The sales window's per-buyer limit on the ratio's events (the server's highest).
const PER_BUYER_LIMIT: u64 = 50;
/// The issue's targets: holds and one-shot purchases as a share of the echo server.
pub const HOLDS_TARGET: f64 = 0.30;
pub const PURCHASES_TARGET: f64 = 0.12;
/// Registrations in flight during setup.
const REGISTER_CONCURRENCY: usize = 16;
/// Share of requests that may be answered other than 2xx before the run fails.
const MAX_ERROR_SHARE: f64 = 0.01;
/// How long the echo server may take to say where it listens.
const ECHO_START_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Echo,
    Holds,
    Purchases,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Echo, Kind::Holds, Kind::Purchases];

    fn name(self) -> &'static str {
        match self {
            Kind::Echo => "echo",
            Kind::Holds => "holds",
            Kind::Purchases => "purchases",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Echo => "POST /echo (bare axum, JSON parse + echo)",
            Kind::Holds => "POST /events/{id}/holds (GA, quantity 1)",
            Kind::Purchases => "POST /tickets/purchase (GA, quantity 1, pm_card_visa)",
        }
    }
}

/// What one endpoint's requests look like: request `i` goes to `paths[e]` with
/// `bodies[e]` as buyer `i mod B`, where `e = (i / per_event) mod paths.len()`.
struct Plan {
    kind: Kind,
    base: String,
    paths: Vec<String>,
    bodies: Vec<Bytes>,
    tokens: Arc<Vec<HeaderValue>>,
    /// Requests per event before moving on (buyers × the per-buyer limit).
    per_event: u64,
    /// Requests the pool takes in all, from `offset`.
    capacity: u64,
    /// Requests already sent to this pool (by an earlier client).
    offset: u64,
    run_id: String,
}

impl Plan {
    fn target(&self, i: u64) -> (usize, Option<&HeaderValue>) {
        let e = ((i / self.per_event.max(1)) % self.paths.len() as u64) as usize;
        let auth = (!self.tokens.is_empty()).then(|| &self.tokens[(i % self.tokens.len() as u64) as usize]);
        (e, auth)
    }
}

/// One endpoint measured by one client.
#[derive(Serialize, Clone, Debug)]
pub struct Measured {
    pub endpoint: &'static str,
    pub client: &'static str,
    pub secs: f64,
    /// 2xx answers.
    pub ok: u64,
    /// Answered, not 2xx (status → count).
    pub refused: BTreeMap<u16, u64>,
    /// No answer (timeouts, transport errors).
    pub failed: u64,
    /// 2xx answers per second.
    pub per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The pool of events ran out before the time did.
    pub pool_exhausted: bool,
    /// CPU of each process while measuring, in % of one core.
    pub cpu_percent: BTreeMap<&'static str, f64>,
    #[serde(skip)]
    histogram: Option<Histogram<u64>>,
}

impl Measured {
    fn requests(&self) -> u64 {
        self.ok + self.failed + self.refused.values().sum::<u64>()
    }

    fn not_ok(&self) -> u64 {
        self.failed + self.refused.values().sum::<u64>()
    }
}

/// The echo server child process.
struct Echo {
    url: String,
    child: Option<tokio::process::Child>,
}

impl Echo {
    async fn start(given: Option<&str>) -> anyhow::Result<Self> {
        if let Some(url) = given {
            return Ok(Self { url: crate::http::loopback_base(url)?, child: None });
        }
        let exe = std::env::current_exe().context("finding this binary to start the echo server")?;
        let mut child = tokio::process::Command::new(exe)
            .args(["echo-server", "--bind", "127.0.0.1:0", "--max-secs", "7200"])
            .stdout(std::process::Stdio::piped())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the echo server")?;
        let stdout = child.stdout.take().context("the echo server's stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(ECHO_START_TIMEOUT, lines.next_line())
            .await
            .context("the echo server did not say where it listens")??
            .context("the echo server exited before listening")?;
        let addr = line.strip_prefix("listening on ").with_context(|| format!("echo server said {line:?}"))?;
        Ok(Self { url: format!("http://{addr}"), child: Some(child) })
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    async fn stop(mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Some(pid) = child.id() {
                // SIGTERM: a graceful stop.
                // SAFETY: kill(2) on our own child's pid, which it still is (not yet waited for).
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }
}

pub async fn run(cli: &Cli, target: &Target, args: &RatioArgs) -> anyhow::Result<Report> {
    if args.buyers == 0 {
        bail!("--buyers must be positive");
    }
    let started_at = chrono::Utc::now().to_rfc3339();
    let timeout = Duration::from_millis(cli.target.timeout_ms);
    let api = Api::new(&target.base_url, timeout)?;
    let echo = Echo::start(args.echo_url.as_deref()).await?;
    let result = measure_all(cli, target, args, &api, &echo, started_at).await;
    echo.stop().await;
    result
}

async fn measure_all(
    cli: &Cli,
    target: &Target,
    args: &RatioArgs,
    api: &Api,
    echo: &Echo,
    started_at: String,
) -> anyhow::Result<Report> {
    let run_id = format!("{:08x}", rand::random::<u32>());
    eprintln!("loadtest: http-ratio setup: echo server at {}; registering {} buyers…", echo.url, args.buyers);
    let setup_started = Instant::now();
    let organizer =
        register(api, &format!("organizer-{run_id}@loadtest.example"), "Loadtest Organizer", "organizer", &run_id)
            .await
            .context("registering the organizer")?;
    let tokens = Arc::new(register_many(api, &run_id, args.buyers).await?);
    let clients = if args.wrk.is_some() { 2 } else { 1 };
    let per_event = u64::from(args.buyers) * PER_BUYER_LIMIT;
    let wanted = args.expected_max_rate.max(1) * args.measure_secs * clients;
    let events_per_pool = wanted.div_ceil(per_event).max(1);
    eprintln!(
        "loadtest: creating 2 × {events_per_pool} general-admission events of {per_event} places \
         (room for {wanted} requests per endpoint)…"
    );
    let hold_events = create_events(api, &organizer, &run_id, "holds", events_per_pool, per_event).await?;
    let purchase_events = create_events(api, &organizer, &run_id, "purchases", events_per_pool, per_event).await?;
    let setup_secs = setup_started.elapsed().as_secs_f64();

    let mut plans: Vec<Plan> = Kind::ALL
        .iter()
        .map(|&kind| {
            let (base, paths, bodies, tokens) = match kind {
                Kind::Echo => (
                    echo.url.clone(),
                    vec!["/echo".to_owned()],
                    vec![Bytes::from(crate::echo::sample_body(Uuid::new_v4()))],
                    Arc::new(Vec::new()),
                ),
                Kind::Holds => (
                    api_base(target),
                    hold_events.iter().map(|e| format!("/events/{e}/holds")).collect(),
                    hold_events.iter().map(|_| Bytes::from_static(br#"{"quantity":1}"#)).collect(),
                    tokens.clone(),
                ),
                Kind::Purchases => (
                    api_base(target),
                    purchase_events.iter().map(|_| "/tickets/purchase".to_owned()).collect(),
                    purchase_events.iter().map(|e| Bytes::from(purchase_body(*e))).collect(),
                    tokens.clone(),
                ),
            };
            let capacity = if kind == Kind::Echo { u64::MAX } else { per_event * paths.len() as u64 };
            Plan { kind, base, paths, bodies, tokens, per_event, capacity, offset: 0, run_id: run_id.clone() }
        })
        .collect();

    let mut results: Vec<Measured> = Vec::new();
    let secs = Duration::from_secs(args.measure_secs);
    let timeout = Duration::from_millis(cli.target.timeout_ms);
    for plan in &mut plans {
        if crate::interrupted() {
            break;
        }
        let (pids, before) = begin_phase(plan, "built-in client", secs, args.connections, target, echo).await;
        let mut m = drive(plan, args.connections as usize, secs, timeout).await?;
        m.cpu_percent = pids.percent(&before, m.secs);
        plan.offset += m.requests();
        eprintln!("loadtest:   {}", line(&m));
        results.push(m);
    }
    if let Some(wrk) = &args.wrk {
        let dir = std::env::temp_dir().join(format!("loadtest-wrk-{run_id}"));
        std::fs::create_dir_all(&dir)?;
        for plan in &mut plans {
            if crate::interrupted() {
                break;
            }
            let (pids, before) = begin_phase(plan, "wrk, 1 thread", secs, args.connections, target, echo).await;
            let mut m = run_wrk(wrk, &dir, plan, args.connections, secs).await?;
            m.cpu_percent = pids.percent(&before, m.secs);
            // A process's CPU includes its waited-for children's: here, wrk's.
            if let Some(ours) = m.cpu_percent.remove("loadtest") {
                m.cpu_percent.insert("loadtest+wrk", ours);
            }
            // wrk may have had requests in flight that it did not count.
            plan.offset += m.requests() + args.connections;
            eprintln!("loadtest:   {}", line(&m));
            results.push(m);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(report(cli, target, args, started_at, setup_secs, events_per_pool, per_event, &results))
}

/// `http://host:port` of the (first) server.
fn api_base(target: &Target) -> String {
    crate::http::loopback_base(&target.base_url).unwrap_or_else(|_| target.base_url.clone())
}

fn purchase_body(event: Uuid) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"event_id": event, "quantity": 1, "payment_method": "pm_card_visa", "include_qr_image": false}),
    )
    .expect("request bodies serialise")
}

async fn register_many(api: &Api, run_id: &str, count: u32) -> anyhow::Result<Vec<HeaderValue>> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..REGISTER_CONCURRENCY.min(count as usize) {
        let (api, run_id, next) = (api.clone(), run_id.to_owned(), next.clone());
        tasks.spawn(async move {
            let mut made: Vec<(u64, Buyer)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= u64::from(count) || crate::interrupted() {
                    return Ok::<_, anyhow::Error>(made);
                }
                let email = format!("ratio-{run_id}-{i}@loadtest.example");
                made.push((i, register(&api, &email, &format!("Ratio buyer {i}"), "customer", &run_id).await?));
            }
        });
    }
    let mut all = Vec::with_capacity(count as usize);
    while let Some(done) = tasks.join_next().await {
        all.extend(done.context("a registration task panicked")??);
    }
    if all.len() < count as usize {
        bail!("registered {} of {count} buyers", all.len());
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, b)| b.auth()).collect())
}

/// Creates and publishes `count` events of one general-admission section of
/// `places`, on sale now with the highest per-buyer limit; warms their actors.
async fn create_events(
    api: &Api,
    organizer: &Buyer,
    run_id: &str,
    what: &str,
    count: u64,
    places: u64,
) -> anyhow::Result<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(count as usize);
    for n in 0..count {
        let body = json!({
            "title": format!("Loadtest http-ratio {what} {run_id} #{}", n + 1),
            "description": "Created by boxoffice-loadtest http-ratio.",
            "category": "music",
            "venue_name": "Loadtest Arena",
            "venue_address": "127.0.0.1",
            "event_date": chrono::Utc::now() + chrono::Duration::days(30),
            "currency": "JPY",
            "seat_map": {"tiers": [{"code": "A", "price": 5000}],
                         "sections": [{"name": "Floor", "tier": "A", "kind": "general", "capacity": places}]},
            "sales_window": {"per_buyer_limit": PER_BUYER_LIMIT, "hold_ttl_secs": 3600},
        });
        let created = api.post_json("/events/create", Some(&organizer.auth()), &body).await?;
        if created.status != 201 {
            bail!("creating an event: {} {}", created.status, String::from_utf8_lossy(&created.body));
        }
        let id: Uuid = created.json::<serde_json::Value>()?["event_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .context("the created event has no event_id")?;
        let published =
            api.send(Method::POST, &format!("/events/{id}/publish"), Some(&organizer.auth()), None, None).await?;
        if !published.ok() {
            bail!("publishing an event: {} {}", published.status, String::from_utf8_lossy(&published.body));
        }
        let details = api.get(&format!("/events/{id}/details"), None).await?;
        if !details.ok() {
            bail!("GET /events/{id}/details answered {}", details.status);
        }
        ids.push(id);
    }
    Ok(ids)
}

/// The longest wait for the server to go idle before a phase.
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// The window over which idleness is judged.
const SETTLE_WINDOW: Duration = Duration::from_millis(250);
/// Idle: this many windows in a row with the server and PostgreSQL together
/// under [`SETTLE_BUSY_PERCENT`] of a core.
const SETTLE_IDLE_WINDOWS: u32 = 4;
/// See [`SETTLE_IDLE_WINDOWS`].
const SETTLE_BUSY_PERCENT: f64 = 10.0;

/// Announces a phase, waits for the server to go idle (saying so when it had
/// to), and reads the CPU counters the phase's figures start from.
async fn begin_phase(
    plan: &Plan,
    client: &str,
    secs: Duration,
    connections: u64,
    target: &Target,
    echo: &Echo,
) -> (Pids, Vec<Option<f64>>) {
    eprintln!("loadtest: {} for {} s ({client}, {connections} connections)…", plan.kind.describe(), secs.as_secs());
    let pids = Pids::new(target, echo);
    let waited = pids.settle().await;
    if waited > 1.5 {
        eprintln!("loadtest:   waited {waited:.1} s for the server and PostgreSQL to go idle first");
    }
    let before = pids.snapshot();
    (pids, before)
}

/// Processes whose CPU is reported per endpoint.
struct Pids {
    list: Vec<(&'static str, u32, bool)>,
}

impl Pids {
    fn new(target: &Target, echo: &Echo) -> Self {
        let mut list = vec![("loadtest", std::process::id(), false)];
        if let Some(pid) = target.server_pid {
            list.push(("server", pid, false));
        }
        if let Some(pid) = target.postgres_pid {
            list.push(("postgres", pid, true));
        }
        if let Some(pid) = echo.pid() {
            list.push(("echo", pid, false));
        }
        Self { list }
    }

    fn snapshot(&self) -> Vec<Option<f64>> {
        self.list
            .iter()
            .map(|&(_, pid, tree)| if tree { crate::cpu::process_tree_cpu(pid) } else { crate::cpu::process_cpu(pid) })
            .collect()
    }

    /// Waits (at most [`SETTLE_MAX`]) until the server and PostgreSQL are idle, so
    /// one phase does not measure the work another left behind (the outbox relay
    /// catches up after a rush, for one); the seconds waited.
    async fn settle(&self) -> f64 {
        let started = std::time::Instant::now();
        let mut idle_windows = 0;
        while started.elapsed() < SETTLE_MAX && idle_windows < SETTLE_IDLE_WINDOWS {
            let before = self.snapshot();
            tokio::time::sleep(SETTLE_WINDOW).await;
            let busy: f64 = self
                .percent(&before, SETTLE_WINDOW.as_secs_f64())
                .into_iter()
                .filter(|(name, _)| matches!(*name, "server" | "postgres"))
                .map(|(_, percent)| percent)
                .sum();
            idle_windows = if busy < SETTLE_BUSY_PERCENT { idle_windows + 1 } else { 0 };
        }
        started.elapsed().as_secs_f64()
    }

    fn percent(&self, before: &[Option<f64>], secs: f64) -> BTreeMap<&'static str, f64> {
        let after = self.snapshot();
        self.list
            .iter()
            .zip(before.iter().zip(after))
            .filter_map(|(&(name, ..), (b, a))| Some((name, 100.0 * (a? - (*b)?) / secs.max(1e-9))))
            .collect()
    }
}

/// Per-connection tallies, merged at the end.
struct Tally {
    histogram: Histogram<u64>,
    ok: u64,
    refused: BTreeMap<u16, u64>,
    failed: u64,
}

/// The built-in client: `connections` requests in flight on one current-thread
/// runtime in its own thread, for `secs`.
async fn drive(plan: &Plan, connections: usize, secs: Duration, timeout: Duration) -> anyhow::Result<Measured> {
    let plan = Arc::new(Plan {
        kind: plan.kind,
        base: plan.base.clone(),
        paths: plan.paths.clone(),
        bodies: plan.bodies.clone(),
        tokens: plan.tokens.clone(),
        per_event: plan.per_event,
        capacity: plan.capacity,
        offset: plan.offset,
        run_id: plan.run_id.clone(),
    });
    let kind = plan.kind;
    let thread = std::thread::Builder::new().name("http-ratio-client".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(client_loop(plan, connections, secs, timeout))
    })?;
    let (tally, elapsed, exhausted) = tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the client thread panicked"))??;
    Ok(measured(kind, "built-in", tally, elapsed, exhausted))
}

async fn client_loop(
    plan: Arc<Plan>,
    connections: usize,
    secs: Duration,
    timeout: Duration,
) -> anyhow::Result<(Tally, f64, bool)> {
    let api = Api::new(&plan.base, timeout)?;
    // Open every connection first.
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let api = api.clone();
        warm.spawn(async move { api.get("/healthz", None).await.map(|_| ()) });
    }
    while let Some(r) = warm.join_next().await {
        r?.map_err(|e| anyhow::anyhow!("opening connections to {}: {e}", plan.base))?;
    }
    let next = Arc::new(AtomicU64::new(plan.offset));
    let exhausted = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + secs;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (api, plan, next, exhausted) = (api.clone(), plan.clone(), next.clone(), exhausted.clone());
        tasks.spawn(async move {
            let mut t = Tally {
                histogram: Histogram::new(3).expect("a histogram"),
                ok: 0,
                refused: BTreeMap::new(),
                failed: 0,
            };
            while Instant::now() < deadline && !crate::interrupted() {
                let i = next.fetch_add(1, Relaxed);
                if i >= plan.capacity {
                    exhausted.store(true, Relaxed);
                    break;
                }
                let (e, auth) = plan.target(i);
                let key = (plan.kind == Kind::Purchases).then(|| format!("ratio-{}-{i}", plan.run_id));
                let sent = Instant::now();
                let exchange =
                    api.send(Method::POST, &plan.paths[e], auth, Some(plan.bodies[e].clone()), key.as_deref()).await;
                let _ = t.histogram.record(sent.elapsed().as_micros() as u64);
                match exchange {
                    Ok(r) if r.ok() => t.ok += 1,
                    Ok(r) => *t.refused.entry(r.status).or_default() += 1,
                    Err(Failure::Timeout | Failure::Transport(_)) => t.failed += 1,
                }
            }
            t
        });
    }
    let mut all =
        Tally { histogram: Histogram::new(3).expect("a histogram"), ok: 0, refused: BTreeMap::new(), failed: 0 };
    while let Some(t) = tasks.join_next().await {
        let t = t?;
        all.histogram.add(&t.histogram).context("merging histograms")?;
        all.ok += t.ok;
        all.failed += t.failed;
        for (s, n) in t.refused {
            *all.refused.entry(s).or_default() += n;
        }
    }
    Ok((all, started.elapsed().as_secs_f64(), exhausted.load(Relaxed)))
}

fn measured(kind: Kind, client: &'static str, t: Tally, secs: f64, exhausted: bool) -> Measured {
    let ms = |q: f64| t.histogram.value_at_quantile(q) as f64 / 1000.0;
    Measured {
        endpoint: kind.name(),
        client,
        secs,
        ok: t.ok,
        per_s: t.ok as f64 / secs.max(1e-9),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        max_ms: t.histogram.max() as f64 / 1000.0,
        refused: t.refused,
        failed: t.failed,
        pool_exhausted: exhausted,
        cpu_percent: BTreeMap::new(),
        histogram: Some(t.histogram),
    }
}

/// The Lua script wrk runs: the plan's requests, from its offset on.
fn wrk_script(plan: &Plan) -> String {
    use std::fmt::Write;
    let mut s = String::from("-- Generated by `loadtest http-ratio`: rotates buyer tokens and events.\n");
    let list = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(",\n  ");
    let _ = writeln!(
        s,
        "local tokens = {{\n  {}\n}}",
        list(&mut plan.tokens.iter().map(|t| format!("\"{}\"", t.to_str().unwrap_or_default())))
    );
    let _ = writeln!(s, "local paths = {{\n  {}\n}}", list(&mut plan.paths.iter().map(|p| format!("\"{p}\""))));
    let _ = writeln!(
        s,
        "local bodies = {{\n  {}\n}}",
        list(&mut plan.bodies.iter().map(|b| format!("[[{}]]", String::from_utf8_lossy(b))))
    );
    let _ = writeln!(s, "local per_event = {}", plan.per_event.max(1));
    let _ = writeln!(s, "local i = {}", plan.offset);
    let _ = writeln!(s, "local key = {}", if plan.kind == Kind::Purchases { "true" } else { "false" });
    let _ = writeln!(s, "local run_id = \"{}\"", plan.run_id);
    s.push_str(
        r#"
request = function()
  local e = math.floor(i / per_event) % #paths
  local headers = { ["Content-Type"] = "application/json" }
  if #tokens > 0 then
    headers["Authorization"] = tokens[(i % #tokens) + 1]
  end
  if key then
    headers["Idempotency-Key"] = "wrk-" .. run_id .. "-" .. i
  end
  i = i + 1
  return wrk.format("POST", paths[e + 1], headers, bodies[e + 1])
end
"#,
    );
    s
}

async fn run_wrk(wrk: &Path, dir: &Path, plan: &Plan, connections: u64, secs: Duration) -> anyhow::Result<Measured> {
    let script = dir.join(format!("{}.lua", plan.kind.name()));
    std::fs::write(&script, wrk_script(plan))?;
    let url = format!("{}{}", plan.base, plan.paths[0]);
    let output = tokio::process::Command::new(wrk)
        .arg("-t1")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", secs.as_secs()))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(&url)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", wrk.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("{} failed ({}): {text}{}", wrk.display(), output.status, String::from_utf8_lossy(&output.stderr));
    }
    parse_wrk(plan.kind, &text).with_context(|| format!("reading wrk's output:\n{text}"))
}

/// A wrk duration (`812.00us`, `1.21ms`, `2.00s`) in milliseconds.
fn wrk_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

fn parse_wrk(kind: Kind, text: &str) -> anyhow::Result<Measured> {
    let mut requests = None;
    let mut secs = None;
    let (mut p50, mut p99, mut max) = (None, None, None);
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => p50 = wrk_ms(v),
            ["99%", v] => p99 = wrk_ms(v),
            ["Latency", _avg, _stdev, m, ..] => max = wrk_ms(m),
            [n, "requests", "in", d, ..] => {
                requests = n.parse::<u64>().ok();
                secs = wrk_ms(d.trim_end_matches(',')).map(|ms| ms / 1000.0);
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => non_2xx = n.parse().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                socket_errors = rest.iter().filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok()).sum();
            }
            _ => {}
        }
    }
    let requests = requests.context("no `N requests in T` line")?;
    let secs = secs.context("no run time")?;
    let ok = requests.saturating_sub(non_2xx);
    let mut refused = BTreeMap::new();
    if non_2xx > 0 {
        // wrk does not say which statuses.
        refused.insert(0, non_2xx);
    }
    Ok(Measured {
        endpoint: kind.name(),
        client: "wrk",
        secs,
        ok,
        refused,
        failed: socket_errors,
        per_s: ok as f64 / secs.max(1e-9),
        p50_ms: p50.context("no 50% latency line (--latency)")?,
        p99_ms: p99.context("no 99% latency line (--latency)")?,
        max_ms: max.unwrap_or(0.0),
        pool_exhausted: false,
        cpu_percent: BTreeMap::new(),
        histogram: None,
    })
}

fn line(m: &Measured) -> String {
    let cpu: Vec<String> = m.cpu_percent.iter().map(|(k, v)| format!("{k} {v:.0} %")).collect();
    format!(
        "{} ({}): {} req/s, p50 {:.2} ms, p99 {:.2} ms; {} not 2xx, {} unanswered; CPU {}{}",
        m.endpoint,
        m.client,
        crate::report::thousands(m.per_s.round() as u64),
        m.p50_ms,
        m.p99_ms,
        m.refused.values().sum::<u64>(),
        m.failed,
        if cpu.is_empty() { "-".into() } else { cpu.join(", ") },
        if m.pool_exhausted { " (EVENTS RAN OUT: raise --expected-max-rate)" } else { "" }
    )
}

/// holds/echo and purchases/echo of one client's results.
fn ratios(results: &[Measured], client: &str) -> Option<(f64, f64)> {
    let rate = |e: &str| results.iter().find(|m| m.client == client && m.endpoint == e).map(|m| m.per_s);
    let echo = rate("echo").filter(|r| *r > 0.0)?;
    Some((rate("holds")? / echo, rate("purchases")? / echo))
}

fn verdict(ratio: f64, target: f64) -> &'static str {
    if ratio >= target { "target met" } else { "MISS" }
}

#[allow(clippy::too_many_arguments)]
fn report(
    cli: &Cli,
    target: &Target,
    args: &RatioArgs,
    started_at: String,
    setup_secs: f64,
    events_per_pool: u64,
    places: u64,
    results: &[Measured],
) -> Report {
    let mut facts = vec![fact(
        "setup",
        format!(
            "{} buyers, 2 × {events_per_pool} general-admission events of {} places, per-buyer limit {PER_BUYER_LIMIT}; \
             {setup_secs:.1} s (not timed)",
            args.buyers,
            crate::report::thousands(places)
        ),
    )];
    for m in results {
        let full = line(m);
        let value = full.split_once("): ").map_or(full.as_str(), |(_, v)| v);
        facts.push(fact(&format!("{} ({})", m.endpoint, m.client), value));
    }
    let mut figures = serde_json::Map::new();
    for client in ["built-in", "wrk"] {
        if let Some((holds, purchases)) = ratios(results, client) {
            facts.push(fact(
                &format!("ratios ({client})"),
                format!(
                    "holds/echo {holds:.3} ({}, target ≥ {HOLDS_TARGET}); purchases/echo {purchases:.3} ({}, target ≥ {PURCHASES_TARGET})",
                    verdict(holds, HOLDS_TARGET),
                    verdict(purchases, PURCHASES_TARGET)
                ),
            ));
            figures.insert(
                client.replace('-', "_"),
                json!({"holds_over_echo": holds, "purchases_over_echo": purchases,
                       "endpoints": results.iter().filter(|m| m.client == client).collect::<Vec<_>>()}),
            );
        }
    }
    figures.insert("targets".into(), json!({"holds_over_echo": HOLDS_TARGET, "purchases_over_echo": PURCHASES_TARGET}));
    let requests: u64 = results.iter().map(Measured::requests).sum();
    let not_ok: u64 = results.iter().map(Measured::not_ok).sum();
    let exhausted: Vec<String> =
        results.iter().filter(|m| m.pool_exhausted).map(|m| format!("{} ({})", m.endpoint, m.client)).collect();
    let checks = vec![
        Check::new(
            "every endpoint was measured",
            results.len() == Kind::ALL.len() * if args.wrk.is_some() { 2 } else { 1 }
                && results.iter().all(|m| m.ok > 0),
            format!("{} measurements, each with 2xx answers", results.len()),
        ),
        Check::new(
            "requests answered 2xx (at most 1 % not)",
            (not_ok as f64) <= MAX_ERROR_SHARE * requests as f64,
            format!("{not_ok} of {requests} requests not answered 2xx"),
        ),
        Check::new(
            "no event ran out (no sell-out, no per-buyer limit during the run)",
            exhausted.is_empty(),
            if exhausted.is_empty() {
                "every request had room".to_owned()
            } else {
                format!("ran out: {}; raise --expected-max-rate", exhausted.join(", "))
            },
        ),
    ];
    let latency = results
        .iter()
        .filter_map(|m| m.histogram.as_ref().map(|h| LatencyRow::new(&format!("{} ({})", m.endpoint, m.client), h)))
        .collect();
    let passed = checks.iter().all(|c| c.passed || !c.critical);
    Report {
        tool: "boxoffice-loadtest",
        scenario: "http-ratio".into(),
        mode: format!(
            "closed loop, {} connections on one thread, {} s per endpoint{}",
            args.connections,
            args.measure_secs,
            if args.wrk.is_some() { "; built-in client, then wrk -t1" } else { "" }
        ),
        target: target.description.clone(),
        started_at,
        config: json!({
            "measure_secs": args.measure_secs, "connections": args.connections, "buyers": args.buyers,
            "expected_max_rate": args.expected_max_rate, "wrk": args.wrk, "timeout_ms": cli.target.timeout_ms,
        }),
        facts,
        figures: serde_json::Value::Object(figures),
        rates: Vec::new(),
        outcomes: Vec::new(),
        latency,
        timeline: Timeline::default(),
        soak: None,
        checks,
        cpu: None,
        server_metrics: None,
        passed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK_OUTPUT: &str = "Running 2s test @ http://127.0.0.1:8090/echo
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  310.12us  12.50ms   90.00%
    Req/Sec    61.20k     2.10k   64.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.10ms
     90%    1.40ms
     99%    2.31ms
  121862 requests in 2.00s, 25.10MB read
  Non-2xx or 3xx responses: 12
Requests/sec:  60931.00
Transfer/sec:     12.55MB
";

    #[test]
    fn wrk_output_is_read() {
        let m = parse_wrk(Kind::Echo, WRK_OUTPUT).expect("parsed");
        assert_eq!(m.ok, 121_850);
        assert_eq!(m.refused.values().sum::<u64>(), 12);
        assert!((m.secs - 2.0).abs() < 1e-9);
        assert!((m.p50_ms - 0.812).abs() < 1e-9);
        assert!((m.p99_ms - 2.31).abs() < 1e-9);
        assert!((m.max_ms - 12.5).abs() < 1e-9);
        assert_eq!(wrk_ms("2.00s"), Some(2000.0));
        assert_eq!(wrk_ms("1.50m"), Some(90_000.0));
        assert_eq!(wrk_ms("x"), None);
    }

    #[test]
    fn every_buyer_gets_at_most_the_limit_per_event() {
        let plan = Plan {
            kind: Kind::Holds,
            base: "http://127.0.0.1:1".into(),
            paths: vec!["/a".into(), "/b".into(), "/c".into()],
            bodies: vec![Bytes::new(); 3],
            tokens: Arc::new((0..4).map(|t| HeaderValue::from_str(&format!("Bearer {t}")).unwrap()).collect()),
            per_event: 4 * PER_BUYER_LIMIT,
            capacity: 3 * 4 * PER_BUYER_LIMIT,
            offset: 0,
            run_id: "r".into(),
        };
        let mut uses: BTreeMap<(usize, String), u64> = BTreeMap::new();
        for i in 0..plan.capacity {
            let (e, auth) = plan.target(i);
            *uses.entry((e, auth.unwrap().to_str().unwrap().to_owned())).or_default() += 1;
        }
        assert_eq!(uses.len(), 12);
        assert!(uses.values().all(|&n| n == PER_BUYER_LIMIT), "{uses:?}");
        let script = wrk_script(&plan);
        assert!(script.contains("\"Bearer 3\"") && script.contains("local per_event = 200"), "{script}");
        assert!(script.contains("paths[e + 1]"));
    }

    #[test]
    fn ratios_are_per_client() {
        let m = |endpoint, client, per_s| Measured {
            endpoint,
            client,
            secs: 1.0,
            ok: 1,
            refused: BTreeMap::new(),
            failed: 0,
            per_s,
            p50_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
            pool_exhausted: false,
            cpu_percent: BTreeMap::new(),
            histogram: None,
        };
        let results = [m("echo", "built-in", 1000.0), m("holds", "built-in", 300.0), m("purchases", "built-in", 100.0)];
        let (h, p) = ratios(&results, "built-in").expect("ratios");
        assert!((h - 0.3).abs() < 1e-9 && (p - 0.1).abs() < 1e-9);
        assert!(ratios(&results, "wrk").is_none());
        assert_eq!(verdict(0.3, HOLDS_TARGET), "target met");
        assert_eq!(verdict(0.1, PURCHASES_TARGET), "MISS");
    }
}
