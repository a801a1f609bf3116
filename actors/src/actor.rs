//! `EventActor`: one per event, the only writer of that event's `SeatInventory`.
//!
//! Every request is a message, handled one at a time, so the inventory needs no
//! locks and the database never arbitrates a seat. A change is applied in memory,
//! handed to the journal, and the caller's reply port is parked until the journal
//! acknowledges (a `Durable` message back to this actor). Meanwhile the actor keeps
//! serving other messages: durability costs each caller latency, not the event
//! throughput. A failed journal write is undone (see `SeatInventory::settle`) and
//! the caller gets `Unavailable`; no reply ever claims a change that is not durable.
//!
//! A periodic `Tick` expires lapsed holds, prunes old ended holds and, when the
//! event has been idle with nothing held or pending, passivates the actor.

use crate::clock::Clock;
use crate::error::EventError;
use crate::ids::{BuyerId, EventId, HoldId, IdempotencyKey, TicketId, UnixMs};
use crate::inventory::{
    Counts, HoldView, Outcome, ReconfigureError, Sale, SalesWindow, SeatInventory, SectionCounts, Selection, Settled,
};
use crate::journal::Journal;
use crate::record::{Change, Payment, Record};
use crate::seatmap::Layout;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Most holds expired per tick, so one tick never stalls the event.
pub const MAX_EXPIRIES_PER_TICK: usize = 10_000;

/// How an actor behaves; shared by every actor of a registry.
#[derive(Clone)]
pub struct ActorConfig {
    /// How often lapsed holds are expired.
    pub tick: Duration,
    /// Idle time after which an actor with no holds and nothing pending stops.
    pub idle_after: Duration,
    /// How long expired or released holds stay in memory (for late payments and
    /// idempotent retries) before they are pruned.
    pub ended_retention: Duration,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(100),
            idle_after: Duration::from_secs(300),
            ended_retention: Duration::from_secs(3600),
        }
    }
}

/// Live availability of an event.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Availability {
    pub total: Counts,
    pub sections: Vec<SectionCounts>,
    pub window: SalesWindow,
}

type Reply<T> = RpcReplyPort<Result<T, EventError>>;

/// Everything an `EventActor` does.
pub enum EventMsg {
    Hold {
        buyer: BuyerId,
        selection: Selection,
        key: Option<IdempotencyKey>,
        reply: Reply<HoldView>,
    },
    Purchase {
        hold: HoldId,
        buyer: BuyerId,
        payment: Option<Payment>,
        reply: Reply<Sale>,
    },
    Release {
        hold: HoldId,
        buyer: BuyerId,
        reply: Reply<HoldView>,
    },
    CancelTickets {
        hold: HoldId,
        buyer: BuyerId,
        tickets: Vec<TicketId>,
        reply: Reply<HoldView>,
    },
    /// A hold; `buyer: None` reads any buyer's (for administrators).
    GetHold {
        hold: HoldId,
        buyer: Option<BuyerId>,
        reply: RpcReplyPort<Option<HoldView>>,
    },
    Availability {
        reply: RpcReplyPort<Availability>,
    },
    SetWindow {
        window: SalesWindow,
        reply: RpcReplyPort<()>,
    },
    /// Adopt a new seat map if every hold and sale still fits it.
    Reconfigure {
        layout: Layout,
        reply: RpcReplyPort<Result<(), ReconfigureError>>,
    },
    /// Finish pending writes, refuse new changes, then answer.
    Drain {
        reply: RpcReplyPort<()>,
    },
    /// The journal's answer for the pending change on `hold`.
    Durable {
        hold: HoldId,
        ok: bool,
    },
    Tick,
    /// Requests are waiting in the [`Inbox`]: handle them all.
    Batch,
}

/// Requests on their way to one actor, shared by its handles and the actor.
///
/// A caller pushes its request here and posts a `Batch` message only if none is
/// pending; the actor takes everything queued per `Batch`. Under load one mailbox
/// message and one wake-up serve many requests, instead of one each.
#[derive(Default)]
pub(crate) struct Inbox {
    queue: std::sync::Mutex<Vec<EventMsg>>,
    /// A `Batch` is posted and the queue not yet taken.
    scheduled: AtomicBool,
    /// The actor has stopped: nothing queued will be handled.
    closed: AtomicBool,
}

impl Inbox {
    /// Queues `msg`; true when the caller must post a `Batch` to wake the actor.
    pub(crate) fn push(&self, msg: EventMsg) -> bool {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(msg);
        !self.scheduled.swap(true, Ordering::SeqCst)
    }

    /// Everything queued. Clears `scheduled` first, so a request queued after the
    /// take posts a new `Batch` (and one queued before it is in the take).
    fn take(&self) -> Vec<EventMsg> {
        self.scheduled.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The actor is gone: drops what is queued (and anything queued later, when
    /// its caller sees `is_closed`), so those callers learn it at once.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        drop(std::mem::take(&mut *self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)));
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// What an actor starts from.
pub struct EventArgs {
    pub event: EventId,
    pub inventory: SeatInventory,
    pub journal: Arc<dyn Journal>,
    pub clock: Arc<dyn Clock>,
    pub config: ActorConfig,
    /// Called when the actor passivates, before it stops.
    pub on_passivate: Option<Box<dyn Fn() + Send + Sync>>,
    /// Shared with the actor's handles.
    pub(crate) inbox: Arc<Inbox>,
}

/// Where a journal acknowledgement goes: settled inline if it arrives while
/// `append` is still running, else sent back as a `Durable` message.
enum Ack {
    Waiting,
    Inline(bool),
    Later,
}

/// A caller waiting for its change to become durable.
enum Waiter {
    Hold(Reply<HoldView>),
    Purchase(Reply<Sale>),
    Release(Reply<HoldView>),
    Cancel(Reply<HoldView>),
    /// A change nobody waits for (expiry).
    Internal,
}

impl Waiter {
    /// Tells the caller its change was not saved (and so did not happen).
    fn fail(self) {
        let e = || EventError::Unavailable("the change could not be saved; nothing was changed".into());
        match self {
            Waiter::Hold(r) | Waiter::Release(r) | Waiter::Cancel(r) => drop(r.send(Err(e()))),
            Waiter::Purchase(r) => drop(r.send(Err(e()))),
            Waiter::Internal => {}
        }
    }
}

pub struct EventState {
    event: EventId,
    inventory: SeatInventory,
    journal: Arc<dyn Journal>,
    clock: Arc<dyn Clock>,
    config: ActorConfig,
    on_passivate: Option<Box<dyn Fn() + Send + Sync>>,
    waiting: FxHashMap<HoldId, Waiter>,
    drains: Vec<RpcReplyPort<()>>,
    draining: bool,
    last_request: UnixMs,
    inbox: Arc<Inbox>,
}

/// The actor itself holds no data: all of it is in `EventState`.
pub struct EventActor;

impl Actor for EventActor {
    type Msg = EventMsg;
    type State = EventState;
    type Arguments = EventArgs;

    async fn pre_start(&self, myself: ActorRef<EventMsg>, args: EventArgs) -> Result<EventState, ActorProcessingErr> {
        myself.send_interval(args.config.tick, || EventMsg::Tick);
        let now = args.clock.now();
        let mut state = EventState {
            event: args.event,
            inventory: args.inventory,
            journal: args.journal,
            clock: args.clock,
            config: args.config,
            on_passivate: args.on_passivate,
            waiting: FxHashMap::default(),
            drains: Vec::new(),
            draining: false,
            last_request: now,
            inbox: args.inbox,
        };
        // Holds that lapsed while nobody was running this event expire now.
        state.expire(&myself, now);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<EventMsg>,
        message: EventMsg,
        state: &mut EventState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            EventMsg::Batch => {
                for message in state.inbox.take() {
                    state.handle_one(&myself, message);
                }
            }
            message => state.handle_one(&myself, message),
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<EventMsg>, state: &mut EventState) -> Result<(), ActorProcessingErr> {
        state.inbox.close();
        Ok(())
    }
}

impl EventState {
    fn handle_one(&mut self, myself: &ActorRef<EventMsg>, message: EventMsg) {
        let state = self;
        let now = state.clock.now();
        match message {
            EventMsg::Hold { buyer, selection, key, reply } => {
                state.last_request = now;
                let Some(reply) = state.admit(reply) else { return };
                let id = HoldId::new();
                let outcome = state.inventory.hold(id, buyer, &selection, key.as_ref(), now);
                state.respond(myself, outcome, reply, Waiter::Hold);
            }
            EventMsg::Purchase { hold, buyer, payment, reply } => {
                state.last_request = now;
                let Some(reply) = state.admit(reply) else { return };
                let outcome = state.inventory.purchase(hold, buyer, payment, TicketId::new, now);
                state.respond(myself, outcome, reply, Waiter::Purchase);
            }
            EventMsg::Release { hold, buyer, reply } => {
                state.last_request = now;
                let Some(reply) = state.admit(reply) else { return };
                let outcome = state.inventory.release(hold, buyer, now);
                state.respond(myself, outcome, reply, Waiter::Release);
            }
            EventMsg::CancelTickets { hold, buyer, tickets, reply } => {
                state.last_request = now;
                let Some(reply) = state.admit(reply) else { return };
                let outcome = state.inventory.cancel_tickets(hold, buyer, &tickets, now);
                state.respond(myself, outcome, reply, Waiter::Cancel);
            }
            EventMsg::GetHold { hold, buyer, reply } => {
                let view = match buyer {
                    Some(buyer) => state.inventory.hold_view(hold, buyer),
                    None => state.inventory.hold_view_any(hold),
                };
                let _ = reply.send(view);
            }
            EventMsg::Availability { reply } => {
                let _ = reply.send(Availability {
                    total: state.inventory.counts(),
                    sections: state.inventory.section_counts(),
                    window: state.inventory.window(),
                });
            }
            EventMsg::SetWindow { window, reply } => {
                state.inventory.set_window(window);
                let _ = reply.send(());
            }
            EventMsg::Reconfigure { layout, reply } => {
                let _ = reply.send(state.inventory.reconfigure(layout));
            }
            EventMsg::Drain { reply } => {
                state.draining = true;
                state.drains.push(reply);
                state.finish_drain_if_done();
            }
            EventMsg::Durable { hold, ok } => state.settle(hold, ok, now),
            EventMsg::Tick => {
                state.expire(myself, now);
                let retention = i64::try_from(state.config.ended_retention.as_millis()).unwrap_or(i64::MAX);
                state.inventory.prune_ended(now.plus_ms(-retention));
                if state.idle(now) {
                    tracing::debug!(event = %state.event, "passivating idle event actor");
                    if let Some(on_passivate) = &state.on_passivate {
                        on_passivate();
                    }
                    myself.stop(Some("idle".into()));
                }
            }
            // Handled by `handle`; a nested one would mean nothing to take.
            EventMsg::Batch => {}
        }
    }

    /// Passes the reply port back unless the actor is draining, in which case the
    /// caller is told to come back later.
    fn admit<T: Send + 'static>(&self, reply: Reply<T>) -> Option<Reply<T>> {
        if self.draining {
            let _ = reply.send(Err(EventError::Unavailable("the event is shutting down; retry".into())));
            return None;
        }
        Some(reply)
    }

    /// Answers at once, or journals the change and parks the reply until durable.
    fn respond<T: Send + 'static>(
        &mut self,
        myself: &ActorRef<EventMsg>,
        outcome: Result<Outcome<T>, crate::inventory::InventoryError>,
        reply: Reply<T>,
        waiter: fn(Reply<T>) -> Waiter,
    ) {
        match outcome {
            Err(e) => {
                let _ = reply.send(Err(EventError::Inventory(e)));
            }
            Ok(Outcome::Unchanged(value)) => {
                let _ = reply.send(Ok(value));
            }
            Ok(Outcome::Pending(change)) => {
                let hold = change.hold_id();
                self.waiting.insert(hold, waiter(reply));
                self.journal_change(myself, change);
            }
        }
    }

    /// Hands `change` to the journal. A journal that acknowledges inside `append`
    /// (the in-memory one) is settled right here; otherwise the acknowledgement
    /// comes back later as a `Durable` message.
    fn journal_change(&mut self, myself: &ActorRef<EventMsg>, change: Change) {
        let hold = change.hold_id();
        let me = myself.clone();
        let slot = Arc::new(std::sync::Mutex::new(Ack::Waiting));
        let slot_in_ack = Arc::clone(&slot);
        self.journal.append(
            Record { event: self.event, change },
            Box::new(move |result| {
                if let Err(e) = &result {
                    tracing::warn!(%hold, error = %e, "journal write failed; change undone");
                }
                let mut ack = slot_in_ack.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if matches!(*ack, Ack::Waiting) {
                    *ack = Ack::Inline(result.is_ok());
                    return;
                }
                drop(ack);
                // If the actor is gone the change was settled by nobody; a restart
                // reloads whatever became durable.
                let _ = me.send_message(EventMsg::Durable { hold, ok: result.is_ok() });
            }),
        );
        let inline = {
            let mut ack = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            std::mem::replace(&mut *ack, Ack::Later)
        };
        if let Ack::Inline(ok) = inline {
            let now = self.clock.now();
            self.settle(hold, ok, now);
        }
    }

    fn settle(&mut self, hold: HoldId, ok: bool, now: UnixMs) {
        let settled = self.inventory.settle(hold, ok, now);
        let waiter = self.waiting.remove(&hold);
        if let Some(settled) = &settled {
            let kind = match settled {
                Settled::Created(_) => "hold_created",
                Settled::Purchased(_) => "purchased",
                Settled::Released(_) => "hold_released",
                Settled::Expired(_) => "hold_expired",
                Settled::Cancelled { .. } => "tickets_cancelled",
                Settled::Undone => "undone",
            };
            metrics::counter!("boxoffice_engine_changes_total", "kind" => kind).increment(1);
        }
        let (Some(settled), Some(waiter)) = (settled, waiter) else { return };
        match (waiter, settled) {
            (Waiter::Hold(r), Settled::Created(v)) => drop(r.send(Ok(v))),
            (Waiter::Purchase(r), Settled::Purchased(s)) => drop(r.send(Ok(s))),
            (Waiter::Release(r), Settled::Released(v)) => drop(r.send(Ok(v))),
            (Waiter::Cancel(r), Settled::Cancelled { hold, .. }) => drop(r.send(Ok(hold))),
            (waiter, Settled::Undone) => waiter.fail(),
            (Waiter::Internal, _) => {}
            (_, other) => tracing::error!(?other, "settled change does not match its waiter"),
        }
        self.finish_drain_if_done();
    }

    fn expire(&mut self, myself: &ActorRef<EventMsg>, now: UnixMs) {
        for change in self.inventory.expire_due(now, MAX_EXPIRIES_PER_TICK) {
            self.waiting.insert(change.hold_id(), Waiter::Internal);
            self.journal_change(myself, change);
        }
    }

    fn idle(&self, now: UnixMs) -> bool {
        let idle_ms = i64::try_from(self.config.idle_after.as_millis()).unwrap_or(i64::MAX);
        self.waiting.is_empty()
            && self.drains.is_empty()
            && now.0.saturating_sub(self.last_request.0) >= idle_ms
            && self.inventory.active_holds() == 0
    }

    fn finish_drain_if_done(&mut self) {
        if self.waiting.is_empty() {
            for reply in self.drains.drain(..) {
                let _ = reply.send(());
            }
        }
    }
}
