//! The pure state machine on one core: hold/release decisions per second and
//! best-available search on a 50k-seat map.
//!
//! Target (`docs/domain.md`, section "Performance targets"): ≥ 5 M hold/release decisions per second.
//! Run: `cargo bench -p boxoffice-benches --bench inventory`.

use boxoffice_actors::inventory::MAX_UNITS_PER_HOLD;
use boxoffice_actors::seatmap::grid;
use boxoffice_actors::*;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};
use uuid::Uuid;

const T0: UnixMs = UnixMs(1_700_000_000_000);
/// How many decisions pass between clean-ups of ended holds and stale expiry
/// entries, as the actor's tick would do.
const CLEANUP_EVERY: u64 = 1_024;

fn window() -> SalesWindow {
    // Holds last 1 ms so the periodic clean-up can pop their stale expiry entries.
    SalesWindow { opens_at: T0, closes_at: UnixMs(i64::MAX), per_buyer_limit: u32::MAX, hold_ttl_ms: 1 }
}

fn inventory(map: &SeatMap) -> SeatInventory {
    SeatInventory::new(Layout::compile(map).expect("valid map"), window())
}

/// Settles a decision's change as durable.
fn settled(inv: &mut SeatInventory, outcome: Result<Outcome<impl Sized>, InventoryError>, now: UnixMs) {
    match outcome.expect("decision") {
        Outcome::Pending(change) => {
            black_box(inv.settle(change.hold_id(), true, now).expect("pending"));
        }
        Outcome::Unchanged(_) => unreachable!("every decision here changes something"),
    }
}

/// What a sample's time is measured with.
#[derive(Clone, Copy)]
enum Timer {
    Wall,
    /// This thread's time on a CPU (Linux `schedstat`): on a shared machine it
    /// leaves out the time other processes hold the core.
    OnCpu,
}

impl Timer {
    fn time(self, work: impl FnOnce()) -> Duration {
        match self {
            Timer::Wall => {
                let start = Instant::now();
                work();
                start.elapsed()
            }
            Timer::OnCpu => {
                let start = thread_cpu_time().expect("/proc/thread-self/schedstat");
                work();
                thread_cpu_time().expect("/proc/thread-self/schedstat") - start
            }
        }
    }
}

fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

/// Hold one explicit seat, settle, release it, settle: two decisions per round.
/// `fresh_ids` makes a new time-ordered `HoldId` per hold as the actor does
/// (`HoldId::at` the engine clock's millisecond); otherwise ids come from a
/// counter, to time the state machine alone.
fn hold_release_rounds(iters: u64, fresh_ids: bool, timer: Timer) -> Duration {
    let mut inv = inventory(&grid(1, 10, 50));
    let buyer = BuyerId::new();
    let selection = Selection::Seats { seats: vec!["S0R0-25".into()] };
    let mut now = T0;
    timer.time(|| {
        for i in 0..iters {
            let id = if fresh_ids { HoldId::at(now) } else { HoldId(Uuid::from_u64_pair(1, i)) };
            let held = inv.hold(id, buyer, &selection, None, now);
            settled(&mut inv, held, now);
            let released = inv.release(id, buyer, now);
            settled(&mut inv, released, now);
            if i % CLEANUP_EVERY == CLEANUP_EVERY - 1 {
                now = now.plus_ms(2);
                black_box(inv.expire_due(now, usize::MAX));
                black_box(inv.prune_ended(now));
            }
        }
    })
}

fn decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("inventory/hold+release one seat");
    group.throughput(Throughput::Elements(2));
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let mut cases =
        vec![("decisions (counter ids)", false, Timer::Wall), ("decisions (HoldId::at per hold)", true, Timer::Wall)];
    if thread_cpu_time().is_some() {
        cases.push(("decisions (counter ids, on-CPU time)", false, Timer::OnCpu));
    }
    for (name, fresh_ids, timer) in cases {
        group.bench_function(name, |b| b.iter_custom(|iters| hold_release_rounds(iters, fresh_ids, timer)));
    }
    group.finish();
}

/// A 50k-seat map (10 sections × 100 rows × 50 seats), 90% sold one of two ways:
/// its first `sold_rows` rows (the best) entirely, or, with `scattered`, 45 seats
/// of every row so that no 4 free seats sit together except in the very last row.
fn sold_map(sold_rows: u32, scattered: bool) -> SeatInventory {
    let map = grid(10, 100, 50);
    let mut inv = inventory(&map);
    let buyer = BuyerId::new();
    let mut rows = Vec::new();
    for s in 0..10 {
        for r in 0..100 {
            rows.push(format!("S{s}R{r}"));
        }
    }
    let last = rows.len() - 1;
    for (i, row) in rows.iter().enumerate() {
        let numbers: Vec<u32> = if (i as u32) < sold_rows {
            (1..=50).collect()
        } else if scattered && i != last {
            // Free every 10th seat, shifted per row: 45 of 50 sold, no run of 4 free.
            (1..=50).filter(|n| !(n + i as u32).is_multiple_of(10)).collect()
        } else if scattered {
            // The very last row keeps 5 free seats together: the search must look
            // at every row before it finds them.
            (1..=50).filter(|n| !(23..=27).contains(n)).collect()
        } else {
            Vec::new()
        };
        for chunk in numbers.chunks(MAX_UNITS_PER_HOLD as usize) {
            let seats = chunk.iter().map(|n| format!("{row}-{n}")).collect();
            let id = HoldId::new();
            let held = inv.hold(id, buyer, &Selection::Seats { seats }, None, T0);
            settled(&mut inv, held, T0);
            let bought = inv.purchase(id, buyer, None, TicketId::new, T0);
            settled(&mut inv, bought, T0);
        }
    }
    inv
}

/// Times one best-available hold of 4 (search, take, record), undone so the map
/// stays as it was.
fn best_available(c: &mut Criterion) {
    let empty = inventory(&grid(10, 100, 50));
    println!("bytes per seat, 50k-seat map (10 sections × 100 rows × 50 seats): {:.2}", empty.bytes_per_seat());
    let cases = [
        ("empty", empty),
        ("90% sold, best sections first", sold_map(900, false)),
        ("90% sold, scattered (worst case)", sold_map(0, true)),
    ];
    let mut group = c.benchmark_group("inventory/best available 4 on 50k seats");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let buyer = BuyerId::new();
    let four = Selection::BestAvailable { quantity: 4, section: None, allow_split: false };
    for (name, mut inv) in cases {
        let counts = inv.counts();
        println!("{name}: {} of {} seats sold", counts.sold, counts.capacity);
        let mut n = 0u64;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                n += 1;
                let id = HoldId(Uuid::from_u64_pair(2, n));
                match inv.hold(id, buyer, black_box(&four), None, T0).expect("4 free seats side by side") {
                    Outcome::Pending(_) => black_box(inv.settle(id, false, T0)),
                    Outcome::Unchanged(_) => unreachable!(),
                };
            })
        });
        assert_eq!(inv.counts(), counts, "every hold was undone");
    }
    group.finish();
}

criterion_group!(benches, decisions, best_available);
criterion_main!(benches);
