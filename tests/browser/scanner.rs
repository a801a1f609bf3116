//! Door staff in the browser: the ticket's QR image fed to the scanner page is
//! admitted once, then refused as already used; a code for another event and a
//! forged code are refused in words.

use crate::support::{PATIENCE, account, assert_clean_console, screenshot, sign_in};
use boxoffice_testkit::browser::Driver;
use boxoffice_testkit::{TempDir, small_map, spawn_app};
use serde_json::{Value, json};

#[tokio::test]
async fn staff_scan_a_ticket_image_once_then_see_it_already_used() {
    let app = spawn_app().await;
    let (_, organizer, _) = account(&app, "organizer", "Olive Organizer").await;
    let event = app.published_event(&organizer, Some(small_map()), None).await;
    let other_event = app.published_event(&organizer, Some(small_map()), None).await;
    let (staff_id, _, staff_email) = account(&app, "staff", "Sam Staff").await;
    app.assign_staff(&organizer, event, staff_id).await;
    let (buyer_id, buyer, _) = account(&app, "customer", "Bea Buyer").await;
    app.buy(&buyer, event, "A-3").await;
    app.buy(&buyer, other_event, "A-3").await;

    // The ticket's QR image, as the buyer's phone would show it.
    let tickets: Value = app.get(&format!("/tickets/user/{buyer_id}"), Some(&buyer)).await.json().await.unwrap();
    let list = tickets.as_array().cloned().or_else(|| tickets["tickets"].as_array().cloned()).expect("ticket list");
    let link_of = |event_id: uuid::Uuid| {
        list.iter()
            .find(|t| t["event_id"] == json!(event_id))
            .and_then(|t| t["qr_link"].as_str())
            .expect("a ticket with a QR link")
            .to_owned()
    };
    let dir = TempDir::new("scanner-images");
    let mut images = vec![];
    for (name, id) in [("good", event), ("other", other_event)] {
        let r = app.get(&link_of(id), None).await;
        assert_eq!(r.status(), 200, "the signed link serves the image");
        let path = dir.path().join(format!("{name}.png"));
        std::fs::write(&path, r.bytes().await.unwrap()).unwrap();
        images.push(path);
    }

    let driver = Driver::start().await;
    let browser = driver.browser(390, 844).await;
    sign_in(&browser, &app, &staff_email, &format!("/app/scan/{event}")).await;
    let feed = |path: std::path::PathBuf| {
        let browser = &browser;
        async move {
            browser
                .eval(
                    "const r = document.querySelector('#result'); if (r) r.removeAttribute('data-outcome');",
                    json!([]),
                )
                .await;
            let input = browser.find_now("#qr-file").await.expect("an image input");
            input.send_keys(&path.display().to_string()).await;
            browser
                .wait_until(
                    "a scan result",
                    "const r = document.querySelector('#result'); const o = r && r.getAttribute('data-outcome'); return (o === 'ok' || o === 'bad') && o;",
                    json!([]),
                    PATIENCE,
                )
                .await
        }
    };

    assert_eq!(feed(images[0].clone()).await, "ok", "first scan admits");
    let text = browser.text_of("#result").await.unwrap_or_default();
    assert!(text.contains("A-3"), "the result names the seat: {text:?}");
    screenshot(&browser, "scanner").await;

    // The same image again: refused, saying it was already used.
    browser.eval("document.querySelector('#qr-file').value = '';", json!([])).await;
    assert_eq!(feed(images[0].clone()).await, "bad");
    let text = browser.text_of("#result").await.unwrap_or_default().to_lowercase();
    assert!(text.contains("already used"), "second scan says already used: {text:?}");

    // Another event's genuine ticket: wrong event, in words.
    browser.eval("document.querySelector('#qr-file').value = '';", json!([])).await;
    assert_eq!(feed(images[1].clone()).await, "bad");
    let text = browser.text_of("#result").await.unwrap_or_default().to_lowercase();
    assert!(text.contains("another event") || text.contains("wrong event"), "wrong event in words: {text:?}");

    // A forged code typed by hand: invalid.
    browser.wait_for("#manual-code", PATIENCE).await.fill("BOX1.k1.forged.code").await;
    browser
        .eval("const r = document.querySelector('#result'); if (r) r.removeAttribute('data-outcome');", json!([]))
        .await;
    browser.wait_for("#check", PATIENCE).await.click().await;
    let outcome = browser
        .wait_until(
            "a result for a typed code",
            "const r = document.querySelector('#result'); const o = r && r.getAttribute('data-outcome'); return (o === 'ok' || o === 'bad') && o;",
            json!([]),
            PATIENCE,
        )
        .await;
    assert_eq!(outcome, "bad");
    let text = browser.text_of("#result").await.unwrap_or_default().to_lowercase();
    assert!(text.contains("not a valid") || text.contains("invalid"), "forged code in words: {text:?}");

    // One check-in stored, by this member of staff.
    let used: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets WHERE event_id = $1 AND status = 'used'")
        .bind(event)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(used, 1);
    assert_clean_console(&browser, &["409", "422"]).await;
    browser.close().await;
}
