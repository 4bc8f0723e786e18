//! Arbitrary bytes as a branch's document changes, through automerge as the cloud merges them
//! (`sentra_protocol::doc::SharedDoc`): no panic, and the properties of
//! `fuzz_properties::check_doc` hold.
#![no_main]

// The cloud's pure modules, from their source files, at the paths they have in the service
// (`crate::ingest::validate`, `crate::booking::types`), so they compile here unchanged.
#[allow(dead_code)]
#[path = "../../src/booking/types.rs"]
mod booking_types;
mod booking {
    pub(crate) use super::booking_types as types;
}

#[allow(dead_code)]
#[path = "../../src/ingest/validate.rs"]
mod ingest_validate;
mod ingest {
    pub(crate) use super::ingest_validate as validate;
}

#[allow(dead_code)]
#[path = "../../src/fuzz_properties.rs"]
mod fuzz_properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_properties::check_doc(data);
});
