//! The branch's business rules as pure code: validated newtypes, the work-order state machine,
//! invoice arithmetic (PPN, integer rupiah), invoice numbering, the inspection hash chain, and
//! rental booking days and tiers, the rental counter's charges and settlement.
//!
//! Nothing here does I/O; `store` calls these inside its transactions and `api` uses the newtypes
//! to parse requests at the edge, so the inside never sees an invalid SKU, plate or amount.

pub mod billing;
pub mod booking;
pub mod inspection;
pub mod rental;
pub mod stock;
pub mod types;
pub mod work_order;

pub use types::*;
