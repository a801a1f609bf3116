//! Event leases: which node runs each event's actor (`event_leases`).
//!
//! **Guarantees.** At most one node holds a live lease on an event; taking an
//! event over increments its epoch, and the journal writes an event's changes only
//! in a transaction that checks the lease at the epoch this node took, under the
//! event's fence lock ([`Leases::fenced_in`]; the journal makes the same check in
//! SQL with [`Leases::fence_for`]): a deposed owner's writes are refused, and the
//! new owner's load (after its takeover commits) sees every write the old
//! owner made. That is the hard guarantee; renewal and stepping down before expiry
//! (the cluster's heartbeat task) keep a deposed node from serving stale reads.
//!
//! **The fence lock** is a transaction-scoped advisory lock, one of
//! `FENCE_KEYS` that events share by their id: writers take their events'
//! shared, a takeover exclusive. A takeover therefore waits for every
//! write in flight (their checks passed against the old epoch), and a write that
//! starts meanwhile queues behind the takeover and then reads the new epoch. It
//! was a `FOR SHARE` row lock on the lease row: a heap write and a WAL record per
//! event per journal batch, and a MultiXact whenever two writers locked the same
//! row at once; an advisory lock lives in the lock table only. A writer takes its
//! locks in key order, so writers cannot deadlock each other; a takeover holds
//! nothing else while it waits.

use dashmap::DashMap;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The advisory-lock namespace of fence locks (the two-key form, apart from every
/// one-key advisory lock): `"leas"`.
const FENCE_LOCKS: i32 = 0x6c65_6173;

/// How many fence locks there are. Events share them: a batch of a thousand events
/// would otherwise take a thousand locks, and PostgreSQL's lock table is shared
/// by every session and sized by `max_locks_per_transaction` (64 per connection
/// by default), so a few nodes' journal batches could fill it. A shared lock only
/// makes a takeover wait for the writes in flight of the other events on its lock
/// as well: a few milliseconds, once per takeover.
const FENCE_KEYS: u64 = 256;

/// An event's fence lock key within [`FENCE_LOCKS`].
fn fence_key(event: Uuid) -> i32 {
    (event.as_u64_pair().1 % FENCE_KEYS) as i32
}

/// Takes `event`'s fence lock exclusive until `tx` ends: waits for every journal
/// write in flight for it, and holds back the writes that start meanwhile.
async fn lock_fence(tx: &mut sqlx::PgConnection, event: Uuid) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(FENCE_LOCKS)
        .bind(fence_key(event))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The leases this node holds, by event: the epoch, and until when this node may
/// trust it by its own clock.
pub struct Leases {
    node_id: String,
    ttl: Duration,
    held: DashMap<Uuid, (i64, Instant)>,
}

/// Why a lease could not be taken.
#[derive(Debug)]
pub enum AcquireError {
    /// Another node holds a live lease.
    Held {
        node: String,
    },
    Db(sqlx::Error),
}

impl Leases {
    pub fn new(node_id: String, ttl: Duration) -> Self {
        Self { node_id, ttl, held: DashMap::new() }
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How long after asking for (or renewing) a lease this node trusts it: three
    /// quarters of the TTL, counted from before the request left, so the lease is
    /// still live in the database whenever this node believes it (even after the
    /// process was paused: the monotonic clock runs on).
    fn trusted_until(&self, asked_at: Instant) -> Instant {
        asked_at + self.ttl * 3 / 4
    }

    /// Whether this node holds `event`'s lease and may still trust it.
    pub fn is_valid(&self, event: Uuid) -> bool {
        self.held.get(&event).is_some_and(|e| Instant::now() < e.1)
    }

    /// Takes `event`'s lease if it is free, expired or already this node's, with a
    /// new epoch; returns it.
    pub async fn acquire(&self, db: &PgPool, event: Uuid) -> Result<i64, AcquireError> {
        let asked_at = Instant::now();
        let mut tx = db.begin().await.map_err(AcquireError::Db)?;
        // Waits for the writes in flight under the current epoch (see the module docs).
        lock_fence(&mut tx, event).await.map_err(AcquireError::Db)?;
        let taken: Option<i64> = sqlx::query_scalar(
            "INSERT INTO event_leases (event_id, node_id, epoch, expires_at)
             VALUES ($1, $2, 1, now() + make_interval(secs => $3))
             ON CONFLICT (event_id) DO UPDATE
                SET node_id = EXCLUDED.node_id, epoch = event_leases.epoch + 1,
                    expires_at = EXCLUDED.expires_at, acquired_at = now()
              WHERE event_leases.expires_at < now() OR event_leases.node_id = EXCLUDED.node_id
             RETURNING epoch",
        )
        .bind(event)
        .bind(&self.node_id)
        .bind(self.ttl.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await
        .map_err(AcquireError::Db)?;
        tx.commit().await.map_err(AcquireError::Db)?;
        match taken {
            Some(epoch) => {
                self.held.insert(event, (epoch, self.trusted_until(asked_at)));
                metrics::counter!("boxoffice_lease_acquisitions_total").increment(1);
                Ok(epoch)
            }
            None => {
                let node: Option<String> = sqlx::query_scalar("SELECT node_id FROM event_leases WHERE event_id = $1")
                    .bind(event)
                    .fetch_optional(db)
                    .await
                    .map_err(AcquireError::Db)?;
                Err(AcquireError::Held { node: node.unwrap_or_default() })
            }
        }
    }

    /// The epoch this node holds `event` at, if it holds it.
    pub fn epoch(&self, event: Uuid) -> Option<i64> {
        self.held.get(&event).map(|e| e.0)
    }

    /// Every lease this node believes it holds.
    pub fn held(&self) -> Vec<(Uuid, i64)> {
        self.held.iter().map(|e| (*e.key(), e.value().0)).collect()
    }

    /// Forgets `event` (the node no longer runs it); the row expires or is
    /// released by [`Leases::release`].
    pub fn forget(&self, event: Uuid) {
        self.held.remove(&event);
    }

    /// Extends the leases of `keep` (events running here when the caller looked,
    /// at `looked_at`) and gives up the others this node held then. A lease taken
    /// after `looked_at` is neither: its actor may be starting right now, absent
    /// from `keep` only because it was not running yet. Returns the events whose
    /// lease turned out to be lost (taken over): the caller stops their actors.
    pub async fn renew(&self, db: &PgPool, keep: &[Uuid], looked_at: Instant) -> sqlx::Result<Vec<Uuid>> {
        let (mut events, mut epochs) = (Vec::new(), Vec::new());
        for (event, epoch) in self.held() {
            if keep.contains(&event) {
                events.push(event);
                epochs.push(epoch);
            }
        }
        let asked_at = Instant::now();
        let renewed: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE event_leases l SET expires_at = now() + make_interval(secs => $4)
             FROM UNNEST($1::uuid[], $2::int8[]) AS u(event, epoch)
             WHERE l.event_id = u.event AND l.epoch = u.epoch AND l.node_id = $3
             RETURNING l.event_id",
        )
        .bind(&events)
        .bind(&epochs)
        .bind(&self.node_id)
        .bind(self.ttl.as_secs_f64())
        .fetch_all(db)
        .await?;
        for event in &renewed {
            if let Some(mut e) = self.held.get_mut(event) {
                e.1 = self.trusted_until(asked_at);
            }
        }
        let lost: Vec<Uuid> = events.into_iter().filter(|e| !renewed.contains(e)).collect();
        // Taken after the caller looked (renewals only happen here, one at a time).
        let newer = self.trusted_until(looked_at);
        let idle: Vec<Uuid> =
            self.held.iter().filter(|e| !keep.contains(e.key()) && e.value().1 <= newer).map(|e| *e.key()).collect();
        self.release(db, &idle).await?;
        for event in &lost {
            self.held.remove(event);
        }
        Ok(lost)
    }

    /// Gives up `events` at once (expired now), so another node may take them
    /// without waiting for the TTL.
    pub async fn release(&self, db: &PgPool, events: &[Uuid]) -> sqlx::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let epochs: Vec<i64> = events.iter().map(|e| self.epoch(*e).unwrap_or(0)).collect();
        sqlx::query(
            "UPDATE event_leases l SET expires_at = now() - interval '1 millisecond'
             FROM UNNEST($1::uuid[], $2::int8[]) AS u(event, epoch)
             WHERE l.event_id = u.event AND l.epoch = u.epoch AND l.node_id = $3",
        )
        .bind(events)
        .bind(&epochs)
        .bind(&self.node_id)
        .execute(db)
        .await?;
        for event in events {
            self.held.remove(event);
        }
        Ok(())
    }

    /// Ends `event`'s lease for good, inside `tx`, which deletes the event: waits
    /// for the journal's writes in flight for it (they hold its fence lock shared)
    /// and deletes the lease, so any write after `tx` commits — a stopped
    /// activation's late record — finds no lease and is refused. What stops a hold
    /// from being written for a deleted event (see the migration that dropped
    /// `holds.event_id`'s foreign key).
    pub async fn end_for_deletion(tx: &mut sqlx::PgConnection, event: Uuid) -> sqlx::Result<()> {
        lock_fence(tx, event).await?;
        sqlx::query("DELETE FROM event_leases WHERE event_id = $1").bind(event).execute(&mut *tx).await?;
        Ok(())
    }

    /// The arguments of the fence check for `writes`: this node, the fence-lock
    /// namespace, the lock keys in order, and the (event, epoch) pairs written.
    /// [`Leases::fenced_in`] runs the check with them; the journal passes them to
    /// its one-statement write (`boxoffice_journal_write`), which runs it in SQL.
    pub fn fence_for(&self, writes: &[(Uuid, i64)]) -> Fence<'_> {
        let mut keys: Vec<i32> = writes.iter().map(|(event, _)| fence_key(*event)).collect();
        keys.sort_unstable();
        keys.dedup();
        let (events, epochs) = writes.iter().copied().unzip();
        Fence { node: &self.node_id, space: FENCE_LOCKS, keys, events, epochs }
    }

    /// The fence check, run first in a transaction that writes events' state (the
    /// waiting room's; the journal runs the same check inside its one-statement
    /// write, see [`Leases::fence_for`]): takes the fence
    /// locks of the events written (shared, until the transaction ends) and returns
    /// the (event, epoch) pairs — each record carries the epoch its actor was
    /// activated under — that this node no longer holds. A stopped actor's late
    /// record fails even when this node holds the event again under a newer epoch.
    pub async fn fenced_in(
        &self,
        tx: &mut sqlx::PgConnection,
        writes: &[(Uuid, i64)],
    ) -> sqlx::Result<Vec<(Uuid, i64)>> {
        let fence = self.fence_for(writes);
        // A statement of its own: the check below then reads with a snapshot taken
        // after the locks were granted, so it sees a takeover that held one.
        sqlx::query(
            "SELECT count(pg_advisory_xact_lock_shared($1, k)) FROM (SELECT unnest($2::int4[]) AS k ORDER BY 1) u",
        )
        .bind(fence.space)
        .bind(&fence.keys)
        .execute(&mut *tx)
        .await?;
        let held: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT l.event_id, l.epoch FROM event_leases l
             JOIN UNNEST($1::uuid[], $2::int8[]) AS u(event, epoch) ON l.event_id = u.event AND l.epoch = u.epoch
             WHERE l.node_id = $3",
        )
        .bind(&fence.events)
        .bind(&fence.epochs)
        .bind(fence.node)
        .fetch_all(&mut *tx)
        .await?;
        Ok(writes.iter().copied().filter(|w| !held.contains(w)).collect())
    }
}

/// The arguments of a fence check made in SQL (see [`Leases::fence_for`]).
pub struct Fence<'a> {
    pub node: &'a str,
    pub space: i32,
    pub keys: Vec<i32>,
    pub events: Vec<Uuid>,
    pub epochs: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn events_share_a_bounded_set_of_fence_locks() {
        let keys: HashSet<i32> = (0..10_000).map(|_| fence_key(Uuid::now_v7())).collect();
        assert!(keys.iter().all(|k| (0..FENCE_KEYS as i32).contains(k)), "{keys:?}");
        assert!(keys.len() > 200, "events spread over the locks: {}", keys.len());
        let event = Uuid::now_v7();
        assert_eq!(fence_key(event), fence_key(event), "an event always has the same lock");
    }
}
