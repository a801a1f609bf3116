//! `loadtest echo-server`: the bare-HTTP baseline of `http-ratio`. An axum server
//! (the server's own axum, hyper, tokio and allocator) whose `POST /echo` parses a
//! purchase-sized JSON body (event id, seats, quantity, payment method…) into a
//! typed struct and answers it back as JSON, and nothing else: no auth, no
//! database, no tracing, no metrics. What boxoffice does per request on top of
//! this is what `http-ratio` divides out.
//!
//! It listens on loopback only and prints `listening on ADDR` on stdout once
//! bound (the port may be 0, then the line says which one it got), then serves
//! until SIGTERM, SIGINT or `--max-secs`.

use crate::cli::EchoArgs;
use anyhow::{Context, bail};
use axum::Router;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::time::Duration;
use uuid::Uuid;

/// The body `POST /echo` parses: the shape of `POST /tickets/purchase`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct PurchaseLike {
    pub event_id: Uuid,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seats: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    #[serde(default)]
    pub allow_split: bool,
    pub payment_method: String,
    #[serde(default)]
    pub include_qr_image: bool,
}

/// The body `http-ratio` sends to the echo server: as long as a seated one-shot purchase.
pub fn sample_body(event_id: Uuid) -> Vec<u8> {
    let body = PurchaseLike {
        event_id,
        seats: vec!["S1R1-24".into(), "S1R1-25".into()],
        quantity: None,
        section: None,
        allow_split: false,
        payment_method: "pm_card_visa".into(),
        include_qr_image: false,
    };
    serde_json::to_vec(&body).expect("the sample body serialises")
}

/// The baseline's whole router.
pub fn router() -> Router {
    Router::new()
        .route("/echo", post(|axum::Json(body): axum::Json<PurchaseLike>| async move { axum::Json(body) }))
        .route("/healthz", get(|| async { "ok" }))
}

/// Serves until a signal or `--max-secs`.
pub async fn serve(args: &EchoArgs) -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = args.bind.parse().with_context(|| format!("--bind {:?}", args.bind))?;
    if !addr.ip().is_loopback() {
        bail!("--bind {addr}: the echo server listens on loopback only");
    }
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {local}")?;
        out.flush()?;
    }
    let max = Duration::from_secs(args.max_secs);
    let stop = async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = tokio::time::sleep(max) => {}
        }
    };
    let app = router();
    axum::serve(listener, app).with_graceful_shutdown(stop).await.context("serving")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_body_is_purchase_sized_and_round_trips() {
        let id = Uuid::new_v4();
        let body = sample_body(id);
        assert!((100..200).contains(&body.len()), "{} bytes", body.len());
        let back: PurchaseLike = serde_json::from_slice(&body).expect("parses");
        assert_eq!(back.event_id, id);
        assert_eq!(back.seats.len(), 2);
        assert_eq!(serde_json::to_vec(&back).unwrap(), body);
    }
}
