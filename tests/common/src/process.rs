//! The `boxoffice` binary as a child process: started on a database, awaited until ready,
//! signalled (SIGTERM, SIGKILL), its output captured in a log file.

use crate::{free_port, poll};
use reqwest::StatusCode;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a server may take to answer /readyz after it is spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Spawns tried when the server exits during start-up (its port taken meanwhile).
const START_ATTEMPTS: usize = 3;

/// A directory under /tmp (reachable by the `postgres` user when the tests run as root),
/// removed on drop unless the test failed or `BOXOFFICE_TEST_KEEP_DIRS` is set: then it is
/// kept, server log included, and its path printed.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = PathBuf::from("/tmp").join(format!("boxoffice-{name}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        // An embedded cluster's service account must be able to traverse it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("BOXOFFICE_TEST_KEEP_DIRS").is_some() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// How to start the server; the same spec starts it again on the same port, database, data
/// directory and settings, appending to the same log.
pub struct ServerSpec {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl ServerSpec {
    /// The server binary `bin` (the test's `env!("CARGO_BIN_EXE_boxoffice")`) on the database
    /// `db_url`, on a free loopback port, running in `dir` with its data directory (`server/`)
    /// and its log (`server.log`, stdout and stderr) there. Nothing of the test's environment
    /// reaches it but `PATH` and `RUST_BACKTRACE`, and no `.env` file: what configures it is
    /// [`env`](Self::env).
    pub fn new(bin: impl Into<PathBuf>, db_url: &str, dir: &Path) -> Self {
        let port = free_port();
        let env = vec![
            ("DATABASE_URL".to_owned(), db_url.to_owned()),
            ("BIND".to_owned(), format!("127.0.0.1:{port}")),
            ("BOXOFFICE_DATA_DIR".to_owned(), dir.join("server").display().to_string()),
        ];
        Self { bin: bin.into(), dir: dir.to_owned(), port, env, log: dir.join("server.log") }
    }

    /// Sets an environment variable of the server (the last setting of a name wins).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open server log");
        let mut command = Command::new(&self.bin);
        command.current_dir(&self.dir).env_clear();
        for name in ["PATH", "RUST_BACKTRACE"] {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()))
    }

    /// Spawns the server once and returns at once, ready or not: for tests of a start that
    /// must fail.
    pub fn spawn_unready(&self) -> ServerProcess {
        ServerProcess { child: self.spawn() }
    }

    /// Spawns the server and waits until /readyz answers 200. A start that dies at once (its
    /// port still held, e.g. by the process before) is retried once the port is free.
    pub async fn start(&self) -> ServerProcess {
        let probe = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let ready_url = format!("{}/readyz", self.base());
        for attempt in 1..=START_ATTEMPTS {
            let mut child = self.spawn();
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    assert!(
                        attempt < START_ATTEMPTS,
                        "the server exited during start-up ({status}):\n{}",
                        self.log_tail()
                    );
                    let port = self.port;
                    let _ = poll(Duration::from_secs(5), Duration::from_millis(50), || async move {
                        TcpListener::bind(("127.0.0.1", port)).map(drop)
                    })
                    .await;
                    break;
                }
                if let Ok(r) = probe.get(&ready_url).send().await
                    && r.status() == StatusCode::OK
                {
                    return ServerProcess { child };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the server was not ready within {READY_TIMEOUT:?}:\n{}", self.log_tail());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        unreachable!("every start attempt returns or panics")
    }

    /// Everything the server wrote, over all its starts.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 40 lines of the log.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The server never panics, whatever happened to it.
    pub fn assert_no_panic_in_log(&self) {
        assert!(!self.log_text().contains("panicked at"), "the server panicked:\n{}", self.log_tail());
    }
}

/// A running server; SIGKILLed and reaped on drop.
pub struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, and reap it.
    pub fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().expect("reap the server");
    }

    /// SIGSTOP: the process freezes (its sockets stay open; nothing answers).
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT: a paused process carries on where it stopped.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid fits pid_t");
        // SAFETY: kill(2) on our own child, not yet reaped; no memory involved.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "signal {signal} to the server: {}", std::io::Error::last_os_error());
    }

    /// Sends SIGTERM (a graceful shutdown); see [`wait_exit`](Self::wait_exit).
    pub fn sigterm(&self) {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid fits pid_t");
        // SAFETY: kill(2) on our own child, not yet reaped; no memory involved.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to the server: {}", std::io::Error::last_os_error());
    }

    /// Waits until the process exits, for at most `within`: its exit status, or `None` if it
    /// still runs.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = &mut self.child;
        poll(within, Duration::from_millis(20), || {
            let exited = child.try_wait().expect("check on the server");
            async move { exited.ok_or(()) }
        })
        .await
        .ok()
    }

    /// SIGTERM, then SIGKILL if it has not exited within `within`. The exit status, if it
    /// exited by itself.
    pub async fn terminate(mut self, within: Duration) -> Option<ExitStatus> {
        self.sigterm();
        self.wait_exit(within).await
    }

    /// Peak resident set size in KiB (VmHWM), while the process lives.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
