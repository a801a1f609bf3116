//! The web app: HTML pages and their scripts, styles and vendored libraries, built
//! into the binary from `web/` (or read from `WEB_DIR` while developing), served
//! with a Content-Security-Policy that allows no inline script and no third-party
//! origin — but Stripe's, and only when Stripe checkout is configured.
//!
//! Pages are static HTML shells; their modules (`web/assets/js/`) call the same
//! JSON API as every other client, with the access token kept in memory and
//! renewed through the HttpOnly refresh cookie. Nothing here decides anything.

use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Every file of `web/` the app serves, embedded at build time. A unit test checks
/// this list against the directory, so a new file cannot be forgotten.
macro_rules! embedded {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path)) as &[u8])),*]
    };
}

static FILES: &[(&str, &[u8])] = embedded![
    "pages/index.html",
    "pages/event.html",
    "pages/tickets.html",
    "pages/signin.html",
    "pages/signup.html",
    "pages/organizer.html",
    "pages/editor.html",
    "pages/dashboard.html",
    "pages/scan.html",
    "pages/docs.html",
    "pages/queue.html",
    "assets/app.css",
    "assets/buyer.css",
    "assets/organizer.css",
    "assets/favicon.svg",
    "assets/js/api.js",
    "assets/js/ui.js",
    "assets/js/events.js",
    "assets/js/event.js",
    "assets/js/seatmap.js",
    "assets/js/checkout.js",
    "assets/js/tickets.js",
    "assets/js/signin.js",
    "assets/js/organizer.js",
    "assets/js/editor.js",
    "assets/js/dashboard.js",
    "assets/js/live.js",
    "assets/js/admission.js",
    "assets/js/queue.js",
    "assets/js/scan.js",
    "assets/js/docs.js",
    "assets/vendor/jsqr/jsQR.js",
    "assets/vendor/jsqr/LICENSE",
    "assets/vendor/swagger-ui/swagger-ui-bundle.js",
    "assets/vendor/swagger-ui/swagger-ui.css",
    "assets/vendor/swagger-ui/LICENSE",
];

/// Page routes and the file each serves.
const PAGES: &[(&str, &str)] = &[
    ("/", "pages/index.html"),
    ("/app/events/{id}", "pages/event.html"),
    ("/app/events/{id}/queue", "pages/queue.html"),
    ("/app/tickets", "pages/tickets.html"),
    ("/app/signin", "pages/signin.html"),
    ("/app/signup", "pages/signup.html"),
    ("/app/organizer", "pages/organizer.html"),
    ("/app/organizer/new", "pages/editor.html"),
    ("/app/organizer/events/{id}/edit", "pages/editor.html"),
    ("/app/organizer/events/{id}", "pages/dashboard.html"),
    ("/app/scan", "pages/scan.html"),
    ("/app/scan/{id}", "pages/scan.html"),
    ("/docs", "pages/docs.html"),
];

pub fn router() -> axum::Router<AppState> {
    let mut router =
        axum::Router::new().route("/assets/{*path}", get(asset)).route("/app/config.json", get(config)).route(
            "/favicon.ico",
            get(|state: State<AppState>, headers: HeaderMap| serve(state, headers, "assets/favicon.svg")),
        );
    for &(route, file) in PAGES {
        router =
            router.route(route, get(move |state: State<AppState>, headers: HeaderMap| serve(state, headers, file)));
    }
    router
}

/// What the pages need to know about this server.
#[derive(Serialize)]
struct WebConfig<'a> {
    /// `test` (the built-in provider: a test-card form) or `stripe`.
    payments: &'static str,
    /// Set when checkout uses Stripe Elements.
    stripe_publishable_key: Option<&'a str>,
}

async fn config(State(state): State<AppState>) -> Response {
    let stripe_key = stripe_checkout_key(&state);
    let body = WebConfig {
        payments: if state.settings.stripe_secret_key.is_some() { "stripe" } else { "test" },
        stripe_publishable_key: stripe_key,
    };
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Stripe Elements is used (and Stripe's origins allowed) only with both keys.
fn stripe_checkout_key(state: &AppState) -> Option<&str> {
    state.settings.stripe_secret_key.as_ref()?;
    state.settings.stripe_publishable_key.as_deref()
}

async fn asset(state: State<AppState>, headers: HeaderMap, Path(path): Path<String>) -> Response {
    let file = format!("assets/{path}");
    match FILES.iter().find(|(name, _)| *name == file) {
        Some((name, _)) => serve(state, headers, name).await,
        None => crate::http::routes::system::not_found().await.into_response(),
    }
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    }
}

/// Whether a file is worth compressing (text, over a kilobyte).
fn compressible(file: &str, len: usize) -> bool {
    len > 1024 && !file.ends_with(".png")
}

/// Gzipped copies of the embedded files, each made on its first request and kept.
fn gzipped(file: &'static str, bytes: &'static [u8]) -> &'static [u8] {
    use std::io::Write;
    use std::sync::Mutex;
    static CACHE: OnceLock<Mutex<HashMap<&'static str, &'static [u8]>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(done) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(file) {
        return done;
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let compressed = encoder.write_all(bytes).and_then(|()| encoder.finish()).expect("gzip into memory");
    // Leaked once per file: the set of files is fixed and small.
    let compressed: &'static [u8] = Vec::leak(compressed);
    cache.lock().unwrap_or_else(|e| e.into_inner()).entry(file).or_insert(compressed)
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused =
                parts.any(|p| matches!(p.trim().replace(' ', "").as_str(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        })
    })
}

/// Validators of the embedded files, computed once.
fn etags() -> &'static HashMap<&'static str, HeaderValue> {
    static ETAGS: OnceLock<HashMap<&'static str, HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, bytes)| {
                let digest = Sha256::digest(bytes);
                let tag = format!("\"{}\"", digest[..12].iter().map(|b| format!("{b:02x}")).collect::<String>());
                (*name, HeaderValue::from_str(&tag).expect("hex is a header value"))
            })
            .collect()
    })
}

async fn serve(State(state): State<AppState>, headers: HeaderMap, file: &'static str) -> Response {
    let body: Vec<u8>;
    let mut response = if let Some(dir) = &state.settings.web_dir {
        match tokio::fs::read(dir.join(file)).await {
            Ok(bytes) => body = bytes,
            Err(e) => {
                tracing::warn!(file, error = %e, "web file missing from WEB_DIR");
                return crate::http::routes::system::not_found().await.into_response();
            }
        }
        let mut r = body.into_response();
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    } else {
        let bytes = FILES.iter().find(|(name, _)| *name == file).map(|(_, b)| *b).unwrap_or_default();
        let gzip = compressible(file, bytes.len()) && accepts_gzip(&headers);
        // Each encoding is its own representation, with its own validator.
        let etag = etags().get(file).map(|tag| {
            if gzip {
                let t = tag.to_str().expect("ascii");
                HeaderValue::from_str(&format!("{}-gz\"", &t[..t.len() - 1])).expect("ascii")
            } else {
                tag.clone()
            }
        });
        if let (Some(tag), Some(seen)) = (&etag, headers.get(header::IF_NONE_MATCH))
            && seen.as_bytes().split(|b| *b == b',').any(|t| t.trim_ascii() == tag.as_bytes())
        {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            r.headers_mut().insert(header::ETAG, tag.clone());
            return r;
        }
        let mut r = if gzip { gzipped(file, bytes).into_response() } else { bytes.into_response() };
        if gzip {
            r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if compressible(file, bytes.len()) {
            r.headers_mut().insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        if let Some(tag) = etag {
            r.headers_mut().insert(header::ETAG, tag);
        }
        // Revalidated on every use: a deploy shows at once, an unchanged file costs a 304.
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(file)));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if file.ends_with(".html") {
        h.insert(header::CONTENT_SECURITY_POLICY, csp(stripe_checkout_key(&state).is_some()));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert("permissions-policy", HeaderValue::from_static("camera=(self), microphone=(), geolocation=()"));
    }
    response
}

/// No inline script or style attribute, nothing from another origin; Stripe's
/// script, frames and API only when its checkout is on.
fn csp(stripe: bool) -> HeaderValue {
    let (script, frame, connect) = if stripe {
        (" https://js.stripe.com", "https://js.stripe.com https://hooks.stripe.com", " https://api.stripe.com")
    } else {
        ("", "'none'", "")
    };
    HeaderValue::from_str(&format!(
        "default-src 'self'; script-src 'self'{script}; style-src 'self'; img-src 'self' data: blob:; \
         connect-src 'self'{connect}; frame-src {frame}; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    ))
    .expect("the policy is ASCII")
}

#[cfg(test)]
mod tests {
    use super::{FILES, PAGES, csp};
    use std::path::Path;

    fn files_under(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("web dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                files_under(&path, root, out);
            } else {
                out.push(path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_of_web_is_embedded_and_every_page_exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut on_disk = vec![];
        files_under(&root, &root, &mut on_disk);
        on_disk.retain(|f| !f.ends_with("README.md"));
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(name, _)| (*name).to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "web/ and the embedded list in src/http/web.rs differ");
        for (route, file) in PAGES {
            assert!(FILES.iter().any(|(name, _)| name == file), "{route} serves {file}, which is not embedded");
        }
    }

    #[test]
    fn pages_have_no_inline_script_or_style_attribute() {
        for (name, bytes) in FILES.iter().filter(|(name, _)| name.ends_with(".html")) {
            let html = std::str::from_utf8(bytes).expect("utf-8");
            for (at, _) in html.match_indices("<script") {
                let tag = &html[at..at + html[at..].find('>').expect("tag closes")];
                assert!(tag.contains(" src="), "{name}: inline <script> (CSP forbids it): {tag}");
            }
            assert!(!html.contains(" style=\""), "{name}: style attribute (CSP forbids it)");
            assert!(!html.contains("<style"), "{name}: <style> element (CSP forbids it)");
            for (at, _) in html.match_indices(" on") {
                let name_end = html[at + 3..].find(|c: char| !c.is_ascii_lowercase()).map_or(0, |n| at + 3 + n);
                assert!(!html[name_end..].starts_with('='), "{name}: inline event handler at byte {at}");
            }
            assert!(!html.contains("javascript:"), "{name}: javascript: URL");
            assert!(html.contains("name=\"viewport\""), "{name}: no viewport meta (phones)");
            assert!(html.contains("<html lang="), "{name}: no document language");
        }
    }

    #[test]
    fn the_policy_allows_stripe_only_when_asked() {
        let plain = csp(false);
        let plain = plain.to_str().unwrap();
        assert!(plain.contains("script-src 'self';") && !plain.contains("stripe") && !plain.contains("unsafe"));
        let stripe = csp(true);
        assert!(stripe.to_str().unwrap().contains("script-src 'self' https://js.stripe.com;"));
    }
}
