//! Seat status for live seat maps: the state of every seat as one letter, a
//! version that counts every change of a seat or general-admission place, and a
//! bounded log of recent changes, so a live view can ask what changed since the
//! version it last saw instead of reading the whole map again.
//!
//! The log names *which* seats (or GA sections) changed at which version, not
//! their new state: a delta reads the state when asked, so it carries each
//! seat's latest state once however often it changed (coalescing for free).
//! Versions start at the activation time in milliseconds × 1,000, so they keep
//! growing across a restart or a move to another node (an event changes far
//! fewer than 1,000 times a millisecond); a version from before the log's floor,
//! or from the future, gets `None` and the caller reads the full status.

use super::SeatInventory;
use super::slots::{BLOCKED, FREE};
use super::types::{Counts, SectionCounts};
use crate::record::HoldStatus;
use crate::seatmap::{SeatIdx, SectionKind};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Marks a log entry as a GA section (the low bits) rather than a seat.
const SECTION_BIT: u32 = 1 << 31;
/// Log entries kept at least and at most, whatever the map's size.
const MIN_LOG: usize = 4_096;
const MAX_LOG: usize = 65_536;

/// Seat letters in [`RowStatus::seats`].
pub const FREE_SEAT: char = 'F';
pub const HELD_SEAT: char = 'H';
pub const SOLD_SEAT: char = 'S';
pub const BLOCKED_SEAT: char = 'B';

/// The version and recent changes of an inventory's seats.
#[derive(Clone, Debug, Default)]
pub(super) struct StatusLog {
    version: u64,
    /// Changes after `floor` are all in `log`.
    floor: u64,
    log: VecDeque<(u64, u32)>,
    cap: usize,
}

impl StatusLog {
    pub(super) fn new(seat_count: u32) -> Self {
        Self { cap: (seat_count as usize).clamp(MIN_LOG, MAX_LOG), ..Self::default() }
    }

    fn push(&mut self, entry: u32) {
        self.version += 1;
        if self.log.len() == self.cap
            && let Some((v, _)) = self.log.pop_front()
        {
            self.floor = v;
        }
        self.log.push_back((self.version, entry));
    }

    pub(super) fn seat(&mut self, seat: SeatIdx) {
        self.push(seat);
    }

    pub(super) fn section(&mut self, section: u16) {
        self.push(SECTION_BIT | u32::from(section));
    }

    /// Forgets every change: seat indexes no longer mean what they did (a new map).
    pub(super) fn reset(&mut self, seat_count: u32) {
        let version = self.version + 1;
        *self = Self { version, floor: version, ..Self::new(seat_count) };
    }
}

/// Every seat's state and every section's counts, at `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatStatus {
    pub version: u64,
    pub sections: Vec<SectionStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionStatus {
    pub name: String,
    pub general_admission: bool,
    pub counts: Counts,
    /// Seated sections: each row's seats in number order.
    pub rows: Vec<RowStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowStatus {
    pub label: String,
    /// The number of the row's first seat: seat `first + i` is `seats[i]`.
    pub first: u32,
    /// One letter per seat: `F` free, `H` held, `S` sold, `B` blocked.
    pub seats: String,
}

/// What changed after `from`, up to `version`: each changed seat once, with its
/// state now, and the counts of every section that changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatDelta {
    pub from: u64,
    pub version: u64,
    /// (seat label, state letter).
    pub seats: Vec<(String, char)>,
    pub sections: Vec<SectionCounts>,
}

impl SeatInventory {
    /// Versions from now on start at `base` if they are below it (see the module comment).
    pub fn start_versions_at(&mut self, base: u64) {
        if self.status.version < base {
            self.status.version = base;
            self.status.floor = base;
            self.status.log.clear();
        }
    }

    /// The current version of the seats' state.
    pub fn seat_version(&self) -> u64 {
        self.status.version
    }

    fn seat_letter(&self, seat: SeatIdx) -> char {
        match self.seats[seat as usize] {
            FREE => FREE_SEAT,
            BLOCKED => BLOCKED_SEAT,
            slot => match self.slot(slot).status {
                HoldStatus::Purchased => SOLD_SEAT,
                _ => HELD_SEAT,
            },
        }
    }

    /// Every seat's state (one letter each) and every section's counts.
    pub fn seat_status(&self) -> SeatStatus {
        let counts = self.section_counts();
        let sections = self
            .layout
            .sections
            .iter()
            .zip(counts)
            .map(|(section, c)| SectionStatus {
                name: c.section,
                general_admission: c.general_admission,
                counts: c.counts,
                rows: match section.kind {
                    SectionKind::Seated { rows } => self.layout.rows[rows.0 as usize..rows.1 as usize]
                        .iter()
                        .map(|r| RowStatus {
                            label: r.label.to_string(),
                            first: r.first,
                            seats: (r.start..r.start + r.len).map(|s| self.seat_letter(s)).collect(),
                        })
                        .collect(),
                    SectionKind::General { .. } => Vec::new(),
                },
            })
            .collect();
        SeatStatus { version: self.status.version, sections }
    }

    /// What changed after version `since`; `None` when the log no longer (or never)
    /// covered it, so the caller must read [`SeatInventory::seat_status`].
    pub fn seat_changes_since(&self, since: u64) -> Option<SeatDelta> {
        let log = &self.status;
        if since < log.floor || since > log.version {
            return None;
        }
        let start = log.log.partition_point(|(v, _)| *v <= since);
        let mut seats: Vec<SeatIdx> = Vec::new();
        let mut sections: Vec<u16> = Vec::new();
        for &(_, entry) in log.log.range(start..) {
            if entry & SECTION_BIT != 0 {
                sections.push((entry & !SECTION_BIT) as u16);
            } else {
                seats.push(entry);
                sections.push(self.layout.section_of_seat(entry));
            }
        }
        seats.sort_unstable();
        seats.dedup();
        sections.sort_unstable();
        sections.dedup();
        let all = self.section_counts();
        Some(SeatDelta {
            from: since,
            version: log.version,
            seats: seats.into_iter().map(|s| (self.layout.label(s), self.seat_letter(s))).collect(),
            sections: sections.into_iter().map(|s| all[s as usize].clone()).collect(),
        })
    }
}
