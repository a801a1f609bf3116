//! The actor's inbox: requests from its handles and acknowledgements from the
//! journal, queued for the actor to take in batches.
//!
//! Whoever queues something also makes sure the actor will look: it posts one
//! `Batch` message unless one is already scheduled. When the actor runs out of
//! work it clears `scheduled` and then looks at both queues once more (a fence on
//! each side), so whatever a sender queued while it saw `scheduled` still set is
//! handled: nothing queued is left unseen while the actor idles. Once the actor
//! has stopped, the inbox is closed and drops what is queued, so waiting callers
//! learn it at once instead of timing out.

use super::EventMsg;
use ractor::ActorRef;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// Requests on their way to one actor, shared by its handles and the actor, and
/// the journal's acknowledgements on their way back.
///
/// A caller (or the journal) pushes here and posts a `Batch` message only if none
/// is scheduled. The actor keeps `scheduled` set while it works through the queue,
/// so under load one mailbox message and one wake-up serve many requests and every
/// acknowledgement, instead of one message each.
///
/// The three parts sit on their own cache lines: callers on other cores lock the
/// queue while the actor settles acknowledgements, and a caller that finds the
/// actor already scheduled only reads `scheduled` (no write to a shared line).
#[derive(Default)]
pub(crate) struct Inbox {
    queue: CacheLine<Mutex<Vec<EventMsg>>>,
    /// Journal answers: (the waiting change's token, durable). Its own lock, so
    /// the journal never waits behind callers.
    acks: CacheLine<Mutex<Vec<(u32, bool)>>>,
    /// A `Batch` is posted, or the actor is working through the queues.
    scheduled: CacheLine<AtomicBool>,
    /// The actor has stopped: nothing queued will be handled.
    closed: AtomicBool,
    /// The journal refused a change because another node owns the event now.
    fenced: AtomicBool,
    /// Where `Batch` goes; set when the actor starts.
    pub(super) actor: OnceLock<ActorRef<EventMsg>>,
}

impl Inbox {
    /// Queues `msg`; true when the caller must post a `Batch` to wake the actor.
    pub(crate) fn push(&self, msg: EventMsg) -> bool {
        lock(&self.queue).push(msg);
        self.schedule()
    }

    /// After queuing something: claims the job of posting a `Batch` (true) unless
    /// one is scheduled already. The fence pairs with the one in `idle_or_more`:
    /// either the actor sees what was queued, or this sees `scheduled` cleared.
    fn schedule(&self) -> bool {
        std::sync::atomic::fence(Ordering::SeqCst);
        !self.scheduled.load(Ordering::Relaxed) && !self.scheduled.swap(true, Ordering::SeqCst)
    }

    /// The journal's answer for the waiting change `token`.
    pub(crate) fn acknowledge(&self, token: u32, ok: bool) {
        lock(&self.acks).push((token, ok));
        if self.schedule() {
            // If the actor is gone the change was settled by nobody; a restart
            // reloads whatever became durable.
            if let Some(actor) = self.actor.get() {
                let _ = actor.send_message(EventMsg::Batch);
            }
        }
    }

    /// Every queued request, swapped into the actor's (empty) buffer.
    pub(super) fn take_requests(&self, requests: &mut Vec<EventMsg>) {
        debug_assert!(requests.is_empty());
        std::mem::swap(&mut *lock(&self.queue), requests);
    }

    /// Every queued acknowledgement, appended to `acks`.
    pub(super) fn take_acks(&self, acks: &mut Vec<(u32, bool)>) {
        acks.append(&mut lock(&self.acks));
    }

    /// The actor ran out of work: clears `scheduled`, unless something arrived
    /// meanwhile whose sender saw it still set (and so posted nothing) — then the
    /// actor goes on (true).
    pub(super) fn idle_or_more(&self) -> bool {
        self.scheduled.store(false, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        let more = !lock(&self.queue).is_empty() || !lock(&self.acks).is_empty();
        more && !self.scheduled.swap(true, Ordering::SeqCst)
    }

    /// The actor is gone: drops what is queued (and anything queued later, when
    /// its caller sees `is_closed`), so those callers learn it at once.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        drop(std::mem::take(&mut *lock(&self.queue)));
    }

    /// Marks the actor as deposed (see [`JournalError::Fenced`](crate::journal::JournalError)).
    pub(crate) fn fence(&self) {
        self.fenced.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// A value alone on its cache line (64 bytes), so writes to its neighbours do not
/// take the line away from the cores that use it.
#[derive(Default)]
#[repr(align(64))]
struct CacheLine<T>(T);

impl<T> std::ops::Deref for CacheLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Locks a std mutex, also after a panic elsewhere (the data are plain queues).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// Each part fills exactly its own line (the contents fit in 64 bytes).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<CacheLine<Mutex<Vec<EventMsg>>>>() == 64);
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<CacheLine<Mutex<Vec<(u32, bool)>>>>() == 64);
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<CacheLine<AtomicBool>>() == 64);
