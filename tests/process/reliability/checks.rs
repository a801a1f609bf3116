//! What must hold in the database after a fault: every acknowledged sale and hold durable,
//! no seat taken twice, and the engine's live counts equal to the database's.

use super::COUNTS_PATIENCE;
use super::client::{Held, Sale, send};
use boxoffice_testkit::poll;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use uuid::Uuid;

/// Every acknowledged sale is in the database: its tickets valid on its order, the order
/// purchased, exactly one succeeded payment of the order's amount. And no seat appears in
/// two acknowledged sales.
pub(super) async fn assert_sales_durable(db: &PgPool, sales: &[Sale]) {
    let mut seats = HashSet::new();
    for sale in sales {
        for (_, seat) in &sale.tickets {
            if let Some(seat) = seat {
                assert!(seats.insert(seat.clone()), "seat {seat} was acknowledged to two buyers");
            }
        }
    }
    let ticket_ids: Vec<Uuid> = sales.iter().flat_map(|s| s.tickets.iter().map(|t| t.0)).collect();
    let rows: Vec<(Uuid, Uuid, String, Option<String>, String)> = sqlx::query_as(
        "SELECT t.ticket_id, t.hold_id, t.status, t.seat_number, h.status
         FROM tickets t JOIN holds h ON h.hold_id = t.hold_id WHERE t.ticket_id = ANY($1)",
    )
    .bind(&ticket_ids)
    .fetch_all(db)
    .await
    .unwrap();
    let stored: HashMap<Uuid, (Uuid, String, Option<String>, String)> =
        rows.into_iter().map(|(t, h, ts, seat, hs)| (t, (h, ts, seat, hs))).collect();
    let order_ids: Vec<Uuid> = sales.iter().map(|s| s.order_id).collect();
    let payments: Vec<(Uuid, String, i64)> =
        sqlx::query_as("SELECT hold_id, status, amount FROM payments WHERE hold_id = ANY($1)")
            .bind(&order_ids)
            .fetch_all(db)
            .await
            .unwrap();
    let mut paid: HashMap<Uuid, Vec<(String, i64)>> = HashMap::new();
    for (hold, status, amount) in payments {
        paid.entry(hold).or_default().push((status, amount));
    }
    for sale in sales {
        for (ticket, seat) in &sale.tickets {
            let Some((hold, status, stored_seat, hold_status)) = stored.get(ticket) else {
                panic!("acknowledged ticket {ticket} (order {}) is not in the database", sale.order_id);
            };
            assert_eq!(*hold, sale.order_id, "ticket {ticket} belongs to another order");
            assert_eq!(status, "valid", "acknowledged ticket {ticket} is {status}");
            assert_eq!(stored_seat, seat, "ticket {ticket} has another seat in the database");
            assert_eq!(hold_status, "purchased", "order {hold} of an acknowledged ticket is {hold_status}");
        }
        let payments = paid.get(&sale.order_id).cloned().unwrap_or_default();
        let succeeded: Vec<i64> = payments.iter().filter(|(s, _)| s == "succeeded").map(|(_, a)| *a).collect();
        assert_eq!(succeeded, vec![sale.amount], "order {}: payments {payments:?}", sale.order_id);
    }
}

/// Every acknowledged hold is in the database, on the same seats.
pub(super) async fn assert_holds_durable(db: &PgPool, holds: &[Held]) {
    let ids: Vec<Uuid> = holds.iter().map(|h| h.hold_id).collect();
    let rows: Vec<(Uuid, String, i32, Value)> =
        sqlx::query_as("SELECT hold_id, status, quantity, items FROM holds WHERE hold_id = ANY($1)")
            .bind(&ids)
            .fetch_all(db)
            .await
            .unwrap();
    let stored: HashMap<Uuid, (String, i32, Value)> = rows.into_iter().map(|(id, s, q, i)| (id, (s, q, i))).collect();
    for held in holds {
        let Some((status, quantity, items)) = stored.get(&held.hold_id) else {
            panic!("acknowledged hold {} is not in the database", held.hold_id);
        };
        assert!(["active", "purchased", "expired", "released"].contains(&status.as_str()));
        assert_eq!(i64::from(*quantity), held.quantity, "hold {}", held.hold_id);
        let seats: Vec<String> = items["seats"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        assert_eq!(seats, held.seats, "hold {} has other seats in the database", held.hold_id);
    }
}

/// No seat is in two live places: two non-cancelled tickets, two active holds, or an active
/// hold and another order's ticket.
pub(super) async fn assert_no_seat_twice(db: &PgPool, event: &str) {
    let event: Uuid = event.parse().unwrap();
    let doubles: Vec<(String, i64)> = sqlx::query_as(
        "SELECT seat, count(*) FROM (
             SELECT jsonb_array_elements_text(items->'seats') AS seat FROM holds WHERE event_id = $1 AND status = 'active'
             UNION ALL
             SELECT seat_number FROM tickets WHERE event_id = $1 AND status <> 'cancelled' AND seat_number IS NOT NULL
         ) s GROUP BY seat HAVING count(*) > 1",
    )
    .bind(event)
    .fetch_all(db)
    .await
    .unwrap();
    assert!(doubles.is_empty(), "seats taken twice: {doubles:?}");
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(super) struct Counts {
    pub(super) capacity: i64,
    pub(super) available: i64,
    pub(super) held: i64,
    pub(super) sold: i64,
}

pub(super) async fn engine_counts(client: &reqwest::Client, base: &str, event: &str) -> Result<Counts, String> {
    let reply = send(client.get(format!("{base}/events/{event}/details"))).await;
    if !reply.is(StatusCode::OK) {
        return Err(reply.describe());
    }
    let t = &reply.body["availability"]["total"];
    let n = |k: &str| t[k].as_i64().ok_or_else(|| format!("no {k} in {t}"));
    Ok(Counts { capacity: n("capacity")?, available: n("available")?, held: n("held")?, sold: n("sold")? })
}

/// (seats sold: valid or used tickets; seats held: sum of active holds; active holds past expiry)
async fn db_counts(db: &PgPool, event: &str) -> (i64, i64, i64) {
    let event: Uuid = event.parse().unwrap();
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM tickets WHERE event_id = $1 AND status IN ('valid', 'used')),
                (SELECT coalesce(sum(quantity), 0)::int8 FROM holds WHERE event_id = $1 AND status = 'active'),
                (SELECT count(*) FROM holds WHERE event_id = $1 AND status = 'active' AND expires_at <= now())",
    )
    .bind(event)
    .fetch_one(db)
    .await
    .unwrap()
}

/// Waits (bounded) until the engine's live counts equal the database's, no active hold is
/// past its expiry, and available + held + sold = capacity. Returns the agreed counts.
pub(super) async fn assert_counts_match(client: &reqwest::Client, base: &str, db: &PgPool, event: &str) -> Counts {
    let agreed = || async {
        let engine = engine_counts(client, base, event).await;
        let (sold, held, lapsed) = db_counts(db, event).await;
        match &engine {
            Ok(c) if c.sold == sold && c.held == held && lapsed == 0 && c.available + c.held + c.sold == c.capacity => {
                Ok(*c)
            }
            _ => {
                Err(format!("engine {engine:?}; database sold {sold}, held {held}, {lapsed} active holds past expiry"))
            }
        }
    };
    poll(COUNTS_PATIENCE, Duration::from_millis(200), agreed)
        .await
        .unwrap_or_else(|seen| panic!("engine and database disagree: {seen}"))
}
