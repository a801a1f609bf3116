//! Live seat maps: the bodies of `GET /events/{id}/seats` and the feeds behind
//! `GET /events/{id}/live` (Server-Sent Events).
//!
//! One feed per event on this node asks the event's actor (wherever it runs)
//! what changed since the version it last saw, every [`TICK`] — at most five
//! times a second however many watch — and sends the answer, serialised once, to
//! every subscriber through a broadcast channel: fan-out happens here, never in
//! the actor. A subscriber starts from a snapshot (or, with `Last-Event-ID`, from
//! the changes since that version) and then takes each frame that continues from
//! what it has; one that fell behind (a slow reader, a frame it missed) catches up
//! with its own "changes since" call, or a snapshot when the actor's log no
//! longer reaches back that far. A feed with no subscriber stops after
//! [`IDLE_STOP`].
//!
//! The event's organizer (and administrators) also get a `stats` frame every
//! [`STATS_EVERY`]: orders in the last minute, revenue kept, holds expiring within
//! a minute — read from PostgreSQL once per feed, not per subscriber. When the
//! event has a waiting room, every subscriber gets a `queue` frame whenever the
//! room changes (checked every [`ROOM_EVERY`]): how far admission has got, the
//! rate, and a sell-out, which everyone waiting so learns at once.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::response::sse::Event;
use boxoffice_actors::{Counts, EventId, SeatDelta, SeatStatus, SectionCounts};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use utoipa::ToSchema;
use uuid::Uuid;

/// How often a feed asks the actor for changes (at most 5 messages a second).
pub const TICK: Duration = Duration::from_millis(200);
/// How often organizers get a `stats` frame.
pub const STATS_EVERY: Duration = Duration::from_secs(2);
/// How often a feed looks at the event's waiting room.
pub const ROOM_EVERY: Duration = Duration::from_secs(1);
/// A feed without subscribers stops after this long.
const IDLE_STOP: Duration = Duration::from_secs(10);
/// Frames a subscriber may fall behind before it catches up on its own.
const CHANNEL: usize = 64;
/// A cached snapshot younger than this, and no older than the feed's last frame,
/// starts a new subscriber (who catches up with the next frame, within a tick).
const SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(1);

/// `GET /events/{id}/seats`: every seat's state, one letter per seat.
#[derive(Serialize, ToSchema)]
pub struct SeatsOut {
    pub event_id: Uuid,
    /// Grows with every change of a seat or place; `GET /events/{id}/live` frames carry it as their id.
    pub version: u64,
    /// What the letters in `rows[].seats` mean.
    pub legend: Legend,
    pub sections: Vec<SectionSeatsOut>,
}

#[derive(Serialize, ToSchema)]
pub struct Legend {
    #[serde(rename = "F")]
    pub free: &'static str,
    #[serde(rename = "H")]
    pub held: &'static str,
    #[serde(rename = "S")]
    pub sold: &'static str,
    #[serde(rename = "B")]
    pub blocked: &'static str,
}

const LEGEND: Legend = Legend { free: "free", held: "held", sold: "sold", blocked: "blocked (off sale)" };

#[derive(Serialize, ToSchema)]
pub struct SectionSeatsOut {
    #[serde(flatten)]
    pub counts: SectionCountsOut,
    /// Seated sections: each row, seats in number order. Empty for general admission.
    pub rows: Vec<RowSeatsOut>,
}

#[derive(Serialize, ToSchema)]
pub struct RowSeatsOut {
    pub label: String,
    /// Number of the row's first seat: seat `{label}-{first + i}` is `seats[i]`.
    pub first: u32,
    /// One letter per seat: `F` free, `H` held, `S` sold, `B` blocked.
    #[schema(example = "FFHSSF")]
    pub seats: String,
}

#[derive(Serialize, ToSchema)]
pub struct SectionCountsOut {
    pub name: String,
    pub general_admission: bool,
    pub capacity: u64,
    pub available: u64,
    pub held: u64,
    pub sold: u64,
    /// Seats off sale: available + held + sold + blocked = capacity.
    pub blocked: u64,
}

impl SectionCountsOut {
    fn new(name: String, general_admission: bool, c: &Counts) -> Self {
        let Counts { capacity, available, held, sold, blocked } = *c;
        Self { name, general_admission, capacity, available, held, sold, blocked }
    }
}

impl From<&SectionCounts> for SectionCountsOut {
    fn from(s: &SectionCounts) -> Self {
        Self::new(s.section.clone(), s.general_admission, &s.counts)
    }
}

/// A `changes` frame of `GET /events/{id}/live`: the state now of every seat that
/// changed after `from`, and the counts of every section that changed.
#[derive(Serialize, ToSchema)]
pub struct ChangesOut {
    pub from: u64,
    pub version: u64,
    /// Seat label → `F`, `H`, `S` or `B`.
    pub seats: BTreeMap<String, String>,
    pub sections: Vec<SectionCountsOut>,
}

pub fn seats_out(event_id: Uuid, status: SeatStatus) -> SeatsOut {
    SeatsOut {
        event_id,
        version: status.version,
        legend: LEGEND,
        sections: status
            .sections
            .into_iter()
            .map(|s| SectionSeatsOut {
                counts: SectionCountsOut::new(s.name, s.general_admission, &s.counts),
                rows: s
                    .rows
                    .into_iter()
                    .map(|r| RowSeatsOut { label: r.label, first: r.first, seats: r.seats })
                    .collect(),
            })
            .collect(),
    }
}

fn changes_out(delta: &SeatDelta) -> ChangesOut {
    ChangesOut {
        from: delta.from,
        version: delta.version,
        seats: delta.seats.iter().map(|(label, state)| (label.clone(), state.to_string())).collect(),
        sections: delta.sections.iter().map(SectionCountsOut::from).collect(),
    }
}

/// A `stats` frame of `GET /events/{id}/live`, for the event's organizer.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct SaleStatsOut {
    /// Orders completed in the last 60 seconds.
    pub orders_last_minute: i64,
    /// Orders completed so far.
    pub orders: i64,
    /// Sum of the prices of tickets sold and not cancelled, in minor units of `currency`.
    pub revenue: i64,
    pub currency: String,
    /// Active holds that expire within the next 60 seconds (their seats may come back).
    pub holds_expiring_next_minute: i64,
    /// Active holds.
    pub holds_active: i64,
}

/// The `queue` frame: the event's waiting room as everyone may see it. A buyer
/// whose `position` (from `GET /events/{id}/queue/me`) is at most
/// `admitted_through` has been admitted and fetches the admission there.
#[derive(Serialize, ToSchema, PartialEq)]
pub struct QueueStatusOut {
    pub opened: bool,
    /// The highest place admitted so far.
    pub admitted_through: i64,
    pub admitted_total: i64,
    /// Admissions per minute now (the setting, or observed with `auto`).
    pub rate_per_minute: u64,
    /// Nothing is left to sell (with `waitlist`, people stay queued for returns).
    pub sold_out: bool,
    pub waitlist: bool,
}

/// One Server-Sent Event of `GET /events/{id}/live`. For the OpenAPI document
/// only: frames are written by [`Frame`].
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct LiveEventOut {
    /// `snapshot`, `changes`, `queue` (events with a waiting room) or (organizers) `stats`.
    #[schema(pattern = "^(snapshot|changes|queue|stats)$")]
    pub event: String,
    /// JSON: a SeatsOut (`snapshot`), ChangesOut (`changes`), QueueStatusOut (`queue`)
    /// or SaleStatsOut (`stats`).
    #[schema(content_media_type = "application/json")]
    pub data: String,
    /// The seat version the frame brings the subscriber to (for `Last-Event-ID`).
    #[schema(pattern = "^[0-9]+$")]
    pub id: String,
}

/// One message of the stream, serialised once for every subscriber.
#[derive(Debug)]
pub struct Frame {
    kind: FrameKind,
    from: u64,
    version: u64,
    data: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrameKind {
    Snapshot,
    Changes,
    Stats,
    Queue,
}

impl Frame {
    fn snapshot(event: Uuid, status: SeatStatus) -> Self {
        let version = status.version;
        let data = serde_json::to_string(&seats_out(event, status)).expect("seat status serialises");
        Self { kind: FrameKind::Snapshot, from: 0, version, data }
    }

    fn changes(delta: &SeatDelta) -> Self {
        let data = serde_json::to_string(&changes_out(delta)).expect("seat changes serialise");
        Self { kind: FrameKind::Changes, from: delta.from, version: delta.version, data }
    }

    fn stats(stats: &SaleStatsOut) -> Self {
        let data = serde_json::to_string(stats).expect("sale stats serialise");
        Self { kind: FrameKind::Stats, from: 0, version: 0, data }
    }

    fn queue(status: &QueueStatusOut) -> Self {
        let data = serde_json::to_string(status).expect("queue status serialises");
        Self { kind: FrameKind::Queue, from: 0, version: 0, data }
    }

    /// As an SSE event; `id` is the seat version the subscriber has (a `stats`
    /// frame repeats it, so `Last-Event-ID` always names seat state).
    pub fn event(&self, id: u64) -> Event {
        let kind = match self.kind {
            FrameKind::Snapshot => "snapshot",
            FrameKind::Changes => "changes",
            FrameKind::Stats => "stats",
            FrameKind::Queue => "queue",
        };
        Event::default().id(id.to_string()).event(kind).data(&self.data)
    }
}

/// The feeds of this node, by event.
pub struct LiveHub {
    state: AppState,
    feeds: Mutex<HashMap<Uuid, Arc<Feed>>>,
}

struct Feed {
    event: Uuid,
    tx: broadcast::Sender<Arc<Frame>>,
    /// The latest `stats` frame, for organizers (`None` until the first).
    stats: watch::Sender<Option<Arc<Frame>>>,
    /// The latest `queue` frame (`None` while the event has no waiting room).
    room: watch::Sender<Option<Arc<Frame>>>,
    snapshot: Mutex<Option<(Instant, Arc<Frame>)>>,
    /// The version of the last frame sent to every subscriber.
    latest: AtomicU64,
}

/// A subscriber's first frame and where the rest come from.
pub struct Subscription {
    pub first: Arc<Frame>,
    /// The server is stopping: the stream ends.
    stopping: watch::Receiver<bool>,
    rx: broadcast::Receiver<Arc<Frame>>,
    /// Organizers: the feed's `stats` frames.
    stats: Option<watch::Receiver<Option<Arc<Frame>>>>,
    /// The feed's `queue` frames.
    room: Option<watch::Receiver<Option<Arc<Frame>>>>,
    feed: Arc<Feed>,
    state: AppState,
    sent: u64,
}

impl LiveHub {
    pub fn new(state: AppState) -> Arc<Self> {
        Arc::new(Self { state, feeds: Mutex::new(HashMap::new()) })
    }

    fn feed(self: &Arc<Self>, event: Uuid) -> Arc<Feed> {
        let mut feeds = self.feeds.lock().expect("feeds lock");
        if let Some(feed) = feeds.get(&event) {
            return feed.clone();
        }
        let feed = Arc::new(Feed {
            event,
            tx: broadcast::channel(CHANNEL).0,
            snapshot: Mutex::new(None),
            latest: AtomicU64::new(0),
            stats: watch::channel(None).0,
            room: watch::channel(None).0,
        });
        feeds.insert(event, feed.clone());
        tokio::spawn(self.clone().run(feed.clone()));
        feed
    }

    /// Subscribes to `event`'s seat changes: from `last_seen` (a version, as
    /// `Last-Event-ID` carries it) when the actor still has the changes since, else
    /// from a snapshot. Errors (the event cannot be reached) come before any frame.
    /// `organizer`: also send `stats` frames.
    pub async fn subscribe(
        self: &Arc<Self>,
        event: Uuid,
        last_seen: Option<u64>,
        organizer: bool,
    ) -> ApiResult<Subscription> {
        let feed = self.feed(event);
        // Subscribed before the first frame is read, so nothing falls between them.
        let rx = feed.tx.subscribe();
        let stats = organizer.then(|| {
            let mut rx = feed.stats.subscribe();
            // The latest stats frame, if any, goes out first.
            rx.mark_changed();
            rx
        });
        let mut room = feed.room.subscribe();
        room.mark_changed();
        let room = Some(room);
        let delta = match last_seen {
            Some(v) => self.state.event(EventId(event)).seat_changes(v).await?,
            None => None,
        };
        let first = match delta {
            Some(delta) => Arc::new(Frame::changes(&delta)),
            None => feed.snapshot(&self.state).await?,
        };
        metrics::gauge!("boxoffice_live_subscribers").increment(1.0);
        let stopping = self.state.stopping.subscribe();
        Ok(Subscription { sent: first.version, first, rx, stats, room, feed, stopping, state: self.state.clone() })
    }

    async fn run(self: Arc<Self>, feed: Arc<Feed>) {
        let mut seen: Option<u64> = None;
        let mut idle = Duration::ZERO;
        let mut since_stats = STATS_EVERY;
        let mut since_room = ROOM_EVERY;
        loop {
            tokio::time::sleep(TICK).await;
            if *self.state.stopping.borrow() {
                self.feeds.lock().expect("feeds lock").remove(&feed.event);
                return;
            }
            since_stats += TICK;
            if since_stats >= STATS_EVERY && feed.stats.receiver_count() > 0 {
                since_stats = Duration::ZERO;
                match sale_stats(&self.state, feed.event).await {
                    Ok(stats) => {
                        feed.stats.send_replace(Some(Arc::new(Frame::stats(&stats))));
                    }
                    Err(e) => tracing::debug!(event = %feed.event, error = %e, "live feed: no sale stats"),
                }
            }
            since_room += TICK;
            if since_room >= ROOM_EVERY && feed.room.receiver_count() > 0 {
                since_room = Duration::ZERO;
                match queue_status(&self.state, feed.event).await {
                    Ok(Some(status)) => {
                        let frame = Frame::queue(&status);
                        feed.room.send_if_modified(|latest| {
                            let changed = latest.as_ref().is_none_or(|f| f.data != frame.data);
                            if changed {
                                *latest = Some(Arc::new(frame));
                            }
                            changed
                        });
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(event = %feed.event, error = %e, "live feed: no queue status"),
                }
            }
            if feed.tx.receiver_count() == 0 {
                idle += TICK;
                if idle >= IDLE_STOP {
                    let mut feeds = self.feeds.lock().expect("feeds lock");
                    // Checked again under the lock: a subscriber may have just come.
                    if feed.tx.receiver_count() == 0 {
                        feeds.remove(&feed.event);
                        return;
                    }
                }
                continue;
            }
            idle = Duration::ZERO;
            let event = self.state.event(EventId(feed.event));
            let frame = match seen {
                Some(v) => match event.seat_changes(v).await {
                    Ok(Some(delta)) if delta.version == v => continue,
                    Ok(Some(delta)) => Ok(Arc::new(Frame::changes(&delta))),
                    Ok(None) => feed.snapshot(&self.state).await,
                    Err(e) => Err(e.into()),
                },
                None => feed.snapshot(&self.state).await,
            };
            match frame {
                Ok(frame) => {
                    seen = Some(frame.version);
                    feed.latest.store(frame.version, Ordering::Release);
                    metrics::counter!("boxoffice_live_frames_total").increment(1);
                    let _ = feed.tx.send(frame);
                }
                Err(e) => tracing::debug!(event = %feed.event, error = %e, "live feed: the event did not answer"),
            }
        }
    }
}

impl Feed {
    /// A recent snapshot: the cached one if young enough, else a fresh one (cached).
    async fn snapshot(&self, state: &AppState) -> ApiResult<Arc<Frame>> {
        if let Some((at, frame)) = self.snapshot.lock().expect("snapshot lock").as_ref()
            && at.elapsed() < SNAPSHOT_MAX_AGE
            && frame.version >= self.latest.load(Ordering::Acquire)
        {
            return Ok(frame.clone());
        }
        let status = state.event(EventId(self.event)).seat_status().await?;
        let frame = Arc::new(Frame::snapshot(self.event, status));
        *self.snapshot.lock().expect("snapshot lock") = Some((Instant::now(), frame.clone()));
        Ok(frame)
    }
}

/// `event`'s waiting room as everyone may see it; `None` without an active room.
async fn queue_status(state: &AppState, event: Uuid) -> Result<Option<QueueStatusOut>, sqlx::Error> {
    let Some(settings) = state.rooms.active(&state.db, event).await? else { return Ok(None) };
    let room = crate::store::queue::room(&state.db, event).await?;
    Ok(Some(QueueStatusOut {
        opened: room.opened_at.is_some(),
        admitted_through: room.admitted_through,
        admitted_total: room.admitted_total,
        rate_per_minute: crate::http::admission::rate_for_estimate(Some(&settings), &room, chrono::Utc::now()),
        sold_out: room.sold_out_at.is_some(),
        waitlist: settings.waitlist,
    }))
}

/// The next value of an optional watch: pending forever without one, `None`
/// once its sender is gone.
async fn next_watched(rx: &mut Option<watch::Receiver<Option<Arc<Frame>>>>) -> Option<Option<Arc<Frame>>> {
    match rx {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(rx.borrow_and_update().clone()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

/// The organizer's figures of `event`, from PostgreSQL.
async fn sale_stats(state: &AppState, event: Uuid) -> Result<SaleStatsOut, sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM holds WHERE event_id = $1 AND status = 'purchased'
                   AND updated_at > now() - interval '1 minute') AS orders_last_minute,
                (SELECT count(*) FROM holds WHERE event_id = $1 AND status = 'purchased') AS orders,
                (SELECT coalesce(sum(price), 0)::bigint FROM tickets
                  WHERE event_id = $1 AND status <> 'cancelled') AS revenue,
                (SELECT currency FROM events WHERE event_id = $1) AS currency,
                (SELECT count(*) FROM holds WHERE event_id = $1 AND status = 'active'
                   AND expires_at < now() + interval '1 minute') AS holds_expiring_next_minute,
                (SELECT count(*) FROM holds WHERE event_id = $1 AND status = 'active') AS holds_active",
    )
    .bind(event)
    .fetch_one(&state.db)
    .await
}

impl Subscription {
    /// The seat version this subscriber has.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The next frame that continues from what this subscriber has, or a `stats`
    /// frame; `None` when the feed is gone.
    pub async fn next(&mut self) -> Option<Arc<Frame>> {
        let mut stopping = self.stopping.clone();
        tokio::select! {
            frame = self.next_frame() => frame,
            _ = stopping.wait_for(|stop| *stop) => None,
        }
    }

    async fn next_frame(&mut self) -> Option<Arc<Frame>> {
        loop {
            let received = tokio::select! {
                watched = next_watched(&mut self.stats) => match watched {
                    None => return None,
                    Some(Some(frame)) => return Some(frame),
                    Some(None) => continue,
                },
                watched = next_watched(&mut self.room) => match watched {
                    None => return None,
                    Some(Some(frame)) => return Some(frame),
                    Some(None) => continue,
                },
                received = self.rx.recv() => received,
            };
            let frame = match received {
                Ok(frame) if frame.version <= self.sent => continue,
                Ok(frame) if frame.kind == FrameKind::Snapshot || frame.from <= self.sent => frame,
                // A gap (a missed frame, or fell behind): catch up on our own.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => match self.catch_up().await {
                    Ok(Some(frame)) => frame,
                    Ok(None) => continue,
                    Err(_) => return None,
                },
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            self.sent = frame.version;
            return Some(frame);
        }
    }

    async fn catch_up(&self) -> Result<Option<Arc<Frame>>, ApiError> {
        match self.state.event(EventId(self.feed.event)).seat_changes(self.sent).await? {
            Some(delta) if delta.version == self.sent => Ok(None),
            Some(delta) => Ok(Some(Arc::new(Frame::changes(&delta)))),
            None => self.feed.snapshot(&self.state).await.map(Some),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        metrics::gauge!("boxoffice_live_subscribers").decrement(1.0);
    }
}
