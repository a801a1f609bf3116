//! Command-line interface. Connection, time-cap and output flags are global (they
//! work before or after `seed-search`); the sale flags belong to the default
//! command, the flash sale and its sibling scenarios.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "loadtest",
    version,
    about = "Load generator for boxoffice: a flash sale (default), a hold storm, a browse mix, and search figures",
    long_about = "Load generator for boxoffice.\n\n\
        Without a subcommand it runs a sale scenario (--scenario, default flash-sale) against --url, or \
        against a server it starts itself with --spawn. `seed-search` inserts published events straight \
        into PostgreSQL and measures GET /events/search.\n\n\
        Traffic goes only to loopback addresses. The sale stops when sold out or after --duration seconds. \
        Writes report.json and report.html to --out-dir and exits non-zero when a check fails."
)]
pub struct Cli {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub sale: SaleArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Insert published events straight into PostgreSQL, then measure GET /events/search.
    SeedSearch(SearchArgs),
    /// Several nodes (--spawn, --nodes >= 2): SIGKILL an event's owner, time the first
    /// successful hold through another node, restart the node; repeat.
    Failover(FailoverArgs),
    /// A bare axum server that parses and echoes a purchase-sized JSON body (POST /echo):
    /// the baseline `http-ratio` compares boxoffice with.
    EchoServer(EchoArgs),
    /// In one run: the echo server, POST /events/{id}/holds and POST /tickets/purchase (GA,
    /// quantity 1, rotating buyers), each driven by the same closed-loop client; req/s,
    /// p50/p99 and the ratios holds/echo and purchases/echo.
    HttpRatio(RatioArgs),
}

#[derive(Args, Debug, Clone)]
pub struct EchoArgs {
    /// Address to listen on (loopback only; port 0 picks a free one, printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub bind: String,
    /// Stop after this many seconds, whatever happens.
    #[arg(long, default_value_t = 3_600)]
    pub max_secs: u64,
}

#[derive(Args, Debug, Clone)]
pub struct RatioArgs {
    /// Measured seconds per endpoint (echo, holds, purchases), per client.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub measure_secs: u64,
    /// Connections of the closed-loop client (each one request in flight).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4_096))]
    pub connections: u64,
    /// Buyers whose tokens the requests rotate through (registered during setup; each
    /// may hold 50 places per event).
    #[arg(long, default_value_t = 500)]
    pub buyers: u32,
    /// Requests per second the fastest endpoint might reach: sizes the events so that no
    /// event sells out and no buyer reaches a limit during the run.
    #[arg(long, default_value_t = 40_000)]
    pub expected_max_rate: u64,
    /// Also measure with this `wrk` binary (one thread, --connections, a generated Lua
    /// script rotating buyer tokens), after the built-in client.
    #[arg(long, value_name = "PATH")]
    pub wrk: Option<PathBuf>,
    /// Echo server to use instead of starting one (`loadtest echo-server`), http://127.0.0.1:PORT.
    #[arg(long, value_name = "URL")]
    pub echo_url: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct FailoverArgs {
    /// Kills measured.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Holds sold on the event before each kill (acknowledged, then checked in the database).
    #[arg(long, default_value_t = 50)]
    pub holds_before: u32,
    /// Pause between probe holds after a kill, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub probe_ms: u64,
}

/// Which server, and how long anything may take.
#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// Base URL of a running server (loopback only).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Start the server binary on embedded defaults (fresh data directory under the system temp
    /// directory, a free port, AUTH_RATE_LIMIT_PER_MINUTE=1000000) and stop it (SIGTERM) at the end.
    #[arg(long, global = true)]
    pub spawn: bool,
    /// The server binary for --spawn (default: `boxoffice` beside this binary, else target/release/boxoffice).
    #[arg(long, global = true, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// PostgreSQL the server uses (loopback only): enables the SQL checks and is required by seed-search.
    /// With --spawn it is also handed to the server as DATABASE_URL; without it, --spawn reads the
    /// embedded cluster's address from the data directory it created.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Keep the spawned server's data directory (and its PostgreSQL cluster files).
    #[arg(long, global = true)]
    pub keep_server_data: bool,
    /// With --spawn: start this many server nodes on one PostgreSQL (the first node's
    /// embedded cluster, or --database-url) and spread every request over them in turn,
    /// as a load balancer would.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub nodes: u32,
    /// With --spawn: the nodes' lease time to live (LEASE_TTL_MS), which bounds failover.
    #[arg(long, global = true, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(500..=600_000))]
    pub lease_ttl_ms: u64,
    /// Server process id, to report its CPU time (found automatically with --spawn).
    #[arg(long, global = true, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// PostgreSQL postmaster process id, to report its CPU time (found automatically with --spawn).
    #[arg(long, global = true, value_name = "PID")]
    pub postgres_pid: Option<u32>,
    /// Cap on the measured phase, in seconds (the sale also ends when sold out).
    #[arg(long, global = true, default_value_t = 120)]
    pub duration: u64,
    /// Per-request timeout, in milliseconds.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Tokio worker threads of the generator (default: one per core).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
}

/// Where results go.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Directory for report.json and report.html.
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    pub out_dir: PathBuf,
    /// No live progress bar (a line every 5 s instead).
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Also write the JSON report here; `-` writes it to stdout (the human summary then goes to stderr).
    #[arg(long, global = true, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Every buyer rushes at the opening moment: hold 1-4 seats, pay, repeat until sold out.
    FlashSale,
    /// Holds and releases as fast as possible; nothing is bought.
    HoldStorm,
    /// Searches and event details mixed with purchases.
    Browse,
    /// A flash sale of many events at once (--events, default 200), the seats split
    /// evenly between them; with --nodes, the events spread over the nodes.
    ManyEvents,
    /// The flash sale on general-admission pools: --seats places split over --ga-sections
    /// sections; a basket holds 1-4 places in one section, then pays; until sold out.
    Ga,
    /// --queue-buyers join an event's waiting room within --join-window-secs before its
    /// opening (and --late-join-ratio of them after it), are admitted and buy one place
    /// each; the same rush without the room first, for comparison (needs --spawn).
    WaitingRoom,
}

impl SaleArgs {
    /// How many events the sale runs.
    pub fn event_count(&self) -> u32 {
        self.events.unwrap_or(if self.scenario == Scenario::ManyEvents { DEFAULT_MANY_EVENTS } else { 1 })
    }
}

/// Events of the `many-events` scenario unless --events says otherwise.
pub const DEFAULT_MANY_EVENTS: u32 = 200;

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::FlashSale => "flash-sale",
            Scenario::HoldStorm => "hold-storm",
            Scenario::Browse => "browse",
            Scenario::ManyEvents => "many-events",
            Scenario::Ga => "ga",
            Scenario::WaitingRoom => "waiting-room",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct SaleArgs {
    #[arg(long, value_enum, default_value_t = Scenario::FlashSale)]
    pub scenario: Scenario,
    /// Seats on sale: of the event, or over every event (--events).
    #[arg(long, default_value_t = 20_000)]
    pub seats: u32,
    /// Events on sale at once, each with --seats / --events seats and its own buyers
    /// (default: 200 for many-events, 1 otherwise).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub events: Option<u32>,
    /// Sections the seats are spread over.
    #[arg(long, default_value_t = 10)]
    pub sections: u32,
    /// Seats per row.
    #[arg(long, default_value_t = 50)]
    pub seats_per_row: u32,
    /// ga: general-admission sections the places (--seats) are split over.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub ga_sections: u32,
    /// Fail the run (exit 1) when the mean of orders per second is below this (like a k6 threshold).
    #[arg(long, value_name = "PER_SECOND")]
    pub min_rate: Option<f64>,
    /// Fail the run (exit 1) when the basket latency p99 is above this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub p99_max: Option<f64>,
    /// Buyers registered before the sale.
    #[arg(long, default_value_t = 5_000)]
    pub buyers: u32,
    /// The sales window's per-buyer ticket limit (held + bought).
    #[arg(long, default_value_t = 4)]
    pub per_buyer_limit: u32,
    /// Most seats in one hold (each basket takes 1 to this many, within the buyer's limit).
    #[arg(long, default_value_t = 4)]
    pub max_per_hold: u32,
    /// Closed loop: baskets in flight at once (the default mode).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Open loop: start this many baskets per second on a fixed schedule, whatever the responses;
    /// latency is measured from each basket's intended start (coordinated omission corrected).
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Open loop: most baskets in flight before new arrivals wait (their latency still counts from
    /// the schedule).
    #[arg(long, default_value_t = 20_000)]
    pub max_in_flight: usize,
    /// Send at most this many requests at once during the sale, over as many kept-alive
    /// connections, as a load balancer's upstream pool does; baskets beyond them wait in the
    /// generator (in an open loop their latency still counts from the schedule). 0: one
    /// connection per request in flight, so an open loop past capacity opens thousands.
    #[arg(long, default_value_t = 0)]
    pub upstream_connections: usize,
    /// Buy through the one-shot POST /tickets/purchase instead of hold + pay.
    #[arg(long)]
    pub one_shot: bool,
    /// Share of baskets that name explicit seats (the rest ask for best available).
    #[arg(long, default_value_t = 0.5)]
    pub explicit_ratio: f64,
    /// browse: share of operations that are searches or event details.
    #[arg(long, default_value_t = 0.7)]
    pub browse_ratio: f64,
    /// Seat picks per basket after lost races (seats_taken, no_adjacent_seats).
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
    /// Retries of one request on 503/429 (honouring Retry-After), timeouts and transport errors.
    #[arg(long, default_value_t = 5)]
    pub max_retries: u32,
    /// Longest wait before a retry, in milliseconds (Retry-After is honoured up to this, with jitter).
    #[arg(long, default_value_t = 2_000)]
    pub retry_cap_ms: u64,
    /// The sale opens this many seconds after setup.
    #[arg(long, default_value_t = 3)]
    pub lead_secs: u64,
    /// The sales window's hold time to live.
    #[arg(long, default_value_t = 600)]
    pub hold_ttl_secs: u32,
    /// Registrations in flight during setup (each costs the server an argon2id hash).
    #[arg(long, default_value_t = 16)]
    pub register_concurrency: usize,
    /// Cap on setup (registration), in seconds.
    #[arg(long, default_value_t = 900)]
    pub setup_timeout_secs: u64,
    /// Live seat-map viewers (GET /events/{id}/live) on the first event during the sale.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=20_000))]
    pub watchers: u32,
    /// hold-storm: stop after this many successful holds.
    #[arg(long, default_value_t = 500_000)]
    pub storm_holds: u64,
    /// Random seed (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub room: RoomArgs,
}

/// The `waiting-room` scenario.
#[derive(Args, Debug, Clone)]
pub struct RoomArgs {
    /// Buyers of the waiting-room scenario (each buys one place; inserted straight into
    /// PostgreSQL, their tokens signed with the spawned server's key).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub queue_buyers: u32,
    /// Buyers join within this many seconds before the opening.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub join_window_secs: u64,
    /// Share of buyers who join after the opening instead (spread over as long again):
    /// their join order against their admission order is the rank correlation reported.
    #[arg(long, default_value_t = 0.1)]
    pub late_join_ratio: f64,
    /// The room's admissions per minute, or `auto`.
    #[arg(long, default_value = "auto")]
    pub room_rate: String,
    /// How long an admission lasts, seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u32).range(5..=3600))]
    pub admission_ttl_secs: u32,
    /// Skip the run without the room (the comparison).
    #[arg(long)]
    pub no_baseline: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SearchArgs {
    /// Published events to insert.
    #[arg(long, default_value_t = 100_000)]
    pub events: u32,
    /// Measure only: do not insert (reuse events seeded earlier).
    #[arg(long)]
    pub skip_seed: bool,
    /// Search requests measured.
    #[arg(long, default_value_t = 5_000)]
    pub requests: u32,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Requests sent first and not measured.
    #[arg(long, default_value_t = 200)]
    pub warmup: u32,
    /// Random seed of the query mix.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}
