//! localstripe, a stateful fake of the Stripe API: the one `./scripts/test.sh` started, or
//! else one started for this test binary.

use crate::free_port;
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long localstripe may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: u32 = 3;

/// Serves localstripe's app on 127.0.0.1 with the store in memory, and exits when its stdin
/// closes, i.e. when the test binary that started it is gone, removing its log (kept when it
/// fails to start). (`localstripe --port N` binds every interface and pickles its whole store
/// to /tmp/localstripe.pickle after every POST; scripts/test.sh's launcher does the same as
/// this one.)
const LAUNCHER: &str = r#"
import argparse, logging, os, socket, sys, threading
from aiohttp import web
from localstripe import resources, server
resources.Store.dump_to_disk = lambda self: None
args = argparse.ArgumentParser()
args.add_argument("--port", type=int, required=True)
args.add_argument("--log", required=True)
args = args.parse_args()
port = args.port
def exit_with_parent():
    sys.stdin.read()
    try:
        os.unlink(args.log)
    except OSError:
        pass
    os._exit(0)
threading.Thread(target=exit_with_parent, daemon=True).start()
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.bind(("127.0.0.1", port))
log = logging.getLogger("aiohttp.access")
log.setLevel(logging.DEBUG)
log.addHandler(logging.StreamHandler())
web.run_app(server.app, sock=sock, access_log=log, print=None)
"#;

/// A localstripe started by this binary; kept for the life of the process.
struct Localstripe {
    url: String,
    /// Never read: kept so the process is not reaped early.
    _child: Child,
    /// Never written: the launcher exits when this pipe closes.
    _stdin: ChildStdin,
}

/// The base URL of localstripe: `BOXOFFICE_TEST_STRIPE_URL`, or else one started on first use
/// (with python3, or scripts/test.sh's cached virtualenv; `BOXOFFICE_TEST_LOCALSTRIPE_PYTHON`
/// chooses), shared by the whole binary. Panics if none can be found or started.
pub fn localstripe_url() -> String {
    if let Ok(url) = std::env::var("BOXOFFICE_TEST_STRIPE_URL") {
        return url.trim_end_matches('/').to_owned();
    }
    static STARTED: OnceLock<Result<Localstripe, String>> = OnceLock::new();
    match STARTED.get_or_init(start) {
        Ok(localstripe) => localstripe.url.clone(),
        Err(why) => panic!("localstripe is needed and could not be started: {why}"),
    }
}

fn python() -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(python) = std::env::var("BOXOFFICE_TEST_LOCALSTRIPE_PYTHON") {
        candidates.push(python.into());
    }
    candidates.push("python3".into());
    // Where scripts/test.sh installs localstripe when the system Python is externally managed.
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")));
    if let Some(cache) = cache {
        candidates.push(cache.join("boxoffice/localstripe-venv/bin/python"));
    }
    candidates
        .iter()
        .find(|python| {
            Command::new(python)
                .args(["-c", "import localstripe"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
        .cloned()
        .ok_or_else(|| {
            format!(
                "none of {candidates:?} can import localstripe: run scripts/test.sh, `pip install localstripe`, \
                 or set BOXOFFICE_TEST_STRIPE_URL"
            )
        })
}

fn start() -> Result<Localstripe, String> {
    let python = python()?;
    let log_path = std::env::temp_dir().join(format!("boxoffice-localstripe-{}.log", std::process::id()));
    let mut last_error = String::new();
    for _ in 0..START_ATTEMPTS {
        // The port may be taken again before localstripe binds it: then retry.
        let port = free_port();
        let log = std::fs::File::create(&log_path).map_err(|err| format!("{}: {err}", log_path.display()))?;
        let mut child = Command::new(&python)
            .args(["-c", LAUNCHER, "--port", &port.to_string(), "--log"])
            .arg(&log_path)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().map_err(|err| err.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", python.display()))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(Localstripe { url: format!("http://127.0.0.1:{port}"), _child: child, _stdin: stdin });
            }
            if let Ok(Some(status)) = child.try_wait() {
                last_error = format!("localstripe exited with {status}; see {}", log_path.display());
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                last_error = format!("localstripe did not listen within {START_TIMEOUT:?}");
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Err(last_error)
}
