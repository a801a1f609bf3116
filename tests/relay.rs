//! The outbox relay, notifications and the Redis cache against a real
//! PostgreSQL and a real Redis.
//!
//! Needs BOXOFFICE_TEST_DATABASE_URL (an admin URL to the `postgres` database;
//! each test creates its own database) and BOXOFFICE_TEST_REDIS_SERVER (the
//! `redis-server` binary: tests start their own server on a free port, so they
//! can stop and restart it). Tests that never stop Redis fall back to
//! BOXOFFICE_TEST_REDIS_URL, with a key prefix of their own. `./scripts/test.sh`
//! provides all three. A missing variable fails the test; nothing is skipped.

use boxoffice::cache::{Cache, RedisLink};
use boxoffice::notify::{Email, MailError, MailFuture, Mailer, Notifier};
use boxoffice::relay::{OutboxRelay, RelayConfig, stream_key};
use redis::AsyncTypedCommands;
use redis::aio::MultiplexedConnection;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use uuid::Uuid;

/// How long `eventually` waits before failing the test. Generous: it only
/// bounds a failure, it never measures speed.
const PATIENCE: Duration = Duration::from_secs(30);

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with ./scripts/test.sh, which provides PostgreSQL and Redis")
    })
}

/// A fresh, migrated database of its own.
async fn fresh_pool() -> PgPool {
    let admin_url = required_env("BOXOFFICE_TEST_DATABASE_URL");
    let name = format!("test_{}", Uuid::new_v4().simple());
    let admin = PgPool::connect(&admin_url).await.expect("connect to the test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.expect("create database");
    admin.close().await;
    let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
    let pool = PgPool::connect(&format!("{base}/{name}")).await.expect("connect to the test database");
    boxoffice::db::migrator().run(&pool).await.expect("migrate");
    pool
}

/// A redis-server of this test's own, on a free loopback port, without persistence.
struct RedisServer {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    async fn start() -> Self {
        let bin = PathBuf::from(required_env("BOXOFFICE_TEST_REDIS_SERVER"));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = Self { bin, port, child: None };
        server.restart().await;
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port and waits until it answers.
    async fn restart(&mut self) {
        self.stop();
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let url = self.url();
        eventually("redis-server answers", || async {
            let Ok(client) = redis::Client::open(url.as_str()) else { return false };
            match client.get_multiplexed_async_connection().await {
                Ok(mut c) => c.ping().await.is_ok(),
                Err(_) => false,
            }
        })
        .await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

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

/// Polls `check` until it holds; fails the test after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    const TOPICS: [&str; 4] = ["event:created", "hold:created", "hold:released", "ticket:used"];
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let aggregate = Uuid::now_v7();
        ids.push(outbox_row(pool, TOPICS[i % TOPICS.len()], aggregate, serde_json::json!({"n": i})).await);
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

#[tokio::test]
async fn relay_publishes_each_row_to_its_topic_stream_and_marks_it() {
    let pool = fresh_pool().await;
    let redis = TestRedis::new().await;
    let aggregate = Uuid::now_v7();
    let payload = serde_json::json!({"type": "hold_released", "hold": aggregate, "at": 1, "event_id": Uuid::nil()});
    let released = outbox_row(&pool, "hold:released", aggregate, payload.clone()).await;
    let created = outbox_row(&pool, "event:created", Uuid::now_v7(), serde_json::json!({"event_id": 1})).await;

    let (_, notifier) = capture();
    let mut relay =
        OutboxRelay::new(pool.clone(), Some(&link(&redis.url)), notifier).with_config(config(&redis.prefix));
    let pass = relay.relay_once().await.expect("a pass");

    assert_eq!((pass.fetched, pass.published), (2, 2));
    assert_eq!(unpublished(&pool).await, 0);
    let mut conn = redis_conn(&redis.url).await;
    let entries = stream(&mut conn, &format!("{}hold:released", redis.prefix)).await;
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e["outbox_id"], released.to_string());
    assert_eq!(e["topic"], "hold:released");
    assert_eq!(e["aggregate_id"], aggregate.to_string());
    assert_eq!(serde_json::from_str::<serde_json::Value>(&e["payload"]).unwrap(), payload);
    assert!(
        chrono::DateTime::parse_from_rfc3339(&e["created_at"]).is_ok(),
        "created_at is RFC 3339: {}",
        e["created_at"]
    );
    let events = stream(&mut conn, &format!("{}event:created", redis.prefix)).await;
    assert_eq!(events.iter().map(|e| e["outbox_id"].clone()).collect::<Vec<_>>(), vec![created.to_string()]);

    // Caught up: the next pass finds nothing.
    assert_eq!(relay.relay_once().await.unwrap().fetched, 0);
}

#[tokio::test]
async fn a_restarted_relay_republishes_nothing_already_marked() {
    let pool = fresh_pool().await;
    let redis = TestRedis::new().await;
    let first = plain_rows(&pool, 40).await;
    let (_, notifier) = capture();
    let relay =
        OutboxRelay::new(pool.clone(), Some(&link(&redis.url)), notifier.clone()).with_config(config(&redis.prefix));
    let (stop, task) = spawn(relay);
    eventually("the first rows are published", || async { unpublished(&pool).await == 0 }).await;
    // Like a crash: the task is gone, whatever it was doing.
    task.abort();
    let _ = task.await;
    drop(stop);

    let second = plain_rows(&pool, 10).await;
    let mut restarted =
        OutboxRelay::new(pool.clone(), Some(&link(&redis.url)), notifier).with_config(config(&redis.prefix));
    while restarted.relay_once().await.expect("a pass").fetched > 0 {}

    let mut conn = redis_conn(&redis.url).await;
    let streamed = streamed_ids(&mut conn, &redis.prefix, &PLAIN_TOPICS).await;
    let mut expected: Vec<i64> = first.into_iter().chain(second).collect();
    expected.sort_unstable();
    assert_eq!(streamed, expected, "every row exactly once");
    assert_eq!(unpublished(&pool).await, 0);
}

#[tokio::test]
async fn rows_left_unmarked_by_a_failure_are_published_again_under_the_same_outbox_id() {
    let pool = fresh_pool().await;
    let redis = TestRedis::new().await;
    let buyer = Buyer::new(&pool, "carol@example.com").await;
    let before = outbox_row(&pool, "hold:created", buyer.hold, serde_json::json!({})).await;
    let issued = outbox_row(&pool, "ticket:issued", buyer.hold, buyer.issued_payload()).await;
    let after = outbox_row(&pool, "hold:released", Uuid::now_v7(), serde_json::json!({})).await;
    let (mailer, notifier) = capture();
    *mailer.outages.lock().unwrap() = 1;
    let mut relay =
        OutboxRelay::new(pool.clone(), Some(&link(&redis.url)), notifier).with_config(config(&redis.prefix));

    // The mail server is down at the second row: the first is done, the rest wait.
    let err = relay.relay_once().await.expect_err("the mail outage is reported");
    assert_eq!(err.sink(), "mail");
    assert_eq!(unpublished(&pool).await, 2);
    assert!(mailer.sent().is_empty());

    let pass = relay.relay_once().await.expect("the retry goes through");
    assert_eq!((pass.fetched, pass.published), (2, 2));
    assert_eq!(unpublished(&pool).await, 0);

    // The stream saw the unmarked rows twice, under the same ids; people saw one email.
    let mut conn = redis_conn(&redis.url).await;
    let streamed = streamed_ids(&mut conn, &redis.prefix, &["hold:created", "ticket:issued", "hold:released"]).await;
    assert_eq!(streamed, vec![before, issued, issued, after, after]);
    let distinct: HashSet<i64> = streamed.into_iter().collect();
    assert_eq!(distinct, HashSet::from([before, issued, after]), "consumers dedupe on outbox_id");
    assert_eq!(mailer.sent().iter().map(|e| e.outbox_id).collect::<Vec<_>>(), vec![issued]);
}

#[tokio::test]
async fn relay_keeps_running_through_a_redis_outage_and_drains_the_backlog_after() {
    let pool = fresh_pool().await;
    let mut server = RedisServer::start().await;
    let prefix = "boxoffice:";
    let (_, notifier) = capture();
    let relay = OutboxRelay::new(pool.clone(), Some(&link(&server.url())), notifier).with_config(config(prefix));
    let (stop, task) = spawn(relay);

    plain_rows(&pool, 20).await;
    eventually("rows are published while Redis is up", || async { unpublished(&pool).await == 0 }).await;

    server.stop();
    let backlog = plain_rows(&pool, 30).await;
    // Long enough for several failed passes and backoffs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(unpublished(&pool).await, 30, "nothing is marked while Redis is down");
    assert!(!task.is_finished(), "the relay keeps running");

    server.restart().await;
    eventually("the backlog drains once Redis is back", || async { unpublished(&pool).await == 0 }).await;
    // The restarted server kept nothing from before (no persistence): exactly the backlog.
    let mut conn = redis_conn(&server.url()).await;
    assert_eq!(streamed_ids(&mut conn, prefix, &PLAIN_TOPICS).await, backlog);

    stop.send(()).unwrap();
    task.await.expect("the relay stops cleanly, without a panic");
}

#[tokio::test]
async fn two_relays_never_publish_the_same_row() {
    const ROWS: i64 = 2000;
    let pool = fresh_pool().await;
    let redis = TestRedis::new().await;
    sqlx::query(
        "INSERT INTO outbox (topic, aggregate_id, payload)
         SELECT (ARRAY['event:created', 'hold:created', 'hold:released', 'ticket:used'])[1 + n % 4],
                gen_random_uuid(), jsonb_build_object('n', n)
         FROM generate_series(1, $1) AS n",
    )
    .bind(ROWS)
    .execute(&pool)
    .await
    .unwrap();
    let small_batches = RelayConfig { batch_size: 50, ..config(&redis.prefix) };
    let relays: Vec<_> = (0..2)
        .map(|_| {
            let (_, notifier) = capture();
            spawn(OutboxRelay::new(pool.clone(), Some(&link(&redis.url)), notifier).with_config(small_batches.clone()))
        })
        .collect();

    eventually("both relays drain the outbox", || async { unpublished(&pool).await == 0 }).await;
    for (stop, task) in relays {
        stop.send(()).unwrap();
        task.await.unwrap();
    }

    let mut conn = redis_conn(&redis.url).await;
    let mut entries = 0;
    for topic in PLAIN_TOPICS {
        entries += conn.xlen(stream_key(&redis.prefix, topic)).await.unwrap();
    }
    assert_eq!(entries as i64, ROWS, "one stream entry per row");
    let distinct: HashSet<i64> = streamed_ids(&mut conn, &redis.prefix, &PLAIN_TOPICS).await.into_iter().collect();
    assert_eq!(distinct.len() as i64, ROWS);
}

/// A buyer with a purchased hold of two tickets for "Rock Night".
struct Buyer {
    email: String,
    hold: Uuid,
    tickets: [Uuid; 2],
}

impl Buyer {
    async fn new(pool: &PgPool, email: &str) -> Self {
        let organizer = Uuid::now_v7();
        let buyer = Uuid::now_v7();
        for (id, mail, name, role) in [
            (organizer, format!("org-{organizer}@example.com"), "Org", "organizer"),
            (buyer, email.to_owned(), "Carol", "customer"),
        ] {
            sqlx::query(
                "INSERT INTO users (user_id, email, password_hash, name, user_type) VALUES ($1, $2, 'x', $3, $4)",
            )
            .bind(id)
            .bind(mail)
            .bind(name)
            .bind(role)
            .execute(pool)
            .await
            .unwrap();
        }
        let event = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO events (event_id, organizer_id, title, venue_name, event_date, currency, status)
             VALUES ($1, $2, 'Rock Night', 'Budokan', '2027-01-15 19:00:00+00', 'JPY', 'published')",
        )
        .bind(event)
        .bind(organizer)
        .execute(pool)
        .await
        .unwrap();
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

#[tokio::test]
async fn without_redis_rows_are_still_notified_and_then_marked() {
    let pool = fresh_pool().await;
    let buyer = Buyer::new(&pool, "carol@example.com").await;
    let issued = outbox_row(&pool, "ticket:issued", buyer.hold, buyer.issued_payload()).await;
    outbox_row(&pool, "payment:created", buyer.hold, buyer.issued_payload()).await;
    let cancelled = outbox_row(
        &pool,
        "ticket:cancelled",
        buyer.hold,
        serde_json::json!({"type": "tickets_cancelled", "hold": buyer.hold, "tickets": [buyer.tickets[1]], "at": 0}),
    )
    .await;
    let refund = |status: &str| serde_json::json!({"hold_id": buyer.hold, "ticket_id": buyer.tickets[1], "amount": 5000, "status": status});
    outbox_row(&pool, "payment:refunded", buyer.hold, refund("pending")).await;
    let refunded = outbox_row(&pool, "payment:refunded", buyer.hold, refund("succeeded")).await;
    // A row whose hold does not exist: no email, and it does not block the others.
    outbox_row(&pool, "ticket:issued", Uuid::now_v7(), serde_json::json!({})).await;

    let (mailer, notifier) = capture();
    let mut relay = OutboxRelay::new(pool.clone(), None, notifier.with_public_url("https://tickets.example.com"))
        .with_config(config("unused:"));
    let pass = relay.relay_once().await.expect("a pass");

    assert_eq!((pass.fetched, pass.published), (6, 6));
    assert_eq!(unpublished(&pool).await, 0, "published means: handed to every configured sink");
    let sent = mailer.sent();
    assert_eq!(sent.iter().map(|e| e.outbox_id).collect::<Vec<_>>(), vec![issued, cancelled, refunded]);
    assert!(sent.iter().all(|e| e.to == buyer.email && e.to_name == "Carol"));

    let tickets = &sent[0];
    assert_eq!(tickets.subject, "Your tickets for Rock Night");
    for (id, seat) in buyer.tickets.iter().zip(["A-1", "A-2"]) {
        assert!(tickets.body.contains(&format!("seat {seat}")), "{}", tickets.body);
        assert!(tickets.body.contains(&format!("https://tickets.example.com/tickets/{id}/qr")), "{}", tickets.body);
    }
    assert!(tickets.body.contains("Budokan") && tickets.body.contains("2027-01-15 19:00 UTC"), "{}", tickets.body);

    assert_eq!(sent[1].subject, "Ticket cancelled: Rock Night");
    assert!(
        sent[1].body.contains(&buyer.tickets[1].to_string()) && !sent[1].body.contains(&buyer.tickets[0].to_string())
    );
    assert_eq!(sent[2].subject, "Refund issued: Rock Night");
    assert!(sent[2].body.contains("5000 JPY"), "{}", sent[2].body);
}

#[tokio::test]
async fn an_email_refused_for_good_does_not_block_the_rows_after_it() {
    let pool = fresh_pool().await;
    let refused = Buyer::new(&pool, "gone@example.com").await;
    let fine = Buyer::new(&pool, "dave@example.com").await;
    outbox_row(&pool, "ticket:issued", refused.hold, refused.issued_payload()).await;
    let ok = outbox_row(&pool, "ticket:issued", fine.hold, fine.issued_payload()).await;
    let (mailer, notifier) = capture();
    mailer.refused.lock().unwrap().insert(refused.email.clone());
    let mut relay = OutboxRelay::new(pool.clone(), None, notifier).with_config(config("unused:"));

    let pass = relay.relay_once().await.expect("a refusal is not an outage");

    assert_eq!(pass.published, 2);
    assert_eq!(mailer.sent().iter().map(|e| e.outbox_id).collect::<Vec<_>>(), vec![ok]);
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Listing {
    title: String,
    seats: u32,
}

#[tokio::test]
async fn cache_round_trips_json_and_invalidates_keys_and_namespaces() {
    let redis = TestRedis::new().await;
    let cache =
        Cache::new(Some(&link(&redis.url))).with_prefix(redis.prefix.clone()).with_timeout(Duration::from_secs(2));
    assert!(cache.is_enabled());
    let listing = Listing { title: "Rock Night".into(), seats: 200 };

    cache.set_json("event:1", &listing, Duration::from_secs(60)).await;
    assert_eq!(cache.get_json::<Listing>("event:1").await, Some(listing));
    assert_eq!(cache.get_json::<Listing>("event:2").await, None);
    // A value of another shape is a miss, not an error.
    assert_eq!(cache.get_json::<Vec<u8>>("event:1").await, None);
    cache.invalidate(&["event:1"]).await;
    assert_eq!(cache.get_json::<Listing>("event:1").await, None);

    // Values expire with their TTL.
    cache.set_json("short", &1u32, Duration::from_millis(50)).await;
    eventually("the value expires", || async { cache.get_json::<u32>("short").await.is_none() }).await;

    // A namespace: one increment hides every key handed out before it.
    let page1 = cache.namespace_key("search", "page=1").await.expect("Redis is up");
    cache.set_json(&page1, &vec![1, 2, 3], Duration::from_secs(60)).await;
    assert_eq!(cache.namespace_key("search", "page=1").await.as_deref(), Some(page1.as_str()));
    assert_eq!(cache.get_json::<Vec<u32>>(&page1).await, Some(vec![1, 2, 3]));
    cache.invalidate_prefix("search").await;
    let page1_now = cache.namespace_key("search", "page=1").await.unwrap();
    assert_ne!(page1_now, page1);
    assert_eq!(cache.get_json::<Vec<u32>>(&page1_now).await, None);
    let mut conn = redis_conn(&redis.url).await;
    assert_eq!(conn.get(format!("{}v:search", redis.prefix)).await.unwrap().as_deref(), Some("1"));

    // A fixed window counts hits; another key has its own count.
    let window = Duration::from_secs(3600);
    assert_eq!(cache.incr_window("login:1.2.3.4", window).await, Some(1));
    assert_eq!(cache.incr_window("login:1.2.3.4", window).await, Some(2));
    assert_eq!(cache.incr_window("login:5.6.7.8", window).await, Some(1));
}

#[tokio::test]
async fn cache_misses_and_ignores_writes_while_redis_is_down_then_recovers() {
    let mut server = RedisServer::start().await;
    let cache = Cache::new(Some(&link(&server.url())));
    cache.set_json("k", &"v", Duration::from_secs(60)).await;
    eventually("the cache works while Redis is up", || async {
        cache.set_json("k", &"v", Duration::from_secs(60)).await;
        cache.get_json::<String>("k").await.as_deref() == Some("v")
    })
    .await;

    server.stop();
    for _ in 0..20 {
        assert_eq!(cache.get_json::<String>("k").await, None);
        cache.set_json("k", &"w", Duration::from_secs(60)).await;
        cache.invalidate(&["k"]).await;
        assert_eq!(cache.namespace_key("search", "page=1").await, None, "no version: skip the cache");
        cache.invalidate_prefix("search").await;
        assert_eq!(cache.incr_window("login", Duration::from_secs(60)).await, None);
    }

    server.restart().await;
    eventually("the cache reconnects by itself", || async {
        cache.set_json("k", &"x", Duration::from_secs(60)).await;
        cache.get_json::<String>("k").await.as_deref() == Some("x")
    })
    .await;
}

#[tokio::test]
async fn a_relay_started_while_redis_is_down_waits_for_it() {
    let pool = fresh_pool().await;
    let mut server = RedisServer::start().await;
    server.stop();
    let rows = plain_rows(&pool, 5).await;
    let (_, notifier) = capture();
    let (stop, task) =
        spawn(OutboxRelay::new(pool.clone(), Some(&link(&server.url())), notifier).with_config(config("b:")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(unpublished(&pool).await, 5);

    server.restart().await;
    eventually("the rows are published once Redis is up", || async { unpublished(&pool).await == 0 }).await;
    let mut conn = redis_conn(&server.url()).await;
    assert_eq!(streamed_ids(&mut conn, "b:", &PLAIN_TOPICS).await, rows);
    stop.send(()).unwrap();
    task.await.unwrap();
}

/// Just enough of an SMTP server for lettre: accepts everything except
/// recipients at `gone@`, and keeps each message's DATA.
fn fake_smtp_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let messages = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&messages);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let kept = Arc::clone(&kept);
            std::thread::spawn(move || {
                let mut out = stream.try_clone().unwrap();
                let mut lines = BufReader::new(stream).lines();
                let _ = out.write_all(b"220 localhost ESMTP test\r\n");
                while let Some(Ok(line)) = lines.next() {
                    let command = line.to_ascii_uppercase();
                    let reply: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO") {
                        b"250 localhost\r\n"
                    } else if command.starts_with("RCPT TO") && command.contains("GONE@") {
                        b"550 5.1.1 no such user\r\n"
                    } else if command == "DATA" {
                        let _ = out.write_all(b"354 go ahead\r\n");
                        let mut data = String::new();
                        for line in lines.by_ref() {
                            let Ok(line) = line else { return };
                            if line == "." {
                                break;
                            }
                            data.push_str(&line);
                            data.push('\n');
                        }
                        kept.lock().unwrap().push(data);
                        b"250 queued\r\n"
                    } else if command == "QUIT" {
                        let _ = out.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    if out.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, messages)
}

#[tokio::test]
async fn smtp_delivery_sends_real_smtp_and_tells_refusals_from_outages() {
    let (port, messages) = fake_smtp_server();
    let url = SecretString::from(format!("smtp://127.0.0.1:{port}"));
    let notifier = Notifier::from_settings(Some(&url), Some("boxoffice <tickets@example.com>"), None).unwrap();
    let email = |to: &str| Email {
        outbox_id: 42,
        to: to.into(),
        to_name: "Carol".into(),
        subject: "Your tickets for Rock Night".into(),
        body: "Section A, seat A-1 — 5000 JPY\n".into(),
    };

    notifier.probe().await.expect("the server answers");
    notifier.deliver(&email("carol@example.com")).await.expect("sent");
    let sent = messages.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let headers = sent[0].split("\n\n").next().unwrap();
    assert!(headers.contains("Subject: Your tickets for Rock Night"), "{headers}");
    assert!(headers.contains("Message-ID: <outbox-42@example.com>"), "{headers}");
    assert!(headers.contains("From: boxoffice <tickets@example.com>"), "{headers}");
    assert!(headers.contains("carol@example.com"), "{headers}");

    let refused = notifier.deliver(&email("gone@example.com")).await;
    assert!(matches!(refused, Err(MailError::Rejected(_))), "{refused:?}");
    let bad_address = notifier.deliver(&email("not an address")).await;
    assert!(matches!(bad_address, Err(MailError::Rejected(_))), "{bad_address:?}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = SecretString::from(format!("smtp://127.0.0.1:{closed}"));
    let down = Notifier::from_settings(Some(&url), Some("tickets@example.com"), None).unwrap();
    assert!(matches!(down.probe().await, Err(MailError::Unavailable(_))));
    let outage = down.deliver(&email("carol@example.com")).await;
    assert!(matches!(outage, Err(MailError::Unavailable(_))), "{outage:?}");
}

#[tokio::test]
async fn a_pass_stops_after_its_email_quota_and_leaves_the_rest_untouched() {
    let pool = fresh_pool().await;
    let redis = TestRedis::new().await;
    let buyers = [
        Buyer::new(&pool, "b1@example.com").await,
        Buyer::new(&pool, "b2@example.com").await,
        Buyer::new(&pool, "b3@example.com").await,
    ];
    let mut ids = Vec::new();
    for buyer in &buyers {
        ids.push(outbox_row(&pool, "hold:created", buyer.hold, serde_json::json!({})).await);
        ids.push(outbox_row(&pool, "ticket:issued", buyer.hold, buyer.issued_payload()).await);
    }
    let (mailer, notifier) = capture();
    let one_email = RelayConfig { max_emails_per_pass: 1, ..config(&redis.prefix) };
    let mut relay = OutboxRelay::new(pool.clone(), Some(&link(&redis.url)), notifier).with_config(one_email);

    let first = relay.relay_once().await.unwrap();
    // Cut before the second email's row: three rows done, three left for later.
    assert_eq!((first.fetched, first.published), (6, 3));
    let mut conn = redis_conn(&redis.url).await;
    assert_eq!(streamed_ids(&mut conn, &redis.prefix, &["hold:created", "ticket:issued"]).await, ids[..3]);

    while relay.relay_once().await.unwrap().fetched > 0 {}
    assert_eq!(streamed_ids(&mut conn, &redis.prefix, &["hold:created", "ticket:issued"]).await, ids);
    assert_eq!(
        mailer.sent().iter().map(|e| e.to.as_str()).collect::<Vec<_>>(),
        ["b1@example.com", "b2@example.com", "b3@example.com"]
    );
}
