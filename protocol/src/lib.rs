//! The wire contract between `sentra-edge` and `sentra-cloud`.
//!
//! Owns the versioned types that cross the edge–cloud link and the hybrid logical clock that
//! orders events across devices. Pure: no I/O, no clocks read here (callers pass the time in),
//! so every rule is table-tested. Only these types cross the link.

pub mod auth;
pub mod backup;
pub mod booking;
pub mod day;
pub mod doc;
pub mod enrol_token;
pub mod event;
pub mod fleet;
pub mod hlc;
pub mod payload;
pub mod record;
pub mod rental;
pub mod staff;
pub mod successor;
pub mod sync;
pub mod workshop;

pub use event::{EntityKind, Event, SCHEMA_VERSION};
pub use hlc::{Hlc, HlcClock, HlcError};
pub use sync::PROTOCOL_VERSION;

/// Re-exported so both sides use the same ed25519 implementation.
pub use ed25519_dalek;
