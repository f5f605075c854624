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

#[test]
fn pcap_captures_both_directions() {
    let tb = Testbed::new();
    let pcap = tb.path("capture.pcap");
    let pcap_s = pcap.display().to_string();
    let o = tb.pasta_output(
        &[
            "--config-net",
            "-p",
            &pcap_s,
            "--",
            "ping",
            "-c1",
            "-W3",
            REMOTE4,
        ],
        T,
    );
    assert!(o.status.success(), "{o:?}");
    let data = std::fs::read(&pcap).expect("pcap file");
    assert_eq!(&data[..4], &0xa1b2_c3d4u32.to_ne_bytes(), "pcap magic");
    assert_eq!(
        u32::from_ne_bytes(data[20..24].try_into().unwrap()),
        1,
        "Ethernet"
    );
    // Walk the records: an echo request (ICMP type 8) from the namespace
    // and a reply (type 0) to it.
    let (mut off, mut types) = (24, Vec::new());
    while off + 16 <= data.len() {
        let caplen = u32::from_ne_bytes(data[off + 8..off + 12].try_into().unwrap()) as usize;
        let frame = &data[off + 16..(off + 16 + caplen).min(data.len())];
        if frame.len() > 34 && frame[12..14] == [0x08, 0x00] && frame[23] == 1 {
            types.push(frame[34]);
        }
        off += 16 + caplen;
    }
    assert_eq!(off, data.len(), "records end at the end of the file");
    assert!(
        types.contains(&8) && types.contains(&0),
        "ICMP types seen: {types:?}"
    );
}

/// The router the namespace learns from our router advertisement is our
/// link-local address (the host's own on its template interface, as the
/// host's gateway is global here): it answers ping, and TCP and UDP to it
/// reach the host's servers on that interface, as upstream (which gives
/// the link-local address its host interface as scope).
#[test]
fn router_link_local_answers_ping_tcp_and_udp() {
    let tb = Testbed::new();
    let server = |args: &[&str]| {
        let mut c = tb.in_host("socat");
        c.args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        Guard(c.spawn().expect("socat"))
    };
    let _tcp = server(&["TCP6-LISTEN:8089,fork,reuseaddr", "SYSTEM:echo hello-tcp"]);
    let _udp = server(&["UDP6-RECVFROM:8090,fork,reuseaddr", "SYSTEM:echo hello-udp"]);
    wait_for("the host's servers", T, || {
        let ss = must(tb.in_host("ss").args(["-Hlntu"]));
        ss.contains(":8089") && ss.contains(":8090")
    });
    // The host's link-local address answers once its duplicate address
    // detection is over (the test bed is only just up).
    wait_for("the host's link-local address", T, || {
        let a = must(
            tb.in_host("ip")
                .args(["-6", "addr", "show", "dev", "eth0", "scope", "link"]),
        );
        a.contains("fe80:") && !a.contains("tentative")
    });
    // No --config-net: the default route comes from our RA.
    let script = "sysctl -qw net.ipv6.conf.eth0.accept_dad=0; ip link set eth0 up
        for i in $(seq 100); do ip -6 route show default | grep -q fe80: && break; sleep 0.1; done
        gw=$(ip -6 route show default | awk '{ print $3; exit }')
        echo \"ROUTER $gw\"
        ping -6 -c3 -i0.2 -W3 \"$gw%eth0\" || exit 1
        socat -t3 - \"TCP6:[$gw%eth0]:8089\" </dev/null || exit 2
        echo probe | socat -t3 - \"UDP6:[$gw%eth0]:8090\" || exit 3";
    let o = tb.pasta_output(&["--", "sh", "-c", script], T);
    let out = String::from_utf8_lossy(&o.stdout);
    let ctx = format!("{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{ctx}");
    assert!(out.contains("ROUTER fe80:"), "{ctx}");
    assert!(out.contains("3 received"), "{ctx}");
    assert!(
        out.contains("hello-tcp") && out.contains("hello-udp"),
        "{ctx}"
    );
}
