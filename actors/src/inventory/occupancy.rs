//! Taking and freeing seats and GA places: the only code that writes seat
//! ownership (`SeatInventory::seats`), the rows' free counts, the sections' held
//! and sold tallies and the buyers' unit counts — and so the one place that
//! notes each change in the status log (`status`).
//!
//! All four change together, so `available + held + sold = capacity` holds per
//! section, each row's free count matches its seats, and a buyer's count is their
//! held + sold units (`check_invariants` recounts each). Taking is all or nothing:
//! if one seat is taken, or a GA section lacks room, nothing changes.

use super::SeatInventory;
use super::slots::{BLOCKED, BuyerCount, FREE, Units, units_len};
use super::status::StatusLog;
use crate::seatmap::Layout;

/// Held, sold and blocked units of one section.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Tally {
    pub(super) held: u32,
    pub(super) sold: u32,
    /// Seats the organizer took off sale.
    pub(super) blocked: u32,
}

impl Tally {
    /// Units of a section of `capacity` that nobody has and nobody blocked.
    pub(super) fn free_of(&self, capacity: u32) -> u32 {
        capacity - self.held - self.sold - self.blocked
    }
}

impl SeatInventory {
    /// The seat state and the count of `slot`'s buyer, borrowed beside the
    /// hold's own units, so those can be read in place while the state changes.
    fn occupancy(&mut self, slot: u32) -> (Occupancy<'_>, &Units) {
        let Self { layout, seats, row_free, tally, buyers, slots, status, .. } = self;
        let h = slots[slot as usize].as_ref().expect("slot in use");
        (Occupancy { layout, seats, row_free, tally, status, buyer: &mut buyers[h.buyer_slot as usize] }, &h.units)
    }

    /// Marks `units` as taken by `slot` (as sold or held) if they are all free.
    pub(super) fn take(&mut self, slot: u32, units: &Units, sold: bool) -> bool {
        self.occupancy(slot).0.take(slot, units, sold)
    }

    /// Frees `units` taken by `slot`.
    pub(super) fn give_back(&mut self, slot: u32, units: &Units, sold: bool) {
        self.occupancy(slot).0.give_back(slot, units, sold)
    }

    /// `take` of the hold's own units.
    pub(super) fn take_own(&mut self, slot: u32, sold: bool) -> bool {
        let (occupancy, units) = self.occupancy(slot);
        occupancy.take(slot, units, sold)
    }

    /// `give_back` of the hold's own units.
    pub(super) fn give_back_own(&mut self, slot: u32, sold: bool) {
        let (occupancy, units) = self.occupancy(slot);
        occupancy.give_back(slot, units, sold)
    }

    /// Moves the hold's own units between held and sold (purchase, or its undo).
    pub(super) fn shift_own(&mut self, slot: u32, forward: bool) {
        let (occupancy, units) = self.occupancy(slot);
        occupancy.shift_held_to_sold(units, forward)
    }

    /// Takes a free seat off sale (`blocked`) or puts a blocked one back; false
    /// (and nothing changed) when the seat is in neither state the change needs.
    pub(super) fn set_blocked(&mut self, seat: u32, blocked: bool) -> bool {
        let (from, to) = if blocked { (FREE, BLOCKED) } else { (BLOCKED, FREE) };
        if self.seats[seat as usize] != from {
            return false;
        }
        self.seats[seat as usize] = to;
        let r = self.layout.row_index(seat);
        let section = self.layout.rows[r].section as usize;
        if blocked {
            self.row_free[r] -= 1;
            self.tally[section].blocked += 1;
        } else {
            self.row_free[r] += 1;
            self.tally[section].blocked -= 1;
        }
        self.status.seat(seat);
        true
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
    status: &'a mut StatusLog,
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
                    self.status.seat(s);
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
                if t.free_of(capacity) < *quantity {
                    return false;
                }
                if sold {
                    t.sold += quantity
                } else {
                    t.held += quantity
                }
                self.status.section(*section);
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
                    self.status.seat(s);
                    let r = self.layout.row_index(s);
                    let section = self.layout.rows[r].section;
                    self.row_free[r] += 1;
                    let t = &mut self.tally[section as usize];
                    if sold { t.sold -= 1 } else { t.held -= 1 }
                }
            }
            Units::General { section, quantity } => {
                let t = &mut self.tally[*section as usize];
                if sold {
                    t.sold -= quantity
                } else {
                    t.held -= quantity
                }
                self.status.section(*section);
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
                    self.status.seat(s);
                }
            }
            Units::General { section, quantity } => {
                shift(*section, *quantity);
                self.status.section(*section);
            }
        }
    }
}
