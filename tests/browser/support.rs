//! What the browser tests share: signing a browser in, seat-map look-ups and
//! screenshots for the README.

use boxoffice_testkit::browser::Browser;
use boxoffice_testkit::{TEST_PASSWORD, TestApp};
use serde_json::json;
use std::time::Duration;

/// How long a page may take to show what a test waits for: generous, since two
/// cores run the server, PostgreSQL and Chromium at once.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Registers an account of `role` through the API; returns (id, access token, email).
pub async fn account(app: &TestApp, role: &str, name: &str) -> (uuid::Uuid, String, String) {
    let account = app.register(role, name).await;
    (account.id, account.access_token, account.email)
}

/// Signs `browser` in through the sign-in page and waits for the page it goes on to.
pub async fn sign_in(browser: &Browser, app: &TestApp, email: &str, next: &str) {
    browser.goto(&format!("{}/app/signin?next={}", app.base, urlencode(next))).await;
    browser.wait_for("#email", PATIENCE).await.fill(email).await;
    browser.wait_for("#password", PATIENCE).await.fill(TEST_PASSWORD).await;
    browser.wait_for("#submit", PATIENCE).await.click().await;
    let want = next.split('?').next().unwrap_or(next).to_owned();
    browser
        .wait_until(
            "signed in and sent on",
            "return location.pathname === arguments[0] && document.documentElement.dataset.session === 'signed-in';",
            json!([want]),
            PATIENCE,
        )
        .await;
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `data-state` letter of seat `label` on the page's map.
pub async fn seat_state(browser: &Browser, label: &str) -> Option<String> {
    let v = browser
        .eval("const s = document.querySelector(`#seatmap [data-seat=\"${arguments[0]}\"]`); return s && s.getAttribute('data-state');", json!([label]))
        .await;
    v.as_str().map(str::to_owned)
}

/// Waits until seat `label` shows `state` on the page's map.
pub async fn wait_seat(browser: &Browser, label: &str, state: &str, patience: Duration) {
    browser
        .wait_until(
            &format!("seat {label} shows {state}"),
            "const s = document.querySelector(`#seatmap [data-seat=\"${arguments[0]}\"]`); return !!s && s.getAttribute('data-state') === arguments[1];",
            json!([label, state]),
            patience,
        )
        .await;
}

/// Saves a screenshot as `name`.png under `$BOXOFFICE_SCREENSHOTS`, when set.
pub async fn screenshot(browser: &Browser, name: &str) {
    let Ok(dir) = std::env::var("BOXOFFICE_SCREENSHOTS") else { return };
    // Let fonts and the last frame settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let png = browser.screenshot().await;
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).expect("write screenshot");
}

/// No console errors (uncaught exceptions, CSP violations, failed loads) so far,
/// ignoring the answers the test provoked on purpose (`expected` substrings).
pub async fn assert_clean_console(browser: &Browser, expected: &[&str]) {
    let errors: Vec<String> = browser
        .console_errors()
        .await
        .into_iter()
        .filter(|m| !expected.iter().any(|e| m.contains(e)))
        // An API refusal the page shows in words is logged by Chromium as a failed load.
        .filter(|m| !m.contains("the server responded with a status of 4"))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
