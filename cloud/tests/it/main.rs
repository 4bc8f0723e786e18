//! Integration tests for `sentra-cloud`: they run the real binary against a real PostgreSQL
//! (a fresh database per test) and Redis, over real sockets.
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/postgres` unless `SENTRA_TEST_PG_ADMIN_URL`
//! says otherwise. Redis: `redis://127.0.0.1:6379` unless `SENTRA_TEST_REDIS_URL` does.
//! RabbitMQ: `amqp://guest:guest@127.0.0.1:5672/%2f` unless `SENTRA_TEST_AMQP_URL` says otherwise.
//! `bash scripts/test.sh` starts all three when they are not running.
//!
//! `cloud` is a running cloud with enrolled, signing devices; `fixtures` the edge-shaped events
//! and signatures (shared with `benches/ingest.rs`).

mod bad_days;
mod blobs;
mod booking;
mod booking_completion;
mod booking_support;
mod cli;
mod cloud;
mod contract;
mod device_auth;
mod enroll;
mod fixtures;
mod fleet;
mod fleet_look;
mod fleet_scale;
mod identity;
mod metrics;
mod migrate;
mod notify;
mod pull;
mod push;
mod reports;
mod serve;
mod shared;
mod sim_fleet;
mod staff;
mod stock;
mod successor;
mod support;
mod tariffs;
mod tls;
mod vehicles;
