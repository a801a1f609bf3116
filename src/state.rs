//! `AppState`: what every request handler, the money path and the background
//! workers share — the database pool, the event registry, keys, the payment
//! provider, caches and the search index. Cheap to clone (one `Arc`).
//!
//! It lives at the crate root, above `http/` and `money/` that use it, so neither
//! imports the other for it.

use crate::auth::admission::AdmissionSigner;
use crate::auth::password::Passwords;
use crate::auth::qr::QrSigner;
use crate::auth::rate_limit::RateLimiter;
use crate::auth::tokens::TokenKeys;
use crate::cluster::Cluster;
use crate::cluster::rpc::EventCall;
use crate::cluster::rpc::EventReply;
use crate::config::Settings;
use crate::error::{ApiError, ApiResult};
use crate::payments::PaymentProvider;
use crate::store::cache::Cache;
use crate::store::charges::ChargeLog;
use crate::store::queue::{Joiner, RoomCache};
use crate::store::search::SearchIndex;
use boxoffice_actors::{
    Availability, BuyerId, EventError, EventId, HoldId, HoldView, IdempotencyKey, Payment, Registry, Sale, SeatDelta,
    SeatStatus, Selection, TicketId,
};
use dashmap::DashMap;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How long ended holds stay loaded, for late payments and idempotent retries.
pub const ENDED_HOLD_RETENTION: Duration = Duration::from_secs(3600);

/// Shared by every request: cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(crate) Arc<Shared>);

pub struct Shared {
    pub db: PgPool,
    /// This node's actors. Calls on an event go through [`AppState::event`], which
    /// finds the node that runs it.
    pub registry: Registry,
    pub cluster: Arc<Cluster>,
    /// Charge intents, group-committed (see `store::charges`).
    pub charges: ChargeLog,
    pub tokens: TokenKeys,
    pub auth_limiter: RateLimiter,
    /// Failed payment attempts (declines, refused cards) per buyer and per hold:
    /// card testing is refused before it reaches the provider.
    pub payment_throttle: PaymentThrottle,
    /// argon2, bounded (at most `PASSWORD_HASH_CONCURRENCY` at once).
    pub passwords: Passwords,
    pub payments: Arc<dyn PaymentProvider>,
    pub qr: QrSigner,
    /// Signs and checks waiting-room admissions (key derived from the QR key).
    pub admissions: AdmissionSigner,
    /// Waiting-room settings by event, for the hold path.
    pub rooms: RoomCache,
    /// Waiting-room joins, group-committed (see `store::queue::Joiner`).
    pub joins: Joiner,
    /// Waiting-room joins per client address.
    pub queue_join_limiter: RateLimiter,
    pub settings: Settings,
    pub metrics: Option<PrometheusHandle>,
    /// Best-effort Redis cache; a miss or no-op whenever Redis is absent or down.
    pub cache: Cache,
    /// Event currency by id, so the hold path does not ask the database each time.
    pub(crate) currencies: DashMap<Uuid, Arc<tokio::sync::OnceCell<String>>>,
    /// Event and buyer of the holds created here, so paying for one does not ask the database.
    pub hold_owners: HoldOwners,
    /// Published events in memory for `GET /events/search`.
    pub search: Arc<SearchIndex>,
    /// Set once the server stops accepting requests: long-lived responses (live
    /// streams) end, so a graceful shutdown does not wait for them.
    pub stopping: tokio::sync::watch::Sender<bool>,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// The event `id`'s actor, wherever it runs (this node or another).
    pub fn event(&self, id: EventId) -> EventRef<'_> {
        EventRef { state: self, id }
    }

    /// The currency of an event that exists (404 otherwise). Single-flight: when
    /// thousands of requests hit a cold event at once, one of them asks the database.
    pub async fn event_currency(&self, event: Uuid) -> ApiResult<String> {
        // Known: a shard read lock, not the write lock `entry` takes.
        if let Some(known) = self.currencies.get(&event).and_then(|cell| cell.get().cloned()) {
            return Ok(known);
        }
        let cell = self.currencies.entry(event).or_default().clone();
        let result = cell
            .get_or_try_init(|| async {
                let currency: Option<String> = sqlx::query_scalar("SELECT currency FROM events WHERE event_id = $1")
                    .bind(event)
                    .fetch_optional(&self.db)
                    .await?;
                currency.ok_or_else(|| ApiError::not_found("event"))
            })
            .await
            .cloned();
        if result.is_err() {
            // Unknown ids are not remembered.
            self.currencies.remove_if(&event, |_, c| Arc::ptr_eq(c, &cell));
        }
        result
    }

    /// Forgets cached facts about an event after it changed (its currency here,
    /// event details in Redis) and brings the search index up to date, so the
    /// change shows in the next search.
    pub async fn invalidate_event(&self, event: Uuid) {
        self.currencies.remove(&event);
        self.cache.invalidate_prefix("event").await;
        if let Err(e) = self.search.sync().await {
            // The background sync catches up once the database answers.
            tracing::warn!(error = %e, "search index not refreshed after an event change");
        }
    }

    /// The event and buyer of a stored hold: from memory for holds created here
    /// lately, else from the database.
    pub async fn hold_event_and_buyer(&self, hold_id: Uuid) -> ApiResult<Option<(Uuid, Uuid)>> {
        if let Some(known) = self.hold_owners.get(hold_id) {
            return Ok(Some(known));
        }
        Ok(sqlx::query_as("SELECT event_id, buyer_id FROM holds WHERE hold_id = $1")
            .bind(hold_id)
            .fetch_optional(&self.db)
            .await?)
    }
}

/// Failed payment attempts allowed per buyer per hour.
pub const FAILED_PAYMENTS_PER_BUYER_HOUR: u32 = 10;
/// Failed payment attempts allowed per hold (a hold lives minutes; the window is an hour).
pub const FAILED_PAYMENTS_PER_HOLD: u32 = 5;

/// Counts failed payment attempts; refuses more once a buyer or a hold has used
/// up its allowance. In memory, per process (like the login limits).
pub struct PaymentThrottle {
    buyers: RateLimiter,
    holds: RateLimiter,
}

impl Default for PaymentThrottle {
    fn default() -> Self {
        let hour = Duration::from_secs(3600);
        Self {
            buyers: RateLimiter::new(FAILED_PAYMENTS_PER_BUYER_HOUR, hour),
            holds: RateLimiter::new(FAILED_PAYMENTS_PER_HOLD, hour),
        }
    }
}

impl PaymentThrottle {
    /// `Err(wait)` if `buyer`, or `hold` when given, may not try another payment now.
    pub fn allowed(&self, buyer: Uuid, hold: Option<Uuid>) -> Result<(), Duration> {
        self.buyers.peek(&buyer.to_string())?;
        hold.map_or(Ok(()), |hold| self.holds.peek(&hold.to_string()))
    }

    /// Counts a failed attempt (declined or refused).
    pub fn failed(&self, buyer: Uuid, hold: Uuid) {
        let _ = self.buyers.check(&buyer.to_string());
        let _ = self.holds.check(&hold.to_string());
    }
}

/// Calls on one event's actor, routed to the node that runs it (`cluster`).
pub struct EventRef<'a> {
    state: &'a AppState,
    id: EventId,
}

impl EventRef<'_> {
    async fn call(&self, call: EventCall) -> Result<EventReply, EventError> {
        self.state.cluster.call(&self.state.registry, self.id, call).await
    }

    pub async fn hold(
        &self,
        buyer: BuyerId,
        selection: Selection,
        key: Option<IdempotencyKey>,
    ) -> Result<HoldView, EventError> {
        self.call(EventCall::Hold { buyer, selection, key }).await?.view()
    }

    pub async fn purchase(&self, hold: HoldId, buyer: BuyerId, payment: Option<Payment>) -> Result<Sale, EventError> {
        self.call(EventCall::Purchase { hold, buyer, payment }).await?.sale()
    }

    pub async fn release(&self, hold: HoldId, buyer: BuyerId) -> Result<HoldView, EventError> {
        self.call(EventCall::Release { hold, buyer }).await?.view()
    }

    pub async fn cancel_tickets(
        &self,
        hold: HoldId,
        buyer: BuyerId,
        tickets: Vec<TicketId>,
    ) -> Result<HoldView, EventError> {
        self.call(EventCall::CancelTickets { hold, buyer, tickets }).await?.view()
    }

    pub async fn get_hold(&self, hold: HoldId, buyer: BuyerId) -> Result<Option<HoldView>, EventError> {
        self.call(EventCall::GetHold { hold, buyer }).await?.maybe_view()
    }

    pub async fn payable_hold(&self, hold: HoldId, buyer: BuyerId) -> Result<Option<HoldView>, EventError> {
        self.call(EventCall::PayableHold { hold, buyer }).await?.maybe_view()
    }

    pub async fn availability(&self) -> Result<Availability, EventError> {
        self.call(EventCall::Availability).await?.availability()
    }

    /// Every seat's state and every section's counts, with their version.
    pub async fn seat_status(&self) -> Result<SeatStatus, EventError> {
        self.call(EventCall::SeatStatus).await?.seat_status()
    }

    /// Takes seats off sale (`blocked`) or puts them back; every blocked seat after.
    pub async fn block_seats(&self, seats: Vec<String>, blocked: bool) -> Result<Vec<String>, EventError> {
        self.call(EventCall::BlockSeats { seats, blocked }).await?.labels()
    }

    /// What changed after version `since`; `None` when only the full status can say.
    pub async fn seat_changes(&self, since: u64) -> Result<Option<SeatDelta>, EventError> {
        self.call(EventCall::SeatChanges { since }).await?.seat_changes()
    }

    /// Stops the actor (after its pending writes) wherever it runs and gives up its
    /// lease; the next call loads the event afresh (it changed).
    pub async fn evict(&self) {
        self.state.registry.evict(self.id).await;
        if let Err(e) = self.call(EventCall::Evict).await {
            tracing::warn!(event = %self.id, error = %e, "event actor not evicted on its node");
        }
        self.state.cluster.leases.forget(self.id.0);
    }
}

/// Event and buyer of recently created holds (a hold never changes either).
/// Bounded: two generations of at most [`HoldOwners::GENERATION`] entries each;
/// when the young one fills up, the old one is dropped. A miss costs one query.
#[derive(Default)]
pub struct HoldOwners {
    generations: std::sync::RwLock<[rustc_hash::FxHashMap<Uuid, (Uuid, Uuid)>; 2]>,
}

impl HoldOwners {
    pub const GENERATION: usize = 100_000;

    pub fn insert(&self, hold: Uuid, event: Uuid, buyer: Uuid) {
        let mut g = self.generations.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if g[0].len() >= Self::GENERATION {
            g[1] = std::mem::take(&mut g[0]);
        }
        g[0].insert(hold, (event, buyer));
    }

    pub fn get(&self, hold: Uuid) -> Option<(Uuid, Uuid)> {
        let g = self.generations.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        g[0].get(&hold).or_else(|| g[1].get(&hold)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::HoldOwners;
    use uuid::Uuid;

    #[test]
    fn hold_owners_remember_two_generations_and_forget_older() {
        let owners = HoldOwners::default();
        let (event, buyer) = (Uuid::now_v7(), Uuid::now_v7());
        let first = Uuid::now_v7();
        owners.insert(first, event, buyer);
        assert_eq!(owners.get(first), Some((event, buyer)));
        assert_eq!(owners.get(Uuid::now_v7()), None);
        // Fill the young generation: `first` moves to the old one and is still known.
        for _ in 0..HoldOwners::GENERATION {
            owners.insert(Uuid::now_v7(), event, buyer);
        }
        assert_eq!(owners.get(first), Some((event, buyer)));
        // Another generation later it is forgotten (the database answers then).
        for _ in 0..HoldOwners::GENERATION {
            owners.insert(Uuid::now_v7(), event, buyer);
        }
        assert_eq!(owners.get(first), None);
    }
}
