//! Configuration: every setting is a command-line flag and an environment
//! variable (a `.env` file is read too), declared once in [`ServeArgs`]. clap
//! parses them and generates `boxoffice --help` from the same declarations, so
//! the help cannot drift from what the code reads. [`Settings::from_args`] then
//! validates them once at start, with messages that name the variable at fault.
//! Secrets are `SecretString`s: they cannot be logged by accident.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod trusted_proxies;

pub use trusted_proxies::{IpRange, TrustedProxies};

/// Longest key id accepted.
pub const MAX_KID_LEN: usize = 16;

/// `boxoffice [serve] [SETTINGS]`, or `boxoffice user create …`.
#[derive(Parser, Debug)]
#[command(
    name = "boxoffice",
    version,
    about = "A ticket-sales engine built for flash sales",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings of `serve`, the default command.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// Manage accounts in the configured database, whether or not the server is running.
    #[command(subcommand)]
    User(UserCommand),
    /// Check the money ledger: per event, charges, refunds, tickets sold × price and
    /// the difference (and, with Stripe, the provider's PaymentIntents against the
    /// ledger). Exits 1 on any unexplained difference or stranded money.
    Reconcile(Box<ReconcileArgs>),
}

/// `boxoffice reconcile`: the ledger check, on the database the settings name.
#[derive(Args, Debug, Clone)]
pub struct ReconcileArgs {
    /// Only this event.
    #[arg(long)]
    pub event: Option<uuid::Uuid>,
    /// Money in flight (a charge without tickets yet, a refund not yet confirmed)
    /// for longer than this counts as stranded, seconds.
    #[arg(long, default_value_t = 300)]
    pub grace_secs: u64,
    #[command(flatten)]
    pub settings: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account (e.g. the first admin). The password is read from stdin, one
    /// line; the new user's id is printed.
    Create(UserCreateArgs),
}

/// `boxoffice user create`.
#[derive(Args, Debug, Clone)]
pub struct UserCreateArgs {
    /// The account's email (unique, case-insensitive).
    #[arg(long)]
    pub email: String,
    /// The account's role.
    #[arg(long, value_parser = ["admin", "organizer", "staff", "customer"])]
    pub role: String,
    /// Display name (1-100 characters); unset = the part of the email before `@`.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Where the data is: settings shared by `serve` and `user`.
#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// PostgreSQL URL; unset = run a private cluster under BOXOFFICE_DATA_DIR.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Where the embedded PostgreSQL cluster and generated secrets live.
    #[arg(long, env = "BOXOFFICE_DATA_DIR", default_value = "./data")]
    pub boxoffice_data_dir: PathBuf,
    /// Directory with initdb, pg_ctl and postgres for the embedded cluster; unset = search PATH, pg_config and /usr/lib/postgresql.
    #[arg(long, env = "BOXOFFICE_PG_BIN_DIR")]
    pub boxoffice_pg_bin_dir: Option<PathBuf>,
}

/// Where the data is, validated: the database URL (`None` = the embedded cluster in
/// `data_dir/postgres`, from binaries in `pg_bin_dir` or found on the machine).
#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    pub database_url: Option<SecretString>,
    pub data_dir: PathBuf,
    pub pg_bin_dir: Option<PathBuf>,
}

impl DatabaseSettings {
    fn from_args(args: &DatabaseArgs) -> Self {
        Self {
            database_url: secret(&args.database_url),
            data_dir: args.boxoffice_data_dir.clone(),
            pg_bin_dir: args.boxoffice_pg_bin_dir.clone().filter(|d| !d.as_os_str().is_empty()),
        }
    }
}

/// `boxoffice user create`, parsed (the email, name and password are checked by the
/// same rules as `POST /auth/register` when it runs).
#[derive(Clone, Debug)]
pub struct UserCreate {
    pub email: String,
    /// `admin`, `organizer`, `staff` or `customer`.
    pub role: String,
    pub name: Option<String>,
    pub database: DatabaseSettings,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    Serve(Box<Settings>),
    UserCreate(UserCreate),
    /// `boxoffice reconcile`: the server's settings, one event or all, and the grace
    /// after which money in flight counts as stranded.
    Reconcile {
        settings: Box<Settings>,
        event: Option<uuid::Uuid>,
        grace: Duration,
    },
}

/// Every setting of the server. Each flag's value may also come from the
/// environment variable of the same name in capitals (shown by `--help`); a flag
/// given on the command line wins.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Connection pool size.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub database_max_connections: u32,
    /// Redis for the outbox relay and caches; unset = run without Redis.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// SMTP server for notification email: smtp://user:pass@host:port (?tls=required for STARTTLS) or smtps://…; unset = write emails to the log.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of notification email, like `boxoffice <tickets@example.com>`; required with SMTP_URL.
    #[arg(long, env = "SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// Base URL put before links in emails (https://tickets.example.com); unset = bare paths.
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Stripe secret key; unset = the built-in test payment provider.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    /// Signing secret of the Stripe webhook endpoint.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<String>,
    /// Stripe API base URL (e.g. a local localstripe); unset = Stripe's.
    #[arg(long, env = "STRIPE_API_BASE")]
    pub stripe_api_base: Option<String>,
    /// Stripe publishable key (pk_...): the web app's checkout then uses Stripe Elements; unset = the test-card form.
    #[arg(long, env = "STRIPE_PUBLISHABLE_KEY")]
    pub stripe_publishable_key: Option<String>,
    /// Serve the web app's files from this directory instead of the copies built into the binary (development).
    #[arg(long, env = "WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Key that signs ticket QR codes (HMAC-SHA256); unset = generated and kept in the data dir.
    #[arg(long, env = "QR_SIGNING_KEY", hide_env_values = true)]
    pub qr_signing_key: Option<String>,
    /// Id of QR_SIGNING_KEY, written into every code (1-16 ASCII letters or digits), so keys can rotate.
    #[arg(long, env = "QR_KEY_ID", default_value = "k1")]
    pub qr_key_id: String,
    /// Keys that signed earlier codes and still verify them: `kid:key` pairs separated by commas.
    #[arg(long, env = "QR_RETIRED_KEYS", hide_env_values = true)]
    pub qr_retired_keys: Option<String>,
    /// HS256 key for access tokens, at least 32 bytes; unset = generated and kept in the data dir.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// `iss` of access tokens.
    #[arg(long, env = "JWT_ISSUER", default_value = "boxoffice")]
    pub jwt_issuer: String,
    /// `aud` of access tokens.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "boxoffice-api")]
    pub jwt_audience: String,
    /// Access token lifetime, seconds.
    #[arg(long, env = "JWT_ACCESS_TTL_SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub jwt_access_ttl_secs: u64,
    /// Refresh token lifetime, seconds (7 days).
    #[arg(long, env = "REFRESH_TTL_SECS", default_value_t = 604_800, value_parser = clap::value_parser!(u64).range(1..))]
    pub refresh_ttl_secs: u64,
    /// Mark the refresh cookie Secure (false only for plain-HTTP development).
    #[arg(long, env = "COOKIE_SECURE", default_value_t = true, action = clap::ArgAction::Set)]
    pub cookie_secure: bool,
    /// argon2 password hashes/verifications computed at once (19 MiB each); unset = the number of CPUs. Callers past it wait up to 5 s, then get 503.
    #[arg(long, env = "PASSWORD_HASH_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..))]
    pub password_hash_concurrency: Option<u32>,
    /// Login/register attempts per client IP and per email per minute.
    #[arg(long, env = "AUTH_RATE_LIMIT_PER_MINUTE", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_rate_limit_per_minute: u32,
    /// Waiting-room joins per client IP per minute (`POST /events/{id}/queue`).
    #[arg(long, env = "QUEUE_JOINS_PER_IP_PER_MINUTE", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue_joins_per_ip_per_minute: u32,
    /// How often an event's owner opens its waiting room and admits the next in line, milliseconds.
    #[arg(long, env = "WAITING_ROOM_TICK_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub waiting_room_tick_ms: u64,
    /// Proxies whose X-Forwarded-For is believed: IPs or CIDRs separated by commas (10.0.0.0/8,::1); unset = none, the TCP peer is the client.
    #[arg(long, env = "TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// Who may sell: `open` (anyone may sign up as organizer), `approval` (organizers sign up and draft events, but publish only once an admin approves them) or `closed` (only admins make organizers).
    #[arg(long, env = "ORGANIZER_SIGNUP", value_enum, default_value_t = OrganizerSignup::Open)]
    pub organizer_signup: OrganizerSignup,
    /// Requests one event may have in flight before 503 + Retry-After.
    #[arg(long, env = "EVENT_MAX_IN_FLIGHT", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub event_max_in_flight: u32,
    /// How long a request waits for its event's answer, milliseconds.
    #[arg(long, env = "EVENT_CALL_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub event_call_timeout_ms: u64,
    /// Most records per group commit.
    #[arg(long, env = "JOURNAL_MAX_BATCH", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub journal_max_batch: u32,
    /// How long a commit waits for its batch to fill, microseconds. 0: a writer takes
    /// what is queued; batches still grow while the other writers commit.
    #[arg(long, env = "JOURNAL_MAX_WAIT_US", default_value_t = 0)]
    pub journal_max_wait_us: u64,
    /// Concurrent group-commit transactions.
    #[arg(long, env = "JOURNAL_WRITERS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub journal_writers: u32,
    /// During a rush (the journal committing over 1,000 records a second) the outbox relay waits up to this long, milliseconds, so the database serves the sale first; 0 = never wait.
    #[arg(long, env = "OUTBOX_RUSH_DEFER_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub outbox_rush_defer_ms: u64,
    /// Hours published outbox rows are kept in PostgreSQL before the relay deletes them (unpublished rows are never deleted); 0 = keep them for ever.
    #[arg(long, env = "OUTBOX_RETENTION_HOURS", default_value_t = 168, value_parser = clap::value_parser!(u64).range(0..=87_600))]
    pub outbox_retention_hours: u64,
    /// Per-request timeout, milliseconds.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,
    /// Largest request body accepted, bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 1_048_576, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_body_bytes: u32,
    /// This process's name among the nodes sharing the database (1-64 characters);
    /// unset = generated once and kept in BOXOFFICE_DATA_DIR, so a restarted node
    /// takes its events back at once.
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,
    /// How the other nodes reach this one, e.g. http://10.0.0.5:8080; unset =
    /// http:// plus the address it listens on.
    #[arg(long, env = "ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// How long an event's lease lasts without renewal, milliseconds: a dead node's
    /// events are taken over by others after at most this long.
    #[arg(long, env = "LEASE_TTL_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(500..=600_000))]
    pub lease_ttl_ms: u64,
    /// How often the money reconciler looks for charges without tickets, refunds
    /// not yet succeeded, unprocessed webhooks and unfinished event
    /// cancellations, milliseconds; also the base of its retry backoff.
    #[arg(long, env = "RECONCILE_INTERVAL_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub reconcile_interval_ms: u64,
    /// How long a charge may stay without an answer from the provider before the
    /// reconciler asks the provider again (with the same idempotency key),
    /// milliseconds. Longer than a charge's own budget (6 s).
    #[arg(long, env = "CHARGE_GRACE_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    pub charge_grace_ms: u64,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// `production` refuses to start with settings that are only safe on a developer's
    /// machine (the test payment provider, generated secrets, an insecure cookie, a
    /// live Stripe key without a webhook secret) and names the one to fix.
    #[arg(long, env = "BOXOFFICE_ENV", value_enum, default_value_t = Environment::Development)]
    pub boxoffice_env: Environment,
}

/// `ORGANIZER_SIGNUP`: who may sell (docs/domain.md, "Accounts and tokens").
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OrganizerSignup {
    /// Anyone may sign up as an organizer and publish.
    Open,
    /// Anyone may sign up as an organizer and draft events; publishing waits for an admin's approval.
    Approval,
    /// Signing up as an organizer is refused; only admins grant the role.
    Closed,
}

/// Where the server runs: what it will start with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {name}: {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub bind: SocketAddr,
    pub database_url: Option<SecretString>,
    pub data_dir: PathBuf,
    /// PostgreSQL binaries for the embedded cluster; `None` = found on the machine.
    pub pg_bin_dir: Option<PathBuf>,
    pub database_max_connections: u32,
    pub redis_url: Option<SecretString>,
    pub smtp_url: Option<SecretString>,
    pub smtp_from: Option<String>,
    pub public_url: Option<String>,
    pub stripe_secret_key: Option<SecretString>,
    pub stripe_webhook_secret: Option<SecretString>,
    pub stripe_api_base: Option<String>,
    pub stripe_publishable_key: Option<String>,
    /// Where the web app's files are read from; `None` = built into the binary.
    pub web_dir: Option<PathBuf>,
    pub qr_signing_key: Option<SecretString>,
    pub qr_key_id: String,
    pub qr_retired_keys: Vec<(String, SecretString)>,
    pub jwt_secret: Option<SecretString>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub cookie_secure: bool,
    pub auth_rate_limit_per_minute: u32,
    pub queue_joins_per_ip_per_minute: u32,
    pub waiting_room_tick: Duration,
    /// argon2 computations at once.
    pub password_hash_concurrency: usize,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    pub organizer_signup: OrganizerSignup,
    pub event_max_in_flight: usize,
    pub event_call_timeout: Duration,
    pub journal_max_batch: usize,
    pub journal_max_wait: Duration,
    pub reconcile_interval: Duration,
    pub node_id: Option<String>,
    pub advertise_url: Option<String>,
    pub lease_ttl: Duration,
    pub charge_grace: Duration,
    pub journal_writers: usize,
    pub outbox_rush_defer: Duration,
    /// `None`: published outbox rows are kept for ever.
    pub outbox_retention: Option<Duration>,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    pub environment: Environment,
}

fn key_id(name: &'static str, kid: &str) -> Result<String, ConfigError> {
    if kid.is_empty() || kid.len() > MAX_KID_LEN || !kid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ConfigError { name, problem: "must be 1-16 ASCII letters or digits".into() });
    }
    Ok(kid.to_owned())
}

fn retired_keys(raw: Option<&str>) -> Result<Vec<(String, SecretString)>, ConfigError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    raw.split(',')
        .map(|pair| {
            let (kid, key) = pair.trim().split_once(':').ok_or(ConfigError {
                name: "QR_RETIRED_KEYS",
                problem: "expected `kid:key` pairs separated by commas".into(),
            })?;
            Ok((key_id("QR_RETIRED_KEYS", kid)?, SecretString::from(key.to_owned())))
        })
        .collect()
}

/// A node id: 1-64 characters of letters, digits, `-`, `_` and `.`.
fn node_id(id: String) -> Result<String, ConfigError> {
    let ok = (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(id)
    } else {
        Err(ConfigError { name: "NODE_ID", problem: "use 1 to 64 letters, digits, '-', '_' or '.'".into() })
    }
}

/// An optional setting; blank counts as unset.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn secret(value: &Option<String>) -> Option<SecretString> {
    given(value).map(|v| SecretString::from(v.to_owned()))
}

/// Settings failed to parse: clap's own message (it names the flag and its
/// variable), or a validation error.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    Parse(#[from] clap::Error),
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

impl Settings {
    /// Parses the command line and the environment (after loading `.env` if
    /// present). `--help` and `--version` come back as `SettingsError::Parse`,
    /// whose `exit()` prints them.
    pub fn from_env() -> Result<Self, SettingsError> {
        match Self::invocation_from_env()? {
            Invocation::Serve(settings) => Ok(*settings),
            Invocation::Reconcile { settings, .. } => Ok(*settings),
            Invocation::UserCreate(_) => Err(clap::Error::raw(
                clap::error::ErrorKind::InvalidSubcommand,
                "expected the settings of `serve`, not a `user` command",
            )
            .into()),
        }
    }

    /// Parses the command line and the environment (after loading `.env` if present)
    /// into the command to run.
    pub fn invocation_from_env() -> Result<Invocation, SettingsError> {
        let _ = dotenvy::dotenv();
        // A variable set to blank counts as unset, as it always has (clap would parse "").
        fn blank_unset(command: clap::Command) -> clap::Command {
            let command = command.mut_args(|arg| {
                let blank =
                    arg.get_env().and_then(std::env::var_os).is_some_and(|v| v.to_string_lossy().trim().is_empty());
                if blank { arg.env(None) } else { arg }
            });
            let names: Vec<String> = command.get_subcommands().map(|c| c.get_name().to_owned()).collect();
            names.iter().fold(command, |command, name| command.mut_subcommand(name, blank_unset))
        }
        let cli = Cli::from_arg_matches(&blank_unset(Cli::command()).try_get_matches()?)?;
        Ok(match cli.command {
            Some(Command::Serve(args)) => Invocation::Serve(Box::new(Self::from_args(&args)?)),
            None => Invocation::Serve(Box::new(Self::from_args(&cli.serve)?)),
            Some(Command::Reconcile(r)) => Invocation::Reconcile {
                settings: Box::new(Self::from_args(&r.settings)?),
                event: r.event,
                grace: Duration::from_secs(r.grace_secs),
            },
            Some(Command::User(UserCommand::Create(args))) => Invocation::UserCreate(UserCreate {
                email: args.email,
                role: args.role,
                name: args.name,
                database: DatabaseSettings::from_args(&args.database),
            }),
        })
    }

    /// Reads settings through `lookup` (an environment variable name to its value)
    /// and nothing else: the process's own environment is ignored. For tests and
    /// embedders; parsed by the same declarations as the command line.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut argv: Vec<OsString> = vec!["boxoffice".into()];
        let command = ServeArgs::augment_args(clap::Command::new("boxoffice"));
        for arg in command.get_arguments() {
            let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else { continue };
            if let Some(value) = env.to_str().and_then(lookup).filter(|v| !v.trim().is_empty()) {
                argv.push(format!("--{long}={value}").into());
            }
        }
        let command = command.mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(argv)?;
        Ok(Self::from_args(&ServeArgs::from_arg_matches(&matches)?)?)
    }

    /// Validates parsed arguments.
    pub fn from_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let jwt_secret = secret(&args.jwt_secret);
        if jwt_secret.as_ref().is_some_and(|s| s.expose_secret().len() < 32) {
            return Err(ConfigError { name: "JWT_SECRET", problem: "must be at least 32 bytes".into() });
        }
        let database = DatabaseSettings::from_args(&args.database);
        Self {
            bind: args.bind,
            database_url: database.database_url,
            data_dir: database.data_dir,
            pg_bin_dir: database.pg_bin_dir,
            database_max_connections: args.database_max_connections,
            redis_url: secret(&args.redis_url),
            smtp_url: secret(&args.smtp_url),
            smtp_from: given(&args.smtp_from).map(str::to_owned),
            public_url: given(&args.public_url).map(str::to_owned),
            stripe_secret_key: secret(&args.stripe_secret_key),
            stripe_webhook_secret: secret(&args.stripe_webhook_secret),
            stripe_api_base: given(&args.stripe_api_base).map(str::to_owned),
            stripe_publishable_key: given(&args.stripe_publishable_key).map(str::to_owned),
            web_dir: args.web_dir.clone(),
            qr_signing_key: secret(&args.qr_signing_key),
            qr_key_id: key_id("QR_KEY_ID", args.qr_key_id.trim())?,
            qr_retired_keys: retired_keys(given(&args.qr_retired_keys))?,
            jwt_secret,
            jwt_issuer: args.jwt_issuer.clone(),
            jwt_audience: args.jwt_audience.clone(),
            access_ttl: Duration::from_secs(args.jwt_access_ttl_secs),
            refresh_ttl: Duration::from_secs(args.refresh_ttl_secs),
            cookie_secure: args.cookie_secure,
            auth_rate_limit_per_minute: args.auth_rate_limit_per_minute,
            queue_joins_per_ip_per_minute: args.queue_joins_per_ip_per_minute,
            waiting_room_tick: Duration::from_millis(args.waiting_room_tick_ms),
            password_hash_concurrency: match args.password_hash_concurrency {
                Some(n) => n as usize,
                None => std::thread::available_parallelism().map_or(1, usize::from),
            },
            trusted_proxies: TrustedProxies::parse(given(&args.trusted_proxies).unwrap_or(""))
                .map_err(|problem| ConfigError { name: "TRUSTED_PROXIES", problem })?,
            organizer_signup: args.organizer_signup,
            event_max_in_flight: args.event_max_in_flight as usize,
            event_call_timeout: Duration::from_millis(args.event_call_timeout_ms),
            journal_max_batch: args.journal_max_batch as usize,
            journal_max_wait: Duration::from_micros(args.journal_max_wait_us),
            reconcile_interval: Duration::from_millis(args.reconcile_interval_ms),
            node_id: given(&args.node_id).map(str::to_owned).map(node_id).transpose()?,
            advertise_url: given(&args.advertise_url).map(str::to_owned),
            lease_ttl: Duration::from_millis(args.lease_ttl_ms),
            charge_grace: Duration::from_millis(args.charge_grace_ms),
            journal_writers: args.journal_writers as usize,
            outbox_rush_defer: Duration::from_millis(args.outbox_rush_defer_ms),
            outbox_retention: (args.outbox_retention_hours > 0)
                .then(|| Duration::from_secs(args.outbox_retention_hours * 3600)),
            request_timeout: Duration::from_millis(args.request_timeout_ms),
            max_body_bytes: args.max_body_bytes as usize,
            log_format: args.log_format,
            environment: args.boxoffice_env,
        }
        .checked_for_production()
    }

    /// In production, refuses what is only safe in development, naming the setting.
    fn checked_for_production(self) -> Result<Self, ConfigError> {
        if self.environment != Environment::Production {
            return Ok(self);
        }
        let refuse = |name: &'static str, problem: &str| Err(ConfigError { name, problem: problem.into() });
        if self.stripe_secret_key.is_none() {
            return refuse(
                "STRIPE_SECRET_KEY",
                "required with BOXOFFICE_ENV=production: the built-in test payment provider sells tickets without taking money",
            );
        }
        let live_key = self.stripe_secret_key.as_ref().is_some_and(|k| k.expose_secret().starts_with("sk_live_"));
        if live_key && self.stripe_webhook_secret.is_none() {
            return refuse(
                "STRIPE_WEBHOOK_SECRET",
                "required with a live STRIPE_SECRET_KEY: without it every webhook would be rejected",
            );
        }
        if !self.cookie_secure {
            return refuse(
                "COOKIE_SECURE",
                "must be true with BOXOFFICE_ENV=production (the refresh cookie needs HTTPS)",
            );
        }
        if self.jwt_secret.is_none() {
            return refuse("JWT_SECRET", "must be set with BOXOFFICE_ENV=production, not generated");
        }
        match &self.qr_signing_key {
            None => return refuse("QR_SIGNING_KEY", "must be set with BOXOFFICE_ENV=production, not generated"),
            Some(key) if key.expose_secret().len() < 32 => {
                return refuse("QR_SIGNING_KEY", "must be at least 32 bytes with BOXOFFICE_ENV=production");
            }
            Some(_) => {}
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Settings::from_lookup(&|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_apply_and_blank_means_unset() {
        let s = settings(&[("REDIS_URL", "  "), ("BIND", "127.0.0.1:0")]).unwrap();
        assert!(s.redis_url.is_none());
        assert_eq!(s.bind.port(), 0);
        assert_eq!(s.database_max_connections, 32);
        assert_eq!(s.access_ttl, Duration::from_secs(900));
        assert!(s.cookie_secure);
        assert_eq!(s.qr_key_id, "k1");
        assert_eq!(s.organizer_signup, OrganizerSignup::Open);
        assert_eq!(settings(&[("ORGANIZER_SIGNUP", "approval")]).unwrap().organizer_signup, OrganizerSignup::Approval);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("JWT_SECRET", "short"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("BIND", "nowhere"),
            ("LOG_FORMAT", "xml"),
            ("QR_KEY_ID", "not ok!"),
            ("QR_RETIRED_KEYS", "nocolon"),
            ("COOKIE_SECURE", "maybe"),
            ("PASSWORD_HASH_CONCURRENCY", "0"),
            ("ORGANIZER_SIGNUP", "invite"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("TRUSTED_PROXIES", "10.0.0.1,proxy.example.com"),
        ] {
            let err = settings(&[(name, value)]).expect_err(name).to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }

    /// deploy/compose.yaml's node settings, as a node there reads them: every name is a
    /// setting and every value parses (`${VAR:?…}` stands for a secret given at `up`).
    #[test]
    fn the_compose_files_node_settings_are_valid() {
        let compose = include_str!("../deploy/compose.yaml");
        let block = compose.split("x-node-env: &node-env\n").nth(1).expect("an x-node-env block");
        let mut vars: Vec<(String, String)> = block
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| {
                let (name, value) = l.trim().split_once(": ").expect("NAME: value");
                let value = value.trim_matches('"');
                let value = match value.split_once("${") {
                    Some((head, rest)) if rest.contains(":?") => format!("{head}{}", "s".repeat(40)),
                    Some((head, rest)) => {
                        let (var, tail) = rest.split_once('}').expect("${VAR:-default}");
                        format!("{head}{}{tail}", var.split_once(":-").expect("a default").1)
                    }
                    None => value.to_owned(),
                };
                (name.to_owned(), value)
            })
            .collect();
        let help = Cli::command().render_long_help().to_string();
        vars.retain(|(name, _)| name != "RUST_LOG");
        for (name, _) in &vars {
            assert!(help.contains(&format!("[env: {name}")), "{name} is not a setting");
        }
        vars.extend([("NODE_ID".into(), "node2".into()), ("ADVERTISE_URL".into(), "http://node2:8080".into())]);
        let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let s = settings(&pairs).expect("the compose file's settings parse");
        assert_eq!(s.bind.port(), 8080);
        assert!(s.redis_url.is_some() && s.database_url.is_some());
        assert_eq!(s.lease_ttl, Duration::from_secs(5));
    }

    #[test]
    fn help_lists_every_variable_the_code_reads() {
        let help = Cli::command().render_long_help().to_string();
        for name in
            ["QR_SIGNING_KEY", "QR_KEY_ID", "QR_RETIRED_KEYS", "BOXOFFICE_PG_BIN_DIR", "DATABASE_URL", "JWT_SECRET"]
        {
            assert!(help.contains(name), "{name} missing from --help");
        }
    }

    #[test]
    fn production_refuses_development_only_settings_by_name() {
        let safe = [
            ("BOXOFFICE_ENV", "production"),
            ("STRIPE_SECRET_KEY", "sk_live_abc"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_abc"),
            ("JWT_SECRET", "a-jwt-secret-of-at-least-thirty-two-bytes"),
            ("QR_SIGNING_KEY", "a-qr-signing-key-of-at-least-thirty-two-bytes"),
        ];
        assert!(settings(&safe).is_ok());
        for (unset, name) in [
            ("STRIPE_SECRET_KEY", "STRIPE_SECRET_KEY"),
            ("STRIPE_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET"),
            ("JWT_SECRET", "JWT_SECRET"),
            ("QR_SIGNING_KEY", "QR_SIGNING_KEY"),
        ] {
            let vars: Vec<_> = safe.iter().copied().filter(|(k, _)| *k != unset).collect();
            let err = settings(&vars).expect_err(unset).to_string();
            assert!(err.contains(name), "{unset} unset: {err}");
        }
        let mut insecure = safe.to_vec();
        insecure.push(("COOKIE_SECURE", "false"));
        assert!(settings(&insecure).expect_err("insecure cookie").to_string().contains("COOKIE_SECURE"));
        let mut short_qr = safe.to_vec();
        short_qr.retain(|(k, _)| *k != "QR_SIGNING_KEY");
        short_qr.push(("QR_SIGNING_KEY", "short"));
        assert!(settings(&short_qr).expect_err("short QR key").to_string().contains("QR_SIGNING_KEY"));
        // A test key needs no webhook secret; development accepts everything unset.
        let test_key: Vec<_> = safe
            .iter()
            .map(|(k, v)| if *k == "STRIPE_SECRET_KEY" { (*k, "sk_test_abc") } else { (*k, *v) })
            .filter(|(k, _)| *k != "STRIPE_WEBHOOK_SECRET")
            .collect();
        assert!(settings(&test_key).is_ok());
        assert!(settings(&[]).is_ok());
    }

    #[test]
    fn trusted_proxies_are_read_from_their_variable() {
        assert!(settings(&[]).unwrap().trusted_proxies.is_empty());
        let s = settings(&[("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")]).unwrap();
        assert!(s.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn unknown_flags_are_errors() {
        assert!(Cli::try_parse_from(["boxoffice", "--no-such-flag"]).is_err());
        assert!(Cli::try_parse_from(["boxoffice", "serve", "--bind", "127.0.0.1:0"]).is_ok());
    }

    #[test]
    fn user_create_parses_its_arguments() {
        let cli = Cli::try_parse_from([
            "boxoffice",
            "user",
            "create",
            "--email",
            "root@example.com",
            "--role",
            "admin",
            "--database-url",
            "postgres://x@127.0.0.1/db",
        ])
        .unwrap();
        let Some(Command::User(UserCommand::Create(args))) = cli.command else { panic!("not user create") };
        assert_eq!((args.email.as_str(), args.role.as_str(), args.name), ("root@example.com", "admin", None));
        assert_eq!(args.database.database_url.as_deref(), Some("postgres://x@127.0.0.1/db"));
        for bad in [
            &["boxoffice", "user", "create", "--email", "a@b.co", "--role", "owner"][..],
            &["boxoffice", "user", "create", "--role", "admin"],
            &["boxoffice", "user", "create", "--email", "a@b.co", "--role", "admin", "--bind", "127.0.0.1:0"],
            &["boxoffice", "user", "delete"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?} accepted");
        }
    }
}
