//! What callers of the inventory pass in and get back: the sales window, views of
//! holds, operation outcomes, counts and every refusal.
//!
//! These are the engine's public vocabulary (re-exported from the crate root) and
//! serialise as the service shows them. Every refusal is an [`InventoryError`]
//! value, never a panic (`docs/domain.md`, section "Errors"); a window's rules are
//! those of `docs/domain.md`, section "Sales window".

use crate::ids::{BuyerId, HoldId, TicketId, UnixMs};
use crate::record::{Change, HoldStatus, Items, Payment, TicketRecord};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Most seats or GA units in one hold.
pub const MAX_UNITS_PER_HOLD: u32 = 50;

// A hold's amount (price × places) cannot overflow.
const _: () = assert!(crate::seatmap::MAX_PRICE.checked_mul(MAX_UNITS_PER_HOLD as i64).is_some());
/// Default time a hold lasts before it expires.
pub const DEFAULT_HOLD_TTL_MS: i64 = 10 * 60 * 1000;

/// When and how an event sells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesWindow {
    pub opens_at: UnixMs,
    pub closes_at: UnixMs,
    /// Most tickets one buyer may hold and own (held + sold) for this event.
    pub per_buyer_limit: u32,
    pub hold_ttl_ms: i64,
}

impl SalesWindow {
    /// Always open, 10 tickets per buyer, 10-minute holds.
    pub fn always_open() -> Self {
        Self {
            opens_at: UnixMs(i64::MIN),
            closes_at: UnixMs(i64::MAX),
            per_buyer_limit: 10,
            hold_ttl_ms: DEFAULT_HOLD_TTL_MS,
        }
    }
}

/// Every way an inventory operation can be refused. Each is the caller's answer,
/// never a panic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum InventoryError {
    #[error("sales open at {opens_at:?}")]
    NotOpenYet { opens_at: UnixMs },
    #[error("sales are closed")]
    SalesClosed,
    #[error("a hold needs 1 to {MAX_UNITS_PER_HOLD} seats")]
    BadQuantity,
    #[error("no seat {0:?} at this event")]
    UnknownSeat(String),
    #[error("seat {0:?} is asked for twice")]
    DuplicateSeat(String),
    #[error("no section {0:?} at this event")]
    UnknownSection(String),
    #[error("section {0:?} is not {1}")]
    WrongSectionKind(String, String),
    #[error("these seats are taken: {0:?}")]
    SeatsTaken(Vec<String>),
    #[error("not enough seats left")]
    SoldOut,
    #[error("no row has {0} free seats side by side")]
    NoAdjacentSeats(u32),
    #[error("per-buyer limit is {limit}; you already have {current}")]
    LimitExceeded { limit: u32, current: u32 },
    #[error("this idempotency key was used for a different request")]
    IdempotencyMismatch,
    #[error("no such hold")]
    HoldNotFound,
    #[error("the hold is {0:?}")]
    HoldNotActive(HoldStatus),
    #[error("the hold's seats were sold to someone else after it lapsed")]
    SeatsGone,
    #[error("a change to this hold is still being saved; retry")]
    Busy,
    #[error("no such ticket on this order, or already cancelled")]
    TicketNotFound,
}

/// What a caller sees of a hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldView {
    pub id: HoldId,
    pub buyer: BuyerId,
    pub items: Arc<Items>,
    pub amount: i64,
    pub created_at: UnixMs,
    pub expires_at: UnixMs,
    pub status: HoldStatus,
    pub tickets: Vec<TicketRecord>,
}

/// The result of a purchase: the tickets it issued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sale {
    pub hold: HoldView,
    pub payment: Option<Payment>,
}

/// An operation's answer: nothing changed, or a change to journal and settle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    Unchanged(T),
    Pending(Change),
}

/// What a settled change means to whoever asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    Created(HoldView),
    /// Boxed: the other, far more common, answers stay the smaller size of a
    /// view (asserted below).
    Purchased(Box<Sale>),
    Released(HoldView),
    Expired(HoldView),
    Cancelled {
        hold: HoldView,
        tickets: Vec<TicketId>,
    },
    /// The journal failed; the change was undone and never happened.
    Undone,
}

// Boxing the sale keeps every `Settled` smaller than a `Sale`.
const _: () = assert!(std::mem::size_of::<Settled>() < std::mem::size_of::<Sale>());

/// Available / held / sold for a section or the whole event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub capacity: u64,
    pub available: u64,
    pub held: u64,
    pub sold: u64,
    /// Seats the organizer took off sale: available + held + sold + blocked = capacity.
    #[serde(default)]
    pub blocked: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionCounts {
    pub section: String,
    pub general_admission: bool,
    #[serde(flatten)]
    pub counts: Counts,
}

/// Why stored records could not be restored (they contradict the seat map or
/// each other — a bug or a bad migration, never a buyer's input).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("hold {0} names seat or section {1:?}, which the seat map does not have")]
    Unknown(HoldId, String),
    #[error("hold {0} takes seats already taken by another hold")]
    Conflict(HoldId),
}

/// Why a new seat map was not adopted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReconfigureError {
    #[error("a change is being saved; retry")]
    Busy,
    #[error("the new seat map drops seats or capacity that holds and sales use: {0}")]
    Incompatible(RestoreError),
}
