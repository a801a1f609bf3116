//! Seats the organizer takes off sale (house seats, broken seats) and puts back.
//!
//! A blocked seat is neither free nor anyone's: no hold can take it, it counts as
//! `blocked` (available + held + sold + blocked = capacity) and shows as `B` in
//! the seat status. Only free seats can be blocked. Blocks are not journalled
//! like holds: the service stores them with the event and hands them back at
//! activation ([`SeatInventory::block_seats`] after `restore`). Blocking takes
//! seats, so the service applies it here first and stores it after; unblocking
//! frees seats, so it is stored first and applied here after — memory never
//! offers a seat the database does not.

use super::slots::{BLOCKED, FREE};
use super::{InventoryError, SeatInventory};
use crate::seatmap::SeatIdx;

impl SeatInventory {
    /// Blocks (`blocked`) or unblocks the seats named, all or nothing: an unknown
    /// label, or a seat to block that is held or sold, changes nothing. Blocking a
    /// blocked seat or unblocking a free one is no change. Returns every seat
    /// blocked afterwards.
    pub fn block_seats(&mut self, labels: &[String], blocked: bool) -> Result<Vec<String>, InventoryError> {
        let mut seats: Vec<SeatIdx> = Vec::with_capacity(labels.len());
        let mut taken = Vec::new();
        for label in labels {
            let seat = self.layout.seat_by_label(label).ok_or_else(|| InventoryError::UnknownSeat(label.clone()))?;
            let state = self.seats[seat as usize];
            if blocked && state != FREE && state != BLOCKED {
                taken.push(label.clone());
            }
            seats.push(seat);
        }
        if !taken.is_empty() {
            return Err(InventoryError::SeatsTaken(taken));
        }
        for seat in seats {
            self.set_blocked(seat, blocked);
        }
        Ok(self.blocked_labels())
    }

    /// Every blocked seat, in map order.
    pub fn blocked_labels(&self) -> Vec<String> {
        (0..self.seats.len() as SeatIdx)
            .filter(|&s| self.seats[s as usize] == BLOCKED)
            .map(|s| self.layout.label(s))
            .collect()
    }
}
