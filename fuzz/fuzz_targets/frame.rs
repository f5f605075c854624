//! The frame path end to end: frames from the guest through the daemon's
//! dispatch, every frame back to the guest checked (see
//! `passt_rs::fuzz::datapath`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    passt_rs::fuzz::datapath::frame(data);
});
