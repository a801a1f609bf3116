//! Background work beside the request path: the outbox relay (to Redis Streams
//! and email), notification email, the availability reporter, and the waiting
//! rooms' ticker (which admits buyers, but decides no seat). Each runs as a
//! task started by `startup` and stopped at shutdown; none decides a sale.

pub mod availability;
pub mod notify;
pub mod relay;
pub mod waiting_room;
