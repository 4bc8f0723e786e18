//! Arbitrary bytes as a branch's document changes, through automerge as the cloud merges them
//! (`sentra_protocol::doc::SharedDoc`): no panic, and the properties of
//! `fuzz_properties::check_doc` hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sentra_cloud_fuzz::fuzz_properties::check_doc(data);
});
