//! The operations one node asks of an event's owner, and running them locally.
//!
//! Every call on an event's actor that the service makes is one of these; a node
//! that does not own the event sends it to the owner (`POST
//! /internal/events/{id}`), which runs it on its actor and never forwards it
//! again (one hop): if it is not the owner after all it answers `NotOwner`, and
//! the sender looks again.

use boxoffice_actors::{
    Availability, BuyerId, EventError, EventId, HoldId, HoldView, IdempotencyKey, Payment, Registry, Sale, SeatDelta,
    SeatStatus, Selection, TicketId,
};
use serde::{Deserialize, Serialize};

/// An operation on an event's actor.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum EventCall {
    Hold {
        buyer: BuyerId,
        selection: Selection,
        key: Option<IdempotencyKey>,
    },
    Purchase {
        hold: HoldId,
        buyer: BuyerId,
        payment: Option<Payment>,
    },
    Release {
        hold: HoldId,
        buyer: BuyerId,
    },
    CancelTickets {
        hold: HoldId,
        buyer: BuyerId,
        tickets: Vec<TicketId>,
    },
    GetHold {
        hold: HoldId,
        buyer: BuyerId,
    },
    PayableHold {
        hold: HoldId,
        buyer: BuyerId,
    },
    Availability,
    SeatStatus,
    SeatChanges {
        since: u64,
    },
    BlockSeats {
        seats: Vec<String>,
        blocked: bool,
    },
    /// Drain the actor, stop it and give up the lease (the event changed, or moves).
    Evict,
}

/// Its answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "reply", content = "value", rename_all = "snake_case")]
pub enum EventReply {
    View(HoldView),
    MaybeView(Option<HoldView>),
    Sale(Box<Sale>),
    Availability(Box<Availability>),
    SeatStatus(Box<SeatStatus>),
    SeatChanges(Option<Box<SeatDelta>>),
    Labels(Vec<String>),
    Done,
}

fn unexpected(what: &str) -> EventError {
    EventError::Unavailable(format!("unexpected answer from the event's owner (wanted {what})"))
}

impl EventReply {
    pub fn view(self) -> Result<HoldView, EventError> {
        match self {
            EventReply::View(v) => Ok(v),
            _ => Err(unexpected("a hold")),
        }
    }

    pub fn maybe_view(self) -> Result<Option<HoldView>, EventError> {
        match self {
            EventReply::MaybeView(v) => Ok(v),
            _ => Err(unexpected("a hold or none")),
        }
    }

    pub fn sale(self) -> Result<Sale, EventError> {
        match self {
            EventReply::Sale(s) => Ok(*s),
            _ => Err(unexpected("a sale")),
        }
    }

    pub fn availability(self) -> Result<Availability, EventError> {
        match self {
            EventReply::Availability(a) => Ok(*a),
            _ => Err(unexpected("availability")),
        }
    }

    pub fn seat_status(self) -> Result<SeatStatus, EventError> {
        match self {
            EventReply::SeatStatus(s) => Ok(*s),
            _ => Err(unexpected("seat status")),
        }
    }

    pub fn labels(self) -> Result<Vec<String>, EventError> {
        match self {
            EventReply::Labels(l) => Ok(l),
            _ => Err(unexpected("seat labels")),
        }
    }

    pub fn seat_changes(self) -> Result<Option<SeatDelta>, EventError> {
        match self {
            EventReply::SeatChanges(d) => Ok(d.map(|d| *d)),
            _ => Err(unexpected("seat changes")),
        }
    }
}

/// Runs `call` on this node's actor of `event` (activating it, which takes the
/// lease, if needed).
pub async fn execute(registry: &Registry, event: EventId, call: EventCall) -> Result<EventReply, EventError> {
    match call {
        EventCall::Hold { buyer, selection, key } => registry
            .with(event, |h| {
                let (selection, key) = (selection.clone(), key.clone());
                async move { h.hold(buyer, selection, key).await }
            })
            .await
            .map(EventReply::View),
        EventCall::Purchase { hold, buyer, payment } => registry
            .with(event, |h| {
                let payment = payment.clone();
                async move { h.purchase(hold, buyer, payment).await }
            })
            .await
            .map(|s| EventReply::Sale(Box::new(s))),
        EventCall::Release { hold, buyer } => {
            registry.with(event, |h| async move { h.release(hold, buyer).await }).await.map(EventReply::View)
        }
        EventCall::CancelTickets { hold, buyer, tickets } => registry
            .with(event, |h| {
                let tickets = tickets.clone();
                async move { h.cancel_tickets(hold, buyer, tickets).await }
            })
            .await
            .map(EventReply::View),
        EventCall::GetHold { hold, buyer } => {
            registry.with(event, |h| async move { h.get_hold(hold, buyer).await }).await.map(EventReply::MaybeView)
        }
        EventCall::PayableHold { hold, buyer } => {
            registry.with(event, |h| async move { h.payable_hold(hold, buyer).await }).await.map(EventReply::MaybeView)
        }
        EventCall::Availability => registry
            .with(event, |h| async move { h.availability().await })
            .await
            .map(|a| EventReply::Availability(Box::new(a))),
        EventCall::SeatStatus => registry
            .with(event, |h| async move { h.seat_status().await })
            .await
            .map(|s| EventReply::SeatStatus(Box::new(s))),
        EventCall::SeatChanges { since } => registry
            .with(event, |h| async move { h.seat_changes(since).await })
            .await
            .map(|d| EventReply::SeatChanges(d.map(Box::new))),
        EventCall::BlockSeats { seats, blocked } => registry
            .with(event, |h| {
                let seats = seats.clone();
                async move { h.block_seats(seats, blocked).await }
            })
            .await
            .map(EventReply::Labels),
        EventCall::Evict => {
            registry.evict(event).await;
            Ok(EventReply::Done)
        }
    }
}
