//! HTTP over a raw connection, for what a well-behaved client never sends: oversized and
//! chunked bodies, stalled bodies and headers.

use boxoffice_testkit::TestApp;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

/// An HTTP answer read off a raw connection.
pub(super) struct RawAnswer {
    status: u16,
    content_type: String,
    body: String,
}

impl RawAnswer {
    fn parse(raw: &str) -> Option<Self> {
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let mut lines = head.lines();
        let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
        let mut content_type = String::new();
        let mut chunked = false;
        for line in lines {
            let (k, v) = line.split_once(':')?;
            match k.trim().to_ascii_lowercase().as_str() {
                "content-type" => content_type = v.trim().to_owned(),
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
        let body = if chunked {
            let mut out = String::new();
            let mut rest = body;
            while let Some((size, after)) = rest.split_once("\r\n") {
                let n = usize::from_str_radix(size.trim(), 16).ok()?;
                if n == 0 || after.len() < n {
                    break;
                }
                out.push_str(&after[..n]);
                rest = after[n..].trim_start_matches("\r\n");
            }
            out
        } else {
            body.to_owned()
        };
        Some(Self { status, content_type, body })
    }

    pub(super) fn problem(&self, status: StatusCode, code: &str) -> Result<(), String> {
        if self.status != status.as_u16() {
            return Err(format!("status {} (wanted {status}): {:.200}", self.status, self.body));
        }
        if self.content_type != "application/problem+json" {
            return Err(format!(
                "{} with content type {:?}, not application/problem+json: {:.200}",
                self.status, self.content_type, self.body
            ));
        }
        let body: Value = serde_json::from_str(&self.body).map_err(|e| format!("problem is not JSON: {e}"))?;
        if body["code"] != code || body["status"] != self.status {
            return Err(format!("problem {body} (wanted code {code})"));
        }
        Ok(())
    }
}

/// POSTs `body` over a raw connection, with Content-Length or chunked, and reads the answer.
pub(super) async fn raw_post(app: &TestApp, path: &str, token: Option<&str>, body: &str, chunked: bool) -> RawAnswer {
    use tokio::io::AsyncWriteExt;
    let mut s = raw_connection(app).await;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let mut request =
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}");
    if chunked {
        request.push_str("Transfer-Encoding: chunked\r\n\r\n");
        for chunk in body.as_bytes().chunks(512) {
            request.push_str(&format!("{:x}\r\n{}\r\n", chunk.len(), String::from_utf8_lossy(chunk)));
        }
        request.push_str("0\r\n\r\n");
    } else {
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    }
    // The server may answer (and close) before reading it all: a failed write is fine.
    let _ = s.write_all(request.as_bytes()).await;
    let (raw, took) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    let raw = raw.unwrap_or_else(|| panic!("POST {path}: no answer within {took:?}"));
    RawAnswer::parse(&raw).unwrap_or_else(|| panic!("POST {path}: not an HTTP answer: {raw:.300}"))
}

/// Opens a raw connection to the app.
pub(super) async fn raw_connection(app: &TestApp) -> tokio::net::TcpStream {
    let addr = app.base.trim_start_matches("http://");
    tokio::net::TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the server answers and closes, or `limit` passes: (what was read, how long).
pub(super) async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    limit: Duration,
) -> (Option<String>, Duration) {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (Some(String::from_utf8_lossy(&buf).into_owned()), started.elapsed()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {
                return (
                    if buf.is_empty() { None } else { Some(String::from_utf8_lossy(&buf).into_owned()) },
                    started.elapsed(),
                );
            }
        }
    }
}
