//! Host discovery and the options that override it: what the namespace
//! ends up with on IPv4-only, IPv6-only and route-less hosts, and with
//! `-i`, `-a/-n/-g/-m`, `-4/-6`, `-I`, `--ns-mac-addr`, `-M`, `-D`, `-S`
//! and `-H`, seen through `ip -j` and real DHCP/NDP clients.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// Prints addresses, IPv4 routes and IPv6 routes as JSON, `---` between.
const SHOW: &str = "ip -j addr show; echo ---; ip -j -4 route show; echo ---; ip -j -6 route show";

struct Net {
    addrs: Value,
    routes4: Value,
    routes6: Value,
}

impl Net {
    fn iface(&self, name: &str) -> &Value {
        self.addrs
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["ifname"] == name)
            .unwrap_or_else(|| panic!("no {name} in {}", self.addrs))
    }

    /// (address, prefix length, scope) of `name`'s addresses.
    fn addrs_of(&self, name: &str) -> Vec<(String, u64, String)> {
        self.iface(name)["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["local"].as_str().unwrap_or("").to_string(),
                    a["prefixlen"].as_u64().unwrap_or(0),
                    a["scope"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn has_addr(&self, name: &str, addr: &str, len: u64) -> bool {
        self.addrs_of(name)
            .iter()
            .any(|(a, l, _)| a == addr && *l == len)
    }

    fn global6(&self, name: &str) -> Vec<String> {
        self.addrs_of(name)
            .into_iter()
            .filter(|(a, _, s)| a.contains(':') && s == "global")
            .map(|(a, _, _)| a)
            .collect()
    }

    fn default_via(routes: &Value) -> Option<(String, String)> {
        routes.as_array().unwrap().iter().find_map(|r| {
            (r["dst"] == "default").then(|| {
                (
                    r["gateway"].as_str().unwrap_or("").to_string(),
                    r["dev"].as_str().unwrap_or("").to_string(),
                )
            })
        })
    }
}

/// Runs `pasta --config-net EXTRA -- SHOW` in a test bed built with `setup`.
fn config_net(tb: &Testbed, extra: &[&str]) -> Net {
    let mut args = vec!["--config-net"];
    args.extend(extra);
    args.extend(["--", "sh", "-c", SHOW]);
    let o = tb.pasta_output(&args, T);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "pasta {args:?} failed: {}\n{out}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut parts = out.split("---\n");
    Net {
        addrs: json(parts.next().unwrap()),
        routes4: json(parts.next().expect("IPv4 routes")),
        routes6: json(parts.next().expect("IPv6 routes")),
    }
}

/// Runs busybox udhcpc against pasta started with `extra`; returns its
/// lease environment (empty without a lease).
fn udhcpc(tb: &Testbed, tag: &str, extra: &[&str]) -> HashMap<String, String> {
    let lease = tb.path(&format!("udhcpc-{tag}.env"));
    let script = tb.path(&format!("udhcpc-{tag}.sh"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in bound|renew) env > {} ;; esac\nexit 0\n",
            lease.display()
        ),
    )
    .unwrap();
    must(std::process::Command::new("chmod").arg("755").arg(&script));
    let cmd = format!(
        "ip link set eth0 up && busybox udhcpc -i eth0 -f -q -n -t 3 -T 1 \
         -O mtu -O search -O dns -O hostname -s {} >/dev/null 2>&1; true",
        script.display()
    );
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--", "sh", "-c", &cmd]);
    let o = tb.pasta_output(&args, T);
    assert!(o.status.success(), "{o:?}");
    env_file(&lease)
}

fn get<'a>(env: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    env.get(k).map(String::as_str)
}

#[test]
fn ipv4_only_host() {
    let tb = Testbed::with(Setup {
        v6: false,
        ..Setup::default()
    });
    let net = config_net(&tb, &[]);
    assert!(net.has_addr("eth0", HOST4, 24), "{}", net.addrs);
    assert!(net.global6("eth0").is_empty(), "{}", net.addrs);
    assert_eq!(
        Net::default_via(&net.routes4),
        Some((REMOTE4.to_string(), "eth0".to_string())),
        "{}",
        net.routes4
    );
}

#[test]
fn ipv6_only_host() {
    let tb = Testbed::with(Setup {
        v4: false,
        ..Setup::default()
    });
    let net = config_net(&tb, &[]);
    assert!(net.has_addr("eth0", HOST6, 64), "{}", net.addrs);
    assert_eq!(
        Net::default_via(&net.routes6).map(|r| r.0),
        Some(REMOTE6.to_string()),
        "{}",
        net.routes6
    );
    // No IPv4 template: IPv4 runs in local mode.
    assert!(!net.has_addr("eth0", HOST4, 24), "{}", net.addrs);
    assert!(net.has_addr("eth0", "169.254.2.1", 16), "{}", net.addrs);
}

/// No route at all for either family (only IPv6 addresses, and no default
/// routes): both families run in local mode, and the tap is `tap0`.
#[test]
fn host_without_routes_runs_in_local_mode() {
    let tb = Testbed::with(Setup {
        v4: false,
        v6: true,
        default_route: false,
    });
    let net = config_net(&tb, &[]);
    assert!(net.has_addr("tap0", "169.254.2.1", 16), "{}", net.addrs);
    assert_eq!(
        Net::default_via(&net.routes4),
        Some(("169.254.2.2".to_string(), "tap0".to_string())),
        "{}",
        net.routes4
    );
    assert!(net.global6("tap0").is_empty(), "{}", net.addrs);
    assert_eq!(
        Net::default_via(&net.routes6).map(|r| r.0),
        Some("fe80::1".to_string()),
        "{}",
        net.routes6
    );

    // No template interface to take the name from.
    let env = udhcpc(&tb, "local", &["-I", "eth0"]);
    assert_eq!(get(&env, "ip"), Some("169.254.2.1"), "{env:?}");
    assert_eq!(get(&env, "router"), Some("169.254.2.2"), "{env:?}");
    assert_eq!(get(&env, "subnet"), Some("255.255.0.0"), "{env:?}");
}

/// Addresses but no default route: like upstream, the only interface with
/// routes is the IPv4 template (address copied, no gateway, so no DHCP);
/// IPv6 lacks a default router and runs in local mode.
#[test]
fn host_without_default_route() {
    let tb = Testbed::with(Setup {
        default_route: false,
        ..Setup::default()
    });
    let net = config_net(&tb, &[]);
    assert!(net.has_addr("eth0", HOST4, 24), "{}", net.addrs);
    assert_eq!(Net::default_via(&net.routes4), None, "{}", net.routes4);
    assert!(net.global6("eth0").is_empty(), "{}", net.addrs);
    assert_eq!(
        Net::default_via(&net.routes6).map(|r| r.0),
        Some("fe80::1".to_string()),
        "{}",
        net.routes6
    );
    let env = udhcpc(&tb, "nogw", &[]);
    assert!(env.is_empty(), "DHCP without a gateway: {env:?}");
}

#[test]
fn explicit_template_interface() {
    let tb = Testbed::new();
    let net = config_net(&tb, &["-i", "eth0"]);
    assert!(net.has_addr("eth0", HOST4, 24), "{}", net.addrs);
    assert!(net.has_addr("eth0", HOST6, 64), "{}", net.addrs);
    let o = tb.pasta_output(&["-i", "nosuch0", "--", "true"], T);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(!o.stderr.is_empty(), "{o:?}");
}

#[test]
fn address_netmask_gateway_and_mtu_overrides() {
    let tb = Testbed::new();
    let ov = [
        "-a",
        "192.0.2.55",
        "-n",
        "24",
        "-g",
        "192.0.2.1",
        "-m",
        "9000",
    ];
    let net = config_net(&tb, &ov);
    assert!(net.has_addr("eth0", "192.0.2.55", 24), "{}", net.addrs);
    assert!(!net.has_addr("eth0", HOST4, 24), "{}", net.addrs);
    assert_eq!(net.iface("eth0")["mtu"], 9000, "{}", net.addrs);
    assert_eq!(
        Net::default_via(&net.routes4),
        Some(("192.0.2.1".to_string(), "eth0".to_string())),
        "{}",
        net.routes4
    );
    let env = udhcpc(&tb, "ov", &ov);
    assert_eq!(get(&env, "ip"), Some("192.0.2.55"), "{env:?}");
    assert_eq!(get(&env, "subnet"), Some("255.255.255.0"), "{env:?}");
    assert_eq!(get(&env, "router"), Some("192.0.2.1"), "{env:?}");
    assert_eq!(get(&env, "mtu"), Some("9000"), "{env:?}");
}

#[test]
fn ipv4_only_option_disables_ipv6() {
    let tb = Testbed::new();
    let net = config_net(&tb, &["-4"]);
    assert!(net.has_addr("eth0", HOST4, 24), "{}", net.addrs);
    assert!(net.global6("eth0").is_empty(), "{}", net.addrs);
    assert_eq!(Net::default_via(&net.routes6), None, "{}", net.routes6);
    // Neither router advertisements nor DHCPv6 answer.
    let leases = tb.path("dhclient6.leases");
    let cmd = format!(
        "sysctl -qw net.ipv6.conf.eth0.accept_dad=0; ip link set eth0 up; \
         for i in $(seq 50); do ip -6 addr show dev eth0 scope link | grep -q inet6 && break; sleep 0.1; done; \
         rdisc6 -1 -r 2 -w 500 eth0 && echo RA; \
         timeout 3 dhclient -6 -1 -sf /bin/true -lf {} -pf {} eth0 && echo DHCPV6; \
         ip -j -6 addr show dev eth0 scope global",
        leases.display(),
        tb.path("dhclient6.pid").display()
    );
    let o = tb.pasta_output(&["-4", "--", "sh", "-c", &cmd], T);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("RA\n"), "RA with -4: {out}");
    assert!(!out.contains("DHCPV6"), "DHCPv6 lease with -4: {out}");
    let lease = std::fs::read_to_string(&leases).unwrap_or_default();
    assert!(!lease.contains("iaaddr"), "{lease}");
}

#[test]
fn ipv6_only_option_disables_ipv4() {
    let tb = Testbed::new();
    let net = config_net(&tb, &["-6"]);
    assert!(net.has_addr("eth0", HOST6, 64), "{}", net.addrs);
    let v4: Vec<_> = net
        .addrs_of("eth0")
        .into_iter()
        .filter(|(a, _, _)| !a.contains(':'))
        .collect();
    assert!(v4.is_empty(), "{}", net.addrs);
    assert_eq!(Net::default_via(&net.routes4), None, "{}", net.routes4);
    let env = udhcpc(&tb, "v6only", &["-6"]);
    assert!(env.is_empty(), "DHCP lease with -6: {env:?}");
}

#[test]
fn interface_name_and_macs() {
    let tb = Testbed::new();
    let cmd = format!(
        "ip -j link show tap7; echo ---; ping -c1 -W2 {REMOTE4} >/dev/null; ip -j neigh show dev tap7"
    );
    let o = tb.pasta_output(
        &[
            "--config-net",
            "-I",
            "tap7",
            "--ns-mac-addr",
            "02:00:00:00:00:42",
            "-M",
            "02:00:00:00:00:99",
            "--",
            "sh",
            "-c",
            &cmd,
        ],
        T,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    let mut parts = out.split("---\n");
    let link = json(parts.next().unwrap());
    assert_eq!(link[0]["ifname"], "tap7", "{link}");
    assert_eq!(link[0]["address"], "02:00:00:00:00:42", "{link}");
    let neigh = json(parts.next().expect("neighbours"));
    assert!(
        neigh
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["dst"] == REMOTE4 && n["lladdr"] == "02:00:00:00:00:99"),
        "{neigh}"
    );
}

#[test]
fn dns_search_and_hostname_options() {
    let tb = Testbed::new();
    let env = udhcpc(
        &tb,
        "dns",
        &[
            "-D",
            "192.0.2.53",
            "--dhcp-dns",
            "-S",
            "example.net",
            "--dhcp-search",
            "-H",
            "myhost",
        ],
    );
    assert_eq!(get(&env, "dns"), Some("192.0.2.53"), "{env:?}");
    assert_eq!(get(&env, "search"), Some("example.net"), "{env:?}");
    assert_eq!(get(&env, "hostname"), Some("myhost"), "{env:?}");
    let o = tb.pasta_output(&["-H", "myhost", "--", "hostname"], T);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "myhost");
}
