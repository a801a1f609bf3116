//! `SeatInventory`: one event's seats, holds and sales, as a pure state machine.
//!
//! No I/O, no clock, no async: every operation is told `now` and returns either an
//! answer that changed nothing, or a [`Change`] for the journal. The change is
//! *pending* until the caller reports back with [`SeatInventory::settle`]:
//!
//! - changes that **take** seats (a new hold, a purchase that re-takes lapsed seats)
//!   apply at once, so no later request can take the same seats; if the journal
//!   fails they are undone;
//! - changes that **free** seats (release, expiry, ticket cancel) keep the seats
//!   taken until the change is durable, so a seat is never offered again on the
//!   strength of a change that may still be lost.
//!
//! Memory therefore always equals the durable state plus pending takes, which is
//! the safe side: it can refuse a seat that will turn out free, never sell one
//! that is not. A hold with a pending change refuses further changes (`Busy`)
//! until it settles, so changes to one hold never overlap.
//!
//! Invariants (checked by the property tests in `tests/inventory_props.rs`):
//! `available + held + sold = capacity` per section; a seat belongs to at most one
//! hold; a buyer never has more than the per-buyer limit held + sold.

use crate::ids::{BuyerId, HoldId, IdempotencyKey, TicketId, UnixMs};
use crate::record::{Change, HoldRecord, HoldStatus, Items, Payment, SeatLabels, TicketRecord};
use crate::seatmap::{Layout, SeatIdx, SeatList, SectionKind, decimal};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

/// Most seats or GA units in one hold.
pub const MAX_UNITS_PER_HOLD: u32 = 50;
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

/// What a buyer asks to hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Selection {
    /// These seats, by label.
    Seats { seats: Vec<String> },
    /// The best `quantity` seats side by side in one row (optionally in one section);
    /// with `allow_split`, the best seats anywhere when no row has room.
    BestAvailable {
        quantity: u32,
        #[serde(default)]
        section: Option<String>,
        #[serde(default)]
        allow_split: bool,
    },
    /// `quantity` places in a general-admission section (the only one, if unnamed).
    General {
        quantity: u32,
        #[serde(default)]
        section: Option<String>,
    },
}

impl Selection {
    /// A stable fingerprint (FNV-1a over a canonical form), stored with the hold.
    pub fn fingerprint(&self) -> u64 {
        // Hashes the canonical form piece by piece instead of building the string;
        // the bytes, and so the stored fingerprints, are the same.
        let mut h = Fnv1a(0xcbf2_9ce4_8422_2325);
        match self {
            Selection::Seats { seats } => {
                h.feed("S|");
                for (i, seat) in seats.iter().enumerate() {
                    if i > 0 {
                        h.feed(",");
                    }
                    h.feed(seat);
                }
            }
            Selection::BestAvailable { quantity, section, allow_split } => {
                // "B|{quantity}|{section}|{allow_split}", without the formatter.
                h.feed("B|");
                h.feed_u32(*quantity);
                h.feed("|");
                h.feed(section.as_deref().unwrap_or(""));
                h.feed(if *allow_split { "|true" } else { "|false" });
            }
            Selection::General { quantity, section } => {
                h.feed("G|");
                h.feed_u32(*quantity);
                h.feed("|");
                h.feed(section.as_deref().unwrap_or(""));
            }
        }
        h.0
    }
}

/// FNV-1a over the bytes fed to it.
struct Fnv1a(u64);

impl Fnv1a {
    fn feed(&mut self, s: &str) {
        self.feed_bytes(s.as_bytes());
    }

    fn feed_bytes(&mut self, bytes: &[u8]) {
        self.0 = bytes.iter().fold(self.0, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    }

    /// The decimal digits of `n`, as `write!` would print them.
    fn feed_u32(&mut self, n: u32) {
        self.feed_bytes(decimal(n, &mut [0u8; 10]));
    }
}

/// Every way an inventory operation can be refused. Each is the caller's answer,
/// never a panic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
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
    WrongSectionKind(String, &'static str),
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
    /// Boxed: the other, far more common, answers stay small to move.
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

/// Available / held / sold for a section or the whole event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub capacity: u64,
    pub available: u64,
    pub held: u64,
    pub sold: u64,
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

const FREE: u32 = u32::MAX;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Units {
    Seats(SeatList),
    General { section: u16, quantity: u32 },
}

/// An active hold's place in the expiry queue. `serial` tells a live entry from a
/// stale one (the hold ended, or its slot now holds another hold).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Expiry {
    at: UnixMs,
    serial: u64,
    slot: u32,
}

/// Active holds by expiry. Holds made under one sales window expire in the order
/// they were made, so nearly every entry goes to the back of a FIFO and leaves from
/// its front in O(1); the few that would break its order (a shorter TTL, restored
/// holds, retries) go to a heap. Stale entries are skipped when they come out.
#[derive(Clone, Debug, Default)]
struct ExpiryQueue {
    in_order: VecDeque<Expiry>,
    out_of_order: BinaryHeap<Reverse<Expiry>>,
}

impl ExpiryQueue {
    fn push(&mut self, e: Expiry) {
        match self.in_order.back() {
            Some(last) if last.at > e.at => self.out_of_order.push(Reverse(e)),
            _ => self.in_order.push_back(e),
        }
    }

    /// The earliest entry, and whether it is the FIFO's.
    fn peek(&self) -> Option<(Expiry, bool)> {
        match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(&a), Some(&Reverse(b))) => Some(if a <= b { (a, true) } else { (b, false) }),
            (Some(&a), None) => Some((a, true)),
            (None, Some(&Reverse(b))) => Some((b, false)),
            (None, None) => None,
        }
    }

    fn pop(&mut self, from_fifo: bool) {
        if from_fifo {
            self.in_order.pop_front();
        } else {
            self.out_of_order.pop();
        }
    }
}

#[derive(Clone, Debug)]
struct Ticket {
    id: TicketId,
    seat: Option<SeatIdx>,
    section: u16,
    price: i64,
    cancelled: bool,
}

#[derive(Clone, Debug)]
enum Pending {
    Create,
    Purchase { prior: HoldStatus, retaken: bool },
    Release,
    Expire,
    Cancel { tickets: Vec<usize> },
}

#[derive(Clone, Debug)]
struct Hold {
    id: HoldId,
    buyer: BuyerId,
    units: Units,
    /// `units` as labels, rendered once and shared by every record and view.
    items: Arc<Items>,
    amount: i64,
    created_at: UnixMs,
    expires_at: UnixMs,
    status: HoldStatus,
    pending: Option<Pending>,
    idempotency_key: Option<IdempotencyKey>,
    fingerprint: u64,
    tickets: Vec<Ticket>,
    /// How the purchase was paid, once purchased (boxed: most holds never are).
    payment: Option<Box<Payment>>,
    /// When it became expired/released, for pruning.
    ended_at: UnixMs,
    /// Unique per hold in this inventory, so queue entries can tell a slot's
    /// current hold from an earlier one.
    serial: u64,
    /// Where `buyer`'s count is in `SeatInventory::buyers`.
    buyer_slot: u32,
}

/// What one buyer has: units held + sold (for the per-buyer limit), and how many
/// holds in slots are theirs (the entry goes when the last one does).
#[derive(Clone, Copy, Debug, Default)]
struct BuyerCount {
    units: u32,
    holds: u32,
}

#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    held: u32,
    sold: u32,
}

/// One event's seats, holds and sales.
#[derive(Clone, Debug)]
pub struct SeatInventory {
    layout: Layout,
    window: SalesWindow,
    /// Per seat: `FREE`, or the slot of the hold that has it (held or sold).
    seats: Vec<u32>,
    /// Per row: free seats, to skip full rows when searching.
    row_free: Vec<u32>,
    tally: Vec<Tally>,
    /// Holds live in slots so seats can point at them with 4 bytes.
    slots: Vec<Option<Hold>>,
    free_slots: Vec<u32>,
    by_id: FxHashMap<HoldId, u32>,
    by_key: FxHashMap<(BuyerId, IdempotencyKey), u32>,
    /// Each buyer's `BuyerCount`, by the index their holds carry: a hold looks
    /// its buyer up once, and taking, giving back and removing it hash nothing.
    buyer_slots: FxHashMap<BuyerId, u32>,
    buyers: Vec<BuyerCount>,
    free_buyers: Vec<u32>,
    /// Active holds by expiry; stale entries are skipped when popped.
    expiries: ExpiryQueue,
    /// Ended holds in the order they ended, for pruning: (ended at, slot, serial).
    ended: VecDeque<(UnixMs, u32, u64)>,
    /// The next hold's `serial`.
    next_serial: u64,
    /// The slot last inserted into (it may since have been emptied or reused).
    newest: u32,
    /// `Items` of GA holds by (section, quantity): at most sections × `MAX_UNITS_PER_HOLD`.
    general_items: FxHashMap<(u16, u32), Arc<Items>>,
    /// `Items` allocations of removed seat holds that nothing else shared, reused
    /// by the next seat holds instead of allocating (at most `SPARE_ITEMS`).
    spare_items: Vec<Arc<Items>>,
}

/// How many unshared `Arc<Items>` allocations are kept for reuse: about a tick's
/// worth of ended holds on a busy event, at most ~64 KiB.
const SPARE_ITEMS: usize = 1024;

impl SeatInventory {
    pub fn new(layout: Layout, window: SalesWindow) -> Self {
        let seats = vec![FREE; layout.seat_count as usize];
        let row_free = layout.rows.iter().map(|r| r.len).collect();
        let tally = vec![Tally::default(); layout.sections.len()];
        Self {
            layout,
            window,
            seats,
            row_free,
            tally,
            slots: Vec::new(),
            free_slots: Vec::new(),
            by_id: FxHashMap::default(),
            by_key: FxHashMap::default(),
            buyer_slots: FxHashMap::default(),
            buyers: Vec::new(),
            free_buyers: Vec::new(),
            expiries: ExpiryQueue::default(),
            ended: VecDeque::new(),
            next_serial: 0,
            newest: 0,
            general_items: FxHashMap::default(),
            spare_items: Vec::new(),
        }
    }

    /// Rebuilds the state that `records` (durable holds) describe.
    pub fn restore(
        layout: Layout,
        window: SalesWindow,
        records: impl IntoIterator<Item = HoldRecord>,
    ) -> Result<Self, RestoreError> {
        let mut inv = Self::new(layout, window);
        for rec in records {
            inv.restore_one(rec)?;
        }
        Ok(inv)
    }

    fn restore_one(&mut self, rec: HoldRecord) -> Result<(), RestoreError> {
        let units = self.units_of(&rec.items).map_err(|name| RestoreError::Unknown(rec.id, name))?;
        let mut tickets = Vec::with_capacity(rec.tickets.len());
        for t in &rec.tickets {
            let section = self
                .layout
                .section_by_name(&t.section)
                .ok_or_else(|| RestoreError::Unknown(rec.id, t.section.clone()))?;
            let seat = match &t.seat {
                Some(label) => {
                    Some(self.layout.seat_by_label(label).ok_or_else(|| RestoreError::Unknown(rec.id, label.clone()))?)
                }
                None => None,
            };
            tickets.push(Ticket { id: t.id, seat, section, price: t.price, cancelled: t.cancelled });
        }
        let buyer_slot = self.buyer_slot(rec.buyer);
        let hold = Hold {
            buyer_slot,
            id: rec.id,
            buyer: rec.buyer,
            units,
            items: Arc::clone(&rec.items),
            amount: rec.amount,
            created_at: rec.created_at,
            expires_at: rec.expires_at,
            status: rec.status,
            pending: None,
            idempotency_key: rec.idempotency_key,
            fingerprint: rec.fingerprint,
            tickets,
            payment: None,
            ended_at: rec.expires_at,
            serial: 0,
        };
        let status = hold.status;
        let slot = self.insert(hold);
        let taken = match status {
            HoldStatus::Active => self.take_own(slot, false),
            HoldStatus::Purchased => {
                let live: Vec<_> = self.live_ticket_units(slot);
                live.iter().all(|u| self.take(slot, u, true))
            }
            HoldStatus::Expired | HoldStatus::Released => {
                let h = self.slot(slot);
                self.ended.push_back((h.ended_at, slot, h.serial));
                true
            }
        };
        if !taken {
            return Err(RestoreError::Conflict(rec.id));
        }
        if status == HoldStatus::Active {
            self.push_expiry(slot);
        }
        Ok(())
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn window(&self) -> SalesWindow {
        self.window
    }

    /// Changes the sales window; holds already made keep their expiry.
    pub fn set_window(&mut self, window: SalesWindow) {
        self.window = window;
    }

    /// Adopts a new seat map if every hold and sale — active, sold, cancelled or
    /// recently ended — still fits it: no held or sold seat removed, no GA section
    /// below what it has taken. Refused while a change is pending.
    pub fn reconfigure(&mut self, layout: Layout) -> Result<(), ReconfigureError> {
        if self.has_pending() {
            return Err(ReconfigureError::Busy);
        }
        let rebuilt = Self::restore(layout, self.window, self.snapshot()).map_err(ReconfigureError::Incompatible)?;
        *self = rebuilt;
        Ok(())
    }

    // ---- operations ----------------------------------------------------------

    /// Holds seats for `buyer`. `id` names the new hold.
    pub fn hold(
        &mut self,
        id: HoldId,
        buyer: BuyerId,
        selection: &Selection,
        key: Option<&IdempotencyKey>,
        now: UnixMs,
    ) -> Result<Outcome<HoldView>, InventoryError> {
        // Only a retry with the same key is ever compared with it: without a key
        // the hold stores 0 and the hashing is skipped.
        let fingerprint = if key.is_some() { selection.fingerprint() } else { 0 };
        if let Some(key) = key
            && let Some(&slot) = self.by_key.get(&(buyer, key.clone()))
        {
            let h = self.slot(slot);
            if h.fingerprint != fingerprint {
                return Err(InventoryError::IdempotencyMismatch);
            }
            if matches!(h.pending, Some(Pending::Create)) {
                return Err(InventoryError::Busy);
            }
            return Ok(Outcome::Unchanged(self.view(slot)));
        }
        if now < self.window.opens_at {
            return Err(InventoryError::NotOpenYet { opens_at: self.window.opens_at });
        }
        if now >= self.window.closes_at {
            return Err(InventoryError::SalesClosed);
        }
        let quantity = match selection {
            Selection::Seats { seats } => seats.len() as u32,
            Selection::BestAvailable { quantity, .. } | Selection::General { quantity, .. } => *quantity,
        };
        if quantity == 0 || quantity > MAX_UNITS_PER_HOLD {
            return Err(InventoryError::BadQuantity);
        }
        let buyer_slot = self.buyer_slot(buyer);
        let current = self.buyers[buyer_slot as usize].units;
        if current + quantity > self.window.per_buyer_limit {
            self.forget_buyer_if_unused(buyer, buyer_slot);
            return Err(InventoryError::LimitExceeded { limit: self.window.per_buyer_limit, current });
        }
        let units = match self.select(selection, quantity) {
            Ok(units) => units,
            Err(e) => {
                self.forget_buyer_if_unused(buyer, buyer_slot);
                return Err(e);
            }
        };
        let amount = self.price(&units);
        let items = self.items_of(&units);
        let hold = Hold {
            id,
            buyer,
            units,
            items,
            amount,
            created_at: now,
            expires_at: now.plus_ms(self.window.hold_ttl_ms),
            status: HoldStatus::Active,
            pending: Some(Pending::Create),
            idempotency_key: key.cloned(),
            fingerprint,
            tickets: Vec::new(),
            payment: None,
            ended_at: now,
            serial: 0,
            buyer_slot,
        };
        let slot = self.insert(hold);
        let took = self.take_own(slot, false);
        debug_assert!(took, "select() returned units that are not free");
        self.push_expiry(slot);
        Ok(Outcome::Pending(Change::HoldCreated { hold: self.record(slot) }))
    }

    /// Pays for a hold: its seats become sold and get tickets. Works on an active
    /// hold (even one past its expiry the timer has not reached yet) and on a
    /// lapsed one whose seats are all still free; otherwise `SeatsGone`, and the
    /// caller refunds. Paying twice answers the first sale.
    pub fn purchase(
        &mut self,
        hold: HoldId,
        buyer: BuyerId,
        payment: Option<Payment>,
        mut ticket_id: impl FnMut() -> TicketId,
        now: UnixMs,
    ) -> Result<Outcome<Sale>, InventoryError> {
        let slot = self.owned_slot(hold, buyer)?;
        let h = self.slot(slot);
        if h.pending.is_some() {
            return Err(InventoryError::Busy);
        }
        let prior = h.status;
        let retaken = match prior {
            HoldStatus::Purchased => {
                return Ok(Outcome::Unchanged(Sale { hold: self.view(slot), payment: h.payment.as_deref().cloned() }));
            }
            HoldStatus::Active => false,
            HoldStatus::Expired | HoldStatus::Released => {
                let quantity = units_len(&h.units);
                let current = self.buyers[h.buyer_slot as usize].units;
                if current + quantity > self.window.per_buyer_limit {
                    return Err(InventoryError::LimitExceeded { limit: self.window.per_buyer_limit, current });
                }
                if !self.take_own(slot, true) {
                    return Err(InventoryError::SeatsGone);
                }
                true
            }
        };
        if !retaken {
            self.shift_own(slot, true);
        }
        let tickets: Vec<Ticket> = match &self.slot(slot).units {
            Units::Seats(seats) => seats
                .iter()
                .map(|&s| Ticket {
                    id: ticket_id(),
                    seat: Some(s),
                    section: self.layout.section_of_seat(s),
                    price: self.layout.price_of_seat(s),
                    cancelled: false,
                })
                .collect(),
            Units::General { section, quantity } => {
                let price = self.ga_price(*section);
                (0..*quantity)
                    .map(|_| Ticket { id: ticket_id(), seat: None, section: *section, price, cancelled: false })
                    .collect()
            }
        };
        let h = self.slot_mut(slot);
        h.tickets = tickets;
        h.status = HoldStatus::Purchased;
        let payment = payment.map(Box::new);
        h.payment = payment.clone();
        h.pending = Some(Pending::Purchase { prior, retaken });
        let h = self.slot(slot);
        Ok(Outcome::Pending(Change::HoldPurchased {
            hold,
            buyer,
            amount: h.amount,
            tickets: self.ticket_records(slot),
            payment,
            retaken,
            at: now,
        }))
    }

    /// Gives an active hold's seats back (once durable).
    pub fn release(&mut self, hold: HoldId, buyer: BuyerId, now: UnixMs) -> Result<Outcome<HoldView>, InventoryError> {
        let slot = self.owned_slot(hold, buyer)?;
        let h = self.slot(slot);
        if h.pending.is_some() {
            return Err(InventoryError::Busy);
        }
        match h.status {
            HoldStatus::Active => {}
            HoldStatus::Released => return Ok(Outcome::Unchanged(self.view(slot))),
            other => return Err(InventoryError::HoldNotActive(other)),
        }
        self.slot_mut(slot).pending = Some(Pending::Release);
        Ok(Outcome::Pending(Change::HoldReleased { hold, at: now }))
    }

    /// Starts expiring up to `max` active holds whose time has come.
    pub fn expire_due(&mut self, now: UnixMs, max: usize) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut busy = Vec::new();
        while changes.len() < max {
            let Some((e, from_fifo)) = self.expiries.peek() else { break };
            if e.at > now {
                break;
            }
            self.expiries.pop(from_fifo);
            let Some(h) = self.slots.get_mut(e.slot as usize).and_then(Option::as_mut) else { continue };
            if h.serial != e.serial || h.expires_at != e.at {
                continue;
            }
            let id = h.id;
            if h.pending.is_some() {
                // Being created, paid for or released right now; look again next time.
                // Checked before the status: a pending purchase already shows
                // `Purchased`, and if it fails to save the hold is active again.
                busy.push(e);
                continue;
            }
            if h.status != HoldStatus::Active {
                continue;
            }
            h.pending = Some(Pending::Expire);
            changes.push(Change::HoldExpired { hold: id, at: now });
        }
        for e in busy {
            self.expiries.push(e);
        }
        changes
    }

    /// When the next active hold expires, if any.
    pub fn next_expiry(&self) -> Option<UnixMs> {
        self.expiries.peek().map(|(e, _)| e.at)
    }

    /// Cancels tickets of a purchased hold (the refund path): their seats go back on
    /// sale once durable. Cancelling already-cancelled tickets is an error naming
    /// none of them changed; the caller treats it as idempotent.
    pub fn cancel_tickets(
        &mut self,
        hold: HoldId,
        buyer: BuyerId,
        tickets: &[TicketId],
        now: UnixMs,
    ) -> Result<Outcome<HoldView>, InventoryError> {
        let slot = self.owned_slot(hold, buyer)?;
        let h = self.slot(slot);
        if h.pending.is_some() {
            return Err(InventoryError::Busy);
        }
        if h.status != HoldStatus::Purchased {
            return Err(InventoryError::HoldNotActive(h.status));
        }
        let mut idx = Vec::with_capacity(tickets.len());
        for id in tickets {
            match h.tickets.iter().position(|t| t.id == *id && !t.cancelled) {
                Some(i) if !idx.contains(&i) => idx.push(i),
                _ => return Err(InventoryError::TicketNotFound),
            }
        }
        if idx.is_empty() {
            return Err(InventoryError::TicketNotFound);
        }
        self.slot_mut(slot).pending = Some(Pending::Cancel { tickets: idx });
        Ok(Outcome::Pending(Change::TicketsCancelled { hold, tickets: tickets.to_vec(), at: now }))
    }

    /// Reports whether the pending change on `hold` became durable, and finishes or
    /// undoes it. `None` if the hold has nothing pending.
    pub fn settle(&mut self, hold: HoldId, durable: bool, now: UnixMs) -> Option<Settled> {
        let slot = self.slot_of(hold)?;
        let pending = self.slot_mut(slot).pending.take()?;
        if !durable {
            self.undo(slot, pending);
            return Some(Settled::Undone);
        }
        Some(match pending {
            Pending::Create => Settled::Created(self.view(slot)),
            Pending::Purchase { .. } => Settled::Purchased(Box::new(Sale {
                hold: self.view(slot),
                payment: self.slot(slot).payment.as_deref().cloned(),
            })),
            Pending::Release | Pending::Expire => {
                self.give_back_own(slot, false);
                let status =
                    if matches!(pending, Pending::Release) { HoldStatus::Released } else { HoldStatus::Expired };
                let h = self.slot_mut(slot);
                h.status = status;
                h.ended_at = now;
                let serial = h.serial;
                self.ended.push_back((now, slot, serial));
                let view = self.view(slot);
                if status == HoldStatus::Released { Settled::Released(view) } else { Settled::Expired(view) }
            }
            Pending::Cancel { tickets } => {
                let mut ids = Vec::with_capacity(tickets.len());
                for i in tickets {
                    let t = &mut self.slot_mut(slot).tickets[i];
                    t.cancelled = true;
                    ids.push(t.id);
                    let unit = ticket_unit(t);
                    self.give_back(slot, &unit, true);
                }
                Settled::Cancelled { hold: self.view(slot), tickets: ids }
            }
        })
    }

    fn undo(&mut self, slot: u32, pending: Pending) {
        match pending {
            Pending::Create => {
                self.give_back_own(slot, false);
                self.remove(slot);
            }
            Pending::Purchase { prior, retaken, .. } => {
                if retaken {
                    self.give_back_own(slot, true);
                } else {
                    self.shift_own(slot, false);
                }
                let h = self.slot_mut(slot);
                h.status = prior;
                h.tickets.clear();
                h.payment = None;
            }
            // Nothing was freed yet, so there is nothing to put back.
            Pending::Release | Pending::Expire | Pending::Cancel { .. } => {
                if matches!(pending, Pending::Expire) {
                    self.push_expiry(slot);
                }
            }
        }
    }

    /// Forgets expired and released holds that ended before `before` (their seats
    /// are long free; only a very late payment or idempotent retry would ask).
    pub fn prune_ended(&mut self, before: UnixMs) -> usize {
        let mut pruned = 0;
        while let Some(&(at, slot, serial)) = self.ended.front() {
            if at >= before {
                break;
            }
            self.ended.pop_front();
            let still = self.slots.get(slot as usize).and_then(Option::as_ref).is_some_and(|h| {
                h.serial == serial
                    && h.pending.is_none()
                    && matches!(h.status, HoldStatus::Expired | HoldStatus::Released)
            });
            if still {
                self.remove(slot);
                pruned += 1;
            }
        }
        pruned
    }

    // ---- reads ---------------------------------------------------------------

    /// A hold, if it exists and belongs to `buyer` (`None` for anyone else's, so
    /// callers cannot tell another buyer's hold from a missing one).
    pub fn hold_view(&self, hold: HoldId, buyer: BuyerId) -> Option<HoldView> {
        let slot = self.slot_of(hold)?;
        let h = self.slot(slot);
        (h.buyer == buyer && !matches!(h.pending, Some(Pending::Create))).then(|| self.view(slot))
    }

    /// A hold regardless of owner, for administrators and the service's own checks.
    pub fn hold_view_any(&self, hold: HoldId) -> Option<HoldView> {
        self.slot_of(hold).map(|slot| self.view(slot))
    }

    pub fn counts(&self) -> Counts {
        self.section_counts().into_iter().fold(Counts::default(), |mut acc, s| {
            acc.capacity += s.counts.capacity;
            acc.available += s.counts.available;
            acc.held += s.counts.held;
            acc.sold += s.counts.sold;
            acc
        })
    }

    pub fn section_counts(&self) -> Vec<SectionCounts> {
        (0..self.layout.sections.len())
            .map(|s| {
                let capacity = self.layout.section_capacity(s as u16);
                let t = self.tally[s];
                SectionCounts {
                    section: self.layout.sections[s].name.to_string(),
                    general_admission: matches!(self.layout.sections[s].kind, SectionKind::General { .. }),
                    counts: Counts {
                        capacity: capacity.into(),
                        available: u64::from(capacity - t.held - t.sold),
                        held: t.held.into(),
                        sold: t.sold.into(),
                    },
                }
            })
            .collect()
    }

    /// Active holds, counting those still being saved.
    pub fn active_holds(&self) -> usize {
        self.slots.iter().flatten().filter(|h| h.status == HoldStatus::Active).count()
    }

    /// Whether any change is waiting for the journal.
    pub fn has_pending(&self) -> bool {
        self.slots.iter().flatten().any(|h| h.pending.is_some())
    }

    /// How many tickets `buyer` has held + sold.
    pub fn buyer_units(&self, buyer: BuyerId) -> u32 {
        self.buyer_slots.get(&buyer).map_or(0, |&b| self.buyers[b as usize].units)
    }

    /// The hold that has `label`, if any, and whether it is sold.
    pub fn seat_owner(&self, label: &str) -> Option<(HoldId, bool)> {
        let seat = self.layout.seat_by_label(label)?;
        let slot = self.seats[seat as usize];
        (slot != FREE).then(|| {
            let h = self.slot(slot);
            (h.id, h.status == HoldStatus::Purchased)
        })
    }

    /// The durable state: every hold as the journal has it (pending changes left
    /// out). `restore(snapshot)` rebuilds an equal inventory.
    pub fn snapshot(&self) -> Vec<HoldRecord> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, h)| {
                let h = h.as_ref()?;
                let slot = slot as u32;
                let mut rec = self.record(slot);
                match &h.pending {
                    None | Some(Pending::Release | Pending::Expire | Pending::Cancel { .. }) => {}
                    Some(Pending::Create) => return None,
                    Some(Pending::Purchase { prior, .. }) => {
                        rec.status = *prior;
                        rec.tickets.clear();
                    }
                }
                Some(rec)
            })
            .collect()
    }

    /// Heap bytes used per seat by the seat state and layout.
    pub fn bytes_per_seat(&self) -> f64 {
        let seats = self.layout.seat_count.max(1) as f64;
        let state = self.seats.capacity() * 4 + self.row_free.capacity() * 4 + self.tally.capacity() * 8;
        (state + self.layout.heap_bytes()) as f64 / seats
    }

    /// Checks every invariant by recounting from scratch; for tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut tally = vec![Tally::default(); self.tally.len()];
        let mut per_buyer: FxHashMap<BuyerId, u32> = FxHashMap::default();
        let mut owner = vec![FREE; self.seats.len()];
        for (slot, h) in self.slots.iter().enumerate() {
            let Some(h) = h else { continue };
            let occupying: Vec<(Units, bool)> = match h.status {
                HoldStatus::Active => vec![(h.units.clone(), false)],
                HoldStatus::Purchased => {
                    h.tickets.iter().filter(|t| !t.cancelled).map(|t| (ticket_unit(t), true)).collect()
                }
                HoldStatus::Expired | HoldStatus::Released => vec![],
            };
            for (units, sold) in occupying {
                *per_buyer.entry(h.buyer).or_default() += units_len(&units);
                match units {
                    Units::Seats(seats) => {
                        for &s in seats.iter() {
                            if owner[s as usize] != FREE {
                                return Err(format!("seat {} owned twice", self.layout.label(s)));
                            }
                            owner[s as usize] = slot as u32;
                            let t = &mut tally[self.layout.section_of_seat(s) as usize];
                            if sold { t.sold += 1 } else { t.held += 1 }
                        }
                    }
                    Units::General { section, quantity } => {
                        let t = &mut tally[section as usize];
                        if sold { t.sold += quantity } else { t.held += quantity }
                    }
                }
            }
        }
        if owner != self.seats {
            return Err("seat ownership drifted".into());
        }
        for (s, (want, have)) in tally.iter().zip(&self.tally).enumerate() {
            if want.held != have.held || want.sold != have.sold {
                return Err(format!("section {s}: recount {want:?} != tally {have:?}"));
            }
            if have.held + have.sold > self.layout.section_capacity(s as u16) {
                return Err(format!("section {s} oversold"));
            }
        }
        per_buyer.retain(|_, n| *n > 0);
        let mut have: FxHashMap<BuyerId, u32> =
            self.buyer_slots.iter().map(|(&buyer, &b)| (buyer, self.buyers[b as usize].units)).collect();
        have.retain(|_, n| *n > 0);
        if per_buyer != have {
            return Err("per-buyer counts drifted".into());
        }
        let mut holds: FxHashMap<BuyerId, u32> = FxHashMap::default();
        for h in self.slots.iter().flatten() {
            *holds.entry(h.buyer).or_default() += 1;
            if self.buyer_slots.get(&h.buyer) != Some(&h.buyer_slot) {
                return Err(format!("hold {} points at another buyer's count", h.id));
            }
        }
        for (buyer, &b) in &self.buyer_slots {
            if holds.get(buyer).copied().unwrap_or(0) != self.buyers[b as usize].holds {
                return Err(format!("buyer {buyer}: hold count drifted"));
            }
        }
        for (r, row) in self.layout.rows.iter().enumerate() {
            let free =
                self.seats[row.start as usize..(row.start + row.len) as usize].iter().filter(|&&s| s == FREE).count();
            if free as u32 != self.row_free[r] {
                return Err(format!("row {} free count drifted", row.label));
            }
        }
        Ok(())
    }

    // ---- internals -----------------------------------------------------------

    fn push_expiry(&mut self, slot: u32) {
        let h = self.slot(slot);
        self.expiries.push(Expiry { at: h.expires_at, serial: h.serial, slot });
    }

    fn slot(&self, slot: u32) -> &Hold {
        self.slots[slot as usize].as_ref().expect("slot in use")
    }

    fn slot_mut(&mut self, slot: u32) -> &mut Hold {
        self.slots[slot as usize].as_mut().expect("slot in use")
    }

    fn owned_slot(&self, hold: HoldId, buyer: BuyerId) -> Result<u32, InventoryError> {
        match self.slot_of(hold) {
            Some(slot) if self.slot(slot).buyer == buyer => Ok(slot),
            _ => Err(InventoryError::HoldNotFound),
        }
    }

    /// The slot of `hold`. The newest hold is checked before the id map: its
    /// change is settled next, and often released or paid for next too.
    #[inline]
    fn slot_of(&self, hold: HoldId) -> Option<u32> {
        match self.slots.get(self.newest as usize) {
            Some(Some(h)) if h.id == hold => Some(self.newest),
            _ => self.by_id.get(&hold).copied(),
        }
    }

    #[inline(always)]
    fn insert(&mut self, mut hold: Hold) -> u32 {
        self.buyers[hold.buyer_slot as usize].holds += 1;
        hold.serial = self.next_serial;
        self.next_serial += 1;
        let id = hold.id;
        let key = hold.idempotency_key.clone().map(|k| (hold.buyer, k));
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(hold);
                slot
            }
            None => {
                self.slots.push(Some(hold));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_id.insert(id, slot);
        self.newest = slot;
        if let Some(key) = key {
            self.by_key.insert(key, slot);
        }
        slot
    }

    fn remove(&mut self, slot: u32) {
        if let Some(Hold { id, buyer, idempotency_key, mut items, buyer_slot, .. }) = self.slots[slot as usize].take() {
            self.by_id.remove(&id);
            self.buyers[buyer_slot as usize].holds -= 1;
            self.forget_buyer_if_unused(buyer, buyer_slot);
            if let Some(key) = idempotency_key {
                // Only if the key still names this hold: a newer hold may reuse it.
                let entry = (buyer, key);
                if self.by_key.get(&entry) == Some(&slot) {
                    self.by_key.remove(&entry);
                }
            }
            // Keep the allocation for the next seat hold if no record or view shares it.
            if self.spare_items.len() < SPARE_ITEMS
                && matches!(*items, Items::Seats { .. })
                && Arc::get_mut(&mut items).is_some()
            {
                self.spare_items.push(items);
            }
            self.free_slots.push(slot);
        }
    }

    /// Resolves a selection to free units, or says why it cannot.
    fn select(&self, selection: &Selection, quantity: u32) -> Result<Units, InventoryError> {
        match selection {
            Selection::Seats { seats: labels } => {
                let mut seats = SeatList::new();
                let mut taken = Vec::new();
                for label in labels {
                    let seat =
                        self.layout.seat_by_label(label).ok_or_else(|| InventoryError::UnknownSeat(label.clone()))?;
                    if seats.contains(&seat) {
                        return Err(InventoryError::DuplicateSeat(label.clone()));
                    }
                    if self.seats[seat as usize] != FREE {
                        taken.push(label.clone());
                    }
                    seats.push(seat);
                }
                if taken.is_empty() { Ok(Units::Seats(seats)) } else { Err(InventoryError::SeatsTaken(taken)) }
            }
            Selection::BestAvailable { section, allow_split, .. } => {
                let only = match section {
                    Some(name) => {
                        let s = self
                            .layout
                            .section_by_name(name)
                            .ok_or_else(|| InventoryError::UnknownSection(name.clone()))?;
                        if !matches!(self.layout.sections[s as usize].kind, SectionKind::Seated { .. }) {
                            // "The best N" in a general-admission section is just N places there.
                            let general = Selection::General { quantity, section: Some(name.clone()) };
                            return self.select(&general, quantity);
                        }
                        Some(s)
                    }
                    None if self.layout.preference.is_empty() => {
                        return self.select(&Selection::General { quantity, section: None }, quantity);
                    }
                    None => None,
                };
                self.best_available(quantity, only, *allow_split).map(Units::Seats)
            }
            Selection::General { section, .. } => {
                let s = match section {
                    Some(name) => {
                        self.layout.section_by_name(name).ok_or_else(|| InventoryError::UnknownSection(name.clone()))?
                    }
                    None => {
                        let mut ga = (0..self.layout.sections.len() as u16)
                            .filter(|&s| matches!(self.layout.sections[s as usize].kind, SectionKind::General { .. }));
                        match (ga.next(), ga.next()) {
                            (Some(s), None) => s,
                            (None, _) => return Err(InventoryError::UnknownSection("general admission".into())),
                            (Some(_), Some(_)) => return Err(InventoryError::UnknownSection(String::new())),
                        }
                    }
                };
                let SectionKind::General { capacity, .. } = self.layout.sections[s as usize].kind else {
                    return Err(InventoryError::WrongSectionKind(
                        self.layout.section_name(s).into(),
                        "general admission",
                    ));
                };
                let t = self.tally[s as usize];
                if capacity - t.held - t.sold < quantity {
                    return Err(InventoryError::SoldOut);
                }
                Ok(Units::General { section: s, quantity })
            }
        }
    }

    /// Best seats: sections by preference, rows front to back, and within a row the
    /// run of adjacent free seats closest to the row's centre. Deterministic.
    fn best_available(&self, quantity: u32, only: Option<u16>, allow_split: bool) -> Result<SeatList, InventoryError> {
        let sections: Vec<u16> = match only {
            Some(s) => vec![s],
            None => self.layout.preference.clone(),
        };
        let mut free_total = 0u32;
        for &s in &sections {
            let SectionKind::Seated { rows } = self.layout.sections[s as usize].kind else { continue };
            let t = self.tally[s as usize];
            let free = self.layout.section_capacity(s) - t.held - t.sold;
            free_total += free;
            if free < quantity {
                continue;
            }
            for r in rows.0..rows.1 {
                if self.row_free[r as usize] < quantity {
                    continue;
                }
                if let Some(start) = self.best_run_in_row(r, quantity) {
                    return Ok((start..start + quantity).collect());
                }
            }
        }
        if free_total < quantity {
            return Err(InventoryError::SoldOut);
        }
        if !allow_split {
            return Err(InventoryError::NoAdjacentSeats(quantity));
        }
        let mut picked = SeatList::new();
        'outer: for &s in &sections {
            let SectionKind::Seated { rows } = self.layout.sections[s as usize].kind else { continue };
            for r in rows.0..rows.1 {
                let row = &self.layout.rows[r as usize];
                for seat in row.start..row.start + row.len {
                    if self.seats[seat as usize] == FREE {
                        picked.push(seat);
                        if picked.len() as u32 == quantity {
                            break 'outer;
                        }
                    }
                }
            }
        }
        Ok(picked)
    }

    fn best_run_in_row(&self, r: u32, quantity: u32) -> Option<SeatIdx> {
        let row = &self.layout.rows[r as usize];
        let (start, end) = (row.start, row.start + row.len);
        // Twice the centre, to stay in integers: the ideal window starts at centre - q/2.
        let ideal2 = i64::from(start) + i64::from(end) - i64::from(quantity);
        let mut best: Option<(i64, SeatIdx)> = None;
        let mut run_start = start;
        for seat in start..=end {
            let free = seat < end && self.seats[seat as usize] == FREE;
            if free {
                continue;
            }
            if seat - run_start >= quantity {
                // Within run [run_start, seat), the window closest to the centre.
                let lo = i64::from(run_start) * 2;
                let hi = i64::from(seat - quantity) * 2;
                let at2 = ideal2.clamp(lo, hi);
                let at = (at2 / 2) as SeatIdx;
                let dist = (i64::from(at) * 2 - ideal2).abs();
                if best.is_none_or(|(d, _)| dist < d) {
                    best = Some((dist, at));
                }
            }
            run_start = seat + 1;
        }
        best.map(|(_, at)| at)
    }

    fn units_of(&self, items: &Items) -> Result<Units, String> {
        match items {
            Items::Seats { seats } => match seats.seats_in(&self.layout.rows) {
                Some(own) => Ok(Units::Seats(own.iter().copied().collect())),
                None => seats
                    .iter()
                    .map(|l| self.layout.seat_by_label(&l).ok_or_else(|| l.to_owned()))
                    .collect::<Result<_, _>>()
                    .map(Units::Seats),
            },
            Items::General { section, quantity } => {
                let s = self.layout.section_by_name(section).ok_or_else(|| section.clone())?;
                match self.layout.sections[s as usize].kind {
                    SectionKind::General { .. } => Ok(Units::General { section: s, quantity: *quantity }),
                    SectionKind::Seated { .. } => Err(section.clone()),
                }
            }
        }
    }

    /// What `units` are, for records and views. Seat labels render when read; a
    /// GA quantity is the same `Items` for every hold of that size, so it is shared.
    fn items_of(&mut self, units: &Units) -> Arc<Items> {
        match units {
            Units::Seats(seats) => {
                if let Some(mut spare) = self.spare_items.pop()
                    && let Some(Items::Seats { seats: labels }) = Arc::get_mut(&mut spare)
                {
                    // Usually made from this layout's rows: then only the seats
                    // change, and the rows' reference count is not touched.
                    labels.set_seats(&self.layout.rows, seats);
                    return spare;
                }
                Arc::new(Items::Seats { seats: SeatLabels::of_seats(Arc::clone(&self.layout.rows), seats.clone()) })
            }
            Units::General { section, quantity } => {
                let key = (*section, *quantity);
                if let Some(items) = self.general_items.get(&key) {
                    return Arc::clone(items);
                }
                let items = Arc::new(Items::General {
                    section: self.layout.section_name(*section).into(),
                    quantity: *quantity,
                });
                self.general_items.insert(key, Arc::clone(&items));
                items
            }
        }
    }

    fn price(&self, units: &Units) -> i64 {
        match units {
            Units::Seats(seats) => seats.iter().map(|&s| self.layout.price_of_seat(s)).sum(),
            Units::General { section, quantity } => self.ga_price(*section) * i64::from(*quantity),
        }
    }

    fn ga_price(&self, section: u16) -> i64 {
        match self.layout.sections[section as usize].kind {
            SectionKind::General { price, .. } => price,
            SectionKind::Seated { .. } => 0,
        }
    }

    /// The seat state and the count of `slot`'s buyer, borrowed beside the
    /// hold's own units (which so need not be moved out of the slot and back).
    fn occupancy(&mut self, slot: u32) -> (Occupancy<'_>, &Units) {
        let Self { layout, seats, row_free, tally, buyers, slots, .. } = self;
        let h = slots[slot as usize].as_ref().expect("slot in use");
        (Occupancy { layout, seats, row_free, tally, buyer: &mut buyers[h.buyer_slot as usize] }, &h.units)
    }

    /// Marks `units` as taken by `slot` (as sold or held) if they are all free.
    fn take(&mut self, slot: u32, units: &Units, sold: bool) -> bool {
        self.occupancy(slot).0.take(slot, units, sold)
    }

    /// Frees `units` taken by `slot`.
    fn give_back(&mut self, slot: u32, units: &Units, sold: bool) {
        self.occupancy(slot).0.give_back(slot, units, sold)
    }

    /// Where `buyer`'s count is, made (at zero) if they have none.
    fn buyer_slot(&mut self, buyer: BuyerId) -> u32 {
        if let Some(&b) = self.buyer_slots.get(&buyer) {
            return b;
        }
        let b = match self.free_buyers.pop() {
            Some(b) => {
                self.buyers[b as usize] = BuyerCount::default();
                b
            }
            None => {
                self.buyers.push(BuyerCount::default());
                (self.buyers.len() - 1) as u32
            }
        };
        self.buyer_slots.insert(buyer, b);
        b
    }

    /// Drops `buyer`'s count once no hold of theirs is left (they then hold
    /// nothing, so it is zero).
    fn forget_buyer_if_unused(&mut self, buyer: BuyerId, b: u32) {
        if self.buyers[b as usize].holds == 0 {
            debug_assert_eq!(self.buyers[b as usize].units, 0);
            self.buyer_slots.remove(&buyer);
            self.free_buyers.push(b);
        }
    }

    fn live_ticket_units(&self, slot: u32) -> Vec<Units> {
        self.slot(slot).tickets.iter().filter(|t| !t.cancelled).map(ticket_unit).collect()
    }

    fn ticket_records(&self, slot: u32) -> Vec<TicketRecord> {
        self.slot(slot)
            .tickets
            .iter()
            .map(|t| TicketRecord {
                id: t.id,
                section: self.layout.section_name(t.section).into(),
                seat: t.seat.map(|s| self.layout.label(s)),
                price: t.price,
                cancelled: t.cancelled,
            })
            .collect()
    }

    // Inlined: returned out of line, the caller re-read its 96–120 bytes with
    // wider loads than they were written with (a store-forwarding stall).
    #[inline(always)]
    fn record(&self, slot: u32) -> HoldRecord {
        let h = self.slot(slot);
        HoldRecord {
            id: h.id,
            buyer: h.buyer,
            items: Arc::clone(&h.items),
            amount: h.amount,
            created_at: h.created_at,
            expires_at: h.expires_at,
            status: h.status,
            idempotency_key: h.idempotency_key.clone(),
            fingerprint: h.fingerprint,
            tickets: if h.tickets.is_empty() { Vec::new() } else { self.ticket_records(slot) },
        }
    }

    // Inlined: returned out of line, the caller re-read its 96–120 bytes with
    // wider loads than they were written with (a store-forwarding stall).
    #[inline(always)]
    fn view(&self, slot: u32) -> HoldView {
        let h = self.slot(slot);
        HoldView {
            id: h.id,
            buyer: h.buyer,
            items: Arc::clone(&h.items),
            amount: h.amount,
            created_at: h.created_at,
            expires_at: h.expires_at,
            status: h.status,
            tickets: if h.tickets.is_empty() { Vec::new() } else { self.ticket_records(slot) },
        }
    }

    /// `take` of the hold's own units.
    fn take_own(&mut self, slot: u32, sold: bool) -> bool {
        let (occupancy, units) = self.occupancy(slot);
        occupancy.take(slot, units, sold)
    }

    /// `give_back` of the hold's own units.
    fn give_back_own(&mut self, slot: u32, sold: bool) {
        let (occupancy, units) = self.occupancy(slot);
        occupancy.give_back(slot, units, sold)
    }

    /// Moves the hold's own units between held and sold (purchase, or its undo).
    fn shift_own(&mut self, slot: u32, forward: bool) {
        let (occupancy, units) = self.occupancy(slot);
        occupancy.shift_held_to_sold(units, forward)
    }
}

/// What taking or giving back units changes: the seats, row and section counts,
/// and the buyer's count. Borrowed field by field, so a hold's own units can be
/// read from its slot while these change.
struct Occupancy<'a> {
    layout: &'a Layout,
    seats: &'a mut [u32],
    row_free: &'a mut [u32],
    tally: &'a mut [Tally],
    buyer: &'a mut BuyerCount,
}

impl Occupancy<'_> {
    /// Marks `units` as taken by `slot` (as sold or held) if they are all free.
    fn take(self, slot: u32, units: &Units, sold: bool) -> bool {
        match units {
            Units::Seats(seats) => {
                if seats.iter().any(|&s| self.seats[s as usize] != FREE) {
                    return false;
                }
                for &s in seats.iter() {
                    self.seats[s as usize] = slot;
                    let r = self.layout.row_index(s);
                    let section = self.layout.rows[r].section;
                    self.row_free[r] -= 1;
                    let t = &mut self.tally[section as usize];
                    if sold { t.sold += 1 } else { t.held += 1 }
                }
            }
            Units::General { section, quantity } => {
                let capacity = self.layout.section_capacity(*section);
                let t = &mut self.tally[*section as usize];
                if capacity - t.held - t.sold < *quantity {
                    return false;
                }
                if sold { t.sold += quantity } else { t.held += quantity }
            }
        }
        self.buyer.units += units_len(units);
        true
    }

    /// Frees `units` taken by `slot`.
    fn give_back(self, slot: u32, units: &Units, sold: bool) {
        match units {
            Units::Seats(seats) => {
                for &s in seats {
                    debug_assert_eq!(self.seats[s as usize], slot);
                    self.seats[s as usize] = FREE;
                    let r = self.layout.row_index(s);
                    let section = self.layout.rows[r].section;
                    self.row_free[r] += 1;
                    let t = &mut self.tally[section as usize];
                    if sold { t.sold -= 1 } else { t.held -= 1 }
                }
            }
            Units::General { section, quantity } => {
                let t = &mut self.tally[*section as usize];
                if sold { t.sold -= quantity } else { t.held -= quantity }
            }
        }
        self.buyer.units -= units_len(units);
    }

    /// Moves `units` between held and sold (purchase, or its undo).
    fn shift_held_to_sold(self, units: &Units, forward: bool) {
        let mut shift = |section: u16, n: u32| {
            let t = &mut self.tally[section as usize];
            if forward {
                t.held -= n;
                t.sold += n;
            } else {
                t.sold -= n;
                t.held += n;
            }
        };
        match units {
            Units::Seats(seats) => {
                for &s in seats {
                    shift(self.layout.section_of_seat(s), 1);
                }
            }
            Units::General { section, quantity } => shift(*section, *quantity),
        }
    }
}

fn units_len(units: &Units) -> u32 {
    match units {
        Units::Seats(seats) => seats.len() as u32,
        Units::General { quantity, .. } => *quantity,
    }
}

fn ticket_unit(t: &Ticket) -> Units {
    match t.seat {
        Some(seat) => Units::Seats(SeatList::one(seat)),
        None => Units::General { section: t.section, quantity: 1 },
    }
}
