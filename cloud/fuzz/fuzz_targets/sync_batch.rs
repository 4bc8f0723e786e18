//! Arbitrary bytes as a push body, through ingest's pure half: no panic, and the properties of
//! `fuzz_properties::check_batch` hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sentra_cloud_fuzz::fuzz_properties::check_batch(data);
});
