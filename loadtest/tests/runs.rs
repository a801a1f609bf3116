//! The generator end to end, against the server binary `cargo test` built (dev
//! profile) on a fresh database of the test PostgreSQL (`BOXOFFICE_TEST_DATABASE_URL`,
//! set by scripts/test.sh): the many-events scenario over two nodes, and failover.
//! Figures from a debug build mean nothing; these tests check that the scenarios
//! run, their checks pass and their reports carry what the README quotes.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn server_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_loadtest")).with_file_name("boxoffice");
    assert!(bin.is_file(), "{} is missing: run `cargo test --workspace`, which builds it", bin.display());
    bin
}

fn fresh_database() -> String {
    let admin = std::env::var("BOXOFFICE_TEST_DATABASE_URL")
        .expect("BOXOFFICE_TEST_DATABASE_URL is not set: run the tests through ./scripts/test.sh");
    let name = format!("loadtest_{}", uuid::Uuid::new_v4().simple());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let pool = sqlx::PgPool::connect(&admin).await.expect("connect to the test PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.expect("create");
        pool.close().await;
    });
    let (base, _) = admin.rsplit_once('/').expect("a database URL has a path");
    format!("{base}/{name}")
}

/// Runs the generator; its report.json. Panics with its output when it fails.
fn loadtest(args: &[&str]) -> Value {
    let out_dir = std::env::temp_dir().join(format!("loadtest-test-{}", uuid::Uuid::new_v4().simple()));
    let database = fresh_database();
    let server = server_bin();
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--spawn", "--no-progress", "--database-url", &database])
        .arg("--server-bin")
        .arg(&server)
        .arg("--out-dir")
        .arg(&out_dir)
        .args(args)
        .output()
        .expect("run loadtest");
    let text = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "loadtest {args:?} failed ({}):\n{text}", output.status);
    let report = std::fs::read_to_string(out_dir.join("report.json")).expect("report.json written");
    let _ = std::fs::remove_dir_all(&out_dir);
    serde_json::from_str(&report).expect("report.json is JSON")
}

/// At least `count` checks ran, and every critical one passed.
fn checks_pass(report: &Value, count: usize) {
    let checks = report["checks"].as_array().expect("checks");
    assert!(checks.len() >= count, "{checks:?}");
    for c in checks {
        assert!(c["passed"].as_bool().unwrap() || !c["critical"].as_bool().unwrap(), "{c}");
    }
}

#[test]
fn many_events_over_two_nodes_sell_every_seat_once_and_report_each_node() {
    let report = loadtest(&[
        "--nodes",
        "2",
        "--scenario",
        "many-events",
        "--events",
        "6",
        "--seats",
        "120",
        "--buyers",
        "36",
        "--register-concurrency",
        "6",
        "--concurrency",
        "16",
        "--duration",
        "60",
    ]);
    checks_pass(&report, 8);
    let figures = &report["figures"];
    assert_eq!(figures["event_ids"].as_array().unwrap().len(), 6);
    assert_eq!(figures["tickets_sold"], 120, "six events of 20 seats sell out: {}", report["facts"]);
    let per_node = figures["per_node"].as_array().expect("per-node figures");
    let events: i64 = per_node.iter().map(|n| n["events"].as_i64().unwrap()).sum();
    let tickets: i64 = per_node.iter().map(|n| n["tickets"].as_i64().unwrap()).sum();
    assert_eq!((events, tickets), (6, 120), "every event has one owner: {per_node:?}");
    assert!(per_node.iter().all(|n| n["node_id"].as_str().unwrap().starts_with("node")), "{per_node:?}");
    assert!(figures["forwards_per_request"].as_f64().unwrap() > 0.0, "a load balancer's requests reach non-owners");
    assert_eq!(report["cpu"]["node_percent"].as_array().unwrap().len(), 2);
}

#[test]
fn failover_kills_an_owner_and_times_the_first_hold_elsewhere() {
    let report =
        loadtest(&["--nodes", "2", "--lease-ttl-ms", "1000", "failover", "--runs", "2", "--holds-before", "5"]);
    checks_pass(&report, 2);
    let times = report["figures"]["failover_secs"].as_array().expect("failover times");
    assert_eq!(times.len(), 2);
    assert!(times.iter().all(|t| t.as_f64().is_some_and(|s| s > 0.0)), "{times:?}");
    let hop = &report["figures"]["hop"];
    assert!(hop["owner_p50_ms"].as_f64().is_some() && hop["forwarded_p50_ms"].as_f64().is_some(), "{hop}");
}
