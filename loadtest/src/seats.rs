//! The generator's picture of the event: the seat map it uploads (`SeatPlan`)
//! and which seats it has seen taken (`SeatBoard`), so explicit picks look like a
//! buyer choosing free seats on a live seat map. The board only knows what this
//! generator was told; races between buyers picking the same free seat still
//! happen and are what the server must arbitrate.

use rand::Rng;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

/// Random probes for a free run of seats before falling back to best available.
const PICK_PROBES: usize = 16;
/// Below this share of seats the board believes free, explicit picks give way to best available.
const MIN_FREE_SHARE_FOR_PICKS: f64 = 0.05;

struct Row {
    label: String,
    seats: u32,
    /// Index of the row's first seat among all seats.
    first: u32,
    section: u32,
}

/// Seated sections of numbered rows: `sections` sections, rows of `per_row`
/// seats (the last row may be shorter), `seats` seats in all. Row labels are
/// `S{section}R{row}` (unique across the event), seats `S3R12-7`.
///
/// Or ([`SeatPlan::general`]) general-admission sections `GA 1`, `GA 2`… of
/// places without labels: no rows, and no seat index.
pub struct SeatPlan {
    rows: Vec<Row>,
    by_label: HashMap<String, u32>,
    sections: u32,
    capacity: u32,
    /// General admission: each section's places (empty for a seated plan).
    general: Vec<u32>,
}

/// Price tiers, best first: the front sections are dearer.
const TIERS: [(&str, i64); 3] = [("S", 15_000), ("A", 9_000), ("B", 5_000)];

impl SeatPlan {
    pub fn new(seats: u32, sections: u32, per_row: u32) -> Self {
        let seats = seats.max(1);
        let per_row = per_row.clamp(1, seats);
        let row_count = seats.div_ceil(per_row);
        let sections = sections.clamp(1, row_count);
        let rows_per_section = row_count.div_ceil(sections);
        let mut rows = Vec::with_capacity(row_count as usize);
        let mut by_label = HashMap::with_capacity(row_count as usize);
        for r in 0..row_count {
            let section = r / rows_per_section;
            let label = format!("S{}R{}", section + 1, r % rows_per_section + 1);
            let first = r * per_row;
            by_label.insert(label.clone(), r);
            rows.push(Row { label, seats: per_row.min(seats - first), first, section });
        }
        let sections = rows.last().map_or(1, |r| r.section + 1);
        Self { rows, by_label, sections, capacity: seats, general: Vec::new() }
    }

    /// `places` general-admission places split as evenly as possible over `sections`
    /// sections (the first ones get the remainder).
    pub fn general(places: u32, sections: u32) -> Self {
        let places = places.max(1);
        let sections = sections.clamp(1, places);
        let general = (0..sections).map(|s| places / sections + u32::from(s < places % sections)).collect();
        Self { rows: Vec::new(), by_label: HashMap::new(), sections, capacity: places, general }
    }

    /// General admission: places without labels, bought by quantity in a section.
    pub fn is_general(&self) -> bool {
        !self.general.is_empty()
    }

    /// The name of general-admission section `s` (as in the seat map).
    pub fn section_name(s: u32) -> String {
        format!("GA {}", s + 1)
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    pub fn sections(&self) -> u32 {
        self.sections
    }

    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// The seat map in the server's format.
    pub fn to_json(&self) -> Value {
        let tier_of = |section: u32| TIERS[(section as usize * TIERS.len()) / self.sections as usize].0;
        let tiers: Vec<Value> = TIERS.iter().map(|(code, price)| json!({"code": code, "price": price})).collect();
        if self.is_general() {
            let sections: Vec<Value> = (0..self.sections)
                .map(|s| {
                    let capacity = self.general[s as usize];
                    json!({"name": Self::section_name(s), "tier": tier_of(s), "kind": "general", "capacity": capacity})
                })
                .collect();
            return json!({"tiers": tiers, "sections": sections});
        }
        let sections: Vec<Value> = (0..self.sections)
            .map(|s| {
                let rows: Vec<Value> = self
                    .rows
                    .iter()
                    .filter(|r| r.section == s)
                    .map(|r| json!({"label": r.label, "seats": r.seats}))
                    .collect();
                json!({"name": format!("Section {}", s + 1), "tier": tier_of(s), "kind": "seated", "rows": rows})
            })
            .collect();
        json!({"tiers": tiers, "sections": sections})
    }

    fn row_of(&self, seat: u32) -> &Row {
        let i = self.rows.partition_point(|r| r.first <= seat) - 1;
        &self.rows[i]
    }

    pub fn label(&self, seat: u32) -> String {
        let row = self.row_of(seat);
        format!("{}-{}", row.label, seat - row.first + 1)
    }

    pub fn index(&self, label: &str) -> Option<u32> {
        let (row, number) = label.rsplit_once('-')?;
        let row = &self.rows[*self.by_label.get(row)? as usize];
        let number: u32 = number.parse().ok()?;
        (1..=row.seats).contains(&number).then(|| row.first + number - 1)
    }
}

/// Seats this generator has seen held or sold.
pub struct SeatBoard {
    taken: Vec<AtomicBool>,
    count: AtomicUsize,
}

impl SeatBoard {
    pub fn new(capacity: u32) -> Self {
        Self { taken: (0..capacity).map(|_| AtomicBool::new(false)).collect(), count: AtomicUsize::new(0) }
    }

    pub fn mark(&self, seat: u32) {
        if let Some(s) = self.taken.get(seat as usize)
            && !s.swap(true, Relaxed)
        {
            self.count.fetch_add(1, Relaxed);
        }
    }

    pub fn unmark(&self, seat: u32) {
        if let Some(s) = self.taken.get(seat as usize)
            && s.swap(false, Relaxed)
        {
            self.count.fetch_sub(1, Relaxed);
        }
    }

    fn is_free(&self, seat: u32) -> bool {
        !self.taken[seat as usize].load(Relaxed)
    }

    /// `quantity` side-by-side seats that look free, or `None` (then ask for best available).
    pub fn pick(&self, plan: &SeatPlan, quantity: u32, rng: &mut impl Rng) -> Option<Vec<String>> {
        let capacity = self.taken.len();
        let free_share = 1.0 - self.count.load(Relaxed) as f64 / capacity as f64;
        if free_share < MIN_FREE_SHARE_FOR_PICKS {
            return None;
        }
        for _ in 0..PICK_PROBES {
            let start = rng.random_range(0..capacity as u32);
            let row = plan.row_of(start);
            if start + quantity > row.first + row.seats {
                continue;
            }
            if (start..start + quantity).all(|s| self.is_free(s)) {
                return Some((start..start + quantity).map(|s| plan.label(s)).collect());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn plan_covers_every_seat_once_with_unique_labels() {
        let plan = SeatPlan::new(20_000, 10, 50);
        assert_eq!(plan.capacity(), 20_000);
        assert_eq!(plan.rows(), 400);
        assert_eq!(plan.sections(), 10);
        for seat in [0, 49, 50, 12_345, 19_999] {
            assert_eq!(plan.index(&plan.label(seat)), Some(seat));
        }
        assert_eq!(plan.label(0), "S1R1-1");
        assert_eq!(plan.index("S1R1-51"), None);
        assert_eq!(plan.index("nope"), None);
        let odd = SeatPlan::new(1_003, 3, 50);
        assert_eq!(odd.label(1_002), "S3R7-3");
        let map = odd.to_json();
        let seats: u64 = map["sections"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["rows"].as_array().unwrap().iter().map(|r| r["seats"].as_u64().unwrap()))
            .sum();
        assert_eq!(seats, 1_003);
    }

    #[test]
    fn general_admission_splits_the_places_over_its_sections() {
        let plan = SeatPlan::general(1_003, 4);
        assert!(plan.is_general());
        assert_eq!((plan.capacity(), plan.sections(), plan.rows()), (1_003, 4, 0));
        let map = plan.to_json();
        let sections = map["sections"].as_array().unwrap();
        let capacities: Vec<u64> = sections.iter().map(|s| s["capacity"].as_u64().unwrap()).collect();
        assert_eq!(capacities, [251, 251, 251, 250]);
        assert!(sections.iter().all(|s| s["kind"] == "general"));
        assert_eq!(sections[3]["name"], SeatPlan::section_name(3));
        assert_eq!(plan.index("GA 1-1"), None);
        assert_eq!(SeatPlan::general(2, 4).sections(), 2);
        assert!(!SeatPlan::new(100, 2, 10).is_general());
    }

    #[test]
    fn picks_are_adjacent_free_seats_in_one_row() {
        let plan = SeatPlan::new(200, 2, 10);
        let board = SeatBoard::new(200);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for _ in 0..20 {
            let seats = board.pick(&plan, 4, &mut rng).expect("plenty free");
            let idx: Vec<u32> = seats.iter().map(|s| plan.index(s).unwrap()).collect();
            assert!(idx.windows(2).all(|w| w[1] == w[0] + 1));
            assert_eq!(seats[0].rsplit_once('-').unwrap().0, seats[3].rsplit_once('-').unwrap().0);
            idx.iter().for_each(|&s| board.mark(s));
        }
        (0..200).for_each(|s| board.mark(s));
        assert!(board.pick(&plan, 1, &mut rng).is_none());
    }
}
