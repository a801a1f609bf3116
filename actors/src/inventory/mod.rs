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
//! that is not ("memory never runs ahead of the database", `ARCHITECTURE.md`,
//! section "Invariants"). A hold with a pending change refuses further changes
//! (`Busy`) until it settles, so changes to one hold never overlap.
//!
//! Invariants (`docs/domain.md`, sections "Invariants" and "Holds"; checked after
//! every step of the property tests in `tests/inventory_props.rs`, mostly through
//! [`SeatInventory::check_invariants`]): `available + held + sold = capacity` per
//! section; a seat belongs to at most one hold; a buyer never has more than the
//! per-buyer limit held + sold.
//!
//! This file holds the inventory's state and the operations that change it —
//! `hold`, `purchase`, `release`, `cancel_tickets` — with `settle`, which finishes
//! or undoes each of their changes. The rest is split by concern:
//!
//! - `types`: what callers pass and get back (windows, views, outcomes, errors);
//! - `selection`: what a buyer asks for and how it resolves to free, priced seats;
//! - `slots`: a hold's internal form and the slot table that stores it;
//! - `occupancy`: the only code that takes and frees seats and counts them;
//! - `expiry`: the expiry queue, `expire_due` and pruning of ended holds;
//! - `restore`: rebuilding from durable records, `snapshot` and `reconfigure`;
//! - `reads`: views, records and counts, which change nothing;
//! - `blocks`: seats the organizer takes off sale;
//! - `status`: every seat's state, its version and the log of recent changes;
//! - `invariants`: `check_invariants`, the recount the tests rely on.

mod blocks;
mod expiry;
mod invariants;
mod occupancy;
mod reads;
mod restore;
mod selection;
mod slots;
mod status;
mod types;

pub use selection::Selection;
pub use status::{FREE_SEAT, HELD_SEAT, RowStatus, SOLD_SEAT, SeatDelta, SeatStatus, SectionStatus};
pub use types::{
    Counts, DEFAULT_HOLD_TTL_MS, HoldView, InventoryError, MAX_UNITS_PER_HOLD, Outcome, ReconfigureError, RestoreError,
    Sale, SalesWindow, SectionCounts, Settled,
};

use crate::ids::{BuyerId, HoldId, IdempotencyKey, TicketId, UnixMs};
use crate::record::{Change, HoldStatus, Items, Payment};
use crate::seatmap::Layout;
use expiry::ExpiryQueue;
use occupancy::Tally;
use rustc_hash::FxHashMap;
use slots::{BuyerCount, FREE, Hold, Pending, Ticket, Units, ticket_unit, units_len};
use std::collections::VecDeque;
use std::sync::Arc;

/// One event's seats, holds and sales.
#[derive(Clone, Debug)]
pub struct SeatInventory {
    layout: Layout,
    window: SalesWindow,
    /// Per seat: `FREE`, or the slot of the hold that has it (held or sold).
    seats: Vec<u32>,
    /// Per row: free seats, to skip full rows when searching.
    row_free: Vec<u32>,
    /// Per section: units held and sold.
    tally: Vec<Tally>,
    /// The seats' version and recent changes (written by `occupancy` only).
    status: status::StatusLog,
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

impl SeatInventory {
    /// An inventory of `layout` with every seat free and no holds.
    pub fn new(layout: Layout, window: SalesWindow) -> Self {
        let seats = vec![FREE; layout.seat_count as usize];
        let row_free = layout.rows.iter().map(|r| r.len).collect();
        let tally = vec![Tally::default(); layout.sections.len()];
        Self {
            status: status::StatusLog::new(layout.seat_count),
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
        if prior != HoldStatus::Purchased && now >= self.window.closes_at {
            // Closed, cancelled, or past `closes_at` (at the latest the event's
            // start): a hold made before can no longer be paid for.
            return Err(InventoryError::SalesClosed);
        }
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
}
