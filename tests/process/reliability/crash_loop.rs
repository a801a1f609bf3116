//! `kill -9` in a loop: three crashes in the middle of a sale; every 201 survives, no seat is
//! sold twice, unpaid holds expire across the crashes, the engine's counts equal the database.

use super::COUNTS_PATIENCE;
use super::checks::{
    assert_counts_match, assert_holds_durable, assert_no_seat_twice, assert_sales_durable, engine_counts,
};
use super::client::{
    Held, Sale, User, create_event, create_users, hold, http_client, purchase, seated_map, until_answered,
    wait_until_sold,
};
use crate::Rig;
use boxoffice::auth::Role;
use boxoffice_testkit::poll;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Default)]
struct BuyerReport {
    sales: Vec<Sale>,
    shop_hold: Option<Held>,
    unexpected: Vec<String>,
    retries: usize,
}

struct CrashCtx {
    client: reqwest::Client,
    base: String,
    event: String,
    sold: AtomicUsize,
    deadline: Instant,
}

/// Buys one seat at a time, each purchase under its own Idempotency-Key, retried through
/// crashes until the server answers; stops at sold out or at its per-buyer limit. The first
/// few buyers also leave one hold unpaid, to expire across the crashes.
async fn crash_buyer(ctx: Arc<CrashCtx>, idx: usize, buyer: User, shopper: bool) -> BuyerReport {
    let mut report = BuyerReport::default();
    let (client, base, event) = (&ctx.client, ctx.base.as_str(), ctx.event.as_str());
    if shopper {
        let key = format!("shop-{idx}");
        let (reply, retries) = until_answered(|| hold(client, base, &buyer, event, &key), ctx.deadline).await;
        report.retries += retries;
        match reply.status {
            Some(StatusCode::CREATED) => report.shop_hold = Some(Held::from_body(&reply.body)),
            Some(StatusCode::CONFLICT) if reply.code == "sold_out" => {}
            _ => report.unexpected.push(format!("hold: {}", reply.describe())),
        }
    }
    for attempt in 0.. {
        if Instant::now() >= ctx.deadline {
            report.unexpected.push("buyer still buying at the deadline".into());
            break;
        }
        let key = format!("buy-{idx}-{attempt}");
        let (reply, retries) = until_answered(|| purchase(client, base, &buyer, event, &key), ctx.deadline).await;
        report.retries += retries;
        match (reply.status, reply.code.as_str()) {
            (Some(StatusCode::CREATED), _) => {
                report.sales.push(Sale::from_body(&reply.body));
                ctx.sold.fetch_add(1, Ordering::AcqRel);
            }
            (Some(StatusCode::CONFLICT), "sold_out" | "limit_exceeded" | "no_adjacent_seats") => break,
            // The hold lapsed while the server was down, and its seat went to someone else:
            // refunded, nothing sold; try again with a new purchase.
            (Some(StatusCode::CONFLICT), "seats_gone" | "hold_not_active") => {}
            _ => report.unexpected.push(format!("purchase: {}", reply.describe())),
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..100))).await;
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loop_keeps_every_acknowledged_sale() {
    const BUYERS: usize = 200;
    const SHOPPERS: usize = 20;
    /// Twice what the buyers could take in one burst: a restarted server serves the
    /// buyers' retries before the harness sees it ready, and that burst alone sold
    /// up to ~500 seats here.
    const ROWS: usize = 60;
    const PER_ROW: usize = 20;
    /// Each kill comes once this many more seats (drawn at random) were sold since the
    /// server last came up, plus a random delay of up to 20 ms: in the middle of the sale,
    /// with purchases in flight.
    const SOLD_BETWEEN_KILLS: std::ops::Range<usize> = 20..60;
    const KILLS: usize = 3;
    let capacity = ROWS * PER_ROW;

    let Rig { serial: _serial, dir: _dir, db_url: _, db, spec } = Rig::new("crash-loop", &[]).await;
    let mut server = spec.start().await;
    let client = http_client(BUYERS);
    let base = spec.base();
    let organizer = create_users(&db, 1, Role::Organizer).await.remove(0);
    let buyers = create_users(&db, BUYERS, Role::Customer).await;
    // Short holds, so that unpaid ones expire during the test (across the crashes).
    let event = create_event(
        &client,
        &base,
        &organizer,
        seated_map(ROWS, PER_ROW),
        json!({"per_buyer_limit": 8, "hold_ttl_secs": 8}),
    )
    .await;

    let started = Instant::now();
    let ctx = Arc::new(CrashCtx {
        client: client.clone(),
        base: base.clone(),
        event: event.clone(),
        sold: AtomicUsize::new(0),
        deadline: started + Duration::from_secs(90),
    });
    let tasks: Vec<_> = buyers
        .into_iter()
        .enumerate()
        .map(|(i, buyer)| tokio::spawn(crash_buyer(Arc::clone(&ctx), i, buyer, i < SHOPPERS)))
        .collect();

    let mut kills = Vec::new();
    for _ in 0..KILLS {
        // Capped well below the seats on sale, so the sale is still going at the kill.
        let threshold =
            (ctx.sold.load(Ordering::Acquire) + rand::random_range(SOLD_BETWEEN_KILLS)).min(capacity * 2 / 5);
        wait_until_sold(&ctx.sold, threshold).await;
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..20))).await;
        let sold_at_kill = ctx.sold.load(Ordering::Acquire);
        let killed_at = started.elapsed();
        server.sigkill();
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..500))).await;
        server = spec.start().await;
        kills.push((killed_at, sold_at_kill, started.elapsed() - killed_at));
    }
    for (i, (_, sold_at_kill, _)) in kills.iter().enumerate() {
        assert!(*sold_at_kill < capacity - SHOPPERS, "kill #{} came after the sale was over", i + 1);
    }

    let mut sales = Vec::new();
    let mut shop_holds = Vec::new();
    let mut unexpected = Vec::new();
    let mut retries = 0;
    for task in tasks {
        let report = tokio::time::timeout(Duration::from_secs(120), task).await.expect("buyers finish").unwrap();
        sales.extend(report.sales);
        shop_holds.extend(report.shop_hold);
        unexpected.extend(report.unexpected);
        retries += report.retries;
    }
    let selling = started.elapsed();
    assert!(
        unexpected.is_empty(),
        "{} unexpected answers, e.g. {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)]
    );

    assert_sales_durable(&db, &sales).await;
    assert_holds_durable(&db, &shop_holds).await;
    assert_no_seat_twice(&db, &event).await;
    // The unpaid holds expire, whichever process was running when their time came.
    let shop_ids: Vec<Uuid> = shop_holds.iter().map(|h| h.hold_id).collect();
    let _ = engine_counts(&client, &base, &event).await; // wakes the event's actor
    let all_expired = || async {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM holds WHERE hold_id = ANY($1) AND status <> 'expired'")
                .bind(&shop_ids)
                .fetch_one(&db)
                .await
                .unwrap();
        if left == 0 { Ok(()) } else { Err(left) }
    };
    poll(COUNTS_PATIENCE, Duration::from_millis(200), all_expired)
        .await
        .unwrap_or_else(|left| panic!("{left} unpaid holds did not expire"));
    let counts = assert_counts_match(&client, &base, &db, &event).await;
    assert_eq!(counts.sold as usize, sales.len(), "sold seats are exactly the acknowledged sales");
    spec.assert_no_panic_in_log();

    println!(
        "crash loop: {} seats, {BUYERS} buyers; {} sales acknowledged in {selling:?}; {} unpaid holds expired; \
         {retries} retries (connection errors / 503 while down); final counts {counts:?}",
        capacity,
        sales.len(),
        shop_holds.len()
    );
    for (i, (at, sold, down)) in kills.iter().enumerate() {
        println!("  kill -9 #{} at {at:?} with {sold} seats sold; ready again after {down:?}", i + 1);
    }
    drop(server);
}
