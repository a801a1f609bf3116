//! The one error type callers of the engine see.
//!
//! Every way a call can fail is one of these values, never a panic, and
//! [`EventError::is_transient`] says which are worth retrying
//! (`docs/domain.md`, section "Errors").

use crate::inventory::InventoryError;
use std::time::Duration;

/// Serializable: nodes send it to each other when one serves an event for another.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum EventError {
    /// The inventory refused the request (sold out, not open, limit, …).
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// Too many requests in flight for this event; retry after the pause.
    #[error("too many requests for this event; retry in {retry_after:?}")]
    Overloaded { retry_after: Duration },
    /// The change could not be saved, or the event is shutting down; nothing changed.
    #[error("{0}")]
    Unavailable(String),
    /// No answer in time. The change may still complete: retry with the same
    /// idempotency key to learn its outcome.
    #[error("the event did not answer in time")]
    Timeout,
    /// No such event, or it is not on sale.
    #[error("no such event on sale")]
    EventNotFound,
    /// The event's actor stopped (passivated or crashed) before answering; the
    /// registry retries on a fresh actor.
    #[error("the event actor stopped")]
    Stopped,
    /// Another node owns the event (named when known): send the request there.
    #[error("the event is served by another node")]
    NotOwner(Option<String>),
}

impl EventError {
    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            EventError::Overloaded { .. }
                | EventError::Unavailable(_)
                | EventError::Timeout
                | EventError::Stopped
                | EventError::NotOwner(_)
        ) || matches!(self, EventError::Inventory(InventoryError::Busy))
    }
}
