//! Notifications from outbox rows: the emails sent (and to whom), a refused recipient not
//! blocking the rows after it, and the per-pass email quota.

use super::{Buyer, TestRedis, capture, config, link, outbox_row, redis_conn, streamed_ids, unpublished};
use boxoffice::auth::qr::{QrSigner, link_expiry};
use boxoffice::workers::relay::{OutboxRelay, RelayConfig};
use boxoffice_testkit::migrated_database;
use secrecy::SecretString;
use std::sync::Arc;
use uuid::Uuid;

#[tokio::test]
async fn without_redis_rows_are_still_notified_and_then_marked() {
    let pool = migrated_database().await;
    let buyer = Buyer::new(&pool, "carol@example.com").await;
    let issued = outbox_row(&pool, "ticket:issued", buyer.hold, buyer.issued_payload()).await;
    outbox_row(&pool, "payment:created", buyer.hold, buyer.issued_payload()).await;
    let cancelled = outbox_row(
        &pool,
        "ticket:cancelled",
        buyer.hold,
        serde_json::json!({"type": "tickets_cancelled", "hold": buyer.hold, "tickets": [buyer.tickets[1]], "at": 0}),
    )
    .await;
    let refund = |status: &str| serde_json::json!({"hold_id": buyer.hold, "ticket_id": buyer.tickets[1], "amount": 5000, "status": status});
    outbox_row(&pool, "payment:refunded", buyer.hold, refund("pending")).await;
    let refunded = outbox_row(&pool, "payment:refunded", buyer.hold, refund("succeeded")).await;
    // A row whose hold does not exist: no email, and it does not block the others.
    outbox_row(&pool, "ticket:issued", Uuid::now_v7(), serde_json::json!({})).await;

    let (mailer, notifier) = capture();
    // Links signed as the server signs them (start-up hands the notifier its QR signer).
    let signer = QrSigner::new(("k1".into(), SecretString::from("notify-test-key")), vec![]);
    let links = signer.clone();
    let notifier = notifier
        .with_public_url("https://tickets.example.com")
        .with_ticket_links(Arc::new(move |ticket, date| links.link_path(ticket, link_expiry(date))));
    let mut relay = OutboxRelay::new(pool.clone(), None, notifier).with_config(config("unused:"));
    let pass = relay.relay_once().await.expect("a pass");

    assert_eq!((pass.fetched, pass.published), (6, 6));
    assert_eq!(unpublished(&pool).await, 0, "published means: handed to every configured sink");
    let sent = mailer.sent();
    assert_eq!(sent.iter().map(|e| e.outbox_id).collect::<Vec<_>>(), vec![issued, cancelled, refunded]);
    assert!(sent.iter().all(|e| e.to == buyer.email && e.to_name == "Carol"));

    let tickets = &sent[0];
    assert_eq!(tickets.subject, "Your tickets for Rock Night");
    for (id, seat) in buyer.tickets.iter().zip(["A-1", "A-2"]) {
        assert!(tickets.body.contains(&format!("seat {seat}")), "{}", tickets.body);
        // Signed to work without a token until a day after the event (2027-01-15 19:00 UTC).
        let exp = 1_800_039_600 + 86_400;
        let link = format!("https://tickets.example.com/tickets/{id}/qr?exp={exp}&sig={}\n", signer.link_sig(*id, exp));
        assert!(tickets.body.contains(&link), "{}", tickets.body);
        assert_eq!(signer.verify_link(*id, exp, &signer.link_sig(*id, exp), exp - 1), Ok(()));
    }
    assert!(tickets.body.contains("Budokan") && tickets.body.contains("2027-01-15 19:00 UTC"), "{}", tickets.body);

    assert_eq!(sent[1].subject, "Ticket cancelled: Rock Night");
    assert!(
        sent[1].body.contains(&buyer.tickets[1].to_string()) && !sent[1].body.contains(&buyer.tickets[0].to_string())
    );
    assert_eq!(sent[2].subject, "Refund issued: Rock Night");
    assert!(sent[2].body.contains("5000 JPY"), "{}", sent[2].body);
}

#[tokio::test]
async fn an_email_refused_for_good_does_not_block_the_rows_after_it() {
    let pool = migrated_database().await;
    let refused = Buyer::new(&pool, "gone@example.com").await;
    let fine = Buyer::new(&pool, "dave@example.com").await;
    outbox_row(&pool, "ticket:issued", refused.hold, refused.issued_payload()).await;
    let ok = outbox_row(&pool, "ticket:issued", fine.hold, fine.issued_payload()).await;
    let (mailer, notifier) = capture();
    mailer.refused.lock().unwrap().insert(refused.email.clone());
    let mut relay = OutboxRelay::new(pool.clone(), None, notifier).with_config(config("unused:"));

    let pass = relay.relay_once().await.expect("a refusal is not an outage");

    assert_eq!(pass.published, 2);
    assert_eq!(mailer.sent().iter().map(|e| e.outbox_id).collect::<Vec<_>>(), vec![ok]);
}

#[tokio::test]
async fn a_pass_stops_after_its_email_quota_and_leaves_the_rest_untouched() {
    let pool = migrated_database().await;
    let redis = TestRedis::new().await;
    let buyers = [
        Buyer::new(&pool, "b1@example.com").await,
        Buyer::new(&pool, "b2@example.com").await,
        Buyer::new(&pool, "b3@example.com").await,
    ];
    let mut ids = Vec::new();
    for buyer in &buyers {
        ids.push(outbox_row(&pool, "hold:created", buyer.hold, serde_json::json!({})).await);
        ids.push(outbox_row(&pool, "ticket:issued", buyer.hold, buyer.issued_payload()).await);
    }
    let (mailer, notifier) = capture();
    let one_email = RelayConfig { max_emails_per_pass: 1, ..config(&redis.prefix) };
    let mut relay = OutboxRelay::new(pool.clone(), Some(&link(&redis.url)), notifier).with_config(one_email);

    let first = relay.relay_once().await.unwrap();
    // Cut before the second email's row: three rows done, three left for later.
    assert_eq!((first.fetched, first.published), (6, 3));
    let mut conn = redis_conn(&redis.url).await;
    assert_eq!(streamed_ids(&mut conn, &redis.prefix, &["hold:created", "ticket:issued"]).await, ids[..3]);

    while relay.relay_once().await.unwrap().fetched > 0 {}
    assert_eq!(streamed_ids(&mut conn, &redis.prefix, &["hold:created", "ticket:issued"]).await, ids);
    assert_eq!(
        mailer.sent().iter().map(|e| e.to.as_str()).collect::<Vec<_>>(),
        ["b1@example.com", "b2@example.com", "b3@example.com"]
    );
}
