//! Whole-system tests: `sentra-edge` and `sentra-cloud` over real sockets with PostgreSQL.

mod shared;
mod sync;
mod update;
