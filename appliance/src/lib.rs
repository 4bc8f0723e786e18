//! `sentra-edge`: the branch appliance. See ARCHITECTURE.md for the map; each module's doc says
//! what it owns.

pub mod api;
pub mod backoff;
pub mod backup;
pub mod broker;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod domain;
pub mod edc;
pub mod enrol_prompt;
pub mod lan;
pub mod mdns;
pub mod metrics;
pub mod printer;
pub mod scanner;
pub mod serial_line;
pub mod store;
pub mod supervisor;
pub mod sync;
pub mod telemetry;
pub mod update;
pub mod watchdog;
