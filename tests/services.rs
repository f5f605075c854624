//! The namespace configures itself like a VM would, against our built-in
//! DHCP, DHCPv6 and NDP services, with real clients: busybox udhcpc,
//! dhclient (-4 and -6), the kernel's SLAAC, rdisc6 and ndisc6. Each
//! `--no-*` switch turns its service off.

mod common;

use common::*;
use std::collections::HashMap;
use std::time::Duration;

const T: Duration = Duration::from_secs(40);

/// Writes a client hook script that dumps its environment to `out` when a
/// lease is bound.
fn hook(tb: &Testbed, name: &str, out: &std::path::Path) -> String {
    let path = tb.path(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\ncase \"$1$reason\" in bound*|renew*|BOUND*|REBOOT*|RENEW*) env > {} ;; esac\nexit 0\n",
            out.display()
        ),
    )
    .unwrap();
    must(std::process::Command::new("chmod").arg("755").arg(&path));
    path.display().to_string()
}

fn udhcpc(tb: &Testbed, extra: &[&str]) -> (bool, HashMap<String, String>) {
    let lease = tb.path(&format!("udhcpc-{}.env", extra.join("_")));
    let script = hook(tb, &format!("udhcpc-{}.sh", extra.join("_")), &lease);
    let cmd = format!(
        "ip link set eth0 up && busybox udhcpc -i eth0 -f -q -n -t 3 -T 1 -O mtu -O search -s {script}"
    );
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--", "sh", "-c", &cmd]);
    let o = tb.pasta_output(&args, T);
    (o.status.success(), env_file(&lease))
}

#[test]
fn udhcpc_gets_address_router_mtu_and_dns_when_asked() {
    let tb = Testbed::new();
    let (ok, env) = udhcpc(&tb, &[]);
    assert!(ok, "udhcpc failed");
    assert_eq!(env.get("ip").map(String::as_str), Some(HOST4), "{env:?}");
    assert_eq!(env.get("subnet").map(String::as_str), Some("255.255.255.0"));
    assert_eq!(env.get("router").map(String::as_str), Some(REMOTE4));
    assert_eq!(env.get("mtu").map(String::as_str), Some("65520"));
    assert_eq!(env.get("lease").map(String::as_str), Some("4294967295"));
    // pasta announces no DNS unless asked to.
    assert!(!env.contains_key("dns"), "{env:?}");
    assert!(!env.contains_key("search"), "{env:?}");

    let (ok, env) = udhcpc(&tb, &["--dhcp-dns", "--dhcp-search"]);
    assert!(ok);
    assert_eq!(env.get("dns").map(|s| s.trim()), Some(REMOTE4), "{env:?}");
    assert_eq!(
        env.get("search").map(|s| s.trim()),
        Some("example.org test.internal"),
        "{env:?}"
    );
}

#[test]
fn no_dhcp_disables_dhcp() {
    let tb = Testbed::new();
    let (ok, env) = udhcpc(&tb, &["--no-dhcp"]);
    assert!(!ok, "udhcpc got a lease despite --no-dhcp: {env:?}");
    assert!(env.is_empty());
}

#[test]
fn dhclient_gets_the_lease() {
    let tb = Testbed::new();
    let lease = tb.path("dhclient.env");
    let script = hook(&tb, "dhclient.sh", &lease);
    let cmd = format!(
        "ip link set eth0 up && dhclient -4 -1 -sf {script} -lf {lf} -pf {pf} eth0",
        lf = tb.path("dhclient.leases").display(),
        pf = tb.path("dhclient.pid").display()
    );
    let o = tb.pasta_output(&["--dhcp-dns", "--", "sh", "-c", &cmd], T);
    assert!(o.status.success(), "{o:?}");
    let env = env_file(&lease);
    assert_eq!(
        env.get("new_ip_address").map(String::as_str),
        Some(HOST4),
        "{env:?}"
    );
    assert_eq!(env.get("new_routers").map(String::as_str), Some(REMOTE4));
    assert_eq!(
        env.get("new_subnet_mask").map(String::as_str),
        Some("255.255.255.0")
    );
    assert_eq!(
        env.get("new_interface_mtu").map(String::as_str),
        Some("65520")
    );
    assert_eq!(
        env.get("new_domain_name_servers").map(String::as_str),
        Some(REMOTE4)
    );
}

fn dhclient6(tb: &Testbed, extra: &[&str]) -> HashMap<String, String> {
    let lease = tb.path(&format!("dhclient6-{}.env", extra.join("_")));
    let script = hook(tb, &format!("dhclient6-{}.sh", extra.join("_")), &lease);
    let cmd = format!(
        "sysctl -qw net.ipv6.conf.eth0.accept_dad=0; ip link set eth0 up; \
         for i in $(seq 50); do ip -6 addr show dev eth0 scope link | grep -q inet6 && break; sleep 0.1; done; \
         timeout 8 dhclient -6 -1 -sf {script} -lf {lf} -pf {pf} eth0; true",
        lf = tb.path("dhclient6.leases").display(),
        pf = tb.path("dhclient6.pid").display()
    );
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--", "sh", "-c", &cmd]);
    let o = tb.pasta_output(&args, T);
    assert!(o.status.success(), "{o:?}");
    env_file(&lease)
}

#[test]
fn dhclient6_gets_the_hosts_address() {
    let tb = Testbed::new();
    let env = dhclient6(&tb, &["--dhcp-dns"]);
    assert_eq!(
        env.get("new_ip6_address").map(String::as_str),
        Some(HOST6),
        "{env:?}"
    );
    assert_eq!(
        env.get("new_dhcp6_name_servers").map(|s| s.trim()),
        Some(REMOTE6),
        "{env:?}"
    );
}

#[test]
fn no_dhcpv6_disables_dhcpv6() {
    let tb = Testbed::new();
    let env = dhclient6(&tb, &["--no-dhcpv6"]);
    assert!(!env.contains_key("new_ip6_address"), "{env:?}");
}

/// Brings eth0 up and waits for a SLAAC address; prints `ip -j -6 addr`.
const SLAAC: &str = "sysctl -qw net.ipv6.conf.eth0.accept_dad=0; ip link set eth0 up; \
    for i in $(seq 100); do ip -6 addr show dev eth0 scope global | grep -q 2001:db8: && break; sleep 0.1; done; \
    ip -j -6 addr show dev eth0";

#[test]
fn slaac_address_in_the_hosts_prefix() {
    let tb = Testbed::new();
    let o = tb.pasta_output(&["--", "sh", "-c", SLAAC], T);
    assert!(o.status.success(), "{o:?}");
    let v = json(&String::from_utf8_lossy(&o.stdout));
    let infos = v[0]["addr_info"].as_array().unwrap();
    assert!(
        infos.iter().any(|a| a["scope"] == "global"
            && a["local"].as_str().unwrap_or("").starts_with("2001:db8::")
            && a["prefixlen"] == 64),
        "no SLAAC address: {v}"
    );
}

fn rdisc6(tb: &Testbed, extra: &[&str]) -> (bool, String) {
    let cmd = "sysctl -qw net.ipv6.conf.eth0.accept_dad=0; ip link set eth0 up; \
        for i in $(seq 50); do ip -6 addr show dev eth0 scope link | grep -q inet6 && break; sleep 0.1; done; \
        rdisc6 -1 -r 6 -w 1000 eth0";
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--", "sh", "-c", cmd]);
    let o = tb.pasta_output(&args, T);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn rdisc6_sees_our_router_advertisement() {
    let tb = Testbed::new();
    let (ok, out) = rdisc6(&tb, &["--dhcp-dns", "--dhcp-search"]);
    assert!(ok, "no RA: {out}");
    assert!(out.contains("2001:db8::/64"), "prefix: {out}");
    assert!(out.contains("65520"), "MTU: {out}");
    assert!(
        out.contains("Recursive DNS server") && out.contains(REMOTE6),
        "RDNSS: {out}"
    );
    assert!(out.contains("example.org"), "DNSSL: {out}");
    let managed = out
        .lines()
        .find(|l| l.contains("Stateful address conf"))
        .unwrap_or("");
    assert!(managed.contains("Yes"), "M flag: {out}");

    // Without --dhcp-dns (pasta's default), no RDNSS.
    let (ok, out) = rdisc6(&tb, &[]);
    assert!(ok);
    assert!(!out.contains("Recursive DNS server"), "{out}");
}

#[test]
fn no_ra_disables_router_advertisements() {
    let tb = Testbed::new();
    let (ok, out) = rdisc6(&tb, &["--no-ra"]);
    assert!(!ok, "RA despite --no-ra: {out}");
}

/// Makes the namespace's kernel resolve the remote's address (a neighbour
/// solicitation), and returns its neighbour entry.
fn resolve6(tb: &Testbed, extra: &[&str]) -> serde_json::Value {
    let cmd = format!(
        "sysctl -qw net.ipv6.conf.eth0.accept_dad=0; ip link set eth0 up; \
        for i in $(seq 50); do ip -6 addr show dev eth0 scope link | grep -q inet6 && break; sleep 0.1; done; \
        ip -6 addr add 2001:db8::7/64 dev eth0 nodad; \
        ping -6 -c1 -W2 {REMOTE6} >/dev/null 2>&1; ip -j -6 neigh show dev eth0 to {REMOTE6}"
    );
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--no-ra", "--", "sh", "-c", &cmd]);
    let o = tb.pasta_output(&args, T);
    assert!(o.status.success(), "{o:?}");
    json(&String::from_utf8_lossy(&o.stdout))
}

#[test]
fn neighbour_solicitations_are_answered_unless_no_ndp() {
    let tb = Testbed::new();
    let v = resolve6(&tb, &[]);
    assert_eq!(v[0]["lladdr"], "9a:55:9a:55:9a:55", "{v}");
    let v = resolve6(&tb, &["--no-ndp"]);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|n| n.get("lladdr").is_none()),
        "resolved despite --no-ndp: {v}"
    );
}

#[test]
fn arp_requests_are_answered() {
    let tb = Testbed::new();
    let o = tb.pasta_output(
        &[
            "--config-net",
            "--",
            "sh",
            "-c",
            &format!("ping -c1 -W2 {REMOTE4} >/dev/null; ip -j neigh show dev eth0"),
        ],
        T,
    );
    assert!(o.status.success(), "{o:?}");
    let v = json(&String::from_utf8_lossy(&o.stdout));
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|n| n["dst"] == REMOTE4 && n["lladdr"] == "9a:55:9a:55:9a:55"),
        "{v}"
    );
}
