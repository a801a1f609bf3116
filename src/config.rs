//! Configuration from the environment (and an optional `.env` file), validated
//! once at start with messages that name the variable at fault.
//!
//! Every setting is listed in [`SETTINGS`], which is also what `boxoffice --help`
//! prints. Secrets are `SecretString`s: they cannot be logged by accident.

use secrecy::SecretString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Name, default and meaning of every environment variable the server reads.
pub const SETTINGS: &[(&str, &str, &str)] = &[
    ("BIND", "127.0.0.1:8080", "address to listen on (port 0 picks a free one)"),
    ("DATABASE_URL", "(embedded)", "PostgreSQL URL; unset = run a private cluster under BOXOFFICE_DATA_DIR"),
    ("BOXOFFICE_DATA_DIR", "./data", "where the embedded PostgreSQL cluster and generated secrets live"),
    ("DATABASE_MAX_CONNECTIONS", "32", "connection pool size"),
    ("REDIS_URL", "(none)", "Redis for the outbox relay and caches; unset = run without Redis"),
    (
        "SMTP_URL",
        "(none)",
        "SMTP server for notification email: smtp://user:pass@host:port (?tls=required for STARTTLS) or smtps://…; unset = write emails to the log",
    ),
    (
        "SMTP_FROM",
        "(none)",
        "sender of notification email, like `boxoffice <tickets@example.com>`; required with SMTP_URL",
    ),
    ("PUBLIC_URL", "(none)", "base URL put before links in emails (https://tickets.example.com); unset = bare paths"),
    ("STRIPE_SECRET_KEY", "(none)", "Stripe secret key; unset = built-in test payment provider"),
    ("STRIPE_WEBHOOK_SECRET", "(none)", "signing secret of the Stripe webhook endpoint"),
    ("STRIPE_API_BASE", "(Stripe)", "Stripe API base URL (e.g. a local localstripe)"),
    (
        "JWT_SECRET",
        "(generated)",
        "HS256 key for access tokens, >= 32 bytes; unset = generated and kept in the data dir",
    ),
    ("JWT_ISSUER", "boxoffice", "`iss` of access tokens"),
    ("JWT_AUDIENCE", "boxoffice-api", "`aud` of access tokens"),
    ("JWT_ACCESS_TTL_SECS", "900", "access token lifetime"),
    ("REFRESH_TTL_SECS", "604800", "refresh token lifetime (7 days)"),
    ("COOKIE_SECURE", "true", "mark the refresh cookie Secure (set false only for plain-HTTP development)"),
    ("AUTH_RATE_LIMIT_PER_MINUTE", "20", "login/register attempts per client IP and per email per minute"),
    ("EVENT_MAX_IN_FLIGHT", "4096", "requests one event may have in flight before 503 + Retry-After"),
    ("EVENT_CALL_TIMEOUT_MS", "5000", "how long a request waits for its event's answer"),
    ("JOURNAL_MAX_BATCH", "1024", "most records per group commit"),
    ("JOURNAL_MAX_WAIT_US", "500", "how long a commit waits for its batch to fill"),
    ("JOURNAL_WRITERS", "2", "concurrent group-commit transactions"),
    ("REQUEST_TIMEOUT_MS", "10000", "per-request timeout"),
    ("MAX_BODY_BYTES", "1048576", "largest request body accepted"),
    ("LOG_FORMAT", "text", "`text` or `json`"),
    ("RUST_LOG", "info", "log filter"),
];

#[derive(Debug, thiserror::Error)]
#[error("configuration: {name}: {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub bind: SocketAddr,
    pub database_url: Option<SecretString>,
    pub data_dir: PathBuf,
    pub database_max_connections: u32,
    pub redis_url: Option<SecretString>,
    pub smtp_url: Option<SecretString>,
    pub smtp_from: Option<String>,
    pub public_url: Option<String>,
    pub stripe_secret_key: Option<SecretString>,
    pub stripe_webhook_secret: Option<SecretString>,
    pub stripe_api_base: Option<String>,
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
    pub event_max_in_flight: usize,
    pub event_call_timeout: Duration,
    pub journal_max_batch: usize,
    pub journal_max_wait: Duration,
    pub journal_writers: usize,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
}

/// Where settings come from: the environment, or a map in tests.
type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn var(lookup: Lookup, name: &'static str) -> Option<String> {
    lookup(name).filter(|v| !v.trim().is_empty())
}

fn parse<T: std::str::FromStr>(lookup: Lookup, name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(lookup, name) {
        None => Ok(default),
        Some(raw) => {
            raw.trim().parse().map_err(|e| ConfigError { name, problem: format!("{raw:?} is not valid: {e}") })
        }
    }
}

fn positive<T: PartialOrd + Default + std::str::FromStr>(
    lookup: Lookup,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let v = parse(lookup, name, default)?;
    if v <= T::default() {
        return Err(ConfigError { name, problem: "must be greater than zero".into() });
    }
    Ok(v)
}

fn key_id(kid: String) -> Result<String, ConfigError> {
    if kid.is_empty() || kid.len() > crate::auth::qr::MAX_KID_LEN || !kid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ConfigError { name: "QR_KEY_ID", problem: "must be 1-16 ASCII letters or digits".into() });
    }
    Ok(kid)
}

fn retired_keys(raw: Option<String>) -> Result<Vec<(String, SecretString)>, ConfigError> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    raw.split(',')
        .map(|pair| {
            let (kid, key) = pair.trim().split_once(':').ok_or(ConfigError {
                name: "QR_RETIRED_KEYS",
                problem: "expected `kid:key` pairs separated by commas".into(),
            })?;
            Ok((
                key_id(kid.to_owned()).map_err(|e| ConfigError { name: "QR_RETIRED_KEYS", ..e })?,
                SecretString::from(key.to_owned()),
            ))
        })
        .collect()
}

impl Settings {
    /// Reads the environment (after loading `.env` if present).
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (a variable name to its value).
    pub fn from_lookup(lookup: Lookup) -> Result<Self, ConfigError> {
        let jwt_secret = var(lookup, "JWT_SECRET").map(SecretString::from);
        if let Some(s) = &jwt_secret
            && secrecy::ExposeSecret::expose_secret(s).len() < 32
        {
            return Err(ConfigError { name: "JWT_SECRET", problem: "must be at least 32 bytes".into() });
        }
        let stripe_secret_key = var(lookup, "STRIPE_SECRET_KEY").map(SecretString::from);
        let stripe_webhook_secret = var(lookup, "STRIPE_WEBHOOK_SECRET").map(SecretString::from);
        let log_format = match var(lookup, "LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError { name: "LOG_FORMAT", problem: format!("{other:?} is not `text` or `json`") });
            }
        };
        Ok(Self {
            bind: parse(lookup, "BIND", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            database_url: var(lookup, "DATABASE_URL").map(SecretString::from),
            data_dir: PathBuf::from(var(lookup, "BOXOFFICE_DATA_DIR").unwrap_or_else(|| "./data".into())),
            database_max_connections: positive(lookup, "DATABASE_MAX_CONNECTIONS", 32)?,
            redis_url: var(lookup, "REDIS_URL").map(SecretString::from),
            smtp_url: var(lookup, "SMTP_URL").map(SecretString::from),
            smtp_from: var(lookup, "SMTP_FROM"),
            public_url: var(lookup, "PUBLIC_URL"),
            stripe_secret_key,
            stripe_webhook_secret,
            stripe_api_base: var(lookup, "STRIPE_API_BASE"),
            qr_signing_key: var(lookup, "QR_SIGNING_KEY").map(SecretString::from),
            qr_key_id: key_id(var(lookup, "QR_KEY_ID").unwrap_or_else(|| "k1".into()))?,
            qr_retired_keys: retired_keys(var(lookup, "QR_RETIRED_KEYS"))?,
            jwt_secret,
            jwt_issuer: var(lookup, "JWT_ISSUER").unwrap_or_else(|| "boxoffice".into()),
            jwt_audience: var(lookup, "JWT_AUDIENCE").unwrap_or_else(|| "boxoffice-api".into()),
            access_ttl: Duration::from_secs(positive(lookup, "JWT_ACCESS_TTL_SECS", 900)?),
            refresh_ttl: Duration::from_secs(positive(lookup, "REFRESH_TTL_SECS", 604_800)?),
            cookie_secure: parse(lookup, "COOKIE_SECURE", true)?,
            auth_rate_limit_per_minute: positive(lookup, "AUTH_RATE_LIMIT_PER_MINUTE", 20)?,
            event_max_in_flight: positive(lookup, "EVENT_MAX_IN_FLIGHT", 4096)?,
            event_call_timeout: Duration::from_millis(positive(lookup, "EVENT_CALL_TIMEOUT_MS", 5000)?),
            journal_max_batch: positive(lookup, "JOURNAL_MAX_BATCH", 1024)?,
            journal_max_wait: Duration::from_micros(parse(lookup, "JOURNAL_MAX_WAIT_US", 500)?),
            journal_writers: positive(lookup, "JOURNAL_WRITERS", 2)?,
            request_timeout: Duration::from_millis(positive(lookup, "REQUEST_TIMEOUT_MS", 10_000)?),
            max_body_bytes: positive(lookup, "MAX_BODY_BYTES", 1_048_576)?,
            log_format,
        })
    }

    /// The text of `boxoffice --help`.
    pub fn help() -> String {
        let mut out = String::from(
            "boxoffice — a ticket-sales engine built for flash sales\n\n\
             USAGE: boxoffice [--help]\n\n\
             Configured by environment variables (a .env file is read if present):\n\n",
        );
        for (name, default, meaning) in SETTINGS {
            out.push_str(&format!("  {name:<28} {meaning}\n  {:<28} default: {default}\n", ""));
        }
        out
    }
}
