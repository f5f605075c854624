//! No allocation per packet: pasta counts its heap allocations
//! (`passt_rs::CountingAlloc`) and logs the total at exit. Two runs move
//! the same flows (a bulk TCP transfer each way, a TCP request/response
//! loop, a UDP stream), the second ten times as much: allocations may
//! depend on the flows (and start-up), not on the packets, so the two
//! totals must be close, while the frames differ by more than ten thousand
//! (they are up to 64 KiB each, with segmentation offload).

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

const PORT: u16 = 47100;

fn allocations(tb: &Testbed, scale: u32) -> (u64, u64) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/alloc_load.py");
    let log = tb.path(&format!("pasta-{scale}.log"));
    let log_s = log.display().to_string();
    let cmd = format!("python3 {script} client {BEYOND4} {PORT} {scale}");
    let out = in_pasta(tb, &["-d", "-l", &log_s], &cmd);
    assert!(out.contains("done"), "{out}");
    let text = std::fs::read_to_string(&log).expect("pasta log");
    (
        counter(&text, "alloc", "allocations"),
        counter(&text, "tap", "rx_frames") + counter(&text, "tap", "tx_frames"),
    )
}

#[test]
fn allocations_do_not_grow_with_packets() {
    let tb = Testbed::new();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/alloc_load.py");
    let mut server = tb.in_remote("timeout");
    server
        .args([
            "120",
            "python3",
            script,
            "server",
            &PORT.to_string(),
            BEYOND4,
        ])
        .stdout(Stdio::piped());
    let mut server = server.spawn().expect("load server");
    let mut ready = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("server ready");
    assert_eq!(ready.trim(), "ready");
    let (small, small_frames) = allocations(&tb, 1);
    let (large, large_frames) = allocations(&tb, 10);
    let _ = server.kill();
    let _ = server.wait();
    eprintln!("allocations: {small} for {small_frames} frames, {large} for {large_frames} frames");
    assert!(
        large_frames > 5 * small_frames,
        "{small_frames} {large_frames}"
    );
    // A per-packet allocation would add thousands; logging and timers
    // may add a few per second of run time.
    let grown = large.saturating_sub(small);
    assert!(grown < 500, "allocations grew by {grown} with the packets");
}
