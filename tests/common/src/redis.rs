//! A redis-server of the test's own, which it can stop and start again on the same port.

use crate::{free_port, poll, required_env};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a redis-server may take to answer PING once spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Starts tried (each on a fresh port for `start`, on the same port for `restart`).
const START_ATTEMPTS: usize = 5;

/// `redis-server` (`BOXOFFICE_TEST_REDIS_SERVER`) on a loopback port, without persistence;
/// killed on drop.
pub struct RedisServer {
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    pub async fn start() -> Self {
        let bin = PathBuf::from(required_env("BOXOFFICE_TEST_REDIS_SERVER"));
        for _ in 0..START_ATTEMPTS {
            let mut server = Self { bin: bin.clone(), port: free_port(), child: None };
            if server.try_start().await {
                return server;
            }
        }
        panic!("redis-server ({}) did not start on any of {START_ATTEMPTS} ports", bin.display());
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): clients see it vanish.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (stopping it first if it runs) and waits
    /// until it answers. It comes back empty.
    pub async fn restart(&mut self) {
        self.stop();
        for _ in 0..START_ATTEMPTS {
            if self.try_start().await {
                return;
            }
            // Whoever holds the port may let it go.
            let port = self.port;
            let _ = poll(Duration::from_secs(5), Duration::from_millis(50), || async move {
                TcpListener::bind(("127.0.0.1", port)).map(drop)
            })
            .await;
        }
        panic!("redis-server did not start again on port {}", self.port);
    }

    /// Spawns the server on `self.port`; true once it answers PING, false if it exits first
    /// (the port was taken) or does not answer in time.
    async fn try_start(&mut self) -> bool {
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        self.child = Some(child);
        let port = self.port;
        let ready = poll(READY_TIMEOUT, Duration::from_millis(50), || {
            let exited = self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some());
            async move {
                if exited {
                    return Ok(false);
                }
                if answers_ping(port).await { Ok(true) } else { Err(()) }
            }
        })
        .await;
        if ready != Ok(true) {
            self.stop();
            return false;
        }
        true
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a Redis server on `port` answers `PING` with `+PONG`.
async fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else { return false };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut reply = [0u8; 5];
    matches!(tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut reply)).await, Ok(Ok(_)))
        && &reply == b"+PONG"
}
