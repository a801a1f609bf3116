//! What a run measured: a latency histogram per operation (HdrHistogram, in µs,
//! 1 µs to 60 s at 3 significant digits), request counts by outcome (operation,
//! status, problem `code`), and per-second counters for the timeline and the live
//! progress line.
//!
//! Over time: every request's latency also goes into a histogram of the current
//! second (closed into that second's p50/p99 when a request of a later second is
//! recorded, or by [`Stats::close_latency`]) and into a histogram of its minute, so
//! a long run can compare its first and last minutes. The server's resident set
//! size is sampled into the same per-second rows by the caller.
//!
//! Outcomes fall in three classes: success (2xx); a lost race or business refusal
//! (409 with a code a real buyer would see in a rush: sold out, seats taken, …);
//! and errors (everything else, including shed 503s, timeouts and transport
//! failures).

use crate::http::Exchange;
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// 409 codes that are a lost race or a buyer-visible refusal, not a failure.
pub const LOST_RACE_CODES: [&str; 7] = [
    "sold_out",
    "seats_taken",
    "no_adjacent_seats",
    "limit_exceeded",
    "seats_gone",
    "hold_not_active",
    "sale_not_open",
];

/// Longest latency the histograms keep exactly (longer ones are clamped).
const MAX_LATENCY_US: u64 = 60_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Hold,
    Purchase,
    OneShot,
    Release,
    GetHold,
    Details,
    Search,
    Tickets,
    /// POST /auth/refresh: a buyer's access token renewed before it expires.
    Refresh,
    /// A whole basket: first hold attempt to tickets in hand (successful baskets only).
    Basket,
}

impl Op {
    pub const ALL: [Op; 10] = [
        Op::Hold,
        Op::Purchase,
        Op::OneShot,
        Op::Release,
        Op::GetHold,
        Op::Details,
        Op::Search,
        Op::Tickets,
        Op::Refresh,
        Op::Basket,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Hold => "hold",
            Op::Purchase => "purchase",
            Op::OneShot => "one_shot_purchase",
            Op::Release => "release",
            Op::GetHold => "get_hold",
            Op::Details => "details",
            Op::Search => "search",
            Op::Tickets => "user_tickets",
            Op::Refresh => "token_refresh",
            Op::Basket => "basket",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Ok,
    LostRace,
    Error,
}

pub fn classify(exchange: &Exchange) -> Class {
    match exchange {
        Ok(r) if r.ok() => Class::Ok,
        Ok(r) if r.status == 409 && LOST_RACE_CODES.contains(&r.code()) => Class::LostRace,
        _ => Class::Error,
    }
}

/// Counters of one second of the measured phase.
#[derive(Default)]
pub struct Second {
    pub requests: AtomicU64,
    pub holds: AtomicU64,
    pub purchases: AtomicU64,
    pub tickets: AtomicU64,
    pub releases: AtomicU64,
    pub browses: AtomicU64,
    pub lost_races: AtomicU64,
    pub errors: AtomicU64,
    /// Median latency of the requests that ended in this second, µs (0: none).
    pub p50_us: AtomicU64,
    /// 99th percentile latency of the requests that ended in this second, µs (0: none).
    pub p99_us: AtomicU64,
    /// The server's resident set size sampled in this second, KiB (0: unknown).
    pub server_rss_kib: AtomicU64,
}

/// Running totals for the progress line.
#[derive(Default)]
pub struct Live {
    pub requests: AtomicU64,
    pub holds_ok: AtomicU64,
    pub purchases_ok: AtomicU64,
    pub tickets_sold: AtomicU64,
    pub releases_ok: AtomicU64,
    pub browses_ok: AtomicU64,
    pub lost_races: AtomicU64,
    pub errors: AtomicU64,
    /// Seats in holds this generator has and has not yet paid for or released.
    pub seats_held: AtomicI64,
}

/// Counts one request of `op` that ended as `class` in a bucket of the timeline.
fn count(bucket: &Second, op: Op, class: Class) {
    bucket.requests.fetch_add(1, Relaxed);
    let counter = match class {
        Class::Ok => match op {
            Op::Hold => &bucket.holds,
            Op::Purchase | Op::OneShot => &bucket.purchases,
            Op::Release => &bucket.releases,
            Op::Search | Op::Details => &bucket.browses,
            Op::GetHold | Op::Tickets | Op::Refresh | Op::Basket => return,
        },
        Class::LostRace => &bucket.lost_races,
        Class::Error => &bucket.errors,
    };
    counter.fetch_add(1, Relaxed);
}

/// Count of responses by (operation, status) then problem code.
type OutcomeMap = HashMap<(Op, u16), HashMap<String, u64>>;

/// Request latencies over time, behind one lock.
struct Window {
    /// The second `current` collects (a request recorded a little late, after a later
    /// second has begun, counts in the later one).
    second: usize,
    current: Histogram<u64>,
    /// One histogram per minute of the timeline, made on first use.
    minutes: Vec<Option<Histogram<u64>>>,
}

/// The fine timeline's step: a sale shorter than [`FINE_SPAN`] is charted at this step.
pub const FINE_STEP: Duration = Duration::from_millis(100);
/// How much of the start of the timeline is also kept at [`FINE_STEP`].
pub const FINE_SPAN: Duration = Duration::from_secs(5);

pub struct Stats {
    origin: Instant,
    histograms: Vec<Mutex<Histogram<u64>>>,
    outcomes: Mutex<OutcomeMap>,
    seconds: Box<[Second]>,
    /// The first [`FINE_SPAN`] again, in [`FINE_STEP`] buckets (counts only, no latency or RSS).
    fine: Box<[Second]>,
    window: Mutex<Window>,
    pub live: Live,
    /// A few distinct transport error messages, for the report.
    transport_samples: Mutex<Vec<String>>,
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_LATENCY_US)
}

impl Stats {
    /// `origin` is second 0 of the timeline; it keeps `seconds` seconds.
    pub fn new(origin: Instant, seconds: usize) -> Self {
        let seconds = seconds.max(1);
        Self {
            origin,
            histograms: Op::ALL.iter().map(|_| Mutex::new(new_histogram())).collect(),
            outcomes: Mutex::new(HashMap::new()),
            seconds: (0..seconds).map(|_| Second::default()).collect(),
            fine: (0..FINE_SPAN.as_millis() / FINE_STEP.as_millis()).map(|_| Second::default()).collect(),
            window: Mutex::new(Window {
                second: 0,
                current: new_histogram(),
                minutes: (0..seconds.div_ceil(60)).map(|_| None).collect(),
            }),
            live: Live::default(),
            transport_samples: Mutex::new(Vec::new()),
        }
    }

    pub fn origin(&self) -> Instant {
        self.origin
    }

    fn second_index(&self, at: Instant) -> usize {
        let i = at.saturating_duration_since(self.origin).as_secs() as usize;
        i.min(self.seconds.len() - 1)
    }

    pub fn second(&self, at: Instant) -> &Second {
        &self.seconds[self.second_index(at)]
    }

    pub fn seconds(&self) -> &[Second] {
        &self.seconds
    }

    /// The first [`FINE_SPAN`] of the timeline in [`FINE_STEP`] buckets.
    pub fn fine(&self) -> &[Second] {
        &self.fine
    }

    fn fine_bucket(&self, at: Instant) -> Option<&Second> {
        let i = at.saturating_duration_since(self.origin).as_millis() / FINE_STEP.as_millis();
        self.fine.get(usize::try_from(i).ok()?)
    }

    /// Records one request that took `latency` and ended at `at`.
    pub fn record(&self, op: Op, latency: Duration, exchange: &Exchange, at: Instant) -> Class {
        let us = micros(latency);
        self.histograms[op.index()].lock().expect("histogram lock").saturating_record(us);
        self.record_over_time(self.second_index(at), us);
        let (status, code): (u16, &str) = match exchange {
            Ok(r) if r.ok() => (r.status, ""),
            Ok(r) => (r.status, r.code()),
            Err(crate::http::Failure::Timeout) => (0, "timeout"),
            Err(crate::http::Failure::Transport(msg)) => {
                let mut samples = self.transport_samples.lock().expect("samples lock");
                if samples.len() < 5 && !samples.contains(msg) {
                    samples.push(msg.clone());
                }
                (0, "transport")
            }
        };
        {
            let mut outcomes = self.outcomes.lock().expect("outcome lock");
            let codes = outcomes.entry((op, status)).or_default();
            match codes.get_mut(code) {
                Some(n) => *n += 1,
                None => {
                    codes.insert(code.to_owned(), 1);
                }
            }
        }
        let class = classify(exchange);
        count(self.second(at), op, class);
        if let Some(bucket) = self.fine_bucket(at) {
            count(bucket, op, class);
        }
        self.live.requests.fetch_add(1, Relaxed);
        let live = &self.live;
        match class {
            Class::Ok => match op {
                Op::Hold => live.holds_ok.fetch_add(1, Relaxed),
                Op::Purchase | Op::OneShot => live.purchases_ok.fetch_add(1, Relaxed),
                Op::Release => live.releases_ok.fetch_add(1, Relaxed),
                Op::Search | Op::Details => live.browses_ok.fetch_add(1, Relaxed),
                Op::GetHold | Op::Tickets | Op::Refresh | Op::Basket => 0,
            },
            Class::LostRace => live.lost_races.fetch_add(1, Relaxed),
            Class::Error => live.errors.fetch_add(1, Relaxed),
        };
        class
    }

    /// Adds a request's latency to its second and its minute.
    fn record_over_time(&self, second: usize, us: u64) {
        let mut w = self.window.lock().expect("window lock");
        if second > w.second {
            self.close_second(&mut w);
            w.second = second;
        }
        w.current.saturating_record(us);
        if let Some(minute) = w.minutes.get_mut(second / 60) {
            minute.get_or_insert_with(new_histogram).saturating_record(us);
        }
    }

    /// Stores the collected second's p50/p99 and starts it afresh.
    fn close_second(&self, w: &mut Window) {
        if !w.current.is_empty() {
            let s = &self.seconds[w.second];
            s.p50_us.store(w.current.value_at_quantile(0.5), Relaxed);
            s.p99_us.store(w.current.value_at_quantile(0.99), Relaxed);
            w.current.reset();
        }
    }

    /// Closes the last second's latency (call once the requests are over).
    pub fn close_latency(&self) {
        let mut w = self.window.lock().expect("window lock");
        self.close_second(&mut w);
    }

    /// Latency of every request that ended in these whole minutes of the timeline.
    pub fn latency_in_minutes(&self, minutes: Range<usize>) -> Histogram<u64> {
        let w = self.window.lock().expect("window lock");
        let end = minutes.end.min(w.minutes.len());
        let mut all = new_histogram();
        for h in w.minutes[minutes.start.min(end)..end].iter().flatten() {
            let _ = all.add(h);
        }
        all
    }

    /// The server's resident set size at `at`.
    pub fn record_server_rss(&self, at: Instant, kib: u64) {
        self.second(at).server_rss_kib.store(kib, Relaxed);
    }

    /// A latency that is not one request (a whole basket).
    pub fn record_latency(&self, op: Op, latency: Duration) {
        self.histograms[op.index()].lock().expect("histogram lock").saturating_record(micros(latency));
    }

    pub fn add_tickets(&self, n: u64, at: Instant) {
        self.second(at).tickets.fetch_add(n, Relaxed);
        if let Some(bucket) = self.fine_bucket(at) {
            bucket.tickets.fetch_add(n, Relaxed);
        }
        self.live.tickets_sold.fetch_add(n, Relaxed);
    }

    pub fn histogram(&self, op: Op) -> Histogram<u64> {
        self.histograms[op.index()].lock().expect("histogram lock").clone()
    }

    /// (operation, status, code, count), sorted.
    pub fn outcomes(&self) -> Vec<(Op, u16, String, u64)> {
        let outcomes = self.outcomes.lock().expect("outcome lock");
        let mut rows: Vec<_> = outcomes
            .iter()
            .flat_map(|((op, status), codes)| codes.iter().map(move |(code, n)| (*op, *status, code.clone(), *n)))
            .collect();
        rows.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
        rows
    }

    pub fn transport_samples(&self) -> Vec<String> {
        self.transport_samples.lock().expect("samples lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Failure, Reply};

    fn reply(status: u16, body: &'static str) -> Exchange {
        Ok(Reply::new(status, None, bytes::Bytes::from_static(body.as_bytes())))
    }

    #[test]
    fn the_first_seconds_are_also_counted_in_tenths() {
        let origin = Instant::now();
        let stats = Stats::new(origin, 10);
        let at = |ms: u64| origin + Duration::from_millis(ms);
        stats.record(Op::Hold, Duration::from_millis(1), &reply(201, "{}"), at(150));
        stats.record(Op::Purchase, Duration::from_millis(1), &reply(201, "{}"), at(199));
        stats.add_tickets(3, at(199));
        stats.record(Op::Hold, Duration::from_millis(1), &reply(201, "{}"), at(6_000));
        let fine = stats.fine();
        assert_eq!(fine.len(), 50);
        assert_eq!((fine[1].holds.load(Relaxed), fine[1].purchases.load(Relaxed)), (1, 1));
        assert_eq!((fine[1].tickets.load(Relaxed), fine[1].requests.load(Relaxed)), (3, 2));
        assert_eq!(fine.iter().map(|b| b.requests.load(Relaxed)).sum::<u64>(), 2, "past the fine span");
        assert_eq!(stats.seconds()[0].requests.load(Relaxed), 2);
        assert_eq!(stats.live.holds_ok.load(Relaxed), 2);
    }

    #[test]
    fn outcomes_are_classified_and_counted() {
        let origin = Instant::now();
        let stats = Stats::new(origin, 10);
        let ok = reply(201, "{}");
        let taken = reply(409, r#"{"code":"seats_taken"}"#);
        let shed = reply(503, r#"{"code":"overloaded"}"#);
        assert_eq!(stats.record(Op::Hold, Duration::from_millis(2), &ok, origin), Class::Ok);
        assert_eq!(stats.record(Op::Hold, Duration::from_millis(3), &taken, origin), Class::LostRace);
        assert_eq!(stats.record(Op::Hold, Duration::from_millis(4), &shed, origin), Class::Error);
        assert_eq!(stats.record(Op::Hold, Duration::from_millis(4), &Err(Failure::Timeout), origin), Class::Error);
        assert_eq!(stats.live.holds_ok.load(Relaxed), 1);
        assert_eq!(stats.live.errors.load(Relaxed), 2);
        assert_eq!(stats.histogram(Op::Hold).len(), 4);
        let rows = stats.outcomes();
        assert!(rows.contains(&(Op::Hold, 409, "seats_taken".into(), 1)));
        assert!(rows.contains(&(Op::Hold, 0, "timeout".into(), 1)));
    }

    #[test]
    fn latency_is_kept_per_second_and_per_minute() {
        let origin = Instant::now();
        let stats = Stats::new(origin, 180);
        let ok = reply(200, "{}");
        let at = |s: u64| origin + Duration::from_secs(s);
        for ms in 1..=100 {
            stats.record(Op::Search, Duration::from_millis(ms), &ok, at(0));
        }
        stats.record(Op::Details, Duration::from_millis(7), &ok, at(2));
        // Nothing of second 2 is closed until a later second begins or the run ends.
        assert_eq!(stats.seconds()[2].p50_us.load(Relaxed), 0);
        stats.record(Op::Details, Duration::from_millis(9), &ok, at(61));
        stats.close_latency();
        let (s0, s1, s2) = (&stats.seconds()[0], &stats.seconds()[1], &stats.seconds()[2]);
        assert!((49_000..=51_000).contains(&s0.p50_us.load(Relaxed)), "{}", s0.p50_us.load(Relaxed));
        assert!((98_000..=100_100).contains(&s0.p99_us.load(Relaxed)), "{}", s0.p99_us.load(Relaxed));
        assert_eq!(s1.p99_us.load(Relaxed), 0);
        assert!((6_990..=7_010).contains(&s2.p99_us.load(Relaxed)));
        assert!((8_990..=9_010).contains(&stats.seconds()[61].p50_us.load(Relaxed)));
        assert_eq!(stats.latency_in_minutes(0..1).len(), 101);
        assert_eq!(stats.latency_in_minutes(1..3).len(), 1);
        assert_eq!(stats.latency_in_minutes(0..9).len(), 102);
        assert!(stats.latency_in_minutes(5..9).is_empty());
    }
}
