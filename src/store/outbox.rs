//! The outbox: every state change is also a row here, written in the same
//! transaction as the change (the journal writes the engine's rows itself).
//! A relay publishes unpublished rows to Redis Streams when Redis is configured;
//! without it they stay queryable in PostgreSQL.

use sqlx::{Executor, Postgres};
use uuid::Uuid;

/// Adds one outbox row through `executor` (a pool, or a transaction to share its fate).
pub async fn record<'e>(
    executor: impl Executor<'e, Database = Postgres>,
    topic: &str,
    aggregate: Uuid,
    payload: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO outbox (topic, aggregate_id, payload) VALUES ($1, $2, $3)")
        .bind(topic)
        .bind(aggregate)
        .bind(payload)
        .execute(executor)
        .await?;
    Ok(())
}
