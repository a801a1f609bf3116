//! Live progress: an indicatif bar on a terminal, or a plain line every few
//! seconds when stderr is not one (CI logs, background runs).

use crate::stats::Stats;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How often the bar redraws.
const TICK: Duration = Duration::from_millis(250);
/// How often the plain line is printed without a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Whether progress is drawn as a bar (asked for, and stderr is a terminal).
pub fn on_terminal(show: bool) -> bool {
    show && std::io::stderr().is_terminal()
}

/// A bar of `len` steps, hidden unless `show` and stderr is a terminal.
pub fn bar(len: u64, label: &str, show: bool) -> ProgressBar {
    let target = if on_terminal(show) { ProgressDrawTarget::stderr_with_hz(4) } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{elapsed_precise}] [{bar:30}] {pos}/{len} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_owned());
    bar
}

/// What the sale line shows: the bar's position is `position(stats)` out of `len`.
pub struct SaleProgress {
    pub len: u64,
    pub label: &'static str,
    pub position: fn(&Stats) -> u64,
}

/// Redraws until `stop` is set; returns when it is.
pub async fn run_sale_ticker(stats: Arc<Stats>, what: SaleProgress, show: bool, stop: Arc<AtomicBool>) {
    let terminal = on_terminal(show);
    let bar = bar(what.len, what.label, show);
    let mut last_plain = Instant::now();
    while !stop.load(Relaxed) {
        tokio::time::sleep(TICK).await;
        let line = status_line(&stats);
        let pos = (what.position)(&stats);
        if terminal {
            bar.set_position(pos);
            bar.set_message(line);
        } else if last_plain.elapsed() >= PLAIN_EVERY {
            last_plain = Instant::now();
            eprintln!("loadtest: {} {pos}/{} | {line}", what.label, what.len);
        }
    }
    bar.finish_and_clear();
}

fn status_line(stats: &Stats) -> String {
    let live = &stats.live;
    let elapsed = Instant::now().saturating_duration_since(stats.origin()).as_secs() as usize;
    let (holds, purchases, requests) = match elapsed.checked_sub(1).and_then(|i| stats.seconds().get(i)) {
        Some(s) => (s.holds.load(Relaxed), s.purchases.load(Relaxed), s.requests.load(Relaxed)),
        None => (0, 0, 0),
    };
    format!(
        "held {} | {holds} holds/s, {purchases} purchases/s, {requests} req/s | lost races {} | errors {}",
        live.seats_held.load(Relaxed).max(0),
        live.lost_races.load(Relaxed),
        live.errors.load(Relaxed)
    )
}
