//! `cargo fuzz run dns_name`: see `passt_rs::fuzz::parsers::dns_name`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| passt_rs::fuzz::parsers::dns_name(data));
