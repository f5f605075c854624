//! DNS forwarding (`--dns-forward`): queries from the namespace to the
//! forward address reach the host's resolver (a small DNS server in the
//! remote namespace, the host's `nameserver`), over UDP (busybox nslookup,
//! dig) and TCP (dig +tcp), and the answers come back from the forward
//! address.

mod common;

use common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// The DNS server on the remote host's addresses (the host namespace's
/// resolvers); its log of queries is `dns.log`.
fn dns_server(tb: &Testbed) -> Guard {
    let ready = tb.path("dns.ready");
    let log = std::fs::File::create(tb.path("dns.log")).expect("log");
    let child = tb
        .in_remote("python3")
        .arg(format!(
            "{}/tests/dns_server.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args(["--bind", REMOTE4, "--bind", REMOTE6, "--ready"])
        .arg(&ready)
        .stdout(log)
        .spawn()
        .expect("DNS server");
    let g = Guard(child);
    wait_for("the DNS server", T, || ready.exists());
    g
}

fn queries(tb: &Testbed) -> String {
    std::fs::read_to_string(tb.path("dns.log")).unwrap_or_default()
}

#[test]
fn podman_dns_forward_udp_and_tcp() {
    let tb = Testbed::new();
    let _dns = dns_server(&tb);
    let out = in_pasta(
        &tb,
        &["--dns-forward", "169.254.1.1"],
        "busybox nslookup one.example.test 169.254.1.1 && \
         echo --- && dig +short +tries=3 +time=2 @169.254.1.1 two.example.test A && \
         echo --- && dig +tcp +short +tries=3 +time=2 @169.254.1.1 three.example.test A",
    );
    let parts: Vec<&str> = out.split("---").collect();
    assert_eq!(parts.len(), 3, "{out}");
    // busybox nslookup accepts the answer only from the server it asked.
    assert!(parts[0].contains("203.0.113.7"), "{out}");
    assert!(parts[0].contains("169.254.1.1"), "{out}");
    assert_eq!(parts[1].trim(), "203.0.113.7", "{out}");
    assert_eq!(parts[2].trim(), "203.0.113.7", "{out}");
    wait_for("the server's log", T, || {
        let q = queries(&tb);
        q.contains("udp one.example.test 1")
            && q.contains("udp two.example.test 1")
            && q.contains("tcp three.example.test 1")
    });
}

#[test]
fn dns_forward_ipv6() {
    let tb = Testbed::new();
    let _dns = dns_server(&tb);
    let out = in_pasta(
        &tb,
        &["--dns-forward", "fd00::53"],
        "dig +short +tries=3 +time=2 @fd00::53 four.example.test AAAA && \
         echo --- && dig +tcp +short +tries=3 +time=2 @fd00::53 five.example.test AAAA",
    );
    let parts: Vec<&str> = out.split("---").collect();
    assert_eq!(parts.len(), 2, "{out}");
    assert_eq!(parts[0].trim(), "2001:db8:ffff::7", "{out}");
    assert_eq!(parts[1].trim(), "2001:db8:ffff::7", "{out}");
    let q = queries(&tb);
    assert!(q.contains("udp four.example.test 28"), "{q}");
    assert!(q.contains("tcp five.example.test 28"), "{q}");
}
