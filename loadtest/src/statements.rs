//! Where PostgreSQL's time went during the sale, statement by statement, when the
//! database keeps `pg_stat_statements` (in `shared_preload_libraries`, and created
//! in the server's database). Read before and after the measured phase, so nothing
//! is reset: the report names the statements that took the most execution time.

use sqlx::PgPool;
use std::collections::HashMap;

/// Cumulative figures of one statement.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Statement {
    pub query: String,
    pub calls: i64,
    pub exec_ms: f64,
    pub rows: i64,
}

/// Every statement of the server's database, by query id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Statements(pub HashMap<i64, Statement>);

impl Statements {
    /// The figures now; `None` without a database or without the extension.
    pub async fn read(pool: Option<&PgPool>) -> Option<Self> {
        let rows: Vec<(i64, i64, f64, i64, String)> = sqlx::query_as(
            "SELECT queryid, sum(calls)::int8, sum(total_exec_time)::float8, sum(rows)::int8, min(query)
             FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid IS NOT NULL
             GROUP BY queryid",
        )
        .fetch_all(pool?)
        .await
        .ok()?;
        Some(Self(
            rows.into_iter()
                .map(|(id, calls, exec_ms, rows, query)| (id, Statement { query, calls, exec_ms, rows }))
                .collect(),
        ))
    }

    /// The `top` statements by execution time between `self` and `after`, in
    /// words, with the total and its share per order; `None` when nothing ran.
    pub fn since(&self, after: &Self, orders: u64, top: usize) -> Option<String> {
        let mut ran: Vec<Statement> = after
            .0
            .iter()
            .map(|(id, now)| {
                let was = self.0.get(id).cloned().unwrap_or_default();
                Statement {
                    query: now.query.clone(),
                    calls: now.calls - was.calls,
                    exec_ms: now.exec_ms - was.exec_ms,
                    rows: now.rows - was.rows,
                }
            })
            .filter(|s| s.calls > 0)
            .collect();
        if ran.is_empty() {
            return None;
        }
        ran.sort_by(|a, b| b.exec_ms.total_cmp(&a.exec_ms));
        let total: f64 = ran.iter().map(|s| s.exec_ms).sum();
        let per_order =
            if orders > 0 { format!(", {:.0} µs per order", total * 1000.0 / orders as f64) } else { String::new() };
        let listed: Vec<String> = ran
            .iter()
            .take(top)
            .map(|s| {
                format!(
                    "{} {:.0} ms ({:.0} %, {} calls, {} rows)",
                    short(&s.query),
                    s.exec_ms,
                    100.0 * s.exec_ms / total.max(f64::MIN_POSITIVE),
                    s.calls,
                    s.rows
                )
            })
            .collect();
        Some(format!("{total:.0} ms of execution in {} statements{per_order}; {}", ran.len(), listed.join("; ")))
    }
}

/// A statement's first words, whitespace collapsed: enough to tell it apart.
fn short(query: &str) -> String {
    let words: Vec<&str> = query.split_whitespace().take(6).collect();
    let mut text = words.join(" ");
    if text.chars().count() > 48 {
        text = text.chars().take(47).collect::<String>() + "…";
    }
    format!("`{text}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(query: &str, calls: i64, exec_ms: f64, rows: i64) -> Statement {
        Statement { query: query.into(), calls, exec_ms, rows }
    }

    #[test]
    fn the_sale_s_statements_are_listed_by_time_spent() {
        let before = Statements(HashMap::from([
            (1, statement("INSERT INTO outbox (topic, aggregate_id, payload) SELECT …", 10, 50.0, 100)),
            (2, statement("SELECT 1", 5, 1.0, 5)),
        ]));
        let after = Statements(HashMap::from([
            (1, statement("INSERT INTO outbox (topic, aggregate_id, payload) SELECT …", 110, 650.0, 3100)),
            (2, statement("SELECT 1", 5, 1.0, 5)),
            (3, statement("INSERT INTO tickets\n   (ticket_id, event_id) SELECT …", 100, 200.0, 2200)),
        ]));
        assert_eq!(
            before.since(&after, 1000, 5).unwrap(),
            "800 ms of execution in 2 statements, 800 µs per order; \
             `INSERT INTO outbox (topic, aggregate_id, payloa…` 600 ms (75 %, 100 calls, 3000 rows); \
             `INSERT INTO tickets (ticket_id, event_id) SELECT` 200 ms (25 %, 100 calls, 2200 rows)"
        );
        assert_eq!(before.since(&after, 0, 1).unwrap().split("; ").count(), 2, "the top one only, no per-order figure");
        assert_eq!(after.since(&after, 1000, 5), None, "nothing ran");
    }
}
