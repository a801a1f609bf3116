//! The waiting room in the browser: a buyer sent to the room by the event page
//! sees a place in line, is moved on to the seats when admitted, and holds with
//! the admission the page kept; without one, a hold is refused.

use crate::support::{PATIENCE, account, assert_clean_console, screenshot, sign_in, wait_seat};
use boxoffice_testkit::browser::Driver;
use boxoffice_testkit::{assert_problem, small_map, spawn_app};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_buyer_waits_in_line_is_let_in_and_holds_with_the_admission() {
    let app = spawn_app().await;
    let (_, organizer, _) = account(&app, "organizer", "Olive Organizer").await;
    let window = json!({"per_buyer_limit": 4,
                        "waiting_room": {"enabled": true, "rate_per_minute": 600, "admission_ttl_secs": 300}});
    let event = app.published_event(&organizer, Some(small_map()), Some(window)).await;

    // Straight to the API without an admission: refused, saying why.
    let (_, other, _) = account(&app, "customer", "Otto Other").await;
    let r = app.post(&format!("/events/{event}/holds"), Some(&other), json!({"seats": ["A-1"]})).await;
    assert_problem(r, StatusCode::FORBIDDEN, "not_admitted").await;

    let (_, _, email) = account(&app, "customer", "Bea Buyer").await;
    let driver = Driver::start().await;
    let browser = driver.browser(390, 844).await;
    sign_in(&browser, &app, &email, &format!("/app/events/{event}")).await;
    // The event page points to the room.
    browser.wait_for("#join-queue", PATIENCE).await.click().await;
    browser
        .wait_until(
            "the waiting room shows a place in line or the turn",
            "const q = document.querySelector('#queue'); return !!q && ['waiting', 'admitted'].includes(q.dataset.state) && q.dataset.state;",
            json!([]),
            PATIENCE,
        )
        .await;
    screenshot(&browser, "waiting-room").await;
    // Admitted: the page moves on to the seats by itself, and the hold carries the admission.
    browser
        .wait_until(
            "moved on to the event page",
            "return location.pathname === arguments[0] && !!document.querySelector('#seatmap[data-ready=\"true\"]');",
            json!([format!("/app/events/{event}")]),
            PATIENCE,
        )
        .await;
    let notice = browser.text_of("#notice").await.unwrap_or_default();
    assert!(notice.contains("your turn"), "the page says it is the buyer's turn: {notice:?}");
    browser.find_now("#seatmap [data-seat=\"A-2\"]").await.expect("seat A-2").click().await;
    browser.wait_for("#hold", PATIENCE).await.click().await;
    wait_seat(&browser, "A-2", "H", PATIENCE).await;
    let holds: i64 = sqlx::query_scalar("SELECT count(*) FROM holds WHERE event_id = $1")
        .bind(event)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(holds, 1, "one hold: the buyer's, made with the admission");
    assert_clean_console(&browser, &["403"]).await;
    browser.close().await;
}
