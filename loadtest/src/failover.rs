//! `loadtest failover`: how long an event is out of service when its owner dies.
//!
//! With `--spawn --nodes N` (N ≥ 2), each run creates a general-admission event,
//! sells a few holds through every node, then SIGKILLs the event's owner (never
//! node 0, whose embedded PostgreSQL the others use: an event owned by node 0 is
//! replaced by another) and times the first successful hold through a surviving
//! node. It then checks that the new owner is another node and that every hold
//! acknowledged before the kill is stored, and restarts the killed node (same
//! `NODE_ID`, port and keys) for the next run.
//!
//! Before the first kill it also measures what a hop costs: `GET /holds/{id}` sent
//! to the event's owner and to another node (which forwards it), alternately.

use crate::checks::Check;
use crate::cli::{Cli, FailoverArgs};
use crate::http::Api;
use crate::report::{LatencyRow, Report, Timeline, fact};
use crate::server::Target;
use crate::setup::{Buyer, register};
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Events created per run at most, looking for one that node 0 does not own.
const MAX_EVENTS_PER_RUN: usize = 20;
/// Longest wait for the event to be served again, beyond the lease TTL.
const RECOVERY_SLACK: Duration = Duration::from_secs(30);
/// Requests per side of the hop measurement.
const HOP_SAMPLES: u32 = 2_000;
/// Places of each run's event.
const PLACES: u32 = 100_000;

#[derive(Deserialize)]
struct Created {
    event_id: Uuid,
}

#[derive(Deserialize)]
struct HoldReply {
    hold_id: Uuid,
}

struct Run {
    victim: String,
    new_owner: Option<String>,
    recovered_after: Option<Duration>,
    holds_acknowledged: usize,
    holds_stored: i64,
}

pub async fn run(cli: &Cli, target: &mut Target, args: &FailoverArgs) -> anyhow::Result<Report> {
    if !target.spawned() || target.base_urls.len() < 2 {
        bail!("failover needs --spawn and --nodes 2 or more");
    }
    let pool: PgPool = crate::connect(target).await?.context("failover reads leases from the database")?;
    let timeout = Duration::from_millis(cli.target.timeout_ms);
    let nodes: Vec<Api> = target.base_urls.iter().map(|u| Api::new(u, timeout)).collect::<anyhow::Result<_>>()?;
    let started_at = chrono::Utc::now().to_rfc3339();
    let run_id = format!("{:08x}", rand::random::<u32>());
    let organizer =
        register(&nodes[0], &format!("organizer-{run_id}@loadtest.example"), "Failover", "organizer", &run_id)
            .await
            .context("registering the organizer")?;
    let mut buyers = Vec::new();
    for i in 0..args.holds_before.max(1) + 1 {
        buyers.push(
            register(&nodes[0], &format!("buyer-{run_id}-{i}@loadtest.example"), "Buyer", "customer", &run_id).await?,
        );
    }
    let ttl = Duration::from_millis(cli.target.lease_ttl_ms);
    eprintln!(
        "loadtest: failover: {} runs over {} nodes, lease TTL {} ms",
        args.runs,
        nodes.len(),
        cli.target.lease_ttl_ms
    );

    let mut hop: Option<(Histogram<u64>, Histogram<u64>)> = None;
    let mut runs = Vec::new();
    for r in 0..args.runs {
        if crate::interrupted() {
            break;
        }
        let (event, owner, first_hold) = owned_elsewhere(&nodes, &pool, &organizer, &buyers[0]).await?;
        let victim: usize = owner.trim_start_matches("node").parse().context("a spawned node's id")?;
        if hop.is_none() {
            let other = (victim + 1) % nodes.len();
            hop = Some(measure_hop(&nodes[victim], &nodes[other], &buyers[0], first_hold).await?);
        }
        let mut acknowledged = vec![first_hold];
        for (i, buyer) in buyers.iter().enumerate().skip(1).take(args.holds_before as usize) {
            if let Some(id) = hold(&nodes[i % nodes.len()], event, buyer).await? {
                acknowledged.push(id);
            }
        }

        let killed_at = Instant::now();
        target.kill_node(victim).await?;
        let survivors: Vec<&Api> = (0..nodes.len()).filter(|i| *i != victim).map(|i| &nodes[i]).collect();
        let probe = buyers.last().expect("a probe buyer");
        let mut recovered_after = None;
        let mut attempt = 0usize;
        while killed_at.elapsed() < ttl + RECOVERY_SLACK && !crate::interrupted() {
            if let Ok(Some(_)) = hold(survivors[attempt % survivors.len()], event, probe).await {
                recovered_after = Some(killed_at.elapsed());
                break;
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(args.probe_ms)).await;
        }
        let new_owner = owner_of(&pool, event).await?;
        let holds_stored: i64 = sqlx::query_scalar("SELECT count(*) FROM holds WHERE hold_id = ANY($1)")
            .bind(&acknowledged)
            .fetch_one(&pool)
            .await?;
        let run =
            Run { victim: owner, new_owner, recovered_after, holds_acknowledged: acknowledged.len(), holds_stored };
        eprintln!(
            "loadtest: run {}: killed {}, first hold through a survivor after {}, now owned by {}",
            r + 1,
            run.victim,
            run.recovered_after.map_or("never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64())),
            run.new_owner.as_deref().unwrap_or("nobody")
        );
        runs.push(run);
        target.restart_node(victim).await.with_context(|| format!("restarting node{victim}"))?;
    }
    Ok(report(cli, target, args, started_at, &runs, hop, ttl))
}

/// Creates events until one is owned by a node other than node 0; the event, its
/// owner and a first hold (which activated it).
async fn owned_elsewhere(
    nodes: &[Api],
    pool: &PgPool,
    organizer: &Buyer,
    buyer: &Buyer,
) -> anyhow::Result<(Uuid, String, Uuid)> {
    for _ in 0..MAX_EVENTS_PER_RUN {
        let body = json!({
            "title": "Loadtest failover", "venue_name": "Loadtest Arena", "event_date": chrono::Utc::now() + chrono::Duration::days(30),
            "seat_map": {"tiers": [{"code": "A", "price": 5000}],
                         "sections": [{"name": "Floor", "tier": "A", "kind": "general", "capacity": PLACES}]},
            "sales_window": {"per_buyer_limit": 50},
        });
        let created = nodes[0].post_json("/events/create", Some(&organizer.auth()), &body).await?;
        if created.status != 201 {
            bail!("creating an event: {} {}", created.status, String::from_utf8_lossy(&created.body));
        }
        let event = created.json::<Created>()?.event_id;
        let published = nodes[0]
            .send(hyper::Method::POST, &format!("/events/{event}/publish"), Some(&organizer.auth()), None, None)
            .await?;
        if !published.ok() {
            bail!("publishing an event: {}", published.status);
        }
        let first = hold(&nodes[0], event, buyer).await?.context("the first hold of a new event failed")?;
        match owner_of(pool, event).await? {
            Some(owner) if owner != "node0" => return Ok((event, owner, first)),
            _ => continue,
        }
    }
    bail!("{MAX_EVENTS_PER_RUN} new events in a row went to node0; is the cluster balancing?")
}

async fn owner_of(pool: &PgPool, event: Uuid) -> anyhow::Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT node_id FROM event_leases WHERE event_id = $1 AND expires_at > now()")
        .bind(event)
        .fetch_optional(pool)
        .await?)
}

/// One place held through `api`; `None` when the server refused or did not answer.
async fn hold(api: &Api, event: Uuid, buyer: &Buyer) -> anyhow::Result<Option<Uuid>> {
    let key = Uuid::new_v4().simple().to_string();
    let body = bytes::Bytes::from_static(br#"{"quantity":1}"#);
    let path = format!("/events/{event}/holds");
    match api.send(hyper::Method::POST, &path, Some(&buyer.auth()), Some(body), Some(&key)).await {
        Ok(r) if r.status == 201 => Ok(Some(r.json::<HoldReply>()?.hold_id)),
        _ => Ok(None),
    }
}

/// `GET /holds/{id}` at the owner and at another node, alternately, in microseconds.
async fn measure_hop(
    owner: &Api,
    other: &Api,
    buyer: &Buyer,
    hold: Uuid,
) -> anyhow::Result<(Histogram<u64>, Histogram<u64>)> {
    let path = format!("/holds/{hold}");
    let mut at_owner = Histogram::<u64>::new(3)?;
    let mut forwarded = Histogram::<u64>::new(3)?;
    for i in 0..2 * (HOP_SAMPLES + 100) {
        let (api, h) = if i % 2 == 0 { (owner, &mut at_owner) } else { (other, &mut forwarded) };
        let started = Instant::now();
        let r = api.get(&path, Some(&buyer.auth())).await?;
        if !r.ok() {
            bail!("GET {path} answered {}", r.status);
        }
        // The first hundred of each side warm the connections up.
        if i >= 200 {
            h.record(started.elapsed().as_micros() as u64)?;
        }
    }
    Ok((at_owner, forwarded))
}

fn report(
    cli: &Cli,
    target: &Target,
    args: &FailoverArgs,
    started_at: String,
    runs: &[Run],
    hop: Option<(Histogram<u64>, Histogram<u64>)>,
    ttl: Duration,
) -> Report {
    let mut times = Histogram::<u64>::new(3).expect("a histogram");
    for d in runs.iter().filter_map(|r| r.recovered_after) {
        let _ = times.record(d.as_micros() as u64);
    }
    let secs: Vec<Option<f64>> = runs.iter().map(|r| r.recovered_after.map(|d| d.as_secs_f64())).collect();
    let mut facts = vec![fact(
        "runs",
        format!(
            "{} kills of an event's owner, {} nodes, lease TTL {} ms",
            runs.len(),
            target.base_urls.len(),
            ttl.as_millis()
        ),
    )];
    for (i, r) in runs.iter().enumerate() {
        facts.push(fact(
            &format!("run {}", i + 1),
            format!(
                "killed {}; first hold through a survivor after {}; owned by {}; {} of {} acknowledged holds stored",
                r.victim,
                r.recovered_after.map_or("never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64())),
                r.new_owner.as_deref().unwrap_or("nobody"),
                r.holds_stored,
                r.holds_acknowledged
            ),
        ));
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let mut latency = Vec::new();
    if !times.is_empty() {
        facts.push(fact(
            "failover (SIGKILL → first successful hold)",
            format!(
                "p50 {:.2} s, mean {:.2} s, max {:.2} s over {} runs",
                ms(&times, 0.5) / 1000.0,
                times.mean() / 1e6,
                times.max() as f64 / 1e6,
                times.len()
            ),
        ));
        latency.push(LatencyRow::new("failover", &times));
    }
    let hop_figures = hop.as_ref().map(|(owner, forwarded)| {
        facts.push(fact(
            "a hop (GET /holds/{id})",
            format!(
                "at the owner p50 {:.2} ms, p99 {:.2} ms; through another node p50 {:.2} ms, p99 {:.2} ms; added p50 {:.2} ms",
                ms(owner, 0.5),
                ms(owner, 0.99),
                ms(forwarded, 0.5),
                ms(forwarded, 0.99),
                ms(forwarded, 0.5) - ms(owner, 0.5)
            ),
        ));
        latency.push(LatencyRow::new("get hold at the owner", owner));
        latency.push(LatencyRow::new("get hold, forwarded", forwarded));
        json!({"owner_p50_ms": ms(owner, 0.5), "owner_p99_ms": ms(owner, 0.99),
               "forwarded_p50_ms": ms(forwarded, 0.5), "forwarded_p99_ms": ms(forwarded, 0.99)})
    });
    let limit = ttl + RECOVERY_SLACK;
    let checks = vec![
        Check::new(
            "every killed owner's event was served again by another node",
            runs.iter().all(|r| {
                r.recovered_after.is_some_and(|d| d < limit) && r.new_owner.as_ref().is_some_and(|o| *o != r.victim)
            }),
            format!(
                "{} of {} runs recovered within the lease TTL + {} s, on another node",
                runs.iter()
                    .filter(|r| r.recovered_after.is_some() && r.new_owner.as_ref().is_some_and(|o| *o != r.victim))
                    .count(),
                runs.len(),
                RECOVERY_SLACK.as_secs()
            ),
        ),
        Check::new(
            "lost writes: every hold acknowledged before a kill is stored",
            runs.iter().all(|r| r.holds_stored as usize == r.holds_acknowledged),
            format!(
                "{} of {} acknowledged holds stored",
                runs.iter().map(|r| r.holds_stored).sum::<i64>(),
                runs.iter().map(|r| r.holds_acknowledged).sum::<usize>()
            ),
        ),
    ];
    let passed = !runs.is_empty() && checks.iter().all(|c| c.passed);
    Report {
        tool: "boxoffice-loadtest",
        scenario: "failover".into(),
        mode: format!("{} kills, probe every {} ms", args.runs, args.probe_ms),
        target: target.description.clone(),
        started_at,
        config: json!({"runs": args.runs, "holds_before": args.holds_before, "probe_ms": args.probe_ms,
                       "nodes": target.base_urls.len(), "lease_ttl_ms": ttl.as_millis() as u64,
                       "timeout_ms": cli.target.timeout_ms}),
        facts,
        figures: json!({
            "failover_secs": secs,
            "failover_p50_secs": (!times.is_empty()).then(|| ms(&times, 0.5) / 1000.0),
            "failover_max_secs": (!times.is_empty()).then(|| times.max() as f64 / 1e6),
            "hop": hop_figures,
        }),
        rates: Vec::new(),
        outcomes: Vec::new(),
        latency,
        timeline: Timeline::default(),
        soak: None,
        checks,
        cpu: None,
        server_metrics: None,
        passed,
    }
}
