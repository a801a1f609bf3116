//! Holds as the inventory keeps them, and the slot table they live in.
//!
//! A hold lives in a slot of `SeatInventory::slots`, so a seat names its hold with
//! a 4-byte index. Slots are reused; a hold's `serial`, unique within the
//! inventory, tells a slot's current hold from an earlier one. The indexes beside
//! the slots — `by_id`, `by_key` (idempotency keys) and the per-buyer counts — are
//! changed only by `insert` and `remove` here, so they always name live slots, and
//! a buyer's count goes when their last hold does. This file also makes the
//! `Items` a hold shows, reusing the allocations of removed seat holds.

use super::{InventoryError, SeatInventory};
use crate::ids::{BuyerId, HoldId, IdempotencyKey, TicketId, UnixMs};
use crate::record::{HoldStatus, Items, Payment, SeatLabels};
use crate::seatmap::{SeatIdx, SeatList};
use std::sync::Arc;

/// What a seat holds in `SeatInventory::seats` when no hold has it.
pub(super) const FREE: u32 = u32::MAX;
/// What a seat holds when the organizer took it off sale (house seats, broken seats).
pub(super) const BLOCKED: u32 = u32::MAX - 1;

/// What a hold takes: reserved seats, or places in one general-admission section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Units {
    Seats(SeatList),
    General { section: u16, quantity: u32 },
}

/// One admission issued by a purchase: a seat, or one GA place (`seat: None`).
#[derive(Clone, Debug)]
pub(super) struct Ticket {
    pub(super) id: TicketId,
    pub(super) seat: Option<SeatIdx>,
    pub(super) section: u16,
    pub(super) price: i64,
    pub(super) cancelled: bool,
}

/// The change a hold waits on the journal for, with what undoing it needs.
#[derive(Clone, Debug)]
pub(super) enum Pending {
    Create,
    Purchase { prior: HoldStatus, retaken: bool },
    Release,
    Expire,
    Cancel { tickets: Vec<usize> },
}

/// A hold as the inventory keeps it; [`HoldRecord`](crate::record::HoldRecord)
/// and [`HoldView`](super::HoldView) are made from it.
#[derive(Clone, Debug)]
pub(super) struct Hold {
    pub(super) id: HoldId,
    pub(super) buyer: BuyerId,
    pub(super) units: Units,
    /// `units` as labels, rendered once and shared by every record and view.
    pub(super) items: Arc<Items>,
    pub(super) amount: i64,
    pub(super) created_at: UnixMs,
    pub(super) expires_at: UnixMs,
    pub(super) status: HoldStatus,
    pub(super) pending: Option<Pending>,
    pub(super) idempotency_key: Option<IdempotencyKey>,
    pub(super) fingerprint: u64,
    pub(super) tickets: Vec<Ticket>,
    /// How the purchase was paid, once purchased (boxed: most holds never are).
    pub(super) payment: Option<Box<Payment>>,
    /// When it became expired/released, for pruning.
    pub(super) ended_at: UnixMs,
    /// Unique per hold in this inventory, so queue entries can tell a slot's
    /// current hold from an earlier one.
    pub(super) serial: u64,
    /// Where `buyer`'s count is in `SeatInventory::buyers`.
    pub(super) buyer_slot: u32,
}

/// What one buyer has: units held + sold (for the per-buyer limit), and how many
/// holds in slots are theirs (the entry goes when the last one does).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct BuyerCount {
    pub(super) units: u32,
    pub(super) holds: u32,
}

/// How many unshared `Arc<Items>` allocations are kept for reuse: about a tick's
/// worth of ended holds on a busy event. Each is one 64-byte `Arc` block (asserted
/// below), plus the heap list of a hold of more than four seats, so the spares
/// stay near 64 KiB.
const SPARE_ITEMS: usize = 1024;

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Items>() + 2 * std::mem::size_of::<usize>() <= 64);

impl SeatInventory {
    /// The hold in `slot`, which must be in use.
    pub(super) fn slot(&self, slot: u32) -> &Hold {
        self.slots[slot as usize].as_ref().expect("slot in use")
    }

    /// The hold in `slot`, which must be in use, to change.
    pub(super) fn slot_mut(&mut self, slot: u32) -> &mut Hold {
        self.slots[slot as usize].as_mut().expect("slot in use")
    }

    /// The slot of `hold` if it is `buyer`'s; `HoldNotFound` for anyone else's, so
    /// callers cannot tell another buyer's hold from a missing one.
    pub(super) fn owned_slot(&self, hold: HoldId, buyer: BuyerId) -> Result<u32, InventoryError> {
        match self.slot_of(hold) {
            Some(slot) if self.slot(slot).buyer == buyer => Ok(slot),
            _ => Err(InventoryError::HoldNotFound),
        }
    }

    /// The slot of `hold`. The newest hold is checked before the id map: its
    /// change is settled next, and often released or paid for next too.
    #[inline]
    pub(super) fn slot_of(&self, hold: HoldId) -> Option<u32> {
        match self.slots.get(self.newest as usize) {
            Some(Some(h)) if h.id == hold => Some(self.newest),
            _ => self.by_id.get(&hold).copied(),
        }
    }

    /// Stores `hold` in a free slot, gives it the next serial and indexes it by id,
    /// idempotency key and buyer.
    #[inline(always)]
    pub(super) fn insert(&mut self, mut hold: Hold) -> u32 {
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

    /// Empties `slot` and drops what indexes it; the hold must no longer occupy
    /// any seat or place.
    pub(super) fn remove(&mut self, slot: u32) {
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

    /// What `units` are, for records and views. Seat labels render when read; a
    /// GA quantity is the same `Items` for every hold of that size, so it is shared.
    pub(super) fn items_of(&mut self, units: &Units) -> Arc<Items> {
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

    /// Where `buyer`'s count is, made (at zero) if they have none.
    pub(super) fn buyer_slot(&mut self, buyer: BuyerId) -> u32 {
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
    pub(super) fn forget_buyer_if_unused(&mut self, buyer: BuyerId, b: u32) {
        if self.buyers[b as usize].holds == 0 {
            debug_assert_eq!(self.buyers[b as usize].units, 0);
            self.buyer_slots.remove(&buyer);
            self.free_buyers.push(b);
        }
    }

    /// What the hold's tickets that are not cancelled occupy.
    pub(super) fn live_ticket_units(&self, slot: u32) -> Vec<Units> {
        self.slot(slot).tickets.iter().filter(|t| !t.cancelled).map(ticket_unit).collect()
    }
}

/// How many seats or GA places `units` are.
pub(super) fn units_len(units: &Units) -> u32 {
    match units {
        Units::Seats(seats) => seats.len() as u32,
        Units::General { quantity, .. } => *quantity,
    }
}

/// What one ticket occupies.
pub(super) fn ticket_unit(t: &Ticket) -> Units {
    match t.seat {
        Some(seat) => Units::Seats(SeatList::one(seat)),
        None => Units::General { section: t.section, quantity: 1 },
    }
}
