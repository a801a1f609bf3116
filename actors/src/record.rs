//! The durable form of the inventory: what the journal writes and what a restart
//! reads back.
//!
//! Every state change the inventory makes is one `Change`. Applying the durable
//! changes in order to a set of `HoldRecord`s (see [`apply`]) gives exactly the
//! records `SeatInventory::restore` needs — the PostgreSQL journal does the same in
//! SQL, the in-memory journal does it with [`apply`].

use crate::ids::{BuyerId, EventId, HoldId, IdempotencyKey, TicketId, UnixMs};
use crate::seatmap::{LabelBuf, Row, SeatIdx, SeatList};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// What a hold is on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Items {
    /// Reserved seats, by label.
    Seats { seats: SeatLabels },
    /// A quantity in a general-admission section.
    General { section: String, quantity: u32 },
}

/// The labels of a hold's seats (`A-12`), serialised as a list of strings.
///
/// A hold the engine makes keeps its seat indexes and a share of the layout's rows,
/// and renders labels only when they are read (a reply, the journal's write), so a
/// hold that is never shown never allocates a `String` per seat. Labels read back
/// from storage keep their strings.
#[derive(Clone)]
pub struct SeatLabels(LabelsRepr);

#[derive(Clone)]
enum LabelsRepr {
    Strings(Vec<String>),
    Seats { rows: Arc<[Row]>, seats: SeatList },
}

/// One label, borrowed or rendered on the stack.
pub struct Label<'a>(LabelRef<'a>);

enum LabelRef<'a> {
    Str(&'a str),
    Buf(LabelBuf),
}

impl std::ops::Deref for Label<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match &self.0 {
            LabelRef::Str(s) => s,
            LabelRef::Buf(b) => b.as_str(),
        }
    }
}

impl Serialize for Label<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

impl fmt::Debug for Label<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl SeatLabels {
    /// Labels of `seats` in the layout whose rows these are.
    pub(crate) fn of_seats(rows: Arc<[Row]>, seats: SeatList) -> Self {
        Self(LabelsRepr::Seats { rows, seats })
    }

    /// Makes these the labels of `seats` in `rows`, reusing the share of `rows`
    /// they already hold if it is the same.
    pub(crate) fn set_seats(&mut self, rows: &Arc<[Row]>, seats: &SeatList) {
        match &mut self.0 {
            LabelsRepr::Seats { rows: own, seats: mine } if Arc::ptr_eq(own, rows) => mine.clone_from(seats),
            _ => *self = Self::of_seats(Arc::clone(rows), seats.clone()),
        }
    }

    /// The seat indexes, if these labels were made from `rows`.
    pub(crate) fn seats_in(&self, rows: &Arc<[Row]>) -> Option<&[SeatIdx]> {
        match &self.0 {
            LabelsRepr::Seats { rows: own, seats } if Arc::ptr_eq(own, rows) => Some(seats),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            LabelsRepr::Strings(v) => v.len(),
            LabelsRepr::Seats { seats, .. } => seats.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The labels in order.
    pub fn iter(&self) -> impl Iterator<Item = Label<'_>> + '_ {
        let (strings, seats, rows): (&[String], &[SeatIdx], Option<&[Row]>) = match &self.0 {
            LabelsRepr::Strings(v) => (v, &[], None),
            LabelsRepr::Seats { rows, seats } => (&[], seats, Some(rows)),
        };
        strings
            .iter()
            .map(|s| Label(LabelRef::Str(s)))
            .chain(seats.iter().filter_map(move |&seat| Some(Label(LabelRef::Buf(LabelBuf::render(rows?, seat))))))
    }

    /// The labels as strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(|l| l.to_owned()).collect()
    }
}

impl From<Vec<String>> for SeatLabels {
    fn from(labels: Vec<String>) -> Self {
        Self(LabelsRepr::Strings(labels))
    }
}

impl PartialEq for SeatLabels {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other.iter()).all(|(a, b)| *a == *b)
    }
}

impl Eq for SeatLabels {}

impl std::hash::Hash for SeatLabels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for label in self.iter() {
            (*label).hash(state);
        }
    }
}

impl fmt::Debug for SeatLabels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for SeatLabels {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for SeatLabels {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(deserializer).map(Self::from)
    }
}

impl Items {
    pub fn quantity(&self) -> u32 {
        match self {
            Items::Seats { seats } => seats.len() as u32,
            Items::General { quantity, .. } => *quantity,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    Active,
    Purchased,
    Expired,
    Released,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Active => "active",
            HoldStatus::Purchased => "purchased",
            HoldStatus::Expired => "expired",
            HoldStatus::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => HoldStatus::Active,
            "purchased" => HoldStatus::Purchased,
            "expired" => HoldStatus::Expired,
            "released" => HoldStatus::Released,
            _ => return None,
        })
    }
}

/// One admission issued by a purchase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRecord {
    pub id: TicketId,
    pub section: String,
    /// The seat label; `None` for general admission.
    pub seat: Option<String>,
    pub price: i64,
    pub cancelled: bool,
}

/// How a purchase was paid; carried through to the journal untouched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// `stripe` or `test`.
    pub provider: String,
    /// The provider's id for the payment (a PaymentIntent id).
    pub reference: String,
    /// In minor units of `currency`.
    pub amount: i64,
    /// ISO 4217 code, e.g. `JPY`.
    pub currency: String,
    /// The service's record of the charge (its idempotency key), when it keeps
    /// one: the journal marks that record completed with the sale.
    #[serde(default)]
    pub charge_key: Option<String>,
}

/// A hold as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    pub id: HoldId,
    pub buyer: BuyerId,
    /// Shared with the inventory's copy: rendered once per hold.
    pub items: Arc<Items>,
    pub amount: i64,
    pub created_at: UnixMs,
    pub expires_at: UnixMs,
    pub status: HoldStatus,
    pub idempotency_key: Option<IdempotencyKey>,
    /// Fingerprint of the request that made the hold: a retry with the same key
    /// but a different request is refused rather than answered with the wrong hold.
    /// 0 for a hold made without a key.
    pub fingerprint: u64,
    /// Issued on purchase, one per seat or GA unit.
    pub tickets: Vec<TicketRecord>,
}

/// One state change of one event's inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    HoldCreated {
        hold: HoldRecord,
    },
    HoldPurchased {
        hold: HoldId,
        buyer: BuyerId,
        amount: i64,
        tickets: Vec<TicketRecord>,
        /// Boxed, so that a `Change` (and every answer carrying one), moved
        /// several times per hold, stays within 120 bytes (asserted below).
        payment: Option<Box<Payment>>,
        /// The hold had lapsed and its seats were taken again for this payment.
        retaken: bool,
        at: UnixMs,
    },
    HoldReleased {
        hold: HoldId,
        at: UnixMs,
    },
    HoldExpired {
        hold: HoldId,
        at: UnixMs,
    },
    TicketsCancelled {
        hold: HoldId,
        tickets: Vec<TicketId>,
        at: UnixMs,
    },
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Change>() <= 120);

impl Change {
    /// The hold this change is about.
    pub fn hold_id(&self) -> HoldId {
        match self {
            Change::HoldCreated { hold } => hold.id,
            Change::HoldPurchased { hold, .. }
            | Change::HoldReleased { hold, .. }
            | Change::HoldExpired { hold, .. }
            | Change::TicketsCancelled { hold, .. } => *hold,
        }
    }

    /// Stable name for logs, metrics and the outbox.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::HoldCreated { .. } => "hold:created",
            Change::HoldPurchased { .. } => "hold:purchased",
            Change::HoldReleased { .. } => "hold:released",
            Change::HoldExpired { .. } => "hold:expired",
            Change::TicketsCancelled { .. } => "ticket:cancelled",
        }
    }
}

/// A change addressed to its event: the unit the journal writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub event: EventId,
    /// The ownership epoch of the actor that made the change (the lease it was
    /// activated under; 0 without leases): the journal refuses a record whose epoch
    /// is no longer the event's, even from this node, so a stopped actor's late
    /// write cannot land after a newer activation loaded the event.
    #[serde(default)]
    pub epoch: i64,
    pub change: Change,
}

/// Applies a durable change to stored holds, as the database does.
pub fn apply(holds: &mut FxHashMap<HoldId, HoldRecord>, change: &Change) {
    match change {
        Change::HoldCreated { hold } => {
            holds.insert(hold.id, hold.clone());
        }
        other => {
            if let Some(h) = holds.get_mut(&other.hold_id()) {
                apply_to(h, other);
            }
        }
    }
}

/// Applies a durable change to the stored hold it is about; a creation (which
/// has no stored hold yet) changes nothing here.
pub fn apply_to(h: &mut HoldRecord, change: &Change) {
    match change {
        Change::HoldCreated { .. } => {}
        Change::HoldPurchased { tickets, .. } => {
            h.status = HoldStatus::Purchased;
            h.tickets = tickets.clone();
        }
        Change::HoldReleased { .. } => h.status = HoldStatus::Released,
        Change::HoldExpired { .. } => h.status = HoldStatus::Expired,
        Change::TicketsCancelled { tickets, .. } => {
            for t in h.tickets.iter_mut().filter(|t| tickets.contains(&t.id)) {
                t.cancelled = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seatmap::{Layout, grid};

    #[test]
    fn seat_labels_made_from_seats_equal_and_serialise_like_strings() {
        let layout = Layout::compile(&grid(1, 2, 12)).expect("valid map");
        let seats: SeatList = [0, 11, 12].into_iter().collect();
        let lazy = Items::Seats { seats: SeatLabels::of_seats(Arc::clone(&layout.rows), seats) };
        let strings = Items::Seats { seats: vec!["S0R0-1".into(), "S0R0-12".into(), "S0R1-1".into()].into() };
        assert_eq!(lazy, strings);
        let json = serde_json::to_string(&lazy).expect("serialises");
        assert_eq!(json, r#"{"kind":"seats","seats":["S0R0-1","S0R0-12","S0R1-1"]}"#);
        assert_eq!(serde_json::to_string(&strings).expect("serialises"), json);
        assert_eq!(serde_json::from_str::<Items>(&json).expect("parses"), lazy);
        assert_eq!(format!("{lazy:?}"), format!("{strings:?}"));
        let hash = |items: &Items| {
            use std::hash::{BuildHasher, BuildHasherDefault};
            BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(items)
        };
        assert_eq!(hash(&lazy), hash(&strings));
    }
}
