//! The server in-process (`spawn_app`) and the small vocabulary HTTP tests are written in.

use crate::fresh_database;
use boxoffice::{Application, Settings};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::HashMap;
use tokio::sync::oneshot;
use uuid::Uuid;

/// The `JWT_SECRET` of every in-process server: tests sign their own tokens with it.
pub const TEST_JWT_SECRET: &str = "test-secret-that-is-at-least-32-bytes-long!!";

/// The password of every account the harness registers.
pub const TEST_PASSWORD: &str = "correct horse battery";

/// An account registered by [`TestApp::register`].
pub struct Registered {
    pub id: Uuid,
    pub access_token: String,
    pub refresh_token: String,
    pub email: String,
}

/// A server running in the test's runtime on a random loopback port.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub client: reqwest::Client,
    /// A pool on the server's database, for checks and set-up.
    pub db: PgPool,
    pub db_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The server with test settings on a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_on(fresh_database().await, &[]).await
}

/// Starts the server on `db_url` with test settings, plus `extra` settings (which win).
pub async fn spawn_app_on(db_url: String, extra: &[(&str, &str)]) -> TestApp {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), db_url.clone()),
        ("BIND".into(), "127.0.0.1:0".into()),
        ("JWT_SECRET".into(), TEST_JWT_SECRET.into()),
        ("COOKIE_SECURE".into(), "false".into()),
        ("AUTH_RATE_LIMIT_PER_MINUTE".into(), "1000".into()),
        ("DATABASE_MAX_CONNECTIONS".into(), "10".into()),
    ]);
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    let settings = Settings::from_lookup(&|k| vars.get(k).cloned()).expect("valid test settings");
    let app = Application::build(settings).await.expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let db = PgPool::connect(&db_url).await.expect("test pool");
    let client = reqwest::Client::builder().build().unwrap();
    TestApp { base, client, db, db_url, shutdown: Some(tx), task: Some(task) }
}

impl TestApp {
    /// Graceful shutdown: drains actors and the journal. Returns the database URL, to start
    /// the server again on the same data.
    pub async fn stop(mut self) -> String {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("clean shutdown");
        }
        self.db_url.clone()
    }

    pub async fn request(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::POST, path, token, Some(body)).await
    }

    /// Registers a user of `role` and returns (user id, access token, refresh token).
    pub async fn user(&self, role: &str) -> (Uuid, String, String) {
        self.user_named(role, "Test").await
    }

    /// Registers a user of `role` called `name`: (user id, access token, refresh token).
    pub async fn user_named(&self, role: &str, name: &str) -> (Uuid, String, String) {
        let account = self.register(role, name).await;
        (account.id, account.access_token, account.refresh_token)
    }

    /// Registers a user of `role` called `name` with [`TEST_PASSWORD`] and a fresh email.
    pub async fn register(&self, role: &str, name: &str) -> Registered {
        let email = format!("{}-{}@example.com", role, Uuid::new_v4().simple());
        let r = self
            .post(
                "/auth/register",
                None,
                json!({"email": email, "password": TEST_PASSWORD, "name": name, "user_type": role}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "register {role}");
        let v: Value = r.json().await.unwrap();
        Registered {
            id: v["user"]["user_id"].as_str().unwrap().parse().unwrap(),
            access_token: v["access_token"].as_str().unwrap().into(),
            refresh_token: v["refresh_token"].as_str().unwrap().into(),
            email,
        }
    }

    /// An administrator, signed in: (user id, access token). Registered as a customer and
    /// promoted in SQL, since the API makes no administrators.
    pub async fn admin(&self) -> (Uuid, String) {
        let (id, _, _) = self.user("customer").await;
        sqlx::query("UPDATE users SET user_type = 'admin' WHERE user_id = $1")
            .bind(id)
            .execute(&self.db)
            .await
            .expect("promote to admin");
        let email: String = sqlx::query_scalar("SELECT email FROM users WHERE user_id = $1")
            .bind(id)
            .fetch_one(&self.db)
            .await
            .expect("admin email");
        let r = self.post("/auth/login", None, json!({"email": email, "password": TEST_PASSWORD})).await;
        assert_eq!(r.status(), StatusCode::OK, "admin login");
        (id, r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().into())
    }

    /// A published event with `map` (default: [`small_map`]) on sale now.
    pub async fn published_event(&self, organizer: &str, map: Option<Value>, window: Option<Value>) -> Uuid {
        let r = self
            .post(
                "/events/create",
                Some(organizer),
                json!({
                    "title": "Test concert", "venue_name": "Hall", "event_date": "2030-01-01T19:00:00Z",
                    "category": "music", "seat_map": map.unwrap_or_else(small_map),
                    "sales_window": window.unwrap_or_else(|| json!({"per_buyer_limit": 10}))
                }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "create event: {}", r.text().await.unwrap());
        let id: Uuid = r.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().parse().unwrap();
        let r = self.post(&format!("/events/{id}/publish"), Some(organizer), json!({})).await;
        assert_eq!(r.status(), StatusCode::OK, "publish");
        id
    }

    /// `staff` (a user with the staff role) may scan `event`, assigned by its `organizer`.
    pub async fn assign_staff(&self, organizer: &str, event: Uuid, staff: Uuid) {
        let r = self.post(&format!("/events/{event}/staff"), Some(organizer), json!({"staff_id": staff})).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "assign staff: {}", r.text().await.unwrap());
    }

    /// `buyer` buys `seats` of `event` in one purchase (test provider's good card, no images):
    /// the purchase answer.
    pub async fn buy_seats(&self, buyer: &str, event: Uuid, seats: &[&str]) -> Value {
        let body =
            json!({"event_id": event, "seats": seats, "payment_method": "pm_card_visa", "include_qr_image": false});
        let r = self.post("/tickets/purchase", Some(buyer), body).await;
        assert_eq!(r.status(), StatusCode::CREATED, "purchase: {}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// `buyer` buys `seat` of `event` in one shot with the test provider's good card;
    /// the purchase answer (tickets with their QR tokens).
    pub async fn buy(&self, buyer: &str, event: Uuid, seat: &str) -> Value {
        let body = json!({"event_id": event, "seat_number": seat, "payment_method": "pm_card_visa"});
        let r = self.post("/tickets/purchase", Some(buyer), body).await;
        assert_eq!(r.status(), StatusCode::CREATED, "purchase: {}", r.text().await.unwrap());
        r.json().await.unwrap()
    }
}

/// Two seated rows of 10 (tier S) and 20 standing places (tier A).
pub fn small_map() -> Value {
    json!({
        "tiers": [{"code": "S", "price": 12000}, {"code": "A", "price": 5000}],
        "sections": [
            {"name": "Floor", "tier": "S", "kind": "seated", "rows": [{"label": "A", "seats": 10}, {"label": "B", "seats": 10}]},
            {"name": "Standing", "tier": "A", "kind": "general", "capacity": 20}
        ]
    })
}

/// `Err(description)` unless `r` has one of `status` and is a problem document
/// (`application/problem+json` whose `status` is the HTTP status and whose `code` is a
/// string) with `code`, when given. The problem document otherwise.
pub async fn problem(r: Response, status: &[StatusCode], code: Option<&str>) -> Result<Value, String> {
    let got = r.status();
    let url = r.url().path().to_owned();
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let text = r.text().await.unwrap_or_default();
    if !status.contains(&got) {
        return Err(format!("{url}: status {got} (wanted {status:?}): {text:.300}"));
    }
    if ct != "application/problem+json" {
        return Err(format!("{url}: {got} with content type {ct:?}, not application/problem+json: {text:.200}"));
    }
    let body: Value =
        serde_json::from_str(&text).map_err(|e| format!("{url}: problem is not JSON ({e}): {text:.200}"))?;
    if body["status"] != got.as_u16() || !body["code"].is_string() {
        return Err(format!("{url}: malformed problem document {body}"));
    }
    if let Some(code) = code
        && body["code"] != code
    {
        return Err(format!("{url}: code {} (wanted {code})", body["code"]));
    }
    Ok(body)
}

/// Asserts a problem document with `status` and `code`, and returns it.
pub async fn assert_problem(r: Response, status: StatusCode, code: &str) -> Value {
    problem(r, &[status], Some(code)).await.unwrap_or_else(|e| panic!("expected a {status} {code} problem: {e}"))
}
