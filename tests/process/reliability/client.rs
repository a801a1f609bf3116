//! The load the reliability tests generate: users with tokens, events, requests (purchases,
//! holds) and their outcomes, retried as a real client would.

use super::CLIENT_TIMEOUT;
use crate::JWT_SECRET;
use boxoffice::auth::Role;
use boxoffice::auth::tokens::TokenKeys;
use boxoffice_testkit::poll;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Clone)]
pub(super) struct User {
    pub(super) token: String,
}

/// `n` users of `role`, inserted directly, with access tokens the server accepts.
pub(super) async fn create_users(db: &PgPool, n: usize, role: Role) -> Vec<User> {
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO users (user_id, email, password_hash, name, user_type)
         SELECT id, 'reliability-' || id || '@example.com', 'not-a-password-hash', 'Reliability', $2
         FROM UNNEST($1::uuid[]) AS id",
    )
    .bind(&ids)
    .bind(role.as_str())
    .execute(db)
    .await
    .expect("insert users");
    let keys = TokenKeys::new(
        &SecretString::from(JWT_SECRET),
        "boxoffice",
        "boxoffice-api",
        Duration::from_secs(3600),
        Duration::from_secs(3600),
    );
    ids.into_iter().map(|id| User { token: keys.issue(id, role).expect("sign a token") }).collect()
}

pub(super) fn seated_map(rows: usize, per_row: usize) -> Value {
    let rows: Vec<Value> = (0..rows).map(|r| json!({"label": format!("R{r}"), "seats": per_row})).collect();
    json!({"tiers": [{"code": "A", "price": 7000}], "sections": [{"name": "Main", "tier": "A", "kind": "seated", "rows": rows}]})
}

pub(super) fn general_map(capacity: usize) -> Value {
    json!({"tiers": [{"code": "A", "price": 5000}],
           "sections": [{"name": "Floor", "tier": "A", "kind": "general", "capacity": capacity}]})
}

/// Creates and publishes an event; returns its id.
pub(super) async fn create_event(
    client: &reqwest::Client,
    base: &str,
    organizer: &User,
    seat_map: Value,
    window: Value,
) -> String {
    let r = client
        .post(format!("{base}/events/create"))
        .bearer_auth(&organizer.token)
        .json(&json!({"title": "Reliability", "venue_name": "Dome", "event_date": "2031-01-01T20:00:00Z",
                      "seat_map": seat_map, "sales_window": window}))
        .send()
        .await
        .expect("create event");
    assert_eq!(r.status(), StatusCode::CREATED, "create event: {}", r.text().await.unwrap_or_default());
    let event: Value = r.json().await.unwrap();
    let id = event["event_id"].as_str().expect("event_id").to_owned();
    let r = client.post(format!("{base}/events/{id}/publish")).bearer_auth(&organizer.token).send().await.unwrap();
    assert!(r.status().is_success(), "publish: {}", r.text().await.unwrap_or_default());
    id
}

pub(super) fn http_client(max_idle: usize) -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(max_idle).timeout(CLIENT_TIMEOUT).build().unwrap()
}

/// One request's outcome. `status: None` is a transport error (refused, reset, timed out).
#[derive(Clone, Debug)]
pub(super) struct Reply {
    pub(super) started: Instant,
    pub(super) latency: Duration,
    pub(super) status: Option<StatusCode>,
    /// The problem document's `code`, if any.
    pub(super) code: String,
    /// The Retry-After header, in seconds.
    pub(super) retry_after: Option<u64>,
    pub(super) problem_json: bool,
    pub(super) body: Value,
    pub(super) error: String,
    pub(super) connect_error: bool,
    pub(super) timed_out: bool,
}

impl Reply {
    pub(super) fn describe(&self) -> String {
        match self.status {
            Some(s) => format!("{s} {} after {:?}: {}", self.code, self.latency, truncate(&self.body.to_string())),
            None => format!("transport error after {:?}: {}", self.latency, self.error),
        }
    }

    pub(super) fn is(&self, status: StatusCode) -> bool {
        self.status == Some(status)
    }

    /// Worth retrying with the same Idempotency-Key: nothing definite came back.
    pub(super) fn retryable(&self) -> bool {
        match self.status {
            None => true,
            Some(StatusCode::SERVICE_UNAVAILABLE) => true,
            Some(StatusCode::CONFLICT) => self.code == "busy",
            _ => false,
        }
    }
}

pub(super) fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

pub(super) async fn send(request: reqwest::RequestBuilder) -> Reply {
    let started = Instant::now();
    let mut reply = Reply {
        started,
        latency: Duration::ZERO,
        status: None,
        code: String::new(),
        retry_after: None,
        problem_json: false,
        body: Value::Null,
        error: String::new(),
        connect_error: false,
        timed_out: false,
    };
    match request.send().await {
        Err(e) => {
            reply.connect_error = e.is_connect();
            reply.timed_out = e.is_timeout();
            reply.error = e.to_string();
        }
        Ok(response) => {
            let status = response.status();
            reply.retry_after =
                response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
            reply.problem_json = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/problem+json"));
            match response.bytes().await {
                Ok(bytes) => {
                    reply.status = Some(status);
                    reply.body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    reply.code = reply.body["code"].as_str().unwrap_or_default().to_owned();
                }
                Err(e) => {
                    reply.timed_out = e.is_timeout();
                    reply.error = format!("reading the body: {e}");
                }
            }
        }
    }
    reply.latency = started.elapsed();
    reply
}

/// Sends until the server gives a definite answer (anything but a transport error, 503 or
/// `busy`), with the same request — so the same Idempotency-Key — each time, backing off;
/// gives up at `deadline`. Returns the last reply and the number of retries.
pub(super) async fn until_answered(make: impl Fn() -> reqwest::RequestBuilder, deadline: Instant) -> (Reply, usize) {
    let mut backoff = Duration::from_millis(50);
    let mut retries = 0;
    loop {
        let reply = send(make()).await;
        if !reply.retryable() || Instant::now() >= deadline {
            return (reply, retries);
        }
        retries += 1;
        let jitter = Duration::from_millis(rand::random_range(0..50));
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

pub(super) fn purchase(
    client: &reqwest::Client,
    base: &str,
    buyer: &User,
    event: &str,
    key: &str,
) -> reqwest::RequestBuilder {
    let body = json!({"event_id": event, "quantity": 1, "payment_method": "pm_card_visa", "include_qr_image": false});
    keyed_post(client, format!("{base}/tickets/purchase"), buyer, key, body)
}

pub(super) fn hold(
    client: &reqwest::Client,
    base: &str,
    buyer: &User,
    event: &str,
    key: &str,
) -> reqwest::RequestBuilder {
    keyed_post(client, format!("{base}/events/{event}/holds"), buyer, key, json!({"quantity": 1}))
}

/// POST `body` to `url` as `buyer`, under the Idempotency-Key `key`.
fn keyed_post(client: &reqwest::Client, url: String, buyer: &User, key: &str, body: Value) -> reqwest::RequestBuilder {
    client.post(url).bearer_auth(&buyer.token).header("Idempotency-Key", key).json(&body)
}

/// A 201 from POST /tickets/purchase.
#[derive(Clone, Debug)]
pub(super) struct Sale {
    pub(super) order_id: Uuid,
    pub(super) amount: i64,
    /// (ticket id, seat)
    pub(super) tickets: Vec<(Uuid, Option<String>)>,
}

impl Sale {
    pub(super) fn from_body(body: &Value) -> Self {
        let uuid =
            |v: &Value| v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a uuid in {body}"));
        Sale {
            order_id: uuid(&body["order_id"]),
            amount: body["amount"].as_i64().expect("amount"),
            tickets: body["tickets"]
                .as_array()
                .expect("tickets")
                .iter()
                .map(|t| (uuid(&t["ticket_id"]), t["seat_number"].as_str().map(str::to_owned)))
                .collect(),
        }
    }
}

/// A 201 from POST /events/{id}/holds.
#[derive(Clone, Debug)]
pub(super) struct Held {
    pub(super) hold_id: Uuid,
    pub(super) seats: Vec<String>,
    pub(super) quantity: i64,
}

impl Held {
    pub(super) fn from_body(body: &Value) -> Self {
        Held {
            hold_id: body["hold_id"].as_str().and_then(|s| s.parse().ok()).expect("hold_id"),
            seats: body["seats"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            quantity: body["quantity"].as_i64().expect("quantity"),
        }
    }
}

/// Waits (bounded) until `sold` reaches `threshold`: the sale is under way.
pub(super) async fn wait_until_sold(sold: &AtomicUsize, threshold: usize) {
    let reached = || async {
        let now = sold.load(Ordering::Acquire);
        if now >= threshold { Ok(()) } else { Err(now) }
    };
    poll(Duration::from_secs(60), Duration::from_millis(2), reached)
        .await
        .unwrap_or_else(|now| panic!("sales stalled below {threshold} seats ({now} sold)"));
}
