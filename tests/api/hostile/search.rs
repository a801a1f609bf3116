//! GET /events/search with arbitrary query strings (a property test over HTTP): never a 5xx,
//! every 4xx a problem document, never an unpublished event.

use super::{draft_event, json_of, proptest_config};
use boxoffice_testkit::{TestApp, problem, spawn_app};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use reqwest::StatusCode;
use serde_json::{Value, json};

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
