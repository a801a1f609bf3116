//! Isolation (IDOR): every id-bearing route refuses users the object is not theirs, and
//! changes nothing.

use super::{assert_none, assert_unchanged, buy, draft_event, json_of, snapshot};
use boxoffice_testkit::{problem, small_map, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

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
        let r = app.request(a.method.clone(), &a.path, Some(&a.token), a.body.clone()).await;
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
