//! Per-node figures of a run over several nodes or events: which node owns how
//! many of the run's events (the `event_leases` table), the orders and tickets
//! sold at each owner, and each node's CPU. On one machine several nodes cannot be
//! faster than one; these figures show the balance and the overhead.

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Serialize, Clone, Debug)]
pub struct NodeRow {
    pub node_id: String,
    pub events: i64,
    pub orders: i64,
    pub tickets: i64,
    pub orders_per_s: f64,
    /// Share of a core during the measured phase, when known.
    pub cpu_percent: Option<f64>,
}

/// The owners of `events` now (leases are held until the nodes stop) and what
/// each sold. `cpu_percent`: per node, in the order `node0`, `node1`, …
pub async fn figures(
    pool: &PgPool,
    events: &[Uuid],
    sale_secs: f64,
    cpu_percent: &[f64],
) -> anyhow::Result<Vec<NodeRow>> {
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT coalesce(l.node_id, '(no owner)'), count(DISTINCT e.id),
                count(DISTINCT t.hold_id), count(t.ticket_id)
           FROM unnest($1::uuid[]) AS e(id)
           LEFT JOIN event_leases l ON l.event_id = e.id
           LEFT JOIN tickets t ON t.event_id = e.id AND t.status = 'valid'
          GROUP BY 1 ORDER BY 1",
    )
    .bind(events)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(node_id, events, orders, tickets)| NodeRow {
            cpu_percent: node_index(&node_id).and_then(|i| cpu_percent.get(i).copied()),
            orders_per_s: orders as f64 / sale_secs.max(1e-3),
            node_id,
            events,
            orders,
            tickets,
        })
        .collect())
}

/// `node3` → 3: the ids `--spawn` gives its nodes.
fn node_index(node_id: &str) -> Option<usize> {
    node_id.strip_prefix("node")?.parse().ok()
}

/// One line per node for the terminal report.
pub fn describe(rows: &[NodeRow]) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "{}: {} events, {} orders ({:.0}/s), {} tickets{}",
                r.node_id,
                r.events,
                r.orders,
                r.orders_per_s,
                r.tickets,
                r.cpu_percent.map(|p| format!(", CPU {p:.0}% of a core")).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawned_node_ids_name_their_index() {
        assert_eq!(node_index("node0"), Some(0));
        assert_eq!(node_index("node12"), Some(12));
        assert_eq!(node_index("(no owner)"), None);
        assert_eq!(node_index("edge-a"), None);
        let row = NodeRow {
            node_id: "node1".into(),
            events: 67,
            orders: 900,
            tickets: 2_250,
            orders_per_s: 450.0,
            cpu_percent: Some(41.6),
        };
        assert_eq!(describe(&[row]), "node1: 67 events, 900 orders (450/s), 2250 tickets, CPU 42% of a core");
    }
}
