//! `--watchers N`: N live seat-map viewers (`GET /events/{id}/live`, Server-Sent
//! Events) on the first event during the sale, as a crowd watching the map fill
//! up. Every watcher reads every frame; the first [`SAMPLED`] also parse them and
//! time how long after the generator got a hold's 201 they saw its seats turn
//! held (clamped at zero: a frame may arrive before the 201 does). Run the same
//! sale with and without watchers to see what they cost the buyers.

use crate::http::Api;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use uuid::Uuid;

/// Watchers that parse frames and measure delivery delay.
const SAMPLED: usize = 20;
/// Connections opened at once while the watchers connect.
const CONNECT_BATCH: usize = 100;

/// When the generator learnt each seat was held (label → instant), for the delay.
#[derive(Default)]
pub struct HoldTimes(Mutex<HashMap<String, Instant>>);

impl HoldTimes {
    pub fn record(&self, seats: &[String], at: Instant) {
        let mut map = self.0.lock().expect("hold times lock");
        for s in seats {
            map.insert(s.clone(), at);
        }
    }

    fn get(&self, seat: &str) -> Option<Instant> {
        self.0.lock().expect("hold times lock").get(seat).copied()
    }
}

#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
    snapshots: AtomicU64,
    dropped: AtomicU64,
}

pub struct Watchers {
    counters: Arc<Counters>,
    delays: Arc<Mutex<Histogram<u64>>>,
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<()>,
    count: usize,
}

/// What the watchers saw.
#[derive(Serialize, Clone, Debug)]
pub struct WatcherFigures {
    pub watchers: usize,
    pub connected: u64,
    pub frames: u64,
    pub snapshots: u64,
    pub megabytes: f64,
    pub streams_dropped: u64,
    pub delay_samples: u64,
    pub delay_p50_ms: f64,
    pub delay_p99_ms: f64,
    pub delay_max_ms: f64,
}

impl Watchers {
    /// Opens `count` streams on `event` (spread over the nodes like every request).
    pub async fn start(api: &Api, event: Uuid, count: usize, holds: Arc<HoldTimes>) -> anyhow::Result<Self> {
        let counters = Arc::new(Counters::default());
        let delays = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        let path = format!("/events/{event}/live");
        for batch in (0..count).collect::<Vec<_>>().chunks(CONNECT_BATCH) {
            let mut opening = tokio::task::JoinSet::new();
            for &i in batch {
                let (api, path) = (api.clone(), path.clone());
                opening.spawn(async move { (i, api.open_stream(&path).await) });
            }
            while let Some(opened) = opening.join_next().await {
                let (i, opened) = opened?;
                let body = match opened {
                    Ok((200, body)) => body,
                    Ok((status, _)) => anyhow::bail!("GET {path} answered {status}"),
                    Err(e) => anyhow::bail!("GET {path}: {e}"),
                };
                counters.connected.fetch_add(1, Relaxed);
                let (counters, delays, stop, holds) = (counters.clone(), delays.clone(), stop.clone(), holds.clone());
                tasks.spawn(watch(body, i < SAMPLED, counters, delays, stop, holds));
            }
        }
        Ok(Self { counters, delays, stop, tasks, count })
    }

    pub async fn finish(mut self) -> WatcherFigures {
        self.stop.store(true, Relaxed);
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let c = &self.counters;
        let h = self.delays.lock().expect("delays lock");
        let ms = |us: u64| us as f64 / 1000.0;
        WatcherFigures {
            watchers: self.count,
            connected: c.connected.load(Relaxed),
            frames: c.frames.load(Relaxed),
            snapshots: c.snapshots.load(Relaxed),
            megabytes: c.bytes.load(Relaxed) as f64 / 1e6,
            streams_dropped: c.dropped.load(Relaxed),
            delay_samples: h.len(),
            delay_p50_ms: ms(h.value_at_quantile(0.5)),
            delay_p99_ms: ms(h.value_at_quantile(0.99)),
            delay_max_ms: ms(h.max()),
        }
    }
}

async fn watch(
    mut body: hyper::body::Incoming,
    sampled: bool,
    counters: Arc<Counters>,
    delays: Arc<Mutex<Histogram<u64>>>,
    stop: Arc<AtomicBool>,
    holds: Arc<HoldTimes>,
) {
    let mut buffer = Vec::<u8>::new();
    while !stop.load(Relaxed) {
        let chunk = match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            _ => {
                if !stop.load(Relaxed) {
                    counters.dropped.fetch_add(1, Relaxed);
                }
                return;
            }
        };
        let now = Instant::now();
        counters.bytes.fetch_add(chunk.len() as u64, Relaxed);
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&block);
            let Some(kind) = text.lines().find_map(|l| l.strip_prefix("event:")).map(str::trim) else { continue };
            counters.frames.fetch_add(1, Relaxed);
            if kind == "snapshot" {
                counters.snapshots.fetch_add(1, Relaxed);
                continue;
            }
            if !sampled {
                continue;
            }
            let Some(data) = text.lines().find_map(|l| l.strip_prefix("data:")) else { continue };
            let Ok(frame) = serde_json::from_str::<serde_json::Value>(data.trim_start()) else { continue };
            let Some(seats) = frame["seats"].as_object() else { continue };
            let mut h = delays.lock().expect("delays lock");
            for (label, state) in seats {
                if state == "H"
                    && let Some(acked) = holds.get(label)
                {
                    let _ = h.record(now.saturating_duration_since(acked).as_micros() as u64);
                }
            }
        }
    }
}

/// `GET /events/{id}/seats` timed `count` times before the sale: (body bytes, p50 ms, p99 ms).
pub async fn time_seat_status(api: &Api, event: Uuid, count: u32) -> anyhow::Result<(usize, f64, f64)> {
    let path = format!("/events/{event}/seats");
    let mut h = Histogram::<u64>::new(3)?;
    let mut bytes = 0;
    for _ in 0..count {
        let started = Instant::now();
        let r = api.get(&path, None).await?;
        if !r.ok() {
            anyhow::bail!("GET {path} answered {}", r.status);
        }
        h.record(started.elapsed().as_micros() as u64)?;
        bytes = r.body.len();
    }
    Ok((bytes, h.value_at_quantile(0.5) as f64 / 1000.0, h.value_at_quantile(0.99) as f64 / 1000.0))
}
