//! A real browser for the web app's tests: Debian's Chromium driven headless through
//! ChromeDriver over the W3C WebDriver protocol (plain JSON over HTTP, so no client
//! crate). `./scripts/test.sh` installs both and exports `BOXOFFICE_TEST_CHROMEDRIVER`
//! and `BOXOFFICE_TEST_CHROMIUM`; without them a browser test fails saying so.
//!
//! One [`Driver`] (a ChromeDriver process) serves many [`Browser`] sessions, each with
//! its own profile: cookies and storage are not shared, like two people's browsers.

use crate::{free_port, required_env};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The W3C key for an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Keys for [`Element::send_keys`] and [`Browser::press`] (WebDriver's code points).
pub mod keys {
    pub const ENTER: &str = "\u{E007}";
    pub const SPACE: &str = "\u{E00D}";
    pub const TAB: &str = "\u{E004}";
    pub const LEFT: &str = "\u{E012}";
    pub const UP: &str = "\u{E013}";
    pub const RIGHT: &str = "\u{E014}";
    pub const DOWN: &str = "\u{E015}";
}

/// A ChromeDriver process on a free loopback port; killed on drop.
pub struct Driver {
    child: Child,
    url: String,
    chromium: String,
    http: reqwest::Client,
}

impl Driver {
    pub async fn start() -> Driver {
        let driver = required_env("BOXOFFICE_TEST_CHROMEDRIVER");
        let chromium = required_env("BOXOFFICE_TEST_CHROMIUM");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client");
        for _ in 0..3 {
            let port = free_port();
            // Its own process group, so dropping the driver also ends the browsers it
            // started, even those a failed test never closed.
            let child = Command::new(&driver)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {driver}: {e}"));
            let url = format!("http://127.0.0.1:{port}");
            let mut d = Driver { child, url, chromium: chromium.clone(), http: http.clone() };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(r) = d.http.get(format!("{}/status", d.url)).send().await
                    && r.status().is_success()
                {
                    return d;
                }
                if d.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            drop(d);
        }
        panic!("ChromeDriver ({driver}) did not start");
    }

    /// A new headless browser with an empty profile and a window of `width` × `height`.
    pub async fn browser(&self, width: u32, height: u32) -> Browser {
        let profile = crate::TempDir::new("chromium-profile");
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": self.chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
            "unhandledPromptBehavior": "accept",
        }}});
        let answer = call(&self.http, reqwest::Method::POST, &format!("{}/session", self.url), Some(caps)).await;
        let id = answer["sessionId"].as_str().expect("session id").to_owned();
        let b = Browser { http: self.http.clone(), session: format!("{}/session/{id}", self.url), _profile: profile };
        b.set_window(width, height).await;
        b
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: ChromeDriver and every Chromium process under it.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is touched.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(http: &reqwest::Client, method: reqwest::Method, url: &str, body: Option<Value>) -> Value {
    let mut request = http.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(&body);
    } else if method == reqwest::Method::POST {
        request = request.json(&json!({}));
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("WebDriver {method} {url}: {e}"));
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        panic!("WebDriver {method} {url} answered {status}: {}", value["value"]);
    }
    value.get("value").cloned().unwrap_or(Value::Null)
}

/// One browser session (closed on drop, best effort).
pub struct Browser {
    http: reqwest::Client,
    session: String,
    _profile: crate::TempDir,
}

/// An element of the page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Browser {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        call(&self.http, method, &format!("{}{path}", self.session), body).await
    }

    async fn try_cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value, Value> {
        let r = self.http.request(method, format!("{}{path}", self.session)).json(&body).send().await;
        let r = r.map_err(|e| json!({"error": e.to_string()}))?;
        let ok = r.status().is_success();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if ok { Ok(v["value"].clone()) } else { Err(v["value"].clone()) }
    }

    pub async fn set_window(&self, width: u32, height: u32) {
        self.cmd(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": height}))).await;
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// Runs an async script: it calls `arguments[arguments.length - 1](value)` when done.
    pub async fn eval_async(&self, script: &str, args: Value) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/async", Some(json!({"script": script, "args": args}))).await
    }

    /// The first element matching `css` now, if any.
    pub async fn find_now(&self, css: &str) -> Option<Element<'_>> {
        let v = self.try_cmd(reqwest::Method::POST, "/element", json!({"using": "css selector", "value": css})).await;
        v.ok().and_then(|v| v[ELEMENT].as_str().map(|id| Element { browser: self, id: id.to_owned() }))
    }

    /// Every element matching `css` now.
    pub async fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let v =
            self.cmd(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str())
                    .map(|id| Element { browser: self, id: id.to_owned() })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits (up to `patience`) for an element matching `css` that is displayed.
    pub async fn wait_for(&self, css: &str, patience: Duration) -> Element<'_> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(e) = self.find_now(css).await
                && e.displayed().await
            {
                return e;
            }
            if Instant::now() > deadline {
                let notice = self.text_of("#notice").await.unwrap_or_default();
                panic!("no visible `{css}` within {patience:?} at {} (notice: {notice:?})", self.url().await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `script` (a function body returning a value) returns something truthy; returns it.
    pub async fn wait_until(&self, what: &str, script: &str, args: Value, patience: Duration) -> Value {
        let deadline = Instant::now() + patience;
        loop {
            let v = self.eval(script, args.clone()).await;
            let truthy = !(v.is_null() || v == json!(false) || v == json!(0) || v == json!(""));
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let notice = self.text_of("#notice").await.unwrap_or_default();
                panic!("{what}: not within {patience:?} at {} (notice: {notice:?})", self.url().await);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The text of the first element matching `css`, if there is one.
    pub async fn text_of(&self, css: &str) -> Option<String> {
        match self.find_now(css).await {
            Some(e) => Some(e.text().await),
            None => None,
        }
    }

    /// Types keys into whatever has the focus.
    pub async fn press(&self, keys: &str) {
        let active = self.cmd(reqwest::Method::GET, "/element/active", None).await;
        let id = active[ELEMENT].as_str().expect("an element has the focus").to_owned();
        Element { browser: self, id }.send_keys(keys).await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD.decode(b64.as_str().expect("base64")).expect("png")
    }

    /// Console messages at SEVERE level since the last call (CSP violations and
    /// uncaught errors land here).
    pub async fn console_errors(&self) -> Vec<String> {
        let v = self.cmd(reqwest::Method::POST, "/se/log", Some(json!({"type": "browser"}))).await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter(|m| m["level"] == "SEVERE")
                    .filter_map(|m| m["message"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

impl Element<'_> {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.browser.cmd(method, &format!("/element/{}{path}", self.id), body).await
    }

    pub async fn click(&self) {
        self.cmd(reqwest::Method::POST, "/click", None).await;
    }

    pub async fn clear(&self) {
        self.cmd(reqwest::Method::POST, "/clear", None).await;
    }

    /// Types `text` into the element (focusing it), like a person would.
    pub async fn send_keys(&self, text: &str) {
        self.cmd(reqwest::Method::POST, "/value", Some(json!({ "text": text }))).await;
    }

    /// Clears the field, then types `text`.
    pub async fn fill(&self, text: &str) {
        self.clear().await;
        self.send_keys(text).await;
    }

    pub async fn text(&self) -> String {
        self.cmd(reqwest::Method::GET, "/text", None).await.as_str().unwrap_or_default().to_owned()
    }

    pub async fn attr(&self, name: &str) -> Option<String> {
        self.cmd(reqwest::Method::GET, &format!("/attribute/{name}"), None).await.as_str().map(str::to_owned)
    }

    pub async fn displayed(&self) -> bool {
        let url = format!("{}/element/{}/displayed", self.browser.session, self.id);
        match self.browser.http.get(url).send().await {
            Ok(r) if r.status().is_success() => r.json::<Value>().await.map(|v| v["value"] == true).unwrap_or(false),
            _ => false,
        }
    }
}
