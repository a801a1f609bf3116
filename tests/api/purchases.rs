//! Purchases and tickets: paying for a hold, declines, the one-shot purchase, late payments, cancellation and refunds, check-in.

use base64::Engine;
use boxoffice_testkit::{TestApp, assert_problem, poll, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

#[tokio::test]
async fn pay_for_a_hold_issues_signed_tickets_and_records_everything() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (buyer_id, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let hold: Value = app
        .post(&format!("/events/{id}/holds"), Some(&buyer), json!({"seats": ["A-3", "A-4"]}))
        .await
        .json()
        .await
        .unwrap();
    let hid = hold["hold_id"].as_str().unwrap();

    let r = app.post(&format!("/holds/{hid}/purchase"), Some(&buyer), json!({"payment_method": "pm_card_visa"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let sale: Value = r.json().await.unwrap();
    assert_eq!(sale["order_id"], hid);
    assert_eq!(sale["amount"], 24000);
    assert_eq!(sale["payment_provider"], "test");
    assert_eq!(sale["tickets"].as_array().unwrap().len(), 2);
    let png = base64::engine::general_purpose::STANDARD.decode(sale["qr_code"].as_str().unwrap()).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    assert_eq!(sale["ticket_id"], sale["tickets"][0]["ticket_id"]);

    let tickets: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT purchaser_id, seat_number, status FROM tickets ORDER BY seat_number")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(tickets, [(buyer_id, "A-3".into(), "valid".into()), (buyer_id, "A-4".into(), "valid".into())]);
    let payments: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT provider, amount, status FROM payments").fetch_all(&app.db).await.unwrap();
    assert_eq!(payments, [("test".into(), 24000, "succeeded".into())]);
    let hold_status: String = sqlx::query_scalar("SELECT status FROM holds").fetch_one(&app.db).await.unwrap();
    assert_eq!(hold_status, "purchased");

    // Paying again answers the first sale and charges nothing.
    let again: Value = app
        .post(&format!("/holds/{hid}/purchase"), Some(&buyer), json!({"payment_method": "pm_card_visa"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["tickets"][0]["ticket_id"], sale["tickets"][0]["ticket_id"]);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM payments").fetch_one(&app.db).await.unwrap();
    assert_eq!(n, 1);

    // The buyer's list and order history show them; nobody else's does.
    let mine: Value = app.get(&format!("/tickets/user/{buyer_id}"), Some(&buyer)).await.json().await.unwrap();
    assert_eq!(mine["tickets"].as_array().unwrap().len(), 2);
    assert_eq!(mine["tickets"][0]["event_title"], "Test concert");
    let orders: Value = app.get("/orders", Some(&buyer)).await.json().await.unwrap();
    assert_eq!(orders["orders"][0]["hold_id"], hid);
    assert_eq!(orders["orders"][0]["tickets"].as_array().unwrap().len(), 2);
    let (_, other, _) = app.user("customer").await;
    assert_problem(
        app.get(&format!("/tickets/user/{buyer_id}"), Some(&other)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let r = app.post(&format!("/holds/{hid}/purchase"), Some(&other), json!({"payment_method": "pm_card_visa"})).await;
    assert_problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let topics: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT topic FROM outbox ORDER BY 1").fetch_all(&app.db).await.unwrap();
    assert!(
        topics.contains(&"ticket:issued".to_owned()) && topics.contains(&"payment:created".to_owned()),
        "{topics:?}"
    );
}

#[tokio::test]
async fn declined_card_is_402_and_the_hold_stays() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let hold: Value =
        app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"seats": ["A-1"]})).await.json().await.unwrap();
    let hid = hold["hold_id"].as_str().unwrap();
    let r = app
        .post(&format!("/holds/{hid}/purchase"), Some(&buyer), json!({"payment_method": "pm_card_chargeDeclined"}))
        .await;
    let body = assert_problem(r, StatusCode::PAYMENT_REQUIRED, "payment_declined").await;
    assert_eq!(body["decline_code"], "card_declined");
    let v: Value = app.get(&format!("/holds/{hid}"), Some(&buyer)).await.json().await.unwrap();
    assert_eq!(v["status"], "active", "the hold survives a decline until it expires");
    let r = app.post(&format!("/holds/{hid}/purchase"), Some(&buyer), json!({"payment_method": "pm_card_visa"})).await;
    assert_eq!(r.status(), StatusCode::CREATED, "another card works");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets").fetch_one(&app.db).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn one_shot_purchase_in_the_seed_shape_is_idempotent() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (buyer_id, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let body = json!({"event_id": id, "purchaser_id": buyer_id, "seat_number": "A-12", "payment_method": "card"});
    assert_problem(
        app.post("/tickets/purchase", Some(&buyer), body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_seat",
    )
    .await;

    let send = |key: &'static str, body: Value| {
        app.client
            .post(format!("{}/tickets/purchase", app.base))
            .bearer_auth(&buyer)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let body = json!({"event_id": id, "purchaser_id": buyer_id, "seat_number": "B-2", "payment_method": "card"});
    let r = send("k-1", body.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let first: Value = r.json().await.unwrap();
    for field in ["ticket_id", "qr_code", "purchase_date", "price"] {
        assert!(!first[field].is_null(), "seed field {field} missing: {first}");
    }
    assert_eq!(first["price"], 12000);
    let again: Value = send("k-1", body).await.unwrap().json().await.unwrap();
    assert_eq!(again["ticket_id"], first["ticket_id"], "a retry returns the first result");
    let n: (i64, i64) = sqlx::query_as("SELECT (SELECT count(*) FROM tickets), (SELECT count(*) FROM payments)")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(n, (1, 1), "one ticket, one charge");

    // Buying for someone else is refused; a decline frees the seats at once.
    let (other_id, _, _) = app.user("customer").await;
    let r = app
        .post(
            "/tickets/purchase",
            Some(&buyer),
            json!({"event_id": id, "purchaser_id": other_id, "quantity": 1, "payment_method": "card"}),
        )
        .await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app
        .post(
            "/tickets/purchase",
            Some(&buyer),
            json!({"event_id": id, "seat_number": "B-3", "payment_method": "pm_card_chargeDeclined"}),
        )
        .await;
    assert_problem(r, StatusCode::PAYMENT_REQUIRED, "payment_declined").await;
    let (_, third, _) = app.user("customer").await;
    let r = app
        .post(
            "/tickets/purchase",
            Some(&third),
            json!({"event_id": id, "seat_number": "B-3", "payment_method": "pm_card_visa", "include_qr_image": false}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.unwrap();
    assert!(v["qr_code"].is_null() && v["tickets"][0]["qr_token"].as_str().unwrap().starts_with("BO1."));
    let r = app
        .post(
            "/tickets/purchase",
            Some(&third),
            json!({"event_id": id, "seat_number": "B-4", "payment_method": "bogus method"}),
        )
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "payment_invalid").await;
}

#[tokio::test]
async fn a_payment_after_expiry_retakes_free_seats_or_is_refunded() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, alice, _) = app.user("customer").await;
    let (_, bob, _) = app.user("customer").await;
    let id = app.published_event(&org, None, Some(json!({"hold_ttl_secs": 5}))).await;
    let h1: Value =
        app.post(&format!("/events/{id}/holds"), Some(&alice), json!({"seats": ["A-1"]})).await.json().await.unwrap();
    let h2: Value =
        app.post(&format!("/events/{id}/holds"), Some(&alice), json!({"seats": ["A-2"]})).await.json().await.unwrap();
    wait_for_status(&app, &alice, h1["hold_id"].as_str().unwrap(), "expired").await;
    wait_for_status(&app, &alice, h2["hold_id"].as_str().unwrap(), "expired").await;
    // A-2 is taken by Bob in the meantime; A-1 is still free.
    assert_eq!(
        app.post(&format!("/events/{id}/holds"), Some(&bob), json!({"seats": ["A-2"]})).await.status(),
        StatusCode::CREATED
    );

    let r = app
        .post(
            &format!("/holds/{}/purchase", h1["hold_id"].as_str().unwrap()),
            Some(&alice),
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "free seats are taken again for a late payment");
    let r = app
        .post(
            &format!("/holds/{}/purchase", h2["hold_id"].as_str().unwrap()),
            Some(&alice),
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    let body = assert_problem(r, StatusCode::CONFLICT, "seats_gone").await;
    assert_eq!(body["refunded"], true);
    let refunds: Vec<(i64, String)> =
        sqlx::query_as("SELECT amount, status FROM refunds").fetch_all(&app.db).await.unwrap();
    assert_eq!(refunds, [(12000, "succeeded".into())]);
    let sold: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tickets WHERE seat_number = 'A-2'").fetch_one(&app.db).await.unwrap();
    assert_eq!(sold, 0, "no ticket for a seat that was gone");
}

async fn wait_for_status(app: &TestApp, token: &str, hold: &str, status: &str) {
    let reached = || async {
        let v: Value = app.get(&format!("/holds/{hold}"), Some(token)).await.json().await.unwrap();
        if v["status"] == status { Ok(()) } else { Err(v) }
    };
    poll(Duration::from_secs(20), Duration::from_millis(200), reached)
        .await
        .unwrap_or_else(|v| panic!("hold {hold} never became {status}: {v}"));
}

#[tokio::test]
async fn cancel_refunds_and_resells_and_check_in_admits_once() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (staff_id, staff, _) = app.user("staff").await;
    let (_, stranger_staff, _) = app.user("staff").await;
    let (_, buyer, _) = app.user("customer").await;
    let (_, other, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let sale: Value = app
        .post(
            "/tickets/purchase",
            Some(&buyer),
            json!({"event_id": id, "seats": ["A-1", "A-2"], "payment_method": "pm_card_visa"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let (t1, t2) =
        (sale["tickets"][0]["ticket_id"].as_str().unwrap(), sale["tickets"][1]["ticket_id"].as_str().unwrap());
    let (q1, q2) = (sale["tickets"][0]["qr_token"].as_str().unwrap(), sale["tickets"][1]["qr_token"].as_str().unwrap());

    // QR image for the owner only.
    let r = app.get(&format!("/tickets/{t1}/qr"), Some(&buyer)).await;
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(
        app.get(&format!("/tickets/{t1}/qr?format=svg"), Some(&buyer)).await.headers()["content-type"],
        "image/svg+xml"
    );
    assert_problem(app.get(&format!("/tickets/{t1}/qr"), Some(&other)).await, StatusCode::NOT_FOUND, "not_found").await;

    // Cancel: owner only, refunded, seat back on sale, idempotent.
    assert_problem(
        app.post(&format!("/tickets/{t2}/cancel"), Some(&other), json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let c: Value = app.post(&format!("/tickets/{t2}/cancel"), Some(&buyer), json!({})).await.json().await.unwrap();
    assert_eq!(
        (c["status"].as_str(), c["refund_status"].as_str(), c["refund_amount"].as_i64()),
        (Some("cancelled"), Some("succeeded"), Some(12000))
    );
    let again: Value = app.post(&format!("/tickets/{t2}/cancel"), Some(&buyer), json!({})).await.json().await.unwrap();
    assert_eq!(again["refund_status"], "succeeded");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM refunds").fetch_one(&app.db).await.unwrap();
    assert_eq!(n, 1, "refunded once");
    assert_eq!(
        app.post(&format!("/events/{id}/holds"), Some(&other), json!({"seats": ["A-2"]})).await.status(),
        StatusCode::CREATED
    );

    // Check-in: only staff assigned to this event (or the organizer).
    let r = app.post(&format!("/tickets/{t1}/validate"), Some(&staff), json!({"qr": q1})).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app.post(&format!("/events/{id}/staff"), Some(&org), json!({"staff_id": staff_id})).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.post(&format!("/tickets/{t1}/validate"), Some(&stranger_staff), json!({"qr": q1})).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app.post(&format!("/tickets/{t1}/validate"), Some(&buyer), json!({"qr": q1})).await;
    assert_problem(r, StatusCode::FORBIDDEN, "forbidden").await;

    // Forged, altered and mismatched codes.
    let r = app.post(&format!("/tickets/{t1}/validate"), Some(&staff), json!({"qr": q2})).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_qr").await;
    let mut altered = q1.to_owned();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    let r = app.post(&format!("/tickets/{t1}/validate"), Some(&staff), json!({"qr": altered})).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_qr").await;
    let r = app.post(&format!("/tickets/{t1}/validate"), Some(&staff), json!({"qr": "hello"})).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_qr").await;

    // Two scanners at once: exactly one admits.
    let scan = || {
        app.client
            .post(format!("{}/tickets/{t1}/validate", app.base))
            .bearer_auth(&staff)
            .json(&json!({"qr": q1}))
            .send()
    };
    let (a, b) = tokio::join!(scan(), scan());
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let r = app.post(&format!("/tickets/{t1}/validate"), Some(&org), json!({"qr": q1})).await;
    let body = assert_problem(r, StatusCode::CONFLICT, "already_used").await;
    assert_eq!(body["checked_in_by"], staff_id.to_string());
    assert!(body["first_checked_in_at"].as_str().is_some());
    let r = app.post(&format!("/tickets/{t2}/validate"), Some(&staff), json!({"qr": q2})).await;
    assert_problem(r, StatusCode::CONFLICT, "ticket_cancelled").await;
    // A used ticket cannot be cancelled.
    assert_problem(
        app.post(&format!("/tickets/{t1}/cancel"), Some(&buyer), json!({})).await,
        StatusCode::CONFLICT,
        "ticket_used",
    )
    .await;
    let check_ins: i64 = sqlx::query_scalar("SELECT count(*) FROM check_ins").fetch_one(&app.db).await.unwrap();
    assert_eq!(check_ins, 1);

    let r = app.request(Method::DELETE, &format!("/events/{id}/staff/{staff_id}"), Some(&org), None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let listed: Value = app.get(&format!("/events/{id}/staff"), Some(&org)).await.json().await.unwrap();
    assert_eq!(listed, json!([]));
}

#[tokio::test]
async fn a_code_from_another_event_is_refused() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let first = app.published_event(&org, None, None).await;
    let second = app.published_event(&org, None, None).await;
    let s1: Value = app.buy(&buyer, first, "A-1").await;
    let s2: Value = app.buy(&buyer, second, "A-1").await;
    // The second event's code presented for the first event's ticket id.
    let t1 = s1["tickets"][0]["ticket_id"].as_str().unwrap();
    let q2 = s2["tickets"][0]["qr_token"].as_str().unwrap();
    let r = app.post(&format!("/tickets/{t1}/validate"), Some(&org), json!({"qr": q2})).await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_qr").await;
    let used: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tickets WHERE status = 'used'").fetch_one(&app.db).await.unwrap();
    assert_eq!(used, 0);
}

#[tokio::test]
async fn a_ticket_of_a_cancelled_event_admits_no_one() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (_, buyer, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    let sale: Value = app.buy(&buyer, id, "A-1").await;
    let (ticket, qr) =
        (sale["tickets"][0]["ticket_id"].as_str().unwrap(), sale["tickets"][0]["qr_token"].as_str().unwrap());
    let r = app.post(&format!("/events/{id}/cancel"), Some(&org), json!({})).await;
    assert!(r.status().is_success(), "cancel answered {}", r.status());
    let r = app.post(&format!("/tickets/{ticket}/validate"), Some(&org), json!({"qr": qr})).await;
    assert_problem(r, StatusCode::CONFLICT, "event_cancelled").await;
    let used: i64 = sqlx::query_scalar("SELECT count(*) FROM check_ins").fetch_one(&app.db).await.unwrap();
    assert_eq!(used, 0, "a refused scan records no check-in");
}

/// A buyer's ticket list: every ticket of every order, newest first, a page at a
/// time, and nobody else's; a hold that was never paid shows nothing.
#[tokio::test]
async fn a_buyer_s_tickets_are_listed_newest_first_a_page_at_a_time() {
    let app = spawn_app().await;
    let (_, org, _) = app.user("organizer").await;
    let (buyer_id, buyer, _) = app.user("customer").await;
    let (other_id, other, _) = app.user("customer").await;
    let id = app.published_event(&org, None, None).await;
    for (who, seats) in
        [(&buyer, vec!["A-1"]), (&other, vec!["A-2"]), (&buyer, vec!["A-3", "A-4"]), (&buyer, vec!["A-5"])]
    {
        let hold: Value =
            app.post(&format!("/events/{id}/holds"), Some(who), json!({"seats": seats})).await.json().await.unwrap();
        let hid = hold["hold_id"].as_str().unwrap().to_owned();
        let r = app.post(&format!("/holds/{hid}/purchase"), Some(who), json!({"payment_method": "pm_card_visa"})).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        // Purchase times a clear millisecond apart.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Held, not paid: no ticket.
    let r = app.post(&format!("/events/{id}/holds"), Some(&buyer), json!({"seats": ["A-6"]})).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let seats_on = |page: &Value| -> Vec<String> {
        page["tickets"].as_array().unwrap().iter().map(|t| t["seat_number"].as_str().unwrap().to_owned()).collect()
    };
    let first: Value =
        app.get(&format!("/tickets/user/{buyer_id}?per_page=2"), Some(&buyer)).await.json().await.unwrap();
    let second: Value =
        app.get(&format!("/tickets/user/{buyer_id}?per_page=2&page=2"), Some(&buyer)).await.json().await.unwrap();
    let third: Value =
        app.get(&format!("/tickets/user/{buyer_id}?per_page=2&page=3"), Some(&buyer)).await.json().await.unwrap();
    // The newest order first; the two tickets of one order in ticket order.
    let mut listed = [seats_on(&first), seats_on(&second)].concat();
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert_eq!(listed[0], "A-5");
    assert_eq!(listed[3], "A-1");
    listed[1..3].sort();
    assert_eq!(listed, ["A-5", "A-3", "A-4", "A-1"]);
    assert!(seats_on(&third).is_empty());
    assert_eq!(first["page"], 1);
    assert_eq!(second["per_page"], 2);
    for t in first["tickets"].as_array().unwrap().iter().chain(second["tickets"].as_array().unwrap()) {
        assert_eq!(t["event_id"], id.to_string());
        assert_eq!(t["status"], "valid");
    }

    let theirs: Value = app.get(&format!("/tickets/user/{other_id}"), Some(&other)).await.json().await.unwrap();
    assert_eq!(seats_on(&theirs), ["A-2"]);
}
