//! Property tests on the parsers we own: seat maps (as values and as JSON, mutated and
//! hostile), idempotency keys and QR codes never panic, and accept exactly what is valid.

use super::proptest_config;
use base64::Engine;
use boxoffice::auth::qr::{QrSigner, TicketClaim};
use boxoffice_actors::seatmap::{MAX_EVENT_CAPACITY, MAX_PRICE, PriceTier, RowSpec, SectionKindSpec, SectionSpec};
use boxoffice_actors::{IdempotencyKey, Layout, SeatMap};
use proptest::prelude::*;
use secrecy::SecretString;
use std::collections::HashSet;
use uuid::Uuid;

/// Names as an organizer (or an attacker) might write them.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Z][A-Z0-9]{0,2}",
        2 => "[A-Za-z0-9 _.\\-]{0,8}",
        1 => any::<String>(),
        1 => Just(String::new()),
        1 => "[a-z]{60,70}",
        1 => Just(" padded ".to_owned()),
    ]
}

fn tier_ref() -> impl Strategy<Value = String> {
    prop_oneof![4 => "T[0-3]", 1 => name()]
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![6 => 1..60u32, 1 => Just(0u32), 1 => any::<u32>(), 1 => 100_000..1_100_000u32]
}

fn row() -> impl Strategy<Value = RowSpec> {
    (
        prop_oneof![4 => "R[0-9]{1,2}", 1 => name()],
        count(),
        prop_oneof![4 => Just(1u32), 1 => 0..5u32, 1 => any::<u32>(), 1 => Just(u32::MAX - 3)],
        proptest::option::weighted(0.2, tier_ref()),
    )
        .prop_map(|(label, seats, first, tier)| RowSpec { label, seats, first, tier })
}

fn section() -> impl Strategy<Value = SectionSpec> {
    let kind = prop_oneof![
        3 => proptest::collection::vec(row(), 0..6).prop_map(|rows| SectionKindSpec::Seated { rows }),
        2 => count().prop_map(|capacity| SectionKindSpec::General { capacity }),
    ];
    (name(), tier_ref(), kind).prop_map(|(name, tier, kind)| SectionSpec { name, tier, kind })
}

fn seat_map() -> impl Strategy<Value = SeatMap> {
    let tier =
        (prop_oneof![4 => "T[0-3]", 1 => name()], prop_oneof![4 => 0..100_000i64, 1 => any::<i64>(), 1 => Just(-1i64)])
            .prop_map(|(code, price)| PriceTier { code, price });
    (proptest::collection::vec(tier, 0..5), proptest::collection::vec(section(), 0..6))
        .prop_map(|(tiers, sections)| SeatMap { tiers, sections })
}

/// What the map asks for: (reserved seats, seats + general-admission places).
fn requested(map: &SeatMap) -> (u64, u64) {
    let mut seats = 0u64;
    let mut general = 0u64;
    for section in &map.sections {
        match &section.kind {
            SectionKindSpec::Seated { rows } => seats += rows.iter().map(|r| u64::from(r.seats)).sum::<u64>(),
            SectionKindSpec::General { capacity } => general += u64::from(*capacity),
        }
    }
    (seats, seats + general)
}

/// Everything a map that compiled must satisfy: capacity adds up, every rule the
/// compiler enforces holds, and seat labels resolve and round-trip.
fn check_compiled(map: &SeatMap, layout: &Layout) -> Result<(), TestCaseError> {
    let (seats, capacity) = requested(map);
    prop_assert_eq!(layout.capacity(), capacity, "capacity = sum of rows + general admission");
    prop_assert_eq!(u64::from(layout.seat_count()), seats, "seat count = sum of rows");
    prop_assert!(capacity <= MAX_EVENT_CAPACITY);
    prop_assert!(!map.tiers.is_empty() && !map.sections.is_empty());
    prop_assert!(
        map.tiers.iter().all(|t| (0..=MAX_PRICE).contains(&t.price)),
        "a price outside 0..=MAX_PRICE was accepted"
    );
    let codes: HashSet<&str> = map.tiers.iter().map(|t| t.code.as_str()).collect();
    prop_assert_eq!(codes.len(), map.tiers.len(), "duplicate tier codes accepted");
    let names: HashSet<&str> = map.sections.iter().map(|s| s.name.as_str()).collect();
    prop_assert_eq!(names.len(), map.sections.len(), "duplicate section names accepted");
    let mut labels = HashSet::new();
    for (i, section) in map.sections.iter().enumerate() {
        prop_assert!(codes.contains(section.tier.as_str()), "unknown tier accepted");
        prop_assert_eq!(layout.section_by_name(&section.name), Some(i as u16));
        match &section.kind {
            SectionKindSpec::General { capacity } => {
                prop_assert!(*capacity > 0);
                prop_assert_eq!(layout.section_capacity(i as u16), *capacity);
            }
            SectionKindSpec::Seated { rows } => {
                prop_assert!(!rows.is_empty());
                let sum: u32 = rows.iter().map(|r| r.seats).sum();
                prop_assert_eq!(layout.section_capacity(i as u16), sum);
                for row in rows {
                    prop_assert!(row.seats > 0, "an empty row was accepted");
                    prop_assert!(labels.insert(row.label.clone()), "duplicate row label accepted");
                    prop_assert!(!row.label.contains('-') && !row.label.is_empty());
                    prop_assert!(row.tier.as_deref().is_none_or(|t| codes.contains(t)));
                    let last = row.first.checked_add(row.seats - 1);
                    prop_assert!(last.is_some(), "seat numbers past u32::MAX accepted");
                    for number in [row.first, last.unwrap_or_default()] {
                        let label = format!("{}-{number}", row.label);
                        let Some(seat) = layout.seat_by_label(&label) else {
                            return Err(TestCaseError::fail(format!("{label} does not resolve")));
                        };
                        prop_assert_eq!(layout.label(seat), label);
                    }
                    if let Some(before) = row.first.checked_sub(1) {
                        prop_assert_eq!(layout.seat_by_label(&format!("{}-{before}", row.label)), None);
                    }
                    if let Some(after) = row.first.checked_add(row.seats) {
                        prop_assert_eq!(layout.seat_by_label(&format!("{}-{after}", row.label)), None);
                    }
                }
            }
        }
    }
    Ok(())
}

/// A valid map's JSON, to mutate.
fn valid_json() -> String {
    serde_json::to_string(&serde_json::json!({
        "tiers": [{"code": "S", "price": 12000}, {"code": "A", "price": 5000}],
        "sections": [
            {"name": "Floor", "tier": "S", "kind": "seated",
             "rows": [{"label": "A", "seats": 10}, {"label": "B", "seats": 12, "first": 101, "tier": "A"}]},
            {"name": "Standing", "tier": "A", "kind": "general", "capacity": 500}
        ]
    }))
    .expect("serializes")
}

#[derive(Clone, Debug)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, char),
    Replace(usize, char),
    InsertText(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let text = prop_oneof![
        Just("-1".to_owned()),
        Just("4294967296".to_owned()),
        Just("1e999".to_owned()),
        Just("null".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        Just("{}".to_owned()),
        Just("[]".to_owned()),
        Just(",\"kind\":\"general\"".to_owned()),
        Just("\"capacity\":0,".to_owned()),
        "[\\[\\]{}\",:0-9a-z\\\\]{1,6}",
    ];
    prop_oneof![
        (any::<usize>(), 1..8usize).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), any::<char>()).prop_map(|(at, c)| Edit::Insert(at, c)),
        (any::<usize>(), any::<char>()).prop_map(|(at, c)| Edit::Replace(at, c)),
        (any::<usize>(), text).prop_map(|(at, t)| Edit::InsertText(at, t)),
    ]
}

fn apply(json: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = json.chars().collect();
    for e in edits {
        let len = chars.len().max(1);
        match e {
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(chars.len());
                if at < end {
                    chars.drain(at..end);
                }
            }
            Edit::Insert(at, c) => chars.insert(at % (chars.len() + 1), *c),
            Edit::Replace(at, c) => {
                if !chars.is_empty() {
                    let at = at % chars.len();
                    chars[at] = *c;
                }
            }
            Edit::InsertText(at, t) => {
                let at = at % (chars.len() + 1);
                chars.splice(at..at, t.chars());
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(proptest_config(2000))]

    /// `Layout::compile` on arbitrary maps: never panics; what it accepts is valid
    /// and its capacity is the sum of the rows and general admission.
    #[test]
    fn seat_map_compile_never_panics_and_counts_capacity(map in seat_map()) {
        if let Ok(layout) = Layout::compile(&map) {
            check_compiled(&map, &layout)?;
        }
    }

    /// The upload path: JSON text → `SeatMap` → `Layout`, on arbitrary strings.
    #[test]
    fn seat_map_json_from_arbitrary_strings_never_panics(raw in any::<String>()) {
        if let Ok(map) = serde_json::from_str::<SeatMap>(&raw)
            && let Ok(layout) = Layout::compile(&map)
        {
            check_compiled(&map, &layout)?;
        }
    }

    /// The same on mutations of a valid document, which get much further in.
    #[test]
    fn seat_map_json_mutations_never_panic(edits in proptest::collection::vec(edit(), 1..6)) {
        let raw = apply(&valid_json(), &edits);
        if let Ok(map) = serde_json::from_str::<SeatMap>(&raw)
            && let Ok(layout) = Layout::compile(&map)
        {
            check_compiled(&map, &layout)?;
        }
    }

    /// Idempotency keys: exactly 1–255 printable ASCII characters, space excluded
    /// (documented: "no spaces or control characters"), are accepted, unchanged.
    #[test]
    fn idempotency_key_accepts_exactly_1_to_255_printable_ascii(
        raw in prop_oneof![
            any::<String>(),
            "[\\x20-\\x7e]{0,300}",
            "[!-~]{250,260}",
            "[!-~]{0,3}[\\x00-\\x20\\x7f\\u{80}-\\u{10ffff}][!-~]{0,3}",
        ]
    ) {
        let expected = (1..=255).contains(&raw.len()) && raw.bytes().all(|b| (0x21..=0x7e).contains(&b));
        match IdempotencyKey::parse(&raw) {
            Ok(key) => {
                prop_assert!(expected, "{raw:?} accepted");
                prop_assert_eq!(key.as_str(), raw.as_str());
            }
            Err(_) => prop_assert!(!expected, "{raw:?} refused"),
        }
    }

    /// `QrSigner::verify` on arbitrary strings: never panics, never verifies.
    #[test]
    fn qr_verify_refuses_arbitrary_strings(
        raw in prop_oneof![
            any::<String>(),
            "BO1\\.[A-Za-z0-9_\\-]{0,90}",
            "BO1\\.[A-Za-z0-9_\\-]{46}",
            "[ \\t\\n]{0,2}BO1\\.[A-Za-z0-9_\\-=+/]{40,60}[ \\t\\n]{0,2}",
        ]
    ) {
        prop_assert!(signer().verify(&raw).is_err(), "{raw:?} verified");
    }

    /// A valid token with one bit flipped (in its bytes) or one character changed
    /// (in its text), truncated or extended: never verifies.
    #[test]
    fn qr_modified_tokens_never_verify(
        ticket in any::<u128>(),
        event in any::<u128>(),
        bit in any::<usize>(),
        position in any::<usize>(),
        replacement in any::<char>(),
        cut in 1..20usize,
        tail in "[A-Za-z0-9_\\-]{1,8}",
    ) {
        let claim = TicketClaim { ticket_id: Uuid::from_u128(ticket), event_id: Uuid::from_u128(event) };
        let signer = signer();
        let token = signer.sign(claim);
        prop_assert_eq!(signer.verify(&token), Ok(claim));

        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut raw = b64.decode(&token[4..]).expect("our own token decodes");
        let bit = bit % (raw.len() * 8);
        raw[bit / 8] ^= 1 << (bit % 8);
        let flipped = format!("BO1.{}", b64.encode(&raw));
        prop_assert!(signer.verify(&flipped).is_err(), "bit {bit} flipped still verifies");

        let mut chars: Vec<char> = token.chars().collect();
        let at = position % chars.len();
        if chars[at] != replacement {
            chars[at] = replacement;
            let changed: String = chars.into_iter().collect();
            if changed.trim() != token {
                prop_assert!(signer.verify(&changed).is_err(), "{changed:?} verifies");
            }
        }
        let truncated = &token[..token.len() - cut.min(token.len())];
        prop_assert!(signer.verify(truncated).is_err(), "{truncated:?} verifies");
        let extended = format!("{token}{tail}");
        prop_assert!(signer.verify(&extended).is_err(), "{extended:?} verifies");
    }
}

fn signer() -> QrSigner {
    QrSigner::new(
        ("k2".into(), SecretString::from("hostile-active-key")),
        vec![("k1".into(), SecretString::from("hostile-retired-key"))],
    )
}

#[test]
fn seat_map_json_bombs_are_refused_without_a_crash() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(serde_json::from_str::<SeatMap>(&deep).is_err());
    let deep_object = format!(r#"{{"tiers":{}}}"#, "[".repeat(50_000));
    assert!(serde_json::from_str::<SeatMap>(&deep_object).is_err());
    for raw in [
        r#"{"tiers":[{"code":"S","price":1e999}],"sections":[]}"#,
        r#"{"tiers":[{"code":"S","price":9223372036854775808}],"sections":[]}"#,
        r#"{"tiers":[{"code":"S","price":1}],"sections":[{"name":"F","tier":"S","kind":"general","capacity":4294967296}]}"#,
        r#"{"tiers":[{"code":"S","price":1}],"sections":[{"name":"F","tier":"S","kind":"vip","capacity":1}]}"#,
        r#"{"tiers":[{"code":"S","price":1}],"sections":[{"name":"F","tier":"S","kind":"general","kind":"seated","capacity":1}]}"#,
    ] {
        assert!(serde_json::from_str::<SeatMap>(raw).is_err(), "{raw}");
    }
    // Largest legal map: one million places in one general section, compiled at once.
    let huge: SeatMap = serde_json::from_str(
        r#"{"tiers":[{"code":"S","price":1}],"sections":[{"name":"F","tier":"S","kind":"general","capacity":1000000}]}"#,
    )
    .unwrap();
    assert_eq!(Layout::compile(&huge).unwrap().capacity(), 1_000_000);
    let over: SeatMap = serde_json::from_str(
        r#"{"tiers":[{"code":"S","price":1}],"sections":[{"name":"F","tier":"S","kind":"general","capacity":1000001}]}"#,
    )
    .unwrap();
    assert!(Layout::compile(&over).is_err());
}
