//! The engine under concurrency: `Registry` → `EventHandle` → `EventActor` →
//! `MemoryJournal`, with a test `Loader` that rebuilds events from the journal.
//!
//! Each test checks outcomes, never speed: races for the last seats sell each seat
//! once, journal failures never leave an acknowledged change unsaved or a refused
//! one saved, holds expire under load, activation happens once, idle actors
//! passivate and come back intact, and shutdown waits for in-flight writes.
//! Where a test waits for something asynchronous it polls with a generous bound.

use boxoffice_actors::seatmap::grid;
use boxoffice_actors::*;
use rustc_hash::FxHashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const T0: UnixMs = UnixMs(1_700_000_000_000);
/// Long enough that no call times out on a loaded debug build.
const GENEROUS: Duration = Duration::from_secs(60);
/// How long a test waits for something asynchronous (an expiry, a passivation).
const WAIT_FOR: Duration = Duration::from_secs(20);

/// Loads the one event it knows from a seat map and the journal's durable holds,
/// counting how often it is asked.
struct TestLoader {
    event: EventId,
    map: SeatMap,
    window: SalesWindow,
    journal: MemoryJournal,
    /// Widens the window in which concurrent activations can collide.
    delay: Duration,
    loads: AtomicUsize,
}

impl Loader for TestLoader {
    fn load(&self, event: EventId) -> LoadFuture {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let known = event == self.event;
        let (map, window, journal, delay) = (self.map.clone(), self.window, self.journal.clone(), self.delay);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            if !known {
                return Err(LoadError::NotFound);
            }
            let layout = Layout::compile(&map).map_err(|e| LoadError::Failed(e.to_string()))?;
            Ok(EventSnapshot { layout, window, holds: journal.holds(event), blocked: Vec::new(), epoch: 0 })
        })
    }
}

/// One event on a registry, and what the test needs to look behind it.
struct Fixture {
    event: EventId,
    journal: MemoryJournal,
    loader: Arc<TestLoader>,
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
    config: ActorConfig,
    limits: Limits,
}

struct Options {
    map: SeatMap,
    window: SalesWindow,
    journal: MemoryJournal,
    clock: Arc<dyn Clock>,
    config: ActorConfig,
    limits: Limits,
    load_delay: Duration,
}

impl Options {
    fn new(map: SeatMap) -> Self {
        Self {
            map,
            window: SalesWindow::always_open(),
            journal: MemoryJournal::new(),
            clock: Arc::new(SystemClock),
            config: ActorConfig::default(),
            limits: Limits { max_in_flight: 100_000, call_timeout: GENEROUS, ..Limits::default() },
            load_delay: Duration::ZERO,
        }
    }

    fn start(self) -> Fixture {
        let event = EventId::new();
        let loader = Arc::new(TestLoader {
            event,
            map: self.map,
            window: self.window,
            journal: self.journal.clone(),
            delay: self.load_delay,
            loads: AtomicUsize::new(0),
        });
        let registry = Registry::new(
            loader.clone(),
            Arc::new(self.journal.clone()),
            self.clock.clone(),
            self.config.clone(),
            self.limits,
        );
        Fixture {
            event,
            journal: self.journal,
            loader,
            registry: Arc::new(registry),
            clock: self.clock,
            config: self.config,
            limits: self.limits,
        }
    }
}

impl Fixture {
    async fn handle(&self) -> EventHandle {
        self.registry.get(self.event).await.expect("event activates")
    }

    /// A fresh registry over the same journal: the process restarted.
    fn restart(&self) -> Registry {
        Registry::new(
            self.loader.clone(),
            Arc::new(self.journal.clone()),
            self.clock.clone(),
            self.config.clone(),
            self.limits,
        )
    }

    fn loads(&self) -> usize {
        self.loader.loads.load(Ordering::SeqCst)
    }

    fn journal_hold(&self, id: HoldId) -> Option<HoldRecord> {
        self.journal.holds(self.event).into_iter().find(|h| h.id == id)
    }
}

fn best(quantity: u32) -> Selection {
    Selection::BestAvailable { quantity, section: None, allow_split: false }
}

fn seat(label: &str) -> Selection {
    Selection::Seats { seats: vec![label.to_owned()] }
}

fn seats_of(hold: &HoldView) -> Vec<String> {
    match hold.items.as_ref() {
        Items::Seats { seats } => seats.to_vec(),
        Items::General { .. } => Vec::new(),
    }
}

/// Runs every future on its own task and returns their answers in order.
async fn all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("task panicked"));
    }
    out
}

/// Polls `done` until it is true, failing the test after `WAIT_FOR`.
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let waited = tokio::time::timeout(WAIT_FOR, async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "gave up waiting for: {what}");
}

/// Splits answers into the holds made and the errors, checking the held seats are
/// all different.
fn tally_holds(results: Vec<Result<HoldView, EventError>>) -> (Vec<HoldView>, Vec<EventError>) {
    let (ok, err): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    let holds: Vec<HoldView> = ok.into_iter().map(Result::unwrap).collect();
    let seats: Vec<String> = holds.iter().flat_map(seats_of).collect();
    let distinct: FxHashSet<&String> = seats.iter().collect();
    assert_eq!(distinct.len(), seats.len(), "a seat was held twice");
    (holds, err.into_iter().map(Result::unwrap_err).collect())
}

fn assert_journal_has_exactly(fx: &Fixture, holds: &[HoldView]) {
    let stored: FxHashSet<HoldId> = fx.journal.holds(fx.event).iter().map(|h| h.id).collect();
    let made: FxHashSet<HoldId> = holds.iter().map(|h| h.id).collect();
    assert_eq!(stored, made, "the journal and the acknowledged holds differ");
}

// ---- (a) races for the last seats ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_buyers_race_for_a_hundred_best_available_seats() {
    let fx = Options::new(grid(1, 4, 25)).start();
    let handle = fx.handle().await;
    let results = all((0..10_000).map(|_| {
        let handle = handle.clone();
        async move { handle.hold(BuyerId::new(), best(1), None).await }
    }))
    .await;

    let (holds, errors) = tally_holds(results);
    assert_eq!(holds.len(), 100);
    assert_eq!(errors.len(), 9_900);
    let unexpected: Vec<_> = errors.iter().filter(|e| **e != EventError::Inventory(InventoryError::SoldOut)).collect();
    assert!(unexpected.is_empty(), "only SoldOut may refuse: {:?}", &unexpected[..unexpected.len().min(5)]);
    assert_journal_has_exactly(&fx, &holds);
    let total = handle.availability().await.unwrap().total;
    assert_eq!(total, Counts { capacity: 100, available: 0, held: 100, sold: 0, blocked: 0 });
    assert_eq!(handle.in_flight(), 0, "every admission slot was given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_buyers_race_for_the_same_explicit_seats() {
    let fx = Options::new(grid(1, 4, 25)).start();
    let handle = fx.handle().await;
    let labels: Vec<String> = (0..4).flat_map(|r| (1..=25).map(move |n| format!("S0R{r}-{n}"))).collect();
    let results = all((0..10_000).map(|i| {
        let (handle, label) = (handle.clone(), labels[i % labels.len()].clone());
        async move { (label.clone(), handle.hold(BuyerId::new(), seat(&label), None).await) }
    }))
    .await;

    for (label, result) in &results {
        match result {
            Ok(hold) => assert_eq!(seats_of(hold), std::slice::from_ref(label), "got a seat it did not ask for"),
            Err(e) => assert_eq!(*e, EventError::Inventory(InventoryError::SeatsTaken(vec![label.clone()]))),
        }
    }
    let (holds, errors) = tally_holds(results.into_iter().map(|(_, result)| result).collect());
    assert_eq!(holds.len(), 100, "each seat is held exactly once");
    assert_eq!(errors.len(), 9_900);
    assert_journal_has_exactly(&fx, &holds);
    assert_eq!(handle.availability().await.unwrap().total.held, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_limit_calls_are_shed_and_none_are_lost_or_sold_twice() {
    let mut options = Options::new(grid(1, 4, 25));
    // Slow acks keep calls in flight long enough to pile up against the limit.
    options.journal = MemoryJournal::with_commit_delay(Duration::from_millis(2));
    options.limits = Limits { max_in_flight: 8, call_timeout: GENEROUS, retry_after: Duration::from_millis(1) };
    let fx = options.start();
    let handle = fx.handle().await;
    let shed = Arc::new(AtomicUsize::new(0));
    let results = all((0..2_000).map(|_| {
        let (handle, shed) = (handle.clone(), shed.clone());
        async move {
            let buyer = BuyerId::new();
            loop {
                match handle.hold(buyer, best(1), None).await {
                    Err(EventError::Overloaded { retry_after }) => {
                        shed.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(retry_after).await;
                    }
                    other => return other,
                }
            }
        }
    }))
    .await;

    assert!(shed.load(Ordering::SeqCst) > 0, "2,000 callers against a limit of 8 were never shed");
    let (holds, errors) = tally_holds(results);
    assert_eq!(holds.len(), 100, "retried callers still got every seat, once");
    assert!(errors.iter().all(|e| *e == EventError::Inventory(InventoryError::SoldOut)), "{:?}", errors.first());
    assert_journal_has_exactly(&fx, &holds);
    assert_eq!(handle.availability().await.unwrap().total.held, 100);
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_purchases_are_never_shed_while_holds_are() {
    let mut options = Options::new(grid(1, 4, 25));
    options.journal = MemoryJournal::with_commit_delay(Duration::from_millis(2));
    options.limits = Limits { max_in_flight: 8, call_timeout: GENEROUS, retry_after: Duration::from_millis(1) };
    let fx = options.start();
    let handle = fx.handle().await;
    // 50 holds, taken one at a time (never near the limit).
    let mut held = Vec::new();
    for _ in 0..50 {
        let buyer = BuyerId::new();
        held.push(handle.hold(buyer, best(1), None).await.expect("a seat is free"));
    }
    // Keep the event saturated with new holds while all 50 are paid at once.
    let shed = Arc::new(AtomicUsize::new(0));
    let storm = all((0..2_000).map(|_| {
        let (handle, shed) = (handle.clone(), shed.clone());
        async move {
            if let Err(EventError::Overloaded { .. }) = handle.hold(BuyerId::new(), best(1), None).await {
                shed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }));
    let payments = all(held.iter().map(|h| {
        let handle = handle.clone();
        let (hold, buyer, amount) = (h.id, h.buyer, h.amount);
        async move {
            let payment = Payment {
                provider: "test".into(),
                reference: format!("pay-{hold}"),
                amount,
                currency: "JPY".into(),
                charge_key: None,
            };
            handle.purchase(hold, buyer, Some(payment)).await
        }
    }));
    let ((), sales) = tokio::join!(
        async {
            storm.await;
        },
        payments
    );
    assert!(shed.load(Ordering::SeqCst) > 0, "the hold storm never met the limit; the test proves nothing");
    for sale in &sales {
        assert!(sale.is_ok(), "a paid purchase was refused: {sale:?}");
    }
    assert_eq!(handle.availability().await.unwrap().total.sold, 50);
    assert_eq!(handle.in_flight(), 0);
}

// ---- (b) journal failures -------------------------------------------------------

/// What one buyer did and what the engine answered, to check against the journal.
#[derive(Debug)]
enum Trail {
    HoldRefused(BuyerId, EventError),
    Held { hold: HoldView, then: Option<(Step, Result<HoldView, EventError>)> },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    Purchase,
    Release,
    /// Purchase, then cancel the first ticket; the result is the cancel's.
    PurchaseAndCancel,
}

async fn buyer_journey(handle: EventHandle, i: usize) -> Trail {
    let buyer = BuyerId::new();
    let key = IdempotencyKey::parse(&format!("journey-{i}")).unwrap();
    let hold = match handle.hold(buyer, best(1 + (i % 2) as u32), Some(key)).await {
        Ok(hold) => hold,
        Err(e) => return Trail::HoldRefused(buyer, e),
    };
    let step = match i % 4 {
        0 => return Trail::Held { hold, then: None },
        1 => Step::Purchase,
        2 => Step::Release,
        _ => Step::PurchaseAndCancel,
    };
    let result = match step {
        Step::Purchase => handle.purchase(hold.id, buyer, None).await.map(|s| s.hold),
        Step::Release => handle.release(hold.id, buyer).await,
        Step::PurchaseAndCancel => match handle.purchase(hold.id, buyer, None).await {
            Ok(sale) => handle.cancel_tickets(hold.id, buyer, vec![sale.hold.tickets[0].id]).await,
            Err(e) => Err(e),
        },
    };
    Trail::Held { hold, then: Some((step, result)) }
}

fn is_unavailable(e: &EventError) -> bool {
    matches!(e, EventError::Unavailable(_))
}

/// Every acknowledged change is in the journal and every refused one is not.
fn check_trails(fx: &Fixture, trails: &[Trail]) -> (usize, usize) {
    let stored = fx.journal.holds(fx.event);
    let (mut acked, mut failed) = (0, 0);
    for trail in trails {
        match trail {
            Trail::HoldRefused(buyer, e) => {
                assert!(
                    is_unavailable(e)
                        || matches!(
                            e,
                            EventError::Inventory(InventoryError::SoldOut | InventoryError::NoAdjacentSeats(_))
                        ),
                    "unexpected refusal {e:?}"
                );
                failed += usize::from(is_unavailable(e));
                assert!(stored.iter().all(|h| h.buyer != *buyer), "a refused hold was saved: {e:?}");
            }
            Trail::Held { hold, then } => {
                acked += 1;
                let rec = stored.iter().find(|h| h.id == hold.id).expect("an acknowledged hold is in the journal");
                assert_eq!((rec.buyer, &rec.items, rec.amount), (hold.buyer, &hold.items, hold.amount));
                let Some((step, result)) = then else {
                    assert_eq!(rec.status, HoldStatus::Active);
                    continue;
                };
                match result {
                    Ok(view) => {
                        acked += 1;
                        let want = if *step == Step::Release { HoldStatus::Released } else { HoldStatus::Purchased };
                        assert_eq!((rec.status, view.status), (want, want), "{step:?}");
                        if *step == Step::PurchaseAndCancel {
                            assert!(rec.tickets[0].cancelled && view.tickets[0].cancelled);
                            assert!(rec.tickets[1..].iter().all(|t| !t.cancelled));
                        }
                    }
                    Err(e) => {
                        assert!(is_unavailable(e), "{step:?} refused with {e:?}");
                        failed += 1;
                        match step {
                            // The purchase may have been saved before the cancel failed.
                            Step::PurchaseAndCancel if rec.status == HoldStatus::Purchased => {
                                assert!(rec.tickets.iter().all(|t| !t.cancelled), "a failed cancel was saved");
                            }
                            _ => assert_eq!(rec.status, HoldStatus::Active, "a failed {step:?} was saved"),
                        }
                    }
                }
            }
        }
    }
    (acked, failed)
}

async fn assert_restart_matches(fx: &Fixture, live: &EventHandle) {
    let before = live.availability().await.unwrap();
    let restarted = fx.restart();
    let after = restarted.get(fx.event).await.unwrap().availability().await.unwrap();
    assert_eq!(after, before, "a restart from the journal sees a different event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_failing_every_few_writes_never_acknowledges_a_lost_change() {
    let mut options = Options::new(grid(2, 10, 50));
    options.journal = MemoryJournal::with_commit_delay(Duration::from_millis(1));
    let fx = options.start();
    fx.journal.fail_every(7);
    let handle = fx.handle().await;
    let trails = all((0..1_500).map(|i| buyer_journey(handle.clone(), i))).await;
    fx.journal.fail_every(0);

    let (acked, failed) = check_trails(&fx, &trails);
    assert!(acked > 0 && failed > 0, "acked {acked}, failed {failed}: the test did not exercise both");
    assert_restart_matches(&fx, &handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_goes_down_and_up_mid_run_never_acknowledges_a_lost_change() {
    let mut options = Options::new(grid(2, 10, 50));
    options.journal = MemoryJournal::with_commit_delay(Duration::from_millis(1));
    let fx = options.start();
    let handle = fx.handle().await;
    let running = Arc::new(AtomicBool::new(true));
    let flapper = {
        let (journal, running) = (fx.journal.clone(), running.clone());
        tokio::spawn(async move {
            let mut flips = 0u32;
            while running.load(Ordering::SeqCst) {
                journal.set_failing(flips.is_multiple_of(2));
                flips += 1;
                tokio::time::sleep(Duration::from_millis(if flips.is_multiple_of(2) { 7 } else { 3 })).await;
            }
            journal.set_failing(false);
            flips
        })
    };
    // Start the buyers in waves so the run outlasts several outages.
    let mut trails = Vec::new();
    for wave in 0..6 {
        trails.extend(all((0..300).map(|i| buyer_journey(handle.clone(), wave * 300 + i))).await);
    }
    running.store(false, Ordering::SeqCst);
    assert!(flapper.await.unwrap() >= 2, "the journal never went down");

    let (acked, failed) = check_trails(&fx, &trails);
    assert!(acked > 0 && failed > 0, "acked {acked}, failed {failed}: the test did not exercise both");
    assert_restart_matches(&fx, &handle).await;
}

// ---- (c) expiry under load ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapsed_holds_expire_while_new_holds_keep_succeeding() {
    let clock = ManualClock::at(T0);
    let mut options = Options::new(grid(1, 10, 30));
    options.window =
        SalesWindow { opens_at: T0, closes_at: T0.plus_ms(86_400_000), per_buyer_limit: 4, hold_ttl_ms: 60_000 };
    options.clock = Arc::new(clock.clone());
    options.config.tick = Duration::from_millis(5);
    let fx = options.start();
    let handle = fx.handle().await;

    let first = all((0..200).map(|_| {
        let handle = handle.clone();
        async move { handle.hold(BuyerId::new(), best(1), None).await }
    }))
    .await;
    let (first, errors) = tally_holds(first);
    assert!(errors.is_empty(), "{:?}", errors.first());

    clock.advance_ms(60_001);
    let second = (0..100)
        .map(|_| {
            let handle = handle.clone();
            tokio::spawn(async move { handle.hold(BuyerId::new(), best(1), None).await })
        })
        .collect::<Vec<_>>();
    let (fx, first) = (&fx, &first);
    eventually("the lapsed holds to be expired in the journal", || async move {
        let stored = fx.journal.holds(fx.event);
        first.iter().all(|h| stored.iter().any(|r| r.id == h.id && r.status == HoldStatus::Expired))
    })
    .await;
    let mut again = Vec::new();
    for task in second {
        again.push(task.await.unwrap());
    }
    let (again, errors) = tally_holds(again);
    assert!(errors.is_empty(), "holds made during the expiry were refused: {:?}", errors.first());
    let now = fx.clock.now();
    assert!(again.iter().all(|h| h.status == HoldStatus::Active && h.expires_at == now.plus_ms(60_000)));
    let total = handle.availability().await.unwrap().total;
    assert_eq!(
        total,
        Counts { capacity: 300, available: 200, held: 100, sold: 0, blocked: 0 },
        "expired seats are back"
    );
    for hold in first {
        assert_eq!(handle.get_hold(hold.id, hold.buyer).await.unwrap().unwrap().status, HoldStatus::Expired);
    }

    // The freed seats sell again, and no further.
    let third = all((0..201).map(|_| {
        let handle = handle.clone();
        async move { handle.hold(BuyerId::new(), best(1), None).await }
    }))
    .await;
    let (third, errors) = tally_holds(third);
    assert_eq!(third.len(), 200);
    assert_eq!(errors, [EventError::Inventory(InventoryError::SoldOut)]);
}

// ---- (d) activation ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_callers_waking_a_cold_event_load_it_once() {
    let mut options = Options::new(grid(1, 1, 10));
    options.load_delay = Duration::from_millis(20);
    let fx = options.start();
    assert!(fx.registry.is_empty());
    let handles = all((0..1_000).map(|_| {
        let (registry, event) = (fx.registry.clone(), fx.event);
        async move { registry.get(event).await }
    }))
    .await;
    let handles: Vec<EventHandle> = handles.into_iter().map(|h| h.expect("activates")).collect();
    assert_eq!(fx.loads(), 1, "the loader ran more than once");
    assert_eq!(fx.registry.len(), 1);
    assert!(handles.iter().all(|h| h.event() == fx.event));

    // One actor serialises them all: of 1,000 handles asking for one seat, one wins.
    let results =
        all(handles.into_iter().map(|h| async move { h.hold(BuyerId::new(), seat("S0R0-1"), None).await })).await;
    let (won, lost) = tally_holds(results);
    assert_eq!(won.len(), 1);
    assert!(lost.iter().all(|e| matches!(e, EventError::Inventory(InventoryError::SeatsTaken(_)))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_event_is_not_found_and_not_remembered() {
    let fx = Options::new(grid(1, 1, 10)).start();
    assert_eq!(fx.registry.get(EventId::new()).await.err(), Some(EventError::EventNotFound));
    assert!(fx.registry.is_empty(), "a failed activation left an entry behind");
}

// ---- (e) passivation ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_event_passivates_and_comes_back_intact() {
    let mut options = Options::new(grid(1, 2, 10));
    options.config = ActorConfig {
        tick: Duration::from_millis(5),
        idle_after: Duration::from_millis(20),
        ended_retention: Duration::from_secs(3600),
    };
    let fx = options.start();
    let handle = fx.handle().await;
    let buyer = BuyerId::new();
    let bought = handle.hold(buyer, seat("S0R0-1"), None).await.unwrap();
    let sale = handle.purchase(bought.id, buyer, None).await.unwrap();
    let pending = handle.hold(buyer, seat("S0R0-2"), None).await.unwrap();

    // With a hold active the event stays up, however long it is idle.
    tokio::time::sleep(fx.config.idle_after * 10).await;
    assert_eq!(fx.registry.len(), 1, "an event with an active hold passivated");
    assert!(fx.registry.running(fx.event).is_some());

    handle.release(pending.id, buyer).await.unwrap();
    let registry = &fx.registry;
    eventually("the idle event to passivate", || async move { registry.is_empty() }).await;
    assert!(fx.registry.running(fx.event).is_none());
    assert_eq!(handle.availability().await.err(), Some(EventError::Stopped), "the old actor is gone");

    let back = fx.registry.with(fx.event, |h| async move { h.availability().await }).await.unwrap();
    assert_eq!(fx.loads(), 2, "the next call re-activated the event");
    assert_eq!(back.total, Counts { capacity: 20, available: 19, held: 0, sold: 1, blocked: 0 });
    let handle = fx.handle().await;
    let again = handle.get_hold(bought.id, buyer).await.unwrap().expect("the sale survived");
    assert_eq!(again.status, HoldStatus::Purchased);
    assert_eq!(again.tickets, sale.hold.tickets);
    assert_eq!(
        handle.hold(BuyerId::new(), seat("S0R0-1"), None).await.unwrap_err(),
        EventError::Inventory(InventoryError::SeatsTaken(vec!["S0R0-1".into()]))
    );
    handle.hold(BuyerId::new(), seat("S0R0-2"), None).await.expect("the released seat is free");
}

// ---- (f) the handle's operations, isolation, timeouts, shutdown --------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyers_purchase_release_and_cancel_only_their_own_holds() {
    let fx = Options::new(grid(1, 2, 10)).start();
    let handle = fx.handle().await;
    let (alice, mallory) = (BuyerId::new(), BuyerId::new());
    let hold = handle.hold(alice, best(2), None).await.unwrap();
    assert_eq!(seats_of(&hold), ["S0R0-5", "S0R0-6"]);
    assert_eq!(hold.amount, 20_000);

    let not_found = EventError::Inventory(InventoryError::HoldNotFound);
    assert_eq!(handle.get_hold(hold.id, mallory).await.unwrap(), None);
    assert_eq!(handle.purchase(hold.id, mallory, None).await.unwrap_err(), not_found);
    assert_eq!(handle.release(hold.id, mallory).await.unwrap_err(), not_found);
    assert_eq!(handle.get_hold_any(hold.id).await.unwrap().map(|h| h.buyer), Some(alice));

    let payment = Payment {
        provider: "test".into(),
        reference: "pi_1".into(),
        amount: 20_000,
        currency: "JPY".into(),
        charge_key: None,
    };
    let sale = handle.purchase(hold.id, alice, Some(payment.clone())).await.unwrap();
    assert_eq!(sale.payment, Some(payment));
    assert_eq!(sale.hold.status, HoldStatus::Purchased);
    assert_eq!(sale.hold.tickets.len(), 2);
    let again = handle.purchase(hold.id, alice, None).await.unwrap();
    assert_eq!(again.hold.tickets, sale.hold.tickets, "paying twice answers the first sale");
    let ticket = sale.hold.tickets[0].id;
    assert_eq!(handle.cancel_tickets(hold.id, mallory, vec![ticket]).await.unwrap_err(), not_found);
    let cancelled = handle.cancel_tickets(hold.id, alice, vec![ticket]).await.unwrap();
    assert!(cancelled.tickets[0].cancelled && !cancelled.tickets[1].cancelled);
    let stored = fx.journal_hold(hold.id).unwrap();
    assert_eq!(stored.status, HoldStatus::Purchased);
    assert_eq!(stored.tickets, cancelled.tickets);

    let second = handle.hold(alice, seat("S0R1-1"), None).await.unwrap();
    assert_eq!(handle.release(second.id, alice).await.unwrap().status, HoldStatus::Released);
    assert_eq!(fx.journal_hold(second.id).unwrap().status, HoldStatus::Released);
    handle.hold(mallory, seat("S0R1-1"), None).await.expect("a released seat is free");
    let total = handle.availability().await.unwrap().total;
    assert_eq!(total, Counts { capacity: 20, available: 18, held: 1, sold: 1, blocked: 0 });

    let key = IdempotencyKey::parse("checkout-7").unwrap();
    let first = handle.hold(alice, best(1), Some(key.clone())).await.unwrap();
    let retried = handle.hold(alice, best(1), Some(key.clone())).await.unwrap();
    assert_eq!(retried.id, first.id, "a retry with the same key answers the first hold");
    assert_eq!(
        handle.hold(alice, best(2), Some(key)).await.unwrap_err(),
        EventError::Inventory(InventoryError::IdempotencyMismatch)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_hold_still_completes_and_a_retry_with_its_key_finds_it() {
    let mut options = Options::new(grid(1, 1, 10));
    options.journal = MemoryJournal::with_commit_delay(Duration::from_millis(300));
    options.limits.call_timeout = Duration::from_millis(20);
    let fx = options.start();
    let handle = fx.handle().await;
    let buyer = BuyerId::new();
    let key = IdempotencyKey::parse("slow-1").unwrap();
    assert_eq!(handle.hold(buyer, best(1), Some(key.clone())).await.unwrap_err(), EventError::Timeout);

    // The change is still being saved (`Busy`) until the journal's commit lands; on
    // a loaded machine a retry may itself run out of its 20 ms.
    let retried = tokio::time::timeout(WAIT_FOR, async {
        loop {
            match handle.hold(buyer, best(1), Some(key.clone())).await {
                Err(EventError::Inventory(InventoryError::Busy) | EventError::Timeout) => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                other => return other,
            }
        }
    })
    .await;
    let hold = retried.expect("the timed-out hold was never saved").expect("the retry is answered");
    assert_eq!(fx.journal.holds(fx.event).iter().map(|h| h.id).collect::<Vec<_>>(), [hold.id]);
    let total = loop {
        if let Ok(availability) = handle.availability().await {
            break availability.total;
        }
    };
    assert_eq!(total.held, 1, "the retry made no second hold");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_stop_waits_for_in_flight_writes() {
    let mut options = Options::new(grid(1, 5, 20));
    options.journal = MemoryJournal::with_commit_delay(Duration::from_millis(50));
    let fx = options.start();
    let handle = fx.handle().await;
    let writes: Vec<_> = (0..50)
        .map(|_| {
            let handle = handle.clone();
            tokio::spawn(async move { handle.hold(BuyerId::new(), best(1), None).await })
        })
        .collect();
    let watch = &handle;
    eventually(
        "every hold to be taken in memory",
        || async move { watch.availability().await.unwrap().total.held == 50 },
    )
    .await;

    // The hold is sent after the drain, so it is refused; the drain still waits for the 50.
    let late = async {
        tokio::task::yield_now().await;
        handle.hold(BuyerId::new(), best(1), None).await
    };
    let ((), late) = tokio::join!(handle.drain_and_stop(), late);
    assert!(matches!(late, Err(EventError::Unavailable(_)) | Err(EventError::Stopped)), "{late:?}");

    let mut holds = Vec::new();
    for write in writes {
        holds.push(write.await.unwrap().expect("an in-flight write completed before the stop"));
    }
    assert_journal_has_exactly(&fx, &holds);
    assert_eq!(handle.availability().await.unwrap_err(), EventError::Stopped);
}
