//! The measured phase: buyers driven through hold → pay (or the one-shot
//! purchase), a hold storm, or a browse mix, from the opening moment until sold
//! out, the time cap, or Ctrl-C.
//!
//! Two ways to drive it:
//! - closed loop (`--concurrency C`): C workers, each starting its next basket
//!   when the previous one ends;
//! - open loop (`--rate R`): baskets start on a fixed schedule whatever the
//!   responses, and every latency counts from the basket's *intended* start, so a
//!   stalled server shows up in the figures instead of slowing the generator down
//!   (coordinated omission).
//!
//! Rules a buyer follows: 503/429 are retried after `Retry-After` (with jitter,
//! capped, a bounded number of times); a lost race (seats taken, no adjacent
//! seats) re-picks a bounded number of times; `sold_out` for several places asks
//! again for one, and for one place ends the event's sale once its details show
//! nothing available or held (a hold may still be released), and the run once
//! every event's has ended. With several events (`many-events`) each buyer buys from one of
//! them (buyer `b` from event `b mod n`). A buyer is used by one basket at a
//! time (an idle queue hands them out), so the per-buyer limit is never tripped
//! by the generator itself. Every hold is paid for or released, and a purchase
//! whose answer was lost (timeout, 5xx) is looked up, so the checks can account
//! for every seat.
//!
//! Alongside, buyers' access tokens are refreshed before they expire, so a run may
//! last longer than a token (a soak); the refreshes count as requests.

use crate::cli::Scenario;
use crate::http::{Api, Exchange, Failure};
use crate::seats::{SeatBoard, SeatPlan};
use crate::setup::Buyer;
use crate::stats::{Op, Stats};
use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// After the sale ends, how long started baskets may still pay for or release their holds.
pub const DRAIN_GRACE: Duration = Duration::from_secs(15);
/// Wait after `sold_out` while holds of this generator are still unpaid.
const SOLD_OUT_RECHECK: Duration = Duration::from_millis(25);
/// Retry-After when a 503/429 carries none.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Wait when no buyer is idle (all busy in baskets).
const IDLE_BUYER_WAIT: Duration = Duration::from_millis(2);
/// Longest wait for `sale_not_open` before trying again.
const NOT_OPEN_WAIT_CAP: Duration = Duration::from_secs(10);
/// How often buyers' tokens are looked at for a refresh.
const REFRESH_SCAN: Duration = Duration::from_secs(1);
/// Wait after a failed token refresh before trying again.
const REFRESH_RETRY: Duration = Duration::from_secs(5);

static PAY_BODY: &[u8] = br#"{"payment_method":"pm_card_visa","include_qr_image":false}"#;

pub struct SaleConfig {
    pub scenario: Scenario,
    pub one_shot: bool,
    pub max_per_hold: u32,
    pub explicit_ratio: f64,
    pub browse_ratio: f64,
    pub max_attempts: u32,
    pub max_retries: u32,
    pub retry_cap: Duration,
    pub storm_holds: u64,
    pub rate: Option<f64>,
    pub concurrency: usize,
    pub max_in_flight: usize,
    pub seed: u64,
    pub duration: Duration,
}

/// A purchase the server acknowledged (or that a lookup showed was made).
pub struct Acked {
    pub buyer: u32,
    /// Index of the event in [`Sale::venues`].
    pub venue: u32,
    pub order_id: Uuid,
    pub tickets: Vec<(Uuid, Option<String>)>,
    /// Learned by looking the hold up after the purchase's own answer was lost.
    pub resolved: bool,
}

/// Counters the checks and the report need beyond the request statistics.
#[derive(Default)]
pub struct SaleCounters {
    pub purchased_seats: AtomicU64,
    pub storm_holds: AtomicU64,
    /// Seats whose fate is unknown: a purchase or one-shot with no answer even after retries and a lookup.
    pub unresolved_seats: AtomicU64,
    /// Holds that could not be released (the server expires them after their TTL).
    pub abandoned_holds: AtomicU64,
    /// Open loop: arrivals that found every buyer busy.
    pub no_idle_buyer: AtomicU64,
    /// Baskets started.
    pub baskets: AtomicU64,
}

enum Next {
    /// The buyer may go again (if they have allowance left).
    Again,
    /// The buyer can buy no more.
    BuyerDone,
}

/// One request to send (and retry).
struct Call<'a> {
    op: Op,
    method: Method,
    path: &'a str,
    auth: Option<&'a HeaderValue>,
    body: Option<Bytes>,
    /// `Idempotency-Key`: a retry is the same request.
    key: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn new(op: Op, method: Method, path: &'a str, auth: Option<&'a HeaderValue>) -> Self {
        Self { op, method, path, auth, body: None, key: None }
    }

    fn post(op: Op, path: &'a str, auth: &'a HeaderValue, body: Bytes) -> Self {
        Self { body: Some(body), ..Self::new(op, Method::POST, path, Some(auth)) }
    }

    fn key(self, key: &'a str) -> Self {
        Self { key: Some(key), ..self }
    }
}

#[derive(Serialize)]
struct HoldBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    seats: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quantity: Option<u32>,
    /// General admission: the section the places are in.
    #[serde(skip_serializing_if = "Option::is_none")]
    section: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    allow_split: bool,
}

#[derive(Serialize)]
struct OneShotBody<'a> {
    event_id: Uuid,
    #[serde(flatten)]
    selection: HoldBody<'a>,
    payment_method: &'static str,
    include_qr_image: bool,
}

#[derive(Deserialize)]
struct HoldReply {
    hold_id: Uuid,
    #[serde(default)]
    seats: Vec<String>,
    quantity: u32,
}

#[derive(Deserialize)]
struct TicketReply {
    ticket_id: Uuid,
    #[serde(default)]
    seat_number: Option<String>,
}

#[derive(Deserialize)]
struct PurchaseReply {
    order_id: Uuid,
    tickets: Vec<TicketReply>,
}

#[derive(Deserialize)]
struct HoldView {
    status: String,
    #[serde(default)]
    tickets: Vec<TicketReply>,
}

/// One event on sale, with what the generator knows of it. Every event of a run
/// has the same seat plan.
pub struct Venue {
    pub event_id: Uuid,
    holds_path: String,
    details_path: String,
    board: SeatBoard,
    /// The server answered `sold_out` with nothing of ours still held.
    sold_out: AtomicBool,
    /// General admission: each section's name, and whether it answered `sold_out` for one place.
    ga_sections: Vec<(String, AtomicBool)>,
}

impl Venue {
    fn new(event_id: Uuid, plan: &SeatPlan) -> Self {
        Self {
            event_id,
            holds_path: format!("/events/{event_id}/holds"),
            details_path: format!("/events/{event_id}/details"),
            board: SeatBoard::new(if plan.is_general() { 0 } else { plan.capacity() }),
            sold_out: AtomicBool::new(false),
            ga_sections: if plan.is_general() {
                (0..plan.sections()).map(|s| (SeatPlan::section_name(s), AtomicBool::new(false))).collect()
            } else {
                Vec::new()
            },
        }
    }

    /// General admission: a section not seen sold out, at random; `None` when every one was.
    fn ga_section(&self, rng: &mut SmallRng) -> Option<&str> {
        let open: Vec<&str> =
            self.ga_sections.iter().filter(|(_, full)| !full.load(Relaxed)).map(|(name, _)| name.as_str()).collect();
        (!open.is_empty()).then(|| open[rng.random_range(0..open.len())])
    }

    /// General admission: `section` answered `sold_out` for one place; whether another may not have.
    fn ga_full(&self, section: &str) -> bool {
        for (name, full) in &self.ga_sections {
            if name == section {
                full.store(true, Relaxed);
            }
        }
        self.ga_sections.iter().any(|(_, full)| !full.load(Relaxed))
    }
}

pub struct Sale {
    api: Api,
    pub cfg: SaleConfig,
    /// The events on sale; buyer `b` buys from `venues[b % len]`.
    pub venues: Vec<Venue>,
    /// Each event's seat plan.
    pub plan: SeatPlan,
    venues_sold_out: AtomicUsize,
    pub buyers: Vec<Buyer>,
    allowance: Vec<AtomicU32>,
    idle: Mutex<VecDeque<u32>>,
    active_buyers: AtomicUsize,
    pub stats: Arc<Stats>,
    opens_at: Instant,
    deadline: Instant,
    drain_deadline: Instant,
    done: AtomicBool,
    ended: Mutex<Option<(Instant, String)>>,
    pub acked: Mutex<Vec<Acked>>,
    /// Every hold the server acknowledged.
    pub hold_ids: Mutex<Vec<Uuid>>,
    pub counters: SaleCounters,
    pub sold_out_at: OnceLock<Instant>,
    /// With watchers: when each seat's hold was acknowledged.
    pub hold_times: Option<Arc<crate::watchers::HoldTimes>>,
}

/// `wait` capped, times a random factor in [0.5, 1.5), capped again.
fn jitter(wait: Duration, cap: Duration) -> Duration {
    wait.min(cap).mul_f64(0.5 + rand::random::<f64>()).min(cap)
}

impl Sale {
    pub fn new(
        api: Api,
        cfg: SaleConfig,
        event_ids: &[Uuid],
        plan: SeatPlan,
        buyers: Vec<Buyer>,
        per_buyer_limit: u32,
        opens_at: Instant,
    ) -> Self {
        let deadline = opens_at + cfg.duration;
        let seconds = (cfg.duration + DRAIN_GRACE).as_secs() as usize + 5;
        let mut order: Vec<u32> = (0..buyers.len() as u32).collect();
        // Buyers arrive in no particular order.
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        Self {
            venues: event_ids.iter().map(|id| Venue::new(*id, &plan)).collect(),
            venues_sold_out: AtomicUsize::new(0),
            allowance: buyers.iter().map(|_| AtomicU32::new(per_buyer_limit)).collect(),
            active_buyers: AtomicUsize::new(buyers.len()),
            idle: Mutex::new(order.into()),
            stats: Arc::new(Stats::new(opens_at, seconds)),
            api,
            cfg,
            plan,
            buyers,
            opens_at,
            deadline,
            drain_deadline: deadline + DRAIN_GRACE,
            done: AtomicBool::new(false),
            ended: Mutex::new(None),
            acked: Mutex::new(Vec::new()),
            hold_ids: Mutex::new(Vec::new()),
            counters: SaleCounters::default(),
            sold_out_at: OnceLock::new(),
            hold_times: None,
        }
    }

    /// Seats on sale over every event.
    pub fn capacity(&self) -> u64 {
        u64::from(self.plan.capacity()) * self.venues.len() as u64
    }

    pub fn venue_of(&self, b: u32) -> &Venue {
        &self.venues[b as usize % self.venues.len()]
    }

    /// `quantity` more (or, negative, fewer) seats held by this generator.
    fn held(&self, quantity: i64) {
        self.stats.live.seats_held.fetch_add(quantity, Relaxed);
    }

    /// When the sale ended and why.
    pub fn ended(&self) -> Option<(Instant, String)> {
        self.ended.lock().expect("end lock").clone()
    }

    fn finish(&self, reason: &str) {
        if !self.done.swap(true, Relaxed) {
            *self.ended.lock().expect("end lock") = Some((Instant::now(), reason.to_owned()));
        }
    }

    /// No new baskets or attempts.
    fn stopping(&self) -> bool {
        if self.done.load(Relaxed) {
            return true;
        }
        if crate::interrupted() {
            self.finish("interrupted");
            return true;
        }
        if Instant::now() >= self.deadline {
            self.finish("time cap (--duration)");
            return true;
        }
        false
    }

    /// Started baskets must finish paying or releasing by now.
    fn draining_over(&self) -> bool {
        Instant::now() >= self.drain_deadline || crate::interrupted()
    }

    /// Activates the event's actor and opens `connections` pooled connections, before the opening moment.
    pub async fn warm_up(&self, connections: usize) -> anyhow::Result<()> {
        for venue in &self.venues {
            let details = self.api.get(&venue.details_path, None).await?;
            if !details.ok() {
                anyhow::bail!("warm-up: GET {} answered {}", venue.details_path, details.status);
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..connections {
            let api = self.api.clone();
            tasks.spawn(async move { api.get("/healthz", None).await.map(|_| ()) });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        Ok(())
    }

    /// Runs the sale from the opening moment; returns when it is over and drained.
    pub async fn run(self: &Arc<Self>) {
        tokio::time::sleep_until(self.opens_at.into()).await;
        match self.cfg.rate {
            Some(rate) => self.open_loop(rate).await,
            None => self.closed_loop().await,
        }
        self.stopping();
        self.finish("ended");
    }

    /// Refreshes every buyer's access token when it is due, until `stop` is set.
    pub async fn keep_tokens_fresh(self: Arc<Self>, stop: Arc<AtomicBool>) {
        while !stop.load(Relaxed) {
            tokio::time::sleep(REFRESH_SCAN).await;
            for buyer in &self.buyers {
                if stop.load(Relaxed) {
                    return;
                }
                let Some(token) = buyer.refresh_due(Instant::now()) else { continue };
                let body = serde_json::to_vec(&serde_json::json!({ "refresh_token": token }))
                    .expect("request bodies serialise");
                let call =
                    Call { body: Some(body.into()), ..Call::new(Op::Refresh, Method::POST, "/auth/refresh", None) };
                let refreshed = match self.call(call, Instant::now(), true).await {
                    Ok(r) if r.status == 200 => buyer.refreshed(&r).is_ok(),
                    _ => false,
                };
                if !refreshed {
                    buyer.retry_refresh_after(REFRESH_RETRY);
                }
            }
        }
    }

    async fn closed_loop(self: &Arc<Self>) {
        let mut workers = tokio::task::JoinSet::new();
        for w in 0..self.cfg.concurrency.max(1) {
            let sale = Arc::clone(self);
            workers.spawn(async move {
                let mut rng = SmallRng::seed_from_u64(sale.cfg.seed ^ (w as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                while !sale.stopping() {
                    sale.one_arrival(&mut rng, Instant::now()).await;
                }
            });
        }
        while workers.join_next().await.is_some() {}
    }

    async fn open_loop(self: &Arc<Self>, rate: f64) {
        let permits = Arc::new(tokio::sync::Semaphore::new(self.cfg.max_in_flight.max(1)));
        let start = self.opens_at;
        let mut tasks = tokio::task::JoinSet::new();
        let mut i: u64 = 0;
        while !self.stopping() {
            let intended = start + Duration::from_secs_f64(i as f64 / rate.max(0.001));
            tokio::time::sleep_until(intended.into()).await;
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
            let sale = Arc::clone(self);
            let seed = self.cfg.seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            tasks.spawn(async move {
                let mut rng = SmallRng::seed_from_u64(seed);
                sale.one_arrival(&mut rng, intended).await;
                drop(permit);
            });
            i += 1;
            // Reap finished tasks so the set stays small.
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }

    /// One basket (or one browse operation) starting at `intended`.
    async fn one_arrival(&self, rng: &mut SmallRng, intended: Instant) {
        if self.cfg.scenario == Scenario::Browse && rng.random_bool(self.cfg.browse_ratio.clamp(0.0, 1.0)) {
            self.browse(rng, intended).await;
            return;
        }
        let Some(b) = self.idle.lock().expect("idle lock").pop_front() else {
            if self.active_buyers.load(Relaxed) == 0 {
                self.finish("every buyer reached the per-buyer limit");
            } else if self.cfg.rate.is_some() {
                self.counters.no_idle_buyer.fetch_add(1, Relaxed);
            } else {
                tokio::time::sleep(IDLE_BUYER_WAIT).await;
            }
            return;
        };
        self.counters.baskets.fetch_add(1, Relaxed);
        let next = self.basket(b, rng, intended).await;
        let exhausted = match next {
            Next::BuyerDone => {
                self.allowance[b as usize].store(0, Relaxed);
                true
            }
            Next::Again => self.allowance[b as usize].load(Relaxed) == 0,
        };
        if exhausted {
            if self.active_buyers.fetch_sub(1, Relaxed) == 1 {
                self.finish("every buyer reached the per-buyer limit");
            }
        } else {
            self.idle.lock().expect("idle lock").push_back(b);
        }
    }

    /// One request, retried on 503/429 (after Retry-After), timeouts and transport errors;
    /// latency counts from `first_start` for the first attempt. `finishing`: part of a basket
    /// already holding seats, so it may run into the drain grace.
    async fn call(&self, call: Call<'_>, first_start: Instant, finishing: bool) -> Exchange {
        let Call { op, method, path, auth, body, key } = call;
        let mut started = first_start;
        let mut attempt = 0;
        loop {
            let exchange = self.api.send(method.clone(), path, auth, body.clone(), key).await;
            let now = Instant::now();
            self.stats.record(op, now.saturating_duration_since(started), &exchange, now);
            let wait = match &exchange {
                Ok(r) if r.status == 503 || r.status == 429 => r.retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
                Ok(_) => return exchange,
                Err(Failure::Timeout) => Duration::ZERO,
                Err(Failure::Transport(_)) => Duration::from_millis(20 << attempt.min(6)),
            };
            let may_retry =
                attempt < self.cfg.max_retries && if finishing { !self.draining_over() } else { !self.stopping() };
            if !may_retry {
                return exchange;
            }
            attempt += 1;
            tokio::time::sleep(jitter(wait, self.cfg.retry_cap)).await;
            started = Instant::now();
        }
    }

    async fn basket(&self, b: u32, rng: &mut SmallRng, intended: Instant) -> Next {
        let left = self.allowance[b as usize].load(Relaxed);
        if left == 0 {
            return Next::BuyerDone;
        }
        let mut quantity = rng.random_range(1..=self.cfg.max_per_hold.clamp(1, left));
        let general = self.plan.is_general();
        let mut explicit = !general && rng.random_bool(self.cfg.explicit_ratio.clamp(0.0, 1.0));
        let mut allow_split = false;
        let mut start = intended;
        let auth = &self.buyers[b as usize].auth();
        let venue = self.venue_of(b);
        if venue.sold_out.load(Relaxed) {
            return Next::BuyerDone;
        }
        for attempt in 0..self.cfg.max_attempts.max(1) {
            if self.stopping() {
                return Next::Again;
            }
            let seats = if explicit { venue.board.pick(&self.plan, quantity, rng) } else { None };
            let section = if general { venue.ga_section(rng) } else { None };
            if general && section.is_none() {
                // Every section answered `sold_out` for one place.
                return self.sold_out_for_one(venue).await;
            }
            let selection = HoldBody {
                seats: seats.as_deref(),
                quantity: seats.is_none().then_some(quantity),
                section,
                allow_split: !general && seats.is_none() && allow_split,
            };
            let key = Uuid::new_v4().simple().to_string();
            let exchange = if self.cfg.one_shot {
                self.held(i64::from(quantity));
                let body = OneShotBody {
                    event_id: venue.event_id,
                    selection,
                    payment_method: "pm_card_visa",
                    include_qr_image: false,
                };
                let body = serde_json::to_vec(&body).expect("request bodies serialise");
                let call = Call::post(Op::OneShot, "/tickets/purchase", auth, body.into()).key(&key);
                let exchange = self.call(call, start, false).await;
                if !matches!(&exchange, Ok(r) if r.status == 201) {
                    self.held(-i64::from(quantity));
                }
                exchange
            } else {
                let body = serde_json::to_vec(&selection).expect("request bodies serialise");
                self.call(Call::post(Op::Hold, &venue.holds_path, auth, body.into()).key(&key), start, false).await
            };
            start = Instant::now();
            let reply = match exchange {
                Ok(r) => r,
                Err(_) => {
                    if self.cfg.one_shot {
                        // Retried with the same Idempotency-Key and still no answer: the outcome is unknown.
                        self.counters.unresolved_seats.fetch_add(u64::from(quantity), Relaxed);
                    }
                    return Next::Again;
                }
            };
            if reply.status == 201 {
                if self.cfg.one_shot {
                    return match reply.json::<PurchaseReply>() {
                        Ok(p) => {
                            self.acknowledge(b, p.order_id, p.tickets, quantity, false);
                            self.stats.record_latency(Op::Basket, intended.elapsed());
                            Next::Again
                        }
                        Err(_) => {
                            self.held(-i64::from(quantity));
                            self.counters.unresolved_seats.fetch_add(u64::from(quantity), Relaxed);
                            Next::Again
                        }
                    };
                }
                let Ok(hold) = reply.json::<HoldReply>() else { return Next::Again };
                self.hold_ids.lock().expect("hold ids lock").push(hold.hold_id);
                if let Some(times) = &self.hold_times {
                    times.record(&hold.seats, Instant::now());
                }
                for seat in &hold.seats {
                    if let Some(i) = self.plan.index(seat) {
                        venue.board.mark(i);
                    }
                }
                self.held(i64::from(hold.quantity));
                if self.cfg.scenario == Scenario::HoldStorm {
                    if self.counters.storm_holds.fetch_add(1, Relaxed) + 1 >= self.cfg.storm_holds {
                        self.finish("hold cap reached (--storm-holds)");
                    }
                    self.release(b, &hold).await;
                    return Next::Again;
                }
                return self.pay(b, hold, intended).await;
            }
            match reply.code() {
                "seats_taken" => {
                    if let Some(p) = &reply.problem {
                        for seat in &p.seats {
                            if let Some(i) = self.plan.index(seat) {
                                venue.board.mark(i);
                            }
                        }
                    }
                    explicit = explicit && attempt == 0;
                }
                "no_adjacent_seats" => {
                    allow_split = true;
                    explicit = false;
                }
                // Fewer places than asked for are free: a buyer takes what is left.
                "sold_out" if quantity > 1 && self.cfg.scenario != Scenario::HoldStorm => {
                    quantity = 1;
                    explicit = false;
                }
                // General admission: this section is full; another may not be.
                "sold_out" if section.is_some_and(|s| venue.ga_full(s)) => {}
                "sold_out" => return self.sold_out_for_one(venue).await,
                "limit_exceeded" => return Next::BuyerDone,
                "sale_not_open" => {
                    let wait = self.opens_at.saturating_duration_since(Instant::now()) + Duration::from_millis(5);
                    tokio::time::sleep(wait.min(NOT_OPEN_WAIT_CAP)).await;
                }
                _ => return Next::Again,
            }
        }
        Next::Again
    }

    /// The server had not even one place: sold out for good once it has nothing left
    /// that a release could free; the event's buyers are done then, and the run once
    /// every event is. Otherwise wait a little and go again.
    async fn sold_out_for_one(&self, venue: &Venue) -> Next {
        if self.cfg.scenario != Scenario::HoldStorm
            && crate::checks::counts(&self.api, venue.event_id).await.is_ok_and(|c| c.available == 0 && c.held == 0)
        {
            if !venue.sold_out.swap(true, Relaxed)
                && self.venues_sold_out.fetch_add(1, Relaxed) + 1 == self.venues.len()
            {
                self.finish("sold out");
            }
            return Next::BuyerDone;
        }
        // Places may come back (a released hold): every section is worth asking again.
        venue.ga_sections.iter().for_each(|(_, full)| full.store(false, Relaxed));
        tokio::time::sleep(SOLD_OUT_RECHECK).await;
        Next::Again
    }

    async fn pay(&self, b: u32, hold: HoldReply, basket_start: Instant) -> Next {
        let auth = &self.buyers[b as usize].auth();
        let path = format!("/holds/{}/purchase", hold.hold_id);
        let call = Call::post(Op::Purchase, &path, auth, Bytes::from_static(PAY_BODY));
        let exchange = self.call(call, Instant::now(), true).await;
        match exchange {
            Ok(r) if r.status == 201 => match r.json::<PurchaseReply>() {
                Ok(p) => {
                    self.acknowledge(b, p.order_id, p.tickets, hold.quantity, false);
                    self.stats.record_latency(Op::Basket, basket_start.elapsed());
                }
                Err(_) => self.resolve(b, &hold).await,
            },
            // A definite refusal (declined, seats gone, hold expired): the hold was not bought.
            Ok(r) if r.status < 500 && r.status != 202 => self.release(b, &hold).await,
            // Pending, a server error or no answer: the hold itself says what happened.
            _ => self.resolve(b, &hold).await,
        }
        Next::Again
    }

    /// Looks a hold up after its purchase's answer was lost or unclear.
    async fn resolve(&self, b: u32, hold: &HoldReply) {
        let auth = &self.buyers[b as usize].auth();
        let path = format!("/holds/{}", hold.hold_id);
        let exchange = self.call(Call::new(Op::GetHold, Method::GET, &path, Some(auth)), Instant::now(), true).await;
        let view = match &exchange {
            Ok(r) if r.ok() => r.json::<HoldView>().ok(),
            _ => None,
        };
        match view {
            Some(v) if v.status == "purchased" => self.acknowledge(b, hold.hold_id, v.tickets, hold.quantity, true),
            Some(v) if v.status == "active" => self.release(b, hold).await,
            Some(_) => self.forget(b, hold),
            None => {
                self.held(-i64::from(hold.quantity));
                self.counters.unresolved_seats.fetch_add(u64::from(hold.quantity), Relaxed);
            }
        }
    }

    async fn release(&self, b: u32, hold: &HoldReply) {
        let auth = &self.buyers[b as usize].auth();
        let path = format!("/holds/{}", hold.hold_id);
        let exchange = self.call(Call::new(Op::Release, Method::DELETE, &path, Some(auth)), Instant::now(), true).await;
        match exchange {
            // 409: no longer active (expired, or its purchase was refused).
            Ok(r) if r.ok() || r.status == 409 || r.status == 404 => self.forget(b, hold),
            _ => {
                self.counters.abandoned_holds.fetch_add(1, Relaxed);
                self.held(-i64::from(hold.quantity));
            }
        }
    }

    /// The hold's seats are free again.
    fn forget(&self, b: u32, hold: &HoldReply) {
        let board = &self.venue_of(b).board;
        for seat in &hold.seats {
            if let Some(i) = self.plan.index(seat) {
                board.unmark(i);
            }
        }
        self.held(-i64::from(hold.quantity));
    }

    fn acknowledge(&self, b: u32, order_id: Uuid, tickets: Vec<TicketReply>, quantity: u32, resolved: bool) {
        let now = Instant::now();
        let n = tickets.len() as u64;
        let _ = self.allowance[b as usize].fetch_update(Relaxed, Relaxed, |a| Some(a.saturating_sub(quantity)));
        self.held(-i64::from(quantity));
        self.stats.add_tickets(n, now);
        for t in &tickets {
            if let Some(i) = t.seat_number.as_deref().and_then(|s| self.plan.index(s)) {
                self.venue_of(b).board.mark(i);
            }
        }
        let venue = (b as usize % self.venues.len()) as u32;
        let tickets = tickets.into_iter().map(|t| (t.ticket_id, t.seat_number)).collect();
        self.acked.lock().expect("acked lock").push(Acked { buyer: b, venue, order_id, tickets, resolved });
        let sold = self.counters.purchased_seats.fetch_add(n, Relaxed) + n;
        if sold >= self.capacity() && self.sold_out_at.set(now).is_ok() {
            self.finish("sold out");
        }
    }

    async fn browse(&self, rng: &mut SmallRng, intended: Instant) {
        const SEARCHES: [&str; 5] = [
            "/events/search?q=loadtest",
            "/events/search?category=music&sort=date",
            "/events/search?q=arena&available=true",
            "/events/search?sort=-date&page=2",
            "/events/search?max_price=10000&sort=price",
        ];
        let (op, path) = if rng.random_bool(0.5) {
            (Op::Search, SEARCHES[rng.random_range(0..SEARCHES.len())])
        } else {
            (Op::Details, self.venues[rng.random_range(0..self.venues.len())].details_path.as_str())
        };
        let _ = self.call(Call::new(op, Method::GET, path, None), intended, false).await;
    }
}
