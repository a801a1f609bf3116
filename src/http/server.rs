//! The server loop: HTTP/1.1 connections accepted until shutdown, each request
//! given a deadline for its headers and a bound on their size.

use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// Largest request head (request line and headers) read, bytes; past it hyper answers
/// 431 and closes. hyper's default (~400 KB) refused an oversized `Stripe-Signature`
/// (100,000 `v1=` entries, ~6.8 MB) before the route could answer it with a problem
/// document; with room for it, the webhook refuses the header by its length, before
/// any HMAC. The read buffer starts at 8 KiB and grows only while a client actually
/// sends a longer head, so ordinary connections cost what they did.
pub const MAX_REQUEST_HEAD_BYTES: usize = 8 * 1024 * 1024;

/// Serves HTTP/1.1 like `axum::serve` (client address as `ConnectInfo`, graceful
/// shutdown), plus a deadline on each request's headers: a client that never
/// finishes them (slowloris) is disconnected after `header_timeout` instead of
/// holding its connection — and a graceful shutdown — open for ever.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::Service;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(MAX_REQUEST_HEAD_BYTES);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            router.clone().call(request)
        });
        let connection =
            graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after 30 s of shutdown; closing them");
    }
}
