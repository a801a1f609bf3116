//! Rebuilding an inventory from durable records, and the reverse.
//!
//! [`SeatInventory::restore`] takes the holds the journal stored and rebuilds the
//! state they describe; [`SeatInventory::snapshot`] gives the records of the
//! durable state (pending changes left out). They are inverses:
//! `restore(snapshot())` rebuilds an equal inventory, which the property tests
//! check after every step. Records that contradict the seat map or each other are
//! refused with a [`RestoreError`], never half-applied into a live inventory.
//! [`SeatInventory::reconfigure`] adopts a new seat map by the same round trip.

use super::slots::{Hold, Pending, Ticket, Units};
use super::{ReconfigureError, RestoreError, SalesWindow, SeatInventory};
use crate::record::{HoldRecord, HoldStatus, Items};
use crate::seatmap::{Layout, SectionKind};
use std::sync::Arc;

impl SeatInventory {
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

    /// Adds one stored hold, taking what it occupies.
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

    /// Adopts a new seat map if every hold and sale — active, sold, cancelled or
    /// recently ended — still fits it: no held or sold seat removed, no GA section
    /// below what it has taken. Refused while a change is pending.
    pub fn reconfigure(&mut self, layout: Layout) -> Result<(), ReconfigureError> {
        if self.has_pending() {
            return Err(ReconfigureError::Busy);
        }
        let mut rebuilt =
            Self::restore(layout, self.window, self.snapshot()).map_err(ReconfigureError::Incompatible)?;
        // Blocked seats the new map still has stay blocked.
        let blocked: Vec<String> =
            self.blocked_labels().into_iter().filter(|l| rebuilt.layout.seat_by_label(l).is_some()).collect();
        let _ = rebuilt.block_seats(&blocked, true);
        // Versions go on growing; seat indexes changed, so no earlier change can be replayed.
        rebuilt.status = self.status.clone();
        rebuilt.status.reset(rebuilt.layout.seat_count);
        *self = rebuilt;
        Ok(())
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

    /// What stored `items` take in this layout, or the name it does not have.
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
}
