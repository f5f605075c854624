//! TCP segmentation offload on pasta's tap device, at MTU 1500: bulk
//! transfers each way through `-t`, from the remote namespace to a server
//! in pasta's namespace, byte-exact, with the offload on (pasta's counters
//! must show super-frames: `tx_gso_frames` toward the namespace,
//! `rx_gso_frames` from it) and off (`PASST_RS_TEST_NO_TSO`: no
//! super-frame either way, everything MTU-sized as before). And a guest
//! kernel that sends no super-segment although pasta takes them (the
//! tap's TSO and GSO turned off in the namespace with `ethtool`): pasta
//! must get MTU-sized segments only, and both directions stay byte-exact.
//!
//! Every command runs under `timeout`; the guest's server announces that
//! it listens through a ready file.

mod common;

use common::tcp::*;
use common::*;
use std::time::{Duration, Instant};

/// Bytes per transfer: 100 MiB, about 70 000 segments at MTU 1500.
const SIZE: u64 = 100 << 20;

/// One transfer of [`SIZE`] bytes between the remote namespace and a
/// server in pasta's namespace (`guest_mode`: "sink" receives, "source"
/// sends) through `-t 8080` on `host_addr`, at MTU 1500, with or without
/// segmentation offload. Asserts the data arrived whole; returns pasta's
/// log (its debug output, with the exit counters).
fn transfer(host_addr: &str, guest_mode: &str, tso: bool) -> String {
    transfer_after(host_addr, guest_mode, tso, "")
}

/// [`transfer`], with `setup` (shell commands, each followed by `&&`)
/// run in pasta's namespace before the server starts.
fn transfer_after(host_addr: &str, guest_mode: &str, tso: bool, setup: &str) -> String {
    let tb = Tb::new();
    let size = SIZE.to_string();
    let remote_mode = if guest_mode == "sink" {
        "source"
    } else {
        "sink"
    };
    let ready = tb.path("ready");
    let mut pasta = pasta_sh_t(
        &tb,
        T_BULK,
        &["-d", "--config-net", "--mtu", "1500", "-t", "8080"],
        &(setup.to_string()
            + &shell(&helper(
                guest_mode,
                &[
                    "--listen",
                    "::",
                    "8080",
                    "--stall",
                    STALL,
                    "--size",
                    &size,
                    "--ready",
                    ready.to_str().unwrap(),
                ],
            ))),
    );
    if !tso {
        pasta.env("PASST_RS_TEST_NO_TSO", "1");
    }
    let guest = Bg::spawn(&tb, "pasta", pasta);
    wait_ready(&ready);
    let start = Instant::now();
    let (remote, guest, log) = pair(
        remote_helper_t(
            &tb,
            T_BULK,
            remote_mode,
            &[
                "--connect",
                host_addr,
                "8080",
                "--size",
                &size,
                "--stall",
                STALL,
            ],
        ),
        guest,
        Duration::from_secs(T_BULK),
    );
    let (sent, recv) = if guest_mode == "source" {
        (guest, remote)
    } else {
        (remote, guest)
    };
    let s = line(&sent, "sent");
    let r = line(&recv, "recv");
    assert_eq!(r[1], size, "bytes received: {recv}");
    assert_eq!(s[2], r[2], "checksums differ: {sent} / {recv}");
    eprintln!(
        "{host_addr} guest {guest_mode}, offload {tso}: {:?}; tap: tx_gso_frames={} \
         rx_gso_frames={} tx_frames={} rx_frames={}; TCP: retransmits={} partial_writes={} \
         gap_drops={}",
        start.elapsed(),
        counter(&log, "tap", "tx_gso_frames"),
        counter(&log, "tap", "rx_gso_frames"),
        counter(&log, "tap", "tx_frames"),
        counter(&log, "tap", "rx_frames"),
        tcp_counter(&log, "retransmits"),
        tcp_counter(&log, "partial_writes"),
        tcp_counter(&log, "gap_drops"),
    );
    log
}

/// With offload, data toward the namespace leaves as super-frames (far
/// fewer frames than MTU-sized segments), and data from it arrives as
/// super-segments.
fn offload_both_ways(host_addr: &str) {
    let segments = SIZE / 1500;
    let log = transfer(host_addr, "sink", true);
    let gso = counter(&log, "tap", "tx_gso_frames");
    let frames = counter(&log, "tap", "tx_frames");
    assert!(gso > 0, "no super-frame sent: {log}");
    assert!(
        frames < segments / 4,
        "{frames} frames sent for {segments} segments' worth: {log}"
    );
    let log = transfer(host_addr, "source", true);
    let gso = counter(&log, "tap", "rx_gso_frames");
    let frames = counter(&log, "tap", "rx_frames");
    assert!(gso > 0, "no super-segment received: {log}");
    assert!(
        frames < segments / 2,
        "{frames} frames received for {segments} segments' worth: {log}"
    );
}

/// Without offload, no super-frame either way.
fn no_offload_both_ways(host_addr: &str) {
    for mode in ["sink", "source"] {
        let log = transfer(host_addr, mode, false);
        assert_eq!(counter(&log, "tap", "tx_gso_frames"), 0, "{log}");
        assert_eq!(counter(&log, "tap", "rx_gso_frames"), 0, "{log}");
        assert!(
            counter(&log, "tap", "rx_frames") + counter(&log, "tap", "tx_frames") > SIZE / 1500,
            "MTU-sized frames expected: {log}"
        );
    }
}

/// The guest's kernel segments what it sends itself (TSO and GSO off on
/// its side of the tap): pasta gets no super-segment, the data from the
/// guest arrives whole, and data toward it (still super-frames, which the
/// guest's kernel takes whatever it sends) too.
fn guest_without_offload(host_addr: &str) {
    let setup = "ethtool -K eth0 tso off gso off && ";
    let log = transfer_after(host_addr, "source", true, setup);
    assert_eq!(counter(&log, "tap", "rx_gso_frames"), 0, "{log}");
    assert!(
        counter(&log, "tap", "rx_frames") > SIZE / 1500,
        "MTU-sized frames expected: {log}"
    );
    let log = transfer_after(host_addr, "sink", true, setup);
    assert_eq!(counter(&log, "tap", "rx_gso_frames"), 0, "{log}");
    assert!(counter(&log, "tap", "tx_gso_frames") > 0, "{log}");
}

#[test]
fn mtu1500_guest_without_offload_ipv4() {
    guest_without_offload(HOST4);
}

#[test]
fn mtu1500_guest_without_offload_ipv6() {
    guest_without_offload(HOST6);
}

#[test]
fn mtu1500_offload_ipv4() {
    offload_both_ways(HOST4);
}

#[test]
fn mtu1500_offload_ipv6() {
    offload_both_ways(HOST6);
}

#[test]
fn mtu1500_no_offload_ipv4() {
    no_offload_both_ways(HOST4);
}

#[test]
fn mtu1500_no_offload_ipv6() {
    no_offload_both_ways(HOST6);
}
