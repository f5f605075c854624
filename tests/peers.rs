//! Misbehaving peers through pasta (issue 11, part 4): while a reference
//! byte-exact bulk transfer runs from pasta's namespace to a remote sink,
//! other peers misbehave, and no flow of another peer is disturbed:
//!
//! - (a) a host peer that accepts and does not read for 20 s (the guest's
//!   sender meets a zero window), then reads everything;
//! - (b) a host peer that resets mid-transfer (`SO_LINGER` 0): the guest's
//!   sender sees the reset;
//! - (c) a host peer that half-closes at once and keeps reading: the
//!   guest sees its EOF and the rest of its data arrives;
//! - (d) a remote that answers UDP with ICMP port unreachable and TCP
//!   connections with ICMP port and host unreachable (nftables `reject`
//!   rules in the remote namespace): the guest gets ECONNREFUSED or
//!   EHOSTUNREACH, promptly.
//!
//! The reference is timed alone, then during (a) to (d), back to back in
//! the same run; its rate during must be at least half of its rate alone
//! (one retry of the whole scenario: the test hosts are shared). The
//! peers run tests/peers.py.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers.py");
/// The reference transfer, each time.
const REF_SIZE: u64 = 1 << 30;
/// What the guest sends to the stalled peer: well over what the sockets
/// on the way buffer, so its window closes.
const STALL_SIZE: u64 = 64 << 20;
/// How long the stalled peer does not read: longer than the reference
/// transfer, so that the whole of it runs against the zero window.
const STALL_S: u32 = 20;
/// What the guest sends to the half-closed peer.
const HALF_SIZE: u64 = 16 << 20;
/// What the resetting peer reads before its reset.
const RESET_AFTER: u64 = 1 << 20;

const SINK_PORT: u16 = 47400;
/// nftables rejects TCP to this port with ICMP port unreachable, to the
/// next with ICMP host unreachable.
const REJECT_PORT: u16 = 47401;
const UDP_CLOSED: u16 = 47403;
const STALL_PORT: u16 = 47410;
const RESET_PORT: u16 = 47411;
const HALF_PORT: u16 = 47412;

fn py(tb_cmd: &mut Command, args: &[&str]) -> Guard {
    tb_cmd.arg(SCRIPT).args(args);
    Guard(tb_cmd.spawn().expect("peer"))
}

/// The (size, sha256) line peers.py expects for a stream of `size` bytes.
fn expected(size: u64) -> String {
    must(Command::new("python3").args([SCRIPT, "expected", &size.to_string()]))
        .trim()
        .to_string()
}

/// The words of the first stdout line starting with `tag`.
fn line<'a>(out: &'a str, tag: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(tag))
        .unwrap_or_else(|| panic!("no '{tag}' line in: {out}"))
        .split_whitespace()
        .collect()
}

fn read_when_there(p: &Path) -> String {
    wait_for(&p.display().to_string(), Duration::from_secs(60), || {
        p.exists()
    });
    std::fs::read_to_string(p).unwrap().trim().to_string()
}

/// One run of the scenario; returns the reference's rate during the
/// misbehaviour over its rate alone. Asserts everything else.
fn scenario(v6: bool) -> f64 {
    let tb = Testbed::new();
    let (beyond, gw) = if v6 {
        (BEYOND6, REMOTE6)
    } else {
        (BEYOND4, REMOTE4)
    };
    // The remote: a sink, and REJECT rules for (d). Its kernel would
    // rate-limit the ICMP errors toward one destination (a burst of 6,
    // then one a second), which is not what is tested here.
    must(tb.in_remote("sysctl").args([
        "-qw",
        "net.ipv4.icmp_ratelimit=0",
        "net.ipv4.icmp_msgs_per_sec=100000",
        "net.ipv4.icmp_msgs_burst=10000",
        "net.ipv6.icmp.ratelimit=0",
    ]));
    must(tb.in_remote("nft").arg(format!(
        "add table inet peers
         add chain inet peers in {{ type filter hook input priority 0; }}
         add rule inet peers in tcp dport {REJECT_PORT} reject with icmpx type port-unreachable
         add rule inet peers in tcp dport {} reject with icmpx type host-unreachable",
        REJECT_PORT + 1
    )));
    let p = |n: &str| tb.path(n).display().to_string();
    let _sink = py(
        &mut tb.in_remote("python3"),
        &["sink", &SINK_PORT.to_string(), &p("sink.ready")],
    );
    // The misbehaving host peers, on the host's loopback (the guest
    // reaches them through the gateway address).
    let host_py = || {
        let mut c = tb.in_host("python3");
        c.env("V6", if v6 { "1" } else { "0" });
        c
    };
    let _stall = py(
        &mut host_py(),
        &[
            "stall",
            &STALL_PORT.to_string(),
            &p("stall.ready"),
            &STALL_S.to_string(),
            &p("stall.out"),
        ],
    );
    let _reset = py(
        &mut host_py(),
        &[
            "reset",
            &RESET_PORT.to_string(),
            &p("reset.ready"),
            &RESET_AFTER.to_string(),
            &p("reset.out"),
        ],
    );
    let _half = py(
        &mut host_py(),
        &[
            "halfclose",
            &HALF_PORT.to_string(),
            &p("half.ready"),
            &p("half.out"),
        ],
    );
    for r in ["sink", "stall", "reset", "half"] {
        let f = tb.path(&format!("{r}.ready"));
        wait_for(&format!("the {r} peer"), T, || f.exists());
    }
    let guest = format!(
        "python3 {SCRIPT} guest {beyond} {SINK_PORT} {REF_SIZE} {gw} \
         {STALL_PORT} {RESET_PORT} {HALF_PORT} {STALL_SIZE} {HALF_SIZE} \
         {UDP_CLOSED} {beyond} {REJECT_PORT} {beyond}"
    );
    let o = tb.pasta_output(&["--config-net", "--", "sh", "-c", &guest], T);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{}:\n{out}\n{err}", o.status);
    eprintln!("{out}");

    // The reference, byte-exact both times.
    let alone = line(&out, "alone");
    let during = line(&out, "during");
    assert_eq!(alone[2], "ok", "{out}");
    assert_eq!(during[2], "ok", "{out}");
    let (ta, td): (f64, f64) = (alone[1].parse().unwrap(), during[1].parse().unwrap());

    // (a) The window closed, then everything arrived, byte-exact.
    assert_eq!(line(&out, "stall"), ["stall", "blocked"], "{out}");
    let stalled = read_when_there(&tb.path("stall.out"));
    let w: Vec<&str> = stalled.split_whitespace().collect();
    assert_eq!(
        w[..2].join(" "),
        expected(STALL_SIZE),
        "stalled peer: {out}"
    );
    // The reference ran within the stall (which started before it).
    let stalled_s: f64 = w[2].parse().unwrap();
    assert!(td < stalled_s, "the reference outlasted the stall: {out}");
    assert!(
        out.lines().any(|l| l == "stall sent"),
        "the stalled flow did not finish: {out}"
    );
    // (b) The reset reached the guest's sender.
    let reset = read_when_there(&tb.path("reset.out"));
    assert!(reset.starts_with("aborted"), "{reset}");
    let r = line(&out, "reset");
    assert!(
        r[1] == "error" && (r[2] == "ECONNRESET" || r[2] == "EPIPE"),
        "reset: {out}"
    );
    // (c) The guest saw the peer's EOF and all its data arrived.
    assert_eq!(
        line(&out, "half"),
        [
            "half",
            "eof",
            "True",
            "sent",
            &HALF_SIZE.to_string(),
            "closed",
            "True"
        ],
        "{out}"
    );
    assert_eq!(read_when_there(&tb.path("half.out")), expected(HALF_SIZE));
    // (d) Each attempt got its ICMP error as an errno, promptly (no
    // "-slow", no timeout, nothing answered or connected). A refused TCP
    // connection is a RST to the guest: ECONNREFUSED, also for host
    // unreachable, or EHOSTUNREACH if pasta relays the ICMP error.
    let icmp = line(&out, "icmp");
    assert!(icmp.len() >= 3, "{out}");
    for kv in &icmp[1..] {
        let (k, n) = kv.split_once('=').unwrap();
        assert!(n.parse::<u32>().unwrap() >= 3, "{out}");
        assert!(
            matches!(
                k,
                "udp:ECONNREFUSED"
                    | "rej:ECONNREFUSED"
                    | "unreach:EHOSTUNREACH"
                    | "unreach:ECONNREFUSED"
            ),
            "unexpected outcome {k}: {out}"
        );
    }
    for want in ["udp:", "rej:", "unreach:"] {
        assert!(icmp.iter().any(|kv| kv.starts_with(want)), "{out}");
    }
    ta / td
}

fn misbehaving_peers(v6: bool) {
    let mut ratio = scenario(v6);
    eprintln!("rate during / rate alone: {ratio:.2}");
    if ratio < 0.5 {
        // The test hosts are shared: one retry.
        ratio = ratio.max(scenario(v6));
        eprintln!("retry: best rate during / rate alone: {ratio:.2}");
    }
    assert!(
        ratio >= 0.5,
        "the reference transfer fell to {ratio:.2} of its rate"
    );
}

#[test]
fn misbehaving_peers_do_not_disturb_a_transfer_ipv4() {
    misbehaving_peers(false);
}

#[test]
fn misbehaving_peers_do_not_disturb_a_transfer_ipv6() {
    misbehaving_peers(true);
}
