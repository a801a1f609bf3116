//! The durable form of the inventory: what the journal writes and what a restart
//! reads back.
//!
//! Every state change the inventory makes is one `Change`. Applying the durable
//! changes in order to a set of `HoldRecord`s (see [`apply`]) gives exactly the
//! records `SeatInventory::restore` needs — the PostgreSQL journal does the same in
//! SQL, the in-memory journal does it with [`apply`].

use crate::ids::{BuyerId, EventId, HoldId, IdempotencyKey, TicketId, UnixMs};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What a hold is on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Items {
    /// Reserved seats, by label.
    Seats { seats: Vec<String> },
    /// A quantity in a general-admission section.
    General { section: String, quantity: u32 },
}

impl Items {
    pub fn quantity(&self) -> u32 {
        match self {
            Items::Seats { seats } => seats.len() as u32,
            Items::General { quantity, .. } => *quantity,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    Active,
    Purchased,
    Expired,
    Released,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Active => "active",
            HoldStatus::Purchased => "purchased",
            HoldStatus::Expired => "expired",
            HoldStatus::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => HoldStatus::Active,
            "purchased" => HoldStatus::Purchased,
            "expired" => HoldStatus::Expired,
            "released" => HoldStatus::Released,
            _ => return None,
        })
    }
}

/// One admission issued by a purchase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRecord {
    pub id: TicketId,
    pub section: String,
    /// The seat label; `None` for general admission.
    pub seat: Option<String>,
    pub price: i64,
    pub cancelled: bool,
}

/// How a purchase was paid; carried through to the journal untouched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// `stripe` or `test`.
    pub provider: String,
    /// The provider's id for the payment (a PaymentIntent id).
    pub reference: String,
    /// In minor units of `currency`.
    pub amount: i64,
    /// ISO 4217 code, e.g. `JPY`.
    pub currency: String,
}

/// A hold as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    pub id: HoldId,
    pub buyer: BuyerId,
    /// Shared with the inventory's copy: rendered once per hold.
    pub items: Arc<Items>,
    pub amount: i64,
    pub created_at: UnixMs,
    pub expires_at: UnixMs,
    pub status: HoldStatus,
    pub idempotency_key: Option<IdempotencyKey>,
    /// Fingerprint of the request that made the hold: a retry with the same key
    /// but a different request is refused rather than answered with the wrong hold.
    pub fingerprint: u64,
    /// Issued on purchase, one per seat or GA unit.
    pub tickets: Vec<TicketRecord>,
}

/// One state change of one event's inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    HoldCreated {
        hold: HoldRecord,
    },
    HoldPurchased {
        hold: HoldId,
        buyer: BuyerId,
        amount: i64,
        tickets: Vec<TicketRecord>,
        payment: Option<Payment>,
        /// The hold had lapsed and its seats were taken again for this payment.
        retaken: bool,
        at: UnixMs,
    },
    HoldReleased {
        hold: HoldId,
        at: UnixMs,
    },
    HoldExpired {
        hold: HoldId,
        at: UnixMs,
    },
    TicketsCancelled {
        hold: HoldId,
        tickets: Vec<TicketId>,
        at: UnixMs,
    },
}

impl Change {
    /// The hold this change is about.
    pub fn hold_id(&self) -> HoldId {
        match self {
            Change::HoldCreated { hold } => hold.id,
            Change::HoldPurchased { hold, .. }
            | Change::HoldReleased { hold, .. }
            | Change::HoldExpired { hold, .. }
            | Change::TicketsCancelled { hold, .. } => *hold,
        }
    }

    /// Stable name for logs, metrics and the outbox.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::HoldCreated { .. } => "hold:created",
            Change::HoldPurchased { .. } => "hold:purchased",
            Change::HoldReleased { .. } => "hold:released",
            Change::HoldExpired { .. } => "hold:expired",
            Change::TicketsCancelled { .. } => "ticket:cancelled",
        }
    }
}

/// A change addressed to its event: the unit the journal writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub event: EventId,
    pub change: Change,
}

/// Applies a durable change to stored holds, as the database does.
pub fn apply(holds: &mut FxHashMap<HoldId, HoldRecord>, change: &Change) {
    match change {
        Change::HoldCreated { hold } => {
            holds.insert(hold.id, hold.clone());
        }
        Change::HoldPurchased { hold, tickets, .. } => {
            if let Some(h) = holds.get_mut(hold) {
                h.status = HoldStatus::Purchased;
                h.tickets = tickets.clone();
            }
        }
        Change::HoldReleased { hold, .. } => {
            if let Some(h) = holds.get_mut(hold) {
                h.status = HoldStatus::Released;
            }
        }
        Change::HoldExpired { hold, .. } => {
            if let Some(h) = holds.get_mut(hold) {
                h.status = HoldStatus::Expired;
            }
        }
        Change::TicketsCancelled { hold, tickets, .. } => {
            if let Some(h) = holds.get_mut(hold) {
                for t in h.tickets.iter_mut().filter(|t| tickets.contains(&t.id)) {
                    t.cancelled = true;
                }
            }
        }
    }
}
