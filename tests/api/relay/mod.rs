//! The outbox relay, notifications and the Redis cache of the library (no server) against a
//! real PostgreSQL and a real Redis. This file: the arrangements the tests share.
//!
//! Each test has a database of its own (`migrated_database`). Tests that stop Redis start
//! their own redis-server (BOXOFFICE_TEST_REDIS_SERVER); tests that never stop it use their
//! own server too when they can, else the shared BOXOFFICE_TEST_REDIS_URL, with a key prefix
//! of their own. `./scripts/test.sh` provides all three; a missing one fails the test.

mod cache;
mod notify;
mod outages;
mod publishing;
mod retention;
mod smtp;

use boxoffice::store::cache::RedisLink;
use boxoffice::workers::notify::{Email, MailError, MailFuture, Mailer, Notifier};
use boxoffice::workers::relay::{OutboxRelay, RelayConfig, stream_key};
use boxoffice_testkit::{RedisServer, buyer_and_published_event, required_env};
use redis::AsyncTypedCommands;
use redis::aio::MultiplexedConnection;
use secrecy::SecretString;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use uuid::Uuid;

/// How long `eventually` waits before failing the test. Generous: it only
/// bounds a failure, it never measures speed.
const PATIENCE: Duration = Duration::from_secs(30);

/// Redis for a test that never stops it: its own server when it can start
/// one, otherwise the shared BOXOFFICE_TEST_REDIS_URL. Either way the test's
/// keys carry a prefix of their own.
struct TestRedis {
    url: String,
    prefix: String,
    _server: Option<RedisServer>,
}

impl TestRedis {
    async fn new() -> Self {
        let prefix = format!("t{}:", Uuid::new_v4().simple());
        if std::env::var("BOXOFFICE_TEST_REDIS_SERVER").is_ok() {
            let server = RedisServer::start().await;
            return Self { url: server.url(), prefix, _server: Some(server) };
        }
        Self { url: required_env("BOXOFFICE_TEST_REDIS_URL"), prefix, _server: None }
    }
}

fn link(url: &str) -> RedisLink {
    RedisLink::open(&SecretString::from(url.to_owned())).expect("valid Redis URL")
}

async fn redis_conn(url: &str) -> MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.expect("connect to Redis")
}

/// Relay settings for tests: a per-test stream prefix, short pauses.
fn config(prefix: &str) -> RelayConfig {
    RelayConfig {
        idle_poll: Duration::from_millis(20),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        publish_timeout: Duration::from_secs(2),
        stream_prefix: prefix.to_owned(),
        ..RelayConfig::default()
    }
}

/// Captures emails instead of sending them; can be told to fail.
#[derive(Default)]
struct CaptureMailer {
    sent: Mutex<Vec<Email>>,
    /// The next this-many sends fail as if the mail server were down.
    outages: Mutex<usize>,
    /// Recipients the "server" refuses for good.
    refused: Mutex<HashSet<String>>,
}

impl CaptureMailer {
    fn sent(&self) -> Vec<Email> {
        self.sent.lock().unwrap().clone()
    }
}

impl Mailer for CaptureMailer {
    fn send<'a>(&'a self, email: &'a Email) -> MailFuture<'a> {
        let result = {
            let mut outages = self.outages.lock().unwrap();
            if *outages > 0 {
                *outages -= 1;
                Err(MailError::Unavailable("connection refused".into()))
            } else if self.refused.lock().unwrap().contains(&email.to) {
                Err(MailError::Rejected("550 no such user".into()))
            } else {
                self.sent.lock().unwrap().push(email.clone());
                Ok(())
            }
        };
        Box::pin(async move { result })
    }

    fn name(&self) -> &'static str {
        "capture"
    }
}

fn capture() -> (Arc<CaptureMailer>, Notifier) {
    let mailer = Arc::new(CaptureMailer::default());
    (Arc::clone(&mailer), Notifier::new(mailer.clone()))
}

/// Adds an outbox row the way the service does; returns its id.
async fn outbox_row(pool: &PgPool, topic: &str, aggregate: Uuid, payload: serde_json::Value) -> i64 {
    sqlx::query_scalar("INSERT INTO outbox (topic, aggregate_id, payload) VALUES ($1, $2, $3) RETURNING id")
        .bind(topic)
        .bind(aggregate)
        .bind(payload)
        .fetch_one(pool)
        .await
        .expect("insert outbox row")
}

/// `n` rows of assorted topics that send no email.
async fn plain_rows(pool: &PgPool, n: usize) -> Vec<i64> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let aggregate = Uuid::now_v7();
        ids.push(outbox_row(pool, PLAIN_TOPICS[i % PLAIN_TOPICS.len()], aggregate, serde_json::json!({"n": i})).await);
    }
    ids
}

async fn unpublished(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetch_one(pool).await.unwrap()
}

/// Every entry of one stream, as field maps.
async fn stream(conn: &mut MultiplexedConnection, key: &str) -> Vec<HashMap<String, String>> {
    let reply = conn.xrange_all(key).await.expect("XRANGE");
    reply
        .ids
        .into_iter()
        .map(|entry| {
            entry
                .map
                .into_iter()
                .map(|(k, v)| (k, redis::from_redis_value::<String>(v).expect("string field")))
                .collect()
        })
        .collect()
}

/// The outbox ids found in the streams of `topics` (duplicates kept).
async fn streamed_ids(conn: &mut MultiplexedConnection, prefix: &str, topics: &[&str]) -> Vec<i64> {
    let mut ids = Vec::new();
    for topic in topics {
        for entry in stream(conn, &stream_key(prefix, topic)).await {
            ids.push(entry["outbox_id"].parse().unwrap());
        }
    }
    ids.sort_unstable();
    ids
}

const PLAIN_TOPICS: [&str; 4] = ["event:created", "hold:created", "hold:released", "ticket:used"];

/// Runs `relay` in the background; the sender stops it.
fn spawn(relay: OutboxRelay) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));
    (stop, task)
}

/// A buyer with a purchased hold of two tickets for "Rock Night".
struct Buyer {
    email: String,
    hold: Uuid,
    tickets: [Uuid; 2],
}

impl Buyer {
    async fn new(pool: &PgPool, email: &str) -> Self {
        let (buyer, event) = buyer_and_published_event(pool, email, "Carol").await;
        let hold = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO holds (hold_id, event_id, buyer_id, items, quantity, amount, status, fingerprint,
                                created_at, expires_at, updated_at)
             VALUES ($1, $2, $3, '{\"kind\": \"seats\", \"seats\": [\"A-1\", \"A-2\"]}', 2, 10000, 'purchased', 0,
                     now(), now() + interval '10 minutes', now())",
        )
        .bind(hold)
        .bind(event)
        .bind(buyer)
        .execute(pool)
        .await
        .unwrap();
        let tickets = [Uuid::now_v7(), Uuid::now_v7()];
        for (id, seat) in tickets.iter().zip(["A-1", "A-2"]) {
            sqlx::query(
                "INSERT INTO tickets (ticket_id, event_id, hold_id, purchaser_id, section, seat_number, price, purchase_date)
                 VALUES ($1, $2, $3, $4, 'A', $5, 5000, now())",
            )
            .bind(id)
            .bind(event)
            .bind(hold)
            .bind(buyer)
            .bind(seat)
            .execute(pool)
            .await
            .unwrap();
        }
        Self { email: email.to_owned(), hold, tickets }
    }

    fn issued_payload(&self) -> serde_json::Value {
        serde_json::json!({"type": "hold_purchased", "hold": self.hold, "event_id": Uuid::nil()})
    }
}
