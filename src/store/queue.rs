//! The waiting room in PostgreSQL: the queue (`queue_entries`), each room's
//! opening and counters (`queue_rooms`), and the organizer's settings
//! (`events.waiting_room`). Rules: `docs/domain.md`, section "Waiting room".
//!
//! **Guarantees.**
//! - One entry per account and event (the primary key); joining again returns it.
//! - Joins are group-committed ([`Joiner`]): the joins that arrive together are
//!   written per event in one transaction that moves the room's place counter once
//!   and gives the new joiners consecutive places in arrival order. A row written
//!   meanwhile by a join on another node rolls the batch back to be tried again,
//!   so no place is lost or skipped.
//! - Places are promises: they are rows, so they survive a restart and a move of
//!   the event to another node. Whoever joins before `opens_at` is in the
//!   pre-queue; the opening gives the pre-queue places `1..=n` in a seeded
//!   shuffle (seed and count kept in `queue_rooms` for audit) and later joiners
//!   the next places in join order. A join and the opening exclude each other (an
//!   advisory lock on the event, shared by joins), so nobody who joined before the
//!   opening is left out of it and nobody after it is shuffled.
//! - The owner's writes (opening, admissions, expiries, sold out) run in
//!   transactions that take the event's fence lock and check the owner's epoch
//!   first ([`Leases::fenced_in`], as the journal does): a deposed owner changes
//!   nothing.
//! - Admissions go in order of place; `admitted_through` is the highest place
//!   admitted, so whoever has a higher place knows how many are ahead without
//!   counting rows.

use crate::store::leases::Leases;
use boxoffice_actors::waiting_room::{Rate, shuffle};
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// The organizer's settings of an event's room, as stored in `events.waiting_room`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    pub enabled: bool,
    /// Admissions per minute; `None` = `auto`.
    pub rate_per_minute: Option<u32>,
    /// How long an admission lasts to start a hold.
    pub admission_ttl_secs: u32,
    /// Keep people queued after a sell-out, for returns.
    #[serde(default)]
    pub waitlist: bool,
}

impl RoomSettings {
    pub fn rate(&self) -> Rate {
        self.rate_per_minute.map_or(Rate::Auto, Rate::PerMinute)
    }
}

/// The lock key joins share and the opening takes alone.
const OPENING_LOCK: &str = "hashtextextended($1::text, 17)";

/// How long a node trusts its copy of an event's room settings. A change made on
/// this node is seen at once ([`RoomCache::invalidate`]); on another node within
/// this time.
pub const SETTINGS_TTL: Duration = Duration::from_secs(1);

/// Room settings by event, so the hold path does not ask the database each time.
#[derive(Default)]
pub struct RoomCache {
    entries: DashMap<Uuid, (Instant, Option<RoomSettings>)>,
}

impl RoomCache {
    /// `event`'s settings when its room is enabled, else `None`.
    pub async fn active(&self, db: &PgPool, event: Uuid) -> sqlx::Result<Option<RoomSettings>> {
        if let Some(e) = self.entries.get(&event)
            && e.0.elapsed() < SETTINGS_TTL
        {
            return Ok(e.1);
        }
        let settings = settings(db, event).await?.filter(|s| s.enabled);
        if self.entries.len() > 100_000 {
            self.entries.retain(|_, e| e.0.elapsed() < SETTINGS_TTL);
        }
        self.entries.insert(event, (Instant::now(), settings));
        Ok(settings)
    }

    pub fn invalidate(&self, event: Uuid) {
        self.entries.remove(&event);
    }
}

/// `event`'s stored room settings (`None` when it has none).
pub async fn settings(db: &PgPool, event: Uuid) -> sqlx::Result<Option<RoomSettings>> {
    let raw: Option<Option<serde_json::Value>> =
        sqlx::query_scalar("SELECT waiting_room FROM events WHERE event_id = $1")
            .bind(event)
            .fetch_optional(db)
            .await?;
    Ok(raw.flatten().and_then(|v| serde_json::from_value(v).ok()))
}

/// Stores `event`'s room settings (in the caller's transaction) and makes sure
/// its room row exists. A room first set up when the sale is already open (or
/// has no opening time) has no pre-queue to shuffle: it is open from the start,
/// so the first to join get places at once.
pub async fn save_settings(
    tx: &mut sqlx::PgConnection,
    event: Uuid,
    settings: &RoomSettings,
    opens_at: Option<DateTime<Utc>>,
) -> sqlx::Result<()> {
    let json = serde_json::to_value(settings).expect("settings serialise");
    sqlx::query("UPDATE events SET waiting_room = $2 WHERE event_id = $1")
        .bind(event)
        .bind(json)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO queue_rooms (event_id, opened_at, shuffle_seed)
         VALUES ($1, CASE WHEN coalesce($2 <= now(), true) THEN now() END,
                 CASE WHEN coalesce($2 <= now(), true) THEN 0 END)
         ON CONFLICT DO NOTHING",
    )
    .bind(event)
    .bind(opens_at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Where one account stands in one event's room.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Entry {
    pub user_id: Uuid,
    pub seq: i64,
    pub joined_at: DateTime<Utc>,
    pub pre_queue: bool,
    /// Place in line; `None` until the opening for the pre-queue.
    pub position: Option<i64>,
    pub state: String,
    pub admitted_at: Option<DateTime<Utc>>,
    pub admission_expires_at: Option<DateTime<Utc>>,
}

const ENTRY_COLUMNS: &str = "user_id, seq, joined_at, pre_queue, position, state, admitted_at, admission_expires_at";

/// One room's opening and counters.
#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct Room {
    pub opened_at: Option<DateTime<Utc>>,
    pub shuffle_seed: Option<i64>,
    pub shuffled: i32,
    pub opened_by_node: Option<String>,
    pub opened_epoch: Option<i64>,
    pub joined_after: i64,
    pub admitted_through: i64,
    pub admitted_total: i64,
    pub expired_total: i64,
    pub sold_out_at: Option<DateTime<Utc>>,
}

pub async fn room(db: &PgPool, event: Uuid) -> sqlx::Result<Room> {
    let room: Option<Room> = sqlx::query_as(
        "SELECT opened_at, shuffle_seed, shuffled, opened_by_node, opened_epoch, joined_after, admitted_through,
                admitted_total, expired_total, sold_out_at
           FROM queue_rooms WHERE event_id = $1",
    )
    .bind(event)
    .fetch_optional(db)
    .await?;
    Ok(room.unwrap_or_default())
}

pub async fn entry(db: &PgPool, event: Uuid, user: Uuid) -> sqlx::Result<Option<Entry>> {
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM queue_entries WHERE event_id = $1 AND user_id = $2");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(event).bind(user).fetch_optional(db).await
}

/// Where `user` stands in `event`'s room, with the room and the sale's opening,
/// in one query (the poll of every waiting buyer); `None` if they never joined.
pub async fn place(db: &PgPool, event: Uuid, user: Uuid) -> sqlx::Result<Option<(Entry, Room, Option<DateTime<Utc>>)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        entry: Entry,
        #[sqlx(flatten)]
        room: Room,
        opens_at: Option<DateTime<Utc>>,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT q.user_id, q.seq, q.joined_at, q.pre_queue, q.position, q.state, q.admitted_at,
                q.admission_expires_at,
                r.opened_at, r.shuffle_seed, coalesce(r.shuffled, 0) AS shuffled, r.opened_by_node, r.opened_epoch,
                coalesce(r.joined_after, 0) AS joined_after, coalesce(r.admitted_through, 0) AS admitted_through,
                coalesce(r.admitted_total, 0) AS admitted_total, coalesce(r.expired_total, 0) AS expired_total,
                r.sold_out_at, e.opens_at
           FROM queue_entries q
           JOIN events e ON e.event_id = q.event_id
           LEFT JOIN queue_rooms r ON r.event_id = q.event_id
          WHERE q.event_id = $1 AND q.user_id = $2",
    )
    .bind(event)
    .bind(user)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.entry, r.room, r.opens_at)))
}

/// Joins answered by one transaction (per event) at most.
pub const MAX_JOIN_BATCH: usize = 1024;
/// How often a batch is tried again after a row of it was written meanwhile by a
/// join on another node (or a deadlock with one).
const JOIN_RETRIES: usize = 5;

type JoinReply = oneshot::Sender<Result<(Entry, bool), JoinFailure>>;

/// The joins one transaction writes: same event, same opening time.
type JoinKey = (Uuid, Option<DateTime<Utc>>);

/// One join waiting for its batch.
struct JoinRequest {
    event: Uuid,
    user: Uuid,
    opens_at: Option<DateTime<Utc>>,
    reply: JoinReply,
}

/// Why a batch failed, for each of its callers (a `sqlx::Error` is not `Clone`).
#[derive(Debug)]
struct JoinFailure {
    unavailable: bool,
    message: String,
}

impl From<JoinFailure> for sqlx::Error {
    fn from(f: JoinFailure) -> Self {
        if f.unavailable {
            // Classified as unavailable (`db::is_unavailable`): 503, as a join's own error would be.
            sqlx::Error::Protocol(f.message)
        } else {
            sqlx::Error::Decode(f.message.into())
        }
    }
}

/// The group-committing join path. Every join of the node goes through one task
/// that takes whatever is waiting (up to [`MAX_JOIN_BATCH`]) and writes it with
/// one transaction per event ([`join_batch`]): the room's row (the place
/// counter) is updated once per batch rather than once per join, and the joins
/// share one commit. A batch keeps its request order, so places after the opening
/// stay first come, first served.
#[derive(Clone)]
pub struct Joiner {
    tx: mpsc::UnboundedSender<JoinRequest>,
}

impl Joiner {
    /// Starts the task; it ends when every `Joiner` is dropped.
    pub fn start(pool: PgPool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_joins(pool, rx));
        Self { tx }
    }

    /// Puts `user` in `event`'s queue, or returns the entry they have (`false`:
    /// it was there already). `opens_at`: the sale's opening; before it, the
    /// pre-queue. Answers once the entry is durable.
    pub async fn join(&self, event: Uuid, user: Uuid, opens_at: Option<DateTime<Utc>>) -> sqlx::Result<(Entry, bool)> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(JoinRequest { event, user, opens_at, reply })
            .map_err(|_| sqlx::Error::Protocol("the queue joiner is shut down".into()))?;
        let answered = answer.await.map_err(|_| sqlx::Error::Protocol("the queue joiner stopped".into()))?;
        answered.map_err(Into::into)
    }
}

async fn run_joins(pool: PgPool, mut rx: mpsc::UnboundedReceiver<JoinRequest>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_JOIN_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // Per event (and opening time), in arrival order.
        let mut groups: Vec<(JoinKey, Vec<JoinRequest>)> = Vec::new();
        for request in batch {
            let key = (request.event, request.opens_at);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, group)) => group.push(request),
                None => groups.push((key, vec![request])),
            }
        }
        for ((event, opens_at), group) in groups {
            let users: Vec<Uuid> = group.iter().map(|r| r.user).collect();
            metrics::counter!("boxoffice_queue_join_batches_total").increment(1);
            metrics::histogram!("boxoffice_queue_join_batch_size").record(users.len() as f64);
            match join_batch(&pool, event, &users, opens_at).await {
                Ok(answers) => {
                    for (request, answer) in group.into_iter().zip(answers) {
                        let _ = request.reply.send(Ok(answer));
                    }
                }
                Err(e) => {
                    tracing::warn!(%event, error = %e, joins = users.len(), "queue joins not written");
                    let unavailable = super::db::is_unavailable(&e);
                    for request in group {
                        let _ = request.reply.send(Err(JoinFailure { unavailable, message: e.to_string() }));
                    }
                }
            }
        }
    }
}

/// Deadlock or serialization failure: the batch may simply be tried again.
fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "40P01" || c == "40001"))
}

/// Puts `users` (in join order; an account may appear more than once) in
/// `event`'s queue in one transaction and returns, for each of them in the same
/// order, their entry and whether this call created it. Whoever already has an
/// entry (or appears earlier in `users`) gets that entry and `false`. After the
/// opening the new joiners get the next places, consecutive, in the order given.
/// Should another node write one of these entries meanwhile, the batch is rolled
/// back and tried again, so no place is lost or skipped.
pub async fn join_batch(
    db: &PgPool,
    event: Uuid,
    users: &[Uuid],
    opens_at: Option<DateTime<Utc>>,
) -> sqlx::Result<Vec<(Entry, bool)>> {
    let mut attempt = 0;
    loop {
        match try_join_batch(db, event, users, opens_at).await {
            Ok(Some(answers)) => return Ok(answers),
            Ok(None) if attempt < JOIN_RETRIES => {
                metrics::counter!("boxoffice_queue_join_conflicts_total").increment(1)
            }
            Err(e) if is_retryable(&e) && attempt < JOIN_RETRIES => {
                metrics::counter!("boxoffice_queue_join_conflicts_total").increment(1);
            }
            Ok(None) => return Err(sqlx::Error::Protocol("queue joins kept conflicting; retry".into())),
            Err(e) => return Err(e),
        }
        attempt += 1;
    }
}

/// One attempt of [`join_batch`]; `None` when a row was written meanwhile by
/// another transaction (rolled back: try again).
async fn try_join_batch(
    db: &PgPool,
    event: Uuid,
    users: &[Uuid],
    opens_at: Option<DateTime<Utc>>,
) -> sqlx::Result<Option<Vec<(Entry, bool)>>> {
    let mut tx = db.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT pg_advisory_xact_lock_shared({OPENING_LOCK})")))
        .bind(event)
        .execute(&mut *tx)
        .await?;
    // Read after the lock: an opening that committed meanwhile is seen.
    let (opened, pre_queue): (bool, bool) = sqlx::query_as(
        "SELECT r.opened_at IS NOT NULL, r.opened_at IS NULL AND coalesce(clock_timestamp() < $2, false)
           FROM queue_rooms r WHERE r.event_id = $1",
    )
    .bind(event)
    .bind(opens_at)
    .fetch_optional(&mut *tx)
    .await?
    .unwrap_or((false, opens_at.is_some_and(|t| Utc::now() < t)));
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM queue_entries WHERE event_id = $1 AND user_id = ANY($2)");
    let existing: Vec<Entry> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(event).bind(users).fetch_all(&mut *tx).await?;
    let mut entries: HashMap<Uuid, (Entry, bool)> = existing.into_iter().map(|e| (e.user_id, (e, false))).collect();
    // New joiners, once each, in join order.
    let mut seen = HashSet::new();
    let new: Vec<Uuid> = users.iter().copied().filter(|u| !entries.contains_key(u) && seen.insert(*u)).collect();
    if !new.is_empty() {
        // The place after the last one given so far: the room's counter moves once for the batch.
        let first_place: Option<i64> = if opened {
            sqlx::query_scalar(
                "UPDATE queue_rooms SET joined_after = joined_after + $2 WHERE event_id = $1
                 RETURNING shuffled + joined_after - $2 + 1",
            )
            .bind(event)
            .bind(new.len() as i64)
            .fetch_optional(&mut *tx)
            .await?
        } else {
            None
        };
        let sql = format!(
            "INSERT INTO queue_entries (event_id, user_id, pre_queue, position)
             SELECT $1, u.user_id, $3, $4::int8 + u.ord - 1
               FROM UNNEST($2::uuid[]) WITH ORDINALITY AS u(user_id, ord) ORDER BY u.ord
             ON CONFLICT (event_id, user_id) DO NOTHING RETURNING {ENTRY_COLUMNS}"
        );
        let inserted: Vec<Entry> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(event)
            .bind(&new)
            .bind(pre_queue)
            .bind(first_place)
            .fetch_all(&mut *tx)
            .await?;
        if inserted.len() != new.len() {
            // Someone joined at the same moment on another node: theirs stands, and
            // this batch's places must not leave a gap. Again, with them as existing.
            tx.rollback().await?;
            return Ok(None);
        }
        entries.extend(inserted.into_iter().map(|e| (e.user_id, (e, true))));
    }
    tx.commit().await?;
    let mut answered = HashSet::new();
    let answers = users
        .iter()
        .map(|u| {
            let (entry, created) = entries.get(u).cloned().ok_or(sqlx::Error::RowNotFound)?;
            // Only an account's first request in the batch created its entry.
            Ok((entry, created && answered.insert(*u)))
        })
        .collect::<sqlx::Result<Vec<_>>>()?;
    Ok(Some(answers))
}

/// Marks `user`'s admission to `event` used (a hold was made with it).
pub async fn mark_used(db: &PgPool, event: Uuid, user: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE queue_entries SET state = 'used' WHERE event_id = $1 AND user_id = $2 AND state = 'admitted'")
        .bind(event)
        .bind(user)
        .execute(db)
        .await?;
    Ok(())
}

/// Entries by state, for the organizer's view.
pub async fn counts(db: &PgPool, event: Uuid) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as("SELECT state, count(*) FROM queue_entries WHERE event_id = $1 GROUP BY state ORDER BY state")
        .bind(event)
        .fetch_all(db)
        .await
}

/// Entries still waiting before the opening (the pre-queue).
pub async fn pre_queue_len(db: &PgPool, event: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM queue_entries WHERE event_id = $1 AND pre_queue AND position IS NULL")
        .bind(event)
        .fetch_one(db)
        .await
}

/// Why an owner's write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("this node no longer owns the event")]
    Fenced,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The owner's identity for a fenced write: its leases and the epoch it runs the
/// event under.
#[derive(Clone, Copy)]
pub struct Owner<'a> {
    pub leases: &'a Leases,
    pub epoch: i64,
}

async fn fenced(tx: &mut sqlx::PgConnection, owner: Owner<'_>, event: Uuid) -> Result<(), OwnerError> {
    if owner.leases.fenced_in(tx, &[(event, owner.epoch)]).await?.is_empty() {
        Ok(())
    } else {
        metrics::counter!("boxoffice_fencing_rejections_total").increment(1);
        Err(OwnerError::Fenced)
    }
}

/// Opens `event`'s room: the pre-queue gets places `1..=n` in the order
/// `shuffle(seed, n)` draws from join order, whoever joined since the opening
/// time the next places in join order. Returns the number shuffled (`None` if it
/// was open already).
pub async fn open(db: &PgPool, owner: Owner<'_>, event: Uuid, seed: u64) -> Result<Option<usize>, OwnerError> {
    let mut tx = db.begin().await?;
    fenced(&mut tx, owner, event).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("SELECT pg_advisory_xact_lock({OPENING_LOCK})")))
        .bind(event)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO queue_rooms (event_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(event)
        .execute(&mut *tx)
        .await?;
    let opened: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT opened_at FROM queue_rooms WHERE event_id = $1 FOR UPDATE")
            .bind(event)
            .fetch_one(&mut *tx)
            .await?;
    if opened.is_some() {
        return Ok(None);
    }
    let joined: Vec<Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM queue_entries WHERE event_id = $1 AND pre_queue AND position IS NULL ORDER BY seq",
    )
    .bind(event)
    .fetch_all(&mut *tx)
    .await?;
    let order = shuffle(seed, joined.len());
    let late: Vec<Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM queue_entries WHERE event_id = $1 AND NOT pre_queue AND position IS NULL ORDER BY seq",
    )
    .bind(event)
    .fetch_all(&mut *tx)
    .await?;
    let users: Vec<Uuid> = order.iter().map(|&i| joined[i]).chain(late.iter().copied()).collect();
    let places: Vec<i64> = (1..=users.len() as i64).collect();
    sqlx::query(
        "UPDATE queue_entries q SET position = u.place
           FROM UNNEST($2::uuid[], $3::int8[]) AS u(user_id, place)
          WHERE q.event_id = $1 AND q.user_id = u.user_id",
    )
    .bind(event)
    .bind(&users)
    .bind(&places)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE queue_rooms SET opened_at = now(), shuffle_seed = $2, shuffled = $3, joined_after = $4,
                opened_by_node = $5, opened_epoch = $6
          WHERE event_id = $1",
    )
    .bind(event)
    .bind(seed as i64)
    .bind(i32::try_from(joined.len()).unwrap_or(i32::MAX))
    .bind(late.len() as i64)
    .bind(owner.leases.node_id())
    .bind(owner.epoch)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(joined.len()))
}

/// What the owner learns from expiring lapsed admissions.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expired {
    /// Admissions that lapsed unused now: their slots go to the next in line.
    pub expired: u64,
    /// Admissions still outstanding (admitted, unused, unexpired).
    pub outstanding: u64,
}

/// Expires `event`'s lapsed, unused admissions.
pub async fn expire(db: &PgPool, owner: Owner<'_>, event: Uuid) -> Result<Expired, OwnerError> {
    let mut tx = db.begin().await?;
    fenced(&mut tx, owner, event).await?;
    let expired = sqlx::query(
        "UPDATE queue_entries SET state = 'expired'
          WHERE event_id = $1 AND state = 'admitted' AND admission_expires_at <= now()",
    )
    .bind(event)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if expired > 0 {
        sqlx::query("UPDATE queue_rooms SET expired_total = expired_total + $2 WHERE event_id = $1")
            .bind(event)
            .bind(expired as i64)
            .execute(&mut *tx)
            .await?;
    }
    let outstanding: i64 =
        sqlx::query_scalar("SELECT count(*) FROM queue_entries WHERE event_id = $1 AND state = 'admitted'")
            .bind(event)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(Expired { expired, outstanding: outstanding as u64 })
}

/// Admits the next `n` in line (by place), each for `ttl`; returns how many were admitted.
pub async fn admit(db: &PgPool, owner: Owner<'_>, event: Uuid, n: u64, ttl: Duration) -> Result<u64, OwnerError> {
    if n == 0 {
        return Ok(0);
    }
    let mut tx = db.begin().await?;
    fenced(&mut tx, owner, event).await?;
    let places: Vec<i64> = sqlx::query_scalar(
        "WITH next AS (
            SELECT user_id FROM queue_entries
             WHERE event_id = $1 AND state = 'waiting' AND position IS NOT NULL
             ORDER BY position LIMIT $2)
         UPDATE queue_entries q
            SET state = 'admitted', admitted_at = now(), admission_expires_at = now() + make_interval(secs => $3)
           FROM next WHERE q.event_id = $1 AND q.user_id = next.user_id
         RETURNING q.position",
    )
    .bind(event)
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .bind(ttl.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    if let Some(highest) = places.iter().max() {
        sqlx::query(
            "UPDATE queue_rooms SET admitted_through = greatest(admitted_through, $2),
                    admitted_total = admitted_total + $3
              WHERE event_id = $1",
        )
        .bind(event)
        .bind(highest)
        .bind(places.len() as i64)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(places.len() as u64)
}

/// Records whether `event` is sold out. Without a waitlist, everyone still
/// waiting when it sells out leaves the queue (state `sold_out`) at once.
pub async fn set_sold_out(
    db: &PgPool,
    owner: Owner<'_>,
    event: Uuid,
    sold_out: bool,
    waitlist: bool,
) -> Result<(), OwnerError> {
    let mut tx = db.begin().await?;
    fenced(&mut tx, owner, event).await?;
    // Written only when it changes.
    sqlx::query(
        "UPDATE queue_rooms SET sold_out_at = CASE WHEN $2 THEN now() END
          WHERE event_id = $1 AND (sold_out_at IS NOT NULL) <> $2",
    )
    .bind(event)
    .bind(sold_out)
    .execute(&mut *tx)
    .await?;
    if sold_out && !waitlist {
        sqlx::query("UPDATE queue_entries SET state = 'sold_out' WHERE event_id = $1 AND state = 'waiting'")
            .bind(event)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Whether some node holds a live lease on `event` (runs it).
pub async fn leased(db: &PgPool, event: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM event_leases WHERE event_id = $1 AND expires_at > now())")
        .bind(event)
        .fetch_one(db)
        .await
}

/// Events on sale (published, not past `closes_at`) with an enabled room, with
/// their opening time.
pub async fn enabled_rooms(db: &PgPool) -> sqlx::Result<Vec<(Uuid, serde_json::Value, Option<DateTime<Utc>>)>> {
    sqlx::query_as(
        "SELECT event_id, waiting_room, opens_at FROM events
          WHERE status = 'published' AND waiting_room IS NOT NULL AND (waiting_room->>'enabled')::boolean
            AND (closes_at IS NULL OR closes_at > now())",
    )
    .fetch_all(db)
    .await
}
