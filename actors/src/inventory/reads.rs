//! What the inventory answers without changing anything: views of holds for
//! callers, records for the journal, counts, and the memory figure.
//!
//! A buyer sees only their own holds, and only once they are durable: a hold being
//! created is not shown to its buyer until its change settles, and another buyer's
//! hold reads as missing. Counts are the tallies `occupancy` keeps, so available +
//! held + sold is the capacity of each section.

use super::occupancy::Tally;
use super::slots::{BLOCKED, FREE, Pending};
use super::{Counts, HoldView, InventoryError, SeatInventory, SectionCounts};
use crate::ids::{BuyerId, HoldId, UnixMs};
use crate::record::{HoldRecord, HoldStatus, TicketRecord};
use crate::seatmap::SectionKind;
use std::sync::Arc;

// `record` and `view` return these sizes by value (see their comments).
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<HoldRecord>() <= 120);
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<HoldView>() <= 96);
// `bytes_per_seat` counts each section's `Tally` as 12 bytes.
const _: () = assert!(std::mem::size_of::<Tally>() == 12);

impl SeatInventory {
    /// A hold, if it exists and belongs to `buyer` (`None` for anyone else's, so
    /// callers cannot tell another buyer's hold from a missing one).
    pub fn hold_view(&self, hold: HoldId, buyer: BuyerId) -> Option<HoldView> {
        let slot = self.slot_of(hold)?;
        let h = self.slot(slot);
        (h.buyer == buyer && !matches!(h.pending, Some(Pending::Create))).then(|| self.view(slot))
    }

    /// `buyer`'s hold, if it may be paid for now: refused once sales are closed
    /// (closed or cancelled event, `closes_at` passed), so no card is charged for
    /// seats that could not be sold. A purchased hold is answered as it is.
    pub fn payable_hold(&self, hold: HoldId, buyer: BuyerId, now: UnixMs) -> Result<Option<HoldView>, InventoryError> {
        let Some(view) = self.hold_view(hold, buyer) else { return Ok(None) };
        if view.status != HoldStatus::Purchased && now >= self.window.closes_at {
            return Err(InventoryError::SalesClosed);
        }
        Ok(Some(view))
    }

    /// A hold regardless of owner, for administrators and the service's own checks.
    pub fn hold_view_any(&self, hold: HoldId) -> Option<HoldView> {
        self.slot_of(hold).map(|slot| self.view(slot))
    }

    /// Available / held / sold for the whole event.
    pub fn counts(&self) -> Counts {
        self.section_counts().into_iter().fold(Counts::default(), |mut acc, s| {
            acc.capacity += s.counts.capacity;
            acc.available += s.counts.available;
            acc.held += s.counts.held;
            acc.sold += s.counts.sold;
            acc.blocked += s.counts.blocked;
            acc
        })
    }

    /// Available / held / sold per section, in map order.
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
                        available: u64::from(t.free_of(capacity)),
                        held: t.held.into(),
                        sold: t.sold.into(),
                        blocked: t.blocked.into(),
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
        (slot != FREE && slot != BLOCKED).then(|| {
            let h = self.slot(slot);
            (h.id, h.status == HoldStatus::Purchased)
        })
    }

    /// Heap bytes used per seat by the seat state and layout.
    pub fn bytes_per_seat(&self) -> f64 {
        let seats = self.layout.seat_count.max(1) as f64;
        let state = self.seats.capacity() * 4 + self.row_free.capacity() * 4 + self.tally.capacity() * 12;
        (state + self.layout.heap_bytes()) as f64 / seats
    }

    /// The tickets of the hold in `slot`, as stored and shown.
    pub(super) fn ticket_records(&self, slot: u32) -> Vec<TicketRecord> {
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

    /// The hold in `slot` as the journal stores it.
    // Inlined so the record is built where the caller uses it: returned out of
    // line, its 120 bytes would be read back with wider loads than they were
    // written with (a store-forwarding stall).
    #[inline(always)]
    pub(super) fn record(&self, slot: u32) -> HoldRecord {
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

    /// The hold in `slot` as a caller sees it.
    // Inlined for the same reason as `record`: a view is 96 bytes.
    #[inline(always)]
    pub(super) fn view(&self, slot: u32) -> HoldView {
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
}
