//! Arbitrary bytes as two days and a turnover buffer, through the protocol's day parser, its
//! stay rule and the cloud's `Stay`: no panic, and the properties of
//! `fuzz_properties::check_stay` hold.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sentra_cloud_fuzz::fuzz_properties::check_stay(data);
});
