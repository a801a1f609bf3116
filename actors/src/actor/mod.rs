//! `EventActor`: one per event, the only writer of that event's `SeatInventory`.
//!
//! Every request is a message, handled one at a time, so the inventory needs no
//! locks and the database never arbitrates a seat. A change is applied in memory,
//! handed to the journal, and the caller's reply port is parked until the journal
//! acknowledges (the ack lands in the actor's `Inbox`; a journal that answers inside
//! `append` is settled before the next request). Meanwhile the actor keeps
//! serving other messages: durability costs each caller latency, not the event
//! throughput. A failed journal write is undone (see `SeatInventory::settle`) and
//! the caller gets `Unavailable`; no reply ever claims a change that is not durable.
//!
//! A periodic `Tick` expires lapsed holds, prunes old ended holds and, when the
//! event has been idle with nothing held or pending, passivates the actor.
//!
//! The queues that bring requests and acknowledgements to the actor are in
//! `inbox`. This file is the actor itself — its messages, its state, and how each
//! message is handled and answered — kept whole because every handler shares the
//! one state and the one rule that a reply waits for durability
//! (`ARCHITECTURE.md`, section "Invariants": "no reply claims a change that is not
//! durable").

use crate::clock::Clock;
use crate::error::EventError;
use crate::ids::{BuyerId, EventId, HoldId, IdempotencyKey, TicketId, UnixMs};
use crate::inventory::{
    Counts, HoldView, InventoryError, Outcome, ReconfigureError, Sale, SalesWindow, SeatDelta, SeatInventory,
    SeatStatus, SectionCounts, Selection, Settled,
};
use crate::journal::{Ack, Journal};
use crate::record::{Change, Payment, Record};
use crate::seatmap::Layout;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::time::Duration;

mod inbox;

pub(crate) use inbox::Inbox;

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
    PayableHold {
        hold: HoldId,
        buyer: BuyerId,
        reply: RpcReplyPort<Result<Option<HoldView>, InventoryError>>,
    },
    Availability {
        reply: RpcReplyPort<Availability>,
    },
    /// Every seat's state (see `SeatInventory::seat_status`).
    SeatStatus {
        reply: RpcReplyPort<SeatStatus>,
    },
    /// Takes seats off sale or puts them back (see `SeatInventory::block_seats`).
    BlockSeats {
        seats: Vec<String>,
        blocked: bool,
        reply: RpcReplyPort<Result<Vec<String>, InventoryError>>,
    },
    /// What changed after a version, or `None` when the caller must read the status.
    SeatChanges {
        since: u64,
        reply: RpcReplyPort<Option<SeatDelta>>,
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
    Tick,
    /// Requests or journal acknowledgements are waiting in the [`Inbox`]: handle
    /// them all.
    Batch,
}

/// Most requests one `Batch` handles before the actor yields (posting itself
/// another `Batch`), so ticks and other actors on the same worker get a turn.
const MAX_REQUESTS_PER_BATCH: usize = 4096;

/// What an actor starts from.
pub struct EventArgs {
    pub event: EventId,
    /// The ownership epoch of this activation (see `Record::epoch`).
    pub epoch: i64,
    pub inventory: SeatInventory,
    pub journal: Arc<dyn Journal>,
    pub clock: Arc<dyn Clock>,
    pub config: ActorConfig,
    /// Called when the actor passivates, before it stops.
    pub on_passivate: Option<Box<dyn Fn() + Send + Sync>>,
    /// Shared with the actor's handles.
    pub(crate) inbox: Arc<Inbox>,
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
    /// The change was refused because another node owns the event: the caller
    /// is sent there (`Stopped` makes the registry route it again).
    fn moved(self) {
        match self {
            Waiter::Hold(r) | Waiter::Release(r) | Waiter::Cancel(r) => drop(r.send(Err(EventError::Stopped))),
            Waiter::Purchase(r) => drop(r.send(Err(EventError::Stopped))),
            Waiter::Internal => {}
        }
    }

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
    epoch: i64,
    inventory: SeatInventory,
    journal: Arc<dyn Journal>,
    clock: Arc<dyn Clock>,
    config: ActorConfig,
    on_passivate: Option<Box<dyn Fn() + Send + Sync>>,
    /// Stepped down: another node owns the event (see `step_down`).
    fenced: bool,
    waiting: Waiting,
    drains: Vec<RpcReplyPort<()>>,
    draining: bool,
    last_request: UnixMs,
    inbox: Arc<Inbox>,
    /// Buffers swapped with the inbox's, so taking a batch allocates nothing.
    requests: Vec<EventMsg>,
    acks: Vec<(u32, bool)>,
    /// Changes handed to the journal since the last `Batch` began (a tick's
    /// expiries count too).
    changes_in_last_batch: usize,
    changes: ChangeCounters,
}

/// Changes handed to the journal and not yet answered, each with whoever waits
/// for it, under the token its [`Ack`] carries back: a slab, so settling a change
/// indexes a small, hot vector instead of hashing into a map.
#[derive(Default)]
struct Waiting {
    entries: Vec<Option<(HoldId, Waiter)>>,
    free: Vec<u32>,
    len: usize,
}

impl Waiting {
    fn insert(&mut self, hold: HoldId, waiter: Waiter) -> u32 {
        self.len += 1;
        match self.free.pop() {
            Some(token) => {
                self.entries[token as usize] = Some((hold, waiter));
                token
            }
            None => {
                self.entries.push(Some((hold, waiter)));
                u32::try_from(self.entries.len() - 1).expect("fewer than 2^32 changes in flight")
            }
        }
    }

    fn take(&mut self, token: u32) -> Option<(HoldId, Waiter)> {
        let taken = self.entries.get_mut(token as usize)?.take()?;
        self.len -= 1;
        self.free.push(token);
        Some(taken)
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// `boxoffice_engine_changes_total` by kind, registered once per actor rather
/// than looked up (and its key built) on every change.
struct ChangeCounters {
    created: metrics::Counter,
    purchased: metrics::Counter,
    released: metrics::Counter,
    expired: metrics::Counter,
    cancelled: metrics::Counter,
    undone: metrics::Counter,
}

impl ChangeCounters {
    fn register() -> Self {
        Self {
            created: metrics::counter!("boxoffice_engine_changes_total", "kind" => "hold_created"),
            purchased: metrics::counter!("boxoffice_engine_changes_total", "kind" => "purchased"),
            released: metrics::counter!("boxoffice_engine_changes_total", "kind" => "hold_released"),
            expired: metrics::counter!("boxoffice_engine_changes_total", "kind" => "hold_expired"),
            cancelled: metrics::counter!("boxoffice_engine_changes_total", "kind" => "tickets_cancelled"),
            undone: metrics::counter!("boxoffice_engine_changes_total", "kind" => "undone"),
        }
    }

    fn of(&self, settled: &Settled) -> &metrics::Counter {
        match settled {
            Settled::Created(_) => &self.created,
            Settled::Purchased(_) => &self.purchased,
            Settled::Released(_) => &self.released,
            Settled::Expired(_) => &self.expired,
            Settled::Cancelled { .. } => &self.cancelled,
            Settled::Undone => &self.undone,
        }
    }
}

/// The actor itself holds no data: all of it is in `EventState`.
pub struct EventActor;

impl Actor for EventActor {
    type Msg = EventMsg;
    type State = EventState;
    type Arguments = EventArgs;

    async fn pre_start(&self, myself: ActorRef<EventMsg>, args: EventArgs) -> Result<EventState, ActorProcessingErr> {
        myself.send_interval(args.config.tick, || EventMsg::Tick);
        let _ = args.inbox.actor.set(myself.clone());
        let now = args.clock.now();
        let mut inventory = args.inventory;
        // Seat versions keep growing across activations (see `inventory::status`).
        inventory.start_versions_at(u64::try_from(now.0).unwrap_or(0).saturating_mul(1_000));
        let mut state = EventState {
            event: args.event,
            epoch: args.epoch,
            inventory,
            journal: args.journal,
            clock: args.clock,
            config: args.config,
            on_passivate: args.on_passivate,
            fenced: false,
            waiting: Waiting::default(),
            drains: Vec::new(),
            draining: false,
            last_request: now,
            inbox: args.inbox,
            requests: Vec::new(),
            acks: Vec::new(),
            changes_in_last_batch: 0,
            changes: ChangeCounters::register(),
        };
        // Holds that lapsed while nobody was running this event expire now.
        state.expire(now);
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
                // When changes arrive together, let the tasks that are ready on
                // this worker (callers about to queue more) run first: woken by the
                // first request, the actor would otherwise run at once and take a
                // batch of one, paying a wake-up per change. Not for a lone caller
                // (nothing to wait for, and the yielded actor waits for the
                // worker's I/O poll) nor after reads (cheap to handle: they are
                // best answered at once, alongside the callers on the other worker).
                if state.changes_in_last_batch > 1 {
                    tokio::task::yield_now().await;
                }
                state.changes_in_last_batch = 0;
                state.handle_batch(&myself);
            }
            message => {
                let now = state.clock.now();
                state.handle_one(&myself, message, now);
                state.settle_acks(now);
            }
        }
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<EventMsg>, state: &mut EventState) -> Result<(), ActorProcessingErr> {
        state.inbox.close();
        Ok(())
    }
}

impl EventState {
    /// Works through the inbox until it is empty (or the batch limit is reached),
    /// acknowledgements first: they free holds that requests may be waiting on.
    fn handle_batch(&mut self, myself: &ActorRef<EventMsg>) {
        let mut handled = 0;
        loop {
            let mut requests = std::mem::take(&mut self.requests);
            self.inbox.take_requests(&mut requests);
            self.settle_acks(self.clock.now());
            let empty = requests.is_empty();
            for message in requests.drain(..) {
                let now = self.clock.now();
                self.handle_one(myself, message, now);
                // A journal that answers inside `append` (the in-memory one) is
                // settled before the next request, as if it had answered inline.
                self.settle_acks(now);
                handled += 1;
            }
            self.requests = requests;
            if empty && !self.inbox.idle_or_more() {
                return;
            }
            if handled >= MAX_REQUESTS_PER_BATCH {
                // Still scheduled: this Batch stands for the rest.
                let _ = myself.send_message(EventMsg::Batch);
                return;
            }
        }
    }

    /// Settles every change the journal has answered for.
    fn settle_acks(&mut self, now: UnixMs) {
        self.inbox.take_acks(&mut self.acks);
        if self.acks.is_empty() {
            return;
        }
        let mut acks = std::mem::take(&mut self.acks);
        for (token, ok) in acks.drain(..) {
            self.settle(token, ok, now);
        }
        self.acks = acks;
        if self.inbox.is_fenced() && !self.fenced {
            self.step_down();
        }
    }

    /// Another node owns the event now: stop serving it at once. Nothing this
    /// actor holds in memory can be trusted any more; the callers of changes still
    /// in flight and everyone queued learn `Stopped` and are routed again.
    fn step_down(&mut self) {
        self.fenced = true;
        tracing::warn!(event = %self.event, "another node owns this event now; its actor here stops");
        metrics::counter!("boxoffice_fencing_stepdowns_total").increment(1);
        if let Some(on_passivate) = &self.on_passivate {
            on_passivate();
        }
        if let Some(actor) = self.inbox.actor.get() {
            actor.stop(Some("fenced".into()));
        }
    }

    fn handle_one(&mut self, myself: &ActorRef<EventMsg>, message: EventMsg, now: UnixMs) {
        let state = self;
        match message {
            EventMsg::Hold { buyer, selection, key, reply } => {
                state.last_request = now;
                let Some(reply) = state.admit(reply) else { return };
                let id = HoldId::at(now);
                let outcome = state.inventory.hold(id, buyer, &selection, key.as_ref(), now);
                state.respond(outcome, reply, Waiter::Hold);
            }
            EventMsg::Purchase { hold, buyer, payment, reply } => {
                state.last_request = now;
                let Some(reply) = state.admit(reply) else { return };
                let outcome = state.inventory.purchase(hold, buyer, payment, TicketId::new, now);
                state.respond(outcome, reply, Waiter::Purchase);
            }
            EventMsg::Release { hold, buyer, reply } => {
                state.last_request = now;
                let Some(reply) = state.admit(reply) else { return };
                let outcome = state.inventory.release(hold, buyer, now);
                state.respond(outcome, reply, Waiter::Release);
            }
            EventMsg::CancelTickets { hold, buyer, tickets, reply } => {
                state.last_request = now;
                let Some(reply) = state.admit(reply) else { return };
                let outcome = state.inventory.cancel_tickets(hold, buyer, &tickets, now);
                state.respond(outcome, reply, Waiter::Cancel);
            }
            EventMsg::GetHold { hold, buyer, reply } => {
                let view = match buyer {
                    Some(buyer) => state.inventory.hold_view(hold, buyer),
                    None => state.inventory.hold_view_any(hold),
                };
                let _ = reply.send(view);
            }
            EventMsg::PayableHold { hold, buyer, reply } => {
                let _ = reply.send(state.inventory.payable_hold(hold, buyer, state.clock.now()));
            }
            EventMsg::Availability { reply } => {
                let _ = reply.send(Availability {
                    total: state.inventory.counts(),
                    sections: state.inventory.section_counts(),
                    window: state.inventory.window(),
                });
            }
            EventMsg::SeatStatus { reply } => {
                let _ = reply.send(state.inventory.seat_status());
            }
            EventMsg::BlockSeats { seats, blocked, reply } => {
                let _ = reply.send(state.inventory.block_seats(&seats, blocked));
            }
            EventMsg::SeatChanges { since, reply } => {
                let _ = reply.send(state.inventory.seat_changes_since(since));
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
            EventMsg::Tick => {
                state.expire(now);
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
            Ok(Outcome::Pending(change)) => self.journal_change(change, waiter(reply)),
        }
    }

    /// Hands `change` to the journal, `waiter` waiting for it; the journal's answer
    /// comes back through the inbox.
    fn journal_change(&mut self, change: Change, waiter: Waiter) {
        let hold = change.hold_id();
        let token = self.waiting.insert(hold, waiter);
        self.changes_in_last_batch += 1;
        let ack = Ack::to_actor(hold, token, Arc::clone(&self.inbox));
        self.journal.append(Record { event: self.event, epoch: self.epoch, change }, ack);
    }

    fn settle(&mut self, token: u32, ok: bool, now: UnixMs) {
        let Some((hold, waiter)) = self.waiting.take(token) else { return };
        if let Some(settled) = self.inventory.settle(hold, ok, now) {
            self.changes.of(&settled).increment(1);
            Self::answer(waiter, settled, self.inbox.is_fenced());
        }
        self.finish_drain_if_done();
    }

    /// Tells whoever waits for a settled change what became of it.
    fn answer(waiter: Waiter, settled: Settled, fenced: bool) {
        match (waiter, settled) {
            (Waiter::Hold(r), Settled::Created(v)) => drop(r.send(Ok(v))),
            (Waiter::Purchase(r), Settled::Purchased(s)) => drop(r.send(Ok(*s))),
            (Waiter::Release(r), Settled::Released(v)) => drop(r.send(Ok(v))),
            (Waiter::Cancel(r), Settled::Cancelled { hold, .. }) => drop(r.send(Ok(hold))),
            (waiter, Settled::Undone) if fenced => waiter.moved(),
            (waiter, Settled::Undone) => waiter.fail(),
            (Waiter::Internal, _) => {}
            (_, other) => tracing::error!(?other, "settled change does not match its waiter"),
        }
    }

    fn expire(&mut self, now: UnixMs) {
        for change in self.inventory.expire_due(now, MAX_EXPIRIES_PER_TICK) {
            self.journal_change(change, Waiter::Internal);
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
