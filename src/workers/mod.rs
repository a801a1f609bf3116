//! Background work beside the request path: the outbox relay (to Redis Streams
//! and email), notification email, and the availability reporter. Each runs as a
//! task started by `startup` and stopped at shutdown; none decides a sale.

pub mod availability;
pub mod notify;
pub mod relay;
