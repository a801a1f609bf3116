//! Check-in by the scanned code alone (`POST /events/{id}/check-ins`), and its twin
//! `POST /tickets/{id}/validate`: one admission per ticket, and every refusal says why.

use boxoffice_testkit::{assert_problem, spawn_app};
use chrono::{DateTime, FixedOffset};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn time(v: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}"))).expect("RFC 3339")
}

/// `code` with one character changed (still base64url, so it parses and must fail its signature).
fn flip(code: &str) -> String {
    let at = code.len() / 2;
    let c = code.as_bytes()[at];
    let other = if c == b'A' { 'B' } else { 'A' };
    format!("{}{other}{}", &code[..at], &code[at + 1..])
}

#[tokio::test]
async fn a_scan_admits_once_and_refuses_the_wrong_door_a_cancelled_ticket_and_forgeries() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (staff_id, staff, _) = app.user_named("staff", "Sam Scanner").await;
    let (_, stranger_staff, _) = app.user("staff").await;
    let (_, buyer, _) = app.user_named("customer", "Ada Holder").await;
    let event = app.published_event(&org, None, None).await;
    let other_event = app.published_event(&org, None, None).await;
    app.assign_staff(&org, event, staff_id).await;
    app.assign_staff(&org, other_event, staff_id).await;
    let sale = app.buy_seats(&buyer, event, &["A-1", "A-2", "A-3"]).await;
    let ticket = |i: usize| sale["tickets"][i]["ticket_id"].as_str().unwrap().to_owned();
    let code = |i: usize| sale["tickets"][i]["qr_token"].as_str().unwrap().to_owned();
    let scan = |token: &str, at: uuid::Uuid, qr: String| {
        let (app, token) = (&app, token.to_owned());
        async move { app.post(&format!("/events/{at}/check-ins"), Some(&token), json!({"qr": qr})).await }
    };

    // Not staff of this event: the ticket's own holder, or staff of no event of this organizer.
    assert_problem(scan(&buyer, event, code(0)).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_problem(scan(&stranger_staff, event, code(0)).await, StatusCode::FORBIDDEN, "forbidden").await;
    assert_problem(scan(&staff, event, flip(&code(0))).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_qr").await;
    assert_problem(scan(&staff, event, "BO1.garbage".into()).await, StatusCode::UNPROCESSABLE_ENTITY, "invalid_qr")
        .await;
    // A genuine code at another event's door, where the scanner also works.
    let p =
        assert_problem(scan(&staff, other_event, code(0)).await, StatusCode::UNPROCESSABLE_ENTITY, "wrong_event").await;
    assert_eq!(p["ticket_event_id"], event.to_string());

    let r = scan(&staff, event, code(0)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let admitted: Value = r.json().await.unwrap();
    assert_eq!(admitted["ticket_id"], ticket(0));
    assert_eq!(admitted["holder_name"], "Ada Holder");
    assert_eq!((admitted["section"].as_str(), admitted["seat_number"].as_str()), (Some("Floor"), Some("A-1")));
    assert_eq!((admitted["status"].as_str(), admitted["admitted"].as_bool()), (Some("used"), Some(true)));
    let first_at = time(&admitted["checked_in_at"]);

    // The second scan, by anyone allowed, learns when and by whom.
    for token in [&staff, &org] {
        let p = assert_problem(scan(token, event, code(0)).await, StatusCode::CONFLICT, "already_used").await;
        assert_eq!(time(&p["first_checked_in_at"]), first_at);
        assert_eq!(p["checked_in_by"], staff_id.to_string());
        assert_eq!(p["checked_in_by_name"], "Sam Scanner");
    }
    let used: String = sqlx::query_scalar("SELECT status FROM tickets WHERE ticket_id = $1::uuid")
        .bind(ticket(0))
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(used, "used");

    let r = app.post(&format!("/tickets/{}/cancel", ticket(1)), Some(&buyer), json!({})).await;
    assert_eq!(r.status(), StatusCode::OK, "cancel");
    assert_problem(scan(&staff, event, code(1)).await, StatusCode::CONFLICT, "ticket_cancelled").await;

    // The ticket-id route shares the admission: what one admits, the other refuses.
    let r = app.post(&format!("/tickets/{}/validate", ticket(2)), Some(&org), json!({"qr": code(2)})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let validated: Value = r.json().await.unwrap();
    assert_eq!(
        (validated["holder_name"].as_str(), validated["seat_number"].as_str()),
        (Some("Ada Holder"), Some("A-3"))
    );
    let p = assert_problem(scan(&staff, event, code(2)).await, StatusCode::CONFLICT, "already_used").await;
    assert_eq!(time(&p["first_checked_in_at"]), time(&validated["checked_in_at"]));
    let r = app.post(&format!("/tickets/{}/validate", ticket(0)), Some(&staff), json!({"qr": code(0)})).await;
    assert_problem(r, StatusCode::CONFLICT, "already_used").await;

    let checked_in: i64 = sqlx::query_scalar("SELECT count(*) FROM check_ins").fetch_one(&app.db).await.unwrap();
    assert_eq!(checked_in, 2, "one row per admitted ticket");
    let r = app.post(&format!("/events/{event}/check-ins"), Some(&staff), json!({"code": code(0)})).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    app.stop().await;
}

#[tokio::test]
async fn organizers_assign_staff_by_email_and_staff_list_the_events_they_scan() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (staff_id, staff, _) = app.user("staff").await;
    let (_, customer, _) = app.user("customer").await;
    let staff_email: String = sqlx::query_scalar("SELECT email FROM users WHERE user_id = $1")
        .bind(staff_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let customer_email: String =
        sqlx::query_scalar("SELECT email FROM users WHERE user_id <> $1 AND user_type = 'customer'")
            .bind(staff_id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    let later = app.published_event(&org, None, None).await;
    let sooner = {
        let r = app
            .post(
                "/events/create",
                Some(&org),
                json!({"title": "Matinee", "venue_name": "Hall", "event_date": "2029-01-01T14:00:00Z",
                       "seat_map": boxoffice_testkit::small_map()}),
            )
            .await;
        let id = r.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_owned();
        app.post(&format!("/events/{id}/publish"), Some(&org), json!({})).await;
        id
    };

    // By email, in any case; twice is once.
    for email in [staff_email.to_uppercase(), staff_email.clone()] {
        let r = app.post(&format!("/events/{later}/staff"), Some(&org), json!({"email": email})).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let r = app.post(&format!("/events/{sooner}/staff"), Some(&org), json!({"staff_id": staff_id})).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let listed: Value = app.get(&format!("/events/{later}/staff"), Some(&org)).await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // Not a staff account, no account, both or neither: refused, nothing assigned.
    for (body, status, code) in [
        (json!({"email": customer_email}), StatusCode::UNPROCESSABLE_ENTITY, "not_staff"),
        (json!({"email": "nobody@example.com"}), StatusCode::UNPROCESSABLE_ENTITY, "not_staff"),
    ] {
        let r = app.post(&format!("/events/{later}/staff"), Some(&org), body).await;
        assert_problem(r, status, code).await;
    }
    for body in [json!({"email": staff_email, "staff_id": staff_id}), json!({})] {
        let r = app.post(&format!("/events/{later}/staff"), Some(&org), body.clone()).await;
        assert!(r.status().is_client_error(), "{body}: {}", r.status());
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    let listed: Value = app.get(&format!("/events/{later}/staff"), Some(&org)).await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // The staff member's own list: soonest first.
    let mine: Value = app.get("/staff/events", Some(&staff)).await.json().await.unwrap();
    let ids: Vec<&str> = mine["events"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![sooner.as_str(), later.to_string().as_str()], "{mine}");
    assert_eq!(mine["events"][0]["title"], "Matinee");
    // Unassigned: gone from the list.
    let r = app.request(reqwest::Method::DELETE, &format!("/events/{later}/staff/{staff_id}"), Some(&org), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let mine: Value = app.get("/staff/events", Some(&staff)).await.json().await.unwrap();
    assert_eq!(mine["events"].as_array().unwrap().len(), 1);
    // Only staff (and admins) have such a list.
    let r = app.get("/staff/events", Some(&customer)).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
}
