//! The waiting room (docs/domain.md, "Waiting room"): the pre-queue shuffle and its audit
//! record, first come first served after the opening, holds and one-shot purchases gated
//! by admissions bound to event and account, expiry giving the slot to the next in line,
//! the admission rate, sold out, the per-address join limit, concurrent joins group-committed
//! into consecutive places, and places that survive a restart and a move of the event to
//! another node.

use boxoffice::auth::Role;
use boxoffice::auth::tokens::Claims;
use boxoffice::store::queue;
use boxoffice_actors::waiting_room::shuffle;
use boxoffice_testkit::{TEST_JWT_SECRET, TestApp, assert_problem, expire_lease, fresh_database, poll, spawn_app_on};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

/// Test settings: a fast ticker, and joins from the one test address unlimited.
const FAST: &[(&str, &str)] = &[("WAITING_ROOM_TICK_MS", "50"), ("QUEUE_JOINS_PER_IP_PER_MINUTE", "100000")];

async fn app() -> TestApp {
    spawn_app_on(fresh_database().await, FAST).await
}

/// A published event with a waiting room `room`, opening at `opens_at` (now if `None`).
async fn room_event(
    app: &TestApp,
    org: &str,
    opens_at: Option<DateTime<Utc>>,
    room: Value,
    map: Option<Value>,
) -> Uuid {
    let mut window = json!({"per_buyer_limit": 10, "waiting_room": room});
    if let Some(t) = opens_at {
        window["opens_at"] = json!(t);
    }
    app.published_event(org, map, Some(window)).await
}

async fn join(app: &TestApp, event: Uuid, token: &str) -> Value {
    let r = app.post(&format!("/events/{event}/queue"), Some(token), json!({})).await;
    assert!(matches!(r.status(), StatusCode::CREATED | StatusCode::OK), "join: {}", r.status());
    r.json().await.unwrap()
}

async fn me(app: &TestApp, event: Uuid, token: &str) -> Value {
    let r = app.get(&format!("/events/{event}/queue/me"), Some(token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Waits (bounded) until `token`'s buyer is admitted to `event`; the admission token.
async fn admitted(app: &TestApp, event: Uuid, token: &str) -> String {
    poll(Duration::from_secs(20), Duration::from_millis(50), || async {
        let v = me(app, event, token).await;
        v["admission"]["token"].as_str().map(str::to_owned).ok_or(v)
    })
    .await
    .unwrap_or_else(|v| panic!("never admitted: {v}"))
}

/// A hold of one place at `event` with `admission` (if any) as `token`'s buyer.
async fn hold(app: &TestApp, event: Uuid, token: &str, admission: Option<&str>) -> reqwest::Response {
    let mut req = app.client.post(format!("{}/events/{event}/holds", app.base)).bearer_auth(token);
    if let Some(a) = admission {
        req = req.header("Queue-Admission", a);
    }
    req.json(&json!({"quantity": 1, "section": "Standing"})).send().await.unwrap()
}

async fn room(app: &TestApp, event: Uuid, org: &str) -> Value {
    let r = app.get(&format!("/events/{event}/queue"), Some(org)).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Buyers' tokens and ids, registered through the API.
async fn buyers(app: &TestApp, n: usize) -> Vec<(Uuid, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (id, token, _) = app.user("customer").await;
        out.push((id, token));
    }
    out
}

/// Places by join order, from the database.
async fn places_in_join_order(app: &TestApp, event: Uuid) -> Vec<(Uuid, Option<i64>)> {
    sqlx::query_as("SELECT user_id, position FROM queue_entries WHERE event_id = $1 ORDER BY seq")
        .bind(event)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_pre_queue_is_shuffled_at_the_opening_and_the_audit_record_re_derives_it() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let people = buyers(&app, 24).await;
    let opens_at = Utc::now() + chrono::TimeDelta::seconds(4);
    let event = room_event(&app, &org, Some(opens_at), json!({"enabled": true, "rate_per_minute": 6}), None).await;
    for (_, token) in &people {
        let v = join(&app, event, token).await;
        assert_eq!(v["state"], "pre_queue", "{v}");
        assert!(v["position"].is_null(), "no place before the opening: {v}");
    }
    // Joining again is the same entry, not a second one.
    let again = app.post(&format!("/events/{event}/queue"), Some(&people[0].1), json!({})).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap()["state"], "pre_queue");
    // Holds before the opening are refused as ever (the sale is not open).
    assert_problem(hold(&app, event, &people[0].1, None).await, StatusCode::FORBIDDEN, "not_admitted").await;

    let view = poll(Duration::from_secs(30), Duration::from_millis(100), || async {
        let v = room(&app, event, &org).await;
        if v["opening"].is_object() { Ok(v) } else { Err(v) }
    })
    .await
    .expect("the room opens");
    let opening = &view["opening"];
    assert_eq!(opening["shuffled"], 24, "{view}");
    let seed: u64 = opening["seed"].as_str().unwrap().parse().unwrap();
    let opened_at: DateTime<Utc> = opening["opened_at"].as_str().unwrap().parse().unwrap();
    assert!(opened_at >= opens_at, "opened at the opening time, not before: {opened_at} < {opens_at}");

    // The places are a permutation of 1..=24, and exactly the one the seed draws from join order.
    let rows = places_in_join_order(&app, event).await;
    let mut expected = vec![0i64; rows.len()];
    for (place, &joiner) in shuffle(seed, rows.len()).iter().enumerate() {
        expected[joiner] = place as i64 + 1;
    }
    let got: Vec<i64> = rows.iter().map(|(_, p)| p.expect("placed")).collect();
    assert_eq!(got, expected, "the audit record re-derives every place");
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=24).collect::<Vec<_>>());
    assert_ne!(got, (1..=24).collect::<Vec<_>>(), "not join order");

    // Each buyer sees their own place; a later joiner goes after the whole pre-queue.
    let (_, late, _) = app.user("customer").await;
    let v = join(&app, event, &late).await;
    assert_eq!(v["position"], 25, "after the opening: first come, first served: {v}");
    for ((id, token), place) in people.iter().zip(&got) {
        let v = me(&app, event, token).await;
        assert_eq!(v["position"], *place, "{id}: {v}");
    }
}

#[tokio::test]
async fn after_the_opening_admission_order_is_join_order() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let people = buyers(&app, 8).await;
    // One admission a second: the line forms while the first are let in.
    let event = room_event(&app, &org, None, json!({"enabled": true, "rate_per_minute": 60}), None).await;
    for (i, (_, token)) in people.iter().enumerate() {
        let v = join(&app, event, token).await;
        assert_eq!(v["position"], i as i64 + 1, "{v}");
    }
    admitted(&app, event, &people[7].1).await;
    let order: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
        "SELECT user_id, admitted_at FROM queue_entries WHERE event_id = $1 ORDER BY admitted_at, position",
    )
    .bind(event)
    .fetch_all(&app.db)
    .await
    .unwrap();
    let ids: Vec<Uuid> = order.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, people.iter().map(|(id, _)| *id).collect::<Vec<_>>(), "admitted in join order");
}

#[tokio::test]
async fn holds_and_purchases_need_an_admission_for_this_event_and_account() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let people = buyers(&app, 2).await;
    let (alice, bob) = (&people[0].1, &people[1].1);
    let room_cfg = json!({"enabled": true, "rate_per_minute": 600, "admission_ttl_secs": 600});
    let a = room_event(&app, &org, None, room_cfg.clone(), None).await;
    let b = room_event(&app, &org, None, room_cfg, None).await;

    let p = assert_problem(hold(&app, a, alice, None).await, StatusCode::FORBIDDEN, "not_admitted").await;
    assert_eq!(p["queue_state"], "not_joined", "{p}");
    join(&app, a, alice).await;
    let token = admitted(&app, a, alice).await;

    // Without the token, with an altered one, on another event, for another account: refused.
    assert_problem(hold(&app, a, alice, None).await, StatusCode::FORBIDDEN, "not_admitted").await;
    assert_problem(hold(&app, a, alice, Some("QA1.forged")).await, StatusCode::FORBIDDEN, "not_admitted").await;
    let p = assert_problem(hold(&app, b, alice, Some(&token)).await, StatusCode::FORBIDDEN, "not_admitted").await;
    assert!(p["detail"].as_str().unwrap().contains("another event"), "{p}");
    join(&app, a, bob).await;
    let p = assert_problem(hold(&app, a, bob, Some(&token)).await, StatusCode::FORBIDDEN, "not_admitted").await;
    assert!(p["position"].is_number() || p["queue_state"] == "admitted", "where Bob stands: {p}");

    // With it: accepted, and the admission is marked used.
    let r = hold(&app, a, alice, Some(&token)).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    assert_eq!(me(&app, a, alice).await["state"], "used");

    // The one-shot purchase is gated the same way.
    let body = json!({"event_id": a, "quantity": 1, "section": "Standing", "payment_method": "pm_card_visa",
                      "include_qr_image": false});
    let r = app.post("/tickets/purchase", Some(alice), body.clone()).await;
    assert_problem(r, StatusCode::FORBIDDEN, "not_admitted").await;
    let r = app
        .client
        .post(format!("{}/tickets/purchase", app.base))
        .bearer_auth(alice)
        .header("Queue-Admission", &token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());

    // An event without a room sells without admissions, and has no queue to join.
    let plain = app.published_event(&org, None, None).await;
    assert_eq!(hold(&app, plain, bob, None).await.status(), StatusCode::CREATED);
    let r = app.post(&format!("/events/{plain}/queue"), Some(bob), json!({})).await;
    assert_problem(r, StatusCode::CONFLICT, "no_waiting_room").await;

    // Turning the room off lets everyone in at once.
    let r = app
        .request(
            reqwest::Method::PUT,
            &format!("/events/{b}/sales-window"),
            Some(&org),
            Some(json!({"waiting_room": {"enabled": false}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["sales_window"]["waiting_room"]["enabled"], false);
    assert_eq!(hold(&app, b, bob, None).await.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn an_unused_admission_expires_and_its_slot_goes_to_the_next_in_line() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let people = buyers(&app, 2).await;
    // One a minute: the second would wait a minute, unless the first's slot comes back.
    let event =
        room_event(&app, &org, None, json!({"enabled": true, "rate_per_minute": 1, "admission_ttl_secs": 5}), None)
            .await;
    join(&app, event, &people[0].1).await;
    join(&app, event, &people[1].1).await;
    let first = admitted(&app, event, &people[0].1).await;
    let v = me(&app, event, &people[1].1).await;
    assert_eq!(v["state"], "waiting", "{v}");
    assert_eq!(v["ahead"], 0, "{v}");
    // The first never uses it: it lapses, and the second is let in well before a minute.
    let second = admitted(&app, event, &people[1].1).await;
    assert_eq!(me(&app, event, &people[0].1).await["state"], "expired");
    assert_problem(hold(&app, event, &people[0].1, Some(&first)).await, StatusCode::FORBIDDEN, "not_admitted").await;
    assert_eq!(hold(&app, event, &people[1].1, Some(&second)).await.status(), StatusCode::CREATED);
    let view = room(&app, event, &org).await;
    assert_eq!(view["expired_total"], 1, "{view}");
    assert_eq!(view["admitted_total"], 2, "{view}");
}

#[tokio::test]
async fn a_room_that_opened_to_nobody_lets_the_first_to_come_in_at_once() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let people = buyers(&app, 2).await;
    let event = room_event(&app, &org, None, json!({"enabled": true, "rate_per_minute": 1}), None).await;
    // The owner ticks every 50 ms: let it find the line empty many times over.
    tokio::time::sleep(Duration::from_millis(600)).await;
    join(&app, event, &people[0].1).await;
    // One a minute, but nobody was let in before: not a minute behind nobody.
    admitted(&app, event, &people[0].1).await;
    // The rate holds for the next one.
    join(&app, event, &people[1].1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = me(&app, event, &people[1].1).await;
    assert_eq!(v["state"], "waiting", "one a minute: the second waits {v}");
}

#[tokio::test]
async fn a_fixed_rate_admits_within_five_percent_of_it() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    // 1,200 a minute (20 a second) over a line of 100: about 5 s of admissions.
    let opens_at = Utc::now() + chrono::TimeDelta::seconds(2);
    let event = room_event(&app, &org, Some(opens_at), json!({"enabled": true, "rate_per_minute": 1200}), None).await;
    // The line is rows: joining through the API would only add registrations.
    for _ in 0..100 {
        sqlx::query("INSERT INTO queue_entries (event_id, user_id, pre_queue) VALUES ($1, $2, true)")
            .bind(event)
            .bind(Uuid::now_v7())
            .execute(&app.db)
            .await
            .unwrap();
    }
    let times: Vec<DateTime<Utc>> = poll(Duration::from_secs(60), Duration::from_millis(200), || async {
        let t: Vec<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT admitted_at FROM queue_entries WHERE event_id = $1 AND admitted_at IS NOT NULL ORDER BY admitted_at",
        )
        .bind(event)
        .fetch_all(&app.db)
        .await
        .unwrap();
        if t.len() == 100 { Ok(t) } else { Err(t.len()) }
    })
    .await
    .expect("everyone admitted");
    let span = (times[99] - times[0]).num_milliseconds() as f64 / 60_000.0;
    let rate = 99.0 / span;
    assert!((1140.0..=1260.0).contains(&rate), "{rate:.0} admissions a minute, wanted 1200 ± 5 %");
}

#[tokio::test]
async fn everyone_waiting_learns_of_a_sell_out_and_a_waitlist_keeps_them() {
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let people = buyers(&app, 4).await;
    let one_place = json!({
        "tiers": [{"code": "A", "price": 5000}],
        "sections": [{"name": "Standing", "tier": "A", "kind": "general", "capacity": 1}]
    });
    let plain = json!({"enabled": true, "rate_per_minute": 1, "admission_ttl_secs": 600});
    let waitlist = json!({"enabled": true, "rate_per_minute": 1, "admission_ttl_secs": 600, "waitlist": true});
    for (room_cfg, state) in [(plain, "sold_out"), (waitlist, "waiting")] {
        let event = room_event(&app, &org, None, room_cfg, Some(one_place.clone())).await;
        let (first, second) =
            if state == "sold_out" { (&people[0].1, &people[1].1) } else { (&people[2].1, &people[3].1) };
        join(&app, event, first).await;
        join(&app, event, second).await;
        let token = admitted(&app, event, first).await;
        let mut live = app.client.get(format!("{}/events/{event}/live", app.base)).send().await.unwrap();
        assert_eq!(live.status(), StatusCode::OK);
        let body =
            json!({"event_id": event, "quantity": 1, "payment_method": "pm_card_visa", "include_qr_image": false});
        let r = app
            .client
            .post(format!("{}/tickets/purchase", app.base))
            .bearer_auth(first)
            .header("Queue-Admission", &token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v = poll(Duration::from_secs(20), Duration::from_millis(50), || async {
            let v = me(&app, event, second).await;
            if v["sold_out"] == true { Ok(v) } else { Err(v) }
        })
        .await
        .expect("the waiting buyer learns it is sold out");
        assert_eq!(v["state"], state, "{v}");
        assert_eq!(room(&app, event, &org).await["sold_out"], true);
        // The live stream says so too, to everyone watching.
        let frame = queue_frame_where(&mut live, |f| f["sold_out"] == true).await;
        assert_eq!(frame["waitlist"], state == "waiting", "{frame}");
        assert_eq!(frame["admitted_through"], 1, "{frame}");
    }
}

/// Reads `live` (an open `GET /events/{id}/live`) until a `queue` frame whose data
/// satisfies `wanted`; its data. Bounded: 20 s.
async fn queue_frame_where(live: &mut reqwest::Response, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut buffer = String::new();
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if block.lines().any(|l| l.trim() == "event: queue" || l.trim() == "event:queue") {
                let data: String = block.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
                let data: Value = serde_json::from_str(&data).unwrap();
                if wanted(&data) {
                    return data;
                }
            }
        }
        let chunk = tokio::time::timeout_at(deadline, live.chunk()).await.expect("a queue frame within 20 s");
        buffer.push_str(std::str::from_utf8(&chunk.unwrap().expect("the stream stays open")).unwrap());
    }
}

#[tokio::test]
async fn joins_are_limited_per_address_and_one_per_account() {
    let app = spawn_app_on(fresh_database().await, &[("QUEUE_JOINS_PER_IP_PER_MINUTE", "2")]).await;
    let (_, org, _) = app.user("organizer").await;
    let people = buyers(&app, 3).await;
    let event = room_event(&app, &org, None, json!({"enabled": true, "rate_per_minute": 1}), None).await;
    let first = join(&app, event, &people[0].1).await;
    join(&app, event, &people[1].1).await;
    let r = app.post(&format!("/events/{event}/queue"), Some(&people[2].1), json!({})).await;
    assert_problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Asking again for the entry one has is not a new join: same place, not limited.
    let again = app.post(&format!("/events/{event}/queue"), Some(&people[0].1), json!({})).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap()["position"], first["position"]);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM queue_entries WHERE event_id = $1")
        .bind(event)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 2);
    // Someone who never joined has no entry to look at.
    assert_problem(
        app.get(&format!("/events/{event}/queue/me"), Some(&people[2].1)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // The organizer's view is the organizer's.
    assert_problem(
        app.get(&format!("/events/{event}/queue"), Some(&people[0].1)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // Bad settings are refused whole.
    for bad in [
        json!({"enabled": true, "rate_per_minute": 0}),
        json!({"enabled": true, "admission_ttl_secs": 1}),
        json!({"enabled": true, "rate_per_minute": "fast"}),
    ] {
        let r = app
            .request(
                reqwest::Method::PUT,
                &format!("/events/{event}/sales-window"),
                Some(&org),
                Some(json!({"waiting_room": bad})),
            )
            .await;
        assert!(r.status() == StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {}", r.status());
    }
}

/// `n` accounts with signed tokens (the server checks the token, not the account
/// row): registering hundreds through the API would only add password hashing.
fn accounts(n: usize) -> Vec<(Uuid, String)> {
    let now = Utc::now().timestamp();
    (0..n)
        .map(|_| {
            let id = Uuid::now_v7();
            let claims = Claims {
                sub: id,
                role: Role::Customer,
                iss: "boxoffice".into(),
                aud: "boxoffice-api".into(),
                iat: now,
                exp: now + 600,
            };
            let key = jsonwebtoken::EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes());
            (id, jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn concurrent_joins_are_group_committed_into_consecutive_places() {
    const N: usize = 300;
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let people = accounts(N);
    // One admission a minute: the line stays as it formed while it is looked at.
    let settings = json!({"enabled": true, "rate_per_minute": 1});
    let open = room_event(&app, &org, None, settings.clone(), None).await;
    let opens_at = Utc::now() + chrono::TimeDelta::hours(1);
    let later = room_event(&app, &org, Some(opens_at), settings, None).await;
    for (event, opens_at) in [(open, None), (later, Some(opens_at))] {
        // Everyone at once, the first 50 accounts twice.
        let requests = people.iter().chain(&people[..50]).map(|(id, token)| {
            let app = &app;
            async move {
                let r = app.post(&format!("/events/{event}/queue"), Some(token), json!({})).await;
                (*id, r.status(), r.json::<Value>().await.unwrap())
            }
        });
        // Meanwhile "another node" (this store, on the test's own pool) joins the
        // last 50 accounts, in reverse, in batches of 10: its rows conflict with ours.
        let others: Vec<Uuid> = people[N - 50..].iter().rev().map(|(id, _)| *id).collect();
        let other_node = async {
            let mut created = 0;
            for batch in others.chunks(10) {
                let answers = queue::join_batch(&app.db, event, batch, opens_at).await.expect("the other node's joins");
                created += answers.iter().filter(|(_, created)| *created).count();
            }
            created
        };
        let (answers, created_elsewhere) = tokio::join!(futures_util::future::join_all(requests), other_node);
        let mut positions = std::collections::HashMap::new();
        for (id, status, v) in &answers {
            assert!(matches!(*status, StatusCode::CREATED | StatusCode::OK), "{status}: {v}");
            // An account's two answers are its one entry.
            let earlier = positions.insert(*id, v["position"].clone());
            assert!(earlier.as_ref().is_none_or(|p| *p == v["position"]), "{id}: {earlier:?} then {v}");
        }
        let created = answers.iter().filter(|(_, s, _)| *s == StatusCode::CREATED).count();
        assert_eq!(created + created_elsewhere, N, "one entry created per account");
        let rows: Vec<(Uuid, bool, Option<i64>)> =
            sqlx::query_as("SELECT user_id, pre_queue, position FROM queue_entries WHERE event_id = $1 ORDER BY seq")
                .bind(event)
                .fetch_all(&app.db)
                .await
                .unwrap();
        assert_eq!(rows.len(), N, "one entry per account");
        if event == open {
            // First come, first served: in join order, the places 1..=N, no gap, no place twice.
            let places: Vec<i64> = rows.iter().map(|r| r.2.expect("a place after the opening")).collect();
            assert_eq!(places, (1..=N as i64).collect::<Vec<_>>());
            assert!(rows.iter().all(|r| !r.1), "nobody in the pre-queue after the opening");
            for (id, _, place) in &rows {
                assert_eq!(positions[id], json!(place), "{id} was answered its place");
            }
            let room: (i32, i64) = sqlx::query_as("SELECT shuffled, joined_after FROM queue_rooms WHERE event_id = $1")
                .bind(event)
                .fetch_one(&app.db)
                .await
                .unwrap();
            assert_eq!(room, (0, N as i64), "the room counted every place once");
        } else {
            assert!(rows.iter().all(|r| r.1 && r.2.is_none()), "before the opening everyone is in the pre-queue");
        }
        // Group-committed: rows written by one transaction share its id (xmin); a
        // transaction per join would make N of them. (The first admission rewrites one row.)
        let transactions: i64 =
            sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM queue_entries WHERE event_id = $1")
                .bind(event)
                .fetch_one(&app.db)
                .await
                .unwrap();
        eprintln!("{N} joins (+50 again) in {transactions} transactions");
        assert!(transactions <= N as i64 / 2, "{N} joins in {transactions} transactions: not group-committed");
    }
}

#[tokio::test]
async fn places_survive_a_restart_and_a_move_to_another_node() {
    let db = fresh_database().await;
    let node = |id: &'static str| [FAST[0], FAST[1], ("NODE_ID", id)];
    let first = spawn_app_on(db.clone(), &node("node-a")).await;
    let (_, org, _) = first.user("organizer").await;
    let people = buyers(&first, 6).await;
    let opens_at = Utc::now() + chrono::TimeDelta::seconds(3);
    // One a minute: after the first, everyone keeps waiting across the moves.
    let event = room_event(&first, &org, Some(opens_at), json!({"enabled": true, "rate_per_minute": 1}), None).await;
    for (_, token) in &people {
        join(&first, event, token).await;
    }
    poll(Duration::from_secs(30), Duration::from_millis(100), || async {
        let v = room(&first, event, &org).await;
        if v["opening"].is_object() { Ok(()) } else { Err(v) }
    })
    .await
    .expect("the room opens");
    let before = places_in_join_order(&first, event).await;
    let seen: Vec<Value> = {
        let mut v = Vec::new();
        for (_, token) in &people {
            v.push(me(&first, event, token).await["position"].clone());
        }
        v
    };

    // A restart of the only node.
    let db = first.stop().await;
    let again = spawn_app_on(db.clone(), &node("node-a")).await;
    assert_eq!(places_in_join_order(&again, event).await, before, "every place kept across a restart");

    // The event moves: a second node starts, the first leaves (handing its leases over).
    let other = spawn_app_on(db.clone(), &node("node-b")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    again.stop().await;
    // The new owner runs the room: it admits the next in line (the slot of an unused
    // admission, or the next minute's) without reshuffling anyone.
    for (i, (_, token)) in people.iter().enumerate() {
        assert_eq!(me(&other, event, token).await["position"], seen[i], "{i}");
    }
    assert_eq!(places_in_join_order(&other, event).await, before, "every place kept across a move");
    let view = room(&other, event, &org).await;
    assert_eq!(view["opening"]["shuffled"], 6, "opened once: {view}");
    let owner: String = poll(Duration::from_secs(30), Duration::from_millis(100), || async {
        let node: Option<String> =
            sqlx::query_scalar("SELECT node_id FROM event_leases WHERE event_id = $1 AND expires_at > now()")
                .bind(event)
                .fetch_optional(&other.db)
                .await
                .unwrap();
        if node.as_deref() == Some("node-b") { Ok(node.unwrap_or_default()) } else { Err(node) }
    })
    .await
    .expect("the second node runs the event's room");
    assert_eq!(owner, "node-b");
}

#[tokio::test]
async fn a_deposed_owner_neither_opens_nor_admits() {
    use boxoffice::store::leases::Leases;
    use boxoffice::store::queue::{self, Owner, OwnerError};
    let app = app().await;
    let (_, org, _) = app.user("organizer").await;
    let people = buyers(&app, 3).await;
    // Far from opening: this server's own ticker leaves the room alone.
    let opens_at = Utc::now() + chrono::TimeDelta::days(30);
    let event = room_event(&app, &org, Some(opens_at), json!({"enabled": true, "rate_per_minute": 60}), None).await;
    for (_, token) in &people {
        join(&app, event, token).await;
    }
    let ttl = Duration::from_secs(60);
    let (a, b) = (Leases::new("node-a".into(), ttl), Leases::new("node-b".into(), ttl));
    let epoch_a = a.acquire(&app.db, event).await.expect("A takes the free lease");
    let owner_a = Owner { leases: &a, epoch: epoch_a };
    // A stalls past its lease; B takes the event over. A still believes it owns it.
    expire_lease(&app.db, event).await;
    let epoch_b = b.acquire(&app.db, event).await.expect("B takes the expired lease");
    let owner_b = Owner { leases: &b, epoch: epoch_b };
    assert!(matches!(queue::open(&app.db, owner_a, event, 7).await, Err(OwnerError::Fenced)));
    assert_eq!(queue::room(&app.db, event).await.unwrap().opened_at, None, "the deposed owner opened nothing");
    assert_eq!(queue::open(&app.db, owner_b, event, 7).await.unwrap(), Some(3));
    assert_eq!(queue::open(&app.db, owner_b, event, 8).await.unwrap(), None, "opened once");
    let ttl = Duration::from_secs(60);
    assert!(matches!(queue::admit(&app.db, owner_a, event, 3, ttl).await, Err(OwnerError::Fenced)));
    assert!(matches!(queue::expire(&app.db, owner_a, event).await, Err(OwnerError::Fenced)));
    assert_eq!(queue::room(&app.db, event).await.unwrap().admitted_total, 0);
    assert_eq!(queue::admit(&app.db, owner_b, event, 2, ttl).await.unwrap(), 2, "the new owner admits");
    let room = queue::room(&app.db, event).await.unwrap();
    assert_eq!(
        (room.admitted_through, room.opened_by_node.as_deref(), room.opened_epoch),
        (2, Some("node-b"), Some(epoch_b))
    );
}

#[tokio::test]
async fn the_openapi_document_describes_the_waiting_room() {
    let app = app().await;
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    for (path, method) in [
        ("/events/{event_id}/queue", "post"),
        ("/events/{event_id}/queue", "get"),
        ("/events/{event_id}/queue/me", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} documented");
    }
    let hold = &doc["paths"]["/events/{event_id}/holds"]["post"];
    assert!(hold["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "Queue-Admission"), "{hold}");
    assert!(hold["responses"]["403"].is_object());
    // Every schema a reference names is in the document.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let name = r.trim_start_matches("#/components/schemas/");
        assert!(doc["components"]["schemas"][name].is_object(), "{r} does not resolve");
    }
    let codes = doc["components"]["schemas"]["ProblemCode"]["enum"].as_array().unwrap();
    assert!(codes.contains(&json!("not_admitted")) && codes.contains(&json!("no_waiting_room")));
}
