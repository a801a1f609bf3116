//! The HTTP client: hyper 1 over plain HTTP/1.1 with a keep-alive pool (one
//! connection per request in flight, reused afterwards; optionally at most N
//! requests, and so connections, at once), aimed only at loopback.
//!
//! Every exchange is bounded by a timeout. Problem documents (RFC 9457) are parsed
//! once here, so callers and the statistics see the `code` without parsing again.

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// Idle pooled connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Connecting to loopback takes microseconds; anything slower is a refused or dead server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port`, no trailing slash: one per node; requests take them in turn.
    bases: Arc<[Arc<str>]>,
    next: Arc<std::sync::atomic::AtomicUsize>,
    timeout: Duration,
    /// At most this many exchanges at once (see [`Api::with_upstream_limit`]).
    upstream: Option<Arc<tokio::sync::Semaphore>>,
}

/// The members of a problem document the generator acts on.
#[derive(Debug, Default, Deserialize)]
pub struct Problem {
    #[serde(default)]
    pub code: String,
    /// `seats_taken`: which seats were taken.
    #[serde(default)]
    pub seats: Vec<String>,
}

/// A response, read in full.
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
    /// Parsed for 4xx and 5xx responses.
    pub problem: Option<Problem>,
}

impl Reply {
    pub(crate) fn new(status: u16, retry_after: Option<Duration>, body: Bytes) -> Self {
        let problem = (status >= 400).then(|| serde_json::from_slice(&body).unwrap_or_default());
        Self { status, retry_after, body, problem }
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The problem `code`, or "" for a success or a body that is not a problem document.
    pub fn code(&self) -> &str {
        self.problem.as_ref().map_or("", |p| p.code.as_str())
    }

    pub fn json<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "unexpected response body ({} {})",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
            )
        })
    }
}

/// No response at all.
#[derive(Debug, Clone)]
pub enum Failure {
    Timeout,
    Transport(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timed out"),
            Failure::Transport(e) => write!(f, "transport error: {e}"),
        }
    }
}

impl std::error::Error for Failure {}

pub type Exchange = Result<Reply, Failure>;

impl Api {
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let base = loopback_base(base_url)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(usize::MAX)
            .build(connector);
        Ok(Self {
            client,
            bases: vec![Arc::<str>::from(base)].into(),
            next: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            timeout,
            upstream: None,
        })
    }

    /// An API that spreads requests over `base_urls` in turn (several nodes behind
    /// a round-robin load balancer).
    pub fn spread(base_urls: &[String], timeout: Duration) -> anyhow::Result<Self> {
        let first = base_urls.first().context("no server to talk to")?;
        let mut api = Self::new(first, timeout)?;
        api.bases = base_urls.iter().map(|b| loopback_base(b).map(Arc::<str>::from)).collect::<anyhow::Result<_>>()?;
        Ok(api)
    }

    /// The same client, sending at most `connections` requests at once — so over at
    /// most that many pooled connections, as a load balancer's upstream pool. A
    /// request waits for a free slot before its timeout starts.
    pub fn with_upstream_limit(mut self, connections: usize) -> Self {
        self.upstream = Some(Arc::new(tokio::sync::Semaphore::new(connections.max(1))));
        self
    }

    /// The same client, talking to the first node only (for its metrics).
    pub fn first(&self) -> Self {
        self.node(0)
    }

    /// The same client, talking to node `i` only.
    pub fn node(&self, i: usize) -> Self {
        Self { bases: vec![Arc::clone(&self.bases[i % self.bases.len()])].into(), next: Arc::default(), ..self.clone() }
    }

    /// How many nodes requests are spread over.
    pub fn nodes(&self) -> usize {
        self.bases.len()
    }

    fn base(&self) -> &str {
        if self.bases.len() == 1 {
            return &self.bases[0];
        }
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.bases[i % self.bases.len()]
    }

    /// One request and its whole response, within the timeout.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Option<&HeaderValue>,
        body: Option<Bytes>,
        idempotency_key: Option<&str>,
    ) -> Exchange {
        self.send_with(method, path, auth, body, idempotency_key, &[]).await
    }

    /// [`Api::send`] with `extra` headers.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        auth: Option<&HeaderValue>,
        body: Option<Bytes>,
        idempotency_key: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Exchange {
        let mut builder = Request::builder().method(method).uri(format!("{}{}", self.base(), path));
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        if let Some(auth) = auth {
            builder = builder.header(AUTHORIZATION, auth);
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        if let Some(key) = idempotency_key {
            builder = builder.header("idempotency-key", key);
        }
        let request =
            builder.body(Full::new(body.unwrap_or_default())).map_err(|e| Failure::Transport(e.to_string()))?;
        let _slot = match &self.upstream {
            Some(slots) => Some(slots.acquire().await.map_err(|e| Failure::Transport(e.to_string()))?),
            None => None,
        };
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| Failure::Transport(error_chain(&e)))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body =
                response.into_body().collect().await.map_err(|e| Failure::Transport(error_chain(&e)))?.to_bytes();
            Ok(Reply::new(status, retry_after, body))
        };
        tokio::time::timeout(self.timeout, exchange).await.unwrap_or(Err(Failure::Timeout))
    }

    /// A GET whose body is read as it comes (Server-Sent Events): the status and
    /// the body once the headers arrived, within the timeout.
    pub async fn open_stream(&self, path: &str) -> Result<(u16, hyper::body::Incoming), Failure> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(format!("{}{}", self.base(), path))
            .header("accept", "text/event-stream")
            .body(Full::new(Bytes::new()))
            .map_err(|e| Failure::Transport(e.to_string()))?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| Failure::Timeout)?
            .map_err(|e| Failure::Transport(error_chain(&e)))?;
        Ok((response.status().as_u16(), response.into_body()))
    }

    pub async fn get(&self, path: &str, auth: Option<&HeaderValue>) -> Exchange {
        self.send(Method::GET, path, auth, None, None).await
    }

    pub async fn post_json<T: serde::Serialize>(&self, path: &str, auth: Option<&HeaderValue>, body: &T) -> Exchange {
        let body = serde_json::to_vec(body).map_err(|e| Failure::Transport(e.to_string()))?;
        self.send(Method::POST, path, auth, Some(body.into()), None).await
    }
}

/// `Bearer <token>` as a header value.
pub fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}")).context("the server returned an access token that is not ASCII")
}

/// `http://host:port` of `url`, refusing anything but plain HTTP to a loopback address.
pub fn loopback_base(url: &str) -> anyhow::Result<String> {
    let uri: Uri = url.parse().with_context(|| format!("{url:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("{url}: only http:// is supported (the generator talks to a local server)");
    }
    let host = uri.host().context("the URL has no host")?;
    if !is_loopback_host(host) {
        bail!("{url}: refusing a target that is not loopback (127.0.0.0/8, ::1 or localhost)");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        bail!("{url}: give the server's base URL (no path or query)");
    }
    let port = uri.port_u16().unwrap_or(80);
    Ok(format!("http://{host}:{port}"))
}

/// Whether `host` (a name or an address, IPv6 possibly in brackets) is loopback.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An error with its sources, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert_eq!(loopback_base("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(loopback_base("http://localhost:9000/").unwrap(), "http://localhost:9000");
        assert_eq!(loopback_base("http://[::1]:81").unwrap(), "http://[::1]:81");
        assert_eq!(loopback_base("http://127.3.4.5").unwrap(), "http://127.3.4.5:80");
        for bad in ["http://10.0.0.1:8080", "http://example.com", "https://127.0.0.1", "http://127.0.0.1/x", "x"] {
            assert!(loopback_base(bad).is_err(), "{bad} accepted");
        }
    }

    /// A keep-alive HTTP/1.1 server that answers every GET with `ok` after `delay`,
    /// counting the connections it accepted and the most requests it had at once.
    async fn counting_server(delay: Duration) -> (String, Arc<[std::sync::atomic::AtomicUsize; 3]>) {
        use std::sync::atomic::Ordering::SeqCst;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // [connections accepted, requests in progress, most in progress at once]
        let counts: Arc<[std::sync::atomic::AtomicUsize; 3]> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server_counts = Arc::clone(&counts);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                server_counts[0].fetch_add(1, SeqCst);
                let counts = Arc::clone(&server_counts);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        buf.drain(..end);
                        let now = counts[1].fetch_add(1, SeqCst) + 1;
                        counts[2].fetch_max(now, SeqCst);
                        tokio::time::sleep(delay).await;
                        counts[1].fetch_sub(1, SeqCst);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if socket.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (base, counts)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upstream_limit_bounds_requests_and_connections() {
        use std::sync::atomic::Ordering::SeqCst;
        for (limit, requests) in [(Some(8), 200), (None, 64)] {
            let (base, counts) = counting_server(Duration::from_millis(20)).await;
            let mut api = Api::new(&base, Duration::from_secs(10)).unwrap();
            if let Some(limit) = limit {
                api = api.with_upstream_limit(limit);
            }
            let mut sent = tokio::task::JoinSet::new();
            for _ in 0..requests {
                let api = api.clone();
                sent.spawn(async move { api.get("/x", None).await });
            }
            while let Some(reply) = sent.join_next().await {
                let reply = reply.unwrap().expect("an answer");
                assert!(reply.ok() && &reply.body[..] == b"ok");
            }
            let (accepted, most) = (counts[0].load(SeqCst), counts[2].load(SeqCst));
            match limit {
                Some(limit) => {
                    assert!(most <= limit, "{most} requests at once, limit {limit}");
                    assert!(accepted <= limit, "{accepted} connections for a limit of {limit}");
                    assert!(most >= limit / 2, "the limit is used: {most} at once");
                }
                // Without a limit every request in flight has its own connection.
                None => assert!(most > 8 && accepted > 8, "{most} at once over {accepted} connections"),
            }
        }
    }

    #[test]
    fn problems_are_parsed_for_errors_only() {
        let r = Reply::new(409, None, Bytes::from_static(br#"{"code":"seats_taken","seats":["A-1"]}"#));
        assert_eq!(r.code(), "seats_taken");
        assert_eq!(r.problem.unwrap().seats, vec!["A-1"]);
        let ok = Reply::new(201, None, Bytes::from_static(br#"{"code":"x"}"#));
        assert_eq!(ok.code(), "");
    }
}
