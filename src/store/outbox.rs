//! The outbox: every state change is also a row here, written in the same
//! transaction as the change (the journal writes the engine's rows itself).
//! A relay publishes unpublished rows to Redis Streams when Redis is configured;
//! without it they stay queryable in PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::{Executor, Postgres};
use uuid::Uuid;

/// What an outbox row says happened; its wire name (`ticket:issued`) is the Redis
/// stream it is published to and what consumers subscribe by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// an event was created
    EventCreated,
    /// an event, its seat map, window or status changed
    EventUpdated,
    /// a draft event was deleted
    EventDeleted,
    /// an event was cancelled (its tickets are cancelled and refunded after it)
    EventCancelled,
    /// seats were held
    HoldCreated,
    /// a buyer released a hold
    HoldReleased,
    /// a hold lapsed unpaid
    HoldExpired,
    /// a payment bought a hold
    PaymentCreated,
    /// a payment reported by the provider failed
    PaymentFailed,
    /// a refund succeeded (kept for the buyer's email and earlier consumers)
    PaymentRefunded,
    /// a refund was recorded, to be made
    RefundRequested,
    /// the provider confirmed a refund
    RefundSucceeded,
    /// a refund attempt failed; it is retried
    RefundFailed,
    /// tickets were issued for a purchased hold
    TicketIssued,
    /// a ticket was cancelled
    TicketCancelled,
    /// a ticket was checked in
    TicketUsed,
}

impl Topic {
    pub const ALL: [Topic; 16] = [
        Topic::EventCreated,
        Topic::EventUpdated,
        Topic::EventDeleted,
        Topic::EventCancelled,
        Topic::HoldCreated,
        Topic::HoldReleased,
        Topic::HoldExpired,
        Topic::PaymentCreated,
        Topic::PaymentFailed,
        Topic::PaymentRefunded,
        Topic::RefundRequested,
        Topic::RefundSucceeded,
        Topic::RefundFailed,
        Topic::TicketIssued,
        Topic::TicketCancelled,
        Topic::TicketUsed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Topic::EventCreated => "event:created",
            Topic::EventUpdated => "event:updated",
            Topic::EventDeleted => "event:deleted",
            Topic::EventCancelled => "event:cancelled",
            Topic::HoldCreated => "hold:created",
            Topic::HoldReleased => "hold:released",
            Topic::HoldExpired => "hold:expired",
            Topic::PaymentCreated => "payment:created",
            Topic::PaymentFailed => "payment:failed",
            Topic::PaymentRefunded => "payment:refunded",
            Topic::RefundRequested => "refund:requested",
            Topic::RefundSucceeded => "refund:succeeded",
            Topic::RefundFailed => "refund:failed",
            Topic::TicketIssued => "ticket:issued",
            Topic::TicketCancelled => "ticket:cancelled",
            Topic::TicketUsed => "ticket:used",
        }
    }

    /// The topic of a stored row's name, if it is one of ours.
    pub fn parse(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Adds one outbox row through `executor` (a pool, or a transaction to share its fate).
pub async fn record<'e>(
    executor: impl Executor<'e, Database = Postgres>,
    topic: Topic,
    aggregate: Uuid,
    payload: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO outbox (topic, aggregate_id, payload) VALUES ($1, $2, $3)")
        .bind(topic.as_str())
        .bind(aggregate)
        .bind(payload)
        .execute(executor)
        .await?;
    Ok(())
}

/// One outbox row, as the relay reads it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OutboxRow {
    /// The dedupe id consumers see as `outbox_id`.
    pub id: i64,
    pub topic: String,
    pub aggregate_id: Uuid,
    /// The JSON payload as text, passed through to Redis unparsed.
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::Topic;

    #[test]
    fn topic_names_round_trip() {
        for topic in Topic::ALL {
            assert_eq!(Topic::parse(topic.as_str()), Some(topic));
        }
        assert_eq!(Topic::parse("ticket:unknown"), None);
    }
}
