//! The outbox relay: a background task that delivers outbox rows to every
//! configured sink — Redis Streams (when `REDIS_URL` is set) and the
//! [`Notifier`] (always: SMTP, or the log) — and then marks them published.
//!
//! **`published_at` means "delivered to every sink configured at the time".**
//! One marker, no schema change: without Redis, rows are still notified and
//! marked (they stay in PostgreSQL, queryable, for the retention below); a
//! deployment that configures Redis later streams rows from then on.
//!
//! One pass ([`OutboxRelay::relay_once`]), in one transaction:
//! 1. take the relay's transaction-scoped advisory lock (`pg_try_advisory_xact_lock`),
//!    so relays in several server processes take turns and never deliver the same
//!    row concurrently (a relay that finds the lock taken skips its pass), and read
//!    the oldest unpublished rows, `ORDER BY id LIMIT n`. One lock per pass rather
//!    than a row lock per row: a row lock is a heap write and a WAL record, and in
//!    a flash sale the relay reads thousands of rows a second;
//! 2. compose the emails they call for, and cut the batch short after
//!    [`RelayConfig::max_emails_per_pass`] of them, so a pass stays short however
//!    slow the mail server is (the rest is left for the next pass, untouched);
//! 3. `XADD` each row to the stream `boxoffice:{topic}` (capped at about a
//!    million entries), all in one pipeline, with the fields `outbox_id`,
//!    `topic`, `aggregate_id`, `payload` (JSON text) and `created_at` (RFC 3339);
//! 4. send the emails, in row order;
//! 5. set `published_at` on the rows handled and commit.
//!    The outbox's pages are kept half empty (fillfactor 50), so a marked
//!    row's new version stays on its page and its WAL record carries only the
//!    change (~95 bytes) instead of the whole row again (~790 bytes with its
//!    row lock, more than the insert's ~665; measured with `pg_waldump`).
//!
//! **Delivery is at least once.** Publishing comes before marking, so a crash,
//! a lost connection or a failure in between leaves rows unmarked, and the next
//! pass publishes them again: stream consumers dedupe on `outbox_id`. The steps
//! are ordered so that the duplicates fall on the stream, not on people: a
//! Redis failure rolls the pass back before any email is sent; a mail outage
//! commits the rows handled before it, and afterwards the relay probes the mail
//! server before re-running a pass. A message the mail server refuses for good
//! (a bad address) is logged and passed over, so it cannot block the rows after
//! it.
//!
//! **The cost of one marker:** the sinks share one pace. An outage of either
//! pauses both (nothing is lost; `boxoffice_outbox_lag` shows it), and with a
//! real SMTP server the stream advances only as fast as the emails go out —
//! fine for development (the log mailer is instant) and ordinary traffic, not
//! for a flash sale's thousands of purchases a second. Decoupling them takes a
//! second marker (`outbox.notified_at`) and a second loop over the same code.
//!
//! **Rushes:** while the journal commits more than
//! [`RelayConfig::rush_records_per_sec`] records a second (a flash sale), passes
//! wait, for at most [`RelayConfig::rush_max_defer`] (`OUTBOX_RUSH_DEFER_MS`) at a
//! time; then the relay catches up completely before it waits again. The database
//! then spends the rush on the sale instead of re-reading and marking what the
//! sale has just written: in a flash sale of 60,000 seats PostgreSQL's CPU per
//! order fell by a fifth. The price is freshness: stream entries and emails may
//! lag by up to that long during a rush (`boxoffice_outbox_lag` shows it;
//! `boxoffice_outbox_rush_deferrals_total` counts the waits).
//!
//! **Retention:** published rows are kept for [`RelayConfig::retention`]
//! (`OUTBOX_RETENTION_HOURS`, a week by default), queryable, then deleted — at
//! most every [`RelayConfig::prune_every`], only when the relay has caught up and
//! the journal is not in a rush, in chunks of [`RelayConfig::prune_chunk`] rows
//! (one short transaction each). An unpublished row is never deleted, however old.
//!
//! **Outages:** the relay logs once when a sink (or the database) becomes
//! unavailable and once when it is back, backs off exponentially up to
//! [`RelayConfig::max_backoff`] meanwhile, and never stops or panics on its
//! own — the service keeps selling; only the outbox grows.
//!
//! Metrics: `boxoffice_outbox_lag` (gauge: age in seconds of the oldest row
//! still waiting, as of the last pass; 0 when caught up),
//! `boxoffice_outbox_published_total` (rows marked),
//! `boxoffice_outbox_pruned_total` (published rows deleted after the retention), and
//! `boxoffice_outbox_relay_errors_total{sink}` (failed passes).

use crate::store::cache::RedisLink;
use crate::store::outbox::OutboxRow;
use crate::workers::notify::{Email, MailError, Notifier};
use chrono::{SecondsFormat, Utc};
use redis::aio::ConnectionManager;
use redis::streams::StreamMaxlen;
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The advisory lock key every relay takes for a pass (`b"outbox\0\0"` as an integer).
const RELAY_LOCK: i64 = 0x6f75_7462_6f78_0000;

/// Tunables; [`Default`] is what the server uses.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Most rows in one pass (one transaction, one Redis pipeline).
    pub batch_size: usize,
    /// Pause after a pass that found less than a full batch. Polling is cheap:
    /// one index-only probe of the partial index `outbox_unpublished`.
    pub idle_poll: Duration,
    /// First pause after a failure; doubled each failure up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// How long Redis may take to accept one batch before the pass is abandoned.
    pub publish_timeout: Duration,
    /// Most emails in one pass: the batch is cut before the row of the first
    /// email over the limit, so a slow mail server cannot keep a transaction
    /// open for long. Not applied to the log mailer, which sends nothing.
    pub max_emails_per_pass: usize,
    /// Stream key prefix: a row of topic `t` goes to `{stream_prefix}{t}`.
    pub stream_prefix: String,
    /// Approximate cap on each stream (`XADD … MAXLEN ~`).
    pub stream_maxlen: usize,
    /// A rush: the journal committing more records a second than this. During a
    /// rush passes wait (see `rush_max_defer`), so the database spends itself on
    /// the sale, not on re-reading and marking what the sale just wrote.
    pub rush_records_per_sec: u64,
    /// The longest a rush delays the relay: past it, a pass runs and the relay
    /// catches up completely before it waits again. Zero: never wait.
    pub rush_max_defer: Duration,
    /// How long published rows are kept; `None`: for ever.
    pub retention: Option<Duration>,
    /// How often the relay deletes published rows past the retention.
    pub prune_every: Duration,
    /// Most rows one delete removes (one transaction).
    pub prune_chunk: usize,
}

/// The default retention of published outbox rows: a week.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            idle_poll: Duration::from_millis(200),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(5),
            max_emails_per_pass: 50,
            stream_prefix: crate::store::cache::DEFAULT_PREFIX.to_owned(),
            stream_maxlen: 1_000_000,
            rush_records_per_sec: 1_000,
            rush_max_defer: Duration::from_secs(10),
            retention: Some(DEFAULT_RETENTION),
            prune_every: Duration::from_secs(600),
            prune_chunk: 10_000,
        }
    }
}

/// The stream a topic is published to.
pub fn stream_key(prefix: &str, topic: &str) -> String {
    format!("{prefix}{topic}")
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis did not accept the batch within {0:?}")]
    RedisTimeout(Duration),
    #[error(transparent)]
    Mail(#[from] MailError),
}

impl RelayError {
    /// Which dependency failed, for logs and metrics.
    pub fn sink(&self) -> &'static str {
        match self {
            RelayError::Database(_) => "database",
            RelayError::Redis(_) | RelayError::RedisTimeout(_) => "redis",
            RelayError::Mail(_) => "mail",
        }
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Rows read.
    pub fetched: usize,
    /// Rows delivered and marked published.
    pub published: usize,
}

pub struct OutboxRelay {
    pool: PgPool,
    /// `None` when Redis is not configured.
    redis: Option<ConnectionManager>,
    notifier: Notifier,
    config: RelayConfig,
    /// Set by a mail outage: probe the mail server before the next pass.
    mail_down: bool,
    /// The journal's committed-record count, when passes give way to a rush.
    rush: Option<RushGate>,
    /// When published rows were last pruned (`None`: not yet).
    pruned_at: Option<Instant>,
}

/// How often a deferred relay looks again at the journal's pace.
const RUSH_CHECK: Duration = Duration::from_millis(250);

/// Tells a relay to wait while the journal is in a rush (more than
/// `RelayConfig::rush_records_per_sec`), for at most `rush_max_defer` at a time.
struct RushGate {
    committed: Arc<AtomicU64>,
    /// The count and when it was read last.
    last: (u64, Instant),
    /// Records a second over the last reading's window.
    rate: f64,
    /// Since when passes have been waiting.
    deferring_since: Option<Instant>,
    /// The longest deferral ran out: passes go back to back until one finds
    /// little. Only then — a full batch found during a rush otherwise waits
    /// like the rest, or a relay that fell a batch behind as the rush began
    /// would chase the sale's rows for the whole rush.
    catching_up: bool,
}

impl RushGate {
    fn new(committed: Arc<AtomicU64>) -> Self {
        let count = committed.load(Ordering::Relaxed);
        Self { committed, last: (count, Instant::now()), rate: 0.0, deferring_since: None, catching_up: false }
    }

    /// How long to wait before the next pass; `None`: go now. The pace is read
    /// over windows of at least [`RUSH_CHECK`].
    fn wait(&mut self, config: &RelayConfig, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.last.1);
        if elapsed >= RUSH_CHECK {
            let count = self.committed.load(Ordering::Relaxed);
            self.rate = count.saturating_sub(self.last.0) as f64 / elapsed.as_secs_f64();
            self.last = (count, now);
        }
        if self.catching_up || config.rush_max_defer.is_zero() || self.rate <= config.rush_records_per_sec as f64 {
            self.deferring_since = None;
            return None;
        }
        let since = *self.deferring_since.get_or_insert(now);
        if now.saturating_duration_since(since) < config.rush_max_defer {
            Some(RUSH_CHECK)
        } else {
            self.deferring_since = None;
            self.catching_up = true;
            None
        }
    }

    /// The journal's pace, as last read, is a rush's.
    fn rushing(&self, config: &RelayConfig) -> bool {
        self.rate > config.rush_records_per_sec as f64
    }

    /// A pass ended; `more`: it found a full batch (or could not publish all it
    /// read). Catching up ends with the first pass that finds little.
    fn passed(&mut self, more: bool) {
        if !more {
            self.catching_up = false;
        }
    }
}

impl OutboxRelay {
    pub fn new(pool: PgPool, redis: Option<&RedisLink>, notifier: Notifier) -> Self {
        Self {
            pool,
            redis: redis.map(RedisLink::connection),
            notifier,
            config: RelayConfig::default(),
            mail_down: false,
            rush: None,
            pruned_at: None,
        }
    }

    /// Passes give way while `committed` (the journal's count of committed
    /// records) grows faster than `RelayConfig::rush_records_per_sec`.
    pub fn with_rush_gate(mut self, committed: Arc<AtomicU64>) -> Self {
        self.rush = Some(RushGate::new(committed));
        self
    }

    pub fn with_config(mut self, config: RelayConfig) -> Self {
        self.config = config;
        self
    }

    /// Relays until `shutdown` completes. A pass in progress is finished first
    /// (it is bounded by `publish_timeout` and `max_emails_per_pass` emails);
    /// waiting and backing off are cut short.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        metrics::describe_gauge!(
            "boxoffice_outbox_lag",
            metrics::Unit::Seconds,
            "age of the oldest outbox row not yet published, as of the last relay pass"
        );
        metrics::describe_counter!("boxoffice_outbox_published_total", "outbox rows delivered to every sink");
        metrics::describe_counter!(
            "boxoffice_outbox_pruned_total",
            "published outbox rows deleted after the retention (OUTBOX_RETENTION_HOURS)"
        );
        tracing::info!(redis = self.redis.is_some(), mail = self.notifier.mailer_name(), "outbox relay started");
        tokio::pin!(shutdown);
        let mut backoff = self.config.min_backoff;
        // The failing dependency and since when, to log an outage once.
        let mut outage: Option<(&'static str, Instant)> = None;
        loop {
            let deferred = self.rush.as_mut().and_then(|gate| gate.wait(&self.config, Instant::now()));
            if let Some(wait) = deferred {
                metrics::counter!("boxoffice_outbox_rush_deferrals_total").increment(1);
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            let pause = match self.relay_once().await {
                Ok(pass) => {
                    if let Some((sink, since)) = outage.take() {
                        tracing::info!(sink, down_for = ?since.elapsed(), "outbox relay resumed");
                    }
                    backoff = self.config.min_backoff;
                    let more = pass.fetched == self.config.batch_size || pass.published < pass.fetched;
                    if let Some(gate) = &mut self.rush {
                        gate.passed(more);
                    }
                    if !more {
                        self.prune_if_due().await;
                    }
                    if more { Duration::ZERO } else { self.config.idle_poll }
                }
                Err(e) => {
                    let sink = e.sink();
                    metrics::counter!("boxoffice_outbox_relay_errors_total", "sink" => sink).increment(1);
                    match outage {
                        Some((current, _)) if current == sink => {
                            tracing::debug!(sink, error = %e, "outbox relay still paused");
                        }
                        _ => {
                            tracing::warn!(sink, error = %e, "outbox relay paused; retrying with backoff");
                            outage = Some((sink, Instant::now()));
                        }
                    }
                    let pause = backoff;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    pause
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!("outbox relay stopped");
    }

    /// Prunes published rows past the retention when a prune is due and the
    /// journal is not in a rush. A failure is logged and tried again next time.
    async fn prune_if_due(&mut self) {
        let Some(retention) = self.config.retention else { return };
        if self.pruned_at.is_some_and(|at| at.elapsed() < self.config.prune_every)
            || self.rush.as_ref().is_some_and(|gate| gate.rushing(&self.config))
        {
            return;
        }
        self.pruned_at = Some(Instant::now());
        match prune_published(&self.pool, retention, self.config.prune_chunk).await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, retention_hours = retention.as_secs() / 3600, "outbox pruned"),
            Err(error) => tracing::warn!(%error, "pruning the outbox failed; trying again later"),
        }
    }

    /// One pass over at most one batch (see the module doc). On a mail outage the
    /// rows handled before it are committed and the error is returned.
    pub async fn relay_once(&mut self) -> Result<Pass, RelayError> {
        if self.mail_down {
            self.notifier.probe().await?;
        }
        let mut tx = self.pool.begin().await?;
        let ours: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)").bind(RELAY_LOCK).fetch_one(&mut *tx).await?;
        if !ours {
            // Another relay is in a pass; it will have moved on by our next one.
            return Ok(Pass::default());
        }
        let mut rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT id, topic, aggregate_id, payload::text AS payload, created_at FROM outbox
             WHERE published_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(i64::try_from(self.config.batch_size).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
        let lag = rows.first().map_or(0.0, |r| (Utc::now() - r.created_at).as_seconds_f64().max(0.0));
        metrics::gauge!("boxoffice_outbox_lag").set(lag);
        if rows.is_empty() {
            return Ok(Pass::default());
        }
        let fetched = rows.len();
        // Dropping `tx` on any error below rolls back: the rows stay unpublished.
        let mut emails = self.notifier.compose(&mut tx, &rows).await?;
        // The cap keeps a pass short when a mail server is slow; logging is not.
        let max_emails =
            if self.notifier.mailer_is_instant() { usize::MAX } else { self.config.max_emails_per_pass.max(1) };
        if let Some(&(cut, _)) = emails.get(max_emails) {
            emails.truncate(max_emails);
            rows.truncate(cut);
        }
        if let Some(redis) = &self.redis {
            self.publish(redis.clone(), &rows).await?;
        }
        let (handled, mail_error) = self.send(emails, rows.len()).await;
        if handled > 0 {
            let ids: Vec<i64> = rows[..handled].iter().map(|r| r.id).collect();
            // By `outbox_unpublished`, the table's one index (the rows are unpublished).
            sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1) AND published_at IS NULL")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        metrics::counter!("boxoffice_outbox_published_total").increment(handled as u64);
        self.mail_down = mail_error.is_some();
        match mail_error {
            Some(e) => Err(e.into()),
            None => Ok(Pass { fetched, published: handled }),
        }
    }

    /// `XADD`s every row, in one pipeline.
    async fn publish(&self, mut conn: ConnectionManager, rows: &[OutboxRow]) -> Result<(), RelayError> {
        let mut pipe = redis::pipe();
        for row in rows {
            let fields = [
                ("outbox_id", row.id.to_string()),
                ("topic", row.topic.clone()),
                ("aggregate_id", row.aggregate_id.to_string()),
                ("payload", row.payload.clone()),
                ("created_at", row.created_at.to_rfc3339_opts(SecondsFormat::Micros, true)),
            ];
            pipe.xadd_maxlen(
                stream_key(&self.config.stream_prefix, &row.topic),
                StreamMaxlen::Approx(self.config.stream_maxlen),
                "*",
                &fields,
            )
            .ignore();
        }
        match tokio::time::timeout(self.config.publish_timeout, pipe.exec_async(&mut conn)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(RelayError::RedisTimeout(self.config.publish_timeout)),
        }
    }

    /// Sends `emails` (row index, email) in order. Returns how many of the
    /// `rows` rows (a prefix) are done, and the outage that stopped it early.
    async fn send(&self, emails: Vec<(usize, Email)>, rows: usize) -> (usize, Option<MailError>) {
        for (index, email) in emails {
            match self.notifier.deliver(&email).await {
                // Rejected for good: logged by `deliver`, and passed over.
                Ok(()) | Err(MailError::Rejected(_)) => {}
                Err(e @ MailError::Unavailable(_)) => return (index, Some(e)),
            }
        }
        (rows, None)
    }
}

/// Deletes the outbox rows published more than `retention` ago, `chunk` rows per
/// transaction, until none is left; returns how many. Unpublished rows are never
/// touched. Each chunk is a sequential scan that stops once it has found its
/// rows, or reads the whole table when fewer are left: the outbox keeps no index
/// on `published_at`, which every insert on the sale's hot path would pay for,
/// and pruning runs rarely (`prune_every`) and never during a rush.
pub async fn prune_published(pool: &PgPool, retention: Duration, chunk: usize) -> Result<u64, sqlx::Error> {
    let retention = chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
    let cutoff = Utc::now().checked_sub_signed(retention).unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
    let chunk = i64::try_from(chunk.max(1)).unwrap_or(i64::MAX);
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM outbox WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM outbox WHERE published_at < $1 LIMIT $2))",
        )
        .bind(cutoff)
        .bind(chunk)
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        metrics::counter!("boxoffice_outbox_pruned_total").increment(deleted);
        if deleted < chunk as u64 {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rush_defers_passes_for_at_most_the_longest_deferral() {
        let config =
            RelayConfig { rush_records_per_sec: 1_000, rush_max_defer: Duration::from_secs(2), ..Default::default() };
        let committed = Arc::new(AtomicU64::new(0));
        let mut gate = RushGate::new(Arc::clone(&committed));
        let t0 = gate.last.1;
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Quiet: 100 records in 500 ms.
        committed.store(100, Ordering::Relaxed);
        assert_eq!(gate.wait(&config, at(500)), None);
        // A rush: 5,000 records in the next 500 ms; passes wait...
        committed.store(5_100, Ordering::Relaxed);
        assert_eq!(gate.wait(&config, at(1_000)), Some(RUSH_CHECK));
        // ...a reading inside the window keeps the last pace...
        assert_eq!(gate.wait(&config, at(1_100)), Some(RUSH_CHECK));
        committed.store(8_000, Ordering::Relaxed);
        assert_eq!(gate.wait(&config, at(2_500)), Some(RUSH_CHECK));
        // A pass that found a full batch during the rush does not stop the waiting.
        gate.passed(true);
        assert_eq!(gate.wait(&config, at(2_600)), Some(RUSH_CHECK));
        // Once the longest deferral is up, passes go back to back while they find
        // full batches...
        committed.store(11_000, Ordering::Relaxed);
        assert_eq!(gate.wait(&config, at(3_000)), None);
        gate.passed(true);
        assert_eq!(gate.wait(&config, at(3_050)), None);
        gate.passed(true);
        assert_eq!(gate.wait(&config, at(3_100)), None);
        // ...and the wait starts again after the first that finds little.
        gate.passed(false);
        committed.store(14_000, Ordering::Relaxed);
        assert_eq!(gate.wait(&config, at(3_500)), Some(RUSH_CHECK));
        // The rush ends: passes go at once.
        assert_eq!(gate.wait(&config, at(4_000)), None);
        // Zero: never wait.
        let never = RelayConfig { rush_max_defer: Duration::ZERO, ..config };
        committed.store(100_000, Ordering::Relaxed);
        assert_eq!(gate.wait(&never, at(5_000)), None);
    }

    #[test]
    fn streams_are_named_after_topics() {
        assert_eq!(stream_key(crate::store::cache::DEFAULT_PREFIX, "ticket:issued"), "boxoffice:ticket:issued");
        assert_eq!(stream_key("t1:", "hold:created"), "t1:hold:created");
    }

    #[test]
    fn the_defaults_match_the_documentation() {
        let c = RelayConfig::default();
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.max_backoff, Duration::from_secs(5));
        assert_eq!(c.stream_maxlen, 1_000_000);
        assert_eq!((c.rush_records_per_sec, c.rush_max_defer), (1_000, Duration::from_secs(10)));
        assert_eq!(c.retention, Some(Duration::from_secs(7 * 24 * 3600)));
    }
}
