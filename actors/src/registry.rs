//! `Registry`: finds the actor of an event, starting it on first use.
//!
//! `EventId → cell` in a DashMap. Activation goes through a per-event `OnceCell`,
//! so when many requests race to wake the same event exactly one loads it and
//! spawns its actor; the others wait on the cell. The map's guard is dropped
//! before any `.await` (we clone the cell's `Arc` out first). An actor that goes
//! idle removes its own entry and stops; a caller that reached it just too late
//! gets `Stopped`, and [`Registry::with`] retries on a fresh actor.

use crate::actor::{ActorConfig, EventActor, EventArgs, Inbox};
use crate::clock::Clock;
use crate::error::EventError;
use crate::handle::{EventHandle, Limits};
use crate::ids::EventId;
use crate::inventory::{SalesWindow, SeatInventory};
use crate::journal::Journal;
use crate::record::HoldRecord;
use crate::seatmap::Layout;
use dashmap::DashMap;
use ractor::Actor;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// How many times [`Registry::with`] re-activates an event whose actor stopped.
const MAX_ACTIVATION_RETRIES: usize = 3;

/// What an actor is rebuilt from.
pub struct EventSnapshot {
    pub layout: Layout,
    pub window: SalesWindow,
    /// Durable holds: active and purchased ones, and recently ended ones.
    pub holds: Vec<HoldRecord>,
    /// Seats the organizer took off sale (labels).
    pub blocked: Vec<String>,
    /// The ownership epoch this activation holds the event at (0 without leases);
    /// every record the actor journals carries it.
    pub epoch: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No such event, or it is not published.
    #[error("no such event on sale")]
    NotFound,
    #[error("loading the event failed: {0}")]
    Failed(String),
    /// Another node holds the event's lease (named when known).
    #[error("the event is owned by another node")]
    NotOwner(Option<String>),
}

pub type LoadFuture = Pin<Box<dyn Future<Output = Result<EventSnapshot, LoadError>> + Send>>;

/// Reads an event's durable state (from PostgreSQL in the service).
pub trait Loader: Send + Sync + 'static {
    fn load(&self, event: EventId) -> LoadFuture;
}

type Cells = DashMap<EventId, Arc<OnceCell<EventHandle>>>;

/// The live actors, by event.
pub struct Registry {
    cells: Arc<Cells>,
    loader: Arc<dyn Loader>,
    journal: Arc<dyn Journal>,
    clock: Arc<dyn Clock>,
    config: ActorConfig,
    limits: Limits,
}

impl Registry {
    pub fn new(
        loader: Arc<dyn Loader>,
        journal: Arc<dyn Journal>,
        clock: Arc<dyn Clock>,
        config: ActorConfig,
        limits: Limits,
    ) -> Self {
        Self { cells: Arc::new(DashMap::new()), loader, journal, clock, config, limits }
    }

    /// The handle of `event`'s actor, activating it if needed.
    pub async fn get(&self, event: EventId) -> Result<EventHandle, EventError> {
        if let Some(handle) = self.running(event) {
            return Ok(handle);
        }
        let cell = self.cells.entry(event).or_default().clone();
        // Boxed: loading an event is a large future, and every call on a running
        // actor would otherwise carry (and move) its space.
        let result = cell.get_or_try_init(|| Box::pin(self.activate(event))).await.cloned();
        if result.is_err() {
            // Do not keep entries for events that failed to load (unknown ids).
            self.cells.remove_if(&event, |_, c| Arc::ptr_eq(c, &cell));
        }
        result
    }

    /// The handle of `event` if its actor is running; never activates.
    pub fn running(&self, event: EventId) -> Option<EventHandle> {
        self.cells.get(&event).and_then(|c| c.get().cloned())
    }

    /// Runs `f` against `event`'s actor, re-activating it if it stopped under us.
    /// `f` may run more than once, so it takes the handle by value and clones what
    /// it needs.
    pub async fn with<T, F, Fut>(&self, event: EventId, f: F) -> Result<T, EventError>
    where
        F: Fn(EventHandle) -> Fut,
        Fut: Future<Output = Result<T, EventError>>,
    {
        let mut attempt = 0;
        loop {
            let handle = self.get(event).await?;
            match f(handle.clone()).await {
                Err(EventError::Stopped) if attempt < MAX_ACTIVATION_RETRIES => {
                    attempt += 1;
                    self.forget(event, &handle);
                }
                other => return other,
            }
        }
    }

    /// Drops `event`'s entry if it still points at `handle`'s actor.
    pub fn forget(&self, event: EventId, handle: &EventHandle) {
        self.cells.remove_if(&event, |_, c| c.get().is_some_and(|h| h.same_actor(handle)));
    }

    /// Stops `event`'s actor after its pending writes (e.g. the event was closed or
    /// its seat map changed); the next request reloads it.
    ///
    /// The entry goes only once the actor has drained: meanwhile requests reach the
    /// draining actor and are told to retry, instead of activating a second actor
    /// that would load the event before the first one's last writes are durable.
    pub async fn evict(&self, event: EventId) {
        let running = self.cells.get(&event).and_then(|c| c.get().cloned());
        match running {
            Some(handle) => {
                handle.drain_and_stop().await;
                self.forget(event, &handle);
            }
            None => {
                self.cells.remove(&event);
            }
        }
    }

    /// Evicts every running actor (see [`Registry::evict`]), all at once: for a node
    /// that must stop serving while requests keep arriving.
    pub async fn evict_all(&self) {
        let events: Vec<EventId> = self.running_handles().iter().map(EventHandle::event).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for event in events {
            let handle = self.running(event);
            let cells = Arc::clone(&self.cells);
            tasks.spawn(async move {
                if let Some(handle) = handle {
                    handle.drain_and_stop().await;
                    cells.remove_if(&event, |_, c| c.get().is_some_and(|h| h.same_actor(&handle)));
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Handles of every running actor.
    pub fn running_handles(&self) -> Vec<EventHandle> {
        self.cells.iter().filter_map(|c| c.value().get().cloned()).collect()
    }

    /// Number of running actors.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Drains and stops every actor (graceful shutdown).
    pub async fn shutdown(&self) {
        let handles = self.running_handles();
        self.cells.clear();
        for handle in handles {
            handle.drain_and_stop().await;
        }
    }

    async fn activate(&self, event: EventId) -> Result<EventHandle, EventError> {
        let snapshot = self.loader.load(event).await.map_err(|e| match e {
            LoadError::NotFound => EventError::EventNotFound,
            LoadError::Failed(msg) => EventError::Unavailable(msg),
            LoadError::NotOwner(node) => EventError::NotOwner(node),
        })?;
        let mut inventory = SeatInventory::restore(snapshot.layout, snapshot.window, snapshot.holds).map_err(|e| {
            tracing::error!(%event, error = %e, "stored state does not restore");
            EventError::Unavailable(format!("event state is inconsistent: {e}"))
        })?;
        // A seat blocked after it was sold (cannot happen through the API) stays sold.
        let blocked: Vec<String> = snapshot.blocked.into_iter().filter(|l| inventory.seat_owner(l).is_none()).collect();
        if let Err(e) = inventory.block_seats(&blocked, true) {
            tracing::warn!(%event, error = %e, "stored blocked seats not applied");
        }
        // The actor removes its own entry when it passivates; the Weak avoids a cycle.
        let cells = Arc::downgrade(&self.cells);
        let me = Arc::new(OnceCell::<EventHandle>::new());
        let me_for_actor = Arc::clone(&me);
        let on_passivate = Box::new(move || {
            if let Some(cells) = cells.upgrade() {
                cells.remove_if(&event, |_, c| match (c.get(), me_for_actor.get()) {
                    (Some(a), Some(b)) => a.same_actor(b),
                    _ => false,
                });
            }
        });
        let inbox = Arc::new(Inbox::default());
        let args = EventArgs {
            event,
            epoch: snapshot.epoch,
            inventory,
            journal: Arc::clone(&self.journal),
            clock: Arc::clone(&self.clock),
            config: self.config.clone(),
            on_passivate: Some(on_passivate),
            inbox: Arc::clone(&inbox),
        };
        let (actor, _join) = Actor::spawn(None, EventActor, args)
            .await
            .map_err(|e| EventError::Unavailable(format!("could not start the event actor: {e}")))?;
        let handle = EventHandle::new(event, actor, inbox, self.limits);
        let _ = me.set(handle.clone());
        tracing::debug!(%event, "event actor activated");
        metrics::counter!("boxoffice_actor_activations_total").increment(1);
        Ok(handle)
    }
}
