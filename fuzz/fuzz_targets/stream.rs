//! `cargo fuzz run stream`: see `passt_rs::fuzz::parsers::stream`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| passt_rs::fuzz::parsers::stream(data));
