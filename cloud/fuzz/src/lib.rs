//! The cloud's pure modules, built from their source files at the paths they have in the service
//! (`crate::ingest::validate`) so they compile here unchanged, and the
//! properties every fuzz target checks (`fuzz_properties`, replayed on stable by its unit tests
//! in the cloud crate).

#[allow(dead_code)]
#[path = "../../src/event.rs"]
mod event;

#[allow(dead_code)]
#[path = "../../src/ingest/validate.rs"]
mod ingest_validate;
#[allow(dead_code)]
#[path = "../../src/ingest/rental_rules.rs"]
mod rental_rules;
// `validate` calls `super::rental_rules`, and `rental_rules` uses `super::validate`: both resolve
// at this crate's root as they do in the service's `ingest`.
use ingest_validate as validate;
mod ingest {
    pub(crate) use super::ingest_validate as validate;
}

#[allow(dead_code)]
#[path = "../../src/fuzz_properties.rs"]
pub mod fuzz_properties;
