//! The server under test: one already running at `--url`, or one this process
//! starts (`--spawn`) on embedded defaults — a fresh data directory under the
//! system temp directory (so its own PostgreSQL cluster, fsync on), a free
//! loopback port, and a login/registration rate limit high enough to register
//! thousands of buyers — and stops with SIGTERM at the end.
//!
//! With `--spawn` and no `--database-url`, the checks reach the embedded cluster
//! through the address and password the server wrote into that data directory
//! (`postgres/boxoffice.conf`, `postgres/boxoffice.password`).

use crate::cli::TargetArgs;
use crate::http::{Api, is_loopback_host};
use anyhow::{Context, bail};
use sqlx::postgres::PgConnectOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a spawned server may take to become ready (initdb included).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a graceful stop may take (drain actors, flush the journal, stop PostgreSQL).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Starts tried when the port picked for a spawned server is taken before the server binds it.
const START_ATTEMPTS: usize = 3;
/// What a server that could not bind its port says in its log (the OS error's text).
const PORT_IN_USE: &str = "Address already in use";
/// The registration rate limit given to a spawned server.
const SPAWN_AUTH_RATE_LIMIT: &str = "1000000";

pub struct Target {
    pub base_url: String,
    /// Every node's base URL (the first is `base_url`).
    pub base_urls: Vec<String>,
    pub database: Option<PgConnectOptions>,
    pub server_pid: Option<u32>,
    /// Every node's process id, node 0 first (just `server_pid` for one node).
    pub node_pids: Vec<u32>,
    pub postgres_pid: Option<u32>,
    /// Human description for the report.
    pub description: String,
    spawned: Option<SpawnedServer>,
    /// Nodes 1.. of a spawned cluster (node 0 is `spawned`, which runs the database);
    /// `None` while killed.
    others: Vec<Option<SpawnedServer>>,
    /// What a node restarted after [`Target::kill_node`] needs.
    restart: Option<Restart>,
}

struct Restart {
    args: TargetArgs,
    shared: Shared,
    database_url: String,
}

/// What every spawned node shares.
struct Shared {
    jwt_secret: String,
    qr_key: String,
}

impl Target {
    pub async fn prepare(args: &TargetArgs) -> anyhow::Result<Self> {
        let given_db = args.database_url.as_deref().map(parse_database_url).transpose()?;
        if !args.spawn {
            crate::http::loopback_base(&args.url)?;
            if args.nodes > 1 {
                bail!("--nodes needs --spawn");
            }
            return Ok(Self {
                base_url: args.url.clone(),
                base_urls: vec![args.url.clone()],
                database: given_db,
                server_pid: args.server_pid,
                node_pids: args.server_pid.into_iter().collect(),
                postgres_pid: args.postgres_pid,
                description: format!("running server at {}", args.url),
                spawned: None,
                others: Vec::new(),
                restart: None,
            });
        }
        // Several nodes must accept each other's tokens and tickets: one set of keys.
        let shared = Shared {
            jwt_secret: format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
            qr_key: format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
        };
        let server = SpawnedServer::start(args, 0, &shared, args.database_url.as_deref(), None).await?;
        let database = match given_db {
            Some(db) => Some(db),
            None => Some(server.embedded_database()?),
        };
        let mut others = Vec::new();
        if args.nodes > 1 {
            let url = match &args.database_url {
                Some(url) => url.clone(),
                None => server.embedded_url()?,
            };
            for node in 1..args.nodes as usize {
                match SpawnedServer::start(args, node, &shared, Some(&url), None).await {
                    Ok(other) => others.push(other),
                    Err(e) => {
                        for other in others {
                            let _ = other.stop().await;
                        }
                        let _ = server.stop().await;
                        return Err(e);
                    }
                }
            }
        }
        let description = format!(
            "spawned {}{} at {} ({}; data dir {})",
            server.bin.display(),
            if args.nodes > 1 { format!(" ×{} nodes, requests spread in turn", args.nodes) } else { String::new() },
            server.base_url,
            if args.database_url.is_some() { "DATABASE_URL given" } else { "embedded PostgreSQL, fsync on" },
            server.data_dir.display()
        );
        let base_urls = std::iter::once(&server).chain(&others).map(|s| s.base_url.clone()).collect();
        let server_pid = args.server_pid.or(server.child.id());
        let node_pids = server_pid.into_iter().chain(others.iter().filter_map(|s| s.child.id())).collect();
        let restart = match &args.database_url {
            Some(url) => Some(url.clone()),
            None => server.embedded_url().ok(),
        }
        .map(|database_url| Restart { args: args.clone(), shared, database_url });
        Ok(Self {
            base_url: server.base_url.clone(),
            base_urls,
            others: others.into_iter().map(Some).collect(),
            restart,
            database,
            server_pid,
            node_pids,
            postgres_pid: args.postgres_pid.or_else(|| server.postmaster_pid()),
            description,
            spawned: Some(server),
        })
    }

    /// The spawned servers' `JWT_SECRET`, to sign buyers' tokens without registering them.
    pub fn jwt_secret(&self) -> Option<&str> {
        self.restart.as_ref().map(|r| r.shared.jwt_secret.as_str())
    }

    pub fn spawned(&self) -> bool {
        self.spawned.is_some()
    }

    /// `boxoffice reconcile [--event ID]` on the spawned server's database (the
    /// embedded cluster it runs, or its DATABASE_URL); `None` for a server this
    /// tool did not start. Without an event it checks every event.
    pub fn reconcile_command(&self, event: Option<Uuid>) -> Option<tokio::process::Command> {
        let server = self.spawned.as_ref()?;
        let mut cmd = tokio::process::Command::new(&server.bin);
        cmd.arg("reconcile");
        if let Some(event) = event {
            cmd.args(["--event", &event.to_string()]);
        }
        cmd.env("BOXOFFICE_DATA_DIR", &server.data_dir)
            .env("RUST_LOG", "warn")
            .env_remove("STRIPE_SECRET_KEY")
            .env_remove("STRIPE_API_BASE")
            .stdin(Stdio::null());
        match &server.database_url {
            Some(url) => cmd.env("DATABASE_URL", url),
            None => cmd.env_remove("DATABASE_URL"),
        };
        Some(cmd)
    }

    /// SIGKILLs spawned node `node` (1 or more: node 0 runs the embedded
    /// database): no drain, no lease handed over. Its data directory is removed.
    pub async fn kill_node(&mut self, node: usize) -> anyhow::Result<()> {
        let slot = node.checked_sub(1).and_then(|i| self.others.get_mut(i)).context("no such spawned node")?;
        slot.take().context("the node is not running")?.kill().await
    }

    /// Starts a killed node again: a new process with the same `NODE_ID`, port and keys.
    pub async fn restart_node(&mut self, node: usize) -> anyhow::Result<()> {
        let restart = self.restart.as_ref().context("only nodes this tool spawned can be restarted")?;
        let slot = node.checked_sub(1).and_then(|i| self.others.get_mut(i)).context("no such spawned node")?;
        if slot.is_some() {
            bail!("node{node} is running");
        }
        let port: u16 =
            self.base_urls[node].rsplit(':').next().and_then(|p| p.parse().ok()).context("a node's port")?;
        let server =
            SpawnedServer::start(&restart.args, node, &restart.shared, Some(&restart.database_url), Some(port)).await?;
        *slot = Some(server);
        Ok(())
    }

    /// Stops the spawned server, if any.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        // Node 0 last: it runs the embedded database the others use.
        for other in self.others.into_iter().flatten() {
            other.stop().await?;
        }
        match self.spawned {
            Some(server) => server.stop().await,
            None => Ok(()),
        }
    }
}

/// `--database-url`, refusing anything but a loopback host or a local socket.
fn parse_database_url(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url).context("--database-url is not a PostgreSQL URL")?;
    let host = options.get_host();
    if !(host.starts_with('/') || is_loopback_host(host)) {
        bail!("--database-url: refusing a database that is not on this machine (host {host:?})");
    }
    Ok(options)
}

struct SpawnedServer {
    child: tokio::process::Child,
    bin: PathBuf,
    base_url: String,
    data_dir: PathBuf,
    database_url: Option<String>,
    keep_data: bool,
}

impl SpawnedServer {
    async fn start(
        args: &TargetArgs,
        node: usize,
        shared: &Shared,
        database_url: Option<&str>,
        port: Option<u16>,
    ) -> anyhow::Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_once(args, node, shared, database_url, port).await {
                // The free port was taken before the server bound it (the server binds first
                // and exits at once then): another port. A port asked for is not changed.
                Err(e) if port.is_none() && attempt < START_ATTEMPTS && format!("{e:#}").contains(PORT_IN_USE) => {
                    eprintln!("loadtest: the server's port was taken before it bound it; trying another");
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn start_once(
        args: &TargetArgs,
        node: usize,
        shared: &Shared,
        database_url: Option<&str>,
        port: Option<u16>,
    ) -> anyhow::Result<Self> {
        let bin = locate_server(args.server_bin.as_deref())?;
        let port = match port {
            Some(port) => port,
            None => free_port()?,
        };
        let data_dir = std::env::temp_dir().join(format!(
            "boxoffice-loadtest-{}-{}-node{node}",
            std::process::id(),
            chrono::Utc::now().format("%Y%m%d%H%M%S%3f")
        ));
        std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let log = std::fs::File::create(data_dir.join("server.log")).context("creating the server log")?;
        let mut cmd = tokio::process::Command::new(&bin);
        cmd.env("BIND", format!("127.0.0.1:{port}"))
            .env("BOXOFFICE_DATA_DIR", &data_dir)
            .env("AUTH_RATE_LIMIT_PER_MINUTE", SPAWN_AUTH_RATE_LIMIT)
            // Every simulated buyer joins waiting rooms from 127.0.0.1.
            .env("QUEUE_JOINS_PER_IP_PER_MINUTE", SPAWN_AUTH_RATE_LIMIT)
            .env("COOKIE_SECURE", "false")
            .env("NODE_ID", format!("node{node}"))
            .env("JWT_SECRET", &shared.jwt_secret)
            .env("QR_SIGNING_KEY", &shared.qr_key)
            .env("LEASE_TTL_MS", args.lease_ttl_ms.to_string())
            // Embedded defaults: nothing inherited may point the server elsewhere.
            .env_remove("REDIS_URL")
            .env_remove("STRIPE_SECRET_KEY")
            .env_remove("STRIPE_WEBHOOK_SECRET")
            .env_remove("STRIPE_API_BASE")
            .current_dir(&data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        match database_url {
            Some(url) => cmd.env("DATABASE_URL", url),
            None => cmd.env_remove("DATABASE_URL"),
        };
        let child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        let mut server = Self {
            child,
            bin,
            base_url: format!("http://127.0.0.1:{port}"),
            data_dir,
            database_url: database_url.map(str::to_owned),
            keep_data: args.keep_server_data,
        };
        eprintln!("loadtest: started {} on {} (log {})", server.bin.display(), server.base_url, server.log().display());
        if let Err(e) = server.wait_ready().await {
            let tail = server.log_tail();
            let _ = server.stop().await;
            return Err(e.context(format!("the spawned server did not become ready; its log ends:\n{tail}")));
        }
        Ok(server)
    }

    fn log(&self) -> PathBuf {
        self.data_dir.join("server.log")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let api = Api::new(&self.base_url, Duration::from_secs(5))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited ({status})");
            }
            if let Ok(r) = api.get("/readyz", None).await
                && r.ok()
            {
                // Ours, not another process on the same port: ours is still running.
                if let Some(status) = self.child.try_wait()? {
                    bail!("the server exited ({status})");
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("not ready after {} s", READY_TIMEOUT.as_secs())
    }

    fn cluster_dir(&self) -> PathBuf {
        self.data_dir.join("postgres")
    }

    /// The embedded cluster's address, from the files the server keeps in its data directory.
    fn embedded_database(&self) -> anyhow::Result<PgConnectOptions> {
        let dir = self.cluster_dir();
        let conf =
            std::fs::read_to_string(dir.join("boxoffice.conf")).context("reading the embedded cluster's port")?;
        let port: u16 = conf
            .lines()
            .find_map(|l| l.strip_prefix("port = "))
            .and_then(|p| p.trim().parse().ok())
            .context("no port in boxoffice.conf")?;
        let password = std::fs::read_to_string(dir.join("boxoffice.password"))
            .context("reading the embedded cluster's password")?;
        Ok(PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username("boxoffice")
            .password(password.trim())
            .database("boxoffice"))
    }

    /// The embedded cluster's URL, for the other nodes of a spawned cluster.
    fn embedded_url(&self) -> anyhow::Result<String> {
        let db = self.embedded_database()?;
        let password = std::fs::read_to_string(self.cluster_dir().join("boxoffice.password"))
            .context("reading the embedded cluster's password")?;
        Ok(format!("postgres://boxoffice:{}@127.0.0.1:{}/boxoffice", password.trim(), db.get_port()))
    }

    fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.cluster_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// SIGKILL, as a crash would; the data directory is removed unless kept.
    async fn kill(mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
        Ok(())
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        let postmaster = self.postmaster_pid();
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        let graceful = tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await;
        let outcome = match graceful {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(anyhow::anyhow!("the server exited with {status}; see {}", self.log().display())),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                let _ = self.child.kill().await;
                // The server could not stop its PostgreSQL: stop the one it started.
                if let Some(pid) = postmaster.filter(|p| Path::new(&format!("/proc/{p}")).exists()) {
                    // SAFETY: kill(2) on the postmaster of the cluster in our own temp data directory.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Err(anyhow::anyhow!("the server did not stop within {} s and was killed", STOP_TIMEOUT.as_secs()))
            }
        };
        if self.keep_data || outcome.is_err() {
            eprintln!("loadtest: server data kept in {}", self.data_dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.data_dir) {
            // The cluster (and its socket directory) live inside the data directory.
            eprintln!("loadtest: could not remove {}: {e}", self.data_dir.display());
        }
        outcome
    }
}

/// `--server-bin`, else `boxoffice` beside this binary, else the workspace's target/release.
fn locate_server(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            bail!("--server-bin {}: no such file", path.display())
        };
    }
    let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("boxoffice")));
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/boxoffice");
    [beside, Some(workspace)].into_iter().flatten().find(|p| p.is_file()).context(
        "no server binary found beside loadtest or in target/release: build it with \
         `cargo build --release -p boxoffice`, or pass --server-bin",
    )
}

/// A loopback port nothing listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_must_be_local() {
        assert!(parse_database_url("postgres://postgres@127.0.0.1:55432/postgres").is_ok());
        assert!(parse_database_url("postgres://u:p@localhost/db").is_ok());
        assert!(parse_database_url("postgres://u:p@db.example.com/db").is_err());
    }
}
