//! `EventHandle`: the typed client of one `EventActor`.
//!
//! Callers never see ractor types. Each call passes admission control first: an
//! in-flight counter per event, past whose limit calls fail fast with `Overloaded`
//! (the HTTP layer answers 503 + Retry-After) — except a purchase that carries a
//! payment, which is never shed: the money has moved and must end as tickets. Ractor mailboxes are unbounded, so
//! this limit is what keeps queueing — and so latency and memory — bounded.
//!
//! Requests go through the actor's [`Inbox`] rather than one mailbox message each:
//! under load the actor takes all waiting requests per wake-up.

use crate::actor::{Availability, EventMsg, Inbox};
use crate::error::EventError;
use crate::ids::{BuyerId, EventId, HoldId, IdempotencyKey, TicketId};
use crate::inventory::{HoldView, ReconfigureError, Sale, SalesWindow, SeatDelta, SeatStatus, Selection};
use crate::record::Payment;
use crate::seatmap::Layout;
use ractor::{ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Admission and timeout settings of every handle.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Requests one event may have in flight before new ones are shed.
    pub max_in_flight: usize,
    /// How long a caller waits for its answer (including durability).
    pub call_timeout: Duration,
    /// What `Overloaded` advises.
    pub retry_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_in_flight: 4096, call_timeout: Duration::from_secs(5), retry_after: Duration::from_millis(200) }
    }
}

#[derive(Clone)]
pub struct EventHandle {
    inner: Arc<Inner>,
}

struct Inner {
    event: EventId,
    actor: ActorRef<EventMsg>,
    inbox: Arc<Inbox>,
    in_flight: AtomicUsize,
    limits: Limits,
    /// `boxoffice_actor_in_flight`, registered once instead of looked up per call.
    in_flight_gauge: metrics::Gauge,
    overloads: metrics::Counter,
}

/// How admission control treats a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    /// Refused with `Overloaded` past the in-flight limit.
    Shed,
    /// Completes something already paid for: counted, never refused.
    Paid,
}

/// Releases an admission slot when the call ends, however it ends.
struct Admitted<'a>(&'a Inner);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.in_flight_gauge.decrement(1.0);
    }
}

impl EventHandle {
    pub(crate) fn new(event: EventId, actor: ActorRef<EventMsg>, inbox: Arc<Inbox>, limits: Limits) -> Self {
        Self {
            inner: Arc::new(Inner {
                event,
                actor,
                inbox,
                in_flight: AtomicUsize::new(0),
                limits,
                in_flight_gauge: metrics::gauge!("boxoffice_actor_in_flight"),
                overloads: metrics::counter!("boxoffice_actor_overload_rejections_total"),
            }),
        }
    }

    pub fn event(&self) -> EventId {
        self.inner.event
    }

    /// Requests in flight right now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn same_actor(&self, other: &EventHandle) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub async fn hold(
        &self,
        buyer: BuyerId,
        selection: Selection,
        key: Option<IdempotencyKey>,
    ) -> Result<HoldView, EventError> {
        self.call(|reply| EventMsg::Hold { buyer, selection, key, reply }).await?
    }

    /// Completes `hold`. With a `payment` the buyer's money has already moved, so
    /// the call takes the paid lane: it is never shed by admission control (a 503
    /// there would leave a charge without tickets). Without one it is admitted
    /// like any request.
    pub async fn purchase(&self, hold: HoldId, buyer: BuyerId, payment: Option<Payment>) -> Result<Sale, EventError> {
        let lane = if payment.is_some() { Lane::Paid } else { Lane::Shed };
        self.call_in(lane, |reply| EventMsg::Purchase { hold, buyer, payment, reply }).await?
    }

    pub async fn release(&self, hold: HoldId, buyer: BuyerId) -> Result<HoldView, EventError> {
        self.call(|reply| EventMsg::Release { hold, buyer, reply }).await?
    }

    pub async fn cancel_tickets(
        &self,
        hold: HoldId,
        buyer: BuyerId,
        tickets: Vec<TicketId>,
    ) -> Result<HoldView, EventError> {
        self.call(|reply| EventMsg::CancelTickets { hold, buyer, tickets, reply }).await?
    }

    /// `buyer`'s hold, or `None` (also for another buyer's hold).
    pub async fn get_hold(&self, hold: HoldId, buyer: BuyerId) -> Result<Option<HoldView>, EventError> {
        self.call(|reply| EventMsg::GetHold { hold, buyer: Some(buyer), reply }).await
    }

    /// `buyer`'s hold if it may be paid for now; `SalesClosed` once the sale is
    /// over (see `SeatInventory::payable_hold`).
    pub async fn payable_hold(&self, hold: HoldId, buyer: BuyerId) -> Result<Option<HoldView>, EventError> {
        Ok(self.call(|reply| EventMsg::PayableHold { hold, buyer, reply }).await??)
    }

    /// Any buyer's hold, for administrators.
    pub async fn get_hold_any(&self, hold: HoldId) -> Result<Option<HoldView>, EventError> {
        self.call(|reply| EventMsg::GetHold { hold, buyer: None, reply }).await
    }

    pub async fn availability(&self) -> Result<Availability, EventError> {
        self.call(|reply| EventMsg::Availability { reply }).await
    }

    /// Every seat's state and every section's counts, with their version.
    pub async fn seat_status(&self) -> Result<SeatStatus, EventError> {
        self.call(|reply| EventMsg::SeatStatus { reply }).await
    }

    /// Takes the seats off sale (`blocked`) or puts them back; every blocked seat after.
    pub async fn block_seats(&self, seats: Vec<String>, blocked: bool) -> Result<Vec<String>, EventError> {
        Ok(self.call(|reply| EventMsg::BlockSeats { seats, blocked, reply }).await??)
    }

    /// What changed after version `since`; `None` when only the full status can say.
    pub async fn seat_changes(&self, since: u64) -> Result<Option<SeatDelta>, EventError> {
        self.call(|reply| EventMsg::SeatChanges { since, reply }).await
    }

    pub async fn set_window(&self, window: SalesWindow) -> Result<(), EventError> {
        self.call(|reply| EventMsg::SetWindow { window, reply }).await
    }

    /// Adopts a new seat map, or says why it does not fit the event's sales.
    pub async fn reconfigure(&self, layout: Layout) -> Result<Result<(), ReconfigureError>, EventError> {
        self.call(|reply| EventMsg::Reconfigure { layout, reply }).await
    }

    /// Waits for pending writes, then stops the actor. New changes are refused
    /// meanwhile.
    pub async fn drain_and_stop(&self) {
        // Through the inbox, like every request, so it is ordered after those queued
        // before it and before those queued after it (admission control aside: a
        // drain is never shed).
        let rx = self.enqueue(|reply| EventMsg::Drain { reply });
        let drained = tokio::time::timeout(self.inner.limits.call_timeout, rx).await;
        if !matches!(drained, Ok(Ok(()))) {
            tracing::warn!(event = %self.inner.event, "event actor did not drain in time");
        }
        self.inner.actor.stop(Some("shutdown".into()));
    }

    async fn call<T: Send + 'static>(&self, msg: impl FnOnce(RpcReplyPort<T>) -> EventMsg) -> Result<T, EventError> {
        self.call_in(Lane::Shed, msg).await
    }

    async fn call_in<T: Send + 'static>(
        &self,
        lane: Lane,
        msg: impl FnOnce(RpcReplyPort<T>) -> EventMsg,
    ) -> Result<T, EventError> {
        let limits = self.inner.limits;
        let before = self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        self.inner.in_flight_gauge.increment(1.0);
        let _admitted = Admitted(&self.inner);
        if lane == Lane::Shed && before >= limits.max_in_flight {
            self.inner.overloads.increment(1);
            return Err(EventError::Overloaded { retry_after: limits.retry_after });
        }
        let rx = self.enqueue(msg);
        match tokio::time::timeout(limits.call_timeout, rx).await {
            Ok(Ok(value)) => Ok(value),
            // The reply port was dropped unanswered: the actor stopped.
            Ok(Err(_)) => Err(EventError::Stopped),
            Err(_) => Err(EventError::Timeout),
        }
    }

    /// Queues a request in the actor's inbox (posting one `Batch` if the actor is
    /// idle) and returns where its answer will arrive.
    fn enqueue<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> EventMsg,
    ) -> tokio::sync::oneshot::Receiver<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let inbox = &self.inner.inbox;
        let must_post = inbox.push(msg(RpcReplyPort::from(tx)));
        // The actor is gone (the post failed, or it stopped before or after the push):
        // nobody will answer what is queued; dropping it tells its callers at once.
        if (must_post && self.inner.actor.send_message(EventMsg::Batch).is_err()) || inbox.is_closed() {
            inbox.close();
        }
        rx
    }
}
