//! The figures the reliability tests print (latency percentiles, answers by status), and the
//! check every answer under a fault must pass (no 5xx but a well-formed 503).

use super::client::Reply;
use reqwest::StatusCode;
use std::collections::BTreeMap;
use std::time::Duration;

pub(super) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub(super) fn latency_summary(replies: &[&Reply]) -> String {
    let mut l: Vec<Duration> = replies.iter().map(|r| r.latency).collect();
    l.sort();
    format!(
        "n={} p50={:?} p99={:?} max={:?}",
        l.len(),
        percentile(&l, 0.50),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or_default()
    )
}

pub(super) fn status_breakdown(replies: &[&Reply]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in replies {
        let key = match r.status {
            Some(s) if r.code.is_empty() => s.as_u16().to_string(),
            Some(s) => format!("{} {}", s.as_u16(), r.code),
            None if r.connect_error => "connect error".into(),
            None if r.timed_out => "client timeout".into(),
            None => "transport error".into(),
        };
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

/// No 5xx but 503; every 503 a problem document with Retry-After.
pub(super) fn assert_clean_failures(replies: &[&Reply]) {
    for r in replies {
        if let Some(s) = r.status {
            assert!(!s.is_server_error() || s == StatusCode::SERVICE_UNAVAILABLE, "server error: {}", r.describe());
            if s == StatusCode::SERVICE_UNAVAILABLE {
                assert!(r.problem_json, "503 without application/problem+json: {}", r.describe());
                assert!(r.retry_after.is_some(), "503 without Retry-After (in seconds): {}", r.describe());
            }
        }
    }
}
