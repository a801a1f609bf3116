//! The in-process test binary: the server (`boxoffice_testkit::spawn_app`) on a random port
//! against a fresh PostgreSQL database, talked to over HTTP; hostile input and attacks; and the
//! library's Stripe provider, outbox relay, notifications and cache against real services.
//! `./scripts/test.sh` provides PostgreSQL, Redis and localstripe; a test that cannot find the
//! one it needs fails.

mod auth;
mod charge_log;
mod check_ins;
mod cluster;
mod events;
mod holds;
mod hostile;
mod indexes;
mod journal;
mod money;
mod organizer_views;
mod organizers;
mod payments;
mod purchases;
mod redis;
mod relay;
mod seats;
mod stripe;
mod system;
mod ticket_links;
mod tls;
mod waiting_room;
mod web;
