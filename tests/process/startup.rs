//! Start-up that cannot succeed: it fails fast, says why, and leaves nothing running.

use crate::Rig;
use boxoffice_testkit::required_env;
use std::net::TcpListener;
use std::time::Duration;

/// The server's port is taken (another server, a stale process): the start fails on the
/// listener before it starts anything else — with no `DATABASE_URL`, no embedded PostgreSQL is
/// initialised or left running behind the failed start — and the log names the address.
#[tokio::test]
async fn a_taken_port_fails_the_start_before_the_embedded_database_starts() {
    let bin_dir = required_env("BOXOFFICE_TEST_PG_BIN_DIR");
    let server_env = [("DATABASE_URL", ""), ("BOXOFFICE_PG_BIN_DIR", bin_dir.as_str())];
    let Rig { serial: _serial, dir, spec, .. } = Rig::new("startup-port-taken", &server_env).await;
    let address = spec.base().trim_start_matches("http://").to_owned();
    let squatter = TcpListener::bind(&address).expect("take the server's port");

    let mut server = spec.spawn_unready();
    let status = server.wait_exit(Duration::from_secs(60)).await.expect("the server exits when its port is taken");
    assert!(!status.success(), "a start on a taken port must fail: {status}");
    let log = spec.log_text();
    assert!(log.contains(&format!("binding {address}")), "the log names the address it could not bind:\n{log}");
    let cluster = dir.path().join("server/postgres");
    assert!(
        !cluster.join("postmaster.pid").exists() && !cluster.join("PG_VERSION").exists(),
        "the failed start initialised or left running an embedded PostgreSQL in {}",
        cluster.display()
    );
    spec.assert_no_panic_in_log();

    // The port free again, the same spec starts (the embedded cluster initialised now).
    drop(squatter);
    let server = spec.start().await;
    assert!(cluster.join("postmaster.pid").exists(), "the embedded cluster runs under the server");
    assert!(server.terminate(Duration::from_secs(60)).await.is_some_and(|s| s.success()), "the server stops cleanly");
    assert!(!cluster.join("postmaster.pid").exists(), "the server stopped its embedded cluster");
}
