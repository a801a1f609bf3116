//! boxoffice's sales engine.
//!
//! - [`seatmap`]: seat maps as uploaded and as compiled for the inventory;
//! - [`inventory`]: `SeatInventory`, the pure state machine of one event's seats;
//! - [`actor`]: `EventActor`, which owns one inventory and serialises every change;
//! - [`handle`] and [`registry`]: the typed client and the `EventId → actor` map;
//! - [`journal`] and [`record`]: the persistence port and what it writes;
//! - [`waiting_room`]: the waiting room's pure decisions (shuffle, pacing).
//!
//! **Invariant:** this crate knows nothing of HTTP, SQL or payment providers; the
//! service plugs those in through the `Journal`, `Loader` and `Clock` ports
//! (`ARCHITECTURE.md`, section "Invariants").

pub mod actor;
pub mod clock;
pub mod error;
pub mod handle;
pub mod ids;
pub mod inventory;
pub mod journal;
pub mod record;
pub mod registry;
pub mod seatmap;
pub mod waiting_room;

pub use actor::{ActorConfig, Availability, EventActor};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::EventError;
pub use handle::{EventHandle, Limits};
pub use ids::{BuyerId, EventId, HoldId, IdempotencyKey, TicketId, UnixMs};
pub use inventory::{
    Counts, HoldView, InventoryError, Outcome, ReconfigureError, RowStatus, Sale, SalesWindow, SeatDelta,
    SeatInventory, SeatStatus, SectionCounts, SectionStatus, Selection, Settled,
};
pub use journal::{Journal, JournalError, MemoryJournal};
pub use record::{Change, HoldRecord, HoldStatus, Items, Payment, Record, TicketRecord};
pub use registry::{EventSnapshot, LoadError, LoadFuture, Loader, Registry};
pub use seatmap::{Layout, SeatMap, SeatMapError};
