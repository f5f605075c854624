//! ICMP and ICMPv6 echo from the namespace, through ping sockets: to the
//! gateway (mapped to the host's loopback), to a host address, and beyond
//! the host.

mod common;

use common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(40);

fn ping_all(tb: &Testbed, extra: &[&str], targets: &[(&str, &str)]) {
    let script: Vec<String> = targets
        .iter()
        .map(|(cmd, addr)| format!("{cmd} -c3 -i0.2 -W3 {addr} || exit 1"))
        .collect();
    let script = script.join("\n");
    let mut args: Vec<&str> = vec!["--config-net"];
    args.extend(extra);
    args.extend(["--", "sh", "-c", &script]);
    let o = tb.pasta_output(&args, T);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "ping failed:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Three replies each, with the sequence numbers ping expects.
    for (_, addr) in targets {
        assert!(
            out.contains(&format!("--- {addr} ping statistics ---")),
            "{out}"
        );
    }
    assert_eq!(out.matches("3 received").count(), targets.len(), "{out}");
    for seq in 1..=3 {
        assert!(out.contains(&format!("icmp_seq={seq} ")), "{out}");
    }
}

#[test]
fn ping_gateway_host_and_beyond_ipv4() {
    let tb = Testbed::new();
    // The guest gets another address than the host's, so that the host's
    // own address is reached through the tap.
    ping_all(
        &tb,
        &["-a", "192.0.2.3", "-n", "24", "-g", REMOTE4],
        &[("ping", REMOTE4), ("ping", HOST4), ("ping", BEYOND4)],
    );
}

#[test]
fn ping_gateway_host_and_beyond_ipv6() {
    let tb = Testbed::new();
    ping_all(
        &tb,
        &["-a", "2001:db8::3"],
        &[
            ("ping -6", REMOTE6),
            ("ping -6", HOST6),
            ("ping -6", BEYOND6),
        ],
    );
}

#[test]
fn gateway_is_the_hosts_loopback() {
    // With the remote namespace's address unreachable (its link down), the
    // gateway still answers: it is the host's own loopback.
    let tb = Testbed::new();
    must(tb.in_remote("ip").args(["link", "set", "eth0", "down"]));
    ping_all(&tb, &[], &[("ping", REMOTE4), ("ping -6", REMOTE6)]);
}

#[test]
fn no_icmp_disables_echo() {
    let tb = Testbed::new();
    let o = tb.pasta_output(
        &[
            "--config-net",
            "--no-icmp",
            "--",
            "ping",
            "-c1",
            "-W1",
            BEYOND4,
        ],
        T,
    );
    assert!(!o.status.success(), "{o:?}");
}
