//! TLS to PostgreSQL and Redis, as managed services require: the server speaks it when
//! asked (`sslmode=require`, `rediss://`). The private test services run without TLS, so
//! asking for it must fail in the TLS handshake — not with "built without TLS support".

use boxoffice::store::db;
use boxoffice_testkit::{RedisServer, required_env};

#[tokio::test]
async fn postgres_urls_that_require_tls_are_spoken_over_tls() {
    let admin = required_env("BOXOFFICE_TEST_DATABASE_URL");
    let sep = if admin.contains('?') { '&' } else { '?' };
    let Err(err) = db::connect(&format!("{admin}{sep}sslmode=require"), 1).await else {
        panic!("the test server has no TLS, yet the connection succeeded");
    };
    let text = err.to_string();
    assert!(!text.contains("without TLS support"), "the client cannot speak TLS: {text}");
    assert!(text.to_lowercase().contains("tls"), "refused for TLS reasons: {text}");
    // The same server without the requirement is fine.
    db::connect(&format!("{admin}{sep}sslmode=prefer"), 1).await.expect("sslmode=prefer falls back to plain");
}

#[tokio::test]
async fn rediss_urls_are_accepted() {
    let redis = RedisServer::start().await;
    let url = format!("rediss://127.0.0.1:{}", redis.port());
    let client = redis::Client::open(url.as_str()).expect("a rediss:// URL is understood");
    let Err(err) = client.get_multiplexed_async_connection().await else {
        panic!("the test server has no TLS, yet the connection succeeded");
    };
    assert!(!err.to_string().contains("not enabled"), "the client cannot speak TLS: {err}");
}
