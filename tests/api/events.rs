//! Events: the draft → published → closed lifecycle, who may create and edit, seat-map and sales-window changes, search.

use boxoffice_testkit::{TestApp, assert_problem, poll, small_map, spawn_app, spawn_app_on};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn event_lifecycle_draft_publish_close_with_live_details() {
    let app = spawn_app().await;
    let (organizer_id, org, _) = app.user("organizer").await;
    let r = app
        .post(
            "/events/create",
            Some(&org),
            json!({"title": "  Jazz Night ", "venue_name": "Blue Hall", "event_date": "2031-05-01T19:00:00Z",
                   "category": "music", "seat_map": small_map(), "currency": "JPY"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let ev: Value = r.json().await.unwrap();
    assert_eq!(ev["title"], "Jazz Night");
    assert_eq!(ev["status"], "draft");
    assert_eq!(ev["organizer_id"], organizer_id.to_string());
    assert_eq!(ev["total_seats"], 40);
    assert_eq!(ev["base_price"], 5000);
    let id = ev["event_id"].as_str().unwrap().to_owned();

    // A draft is invisible to the public and cannot sell.
    assert_problem(app.get(&format!("/events/{id}/details"), None).await, StatusCode::NOT_FOUND, "not_found").await;
    let (_, buyer, _) = app.user("customer").await;
    let r = app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"quantity": 1})).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;

    assert_eq!(app.post(&format!("/events/{id}/publish"), Some(&org), json!({})).await.status(), StatusCode::OK);
    let r = app.post(&format!("/events/{id}/publish"), Some(&org), json!({})).await;
    assert_problem(r, StatusCode::CONFLICT, "invalid_transition").await;

    let r = app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"seats": ["A-1", "A-2"]})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let details: Value = app.get(&format!("/events/{id}/details"), None).await.json().await.unwrap();
    assert_eq!(details["availability"]["total"]["held"], 2);
    assert_eq!(details["available_seats"], 38);
    assert_eq!(details["organizer_name"], "Test");
    assert_eq!(details["seat_map"]["sections"][0]["name"], "Floor");

    // Anything held: no delete; close instead. Closed events do not sell.
    let r = app.request(Method::DELETE, &format!("/events/{id}/delete"), Some(&org), None).await;
    assert_problem(r, StatusCode::CONFLICT, "event_has_sales").await;
    assert_eq!(app.post(&format!("/events/{id}/close"), Some(&org), json!({})).await.status(), StatusCode::OK);
    let r = app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"quantity": 1})).await;
    assert_problem(r, StatusCode::CONFLICT, "sale_closed").await;
    let status: String = sqlx::query_scalar("SELECT status FROM events WHERE event_id = $1")
        .bind(id.parse::<Uuid>().unwrap())
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(status, "closed");
    let topics: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT topic FROM outbox ORDER BY 1").fetch_all(&app.db).await.unwrap();
    assert_eq!(topics, ["event:created", "event:updated", "hold:created"]);
}

#[tokio::test]
async fn seed_shape_total_seats_and_base_price_make_general_admission() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let r = app
        .post("/events/create", Some(&org), json!({"title": "Talk", "venue_name": "Room 1", "event_date": "2031-01-01T10:00:00Z", "total_seats": 3, "base_price": 1500}))
        .await;
    let ev: Value = r.json().await.unwrap();
    let id = ev["event_id"].as_str().unwrap();
    assert_eq!(ev["total_seats"], 3);
    app.post(&format!("/events/{id}/publish"), Some(&org), json!({})).await;
    let (_, buyer, _) = app.user("customer").await;
    let hold: Value =
        app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"quantity": 2})).await.json().await.unwrap();
    assert_eq!(hold["amount"], 3000);
    assert_eq!(hold["section"], "General Admission");
    let r = app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"quantity": 2})).await;
    assert_problem(r, StatusCode::CONFLICT, "sold_out").await;
}

#[tokio::test]
async fn only_organizers_create_and_only_owners_edit() {
    let app = spawn_app().await;
    let (_, customer, _) = app.user("customer").await;
    let body = json!({"title": "X", "venue_name": "Y", "event_date": "2031-01-01T10:00:00Z"});
    assert_problem(app.post("/events/create", Some(&customer), body.clone()).await, StatusCode::FORBIDDEN, "forbidden")
        .await;
    assert_problem(app.post("/events/create", None, body).await, StatusCode::UNAUTHORIZED, "missing_token").await;

    let (_, owner, _) = app.user("organizer").await;
    let (_, rival, _) = app.user("organizer").await;
    let id = app.published_event(&owner, None, None).await;
    let r = app
        .request(Method::PUT, &format!("/events/{id}/update"), Some(&rival), Some(json!({"title": "Mine now"})))
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app.request(Method::DELETE, &format!("/events/{id}/delete"), Some(&rival), None).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    assert_problem(
        app.post(&format!("/events/{id}/close"), Some(&rival), json!({})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let title: String = sqlx::query_scalar("SELECT title FROM events").fetch_one(&app.db).await.unwrap();
    assert_eq!(title, "Test concert");

    let r = app
        .request(
            Method::PUT,
            &format!("/events/{id}/update"),
            Some(&owner),
            Some(json!({"title": "Renamed", "description": "Now with strings"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["title"], "Renamed");
}

#[tokio::test]
async fn drafts_can_be_deleted_and_are_private() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, other, _) = app.user("organizer").await;
    let r = app
        .post(
            "/events/create",
            Some(&org),
            json!({"title": "Draft", "venue_name": "V", "event_date": "2031-01-01T10:00:00Z"}),
        )
        .await;
    let id = r.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_owned();
    assert_eq!(app.get(&format!("/events/{id}/details"), Some(&org)).await.status(), StatusCode::OK);
    assert_problem(app.get(&format!("/events/{id}/details"), Some(&other)).await, StatusCode::NOT_FOUND, "not_found")
        .await;
    let r = app.request(Method::DELETE, &format!("/events/{id}/delete"), Some(&other), None).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    assert_problem(
        app.post(&format!("/events/{id}/publish"), Some(&org), json!({})).await,
        StatusCode::CONFLICT,
        "no_seat_map",
    )
    .await;
    let r = app.request(Method::DELETE, &format!("/events/{id}/delete"), Some(&org), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn seat_map_changes_after_publishing_keep_what_is_held() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"seats": ["B-10"]})).await;
    app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"quantity": 5, "section": "Standing"})).await;

    // Dropping row B (B-10 is held) is refused; so is shrinking Standing below 5.
    let mut map = small_map();
    map["sections"][0]["rows"] = json!([{"label": "A", "seats": 10}]);
    let r = app.request(Method::PUT, &format!("/events/{id}/seatmap"), Some(&org), Some(map)).await;
    assert_problem(r, StatusCode::CONFLICT, "seat_map_conflict").await;
    let mut map = small_map();
    map["sections"][1]["capacity"] = json!(4);
    let r = app.request(Method::PUT, &format!("/events/{id}/seatmap"), Some(&org), Some(map)).await;
    assert_problem(r, StatusCode::CONFLICT, "seat_map_conflict").await;
    let total: i32 = sqlx::query_scalar("SELECT total_seats FROM events").fetch_one(&app.db).await.unwrap();
    assert_eq!(total, 40, "refused changes are not stored");

    // Adding a row and shrinking Standing to exactly what is taken is fine.
    let mut map = small_map();
    map["sections"][0]["rows"] =
        json!([{"label": "A", "seats": 10}, {"label": "B", "seats": 10}, {"label": "C", "seats": 5}]);
    map["sections"][1]["capacity"] = json!(5);
    let r = app.request(Method::PUT, &format!("/events/{id}/seatmap"), Some(&org), Some(map)).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let details: Value = app.get(&format!("/events/{id}/details"), None).await.json().await.unwrap();
    assert_eq!(details["availability"]["total"]["capacity"], 30);
    assert_eq!(details["availability"]["total"]["held"], 6);
    let r = app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"seats": ["C-5"]})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"quantity": 1, "section": "Standing"})).await;
    assert_problem(r, StatusCode::CONFLICT, "sold_out").await;
}

#[tokio::test]
async fn sales_window_not_open_yet_says_when() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id =
        app.published_event(&org, None, Some(json!({"opens_at": "2029-06-01T10:00:00Z", "per_buyer_limit": 4}))).await;
    let r = app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"quantity": 1})).await;
    let body = assert_problem(r, StatusCode::CONFLICT, "sale_not_open").await;
    assert_eq!(body["opens_at"], "2029-06-01T10:00:00+00:00");
    // Opening the window applies to the live actor at once.
    let r = app
        .request(
            Method::PUT,
            &format!("/events/{id}/sales-window"),
            Some(&org),
            Some(json!({"opens_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"quantity": 4})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"quantity": 1})).await;
    let body = assert_problem(r, StatusCode::CONFLICT, "limit_exceeded").await;
    assert_eq!(body["limit"], 4);
    let r = app
        .request(
            Method::PUT,
            &format!("/events/{id}/sales-window"),
            Some(&org),
            Some(json!({"opens_at": "2031-01-01T00:00:00Z", "closes_at": "2030-01-01T00:00:00Z"})),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_sales_window").await;
}

#[tokio::test]
async fn a_sales_window_time_sent_as_null_is_cleared_and_one_left_out_is_kept() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let window = json!({"opens_at": "2029-06-01T10:00:00Z", "closes_at": "2029-12-01T10:00:00Z"});
    let id = app.published_event(&org, None, Some(window)).await;
    let put = |body: Value| {
        let app = &app;
        let org = org.clone();
        async move { app.request(Method::PUT, &format!("/events/{id}/sales-window"), Some(&org), Some(body)).await }
    };
    // Only the limit: both times kept.
    let r = put(json!({"per_buyer_limit": 3})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["sales_window"]["opens_at"], "2029-06-01T10:00:00Z", "{body}");
    assert_eq!(body["sales_window"]["closes_at"], "2029-12-01T10:00:00Z");
    // opens_at null: on sale from now on; closes_at untouched.
    let r = put(json!({"opens_at": null})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert!(body["sales_window"]["opens_at"].is_null(), "{body}");
    assert_eq!(body["sales_window"]["closes_at"], "2029-12-01T10:00:00Z");
    let r = app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"quantity": 1})).await;
    assert_eq!(r.status(), StatusCode::CREATED, "the cleared opening applies to the live event");
    // closes_at null: never closes.
    let r = put(json!({"closes_at": null})).await;
    let body: Value = r.json().await.unwrap();
    assert!(body["sales_window"]["closes_at"].is_null(), "{body}");
    assert_eq!(body["sales_window"]["per_buyer_limit"], 3);
}

#[tokio::test]
async fn search_filters_sorts_and_pages_published_events_only() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    for (title, category, date, price) in [
        ("Rock Festival", "music", "2031-07-01T12:00:00Z", 9000),
        ("Jazz Evening", "music", "2031-03-01T19:00:00Z", 4000),
        ("Chess Open", "sport", "2031-05-01T09:00:00Z", 1000),
    ] {
        let map = json!({"tiers": [{"code": "X", "price": price}], "sections": [{"name": "Main", "tier": "X", "kind": "general", "capacity": 10}]});
        let r = app.post("/events/create", Some(&org), json!({"title": title, "venue_name": "Arena", "category": category, "event_date": date, "seat_map": map})).await;
        let id = r.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_owned();
        app.post(&format!("/events/{id}/publish"), Some(&org), json!({})).await;
    }
    app.post(
        "/events/create",
        Some(&org),
        json!({"title": "Secret Rock Draft", "venue_name": "Arena", "event_date": "2031-01-01T00:00:00Z"}),
    )
    .await;

    let titles = |v: &Value| {
        v["events"].as_array().unwrap().iter().map(|e| e["title"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let all: Value = app.get("/events/search", None).await.json().await.unwrap();
    assert_eq!(titles(&all), ["Jazz Evening", "Chess Open", "Rock Festival"]);
    assert_eq!(all["total"], 3);
    let rock: Value = app.get("/events/search?q=rock", None).await.json().await.unwrap();
    assert_eq!(titles(&rock), ["Rock Festival"]);
    let music: Value = app.get("/events/search?category=music&sort=-price", None).await.json().await.unwrap();
    assert_eq!(titles(&music), ["Rock Festival", "Jazz Evening"]);
    let cheap: Value =
        app.get("/events/search?max_price=5000&from=2031-04-01T00:00:00Z", None).await.json().await.unwrap();
    assert_eq!(titles(&cheap), ["Chess Open"]);
    let page2: Value = app.get("/events/search?per_page=2&page=2", None).await.json().await.unwrap();
    assert_eq!(titles(&page2), ["Rock Festival"]);
    assert_eq!(page2["total"], 3);
    // Hostile or bad queries are 400s, never 500s, and never match everything.
    let inj: Value = app.get("/events/search?q=%27%3B%20DROP%20TABLE%20events%3B--", None).await.json().await.unwrap();
    assert_eq!(inj["total"], 0);
    assert_problem(app.get("/events/search?per_page=1000", None).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    assert_problem(app.get("/events/search?page=0", None).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    assert_problem(app.get("/events/search?sort=sideways", None).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    assert_problem(app.get("/events/search?from=yesterday", None).await, StatusCode::BAD_REQUEST, "invalid_query")
        .await;
    assert_problem(app.get("/events/search?bogus=1", None).await, StatusCode::BAD_REQUEST, "invalid_query").await;
}

async fn insert_published(conn: &mut sqlx::PgConnection, organizer: Uuid, title: &str) {
    sqlx::query(
        "INSERT INTO events (event_id, organizer_id, title, venue_name, event_date, status)
         VALUES (gen_random_uuid(), $1, $2, 'Side Hall', now() + interval '30 days', 'published')",
    )
    .bind(organizer)
    .bind(title)
    .execute(conn)
    .await
    .unwrap();
}

/// How many events a search for `q` finds once it finds `want` (or what it finds
/// after ten seconds of syncs).
async fn search_total_becomes(app: &TestApp, q: &str, want: i64) -> i64 {
    let total = || async {
        let found: Value = app.get(&format!("/events/search?q={q}"), None).await.json().await.unwrap();
        let total = found["total"].as_i64().unwrap();
        if total == want { Ok(total) } else { Err(total) }
    };
    poll(Duration::from_secs(10), Duration::from_millis(100), total).await.unwrap_or_else(|seen| seen)
}

/// The search index follows the database whoever writes it: rows inserted, renamed,
/// unpublished and deleted with plain SQL show up in search, and a transaction that
/// started first but commits last is not skipped.
#[tokio::test]
async fn search_follows_changes_made_straight_in_the_database() {
    let app = spawn_app().await;
    let (organizer, org, _) = app.user("organizer").await;
    app.published_event(&org, None, None).await;

    let mut slow = app.db.begin().await.unwrap();
    insert_published(&mut slow, organizer, "Slowpoke Recital").await;
    let mut quick = app.db.acquire().await.unwrap();
    insert_published(&mut quick, organizer, "Quick Quartet").await;
    assert_eq!(search_total_becomes(&app, "quartet", 1).await, 1);
    assert_eq!(search_total_becomes(&app, "slowpoke", 0).await, 0, "not committed yet");
    slow.commit().await.unwrap();
    assert_eq!(search_total_becomes(&app, "slowpoke", 1).await, 1, "the late commit was read");

    sqlx::query("UPDATE events SET title = 'Renamed Recital' WHERE title = 'Slowpoke Recital'")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(search_total_becomes(&app, "renamed", 1).await, 1);
    assert_eq!(search_total_becomes(&app, "slowpoke", 0).await, 0, "the old title is forgotten");
    sqlx::query("UPDATE events SET status = 'closed' WHERE title = 'Quick Quartet'").execute(&app.db).await.unwrap();
    assert_eq!(search_total_becomes(&app, "quartet", 0).await, 0, "a closed event leaves the search");
    sqlx::query("DELETE FROM events WHERE title = 'Renamed Recital'").execute(&app.db).await.unwrap();
    assert_eq!(search_total_becomes(&app, "recital", 0).await, 0, "a deleted event leaves the search");

    let all: Value = app.get("/events/search", None).await.json().await.unwrap();
    assert_eq!(all["total"], 1, "only the event published through the API is left: {all}");
    // A restarted server loads the same index from the database.
    let url = app.stop().await;
    let app = spawn_app_on(url, &[]).await;
    let all: Value = app.get("/events/search", None).await.json().await.unwrap();
    assert_eq!(all["total"], 1);
    assert_eq!(search_total_becomes(&app, "quartet", 0).await, 0);
}

#[tokio::test]
async fn bad_event_input_is_a_clear_4xx_and_writes_nothing() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let base = json!({"title": "T", "venue_name": "V", "event_date": "2031-01-01T10:00:00Z"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("title", json!("")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
        (with("title", json!("x".repeat(201))), StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
        (with("event_date", json!("2001-01-01T00:00:00Z")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
        (with("event_date", json!("next tuesday")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (with("currency", json!("yen")), StatusCode::UNPROCESSABLE_ENTITY, "invalid_currency"),
        (with("seat_map", json!({"tiers": []})), StatusCode::UNPROCESSABLE_ENTITY, "invalid_seat_map"),
        (
            with(
                "seat_map",
                json!({"tiers": [{"code": "A", "price": -5}], "sections": [{"name": "S", "tier": "A", "kind": "general", "capacity": 1}]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_seat_map",
        ),
        (
            // Over the price cap (10^12 minor units), so no hold amount can overflow.
            with(
                "seat_map",
                json!({"tiers": [{"code": "A", "price": 1_000_000_000_001i64}], "sections": [{"name": "S", "tier": "A", "kind": "general", "capacity": 1}]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_seat_map",
        ),
        (
            with(
                "seat_map",
                json!({"tiers": [{"code": "A", "price": 5}], "sections": [{"name": "S", "tier": "A", "kind": "seated", "rows": [{"label": "A", "seats": 2000000}]}]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_seat_map",
        ),
        (with("total_seats", json!(10)), StatusCode::UNPROCESSABLE_ENTITY, "invalid_seat_map"),
        (with("sales_window", json!({"per_buyer_limit": 0})), StatusCode::UNPROCESSABLE_ENTITY, "invalid_sales_window"),
        (with("sales_window", json!({"hold_ttl_secs": 1})), StatusCode::UNPROCESSABLE_ENTITY, "invalid_sales_window"),
        (with("surprise", json!(1)), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let r = app.post("/events/create", Some(&org), body.clone()).await;
        assert_eq!(r.status(), status, "{body}");
        assert_problem(r, status, code).await;
    }
    assert_problem(app.get("/events/not-a-uuid/details", None).await, StatusCode::BAD_REQUEST, "invalid_path").await;
    assert_problem(
        app.get(&format!("/events/{}/details", Uuid::new_v4()), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let r = app
        .request(Method::PUT, &format!("/events/{}/update", Uuid::new_v4()), Some(&org), Some(json!({"title": "x"})))
        .await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.db).await.unwrap();
    assert_eq!(n, 0);
}
