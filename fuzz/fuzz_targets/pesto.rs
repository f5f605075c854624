//! `cargo fuzz run pesto`: see `passt_rs::fuzz::parsers::pesto`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| passt_rs::fuzz::parsers::pesto(data));
