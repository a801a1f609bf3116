//! `spawn_app` and the small vocabulary the tests are written in.

use boxoffice::{Application, Settings};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::HashMap;
use tokio::sync::oneshot;
use uuid::Uuid;

pub const TEST_JWT_SECRET: &str = "test-secret-that-is-at-least-32-bytes-long!!";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub db: PgPool,
    pub db_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A fresh, empty database; the name is returned as a URL.
pub async fn fresh_database() -> String {
    let admin = std::env::var("BOXOFFICE_TEST_DATABASE_URL").expect(
        "BOXOFFICE_TEST_DATABASE_URL is not set: run the tests with ./scripts/test.sh, which starts a private PostgreSQL",
    );
    let name = format!("test_{}", Uuid::new_v4().simple());
    let pool = PgPool::connect(&admin).await.expect("connect to the test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.expect("create database");
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_on(fresh_database().await, &[]).await
}

/// Starts the server on `db_url` with test settings, plus `extra` overrides.
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
    /// Graceful shutdown: drains actors and the journal.
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
        let email = format!("{}-{}@example.com", role, Uuid::new_v4().simple());
        let r = self
            .post(
                "/auth/register",
                None,
                json!({"email": email, "password": "correct horse battery", "name": "Test", "user_type": role}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "register {role}");
        let v: Value = r.json().await.unwrap();
        (
            v["user"]["user_id"].as_str().unwrap().parse().unwrap(),
            v["access_token"].as_str().unwrap().into(),
            v["refresh_token"].as_str().unwrap().into(),
        )
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

/// Asserts a problem document with `status` and `code`, and returns it.
pub async fn assert_problem(r: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(r.status(), status, "status for expected {code}");
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert_eq!(ct, "application/problem+json", "content type for {code}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "problem: {body}");
    assert_eq!(body["status"], status.as_u16());
    body
}
