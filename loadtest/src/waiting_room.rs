//! `loadtest --scenario waiting-room`: the opening of a sale with and without a
//! waiting room (`docs/domain.md`, section "Waiting room").
//!
//! `--queue-buyers` buyers (inserted straight into PostgreSQL; their access tokens
//! signed with the spawned server's key, since 50,000 argon2 registrations would
//! take longer than the sale) want one place each of a `--seats` general-admission
//! event. Two runs, each on its own event:
//!
//! - **without the room** (unless `--no-baseline`): every buyer sends a one-shot
//!   purchase at the opening moment (the late share later), retrying 503s as the
//!   server's `Retry-After` says, up to `--max-retries`;
//! - **with the room**: buyers join within `--join-window-secs` before the opening
//!   (the late share after it), poll `GET /events/{id}/queue/me` as the estimate
//!   suggests, and buy with their admission once admitted.
//!
//! Reported: join p99, time from the opening to the last admission and to the
//! last sale, purchases refused for want of places (409 `sold_out`) against 503s
//! in each run, and the Spearman rank correlation between the late joiners' join
//! order and their admission order (1 = first come, first served). Checked: no
//! place sold twice, and nobody bought through the room without an admission.

use crate::checks::Check;
use crate::cli::Cli;
use crate::http::{Api, bearer};
use crate::report::{LatencyRow, OutcomeRow, Report, Timeline, fact};
use crate::server::Target;
use crate::setup::register;
use anyhow::{Context, bail};
use base64::Engine;
use hdrhistogram::Histogram;
use hmac::{Hmac, Mac};
use hyper::header::HeaderValue;
use rand::Rng;
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Most requests the generator has in flight (each is a socket).
const MAX_IN_FLIGHT: usize = 8_000;
/// Seconds between setup and the start of the join window.
const LEAD_SECS: u64 = 3;
/// Bounds of a buyer's wait between two looks at its place (a third of the
/// estimated wait in between; the first look after the maximum without an estimate).
const POLL_MIN: Duration = Duration::from_millis(500);
const POLL_MAX: Duration = Duration::from_secs(10);
const POLL_NO_ESTIMATE: Duration = Duration::from_secs(3);

struct QueueBuyer {
    id: Uuid,
    auth: HeaderValue,
}

/// What one run (with or without the room) saw.
#[derive(Default)]
struct Counters {
    sold: AtomicU64,
    /// 409 `sold_out`: refused for want of places.
    sold_out: AtomicU64,
    /// Told by the room that the sale sold out while waiting.
    sold_out_in_queue: AtomicU64,
    overloaded_503: AtomicU64,
    /// 503s answering joins (each retry counted).
    join_503: AtomicU64,
    not_admitted_403: AtomicU64,
    other: AtomicU64,
    failures: AtomicU64,
    gave_up: AtomicU64,
    requests: AtomicU64,
}

struct RunResult {
    with_room: bool,
    event: Uuid,
    opens_at: chrono::DateTime<chrono::Utc>,
    counters: Counters,
    join: Histogram<u64>,
    purchase: Histogram<u64>,
    /// Seconds from the opening to the last sale (client side).
    last_sale_secs: Option<f64>,
    /// Late joiners, in the order their joins were answered.
    late_order: Vec<Uuid>,
    elapsed: Duration,
}

pub async fn run(cli: &Cli, target: &Target) -> anyhow::Result<Report> {
    let args = &cli.sale;
    let room = &args.room;
    if !(0.0..=1.0).contains(&room.late_join_ratio) {
        bail!("--late-join-ratio is between 0 and 1");
    }
    if room.room_rate != "auto" && room.room_rate.parse::<u32>().is_err() {
        bail!("--room-rate is a number of admissions per minute or `auto`");
    }
    let secret = target.jwt_secret().context("waiting-room needs --spawn (it signs the buyers' tokens)")?;
    let pool: PgPool = crate::connect(target).await?.context("waiting-room reads the queue from the database")?;
    let timeout = Duration::from_millis(cli.target.timeout_ms);
    let api = Api::spread(&target.base_urls, timeout)?;
    let started_at = chrono::Utc::now().to_rfc3339();
    let run_id = format!("{:08x}", rand::random::<u32>());
    let organizer = register(&api, &format!("organizer-{run_id}@loadtest.example"), "Rooms", "organizer", &run_id)
        .await
        .context("registering the organizer")?;
    eprintln!("loadtest: waiting-room: inserting {} buyers…", room.queue_buyers);
    let buyers = Arc::new(insert_buyers(&pool, room.queue_buyers as usize, secret, &run_id).await?);
    let mut runs = Vec::new();
    for with_room in [false, true] {
        if !with_room && room.no_baseline {
            continue;
        }
        if crate::interrupted() {
            break;
        }
        let event = create_event(&api, &organizer.auth(), cli, with_room).await?;
        eprintln!(
            "loadtest: waiting-room: {} buyers, {} places, {} the room…",
            buyers.len(),
            args.seats,
            if with_room { "with" } else { "without" }
        );
        runs.push(rush(&api, cli, event.0, event.1, with_room, Arc::clone(&buyers)).await?);
    }
    report(cli, target, &pool, started_at, runs).await
}

/// `n` customers inserted into `users`, each with an access token valid for 3 hours.
async fn insert_buyers(pool: &PgPool, n: usize, secret: &str, run_id: &str) -> anyhow::Result<Vec<QueueBuyer>> {
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    for chunk in ids.chunks(10_000) {
        sqlx::query(
            "INSERT INTO users (user_id, email, password_hash, name, user_type)
             SELECT id, 'queue-' || $2 || '-' || id || '@loadtest.example', 'not-a-password-hash', 'Queue', 'customer'
               FROM UNNEST($1::uuid[]) AS id",
        )
        .bind(chunk)
        .bind(run_id)
        .execute(pool)
        .await
        .context("inserting buyers")?;
    }
    let exp = chrono::Utc::now().timestamp() + 3 * 3600;
    ids.into_iter().map(|id| Ok(QueueBuyer { id, auth: bearer(&access_token(secret, id, exp))? })).collect()
}

/// An HS256 access token the server accepts (`iss` boxoffice, `aud` boxoffice-api).
fn access_token(secret: &str, user: Uuid, exp: i64) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": user, "role": "customer", "iss": "boxoffice", "aud": "boxoffice-api",
                        "iat": now, "exp": exp});
    let body = format!("{header}.{}", b64(claims.to_string().as_bytes()));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body.as_bytes());
    format!("{body}.{}", b64(&mac.finalize().into_bytes()))
}

/// A published general-admission event of `--seats` places, one per buyer, opening
/// after the lead and the join window; its id and opening time.
async fn create_event(
    api: &Api,
    organizer: &HeaderValue,
    cli: &Cli,
    with_room: bool,
) -> anyhow::Result<(Uuid, chrono::DateTime<chrono::Utc>)> {
    let room = &cli.sale.room;
    let opens_at = chrono::Utc::now() + chrono::TimeDelta::seconds((LEAD_SECS + room.join_window_secs) as i64);
    let rate = match room.room_rate.parse::<u32>() {
        Ok(n) => json!(n),
        Err(_) => json!("auto"),
    };
    let mut window = json!({"opens_at": opens_at, "per_buyer_limit": 1});
    if with_room {
        window["waiting_room"] =
            json!({"enabled": true, "rate_per_minute": rate, "admission_ttl_secs": room.admission_ttl_secs});
    }
    let body = json!({
        "title": if with_room { "Opening with a waiting room" } else { "Opening without a room" },
        "venue_name": "Arena", "event_date": "2031-06-01T19:00:00Z",
        "seat_map": {"tiers": [{"code": "GA", "price": 5000}],
                     "sections": [{"name": "Floor", "tier": "GA", "kind": "general", "capacity": cli.sale.seats}]},
        "sales_window": window,
    });
    let created = api.post_json("/events/create", Some(organizer), &body).await?;
    if created.status != 201 {
        bail!("creating the event: {} {}", created.status, String::from_utf8_lossy(&created.body));
    }
    let id: Uuid = created.json::<Value>()?["event_id"].as_str().context("an event id")?.parse()?;
    let published =
        api.send(hyper::Method::POST, &format!("/events/{id}/publish"), Some(organizer), None, None).await?;
    if !published.ok() {
        bail!("publishing the event: {}", published.status);
    }
    Ok((id, opens_at))
}

/// Sleeps until the wall-clock time `at`.
async fn sleep_until(at: chrono::DateTime<chrono::Utc>) {
    if let Ok(d) = (at - chrono::Utc::now()).to_std() {
        tokio::time::sleep(d).await;
    }
}

async fn rush(
    api: &Api,
    cli: &Cli,
    event: Uuid,
    opens_at: chrono::DateTime<chrono::Utc>,
    with_room: bool,
    buyers: Arc<Vec<QueueBuyer>>,
) -> anyhow::Result<RunResult> {
    let room = &cli.sale.room;
    let window = chrono::TimeDelta::milliseconds((room.join_window_secs * 1000) as i64);
    let deadline = Instant::now()
        + (opens_at - chrono::Utc::now()).to_std().unwrap_or_default()
        + Duration::from_secs(cli.target.duration);
    let counters = Arc::new(Counters::default());
    let join = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let purchase = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let late_order = Arc::new(Mutex::new(Vec::new()));
    let last_sale = Arc::new(Mutex::new(None::<chrono::DateTime<chrono::Utc>>));
    let gate = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT.min(cli.sale.max_in_flight.max(1))));
    let max_retries = cli.sale.max_retries;
    let started = Instant::now();
    let mut rng = rand::rng();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..buyers.len() {
        let late = rng.random_bool(room.late_join_ratio);
        let offset = window.num_milliseconds() as f64 * rng.random_range(0.0..1.0);
        let at = if late {
            opens_at + chrono::TimeDelta::milliseconds(offset as i64)
        } else {
            opens_at - window + chrono::TimeDelta::milliseconds(offset as i64)
        };
        let (api, buyers, counters, join, purchase, late_order, last_sale, gate) = (
            api.clone(),
            Arc::clone(&buyers),
            Arc::clone(&counters),
            Arc::clone(&join),
            Arc::clone(&purchase),
            Arc::clone(&late_order),
            Arc::clone(&last_sale),
            Arc::clone(&gate),
        );
        tasks.spawn(async move {
            let buyer = &buyers[i];
            // Without the room everyone who is there fires at the opening moment.
            let at = if with_room || late { at } else { opens_at };
            sleep_until(at).await;
            let admission = if with_room {
                // Joins are retried like purchases: a 503 or no answer, after a while.
                let mut attempt = 0;
                loop {
                    let joined = {
                        let _permit = gate.acquire().await;
                        counters.requests.fetch_add(1, Relaxed);
                        let t = Instant::now();
                        let r = api.post_json(&format!("/events/{event}/queue"), Some(&buyer.auth), &json!({})).await;
                        (r, t)
                    };
                    let wait = match joined {
                        (Ok(r), sent) if r.status == 201 || r.status == 200 => {
                            let _ = join.lock().expect("join").record(sent.elapsed().as_micros() as u64);
                            if late {
                                // Join order is the order joins were accepted in.
                                late_order.lock().expect("late order").push(buyer.id);
                            }
                            break;
                        }
                        (Ok(r), _) if r.status == 503 => {
                            counters.join_503.fetch_add(1, Relaxed);
                            r.retry_after.unwrap_or(Duration::from_secs(1))
                        }
                        (Ok(_), _) => {
                            counters.other.fetch_add(1, Relaxed);
                            return;
                        }
                        (Err(_), _) => {
                            counters.failures.fetch_add(1, Relaxed);
                            Duration::from_secs(1)
                        }
                    };
                    attempt += 1;
                    if attempt > max_retries || Instant::now() >= deadline {
                        counters.gave_up.fetch_add(1, Relaxed);
                        return;
                    }
                    let jitter = rand::rng().random_range(0.5..1.5);
                    tokio::time::sleep(wait.mul_f64(jitter)).await;
                }
                match wait_for_admission(&api, event, buyer, &counters, &gate, deadline).await {
                    Some(token) => Some(token),
                    None => return,
                }
            } else {
                None
            };
            let body = json!({"event_id": event, "quantity": 1, "payment_method": "pm_card_visa",
                              "include_qr_image": false});
            let body = bytes::Bytes::from(serde_json::to_vec(&body).expect("JSON"));
            let key = format!("room-{event}-{}", buyer.id);
            for attempt in 0..=max_retries {
                if Instant::now() >= deadline {
                    counters.gave_up.fetch_add(1, Relaxed);
                    return;
                }
                let extra: Vec<(&str, &str)> =
                    admission.as_deref().map(|a| ("queue-admission", a)).into_iter().collect();
                let t = Instant::now();
                let reply = {
                    let _permit = gate.acquire().await;
                    counters.requests.fetch_add(1, Relaxed);
                    api.send_with(
                        hyper::Method::POST,
                        "/tickets/purchase",
                        Some(&buyer.auth),
                        Some(body.clone()),
                        Some(&key),
                        &extra,
                    )
                    .await
                };
                let wait = match reply {
                    Ok(r) if r.status == 201 => {
                        let _ = purchase.lock().expect("purchase").record(t.elapsed().as_micros() as u64);
                        counters.sold.fetch_add(1, Relaxed);
                        let now = chrono::Utc::now();
                        let mut last = last_sale.lock().expect("last sale");
                        *last = Some(last.map_or(now, |l| l.max(now)));
                        return;
                    }
                    Ok(r) if r.status == 409 && r.code() == "sold_out" => {
                        counters.sold_out.fetch_add(1, Relaxed);
                        return;
                    }
                    Ok(r) if r.status == 403 && r.code() == "not_admitted" => {
                        counters.not_admitted_403.fetch_add(1, Relaxed);
                        return;
                    }
                    Ok(r) if r.status == 503 => {
                        counters.overloaded_503.fetch_add(1, Relaxed);
                        r.retry_after.unwrap_or(Duration::from_secs(1))
                    }
                    Ok(_) => {
                        counters.other.fetch_add(1, Relaxed);
                        return;
                    }
                    Err(_) => {
                        counters.failures.fetch_add(1, Relaxed);
                        Duration::from_secs(1)
                    }
                };
                if attempt == max_retries {
                    counters.gave_up.fetch_add(1, Relaxed);
                    return;
                }
                let jitter = rand::rng().random_range(0.5..1.5);
                tokio::time::sleep(wait.mul_f64(jitter)).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let last_sale = *last_sale.lock().expect("last sale");
    Ok(RunResult {
        with_room,
        event,
        opens_at,
        counters: Arc::into_inner(counters).context("every buyer finished")?,
        join: join.lock().expect("join").clone(),
        purchase: purchase.lock().expect("purchase").clone(),
        last_sale_secs: last_sale.map(|l| (l - opens_at).num_milliseconds() as f64 / 1000.0),
        late_order: late_order.lock().expect("late order").clone(),
        elapsed: started.elapsed(),
    })
}

/// Polls the buyer's place until admitted (the admission token), told it is sold
/// out, or past the deadline (`None`).
async fn wait_for_admission(
    api: &Api,
    event: Uuid,
    buyer: &QueueBuyer,
    counters: &Counters,
    gate: &tokio::sync::Semaphore,
    deadline: Instant,
) -> Option<String> {
    while Instant::now() < deadline && !crate::interrupted() {
        let reply = {
            let _permit = gate.acquire().await;
            counters.requests.fetch_add(1, Relaxed);
            api.get(&format!("/events/{event}/queue/me"), Some(&buyer.auth)).await
        };
        let mut wait = POLL_NO_ESTIMATE;
        if let Ok(r) = reply
            && r.status == 200
            && let Ok(v) = r.json::<Value>()
        {
            if let Some(token) = v["admission"]["token"].as_str() {
                return Some(token.to_owned());
            }
            if v["state"] == "sold_out" || v["state"] == "expired" {
                counters.sold_out_in_queue.fetch_add(1, Relaxed);
                return None;
            }
            if let Some(secs) = v["estimated_wait_secs"].as_u64() {
                wait = Duration::from_secs(secs / 3).clamp(POLL_MIN, POLL_MAX);
            }
        }
        let jitter = rand::rng().random_range(0.8..1.2);
        tokio::time::sleep(wait.mul_f64(jitter)).await;
    }
    counters.gave_up.fetch_add(1, Relaxed);
    None
}

/// Spearman's rank correlation of two equally long series (ties get their average rank).
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            let avg = (i + j) as f64 / 2.0 + 1.0;
            for k in &idx[i..=j] {
                r[*k] = avg;
            }
            i = j + 1;
        }
        r
    }
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = (a.len() as f64 + 1.0) / 2.0;
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - mean) * (y - mean)).sum();
    let var = |r: &[f64]| r.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
    let denominator = (var(&ra) * var(&rb)).sqrt();
    (denominator > 0.0).then(|| cov / denominator)
}

async fn report(
    cli: &Cli,
    target: &Target,
    pool: &PgPool,
    started_at: String,
    runs: Vec<RunResult>,
) -> anyhow::Result<Report> {
    let args = &cli.sale;
    let mut facts = vec![fact(
        "sale",
        format!(
            "{} buyers want one place each of {}; joins within {} s before the opening, {:.0} % after it",
            args.room.queue_buyers,
            args.seats,
            args.room.join_window_secs,
            args.room.late_join_ratio * 100.0
        ),
    )];
    let mut figures = serde_json::Map::new();
    let mut outcomes = Vec::new();
    let mut latency = Vec::new();
    let mut checks = Vec::new();
    for run in &runs {
        let name = if run.with_room { "with_room" } else { "without_room" };
        let c = &run.counters;
        let tickets: i64 =
            sqlx::query_scalar("SELECT count(*) FROM tickets WHERE event_id = $1 AND status <> 'cancelled'")
                .bind(run.event)
                .fetch_one(pool)
                .await?;
        checks.push(Check::new(
            &format!("{name}: no place sold twice"),
            tickets <= i64::from(args.seats) && tickets as u64 == c.sold.load(Relaxed),
            format!("{tickets} tickets stored, {} sales acknowledged, {} places", c.sold.load(Relaxed), args.seats),
        ));
        let mut figure = json!({
            "sold": c.sold.load(Relaxed),
            "refused_sold_out_409": c.sold_out.load(Relaxed),
            "told_sold_out_in_queue": c.sold_out_in_queue.load(Relaxed),
            "overloaded_503": c.overloaded_503.load(Relaxed),
            "join_503": c.join_503.load(Relaxed),
            "not_admitted_403": c.not_admitted_403.load(Relaxed),
            "other": c.other.load(Relaxed),
            "transport_failures": c.failures.load(Relaxed),
            "gave_up": c.gave_up.load(Relaxed),
            "requests": c.requests.load(Relaxed),
            "last_sale_secs_after_opening": run.last_sale_secs,
            "elapsed_secs": run.elapsed.as_secs_f64(),
            "purchase_p99_ms": (!run.purchase.is_empty()).then(|| run.purchase.value_at_quantile(0.99) as f64 / 1000.0),
        });
        for (status, code, v) in [
            (201, "sold", c.sold.load(Relaxed)),
            (409, "sold_out", c.sold_out.load(Relaxed)),
            (503, "overloaded (each retry counted)", c.overloaded_503.load(Relaxed)),
            (200, "told sold out while queued", c.sold_out_in_queue.load(Relaxed)),
            (403, "not_admitted", c.not_admitted_403.load(Relaxed)),
        ] {
            outcomes.push(OutcomeRow { op: format!("purchase ({name})"), status, code: code.into(), count: v });
        }
        if !run.purchase.is_empty() {
            latency.push(LatencyRow::new(&format!("purchase ({name})"), &run.purchase));
        }
        if run.with_room {
            let (last_admission, admitted): (Option<chrono::DateTime<chrono::Utc>>, i64) =
                sqlx::query_as("SELECT max(admitted_at), count(admitted_at) FROM queue_entries WHERE event_id = $1")
                    .bind(run.event)
                    .fetch_one(pool)
                    .await?;
            let last_admission_secs = last_admission.map(|t| (t - run.opens_at).num_milliseconds() as f64 / 1000.0);
            let admitted_at: HashMap<Uuid, f64> = sqlx::query_as::<_, (Uuid, chrono::DateTime<chrono::Utc>)>(
                "SELECT user_id, admitted_at FROM queue_entries WHERE event_id = $1 AND admitted_at IS NOT NULL",
            )
            .bind(run.event)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|(u, t)| (u, t.timestamp_micros() as f64))
            .collect();
            let pairs: Vec<(f64, f64)> = run
                .late_order
                .iter()
                .enumerate()
                .filter_map(|(i, u)| admitted_at.get(u).map(|t| (i as f64, *t)))
                .collect();
            let (x, y): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
            let rho = spearman(&x, &y);
            // Places are the order admissions go in, and every late joiner has one even
            // when the sale sold out before their turn.
            let places: HashMap<Uuid, f64> = sqlx::query_as::<_, (Uuid, i64)>(
                "SELECT user_id, position FROM queue_entries
                  WHERE event_id = $1 AND NOT pre_queue AND position IS NOT NULL",
            )
            .bind(run.event)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|(u, p)| (u, p as f64))
            .collect();
            let placed: Vec<(f64, f64)> =
                run.late_order.iter().enumerate().filter_map(|(i, u)| places.get(u).map(|p| (i as f64, *p))).collect();
            let (px, py): (Vec<f64>, Vec<f64>) = placed.iter().copied().unzip();
            let rho_place = spearman(&px, &py);
            let join_p99 = (!run.join.is_empty()).then(|| run.join.value_at_quantile(0.99) as f64 / 1000.0);
            facts.push(fact(
                "with the room",
                format!(
                    "join p99 {}; last admission {} after the opening; {} admitted; late joiners' join order vs admission order: Spearman {} over {}, vs place in line: {} over {}",
                    join_p99.map_or("-".into(), |v| format!("{v:.1} ms")),
                    last_admission_secs.map_or("-".into(), |v| format!("{v:.1} s")),
                    admitted,
                    rho.map_or("-".into(), |r| format!("{r:.3}")),
                    pairs.len(),
                    rho_place.map_or("-".into(), |r| format!("{r:.3}")),
                    placed.len()
                ),
            ));
            figure["join_p99_ms"] = json!(join_p99);
            figure["last_admission_secs_after_opening"] = json!(last_admission_secs);
            figure["admitted"] = json!(admitted);
            figure["late_joiners_admitted"] = json!(pairs.len());
            figure["spearman_late_join_vs_admission"] = json!(rho);
            figure["late_joiners_placed"] = json!(placed.len());
            figure["spearman_late_join_vs_place"] = json!(rho_place);
            latency.push(LatencyRow::new("join", &run.join));
            checks.push(Check::new(
                "with_room: every sale went through an admission",
                c.sold.load(Relaxed) as i64 <= admitted,
                format!(
                    "{} sales, {admitted} admissions, {} refused 403 (admissions that lapsed first)",
                    c.sold.load(Relaxed),
                    c.not_admitted_403.load(Relaxed)
                ),
            ));
        }
        facts.push(fact(
            if run.with_room { "outcomes with the room" } else { "outcomes without the room" },
            format!(
                "{} sold, {} refused for want of places (409), {} × 503 on purchases, {} × 503 on joins, {} told sold out while queued, {} gave up; last sale {} after the opening",
                c.sold.load(Relaxed),
                c.sold_out.load(Relaxed),
                c.overloaded_503.load(Relaxed),
                c.join_503.load(Relaxed),
                c.sold_out_in_queue.load(Relaxed),
                c.gave_up.load(Relaxed),
                run.last_sale_secs.map_or("-".into(), |v| format!("{v:.1} s"))
            ),
        ));
        figures.insert(name.into(), figure);
    }
    let passed = !runs.is_empty() && checks.iter().all(|c| c.passed || !c.critical);
    Ok(Report {
        tool: "boxoffice-loadtest",
        scenario: "waiting-room".into(),
        mode: format!("rate {}, admissions for {} s", args.room.room_rate, args.room.admission_ttl_secs),
        target: target.description.clone(),
        started_at,
        config: json!({"queue_buyers": args.room.queue_buyers, "seats": args.seats,
                       "join_window_secs": args.room.join_window_secs, "late_join_ratio": args.room.late_join_ratio,
                       "room_rate": args.room.room_rate, "admission_ttl_secs": args.room.admission_ttl_secs,
                       "max_retries": args.max_retries, "duration_secs": cli.target.duration,
                       "nodes": target.base_urls.len()}),
        facts,
        figures: Value::Object(figures),
        rates: Vec::new(),
        outcomes,
        latency,
        timeline: Timeline { columns: Vec::new(), rows: Vec::new(), step_ms: 1000 },
        soak: None,
        checks,
        cpu: None,
        server_metrics: None,
        passed,
    })
}

#[cfg(test)]
mod tests {
    use super::spearman;

    #[test]
    fn spearman_is_one_for_the_same_order_and_handles_ties() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        let tied = spearman(&[1.0, 2.0, 3.0, 4.0], &[5.0, 5.0, 6.0, 6.0]).unwrap();
        assert!(tied > 0.8 && tied < 1.0, "{tied}");
        assert_eq!(spearman(&[1.0], &[1.0]), None);
    }
}
