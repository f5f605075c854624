//! `cargo fuzz run cli`: see `passt_rs::fuzz::parsers::cli`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| passt_rs::fuzz::parsers::cli(data));
