//! A PostgreSQL cluster of the test's own, which it can stop and start again: for database
//! outages. Other tests use databases of the shared test PostgreSQL (`fresh_database`).

use crate::required_env;
use boxoffice::store::embedded_pg::EmbeddedPostgres;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The service's embedded PostgreSQL (binaries from `BOXOFFICE_TEST_PG_BIN_DIR`) in a data
/// directory of the test's, on the same port and password across restarts. On drop — a failed
/// test — the postmaster gets SIGQUIT (immediate shutdown), so no cluster outlives the test.
pub struct PrivatePostgres {
    cluster: Option<EmbeddedPostgres>,
    url: String,
    data_dir: PathBuf,
    bin_dir: PathBuf,
}

impl PrivatePostgres {
    /// Initialises and starts a cluster in `data_dir` (which must not exist or be empty; when
    /// the tests run as root, the `postgres` user must be able to reach it).
    pub async fn start(data_dir: &Path) -> Self {
        let bin_dir = PathBuf::from(required_env("BOXOFFICE_TEST_PG_BIN_DIR"));
        let cluster = EmbeddedPostgres::start_with_bin_dir(data_dir, Some(&bin_dir)).await.expect("start PostgreSQL");
        Self { url: cluster.url(), cluster: Some(cluster), data_dir: data_dir.to_owned(), bin_dir }
    }

    /// The URL of its database (with the password).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fast shutdown: sessions are disconnected.
    pub async fn stop(&mut self) {
        if let Some(cluster) = self.cluster.take() {
            cluster.stop().await.expect("stop PostgreSQL");
        }
    }

    /// Starts the stopped cluster again, on the same port with the same password.
    pub async fn restart(&mut self) {
        let cluster = EmbeddedPostgres::start_with_bin_dir(&self.data_dir, Some(&self.bin_dir))
            .await
            .expect("restart PostgreSQL");
        assert_eq!(cluster.url(), self.url, "PostgreSQL came back on another port or password");
        self.cluster = Some(cluster);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let Ok(pid_file) = std::fs::read_to_string(self.data_dir.join("postmaster.pid")) else { return };
        let Some(pid) = pid_file.lines().next().and_then(|p| p.trim().parse::<libc::pid_t>().ok()) else { return };
        // SAFETY: kill(2) with a pid read from the cluster's own pid file; no memory involved.
        if unsafe { libc::kill(pid, libc::SIGQUIT) } != 0 {
            return;
        }
        // Drop cannot await: wait (bounded) on this thread until the postmaster is gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
