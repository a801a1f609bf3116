//! [`SeatInventory::check_invariants`]: the inventory's invariants, checked by
//! recounting everything from the holds alone.
//!
//! It guarantees, when it answers `Ok`, that the incremental bookkeeping matches
//! the holds: every seat has at most one owner and `seats` says which; each
//! section's held and sold tallies equal the recount and never exceed its capacity
//! (`available + held + sold = capacity`); each buyer's held + sold count and hold
//! count are right; each row's free count matches its seats. These are the
//! invariants of `docs/domain.md` (section "Invariants") as they apply to one
//! event's memory. The property tests call it after every step; it is O(holds +
//! seats), so the engine never calls it itself.

use super::SeatInventory;
use super::occupancy::Tally;
use super::slots::{BLOCKED, FREE, Units, ticket_unit, units_len};
use crate::ids::BuyerId;
use crate::record::HoldStatus;
use rustc_hash::FxHashMap;

impl SeatInventory {
    /// Checks every invariant by recounting from scratch; for tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut tally = vec![Tally::default(); self.tally.len()];
        let mut per_buyer: FxHashMap<BuyerId, u32> = FxHashMap::default();
        let mut owner: Vec<u32> = self.seats.iter().map(|&s| if s == BLOCKED { BLOCKED } else { FREE }).collect();
        for (s, &state) in self.seats.iter().enumerate() {
            if state == BLOCKED {
                tally[self.layout.section_of_seat(s as u32) as usize].blocked += 1;
            }
        }
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
            if want.held != have.held || want.sold != have.sold || want.blocked != have.blocked {
                return Err(format!("section {s}: recount {want:?} != tally {have:?}"));
            }
            if have.held + have.sold + have.blocked > self.layout.section_capacity(s as u16) {
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
}
