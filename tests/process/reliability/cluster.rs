//! Several nodes on one PostgreSQL: buyers spread over all of them never get more
//! tickets than places; killing an event's owner moves the event to another node within
//! the lease TTL; a paused owner that wakes up after losing its lease cannot write;
//! killing the owner of an event's waiting room keeps every place in its line.

use super::checks::{assert_no_seat_twice, assert_sales_durable};
use super::client::{
    Sale, User, create_event, create_users, general_map, http_client, purchase, seated_map, until_answered,
};
use crate::{Rig, server_on};
use boxoffice::auth::Role;
use boxoffice_testkit::{ServerProcess, ServerSpec, eventually};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LEASE_TTL_MS: u64 = 2000;
const LEASE_TTL: Duration = Duration::from_millis(LEASE_TTL_MS);

/// `n` node specs on the rig's database, each with its own directory and node id.
fn node_specs(rig: &Rig, n: usize) -> Vec<ServerSpec> {
    node_specs_with(rig, n, &[])
}

/// [`node_specs`] with `extra` settings for every node.
fn node_specs_with(rig: &Rig, n: usize, extra: &[(&str, &str)]) -> Vec<ServerSpec> {
    (0..n)
        .map(|i| {
            let dir = rig.dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&dir).expect("node directory");
            let node_id = format!("node{i}");
            let ttl = LEASE_TTL_MS.to_string();
            let mut env = vec![("NODE_ID", node_id.as_str()), ("LEASE_TTL_MS", &ttl), ("RECONCILE_INTERVAL_MS", "500")];
            env.extend_from_slice(extra);
            server_on(&rig.db_url, &dir, &env)
        })
        .collect()
}

/// Nodes started on the rig's database, with what the tests talk to them with.
struct Nodes {
    specs: Vec<ServerSpec>,
    /// `None` while a node is down.
    running: Vec<Option<ServerProcess>>,
    bases: Vec<String>,
    client: reqwest::Client,
    organizer: User,
}

impl Nodes {
    async fn start(rig: &Rig, specs: Vec<ServerSpec>) -> Self {
        let mut running = Vec::new();
        for spec in &specs {
            running.push(Some(spec.start().await));
        }
        let bases = specs.iter().map(ServerSpec::base).collect();
        let organizer = create_users(&rig.db, 1, Role::Organizer).await.remove(0);
        Self { specs, running, bases, client: http_client(256), organizer }
    }

    fn node(&self, i: usize) -> &ServerProcess {
        self.running[i].as_ref().expect("the node runs")
    }

    /// A published event on `map`, created through the first node.
    async fn event(&self, map: serde_json::Value) -> String {
        create_event(&self.client, &self.bases[0], &self.organizer, map, json!({})).await
    }

    /// No node ever panicked; then every node is killed.
    fn finish(self) {
        for spec in &self.specs {
            spec.assert_no_panic_in_log();
        }
    }
}

/// The node holding `event`'s live lease.
async fn owner(db: &PgPool, event: &str) -> Option<String> {
    sqlx::query_scalar("SELECT node_id FROM event_leases WHERE event_id = $1::uuid AND expires_at > now()")
        .bind(event)
        .fetch_optional(db)
        .await
        .unwrap()
}

/// What a sale got back: the 201s, the orders answered 202 `processing` (paid; the
/// tickets follow from the reconciler), and anything else.
#[derive(Default)]
struct Outcome {
    sales: Vec<Sale>,
    processing: Vec<uuid::Uuid>,
    unexpected: Vec<String>,
}

impl Outcome {
    /// Places acknowledged: sold, or paid and being issued.
    fn places(&self) -> usize {
        self.sales.iter().map(|s| s.tickets.len()).sum::<usize>() + self.processing.len()
    }

    /// The paid orders answered `processing` all end as purchased holds.
    async fn settle(&self, db: &PgPool) {
        let ids = self.processing.clone();
        eventually("every order answered `processing` gets its tickets", Duration::from_secs(30), || {
            let ids = ids.clone();
            async move {
                let done: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM holds WHERE hold_id = ANY($1) AND status = 'purchased'")
                        .bind(&ids)
                        .fetch_one(db)
                        .await
                        .unwrap();
                done as usize == ids.len()
            }
        })
        .await;
    }
}

/// Each buyer buys one place through node `i % nodes`, retrying through 503s and
/// connection errors with the same key.
async fn sell(client: &reqwest::Client, bases: &[String], event: &str, buyers: &[User]) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = tokio::task::JoinSet::new();
    let bases = Arc::new(bases.to_vec());
    for (i, buyer) in buyers.iter().cloned().enumerate() {
        let (client, bases, event) = (client.clone(), Arc::clone(&bases), event.to_owned());
        tasks.spawn(async move {
            let base = &bases[i % bases.len()];
            let key = format!("cluster-{i}");
            let (reply, _) = until_answered(|| purchase(&client, base, &buyer, &event, &key), deadline).await;
            reply
        });
    }
    let mut out = Outcome::default();
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        match reply.status {
            Some(StatusCode::CREATED) => out.sales.push(Sale::from_body(&reply.body)),
            Some(StatusCode::ACCEPTED) if reply.body["status"] == "processing" => {
                out.processing.push(reply.body["order_id"].as_str().unwrap().parse().unwrap());
            }
            Some(StatusCode::CONFLICT) if reply.code == "sold_out" => {}
            _ => out.unexpected.push(reply.describe()),
        }
    }
    out
}

async fn metric(client: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buyers_spread_over_three_nodes_never_get_more_tickets_than_places() {
    let rig = Rig::new("cluster-sale", &[]).await;
    let nodes = Nodes::start(&rig, node_specs(&rig, 3)).await;
    let (bases, client) = (nodes.bases.clone(), nodes.client.clone());
    let ga = nodes.event(general_map(120)).await;
    let seated = nodes.event(seated_map(6, 20)).await;

    for (event, places) in [(&ga, 120usize), (&seated, 120)] {
        let buyers = create_users(&rig.db, 300, Role::Customer).await;
        let started = Instant::now();
        let out = sell(&client, &bases, event, &buyers).await;
        assert!(out.unexpected.is_empty(), "unexpected answers: {:?}", &out.unexpected[..out.unexpected.len().min(5)]);
        assert_eq!(out.places(), places, "sold out exactly, never more");
        assert_sales_durable(&rig.db, &out.sales).await;
        out.settle(&rig.db).await;
        assert_no_seat_twice(&rig.db, event).await;
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tickets WHERE event_id = $1::uuid AND status = 'valid'")
                .bind(event.as_str())
                .fetch_one(&rig.db)
                .await
                .unwrap();
        assert_eq!(stored as usize, places, "the database holds exactly the acknowledged tickets");
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM charges WHERE event_id = $1::uuid AND status NOT IN ('completed', 'refunded', 'declined')",
        )
        .bind(event.as_str())
        .fetch_one(&rig.db)
        .await
        .unwrap();
        assert_eq!(open, 0, "every charge ended as tickets or a refund");
        println!(
            "three nodes: {places} places sold to 300 buyers spread over 3 nodes in {:?}; owner {:?}",
            started.elapsed(),
            owner(&rig.db, event).await
        );
    }
    // The cost of a hop: the same read of a hold at the event's owner and at another node.
    let quiet = nodes.event(general_map(10)).await;
    let reader = create_users(&rig.db, 1, Role::Customer).await.remove(0);
    let r = client
        .post(format!("{}/events/{quiet}/holds", bases[0]))
        .bearer_auth(&reader.token)
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let hold = r.json::<serde_json::Value>().await.unwrap()["hold_id"].as_str().unwrap().to_owned();
    let at: usize = owner(&rig.db, &quiet).await.unwrap().trim_start_matches("node").parse().unwrap();
    for (label, base) in [("at the owner", &bases[at]), ("forwarded", &bases[(at + 1) % bases.len()])] {
        let mut times = Vec::new();
        for _ in 0..300 {
            let started = Instant::now();
            let r = client.get(format!("{base}/holds/{hold}")).bearer_auth(&reader.token).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "three nodes: GET /holds/{{id}} {label}: p50 {:?}, p99 {:?} (debug build, 300 sequential reads)",
            times[150], times[297]
        );
    }
    let mut forwards = 0.0;
    for base in &bases {
        forwards += metric(&client, base, "boxoffice_cluster_forwards_total").await;
    }
    println!("three nodes: {forwards} calls forwarded to an event's owner");
    assert!(forwards > 0.0, "buyers at non-owner nodes were served through the owner");
    nodes.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_an_events_owner_moves_the_event_within_the_lease_ttl() {
    let rig = Rig::new("cluster-failover", &[]).await;
    let mut nodes = Nodes::start(&rig, node_specs(&rig, 3)).await;
    let (bases, client) = (nodes.bases.clone(), nodes.client.clone());
    let event = nodes.event(general_map(400)).await;
    let buyers = create_users(&rig.db, 200, Role::Customer).await;
    let first = sell(&client, &bases, &event, &buyers[..100]).await;
    assert!(first.unexpected.is_empty(), "{:?}", first.unexpected);
    let owner_id = owner(&rig.db, &event).await.expect("someone owns the event");
    let victim: usize = owner_id.trim_start_matches("node").parse().unwrap();

    let killed_at = Instant::now();
    nodes.running[victim].take().unwrap().sigkill();
    let survivors: Vec<String> = (0..bases.len()).filter(|i| *i != victim).map(|i| bases[i].clone()).collect();
    // The first hold that succeeds on another node after the kill.
    let probe = create_users(&rig.db, 1, Role::Customer).await.remove(0);
    let mut failover = None;
    while killed_at.elapsed() < LEASE_TTL + Duration::from_secs(10) {
        let r = client
            .post(format!("{}/events/{event}/holds", survivors[0]))
            .bearer_auth(&probe.token)
            .header("Idempotency-Key", "failover-probe")
            .json(&json!({"quantity": 1}))
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == StatusCode::CREATED) {
            failover = Some(killed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failover = failover.expect("the event is served again on another node");
    println!("failover: first successful hold {failover:?} after SIGKILL of the owner (lease TTL {LEASE_TTL:?})");
    let new_owner = owner(&rig.db, &event).await.expect("a new owner");
    assert_ne!(new_owner, owner_id);

    let second = sell(&client, &survivors, &event, &buyers[100..]).await;
    assert!(second.unexpected.is_empty(), "{:?}", second.unexpected);
    first.settle(&rig.db).await;
    second.settle(&rig.db).await;
    let acknowledged = first.places() + second.places();
    let all: Vec<Sale> = first.sales.into_iter().chain(second.sales).collect();
    assert_sales_durable(&rig.db, &all).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets WHERE event_id = $1::uuid AND status = 'valid'")
        .bind(&event)
        .fetch_one(&rig.db)
        .await
        .unwrap();
    assert_eq!(stored as usize, acknowledged, "0 acknowledged sales lost, nothing sold unacknowledged");
    assert!(stored <= 400);
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_owner_that_lost_its_lease_cannot_sell_what_the_new_owner_sold() {
    let rig = Rig::new("cluster-fencing", &[]).await;
    let nodes = Nodes::start(&rig, node_specs(&rig, 2)).await;
    let (bases, client) = (nodes.bases.clone(), nodes.client.clone());
    const PLACES: usize = 50;
    let event = nodes.event(general_map(PLACES)).await;
    let buyers = create_users(&rig.db, 3 * PLACES, Role::Customer).await;
    // The event becomes active on its owner with a first sale.
    let early = sell(&client, &bases, &event, &buyers[..5]).await;
    assert!(early.unexpected.is_empty(), "{:?}", early.unexpected);
    let owner_id = owner(&rig.db, &event).await.expect("an owner");
    let paused: usize = owner_id.trim_start_matches("node").parse().unwrap();
    let other = 1 - paused;

    // Pause the owner past its lease; the other node takes the event over and sells out.
    nodes.node(paused).pause();
    // Buyers queued at the paused owner meanwhile: it answers them once it wakes up.
    let queued = {
        let (client, base, event, buyers) =
            (client.clone(), bases[paused].clone(), event.clone(), buyers[5..5 + PLACES].to_vec());
        tokio::spawn(async move { sell(&client, &[base], &event, &buyers).await })
    };
    tokio::time::sleep(LEASE_TTL + Duration::from_millis(500)).await;
    let taken = sell(&client, &[bases[other].clone()], &event, &buyers[5 + PLACES..]).await;
    assert!(taken.unexpected.is_empty(), "{:?}", taken.unexpected);
    assert_eq!(owner(&rig.db, &event).await.as_deref(), Some(format!("node{other}").as_str()));
    assert_eq!(early.places() + taken.places(), PLACES, "the new owner sold what was left");

    // Wake the old owner: whatever its stale memory accepts, its writes are refused.
    nodes.node(paused).resume();
    let late = queued.await.unwrap();
    assert_eq!(late.places(), 0, "nothing sold twice: {} places acknowledged after the sell-out", late.places());
    early.settle(&rig.db).await;
    taken.settle(&rig.db).await;
    let all: Vec<Sale> = early.sales.into_iter().chain(taken.sales).chain(late.sales).collect();
    assert_sales_durable(&rig.db, &all).await;
    let (valid, active): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tickets WHERE event_id = $1::uuid AND status = 'valid'),
                (SELECT count(*) FROM holds WHERE event_id = $1::uuid AND status = 'active')",
    )
    .bind(&event)
    .fetch_one(&rig.db)
    .await
    .unwrap();
    assert_eq!((valid, active), (PLACES as i64, 0), "exactly the places, no hold left behind");
    let refused = metric(&client, &bases[paused], "boxoffice_fencing_rejections_total").await;
    let distrusted = metric(&client, &bases[paused], "boxoffice_lease_expired_locally_total").await
        + metric(&client, &bases[paused], "boxoffice_leases_lost_total").await;
    println!(
        "paused owner: on waking it stopped {distrusted} stale events before answering, {refused} writes refused by fencing"
    );
    nodes.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_of_every_node_during_a_sale_loses_nothing() {
    let rig = Rig::new("cluster-rolling", &[]).await;
    let mut nodes = Nodes::start(&rig, node_specs(&rig, 3)).await;
    let (bases, client) = (nodes.bases.clone(), nodes.client.clone());
    const PLACES: usize = 2000;
    let event = nodes.event(general_map(PLACES)).await;
    let buyers = create_users(&rig.db, 600, Role::Customer).await;

    // Buyers arrive over ~6 s, spread over the nodes, while each node is restarted in turn.
    let sale = {
        let (client, bases, event) = (client.clone(), bases.clone(), event.clone());
        tokio::spawn(async move {
            let mut waves = Vec::new();
            for wave in buyers.chunks(50) {
                let (client, bases, event, wave) = (client.clone(), bases.clone(), event.clone(), wave.to_vec());
                waves.push(tokio::spawn(async move { sell(&client, &bases, &event, &wave).await }));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let mut all = Outcome::default();
            for w in waves {
                let o = w.await.unwrap();
                all.sales.extend(o.sales);
                all.processing.extend(o.processing);
                all.unexpected.extend(o.unexpected);
            }
            all
        })
    };
    let started = Instant::now();
    for i in 0..nodes.running.len() {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let status = nodes.running[i].take().unwrap().terminate(Duration::from_secs(20)).await;
        assert!(status.is_some_and(|s| s.success()), "node{i} did not stop cleanly: {status:?}");
        nodes.running[i] = Some(nodes.specs[i].start().await);
    }
    println!("rolling restart of 3 nodes done {:?} into the sale", started.elapsed());
    let out = sale.await.unwrap();
    assert!(
        out.unexpected.is_empty(),
        "only retryable answers expected: {:?}",
        &out.unexpected[..out.unexpected.len().min(5)]
    );
    assert_eq!(out.places(), 600, "every buyer bought");
    println!(
        "rolling restart: {} orders answered 202 processing and completed by the reconciler",
        out.processing.len()
    );
    assert_sales_durable(&rig.db, &out.sales).await;
    out.settle(&rig.db).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets WHERE event_id = $1::uuid AND status = 'valid'")
        .bind(&event)
        .fetch_one(&rig.db)
        .await
        .unwrap();
    assert_eq!(stored, 600, "0 lost, nothing sold unacknowledged");
    nodes.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_loses_the_database_stops_serving_before_its_leases_expire() {
    let rig = Rig::new("cluster-cutoff", &[]).await;
    // Each node connects as a role of its own, so the database can be taken from one alone.
    boxoffice::store::db::migrator().run(&rig.db).await.unwrap();
    let roles: Vec<String> = (0..2).map(|_| format!("node_cut_{}", uuid::Uuid::new_v4().simple())).collect();
    let password = "cut-off-node-password";
    let mut specs = Vec::new();
    for (spec, role) in node_specs(&rig, 2).into_iter().zip(&roles) {
        for sql in [
            format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
            format!("GRANT ALL ON SCHEMA public TO {role}"),
            format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"),
            format!("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&rig.db).await.unwrap();
        }
        let mut url = reqwest::Url::parse(&rig.db_url).unwrap();
        url.set_username(role).unwrap();
        url.set_password(Some(password)).unwrap();
        specs.push(spec.env("DATABASE_URL", url.as_str()));
    }
    let nodes = Nodes::start(&rig, specs).await;
    let (bases, client) = (nodes.bases.clone(), nodes.client.clone());
    let event = nodes.event(general_map(100)).await;
    let buyers = create_users(&rig.db, 20, Role::Customer).await;
    let first = sell(&client, &bases, &event, &buyers[..5]).await;
    assert!(first.unexpected.is_empty(), "{:?}", first.unexpected);
    let owner_id = owner(&rig.db, &event).await.expect("an owner");
    let cut: usize = owner_id.trim_start_matches("node").parse().unwrap();
    let other = 1 - cut;

    // Cut the owner off the database.
    let cut_at = Instant::now();
    for sql in [
        format!("ALTER ROLE {} NOLOGIN", roles[cut]),
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{}'", roles[cut]),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&rig.db).await.unwrap();
    }
    // It steps down before its leases can expire (2/3 of the TTL, checked every TTL/3).
    eventually("the cut-off node steps down", LEASE_TTL + Duration::from_secs(2), || async {
        metric(&client, &bases[cut], "boxoffice_cluster_stepdowns_total").await >= 1.0
    })
    .await;
    println!(
        "cut off: the owner stepped down {:?} after losing the database (lease TTL {LEASE_TTL:?})",
        cut_at.elapsed()
    );
    assert_eq!(metric(&client, &bases[cut], "boxoffice_event_actors").await, 0.0, "it runs no event any more");
    // The other node takes the event over and sells.
    let second = sell(&client, &bases[other..=other], &event, &buyers[5..]).await;
    assert!(second.unexpected.is_empty(), "{:?}", second.unexpected);
    first.settle(&rig.db).await;
    second.settle(&rig.db).await;
    let all: Vec<Sale> = first.sales.into_iter().chain(second.sales).collect();
    assert_sales_durable(&rig.db, &all).await;
    assert_eq!(owner(&rig.db, &event).await, Some(format!("node{other}")));
    nodes.finish();
    for role in &roles {
        for sql in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&rig.db).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_owner_of_a_waiting_room_keeps_every_place() {
    let rig = Rig::new("cluster-waiting-room", &[]).await;
    let extra = [("WAITING_ROOM_TICK_MS", "50"), ("QUEUE_JOINS_PER_IP_PER_MINUTE", "100000")];
    let mut nodes = Nodes::start(&rig, node_specs_with(&rig, 3, &extra)).await;
    let (bases, client) = (nodes.bases.clone(), nodes.client.clone());
    let opens_at = chrono::Utc::now() + chrono::TimeDelta::seconds(3);
    // One admission a minute: everyone but the first few is still waiting after the kill.
    let window = json!({"opens_at": opens_at, "waiting_room": {"enabled": true, "rate_per_minute": 1}});
    let event = create_event(&client, &bases[0], &nodes.organizer, general_map(100), window).await;
    let buyers = create_users(&rig.db, 30, Role::Customer).await;
    for (i, buyer) in buyers.iter().enumerate() {
        let r = client
            .post(format!("{}/events/{event}/queue", bases[i % bases.len()]))
            .bearer_auth(&buyer.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "join");
    }
    eventually("the room opens", Duration::from_secs(30), || async {
        let admitted: Option<i64> = sqlx::query_scalar(
            "SELECT admitted_total FROM queue_rooms WHERE event_id = $1::uuid AND opened_at IS NOT NULL",
        )
        .bind(&event)
        .fetch_optional(&rig.db)
        .await
        .unwrap();
        admitted.is_some_and(|n| n >= 1)
    })
    .await;
    let place = |base: String, token: String| {
        let client = client.clone();
        let event = event.clone();
        async move {
            let r = client.get(format!("{base}/events/{event}/queue/me")).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<serde_json::Value>().await.unwrap()["position"].as_i64().expect("a place")
        }
    };
    let mut before = Vec::new();
    for buyer in &buyers {
        before.push(place(bases[0].clone(), buyer.token.clone()).await);
    }
    let mut sorted = before.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=30).collect::<Vec<i64>>(), "30 places, each once");

    let owner_id = owner(&rig.db, &event).await.expect("someone owns the event");
    let victim: usize = owner_id.trim_start_matches("node").parse().unwrap();
    nodes.running[victim].take().unwrap().sigkill();
    let survivor = bases[(victim + 1) % bases.len()].clone();
    // The new owner takes the room over: its pacer starts afresh, so it lets the next
    // in line in at once, in order of place, without drawing the places again.
    eventually("another node admits the next in line", LEASE_TTL + Duration::from_secs(20), || async {
        let new_owner = owner(&rig.db, &event).await;
        let admitted: i64 = sqlx::query_scalar("SELECT admitted_total FROM queue_rooms WHERE event_id = $1::uuid")
            .bind(&event)
            .fetch_one(&rig.db)
            .await
            .unwrap();
        new_owner.is_some_and(|o| o != owner_id) && admitted >= 2
    })
    .await;
    for (buyer, was) in buyers.iter().zip(&before) {
        assert_eq!(place(survivor.clone(), buyer.token.clone()).await, *was, "a place changed in the move");
    }
    let admitted: Vec<i64> = sqlx::query_scalar(
        "SELECT position FROM queue_entries WHERE event_id = $1::uuid AND admitted_at IS NOT NULL ORDER BY position",
    )
    .bind(&event)
    .fetch_all(&rig.db)
    .await
    .unwrap();
    assert_eq!(admitted, (1..=admitted.len() as i64).collect::<Vec<_>>(), "admitted in order of place");
    let (shuffled, epoch): (i32, Option<i64>) =
        sqlx::query_as("SELECT shuffled, opened_epoch FROM queue_rooms WHERE event_id = $1::uuid")
            .bind(&event)
            .fetch_one(&rig.db)
            .await
            .unwrap();
    assert_eq!(shuffled, 30, "the pre-queue was shuffled once");
    assert!(epoch.is_some());
    drop(nodes);
}
