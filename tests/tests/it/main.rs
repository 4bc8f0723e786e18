//! Whole-system tests: `sentra-edge` and `sentra-cloud` over real sockets with PostgreSQL (and
//! Redis for booking).

mod booking;
mod shared;
mod sync;
