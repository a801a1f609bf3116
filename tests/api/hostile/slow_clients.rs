//! Slow clients (stalled bodies, slowloris headers) are cut off by the request timeout with a
//! problem document, while everyone else is served.

use super::raw::{raw_connection, read_until_closed};
use boxoffice_testkit::{TestApp, fresh_database, spawn_app_on};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

/// REQUEST_TIMEOUT_MS of the slow-client tests.
const TIMEOUT_MS: u64 = 2000;
/// How long past REQUEST_TIMEOUT_MS a stalled request may linger.
const SLACK: Duration = Duration::from_secs(4);

/// The server with REQUEST_TIMEOUT_MS = [`TIMEOUT_MS`], and a client that opens a fresh
/// connection for each request: the server closes connections idle longer than the timeout,
/// and a pooled client could reuse one at the very moment it closes.
async fn spawn_app_with_request_timeout() -> TestApp {
    let mut app = spawn_app_on(fresh_database().await, &[("REQUEST_TIMEOUT_MS", &TIMEOUT_MS.to_string())]).await;
    app.client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    app
}

/// Clients that send their headers and then stall the body are cut off by the
/// request timeout — twenty at once — while everyone else is served.
#[tokio::test]
async fn a_client_stalling_its_body_is_cut_off_and_others_are_served() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with_request_timeout().await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = raw_connection(&app).await;
        s.write_all(
            b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"email\":",
        )
        .await
        .unwrap();
        stalled.push(s);
    }
    // Others are served while those hang.
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
    }
    assert!(started.elapsed() < Duration::from_millis(TIMEOUT_MS * 3 / 4), "healthz waited behind the stalled clients");
    let limit = Duration::from_millis(TIMEOUT_MS) + SLACK;
    for (i, s) in stalled.iter_mut().enumerate() {
        let (answer, took) = read_until_closed(s, limit).await;
        let answer = answer.unwrap_or_else(|| panic!("stalled client {i} still connected after {took:?}"));
        assert!(took <= limit, "client {i} lingered {took:?}");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408") || answer.starts_with("HTTP/1.1 503"),
            "client {i} got {answer:.200}"
        );
    }
    let (_, token, _) = app.user("customer").await;
    assert_eq!(app.get("/auth/me", Some(&token)).await.status(), StatusCode::OK);
    app.stop().await;
}

/// The answer a timed-out request gets is a problem document like every other error.
#[tokio::test]
async fn the_request_timeout_answer_is_a_problem_document() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with_request_timeout().await;
    let mut s = raw_connection(&app).await;
    s.write_all(
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{",
    )
    .await
    .unwrap();
    let (answer, _) = read_until_closed(&mut s, Duration::from_millis(TIMEOUT_MS) + SLACK).await;
    let answer = answer.expect("an answer");
    let head = answer.split("\r\n\r\n").next().unwrap_or("").to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503") || head.starts_with("http/1.1 408"), "{answer:.300}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "timeout answer is not a problem document:\n{answer:.300}"
    );
    app.stop().await;
}

/// A client that never finishes its request headers (slowloris) is cut off too, and
/// does not hold up a graceful shutdown.
#[tokio::test]
async fn a_client_stalling_its_headers_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with_request_timeout().await;
    let mut s = raw_connection(&app).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let limit = Duration::from_millis(TIMEOUT_MS) + SLACK;
    let (answer, took) = read_until_closed(&mut s, limit).await;
    assert!(answer.is_some() && took <= limit, "a connection with unfinished headers is still open after {took:?}");
    let mut s = raw_connection(&app).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // Time for the server to take the connection in and read the partial headers; nothing it
    // shows from outside says when it has (no connection count), so this is a pause.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), app.stop()).await;
    assert!(stopped.is_ok(), "graceful shutdown waited on a client with unfinished headers");
    drop(s);
}
