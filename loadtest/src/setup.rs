//! Setup, not timed: an organizer, the buyers (registered concurrently; each
//! costs the server an argon2id hash), and the published events (one, or
//! `--events` of them) whose sales windows open a few seconds after setup ends.
//!
//! A buyer's access token expires (15 minutes by default), so each buyer also keeps
//! its refresh token and a moment, at a random point between half and three
//! quarters of the token's lifetime, when the sale should refresh it
//! ([`crate::sale::Sale::keep_tokens_fresh`]).

use crate::cli::{SaleArgs, Scenario};
use crate::http::{Api, Reply, bearer};
use crate::progress;
use crate::seats::SeatPlan;
use anyhow::{Context, bail};
use chrono::{DateTime, SubsecRound, Utc};
use hyper::header::HeaderValue;
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Attempts at one registration that failed without an answer (or with a 503).
const REGISTER_ATTEMPTS: u32 = 4;
/// Events created and published at once.
const CREATE_CONCURRENCY: usize = 8;
/// Without a terminal, a progress line every this many registrations.
const REGISTER_REPORT_EVERY: usize = 500;

pub struct Buyer {
    pub id: Uuid,
    session: Mutex<Session>,
}

/// A buyer's tokens.
struct Session {
    auth: HeaderValue,
    refresh_token: String,
    refresh_at: Instant,
}

impl Buyer {
    fn new(id: Uuid, reply: AuthReply) -> anyhow::Result<Self> {
        Ok(Self { id, session: Mutex::new(Session::new(reply)?) })
    }

    /// `Authorization: Bearer <access token>`.
    pub fn auth(&self) -> HeaderValue {
        self.session.lock().expect("session lock").auth.clone()
    }

    /// The refresh token, if the access token is due for a refresh at `now`.
    pub fn refresh_due(&self, now: Instant) -> Option<String> {
        let session = self.session.lock().expect("session lock");
        (session.refresh_at <= now).then(|| session.refresh_token.clone())
    }

    /// Takes the tokens of a successful POST /auth/refresh.
    pub fn refreshed(&self, reply: &Reply) -> anyhow::Result<()> {
        let reply: AuthReply = reply.json()?;
        *self.session.lock().expect("session lock") = Session::new(reply)?;
        Ok(())
    }

    /// A refresh failed: try again after `wait`.
    pub fn retry_refresh_after(&self, wait: Duration) {
        self.session.lock().expect("session lock").refresh_at = Instant::now() + wait;
    }
}

impl Session {
    fn new(reply: AuthReply) -> anyhow::Result<Self> {
        let lifetime = Duration::from_secs(reply.expires_in.max(1));
        let share = rand::rng().random_range(0.5..0.75);
        Ok(Self {
            auth: bearer(&reply.access_token)?,
            refresh_token: reply.refresh_token,
            refresh_at: Instant::now() + lifetime.mul_f64(share),
        })
    }
}

pub struct Setup {
    pub run_id: String,
    pub event_ids: Vec<Uuid>,
    /// Each event's seat plan.
    pub plan: SeatPlan,
    pub buyers: Vec<Buyer>,
    pub opens_at: DateTime<Utc>,
    pub register_secs: f64,
}

#[derive(Deserialize)]
struct AuthReply {
    user: UserReply,
    access_token: String,
    /// Seconds until the access token expires.
    expires_in: u64,
    refresh_token: String,
}

#[derive(Deserialize)]
struct UserReply {
    user_id: Uuid,
}

#[derive(Deserialize)]
struct EventReply {
    event_id: Uuid,
}

/// The password every generated account gets (accounts are per run, emails unique).
fn password(run_id: &str) -> String {
    format!("loadtest-{run_id}-password")
}

fn rate_limited(r: &Reply) -> anyhow::Error {
    anyhow::anyhow!(
        "registration was rate limited (429): start the server with AUTH_RATE_LIMIT_PER_MINUTE=1000000 \
         (or use --spawn, which does)\nserver said: {}",
        String::from_utf8_lossy(&r.body)
    )
}

pub async fn register(api: &Api, email: &str, name: &str, role: &str, run_id: &str) -> anyhow::Result<Buyer> {
    let body = json!({"email": email, "password": password(run_id), "name": name, "user_type": role});
    let mut last = String::new();
    for attempt in 0..REGISTER_ATTEMPTS {
        match api.post_json("/auth/register", None, &body).await {
            Ok(r) if r.status == 201 => {
                let auth: AuthReply = r.json()?;
                return Buyer::new(auth.user.user_id, auth);
            }
            Ok(r) if r.status == 429 => return Err(rate_limited(&r)),
            Ok(r) if r.status < 500 => {
                bail!("registering {email}: {} {}", r.status, String::from_utf8_lossy(&r.body))
            }
            Ok(r) => last = format!("{} {}", r.status, r.code()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
    }
    bail!("registering {email} failed {REGISTER_ATTEMPTS} times; last: {last}")
}

/// Registers `count` buyers, `concurrency` at a time, within `budget`.
async fn register_buyers(
    api: &Api,
    run_id: &str,
    count: u32,
    concurrency: usize,
    budget: Duration,
    show_progress: bool,
) -> anyhow::Result<Vec<Buyer>> {
    let bar = progress::bar(count as u64, "registering buyers", show_progress);
    let plain = !progress::on_terminal(show_progress);
    let next = Arc::new(AtomicUsize::new(0));
    let registered = Arc::new(AtomicUsize::new(0));
    let slots: Arc<Mutex<Vec<Option<Buyer>>>> = Arc::new(Mutex::new((0..count).map(|_| None).collect()));
    let deadline = Instant::now() + budget;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (api, run_id, next, slots, bar) =
            (api.clone(), run_id.to_owned(), next.clone(), slots.clone(), bar.clone());
        let registered = registered.clone();
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= count as usize {
                    return Ok(());
                }
                if Instant::now() >= deadline || crate::interrupted() {
                    bail!("registration did not finish in time (raise --setup-timeout-secs or lower --buyers)");
                }
                let buyer = register(
                    &api,
                    &format!("buyer-{run_id}-{i}@loadtest.example"),
                    &format!("Buyer {i}"),
                    "customer",
                    &run_id,
                )
                .await?;
                slots.lock().expect("slots lock")[i] = Some(buyer);
                bar.inc(1);
                let n = registered.fetch_add(1, Relaxed) + 1;
                if plain && n.is_multiple_of(REGISTER_REPORT_EVERY) {
                    eprintln!("loadtest: registered {n}/{count} buyers");
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.context("a registration task panicked")? {
            tasks.abort_all();
            bar.abandon();
            return Err(e);
        }
    }
    bar.finish_and_clear();
    let slots = std::mem::take(&mut *slots.lock().expect("slots lock"));
    slots.into_iter().map(|b| b.context("a buyer was not registered")).collect()
}

pub async fn prepare(api: &Api, args: &SaleArgs, show_progress: bool) -> anyhow::Result<Setup> {
    let run_id = format!("{:08x}", rand::random::<u32>());
    let organizer =
        register(api, &format!("organizer-{run_id}@loadtest.example"), "Loadtest Organizer", "organizer", &run_id)
            .await
            .context("registering the organizer")?;
    let started = Instant::now();
    let buyers = register_buyers(
        api,
        &run_id,
        args.buyers,
        args.register_concurrency,
        Duration::from_secs(args.setup_timeout_secs),
        show_progress,
    )
    .await?;
    let register_secs = started.elapsed().as_secs_f64();

    let events = args.event_count();
    let plan = if args.scenario == Scenario::Ga {
        SeatPlan::general(args.seats / events, args.ga_sections)
    } else {
        SeatPlan::new(args.seats / events, args.sections, args.seats_per_row)
    };
    // Whole milliseconds: the server keeps millisecond precision.
    let opens_at = (Utc::now() + chrono::Duration::seconds(args.lead_secs as i64)).trunc_subsecs(3);
    let organizer = Arc::new(organizer);
    let plan_json = Arc::new(plan.to_json());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CREATE_CONCURRENCY.min(events as usize) {
        let (api, organizer, plan_json, next, run_id) =
            (api.clone(), organizer.clone(), plan_json.clone(), next.clone(), run_id.clone());
        let (name, per_buyer_limit, hold_ttl_secs) = (args.scenario.name(), args.per_buyer_limit, args.hold_ttl_secs);
        tasks.spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= events as usize {
                    return Ok::<_, anyhow::Error>(made);
                }
                let body = json!({
                    "title": if events == 1 { format!("Loadtest {name} {run_id}") } else { format!("Loadtest {name} {run_id} #{}", i + 1) },
                    "description": "Created by boxoffice-loadtest.",
                    "category": "music",
                    "venue_name": "Loadtest Arena",
                    "venue_address": "127.0.0.1",
                    "event_date": Utc::now() + chrono::Duration::days(30),
                    "currency": "JPY",
                    "seat_map": *plan_json,
                    "sales_window": {
                        "opens_at": opens_at,
                        "per_buyer_limit": per_buyer_limit,
                        "hold_ttl_secs": hold_ttl_secs,
                    },
                });
                made.push((i, create_event(&api, &organizer, &body).await?));
            }
        });
    }
    let mut event_ids = vec![Uuid::nil(); events as usize];
    while let Some(done) = tasks.join_next().await {
        for (i, id) in done.context("an event-creating task panicked")?? {
            event_ids[i] = id;
        }
    }
    let buyers_per_event = u64::from(args.buyers / events);
    if args.scenario != Scenario::HoldStorm
        && buyers_per_event * u64::from(args.per_buyer_limit) < u64::from(plan.capacity())
    {
        eprintln!(
            "loadtest: note: about {buyers_per_event} buyers x {} tickets per event < {} seats, so the sale cannot sell out",
            args.per_buyer_limit,
            plan.capacity()
        );
    }
    Ok(Setup { run_id, event_ids, plan, buyers, opens_at, register_secs })
}

/// Creates and publishes one event; its id.
async fn create_event(api: &Api, organizer: &Buyer, body: &serde_json::Value) -> anyhow::Result<Uuid> {
    let created = api.post_json("/events/create", Some(&organizer.auth()), body).await?;
    if created.status != 201 {
        bail!("creating an event: {} {}", created.status, String::from_utf8_lossy(&created.body));
    }
    let event: EventReply = created.json()?;
    let published = api
        .send(hyper::Method::POST, &format!("/events/{}/publish", event.event_id), Some(&organizer.auth()), None, None)
        .await?;
    if !published.ok() {
        bail!("publishing an event: {} {}", published.status, String::from_utf8_lossy(&published.body));
    }
    Ok(event.event_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_between_half_and_three_quarters_of_their_life() {
        let reply = |token: &str| AuthReply {
            user: UserReply { user_id: Uuid::nil() },
            access_token: token.to_owned(),
            expires_in: 900,
            refresh_token: format!("refresh-{token}"),
        };
        let before = Instant::now();
        let buyer = Buyer::new(Uuid::nil(), reply("a")).expect("a buyer");
        assert_eq!(buyer.auth(), "Bearer a");
        assert!(buyer.refresh_due(before + Duration::from_secs(449)).is_none());
        let due = Instant::now() + Duration::from_secs(675);
        assert_eq!(buyer.refresh_due(due).as_deref(), Some("refresh-a"));
        let body = br#"{"user":{"user_id":"00000000-0000-0000-0000-000000000000"},"access_token":"b","expires_in":900,"refresh_token":"refresh-b","token_type":"Bearer"}"#;
        buyer.refreshed(&Reply::new(200, None, bytes::Bytes::from_static(body))).expect("refreshed");
        assert_eq!(buyer.auth(), "Bearer b");
        assert!(buyer.refresh_due(Instant::now()).is_none());
        buyer.retry_refresh_after(Duration::ZERO);
        assert_eq!(buyer.refresh_due(Instant::now()).as_deref(), Some("refresh-b"));
    }
}
