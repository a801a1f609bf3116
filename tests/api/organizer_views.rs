//! What an organizer sees of their own events: `GET /organizer/events`, and per event
//! `GET /events/{id}/orders` (JSON and CSV) and `GET /events/{id}/summary` — to nobody else.

use boxoffice_testkit::{TestApp, assert_problem, small_map, spawn_app};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

async fn draft(app: &TestApp, organizer: &str, title: &str) -> Uuid {
    let body =
        json!({"title": title, "venue_name": "Hall", "event_date": "2031-01-01T19:00:00Z", "seat_map": small_map()});
    let r = app.post("/events/create", Some(organizer), body).await;
    assert_eq!(r.status(), StatusCode::CREATED, "create event: {}", r.text().await.unwrap());
    r.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().parse().unwrap()
}

async fn ok_json(r: reqwest::Response) -> Value {
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn organizers_list_their_own_events_drafts_included_newest_first() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, org2, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let first = draft(&app, &org, "Still a draft").await;
    let published = app.published_event(&org, None, None).await;
    let others = app.published_event(&org2, None, None).await;
    app.buy(&buyer, published, "A-1").await;

    let mine = ok_json(app.get("/organizer/events", Some(&org)).await).await;
    assert_eq!(ids(&mine["events"]), [published.to_string(), first.to_string()], "newest first, drafts too");
    let (p, d) = (&mine["events"][0], &mine["events"][1]);
    assert_eq!((p["status"].as_str(), d["status"].as_str()), (Some("published"), Some("draft")));
    assert_eq!((p["capacity"].as_i64(), p["sold"].as_i64()), (Some(40), Some(1)), "{p}");
    assert_eq!(d["sold"], 0);
    assert_eq!(d["title"], "Still a draft");
    assert_eq!(d["event_date"], "2031-01-01T19:00:00Z");
    assert!(p.get("opens_at").is_some() && p.get("closes_at").is_some(), "{p}");
    assert_eq!((mine["page"].as_u64(), mine["per_page"].as_u64()), (Some(1), Some(20)));

    let theirs = ok_json(app.get("/organizer/events", Some(&org2)).await).await;
    assert_eq!(ids(&theirs["events"]), [others.to_string()], "another organizer sees only their own");
    let second_page = ok_json(app.get("/organizer/events?page=2&per_page=1", Some(&org)).await).await;
    assert_eq!(ids(&second_page["events"]), [first.to_string()]);

    assert_problem(app.get("/organizer/events", Some(&buyer)).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_problem(app.get("/organizer/events", None).await, StatusCode::UNAUTHORIZED, "missing_token").await;
    for bad in ["page=0", "per_page=0", "per_page=101", "page=10001", "page=x", "per_page=-1", "sort=date"] {
        let r = app.get(&format!("/organizer/events?{bad}"), Some(&org)).await;
        assert_problem(r, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    let event = ok_json(app.get(&format!("/events/{published}/orders?per_page=100"), Some(&org)).await).await;
    assert_eq!(event["orders"].as_array().unwrap().len(), 1);
    for bad in ["page=0", "per_page=101", "format=xml"] {
        let r = app.get(&format!("/events/{published}/orders?{bad}"), Some(&org)).await;
        assert_problem(r, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    app.stop().await;
}

#[tokio::test]
async fn orders_and_summaries_are_invisible_to_everyone_but_the_organizer() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, org2, _) = app.user("organizer").await;
    let (staff_id, staff, _) = app.user("staff").await;
    let (_, buyer, _) = app.user("customer").await;
    let (_, admin) = app.admin().await;
    let event = app.published_event(&org, None, None).await;
    let hidden = draft(&app, &org, "Secret").await;
    app.assign_staff(&org, event, staff_id).await;
    app.buy(&buyer, event, "A-1").await;

    for view in ["orders", "orders?format=csv", "summary"] {
        for (who, token) in [("organizer2", &org2), ("event staff", &staff), ("buyer", &buyer)] {
            let r = app.get(&format!("/events/{event}/{view}"), Some(token)).await;
            let p = assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
            assert!(!p.to_string().contains("example.com"), "{who} learns no buyer: {p}");
            let r = app.get(&format!("/events/{hidden}/{view}"), Some(token)).await;
            assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
        }
        let r = app.get(&format!("/events/{}/{view}", Uuid::now_v7()), Some(&org)).await;
        assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
        assert_problem(
            app.get(&format!("/events/{event}/{view}"), None).await,
            StatusCode::UNAUTHORIZED,
            "missing_token",
        )
        .await;
        for token in [&org, &admin] {
            assert_eq!(app.get(&format!("/events/{event}/{view}"), Some(token)).await.status(), StatusCode::OK);
            assert_eq!(app.get(&format!("/events/{hidden}/{view}"), Some(token)).await.status(), StatusCode::OK);
        }
    }
    app.stop().await;
}

/// RFC 4180, enough to read the export back: quoted fields with doubled quotes,
/// commas and line breaks inside; lines end CRLF.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => {
                assert!(c != '"' && c != '\n' && c != '\r', "stray {c:?} outside quotes in {text:?}");
                field.push(c)
            }
        }
    }
    assert!(!quoted && field.is_empty() && row.is_empty(), "the CSV ends with CRLF: {text:?}");
    rows
}

#[tokio::test]
async fn orders_list_every_purchase_and_the_csv_says_the_same_safely() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (staff_id, staff, _) = app.user("staff").await;
    let tricky = r#"Doe, "JJ" Jane"#;
    let formula = r#"=HYPERLINK("http://evil.example","click")"#;
    let (b1_id, b1, _) = app.user_named("customer", tricky).await;
    let (b2_id, b2, _) = app.user_named("customer", formula).await;
    let (b3_id, b3, _) = app.user_named("customer", "Plain").await;
    // Names cannot hold line breaks through the API; one made in SQL must still export safely.
    sqlx::query("UPDATE users SET name = E'Two\\nLines' WHERE user_id = $1")
        .bind(b3_id)
        .execute(&app.db)
        .await
        .unwrap();
    let event = app.published_event(&org, None, None).await;
    app.assign_staff(&org, event, staff_id).await;
    let first = app.buy_seats(&b1, event, &["A-1", "A-2"]).await;
    app.buy_seats(&b2, event, &["B-5"]).await;
    let last = app.buy_seats(&b3, event, &["A-3"]).await;
    let cancelled = first["tickets"][1]["ticket_id"].as_str().unwrap();
    let r = app.post(&format!("/tickets/{cancelled}/cancel"), Some(&b1), json!({})).await;
    assert_eq!(r.status(), StatusCode::OK, "cancel");
    let used_code = last["tickets"][0]["qr_token"].as_str().unwrap();
    let r = app.post(&format!("/events/{event}/check-ins"), Some(&staff), json!({"qr": used_code})).await;
    assert_eq!(r.status(), StatusCode::OK, "check-in");

    let list = ok_json(app.get(&format!("/events/{event}/orders"), Some(&org)).await).await;
    let orders = list["orders"].as_array().unwrap();
    let buyers: Vec<&str> = orders.iter().map(|o| o["buyer_id"].as_str().unwrap()).collect();
    assert_eq!(buyers, [b3_id.to_string(), b2_id.to_string(), b1_id.to_string()], "newest first");
    let o1 = &orders[2];
    assert_eq!(o1["order_id"], first["order_id"]);
    assert_eq!(
        (o1["buyer_name"].as_str(), o1["total"].as_i64(), o1["currency"].as_str()),
        (Some(tricky), Some(24000), Some("JPY"))
    );
    assert!(o1["buyer_email"].as_str().unwrap().ends_with("@example.com"));
    let seats: Vec<(&str, &str)> = o1["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["seat_number"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert_eq!(seats, [("A-1", "valid"), ("A-2", "cancelled")]);
    assert_eq!(orders[0]["tickets"][0]["status"], "used");
    assert_eq!(orders[0]["tickets"][0]["section"], "Floor");
    assert_eq!(orders[0]["tickets"][0]["price"], 12000);
    let page2 = ok_json(app.get(&format!("/events/{event}/orders?page=2&per_page=1"), Some(&org)).await).await;
    assert_eq!(page2["orders"].as_array().unwrap().len(), 1);
    assert_eq!(page2["orders"][0]["buyer_id"], b2_id.to_string());

    let r = app.get(&format!("/events/{event}/orders?format=csv"), Some(&org)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(r.headers()["content-disposition"], format!("attachment; filename=\"orders-{event}.csv\"").as_str());
    let text = r.text().await.unwrap();
    let rows = parse_csv(&text);
    assert_eq!(
        rows[0],
        [
            "order_id",
            "purchased_at",
            "buyer_id",
            "buyer_email",
            "buyer_name",
            "ticket_id",
            "section",
            "seat_number",
            "price",
            "ticket_status",
            "order_total",
            "currency"
        ]
    );
    // One line per ticket, in the JSON's order, saying what the JSON says.
    let mut expected = Vec::new();
    for o in orders {
        for t in o["tickets"].as_array().unwrap() {
            let name = o["buyer_name"].as_str().unwrap();
            let shown = if name.starts_with('=') { format!("'{name}") } else { name.to_owned() };
            expected.push(vec![
                o["order_id"].as_str().unwrap().to_owned(),
                String::new(),
                o["buyer_id"].as_str().unwrap().to_owned(),
                o["buyer_email"].as_str().unwrap().to_owned(),
                shown,
                t["ticket_id"].as_str().unwrap().to_owned(),
                t["section"].as_str().unwrap().to_owned(),
                t["seat_number"].as_str().unwrap().to_owned(),
                t["price"].to_string(),
                t["status"].as_str().unwrap().to_owned(),
                o["total"].to_string(),
                "JPY".to_owned(),
            ]);
        }
    }
    let mut got = rows[1..].to_vec();
    for (row, o) in
        got.iter_mut().zip(orders.iter().flat_map(|o| o["tickets"].as_array().unwrap().iter().map(move |_| o)))
    {
        let at = chrono::DateTime::parse_from_rfc3339(&row[1]).expect("RFC 3339 purchase time");
        let json_at = chrono::DateTime::parse_from_rfc3339(o["purchased_at"].as_str().unwrap()).unwrap();
        assert_eq!(at, json_at);
        row[1] = String::new();
    }
    assert_eq!(got, expected);
    assert!(rows.iter().any(|r| r[4] == tricky), "a comma and quotes round-trip");
    assert!(rows.iter().any(|r| r[4] == format!("'{formula}")), "a formula is defused");
    assert!(rows.iter().any(|r| r[4] == "Two\nLines"), "a line break round-trips");
    assert!(!text.contains(",=HYPERLINK") && !text.contains("\"=HYPERLINK"), "no cell starts a formula: {text}");

    let r = app
        .client
        .get(format!("{}/events/{event}/orders", app.base))
        .bearer_auth(&org)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let by_accept = r.text().await.unwrap();
    assert_eq!(parse_csv(&by_accept).len(), rows.len(), "Accept: text/csv gives the same export");
    let r = app.get(&format!("/events/{event}/orders?format=csv&page=2&per_page=1"), Some(&org)).await;
    let page2_rows = parse_csv(&r.text().await.unwrap());
    assert_eq!(page2_rows.len(), 2, "the header and the page's one ticket");
    assert_eq!(page2_rows[1][2], b2_id.to_string());

    let summary = ok_json(app.get(&format!("/events/{event}/summary"), Some(&org)).await).await;
    assert_eq!(summary["currency"], "JPY");
    assert_eq!((summary["tickets_sold"].as_i64(), summary["tickets_cancelled"].as_i64()), (Some(3), Some(1)));
    assert_eq!((summary["tickets_used"].as_i64(), summary["orders"].as_i64()), (Some(1), Some(3)));
    assert_eq!(summary["revenue"], 36000, "kept tickets only");
    assert_eq!(summary["refunded"].as_i64().unwrap() + summary["refunds_pending"].as_i64().unwrap(), 12000);
    assert_eq!(summary["sections"], json!([{"section": "Floor", "sold": 3, "revenue": 36000}]));
    app.stop().await;
}

#[tokio::test]
async fn a_csv_export_without_paging_has_every_order_of_the_event() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let map = json!({"tiers": [{"code": "A", "price": 1000}],
                     "sections": [{"name": "Floor", "tier": "A", "kind": "general", "capacity": 100}]});
    let event = app.published_event(&org, Some(map), None).await;
    let mut buyers = Vec::new();
    for _ in 0..3 {
        buyers.push(app.user("customer").await.1);
    }
    // 24 orders: more than a default page (20).
    for i in 0..24 {
        let body = json!({"event_id": event, "quantity": 1, "payment_method": "pm_card_visa"});
        let r = app.post("/tickets/purchase", Some(&buyers[i % 3]), body).await;
        assert_eq!(r.status(), StatusCode::CREATED, "purchase {i}");
    }
    let page = ok_json(app.get(&format!("/events/{event}/orders"), Some(&org)).await).await;
    assert_eq!(page["orders"].as_array().unwrap().len(), 20, "JSON is paged");
    let all = app.get(&format!("/events/{event}/orders?format=csv"), Some(&org)).await.text().await.unwrap();
    assert_eq!(parse_csv(&all).len(), 1 + 24, "the header and every ticket of the event");
    let one = app.get(&format!("/events/{event}/orders?format=csv&per_page=5"), Some(&org)).await.text().await.unwrap();
    assert_eq!(parse_csv(&one).len(), 1 + 5, "with paging, the page");
}
