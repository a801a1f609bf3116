//! Holds per second through the whole engine: `EventHandle` admission, the
//! ractor mailbox, `EventActor`, `SeatInventory`, and a `MemoryJournal` that
//! acknowledges at once — so this measures the engine, not a database.
//!
//! 1, 16 and 256 callers on a 2-worker tokio runtime share one event. Each
//! sample gets a fresh event and journal (set up and torn down untimed), so
//! memory does not grow across samples.
//!
//! Target (`docs/domain.md`, section "Performance targets"): ≥ 500 k holds/s from many concurrent callers.
//! Run: `cargo bench -p boxoffice-benches --bench actor`.

use boxoffice_actors::seatmap::{PriceTier, SectionKindSpec, SectionSpec, grid};
use boxoffice_actors::*;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const CALLERS: [u64; 3] = [1, 16, 256];
/// General-admission capacity for the hold-only runs: the most an event may have.
const GA_CAPACITY: u32 = 1_000_000;

/// Serves one seat map for any event id, with no stored holds.
struct FreshEvent(SeatMap);

impl Loader for FreshEvent {
    fn load(&self, _event: EventId) -> LoadFuture {
        let layout = Layout::compile(&self.0).map_err(|e| LoadError::Failed(e.to_string()));
        Box::pin(async move {
            let window = SalesWindow { per_buyer_limit: u32::MAX, ..SalesWindow::always_open() };
            Ok(EventSnapshot { layout: layout?, window, holds: Vec::new(), blocked: Vec::new(), epoch: 0 })
        })
    }
}

fn general_admission() -> SeatMap {
    SeatMap {
        tiers: vec![PriceTier { code: "GA".into(), price: 5_000 }],
        sections: vec![SectionSpec {
            name: "Floor".into(),
            tier: "GA".into(),
            kind: SectionKindSpec::General { capacity: GA_CAPACITY },
        }],
    }
}

#[derive(Clone, Copy)]
enum Workload {
    /// Best available 1 on a 50k-seat map, then release it: 2 calls per hold.
    SeatedHoldRelease,
    /// One GA place per hold, never released: 1 call per hold.
    GeneralHold,
    /// A read that changes nothing (`get_hold` of an unknown id): the floor the
    /// handle, mailbox and reply put under every call.
    RoundTrip,
}

impl Workload {
    fn map(self) -> SeatMap {
        match self {
            Workload::SeatedHoldRelease => grid(10, 100, 50),
            Workload::GeneralHold | Workload::RoundTrip => general_admission(),
        }
    }

    /// Holds one event can take before it must be replaced.
    fn per_event(self) -> u64 {
        match self {
            Workload::SeatedHoldRelease | Workload::RoundTrip => u64::MAX,
            Workload::GeneralHold => u64::from(GA_CAPACITY),
        }
    }
}

/// Runs `iters` holds spread over `callers` tasks; returns the time they took.
async fn run(workload: Workload, callers: u64, iters: u64) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let batch = left.min(workload.per_event());
        left -= batch;
        let journal = MemoryJournal::new();
        let config = ActorConfig { ended_retention: Duration::ZERO, ..ActorConfig::default() };
        let limits = Limits { max_in_flight: 1 << 20, call_timeout: Duration::from_secs(60), ..Limits::default() };
        let registry = Registry::new(
            Arc::new(FreshEvent(workload.map())),
            Arc::new(journal),
            Arc::new(SystemClock),
            config,
            limits,
        );
        let handle = registry.get(EventId::new()).await.expect("event activates");

        let start = Instant::now();
        let tasks: Vec<_> = (0..callers)
            .map(|c| {
                let handle = handle.clone();
                let n = batch / callers + u64::from(c < batch % callers);
                tokio::spawn(async move { caller(workload, handle, n).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("caller panicked");
        }
        elapsed += start.elapsed();
        registry.shutdown().await;
    }
    elapsed
}

async fn caller(workload: Workload, handle: EventHandle, n: u64) {
    let buyer = BuyerId::new();
    for _ in 0..n {
        match workload {
            Workload::SeatedHoldRelease => {
                let best = Selection::BestAvailable { quantity: 1, section: None, allow_split: false };
                let hold = handle.hold(buyer, best, None).await.expect("hold");
                handle.release(hold.id, buyer).await.expect("release");
            }
            Workload::GeneralHold => {
                let one = Selection::General { quantity: 1, section: None };
                handle.hold(buyer, one, None).await.expect("hold");
            }
            Workload::RoundTrip => {
                black_box(handle.get_hold(HoldId(Uuid::nil()), buyer).await.expect("read"));
            }
        }
    }
}

fn holds_per_second(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    for (name, workload) in [
        ("actor/GA hold", Workload::GeneralHold),
        ("actor/seated best-available hold+release", Workload::SeatedHoldRelease),
        ("actor/round trip without a change", Workload::RoundTrip),
    ] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(1));
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
        for callers in CALLERS {
            group.bench_with_input(BenchmarkId::new("callers", callers), &callers, |b, &callers| {
                b.iter_custom(|iters| rt.block_on(run(workload, callers, iters)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, holds_per_second);
criterion_main!(benches);
