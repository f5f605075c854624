//! Entry points for the coverage-guided fuzz targets (`fuzz/`, `cargo fuzz`).
//!
//! Built only with the `fuzzing` feature. Each function takes the fuzzer's
//! bytes, drives one parser or one path of the daemon with them, and panics
//! only when an invariant is broken: a panic here is a finding.

pub mod datapath;
pub mod parsers;
