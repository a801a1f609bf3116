//! The server's own view of the run, from `/metrics` (Prometheus text) scraped
//! before and after: group-commit batch sizes and commit latency, per-route
//! latency as the server measured it, and load shedding. The difference between
//! the server's and the generator's latency is time spent queueing in sockets
//! and in the generator.

use crate::http::Api;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// One scrape: series (name plus labels, as printed) to value.
pub struct Scrape(HashMap<String, f64>);

pub async fn scrape(api: &Api) -> Option<Scrape> {
    let r = api.get("/metrics", None).await.ok()?;
    r.ok().then(|| parse(&String::from_utf8_lossy(&r.body)))
}

impl Scrape {
    /// The sum of every series of `name` (all label sets).
    pub fn total(&self, name: &str) -> f64 {
        self.0.iter().filter(|(series, _)| split_series(series).0 == name).map(|(_, v)| v).sum()
    }
}

/// `name` summed over every node of `api`, before or after the run.
pub async fn total_over_nodes(api: &Api, name: &str) -> f64 {
    let mut total = 0.0;
    for i in 0..api.nodes() {
        if let Some(s) = scrape(&api.node(i)).await {
            total += s.total(name);
        }
    }
    total
}

pub fn parse(text: &str) -> Scrape {
    Scrape(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.trim().to_owned(), value.trim().parse::<f64>().ok()?))
            })
            .collect(),
    )
}

/// (name, labels) of a series; label values unescaped.
fn split_series(series: &str) -> (&str, Vec<(String, String)>) {
    let Some((name, rest)) = series.split_once('{') else { return (series, Vec::new()) };
    let body = rest.strip_suffix('}').unwrap_or(rest);
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').trim().to_owned(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    (name, labels)
}

/// A histogram's change between two scrapes.
#[derive(Default, Clone)]
struct HistDelta {
    count: f64,
    sum: f64,
    /// (upper bound, cumulative count)
    buckets: Vec<(f64, f64)>,
}

impl HistDelta {
    fn mean(&self) -> f64 {
        if self.count > 0.0 { self.sum / self.count } else { 0.0 }
    }

    /// Upper bound of the bucket holding quantile `q`.
    fn quantile_bound(&self, q: f64) -> Option<f64> {
        let target = q * self.count;
        self.buckets.iter().find(|(_, c)| *c >= target && *c > 0.0).map(|(le, _)| *le)
    }
}

/// Histograms named `name`, keyed by their labels other than `le`.
fn histograms(before: &Scrape, after: &Scrape, name: &str) -> BTreeMap<Vec<(String, String)>, HistDelta> {
    let mut out: BTreeMap<Vec<(String, String)>, HistDelta> = BTreeMap::new();
    for (series, value) in &after.0 {
        let (series_name, labels) = split_series(series);
        let delta = value - before.0.get(series).copied().unwrap_or(0.0);
        let key = |labels: &[(String, String)]| labels.iter().filter(|(k, _)| k != "le").cloned().collect::<Vec<_>>();
        if series_name == format!("{name}_count") {
            out.entry(key(&labels)).or_default().count = delta;
        } else if series_name == format!("{name}_sum") {
            out.entry(key(&labels)).or_default().sum = delta;
        } else if series_name == format!("{name}_bucket") {
            let le = labels.iter().find(|(k, _)| k == "le").map(|(_, v)| v.as_str()).unwrap_or("+Inf");
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) };
            out.entry(key(&labels)).or_default().buckets.push((le, delta));
        }
    }
    for h in out.values_mut() {
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

fn counter(before: &Scrape, after: &Scrape, name: &str) -> f64 {
    after
        .0
        .iter()
        .filter(|(s, _)| split_series(s).0 == name)
        .map(|(s, v)| v - before.0.get(s).copied().unwrap_or(0.0))
        .sum()
}

#[derive(Serialize, Clone, Debug)]
pub struct RouteLatency {
    pub method: String,
    pub route: String,
    pub count: u64,
    pub mean_ms: f64,
    /// Upper bound of the bucket holding the 99th percentile.
    pub p99_le_ms: Option<f64>,
}

#[derive(Serialize, Clone, Debug)]
pub struct ServerMetrics {
    pub journal_commits: u64,
    pub journal_records: u64,
    pub journal_batch_mean: f64,
    pub journal_batch_p50_le: Option<f64>,
    pub journal_batch_p99_le: Option<f64>,
    pub journal_commit_mean_ms: f64,
    pub journal_commit_p50_le_ms: Option<f64>,
    pub journal_commit_p99_le_ms: Option<f64>,
    pub http_shed: u64,
    pub actor_overload_rejections: u64,
    pub routes: Vec<RouteLatency>,
}

pub fn delta(before: &Scrape, after: &Scrape) -> ServerMetrics {
    let batch = histograms(before, after, "boxoffice_journal_batch_size").into_values().next().unwrap_or_default();
    let commit = histograms(before, after, "boxoffice_journal_commit_seconds").into_values().next().unwrap_or_default();
    let ms = |s: Option<f64>| s.map(|v| v * 1000.0);
    let mut routes: Vec<RouteLatency> = histograms(before, after, "boxoffice_http_request_duration_seconds")
        .into_iter()
        .filter(|(_, h)| h.count >= 1.0)
        .map(|(labels, h)| {
            let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
            RouteLatency {
                method: get("method"),
                route: get("route"),
                count: h.count as u64,
                mean_ms: h.mean() * 1000.0,
                p99_le_ms: ms(h.quantile_bound(0.99)),
            }
        })
        .collect();
    routes.sort_by_key(|r| std::cmp::Reverse(r.count));
    ServerMetrics {
        journal_commits: commit.count as u64,
        journal_records: counter(before, after, "boxoffice_journal_records_total") as u64,
        journal_batch_mean: batch.mean(),
        journal_batch_p50_le: batch.quantile_bound(0.5),
        journal_batch_p99_le: batch.quantile_bound(0.99),
        journal_commit_mean_ms: commit.mean() * 1000.0,
        journal_commit_p50_le_ms: ms(commit.quantile_bound(0.5)),
        journal_commit_p99_le_ms: ms(commit.quantile_bound(0.99)),
        http_shed: counter(before, after, "boxoffice_http_shed_total") as u64,
        actor_overload_rejections: counter(before, after, "boxoffice_actor_overload_rejections_total") as u64,
        routes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_deltas_and_quantiles() {
        let before = parse(
            "# TYPE x histogram\n\
             boxoffice_journal_commit_seconds_bucket{le=\"0.005\"} 1\n\
             boxoffice_journal_commit_seconds_bucket{le=\"0.01\"} 1\n\
             boxoffice_journal_commit_seconds_bucket{le=\"+Inf\"} 1\n\
             boxoffice_journal_commit_seconds_sum 0.001\n\
             boxoffice_journal_commit_seconds_count 1\n",
        );
        let after = parse(
            "boxoffice_journal_commit_seconds_bucket{le=\"0.005\"} 51\n\
             boxoffice_journal_commit_seconds_bucket{le=\"0.01\"} 100\n\
             boxoffice_journal_commit_seconds_bucket{le=\"+Inf\"} 101\n\
             boxoffice_journal_commit_seconds_sum 0.501\n\
             boxoffice_journal_commit_seconds_count 101\n\
             boxoffice_http_request_duration_seconds_bucket{route=\"/events/{event_id}/holds\",method=\"POST\",le=\"0.001\"} 7\n\
             boxoffice_http_request_duration_seconds_bucket{route=\"/events/{event_id}/holds\",method=\"POST\",le=\"+Inf\"} 8\n\
             boxoffice_http_request_duration_seconds_sum{route=\"/events/{event_id}/holds\",method=\"POST\"} 0.016\n\
             boxoffice_http_request_duration_seconds_count{route=\"/events/{event_id}/holds\",method=\"POST\"} 8\n",
        );
        let m = delta(&before, &after);
        assert_eq!(m.journal_commits, 100);
        assert!((m.journal_commit_mean_ms - 5.0).abs() < 1e-9);
        assert_eq!(m.journal_commit_p50_le_ms, Some(5.0));
        assert_eq!(m.journal_commit_p99_le_ms, Some(10.0));
        assert_eq!(m.routes.len(), 1);
        assert_eq!(m.routes[0].route, "/events/{event_id}/holds");
        assert_eq!(m.routes[0].method, "POST");
        assert_eq!(m.routes[0].count, 8);
    }
}
