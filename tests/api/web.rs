//! The web app's files over HTTP: every page served with a policy that forbids inline
//! script and foreign origins, assets revalidated by ETag, unknown files a problem
//! document, and the page configuration naming the payment provider.

use boxoffice_testkit::{spawn_app, spawn_app_on};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use serde_json::Value;

const PAGES: &[&str] = &[
    "/",
    "/app/events/01a24a9c-cfa1-70f2-91f5-81a85f447560",
    "/app/events/01a24a9c-cfa1-70f2-91f5-81a85f447560/queue",
    "/app/tickets",
    "/app/signin",
    "/app/signup",
    "/app/organizer",
    "/app/organizer/new",
    "/app/organizer/events/01a24a9c-cfa1-70f2-91f5-81a85f447560",
    "/app/organizer/events/01a24a9c-cfa1-70f2-91f5-81a85f447560/edit",
    "/app/scan",
    "/app/scan/01a24a9c-cfa1-70f2-91f5-81a85f447560",
    "/docs",
];

#[tokio::test]
async fn every_page_is_html_under_a_strict_content_security_policy() {
    let app = spawn_app().await;
    for page in PAGES {
        let r = app.get(page, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{page}");
        assert_eq!(r.headers()[CONTENT_TYPE], "text/html; charset=utf-8", "{page}");
        let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
        assert!(csp.contains("script-src 'self';"), "{page}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe"), "{page}: {csp}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        let html = r.text().await.unwrap();
        // Every script and stylesheet the page names is served from here.
        for attr in ["src=\"", "href=\""] {
            for (at, _) in html.match_indices(attr) {
                let url = &html[at + attr.len()..];
                let url = &url[..url.find('"').unwrap()];
                if url.starts_with("/assets/") {
                    let r = app.get(url, None).await;
                    assert_eq!(r.status(), StatusCode::OK, "{page} names {url}");
                } else {
                    assert!(!url.starts_with("http"), "{page} loads {url} from another origin");
                }
            }
        }
    }
}

#[tokio::test]
async fn assets_are_revalidated_by_etag_and_unknown_ones_are_problems() {
    let app = spawn_app().await;
    let r = app.get("/assets/js/api.js", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert_eq!(r.headers()[CACHE_CONTROL], "no-cache");
    let etag = r.headers()[ETAG].clone();
    let again = app
        .client
        .get(format!("{}/assets/js/api.js", app.base))
        .header(IF_NONE_MATCH, etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[ETAG], etag);
    let stale = app
        .client
        .get(format!("{}/assets/js/api.js", app.base))
        .header(IF_NONE_MATCH, "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK);

    // Gzipped for clients that take it: the same bytes, a validator of its own.
    let plain = app.get("/assets/vendor/swagger-ui/swagger-ui-bundle.js", None).await.bytes().await.unwrap();
    let r = app
        .client
        .get(format!("{}/assets/vendor/swagger-ui/swagger-ui-bundle.js", app.base))
        .header("accept-encoding", "br;q=1, gzip;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(r.headers()["vary"], "accept-encoding");
    assert_ne!(r.headers()[ETAG], etag);
    let zipped = r.bytes().await.unwrap();
    assert!(zipped.len() * 3 < plain.len(), "{} gzipped of {}", zipped.len(), plain.len());
    let mut unzipped = vec![];
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&zipped[..]), &mut unzipped).unwrap();
    assert_eq!(unzipped, plain.to_vec());
    let refused = app
        .client
        .get(format!("{}/assets/js/api.js", app.base))
        .header("accept-encoding", "gzip;q=0")
        .send()
        .await
        .unwrap();
    assert!(refused.headers().get("content-encoding").is_none(), "gzip;q=0 refuses gzip");

    for missing in ["/assets/js/nope.js", "/assets/../Cargo.toml", "/assets/vendor/", "/app/nowhere"] {
        let r = app.get(missing, None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{missing}");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/problem+json", "{missing}");
    }
    // Vendored libraries ship with their licences.
    for licence in ["/assets/vendor/swagger-ui/LICENSE", "/assets/vendor/jsqr/LICENSE"] {
        let r = app.get(licence, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{licence}");
        assert!(r.text().await.unwrap().contains("Apache License"), "{licence}");
    }
}

#[tokio::test]
async fn the_page_configuration_names_the_payment_provider() {
    let app = spawn_app().await;
    let config: Value = app.get("/app/config.json", None).await.json().await.unwrap();
    assert_eq!(config["payments"], "test");
    assert!(config["stripe_publishable_key"].is_null());
    let csp = app.get("/", None).await.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(!csp.contains("stripe"), "no Stripe origin without Stripe: {csp}");

    let stripe = spawn_app_on(
        boxoffice_testkit::fresh_database().await,
        &[
            ("STRIPE_SECRET_KEY", "sk_test_123"),
            ("STRIPE_API_BASE", &boxoffice_testkit::localstripe_url()),
            ("STRIPE_PUBLISHABLE_KEY", "pk_test_123"),
        ],
    )
    .await;
    let config: Value = stripe.get("/app/config.json", None).await.json().await.unwrap();
    assert_eq!(config["payments"], "stripe");
    assert_eq!(config["stripe_publishable_key"], "pk_test_123");
    let csp = stripe.get("/app/events/x", None).await.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self' https://js.stripe.com;"), "{csp}");
}
