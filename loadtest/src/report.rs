//! The results: printed as tables, written as `report.json` (everything, for
//! machines) and as a self-contained `report.html` (the same tables plus inline
//! SVG charts of throughput, latency and server memory per second and latency
//! percentile curves; no scripts, no external resources).

use crate::checks::Check;
use crate::cpu::CpuUse;
use crate::prom::ServerMetrics;
use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub scenario: String,
    /// e.g. "closed loop, 256 baskets in flight".
    pub mode: String,
    pub target: String,
    pub started_at: String,
    pub config: serde_json::Value,
    /// Headline facts, in order.
    pub facts: Vec<Fact>,
    /// Key numbers for machines (time to sell out, rates, …).
    pub figures: serde_json::Value,
    pub rates: Vec<RateRow>,
    pub outcomes: Vec<OutcomeRow>,
    pub latency: Vec<LatencyRow>,
    pub timeline: Timeline,
    /// Runs of at least [`SOAK_MIN_SECS`]: the server's memory and the latency, early and late.
    pub soak: Option<Soak>,
    pub checks: Vec<Check>,
    pub cpu: Option<CpuUse>,
    pub server_metrics: Option<ServerMetrics>,
    pub passed: bool,
}

#[derive(Serialize)]
pub struct Fact {
    pub name: String,
    pub value: String,
}

pub fn fact(name: &str, value: impl Into<String>) -> Fact {
    Fact { name: name.to_owned(), value: value.into() }
}

#[derive(Serialize)]
pub struct RateRow {
    pub what: String,
    pub total: u64,
    /// Best whole second.
    pub peak_1s: u64,
    /// Over the measured phase.
    pub mean_per_s: f64,
}

#[derive(Serialize)]
pub struct OutcomeRow {
    pub op: String,
    /// 0: no response.
    pub status: u16,
    pub code: String,
    pub count: u64,
}

#[derive(Serialize)]
pub struct LatencyRow {
    pub op: String,
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// [percentile, ms] points of the percentile curve.
    pub curve: Vec<[f64; 2]>,
}

impl LatencyRow {
    /// From a histogram of microseconds.
    pub fn new(op: &str, h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        // Up to 99.99 %, evenly in "nines", then the maximum.
        let mut curve: Vec<[f64; 2]> = (0..=40)
            .map(|i| {
                let p = 1.0 - 10f64.powf(-(i as f64) / 10.0);
                [p * 100.0, ms(h.value_at_quantile(p))]
            })
            .collect();
        curve.push([100.0, ms(h.max())]);
        Self {
            op: op.to_owned(),
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
            curve,
        }
    }
}

/// Per second of the measured phase: counts, and (sale scenarios) the p50/p99 latency
/// of the requests that ended in it (`p50_us`, `p99_us`, 0 when none) and the
/// server's resident set size (`server_rss_mib`, 0 when unknown).
///
/// A sale shorter than [`crate::stats::FINE_SPAN`] is kept at a finer step
/// (`step_ms`, 100): then each row is a tenth of a second and has no latency or RSS.
#[derive(Serialize, Default)]
pub struct Timeline {
    pub columns: Vec<String>,
    /// rows[step][column]
    pub rows: Vec<Vec<u64>>,
    /// Length of a row in milliseconds (0 means 1000).
    pub step_ms: u64,
}

impl Timeline {
    /// Length of a row in seconds.
    pub fn step_secs(&self) -> f64 {
        if self.step_ms == 0 { 1.0 } else { self.step_ms as f64 / 1000.0 }
    }
}

/// The step a sale of `secs` seconds is charted at: tenths of a second below
/// [`crate::stats::FINE_SPAN`] (a per-second chart of it would be a point or two),
/// whole seconds otherwise.
pub fn timeline_step(secs: f64) -> std::time::Duration {
    if secs < crate::stats::FINE_SPAN.as_secs_f64() {
        crate::stats::FINE_STEP
    } else {
        std::time::Duration::from_secs(1)
    }
}

/// Best whole second of `column` (the best run of rows covering one second) and the mean over `secs`.
pub fn rate_row(what: &str, timeline: &Timeline, column: &str, total: u64, secs: f64) -> RateRow {
    let i = timeline.columns.iter().position(|c| c == column);
    let per_second = ((1.0 / timeline.step_secs()).round() as usize).max(1);
    let peak = i.map_or(0, |i| {
        let values: Vec<u64> = timeline.rows.iter().map(|r| r[i]).collect();
        if values.len() <= per_second {
            values.iter().sum()
        } else {
            values.windows(per_second).map(|w| w.iter().sum()).max().unwrap_or(0)
        }
    });
    RateRow {
        what: what.to_owned(),
        total,
        peak_1s: peak,
        mean_per_s: if secs > 0.0 { total as f64 / secs } else { 0.0 },
    }
}

/// Shortest measured phase that gets a soak summary.
pub const SOAK_MIN_SECS: f64 = 300.0;
/// Minutes compared at the start and at the end of a soak.
const SOAK_SPAN_MINUTES: usize = 5;

/// A long run's drift: the server's resident set size along the run, and the latency of
/// every request in its first and its last minutes.
#[derive(Serialize)]
pub struct Soak {
    /// Length of the measured phase.
    pub secs: f64,
    pub rss_at_1min: Option<RssSample>,
    pub rss_at_middle: Option<RssSample>,
    pub rss_at_end: Option<RssSample>,
    pub rss_peak: Option<RssSample>,
    pub first: LatencySpan,
    pub last: LatencySpan,
}

/// The server's resident set size sampled in `second` of the timeline.
#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
pub struct RssSample {
    pub second: usize,
    pub mib: f64,
}

/// Latency of every request that ended between `from_secs` and `to_secs`.
#[derive(Serialize)]
pub struct LatencySpan {
    pub from_secs: u64,
    pub to_secs: u64,
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencySpan {
    fn new(minutes: &Range<usize>, h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            from_secs: minutes.start as u64 * 60,
            to_secs: minutes.end as u64 * 60,
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// `secs` long: the soak summary from per-second RSS samples in KiB (0: none) and a source
/// of latency histograms by whole minutes; `None` for a run shorter than [`SOAK_MIN_SECS`].
pub fn soak(secs: f64, rss_kib: &[u64], latency_in_minutes: impl Fn(Range<usize>) -> Histogram<u64>) -> Option<Soak> {
    if secs.is_nan() || secs < SOAK_MIN_SECS {
        return None;
    }
    let sample = |i: usize| RssSample { second: i, mib: rss_kib[i] as f64 / 1024.0 };
    // The first sample at or after `i`, else the last one before it.
    let near = |i: usize| {
        let after = rss_kib.iter().enumerate().skip(i).find(|(_, k)| **k > 0).map(|(i, _)| i);
        after.or_else(|| rss_kib[..i.min(rss_kib.len())].iter().rposition(|k| *k > 0)).map(sample)
    };
    let peak = rss_kib.iter().enumerate().filter(|(_, k)| **k > 0).max_by_key(|(i, k)| (**k, usize::MAX - i));
    let whole_minutes = (secs / 60.0).floor() as usize;
    let first = 0..SOAK_SPAN_MINUTES;
    let last = whole_minutes.saturating_sub(SOAK_SPAN_MINUTES)..whole_minutes;
    Some(Soak {
        secs,
        rss_at_1min: near(60),
        rss_at_middle: near((secs / 2.0) as usize),
        rss_at_end: rss_kib.iter().rposition(|k| *k > 0).map(sample),
        rss_peak: peak.map(|(i, _)| sample(i)),
        first: LatencySpan::new(&first, &latency_in_minutes(first.clone())),
        last: LatencySpan::new(&last, &latency_in_minutes(last.clone())),
    })
}

// ---- text ------------------------------------------------------------------------

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}{unit}"))
}

pub fn to_text(r: &Report) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "\n== boxoffice loadtest: {} ({}) ==", r.scenario, r.mode);
    let _ = writeln!(w, "target: {}", r.target);
    for f in &r.facts {
        let _ = writeln!(w, "{:<26} {}", format!("{}:", f.name), f.value);
    }
    if !r.rates.is_empty() {
        let _ = writeln!(w, "\n{:<24} {:>10} {:>12} {:>12}", "throughput", "total", "peak 1 s", "mean /s");
        for x in &r.rates {
            let _ = writeln!(w, "  {:<22} {:>10} {:>12} {:>12.0}", x.what, x.total, x.peak_1s, x.mean_per_s);
        }
    }
    if !r.outcomes.is_empty() {
        let _ =
            writeln!(w, "\nrequests by outcome\n  {:<20} {:>6}  {:<24} {:>10}", "operation", "status", "code", "count");
    }
    for o in &r.outcomes {
        let status = if o.status == 0 { "-".to_owned() } else { o.status.to_string() };
        let code = if o.code.is_empty() { "ok" } else { &o.code };
        let _ = writeln!(w, "  {:<20} {:>6}  {:<24} {:>10}", o.op, status, code, o.count);
    }
    let _ = writeln!(
        w,
        "\nlatency (ms)\n  {:<28} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "operation", "count", "p50", "p90", "p99", "p99.9", "max", "mean"
    );
    for l in &r.latency {
        let _ = writeln!(
            w,
            "  {:<28} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>8.2}",
            l.op, l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms
        );
    }
    if let Some(soak) = &r.soak {
        soak_text(w, soak);
    }
    if let Some(c) = &r.cpu {
        let _ = writeln!(w, "\nCPU during the measured phase ({:.2} s wall, {} cores)", c.wall_secs, c.cores);
        let _ = writeln!(
            w,
            "  loadtest   {:.2} s ({:.0}% of a core; user {:.2} s, system {:.2} s)",
            c.loadtest_user_secs + c.loadtest_system_secs,
            c.loadtest_percent,
            c.loadtest_user_secs,
            c.loadtest_system_secs
        );
        let _ = writeln!(w, "  server     {} ({} of a core)", opt(c.server_secs, " s"), opt(c.server_percent, "%"));
        if !c.node_percent.is_empty() {
            let nodes: Vec<String> =
                c.node_percent.iter().enumerate().map(|(i, p)| format!("node{i} {p:.0}%")).collect();
            let _ = writeln!(w, "    per node {}", nodes.join(", "));
        }
        let _ = writeln!(w, "  postgres   {} ({} of a core)", opt(c.postgres_secs, " s"), opt(c.postgres_percent, "%"));
        let _ = writeln!(w, "  others     {} (every other process on the machine)", opt(c.other_processes_secs, " s"));
        if let Some(p) = &c.per_order_us {
            let _ = writeln!(
                w,
                "  per order  server {}, postgres {}, loadtest {:.0} µs of CPU ({} orders)",
                opt(p.server.map(f64::round), " µs"),
                opt(p.postgres.map(f64::round), " µs"),
                p.loadtest,
                thousands(p.orders)
            );
        }
        let _ = writeln!(
            w,
            "  machine    busy {} of all cores, I/O wait {}",
            opt(c.machine_busy_percent, "%"),
            opt(c.machine_iowait_percent, "%")
        );
    }
    if let Some(m) = &r.server_metrics {
        let _ = writeln!(w, "\nserver metrics during the measured phase (/metrics)");
        let _ = writeln!(
            w,
            "  journal: {} commits, {} records, batch mean {:.1} (p50 <= {}, p99 <= {}), commit mean {:.2} ms (p50 <= {}, p99 <= {})",
            m.journal_commits,
            m.journal_records,
            m.journal_batch_mean,
            opt(m.journal_batch_p50_le, ""),
            opt(m.journal_batch_p99_le, ""),
            m.journal_commit_mean_ms,
            opt(m.journal_commit_p50_le_ms, " ms"),
            opt(m.journal_commit_p99_le_ms, " ms")
        );
        let _ = writeln!(
            w,
            "  shed (503 overloaded): {}, actor overload rejections: {}",
            m.http_shed, m.actor_overload_rejections
        );
        let _ = writeln!(
            w,
            "  {:<7} {:<34} {:>9} {:>10} {:>12}",
            "method", "route (server-side latency)", "count", "mean ms", "p99 <= ms"
        );
        for rt in &m.routes {
            let _ = writeln!(
                w,
                "  {:<7} {:<34} {:>9} {:>10.2} {:>12}",
                rt.method,
                rt.route,
                rt.count,
                rt.mean_ms,
                opt(rt.p99_le_ms, "")
            );
        }
    }
    let _ = writeln!(w, "\nchecks");
    for c in &r.checks {
        let mark = match (c.passed, c.critical) {
            (true, true) => "PASS",
            (true, false) => "info",
            (false, true) => "FAIL",
            (false, false) => "MISS",
        };
        let _ = writeln!(w, "  [{mark}] {}: {}", c.name, c.detail);
    }
    let _ = writeln!(w, "\nresult: {}", if r.passed { "PASS" } else { "FAIL" });
    out
}

fn rss_text(x: Option<RssSample>) -> String {
    x.map_or_else(|| "- (unknown)".to_owned(), |x| format!("{:.1} MiB (at {} s)", x.mib, x.second))
}

fn ratio(a: f64, b: f64) -> String {
    if a > 0.0 { format!("x{:.2}", b / a) } else { "-".to_owned() }
}

fn soak_text(w: &mut String, s: &Soak) {
    let _ = writeln!(w, "\nsoak ({:.0} s measured)", s.secs);
    let _ = writeln!(w, "  server RSS at 1 min        {}", rss_text(s.rss_at_1min));
    let _ = writeln!(w, "  server RSS at the middle   {}", rss_text(s.rss_at_middle));
    let _ = writeln!(w, "  server RSS at the end      {}", rss_text(s.rss_at_end));
    let _ = writeln!(w, "  server RSS peak            {}", rss_text(s.rss_peak));
    if let (Some(a), Some(b)) = (s.rss_at_1min, s.rss_at_end) {
        let _ = writeln!(
            w,
            "  RSS end vs 1 min           {:+.1} MiB ({:+.1}%)",
            b.mib - a.mib,
            100.0 * (b.mib - a.mib) / a.mib.max(1e-9)
        );
    }
    let _ = writeln!(w, "  latency, all requests      {:>9} {:>8} {:>8} {:>8}", "count", "p50 ms", "p99 ms", "max ms");
    for (what, x) in [("first", &s.first), ("last", &s.last)] {
        let label = format!("{what} 5 min ({}-{} s)", x.from_secs, x.to_secs);
        let _ = writeln!(w, "    {label:<24} {:>9} {:>8.2} {:>8.2} {:>8.1}", x.count, x.p50_ms, x.p99_ms, x.max_ms);
    }
    let _ = writeln!(
        w,
        "  last vs first 5 min        p50 {}, p99 {}",
        ratio(s.first.p50_ms, s.last.p50_ms),
        ratio(s.first.p99_ms, s.last.p99_ms)
    );
}

// ---- files -----------------------------------------------------------------------

/// Writes report.json and report.html into `dir`; returns their paths.
pub fn write(r: &Report, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = dir.join("report.json");
    let html = dir.join("report.html");
    std::fs::write(&json, serde_json::to_vec_pretty(r)?).with_context(|| format!("writing {}", json.display()))?;
    std::fs::write(&html, to_html(r)).with_context(|| format!("writing {}", html.display()))?;
    Ok((json, html))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const COLORS: [&str; 8] = ["#1f77b4", "#2ca02c", "#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

struct Axis {
    label: &'static str,
    min: f64,
    max: f64,
    log: bool,
    ticks: Vec<(f64, String)>,
}

impl Axis {
    fn scale(&self, v: f64, from: f64, to: f64) -> f64 {
        let f = |x: f64| if self.log { x.max(self.min).log10() } else { x };
        let (lo, hi) = (f(self.min), f(self.max));
        let t = if hi > lo { (f(v).clamp(lo, hi) - lo) / (hi - lo) } else { 0.0 };
        from + t * (to - from)
    }
}

/// A line chart as inline SVG.
fn svg_chart(title: &str, series: &[Series], x: &Axis, y: &Axis) -> String {
    let (width, height) = (820.0, 320.0);
    let (left, right, top, bottom) = (64.0, 170.0, 28.0, 44.0);
    let (x0, x1, y0, y1) = (left, width - right, height - bottom, top);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{t}"><text x="{left}" y="18" class="title">{t}</text>"#,
        t = esc(title)
    );
    for (v, label) in &y.ticks {
        let py = y.scale(*v, y0, y1);
        let _ = write!(
            s,
            r#"<line x1="{x0}" y1="{py:.1}" x2="{x1}" y2="{py:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"#,
            x0 - 6.0,
            py + 4.0,
            esc(label)
        );
    }
    for (v, label) in &x.ticks {
        let px = x.scale(*v, x0, x1);
        let _ = write!(
            s,
            r#"<line x1="{px:.1}" y1="{y0}" x2="{px:.1}" y2="{:.1}" class="grid"/><text x="{px:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"#,
            y0 + 4.0,
            y0 + 18.0,
            esc(label)
        );
    }
    let _ = write!(
        s,
        r#"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" class="axis"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" class="axis"/><text x="{:.1}" y="{:.1}" class="label" text-anchor="middle">{}</text><text x="14" y="{:.1}" class="label" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        height - 6.0,
        esc(x.label),
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        esc(y.label)
    );
    for (i, ser) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = ser
            .points
            .iter()
            .map(|(px, py)| format!("{:.1},{:.1}", x.scale(*px, x0, x1), y.scale(*py, y0, y1)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"/><rect x="{:.1}" y="{:.1}" width="12" height="3" fill="{color}"/><text x="{:.1}" y="{:.1}" class="legend">{}</text>"#,
            points.join(" "),
            x1 + 14.0,
            y1 + 10.0 + 18.0 * i as f64,
            x1 + 30.0,
            y1 + 14.0 + 18.0 * i as f64,
            esc(&ser.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// `n` with a thin space every three digits when it helps (10,000 and up): `1234`, `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    if n < 10_000 {
        return digits;
    }
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A tick label for `v` on an axis whose ticks are `step` apart: as many decimals as the
/// step needs and no more (`0.6`, never `0.6000000000000001`), thousands separated.
pub fn tick_label(v: f64, step: f64) -> String {
    if v.abs() < step.abs() * 1e-6 {
        return "0".to_owned();
    }
    let decimals = if step >= 1.0 || step <= 0.0 {
        0
    } else {
        // The fewest decimals that show the step exactly (0.25 → 2, 0.5 → 1, 0.001 → 3).
        (0..=6).find(|&d| ((step * 10f64.powi(d)).round() - step * 10f64.powi(d)).abs() < 1e-6).unwrap_or(6) as usize
    };
    if decimals == 0 {
        let r = v.round();
        return if r < 0.0 { format!("-{}", thousands(-r as u64)) } else { thousands(r as u64) };
    }
    let text = format!("{v:.decimals$}");
    if text.starts_with("-0") && text.trim_start_matches(['-', '0', '.']).is_empty() {
        text[1..].to_owned()
    } else {
        text
    }
}

/// Round tick values from 0 to at least `max` (1, 2 or 5 times a power of ten apart).
fn linear_ticks(max: f64) -> (f64, Vec<(f64, String)>) {
    let max = if max > 0.0 && max.is_finite() { max } else { 1.0 };
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(magnitude * 10.0);
    let count = (max / step - 1e-9).ceil().max(1.0) as usize;
    let top = count as f64 * step;
    let ticks = (0..=count).map(|i| (i as f64 * step, tick_label(i as f64 * step, step))).collect();
    (top, ticks)
}

/// The x axis of the timeline charts (seconds since the opening moment, whatever the
/// step) and the throughput chart's title, which says the step.
fn time_axis(r: &Report) -> (Axis, &'static str) {
    let step = r.timeline.step_secs();
    let secs = r.timeline.rows.len() as f64 * step;
    let (top, xticks) = linear_ticks(secs);
    let title = if step < 1.0 { "Throughput per second (in 100 ms steps)" } else { "Throughput per second" };
    (Axis { label: "seconds since the opening moment", min: 0.0, max: top, log: false, ticks: xticks }, title)
}

fn throughput_chart(r: &Report) -> Option<String> {
    if r.timeline.rows.is_empty() {
        return None;
    }
    let wanted = ["holds", "purchases", "tickets", "releases", "browses", "requests", "lost_races", "errors"];
    let step = r.timeline.step_secs();
    let series: Vec<Series> = wanted
        .iter()
        .filter_map(|name| {
            let i = r.timeline.columns.iter().position(|c| c == name)?;
            // A count per step, plotted as a rate per second at the middle of its step.
            let points: Vec<(f64, f64)> = r
                .timeline
                .rows
                .iter()
                .enumerate()
                .map(|(t, row)| ((t as f64 + 0.5) * step, row[i] as f64 / step))
                .collect();
            points.iter().any(|p| p.1 > 0.0).then(|| Series { name: format!("{name} /s"), points })
        })
        .collect();
    let max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    let (top, yticks) = linear_ticks(max);
    let (x, title) = time_axis(r);
    let y = Axis { label: "per second", min: 0.0, max: top, log: false, ticks: yticks };
    Some(svg_chart(title, &series, &x, &y))
}

/// Timeline columns over time: (column, legend, divisor of the stored value).
fn timeline_chart(r: &Report, title: &str, y_label: &'static str, wanted: &[(&str, &str, f64)]) -> Option<String> {
    let series: Vec<Series> = wanted
        .iter()
        .filter_map(|(column, name, divisor)| {
            let i = r.timeline.columns.iter().position(|c| c == column)?;
            // 0 is "none" (no request in that second, RSS unknown): a gap, not a value.
            let points: Vec<(f64, f64)> = r
                .timeline
                .rows
                .iter()
                .enumerate()
                .filter(|(_, row)| row[i] > 0)
                .map(|(t, row)| ((t as f64 + 0.5) * r.timeline.step_secs(), row[i] as f64 / divisor))
                .collect();
            (!points.is_empty()).then(|| Series { name: (*name).to_owned(), points })
        })
        .collect();
    if series.is_empty() {
        return None;
    }
    let max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    let (top, yticks) = linear_ticks(max);
    let (x, _) = time_axis(r);
    let y = Axis { label: y_label, min: 0.0, max: top, log: false, ticks: yticks };
    Some(svg_chart(title, &series, &x, &y))
}

fn latency_chart(r: &Report) -> Option<String> {
    let series: Vec<Series> = r
        .latency
        .iter()
        .filter(|l| l.count > 0)
        .map(|l| Series {
            name: l.op.clone(),
            // x in "nines": 0 = p0, 1 = p90, 2 = p99, 3 = p99.9, 4 = p99.99.
            points: l
                .curve
                .iter()
                .map(|[p, ms]| ((-(1.0 - p / 100.0).max(1e-5).log10()).min(4.5), ms.max(0.001)))
                .collect(),
        })
        .collect();
    if series.is_empty() {
        return None;
    }
    let max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.001, f64::max);
    let min = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(f64::INFINITY, f64::min);
    let (lo, hi) = (10f64.powf(min.log10().floor()), 10f64.powf(max.log10().ceil()));
    let yticks = (lo.log10() as i32..=hi.log10() as i32)
        .map(|e| {
            let v = 10f64.powi(e);
            (v, tick_label(v, v))
        })
        .collect();
    let xticks =
        ["0%", "90%", "99%", "99.9%", "99.99%"].iter().enumerate().map(|(i, l)| (i as f64, l.to_string())).collect();
    let x = Axis { label: "percentile", min: 0.0, max: 4.5, log: false, ticks: xticks };
    let y = Axis { label: "latency (ms, log scale)", min: lo, max: hi, log: true, ticks: yticks };
    Some(svg_chart("Latency by percentile", &series, &x, &y))
}

pub fn to_html(r: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>boxoffice loadtest: {s}</title><style>\
         body{{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:980px;color:#222}}\
         h1{{font-size:22px}}h2{{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}}\
         table{{border-collapse:collapse;margin:8px 0}}td,th{{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}.pass{{color:#1a7f37;font-weight:600}}.fail{{color:#c62828;font-weight:600}}\
         .info{{color:#666}}.title{{font-weight:600;font-size:14px}}.tick{{font-size:11px;fill:#555}}.label{{font-size:12px;fill:#333}}\
         .legend{{font-size:12px}}.grid{{stroke:#eee}}.axis{{stroke:#888}}dl{{display:grid;grid-template-columns:max-content auto;gap:2px 16px}}\
         dt{{color:#555}}dd{{margin:0}}</style></head><body>",
        s = esc(&r.scenario)
    );
    let verdict = if r.passed { "<span class=\"pass\">PASS</span>" } else { "<span class=\"fail\">FAIL</span>" };
    let _ = write!(
        h,
        "<h1>boxoffice loadtest: {} — {verdict}</h1><p>{} · {} · started {}</p><dl>",
        esc(&r.scenario),
        esc(&r.mode),
        esc(&r.target),
        esc(&r.started_at)
    );
    for f in &r.facts {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(&f.name), esc(&f.value));
    }
    h.push_str("</dl>");
    if !r.rates.is_empty() {
        h.push_str("<h2>Throughput</h2><table><tr><th></th><th>total</th><th>peak 1 s</th><th>mean /s</th></tr>");
        for x in &r.rates {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td></tr>",
                esc(&x.what),
                x.total,
                x.peak_1s,
                x.mean_per_s
            );
        }
        h.push_str("</table>");
    }
    if let Some(chart) = throughput_chart(r) {
        h.push_str(&chart);
    }
    h.push_str("<h2>Latency (ms)</h2><table><tr><th>operation</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th></tr>");
    for l in &r.latency {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.1}</td><td>{:.2}</td></tr>",
            esc(&l.op),
            l.count,
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.p999_ms,
            l.max_ms,
            l.mean_ms
        );
    }
    h.push_str("</table>");
    if let Some(chart) = latency_chart(r) {
        h.push_str(&chart);
    }
    let per_second = [("p50_us", "p50", 1000.0), ("p99_us", "p99", 1000.0)];
    if let Some(chart) = timeline_chart(r, "Latency of all requests, per second", "ms", &per_second) {
        h.push_str(&chart);
    }
    let rss = [("server_rss_mib", "server RSS", 1.0)];
    if let Some(chart) = timeline_chart(r, "Server resident set size", "MiB", &rss) {
        h.push_str(&chart);
    }
    if let Some(soak) = &r.soak {
        let _ =
            write!(h, "<h2>Soak ({:.0} s)</h2><table><tr><th>server RSS</th><th>MiB</th><th>at s</th></tr>", soak.secs);
        for (what, x) in [
            ("at 1 min", soak.rss_at_1min),
            ("at the middle", soak.rss_at_middle),
            ("at the end", soak.rss_at_end),
            ("peak", soak.rss_peak),
        ] {
            match x {
                Some(x) => {
                    let _ = write!(h, "<tr><td>{what}</td><td>{:.1}</td><td>{}</td></tr>", x.mib, x.second);
                }
                None => {
                    let _ = write!(h, "<tr><td>{what}</td><td>-</td><td>-</td></tr>");
                }
            }
        }
        h.push_str(
            "</table><table><tr><th>all requests</th><th>count</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th></tr>",
        );
        for (what, x) in [("first 5 min", &soak.first), ("last 5 min", &soak.last)] {
            let _ = write!(
                h,
                "<tr><td>{what} ({}-{} s)</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.1}</td></tr>",
                x.from_secs, x.to_secs, x.count, x.p50_ms, x.p99_ms, x.max_ms
            );
        }
        h.push_str("</table>");
    }
    h.push_str(
        "<h2>Requests by outcome</h2><table><tr><th>operation</th><th>status</th><th>code</th><th>count</th></tr>",
    );
    for o in &r.outcomes {
        let status = if o.status == 0 { "-".to_owned() } else { o.status.to_string() };
        let code = if o.code.is_empty() { "ok" } else { &o.code };
        let _ =
            write!(h, "<tr><td>{}</td><td>{status}</td><td>{}</td><td>{}</td></tr>", esc(&o.op), esc(code), o.count);
    }
    h.push_str("</table><h2>Checks</h2><table>");
    for c in &r.checks {
        let (class, mark) = match (c.passed, c.critical) {
            (true, true) => ("pass", "PASS"),
            (true, false) => ("info", "info"),
            (false, true) => ("fail", "FAIL"),
            (false, false) => ("fail", "MISS (target, not a failure)"),
        };
        let _ = write!(
            h,
            "<tr><td class=\"{class}\">{mark}</td><td style=\"text-align:left\">{}</td><td style=\"text-align:left\">{}</td></tr>",
            esc(&c.name),
            esc(&c.detail)
        );
    }
    h.push_str("</table>");
    if let Some(c) = &r.cpu {
        let _ = write!(
            h,
            "<h2>CPU during the measured phase</h2><table><tr><th>process</th><th>CPU s</th><th>% of a core</th></tr>\
             <tr><td>loadtest</td><td>{:.2}</td><td>{:.0}</td></tr><tr><td>server</td><td>{}</td><td>{}</td></tr>\
             <tr><td>postgres</td><td>{}</td><td>{}</td></tr><tr><td>every other process</td><td>{}</td><td></td></tr></table>\
             <p>{:.2} s wall on {} cores; machine busy {} of all cores, I/O wait {}.</p>{}",
            c.loadtest_user_secs + c.loadtest_system_secs,
            c.loadtest_percent,
            opt(c.server_secs, ""),
            opt(c.server_percent, ""),
            opt(c.postgres_secs, ""),
            opt(c.postgres_percent, ""),
            opt(c.other_processes_secs, ""),
            c.wall_secs,
            c.cores,
            opt(c.machine_busy_percent, "%"),
            opt(c.machine_iowait_percent, "%"),
            c.per_order_us.as_ref().map_or(String::new(), |p| format!(
                "<p>CPU per order ({} orders): server {}, PostgreSQL {}, loadtest {:.0} µs.</p>",
                thousands(p.orders),
                opt(p.server.map(f64::round), " µs"),
                opt(p.postgres.map(f64::round), " µs"),
                p.loadtest
            ))
        );
    }
    if let Some(m) = &r.server_metrics {
        let _ = write!(
            h,
            "<h2>Server metrics during the measured phase</h2><p>Journal: {} commits of {} records; batch mean {:.1} (p50 ≤ {}, p99 ≤ {}); commit mean {:.2} ms (p50 ≤ {}, p99 ≤ {}). Shed: {}; actor overload rejections: {}.</p>\
             <table><tr><th>method</th><th>route</th><th>count</th><th>mean ms</th><th>p99 ≤ ms</th></tr>",
            m.journal_commits,
            m.journal_records,
            m.journal_batch_mean,
            opt(m.journal_batch_p50_le, ""),
            opt(m.journal_batch_p99_le, ""),
            m.journal_commit_mean_ms,
            opt(m.journal_commit_p50_le_ms, " ms"),
            opt(m.journal_commit_p99_le_ms, " ms"),
            m.http_shed,
            m.actor_overload_rejections
        );
        for rt in &m.routes {
            let _ = write!(
                h,
                "<tr><td>{}</td><td style=\"text-align:left\">{}</td><td>{}</td><td>{:.2}</td><td>{}</td></tr>",
                esc(&rt.method),
                esc(&rt.route),
                rt.count,
                rt.mean_ms,
                opt(rt.p99_le_ms, "")
            );
        }
        h.push_str("</table>");
    }
    let _ = write!(
        h,
        "<h2>Configuration</h2><pre>{}</pre></body></html>",
        esc(&serde_json::to_string_pretty(&r.config).unwrap_or_default())
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    fn sample() -> Report {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 3).unwrap();
        }
        Report {
            tool: "boxoffice-loadtest",
            scenario: "flash-sale".into(),
            mode: "closed loop".into(),
            target: "http://127.0.0.1:1".into(),
            started_at: "now".into(),
            config: serde_json::json!({"seats": 10}),
            facts: vec![fact("sold", "10 <b>")],
            figures: serde_json::json!({}),
            rates: vec![],
            outcomes: vec![OutcomeRow { op: "hold".into(), status: 201, code: String::new(), count: 3 }],
            latency: vec![LatencyRow::new("hold", &h)],
            timeline: Timeline {
                columns: vec!["holds".into(), "p50_us".into(), "p99_us".into(), "server_rss_mib".into()],
                rows: vec![vec![3, 1_200, 4_000, 50], vec![5, 0, 0, 0]],
                step_ms: 1000,
            },
            soak: None,
            checks: vec![],
            cpu: None,
            server_metrics: None,
            passed: true,
        }
    }

    #[test]
    fn tick_labels_are_round_numbers() {
        // 0.1 steps add up to 0.30000000000000004 and the like: never shown as such.
        let (top, ticks) = linear_ticks(0.55);
        assert!((top - 0.6).abs() < 1e-9, "{top}");
        let labels: Vec<&str> = ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["0", "0.2", "0.4", "0.6"]);
        let (_, ticks) = linear_ticks(0.7);
        assert_eq!(ticks.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>(), ["0", "0.2", "0.4", "0.6", "0.8"]);
        let (_, ticks) = linear_ticks(2.1);
        assert_eq!(ticks.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>(), ["0", "0.5", "1.0", "1.5", "2.0", "2.5"]);
        let (top, ticks) = linear_ticks(48_123.0);
        assert_eq!(top, 50_000.0);
        assert_eq!(ticks.last().unwrap().1, "50,000");
        assert_eq!(ticks[1].1, "10,000");
        let (top, ticks) = linear_ticks(3_000.0);
        assert_eq!((top, ticks.last().unwrap().1.as_str()), (3_000.0, "3000"));
        assert_eq!(linear_ticks(0.0).0, 1.0);
        assert_eq!(tick_label(0.001, 0.001), "0.001");
        assert_eq!(tick_label(0.6000000000000001, 0.2), "0.6");
        assert_eq!(tick_label(1_234_567.0, 1.0), "1,234,567");
        assert_eq!(thousands(9_999), "9999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn short_sales_are_charted_in_tenths_of_a_second() {
        assert_eq!(timeline_step(0.4), std::time::Duration::from_millis(100));
        assert_eq!(timeline_step(4.9), std::time::Duration::from_millis(100));
        assert_eq!(timeline_step(5.0), std::time::Duration::from_secs(1));
        assert_eq!(timeline_step(120.0), std::time::Duration::from_secs(1));
        let mut r = sample();
        // 0.8 s of sale in 100 ms steps.
        r.timeline =
            Timeline { columns: vec!["holds".into()], rows: (0..8).map(|i| vec![10 + i]).collect(), step_ms: 100 };
        // The best second is all eight tenths: 10 + 11 + … + 17.
        assert_eq!(rate_row("holds", &r.timeline, "holds", 108, 0.8).peak_1s, 108);
        let chart = throughput_chart(&r).expect("a chart");
        assert!(chart.contains("in 100 ms steps"), "{chart}");
        // 17 holds in the last tenth is 170 per second, so the y axis reaches 200; x reaches 1 s.
        assert!(chart.contains(">200<") && chart.contains(">0.8<") && !chart.contains("00000001"), "{chart}");
        let mut long = sample();
        long.timeline.rows = (0..30).map(|_| vec![5, 1_000, 2_000, 50]).collect();
        assert_eq!(rate_row("holds", &long.timeline, "holds", 150, 30.0).peak_1s, 5);
        assert!(throughput_chart(&long).unwrap().contains(">30<"));
    }

    #[test]
    fn html_is_self_contained_and_escaped() {
        let html = to_html(&sample());
        assert!(html.contains("<svg"));
        assert!(html.contains("polyline"));
        assert!(html.contains("10 &lt;b&gt;"));
        assert!(!html.contains("http://www") && !html.contains("https://") && !html.contains("<script"));
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let r = sample();
        let l = &r.latency[0];
        assert!((l.p50_ms - 15.0).abs() < 0.1, "{}", l.p50_ms);
        assert!((l.max_ms - 30.0).abs() < 0.1);
        assert!(to_text(&r).contains("requests by outcome"));
        assert_eq!(rate_row("holds", &r.timeline, "holds", 8, 2.0).peak_1s, 5);
    }

    #[test]
    fn soak_summary_compares_start_and_end() {
        let minutes = |m: Range<usize>| {
            let mut h = new_histogram();
            for minute in m {
                // 1 ms in the first minutes, 2 ms later.
                h.record(if minute < 5 { 1_000 } else { 2_000 }).unwrap();
            }
            h
        };
        assert!(soak(299.0, &[], minutes).is_none());
        let mut rss = vec![0u64; 1_000];
        for (i, kib) in rss.iter_mut().enumerate().skip(3).take(990) {
            *kib = 50 * 1024 + i as u64;
        }
        rss[400] = 80 * 1024;
        let s = soak(990.5, &rss, minutes).expect("a soak");
        assert_eq!(s.rss_at_1min.unwrap().second, 60);
        assert_eq!(s.rss_at_middle.unwrap().second, 495);
        assert_eq!(s.rss_at_end.unwrap().second, 992);
        assert_eq!(s.rss_peak, Some(RssSample { second: 400, mib: 80.0 }));
        assert_eq!((s.first.from_secs, s.first.to_secs, s.first.count), (0, 300, 5));
        assert_eq!((s.last.from_secs, s.last.to_secs, s.last.count), (660, 960, 5));
        assert!((s.first.p50_ms - 1.0).abs() < 0.01 && (s.last.p99_ms - 2.0).abs() < 0.01);
        let mut r = sample();
        r.soak = Some(s);
        let text = to_text(&r);
        assert!(text.contains("server RSS peak            80.0 MiB (at 400 s)"), "{text}");
        assert!(text.contains("last 5 min (660-960 s)"));
        let html = to_html(&r);
        assert!(html.contains("Soak (990 s)") && html.contains("Server resident set size"));
        // No samples at all: unknown, not zero.
        let s = soak(600.0, &[0; 700], minutes).expect("a soak");
        assert!(s.rss_at_1min.is_none() && s.rss_peak.is_none());
    }
}
