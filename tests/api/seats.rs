//! Seat-level status (`GET /events/{id}/seats`) and the live stream
//! (`GET /events/{id}/live`): they follow every hold, purchase, release, expiry
//! and cancellation exactly, and the stream resumes from `Last-Event-ID`.

use boxoffice_testkit::{TestApp, assert_problem, small_map, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The seats of `GET /events/{id}/seats` as label → letter (seated rows only).
async fn seats(app: &TestApp, event: Uuid) -> (u64, BTreeMap<String, char>, Value) {
    let r = app.get(&format!("/events/{event}/seats"), None).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let body: Value = r.json().await.unwrap();
    (body["version"].as_u64().unwrap(), letters(&body), body)
}

fn letters(body: &Value) -> BTreeMap<String, char> {
    let mut out = BTreeMap::new();
    for section in body["sections"].as_array().unwrap() {
        for row in section["rows"].as_array().unwrap() {
            let (label, first) = (row["label"].as_str().unwrap(), row["first"].as_u64().unwrap());
            for (i, c) in row["seats"].as_str().unwrap().chars().enumerate() {
                out.insert(format!("{label}-{}", first + i as u64), c);
            }
        }
    }
    out
}

async fn hold(app: &TestApp, buyer: &str, event: Uuid, seats: &[&str]) -> Value {
    let r = app.post(&format!("/events/{event}/holds"), Some(buyer), json!({"seats": seats})).await;
    assert_eq!(r.status(), StatusCode::CREATED, "hold: {}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn pay(app: &TestApp, buyer: &str, hold: &Value) -> Value {
    let r = app
        .post(
            &format!("/holds/{}/purchase", hold["hold_id"].as_str().unwrap()),
            Some(buyer),
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "pay: {}", r.text().await.unwrap());
    r.json().await.unwrap()
}

#[tokio::test]
async fn seat_status_follows_holds_purchases_releases_cancellations_and_expiry() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let event = app.published_event(&org, None, Some(json!({"hold_ttl_secs": 5, "per_buyer_limit": 10}))).await;

    let (v0, all, body) = seats(&app, event).await;
    assert_eq!(all.len(), 20);
    assert!(all.values().all(|c| *c == 'F'), "{all:?}");
    assert_eq!(body["legend"], json!({"F": "free", "H": "held", "S": "sold", "B": "blocked (off sale)"}));
    let standing = &body["sections"][1];
    assert_eq!((standing["general_admission"].as_bool(), standing["capacity"].as_u64()), (Some(true), Some(20)));

    let h = hold(&app, &buyer, event, &["A-1", "A-2"]).await;
    let (v1, s, _) = seats(&app, event).await;
    assert!(v1 > v0, "every change moves the version");
    assert_eq!((s["A-1"], s["A-2"], s["A-3"]), ('H', 'H', 'F'));

    let sale = pay(&app, &buyer, &h).await;
    let (_, s, body) = seats(&app, event).await;
    assert_eq!((s["A-1"], s["A-2"]), ('S', 'S'));
    assert_eq!((body["sections"][0]["sold"].as_u64(), body["sections"][0]["held"].as_u64()), (Some(2), Some(0)));

    let ticket = sale["tickets"].as_array().unwrap().iter().find(|t| t["seat_number"] == "A-1").unwrap();
    let r =
        app.post(&format!("/tickets/{}/cancel", ticket["ticket_id"].as_str().unwrap()), Some(&buyer), json!({})).await;
    assert!(r.status().is_success(), "cancel: {}", r.status());
    let (_, s, _) = seats(&app, event).await;
    assert_eq!((s["A-1"], s["A-2"]), ('F', 'S'), "a cancelled ticket's seat is free again");

    let released = hold(&app, &buyer, event, &["B-5"]).await;
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/holds/{}", released["hold_id"].as_str().unwrap()),
            Some(&buyer),
            None,
        )
        .await;
    assert!(r.status().is_success());
    assert_eq!(seats(&app, event).await.1["B-5"], 'F');

    hold(&app, &buyer, event, &["B-9"]).await;
    assert_eq!(seats(&app, event).await.1["B-9"], 'H');
    let deadline = Instant::now() + Duration::from_secs(20);
    while seats(&app, event).await.1["B-9"] != 'F' {
        assert!(Instant::now() < deadline, "an expired hold's seat is free again");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn seat_status_after_a_burst_matches_the_journal() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let event = app.published_event(&org, None, Some(json!({"per_buyer_limit": 4}))).await;
    let mut buyers = Vec::new();
    for _ in 0..8 {
        buyers.push(app.user("customer").await.1);
    }
    // Eight buyers race for the same few seats; some pay, some release, some keep holding.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, buyer) in buyers.into_iter().enumerate() {
        let (base, client) = (app.base.clone(), app.client.clone());
        tasks.spawn(async move {
            for round in 0..4 {
                let seats = [format!("A-{}", 1 + (i + round) % 6), format!("B-{}", 1 + (i * 3 + round) % 10)];
                let r = client
                    .post(format!("{base}/events/{event}/holds"))
                    .bearer_auth(&buyer)
                    .json(&json!({"seats": seats}))
                    .send()
                    .await
                    .unwrap();
                if r.status() != StatusCode::CREATED {
                    continue;
                }
                let h: Value = r.json().await.unwrap();
                let id = h["hold_id"].as_str().unwrap().to_owned();
                match (i + round) % 3 {
                    0 => {
                        client
                            .post(format!("{base}/holds/{id}/purchase"))
                            .bearer_auth(&buyer)
                            .json(&json!({"payment_method": "pm_card_visa"}))
                            .send()
                            .await
                            .unwrap();
                    }
                    1 => {
                        client.delete(format!("{base}/holds/{id}")).bearer_auth(&buyer).send().await.unwrap();
                    }
                    _ => {}
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let (_, status, _) = seats(&app, event).await;
    let sold: Vec<String> = sqlx::query_scalar(
        "SELECT seat_number FROM tickets WHERE event_id = $1 AND status <> 'cancelled' AND seat_number IS NOT NULL",
    )
    .bind(event)
    .fetch_all(&app.db)
    .await
    .unwrap();
    let held: Vec<Value> = sqlx::query_scalar("SELECT items FROM holds WHERE event_id = $1 AND status = 'active'")
        .bind(event)
        .fetch_all(&app.db)
        .await
        .unwrap();
    let mut expected: BTreeMap<String, char> = status.keys().map(|k| (k.clone(), 'F')).collect();
    for seat in &sold {
        expected.insert(seat.clone(), 'S');
    }
    for items in &held {
        for seat in items["seats"].as_array().unwrap() {
            expected.insert(seat.as_str().unwrap().to_owned(), 'H');
        }
    }
    assert!(!sold.is_empty(), "the burst sold something");
    assert_eq!(status, expected, "the actor's seat status is what the journal says");
}

/// One Server-Sent Events frame.
#[derive(Debug)]
struct Frame {
    id: u64,
    event: String,
    data: Value,
}

/// Reads frames from an open `text/event-stream` response.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(app: &TestApp, event: Uuid, last_event_id: Option<u64>) -> Self {
        Self::open_as(app, event, last_event_id, None).await
    }

    async fn open_as(app: &TestApp, event: Uuid, last_event_id: Option<u64>, token: Option<&str>) -> Self {
        let mut req = app.client.get(format!("{}/events/{event}/live", app.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self { response, buffer: String::new() }
    }

    async fn next(&mut self) -> Frame {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                // Keep-alive comments carry no data.
                if let Some(id) = id {
                    return Frame { id, event, data: serde_json::from_str(&data).unwrap() };
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk()).await.expect("a frame within 10 s");
            self.buffer.push_str(std::str::from_utf8(&chunk.unwrap().expect("the stream stays open")).unwrap());
        }
    }

    /// Frames until `seat` shows `state`; the frames read.
    async fn until(&mut self, seat: &str, state: &str) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let f = self.next().await;
            let done = f.event == "changes" && f.data["seats"][seat] == state;
            frames.push(f);
            if done {
                return frames;
            }
        }
    }
}

#[tokio::test]
async fn the_live_stream_delivers_every_change_in_order_and_resumes_after_a_disconnect() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let event = app.published_event(&org, None, None).await;

    let mut stream = Stream::open(&app, event, None).await;
    let first = stream.next().await;
    assert_eq!(first.event, "snapshot");
    assert_eq!(letters(&first.data).len(), 20);
    assert_eq!(first.data["version"].as_u64(), Some(first.id));

    let h = hold(&app, &buyer, event, &["A-3", "A-4"]).await;
    let frames = stream.until("A-4", "H").await;
    pay(&app, &buyer, &h).await;
    let more = stream.until("A-4", "S").await;
    let mut last = first.id;
    for f in frames.iter().chain(&more) {
        assert_eq!(f.event, "changes");
        assert!(f.id > last, "versions grow frame by frame");
        assert_eq!(f.data["from"].as_u64(), Some(last), "each frame continues the previous one");
        last = f.id;
    }
    let floor = more.last().unwrap();
    assert_eq!(floor.data["seats"]["A-3"], "S");
    let section = &floor.data["sections"][0];
    assert_eq!((section["name"].as_str(), section["sold"].as_u64()), (Some("Floor"), Some(2)));
    drop(stream);

    // Changes while disconnected come as one frame on reconnecting with Last-Event-ID.
    hold(&app, &buyer, event, &["B-1"]).await;
    hold(&app, &buyer, event, &["B-2"]).await;
    let mut resumed = Stream::open(&app, event, Some(last)).await;
    let catch_up = resumed.next().await;
    assert_eq!(catch_up.event, "changes");
    assert_eq!(catch_up.data["from"].as_u64(), Some(last));
    assert_eq!(
        (catch_up.data["seats"]["B-1"].as_str(), catch_up.data["seats"]["B-2"].as_str()),
        (Some("H"), Some("H"))
    );
    assert!(catch_up.data["seats"].get("A-3").is_none(), "nothing from before Last-Event-ID");

    // A version the event no longer has the changes since: a full snapshot.
    let mut gap = Stream::open(&app, event, Some(1)).await;
    let snapshot = gap.next().await;
    assert_eq!(snapshot.event, "snapshot");
    let s = letters(&snapshot.data);
    assert_eq!((s["A-3"], s["B-1"], s["B-2"], s["B-3"]), ('S', 'H', 'H', 'F'));
}

#[tokio::test]
async fn seats_and_live_refuse_what_they_cannot_show() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    assert_problem(
        app.get(&format!("/events/{}/seats", Uuid::new_v4()), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let r = app
        .post(
            "/events/create",
            Some(&org),
            json!({"title": "Draft", "venue_name": "Hall", "event_date": "2030-01-01T19:00:00Z", "seat_map": small_map()}),
        )
        .await;
    let draft: Uuid = r.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().parse().unwrap();
    assert_problem(app.get(&format!("/events/{draft}/seats"), None).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_problem(app.get(&format!("/events/{draft}/live"), None).await, StatusCode::NOT_FOUND, "not_found").await;

    let event = app.published_event(&org, None, None).await;
    let r = app
        .client
        .get(format!("{}/events/{event}/live", app.base))
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
}

#[tokio::test]
async fn details_show_the_live_window_as_rfc3339_times() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let open = app.published_event(&org, None, None).await;
    let details: Value = app.get(&format!("/events/{open}/details"), None).await.json().await.unwrap();
    let w = &details["availability"]["window"];
    assert_eq!(w["opens_at"], Value::Null, "on sale since publication: {w}");
    let closes: chrono::DateTime<chrono::Utc> = w["closes_at"].as_str().expect("an RFC 3339 time").parse().unwrap();
    assert_eq!(closes.to_rfc3339(), "2030-01-01T19:00:00+00:00", "the event date ends the sale");
    assert_eq!((w["on_sale"].as_bool(), w["per_buyer_limit"].as_u64()), (Some(true), Some(10)));

    let later = app
        .published_event(
            &org,
            None,
            Some(
                json!({"opens_at": "2029-06-01T10:00:00Z", "closes_at": "2029-06-02T10:00:00Z", "hold_ttl_secs": 300}),
            ),
        )
        .await;
    let details: Value = app.get(&format!("/events/{later}/details"), None).await.json().await.unwrap();
    let w = &details["availability"]["window"];
    let opens: chrono::DateTime<chrono::Utc> = w["opens_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(opens.to_rfc3339(), "2029-06-01T10:00:00+00:00");
    assert_eq!((w["on_sale"].as_bool(), w["hold_ttl_secs"].as_u64()), (Some(false), Some(300)));
    assert!(!details.to_string().contains("9223372036854775807"), "no sentinel numbers: {details}");
}

#[tokio::test]
async fn organizers_block_and_unblock_seats_and_blocks_survive_a_restart() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, other_org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let event = app.published_event(&org, None, None).await;
    let block = |token: String, seats: Value| {
        let app = &app;
        async move { app.post(&format!("/events/{event}/seats/block"), Some(&token), json!({"seats": seats})).await }
    };

    let sold = hold(&app, &buyer, event, &["A-1"]).await;
    pay(&app, &buyer, &sold).await;
    assert_problem(block(org.clone(), json!(["A-1", "A-5"])).await, StatusCode::CONFLICT, "seats_taken").await;
    assert_problem(block(org.clone(), json!(["Z-1"])).await, StatusCode::UNPROCESSABLE_ENTITY, "unknown_seat").await;
    assert_problem(block(org.clone(), json!([])).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let r = app.post(&format!("/events/{event}/seats/unblock"), Some(&org), json!({"seats": ["A-1\u{0}", ""]})).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_seat").await;
    let r = block(other_org.clone(), json!(["A-5"])).await;
    assert!(matches!(r.status(), StatusCode::FORBIDDEN | StatusCode::NOT_FOUND), "another organizer: {}", r.status());
    assert_eq!(seats(&app, event).await.1["A-5"], 'F', "refused blocks changed nothing");

    let r = block(org.clone(), json!(["A-5", "A-6"])).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["blocked"], json!(["A-5", "A-6"]));
    let (_, s, body) = seats(&app, event).await;
    assert_eq!((s["A-5"], s["A-6"], s["A-7"]), ('B', 'B', 'F'));
    let floor = &body["sections"][0];
    assert_eq!(
        (floor["blocked"].as_u64(), floor["available"].as_u64(), floor["sold"].as_u64()),
        (Some(2), Some(17), Some(1))
    );
    let r = app.post(&format!("/events/{event}/holds"), Some(&buyer), json!({"seats": ["A-5"]})).await;
    assert_problem(r, StatusCode::CONFLICT, "seats_taken").await;

    // A new process loads the event from the database: the blocks are still there.
    let db_url = app.db_url.clone();
    app.stop().await;
    let app = boxoffice_testkit::spawn_app_on(db_url, &[]).await;
    let (_, s, _) = seats(&app, event).await;
    assert_eq!((s["A-1"], s["A-5"], s["A-6"]), ('S', 'B', 'B'));

    let r = app.post(&format!("/events/{event}/seats/unblock"), Some(&org), json!({"seats": ["A-5"]})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["blocked"], json!(["A-6"]));
    hold(&app, &buyer, event, &["A-5"]).await;
    let stored: Vec<String> = sqlx::query_scalar("SELECT unnest(blocked_seats) FROM events WHERE event_id = $1")
        .bind(event)
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, ["A-6"]);
}

#[tokio::test]
async fn organizers_also_get_sale_stats_on_the_stream_and_buyers_do_not() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let event = app.published_event(&org, None, None).await;
    let mut organizer = Stream::open_as(&app, event, None, Some(&org)).await;
    let mut public = Stream::open_as(&app, event, None, Some(&buyer)).await;
    assert_eq!(organizer.next().await.event, "snapshot");
    assert_eq!(public.next().await.event, "snapshot");

    let h = hold(&app, &buyer, event, &["B-7", "B-8"]).await;
    pay(&app, &buyer, &h).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        assert!(Instant::now() < deadline, "a stats frame with the order within 10 s");
        let f = organizer.next().await;
        if f.event == "stats" && f.data["orders"] == 1 {
            break f;
        }
    };
    assert_eq!(stats.data["revenue"], 24_000, "two tier-S seats: {}", stats.data);
    assert_eq!((stats.data["currency"].as_str(), stats.data["orders_last_minute"].as_i64()), (Some("JPY"), Some(1)));
    // The public stream carries seat changes only.
    let until = Instant::now() + Duration::from_millis(2_500);
    let mut frames = Vec::new();
    while Instant::now() < until {
        match tokio::time::timeout(until.saturating_duration_since(Instant::now()), public.next()).await {
            Ok(f) => frames.push(f.event),
            Err(_) => break,
        }
    }
    assert!(frames.iter().any(|e| e == "changes") && frames.iter().all(|e| e != "stats"), "{frames:?}");
}

#[tokio::test]
async fn open_live_streams_end_when_the_server_stops_instead_of_holding_up_shutdown() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let event = app.published_event(&org, None, None).await;
    let mut stream = Stream::open(&app, event, None).await;
    assert_eq!(stream.next().await.event, "snapshot");
    // A graceful shutdown waits up to 30 s for open responses; a live stream must end at once.
    let stopped = tokio::time::timeout(Duration::from_secs(15), app.stop()).await;
    assert!(stopped.is_ok(), "the server stopped although a live stream was open");
    let rest = tokio::time::timeout(Duration::from_secs(5), stream.response.chunk()).await.expect("the stream ended");
    assert!(!matches!(rest, Ok(Some(_))), "no more frames after shutdown: {rest:?}");
}
