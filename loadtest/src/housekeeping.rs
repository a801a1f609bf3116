//! PostgreSQL's own work during the measured phase — autovacuum, autoanalyze and
//! checkpoints — read from its statistics views before and after, so a slow run
//! can be told apart from a slow server: on two cores one autovacuum worker is a
//! large share of the machine.

use sqlx::PgPool;

/// Cumulative counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Housekeeping {
    pub autovacuums: i64,
    pub autoanalyzes: i64,
    /// `None` when neither statistics view answers.
    pub checkpoints: Option<i64>,
}

impl Housekeeping {
    /// The counters now; `None` without a database or when it does not answer.
    pub async fn read(pool: Option<&PgPool>) -> Option<Self> {
        let pool = pool?;
        let (autovacuums, autoanalyzes): (i64, i64) = sqlx::query_as(
            "SELECT coalesce(sum(autovacuum_count), 0)::int8, coalesce(sum(autoanalyze_count), 0)::int8
             FROM pg_stat_user_tables",
        )
        .fetch_one(pool)
        .await
        .ok()?;
        // PostgreSQL 17 moved the checkpoint counters to pg_stat_checkpointer.
        let mut checkpoints = None;
        for query in [
            "SELECT (num_timed + num_requested)::int8 FROM pg_stat_checkpointer",
            "SELECT (checkpoints_timed + checkpoints_req)::int8 FROM pg_stat_bgwriter",
        ] {
            if let Ok(n) = sqlx::query_scalar::<_, i64>(query).fetch_one(pool).await {
                checkpoints = Some(n);
                break;
            }
        }
        Some(Self { autovacuums, autoanalyzes, checkpoints })
    }

    /// What happened between `self` and `after`, in words.
    pub fn since(&self, after: &Self) -> String {
        let checkpoints = match (self.checkpoints, after.checkpoints) {
            (Some(a), Some(b)) => (b - a).to_string(),
            _ => "unknown".to_owned(),
        };
        format!(
            "{} autovacuum(s), {} autoanalyze(s) finished, {checkpoints} checkpoint(s)",
            after.autovacuums - self.autovacuums,
            after.autoanalyzes - self.autoanalyzes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_difference_is_told_in_words() {
        let before = Housekeeping { autovacuums: 3, autoanalyzes: 5, checkpoints: Some(1) };
        let after = Housekeeping { autovacuums: 5, autoanalyzes: 9, checkpoints: Some(1) };
        assert_eq!(before.since(&after), "2 autovacuum(s), 4 autoanalyze(s) finished, 0 checkpoint(s)");
        let unknown = Housekeeping { checkpoints: None, ..after };
        assert_eq!(before.since(&unknown), "2 autovacuum(s), 4 autoanalyze(s) finished, unknown checkpoint(s)");
    }
}
