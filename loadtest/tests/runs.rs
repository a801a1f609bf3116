//! The generator end to end, against the server binary `cargo test` built (dev
//! profile) on a fresh database of the test PostgreSQL (`BOXOFFICE_TEST_DATABASE_URL`,
//! set by scripts/test.sh): the many-events scenario over two nodes, failover, the
//! general-admission sale with thresholds and `--json -`, `http-ratio`, and the
//! waiting room with and without the room.
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

/// Runs the generator against a spawned debug server on a fresh database.
fn run(args: &[&str], out_dir: &Path) -> std::process::Output {
    let database = fresh_database();
    let server = server_bin();
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--spawn", "--no-progress", "--database-url", &database])
        .arg("--server-bin")
        .arg(&server)
        .arg("--out-dir")
        .arg(out_dir)
        .args(args)
        .output()
        .expect("run loadtest")
}

/// Runs the generator; its report.json. Panics with its output when it fails.
fn loadtest(args: &[&str]) -> Value {
    let out_dir = std::env::temp_dir().join(format!("loadtest-test-{}", uuid::Uuid::new_v4().simple()));
    let output = run(args, &out_dir);
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

#[test]
fn general_admission_sale_sells_every_place_once_and_meets_loose_thresholds() {
    let report = loadtest(&[
        "--scenario",
        "ga",
        "--seats",
        "200",
        "--buyers",
        "60",
        "--register-concurrency",
        "6",
        "--concurrency",
        "16",
        "--duration",
        "60",
        "--min-rate",
        "0.01",
        "--p99-max",
        "600000",
    ]);
    checks_pass(&report, 8);
    assert_eq!(report["scenario"], "ga");
    let figures = &report["figures"];
    assert_eq!(figures["tickets_sold"], 200, "four GA sections of 50 sell out: {}", report["facts"]);
    assert_eq!(figures["capacity"], 200);
    let names: Vec<&str> = report["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| n.starts_with("threshold ")).count(), 2, "{names:?}");
    let per_order = &report["cpu"]["per_order_us"];
    assert!(per_order["server"].as_f64().is_some_and(|us| us > 0.0), "{per_order}");
    assert!(per_order["loadtest"].as_f64().is_some_and(|us| us > 0.0), "{per_order}");
    assert_eq!(figures["cpu_us_per_order"], *per_order);
}

#[test]
fn a_missed_threshold_fails_the_run_and_json_goes_to_stdout() {
    let out_dir = std::env::temp_dir().join(format!("loadtest-test-{}", uuid::Uuid::new_v4().simple()));
    let output = run(
        &[
            "--scenario",
            "ga",
            "--seats",
            "20",
            "--buyers",
            "10",
            "--register-concurrency",
            "5",
            "--concurrency",
            "4",
            "--duration",
            "30",
            "--min-rate",
            "100000000",
            "--json",
            "-",
        ],
        &out_dir,
    );
    let _ = std::fs::remove_dir_all(&out_dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "a missed threshold exits 1:\n{stderr}");
    assert!(stderr.contains("threshold missed: threshold --min-rate"), "{stderr}");
    assert!(stderr.contains("result: FAIL"), "the summary goes to stderr: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).expect("stdout is the JSON report alone");
    assert_eq!(report["passed"], false);
    assert_eq!(report["figures"]["tickets_sold"], 20, "only the threshold failed: {}", report["checks"]);
}

#[test]
fn http_ratio_measures_echo_holds_and_purchases_in_one_run() {
    let report = loadtest(&[
        "http-ratio",
        "--measure-secs",
        "1",
        "--buyers",
        "20",
        "--expected-max-rate",
        "5000",
        "--connections",
        "8",
    ]);
    checks_pass(&report, 3);
    assert_eq!(report["scenario"], "http-ratio");
    let built_in = &report["figures"]["built_in"];
    let endpoints = built_in["endpoints"].as_array().expect("endpoints");
    let names: Vec<&str> = endpoints.iter().map(|e| e["endpoint"].as_str().unwrap()).collect();
    assert_eq!(names, ["echo", "holds", "purchases"]);
    for e in endpoints {
        assert!(e["ok"].as_u64().unwrap() > 0 && e["per_s"].as_f64().unwrap() > 0.0, "{e}");
        assert!(e["p99_ms"].as_f64().unwrap() >= e["p50_ms"].as_f64().unwrap(), "{e}");
        assert!(e["cpu_percent"]["echo"].is_number() && e["cpu_percent"]["server"].is_number(), "{e}");
    }
    for ratio in ["holds_over_echo", "purchases_over_echo"] {
        assert!(built_in[ratio].as_f64().is_some_and(|r| r > 0.0), "{built_in}");
    }
}

#[test]
fn waiting_room_turns_the_rush_into_admissions_and_reports_both_runs() {
    let report = loadtest(&[
        "--scenario",
        "waiting-room",
        "--queue-buyers",
        "120",
        "--seats",
        "60",
        "--join-window-secs",
        "2",
        "--late-join-ratio",
        "0.25",
        "--room-rate",
        "1200",
        "--duration",
        "60",
    ]);
    checks_pass(&report, 3);
    let figures = &report["figures"];
    for run in ["without_room", "with_room"] {
        let f = &figures[run];
        assert_eq!(f["sold"], 60, "{run} sells every place: {f}");
        assert_eq!(f["gave_up"], 0, "{run}: {f}");
    }
    let room = &figures["with_room"];
    assert!(room["join_p99_ms"].as_f64().is_some(), "{room}");
    assert!(room["last_admission_secs_after_opening"].as_f64().is_some(), "{room}");
    // Late joiners queue first come, first served (admissions in one tick tie).
    let rho = room["spearman_late_join_vs_place"].as_f64().expect("late joiners placed");
    assert!(rho > 0.9, "rank correlation {rho}: {room}");
    if let Some(rho) = room["spearman_late_join_vs_admission"].as_f64() {
        assert!(rho > 0.5, "rank correlation {rho}: {room}");
    }
}
