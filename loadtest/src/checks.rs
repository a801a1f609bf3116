//! After the sale: did anything oversell, and is every acknowledged sale there?
//!
//! - Oversell: every event's live availability (`GET /events/{id}/details`) has
//!   `sold <= capacity` and `available + held + sold = capacity`; no seat of an
//!   event appears in two acknowledged purchases; and, with a database, no seat
//!   has two tickets that are not cancelled.
//! - Lost writes: every ticket of every 2xx purchase exists and is valid (SQL, or
//!   each buyer's `GET /tickets/user/{id}` without a database), every 2xx hold is
//!   stored, and the counts of sold seats and valid tickets equal what was
//!   acknowledged (up to seats whose outcome stayed unknown after retries).
//!
//! A check that cannot run fails: an unverified run must not pass.

use crate::http::Api;
use crate::sale::Sale;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use uuid::Uuid;

/// Ticket lists read at once when checking through the API.
const TICKET_LIST_CONCURRENCY: usize = 32;
/// Largest page of GET /tickets/user/{id}.
const TICKETS_PER_PAGE: usize = 100;
/// Pages read per buyer at most (a buyer has at most 50 tickets per event).
const MAX_TICKET_PAGES: usize = 50;

#[derive(Serialize, Clone, Debug)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// Failing it fails the run; otherwise it only informs.
    pub critical: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: &str, passed: bool, detail: String) -> Self {
        Self { name: name.to_owned(), passed, critical: true, detail }
    }

    pub fn info(name: &str, detail: String) -> Self {
        Self { name: name.to_owned(), passed: true, critical: false, detail }
    }

    fn could_not_run(name: &str, e: impl std::fmt::Display) -> Self {
        Self::new(name, false, format!("could not run: {e}"))
    }
}

#[derive(Deserialize)]
struct Details {
    availability: Option<Availability>,
}

#[derive(Deserialize)]
struct Availability {
    total: Counts,
}

/// An event's live counts, from its details.
#[derive(Deserialize, Clone, Copy)]
pub struct Counts {
    pub capacity: u64,
    pub available: u64,
    pub held: u64,
    pub sold: u64,
    /// Seats the organizer took off sale.
    #[serde(default)]
    pub blocked: u64,
}

/// `GET /events/{id}/details`: the event's live counts over every section.
pub async fn counts(api: &Api, event: Uuid) -> anyhow::Result<Counts> {
    let r = api.get(&format!("/events/{event}/details"), None).await?;
    if !r.ok() {
        anyhow::bail!("GET details answered {}", r.status);
    }
    let d: Details = r.json()?;
    Ok(d.availability.ok_or_else(|| anyhow::anyhow!("no availability in the details"))?.total)
}

/// What the generator was told: seats and tickets of every 2xx purchase.
struct Acknowledged {
    tickets: Vec<Uuid>,
    order_ids: Vec<Uuid>,
    by_buyer: HashMap<u32, Vec<Uuid>>,
    orders: usize,
    seat_duplicates: Vec<String>,
    ticket_duplicates: usize,
    unresolved_seats: u64,
}

fn acknowledged(sale: &Sale) -> Acknowledged {
    let acked = sale.acked.lock().expect("acked lock");
    let mut seats = HashSet::new();
    let mut ids = HashSet::new();
    let mut ack = Acknowledged {
        tickets: Vec::new(),
        order_ids: acked.iter().map(|a| a.order_id).collect(),
        by_buyer: HashMap::new(),
        orders: acked.len(),
        seat_duplicates: Vec::new(),
        ticket_duplicates: 0,
        unresolved_seats: sale.counters.unresolved_seats.load(Relaxed),
    };
    for a in acked.iter() {
        for (id, seat) in &a.tickets {
            if !ids.insert(*id) {
                ack.ticket_duplicates += 1;
            }
            if let Some(seat) = seat
                && !seats.insert((a.venue, seat.clone()))
            {
                ack.seat_duplicates.push(seat.clone());
            }
            ack.tickets.push(*id);
            ack.by_buyer.entry(a.buyer).or_default().push(*id);
        }
    }
    ack
}

/// `actual` equals `expected`, or exceeds it by at most the seats whose outcome is unknown.
fn within(actual: u64, expected: u64, unknown: u64) -> bool {
    actual >= expected && actual <= expected + unknown
}

pub async fn run(api: &Api, sale: &Arc<Sale>, pool: Option<&PgPool>) -> Vec<Check> {
    let ack = acknowledged(sale);
    let acked_seats = ack.tickets.len() as u64;
    let unknown = ack.unresolved_seats;
    let mut checks = Vec::new();

    checks.push(Check::new(
        "acknowledged purchases name distinct seats and tickets",
        ack.seat_duplicates.is_empty() && ack.ticket_duplicates == 0,
        if ack.seat_duplicates.is_empty() && ack.ticket_duplicates == 0 {
            format!("{acked_seats} tickets in {} orders, every seat once", ack.orders)
        } else {
            format!(
                "OVERSOLD: {} seats sold twice (e.g. {:?}), {} ticket ids repeated",
                ack.seat_duplicates.len(),
                &ack.seat_duplicates[..ack.seat_duplicates.len().min(5)],
                ack.ticket_duplicates
            )
        },
    ));

    let details_name = "oversell: live availability (GET /events/{id}/details)";
    match availability(api, sale).await {
        Ok((c, inconsistent)) => {
            let ok = inconsistent == 0
                && c.sold <= c.capacity
                && c.available + c.held + c.sold + c.blocked == c.capacity
                && c.capacity == sale.capacity();
            checks.push(Check::new(
                details_name,
                ok,
                format!(
                    "capacity {}, sold {}, held {}, available {} (sum {}){}",
                    c.capacity,
                    c.sold,
                    c.held,
                    c.available,
                    c.available + c.held + c.sold,
                    match (sale.venues.len(), inconsistent) {
                        (1, _) => String::new(),
                        (n, 0) => format!(" over {n} events, each consistent"),
                        (n, bad) => format!(" over {n} events; {bad} events INCONSISTENT"),
                    }
                ),
            ));
            checks.push(Check::new(
                "lost writes: server's sold count = seats acknowledged",
                within(c.sold, acked_seats, unknown),
                format!("server sold {}, acknowledged {acked_seats}, outcome unknown for {unknown}", c.sold),
            ));
            checks.push(Check::info(
                "holds left behind",
                format!(
                    "{} seats still held on the server; {} holds could not be released",
                    c.held,
                    sale.counters.abandoned_holds.load(Relaxed)
                ),
            ));
        }
        Err(e) => checks.push(Check::could_not_run(details_name, e)),
    }

    match pool {
        Some(pool) => checks.extend(sql_checks(pool, sale, &ack).await),
        None => checks.push(api_ticket_check(api, sale, &ack).await),
    }
    checks
}

/// Every event's counts added up, and how many events' own counts do not add up
/// (sold over capacity, a sum that is not the capacity, another capacity than planned).
async fn availability(api: &Api, sale: &Sale) -> anyhow::Result<(Counts, usize)> {
    let mut sum = Counts { capacity: 0, available: 0, held: 0, sold: 0, blocked: 0 };
    let mut inconsistent = 0;
    for venue in &sale.venues {
        let c = counts(api, venue.event_id).await?;
        if c.sold > c.capacity
            || c.available + c.held + c.sold + c.blocked != c.capacity
            || c.capacity != u64::from(sale.plan.capacity())
        {
            inconsistent += 1;
        }
        sum.capacity += c.capacity;
        sum.available += c.available;
        sum.held += c.held;
        sum.sold += c.sold;
        sum.blocked += c.blocked;
    }
    Ok((sum, inconsistent))
}

async fn sql_checks(pool: &PgPool, sale: &Sale, ack: &Acknowledged) -> Vec<Check> {
    let event: Vec<Uuid> = sale.venues.iter().map(|v| v.event_id).collect();
    let event = &event;
    let acked_seats = ack.tickets.len() as u64;
    let unknown = ack.unresolved_seats;
    let mut checks = Vec::new();

    let name = "oversell (SQL): no seat with two live tickets";
    let dup: Result<i64, _> = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT seat_number FROM tickets
          WHERE event_id = ANY($1) AND status <> 'cancelled' AND seat_number IS NOT NULL
          GROUP BY event_id, seat_number HAVING count(*) > 1) d",
    )
    .bind(event)
    .fetch_one(pool)
    .await;
    checks.push(match dup {
        Ok(n) => Check::new(name, n == 0, format!("{n} seats with more than one live ticket")),
        Err(e) => Check::could_not_run(name, e),
    });

    let name = "lost writes (SQL): valid tickets = tickets acknowledged";
    let valid: Result<i64, _> =
        sqlx::query_scalar("SELECT count(*) FROM tickets WHERE event_id = ANY($1) AND status = 'valid'")
            .bind(event)
            .fetch_one(pool)
            .await;
    checks.push(match valid {
        Ok(n) => Check::new(
            name,
            within(n as u64, acked_seats, unknown),
            format!("{n} valid tickets stored, {acked_seats} acknowledged, outcome unknown for {unknown}"),
        ),
        Err(e) => Check::could_not_run(name, e),
    });

    let name = "lost writes (SQL): every acknowledged ticket id is stored and valid";
    let found: Result<i64, _> = sqlx::query_scalar(
        "SELECT count(*) FROM tickets WHERE event_id = ANY($1) AND status = 'valid' AND ticket_id = ANY($2)",
    )
    .bind(event)
    .bind(&ack.tickets)
    .fetch_one(pool)
    .await;
    checks.push(match found {
        Ok(n) => {
            Check::new(name, n as u64 == acked_seats, format!("{n} of {acked_seats} acknowledged tickets found valid"))
        }
        Err(e) => Check::could_not_run(name, e),
    });

    let name = "lost writes (SQL): every acknowledged hold is stored";
    let holds = sale.hold_ids.lock().expect("hold ids lock").clone();
    let found: Result<i64, _> =
        sqlx::query_scalar("SELECT count(*) FROM holds WHERE event_id = ANY($1) AND hold_id = ANY($2)")
            .bind(event)
            .bind(&holds)
            .fetch_one(pool)
            .await;
    checks.push(match found {
        Ok(n) => {
            Check::new(name, n as usize == holds.len(), format!("{n} of {} acknowledged holds found", holds.len()))
        }
        Err(e) => Check::could_not_run(name, e),
    });

    let name = "lost writes (SQL): every acknowledged order is a purchased hold";
    let found: Result<i64, _> = sqlx::query_scalar(
        "SELECT count(*) FROM holds WHERE event_id = ANY($1) AND status = 'purchased' AND hold_id = ANY($2)",
    )
    .bind(event)
    .bind(&ack.order_ids)
    .fetch_one(pool)
    .await;
    checks.push(match found {
        Ok(n) => Check::new(
            name,
            n as usize == ack.order_ids.len(),
            format!("{n} of {} acknowledged orders stored as purchased", ack.order_ids.len()),
        ),
        Err(e) => Check::could_not_run(name, e),
    });
    checks.extend(money_checks(pool, event).await);
    checks
}

/// How long the money checks wait for the server's reconciler to settle what the
/// run left in flight (charges without tickets yet, refunds not yet confirmed).
const MONEY_SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

/// The server's own ledger check, `boxoffice reconcile [--event ID]`: exit 0 when
/// what was charged equals what was refunded plus the tickets kept.
pub async fn ledger(command: Option<tokio::process::Command>) -> Check {
    let name = "money: `boxoffice reconcile` is clean";
    let Some(mut command) = command else {
        return Check::info(name, "not run: the server was not started by --spawn".into());
    };
    match command.output().await {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            // A header, one line per event, the provider's line and the verdict.
            let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let summary = match lines.len() {
                4 => lines[1].to_owned(),
                n if n > 4 => format!("{} events, {}", n - 3, lines[n - 1]),
                _ => lines.join(" | "),
            };
            let detail = if out.status.success() {
                summary
            } else {
                format!("exit {}: {}{}", out.status, text.trim(), String::from_utf8_lossy(&out.stderr).trim())
            };
            Check::new(name, out.status.success(), detail)
        }
        Err(e) => Check::could_not_run(name, e),
    }
}

/// Every charge ends as tickets or a refund, never both and never twice.
async fn money_checks(pool: &PgPool, event: &[Uuid]) -> Vec<Check> {
    let mut checks = Vec::new();
    let name = "money (SQL): no order charged twice";
    let twice: Result<i64, _> = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT hold_id FROM charges WHERE event_id = ANY($1) AND status IN ('charged', 'completed')
                                GROUP BY hold_id HAVING count(*) > 1) d",
    )
    .bind(event)
    .fetch_one(pool)
    .await;
    checks.push(match twice {
        Ok(n) => Check::new(name, n == 0, format!("{n} orders with more than one charge kept")),
        Err(e) => Check::could_not_run(name, e),
    });

    let name = "money (SQL): every charge ended as tickets or a refund";
    let deadline = std::time::Instant::now() + MONEY_SETTLE;
    let open = loop {
        let open: Result<(i64, i64), _> = sqlx::query_as(
            "SELECT (SELECT count(*) FROM charges WHERE event_id = ANY($1) AND status IN ('started', 'charged')),
                    (SELECT count(*) FROM refunds WHERE event_id = ANY($1) AND status <> 'succeeded')",
        )
        .bind(event)
        .fetch_one(pool)
        .await;
        match open {
            Ok((0, 0)) | Err(_) => break open,
            Ok(_) if std::time::Instant::now() > deadline => break open,
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    };
    checks.push(match open {
        Ok((charges, refunds)) => Check::new(
            name,
            charges == 0 && refunds == 0,
            format!("{charges} charges without tickets or refund, {refunds} refunds not confirmed"),
        ),
        Err(e) => Check::could_not_run(name, e),
    });

    checks
}

#[derive(Deserialize)]
struct TicketList {
    tickets: Vec<ListedTicket>,
}

#[derive(Deserialize)]
struct ListedTicket {
    ticket_id: Uuid,
    event_id: Uuid,
    status: String,
}

/// Without a database: each buyer's ticket list must hold their acknowledged tickets, valid.
async fn api_ticket_check(api: &Api, sale: &Arc<Sale>, ack: &Acknowledged) -> Check {
    let name = "lost writes (API): every acknowledged ticket is in its buyer's list, valid";
    let work: Vec<(u32, Vec<Uuid>)> = ack.by_buyer.iter().map(|(b, t)| (*b, t.clone())).collect();
    let work = Arc::new(std::sync::Mutex::new(work));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TICKET_LIST_CONCURRENCY {
        let (api, sale, work) = (api.clone(), Arc::clone(sale), Arc::clone(&work));
        tasks.spawn(async move {
            let (mut missing, mut errors) = (0u64, Vec::new());
            loop {
                let Some((b, expected)) = work.lock().expect("work lock").pop() else { break };
                match listed_valid(&api, &sale, b).await {
                    Ok(have) => missing += expected.iter().filter(|t| !have.contains(t)).count() as u64,
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (missing, errors)
        });
    }
    let (mut missing, mut errors) = (0u64, Vec::<String>::new());
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((m, e)) => {
                missing += m;
                errors.extend(e);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if let Some(first) = errors.first() {
        return Check::could_not_run(name, format!("{} ticket lists unreadable, e.g. {first}", errors.len()));
    }
    Check::new(
        name,
        missing == 0,
        format!(
            "{} tickets of {} buyers checked, {missing} missing or not valid",
            ack.tickets.len(),
            ack.by_buyer.len()
        ),
    )
}

async fn listed_valid(api: &Api, sale: &Sale, b: u32) -> anyhow::Result<HashSet<Uuid>> {
    let buyer = &sale.buyers[b as usize];
    let mut have = HashSet::new();
    for page in 1..=MAX_TICKET_PAGES {
        let path = format!("/tickets/user/{}?page={page}&per_page={TICKETS_PER_PAGE}", buyer.id);
        let r = api.get(&path, Some(&buyer.auth())).await?;
        if !r.ok() {
            anyhow::bail!("GET /tickets/user answered {}", r.status);
        }
        let list: TicketList = r.json()?;
        let n = list.tickets.len();
        have.extend(
            list.tickets
                .into_iter()
                .filter(|t| t.event_id == sale.venue_of(b).event_id && t.status == "valid")
                .map(|t| t.ticket_id),
        );
        if n < TICKETS_PER_PAGE {
            break;
        }
    }
    Ok(have)
}

#[cfg(test)]
mod tests {
    use super::within;

    #[test]
    fn counts_match_up_to_unknown_outcomes() {
        assert!(within(10, 10, 0));
        assert!(!within(9, 10, 0));
        assert!(!within(11, 10, 0));
        assert!(within(12, 10, 4));
    }
}
