//! Pass/fail thresholds on a sale's figures, like k6's: `--min-rate` (mean orders
//! per second over the sale) and `--p99-max` (basket latency p99, ms). Each given
//! threshold becomes a critical check, so missing one fails the run (exit 1) and
//! the summary says which threshold, what was measured and what was asked.

use crate::checks::Check;
use crate::cli::SaleArgs;

/// The checks for the thresholds `args` sets (none when it sets none).
/// `basket_p99_ms` is `None` when no basket completed.
pub fn checks(args: &SaleArgs, orders_per_s: f64, basket_p99_ms: Option<f64>) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(min) = args.min_rate {
        let ok = orders_per_s >= min;
        checks.push(Check::new(
            "threshold --min-rate (orders/s, mean over the sale)",
            ok,
            format!("{orders_per_s:.0} orders/s {} {min}", if ok { ">=" } else { "< required" }),
        ));
    }
    if let Some(max) = args.p99_max {
        let (ok, detail) = match basket_p99_ms {
            Some(p99) if p99 <= max => (true, format!("basket p99 {p99:.2} ms <= {max} ms")),
            Some(p99) => (false, format!("basket p99 {p99:.2} ms > allowed {max} ms")),
            None => (false, format!("no basket completed, so no p99 to hold to {max} ms")),
        };
        checks.push(Check::new("threshold --p99-max (basket latency p99, ms)", ok, detail));
    }
    checks
}

/// One line per missed threshold, for the end of the run.
pub fn missed(checks: &[Check]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| c.name.starts_with("threshold ") && !c.passed)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn args(extra: &[&str]) -> SaleArgs {
        Cli::parse_from([&["loadtest"], extra].concat()).sale
    }

    #[test]
    fn thresholds_fail_only_when_missed() {
        assert!(checks(&args(&[]), 10.0, None).is_empty());
        let a = args(&["--min-rate", "6000", "--p99-max", "50"]);
        let ok = checks(&a, 6_100.0, Some(49.0));
        assert_eq!(ok.len(), 2);
        assert!(ok.iter().all(|c| c.passed && c.critical));
        assert!(missed(&ok).is_empty());
        let bad = checks(&a, 5_999.4, Some(50.5));
        assert!(bad.iter().all(|c| !c.passed && c.critical));
        let lines = missed(&bad);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("5999 orders/s < required 6000"), "{lines:?}");
        assert!(lines[1].contains("50.50 ms > allowed 50 ms"), "{lines:?}");
        assert!(!checks(&a, 7_000.0, None)[1].passed);
    }
}
