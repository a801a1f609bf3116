//! Embedded PostgreSQL: with no `DATABASE_URL`, the server runs its own cluster under a data
//! directory, using PostgreSQL binaries already installed on the machine (docs/domain.md, "Running").
//!
//! Guarantees: [`EmbeddedPostgres::start`] returns only once the server accepts authenticated
//! connections and the `boxoffice` database exists; data survives stop/start and a `kill -9` of
//! any process involved (fsync and synchronous commit stay on: durability is a product promise);
//! a server left running by a crashed previous process is restarted cleanly, and a stale
//! `postmaster.pid` never blocks a start. When no usable binaries exist the error says what to
//! install.
//!
//! Choices, and why:
//! - Authentication is `scram-sha-256` with a random 32-character password generated at
//!   `initdb`, kept in `<data_dir>/boxoffice.password` (mode 0600, inside the 0700 data
//!   directory, so it travels with the data it protects). `trust` on 127.0.0.1 would let any
//!   local account read every order.
//! - `initdb` and `postgres` refuse to run as root. When we are root, every PostgreSQL process
//!   runs as the `postgres` OS user, by setting the child's uid/gid directly (what `runuser`
//!   does, minus a PAM session and shell quoting), and that user owns the data and socket
//!   directories.
//! - Only TCP on 127.0.0.1 is used by clients; the Unix socket lives in `<data_dir>-socket`
//!   beside the data directory so that no system directory (`/var/run/postgresql`) is needed.
//! - Our settings are in `<data_dir>/boxoffice.conf`, rewritten at every start and included at
//!   the end of `postgresql.conf`; `ALTER SYSTEM` still overrides them.
//! - A first initialisation interrupted half-way (Ctrl-C, `kill -9`) is detected by a marker
//!   file beside the data directory and started over, instead of leaving a cluster without a
//!   password file.
//! - The server is not stopped on drop: stopping needs to wait, which `Drop` cannot do on an
//!   async runtime. Call [`EmbeddedPostgres::stop`] on graceful shutdown; a server orphaned by a
//!   crash is found and restarted by the next `start`.
//!
//! One file because it is one lifecycle (find binaries, init, start, adopt an
//! orphan, stop) whose steps share the on-disk layout and its recovery rules.

use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use rand::Rng;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::process::Command;
use tracing::{info, warn};

/// Environment variable naming the directory that holds `initdb`, `pg_ctl` and `postgres`.
/// When set, it is the only place searched (tests point it at an empty directory).
pub const BIN_DIR_ENV: &str = "BOXOFFICE_PG_BIN_DIR";
/// The database the service uses; created on start if missing.
pub const DATABASE: &str = "boxoffice";
/// Superuser created by `initdb`; the service connects as it so migrations can do anything.
const SUPERUSER: &str = "boxoffice";
/// OS account PostgreSQL runs as when we are root. Debian's `postgresql` package creates it.
const SERVICE_OS_USER: &str = "postgres";
const SERVER_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

const PASSWORD_FILE: &str = "boxoffice.password";
const CONF_FILE: &str = "boxoffice.conf";
/// Where `pg_ctl` sends the server's output until the logging collector takes over: this is
/// where bind and lock-file failures end up, so start errors quote it.
const STARTUP_LOG: &str = "boxoffice-startup.log";
const PASSWORD_LEN: usize = 32;

/// How long `pg_ctl` waits for start-up (crash recovery included) or shutdown.
const PG_CTL_TIMEOUT_SECS: u32 = 120;
/// Start attempts: a port taken between our probe and the server's bind, or shared memory
/// still held by the dying children of a killed postmaster, are worth another try.
const START_ATTEMPTS: u32 = 5;
const START_RETRY_DELAY: Duration = Duration::from_millis(500);
/// `pg_ctl -w` only pings the server; authentication is checked by connecting, which may race
/// with the end of start-up.
const CONNECT_ATTEMPTS: u32 = 20;
const CONNECT_RETRY_DELAY: Duration = Duration::from_millis(250);
/// `sun_path` holds 108 bytes including the NUL; longer socket paths make the server fail.
const MAX_SOCKET_PATH: usize = 107;
/// Lines of the server log quoted in a start error.
const LOG_TAIL_LINES: usize = 25;
/// Client-side variables that would redirect `pg_ctl`/`initdb` away from the paths we pass.
const PG_CLIENT_ENV: [&str; 10] = [
    "PGDATA",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGOPTIONS",
    "PGSERVICE",
];

/// Why the embedded cluster could not be started or stopped. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    #[error(
        "no PostgreSQL binaries found: install the `postgresql` package or set DATABASE_URL \
         (looked for initdb, pg_ctl and postgres on PATH, in `pg_config --bindir`, \
         /usr/lib/postgresql/*/bin and /usr/local/pgsql/bin)"
    )]
    BinariesNotFound,
    #[error(
        "no PostgreSQL binaries found: {BIN_DIR_ENV}={dir} does not contain initdb, pg_ctl and postgres; \
         point it at PostgreSQL's bin directory, unset it, or set DATABASE_URL"
    )]
    BinDirOverrideInvalid { dir: String },
    #[error(
        "{data_dir} holds a PostgreSQL {cluster} cluster but the binaries found are version {found}: \
         install PostgreSQL {cluster}, point {BIN_DIR_ENV} at its bin directory, or upgrade the cluster \
         with pg_upgrade"
    )]
    VersionMismatch { data_dir: String, cluster: String, found: String },
    #[error(
        "running as root, which PostgreSQL refuses, and there is no `{SERVICE_OS_USER}` user to run it as: \
         install the `postgresql` package (it creates the user), run `useradd --system {SERVICE_OS_USER}`, \
         run boxoffice as another user, or set DATABASE_URL"
    )]
    NoServiceUser,
    #[error(
        "the `{SERVICE_OS_USER}` user cannot write {path}: one of its parent directories is closed to it \
         (e.g. /root); choose a data directory elsewhere or set DATABASE_URL"
    )]
    DataDirUnreachable { path: String },
    #[error("{path} is not empty and is not a PostgreSQL data directory; refusing to touch it: choose a new directory")]
    DataDirNotEmpty { path: String },
    #[error(
        "{path} holds a PostgreSQL cluster that boxoffice did not create (no {PASSWORD_FILE}); \
         use it through DATABASE_URL instead, or choose a new data directory"
    )]
    ForeignCluster { path: String },
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed { command: String, status: String, output: String },
    #[error("PostgreSQL did not start in {data_dir}: {reason}\nlast lines of {log}:\n{tail}")]
    StartFailed { data_dir: String, reason: String, log: String, tail: String },
    #[error("could not connect to the embedded PostgreSQL on 127.0.0.1:{port}: {source}")]
    Connect {
        port: u16,
        #[source]
        source: sqlx::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

type Result<T, E = EmbeddedPgError> = std::result::Result<T, E>;

/// Attaches what we were doing to an I/O error.
fn io_err(context: impl fmt::Display) -> impl FnOnce(io::Error) -> EmbeddedPgError {
    move |source| EmbeddedPgError::Io { context: context.to_string(), source }
}

/// A running PostgreSQL cluster owned by this process.
pub struct EmbeddedPostgres {
    /// Absolute path of the cluster (`PGDATA`).
    data_dir: PathBuf,
    /// Directory holding `initdb`, `pg_ctl` and `postgres`, matching the cluster's version.
    bin_dir: PathBuf,
    /// Loopback port the server listens on; remembered in `boxoffice.conf` for the next start.
    port: u16,
    /// The superuser's password. Never logged: `Debug` redacts it.
    password: String,
    /// Set when we are root: PostgreSQL processes run as this unprivileged account.
    run_as: Option<ServiceUser>,
}

impl fmt::Debug for EmbeddedPostgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedPostgres")
            .field("data_dir", &self.data_dir)
            .field("bin_dir", &self.bin_dir)
            .field("port", &self.port)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// Uid and gid of the unprivileged account that runs PostgreSQL when we are root.
#[derive(Debug, Clone, Copy)]
struct ServiceUser {
    uid: u32,
    gid: u32,
}

/// Paths derived from the data directory.
struct Layout {
    data_dir: PathBuf,
    /// Unix socket directory, beside the data directory so the service user can own it.
    socket_dir: PathBuf,
    /// Exists while a first `initdb` is in progress: if found at start, that attempt died.
    init_marker: PathBuf,
}

impl Layout {
    fn new(data_dir: &Path) -> Result<Self> {
        let data_dir = std::path::absolute(data_dir).map_err(io_err(format!("resolving {}", data_dir.display())))?;
        let (Some(parent), Some(name)) = (data_dir.parent(), data_dir.file_name()) else {
            return Err(EmbeddedPgError::Io {
                context: format!("using {} as a data directory", data_dir.display()),
                source: io::Error::new(io::ErrorKind::InvalidInput, "it must be a directory below /"),
            });
        };
        let name = name.to_string_lossy();
        Ok(Self {
            socket_dir: parent.join(format!("{name}-socket")),
            init_marker: parent.join(format!(".{name}.initializing")),
            data_dir,
        })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.data_dir.join(name)
    }
}

impl EmbeddedPostgres {
    /// Starts (initialising if needed) the cluster in `data_dir`, with binaries from
    /// `$BOXOFFICE_PG_BIN_DIR` when set, or else discovered on the machine.
    pub async fn start(data_dir: &Path) -> Result<Self> {
        let bin_dir = std::env::var_os(BIN_DIR_ENV).filter(|dir| !dir.is_empty()).map(PathBuf::from);
        Self::start_with_bin_dir(data_dir, bin_dir.as_deref()).await
    }

    /// Like [`start`](Self::start), with the binary directory given explicitly (`None`:
    /// discover). Tests use this to avoid racing on a process-wide environment variable.
    pub async fn start_with_bin_dir(data_dir: &Path, bin_dir: Option<&Path>) -> Result<Self> {
        let layout = Layout::new(data_dir)?;
        let interrupted_init = tokio::fs::try_exists(&layout.init_marker).await.unwrap_or(false);
        let cluster_version = if interrupted_init { None } else { read_cluster_version(&layout.data_dir).await };
        let (bin_dir, version) = find_binaries(bin_dir, cluster_version.as_deref(), &layout.data_dir).await?;
        let run_as = service_user().await?;
        // Refuse directories that are not ours before changing their owner or mode.
        if cluster_version.is_some() {
            if !tokio::fs::try_exists(layout.file(PASSWORD_FILE)).await.unwrap_or(false) {
                return Err(EmbeddedPgError::ForeignCluster { path: layout.data_dir.display().to_string() });
            }
        } else if !interrupted_init && !dir_is_empty(&layout.data_dir).await? {
            return Err(EmbeddedPgError::DataDirNotEmpty { path: layout.data_dir.display().to_string() });
        }
        prepare_directories(&layout, run_as).await?;

        if interrupted_init {
            warn!(data_dir = %layout.data_dir.display(), "a previous initialisation was interrupted; starting it over");
            let dir = layout.data_dir.clone();
            blocking(move || remove_dir_contents(&dir))
                .await
                .map_err(io_err("clearing the half-initialised data directory"))?;
        }
        let password = if cluster_version.is_some() {
            adopt_existing_cluster(&layout, run_as).await?
        } else {
            initialize(&layout, &bin_dir, run_as).await?
        };

        let mut pg = Self { data_dir: layout.data_dir.clone(), bin_dir, port: 0, password, run_as };
        pg.stop_leftover_server().await?;
        pg.launch(&layout).await?;
        if let Err(error) = pg.ensure_database().await {
            // Do not leave a server behind that nobody will stop.
            if let Err(stop_error) = pg.pg_ctl_stop().await {
                warn!(%stop_error, "could not stop the server after a failed start");
            }
            return Err(error);
        }
        info!(
            version = %version,
            port = pg.port,
            data_dir = %pg.data_dir.display(),
            "embedded PostgreSQL is ready"
        );
        Ok(pg)
    }

    /// The connection URL of the cluster in `data_dir` if a server is running on it now
    /// (typically the service's own), found from its `postmaster.pid` and our password
    /// file, without touching the server; `None` if none runs. Commands that must work
    /// beside a running service use it before [`start`](Self::start), which would restart
    /// such a server.
    pub async fn running_url(data_dir: &Path) -> Result<Option<String>> {
        let layout = Layout::new(data_dir)?;
        let Ok(contents) = tokio::fs::read_to_string(layout.file("postmaster.pid")).await else {
            return Ok(None);
        };
        // Line 1 is the postmaster's pid, line 4 its port.
        let mut lines = contents.lines();
        let Some(pid) = lines.next().and_then(|line| line.trim().parse::<i64>().ok()) else { return Ok(None) };
        let Some(port) = lines.nth(2).and_then(|line| line.trim().parse::<u16>().ok()) else { return Ok(None) };
        if !matches!(postmaster_state(pid.unsigned_abs(), &layout.data_dir), PostmasterState::Running) {
            return Ok(None);
        }
        let path = layout.file(PASSWORD_FILE);
        let password = match tokio::fs::read_to_string(&path).await {
            Ok(password) => password.trim().to_owned(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(EmbeddedPgError::ForeignCluster { path: layout.data_dir.display().to_string() });
            }
            Err(error) => return Err(io_err(format!("reading {}", path.display()))(error)),
        };
        Ok(Some(format!("postgres://{SUPERUSER}:{password}@127.0.0.1:{port}/{DATABASE}")))
    }

    /// Connection URL for the `boxoffice` database. Contains the password: treat it as a secret.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}:{}@127.0.0.1:{}/{DATABASE}", self.password, self.port)
    }

    /// Loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Absolute path of the cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the server, letting it finish a checkpoint (`pg_ctl stop -m fast`: sessions are
    /// disconnected, committed work is already durable).
    pub async fn stop(self) -> Result<()> {
        self.pg_ctl_stop().await?;
        info!(data_dir = %self.data_dir.display(), "embedded PostgreSQL stopped");
        Ok(())
    }

    /// `pg_ctl stop -m fast`, then `-m immediate` if the server does not go down in time
    /// (immediate is crash-safe: the next start replays the WAL).
    async fn pg_ctl_stop(&self) -> Result<()> {
        let fast = self.pg_ctl(&["stop", "-m", "fast"]).await;
        if let Err(error) = fast {
            warn!(%error, "fast shutdown failed; trying immediate shutdown");
            self.pg_ctl(&["stop", "-m", "immediate"]).await?;
        }
        Ok(())
    }

    async fn pg_ctl(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = pg_command(&self.bin_dir.join("pg_ctl"), self.run_as);
        cmd.arg("-D").arg(&self.data_dir).args(args).args(["-w", "-t", &PG_CTL_TIMEOUT_SECS.to_string()]);
        run(cmd).await
    }

    /// Deals with a `postmaster.pid` left from before: stops a server still running on this
    /// data directory (it may run with outdated settings, and nobody else should own it), and
    /// removes a pid file whose pid now belongs to an unrelated process. A pid file of a dead
    /// process is left alone: the server itself checks it, together with the shared-memory
    /// segment, so that it never starts while orphaned backends still write to the data.
    async fn stop_leftover_server(&self) -> Result<()> {
        let pid_file = self.data_dir.join("postmaster.pid");
        let Ok(contents) = tokio::fs::read_to_string(&pid_file).await else {
            return Ok(());
        };
        let Some(pid) = contents.lines().next().and_then(|line| line.trim().parse::<i64>().ok()) else {
            // Empty or torn: the server refuses such a file, and no process can be named by it.
            warn!(file = %pid_file.display(), "removing an unreadable postmaster.pid");
            return tokio::fs::remove_file(&pid_file).await.map_err(io_err(format!("removing {}", pid_file.display())));
        };
        match postmaster_state(pid.unsigned_abs(), &self.data_dir) {
            PostmasterState::Gone => Ok(()),
            PostmasterState::Unrelated => {
                warn!(pid, "postmaster.pid names a process that is not a server on this data directory; removing it");
                tokio::fs::remove_file(&pid_file).await.map_err(io_err(format!("removing {}", pid_file.display())))
            }
            PostmasterState::Running => {
                warn!(pid, data_dir = %self.data_dir.display(), "a server is still running on this data directory; restarting it");
                self.pg_ctl_stop().await
            }
        }
    }

    /// Writes the settings and starts the server, retrying on a lost port race or on shared
    /// memory still held by a killed server's children.
    async fn launch(&mut self, layout: &Layout) -> Result<()> {
        let conf = self.data_dir.join(CONF_FILE);
        let recorded = tokio::fs::read_to_string(&conf).await.ok().and_then(|text| recorded_port(&text));
        self.port = match recorded.filter(|port| port_is_free(*port)) {
            Some(port) => port,
            None => free_port()?,
        };
        let log = self.data_dir.join(STARTUP_LOG);
        let mut attempt = 1;
        loop {
            write_private_file(&conf, &server_settings(self.port, &layout.socket_dir), self.run_as).await?;
            let log_start = tokio::fs::metadata(&log).await.map(|m| m.len()).unwrap_or(0);
            let mut cmd = pg_command(&self.bin_dir.join("pg_ctl"), self.run_as);
            cmd.arg("start").arg("-D").arg(&self.data_dir).arg("-l").arg(&log);
            cmd.args(["-w", "-t", &PG_CTL_TIMEOUT_SECS.to_string()]);
            let Err(error) = run(cmd).await else {
                return Ok(());
            };
            let tail = log_tail(&log, log_start).await;
            let port_taken = tail.contains("could not bind") || tail.contains("could not create any TCP/IP sockets");
            let still_held = tail.contains("shared memory block is still in use") || tail.contains("already exists");
            if attempt >= START_ATTEMPTS || !(port_taken || still_held) {
                return Err(EmbeddedPgError::StartFailed {
                    data_dir: self.data_dir.display().to_string(),
                    reason: error.to_string(),
                    log: log.display().to_string(),
                    tail,
                });
            }
            if port_taken {
                self.port = free_port()?;
            }
            warn!(attempt, port_taken, "PostgreSQL did not start; retrying");
            tokio::time::sleep(START_RETRY_DELAY).await;
            attempt += 1;
        }
    }

    /// Connects as the superuser (proving authentication works) and creates the service's
    /// database if it is missing.
    async fn ensure_database(&self) -> Result<()> {
        let options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .password(&self.password)
            .database("postgres");
        let mut attempt = 1;
        let mut conn = loop {
            match PgConnection::connect_with(&options).await {
                Ok(conn) => break conn,
                Err(_) if attempt < CONNECT_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(CONNECT_RETRY_DELAY).await;
                }
                Err(source) => return Err(EmbeddedPgError::Connect { port: self.port, source }),
            }
        };
        let connect_err = |source| EmbeddedPgError::Connect { port: self.port, source };
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DATABASE)
            .fetch_one(&mut conn)
            .await
            .map_err(connect_err)?;
        if !exists {
            // DATABASE is a constant identifier, so formatting it into SQL is safe.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}")))
                .execute(&mut conn)
                .await
                .map_err(connect_err)?;
            info!(database = DATABASE, "created the database");
        }
        conn.close().await.map_err(connect_err)
    }
}

/// The settings we own, for a write-heavy service that must not lose a committed sale.
fn server_settings(port: u16, socket_dir: &Path) -> String {
    let socket_path_len = socket_dir.as_os_str().len() + format!("/.s.PGSQL.{port}").len();
    // A socket path too long for sun_path would stop the server from starting; clients use
    // TCP anyway, so do without the socket then.
    let socket_dirs =
        if socket_path_len <= MAX_SOCKET_PATH { conf_quote(&socket_dir.to_string_lossy()) } else { "''".into() };
    format!(
        "# Written by boxoffice at every start (src/embedded_pg.rs): edits here are lost.\n\
         # Use ALTER SYSTEM (postgresql.auto.conf) for local overrides.\n\
         listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         unix_socket_directories = {socket_dirs}\n\
         max_connections = 200\n\
         shared_buffers = '256MB'\n\
         # Durability is a product promise: a committed sale survives power loss.\n\
         fsync = on\n\
         synchronous_commit = on\n\
         full_page_writes = on\n\
         # Less WAL to write and fsync per page image; checkpoints spaced out for bulk writes.\n\
         wal_compression = on\n\
         max_wal_size = '2GB'\n\
         checkpoint_timeout = '15min'\n\
         # Server log inside the data directory, one file per weekday, overwritten weekly.\n\
         logging_collector = on\n\
         log_directory = 'log'\n\
         log_filename = 'postgresql-%a.log'\n\
         log_rotation_age = '1d'\n\
         log_rotation_size = 0\n\
         log_truncate_on_rotation = on\n"
    )
}

/// Quotes a string for `postgresql.conf`.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The port written into `boxoffice.conf` by the previous start.
fn recorded_port(conf: &str) -> Option<u16> {
    conf.lines().find_map(|line| line.strip_prefix("port = ")).and_then(|port| port.trim().parse().ok())
}

/// Whether nothing listens on `127.0.0.1:port` (binding would fail if anything, even a
/// wildcard listener, holds it).
fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port the kernel just handed out as free. Another process may take it before the server
/// binds it; [`EmbeddedPostgres::launch`] retries then.
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(io_err("finding a free port on 127.0.0.1"))
}

/// Reads `PG_VERSION`, the major version that created the cluster, if there is a cluster.
async fn read_cluster_version(data_dir: &Path) -> Option<String> {
    tokio::fs::read_to_string(data_dir.join("PG_VERSION")).await.ok().map(|v| v.trim().to_owned())
}

/// Finds a directory with the server binaries, and their major version. With a cluster
/// present, the binaries must match its major version; otherwise the first found wins, in
/// this order: PATH, `pg_config --bindir`, /usr/lib/postgresql/*/bin (newest first),
/// /usr/local/pgsql/bin.
async fn find_binaries(
    override_dir: Option<&Path>,
    cluster_version: Option<&str>,
    data_dir: &Path,
) -> Result<(PathBuf, String)> {
    let candidates = match override_dir {
        Some(dir) => match server_bin_dir(dir) {
            Some(dir) => vec![dir],
            None => return Err(EmbeddedPgError::BinDirOverrideInvalid { dir: dir.display().to_string() }),
        },
        None => discover_bin_dirs().await,
    };
    if candidates.is_empty() {
        return Err(EmbeddedPgError::BinariesNotFound);
    }
    let mut found = Vec::new();
    for dir in candidates {
        let Some(version) = major_version(&dir).await else { continue };
        if cluster_version.is_none_or(|cluster| cluster == version) {
            return Ok((dir, version));
        }
        found.push(version);
    }
    match cluster_version {
        Some(cluster) if !found.is_empty() => Err(EmbeddedPgError::VersionMismatch {
            data_dir: data_dir.display().to_string(),
            cluster: cluster.to_owned(),
            found: found.join(", "),
        }),
        _ => Err(EmbeddedPgError::BinariesNotFound),
    }
}

async fn discover_bin_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect()).unwrap_or_default();
    // Debian's pg_config comes with libpq-dev and names the server's bin directory.
    if let Ok(output) = Command::new("pg_config").arg("--bindir").stdin(Stdio::null()).output().await
        && output.status.success()
    {
        dirs.push(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    }
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version =
                entry.file_name().to_str()?.split('.').map(str::parse).collect::<Result<Vec<u32>, _>>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versioned.sort_by(|a, b| b.0.cmp(&a.0));
    dirs.extend(versioned.into_iter().map(|(_, dir)| dir));
    dirs.push(PathBuf::from("/usr/local/pgsql/bin"));

    let mut unique: Vec<PathBuf> = Vec::new();
    for dir in dirs.iter().filter_map(|dir| server_bin_dir(dir)) {
        if !unique.contains(&dir) {
            unique.push(dir);
        }
    }
    unique
}

/// The directory holding all server binaries reachable from `dir`: `dir` itself, or where
/// its `pg_ctl` symlink points (e.g. /usr/local/bin -> /usr/lib/postgresql/15/bin).
fn server_bin_dir(dir: &Path) -> Option<PathBuf> {
    let has_all = |dir: &Path| SERVER_BINARIES.iter().all(|name| is_executable(&dir.join(name)));
    let resolved =
        std::fs::canonicalize(dir.join("pg_ctl")).ok().and_then(|pg_ctl| pg_ctl.parent().map(Path::to_path_buf));
    match resolved {
        Some(real) if has_all(&real) => Some(real),
        _ if has_all(dir) => std::path::absolute(dir).ok(),
        _ => None,
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Major version as `PG_VERSION` spells it ("15", or "9.6" before 10), from `pg_ctl --version`
/// ("pg_ctl (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)").
async fn major_version(bin_dir: &Path) -> Option<String> {
    let output = Command::new(bin_dir.join("pg_ctl")).arg("--version").stdin(Stdio::null()).output().await.ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let full = text.split("(PostgreSQL) ").nth(1)?.split_whitespace().next()?;
    let mut parts = full.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?;
    match major.parse::<u32>().ok()? {
        10.. => Some(major.to_owned()),
        _ => Some(format!("{major}.{}", parts.next()?)),
    }
}

/// `Some` when we are root and PostgreSQL must run as the service account.
async fn service_user() -> Result<Option<ServiceUser>> {
    // /proc/self belongs to the effective uid; `id -u` where /proc is not mounted.
    let is_root = match std::fs::metadata("/proc/self") {
        Ok(meta) => meta.uid() == 0,
        Err(_) => id(&["-u"]).await == Some(0),
    };
    if !is_root {
        return Ok(None);
    }
    match (id(&["-u", SERVICE_OS_USER]).await, id(&["-g", SERVICE_OS_USER]).await) {
        (Some(uid), Some(gid)) if uid != 0 => Ok(Some(ServiceUser { uid, gid })),
        _ => Err(EmbeddedPgError::NoServiceUser),
    }
}

/// Runs `id` (which honours NSS, unlike reading /etc/passwd) and parses the number it prints.
async fn id(args: &[&str]) -> Option<u32> {
    let output = Command::new("id").args(args).stdin(Stdio::null()).output().await.ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().parse().ok()).flatten()
}

/// Creates the data and socket directories, private to the account running the server.
async fn prepare_directories(layout: &Layout, run_as: Option<ServiceUser>) -> Result<()> {
    for dir in [&layout.data_dir, &layout.socket_dir] {
        tokio::fs::create_dir_all(dir).await.map_err(io_err(format!("creating {}", dir.display())))?;
        let meta = tokio::fs::metadata(dir).await.map_err(io_err(format!("reading {}", dir.display())))?;
        if let Some(user) = run_as
            && meta.uid() != user.uid
        {
            // Also fixes a cluster restored or created by root: the server refuses files it
            // does not own.
            let owned = dir.clone();
            blocking(move || chown_tree(&owned, user))
                .await
                .map_err(io_err(format!("giving {} to {SERVICE_OS_USER}", dir.display())))?;
        }
        // The server refuses a group- or world-accessible data directory.
        tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .await
            .map_err(io_err(format!("restricting {}", dir.display())))?;
    }
    if run_as.is_some() {
        let mut check = pg_command(Path::new("test"), run_as);
        check.arg("-w").arg(&layout.data_dir);
        let reachable = check.status().await.is_ok_and(|status| status.success());
        if !reachable {
            return Err(EmbeddedPgError::DataDirUnreachable { path: layout.data_dir.display().to_string() });
        }
    }
    Ok(())
}

/// Runs `initdb` into the (empty) data directory and records the password. A marker file
/// brackets the whole sequence so an interrupted run is redone rather than half-used.
async fn initialize(layout: &Layout, bin_dir: &Path, run_as: Option<ServiceUser>) -> Result<String> {
    info!(data_dir = %layout.data_dir.display(), "initialising a new PostgreSQL cluster");
    tokio::fs::write(&layout.init_marker, b"")
        .await
        .map_err(io_err(format!("creating {}", layout.init_marker.display())))?;

    let password: String =
        rand::rng().sample_iter(rand::distr::Alphanumeric).take(PASSWORD_LEN).map(char::from).collect();
    // initdb reads the password from a file (never argv, which `ps` shows); the service
    // account must be able to read it, and initdb wants the data directory itself empty.
    let pwfile = layout.socket_dir.join(".initdb-password");
    write_private_file(&pwfile, &password, run_as).await?;
    let mut cmd = pg_command(&bin_dir.join("initdb"), run_as);
    cmd.arg("-D").arg(&layout.data_dir).arg(format!("--pwfile={}", pwfile.display()));
    cmd.args(["-U", SUPERUSER, "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--data-checksums"]);
    let initdb = run(cmd).await;
    let _ = tokio::fs::remove_file(&pwfile).await;
    initdb?;

    write_private_file(&layout.file(PASSWORD_FILE), &password, run_as).await?;
    let include = format!("\n# boxoffice: its settings, rewritten at every start\ninclude_if_exists = '{CONF_FILE}'\n");
    append_to_file(&layout.file("postgresql.conf"), include).await?;

    tokio::fs::remove_file(&layout.init_marker)
        .await
        .map_err(io_err(format!("removing {}", layout.init_marker.display())))?;
    Ok(password)
}

/// Reads the password of a cluster we created earlier.
async fn adopt_existing_cluster(layout: &Layout, run_as: Option<ServiceUser>) -> Result<String> {
    let path = layout.file(PASSWORD_FILE);
    let password = match tokio::fs::read_to_string(&path).await {
        Ok(password) => password.trim().to_owned(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(EmbeddedPgError::ForeignCluster { path: layout.data_dir.display().to_string() });
        }
        Err(error) => return Err(io_err(format!("reading {}", path.display()))(error)),
    };
    // Best effort: keep the secret private even if the file was copied around loosely.
    if let Err(error) = write_private_file(&path, &password, run_as).await {
        warn!(%error, "could not restrict the password file");
    }
    Ok(password)
}

/// Writes `contents` durably to a file readable only by the account running the server.
async fn write_private_file(path: &Path, contents: &str, run_as: Option<ServiceUser>) -> Result<()> {
    let (owned_path, contents) = (path.to_path_buf(), contents.to_owned());
    blocking(move || {
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&owned_path)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        // `mode` applies only to a new file.
        std::fs::set_permissions(&owned_path, std::fs::Permissions::from_mode(0o600))?;
        if let Some(user) = run_as {
            std::os::unix::fs::chown(&owned_path, Some(user.uid), Some(user.gid))?;
        }
        Ok(())
    })
    .await
    .map_err(io_err(format!("writing {}", path.display())))
}

/// Appends `text` durably to an existing file, keeping its owner and mode.
async fn append_to_file(path: &Path, text: String) -> Result<()> {
    let owned_path = path.to_path_buf();
    blocking(move || {
        let mut file = std::fs::OpenOptions::new().append(true).open(&owned_path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    })
    .await
    .map_err(io_err(format!("writing {}", path.display())))
}

/// Whether `dir` is missing or has no entries.
async fn dir_is_empty(dir: &Path) -> Result<bool> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(error) => return Err(io_err(format!("reading {}", dir.display()))(error)),
    };
    Ok(entries.next_entry().await.map_err(io_err(format!("reading {}", dir.display())))?.is_none())
}

enum PostmasterState {
    /// No such process (or a zombie): the pid file is stale.
    Gone,
    /// The pid was reused by a process that is not a server on this data directory.
    Unrelated,
    /// A server is running on this data directory (or we cannot tell otherwise).
    Running,
}

/// Tells a live postmaster from a reused pid: a postmaster's working directory is its data
/// directory. Linux `/proc`; elsewhere every pid looks gone and the server's own check decides.
fn postmaster_state(pid: u64, data_dir: &Path) -> PostmasterState {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    match std::fs::read_to_string(proc_dir.join("stat")) {
        // Field 3, after the parenthesised command name, is the state; Z is a zombie.
        Ok(stat) if stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')) => {
            return PostmasterState::Gone;
        }
        Ok(_) => {}
        Err(_) => return PostmasterState::Gone,
    }
    match std::fs::read_link(proc_dir.join("cwd")) {
        Ok(cwd) => {
            let ours = std::fs::canonicalize(data_dir).is_ok_and(|dir| dir == cwd);
            if ours { PostmasterState::Running } else { PostmasterState::Unrelated }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => PostmasterState::Gone,
        // Someone else's process we may not inspect: assume the worst, pg_ctl will tell.
        Err(_) => PostmasterState::Running,
    }
}

/// A command for a PostgreSQL program, as the service account when we are root, with client
/// variables cleared so nothing overrides the paths and ports we pass, and C messages so the
/// log can be matched.
fn pg_command(program: &Path, run_as: Option<ServiceUser>) -> Command {
    let mut cmd = Command::new(program);
    for var in PG_CLIENT_ENV {
        cmd.env_remove(var);
    }
    cmd.env("LC_ALL", "C").stdin(Stdio::null());
    if let Some(user) = run_as {
        // Root's working directory (e.g. /root) is closed to the service account, and pg_ctl
        // fails when it cannot resolve it. std drops root's supplementary groups with the uid.
        cmd.uid(user.uid).gid(user.gid).current_dir("/");
    }
    cmd
}

/// Runs a command to completion; a non-zero exit becomes an error quoting its output.
async fn run(mut cmd: Command) -> Result<Output> {
    let described = {
        let std_cmd = cmd.as_std();
        let args: Vec<_> = std_cmd.get_args().map(|arg| arg.to_string_lossy().into_owned()).collect();
        format!("{} {}", std_cmd.get_program().to_string_lossy(), args.join(" "))
    };
    // pg_ctl points the server's output at its log file, so these pipes close when pg_ctl exits.
    let output = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(io_err(format!("running `{described}`")))?;
    if output.status.success() {
        return Ok(output);
    }
    let text = format!("{}{}", String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
    Err(EmbeddedPgError::CommandFailed {
        command: described,
        status: output.status.to_string(),
        output: text.trim().to_owned(),
    })
}

/// The last lines written to `log` from byte `from` on.
async fn log_tail(log: &Path, from: u64) -> String {
    let Ok(bytes) = tokio::fs::read(log).await else {
        return String::from("(no log written)");
    };
    let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Gives a directory tree to the service account (not following symlinks).
fn chown_tree(path: &Path, user: ServiceUser) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), user)?;
        }
    }
    Ok(())
}

fn remove_dir_contents(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Runs blocking filesystem work off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_port_is_read_back_from_the_settings() {
        let conf = server_settings(54321, Path::new("/tmp/x-socket"));
        assert_eq!(recorded_port(&conf), Some(54321));
        assert_eq!(recorded_port("listen_addresses = '127.0.0.1'\n"), None);
    }

    #[test]
    fn overlong_socket_directory_is_left_out() {
        let long = PathBuf::from(format!("/tmp/{}", "d".repeat(120)));
        assert!(server_settings(5432, &long).contains("unix_socket_directories = ''\n"));
        assert!(server_settings(5432, Path::new("/tmp/it's")).contains("unix_socket_directories = '/tmp/it''s'\n"));
    }
}
