//! Time in the inventory: the expiry queue, [`SeatInventory::expire_due`], which
//! the actor's tick calls, and the pruning of holds that ended long ago.
//!
//! Every active hold has a live entry in the queue, so every hold expires unless
//! it is bought or released first. A hold whose time comes while another change
//! to it is pending keeps its entry and is looked at again on the next call, so it
//! still expires if that change fails to save. Expiring is a change like any
//! other: its seats are freed only once it is durable (see [`SeatInventory::settle`];
//! `docs/domain.md`, section "Holds").

use super::SeatInventory;
use super::slots::Pending;
use crate::ids::UnixMs;
use crate::record::{Change, HoldStatus};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

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
pub(super) struct ExpiryQueue {
    in_order: VecDeque<Expiry>,
    out_of_order: BinaryHeap<Reverse<Expiry>>,
}

impl ExpiryQueue {
    /// Queues `e`: at the back of the FIFO unless that would break its order.
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

    /// Removes the entry `peek` returned.
    fn pop(&mut self, from_fifo: bool) {
        if from_fifo {
            self.in_order.pop_front();
        } else {
            self.out_of_order.pop();
        }
    }
}

impl SeatInventory {
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

    /// Queues the expiry of the hold in `slot` (made, restored, or its expiry
    /// undone).
    pub(super) fn push_expiry(&mut self, slot: u32) {
        let h = self.slot(slot);
        self.expiries.push(Expiry { at: h.expires_at, serial: h.serial, slot });
    }
}
