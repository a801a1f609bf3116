//! `PgLoader`: rebuilds an event's inventory from PostgreSQL when its actor starts
//! (first request, after passivation, after a restart or crash).
//!
//! It reads the seat map and sales window, every active and purchased hold with
//! its tickets, and holds that ended recently (so a late payment or a retried
//! request still finds them). Active holds whose time passed while nobody ran the
//! event are expired by the actor as soon as it starts.

use super::leases::{AcquireError, Leases};
use boxoffice_actors::registry::{EventSnapshot, LoadError, LoadFuture, Loader};
use boxoffice_actors::{
    BuyerId, EventId, HoldId, HoldRecord, HoldStatus, IdempotencyKey, Items, Layout, SalesWindow, SeatMap, TicketId,
    TicketRecord, UnixMs,
};
use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub struct PgLoader {
    pool: PgPool,
    /// How far back ended holds are loaded.
    ended_retention: Duration,
    /// This node's leases: an event is loaded only once its lease is taken.
    leases: Option<Arc<Leases>>,
}

impl PgLoader {
    pub fn new(pool: PgPool, ended_retention: Duration) -> Self {
        Self { pool, ended_retention, leases: None }
    }

    /// Takes each event's lease before reading its holds (see `store::leases`):
    /// an event another node runs is `LoadError::NotOwner`.
    pub fn with_leases(mut self, leases: Arc<Leases>) -> Self {
        self.leases = Some(leases);
        self
    }
}

fn ms(t: DateTime<Utc>) -> UnixMs {
    UnixMs(t.timestamp_millis())
}

/// The window the engine enforces, from the event's columns and status: only a
/// published event sells, and a sale stops at `closes_at` and no later than the
/// event's start.
pub fn sales_window(
    status: &str,
    event_date: DateTime<Utc>,
    opens_at: Option<DateTime<Utc>>,
    closes_at: Option<DateTime<Utc>>,
    per_buyer_limit: i32,
    hold_ttl_secs: i32,
) -> SalesWindow {
    let on_sale = status == "published";
    let closes_at = closes_at.map_or(event_date, |c| c.min(event_date));
    SalesWindow {
        opens_at: if on_sale { opens_at.map_or(UnixMs(i64::MIN), ms) } else { UnixMs(i64::MIN) },
        closes_at: if on_sale { ms(closes_at) } else { UnixMs(i64::MIN) },
        per_buyer_limit: u32::try_from(per_buyer_limit).unwrap_or(1),
        hold_ttl_ms: i64::from(hold_ttl_secs) * 1000,
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    status: String,
    event_date: DateTime<Utc>,
    seat_map: Option<sqlx::types::Json<SeatMap>>,
    opens_at: Option<DateTime<Utc>>,
    closes_at: Option<DateTime<Utc>>,
    per_buyer_limit: i32,
    hold_ttl_secs: i32,
    blocked_seats: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct HoldRow {
    hold_id: Uuid,
    buyer_id: Uuid,
    items: sqlx::types::Json<Items>,
    amount: i64,
    status: String,
    idempotency_key: Option<String>,
    fingerprint: i64,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct TicketRow {
    ticket_id: Uuid,
    hold_id: Uuid,
    section: String,
    seat_number: Option<String>,
    price: i64,
    status: String,
}

async fn load(
    pool: PgPool,
    event: EventId,
    retention: Duration,
    leases: Option<Arc<Leases>>,
) -> Result<EventSnapshot, LoadError> {
    let failed = |e: sqlx::Error| LoadError::Failed(e.to_string());
    let row: Option<EventRow> = sqlx::query_as(
        "SELECT status, event_date, seat_map, opens_at, closes_at, per_buyer_limit, hold_ttl_secs, blocked_seats
         FROM events WHERE event_id = $1",
    )
    .bind(event.0)
    .fetch_optional(&pool)
    .await
    .map_err(failed)?;
    let Some(row) = row else { return Err(LoadError::NotFound) };
    let Some(map) = row.seat_map.filter(|_| row.status != "draft") else { return Err(LoadError::NotFound) };
    let layout = Layout::compile(&map.0).map_err(|e| LoadError::Failed(format!("stored seat map is invalid: {e}")))?;
    let window =
        sales_window(&row.status, row.event_date, row.opens_at, row.closes_at, row.per_buyer_limit, row.hold_ttl_secs);
    // The lease first, then the holds: a takeover commits after the previous
    // owner's last write (the journal holds the event's fence lock), so what is
    // read next is everything it wrote.
    let epoch = match &leases {
        Some(leases) => leases.acquire(&pool, event.0).await.map_err(|e| match e {
            AcquireError::Held { node } => LoadError::NotOwner(Some(node)),
            AcquireError::Db(e) => failed(e),
        })?,
        None => 0,
    };

    let mut conn = pool.acquire().await.map_err(failed)?;
    let holds = load_holds(&mut conn, event.0, retention).await.map_err(|e| match e {
        HoldsError::Db(e) => failed(e),
        HoldsError::Corrupt(msg) => LoadError::Failed(msg),
    })?;
    Ok(EventSnapshot { layout, window, holds, blocked: row.blocked_seats, epoch })
}

impl Loader for PgLoader {
    fn load(&self, event: EventId) -> LoadFuture {
        Box::pin(load(self.pool.clone(), event, self.ended_retention, self.leases.clone()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HoldsError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Corrupt(String),
}

/// The holds an actor needs: active and purchased ones with their tickets, and
/// those that ended within `retention`.
pub async fn load_holds(
    conn: &mut sqlx::PgConnection,
    event: Uuid,
    retention: Duration,
) -> Result<Vec<HoldRecord>, HoldsError> {
    let retention_secs = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    let holds: Vec<HoldRow> = sqlx::query_as(
        "SELECT hold_id, buyer_id, items, amount, status, idempotency_key, fingerprint, created_at, expires_at
         FROM holds
         WHERE event_id = $1
           AND (status IN ('active', 'purchased')
                OR (status IN ('expired', 'released') AND updated_at > now() - make_interval(secs => $2)))
         ORDER BY hold_id",
    )
    .bind(event)
    .bind(retention_secs as f64)
    .fetch_all(&mut *conn)
    .await?;
    let tickets: Vec<TicketRow> = sqlx::query_as(
        "SELECT ticket_id, hold_id, section, seat_number, price, status FROM tickets WHERE event_id = $1 ORDER BY ticket_id",
    )
    .bind(event)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_hold: FxHashMap<Uuid, Vec<TicketRecord>> = FxHashMap::default();
    for t in tickets {
        by_hold.entry(t.hold_id).or_default().push(TicketRecord {
            id: TicketId(t.ticket_id),
            section: t.section,
            seat: t.seat_number,
            price: t.price,
            cancelled: t.status == "cancelled",
        });
    }
    holds
        .into_iter()
        .map(|h| {
            let status = HoldStatus::parse(&h.status)
                .ok_or_else(|| HoldsError::Corrupt(format!("hold {} has unknown status {}", h.hold_id, h.status)))?;
            Ok(HoldRecord {
                id: HoldId(h.hold_id),
                buyer: BuyerId(h.buyer_id),
                items: h.items.0.into(),
                amount: h.amount,
                created_at: ms(h.created_at),
                expires_at: ms(h.expires_at),
                status,
                idempotency_key: h.idempotency_key.as_deref().and_then(|k| IdempotencyKey::parse(k).ok()),
                fingerprint: h.fingerprint as u64,
                tickets: by_hold.remove(&h.hold_id).unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, HoldsError>>()
}
