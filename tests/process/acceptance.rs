//! Acceptance: sell out an event over HTTP through the one-shot purchase path with hundreds
//! of concurrent buyers, SIGKILL the server, restart it, and check that every acknowledged
//! sale survived and every ticket admits exactly once.

use crate::Rig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;

/// Buyers racing for the seats; more buyers than seats.
const BUYERS: usize = 300;
/// Seats: 10 rows of 20.
const ROWS: u32 = 10;
const SEATS_PER_ROW: u32 = 20;

async fn register(client: &reqwest::Client, base: &str, role: &str) -> (Uuid, String) {
    let r: Value = client
        .post(format!("{base}/auth/register"))
        .json(&json!({"email": format!("{role}-{}@example.com", Uuid::new_v4().simple()), "password": "acceptance-pass", "name": "A", "user_type": role}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (r["user"]["user_id"].as_str().unwrap().parse().unwrap(), r["access_token"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flash_sale_sells_out_exactly_and_survives_sigkill() {
    let Rig { serial: _serial, dir: _dir, db_url: _, db, spec } = Rig::new("acceptance", &[]).await;
    let server = spec.start().await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap();
    let base = spec.base();

    let (_, organizer) = register(&client, &base, "organizer").await;
    let rows: Vec<Value> = (0..ROWS).map(|r| json!({"label": format!("R{r}"), "seats": SEATS_PER_ROW})).collect();
    let capacity = (ROWS * SEATS_PER_ROW) as usize;
    let event: Value = client
        .post(format!("{base}/events/create"))
        .bearer_auth(&organizer)
        .json(&json!({"title": "Flash", "venue_name": "Dome", "event_date": "2031-01-01T20:00:00Z",
                      "seat_map": {"tiers": [{"code": "A", "price": 7000}],
                                   "sections": [{"name": "Main", "tier": "A", "kind": "seated", "rows": rows}]},
                      "sales_window": {"per_buyer_limit": 4}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let event_id = event["event_id"].as_str().unwrap().to_owned();
    client.post(format!("{base}/events/{event_id}/publish")).bearer_auth(&organizer).send().await.unwrap();

    let mut buyers = Vec::new();
    for _ in 0..BUYERS {
        buyers.push(register(&client, &base, "customer").await.1);
    }

    // Everyone rushes: each buys 1 seat (best available) until sold out.
    let tasks: Vec<_> = buyers
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let (client, base, token, event_id) = (client.clone(), base.clone(), token.clone(), event_id.clone());
            tokio::spawn(async move {
                let mut won = Vec::new();
                let mut sold_out = false;
                for attempt in 0..3 {
                    let r = client
                        .post(format!("{base}/tickets/purchase"))
                        .bearer_auth(&token)
                        .header("Idempotency-Key", format!("buyer-{i}-{attempt}"))
                        .json(&json!({"event_id": event_id, "quantity": 1, "payment_method": "pm_card_visa", "include_qr_image": false}))
                        .send()
                        .await
                        .unwrap();
                    match r.status() {
                        StatusCode::CREATED => won.push(r.json::<Value>().await.unwrap()),
                        StatusCode::CONFLICT => {
                            let body: Value = r.json().await.unwrap();
                            assert!(["sold_out", "no_adjacent_seats", "limit_exceeded"].contains(&body["code"].as_str().unwrap()), "{body}");
                            sold_out = true;
                            break;
                        }
                        StatusCode::SERVICE_UNAVAILABLE => tokio::time::sleep(Duration::from_millis(50)).await,
                        other => panic!("unexpected {other}: {}", r.text().await.unwrap()),
                    }
                }
                (token, won, sold_out)
            })
        })
        .collect();
    let mut sold: Vec<(String, Value)> = Vec::new();
    let mut losers = 0;
    for t in tasks {
        let (token, won, sold_out) = t.await.unwrap();
        if sold_out {
            losers += 1;
        }
        sold.extend(won.into_iter().map(|w| (token.clone(), w)));
    }
    assert_eq!(sold.len(), capacity, "sold = capacity exactly");
    assert!(losers >= BUYERS - capacity, "every buyer who got nothing got a clean 409");
    let seats: HashSet<String> =
        sold.iter().map(|(_, s)| s["tickets"][0]["seat_number"].as_str().unwrap().to_owned()).collect();
    assert_eq!(seats.len(), capacity, "no seat sold twice");

    let (tickets, payments, distinct_seats): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tickets WHERE status = 'valid'),
                (SELECT count(*) FROM payments WHERE status = 'succeeded'),
                (SELECT count(DISTINCT seat_number) FROM tickets WHERE status = 'valid')",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((tickets, payments, distinct_seats), (capacity as i64, capacity as i64, capacity as i64));

    // kill -9, restart on the same database.
    server.sigkill();
    let server = spec.start().await;
    let details: Value =
        client.get(format!("{base}/events/{event_id}/details")).send().await.unwrap().json().await.unwrap();
    assert_eq!(details["availability"]["total"]["sold"], capacity, "{details}");
    assert_eq!(details["availability"]["total"]["available"], 0);

    // Every ticket still validates, once.
    for (_, sale) in &sold {
        let ticket = &sale["tickets"][0];
        let (id, qr) = (ticket["ticket_id"].as_str().unwrap(), ticket["qr_token"].as_str().unwrap());
        let first = client
            .post(format!("{base}/tickets/{id}/validate"))
            .bearer_auth(&organizer)
            .json(&json!({"qr": qr}))
            .send()
            .await
            .unwrap();
        assert_eq!(first.status(), StatusCode::OK, "ticket {id}");
        let second = client
            .post(format!("{base}/tickets/{id}/validate"))
            .bearer_auth(&organizer)
            .json(&json!({"qr": qr}))
            .send()
            .await
            .unwrap();
        assert_eq!(second.status(), StatusCode::CONFLICT);
    }
    drop(server);
}
