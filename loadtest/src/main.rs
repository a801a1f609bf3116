//! `loadtest`: drives a boxoffice server the way a flash sale does and reports
//! what it measured — throughput, latency per operation (coordinated-omission
//! corrected in open-loop mode), requests by status and problem code, the CPU
//! each process used — and checks that no seat was sold twice and no
//! acknowledged sale was lost (exit status 1 when a check fails, 2 on errors).
//!
//! A run: start or find the server → setup (organizer, buyers, one published
//! event whose sale opens a few seconds later; not timed) → the sale, from the
//! opening moment until sold out or `--duration` → checks → report (terminal,
//! report.json, report.html) → stop the server if it was spawned.
//!
//! Traffic goes only to loopback, and every loop is bounded in count and time.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod checks;
mod cli;
mod cpu;
mod echo;
mod failover;
mod housekeeping;
mod http;
mod nodes;
mod progress;
mod prom;
mod ratio;
mod report;
mod sale;
mod search;
mod seats;
mod server;
mod setup;
mod statements;
mod stats;
mod thresholds;
mod waiting_room;
mod watchers;

use anyhow::{Context, bail};
use clap::Parser;
use cli::{Cli, Command, SaleArgs, Scenario};
use http::Api;
use report::{LatencyRow, OutcomeRow, Report, Timeline, fact, rate_row};
use sale::{Sale, SaleConfig};
use server::Target;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use stats::Op;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C was pressed: loops stop starting work, and the run reports what it has.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Relaxed)
}

/// `GET /events/{id}/seats` reads timed before the opening moment.
const SEAT_STATUS_PROBES: u32 = 200;

/// Most connections opened before the opening moment.
const MAX_WARM_CONNECTIONS: usize = 1024;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = cli.target.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nloadtest: interrupted; finishing up (Ctrl-C again to quit at once)");
            INTERRUPTED.store(true, Relaxed);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    if let Some(Command::EchoServer(args)) = &cli.command {
        return echo::serve(args).await.map(|()| true);
    }
    let mut target = Target::prepare(&cli.target).await?;
    let result = match &cli.command {
        Some(Command::SeedSearch(args)) => seed_search(&cli, &target, args).await,
        Some(Command::Failover(args)) => failover::run(&cli, &mut target, args).await,
        Some(Command::HttpRatio(args)) => ratio::run(&cli, &target, args).await,
        Some(Command::EchoServer(_)) => unreachable!("served above"),
        None if cli.sale.scenario == Scenario::WaitingRoom => waiting_room::run(&cli, &target).await,
        None => flash_sale(&cli, &target).await,
    };
    let outcome = result.and_then(|report| {
        let json_to_stdout = cli.output.json.as_deref() == Some(std::path::Path::new("-"));
        let text = report::to_text(&report);
        let (json, html) = report::write(&report, &cli.output.out_dir)?;
        let wrote = format!("wrote {} and {}", json.display(), html.display());
        if json_to_stdout {
            eprint!("{text}");
            eprintln!("{wrote}");
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{text}");
            println!("{wrote}");
            if let Some(path) = &cli.output.json {
                std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        for line in thresholds::missed(&report.checks) {
            eprintln!("loadtest: threshold missed: {line}");
        }
        Ok(report.passed)
    });
    let spawned = target.spawned();
    let stopped = target.shutdown().await;
    if spawned {
        match &stopped {
            Ok(()) => eprintln!("loadtest: the spawned server stopped cleanly"),
            Err(e) => eprintln!("loadtest: stopping the spawned server: {e:#}"),
        }
    }
    let passed = outcome?;
    Ok(passed && stopped.is_ok())
}

pub async fn connect(target: &Target) -> anyhow::Result<Option<PgPool>> {
    let Some(options) = target.database.clone() else { return Ok(None) };
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .context("connecting to the database for the checks")?;
    Ok(Some(pool))
}

fn validate(args: &SaleArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.explicit_ratio) || !(0.0..=1.0).contains(&args.browse_ratio) {
        bail!("--explicit-ratio and --browse-ratio are between 0 and 1");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number of baskets per second");
    }
    if !(1..=50).contains(&args.per_buyer_limit) || !(1..=50).contains(&args.max_per_hold) {
        bail!("--per-buyer-limit and --max-per-hold are 1 to 50 (the server's limits)");
    }
    if args.seats == 0 || args.buyers == 0 || args.sections == 0 || args.seats_per_row == 0 {
        bail!("--seats, --buyers, --sections and --seats-per-row must be positive");
    }
    let events = args.event_count();
    if args.seats < events || args.buyers < events {
        bail!("--seats and --buyers must be at least --events ({events}): every event needs seats and buyers");
    }
    Ok(())
}

async fn flash_sale(cli: &Cli, target: &Target) -> anyhow::Result<Report> {
    let args = &cli.sale;
    validate(args)?;
    let show_progress = !cli.output.no_progress;
    // Several nodes: every request goes to the next node in turn, as behind a
    // round-robin load balancer; the server's own figures come from the first node.
    let api = Api::spread(&target.base_urls, Duration::from_millis(cli.target.timeout_ms))?;
    let pool = connect(target).await?;
    let started_at = chrono::Utc::now().to_rfc3339();

    match args.event_count() {
        1 => eprintln!("loadtest: setup: registering {} buyers and creating a {}-seat event…", args.buyers, args.seats),
        n => eprintln!(
            "loadtest: setup: registering {} buyers and creating {n} events of {} seats…",
            args.buyers,
            args.seats / n
        ),
    }
    let setup = setup::prepare(&api, args, show_progress).await?;
    eprintln!("loadtest: {} buyers registered in {:.1} s", setup.buyers.len(), setup.register_secs);
    let seed = args.seed.unwrap_or_else(|| chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64);
    let cfg = SaleConfig {
        scenario: args.scenario,
        one_shot: args.one_shot,
        max_per_hold: args.max_per_hold,
        explicit_ratio: args.explicit_ratio,
        browse_ratio: args.browse_ratio,
        max_attempts: args.max_attempts,
        max_retries: args.max_retries,
        retry_cap: Duration::from_millis(args.retry_cap_ms),
        storm_holds: args.storm_holds,
        rate: args.rate,
        concurrency: args.concurrency,
        max_in_flight: args.max_in_flight,
        seed,
        duration: Duration::from_secs(cli.target.duration),
    };
    let until_open = (setup.opens_at - chrono::Utc::now()).to_std().unwrap_or_default();
    let opens_at = Instant::now() + until_open;
    let (event_ids, register_secs, buyer_count, run_id) =
        (setup.event_ids, setup.register_secs, setup.buyers.len(), setup.run_id.clone());
    let sale_api = match args.upstream_connections {
        0 => api.clone(),
        n => api.clone().with_upstream_limit(n),
    };
    let mut sale = Sale::new(sale_api, cfg, &event_ids, setup.plan, setup.buyers, args.per_buyer_limit, opens_at);
    let hold_times = (args.watchers > 0).then(|| Arc::new(watchers::HoldTimes::default()));
    sale.hold_times = hold_times.clone();
    let sale = Arc::new(sale);
    let connections = match args.rate {
        None => args.concurrency,
        Some(rate) => (rate / 20.0) as usize + 16,
    }
    .min(MAX_WARM_CONNECTIONS);
    sale.warm_up(connections).await.context("warming up")?;
    // Before the rush (not timed with it): what one seat-map read costs.
    let seat_status = watchers::time_seat_status(&api, event_ids[0], SEAT_STATUS_PROBES).await;
    let watchers = match hold_times {
        Some(times) => {
            eprintln!("loadtest: opening {} live streams on the first event…", args.watchers);
            Some(watchers::Watchers::start(&api, event_ids[0], args.watchers as usize, times).await?)
        }
        None => None,
    };
    if Instant::now() >= opens_at {
        eprintln!("loadtest: note: setup ran past the opening moment; raise --lead-secs for a clean start");
    }
    tokio::time::sleep_until((opens_at.checked_sub(Duration::from_millis(20)).unwrap_or(opens_at)).into()).await;
    let metrics_before = prom::scrape(&api.first()).await;
    let forwards_before = prom::total_over_nodes(&api, "boxoffice_cluster_forwards_total").await;
    let cpu_before = cpu::Snapshot::take(&target.node_pids, target.postgres_pid);
    let housekeeping_before = housekeeping::Housekeeping::read(pool.as_ref()).await;
    let statements_before = statements::Statements::read(pool.as_ref()).await;
    eprintln!("loadtest: the sale opens now ({} {})", args.scenario.name(), mode(args));

    let stop_ticker = Arc::new(AtomicBool::new(false));
    let what = match args.scenario {
        Scenario::HoldStorm => progress::SaleProgress {
            len: args.storm_holds,
            label: "holds",
            position: |s| s.live.holds_ok.load(Relaxed),
        },
        _ => progress::SaleProgress {
            len: sale.capacity(),
            label: "sold",
            position: |s| s.live.tickets_sold.load(Relaxed),
        },
    };
    let ticker = tokio::spawn(progress::run_sale_ticker(sale.stats.clone(), what, show_progress, stop_ticker.clone()));
    let rss_sampler = tokio::spawn(sample_server_rss(sale.stats.clone(), target.server_pid, stop_ticker.clone()));
    let refresher = tokio::spawn(sale.clone().keep_tokens_fresh(stop_ticker.clone()));
    sale.run().await;
    let drained = Instant::now();
    // The last frames arrive within a tick or two of the last change.
    let watched = match watchers {
        Some(w) => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Some(w.finish().await)
        }
        None => None,
    };
    let cpu_after = cpu::Snapshot::take(&target.node_pids, target.postgres_pid);
    let housekeeping_after = housekeeping::Housekeeping::read(pool.as_ref()).await;
    let statements_after = statements::Statements::read(pool.as_ref()).await;
    let metrics_after = prom::scrape(&api.first()).await;
    let forwards = prom::total_over_nodes(&api, "boxoffice_cluster_forwards_total").await - forwards_before;
    stop_ticker.store(true, Relaxed);
    let _ = ticker.await;
    rss_sampler.abort();
    let _ = rss_sampler.await;
    let _ = refresher.await;
    if let Some(kib) = target.server_pid.and_then(cpu::rss_kib) {
        // The last second of the timeline, which the sampler may not have reached.
        sale.stats.record_server_rss(drained, kib);
    }
    sale.stats.close_latency();

    eprintln!("loadtest: checking…");
    let mut checks = checks::run(&api, &sale, pool.as_ref()).await;
    if let (Some(before), Some(after)) = (housekeeping_before, housekeeping_after) {
        checks.push(checks::Check::info("PostgreSQL's own work during the sale", before.since(&after)));
    }
    let orders = sale.stats.live.purchases_ok.load(Relaxed);
    if let Some(spent) = statements_before.zip(statements_after).and_then(|(b, a)| b.since(&a, orders, 8)) {
        checks.push(checks::Check::info("PostgreSQL statements during the sale (pg_stat_statements)", spent));
    }
    let only_event = (event_ids.len() == 1).then(|| event_ids[0]);
    checks.push(checks::ledger(target.reconcile_command(only_event)).await);
    let requests: u64 = sale.stats.outcomes().iter().map(|o| o.3).sum();
    let forwards_per_request = forwards / requests.max(1) as f64;
    if api.nodes() > 1 {
        checks.push(checks::Check::info(
            "several nodes",
            format!(
                "{} nodes; {forwards} calls forwarded to the event's owner, {forwards_per_request:.2} per request; \
                 server metrics from node 0 only",
                api.nodes(),
            ),
        ));
    }

    // ---- figures ----
    let stats = &sale.stats;
    let (ended_at, reason) = sale.ended().unwrap_or((drained, "ended".into()));
    let sold_out_after = sale.sold_out_at.get().map(|t| t.duration_since(opens_at).as_secs_f64());
    let sale_secs = ended_at.saturating_duration_since(opens_at).as_secs_f64().max(1e-3);
    let columns = [
        "requests",
        "holds",
        "purchases",
        "tickets",
        "releases",
        "browses",
        "lost_races",
        "errors",
        "p50_us",
        "p99_us",
        "server_rss_mib",
    ];
    let used_seconds = (drained.saturating_duration_since(opens_at).as_secs() as usize + 1).min(stats.seconds().len());
    let used = &stats.seconds()[..used_seconds];
    // A sale of a few seconds is charted in tenths of a second (counts only).
    let span = drained.saturating_duration_since(opens_at);
    let step = report::timeline_step(span.as_secs_f64());
    let buckets = if step < Duration::from_secs(1) {
        let n = (span.as_millis() / step.as_millis()) as usize + 1;
        &stats.fine()[..n.min(stats.fine().len())]
    } else {
        used
    };
    let timeline = Timeline {
        step_ms: step.as_millis() as u64,
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows: buckets
            .iter()
            .map(|s| {
                let mut row: Vec<u64> = [
                    &s.requests,
                    &s.holds,
                    &s.purchases,
                    &s.tickets,
                    &s.releases,
                    &s.browses,
                    &s.lost_races,
                    &s.errors,
                    &s.p50_us,
                    &s.p99_us,
                ]
                .iter()
                .map(|c| c.load(Relaxed))
                .collect();
                row.push((s.server_rss_kib.load(Relaxed) + 512) / 1024);
                row
            })
            .collect(),
    };
    let rss_kib: Vec<u64> = used.iter().map(|s| s.server_rss_kib.load(Relaxed)).collect();
    let soak = report::soak(sale_secs, &rss_kib, |minutes| stats.latency_in_minutes(minutes));
    let live = &stats.live;
    let total = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
    let mut rates = vec![
        rate_row("holds", &timeline, "holds", total(&live.holds_ok), sale_secs),
        rate_row("purchases (orders)", &timeline, "purchases", total(&live.purchases_ok), sale_secs),
        rate_row("tickets", &timeline, "tickets", total(&live.tickets_sold), sale_secs),
    ];
    let (holds_rate, purchases_rate) = (rates[0].peak_1s, rates[1].peak_1s);
    let (holds_mean, purchases_mean) = (rates[0].mean_per_s, rates[1].mean_per_s);
    if args.one_shot {
        // The one-shot path holds inside the purchase: there is no separate hold request.
        rates.remove(0);
    }
    if args.scenario == Scenario::HoldStorm {
        rates.push(rate_row("releases", &timeline, "releases", total(&live.releases_ok), sale_secs));
    }
    if args.scenario == Scenario::Browse {
        rates.push(rate_row("searches + details", &timeline, "browses", total(&live.browses_ok), sale_secs));
    }
    rates.push(rate_row("all requests", &timeline, "requests", total(&live.requests), sale_secs));

    let latency: Vec<LatencyRow> = Op::ALL
        .iter()
        .map(|op| (op, stats.histogram(*op)))
        .filter(|(_, h)| !h.is_empty())
        .map(|(op, h)| LatencyRow::new(op.name(), &h))
        .collect();
    let outcomes: Vec<OutcomeRow> = stats
        .outcomes()
        .into_iter()
        .map(|(op, status, code, count)| OutcomeRow { op: op.name().into(), status, code, count })
        .collect();
    let (orders, resolved) = {
        let acked = sale.acked.lock().expect("acked lock");
        (acked.len(), acked.iter().filter(|a| a.resolved).count())
    };
    let capacity = sale.capacity();
    let c = &sale.counters;
    let layout = if sale.plan.is_general() {
        format!(
            "{} general-admission places in {} sections, per-buyer limit {}",
            sale.plan.capacity(),
            sale.plan.sections(),
            args.per_buyer_limit
        )
    } else {
        format!(
            "{} seats ({} sections, {} rows of up to {}), per-buyer limit {}",
            sale.plan.capacity(),
            sale.plan.sections(),
            sale.plan.rows(),
            args.seats_per_row,
            args.per_buyer_limit
        )
    };
    let mut facts = vec![match event_ids.as_slice() {
        [one] => fact("event", format!("{one}: {layout}")),
        many => fact("events", format!("{} events on sale at once, each {layout}", many.len())),
    }];
    facts.extend([
        fact(
            "buyers",
            format!(
                "{buyer_count} registered in {register_secs:.1} s ({:.0}/s, setup, not timed)",
                buyer_count as f64 / register_secs.max(1e-9)
            ),
        ),
        fact("sale ended", format!("{reason}, {sale_secs:.2} s after the opening moment")),
        fact(
            "time to sell out",
            match (sold_out_after, args.scenario) {
                (Some(t), _) => format!("{t:.2} s"),
                (None, Scenario::HoldStorm) => "- (a hold storm buys nothing)".to_owned(),
                (None, _) => format!("not sold out ({} of {capacity} seats sold)", total(&live.tickets_sold)),
            },
        ),
        fact("sold", format!("{} tickets in {orders} orders of {capacity} seats", total(&live.tickets_sold))),
        fact(
            "baskets",
            format!(
                "{} started; {resolved} purchases confirmed by looking the hold up after a lost answer; \
                 outcome unknown for {} seats; {} holds could not be released",
                total(&c.baskets),
                total(&c.unresolved_seats),
                total(&c.abandoned_holds)
            ),
        ),
    ]);
    if args.rate.is_some() {
        facts.push(fact("arrivals with every buyer busy", total(&c.no_idle_buyer).to_string()));
    }
    let samples = stats.transport_samples();
    if !samples.is_empty() {
        facts.push(fact("transport errors (samples)", samples.join(" | ")));
    }
    let hold_p99 = stats.histogram(Op::Hold).value_at_quantile(0.99) as f64 / 1000.0;
    let purchase_op = if args.one_shot { Op::OneShot } else { Op::Purchase };
    let purchase_p99 = stats.histogram(purchase_op).value_at_quantile(0.99) as f64 / 1000.0;
    let cpu = cpu::between(&cpu_before, &cpu_after).per_order(orders as u64);
    let basket = stats.histogram(Op::Basket);
    let basket_p99 = (!basket.is_empty()).then(|| basket.value_at_quantile(0.99) as f64 / 1000.0);
    checks.extend(thresholds::checks(args, purchases_mean, basket_p99));
    let per_node = match &pool {
        Some(pool) if event_ids.len() > 1 || api.nodes() > 1 => {
            match nodes::figures(pool, &event_ids, sale_secs, &cpu.node_percent).await {
                Ok(rows) => {
                    facts.push(fact("per node", nodes::describe(&rows)));
                    facts.push(fact("forwarded calls per request", format!("{forwards_per_request:.2}")));
                    Some(rows)
                }
                Err(e) => {
                    facts.push(fact("per node", format!("could not be read: {e}")));
                    None
                }
            }
        }
        _ => None,
    };
    facts.push(fact(
        "seat status read (before the sale)",
        match &seat_status {
            Ok((bytes, p50, p99)) => format!(
                "GET /events/{{id}}/seats, {} seats: {bytes} bytes, p50 {p50:.2} ms, p99 {p99:.2} ms ({SEAT_STATUS_PROBES} reads)",
                sale.plan.capacity()
            ),
            Err(e) => format!("failed: {e}"),
        },
    ));
    if let Some(w) = &watched {
        facts.push(fact(
            "live watchers",
            format!(
                "{} of {} connected, {} frames ({} snapshots, {:.1} MB), {} streams dropped; seats seen held \
                 p50 {:.1} ms / p99 {:.1} ms / max {:.1} ms after the buyer's 201 ({} samples from {} watchers)",
                w.connected,
                w.watchers,
                w.frames,
                w.snapshots,
                w.megabytes,
                w.streams_dropped,
                w.delay_p50_ms,
                w.delay_p99_ms,
                w.delay_max_ms,
                w.delay_samples,
                w.watchers.min(20)
            ),
        ));
    }
    let figures = serde_json::json!({
        "watchers": watched,
        "event_ids": event_ids,
        "nodes": api.nodes(),
        "per_node": per_node,
        "forwards_per_request": forwards_per_request,
        "capacity": capacity,
        "sold_out": sold_out_after.is_some(),
        "time_to_sell_out_secs": sold_out_after,
        "sale_secs": sale_secs,
        "tickets_sold": total(&live.tickets_sold),
        "orders": orders,
        "holds_ok": total(&live.holds_ok),
        "purchases_ok": total(&live.purchases_ok),
        "holds_per_s": {"peak_1s": holds_rate, "mean": holds_mean},
        "purchases_per_s": {"peak_1s": purchases_rate, "mean": purchases_mean},
        "hold_p99_ms": hold_p99,
        "purchase_p99_ms": purchase_p99,
        "basket_p99_ms": basket_p99,
        "cpu_us_per_order": cpu.per_order_us,
        "errors": total(&live.errors),
        "lost_races": total(&live.lost_races),
    });
    let passed = checks.iter().all(|c| c.passed || !c.critical);
    Ok(Report {
        tool: "boxoffice-loadtest",
        scenario: args.scenario.name().into(),
        mode: mode(args),
        target: target.description.clone(),
        started_at,
        config: serde_json::json!({
            "run_id": run_id, "seats": args.seats, "events": event_ids.len(), "sections": args.sections, "seats_per_row": args.seats_per_row, "ga_sections": args.ga_sections,
            "min_rate": args.min_rate, "p99_max_ms": args.p99_max,
            "buyers": args.buyers, "per_buyer_limit": args.per_buyer_limit, "max_per_hold": args.max_per_hold,
            "concurrency": args.concurrency, "rate": args.rate, "max_in_flight": args.max_in_flight,
            "one_shot": args.one_shot, "explicit_ratio": args.explicit_ratio, "browse_ratio": args.browse_ratio,
            "max_attempts": args.max_attempts, "max_retries": args.max_retries, "retry_cap_ms": args.retry_cap_ms,
            "lead_secs": args.lead_secs, "hold_ttl_secs": args.hold_ttl_secs, "storm_holds": args.storm_holds,
            "duration_secs": cli.target.duration, "timeout_ms": cli.target.timeout_ms, "seed": seed,
            "threads": cli.target.threads, "database_checks": pool.is_some(), "watchers": args.watchers,
        }),
        facts,
        figures,
        rates,
        outcomes,
        latency,
        timeline,
        soak,
        checks,
        cpu: Some(cpu),
        server_metrics: match (metrics_before, metrics_after) {
            (Some(b), Some(a)) => Some(prom::delta(&b, &a)),
            _ => None,
        },
        passed,
    })
}

/// Samples the server's resident set size into the middle of every second of the timeline.
async fn sample_server_rss(stats: Arc<stats::Stats>, server_pid: Option<u32>, stop: Arc<AtomicBool>) {
    let Some(pid) = server_pid else { return };
    let origin = stats.origin();
    for second in 0..stats.seconds().len() as u64 {
        let at = origin + Duration::from_millis(second * 1000 + 500);
        tokio::time::sleep_until(at.into()).await;
        if stop.load(Relaxed) {
            return;
        }
        if let Some(kib) = cpu::rss_kib(pid) {
            stats.record_server_rss(at, kib);
        }
    }
}

fn mode(args: &SaleArgs) -> String {
    let how = if args.one_shot { "one-shot purchase" } else { "hold + pay" };
    let upstream = match args.upstream_connections {
        0 => String::new(),
        n => format!("; at most {n} requests at once (upstream connections)"),
    };
    match args.rate {
        Some(rate) => format!("open loop, {rate} baskets/s, latency from intended start; {how}{upstream}"),
        None => format!("closed loop, {} baskets in flight; {how}{upstream}", args.concurrency),
    }
}

async fn seed_search(cli: &Cli, target: &Target, args: &cli::SearchArgs) -> anyhow::Result<Report> {
    if target.database.is_none() {
        bail!("seed-search writes to PostgreSQL: give --database-url (the server's database), or use --spawn");
    }
    let pool = connect(target).await?.context("no database")?;
    let api = Api::new(&target.base_url, Duration::from_millis(cli.target.timeout_ms))?;
    search::run(
        &api,
        &pool,
        args,
        Duration::from_secs(cli.target.duration),
        &target.description,
        (target.server_pid, target.postgres_pid),
    )
    .await
}
