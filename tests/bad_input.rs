//! Malformed frames from the guest don't hurt: thousands of them (truncated
//! and mis-checksummed IPv4, IP options, fragments, unknown EtherTypes,
//! oversized length fields, garbage ARP, DHCP with overrunning options, RS,
//! NS and DHCPv6 with garbage) go through an AF_PACKET socket on the tap,
//! and within the same pasta run ping through the tap still works.

mod common;

use common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(40);
const FRAMES: u32 = 6000;

#[test]
fn malformed_guest_frames_dont_stop_pasta() {
    let tb = Testbed::new();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bad_input.py");
    let cmd = format!(
        "ping -c1 -W5 {REMOTE4} >/dev/null || {{ echo 'no ping before'; exit 2; }}
        echo sent $(python3 {script} {FRAMES} 7 {REMOTE4} {HOST4}) || exit 3
        ping -c1 -W5 {REMOTE4} || exit 4
        ping -c1 -W5 {BEYOND4} || exit 5
        ping -6 -c1 -W5 {REMOTE6} || exit 6
        echo sent $(python3 {script} {FRAMES} 8 {REMOTE4} {HOST4}) || exit 7
        ping -c1 -W5 {BEYOND4} || exit 8
        ping -6 -c1 -W5 {BEYOND6} || exit 9"
    );
    // Per-frame tracing shows the frames reached pasta and were refused.
    let log = tb.path("pasta.log");
    let log_s = log.display().to_string();
    let o = tb.pasta_output(
        &[
            "--config-net",
            "--trace",
            "-l",
            &log_s,
            "--log-size",
            "67108864",
            "--",
            "sh",
            "-c",
            &cmd,
        ],
        T,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{}:\n{out}\n{err}", o.status);
    // The frames went out (a few may be refused by a full queue).
    let sent: Vec<u32> = out
        .lines()
        .filter_map(|l| l.strip_prefix("sent "))
        .map(|n| n.trim().parse().expect("frame count"))
        .collect();
    assert_eq!(sent.len(), 2, "{out}");
    assert!(sent.iter().all(|&n| n > FRAMES / 2), "{out}");
    assert_eq!(out.matches(" 1 received").count(), 5, "{out}");
    let text = std::fs::read_to_string(&log).expect("log file");
    for why in [
        "bad IPv4 header checksum",
        "IPv4 options",
        "IPv4 fragment",
        "unknown EtherType",
        "IPv4 total length inconsistent",
        "IPv6 payload length beyond the frame",
        "runs past the end",
    ] {
        assert!(
            text.contains(why),
            "no frame dropped for {why:?}:\n{}",
            &text[..text.len().min(4000)]
        );
    }
    // Counted exactly, logged a few lines a second (rate-limited): the
    // counters at exit, not the lines, say how many were dropped.
    let dropped = counter(&text, "drop", "total");
    assert!(dropped > u64::from(FRAMES), "only {dropped} drops counted");
    let lines = text.matches("dropped").count() as u64;
    assert!(
        lines < dropped / 4,
        "{lines} drop lines for {dropped} drops"
    );
}

/// IPv4-mapped IPv6 destinations are the addresses they map for a host
/// socket: a SYN to `::ffff:127.0.0.1` on the tap must not reach a server
/// on the host's loopback, as one to `127.0.0.1` or `::1` does not. The
/// frames are dropped with a counted reason, and the server sees nothing.
#[test]
fn ipv4_mapped_destinations_never_reach_the_host() {
    let tb = Testbed::new();
    let port = 47011;
    let hit = tb.path("accepted");
    let mut server = tb.in_host("timeout");
    server.args([
        "30",
        "socat",
        "-u",
        &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
        &format!("OPEN:{},creat,append", hit.display()),
    ]);
    let mut server = server.spawn().expect("socat");
    wait_for("the loopback server", T, || {
        let o = run(tb
            .in_host("ss")
            .args(["-Htln", &format!("sport = :{port}")]));
        String::from_utf8_lossy(&o.stdout).contains("127.0.0.1")
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mapped_syn.py");
    let log = tb.path("pasta.log");
    let log_s = log.display().to_string();
    let cmd = format!(
        "echo sent $(python3 {script} {port} {HOST6}) || exit 3
        ping -6 -c1 -W5 {REMOTE6} || exit 4"
    );
    let o = tb.pasta_output(
        &[
            "--config-net",
            "--trace",
            "-l",
            &log_s,
            "--",
            "sh",
            "-c",
            &cmd,
        ],
        T,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}:\n{out}", o.status);
    assert!(out.contains("sent 3"), "{out}");
    // The ping after the SYNs came back: pasta handled the frames before.
    let text = std::fs::read_to_string(&log).expect("log file");
    let drops = text
        .matches("IPv4-mapped address in an IPv6 packet")
        .count();
    assert_eq!(drops, 3, "{}", &text[..text.len().min(4000)]);
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        !exists(&hit),
        "a SYN to an IPv4-mapped address reached the host's loopback"
    );
}
