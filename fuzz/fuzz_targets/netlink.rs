//! `cargo fuzz run netlink`: see `passt_rs::fuzz::parsers::netlink`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| passt_rs::fuzz::parsers::netlink(data));
