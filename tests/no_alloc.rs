//! No allocation per packet: pasta counts its heap allocations
//! (`passt_rs::CountingAlloc`) and logs the total at exit. Two runs move
//! the same flows (a bulk TCP transfer each way, a TCP request/response
//! loop, a UDP stream), the second ten times as much: allocations may
//! depend on the flows (and start-up), not on the packets, so the two
//! totals must be close, while the frames differ by more than ten thousand
//! (they are up to 64 KiB each, with segmentation offload).
//!
//! The same for passt, on the stream socket and on vhost-user: its guest is
//! a namespace whose tap a relay connects to passt (`common/relay.rs`), so
//! the same load script runs on a real kernel.

mod common;
#[path = "common/relay.rs"]
mod relay;
#[path = "common/vhost.rs"]
mod vu;

use common::*;
use relay::{GuestNs, VhostRelay};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

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

/// Starts the load server in `tb`'s remote namespace.
fn load_server(tb: &Testbed) -> Guard {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/alloc_load.py");
    let mut server = tb.in_remote("timeout");
    server
        .args([
            "240",
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
    Guard(server)
}

#[test]
fn allocations_do_not_grow_with_packets() {
    let tb = Testbed::new();
    let _server = load_server(&tb);
    let (small, small_frames) = allocations(&tb, 1);
    let (large, large_frames) = allocations(&tb, 10);
    check("pasta", (small, small_frames), (large, large_frames));
}

/// The comparison of a 1x and a 10x run: frames grow, allocations do not.
fn check(what: &str, (small, small_frames): (u64, u64), (large, large_frames): (u64, u64)) {
    eprintln!(
        "{what}: allocations: {small} for {small_frames} frames, {large} for {large_frames} frames"
    );
    assert!(
        large_frames > 5 * small_frames,
        "{small_frames} {large_frames}"
    );
    // A per-packet allocation would add thousands; logging and timers
    // may add a few per second of run time.
    let grown = large.saturating_sub(small);
    assert!(
        grown < 500,
        "{what}: allocations grew by {grown} with the packets"
    );
}

/// One passt run (a fresh passt and guest namespace) with the load at
/// `scale`: (allocations, frames) from passt's exit log.
fn passt_allocations(tb: &Testbed, vhost_user: bool, scale: u32) -> (u64, u64) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/alloc_load.py");
    let guest = GuestNs::new(tb);
    let sock = tb.path(&format!("passt-{scale}.socket"));
    let log = tb.path(&format!("passt-{scale}.log"));
    let mut c = tb.in_host(passt());
    c.args(["-f", "-d", "-s"]).arg(&sock);
    if vhost_user {
        c.arg("--vhost-user");
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("passt log"));
    let mut child = Guard(c.spawn().expect("start passt"));
    // Either relay connects with retries while passt starts.
    let (stream, vhost) = if vhost_user {
        (None, Some(VhostRelay::start(&guest, &sock, "tap0")))
    } else {
        (Some(relay::stream_relay(&guest, &sock, "tap0")), None)
    };
    let out = must(guest.cmd("timeout").args([
        "120",
        "python3",
        script,
        "client",
        BEYOND4,
        &PORT.to_string(),
        &scale.to_string(),
    ]));
    assert!(out.contains("done"), "{out}");
    // SIGTERM: passt ends its loop cleanly and logs its counters.
    let pid = rustix::process::Pid::from_raw(child.0.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM passt");
    let end = Instant::now() + Duration::from_secs(20);
    while child.0.try_wait().expect("wait passt").is_none() {
        assert!(Instant::now() < end, "passt did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop((stream, vhost));
    let text = std::fs::read_to_string(&log).expect("passt log");
    (
        counter(&text, "alloc", "allocations"),
        counter(&text, "tap", "rx_frames") + counter(&text, "tap", "tx_frames"),
    )
}

#[test]
fn passt_allocations_do_not_grow_with_packets() {
    let tb = Testbed::new();
    let _server = load_server(&tb);
    let small = passt_allocations(&tb, false, 1);
    let large = passt_allocations(&tb, false, 10);
    check("passt (stream socket)", small, large);
}

#[test]
fn passt_vhost_user_allocations_do_not_grow_with_packets() {
    let tb = Testbed::new();
    let _server = load_server(&tb);
    let small = passt_allocations(&tb, true, 1);
    let large = passt_allocations(&tb, true, 10);
    check("passt (vhost-user)", small, large);
}
