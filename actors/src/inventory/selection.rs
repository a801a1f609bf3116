//! What a buyer asks to hold ([`Selection`]) and how the inventory resolves it to
//! free seats or GA places, and prices them.
//!
//! Resolution reads the seat state and changes nothing; it guarantees that the
//! units it returns are free at that moment (the caller takes them at once), that
//! explicit seats are all named, distinct and free or else refused with the reason,
//! and that "best available" is deterministic: sections by preference, rows front
//! to back, and within a row the run of adjacent free seats closest to the centre
//! (`docs/domain.md`, section "Holds"). A selection's fingerprint is stable
//! across releases, since stored holds carry it.

use super::slots::{FREE, Units};
use super::{InventoryError, SeatInventory};
use crate::seatmap::{SeatIdx, SeatList, SectionKind, decimal};
use serde::{Deserialize, Serialize};

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
        // The canonical form, fed piece by piece without building the string:
        // `S|{seat},{seat}…`, `B|{quantity}|{section}|{allow_split}` or
        // `G|{quantity}|{section}`. Stored fingerprints depend on exactly these bytes.
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

impl SeatInventory {
    /// Resolves a selection to free units, or says why it cannot.
    pub(super) fn select(&self, selection: &Selection, quantity: u32) -> Result<Units, InventoryError> {
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
                        "general admission".into(),
                    ));
                };
                let t = self.tally[s as usize];
                if t.free_of(capacity) < quantity {
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
            let free = t.free_of(self.layout.section_capacity(s));
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

    pub(super) fn price(&self, units: &Units) -> i64 {
        match units {
            Units::Seats(seats) => seats.iter().map(|&s| self.layout.price_of_seat(s)).sum(),
            Units::General { section, quantity } => self.ga_price(*section) * i64::from(*quantity),
        }
    }

    pub(super) fn ga_price(&self, section: u16) -> i64 {
        match self.layout.sections[section as usize].kind {
            SectionKind::General { price, .. } => price,
            SectionKind::Seated { .. } => 0,
        }
    }
}
