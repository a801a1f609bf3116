//! Buyers in the browser: the seat map, holding by keyboard and mouse, paying with
//! the test card, tickets with QR codes, a second browser watching live, refusals in
//! words, and the 20,000-seat page.

use crate::support::{PATIENCE, assert_clean_console, screenshot, seat_state, wait_seat};
use boxoffice_testkit::browser::{Driver, keys};
use boxoffice_testkit::spawn_app;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Three rows of 12 seats in two tiers and a standing area.
fn hall() -> Value {
    json!({
        "tiers": [{"code": "S", "price": 12000}, {"code": "A", "price": 6000}, {"code": "G", "price": 3000}],
        "sections": [
            {"name": "Stalls", "tier": "S", "kind": "seated", "rows": [{"label": "A", "seats": 12}, {"label": "B", "seats": 12}]},
            {"name": "Circle", "tier": "A", "kind": "seated", "rows": [{"label": "C", "seats": 12}]},
            {"name": "Standing", "tier": "G", "kind": "general", "capacity": 50}
        ]
    })
}

#[tokio::test]
async fn a_buyer_holds_two_adjacent_seats_pays_and_another_browser_sees_them_sold() {
    let app = spawn_app().await;
    let (_, organizer, _) = crate::support::account(&app, "organizer", "Olive Organizer").await;
    let event = app.published_event(&organizer, Some(hall()), None).await;
    let page = format!("{}/app/events/{event}", app.base);
    let driver = Driver::start().await;

    // Someone else watches the map, signed out, and never reloads.
    let watcher = driver.browser(1280, 900).await;
    watcher.goto(&page).await;
    watcher.wait_for("#seatmap [data-seat=\"A-5\"]", PATIENCE).await;
    assert_eq!(seat_state(&watcher, "A-5").await.as_deref(), Some("F"));
    watcher.eval("window.__sameDocument = true;", json!([])).await;

    // The buyer signs up on the way in.
    let buyer = driver.browser(1280, 900).await;
    buyer.goto(&format!("{}/app/signup?next=/app/events/{event}", app.base)).await;
    buyer.wait_for("#name", PATIENCE).await.fill("Bea Buyer").await;
    buyer.wait_for("#email", PATIENCE).await.fill(&format!("bea-{}@example.com", uuid::Uuid::new_v4().simple())).await;
    buyer.wait_for("#password", PATIENCE).await.fill(boxoffice_testkit::TEST_PASSWORD).await;
    buyer.wait_for("#submit", PATIENCE).await.click().await;
    buyer.wait_for("#seatmap [data-seat=\"A-4\"]", PATIENCE).await;

    // A-4 by mouse, then A-5 by keyboard: right arrow moves the focus, space selects.
    buyer.find_now("#seatmap [data-seat=\"A-4\"]").await.expect("seat A-4").click().await;
    buyer
        .wait_until(
            "A-4 selected",
            "return document.querySelector('#seatmap [data-seat=\"A-4\"]').getAttribute('aria-pressed') === 'true';",
            json!([]),
            PATIENCE,
        )
        .await;
    buyer.eval("document.querySelector('#seatmap [data-seat=\"A-4\"]').focus();", json!([])).await;
    buyer.press(keys::RIGHT).await;
    buyer.press(keys::SPACE).await;
    let focused = buyer.eval("return document.activeElement.getAttribute('data-seat');", json!([])).await;
    assert_eq!(focused, "A-5", "the right arrow moves to the next seat");
    buyer
        .wait_until(
            "A-5 selected by keyboard",
            "return document.querySelector('#seatmap [data-seat=\"A-5\"]').getAttribute('aria-pressed') === 'true';",
            json!([]),
            PATIENCE,
        )
        .await;

    buyer.wait_for("#hold", PATIENCE).await.click().await;
    wait_seat(&buyer, "A-4", "H", PATIENCE).await;
    wait_seat(&buyer, "A-5", "H", PATIENCE).await;
    let countdown = buyer.wait_for("#countdown", PATIENCE).await.text().await;
    assert!(
        countdown.chars().filter(char::is_ascii_digit).count() >= 3 && countdown.contains(':'),
        "a visible countdown, got {countdown:?}"
    );
    // The watcher sees them held without reloading.
    let held_at = Instant::now();
    wait_seat(&watcher, "A-4", "H", PATIENCE).await;
    wait_seat(&watcher, "A-5", "H", PATIENCE).await;
    println!("held seats reached the second browser in {:?}", held_at.elapsed());

    // Pay with the test card.
    buyer.wait_for("#card-number", PATIENCE).await.fill("4242 4242 4242 4242").await;
    buyer.wait_for("#card-exp", PATIENCE).await.fill("12/34").await;
    buyer.wait_for("#card-cvc", PATIENCE).await.fill("123").await;
    if let Some(name) = buyer.find_now("#card-name").await {
        name.fill("Bea Buyer").await;
    }
    buyer.wait_for("#pay", PATIENCE).await.click().await;
    buyer.wait_for("#confirmation", PATIENCE).await;
    let paid_at = Instant::now();
    wait_seat(&watcher, "A-4", "S", PATIENCE).await;
    wait_seat(&watcher, "A-5", "S", PATIENCE).await;
    println!("sold seats reached the second browser in {:?} (frames are at most 200 ms apart)", paid_at.elapsed());
    assert_eq!(watcher.eval("return window.__sameDocument === true;", json!([])).await, true, "no reload");
    assert_eq!(seat_state(&watcher, "A-3").await.as_deref(), Some("F"), "neighbours stay free");
    screenshot(&watcher, "buyer-seat-map").await;

    // The tickets, each with its QR image loaded.
    buyer.goto(&format!("{}/app/tickets", app.base)).await;
    buyer.wait_for("#tickets .ticket", PATIENCE).await;
    buyer
        .wait_until(
            "two tickets with loaded QR codes",
            "const imgs = [...document.querySelectorAll('#tickets .ticket img.qr')];
             return imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth > 0);",
            json!([]),
            PATIENCE,
        )
        .await;
    let seats = buyer
        .eval("return [...document.querySelectorAll('#tickets .ticket .ticket-seat')].map(s => s.getAttribute('data-seat')).sort();", json!([]))
        .await;
    assert_eq!(seats, json!(["A-4", "A-5"]), "the tickets are for the seats picked");
    screenshot(&buyer, "buyer-tickets").await;

    // Stored: two tickets for these seats, one order.
    let sold: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets WHERE event_id = $1 AND status <> 'cancelled'")
        .bind(event)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(sold, 2);
    assert_clean_console(&buyer, &[]).await;
    assert_clean_console(&watcher, &[]).await;
    buyer.close().await;
    watcher.close().await;
}

#[tokio::test]
async fn refusals_are_shown_in_words_and_change_nothing() {
    let app = spawn_app().await;
    let (_, organizer, _) = crate::support::account(&app, "organizer", "Olive Organizer").await;
    let event = app.published_event(&organizer, Some(hall()), None).await;
    let (_, _, email) = crate::support::account(&app, "customer", "Cal Customer").await;
    let driver = Driver::start().await;
    let browser = driver.browser(390, 844).await;

    // A wrong password: the sign-in page says so, in words.
    browser.goto(&format!("{}/app/signin", app.base)).await;
    browser.wait_for("#email", PATIENCE).await.fill(&email).await;
    browser.wait_for("#password", PATIENCE).await.fill("not the password").await;
    browser.wait_for("#submit", PATIENCE).await.click().await;
    let notice = browser.wait_for("#notice.notice-error", PATIENCE).await.text().await;
    assert!(notice.contains("do not match"), "wrong password in words: {notice:?}");
    assert!(!notice.contains('{'), "no raw JSON: {notice:?}");

    crate::support::sign_in(&browser, &app, &email, &format!("/app/events/{event}")).await;
    browser.wait_for("#seatmap [data-seat=\"B-1\"]", PATIENCE).await;
    browser.find_now("#seatmap [data-seat=\"B-1\"]").await.unwrap().click().await;
    browser.wait_for("#hold", PATIENCE).await.click().await;
    wait_seat(&browser, "B-1", "H", PATIENCE).await;

    // A declined card: told so, nothing sold, the hold still there to try again.
    browser.wait_for("#card-number", PATIENCE).await.fill("4000000000000002").await;
    browser.wait_for("#card-exp", PATIENCE).await.fill("12/34").await;
    browser.wait_for("#card-cvc", PATIENCE).await.fill("123").await;
    browser.wait_for("#card-name", PATIENCE).await.fill("Cal Customer").await;
    browser.wait_for("#pay", PATIENCE).await.click().await;
    let notice = browser.wait_for("#notice.notice-error", PATIENCE).await.text().await;
    assert!(notice.to_lowercase().contains("declined"), "a decline in words: {notice:?}");
    if let Some(confirmation) = browser.find_now("#confirmation").await {
        assert!(!confirmation.displayed().await, "no confirmation after a decline");
    }
    let tickets: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets WHERE event_id = $1")
        .bind(event)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(tickets, 0, "a declined card sells nothing");
    assert_eq!(seat_state(&browser, "B-1").await.as_deref(), Some("H"), "the hold survives a decline");

    // Then the good card works on the same hold.
    browser.wait_for("#card-number", PATIENCE).await.fill("4242424242424242").await;
    browser.wait_for("#pay", PATIENCE).await.click().await;
    browser.wait_for("#confirmation", PATIENCE).await;
    assert_clean_console(&browser, &["402", "401"]).await;
    browser.close().await;
}

/// A map of `sections` × `rows` × `seats` (row labels `S{section}R{row}`).
fn big_map(sections: usize, rows: usize, seats: usize) -> Value {
    let sections: Vec<Value> = (0..sections)
        .map(|s| {
            let rows: Vec<Value> =
                (0..rows).map(|r| json!({"label": format!("S{}R{}", s + 1, r + 1), "seats": seats})).collect();
            json!({"name": format!("Block {}", s + 1), "tier": if s == 0 { "S" } else { "A" }, "kind": "seated", "rows": rows})
        })
        .collect();
    json!({"tiers": [{"code": "S", "price": 15000}, {"code": "A", "price": 8000}], "sections": sections})
}

#[tokio::test]
async fn the_event_page_of_a_20000_seat_map_is_interactive() {
    let app = spawn_app().await;
    let (_, organizer, _) = crate::support::account(&app, "organizer", "Olive Organizer").await;
    let event = app.published_event(&organizer, Some(big_map(4, 50, 100)), None).await;
    let driver = Driver::start().await;
    let browser = driver.browser(1280, 900).await;
    let started = Instant::now();
    browser.goto(&format!("{}/app/events/{event}", app.base)).await;
    let seats = browser
        .wait_until(
            "20,000 seats drawn",
            "const n = document.querySelectorAll('#seatmap [data-seat]').length; return n >= 20000 ? n : 0;",
            json!([]),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(seats, 20_000);
    let figures = browser
        .eval(
            "const nav = performance.getEntriesByType('navigation')[0];
             const res = performance.getEntriesByType('resource').filter(r => !r.name.includes('/live') && !r.name.includes('/seats') && !r.name.includes('/details') && !r.name.includes('/auth/'));
             const bytes = nav.decodedBodySize + res.reduce((s, r) => s + r.decodedBodySize, 0);
             const api = performance.getEntriesByType('resource').filter(r => r.name.includes('/seats')).reduce((s, r) => s + r.decodedBodySize, 0);
             return {interactive_ms: Math.round(performance.now()), page_bytes: bytes, seats_json_bytes: api, files: res.length + 1};",
            json!([]),
        )
        .await;
    println!(
        "20,000-seat event page: map interactive {} ms after navigation (driver round trip {:?}); page weight {} bytes in {} files (HTML/JS/CSS); seat status {} bytes",
        figures["interactive_ms"],
        started.elapsed(),
        figures["page_bytes"],
        figures["files"],
        figures["seats_json_bytes"]
    );
    // Still usable: one seat selects by click.
    browser.find_now("#seatmap [data-seat=\"S2R10-50\"]").await.expect("a seat deep in the map").click().await;
    browser
        .wait_until(
            "a seat of the big map selected",
            "return document.querySelector('#seatmap [data-seat=\"S2R10-50\"]').getAttribute('aria-pressed') === 'true';",
            json!([]),
            PATIENCE,
        )
        .await;
    assert_clean_console(&browser, &[]).await;
    browser.close().await;
}
