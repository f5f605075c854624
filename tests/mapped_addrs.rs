//! Our own mapped addresses only where mapped (issue 11, part 4): the
//! gateway address reaches the host's loopback (127.0.0.1, ::1) by
//! default, and not with `--no-map-gw` or `--map-host-loopback none`,
//! where it is the real gateway (the remote); `--map-host-loopback ADDR`
//! maps ADDR instead of the gateway; `--map-guest-addr ADDR` reaches the
//! host's own address, and without it ADDR is just a remote address.
//! TCP and UDP, both families; the servers log who reached them, so that
//! "not reached" is observed, not inferred from a client's error.
//!
//! In [`from_tap`](../src/fwd/mod.rs) one function maps these addresses:
//! these tests hold its decisions against real sockets.

mod common;

use common::*;
use std::path::PathBuf;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers.py");
const PORT: u16 = 47420;
/// Not routed from the host (an `unreachable` route there), so that an
/// unmapped connection to them fails at once.
const MAPPED4: &str = "203.0.113.1";
const MAPPED6: &str = "2001:db8:99::1";
const GUEST4: &str = "203.0.113.2";
const GUEST6: &str = "2001:db8:99::2";

struct Bed {
    tb: Testbed,
    /// Logs of the servers on the host's loopback, on the host's own
    /// addresses and on the remote.
    lo: PathBuf,
    own: PathBuf,
    remote: PathBuf,
    _servers: Vec<Guard>,
}

fn bed() -> Bed {
    let tb = Testbed::new();
    // The prefixes of MAPPED4/GUEST4 and MAPPED6/GUEST6.
    must(tb.in_host("sh").arg("-c").arg(
        "ip route add unreachable 203.0.113.0/24 && ip -6 route add unreachable 2001:db8:99::/64",
    ));
    let p = |n: &str| tb.path(n).display().to_string();
    let port = PORT.to_string();
    let mut servers = Vec::new();
    for (name, ns_host, addrs) in [
        ("lo", true, ["127.0.0.1", "::1"]),
        ("own", true, [HOST4, HOST6]),
        ("remote", false, [REMOTE4, REMOTE6]),
    ] {
        let mut c = if ns_host {
            tb.in_host("python3")
        } else {
            tb.in_remote("python3")
        };
        c.arg(SCRIPT)
            .args(["who", name, &p(&format!("{name}.ready")), &p(name)])
            .args(addrs.iter().map(|a| format!("[{a}]:{port}")));
        servers.push(Guard(c.spawn().expect("server")));
    }
    for name in ["lo", "own", "remote"] {
        let f = tb.path(&format!("{name}.ready"));
        wait_for(name, T, || f.exists());
    }
    Bed {
        lo: tb.path("lo"),
        own: tb.path("own"),
        remote: tb.path("remote"),
        tb,
        _servers: servers,
    }
}

/// Asks each of `addrs` (TCP and UDP, port [`PORT`]) from pasta's
/// namespace with `args`; returns one answer per address and protocol,
/// "tcp ADDR ANSWER", in order.
fn ask(b: &Bed, args: &[&str], addrs: &[&str]) -> Vec<String> {
    let list: Vec<String> = addrs.iter().map(|a| format!("{a} {PORT}")).collect();
    let mut all = vec!["--config-net"];
    all.extend_from_slice(args);
    let out = in_pasta(
        &b.tb,
        &all,
        &format!("python3 {SCRIPT} ask {}", list.join(" ")),
    );
    eprintln!("{args:?}: {out}");
    out.lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {}", w[0], w[1], w[3])
        })
        .collect()
}

fn log(p: &PathBuf) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Expected answers: each address answered by `who` over TCP and UDP.
fn want(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(a, w)| [format!("tcp {a} {w}"), format!("udp {a} {w}")])
        .collect()
}

#[test]
fn gateway_reaches_the_host_loopback_by_default() {
    let b = bed();
    let got = ask(&b, &[], &[REMOTE4, REMOTE6]);
    assert_eq!(got, want(&[(REMOTE4, "lo"), (REMOTE6, "lo")]));
    assert_eq!(log(&b.lo).lines().count(), 4, "{}", log(&b.lo));
    assert_eq!(log(&b.remote), "");
}

/// `--no-map-gw` and `--map-host-loopback none`: the gateway is the
/// gateway, nothing reaches the host's loopback.
#[test]
fn unmapped_gateway_never_reaches_the_host_loopback() {
    for opt in [&["--no-map-gw"][..], &["--map-host-loopback", "none"]] {
        let b = bed();
        let got = ask(&b, opt, &[REMOTE4, REMOTE6]);
        assert_eq!(
            got,
            want(&[(REMOTE4, "remote"), (REMOTE6, "remote")]),
            "{opt:?}"
        );
        assert_eq!(log(&b.lo), "", "{opt:?}: reached the host's loopback");
        assert_eq!(log(&b.own), "", "{opt:?}");
        // The remote saw the host's own addresses, not a loopback.
        assert_eq!(
            log(&b.remote),
            format!("tcp {HOST4}\nudp {HOST4}\ntcp {HOST6}\nudp {HOST6}\n"),
            "{opt:?}"
        );
    }
}

/// `--map-host-loopback ADDR`: ADDR is the host, the gateway is not.
#[test]
fn map_host_loopback_maps_only_its_address() {
    let b = bed();
    let args = [
        "--map-host-loopback",
        MAPPED4,
        "--map-host-loopback",
        MAPPED6,
    ];
    let got = ask(&b, &args, &[MAPPED4, MAPPED6, REMOTE4, REMOTE6]);
    assert_eq!(
        got,
        want(&[
            (MAPPED4, "lo"),
            (MAPPED6, "lo"),
            (REMOTE4, "remote"),
            (REMOTE6, "remote"),
        ])
    );
    assert_eq!(log(&b.lo).lines().count(), 4, "{}", log(&b.lo));
    assert_eq!(log(&b.remote).lines().count(), 4, "{}", log(&b.remote));
}

/// `--map-guest-addr ADDR`: ADDR reaches the host's own address (not its
/// loopback); without the option it is a remote address like any other,
/// unreachable here, and reaches no server of the host.
#[test]
fn map_guest_addr_reaches_the_host_only_where_configured() {
    let b = bed();
    let args = ["--map-guest-addr", GUEST4, "--map-guest-addr", GUEST6];
    let got = ask(&b, &args, &[GUEST4, GUEST6]);
    assert_eq!(got, want(&[(GUEST4, "own"), (GUEST6, "own")]));
    assert_eq!(log(&b.own).lines().count(), 4, "{}", log(&b.own));
    assert_eq!(log(&b.lo), "");

    let b = bed();
    let got = ask(&b, &[], &[GUEST4, GUEST6]);
    for g in &got {
        assert!(
            !g.ends_with(" own") && !g.ends_with(" lo") && !g.ends_with(" remote"),
            "an unmapped address was answered: {got:?}"
        );
    }
    assert_eq!(log(&b.own), "");
    assert_eq!(log(&b.lo), "");
    assert_eq!(log(&b.remote), "");
}
