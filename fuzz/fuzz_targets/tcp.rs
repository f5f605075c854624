//! TCP's state machine: a guest sending arbitrary segment sequences
//! against real host sockets, invariants checked after each step (see
//! `passt_rs::fuzz::datapath`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    passt_rs::fuzz::datapath::tcp(data);
});
