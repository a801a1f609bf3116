//! The connection pool and the embedded migrations.
//!
//! Migrations are compiled into the binary with `include_str!` (no proc-macro
//! crate needed), so the server migrates its database wherever it runs.

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, SqlSafeStr};
use std::time::Duration;

/// Every migration, in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (20261123000001, "initial", include_str!("../../migrations/20261123000001_initial.sql")),
    (20261201000001, "hot path constraints", include_str!("../../migrations/20261201000001_hot_path_constraints.sql")),
    (20261201000002, "search indexes", include_str!("../../migrations/20261201000002_search_indexes.sql")),
    (20261201000003, "search in memory", include_str!("../../migrations/20261201000003_search_in_memory.sql")),
    (20261206000001, "organizer approval", include_str!("../../migrations/20261206000001_organizer_approval.sql")),
    (20261206000010, "money reconciliation", include_str!("../../migrations/20261206000010_money_reconciliation.sql")),
    (20261206000020, "cluster", include_str!("../../migrations/20261206000020_cluster.sql")),
    (20261206000030, "blocked_seats", include_str!("../../migrations/20261206000030_blocked_seats.sql")),
    (20261206000040, "journal batches", include_str!("../../migrations/20261206000040_journal_batches.sql")),
    (20261206000050, "waiting room", include_str!("../../migrations/20261206000050_waiting_room.sql")),
    (20261206000060, "hot hold updates", include_str!("../../migrations/20261206000060_hot_hold_updates.sql")),
    (20261206000070, "json outbox payloads", include_str!("../../migrations/20261206000070_json_outbox_payloads.sql")),
    (
        20261206000080,
        "holds without event key",
        include_str!("../../migrations/20261206000080_holds_without_event_key.sql"),
    ),
    (20261206000090, "outbox one index", include_str!("../../migrations/20261206000090_outbox_one_index.sql")),
    (
        20261207000010,
        "journal write function",
        include_str!("../../migrations/20261207000010_journal_write_function.sql"),
    ),
    (20261207000020, "outbox room to mark", include_str!("../../migrations/20261207000020_outbox_room_to_mark.sql")),
    (
        20261207000030,
        "room for the one update",
        include_str!("../../migrations/20261207000030_room_for_the_one_update.sql"),
    ),
    (
        20261207000040,
        "journal updates planned once",
        include_str!("../../migrations/20261207000040_journal_updates_planned_once.sql"),
    ),
    (20261207000050, "one index by event", include_str!("../../migrations/20261207000050_one_index_by_event.sql")),
    (
        20261207000060,
        "no index of tickets by owner",
        include_str!("../../migrations/20261207000060_no_index_of_tickets_by_owner.sql"),
    ),
    (
        20261207000070,
        "payments keyed by reference",
        include_str!("../../migrations/20261207000070_payments_keyed_by_reference.sql"),
    ),
];

pub fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(*version, (*name).into(), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect(),
    )
}

/// Opens a pool. A short acquire timeout makes requests fail fast (503) when the
/// database is down instead of queueing behind it.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    connect_with_timeout(url, max_connections, Duration::from_secs(2)).await
}

/// [`connect`] with another acquire timeout (the journal's is shorter: its
/// breaker, not the pool, rides out an outage).
pub async fn connect_with_timeout(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(2)
        .acquire_timeout(acquire_timeout)
        .connect(url)
        .await
}

/// Whether every embedded migration has been applied.
pub async fn migrations_applied(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success").fetch_one(pool).await?;
    Ok(applied == Some(latest))
}

/// Errors that say the database is unreachable, shutting down, starting up or out of
/// resources (not that the query is wrong): I/O, pool, protocol, and SQLSTATE classes 08
/// (connection), 53 (insufficient resources), 57 (operator intervention: 57P01 admin
/// shutdown, 57P02 crash shutdown, 57P03 cannot connect now).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| ["08", "53", "57"].iter().any(|p| c.starts_with(p))),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    /// A file added to `migrations/` and not listed here would never run.
    #[test]
    fn every_migration_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("the migrations directory")
            .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<String> = MIGRATIONS.iter().map(|(version, _, _)| version.to_string()).collect();
        let on_disk: Vec<String> =
            files.iter().map(|name| name.split('_').next().unwrap_or_default().to_owned()).collect();
        assert_eq!(embedded, on_disk, "migrations/ and MIGRATIONS must list the same files, in order");
        for ((version, _, sql), file) in MIGRATIONS.iter().zip(&files) {
            let text = std::fs::read_to_string(dir.join(file)).expect("a migration file");
            assert_eq!(*sql, text, "migration {version} is embedded from {file}");
        }
    }
}
