//! `PgJournal`: the engine's journal port on PostgreSQL, with group commit.
//!
//! Actors append records to one queue. A few writer tasks each take a batch —
//! everything queued, up to `max_batch`, waiting at most `max_wait` for more — and
//! write it in one call of the database function `boxoffice_journal_write`: one
//! round trip, whose statements (the fence check, one bulk `UNNEST` statement per
//! kind of change, the outbox rows for the same changes) commit together when it
//! returns. Every record in the batch is acknowledged then, so a caller's reply
//! waits for one fsync shared with hundreds of others.
//!
//! A batch whose call got no answer (the connection dropped) may have committed:
//! the writer looks it up before it acknowledges or fails it, and while the
//! database does not answer that lookup the breaker is open.
//!
//! Several writers may commit at once: the engine never has two changes of the
//! same hold in flight (see `SeatInventory`), and a change that frees seats is
//! acknowledged before anything can take them, so batches never depend on each
//! other.
//!
//! Failures: connection-type errors are retried with backoff, then the batch
//! fails (the actors undo it) and the journal's breaker opens: for the next
//! [`BREAKER_OPEN_FOR`] every record is failed at once, without touching the
//! database, so callers get a 503 in microseconds instead of each waiting out
//! connection timeouts (a database outage fails fast). After that window one
//! record goes through as the probe while the others keep failing fast: if its
//! batch reaches the database, the breaker closes; if not, it opens again. A
//! constraint violation — which would mean an engine
//! bug, since the constraints only back up its decisions — is isolated by writing
//! the batch's records one by one, so one bad record cannot fail its neighbours.

use super::datetime;
use super::leases::Leases;
use super::outbox::Topic;
use boxoffice_actors::journal::{Ack, Journal, JournalError};
use boxoffice_actors::record::{Change, Record};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, mpsc};
use uuid::Uuid;

/// Group-commit settings.
#[derive(Clone, Copy, Debug)]
pub struct JournalConfig {
    /// Most records in one transaction.
    pub max_batch: usize,
    /// How long a writer waits for a batch to fill once it has one record. Zero by
    /// default: with one round trip per batch, a fill wait was a sizeable share of
    /// a closed loop's latency, and under load batches fill while the other
    /// writers commit.
    pub max_wait: Duration,
    /// Writer tasks (concurrent transactions).
    pub writers: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self { max_batch: 1024, max_wait: Duration::ZERO, writers: 2 }
    }
}

/// Backoff between attempts at a batch whose connection failed.
/// Short: a longer outage is the breaker's business, and the callers are waiting.
const RETRY_BACKOFF: [Duration; 2] = [Duration::from_millis(20), Duration::from_millis(100)];

/// About one committed batch in this many prunes `journal_batches` of rows older
/// than ten minutes.
const PRUNE_BATCHES_ONE_IN: u32 = 1024;

/// How long the breaker stays open after a batch failed for want of a database.
const BREAKER_OPEN_FOR: Duration = Duration::from_millis(250);

type Queue = Arc<Mutex<mpsc::UnboundedReceiver<(Record, Ack)>>>;

#[derive(Clone)]
pub struct PgJournal {
    tx: mpsc::UnboundedSender<(Record, Ack)>,
    breaker: Arc<Breaker>,
    committed: Arc<AtomicU64>,
}

/// Why a batch was not written.
#[derive(Debug)]
enum WriteError {
    Db(sqlx::Error),
    /// This node no longer holds these events at these epochs.
    Fenced(Vec<(Uuid, i64)>),
    /// The call was sent and its answer lost: the batch may or may not be in.
    InDoubt(sqlx::Error),
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        WriteError::Db(e)
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Db(e) => e.fmt(f),
            WriteError::Fenced(events) => write!(f, "no longer the owner of {} events", events.len()),
            WriteError::InDoubt(e) => write!(f, "commit in doubt: {e}"),
        }
    }
}

/// Whether the database is known to be unreachable.
///
/// Closed: records go to the database. Open: every record fails at once, until a
/// deadline. Half-open (past the deadline): the next record is let through as the
/// probe, and the others keep failing fast until the probe's batch settles it —
/// committed, the breaker closes; refused for want of a database, it opens again.
struct Breaker {
    epoch: Instant,
    /// 0 when closed; else open until this many milliseconds after `epoch`.
    open_until_ms: AtomicU64,
    /// Half-open and the probe is on its way.
    probing: AtomicBool,
}

impl Breaker {
    fn new() -> Self {
        Self { epoch: Instant::now(), open_until_ms: AtomicU64::new(0), probing: AtomicBool::new(false) }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn is_closed(&self) -> bool {
        self.open_until_ms.load(Ordering::Acquire) == 0
    }

    /// Whether a record may go to the database: the breaker is closed, or it is
    /// half-open and this record becomes the probe.
    fn admits(&self) -> bool {
        let until = self.open_until_ms.load(Ordering::Acquire);
        until == 0
            || (self.now_ms() >= until
                && self.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok())
    }

    /// A batch of queued records may go to the database: the breaker is closed, or
    /// the batch carries the probe.
    fn lets_batches_through(&self) -> bool {
        self.is_closed() || self.probing.load(Ordering::Acquire)
    }

    fn trip(&self) {
        let until = (self.now_ms() + BREAKER_OPEN_FOR.as_millis() as u64).max(1);
        let was = self.open_until_ms.swap(until, Ordering::AcqRel);
        self.probing.store(false, Ordering::Release);
        if was == 0 {
            tracing::error!("the database is unavailable: journal writes fail fast until it answers again");
            metrics::gauge!("boxoffice_journal_breaker_open").set(1.0);
        }
    }

    fn close(&self) {
        let was = self.open_until_ms.swap(0, Ordering::AcqRel);
        self.probing.store(false, Ordering::Release);
        if was != 0 {
            tracing::info!("the database answers again: journal writes resumed");
            metrics::gauge!("boxoffice_journal_breaker_open").set(0.0);
        }
    }
}

fn unavailable() -> JournalError {
    JournalError::Failed("the database is unavailable".into())
}

fn fail_fast(acks: impl IntoIterator<Item = Ack>) {
    let mut n = 0;
    for ack in acks {
        ack.done(Err(unavailable()));
        n += 1;
    }
    metrics::counter!("boxoffice_journal_fast_failures_total").increment(n);
}

impl PgJournal {
    /// Starts the writer tasks. They stop once every `PgJournal` clone is dropped
    /// and the queue is empty — so dropping the journal after the actors have
    /// drained flushes it.
    ///
    /// With `leases`, every transaction first checks that this node still holds
    /// the lease of each event it writes, at the epoch it took (see
    /// `store::leases`); the records of events it lost are refused with
    /// [`JournalError::Fenced`] and the rest written.
    pub fn start(
        pool: PgPool,
        config: JournalConfig,
        leases: Option<Arc<Leases>>,
    ) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue: Queue = Arc::new(Mutex::new(rx));
        let breaker = Arc::new(Breaker::new());
        let committed = Arc::new(AtomicU64::new(0));
        let writers = (0..config.writers.max(1))
            .map(|_| {
                let writer = Writer {
                    pool: pool.clone(),
                    breaker: Arc::clone(&breaker),
                    leases: leases.clone(),
                    committed: Arc::clone(&committed),
                };
                tokio::spawn(writer.run(Arc::clone(&queue), config))
            })
            .collect();
        (Self { tx, breaker, committed }, writers)
    }

    /// Records committed so far by this journal: how busy the sale is, for work
    /// that can wait (the outbox relay defers its passes during a rush).
    pub fn committed_records(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.committed)
    }
}

impl Journal for PgJournal {
    fn append(&self, record: Record, ack: Ack) {
        if !self.breaker.admits() {
            fail_fast([ack]);
            return;
        }
        if let Err(mpsc::error::SendError((_, ack))) = self.tx.send((record, ack)) {
            ack.done(Err(JournalError::Failed("the journal is shut down".into())));
        }
    }
}

/// One writer task's view: where to write, the shared breaker, the fence.
struct Writer {
    pool: PgPool,
    breaker: Arc<Breaker>,
    leases: Option<Arc<Leases>>,
    committed: Arc<AtomicU64>,
}

impl Writer {
    async fn run(self, queue: Queue, config: JournalConfig) {
        loop {
            let batch = {
                let mut rx = queue.lock().await;
                let Some(first) = rx.recv().await else { return };
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + config.max_wait;
                while batch.len() < config.max_batch {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(mpsc::error::TryRecvError::Disconnected) => break,
                        Err(mpsc::error::TryRecvError::Empty) => {
                            match tokio::time::timeout_at(deadline, rx.recv()).await {
                                Ok(Some(next)) => batch.push(next),
                                Ok(None) | Err(_) => break,
                            }
                        }
                    }
                }
                batch
            };
            // Queued before the breaker opened: fail with the rest rather than wait.
            if !self.breaker.lets_batches_through() {
                fail_fast(batch.into_iter().map(|(_, ack)| ack));
                continue;
            }
            self.commit(batch).await;
        }
    }

    async fn write(&self, batch: Uuid, records: &[Record]) -> Result<(), WriteError> {
        let written = match write_batch(&self.pool, batch, records, self.leases.as_deref()).await {
            Err(WriteError::InDoubt(e)) => match self.landed(batch).await {
                true => Ok(()),
                false => Err(WriteError::Db(e)),
            },
            other => other,
        };
        if written.is_ok() && rand::random::<u32>().is_multiple_of(PRUNE_BATCHES_ONE_IN) {
            let pool = self.pool.clone();
            tokio::spawn(async move {
                let pruned =
                    sqlx::query("DELETE FROM journal_batches WHERE committed_at < now() - interval '10 minutes'")
                        .execute(&pool)
                        .await;
                if let Err(e) = pruned {
                    tracing::debug!(error = %e, "journal batches not pruned");
                }
            });
        }
        written
    }

    /// Whether `batch` committed, asked until the database answers: its answer
    /// decides whether the changes are acknowledged or undone, and a guess either way
    /// could lose an acknowledged change or free a seat the database has taken. The
    /// batch's transaction holds an advisory lock on the batch, so this waits for a
    /// commit still in progress on the old connection before it looks.
    async fn landed(&self, batch: Uuid) -> bool {
        let mut wait = Duration::from_millis(50);
        loop {
            match batch_committed(&self.pool, batch).await {
                Ok(landed) => {
                    tracing::warn!(%batch, landed, "journal commit was in doubt; looked it up");
                    metrics::counter!("boxoffice_journal_commits_in_doubt_total").increment(1);
                    return landed;
                }
                Err(e) => {
                    // Meanwhile the other records fail fast, as in any outage, rather
                    // than queue behind this writer.
                    if super::db::is_unavailable(&e) {
                        self.breaker.trip();
                    }
                    tracing::warn!(%batch, error = %e, "journal commit in doubt; the database does not answer yet");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    async fn commit(&self, batch: Vec<(Record, Ack)>) {
        let breaker = &self.breaker;
        let (records, acks): (Vec<Record>, Vec<Ack>) = batch.into_iter().unzip();
        metrics::histogram!("boxoffice_journal_batch_size").record(records.len() as f64);
        let started = Instant::now();
        // A probe gets one attempt: its callers and everyone refused meanwhile wait on it.
        let retries = if breaker.is_closed() { RETRY_BACKOFF.len() } else { 0 };
        let mut attempt = 0;
        // One id for every attempt at this batch: a retry after a lost answer finds it.
        let batch = Uuid::now_v7();
        let outcome = loop {
            match self.write(batch, &records).await {
                Ok(()) => break Ok(()),
                Err(WriteError::Db(e)) if is_transient(&e) && attempt < retries => {
                    tracing::warn!(error = %e, attempt, "journal batch failed; retrying");
                    tokio::time::sleep(RETRY_BACKOFF[attempt]).await;
                    attempt += 1;
                }
                Err(e) => break Err(e),
            }
        };
        match &outcome {
            Err(WriteError::Db(e)) if super::db::is_unavailable(e) => breaker.trip(),
            // Committed, or refused by a database that answered.
            _ => breaker.close(),
        }
        match outcome {
            Ok(()) => {
                metrics::histogram!("boxoffice_journal_commit_seconds").record(started.elapsed().as_secs_f64());
                metrics::counter!("boxoffice_journal_records_total").increment(records.len() as u64);
                self.committed.fetch_add(records.len() as u64, Ordering::Relaxed);
                for ack in acks {
                    ack.done(Ok(()));
                }
            }
            Err(WriteError::Fenced(lost)) => {
                // Refuse the deposed events' records; write the others on their own.
                tracing::warn!(events = lost.len(), "journal refused changes of events another node owns now");
                let mut rest = Vec::with_capacity(records.len());
                for (record, ack) in records.into_iter().zip(acks) {
                    if lost.contains(&(record.event.0, record.epoch)) {
                        metrics::counter!("boxoffice_fencing_rejections_total").increment(1);
                        ack.done(Err(JournalError::Fenced));
                    } else {
                        rest.push((record, ack));
                    }
                }
                if let Some(leases) = &self.leases {
                    // Only a lease this node still believes in at that epoch is gone; a
                    // stale record of an earlier activation leaves the current one be.
                    for (event, epoch) in &lost {
                        if leases.epoch(*event) == Some(*epoch) {
                            leases.forget(*event);
                        }
                    }
                }
                if !rest.is_empty() {
                    Box::pin(self.commit(rest)).await;
                }
            }
            Err(WriteError::Db(e)) if !is_transient(&e) && records.len() > 1 => {
                tracing::error!(error = %e, records = records.len(), "journal batch refused; writing its records one by one");
                for (record, ack) in records.into_iter().zip(acks) {
                    let one = [record];
                    let result = self.write(Uuid::now_v7(), &one).await;
                    if let Err(e) = &result {
                        tracing::error!(error = %e, change = one[0].change.kind(), "journal record refused");
                        metrics::counter!("boxoffice_journal_failures_total").increment(1);
                    }
                    ack.done(result.map_err(|e| match e {
                        WriteError::Fenced(_) => JournalError::Fenced,
                        WriteError::Db(e) | WriteError::InDoubt(e) => JournalError::Failed(e.to_string()),
                    }));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = records.len(), "journal batch failed");
                metrics::counter!("boxoffice_journal_failures_total").increment(records.len() as u64);
                for ack in acks {
                    ack.done(Err(JournalError::Failed(e.to_string())));
                }
            }
        }
    }
}

/// Errors that say nothing about the records themselves: the database is
/// unavailable, or the transaction lost a serialization/deadlock race (class 40).
fn is_transient(e: &sqlx::Error) -> bool {
    super::db::is_unavailable(e)
        || matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("40")))
}

/// Column vectors for one batch, filled from its records.
#[derive(Default)]
struct Columns {
    // holds created
    h_id: Vec<Uuid>,
    h_event: Vec<Uuid>,
    h_buyer: Vec<Uuid>,
    /// JSON text: serialized straight from the records, cast to jsonb by the database.
    h_items: Vec<String>,
    h_qty: Vec<i32>,
    h_amount: Vec<i64>,
    h_key: Vec<Option<String>>,
    h_fp: Vec<i64>,
    h_created: Vec<DateTime<Utc>>,
    h_expires: Vec<DateTime<Utc>>,
    // hold status changes
    s_id: Vec<Uuid>,
    s_status: Vec<&'static str>,
    s_at: Vec<DateTime<Utc>>,
    // tickets issued
    t_id: Vec<Uuid>,
    t_event: Vec<Uuid>,
    t_hold: Vec<Uuid>,
    t_owner: Vec<Uuid>,
    t_section: Vec<String>,
    t_seat: Vec<Option<String>>,
    t_price: Vec<i64>,
    t_at: Vec<DateTime<Utc>>,
    // payments
    p_id: Vec<Uuid>,
    p_hold: Vec<Uuid>,
    p_provider: Vec<String>,
    p_ref: Vec<String>,
    p_amount: Vec<i64>,
    p_currency: Vec<String>,
    p_charge_key: Vec<Option<String>>,
    // tickets cancelled
    c_id: Vec<Uuid>,
    c_at: Vec<DateTime<Utc>>,
    // outbox
    o_topic: Vec<&'static str>,
    o_aggregate: Vec<Uuid>,
    o_payload: Vec<String>,
}

/// An outbox payload: the change itself, plus the event it happened at.
#[derive(serde::Serialize)]
struct OutboxPayload<'a> {
    #[serde(flatten)]
    change: &'a Change,
    event_id: Uuid,
}

impl Columns {
    fn outbox(&mut self, topic: Topic, aggregate: Uuid, event: Uuid, change: &Change) {
        self.o_topic.push(topic.as_str());
        self.o_aggregate.push(aggregate);
        let payload = serde_json::to_string(&OutboxPayload { change, event_id: event });
        self.o_payload.push(payload.unwrap_or_else(|_| "null".into()));
    }

    /// The bytes this batch's arguments take encoded, or a little more: PostgreSQL's
    /// binary array format is a 20-byte header, then each element after its 4-byte
    /// length, and each argument has a 4-byte length of its own. The buffer is then
    /// allocated once, instead of doubled and copied through a batch's ~100 kB: in a
    /// sale (`perf`) that growth was a third of the server's copying and of its page
    /// zeroing (fresh memory for the larger buffers), ~4 % of its CPU.
    fn encoded_len(&self) -> usize {
        fn fixed<T>(column: &[T]) -> usize {
            24 + column.len() * (4 + std::mem::size_of::<T>().min(16))
        }
        fn text<S: AsRef<str>>(column: &[S]) -> usize {
            24 + column.iter().map(|s| 4 + s.as_ref().len()).sum::<usize>()
        }
        fn optional_text(column: &[Option<String>]) -> usize {
            24 + column.iter().map(|s| 4 + s.as_ref().map_or(0, String::len)).sum::<usize>()
        }
        fixed(&self.h_id)
            + fixed(&self.h_event)
            + fixed(&self.h_buyer)
            + text(&self.h_items)
            + fixed(&self.h_qty)
            + fixed(&self.h_amount)
            + optional_text(&self.h_key)
            + fixed(&self.h_fp)
            + fixed(&self.h_created)
            + fixed(&self.h_expires)
            + fixed(&self.s_id)
            + text(&self.s_status)
            + fixed(&self.s_at)
            + fixed(&self.t_id)
            + fixed(&self.t_event)
            + fixed(&self.t_hold)
            + fixed(&self.t_owner)
            + text(&self.t_section)
            + optional_text(&self.t_seat)
            + fixed(&self.t_price)
            + fixed(&self.t_at)
            + fixed(&self.p_id)
            + fixed(&self.p_hold)
            + text(&self.p_provider)
            + text(&self.p_ref)
            + fixed(&self.p_amount)
            + text(&self.p_currency)
            + optional_text(&self.p_charge_key)
            + fixed(&self.c_id)
            + fixed(&self.c_at)
            + text(&self.o_topic)
            + fixed(&self.o_aggregate)
            + text(&self.o_payload)
    }

    /// Another row with the payload of the row just added.
    fn outbox_again(&mut self, topic: Topic, aggregate: Uuid) {
        let payload = self.o_payload.last().cloned().unwrap_or_else(|| "null".into());
        self.o_topic.push(topic.as_str());
        self.o_aggregate.push(aggregate);
        self.o_payload.push(payload);
    }

    fn add(&mut self, record: &Record) {
        let event = record.event.0;
        let change = &record.change;
        match change {
            Change::HoldCreated { hold } => {
                self.h_id.push(hold.id.0);
                self.h_event.push(event);
                self.h_buyer.push(hold.buyer.0);
                self.h_items.push(serde_json::to_string(&hold.items).unwrap_or_else(|_| "null".into()));
                self.h_qty.push(i32::try_from(hold.items.quantity()).unwrap_or(i32::MAX));
                self.h_amount.push(hold.amount);
                self.h_key.push(hold.idempotency_key.as_ref().map(|k| k.as_str().to_owned()));
                self.h_fp.push(hold.fingerprint as i64);
                self.h_created.push(datetime(hold.created_at));
                self.h_expires.push(datetime(hold.expires_at));
                self.outbox(Topic::HoldCreated, hold.id.0, event, change);
            }
            Change::HoldPurchased { hold, buyer, tickets, payment, at, .. } => {
                self.s_id.push(hold.0);
                self.s_status.push("purchased");
                self.s_at.push(datetime(*at));
                for t in tickets {
                    self.t_id.push(t.id.0);
                    self.t_event.push(event);
                    self.t_hold.push(hold.0);
                    self.t_owner.push(buyer.0);
                    self.t_section.push(t.section.clone());
                    self.t_seat.push(t.seat.clone());
                    self.t_price.push(t.price);
                    self.t_at.push(datetime(*at));
                }
                if let Some(p) = payment {
                    self.p_id.push(Uuid::now_v7());
                    self.p_hold.push(hold.0);
                    self.p_provider.push(p.provider.clone());
                    self.p_ref.push(p.reference.clone());
                    self.p_amount.push(p.amount);
                    self.p_currency.push(p.currency.clone());
                    self.p_charge_key.push(p.charge_key.clone());
                    self.outbox(Topic::PaymentCreated, hold.0, event, change);
                    // The same change under a second topic: serialised once.
                    self.outbox_again(Topic::TicketIssued, hold.0);
                } else {
                    self.outbox(Topic::TicketIssued, hold.0, event, change);
                }
            }
            Change::HoldReleased { hold, at } => {
                self.s_id.push(hold.0);
                self.s_status.push("released");
                self.s_at.push(datetime(*at));
                self.outbox(Topic::HoldReleased, hold.0, event, change);
            }
            Change::HoldExpired { hold, at } => {
                self.s_id.push(hold.0);
                self.s_status.push("expired");
                self.s_at.push(datetime(*at));
                self.outbox(Topic::HoldExpired, hold.0, event, change);
            }
            Change::TicketsCancelled { hold, tickets, at } => {
                for t in tickets {
                    self.c_id.push(t.0);
                    self.c_at.push(datetime(*at));
                }
                self.outbox(Topic::TicketCancelled, hold.0, event, change);
            }
        }
    }
}

/// The advisory-lock key of a batch: its id's low 64 bits.
pub fn batch_lock(batch: Uuid) -> i64 {
    batch.as_u64_pair().1 as i64
}

/// Whether `batch` is in, once no transaction holds its lock any more.
pub async fn batch_committed(pool: &PgPool, batch: Uuid) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(batch_lock(batch)).execute(&mut *tx).await?;
    let landed: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM journal_batches WHERE batch_id = $1)")
        .bind(batch)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(landed)
}

/// Writes a batch in one call of `boxoffice_journal_write` (see its migration):
/// one round trip, committed when the call returns.
async fn write_batch(
    pool: &PgPool,
    batch: Uuid,
    records: &[Record],
    leases: Option<&Leases>,
) -> Result<(), WriteError> {
    let mut c = Columns::default();
    for record in records {
        c.add(record);
    }
    let fence = leases.map(|leases| {
        let mut writes: Vec<(Uuid, i64)> = records.iter().map(|r| (r.event.0, r.epoch)).collect();
        writes.sort_unstable();
        writes.dedup();
        leases.fence_for(&writes)
    });
    // A connection first: failing to get one means the batch was never sent.
    let mut conn = pool.acquire().await?;
    let mut arguments = PgArguments::default();
    // The fence: a key, an event and an epoch per event (4 + 4, 4 + 16, 4 + 8 bytes).
    let fence_len = fence.as_ref().map_or(0, |f| 72 + f.node.len() + f.keys.len() * 40);
    // The batch's id, its lock, the node, the key space and their lengths: < 256.
    arguments.reserve(40, c.encoded_len() + fence_len + 256);
    let lost: Result<Vec<(Uuid, i64)>, sqlx::Error> = sqlx::query_as_with(
        "SELECT lost_event, lost_epoch FROM boxoffice_journal_write(
            $1, $2, $3, $4, $5, $6, $7,
            $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
            $18, $19, $20,
            $21, $22, $23, $24, $25, $26, $27, $28,
            $29, $30, $31, $32, $33, $34, $35,
            $36, $37,
            $38, $39, $40)",
        arguments,
    )
    .bind(batch)
    .bind(batch_lock(batch))
    .bind(fence.as_ref().map(|f| f.node))
    .bind(fence.as_ref().map_or(0, |f| f.space))
    .bind(fence.as_ref().map_or(&[][..], |f| &f.keys[..]))
    .bind(fence.as_ref().map_or(&[][..], |f| &f.events[..]))
    .bind(fence.as_ref().map_or(&[][..], |f| &f.epochs[..]))
    .bind(&c.h_id)
    .bind(&c.h_event)
    .bind(&c.h_buyer)
    .bind(&c.h_items)
    .bind(&c.h_qty)
    .bind(&c.h_amount)
    .bind(&c.h_key)
    .bind(&c.h_fp)
    .bind(&c.h_created)
    .bind(&c.h_expires)
    .bind(&c.s_id)
    .bind(&c.s_status)
    .bind(&c.s_at)
    .bind(&c.t_id)
    .bind(&c.t_event)
    .bind(&c.t_hold)
    .bind(&c.t_owner)
    .bind(&c.t_section)
    .bind(&c.t_seat)
    .bind(&c.t_price)
    .bind(&c.t_at)
    .bind(&c.p_id)
    .bind(&c.p_hold)
    .bind(&c.p_provider)
    .bind(&c.p_ref)
    .bind(&c.p_amount)
    .bind(&c.p_currency)
    .bind(&c.p_charge_key)
    .bind(&c.c_id)
    .bind(&c.c_at)
    .bind(&c.o_topic)
    .bind(&c.o_aggregate)
    .bind(&c.o_payload)
    .fetch_all(&mut *conn)
    .await;
    match lost {
        Ok(lost) if lost.is_empty() => Ok(()),
        Ok(lost) => Err(WriteError::Fenced(lost)),
        // Sent, and no answer: the database may have committed it.
        Err(e) if super::db::is_unavailable(&e) => Err(WriteError::InDoubt(e)),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boxoffice_actors::HoldId;

    /// A batch of every kind of change: a hold, a paid purchase of two seats, a
    /// release, an expiry and a cancellation.
    fn every_kind_of_change() -> Columns {
        use boxoffice_actors::record::{HoldRecord, HoldStatus, Items, Payment, TicketRecord};
        use boxoffice_actors::{BuyerId, EventId, IdempotencyKey, TicketId, UnixMs};
        let (hold, buyer, at) = (HoldId(Uuid::now_v7()), BuyerId(Uuid::now_v7()), UnixMs(1_700_000_000_000));
        let ticket = |seat: &str| TicketRecord {
            id: TicketId(Uuid::now_v7()),
            section: "Section 8".into(),
            seat: Some(seat.into()),
            price: 5000,
            cancelled: false,
        };
        let changes = [
            Change::HoldCreated {
                hold: HoldRecord {
                    id: hold,
                    buyer,
                    items: Arc::new(Items::Seats { seats: vec!["S8R14-5".into(), "S8R14-6".into()].into() }),
                    amount: 10_000,
                    created_at: at,
                    expires_at: at,
                    status: HoldStatus::Active,
                    idempotency_key: Some(IdempotencyKey::parse("ddfe60dec1a34cb2b6c0e058b317c0b2").unwrap()),
                    fingerprint: u64::MAX,
                    tickets: Vec::new(),
                },
            },
            Change::HoldPurchased {
                hold,
                buyer,
                amount: 10_000,
                tickets: vec![ticket("S8R14-5"), ticket("S8R14-6")],
                payment: Some(Box::new(Payment {
                    provider: "test".into(),
                    reference: "pi_test_6a537a4d3c13df6dcf4e9999".into(),
                    amount: 10_000,
                    currency: "JPY".into(),
                    charge_key: Some(format!("{}:pm_card_visa", hold.0)),
                })),
                retaken: false,
                at,
            },
            Change::HoldReleased { hold, at },
            Change::HoldExpired { hold, at },
            Change::TicketsCancelled { hold, tickets: vec![TicketId(Uuid::now_v7())], at },
        ];
        let mut columns = Columns::default();
        for change in changes {
            columns.add(&Record { event: EventId(Uuid::now_v7()), epoch: 1, change });
        }
        columns
    }

    #[test]
    fn a_batch_s_arguments_fit_the_space_reserved_for_them() {
        use sqlx::postgres::{PgArgumentBuffer, Postgres};
        let c = every_kind_of_change();
        let mut buffer = PgArgumentBuffer::default();
        let mut arguments = 0;
        macro_rules! encode {
            ($($column:ident),*) => {$(
                let _ = sqlx::Encode::<Postgres>::encode_by_ref(&c.$column, &mut buffer).unwrap();
                arguments += 1;
            )*};
        }
        encode!(h_id, h_event, h_buyer, h_items, h_qty, h_amount, h_key, h_fp, h_created, h_expires);
        encode!(s_id, s_status, s_at, t_id, t_event, t_hold, t_owner, t_section, t_seat, t_price, t_at);
        encode!(p_id, p_hold, p_provider, p_ref, p_amount, p_currency, p_charge_key, c_id, c_at);
        encode!(o_topic, o_aggregate, o_payload);
        // Each argument's own 4-byte length comes before it in the message.
        let encoded = buffer.len() + 4 * arguments;
        assert!(c.encoded_len() >= encoded, "reserved {} of {encoded} bytes", c.encoded_len());
        assert!(c.encoded_len() <= encoded * 3 / 2, "reserved {} for {encoded} bytes", c.encoded_len());
    }

    #[test]
    fn outbox_payloads_are_the_change_tagged_with_its_event() {
        let (event, hold) = (Uuid::now_v7(), Uuid::now_v7());
        let change = Change::HoldReleased { hold: HoldId(hold), at: boxoffice_actors::UnixMs(1_700_000_000_000) };
        let text = serde_json::to_string(&OutboxPayload { change: &change, event_id: event }).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"type": "hold_released", "hold": hold, "at": 1_700_000_000_000i64, "event_id": event})
        );
    }
}
