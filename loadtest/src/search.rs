//! `seed-search`: inserts published events straight into PostgreSQL with one
//! `INSERT … SELECT … FROM generate_series` (varied titles, categories, venues,
//! dates, prices; a tiny general-admission seat map each; one organizer), then
//! measures `GET /events/search` over HTTP with a realistic mix of queries.
//!
//! The mix (weights out of 100): full-text words 30, words with category and
//! price 10, category with a date range 20, price range sorted by price 15, date
//! range sorted by date with pages 1-5 15, plain listing with pages 1-10 10.

use crate::cli::SearchArgs;
use crate::http::Api;
use crate::report::{LatencyRow, OutcomeRow, Report, Timeline, fact, rate_row};
use crate::stats::new_histogram;
use anyhow::{Context, bail};
use chrono::{DateTime, Duration as Days, Utc};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GENRES: [&str; 16] = [
    "Rock",
    "Jazz",
    "Symphony",
    "Opera",
    "Comedy",
    "Ballet",
    "Indie",
    "Metal",
    "Folk",
    "Electronic",
    "Piano",
    "Choir",
    "Blues",
    "Reggae",
    "Techno",
    "Acoustic",
];
const NOUNS: [&str; 12] = [
    "Night", "Festival", "Live", "Tour", "Gala", "Showcase", "Marathon", "Session", "Concert", "Matinee", "Party",
    "Premiere",
];
const CITIES: [&str; 10] =
    ["Tokyo", "Osaka", "Kyoto", "Nagoya", "Sapporo", "Fukuoka", "Sendai", "Kobe", "Yokohama", "Hiroshima"];
const CATEGORIES: [&str; 8] = ["music", "theatre", "sports", "comedy", "festival", "family", "conference", "film"];
const VENUES: [&str; 20] = [
    "Budokan",
    "Tokyo Dome",
    "Zepp Haneda",
    "Osaka-jo Hall",
    "Kyocera Dome",
    "Saitama Arena",
    "Nippon Gaishi Hall",
    "Marine Messe",
    "Yokohama Arena",
    "Sapporo Dome",
    "Blue Note",
    "Billboard Live",
    "Suntory Hall",
    "Kabukiza",
    "Shibuya O-East",
    "Namba Hatch",
    "Kobe World Hall",
    "Sendai Sunplaza",
    "Hiroshima Green Arena",
    "Kyoto Concert Hall",
];

/// A structurally valid argon2id hash that no password produces: the seed
/// organizer cannot sign in, and a login attempt fails cleanly.
const UNUSABLE_PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$bG9hZHRlc3RzZWVkc2FsdA$dGhpcy1oYXNoLW1hdGNoZXMtbm8tcGFzc3dvcmQhISE";

/// Inserts `count` published events; returns how long it took.
async fn seed(pool: &PgPool, count: u32) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let run = format!("{:08x}", rand::random::<u32>());
    let organizer: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO users (user_id, email, password_hash, name, user_type)
         VALUES (gen_random_uuid(), $1, $2, 'Search Seed Organizer', 'organizer') RETURNING user_id",
    )
    .bind(format!("search-seed-{run}@loadtest.example"))
    .bind(UNUSABLE_PASSWORD_HASH)
    .fetch_one(pool)
    .await
    .context("inserting the seed organizer (is the schema migrated? start the server on this database first)")?;
    let strings = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Different multipliers decorrelate the columns; prices in 100s from 1,000 to 19,900,
    // capacities 100-4,999, dates hourly over two years from tomorrow.
    sqlx::query(
        "INSERT INTO events (event_id, organizer_id, title, description, category, venue_name, venue_address,
                             event_date, currency, status, seat_map, total_seats, taken_count, min_price, max_price)
         SELECT gen_random_uuid(), $1,
                g.genre || ' ' || g.noun || ' ' || g.city || ' ' || (i % 997),
                'An evening of ' || lower(g.genre) || ' in ' || g.city || ' at ' || g.venue || '.',
                g.category, g.venue, g.city || ', Japan',
                date_trunc('hour', now()) + interval '1 day' + ((i * 7919) % 17520) * interval '1 hour',
                'JPY', 'published',
                jsonb_build_object(
                    'tiers', jsonb_build_array(jsonb_build_object('code', 'GA', 'price', g.price)),
                    'sections', jsonb_build_array(jsonb_build_object(
                        'name', 'General Admission', 'tier', 'GA', 'kind', 'general', 'capacity', g.capacity))),
                g.capacity, (i * 17) % (g.capacity + 1), g.price, g.price
         FROM generate_series(1, $2::bigint) AS i
         CROSS JOIN LATERAL (SELECT
                ($3::text[])[1 + ((i * 7) % 16)::int] AS genre,
                ($4::text[])[1 + ((i * 5) % 12)::int] AS noun,
                ($5::text[])[1 + ((i * 3) % 10)::int] AS city,
                ($6::text[])[1 + ((i * 13) % 8)::int] AS category,
                ($7::text[])[1 + ((i * 11) % 20)::int] AS venue,
                (1000 + ((i * 104729) % 190) * 100)::bigint AS price,
                (100 + (i * 31) % 4900)::int AS capacity) g",
    )
    .bind(organizer)
    .bind(i64::from(count))
    .bind(strings(&GENRES))
    .bind(strings(&NOUNS))
    .bind(strings(&CITIES))
    .bind(strings(&CATEGORIES))
    .bind(strings(&VENUES))
    .execute(pool)
    .await
    .context("inserting the events")?;
    sqlx::query("ANALYZE events").execute(pool).await.context("ANALYZE events")?;
    Ok(started.elapsed())
}

/// Percent-encodes a query value.
fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn date(t: DateTime<Utc>) -> String {
    enc(&t.format("%Y-%m-%dT%H:00:00Z").to_string())
}

/// One query of the mix: (kind, path).
fn query(rng: &mut SmallRng, now: DateTime<Utc>) -> (&'static str, String) {
    let pick = |rng: &mut SmallRng, xs: &[&'static str]| xs[rng.random_range(0..xs.len())];
    let window = |rng: &mut SmallRng| {
        let from = now + Days::days(rng.random_range(1..700));
        (from, from + Days::days(rng.random_range(7..90)))
    };
    let roll = rng.random_range(0..100);
    let (kind, params) = if roll < 30 {
        let q = match rng.random_range(0..3) {
            0 => pick(rng, &GENRES).to_lowercase(),
            1 => pick(rng, &CITIES).to_lowercase(),
            _ => format!("{} {}", pick(rng, &GENRES).to_lowercase(), pick(rng, &CITIES).to_lowercase()),
        };
        ("text", format!("q={}", enc(&q)))
    } else if roll < 40 {
        let q = pick(rng, &GENRES).to_lowercase();
        let max = rng.random_range(20..200) * 100;
        ("text+category+price", format!("q={}&category={}&max_price={max}", enc(&q), pick(rng, &CATEGORIES)))
    } else if roll < 60 {
        let (from, to) = window(rng);
        ("category+dates", format!("category={}&from={}&to={}&sort=date", pick(rng, &CATEGORIES), date(from), date(to)))
    } else if roll < 75 {
        let min = rng.random_range(10..150) * 100;
        let max = min + rng.random_range(5..50) * 100;
        let sort = if rng.random_bool(0.5) { "price" } else { "-price" };
        ("price", format!("min_price={min}&max_price={max}&sort={sort}"))
    } else if roll < 90 {
        let (from, to) = window(rng);
        let sort = if rng.random_bool(0.7) { "date" } else { "-date" };
        ("dates", format!("from={}&to={}&sort={sort}&page={}", date(from), date(to), rng.random_range(1..=5)))
    } else {
        let available = if rng.random_bool(0.3) { "&available=true" } else { "" };
        ("listing", format!("sort=date&page={}{available}", rng.random_range(1..=10)))
    };
    let per_page = if rng.random_bool(0.2) { "&per_page=50" } else { "" };
    (kind, format!("/events/search?{params}{per_page}"))
}

#[derive(Deserialize)]
struct SearchReply {
    total: i64,
}

struct Measured {
    all: Histogram<u64>,
    by_kind: BTreeMap<&'static str, Histogram<u64>>,
    outcomes: BTreeMap<(u16, String), u64>,
    per_second: Vec<u64>,
    hits: u64,
    zero_hit_queries: u64,
}

async fn measure(api: &Api, args: &SearchArgs, cap: Duration) -> Measured {
    let shared = Arc::new(Mutex::new(Measured {
        all: new_histogram(),
        by_kind: BTreeMap::new(),
        outcomes: BTreeMap::new(),
        per_second: vec![0; cap.as_secs() as usize + 2],
        hits: 0,
        zero_hit_queries: 0,
    }));
    let next = Arc::new(AtomicU32::new(0));
    let total = args.warmup + args.requests;
    let origin = Instant::now();
    let deadline = origin + cap;
    let now = Utc::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..args.concurrency.max(1) {
        let (api, shared, next) = (api.clone(), shared.clone(), next.clone());
        let mut rng = SmallRng::seed_from_u64(args.seed ^ (w as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let warmup = args.warmup;
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= total || Instant::now() >= deadline || crate::interrupted() {
                    return;
                }
                let (kind, path) = query(&mut rng, now);
                let started = Instant::now();
                let exchange = api.get(&path, None).await;
                let took = started.elapsed();
                if i < warmup {
                    continue;
                }
                let mut m = shared.lock().expect("measure lock");
                let us = crate::stats::micros(took);
                m.all.saturating_record(us);
                m.by_kind.entry(kind).or_insert_with(new_histogram).saturating_record(us);
                let second = (Instant::now() - origin).as_secs() as usize;
                let last = m.per_second.len() - 1;
                m.per_second[second.min(last)] += 1;
                let key = match &exchange {
                    Ok(r) if r.ok() => {
                        if let Ok(s) = r.json::<SearchReply>() {
                            m.hits += s.total.max(0) as u64;
                            m.zero_hit_queries += u64::from(s.total == 0);
                        }
                        (r.status, String::new())
                    }
                    Ok(r) => (r.status, r.code().to_owned()),
                    Err(crate::http::Failure::Timeout) => (0, "timeout".to_owned()),
                    Err(crate::http::Failure::Transport(_)) => (0, "transport".to_owned()),
                };
                *m.outcomes.entry(key).or_default() += 1;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let shared = Arc::try_unwrap(shared).map_err(|_| ()).expect("every worker has finished");
    shared.into_inner().expect("measure lock")
}

pub async fn run(
    api: &Api,
    pool: &PgPool,
    args: &SearchArgs,
    cap: Duration,
    target: &str,
    server: (Option<u32>, Option<u32>),
) -> anyhow::Result<Report> {
    let started_at = Utc::now().to_rfc3339();
    let mut facts = Vec::new();
    if args.skip_seed {
        facts.push(fact("seeding", "skipped (--skip-seed)"));
    } else {
        eprintln!("loadtest: inserting {} published events…", args.events);
        let took = seed(pool, args.events).await?;
        facts.push(fact(
            "seeding",
            format!(
                "{} events in {:.1} s ({:.0} rows/s)",
                args.events,
                took.as_secs_f64(),
                args.events as f64 / took.as_secs_f64()
            ),
        ));
    }
    let published: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE status = 'published'").fetch_one(pool).await?;
    facts.push(fact("published events", published.to_string()));
    // The server searches an in-memory index that picks up rows written straight in
    // SQL within a sync or two; measure only once it lists every published event.
    let waited = Instant::now();
    loop {
        let listed = match api.get("/events/search?per_page=1", None).await {
            Ok(r) if r.ok() => r.json::<SearchReply>().map(|r| r.total).ok(),
            _ => None,
        };
        if listed == Some(published) {
            break;
        }
        if waited.elapsed() > Duration::from_secs(120) {
            bail!("the server lists {listed:?} of {published} published events after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    facts.push(fact("index caught up", format!("{:.1} s after seeding", waited.elapsed().as_secs_f64())));

    eprintln!("loadtest: measuring {} searches at concurrency {}…", args.requests, args.concurrency);
    let before_metrics = crate::prom::scrape(api).await;
    let before = crate::cpu::Snapshot::take(server.0.as_slice(), server.1);
    let clock = Instant::now();
    let m = measure(api, args, cap).await;
    let wall = clock.elapsed().as_secs_f64();
    let after = crate::cpu::Snapshot::take(server.0.as_slice(), server.1);
    let after_metrics = crate::prom::scrape(api).await;

    let measured = m.all.len();
    // Warm-up requests ran first; the rate counts measured requests over the whole wall time (a slight underestimate).
    facts.push(fact(
        "requests measured",
        format!("{measured} (after {} warm-up), concurrency {}", args.warmup, args.concurrency),
    ));
    facts.push(fact("requests per second", format!("{:.0}", measured as f64 / wall.max(1e-9))));
    facts.push(fact(
        "search p50 / p99 / max",
        format!(
            "{:.2} / {:.2} / {:.2} ms (target p99 < 20 ms)",
            m.all.value_at_quantile(0.5) as f64 / 1000.0,
            m.all.value_at_quantile(0.99) as f64 / 1000.0,
            m.all.max() as f64 / 1000.0
        ),
    ));
    let ok = m.outcomes.iter().filter(|((s, _), _)| (200..300).contains(s)).map(|(_, n)| n).sum::<u64>();
    facts.push(fact(
        "hits",
        format!(
            "mean {:.0} matching events per query; {} queries matched nothing",
            m.hits as f64 / ok.max(1) as f64,
            m.zero_hit_queries
        ),
    ));

    let mut latency = vec![LatencyRow::new("search (all)", &m.all)];
    latency.extend(m.by_kind.iter().map(|(k, h)| LatencyRow::new(&format!("search: {k}"), h)));
    let outcomes = m
        .outcomes
        .iter()
        .map(|((status, code), n)| OutcomeRow { op: "search".into(), status: *status, code: code.clone(), count: *n })
        .collect();
    let mut per_second = m.per_second.clone();
    while per_second.len() > 1 && per_second.last() == Some(&0) {
        per_second.pop();
    }
    let timeline = Timeline {
        columns: vec!["requests".into()],
        rows: per_second.iter().map(|n| vec![*n]).collect(),
        step_ms: 1000,
    };
    let p99_ms = m.all.value_at_quantile(0.99) as f64 / 1000.0;
    let errors = measured - ok;
    let checks = vec![
        crate::checks::Check {
            name: "every search answered 2xx".into(),
            passed: errors == 0 && measured > 0,
            critical: true,
            detail: format!("{ok} of {measured} succeeded"),
        },
        crate::checks::Check {
            name: "search p99 < 20 ms (docs/domain.md)".into(),
            passed: p99_ms < 20.0,
            critical: false,
            detail: format!("p99 {p99_ms:.2} ms over {published} published events"),
        },
    ];
    let passed = checks.iter().all(|c| c.passed || !c.critical);
    Ok(Report {
        tool: "boxoffice-loadtest",
        scenario: "seed-search".into(),
        mode: format!("closed loop, {} requests in flight", args.concurrency),
        target: target.to_owned(),
        started_at,
        config: serde_json::json!({
            "events": args.events, "skip_seed": args.skip_seed, "requests": args.requests,
            "concurrency": args.concurrency, "warmup": args.warmup, "seed": args.seed,
        }),
        facts,
        figures: serde_json::json!({
            "published_events": published, "requests": measured, "requests_per_second": measured as f64 / wall.max(1e-9),
            "p50_ms": m.all.value_at_quantile(0.5) as f64 / 1000.0, "p99_ms": p99_ms, "max_ms": m.all.max() as f64 / 1000.0,
        }),
        rates: vec![rate_row("searches", &timeline, "requests", measured, wall)],
        outcomes,
        latency,
        timeline,
        soak: None,
        checks,
        cpu: Some(crate::cpu::between(&before, &after)),
        server_metrics: match (before_metrics, after_metrics) {
            (Some(b), Some(a)) => Some(crate::prom::delta(&b, &a)),
            _ => None,
        },
        passed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_valid_and_varied() {
        let mut rng = SmallRng::seed_from_u64(1);
        let now = Utc::now();
        let mut kinds = std::collections::HashSet::new();
        for _ in 0..500 {
            let (kind, path) = query(&mut rng, now);
            kinds.insert(kind);
            assert!(path.starts_with("/events/search?"));
            assert!(!path.contains(' ') && !path.contains('+') && !path.contains(':'), "{path}");
        }
        assert_eq!(kinds.len(), 6);
        assert_eq!(enc("rock tokyo"), "rock%20tokyo");
    }
}
