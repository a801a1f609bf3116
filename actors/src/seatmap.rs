//! Seat maps: what an organizer uploads (`SeatMap`) and the compact layout the
//! inventory works on (`Layout`).
//!
//! A map is a list of price tiers (best first) and sections (best first). A section
//! is either seated — rows of consecutively numbered seats — or general admission
//! with a capacity. A seat's label is `{row}-{number}` (`A-12`), so row labels are
//! unique across the event and a label finds its seat without a per-seat string.
//! The layout keeps no per-seat strings, only a 2-byte row index per seat
//! (`seat_rows`), and the inventory adds 4 bytes of state per seat (the slot of
//! the hold that has it), so a large map costs a few bytes per seat.
//! `Layout::compile` never panics, whatever the input.
//!
//! This file is one piece on purpose: the input format, its validation, the
//! compiled `Layout` and the label scheme are one contract (the row-label rules
//! `compile` enforces, such as no `-`, are what let `{row}-{number}` parse back to
//! its seat), and `SeatList` is the layout's own seat-index list. Its tests, at
//! the end, are about a fifth of it.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Most seats (and GA capacity) one event may have.
pub const MAX_EVENT_CAPACITY: u64 = 1_000_000;
/// Most sections, rows or tiers a map may list.
pub const MAX_SECTIONS: usize = 1_000;
pub const MAX_ROWS: usize = 100_000;
pub const MAX_TIERS: usize = 64;
/// Longest section name, row label or tier code.
pub const MAX_NAME_LEN: usize = 64;
/// Highest tier price, in minor units (10^12: ten billion in a two-decimal
/// currency). With at most `MAX_UNITS_PER_HOLD` places a hold, an amount can
/// never overflow `i64`.
pub const MAX_PRICE: i64 = 1_000_000_000_000;

/// The seat map as an organizer writes it (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatMap {
    /// Price tiers, best first; "best available" prefers earlier tiers.
    pub tiers: Vec<PriceTier>,
    /// Sections, best first within a tier.
    pub sections: Vec<SectionSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTier {
    pub code: String,
    /// Minor units of the event's currency.
    pub price: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionSpec {
    pub name: String,
    /// The tier code of every row that does not name its own.
    pub tier: String,
    #[serde(flatten)]
    pub kind: SectionKindSpec,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SectionKindSpec {
    Seated { rows: Vec<RowSpec> },
    General { capacity: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowSpec {
    /// Unique across the event: `A`, `BA`, `FL3`.
    pub label: String,
    /// Number of seats, numbered `first, first+1, …`.
    pub seats: u32,
    #[serde(default = "default_first_seat")]
    pub first: u32,
    /// Overrides the section's tier for this row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
}

fn default_first_seat() -> u32 {
    1
}

/// Why a seat map was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeatMapError {
    #[error("the seat map has no sections")]
    Empty,
    #[error("the seat map lists no price tiers")]
    NoTiers,
    #[error("too many {what} (at most {max})")]
    TooMany { what: &'static str, max: u64 },
    #[error(
        "name {0:?} must be 1-64 characters of letters, digits, space, '_' or '.', and row labels cannot contain '-' or spaces"
    )]
    BadName(String),
    #[error("tier {0:?} is listed twice")]
    DuplicateTier(String),
    #[error("section {0:?} is listed twice")]
    DuplicateSection(String),
    #[error("row label {0:?} is used twice; row labels are unique across the event")]
    DuplicateRow(String),
    #[error("tier {0:?} is not in the tier list")]
    UnknownTier(String),
    #[error("tier {0:?} has a price outside 0 to {MAX_PRICE} minor units")]
    PriceOutOfRange(String),
    #[error("row {0:?} has no seats or numbers past the limit")]
    BadRow(String),
    #[error("section {0:?} has no capacity")]
    EmptySection(String),
}

/// Index of a seat in the layout's flat seat array.
pub type SeatIdx = u32;

/// Seats kept inline by a [`SeatList`]: most holds are for 1 to 4 seats.
const INLINE_SEATS: usize = 4;

/// A hold's seats: up to [`INLINE_SEATS`] inline, more on the heap, so the common
/// hold allocates nothing for its seats.
#[derive(Clone, Debug)]
pub(crate) enum SeatList {
    Inline { len: u8, seats: [SeatIdx; INLINE_SEATS] },
    Heap(Vec<SeatIdx>),
}

impl SeatList {
    pub(crate) const fn new() -> Self {
        SeatList::Inline { len: 0, seats: [0; INLINE_SEATS] }
    }

    pub(crate) fn one(seat: SeatIdx) -> Self {
        SeatList::Inline { len: 1, seats: [seat, 0, 0, 0] }
    }

    pub(crate) fn push(&mut self, seat: SeatIdx) {
        match self {
            SeatList::Inline { len, seats } if usize::from(*len) < INLINE_SEATS => {
                seats[usize::from(*len)] = seat;
                *len += 1;
            }
            SeatList::Inline { seats, .. } => {
                let mut heap = Vec::with_capacity(INLINE_SEATS * 2);
                heap.extend_from_slice(seats);
                heap.push(seat);
                *self = SeatList::Heap(heap);
            }
            SeatList::Heap(heap) => heap.push(seat),
        }
    }
}

impl std::ops::Deref for SeatList {
    type Target = [SeatIdx];
    fn deref(&self) -> &[SeatIdx] {
        match self {
            SeatList::Inline { len, seats } => &seats[..usize::from(*len)],
            SeatList::Heap(heap) => heap,
        }
    }
}

impl PartialEq for SeatList {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for SeatList {}

impl FromIterator<SeatIdx> for SeatList {
    fn from_iter<I: IntoIterator<Item = SeatIdx>>(iter: I) -> Self {
        let mut list = SeatList::new();
        for seat in iter {
            list.push(seat);
        }
        list
    }
}

impl<'a> IntoIterator for &'a SeatList {
    type Item = &'a SeatIdx;
    type IntoIter = std::slice::Iter<'a, SeatIdx>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// A row in the compiled layout: a contiguous range of seat indexes.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub label: Box<str>,
    pub section: u16,
    pub tier: u16,
    /// Number printed on the first seat.
    pub first: u32,
    /// Index of the first seat in the flat seat array.
    pub start: SeatIdx,
    pub len: u32,
}

#[derive(Clone, Debug)]
pub(crate) enum SectionKind {
    /// Rows `rows.0 .. rows.1` of the layout.
    Seated {
        rows: (u32, u32),
    },
    General {
        capacity: u32,
        price: i64,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Section {
    pub name: Box<str>,
    pub tier: u16,
    pub kind: SectionKind,
}

/// A validated seat map in the form the inventory uses.
#[derive(Clone, Debug)]
pub struct Layout {
    pub(crate) tiers: Vec<(Box<str>, i64)>,
    pub(crate) sections: Vec<Section>,
    /// Shared with the seat labels of holds (see [`crate::record::SeatLabels`]),
    /// which render from it when read.
    pub(crate) rows: Arc<[Row]>,
    pub(crate) row_by_label: FxHashMap<Box<str>, u32>,
    pub(crate) section_by_name: FxHashMap<Box<str>, u16>,
    pub(crate) seat_count: u32,
    /// Seated sections ordered best first: by tier rank, then map order.
    pub(crate) preference: Vec<u16>,
    /// Per seat, its row: every hold and release looks it up (row free counts,
    /// section tallies), so it is a table read rather than a binary search over
    /// the rows. 2 bytes a seat; empty for maps of more than 65,536 rows, which
    /// search instead.
    pub(crate) seat_rows: Vec<u16>,
}

fn valid_name(name: &str, is_row: bool) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.trim() == name
        && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.' || (!is_row && (c == ' ' || c == '-')))
}

/// `label.rsplit_once('-')` with the part after the dash parsed as `u32::from_str`
/// would. The usual label (`A-12`: 1 to 9 digits after the last dash) is read in
/// one pass without the generic parser; anything else takes the generic path.
fn split_label(label: &str) -> Option<(&str, u32)> {
    let bytes = label.as_bytes();
    let digits = bytes.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if (1..=9).contains(&digits) && bytes.len() > digits && bytes[bytes.len() - digits - 1] == b'-' {
        let dash = bytes.len() - digits - 1;
        // At most 9 digits: no overflow.
        let number = bytes[dash + 1..].iter().fold(0u32, |n, b| n * 10 + u32::from(b - b'0'));
        return Some((&label[..dash], number));
    }
    let (row, number) = label.rsplit_once('-')?;
    Some((row, number.parse().ok()?))
}

impl Layout {
    /// Validates and compiles a seat map. Never panics, whatever the input.
    pub fn compile(map: &SeatMap) -> Result<Self, SeatMapError> {
        if map.tiers.is_empty() {
            return Err(SeatMapError::NoTiers);
        }
        if map.sections.is_empty() {
            return Err(SeatMapError::Empty);
        }
        if map.tiers.len() > MAX_TIERS {
            return Err(SeatMapError::TooMany { what: "tiers", max: MAX_TIERS as u64 });
        }
        if map.sections.len() > MAX_SECTIONS {
            return Err(SeatMapError::TooMany { what: "sections", max: MAX_SECTIONS as u64 });
        }
        let mut tier_by_code: FxHashMap<&str, u16> = FxHashMap::default();
        let mut tiers = Vec::with_capacity(map.tiers.len());
        for (i, tier) in map.tiers.iter().enumerate() {
            if !valid_name(&tier.code, false) {
                return Err(SeatMapError::BadName(tier.code.clone()));
            }
            if !(0..=MAX_PRICE).contains(&tier.price) {
                return Err(SeatMapError::PriceOutOfRange(tier.code.clone()));
            }
            if tier_by_code.insert(&tier.code, i as u16).is_some() {
                return Err(SeatMapError::DuplicateTier(tier.code.clone()));
            }
            tiers.push((tier.code.as_str().into(), tier.price));
        }
        let tier_of =
            |code: &str| tier_by_code.get(code).copied().ok_or_else(|| SeatMapError::UnknownTier(code.to_owned()));

        let mut sections = Vec::with_capacity(map.sections.len());
        let mut section_by_name = FxHashMap::default();
        let mut rows: Vec<Row> = Vec::new();
        let mut row_by_label = FxHashMap::default();
        let mut seats: u64 = 0;
        let mut capacity: u64 = 0;
        for (s, spec) in map.sections.iter().enumerate() {
            if !valid_name(&spec.name, false) {
                return Err(SeatMapError::BadName(spec.name.clone()));
            }
            if section_by_name.insert(Box::<str>::from(spec.name.as_str()), s as u16).is_some() {
                return Err(SeatMapError::DuplicateSection(spec.name.clone()));
            }
            let tier = tier_of(&spec.tier)?;
            let kind = match &spec.kind {
                SectionKindSpec::General { capacity: cap } => {
                    if *cap == 0 {
                        return Err(SeatMapError::EmptySection(spec.name.clone()));
                    }
                    capacity += u64::from(*cap);
                    SectionKind::General { capacity: *cap, price: tiers[tier as usize].1 }
                }
                SectionKindSpec::Seated { rows: row_specs } => {
                    if row_specs.is_empty() {
                        return Err(SeatMapError::EmptySection(spec.name.clone()));
                    }
                    let begin = rows.len() as u32;
                    for row in row_specs {
                        if rows.len() >= MAX_ROWS {
                            return Err(SeatMapError::TooMany { what: "rows", max: MAX_ROWS as u64 });
                        }
                        if !valid_name(&row.label, true) {
                            return Err(SeatMapError::BadName(row.label.clone()));
                        }
                        if row.seats == 0 || row.first.checked_add(row.seats).is_none() {
                            return Err(SeatMapError::BadRow(row.label.clone()));
                        }
                        let row_tier = match &row.tier {
                            Some(code) => tier_of(code)?,
                            None => tier,
                        };
                        if u64::from(row.seats) + seats + capacity > MAX_EVENT_CAPACITY {
                            return Err(SeatMapError::TooMany { what: "seats", max: MAX_EVENT_CAPACITY });
                        }
                        let label: Box<str> = row.label.as_str().into();
                        if row_by_label.insert(label.clone(), rows.len() as u32).is_some() {
                            return Err(SeatMapError::DuplicateRow(row.label.clone()));
                        }
                        rows.push(Row {
                            label,
                            section: s as u16,
                            tier: row_tier,
                            first: row.first,
                            start: seats as u32,
                            len: row.seats,
                        });
                        seats += u64::from(row.seats);
                    }
                    SectionKind::Seated { rows: (begin, rows.len() as u32) }
                }
            };
            if seats + capacity > MAX_EVENT_CAPACITY {
                return Err(SeatMapError::TooMany { what: "seats", max: MAX_EVENT_CAPACITY });
            }
            sections.push(Section { name: spec.name.as_str().into(), tier, kind });
        }
        let mut preference: Vec<u16> = (0..sections.len() as u16)
            .filter(|&s| matches!(sections[s as usize].kind, SectionKind::Seated { .. }))
            .collect();
        preference.sort_by_key(|&s| (sections[s as usize].tier, s));
        let seat_rows = if rows.len() <= usize::from(u16::MAX) + 1 {
            let mut seat_rows = Vec::with_capacity(seats as usize);
            for (r, row) in rows.iter().enumerate() {
                seat_rows.resize(seat_rows.len() + row.len as usize, r as u16);
            }
            seat_rows
        } else {
            Vec::new()
        };
        Ok(Self {
            seat_rows,
            tiers,
            sections,
            rows: rows.into(),
            row_by_label,
            section_by_name,
            seat_count: seats as u32,
            preference,
        })
    }

    /// Number of reserved seats (GA capacity not included).
    pub fn seat_count(&self) -> u32 {
        self.seat_count
    }

    /// Finds a seat by its label (`A-12`).
    pub fn seat_by_label(&self, label: &str) -> Option<SeatIdx> {
        let (row, number) = split_label(label)?;
        let row = &self.rows[*self.row_by_label.get(row)? as usize];
        let offset = number.checked_sub(row.first)?;
        (offset < row.len).then_some(row.start + offset)
    }

    /// Index of the row a seat is in (rows are sorted by `start`).
    pub(crate) fn row_index(&self, seat: SeatIdx) -> usize {
        match self.seat_rows.get(seat as usize) {
            Some(&r) => usize::from(r),
            None => self.rows.partition_point(|r| r.start <= seat) - 1,
        }
    }

    /// The row a seat is in.
    pub(crate) fn row_of(&self, seat: SeatIdx) -> &Row {
        &self.rows[self.row_index(seat)]
    }

    /// The label of a seat; `seat` must be in range.
    pub fn label(&self, seat: SeatIdx) -> String {
        LabelBuf::render(&self.rows, seat).as_str().to_owned()
    }

    pub(crate) fn price_of_seat(&self, seat: SeatIdx) -> i64 {
        self.tiers[self.row_of(seat).tier as usize].1
    }

    pub(crate) fn section_of_seat(&self, seat: SeatIdx) -> u16 {
        self.row_of(seat).section
    }

    pub fn section_name(&self, section: u16) -> &str {
        &self.sections[section as usize].name
    }

    pub fn section_by_name(&self, name: &str) -> Option<u16> {
        self.section_by_name.get(name).copied()
    }

    /// Capacity of a section: its seats, or its GA capacity.
    pub fn section_capacity(&self, section: u16) -> u32 {
        match &self.sections[section as usize].kind {
            SectionKind::Seated { rows } => self.rows[rows.0 as usize..rows.1 as usize].iter().map(|r| r.len).sum(),
            SectionKind::General { capacity, .. } => *capacity,
        }
    }

    /// Total capacity: seats plus GA capacity.
    pub fn capacity(&self) -> u64 {
        (0..self.sections.len() as u16).map(|s| u64::from(self.section_capacity(s))).sum()
    }

    /// Heap bytes the layout itself uses (for the memory figures).
    pub fn heap_bytes(&self) -> usize {
        let rows = self.rows.len() * std::mem::size_of::<Row>()
            + self.rows.iter().map(|r| r.label.len()).sum::<usize>() * 2
            + self.row_by_label.capacity() * (std::mem::size_of::<(Box<str>, u32)>() + 1);
        let sections = self.sections.capacity() * std::mem::size_of::<Section>()
            + self.section_by_name.capacity() * (std::mem::size_of::<(Box<str>, u16)>() + 1);
        rows + sections + self.preference.capacity() * 2 + self.seat_rows.capacity() * 2
    }
}

/// A seat label (`{row}-{number}`) rendered on the stack: labels are read far
/// more often than kept, and this way reading one allocates nothing.
pub(crate) struct LabelBuf {
    bytes: [u8; MAX_NAME_LEN + 1 + 10],
    len: usize,
}

impl LabelBuf {
    /// `seat`'s label; `seat` must be in range of `rows`.
    pub(crate) fn render(rows: &[Row], seat: SeatIdx) -> Self {
        let row = &rows[rows.partition_point(|r| r.start <= seat) - 1];
        let mut buf = LabelBuf { bytes: [0; MAX_NAME_LEN + 1 + 10], len: 0 };
        // Row labels are at most MAX_NAME_LEN bytes (checked by `compile`).
        let label = &row.label.as_bytes()[..row.label.len().min(MAX_NAME_LEN)];
        buf.bytes[..label.len()].copy_from_slice(label);
        buf.bytes[label.len()] = b'-';
        let mut digits = [0u8; 10];
        let number = decimal(row.first + (seat - row.start), &mut digits);
        let start = label.len() + 1;
        buf.bytes[start..start + number.len()].copy_from_slice(number);
        buf.len = start + number.len();
        buf
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// The decimal digits of `n`, as `write!` prints them, written into the end of `digits`.
pub(crate) fn decimal(mut n: u32, digits: &mut [u8; 10]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[at..];
        }
    }
}

/// A seated map for tests and benches: `sections` sections of `rows` rows of
/// `seats_per_row` seats, each section its own tier.
pub fn grid(sections: u32, rows: u32, seats_per_row: u32) -> SeatMap {
    let tiers =
        (0..sections).map(|s| PriceTier { code: format!("T{s}"), price: 10_000 - i64::from(s) * 1_000 }).collect();
    let sections = (0..sections)
        .map(|s| SectionSpec {
            name: format!("S{s}"),
            tier: format!("T{s}"),
            kind: SectionKindSpec::Seated {
                rows: (0..rows)
                    .map(|r| RowSpec { label: format!("S{s}R{r}"), seats: seats_per_row, first: 1, tier: None })
                    .collect(),
            },
        })
        .collect();
    SeatMap { tiers, sections }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_json(json: &str) -> SeatMap {
        serde_json::from_str(json).expect("valid json")
    }

    #[test]
    fn split_label_agrees_with_rsplit_and_parse() {
        fn generic(l: &str) -> Option<(&str, u32)> {
            l.rsplit_once('-').and_then(|(r, n)| Some((r, n.parse::<u32>().ok()?)))
        }
        for l in [
            "A-12",
            "S0R0-25",
            "A-0",
            "A-0012",
            "A-",
            "-5",
            "5",
            "A",
            "",
            "A-+5",
            "A-4294967295",
            "A-4294967296",
            "A-999999999",
            "A-1234567890",
            "A--3",
            "A-3-4",
            "é-3",
            "A-3é",
            "A- 3",
            "A-12a",
            "AB-C-123456789",
        ] {
            assert_eq!(split_label(l), generic(l), "{l:?}");
        }
    }

    #[test]
    fn compiles_seated_and_general_sections_from_json() {
        let map = map_json(
            r#"{"tiers":[{"code":"S","price":12000},{"code":"A","price":8000}],
                "sections":[
                  {"name":"Floor","tier":"S","kind":"seated","rows":[{"label":"A","seats":10},{"label":"B","seats":12,"first":101,"tier":"A"}]},
                  {"name":"Standing","tier":"A","kind":"general","capacity":500}]}"#,
        );
        let layout = Layout::compile(&map).unwrap();
        assert_eq!(layout.seat_count(), 22);
        assert_eq!(layout.capacity(), 522);
        let b101 = layout.seat_by_label("B-101").unwrap();
        assert_eq!(layout.label(b101), "B-101");
        assert_eq!(layout.price_of_seat(b101), 8000);
        assert_eq!(layout.price_of_seat(layout.seat_by_label("A-1").unwrap()), 12000);
        assert_eq!(layout.seat_by_label("A-11"), None);
        assert_eq!(layout.seat_by_label("B-100"), None);
        assert_eq!(layout.seat_by_label("Z-1"), None);
        assert_eq!(layout.seat_by_label("A-"), None);
        assert_eq!(layout.seat_by_label("A--1"), None);
        assert_eq!(layout.section_capacity(1), 500);
    }

    #[test]
    fn refuses_bad_maps_with_specific_errors() {
        let mut map = grid(1, 2, 5);
        map.sections[0].tier = "nope".into();
        assert_eq!(Layout::compile(&map).unwrap_err(), SeatMapError::UnknownTier("nope".into()));

        let mut map = grid(2, 1, 5);
        if let SectionKindSpec::Seated { rows } = &mut map.sections[1].kind {
            rows[0].label = "S0R0".into();
        }
        assert_eq!(Layout::compile(&map).unwrap_err(), SeatMapError::DuplicateRow("S0R0".into()));

        let mut map = grid(1, 1, 5);
        if let SectionKindSpec::Seated { rows } = &mut map.sections[0].kind {
            rows[0].label = "A-1".into();
        }
        assert!(matches!(Layout::compile(&map), Err(SeatMapError::BadName(_))));

        let mut map = grid(1, 1, 5);
        map.tiers[0].price = -1;
        assert!(matches!(Layout::compile(&map), Err(SeatMapError::PriceOutOfRange(_))));
        map.tiers[0].price = MAX_PRICE + 1;
        assert!(matches!(Layout::compile(&map), Err(SeatMapError::PriceOutOfRange(_))));
        map.tiers[0].price = MAX_PRICE;
        assert!(Layout::compile(&map).is_ok());

        let mut map = grid(1, 1, 5);
        if let SectionKindSpec::Seated { rows } = &mut map.sections[0].kind {
            rows[0].first = u32::MAX;
        }
        assert!(matches!(Layout::compile(&map), Err(SeatMapError::BadRow(_))));

        let map = grid(1, 2_000, 1_000);
        assert!(matches!(Layout::compile(&map), Err(SeatMapError::TooMany { what: "seats", .. })));

        assert_eq!(Layout::compile(&SeatMap { tiers: vec![], sections: vec![] }).unwrap_err(), SeatMapError::NoTiers);
    }

    #[test]
    fn best_sections_come_first_by_tier_then_map_order() {
        let mut map = grid(3, 1, 4);
        map.sections[0].tier = "T2".into();
        let layout = Layout::compile(&map).unwrap();
        assert_eq!(layout.preference, vec![1, 0, 2], "tier 1 first, then the tier-2 sections in map order");
    }
}
