//! Hostile input and attacks: property tests on the parsers we own (seat maps, QR
//! codes, idempotency keys, search query strings) and security tests over HTTP
//! (IDOR on every id-bearing route, forged JWTs, refresh-token reuse, forged and
//! replayed QR codes, SQL injection, oversized bodies, slow clients, login brute
//! force, secrets in logs).
//!
//! The HTTP tests start the real server against a fresh database, like `tests/api`
//! (whose harness this binary shares), and fail — never skip — without
//! BOXOFFICE_TEST_DATABASE_URL. `./scripts/test.sh` provides it.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use helpers::{TEST_JWT_SECRET, TestApp, assert_problem, fresh_database, small_map, spawn_app, spawn_app_on};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Proptest settings that write nothing to the source tree.
fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, max_shrink_iters: 512, ..ProptestConfig::default() }
}

// =============================================================================================
// Parsers we own
// =============================================================================================

mod parsers {
    use super::proptest_config;
    use base64::Engine;
    use boxoffice::qr::{QrSigner, TicketClaim};
    use boxoffice_actors::seatmap::{MAX_EVENT_CAPACITY, PriceTier, RowSpec, SectionKindSpec, SectionSpec};
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
        let tier = (
            prop_oneof![4 => "T[0-3]", 1 => name()],
            prop_oneof![4 => 0..100_000i64, 1 => any::<i64>(), 1 => Just(-1i64)],
        )
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
        prop_assert!(map.tiers.iter().all(|t| t.price >= 0), "a negative price was accepted");
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
}

// =============================================================================================
// Shared vocabulary of the HTTP tests
// =============================================================================================

/// `Err(description)` unless `r` has `status` and is a problem document with a `code`
/// (and `code`, when given).
async fn problem(r: reqwest::Response, status: &[StatusCode], code: Option<&str>) -> Result<Value, String> {
    let got = r.status();
    let url = r.url().path().to_owned();
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let text = r.text().await.unwrap_or_default();
    if !status.contains(&got) {
        return Err(format!("{url}: status {got} (wanted {status:?}): {text:.300}"));
    }
    if ct != "application/problem+json" {
        return Err(format!("{url}: {got} with content type {ct:?}, not application/problem+json: {text:.200}"));
    }
    let body: Value =
        serde_json::from_str(&text).map_err(|e| format!("{url}: problem is not JSON ({e}): {text:.200}"))?;
    if body["status"] != got.as_u16() || !body["code"].is_string() {
        return Err(format!("{url}: malformed problem document {body}"));
    }
    if let Some(code) = code
        && body["code"] != code
    {
        return Err(format!("{url}: code {} (wanted {code})", body["code"]));
    }
    Ok(body)
}

/// Panics listing every violation, so one run shows them all.
fn assert_none(violations: &[String], what: &str) {
    assert!(violations.is_empty(), "{what}: {} violation(s):\n  {}", violations.len(), violations.join("\n  "));
}

/// Everything a request could change, as text: compared before and after an attack.
async fn snapshot(db: &PgPool) -> Vec<(String, String)> {
    let tables = [
        (
            "events",
            "event_id, organizer_id, status, title, description, category, venue_name, venue_address, event_date,
             currency, seat_map::text, total_seats, min_price, max_price, opens_at, closes_at, per_buyer_limit,
             hold_ttl_secs, updated_at",
        ),
        ("holds", "*"),
        ("tickets", "*"),
        ("payments", "*"),
        ("refunds", "*"),
        ("check_ins", "*"),
        ("staff_assignments", "*"),
        ("users", "*"),
        ("refresh_tokens", "*"),
        // The relay may mark rows published; what matters is that no row was added.
        ("outbox", "id, topic, aggregate_id"),
    ];
    let mut out = Vec::new();
    for (table, columns) in tables {
        let sql = format!(
            "SELECT coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), '') FROM (SELECT {columns} FROM {table}) r"
        );
        let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(db).await.expect("snapshot");
        out.push((table.to_owned(), rows));
    }
    out
}

fn assert_unchanged(before: &[(String, String)], after: &[(String, String)]) {
    for ((table, a), (_, b)) in before.iter().zip(after) {
        assert_eq!(a, b, "table {table} changed");
    }
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    app.request(method, path, token, body).await
}

async fn json_of(r: reqwest::Response) -> Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// A draft event (never published) of `organizer`.
async fn draft_event(app: &TestApp, organizer: &str) -> Uuid {
    let r = app
        .post(
            "/events/create",
            Some(organizer),
            json!({"title": "Draft", "venue_name": "Hall", "event_date": "2031-01-01T19:00:00Z", "seat_map": small_map()}),
        )
        .await;
    json_of(r).await["event_id"].as_str().unwrap().parse().unwrap()
}

/// Buys `seats` at `event` in one shot: (ticket ids, QR tokens).
async fn buy(app: &TestApp, buyer: &str, event: Uuid, seats: &[&str]) -> (Vec<String>, Vec<String>) {
    let r = app
        .post(
            "/tickets/purchase",
            Some(buyer),
            json!({"event_id": event, "seats": seats, "payment_method": "pm_card_visa", "include_qr_image": false}),
        )
        .await;
    let sale = json_of(r).await;
    let tickets = sale["tickets"].as_array().unwrap();
    (
        tickets.iter().map(|t| t["ticket_id"].as_str().unwrap().to_owned()).collect(),
        tickets.iter().map(|t| t["qr_token"].as_str().unwrap().to_owned()).collect(),
    )
}

// =============================================================================================
// Search query strings over HTTP (property test)
// =============================================================================================

/// Free text as a client might send it: anything, control characters (NUL included),
/// SQL and tsquery fragments, very long words.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[ -~]{0,24}",
        2 => prop::sample::select(vec!["a\u{0}b", "\u{0}", "\u{0}' OR 1=1 --", "\u{1}", "\t", "\n", "\u{7f}", "\u{feff}"])
            .prop_map(str::to_owned),
        1 => "[a-z]{0,3}[\\x00-\\x1f\\x7f][a-z]{0,3}",
        2 => prop::sample::select(vec![
            "' OR '1'='1", "'; DROP TABLE events; --", "\") OR 1=1 --", "%00", "*", "!:*&|()", "<->", "a & !b",
            "\"unterminated", "music", "theatre", "Rock", "-", "", "   ",
        ]).prop_map(str::to_owned),
        1 => "[a-z]{190,210}",
    ]
}

/// Timestamps: well-formed ones across (and beyond) PostgreSQL's range, and junk.
fn hostile_date() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[+-]?[0-9]{4,6}-(0[1-9]|1[0-2])-[0-2][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-][0-1][0-9]:[0-5][0-9])",
        2 => prop::sample::select(vec![
            "2030-01-01T00:00:00Z", "0000-01-01T00:00:00Z", "-200000-01-01T00:00:00Z", "+262143-12-31T23:59:59Z",
            "-4714-11-23T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "2030-13-45T99:99:99Z", "2030-01-01",
        ]).prop_map(str::to_owned),
        1 => hostile_text(),
    ]
}

fn hostile_int() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<i64>().prop_map(|n| n.to_string()),
        3 => (0..200u32).prop_map(|n| n.to_string()),
        2 => prop::sample::select(vec!["4294967295", "4294967296", "9223372036854775808", "-1", "1e3", "0x10", "+5", " 7"])
            .prop_map(str::to_owned),
        1 => hostile_text(),
    ]
}

/// A query string for /events/search: each known parameter present or not, with a
/// value that mostly parses (so requests reach the database) and sometimes does not.
fn search_params() -> impl Strategy<Value = Vec<(String, String)>> {
    let boolean =
        prop_oneof![4 => prop::sample::select(vec!["true", "false"]).prop_map(str::to_owned), 1 => hostile_text()];
    let sort = prop_oneof![
        4 => prop::sample::select(vec!["date", "-date", "price", "-price", "relevance"]).prop_map(str::to_owned),
        1 => hostile_text(),
    ];
    let maybe = |p: f64, s: BoxedStrategy<String>| proptest::option::weighted(p, s);
    (
        maybe(0.6, hostile_text().boxed()),
        maybe(0.4, hostile_text().boxed()),
        maybe(0.3, hostile_date().boxed()),
        maybe(0.3, hostile_date().boxed()),
        maybe(0.2, hostile_int().boxed()),
        maybe(0.2, hostile_int().boxed()),
        maybe(0.2, boolean.boxed()),
        maybe(0.3, sort.boxed()),
        maybe(0.3, hostile_int().boxed()),
        maybe(0.3, hostile_int().boxed()),
        proptest::option::weighted(0.05, ("[ -~]{0,8}", hostile_text())),
    )
        .prop_map(|(q, category, from, to, max_price, min_price, available, sort, page, per_page, junk)| {
            let named = [
                ("q", q),
                ("category", category),
                ("from", from),
                ("to", to),
                ("max_price", max_price),
                ("min_price", min_price),
                ("available", available),
                ("sort", sort),
                ("page", page),
                ("per_page", per_page),
            ];
            let mut pairs: Vec<(String, String)> =
                named.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))).collect();
            pairs.extend(junk);
            pairs
        })
}

async fn check_search(app: &TestApp, drafts: &[String], params: Vec<(String, String)>) -> Result<(), String> {
    let r =
        app.client.get(format!("{}/events/search", app.base)).query(&params).send().await.map_err(|e| e.to_string())?;
    let status = r.status();
    if status.is_server_error() {
        let text = r.text().await.unwrap_or_default();
        return Err(format!("{status} for {params:?}: {text:.200}"));
    }
    if status.is_client_error() {
        return problem(r, &[status], None).await.map(|_| ()).map_err(|e| format!("{params:?}: {e}"));
    }
    let body: Value = r.json().await.map_err(|e| format!("{params:?}: 2xx body is not JSON: {e}"))?;
    let events = body["events"].as_array().ok_or_else(|| format!("{params:?}: no events array: {body}"))?;
    for e in events {
        if e["status"] != "published" || drafts.iter().any(|d| e["event_id"] == d.as_str()) {
            return Err(format!("{params:?}: search returned an unpublished event {e}"));
        }
    }
    Ok(())
}

/// GET /events/search with arbitrary q/category/sort/page/… values: never 5xx,
/// always a problem document on 4xx, never an unpublished event.
#[test]
fn search_query_strings_never_5xx_and_errors_are_problems() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (app, drafts) = rt.block_on(async {
        let app = spawn_app().await;
        let (_, org, _) = app.user("organizer").await;
        for (title, category) in [("Rock night", "music"), ("Hamlet", "theatre"), ("Jazz 1", "music")] {
            let r = app
                .post(
                    "/events/create",
                    Some(&org),
                    json!({"title": title, "venue_name": "Hall", "category": category,
                           "event_date": "2031-01-01T19:00:00Z", "total_seats": 100, "base_price": 1000}),
                )
                .await;
            let id = json_of(r).await["event_id"].as_str().unwrap().to_owned();
            assert_eq!(
                app.post(&format!("/events/{id}/publish"), Some(&org), json!({})).await.status(),
                StatusCode::OK
            );
        }
        let drafts = vec![draft_event(&app, &org).await.to_string()];
        (app, drafts)
    });
    let mut runner = TestRunner::new(ProptestConfig { max_shrink_iters: 128, ..proptest_config(64) });
    let result = runner
        .run(&search_params(), |params| rt.block_on(check_search(&app, &drafts, params)).map_err(TestCaseError::fail));
    rt.block_on(app.stop());
    if let Err(e) = result {
        panic!("{e}");
    }
}

// =============================================================================================
// Isolation (IDOR) on every id-bearing route
// =============================================================================================

struct Attack {
    who: &'static str,
    token: String,
    method: Method,
    path: String,
    body: Option<Value>,
    allowed: Vec<StatusCode>,
}

/// A second user of each role tries every id-bearing route on objects that are not
/// theirs: 403 or 404 each time, and the database is unchanged.
#[tokio::test]
async fn idor_every_id_bearing_route_refuses_other_users_and_changes_nothing() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, org2, _) = app.user("organizer").await;
    let (buyer_id, buyer, _) = app.user("customer").await;
    let (buyer2_id, buyer2, _) = app.user("customer").await;
    let (staff_id, staff, _) = app.user("staff").await;
    let (staff2_id, staff2, _) = app.user("staff").await;
    let event = app.published_event(&org, None, None).await;
    let draft = draft_event(&app, &org).await;
    let r = app.post(&format!("/events/{event}/staff"), Some(&org), json!({"staff_id": staff_id})).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (tickets, qrs) = buy(&app, &buyer, event, &["A-1"]).await;
    let (ticket, qr) = (&tickets[0], &qrs[0]);
    let hold =
        json_of(app.post(&format!("/events/{event}/holds"), Some(&buyer), json!({"seats": ["A-5", "A-6"]})).await)
            .await["hold_id"]
            .as_str()
            .unwrap()
            .to_owned();
    let order: Value = json_of(app.get("/orders", Some(&buyer)).await).await;
    let order_id = order["orders"][0]["hold_id"].as_str().unwrap().to_owned();

    let not_found = vec![StatusCode::NOT_FOUND];
    let forbidden = vec![StatusCode::FORBIDDEN];
    let mut attacks = Vec::new();
    // The buyer's hold and ticket, attempted by everyone else — the event's own organizer
    // and its assigned staff included.
    for (who, token) in [
        ("customer2", &buyer2),
        ("organizer2", &org2),
        ("staff2", &staff2),
        ("event organizer", &org),
        ("event staff", &staff),
    ] {
        let pay = json!({"payment_method": "pm_card_visa"});
        for (method, path, body) in [
            (Method::GET, format!("/holds/{hold}"), None),
            (Method::DELETE, format!("/holds/{hold}"), None),
            (Method::POST, format!("/holds/{hold}/purchase"), Some(pay.clone())),
            (Method::GET, format!("/holds/{order_id}"), None),
            (Method::POST, format!("/holds/{order_id}/purchase"), Some(pay)),
            (Method::GET, format!("/tickets/{ticket}/qr"), None),
            (Method::GET, format!("/tickets/{ticket}/qr?format=svg"), None),
            (Method::POST, format!("/tickets/{ticket}/cancel"), Some(json!({}))),
        ] {
            attacks.push(Attack { who, token: token.clone(), method, path, body, allowed: not_found.clone() });
        }
        attacks.push(Attack {
            who,
            token: token.clone(),
            method: Method::GET,
            path: format!("/tickets/user/{buyer_id}"),
            body: None,
            allowed: forbidden.clone(),
        });
    }
    // Check-in by anyone who is neither the event's organizer nor its assigned staff.
    for (who, token) in [("customer2", &buyer2), ("owner", &buyer), ("organizer2", &org2), ("staff2", &staff2)] {
        attacks.push(Attack {
            who,
            token: token.clone(),
            method: Method::POST,
            path: format!("/tickets/{ticket}/validate"),
            body: Some(json!({"qr": qr})),
            allowed: forbidden.clone(),
        });
    }
    // Managing the event: everyone but its organizer. A published event is 403; a
    // draft is invisible (404).
    for (who, token) in [
        ("organizer2", &org2),
        ("event staff", &staff),
        ("staff2", &staff2),
        ("customer", &buyer),
        ("customer2", &buyer2),
    ] {
        for (id, allowed) in [(event, &forbidden), (draft, &not_found)] {
            for (method, path, body) in [
                (Method::PUT, format!("/events/{id}/update"), Some(json!({"title": "pwned"}))),
                (Method::DELETE, format!("/events/{id}/delete"), None),
                (Method::POST, format!("/events/{id}/publish"), Some(json!({}))),
                (Method::POST, format!("/events/{id}/close"), Some(json!({}))),
                (Method::POST, format!("/events/{id}/cancel"), Some(json!({}))),
                (Method::PUT, format!("/events/{id}/seatmap"), Some(small_map())),
                (Method::PUT, format!("/events/{id}/sales-window"), Some(json!({"per_buyer_limit": 1}))),
                (Method::GET, format!("/events/{id}/staff"), None),
                (Method::POST, format!("/events/{id}/staff"), Some(json!({"staff_id": staff2_id}))),
                (Method::DELETE, format!("/events/{id}/staff/{staff_id}"), None),
            ] {
                attacks.push(Attack { who, token: token.clone(), method, path, body, allowed: allowed.clone() });
            }
        }
        for path in [format!("/events/{draft}/details"), format!("/events/{draft}/seatmap")] {
            attacks.push(Attack {
                who,
                token: token.clone(),
                method: Method::GET,
                path,
                body: None,
                allowed: not_found.clone(),
            });
        }
    }
    // Buying in someone else's name.
    attacks.push(Attack {
        who: "customer2",
        token: buyer2.clone(),
        method: Method::POST,
        path: "/tickets/purchase".into(),
        body: Some(json!({"event_id": event, "purchaser_id": buyer_id, "seat_number": "B-1", "payment_method": "pm_card_visa"})),
        allowed: forbidden.clone(),
    });

    let before = snapshot(&app.db).await;
    let mut violations = Vec::new();
    for a in &attacks {
        let r = send(&app, a.method.clone(), &a.path, Some(&a.token), a.body.clone()).await;
        if let Err(e) = problem(r, &a.allowed, None).await {
            violations.push(format!("{} {} by {}: {e}", a.method, a.path, a.who));
        }
    }
    // Listing: another buyer's orders and tickets never show up in yours.
    let theirs: Value = json_of(app.get("/orders", Some(&buyer2)).await).await;
    if !theirs["orders"].as_array().unwrap().is_empty() {
        violations.push(format!("GET /orders by customer2 shows orders: {theirs}"));
    }
    let theirs: Value = json_of(app.get(&format!("/tickets/user/{buyer2_id}"), Some(&buyer2)).await).await;
    if !theirs["tickets"].as_array().unwrap().is_empty() {
        violations.push(format!("GET /tickets/user/customer2 shows tickets: {theirs}"));
    }
    let after = snapshot(&app.db).await;
    assert_none(&violations, &format!("{} IDOR attempts", attacks.len()));
    assert_unchanged(&before, &after);

    // The owners still can: the refusals above were about who asked.
    assert_eq!(app.get(&format!("/holds/{hold}"), Some(&buyer)).await.status(), StatusCode::OK);
    assert_eq!(app.get(&format!("/tickets/{ticket}/qr"), Some(&buyer)).await.status(), StatusCode::OK);
    let staff_list: Value = json_of(app.get(&format!("/events/{event}/staff"), Some(&org)).await).await;
    assert_eq!(staff_list[0]["staff_id"], staff_id.to_string());
    app.stop().await;
}

// =============================================================================================
// Forged access tokens against the routes
// =============================================================================================

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn claims(sub: Uuid, role: &str, aud: &str, iss: &str, exp_in: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": sub, "role": role, "iss": iss, "aud": aud, "iat": now, "exp": now + exp_in})
}

fn hs(alg: jsonwebtoken::Algorithm, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), claims, &jsonwebtoken::EncodingKey::from_secret(secret))
        .unwrap()
}

/// Admin tokens an attacker can make — wrong key, `alg: none`, another algorithm,
/// expired, another audience or issuer, a role edited into a real token — reach
/// nothing: every route answers 401, and nothing changes. A genuine admin token
/// does reach the same routes, so the refusals are the forgeries'.
#[tokio::test]
async fn forged_admin_tokens_reach_no_route() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (buyer_id, buyer, _) = app.user("customer").await;
    let (attacker_id, attacker, _) = app.user("customer").await;
    let event = app.published_event(&org, None, None).await;
    let (tickets, _) = buy(&app, &buyer, event, &["A-1"]).await;
    let ticket = &tickets[0];
    let hold = json_of(app.post(&format!("/events/{event}/holds"), Some(&buyer), json!({"quantity": 2})).await).await
        ["hold_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let secret = TEST_JWT_SECRET.as_bytes();
    let admin = |aud: &str, iss: &str, exp_in: i64| claims(attacker_id, "admin", aud, iss, exp_in);
    let good_admin = admin("boxoffice-api", "boxoffice", 600);
    let parts: Vec<&str> = attacker.split('.').collect();
    let mut payload: Value = {
        use base64::Engine;
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
    };
    payload["role"] = json!("admin");
    let forgeries = [
        ("wrong key", hs(jsonwebtoken::Algorithm::HS256, &good_admin, b"not-the-server-secret-but-long-enough!!")),
        (
            "alg none",
            format!("{}.{}.", b64url(br#"{"alg":"none","typ":"JWT"}"#), b64url(good_admin.to_string().as_bytes())),
        ),
        (
            "alg None, signature kept",
            format!(
                "{}.{}.{}",
                b64url(br#"{"alg":"None","typ":"JWT"}"#),
                b64url(good_admin.to_string().as_bytes()),
                parts[2]
            ),
        ),
        ("HS512 with the real key", hs(jsonwebtoken::Algorithm::HS512, &good_admin, secret)),
        ("expired", hs(jsonwebtoken::Algorithm::HS256, &admin("boxoffice-api", "boxoffice", -3600), secret)),
        ("wrong audience", hs(jsonwebtoken::Algorithm::HS256, &admin("other-api", "boxoffice", 600), secret)),
        ("wrong issuer", hs(jsonwebtoken::Algorithm::HS256, &admin("boxoffice-api", "evil", 600), secret)),
        ("empty key", hs(jsonwebtoken::Algorithm::HS256, &good_admin, b"")),
        (
            "role edited into a real token",
            format!("{}.{}.{}", parts[0], b64url(payload.to_string().as_bytes()), parts[2]),
        ),
        ("signature stripped", format!("{}.{}.", parts[0], b64url(payload.to_string().as_bytes()))),
        ("no exp", {
            let mut c = good_admin.clone();
            c.as_object_mut().unwrap().remove("exp");
            hs(jsonwebtoken::Algorithm::HS256, &c, secret)
        }),
        ("a refresh token", app.user("customer").await.2),
    ];
    let routes = [
        (Method::GET, format!("/tickets/user/{buyer_id}"), None),
        (Method::GET, format!("/holds/{hold}"), None),
        (Method::DELETE, format!("/holds/{hold}"), None),
        (Method::GET, format!("/tickets/{ticket}/qr"), None),
        (Method::POST, format!("/tickets/{ticket}/cancel"), Some(json!({}))),
        (Method::GET, format!("/events/{event}/staff"), None),
        (Method::POST, format!("/events/{event}/close"), Some(json!({}))),
        (Method::DELETE, format!("/events/{event}/delete"), None),
        (Method::GET, "/auth/me".to_owned(), None),
    ];
    let before = snapshot(&app.db).await;
    let mut violations = Vec::new();
    for (what, token) in &forgeries {
        for (method, path, body) in &routes {
            let r = send(&app, method.clone(), path, Some(token), body.clone()).await;
            if let Err(e) = problem(r, &[StatusCode::UNAUTHORIZED], None).await {
                violations.push(format!("{what}: {method} {e}"));
            }
        }
    }
    assert_none(&violations, "forged tokens");
    assert_unchanged(&before, &snapshot(&app.db).await);

    // Control: the genuine article (signed with the server's key) is let through.
    let real_admin = hs(jsonwebtoken::Algorithm::HS256, &good_admin, secret);
    let listed: Value = json_of(app.get(&format!("/tickets/user/{buyer_id}"), Some(&real_admin)).await).await;
    assert_eq!(listed["tickets"][0]["ticket_id"], ticket.as_str());
    app.stop().await;
}

// =============================================================================================
// Refresh tokens
// =============================================================================================

/// Two refreshes racing with one token: exactly one wins, and the loser's reuse
/// revokes the winner's new token too. Other sessions of the same user survive;
/// an expired refresh token is refused.
#[tokio::test]
async fn refresh_token_reuse_revokes_the_family_even_when_racing() {
    let app = spawn_app().await;
    let (_, _, first) = app.user("customer").await;
    let email: String = sqlx::query_scalar("SELECT email FROM users").fetch_one(&app.db).await.unwrap();
    let other_session =
        json_of(app.post("/auth/login", None, json!({"email": email, "password": "correct horse battery"})).await)
            .await["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();

    let refresh = |token: String| {
        let app = &app;
        async move { app.post("/auth/refresh", None, json!({"refresh_token": token})).await }
    };
    let (a, b) = tokio::join!(refresh(first.clone()), refresh(first.clone()));
    let (winner, loser) = if a.status() == StatusCode::OK { (a, b) } else { (b, a) };
    assert_eq!(winner.status(), StatusCode::OK, "one refresh wins");
    let next = json_of(winner).await["refresh_token"].as_str().unwrap().to_owned();
    problem(loser, &[StatusCode::UNAUTHORIZED], Some("refresh_token_reused")).await.unwrap();
    // The family is gone: the winner's fresh token no longer works.
    let r = refresh(next).await;
    problem(r, &[StatusCode::UNAUTHORIZED], None).await.unwrap();
    // Another login is another family.
    assert_eq!(refresh(other_session).await.status(), StatusCode::OK);
    // An access token is not a refresh token.
    let (_, access, _) = app.user("customer").await;
    problem(refresh(access).await, &[StatusCode::UNAUTHORIZED], Some("invalid_refresh_token")).await.unwrap();
    let revoked: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NOT NULL")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(revoked >= 2, "the reused family was revoked");
    app.stop().await;

    // Expired: refused even though never used.
    let app = spawn_app_on(fresh_database().await, &[("REFRESH_TTL_SECS", "1")]).await;
    let (_, _, short) = app.user("customer").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = app.post("/auth/refresh", None, json!({"refresh_token": short})).await;
    problem(r, &[StatusCode::UNAUTHORIZED], Some("invalid_refresh_token")).await.unwrap();
    app.stop().await;
}

// =============================================================================================
// QR codes at the door
// =============================================================================================

const QR_KEY: &str = "hostile-test-qr-signing-key";

/// Codes the attacker makes or copies: a replayed code is refused (and says when it
/// was first scanned) however many scanners race on it; codes signed with another key,
/// for a ticket that does not exist, or re-pointed at another event are refused.
#[tokio::test]
async fn forged_and_replayed_qr_codes_are_refused() {
    use boxoffice::qr::{QrSigner, TicketClaim};
    use secrecy::SecretString;
    let app = spawn_app_on(fresh_database().await, &[("QR_SIGNING_KEY", QR_KEY), ("QR_KEY_ID", "k1")]).await;
    let (_, org, _) = app.user("organizer").await;
    let (_, org2, _) = app.user("organizer").await;
    let (staff_id, staff, _) = app.user("staff").await;
    let (_, buyer, _) = app.user("customer").await;
    let event = app.published_event(&org, None, None).await;
    let other_event = app.published_event(&org2, None, None).await;
    app.post(&format!("/events/{event}/staff"), Some(&org), json!({"staff_id": staff_id})).await;
    app.post(&format!("/events/{other_event}/staff"), Some(&org2), json!({"staff_id": staff_id})).await;
    let (tickets, qrs) = buy(&app, &buyer, event, &["A-1", "A-2"]).await;
    let (t1, t2) = (tickets[0].parse::<Uuid>().unwrap(), tickets[1].parse::<Uuid>().unwrap());
    let real = QrSigner::new(("k1".into(), SecretString::from(QR_KEY)), vec![]);
    assert_eq!(real.verify(&qrs[0]).unwrap().ticket_id, t1, "the test signs like the server");

    let validate = |ticket: Uuid, token: &str, qr: String| {
        let app = &app;
        let token = token.to_owned();
        async move { app.post(&format!("/tickets/{ticket}/validate"), Some(&token), json!({"qr": qr})).await }
    };
    let mut violations = Vec::new();
    let mut expect = |what: &str, result: Result<Value, String>| {
        if let Err(e) = result {
            violations.push(format!("{what}: {e}"));
        }
    };
    let foreign = QrSigner::new(("k1".into(), SecretString::from("attacker-key")), vec![]);
    let unknown_kid = QrSigner::new(("k9".into(), SecretString::from(QR_KEY)), vec![]);
    let claim = TicketClaim { ticket_id: t1, event_id: event };
    let r = validate(t1, &staff, foreign.sign(claim)).await;
    expect("signed with another key", problem(r, &[StatusCode::UNPROCESSABLE_ENTITY], Some("invalid_qr")).await);
    let r = validate(t1, &staff, unknown_kid.sign(claim)).await;
    expect("unknown key id", problem(r, &[StatusCode::UNPROCESSABLE_ENTITY], Some("invalid_qr")).await);
    let ghost = Uuid::now_v7();
    let r = validate(ghost, &staff, real.sign(TicketClaim { ticket_id: ghost, event_id: event })).await;
    expect("validly signed, no such ticket", problem(r, &[StatusCode::NOT_FOUND], None).await);
    // A genuine ticket re-pointed at another event the scanner works for.
    let r = validate(t1, &staff, real.sign(TicketClaim { ticket_id: t1, event_id: other_event })).await;
    expect(
        "re-pointed at another event (its staff)",
        problem(r, &[StatusCode::UNPROCESSABLE_ENTITY], Some("invalid_qr")).await,
    );
    let r = validate(t1, &org2, real.sign(TicketClaim { ticket_id: t1, event_id: other_event })).await;
    expect(
        "re-pointed at another event (its organizer)",
        problem(r, &[StatusCode::UNPROCESSABLE_ENTITY], Some("invalid_qr")).await,
    );
    let r = validate(t1, &staff, qrs[1].clone()).await;
    expect("another ticket's code", problem(r, &[StatusCode::UNPROCESSABLE_ENTITY], Some("invalid_qr")).await);
    for junk in [String::new(), "BO1.".into(), "x".repeat(100_000), format!("{}\u{0}", qrs[0]), qrs[0].to_lowercase()] {
        let r = validate(t1, &staff, junk.clone()).await;
        let what = format!("junk {:?}", junk.chars().take(20).collect::<String>());
        expect(&what, problem(r, &[StatusCode::UNPROCESSABLE_ENTITY], Some("invalid_qr")).await);
    }
    let used: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tickets WHERE status = 'used'").fetch_one(&app.db).await.unwrap();
    assert_none(&violations, "forged codes");
    assert_eq!(used, 0, "no forged code admitted anyone");

    // Replay: eight scanners at once, then again later; one admission.
    let scans = (0..8)
        .map(|_| {
            let request = app
                .client
                .post(format!("{}/tickets/{t2}/validate", app.base))
                .bearer_auth(&staff)
                .json(&json!({"qr": qrs[1]}));
            tokio::spawn(async move { request.send().await.expect("scan sent") })
        })
        .collect::<Vec<_>>();
    let mut results = Vec::new();
    for scan in scans {
        results.push(scan.await.expect("scan task"));
    }
    let admitted = results.iter().filter(|r| r.status() == StatusCode::OK).count();
    assert_eq!(admitted, 1, "statuses {:?}", results.iter().map(|r| r.status()).collect::<Vec<_>>());
    for r in results.into_iter().filter(|r| r.status() != StatusCode::OK) {
        let body = problem(r, &[StatusCode::CONFLICT], Some("already_used")).await.unwrap();
        assert!(body["first_checked_in_at"].is_string(), "{body}");
    }
    let r = validate(t2, &org, qrs[1].clone()).await;
    let body = problem(r, &[StatusCode::CONFLICT], Some("already_used")).await.unwrap();
    assert_eq!(body["checked_in_by"], staff_id.to_string());
    let check_ins: i64 = sqlx::query_scalar("SELECT count(*) FROM check_ins").fetch_one(&app.db).await.unwrap();
    let used_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE topic = 'ticket:used'").fetch_one(&app.db).await.unwrap();
    assert_eq!((check_ins, used_events), (1, 1), "one check-in, one ticket:used event");
    app.stop().await;
}

// =============================================================================================
// SQL injection, and input PostgreSQL cannot store
// =============================================================================================

const INJECTIONS: &[&str] = &[
    "' OR '1'='1",
    "'; DROP TABLE users; --",
    "\" OR 1=1 --",
    "1) OR (1=1",
    "%' OR 1=1 --",
    "' UNION SELECT password_hash, null FROM users --",
    "$1",
    "$$; DROP TABLE events; $$",
    "\\'; DELETE FROM tickets; --",
    "e.event_id",
    "relevance; DROP TABLE events",
    "date, (SELECT pg_sleep(5))",
];

/// Injection strings in every search parameter, in path ids and in stored fields are
/// inert: 4xx or literal data, never a wider result, never a changed schema.
#[tokio::test]
async fn sql_injection_strings_are_inert() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let event = app.published_event(&org, None, None).await;
    let all: Value = json_of(app.get("/events/search", None).await).await;
    assert_eq!(all["total"], 1);
    let mut violations = Vec::new();
    let started = Instant::now();
    for inj in INJECTIONS {
        for param in ["q", "category", "sort", "from", "to", "max_price", "min_price", "available", "page", "per_page"]
        {
            let r = app.client.get(format!("{}/events/search", app.base)).query(&[(param, inj)]).send().await.unwrap();
            match r.status() {
                StatusCode::OK => {
                    let body: Value = r.json().await.unwrap();
                    if body["total"].as_i64().unwrap_or(99) > 0 && param != "q" {
                        violations.push(format!("search {param}={inj:?} matched events: {body}"));
                    }
                }
                s if s.is_client_error() => {
                    if let Err(e) = problem(r, &[s], None).await {
                        violations.push(format!("search {param}={inj:?}: {e}"));
                    }
                }
                s => violations.push(format!("search {param}={inj:?}: {s}")),
            }
        }
        let encoded: String = url_encode(inj);
        for (method, path) in [
            (Method::GET, format!("/events/{encoded}/details")),
            (Method::GET, format!("/holds/{encoded}")),
            (Method::GET, format!("/tickets/{encoded}/qr")),
            (Method::GET, format!("/tickets/user/{encoded}")),
            (Method::DELETE, format!("/events/{event}/staff/{encoded}")),
            (Method::POST, format!("/tickets/{encoded}/validate")),
        ] {
            let r = send(&app, method, &path, Some(&org), Some(json!({"qr": inj}))).await;
            if let Err(e) = problem(r, &[StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND], None).await {
                violations.push(format!("path {path}: {e}"));
            }
        }
        let r = app.post("/auth/login", None, json!({"email": format!("{inj}@example.com"), "password": inj})).await;
        if let Err(e) = problem(r, &[StatusCode::UNAUTHORIZED, StatusCode::UNPROCESSABLE_ENTITY], None).await {
            violations.push(format!("login with {inj:?}: {e}"));
        }
    }
    assert!(started.elapsed() < Duration::from_secs(60), "pg_sleep ran? {:?}", started.elapsed());
    // Stored verbatim, returned verbatim.
    let title = INJECTIONS[1];
    let created = json_of(
        app.post(
            "/events/create",
            Some(&org),
            json!({"title": title, "venue_name": INJECTIONS[0], "category": INJECTIONS[2],
                   "event_date": "2031-01-01T19:00:00Z", "total_seats": 5, "base_price": 100}),
        )
        .await,
    )
    .await;
    assert_eq!((created["title"].as_str(), created["venue_name"].as_str()), (Some(title), Some(INJECTIONS[0])));
    let r = app
        .post(
            "/auth/register",
            None,
            json!({"email": "bobby@example.com", "password": INJECTIONS[5], "name": INJECTIONS[5]}),
        )
        .await;
    assert_eq!(json_of(r).await["user"]["name"], INJECTIONS[5]);
    assert_none(&violations, "injection strings");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.unwrap();
    assert_eq!((users, events), (2, 2), "tables intact, nothing extra written");
    app.stop().await;
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// NUL bytes and timestamps outside PostgreSQL's range are bad input: a 4xx problem,
/// never a 500, and nothing written. (Found by scripts/fuzz_api.sh and the search
/// property test.)
#[tokio::test]
async fn nul_bytes_and_out_of_range_timestamps_are_4xx_not_500() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let event = app.published_event(&org, None, None).await;
    let before = snapshot(&app.db).await;
    let mut violations = Vec::new();
    let bad_input = [StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY];
    for query in [
        "q=a%00b",
        "category=a%00b",
        "from=-200000-01-01T00:00:00Z",
        "to=-4714-01-01T00:00:00Z",
        "from=%2B262143-12-31T23:59:59Z&to=-262143-01-01T00:00:00Z",
    ] {
        let r = app.get(&format!("/events/search?{query}"), None).await;
        if let Err(e) = problem(r, &bad_input, None).await {
            violations.push(format!("search ?{query}: {e}"));
        }
    }
    let general = |window: Value| {
        json!({"title": "T", "venue_name": "V", "event_date": "2031-01-01T19:00:00Z", "total_seats": 5,
               "base_price": 100, "sales_window": window})
    };
    for (what, body) in [
        ("opens_at in year -200000", general(json!({"opens_at": "-200000-01-01T00:00:00Z"}))),
        ("closes_at in 4714 BC", general(json!({"closes_at": "-4714-01-01T00:00:00Z"}))),
    ] {
        let r = app.post("/events/create", Some(&org), body).await;
        if let Err(e) = problem(r, &bad_input, None).await {
            violations.push(format!("create event, {what}: {e}"));
        }
    }
    for (path, body) in [
        (format!("/events/{event}/sales-window"), json!({"opens_at": "-200000-01-01T00:00:00Z"})),
        (format!("/events/{event}/update"), json!({"sales_window": {"closes_at": "-4714-01-01T00:00:00Z"}})),
    ] {
        let r = send(&app, Method::PUT, &path, Some(&org), Some(body)).await;
        if let Err(e) = problem(r, &bad_input, None).await {
            violations.push(format!("PUT {path}: {e}"));
        }
    }
    assert_unchanged(&before, &snapshot(&app.db).await);

    // Seat maps with a NUL in a member the map does not define: refused, or stored
    // without it — never a 500.
    let mut map_with_nul = small_map();
    map_with_nul["note"] = json!("\u{0}");
    let mut row_with_nul = small_map();
    row_with_nul["sections"][0]["rows"][0]["note"] = json!("a\u{0}b");
    for (what, map) in [("top level", map_with_nul), ("in a row", row_with_nul)] {
        let body =
            json!({"title": "T", "venue_name": "V", "event_date": "2031-01-01T19:00:00Z", "seat_map": map.clone()});
        let r = app.post("/events/create", Some(&org), body).await;
        if r.status() == StatusCode::CREATED {
            let id = r.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_owned();
            let stored = app.get(&format!("/events/{id}/seatmap"), Some(&org)).await.text().await.unwrap();
            if stored.contains("note") {
                violations.push(format!("seat map, NUL {what}: stored with the unknown member: {stored:.200}"));
            }
        } else if let Err(e) = problem(r, &bad_input, None).await {
            violations.push(format!("seat map, NUL {what}: {e}"));
        }
        let r = send(&app, Method::PUT, &format!("/events/{event}/seatmap"), Some(&org), Some(map)).await;
        if r.status() != StatusCode::OK
            && let Err(e) = problem(r, &bad_input, None).await
        {
            violations.push(format!("PUT seatmap, NUL {what}: {e}"));
        }
    }
    assert_none(&violations, "NUL bytes and out-of-range timestamps");
    app.stop().await;
}

// =============================================================================================
// Oversized bodies and slow clients
// =============================================================================================

/// Bodies over MAX_BODY_BYTES get 413 as a problem document — whether the client
/// announces the length or streams the body chunked, on JSON routes and on the
/// routes that read raw bytes — and nothing is written.
#[tokio::test]
async fn oversized_bodies_get_413_problem_json() {
    let app = spawn_app_on(fresh_database().await, &[("MAX_BODY_BYTES", "2048")]).await;
    let (_, org, _) = app.user("organizer").await;
    let before = snapshot(&app.db).await;
    let big_name = "x".repeat(4096);
    let register = json!({"email": "big@example.com", "password": "long enough", "name": big_name}).to_string();
    let rows: Vec<Value> = (0..200).map(|i| json!({"label": format!("R{i}"), "seats": 10})).collect();
    let map = json!({"tiers": [{"code": "S", "price": 1}],
                     "sections": [{"name": "F", "tier": "S", "kind": "seated", "rows": rows}]});
    let event =
        json!({"title": "Big", "venue_name": "V", "event_date": "2031-01-01T19:00:00Z", "seat_map": map}).to_string();
    let refresh = json!({"refresh_token": "y".repeat(4096)}).to_string();
    let mut violations = Vec::new();
    for (path, body, token) in [
        ("/auth/register", &register, None),
        ("/events/create", &event, Some(org.as_str())),
        ("/auth/refresh", &refresh, None),
        ("/auth/logout", &refresh, None),
        ("/payments/stripe/webhook", &refresh, None),
    ] {
        for chunked in [false, true] {
            let how = if chunked { "chunked" } else { "with Content-Length" };
            let answer = raw_post(&app, path, token, body, chunked).await;
            if let Err(e) = answer.problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large") {
                violations.push(format!("POST {path} {how}: {e}"));
            }
        }
    }
    let after = snapshot(&app.db).await;
    assert_none(&violations, "oversized bodies");
    assert_unchanged(&before, &after);
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    app.stop().await;
}

/// An HTTP answer read off a raw connection.
struct RawAnswer {
    status: u16,
    content_type: String,
    body: String,
}

impl RawAnswer {
    fn parse(raw: &str) -> Option<Self> {
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let mut lines = head.lines();
        let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let mut content_type = String::new();
        let mut chunked = false;
        for line in lines {
            let (k, v) = line.split_once(':')?;
            match k.trim().to_ascii_lowercase().as_str() {
                "content-type" => content_type = v.trim().to_owned(),
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
        let body = if chunked {
            let mut out = String::new();
            let mut rest = body;
            while let Some((size, after)) = rest.split_once("\r\n") {
                let n = usize::from_str_radix(size.trim(), 16).ok()?;
                if n == 0 || after.len() < n {
                    break;
                }
                out.push_str(&after[..n]);
                rest = after[n..].trim_start_matches("\r\n");
            }
            out
        } else {
            body.to_owned()
        };
        Some(Self { status, content_type, body })
    }

    fn problem(&self, status: StatusCode, code: &str) -> Result<(), String> {
        if self.status != status.as_u16() {
            return Err(format!("status {} (wanted {status}): {:.200}", self.status, self.body));
        }
        if self.content_type != "application/problem+json" {
            return Err(format!(
                "{} with content type {:?}, not application/problem+json: {:.200}",
                self.status, self.content_type, self.body
            ));
        }
        let body: Value = serde_json::from_str(&self.body).map_err(|e| format!("problem is not JSON: {e}"))?;
        if body["code"] != code || body["status"] != self.status {
            return Err(format!("problem {body} (wanted code {code})"));
        }
        Ok(())
    }
}

/// POSTs `body` over a raw connection, with Content-Length or chunked, and reads the answer.
async fn raw_post(app: &TestApp, path: &str, token: Option<&str>, body: &str, chunked: bool) -> RawAnswer {
    use tokio::io::AsyncWriteExt;
    let mut s = raw_connection(app).await;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let mut request =
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}");
    if chunked {
        request.push_str("Transfer-Encoding: chunked\r\n\r\n");
        for chunk in body.as_bytes().chunks(512) {
            request.push_str(&format!("{:x}\r\n{}\r\n", chunk.len(), String::from_utf8_lossy(chunk)));
        }
        request.push_str("0\r\n\r\n");
    } else {
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    }
    // The server may answer (and close) before reading it all: a failed write is fine.
    let _ = s.write_all(request.as_bytes()).await;
    let (raw, took) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    let raw = raw.unwrap_or_else(|| panic!("POST {path}: no answer within {took:?}"));
    RawAnswer::parse(&raw).unwrap_or_else(|| panic!("POST {path}: not an HTTP answer: {raw:.300}"))
}

/// Opens a raw connection to the app.
async fn raw_connection(app: &TestApp) -> tokio::net::TcpStream {
    let addr = app.base.trim_start_matches("http://");
    tokio::net::TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the server answers and closes, or `limit` passes: (what was read, how long).
async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> (Option<String>, Duration) {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (Some(String::from_utf8_lossy(&buf).into_owned()), started.elapsed()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {
                return (
                    if buf.is_empty() { None } else { Some(String::from_utf8_lossy(&buf).into_owned()) },
                    started.elapsed(),
                );
            }
        }
    }
}

/// REQUEST_TIMEOUT_MS of the slow-client tests.
const TIMEOUT_MS: u64 = 2000;
/// How long past REQUEST_TIMEOUT_MS a stalled request may linger.
const SLACK: Duration = Duration::from_secs(4);

/// Clients that send their headers and then stall the body are cut off by the
/// request timeout — twenty at once — while everyone else is served.
#[tokio::test]
async fn a_client_stalling_its_body_is_cut_off_and_others_are_served() {
    use tokio::io::AsyncWriteExt;
    let mut app = spawn_app_on(fresh_database().await, &[("REQUEST_TIMEOUT_MS", &TIMEOUT_MS.to_string())]).await;
    // The server closes connections idle longer than the timeout; a pooled client
    // could reuse one at the very moment it closes, so this test opens fresh ones.
    app.client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = raw_connection(&app).await;
        s.write_all(
            b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"email\":",
        )
        .await
        .unwrap();
        stalled.push(s);
    }
    // Others are served while those hang.
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    }
    assert!(started.elapsed() < Duration::from_millis(TIMEOUT_MS * 3 / 4), "healthz waited behind the stalled clients");
    let limit = Duration::from_millis(TIMEOUT_MS) + SLACK;
    for (i, s) in stalled.iter_mut().enumerate() {
        let (answer, took) = read_until_closed(s, limit).await;
        let answer = answer.unwrap_or_else(|| panic!("stalled client {i} still connected after {took:?}"));
        assert!(took <= limit, "client {i} lingered {took:?}");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408") || answer.starts_with("HTTP/1.1 503"),
            "client {i} got {answer:.200}"
        );
    }
    let (_, token, _) = app.user("customer").await;
    assert_eq!(app.get("/auth/me", Some(&token)).await.status(), StatusCode::OK);
    app.stop().await;
}

/// The answer a timed-out request gets is a problem document like every other error.
#[tokio::test]
async fn the_request_timeout_answer_is_a_problem_document() {
    use tokio::io::AsyncWriteExt;
    let mut app = spawn_app_on(fresh_database().await, &[("REQUEST_TIMEOUT_MS", &TIMEOUT_MS.to_string())]).await;
    // The server closes connections idle longer than the timeout; a pooled client
    // could reuse one at the very moment it closes, so this test opens fresh ones.
    app.client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut s = raw_connection(&app).await;
    s.write_all(
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{",
    )
    .await
    .unwrap();
    let (answer, _) = read_until_closed(&mut s, Duration::from_millis(TIMEOUT_MS) + SLACK).await;
    let answer = answer.expect("an answer");
    let head = answer.split("\r\n\r\n").next().unwrap_or("").to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503") || head.starts_with("http/1.1 408"), "{answer:.300}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "timeout answer is not a problem document:\n{answer:.300}"
    );
    app.stop().await;
}

/// A client that never finishes its request headers (slowloris) is cut off too, and
/// does not hold up a graceful shutdown.
#[tokio::test]
async fn a_client_stalling_its_headers_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let mut app = spawn_app_on(fresh_database().await, &[("REQUEST_TIMEOUT_MS", &TIMEOUT_MS.to_string())]).await;
    // The server closes connections idle longer than the timeout; a pooled client
    // could reuse one at the very moment it closes, so this test opens fresh ones.
    app.client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut s = raw_connection(&app).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let limit = Duration::from_millis(TIMEOUT_MS) + SLACK;
    let (answer, took) = read_until_closed(&mut s, limit).await;
    assert!(answer.is_some() && took <= limit, "a connection with unfinished headers is still open after {took:?}");
    let mut s = raw_connection(&app).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), app.stop()).await;
    assert!(stopped.is_ok(), "graceful shutdown waited on a client with unfinished headers");
    drop(s);
}

// =============================================================================================
// Login brute force
// =============================================================================================

/// Login attempts are limited per email and per client address: past the limit even
/// the right password gets 429 with Retry-After; another address cannot continue on
/// the same email, and X-Forwarded-For does not reset the count.
#[tokio::test]
async fn login_brute_force_is_rate_limited() {
    let app = spawn_app_on(fresh_database().await, &[("AUTH_RATE_LIMIT_PER_MINUTE", "5")]).await;
    let email = "victim@example.com";
    let r = app.post("/auth/register", None, json!({"email": email, "password": "the-right-one", "name": "V"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    for i in 0..4 {
        let r = app.post("/auth/login", None, json!({"email": email, "password": format!("guess-{i}-guess")})).await;
        problem(r, &[StatusCode::UNAUTHORIZED], Some("invalid_credentials")).await.unwrap();
    }
    let limited = |r: reqwest::Response| async move {
        let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "Retry-After: {retry:?}");
        problem(r, &[StatusCode::TOO_MANY_REQUESTS], Some("rate_limited")).await.unwrap();
    };
    // The right password, once limited: still refused.
    limited(app.post("/auth/login", None, json!({"email": email, "password": "the-right-one"})).await).await;
    // Same address, other emails: the address is limited.
    limited(app.post("/auth/login", None, json!({"email": "other@example.com", "password": "whatever1"})).await).await;
    limited(
        app.post("/auth/register", None, json!({"email": "new@example.com", "password": "whatever1", "name": "N"}))
            .await,
    )
    .await;
    let spoofed = app
        .client
        .post(format!("{}/auth/login", app.base))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"email": "third@example.com", "password": "whatever1"}))
        .send()
        .await
        .unwrap();
    limited(spoofed).await;
    // From another address (127.0.0.2): the victim's email is still limited, other
    // accounts are not.
    let elsewhere = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    let r = elsewhere
        .post(format!("{}/auth/login", app.base))
        .json(&json!({"email": email, "password": "the-right-one"}))
        .send()
        .await
        .unwrap();
    limited(r).await;
    let r = elsewhere
        .post(format!("{}/auth/login", app.base))
        .json(&json!({"email": "nobody@example.com", "password": "whatever1"}))
        .send()
        .await
        .unwrap();
    problem(r, &[StatusCode::UNAUTHORIZED], Some("invalid_credentials")).await.unwrap();
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens").fetch_one(&app.db).await.unwrap();
    assert_eq!(tokens, 1, "no login succeeded past the limit");
    app.stop().await;
}

// =============================================================================================
// Secrets in logs
// =============================================================================================

/// The server binary at RUST_LOG=debug through a whole session — register, login
/// (right and wrong), refresh (body and cookie), purchase (approved, declined,
/// unknown card), check-in, forged code, logout — never writes a password, an access
/// or refresh token, a QR code, a configured secret, an email address or a payment
/// method id to its output.
#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let db_url = fresh_database().await;
    let dir = std::env::temp_dir().join(format!("boxoffice-hostile-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let jwt_secret = format!("jwt-{}-{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let qr_key = format!("qr-{}", Uuid::new_v4().simple());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_boxoffice"))
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db_url)
        .env("BIND", "127.0.0.1:0")
        .env("BOXOFFICE_DATA_DIR", dir.join("data"))
        .env("JWT_SECRET", &jwt_secret)
        .env("QR_SIGNING_KEY", &qr_key)
        .env("COOKIE_SECURE", "false")
        .env("RUST_LOG", "debug")
        .env("LOG_FORMAT", "text")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start the server binary");
    let base = match wait_for_listening(&log_path, &mut child).await {
        Ok(base) => base,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{e}");
        }
    };
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let session = run_session(&client, &base).await;
    // Graceful stop (SIGTERM), so everything buffered is written.
    // (`kill` is procps'; without it, SIGKILL: every log line is written as it happens.)
    if std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().is_err() {
        let _ = child.kill();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.wait();
    let raw = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let session = session.unwrap_or_else(|e| panic!("session failed: {e}\n--- log ---\n{raw:.4000}"));

    assert!(raw.contains("DEBUG"), "RUST_LOG=debug took effect");
    assert!(raw.contains("user registered"), "the session was logged");
    // The start-up notice names the test provider's cards; it is not card data.
    let scanned: String = raw.lines().filter(|l| !l.contains("no STRIPE_SECRET_KEY")).collect::<Vec<_>>().join("\n");
    let mut secrets = session.secrets;
    secrets.push(("JWT secret".to_owned(), jwt_secret));
    secrets.push(("QR signing key".to_owned(), qr_key));
    let mut leaks = Vec::new();
    for (what, secret) in &secrets {
        if secret.len() >= 8 && scanned.contains(secret.as_str()) {
            leaks.push(format!("{what}: {secret:.40}"));
        }
    }
    // Nothing after a `pm_` prefix: no payment method id at all.
    for (at, _) in scanned.match_indices("pm_") {
        if scanned[at + 3..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
            let line = scanned[..at].rfind('\n').map_or(0, |n| n + 1);
            let end = scanned[at..].find('\n').map_or(scanned.len(), |n| at + n);
            leaks.push(format!("a payment method id: {:.300}", &scanned[line..end]));
        }
    }
    if scanned.to_ascii_lowercase().contains("bearer ") {
        leaks.push("an Authorization header".into());
    }
    assert!(leaks.is_empty(), "the log contains:\n  {}", leaks.join("\n  "));
}

/// Waits for "boxoffice listening addr=127.0.0.1:PORT" in the log; the base URL.
async fn wait_for_listening(log: &std::path::Path, child: &mut std::process::Child) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("boxoffice listening"))
            && let Some(at) = line.find("127.0.0.1:")
        {
            let port: String = line[at + 10..].chars().take_while(char::is_ascii_digit).collect();
            return Ok(format!("http://127.0.0.1:{port}"));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited ({status}):\n{text}"));
        }
        if Instant::now() > deadline {
            return Err(format!("the server did not listen within 60 s:\n{text}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Session {
    /// (what, value) of everything that must not be logged.
    secrets: Vec<(String, String)>,
}

/// A whole session against the server at `base`, collecting every secret it sees.
async fn run_session(client: &reqwest::Client, base: &str) -> Result<Session, String> {
    let mut secrets = Vec::new();
    let call = |method: Method, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut req = client.request(method, format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
    };
    let expect = |r: reqwest::Response, status: StatusCode| async move {
        let got = r.status();
        let text = r.text().await.map_err(|e| e.to_string())?;
        if got != status {
            return Err(format!("{got} (wanted {status}): {text:.300}"));
        }
        Ok::<Value, String>(serde_json::from_str(&text).unwrap_or(Value::Null))
    };
    let tag = Uuid::new_v4().simple().to_string();
    let password = format!("Pw-{tag}");
    let email = format!("buyer-{tag}@example.com");
    let org_password = format!("OrgPw-{tag}");
    let org_email = format!("org-{tag}@example.com");
    secrets.push(("password".into(), password.clone()));
    secrets.push(("organizer password".into(), org_password.clone()));
    secrets.push(("email".into(), email.clone()));
    secrets.push(("organizer email".into(), org_email.clone()));
    let keep = |what: &str, v: &Value, secrets: &mut Vec<(String, String)>| {
        let s = v.as_str().unwrap_or_default().to_owned();
        secrets.push((what.to_owned(), s.clone()));
        // A JWT's signature alone is a secret too.
        if let Some(sig) = s.rsplit('.').next().filter(|_| s.matches('.').count() == 2) {
            secrets.push((format!("{what} (signature)"), sig.to_owned()));
        }
        s
    };
    let r = call(
        Method::POST,
        "/auth/register",
        None,
        Some(json!({"email": email, "password": password, "name": "Buyer"})),
    )
    .await
    .map_err(|e| e.to_string())?;
    let reg = expect(r, StatusCode::CREATED).await?;
    keep("access token (register)", &reg["access_token"], &mut secrets);
    keep("refresh token (register)", &reg["refresh_token"], &mut secrets);
    let r = call(Method::POST, "/auth/login", None, Some(json!({"email": email, "password": format!("Wrong-{tag}")})))
        .await
        .map_err(|e| e.to_string())?;
    expect(r, StatusCode::UNAUTHORIZED).await?;
    secrets.push(("wrong password".into(), format!("Wrong-{tag}")));
    let r = call(Method::POST, "/auth/login", None, Some(json!({"email": email, "password": password})))
        .await
        .map_err(|e| e.to_string())?;
    let login = expect(r, StatusCode::OK).await?;
    let access = keep("access token (login)", &login["access_token"], &mut secrets);
    let refresh = keep("refresh token (login)", &login["refresh_token"], &mut secrets);
    let r = call(Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": refresh})))
        .await
        .map_err(|e| e.to_string())?;
    let refreshed = expect(r, StatusCode::OK).await?;
    keep("access token (refresh)", &refreshed["access_token"], &mut secrets);
    keep("refresh token (refresh)", &refreshed["refresh_token"], &mut secrets);
    // The cookie jar now holds the newest refresh token: refresh by cookie.
    let r = call(Method::POST, "/auth/refresh", None, None).await.map_err(|e| e.to_string())?;
    let by_cookie = expect(r, StatusCode::OK).await?;
    keep("access token (cookie refresh)", &by_cookie["access_token"], &mut secrets);
    let last_refresh = keep("refresh token (cookie refresh)", &by_cookie["refresh_token"], &mut secrets);
    // Reusing a rotated one (logged as a warning: the user id only).
    let r = call(Method::POST, "/auth/refresh", None, Some(json!({"refresh_token": refresh})))
        .await
        .map_err(|e| e.to_string())?;
    expect(r, StatusCode::UNAUTHORIZED).await?;
    let r = call(Method::GET, "/auth/me", Some(&access), None).await.map_err(|e| e.to_string())?;
    expect(r, StatusCode::OK).await?;

    let r = call(
        Method::POST,
        "/auth/register",
        None,
        Some(json!({"email": org_email, "password": org_password, "name": "Org", "user_type": "organizer"})),
    )
    .await
    .map_err(|e| e.to_string())?;
    let org_reg = expect(r, StatusCode::CREATED).await?;
    let org = keep("organizer access token", &org_reg["access_token"], &mut secrets);
    keep("organizer refresh token", &org_reg["refresh_token"], &mut secrets);
    let r = call(
        Method::POST,
        "/events/create",
        Some(&org),
        Some(json!({"title": "Log test", "venue_name": "Hall", "event_date": "2031-01-01T19:00:00Z", "seat_map": small_map()})),
    )
    .await
    .map_err(|e| e.to_string())?;
    let event = expect(r, StatusCode::CREATED).await?["event_id"].as_str().unwrap_or_default().to_owned();
    let r = call(Method::POST, &format!("/events/{event}/publish"), Some(&org), Some(json!({})))
        .await
        .map_err(|e| e.to_string())?;
    expect(r, StatusCode::OK).await?;

    let unknown_card = format!("pm_hostile{tag}");
    for (card, status) in [
        ("pm_card_chargeDeclined".to_owned(), StatusCode::PAYMENT_REQUIRED),
        (unknown_card, StatusCode::UNPROCESSABLE_ENTITY),
        ("pm_card_visa".to_owned(), StatusCode::CREATED),
    ] {
        let r = call(
            Method::POST,
            "/tickets/purchase",
            Some(&access),
            Some(json!({"event_id": event, "seats": ["A-1"], "payment_method": card})),
        )
        .await
        .map_err(|e| e.to_string())?;
        let sale = expect(r, status).await.map_err(|e| format!("purchase with {card}: {e}"))?;
        if status == StatusCode::CREATED {
            let qr = keep("QR token", &sale["tickets"][0]["qr_token"], &mut secrets);
            let ticket = sale["tickets"][0]["ticket_id"].as_str().unwrap_or_default().to_owned();
            let r = call(Method::POST, &format!("/tickets/{ticket}/validate"), Some(&org), Some(json!({"qr": qr})))
                .await
                .map_err(|e| e.to_string())?;
            expect(r, StatusCode::OK).await?;
            let r = call(Method::POST, &format!("/tickets/{ticket}/validate"), Some(&org), Some(json!({"qr": qr})))
                .await
                .map_err(|e| e.to_string())?;
            expect(r, StatusCode::CONFLICT).await?;
            let last = if qr.ends_with('A') { 'B' } else { 'A' };
            let forged = format!("{}{last}", &qr[..qr.len() - 1]);
            let r = call(Method::POST, &format!("/tickets/{ticket}/validate"), Some(&org), Some(json!({"qr": forged})))
                .await
                .map_err(|e| e.to_string())?;
            expect(r, StatusCode::UNPROCESSABLE_ENTITY).await?;
        }
    }
    let r = call(Method::POST, "/auth/logout", None, Some(json!({"refresh_token": last_refresh})))
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != StatusCode::NO_CONTENT {
        return Err(format!("logout: {}", r.status()));
    }
    Ok(Session { secrets })
}

// =============================================================================================
// Routes and methods that do not exist
// =============================================================================================

/// An unknown route, and a known route with a method it does not take, are problem
/// documents like every other error (found by scripts/fuzz_api.sh: `TRACE` and friends).
#[tokio::test]
async fn unknown_routes_and_methods_are_problem_documents() {
    let app = spawn_app().await;
    assert_problem(app.get("/no/such/route", None).await, StatusCode::NOT_FOUND, "not_found").await;
    let mut violations = Vec::new();
    for (method, path) in [
        (Method::PATCH, "/auth/login"),
        (Method::GET, "/auth/login"),
        (Method::DELETE, "/events/search"),
        (Method::TRACE, "/healthz"),
        (Method::PUT, "/orders"),
    ] {
        let r = send(&app, method.clone(), path, None, None).await;
        if let Err(e) = problem(r, &[StatusCode::METHOD_NOT_ALLOWED], None).await {
            violations.push(format!("{method} {path}: {e}"));
        }
    }
    assert_none(&violations, "wrong methods");
    app.stop().await;
}
