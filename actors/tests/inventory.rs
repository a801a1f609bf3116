//! Scenario tests of `SeatInventory`: each operation's answers and errors.

use boxoffice_actors::inventory::RestoreError;
use boxoffice_actors::seatmap::{PriceTier, RowSpec, SectionKindSpec, SectionSpec, grid};
use boxoffice_actors::*;

const T0: UnixMs = UnixMs(1_000_000);

fn window() -> SalesWindow {
    SalesWindow { opens_at: T0, closes_at: T0.plus_ms(86_400_000), per_buyer_limit: 6, hold_ttl_ms: 60_000 }
}

fn inventory(map: SeatMap) -> SeatInventory {
    SeatInventory::new(Layout::compile(&map).unwrap(), window())
}

fn seats(labels: &[&str]) -> Selection {
    Selection::Seats { seats: labels.iter().map(|s| s.to_string()).collect() }
}

/// Runs an operation and settles its change as durable.
fn commit<T>(
    inv: &mut SeatInventory,
    op: impl FnOnce(&mut SeatInventory) -> Result<Outcome<T>, InventoryError>,
    now: UnixMs,
) -> Result<Settled, InventoryError> {
    match op(inv)? {
        Outcome::Pending(change) => Ok(inv.settle(change.hold_id(), true, now).expect("pending change")),
        Outcome::Unchanged(_) => panic!("expected a change"),
    }
}

fn hold(inv: &mut SeatInventory, buyer: BuyerId, sel: &Selection, now: UnixMs) -> Result<HoldView, InventoryError> {
    match commit(inv, |i| i.hold(HoldId::new(), buyer, sel, None, now), now)? {
        Settled::Created(v) => Ok(v),
        other => panic!("unexpected {other:?}"),
    }
}

fn buy(inv: &mut SeatInventory, h: &HoldView, now: UnixMs) -> Result<Sale, InventoryError> {
    match commit(inv, |i| i.purchase(h.id, h.buyer, None, TicketId::new, now), now)? {
        Settled::Purchased(s) => Ok(*s),
        other => panic!("unexpected {other:?}"),
    }
}

fn labels(h: &HoldView) -> Vec<String> {
    match h.items.as_ref() {
        Items::Seats { seats } => seats.to_vec(),
        Items::General { .. } => vec![],
    }
}

#[test]
fn explicit_seats_are_held_once_and_priced_by_tier() {
    let mut inv = inventory(grid(2, 3, 10));
    let (a, b) = (BuyerId::new(), BuyerId::new());
    let h = hold(&mut inv, a, &seats(&["S0R0-5", "S1R2-1"]), T0).unwrap();
    assert_eq!(h.amount, 10_000 + 9_000);
    assert_eq!(h.expires_at, T0.plus_ms(60_000));
    assert_eq!(
        hold(&mut inv, b, &seats(&["S0R0-4", "S0R0-5"]), T0).unwrap_err(),
        InventoryError::SeatsTaken(vec!["S0R0-5".into()])
    );
    assert_eq!(inv.counts(), Counts { capacity: 60, available: 58, held: 2, sold: 0, blocked: 0 });
    inv.check_invariants().unwrap();
}

#[test]
fn bad_selections_are_refused_without_changing_anything() {
    let mut inv = inventory(grid(1, 2, 10));
    let a = BuyerId::new();
    let before = inv.counts();
    assert_eq!(hold(&mut inv, a, &seats(&["ZZ-1"]), T0).unwrap_err(), InventoryError::UnknownSeat("ZZ-1".into()));
    assert_eq!(hold(&mut inv, a, &seats(&["S0R0-11"]), T0).unwrap_err(), InventoryError::UnknownSeat("S0R0-11".into()));
    assert_eq!(
        hold(&mut inv, a, &seats(&["S0R0-1", "S0R0-1"]), T0).unwrap_err(),
        InventoryError::DuplicateSeat("S0R0-1".into())
    );
    assert_eq!(hold(&mut inv, a, &seats(&[]), T0).unwrap_err(), InventoryError::BadQuantity);
    let many = Selection::BestAvailable { quantity: 1000, section: None, allow_split: true };
    assert_eq!(hold(&mut inv, a, &many, T0).unwrap_err(), InventoryError::BadQuantity);
    let nowhere = Selection::BestAvailable { quantity: 2, section: Some("Balcony".into()), allow_split: false };
    assert_eq!(hold(&mut inv, a, &nowhere, T0).unwrap_err(), InventoryError::UnknownSection("Balcony".into()));
    let ga = Selection::General { quantity: 1, section: Some("S0".into()) };
    assert!(matches!(hold(&mut inv, a, &ga, T0).unwrap_err(), InventoryError::WrongSectionKind(..)));
    assert_eq!(inv.counts(), before);
    inv.check_invariants().unwrap();
}

#[test]
fn sales_window_opens_and_closes() {
    let mut inv = inventory(grid(1, 1, 10));
    let a = BuyerId::new();
    assert_eq!(
        hold(&mut inv, a, &seats(&["S0R0-1"]), T0.plus_ms(-1)).unwrap_err(),
        InventoryError::NotOpenYet { opens_at: T0 }
    );
    assert!(hold(&mut inv, a, &seats(&["S0R0-1"]), T0).is_ok());
    let close = window().closes_at;
    assert_eq!(hold(&mut inv, a, &seats(&["S0R0-2"]), close).unwrap_err(), InventoryError::SalesClosed);
}

#[test]
fn per_buyer_limit_counts_held_and_sold() {
    let mut inv = inventory(grid(1, 2, 10));
    let a = BuyerId::new();
    let h = hold(&mut inv, a, &seats(&["S0R0-1", "S0R0-2", "S0R0-3"]), T0).unwrap();
    buy(&mut inv, &h, T0).unwrap();
    hold(&mut inv, a, &seats(&["S0R0-4", "S0R0-5"]), T0).unwrap();
    assert_eq!(
        hold(&mut inv, a, &seats(&["S0R0-6", "S0R0-7"]), T0).unwrap_err(),
        InventoryError::LimitExceeded { limit: 6, current: 5 }
    );
    hold(&mut inv, a, &seats(&["S0R0-6"]), T0).unwrap();
    assert_eq!(inv.buyer_units(a), 6);
    // Someone else is unaffected.
    hold(&mut inv, BuyerId::new(), &seats(&["S0R0-7"]), T0).unwrap();
}

#[test]
fn best_available_picks_adjacent_seats_near_the_centre_of_the_best_row() {
    let mut inv = inventory(grid(2, 3, 10));
    let a = BuyerId::new();
    let best2 = Selection::BestAvailable { quantity: 2, section: None, allow_split: false };
    let h = hold(&mut inv, a, &best2, T0).unwrap();
    assert_eq!(labels(&h), ["S0R0-5", "S0R0-6"]);
    let h = hold(&mut inv, a, &best2, T0).unwrap();
    assert_eq!(labels(&h), ["S0R0-3", "S0R0-4"]);
    let best4 = Selection::BestAvailable { quantity: 4, section: None, allow_split: false };
    let h = hold(&mut inv, BuyerId::new(), &best4, T0).unwrap();
    assert_eq!(labels(&h), ["S0R0-7", "S0R0-8", "S0R0-9", "S0R0-10"], "rest of row 0 still has 4 together");
    let h = hold(&mut inv, BuyerId::new(), &best4, T0).unwrap();
    assert_eq!(labels(&h), ["S0R1-4", "S0R1-5", "S0R1-6", "S0R1-7"]);
    let in_s1 = Selection::BestAvailable { quantity: 3, section: Some("S1".into()), allow_split: false };
    let h = hold(&mut inv, BuyerId::new(), &in_s1, T0).unwrap();
    assert_eq!(labels(&h), ["S1R0-4", "S1R0-5", "S1R0-6"]);
    inv.check_invariants().unwrap();
}

#[test]
fn best_available_splits_only_when_allowed() {
    // One row of 4 with the middle taken: 2 free seats, not adjacent.
    let map = SeatMap {
        tiers: vec![PriceTier { code: "A".into(), price: 100 }],
        sections: vec![SectionSpec {
            name: "Hall".into(),
            tier: "A".into(),
            kind: SectionKindSpec::Seated { rows: vec![RowSpec { label: "A".into(), seats: 3, first: 1, tier: None }] },
        }],
    };
    let mut inv = inventory(map);
    hold(&mut inv, BuyerId::new(), &seats(&["A-2"]), T0).unwrap();
    let two = Selection::BestAvailable { quantity: 2, section: None, allow_split: false };
    assert_eq!(hold(&mut inv, BuyerId::new(), &two, T0).unwrap_err(), InventoryError::NoAdjacentSeats(2));
    let split = Selection::BestAvailable { quantity: 2, section: None, allow_split: true };
    assert_eq!(labels(&hold(&mut inv, BuyerId::new(), &split, T0).unwrap()), ["A-1", "A-3"]);
    assert_eq!(hold(&mut inv, BuyerId::new(), &split, T0).unwrap_err(), InventoryError::SoldOut);
}

#[test]
fn general_admission_never_exceeds_capacity() {
    let map = SeatMap {
        tiers: vec![PriceTier { code: "GA".into(), price: 5000 }],
        sections: vec![SectionSpec {
            name: "Floor".into(),
            tier: "GA".into(),
            kind: SectionKindSpec::General { capacity: 5 },
        }],
    };
    let mut inv = inventory(map);
    let ga = |n| Selection::General { quantity: n, section: None };
    let h = hold(&mut inv, BuyerId::new(), &ga(3), T0).unwrap();
    assert_eq!(h.amount, 15_000);
    assert_eq!(hold(&mut inv, BuyerId::new(), &ga(3), T0).unwrap_err(), InventoryError::SoldOut);
    let sale = buy(&mut inv, &h, T0).unwrap();
    assert_eq!(sale.hold.tickets.len(), 3);
    assert!(sale.hold.tickets.iter().all(|t| t.seat.is_none() && t.section == "Floor" && t.price == 5000));
    hold(&mut inv, BuyerId::new(), &ga(2), T0).unwrap();
    assert_eq!(inv.counts(), Counts { capacity: 5, available: 0, held: 2, sold: 3, blocked: 0 });
    inv.check_invariants().unwrap();
}

#[test]
fn expiry_returns_seats_only_once_durable() {
    let mut inv = inventory(grid(1, 1, 4));
    let h = hold(&mut inv, BuyerId::new(), &seats(&["S0R0-1", "S0R0-2"]), T0).unwrap();
    assert!(inv.expire_due(T0.plus_ms(59_999), 100).is_empty());
    let due = inv.expire_due(T0.plus_ms(60_000), 100);
    assert_eq!(due.len(), 1);
    // Pending expiry: the seats are still taken.
    assert_eq!(inv.counts().held, 2);
    assert!(matches!(
        hold(&mut inv, BuyerId::new(), &seats(&["S0R0-1"]), T0.plus_ms(60_000)),
        Err(InventoryError::SeatsTaken(_))
    ));
    assert!(matches!(inv.settle(h.id, true, T0.plus_ms(60_001)), Some(Settled::Expired(_))));
    assert_eq!(inv.counts().held, 0);
    hold(&mut inv, BuyerId::new(), &seats(&["S0R0-1"]), T0.plus_ms(60_002)).unwrap();
    inv.check_invariants().unwrap();
}

#[test]
fn failed_expiry_keeps_the_hold_and_retries() {
    let mut inv = inventory(grid(1, 1, 4));
    let h = hold(&mut inv, BuyerId::new(), &seats(&["S0R0-1"]), T0).unwrap();
    let later = T0.plus_ms(61_000);
    assert_eq!(inv.expire_due(later, 10).len(), 1);
    assert_eq!(inv.settle(h.id, false, later), Some(Settled::Undone));
    assert_eq!(inv.counts().held, 1);
    assert_eq!(inv.expire_due(later, 10).len(), 1, "expiry is tried again");
}

#[test]
fn payment_after_expiry_retakes_free_seats_or_reports_them_gone() {
    let mut inv = inventory(grid(1, 1, 4));
    let (a, b) = (BuyerId::new(), BuyerId::new());
    let late = T0.plus_ms(120_000);
    // Lapsed but not yet expired by the timer: still purchasable.
    let h1 = hold(&mut inv, a, &seats(&["S0R0-1"]), T0).unwrap();
    assert_eq!(buy(&mut inv, &h1, late).unwrap().hold.status, HoldStatus::Purchased);
    // Expired, seats still free: re-taken.
    let h2 = hold(&mut inv, a, &seats(&["S0R0-2"]), T0).unwrap();
    for c in inv.expire_due(late, 10) {
        inv.settle(c.hold_id(), true, late);
    }
    let sale = buy(&mut inv, &h2, late).unwrap();
    assert_eq!(labels(&sale.hold), ["S0R0-2"]);
    // Expired, seats taken by someone else: gone, caller refunds.
    let h3 = hold(&mut inv, a, &seats(&["S0R0-3"]), late).unwrap();
    let later = late.plus_ms(60_000);
    for c in inv.expire_due(later, 10) {
        inv.settle(c.hold_id(), true, later);
    }
    hold(&mut inv, b, &seats(&["S0R0-3"]), later).unwrap();
    assert_eq!(buy(&mut inv, &h3, later).unwrap_err(), InventoryError::SeatsGone);
    inv.check_invariants().unwrap();
}

#[test]
fn purchase_is_idempotent_and_owner_only() {
    let mut inv = inventory(grid(1, 1, 4));
    let a = BuyerId::new();
    let h = hold(&mut inv, a, &seats(&["S0R0-1"]), T0).unwrap();
    assert_eq!(inv.purchase(h.id, BuyerId::new(), None, TicketId::new, T0).unwrap_err(), InventoryError::HoldNotFound);
    assert_eq!(inv.release(h.id, BuyerId::new(), T0).unwrap_err(), InventoryError::HoldNotFound);
    assert_eq!(inv.hold_view(h.id, BuyerId::new()), None);
    let sale = buy(&mut inv, &h, T0).unwrap();
    match inv.purchase(h.id, a, None, TicketId::new, T0).unwrap() {
        Outcome::Unchanged(again) => assert_eq!(again.hold.tickets, sale.hold.tickets),
        other => panic!("second purchase changed something: {other:?}"),
    }
    assert_eq!(inv.release(h.id, a, T0).unwrap_err(), InventoryError::HoldNotActive(HoldStatus::Purchased));
}

#[test]
fn a_pending_change_blocks_other_changes_to_the_same_hold() {
    let mut inv = inventory(grid(1, 1, 4));
    let a = BuyerId::new();
    let h = hold(&mut inv, a, &seats(&["S0R0-1"]), T0).unwrap();
    let Outcome::Pending(_) = inv.purchase(h.id, a, None, TicketId::new, T0).unwrap() else { panic!() };
    assert_eq!(inv.release(h.id, a, T0).unwrap_err(), InventoryError::Busy);
    assert_eq!(inv.settle(h.id, false, T0), Some(Settled::Undone));
    assert_eq!(inv.hold_view(h.id, a).unwrap().status, HoldStatus::Active);
    assert_eq!(inv.counts().sold, 0);
    inv.check_invariants().unwrap();
}

#[test]
fn idempotency_key_returns_the_first_hold_and_refuses_a_different_request() {
    let mut inv = inventory(grid(1, 1, 10));
    let a = BuyerId::new();
    let key = IdempotencyKey::parse("retry-1").unwrap();
    let sel = Selection::BestAvailable { quantity: 2, section: None, allow_split: false };
    let first = match commit(&mut inv, |i| i.hold(HoldId::new(), a, &sel, Some(&key), T0), T0).unwrap() {
        Settled::Created(v) => v,
        other => panic!("{other:?}"),
    };
    match inv.hold(HoldId::new(), a, &sel, Some(&key), T0).unwrap() {
        Outcome::Unchanged(again) => assert_eq!(again, first),
        other => panic!("retry made a new hold: {other:?}"),
    }
    let other_sel = Selection::BestAvailable { quantity: 3, section: None, allow_split: false };
    assert_eq!(
        inv.hold(HoldId::new(), a, &other_sel, Some(&key), T0).unwrap_err(),
        InventoryError::IdempotencyMismatch
    );
    // The same key from another buyer is another request.
    assert!(matches!(inv.hold(HoldId::new(), BuyerId::new(), &sel, Some(&key), T0).unwrap(), Outcome::Pending(_)));
    assert_eq!(inv.counts().held, 4);
}

#[test]
fn cancelling_tickets_puts_seats_back_on_sale() {
    let mut inv = inventory(grid(1, 1, 4));
    let a = BuyerId::new();
    let h = hold(&mut inv, a, &seats(&["S0R0-1", "S0R0-2"]), T0).unwrap();
    let sale = buy(&mut inv, &h, T0).unwrap();
    let t1 = sale.hold.tickets[0].id;
    assert_eq!(inv.cancel_tickets(h.id, BuyerId::new(), &[t1], T0).unwrap_err(), InventoryError::HoldNotFound);
    let Settled::Cancelled { tickets, .. } = commit(&mut inv, |i| i.cancel_tickets(h.id, a, &[t1], T0), T0).unwrap()
    else {
        panic!()
    };
    assert_eq!(tickets, vec![t1]);
    assert_eq!(inv.cancel_tickets(h.id, a, &[t1], T0).unwrap_err(), InventoryError::TicketNotFound);
    assert_eq!(inv.counts(), Counts { capacity: 4, available: 3, held: 0, sold: 1, blocked: 0 });
    assert_eq!(inv.buyer_units(a), 1);
    hold(&mut inv, BuyerId::new(), &seats(&["S0R0-1"]), T0).unwrap();
    inv.check_invariants().unwrap();
}

#[test]
fn restore_rebuilds_the_same_state_and_refuses_contradictions() {
    let mut inv = inventory(grid(1, 2, 10));
    let (a, b) = (BuyerId::new(), BuyerId::new());
    let h1 = hold(&mut inv, a, &seats(&["S0R0-1", "S0R0-2"]), T0).unwrap();
    buy(&mut inv, &h1, T0).unwrap();
    hold(&mut inv, b, &Selection::BestAvailable { quantity: 3, section: None, allow_split: false }, T0).unwrap();
    let records = inv.snapshot();
    let layout = Layout::compile(&grid(1, 2, 10)).unwrap();
    let back = SeatInventory::restore(layout.clone(), window(), records.clone()).unwrap();
    assert_eq!(back.counts(), inv.counts());
    assert_eq!(back.section_counts(), inv.section_counts());
    assert_eq!(back.buyer_units(a), 2);
    assert_eq!(back.seat_owner("S0R0-1"), Some((h1.id, true)));
    back.check_invariants().unwrap();

    let mut twice = records.clone();
    let mut dup = records[0].clone();
    dup.id = HoldId::new();
    dup.status = HoldStatus::Active;
    twice.push(dup.clone());
    assert_eq!(SeatInventory::restore(layout.clone(), window(), twice).unwrap_err(), RestoreError::Conflict(dup.id));
}

#[test]
fn fifty_thousand_seats_cost_a_few_bytes_each() {
    let inv = inventory(grid(10, 100, 50));
    assert_eq!(inv.counts().capacity, 50_000);
    let bytes = inv.bytes_per_seat();
    println!("bytes per seat (50k map): {bytes:.2}");
    assert!(bytes < 16.0, "{bytes} bytes per seat");
}

/// The letter of one seat in a seat status.
fn letter(status: &SeatStatus, label: &str) -> char {
    let (row, number) = label.rsplit_once('-').unwrap();
    let number: u32 = number.parse().unwrap();
    let r = status.sections.iter().flat_map(|s| &s.rows).find(|r| r.label == row).expect("row");
    r.seats.chars().nth((number - r.first) as usize).expect("seat")
}

#[test]
fn seat_status_follows_holds_purchases_releases_and_cancellations() {
    let mut inv = inventory(grid(2, 2, 5));
    let a = BuyerId::new();
    let v0 = inv.seat_version();
    let all_free = inv.seat_status();
    assert!(all_free.sections.iter().flat_map(|s| &s.rows).all(|r| r.seats == "FFFFF"), "{all_free:?}");

    let h = hold(&mut inv, a, &seats(&["S0R0-2", "S0R0-3"]), T0).unwrap();
    let s = inv.seat_status();
    assert_eq!((letter(&s, "S0R0-2"), letter(&s, "S0R0-3"), letter(&s, "S0R0-4")), ('H', 'H', 'F'));
    assert_eq!(s.sections[0].counts.held, 2);
    assert!(s.version > v0);

    let sale = buy(&mut inv, &h, T0).unwrap();
    let s = inv.seat_status();
    assert_eq!((letter(&s, "S0R0-2"), letter(&s, "S0R0-3")), ('S', 'S'));
    assert_eq!((s.sections[0].counts.sold, s.sections[0].counts.held), (2, 0));

    let ticket = sale.hold.tickets.iter().find(|t| t.seat.as_deref() == Some("S0R0-2")).unwrap().id;
    commit(&mut inv, |i| i.cancel_tickets(h.id, a, &[ticket], T0), T0).unwrap();
    let s = inv.seat_status();
    assert_eq!((letter(&s, "S0R0-2"), letter(&s, "S0R0-3")), ('F', 'S'));

    let other = hold(&mut inv, a, &seats(&["S1R1-5"]), T0).unwrap();
    commit(&mut inv, |i| i.release(other.id, a, T0), T0).unwrap();
    assert_eq!(letter(&inv.seat_status(), "S1R1-5"), 'F');
}

#[test]
fn seat_changes_carry_each_changed_seat_once_with_its_latest_state() {
    let mut inv = inventory(grid(2, 2, 5));
    let a = BuyerId::new();
    let start = inv.seat_version();
    let h = hold(&mut inv, a, &seats(&["S0R0-1", "S0R0-2"]), T0).unwrap();
    let after_hold = inv.seat_version();
    buy(&mut inv, &h, T0).unwrap();
    hold(&mut inv, a, &seats(&["S1R0-4"]), T0).unwrap();

    let delta = inv.seat_changes_since(start).expect("covered by the log");
    assert_eq!((delta.from, delta.version), (start, inv.seat_version()));
    assert_eq!(
        delta.seats,
        vec![("S0R0-1".to_owned(), 'S'), ("S0R0-2".to_owned(), 'S'), ("S1R0-4".to_owned(), 'H')],
        "held then sold shows once, as sold"
    );
    let sections: Vec<&str> = delta.sections.iter().map(|s| s.section.as_str()).collect();
    assert_eq!(sections, ["S0", "S1"]);

    let later = inv.seat_changes_since(after_hold).unwrap();
    assert_eq!(later.seats.len(), 3, "the purchase's two seats and the new hold: {later:?}");
    let none = inv.seat_changes_since(inv.seat_version()).unwrap();
    assert!(none.seats.is_empty() && none.sections.is_empty());
    assert!(inv.seat_changes_since(inv.seat_version() + 1).is_none(), "a version from the future");
}

#[test]
fn seat_changes_too_old_for_the_log_or_before_a_restart_need_the_full_status() {
    let mut inv = inventory(grid(1, 1, 10));
    let start = inv.seat_version();
    let a = BuyerId::new();
    // The log keeps at least 4,096 changes: a hold and release of one seat is two.
    for _ in 0..2_100 {
        let h = hold(&mut inv, a, &seats(&["S0R0-1"]), T0).unwrap();
        commit(&mut inv, |i| i.release(h.id, a, T0), T0).unwrap();
    }
    assert!(inv.seat_changes_since(start).is_none(), "older than the log");
    let recent = inv.seat_changes_since(inv.seat_version() - 10).expect("recent changes are kept");
    assert_eq!(recent.seats, vec![("S0R0-1".to_owned(), 'F')]);

    let before = inv.seat_version();
    inv.start_versions_at(before + 1_000_000);
    assert_eq!(inv.seat_version(), before + 1_000_000);
    assert!(inv.seat_changes_since(before).is_none(), "a version of an earlier activation");
    inv.start_versions_at(5);
    assert_eq!(inv.seat_version(), before + 1_000_000, "versions never go back");
}

#[test]
fn general_admission_changes_name_the_section_and_its_counts() {
    let map = SeatMap {
        tiers: vec![PriceTier { code: "A".into(), price: 5_000 }],
        sections: vec![SectionSpec {
            name: "Floor".into(),
            tier: "A".into(),
            kind: SectionKindSpec::General { capacity: 100 },
        }],
    };
    let mut inv = inventory(map);
    let start = inv.seat_version();
    hold(&mut inv, BuyerId::new(), &Selection::General { quantity: 3, section: None }, T0).unwrap();
    let delta = inv.seat_changes_since(start).unwrap();
    assert!(delta.seats.is_empty());
    assert_eq!(delta.sections.len(), 1);
    assert_eq!((delta.sections[0].counts.held, delta.sections[0].counts.available), (3, 97));
    let status = inv.seat_status();
    assert!(status.sections[0].general_admission && status.sections[0].rows.is_empty());
}

#[test]
fn blocked_seats_cannot_be_held_and_count_apart() {
    let mut inv = inventory(grid(1, 1, 5));
    let a = BuyerId::new();
    hold(&mut inv, a, &seats(&["S0R0-1"]), T0).unwrap();
    let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        inv.block_seats(&labels(&["S0R0-1", "S0R0-2"]), true).unwrap_err(),
        InventoryError::SeatsTaken(vec!["S0R0-1".into()]),
        "a held seat cannot be blocked, and nothing else is"
    );
    assert!(inv.blocked_labels().is_empty());
    assert_eq!(inv.block_seats(&labels(&["S0R0-2", "S0R0-3"]), true).unwrap(), labels(&["S0R0-2", "S0R0-3"]));
    assert_eq!(inv.counts(), Counts { capacity: 5, available: 2, held: 1, sold: 0, blocked: 2 });
    assert_eq!(
        hold(&mut inv, a, &seats(&["S0R0-2"]), T0).unwrap_err(),
        InventoryError::SeatsTaken(vec!["S0R0-2".into()])
    );
    let best = Selection::BestAvailable { quantity: 2, section: None, allow_split: true };
    let h = hold(&mut inv, a, &best, T0).unwrap();
    assert_eq!(labels(&["S0R0-4", "S0R0-5"]), {
        let mut l = match h.items.as_ref() {
            Items::Seats { seats } => seats.to_vec(),
            Items::General { .. } => vec![],
        };
        l.sort();
        l
    });
    assert_eq!(letter(&inv.seat_status(), "S0R0-3"), 'B');
    inv.check_invariants().unwrap();
    assert_eq!(inv.block_seats(&labels(&["S0R0-3"]), false).unwrap(), labels(&["S0R0-2"]));
    assert_eq!(inv.block_seats(&labels(&["S0R0-9"]), true).unwrap_err(), InventoryError::UnknownSeat("S0R0-9".into()));
    inv.check_invariants().unwrap();
    assert_eq!(inv.counts().blocked, 1);
}
