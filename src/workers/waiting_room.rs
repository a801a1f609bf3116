//! The waiting rooms' ticker: on every node, for each event with an enabled room
//! whose sale has opened and whose actor runs here (this node holds its lease),
//! opens the room (the pre-queue shuffle), expires unused admissions, notes a
//! sell-out, and admits the next in line — at the configured rate, or with `auto`
//! as many as the sale can absorb (`boxoffice_actors::waiting_room`). Rules:
//! `docs/domain.md`, section "Waiting room".
//!
//! **Guarantees.** Only the event's owner admits: every write is fenced by the
//! epoch this node holds the event's lease at (`store::queue`), so after a move
//! the deposed node's ticks change nothing and the new owner carries on from the
//! rows (places, admissions) — its pacer starts afresh from its takeover. An event
//! with a room that nobody runs is activated by the node it belongs on from
//! [`PREPARE_AHEAD`] before its opening, so admission never waits for a buyer's
//! request to wake the event, nor for a load under a crowd. The ticker writes
//! through its own small pool: thousands of buyers polling their places must not
//! starve the admissions they wait for.

use crate::state::AppState;
use crate::store::queue::{self, Owner, OwnerError, RoomSettings};
use boxoffice_actors::waiting_room::{Pacer, Rate, auto_budget};
use boxoffice_actors::{EventHandle, EventId, UnixMs};
use chrono::Utc;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use uuid::Uuid;

/// How long before its opening a room's event is activated on its owner.
pub const PREPARE_AHEAD: Duration = Duration::from_secs(60);

/// What the ticker remembers of one room it runs.
struct RoomTicker {
    epoch: i64,
    pacer: Option<Pacer>,
    /// (time, tickets sold) samples of the last minute, for `auto`.
    sold: VecDeque<(i64, u64)>,
}

impl RoomTicker {
    fn new(epoch: i64) -> Self {
        Self { epoch, pacer: None, sold: VecDeque::new() }
    }

    /// Tickets sold in the last minute, from the samples.
    fn sold_last_minute(&mut self, now_ms: i64, sold: u64) -> u64 {
        self.sold.push_back((now_ms, sold));
        while self.sold.front().is_some_and(|(t, _)| now_ms - t > 60_000) {
            self.sold.pop_front();
        }
        sold.saturating_sub(self.sold.front().map_or(sold, |(_, s)| *s))
    }
}

/// Runs until the process stops; `db`: the ticker's own connections.
pub async fn run(state: AppState, db: PgPool) {
    let mut rooms: HashMap<Uuid, RoomTicker> = HashMap::new();
    let mut interval = tokio::time::interval(state.settings.waiting_room_tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(e) = tick_all(&state, &db, &mut rooms).await {
            tracing::warn!(error = %e, "waiting rooms not ticked");
        }
    }
}

/// The event's actor if it runs on this node, activating it first when nobody
/// runs it and it belongs here.
async fn owned_here(state: &AppState, db: &PgPool, event: Uuid) -> Option<(EventHandle, i64)> {
    let id = EventId(event);
    if state.registry.running(id).is_none() {
        // Someone runs it (after a move it may not be where it hashes): theirs.
        if state.cluster.placement(event).node_id != state.cluster.node_id()
            || queue::leased(db, event).await.unwrap_or(true)
        {
            return None;
        }
        // Routed: activates the event here, or finds that another node has it.
        if state.event(id).availability().await.is_err() {
            return None;
        }
    }
    let handle = state.registry.running(id)?;
    let epoch = state.cluster.leases.epoch(event).filter(|_| state.cluster.leases.is_valid(event))?;
    Some((handle, epoch))
}

async fn tick_all(state: &AppState, db: &PgPool, rooms: &mut HashMap<Uuid, RoomTicker>) -> sqlx::Result<()> {
    let now = Utc::now();
    let mut seen = HashSet::new();
    for (event, raw, opens_at) in queue::enabled_rooms(db).await? {
        let Ok(settings) = serde_json::from_value::<RoomSettings>(raw) else { continue };
        let ahead = chrono::TimeDelta::from_std(PREPARE_AHEAD).unwrap_or_default();
        if opens_at.is_some_and(|t| now + ahead < t) {
            continue;
        }
        let Some((handle, epoch)) = owned_here(state, db, event).await else { continue };
        if opens_at.is_some_and(|t| now < t) {
            // Loaded and owned, ready for the opening.
            seen.insert(event);
            continue;
        }
        seen.insert(event);
        let ticker = rooms.entry(event).or_insert_with(|| RoomTicker::new(epoch));
        if ticker.epoch != epoch {
            *ticker = RoomTicker::new(epoch);
        }
        match tick_room(state, db, event, &settings, &handle, ticker).await {
            Ok(()) => {}
            Err(OwnerError::Fenced) => {
                tracing::info!(%event, "waiting room: no longer the owner");
                rooms.remove(&event);
            }
            Err(OwnerError::Db(e)) => tracing::warn!(%event, error = %e, "waiting room not ticked"),
        }
    }
    rooms.retain(|event, _| seen.contains(event));
    Ok(())
}

async fn tick_room(
    state: &AppState,
    db: &PgPool,
    event: Uuid,
    settings: &RoomSettings,
    handle: &EventHandle,
    ticker: &mut RoomTicker,
) -> Result<(), OwnerError> {
    let owner = Owner { leases: &state.cluster.leases, epoch: ticker.epoch };
    let room = queue::room(db, event).await?;
    if room.opened_at.is_none() {
        let seed: u64 = rand::random();
        if let Some(n) = queue::open(db, owner, event, seed).await? {
            tracing::info!(%event, shuffled = n, seed, "waiting room opened");
        }
    }
    let Ok(availability) = handle.availability().await else { return Ok(()) };
    let counts = availability.total;
    let expired = queue::expire(db, owner, event).await?;
    let now_ms = UnixMs::now().0;
    let sold_out = counts.available == 0 && counts.held == 0;
    if sold_out || room.sold_out_at.is_some() {
        queue::set_sold_out(db, owner, event, sold_out, settings.waitlist).await?;
    }
    let sold_last_minute = ticker.sold_last_minute(now_ms, counts.sold);
    if sold_out {
        if let Some(p) = &mut ticker.pacer {
            p.skip(now_ms);
        }
        return Ok(());
    }
    let ttl = Duration::from_secs(u64::from(settings.admission_ttl_secs));
    match settings.rate() {
        Rate::PerMinute(rate) => {
            let pacer = match &mut ticker.pacer {
                Some(p) if p.rate_per_minute() == rate => p,
                other => other.insert(Pacer::new(rate, now_ms)),
            };
            let due = pacer.due(now_ms);
            // Slots of admissions that lapsed unused go to the next in line.
            let budget = due + expired.expired;
            let admitted = queue::admit(db, owner, event, budget, ttl).await?;
            pacer.issued(admitted.min(due));
            if admitted < budget {
                // The line ran out: what was due is not saved up for later (beyond one).
                pacer.skip(now_ms);
            }
        }
        Rate::Auto => {
            ticker.pacer = None;
            let budget = auto_budget(counts.available, expired.outstanding, sold_last_minute);
            queue::admit(db, owner, event, budget, ttl).await?;
        }
    }
    Ok(())
}
