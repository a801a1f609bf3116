//! The session in the browser: the access token lives in memory, so every page
//! renews it from the refresh cookie, and each renewal rotates the cookie. Leaving
//! pages while their renewal is still in flight must not look like a stolen token
//! (which revokes the whole sign-in).

use crate::support::{PATIENCE, account, sign_in};
use boxoffice_testkit::browser::Driver;
use boxoffice_testkit::spawn_app;
use serde_json::json;

#[tokio::test]
async fn leaving_pages_mid_renewal_keeps_the_sign_in() {
    let app = spawn_app().await;
    let (user_id, _, email) = account(&app, "organizer", "Quick Clicker").await;
    let driver = Driver::start().await;
    let browser = driver.browser(1280, 900).await;
    sign_in(&browser, &app, &email, "/app/tickets").await;

    // Page after page without waiting for any of them to finish renewing.
    let pages = ["/", "/app/tickets", "/app/organizer", "/docs", "/app/scan", "/"];
    for page in pages.iter().cycle().take(18) {
        browser.goto(&format!("{}{page}", app.base)).await;
    }
    browser
        .wait_until(
            "still signed in after rapid navigation",
            "return document.documentElement.dataset.session;",
            json!([]),
            PATIENCE,
        )
        .await;
    let state = browser.eval("return document.documentElement.dataset.session;", json!([])).await;
    assert_eq!(state, "signed-in");
    let revoked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NOT NULL")
            .bind(user_id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(revoked, 0, "no renewal was taken for a stolen token");
    // The token never reaches storage a script could read.
    let stored = browser
        .eval(
            "return JSON.stringify(Object.assign({}, localStorage)) + JSON.stringify(Object.assign({}, sessionStorage)) + document.cookie;",
            json!([]),
        )
        .await;
    let stored = stored.as_str().unwrap_or_default();
    assert!(!stored.contains("eyJ") && !stored.contains("refresh"), "tokens in script-readable storage: {stored}");
    browser.close().await;
}
