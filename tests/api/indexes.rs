//! What the hot tables' indexes guarantee, written straight in SQL: a seat has at
//! most one ticket that is not cancelled (the second line of defence behind the
//! event's actor), a buyer's idempotency key names one hold of an event, and the
//! reads by event and a buyer's ticket list find their rows through indexes, not
//! by scanning the tables.

use boxoffice_testkit::migrated_database;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, PgPool};
use uuid::Uuid;

async fn ticket(pool: &PgPool, event: Uuid, seat: Option<&str>, status: &str) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO tickets (ticket_id, event_id, hold_id, purchaser_id, section, seat_number, price, status,
                              purchase_date, cancelled_at)
         VALUES ($1, $2, $3, $4, 'Floor', $5, 5000, $6, now(), CASE WHEN $6 = 'cancelled' THEN now() END)",
    )
    .bind(id)
    .bind(event)
    .bind(Uuid::now_v7())
    .bind(Uuid::now_v7())
    .bind(seat)
    .bind(status)
    .execute(pool)
    .await?;
    Ok(id)
}

fn is_unique_violation<T>(result: Result<T, sqlx::Error>) -> bool {
    matches!(result, Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505"))
}

#[tokio::test]
async fn a_seat_has_at_most_one_ticket_that_is_not_cancelled() {
    let pool = migrated_database().await;
    let (event, other) = (Uuid::now_v7(), Uuid::now_v7());

    let first = ticket(&pool, event, Some("A-1"), "valid").await.unwrap();
    assert!(is_unique_violation(ticket(&pool, event, Some("A-1"), "valid").await), "a second valid ticket");
    // The same seat of another event, and another seat of this one.
    ticket(&pool, other, Some("A-1"), "valid").await.unwrap();
    ticket(&pool, event, Some("A-2"), "valid").await.unwrap();

    // Scanned at the door, the seat is still taken.
    sqlx::query("UPDATE tickets SET status = 'used' WHERE ticket_id = $1").bind(first).execute(&pool).await.unwrap();
    assert!(is_unique_violation(ticket(&pool, event, Some("A-1"), "valid").await), "a used ticket's seat");

    // Cancelled, it is free: sold again, cancelled again, sold a third time.
    sqlx::query("UPDATE tickets SET status = 'cancelled', cancelled_at = now() WHERE ticket_id = $1")
        .bind(first)
        .execute(&pool)
        .await
        .unwrap();
    ticket(&pool, event, Some("A-1"), "cancelled").await.unwrap();
    let again = ticket(&pool, event, Some("A-1"), "valid").await.unwrap();
    assert!(is_unique_violation(ticket(&pool, event, Some("A-1"), "valid").await), "the resold seat");
    // A cancelled ticket cannot come back while the seat is sold again.
    let back = sqlx::query("UPDATE tickets SET status = 'valid' WHERE ticket_id = $1").bind(first).execute(&pool).await;
    assert!(is_unique_violation(back), "a cancelled ticket back on a resold seat");

    // General admission: any number of tickets without a seat.
    for _ in 0..3 {
        ticket(&pool, event, None, "valid").await.unwrap();
    }
    let per_seat: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT seat_number, count(*) FROM tickets WHERE event_id = $1 AND status <> 'cancelled'
         GROUP BY seat_number ORDER BY seat_number",
    )
    .bind(event)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(per_seat, [(Some("A-1".into()), 1), (Some("A-2".into()), 1), (None, 3)]);
    let resold: String = sqlx::query_scalar("SELECT status FROM tickets WHERE ticket_id = $1")
        .bind(again)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(resold, "valid");
}

async fn hold(pool: &PgPool, event: Uuid, buyer: Uuid, key: Option<&str>) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO holds (hold_id, event_id, buyer_id, items, quantity, amount, status, idempotency_key,
                            fingerprint, created_at, expires_at, updated_at)
         VALUES ($1, $2, $3, '{}', 1, 5000, 'active', $4, 0, now(), now() + interval '10 minutes', now())",
    )
    .bind(id)
    .bind(event)
    .bind(buyer)
    .bind(key)
    .execute(pool)
    .await?;
    Ok(id)
}

#[tokio::test]
async fn an_idempotency_key_names_one_hold_of_a_buyer_for_an_event() {
    let pool = migrated_database().await;
    let (event, other_event, buyer, other_buyer) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());

    hold(&pool, event, buyer, Some("k1")).await.unwrap();
    assert!(is_unique_violation(hold(&pool, event, buyer, Some("k1")).await), "the same key twice");
    hold(&pool, event, buyer, Some("k2")).await.unwrap();
    hold(&pool, event, other_buyer, Some("k1")).await.unwrap();
    hold(&pool, other_event, buyer, Some("k1")).await.unwrap();
    // Holds without a key never collide.
    for _ in 0..3 {
        hold(&pool, event, buyer, None).await.unwrap();
    }
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM holds WHERE event_id = $1")
        .bind(event)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(held, 6);
}

/// The reads of one event's holds and tickets (the inventory's loader, a
/// cancellation, the organizer's views) among many events' rows.
#[tokio::test]
async fn reads_by_event_find_their_rows_through_an_index() {
    let pool = migrated_database().await;
    sqlx::query(
        "WITH e AS (SELECT gen_random_uuid() AS event_id FROM generate_series(1, 100)),
         h AS (INSERT INTO holds (hold_id, event_id, buyer_id, items, quantity, amount, status, idempotency_key,
                                  fingerprint, created_at, expires_at, updated_at)
               SELECT gen_random_uuid(), event_id, gen_random_uuid(), '{}', 1, 5000, 'purchased', 'k' || n, 0,
                      now(), now(), now()
               FROM e, generate_series(1, 100) AS n
               RETURNING hold_id, event_id, buyer_id, idempotency_key)
         INSERT INTO tickets (ticket_id, event_id, hold_id, purchaser_id, section, seat_number, price, purchase_date)
         SELECT gen_random_uuid(), event_id, hold_id, buyer_id, 'Floor', 'A-' || idempotency_key, 5000, now()
         FROM h",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE holds, tickets").execute(&pool).await.unwrap();
    let event: Uuid = sqlx::query_scalar("SELECT event_id FROM tickets LIMIT 1").fetch_one(&pool).await.unwrap();

    for read in [
        "SELECT ticket_id, hold_id, section, seat_number, price, status FROM tickets WHERE event_id = $1",
        "SELECT count(*) FROM tickets WHERE event_id = $1 AND status = 'valid'",
        "SELECT hold_id, buyer_id FROM holds WHERE event_id = $1 AND status = 'active'",
        "SELECT count(*) FROM holds WHERE event_id = $1 AND status = 'purchased'",
    ] {
        let mut arguments = PgArguments::default();
        arguments.add(event).unwrap();
        let plan = explain(&pool, read, arguments).await;
        assert!(!plan.contains("Seq Scan"), "{read}\n{plan}");
        assert!(plan.contains("Index"), "{read}\n{plan}");
    }
}

/// A buyer's ticket list (`GET /tickets/user/{id}`) among many buyers' tickets:
/// through the buyer's holds and each hold's tickets, not by scanning either.
#[tokio::test]
async fn a_buyer_s_tickets_are_found_through_their_holds() {
    let pool = migrated_database().await;
    sqlx::query(
        "WITH h AS (INSERT INTO holds (hold_id, event_id, buyer_id, items, quantity, amount, status, idempotency_key,
                                       fingerprint, created_at, expires_at, updated_at)
                    SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), '{}', 2, 10000, 'purchased',
                           NULL, 0, now(), now(), now()
                    FROM generate_series(1, 5000)
                    RETURNING hold_id, event_id, buyer_id)
         INSERT INTO tickets (ticket_id, event_id, hold_id, purchaser_id, section, seat_number, price, purchase_date)
         SELECT gen_random_uuid(), event_id, hold_id, buyer_id, 'Floor', 'A-' || n, 5000, now()
         FROM h, generate_series(1, 2) AS n",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE holds, tickets").execute(&pool).await.unwrap();
    let buyer: Uuid = sqlx::query_scalar("SELECT buyer_id FROM holds LIMIT 1").fetch_one(&pool).await.unwrap();

    let mut arguments = PgArguments::default();
    arguments.add(buyer).unwrap();
    arguments.add(20_i64).unwrap();
    arguments.add(0_i64).unwrap();
    let plan = explain(&pool, boxoffice::http::routes::tickets::USER_TICKETS, arguments).await;
    for table in ["holds", "tickets"] {
        assert!(!plan.contains(&format!("Seq Scan on {table}")), "{plan}");
    }
}

/// The plan PostgreSQL makes for `read` with `arguments`, as text.
async fn explain(pool: &PgPool, read: &str, arguments: PgArguments) -> String {
    sqlx::query_scalar_with::<_, String, _>(sqlx::AssertSqlSafe(format!("EXPLAIN (FORMAT TEXT) {read}")), arguments)
        .fetch_all(pool)
        .await
        .unwrap()
        .join("\n")
}

/// A provider's reference names one payment (the journal's upsert relies on it);
/// another provider's same reference is another payment.
#[tokio::test]
async fn a_provider_s_reference_names_one_payment() {
    let pool = migrated_database().await;
    let pay = |provider: &'static str, reference: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO payments (payment_id, hold_id, provider, provider_ref, amount, currency, status)
                 VALUES ($1, $2, $3, $4, 5000, 'JPY', 'succeeded')",
            )
            .bind(Uuid::now_v7())
            .bind(Uuid::now_v7())
            .bind(provider)
            .bind(reference)
            .execute(&pool)
            .await
        }
    };
    pay("test", "pi_1").await.unwrap();
    assert!(is_unique_violation(pay("test", "pi_1").await), "the same reference twice");
    pay("stripe", "pi_1").await.unwrap();
    pay("test", "pi_2").await.unwrap();
    let paid: i64 = sqlx::query_scalar("SELECT count(*) FROM payments").fetch_one(&pool).await.unwrap();
    assert_eq!(paid, 3);
}
