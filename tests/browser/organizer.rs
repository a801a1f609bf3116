//! Organizers in the browser: build an event's seat map, publish it, and watch the
//! live dashboard count a sale made elsewhere; bad input in the builder is told in
//! words and creates nothing.

use crate::support::{PATIENCE, account, assert_clean_console, screenshot, sign_in};
use boxoffice_testkit::browser::Driver;
use boxoffice_testkit::spawn_app;
use serde_json::json;
use uuid::Uuid;

#[tokio::test]
async fn an_organizer_builds_publishes_and_watches_a_sale_on_the_dashboard() {
    let app = spawn_app().await;
    let (organizer_id, _, email) = account(&app, "organizer", "Olive Organizer").await;
    let driver = Driver::start().await;
    let browser = driver.browser(1280, 1000).await;
    sign_in(&browser, &app, &email, "/app/organizer/new").await;

    browser.wait_for("#title", PATIENCE).await.fill("Spring Gala").await;
    browser.wait_for("#venue", PATIENCE).await.fill("Grand Hall").await;
    browser.wait_for("#category", PATIENCE).await.fill("music").await;
    // datetime-local takes the digits in the locale's order; set it as a script would.
    browser
        .eval(
            "const d = document.querySelector('#date'); d.value = '2031-04-01T19:30'; d.dispatchEvent(new Event('input', {bubbles: true})); d.dispatchEvent(new Event('change', {bubbles: true}));",
            json!([]),
        )
        .await;

    // One tier and one seated section of 2 rows × 8 seats, built with the builder.
    if browser.find_all(".tier-row").await.is_empty() {
        browser.wait_for("#add-tier", PATIENCE).await.click().await;
    }
    browser.wait_for(".tier-row .tier-code", PATIENCE).await.fill("S").await;
    browser.wait_for(".tier-row .tier-price", PATIENCE).await.fill("80").await;
    if browser.find_all(".section-row").await.is_empty() {
        browser.wait_for("#add-section", PATIENCE).await.click().await;
    }
    browser.wait_for(".section-row .section-name", PATIENCE).await.fill("Orchestra").await;
    browser
        .eval(
            "const row = document.querySelector('.section-row');
             const set = (sel, v) => { const e = row.querySelector(sel); e.value = v; e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true})); };
             set('.section-kind', 'seated'); set('.section-tier', 'S');",
            json!([]),
        )
        .await;
    browser.wait_for(".section-row .section-rows", PATIENCE).await.fill("2").await;
    browser.wait_for(".section-row .section-seats", PATIENCE).await.fill("8").await;
    browser.wait_for("#save", PATIENCE).await.click().await;

    // Saved: the event exists, a draft of this organizer with 16 seats.
    let event: Uuid = boxoffice_testkit::poll(PATIENCE, std::time::Duration::from_millis(100), || async {
        sqlx::query_scalar::<_, Uuid>("SELECT event_id FROM events WHERE organizer_id = $1 AND title = 'Spring Gala'")
            .bind(organizer_id)
            .fetch_optional(&app.db)
            .await
            .ok()
            .flatten()
            .ok_or("not saved yet")
    })
    .await
    .expect("the builder saved the event");

    // Saving took the page to the new event's editor; publish from there.
    browser
        .wait_until(
            "the editor of the saved event",
            "return location.pathname === arguments[0] && document.documentElement.dataset.session === 'signed-in'
                    && !!document.querySelector('#event-status .badge[data-status=\"draft\"]');",
            json!([format!("/app/organizer/events/{event}/edit")]),
            PATIENCE,
        )
        .await;
    browser.wait_for("#publish", PATIENCE).await.click().await;
    boxoffice_testkit::eventually("the event is published", PATIENCE, || async {
        let status: String = sqlx::query_scalar("SELECT status FROM events WHERE event_id = $1")
            .bind(event)
            .fetch_one(&app.db)
            .await
            .unwrap();
        status == "published"
    })
    .await;
    let details: serde_json::Value = app.get(&format!("/events/{event}/details"), None).await.json().await.unwrap();
    let capacity = details["availability"]["total"]["capacity"].as_i64();
    assert_eq!(capacity, Some(16), "2 rows × 8 seats: {details}");

    // The dashboard, live; a buyer elsewhere buys two seats.
    browser.goto(&format!("{}/app/organizer/events/{event}", app.base)).await;
    browser.wait_for("#stat-sold", PATIENCE).await;
    browser
        .wait_until(
            "nothing sold yet",
            "return document.querySelector('#stat-sold').textContent.trim().startsWith('0');",
            json!([]),
            PATIENCE,
        )
        .await;
    let (_, buyer, _) = account(&app, "customer", "Bea Buyer").await;
    let first_row: String =
        sqlx::query_scalar("SELECT seat_map->'sections'->0->'rows'->0->>'label' FROM events WHERE event_id = $1")
            .bind(event)
            .fetch_one(&app.db)
            .await
            .unwrap();
    app.buy_seats(&buyer, event, &[&format!("{first_row}-1"), &format!("{first_row}-2")]).await;
    browser
        .wait_until(
            "the dashboard counts the sale",
            "return document.querySelector('#stat-sold').textContent.trim().startsWith('2');",
            json!([]),
            PATIENCE,
        )
        .await;
    browser
        .wait_until(
            "the dashboard's map shows the seats sold",
            "return document.querySelectorAll('#seatmap [data-state=\"S\"]').length === 2;",
            json!([]),
            PATIENCE,
        )
        .await;
    browser
        .wait_until(
            "orders in the last minute counted",
            "const t = document.querySelector('#stat-orders-minute'); return !!t && t.textContent.trim().startsWith('1');",
            json!([]),
            PATIENCE,
        )
        .await;
    browser.wait_for("#orders-chart", PATIENCE).await;
    browser
        .wait_until(
            "the summary and the orders list follow the sale",
            "const sold = document.querySelector('#sum-sold'); return !!sold && sold.textContent.trim().startsWith('2') && document.querySelectorAll('#orders tr[data-order-id]').length === 1;",
            json!([]),
            PATIENCE,
        )
        .await;
    screenshot(&browser, "organizer-dashboard").await;
    assert_clean_console(&browser, &[]).await;
    browser.close().await;
}

#[tokio::test]
async fn the_builder_refuses_bad_input_in_words_and_creates_nothing() {
    let app = spawn_app().await;
    let (organizer_id, _, email) = account(&app, "organizer", "Olive Organizer").await;
    let driver = Driver::start().await;
    let browser = driver.browser(390, 844).await;
    sign_in(&browser, &app, &email, "/app/organizer/new").await;

    // Two sections whose rows share a label: the API would refuse it; the page says so.
    browser.wait_for("#title", PATIENCE).await.fill("Clash").await;
    browser.wait_for("#venue", PATIENCE).await.fill("Hall").await;
    browser
        .eval(
            "const d = document.querySelector('#date'); d.value = '2031-04-01T19:30'; d.dispatchEvent(new Event('change', {bubbles: true}));",
            json!([]),
        )
        .await;
    if browser.find_all(".tier-row").await.is_empty() {
        browser.wait_for("#add-tier", PATIENCE).await.click().await;
    }
    browser.wait_for(".tier-row .tier-code", PATIENCE).await.fill("S").await;
    browser.wait_for(".tier-row .tier-price", PATIENCE).await.fill("not a price").await;
    browser.wait_for("#save", PATIENCE).await.click().await;
    let notice = browser
        .wait_until(
            "the bad price is told in words",
            "const n = [...document.querySelectorAll('#notice, .field-error, [role=alert]')].map(e => e.textContent).join(' ').trim(); return n;",
            json!([]),
            PATIENCE,
        )
        .await;
    let notice = notice.as_str().unwrap_or_default().to_lowercase();
    assert!(notice.contains("price"), "the message names the price: {notice:?}");
    assert!(!notice.contains('{'), "no raw JSON: {notice:?}");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE organizer_id = $1")
        .bind(organizer_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(events, 0, "nothing created");
    browser.close().await;
}
