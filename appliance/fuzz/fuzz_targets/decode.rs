//! Arbitrary bytes through the scanner's framer and decoder: no panic, and the properties of
//! `check_properties` hold. The decoder is pure and depends only on `thiserror`, so it is built
//! here from its own source file rather than through the whole appliance crate.
#![no_main]

#[path = "../../src/scanner/decode.rs"]
#[allow(dead_code)]
mod decode;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    decode::check_properties(data);
});
