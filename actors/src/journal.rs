//! The persistence port: where the actor sends each change and learns when it is
//! durable.
//!
//! `Journal::append` must not block: it queues the record and answers `ack`
//! exactly once, later or at once, with `Ok` only when the record is durable. The actor
//! keeps serving other requests meanwhile, so a journal that group-commits turns
//! durability into latency, not lost throughput.
//!
//! `MemoryJournal` is the journal for tests and benches: it keeps the durable state
//! in memory (so an actor can be "restarted" from it), can group-commit with a
//! delay, and can be told to fail.

use crate::actor::Inbox;
use crate::ids::{EventId, HoldId};
use crate::record::{Change, HoldRecord, Record, apply};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The answer a journal owes for one record: call [`Ack::done`] exactly once,
/// `Ok` when the record is durable, `Err` when it never will be.
pub struct Ack(AckTo);

enum AckTo {
    /// Back to the actor that made the change, through its inbox: no allocation
    /// per record, and no message when the actor is running anyway.
    Actor { hold: HoldId, token: u32, inbox: Arc<Inbox> },
    /// Anyone else (benches, tools): a callback.
    Callback(Box<dyn FnOnce(Result<(), JournalError>) + Send + 'static>),
}

impl Ack {
    /// An acknowledgement that calls `f`.
    pub fn new(f: impl FnOnce(Result<(), JournalError>) + Send + 'static) -> Self {
        Self(AckTo::Callback(Box::new(f)))
    }

    /// `token` is where the actor keeps the waiting change; `hold` names it in logs.
    pub(crate) fn to_actor(hold: HoldId, token: u32, inbox: Arc<Inbox>) -> Self {
        Self(AckTo::Actor { hold, token, inbox })
    }

    /// Reports the record's fate.
    pub fn done(self, result: Result<(), JournalError>) {
        match self.0 {
            AckTo::Actor { hold, token, inbox } => {
                if let Err(e) = &result {
                    tracing::warn!(%hold, error = %e, "journal write failed; change undone");
                }
                if matches!(result, Err(JournalError::Fenced)) {
                    // Another node owns the event now: this actor must stop.
                    inbox.fence();
                }
                inbox.acknowledge(token, result.is_ok());
            }
            AckTo::Callback(f) => f(result),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("the journal could not make the change durable: {0}")]
    Failed(String),
    /// The writer no longer holds the event's lease (another node took it over):
    /// the change was refused, and the actor that made it stops.
    #[error("this node no longer owns the event")]
    Fenced,
}

/// Where changes become durable.
pub trait Journal: Send + Sync + 'static {
    /// Queues `record`; answers `ack` once it is durable or has failed. Never blocks.
    fn append(&self, record: Record, ack: Ack);
}

/// Durable state per event, as the in-memory journal holds it.
type Store = FxHashMap<EventId, EventStore>;

/// One event's durable changes, in the order they became durable: a log, as a
/// database's journal is. Appending is a push, whatever the number of holds; the
/// holds are rebuilt from it (with [`apply`]) only when someone reads them, which
/// tests do rarely.
#[derive(Default)]
struct EventStore {
    log: Vec<Change>,
}

impl EventStore {
    fn holds(&self) -> Vec<HoldRecord> {
        let mut holds = FxHashMap::default();
        for change in &self.log {
            apply(&mut holds, change);
        }
        holds.into_values().collect()
    }
}

/// A journal in memory, for tests and benches.
#[derive(Clone, Default)]
pub struct MemoryJournal {
    inner: Arc<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    /// std Mutex: held for a map update only, never across an await.
    store: Mutex<Store>,
    /// When set, every append fails and nothing is stored.
    failing: AtomicBool,
    /// Fail every n-th record (0 = never).
    fail_every: AtomicU64,
    appended: AtomicU64,
    committed: AtomicU64,
    /// Set once by `with_commit_delay`; read without a lock on every append.
    batcher: OnceLock<tokio::sync::mpsc::UnboundedSender<(Record, Ack)>>,
}

impl MemoryJournal {
    /// Acknowledges every record at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// Group-commits: records arriving within `delay` of the first one in a batch
    /// are acknowledged together after `delay`, like a database commit. Must be
    /// called inside a tokio runtime.
    pub fn with_commit_delay(delay: Duration) -> Self {
        let journal = Self::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Record, Ack)>();
        let _ = journal.inner.batcher.set(tx);
        let inner = Arc::downgrade(&journal.inner);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                tokio::time::sleep(delay).await;
                let mut batch = vec![first];
                while let Ok(next) = rx.try_recv() {
                    batch.push(next);
                }
                let Some(inner) = inner.upgrade() else { return };
                for (record, ack) in batch {
                    inner.commit(record, ack);
                }
            }
        });
        journal
    }

    /// Makes every following append fail (true) or succeed (false).
    pub fn set_failing(&self, failing: bool) {
        self.inner.failing.store(failing, Ordering::SeqCst);
    }

    /// Fails every `n`-th record from now on (0 turns it off).
    pub fn fail_every(&self, n: u64) {
        self.inner.fail_every.store(n, Ordering::SeqCst);
    }

    /// The durable holds of an event, as a restart would load them.
    pub fn holds(&self, event: EventId) -> Vec<HoldRecord> {
        let store = self.inner.store.lock().expect("journal lock");
        let mut holds = store.get(&event).map(EventStore::holds).unwrap_or_default();
        holds.sort_by_key(|h| h.id);
        holds
    }

    /// Records made durable so far.
    pub fn committed(&self) -> u64 {
        self.inner.committed.load(Ordering::SeqCst)
    }
}

impl MemoryInner {
    fn commit(&self, record: Record, ack: Ack) {
        let n = self.appended.fetch_add(1, Ordering::SeqCst) + 1;
        let every = self.fail_every.load(Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) || (every > 0 && n.is_multiple_of(every)) {
            ack.done(Err(JournalError::Failed("injected failure".into())));
            return;
        }
        {
            let mut store = self.store.lock().expect("journal lock");
            store.entry(record.event).or_default().log.push(record.change);
        }
        self.committed.fetch_add(1, Ordering::SeqCst);
        ack.done(Ok(()));
    }
}

impl Journal for MemoryJournal {
    fn append(&self, record: Record, ack: Ack) {
        match self.inner.batcher.get() {
            Some(tx) => {
                if let Err(tokio::sync::mpsc::error::SendError((_, ack))) = tx.send((record, ack)) {
                    ack.done(Err(JournalError::Failed("journal stopped".into())));
                }
            }
            None => self.inner.commit(record, ack),
        }
    }
}
