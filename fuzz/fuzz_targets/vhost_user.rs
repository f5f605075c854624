//! `cargo fuzz run vhost_user`: see `passt_rs::fuzz::parsers::vhost_user`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| passt_rs::fuzz::parsers::vhost_user(data));
