//! rtnetlink against real network namespaces: host discovery
//! (`conf::host::discover`) and `--config-net` (`netlink::configure_ns`).
//!
//! Needs root and `ip` (iproute2). Each test creates its own named
//! namespaces (`ip netns add`), builds veth pairs inside them with `ip`, and
//! runs the code under test in a thread that `setns()`es into one of them;
//! the namespaces are deleted by a guard even if the test fails.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use passt_rs::conf::host::{self, discover};
use passt_rs::netlink::{configure_ns, lo_up, Family, Netlink, NsIpConf, NsNetConf, NsRoutes};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
use serde_json::Value;

/// A named network namespace, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pnl-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip")
            .success();
        assert!(ok, "ip netns add {name}");
        Netns { name }
    }

    /// Runs a shell script in the namespace; fails the test on error.
    fn sh(&self, script: &str) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-ec", script])
            .output()
            .expect("run ip netns exec");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ip -j ARGS` in the namespace, decoded.
    fn json(&self, args: &str) -> Value {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "ip", "-j"])
            .args(args.split_whitespace())
            .output()
            .expect("run ip -j");
        assert!(out.status.success(), "ip -j {args}");
        serde_json::from_slice(&out.stdout).expect("ip -j output")
    }

    /// Runs `f` in a thread that entered the namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = File::open(&path).expect("open netns");
                move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::Network))
                    .expect("setns");
                f()
            })
            .join()
            .expect("namespace thread panicked")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair `a`/`b`, both up, in the namespace.
const VETH: &str = "ip link add a0 type veth peer name b0; ip link set a0 up; ip link set b0 up";

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn discover_dual_stack() {
    let ns = Netns::new("dual");
    ns.sh(VETH);
    ns.sh("ip link set a0 mtu 1400
         ip addr add 10.20.0.2/24 dev a0
         ip addr add 10.20.1.5/28 dev a0
         ip addr add 10.20.2.9/30 dev a0 preferred_lft 0
         ip route add default via 10.20.0.1 dev a0
         ip -6 addr add 2001:db8::2/64 dev a0 nodad
         ip -6 addr add 2001:db8:1::2/56 dev a0 nodad
         ip -6 addr add 2001:db8:2::2/64 dev a0 nodad preferred_lft 0
         ip -6 route add default via fe80::1 dev a0
         ip route add 10.99.0.0/16 dev b0");
    let a0 = ns.json("link show dev a0")[0]["ifindex"].as_u64().unwrap() as u32;
    let ll = link_local(&ns, "a0").expect("link-local address");

    let info = ns.run(|| discover(None, None)).expect("discover");
    let h4 = info.v4.expect("IPv4 template");
    assert_eq!(h4.ifname, "a0");
    assert_eq!(h4.ifindex, a0);
    assert_eq!(h4.mtu, 1400);
    assert_eq!(h4.gw, Some(v4("10.20.0.1")));
    assert_eq!(h4.addrs, vec![(v4("10.20.1.5"), 28), (v4("10.20.0.2"), 24)]);
    let h6 = info.v6.expect("IPv6 template");
    assert_eq!(h6.ifname, "a0");
    assert_eq!(h6.mtu, 1400);
    assert_eq!(h6.gw, Some(v6("fe80::1")));
    assert_eq!(
        h6.addrs,
        vec![(v6("2001:db8::2"), 64), (v6("2001:db8:1::2"), 56)]
    );
    assert_eq!(h6.ll, Some(ll));
    assert!(!info.hostname.is_empty());

    // Named template interfaces win over routes.
    let info = ns.run(|| discover(Some("b0"), None)).expect("discover");
    assert_eq!(info.v4.unwrap().ifname, "b0");
    assert!(ns.run(|| discover(Some("nonexistent"), None)).is_err());
}

#[test]
fn discover_no_routes() {
    let ns = Netns::new("none");
    let info = ns.run(|| discover(None, None)).expect("discover");
    assert_eq!(info.v4, None);
    assert_eq!(info.v6, None);

    // A prefix route but no default route: still a template, no gateway.
    ns.sh(VETH);
    ns.sh("ip addr add 10.21.0.2/24 dev a0");
    let info = ns.run(|| discover(None, None)).expect("discover");
    let h4 = info.v4.expect("IPv4 template from the prefix route");
    assert_eq!(h4.ifname, "a0");
    assert_eq!(h4.gw, None);
}

#[test]
fn discover_ipv6_only() {
    let ns = Netns::new("v6");
    ns.sh(VETH);
    ns.sh("ip -6 addr add 2001:db8:6::2/64 dev b0 nodad
         ip -6 route add default via 2001:db8:6::1 dev b0");
    let info = ns.run(|| discover(None, None)).expect("discover");
    assert_eq!(info.v4, None);
    let h6 = info.v6.expect("IPv6 template");
    assert_eq!(h6.ifname, "b0");
    assert_eq!(h6.gw, Some(v6("2001:db8:6::1")));
    assert_eq!(h6.addrs, vec![(v6("2001:db8:6::2"), 64)]);
}

/// The IPv6 link-local address of `dev`.
fn link_local(ns: &Netns, dev: &str) -> Option<Ipv6Addr> {
    ns.json(&format!("-6 addr show dev {dev} scope link"))[0]["addr_info"]
        .as_array()?
        .iter()
        .find(|a| a["scope"] == "link")
        .and_then(|a| a["local"].as_str()?.parse().ok())
}

/// Addresses of `dev` as (address, prefix) strings, without link-local ones.
fn addrs_of(ns: &Netns, dev: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = ns.json(&format!("addr show dev {dev}"))[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a.get("local").is_some() && a["scope"] != "link")
        .map(|a| {
            (
                a["local"].as_str().unwrap().to_owned(),
                a["prefixlen"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Routes of a family as (dst, gateway) strings.
fn routes_of(ns: &Netns, family: &str, dev: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = ns
        .json(&format!("{family} route show dev {dev}"))
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["dst"].as_str().unwrap().to_owned(),
                r["gateway"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn configure_ns_copies_routes() {
    let host = Netns::new("host");
    host.sh(VETH);
    host.sh("ip addr add 10.30.0.2/24 dev a0
         ip route add default via 10.30.0.1 dev a0
         ip route add 192.168.50.0/24 via 10.30.0.254 dev a0
         ip addr add 10.31.0.2/24 dev b0
         ip route add 172.16.0.0/16 via 10.31.0.253 dev b0
         ip -6 addr add 2001:db8:30::2/64 dev a0 nodad
         ip -6 route add default via fe80::1 dev a0
         ip -6 route add 2001:db8:99::/48 via 2001:db8:30::fe dev a0");
    let (a0, r4, r6, addrs4, addrs6) = host.run(|| {
        let mut nl = Netlink::open().unwrap();
        let a0 = nl.link_index("a0").unwrap();
        (
            a0,
            host::template_routes(&mut nl, Family::V4, a0).unwrap(),
            host::template_routes(&mut nl, Family::V6, a0).unwrap(),
            host::template_addrs(&mut nl, Family::V4, a0).unwrap(),
            host::template_addrs(&mut nl, Family::V6, a0).unwrap(),
        )
    });
    assert!(r4.iter().all(|r| r.oif == a0));
    assert_eq!(addrs4, vec![(IpAddr::V4(v4("10.30.0.2")), 24)]);

    let target = Netns::new("target");
    // The tap stand-in: a veth end whose peer is up, so it gets a carrier.
    target.sh(VETH);
    let conf = NsNetConf {
        mtu: 1300,
        v4: Some(NsIpConf {
            addrs: addrs4,
            routes: NsRoutes::Copy {
                host_ifindex: a0,
                routes: r4,
            },
        }),
        v6: Some(NsIpConf {
            addrs: addrs6,
            routes: NsRoutes::Copy {
                host_ifindex: a0,
                routes: r6,
            },
        }),
    };
    let (done, lo) = target.run(|| {
        let mut nl = Netlink::open().unwrap();
        lo_up(&mut nl).unwrap();
        let tap = nl.link_index("a0").unwrap();
        let done = configure_ns(&mut nl, tap, &conf).expect("configure_ns");
        (done, nl.link(1).unwrap())
    });
    assert!(lo.up);

    let link = &target.json("link show dev a0")[0];
    assert_eq!(link["mtu"], 1300);
    let flags = link["flags"].as_array().unwrap();
    assert!(flags.iter().any(|f| f == "UP"));
    assert!(!flags.iter().any(|f| f == "NOARP"));

    assert_eq!(
        addrs_of(&target, "a0"),
        vec![
            ("10.30.0.2".to_owned(), 24),
            ("2001:db8:30::2".to_owned(), 64)
        ]
    );
    let v6info = target.json("-6 addr show dev a0");
    for a in v6info[0]["addr_info"].as_array().unwrap() {
        if a.get("local").is_none() {
            continue; // iproute2 prints filtered-out entries as {}
        }
        assert_eq!(a["nodad"], true, "{a}");
    }
    assert_eq!(done.ll6, link_local(&target, "a0"));
    assert!(done.ll6.is_some());

    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        routes_of(&target, "-4", "a0"),
        vec![
            s("10.30.0.0/24", ""),
            s("192.168.50.0/24", "10.30.0.254"),
            s("default", "10.30.0.1"),
        ]
    );
    let r6 = routes_of(&target, "-6", "a0");
    assert!(r6.contains(&s("default", "fe80::1")), "{r6:?}");
    assert!(
        r6.contains(&s("2001:db8:99::/48", "2001:db8:30::fe")),
        "{r6:?}"
    );
    assert!(r6.contains(&s("2001:db8:30::/64", "")), "{r6:?}");
    // Nothing through the other host interface was copied.
    assert!(routes_of(&target, "-4", "b0").is_empty());
}

#[test]
fn configure_ns_gateway_and_link_ops() {
    let ns = Netns::new("gw");
    ns.sh(VETH);
    let conf = NsNetConf {
        mtu: 0,
        v4: Some(NsIpConf {
            addrs: vec![(IpAddr::V4(v4("169.254.2.1")), 16)],
            routes: NsRoutes::Gateway(IpAddr::V4(v4("169.254.2.2"))),
        }),
        v6: None,
    };
    let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    let got = ns.run(|| {
        let mut nl = Netlink::open().unwrap();
        let tap = nl.link_index("a0").unwrap();
        configure_ns(&mut nl, tap, &conf).expect("configure_ns");
        nl.link_set_mac(tap, mac).unwrap();
        nl.link_set_noarp(tap, true).unwrap();
        let err = nl
            .addr_add(tap, IpAddr::V4(v4("169.254.2.1")), 16, false)
            .unwrap_err();
        (
            nl.link_get_mac(tap).unwrap(),
            nl.link(tap).unwrap(),
            err.errno(),
        )
    });
    assert_eq!(got.0, mac);
    assert_eq!(got.1.flags & libc_noarp(), libc_noarp());
    assert_eq!(got.2, Some(17)); // EEXIST
    assert_eq!(
        routes_of(&ns, "-4", "a0"),
        vec![
            ("169.254.0.0/16".to_owned(), String::new()),
            ("default".to_owned(), "169.254.2.2".to_owned()),
        ]
    );
    let route = &ns.json("-d -4 route show default")[0];
    assert_eq!(route["protocol"], "boot");
}

/// `IFF_NOARP`.
fn libc_noarp() -> u32 {
    0x80
}

#[test]
fn multipath_discovery_and_copy() {
    let host = Netns::new("mphost");
    host.sh(VETH);
    host.sh("ip addr add 10.40.0.2/24 dev a0
         ip route add default nexthop via 10.40.0.1 dev a0 weight 1 \
             nexthop via 10.40.0.3 dev a0 weight 5
         ip route add 10.41.0.0/16 via 10.40.0.1 dev a0 mtu 1280");
    let info = host.run(|| discover(None, None)).expect("discover");
    let h4 = info.v4.expect("IPv4 template");
    assert_eq!(h4.ifname, "a0");
    assert_eq!(h4.gw, Some(v4("10.40.0.3")));

    let routes = host.run(|| {
        let mut nl = Netlink::open().unwrap();
        host::template_routes(&mut nl, Family::V4, h4.ifindex).unwrap()
    });
    let mp = routes.iter().find(|r| r.is_default()).expect("default");
    assert_eq!(mp.multipath.len(), 2);
    assert_eq!(mp.multipath[1].weight, 5);
    let r41 = routes.iter().find(|r| r.prefix == 16).expect("10.41/16");
    assert_eq!(r41.mtu, Some(1280));

    let target = Netns::new("mptarget");
    target.sh(VETH);
    let conf = NsNetConf {
        mtu: 0,
        v4: Some(NsIpConf {
            addrs: vec![(IpAddr::V4(v4("10.40.0.2")), 24)],
            routes: NsRoutes::Copy {
                host_ifindex: h4.ifindex,
                routes,
            },
        }),
        v6: None,
    };
    target.run(|| {
        let mut nl = Netlink::open().unwrap();
        let tap = nl.link_index("b0").unwrap();
        configure_ns(&mut nl, tap, &conf).expect("configure_ns");
    });
    let def = &target.json("-4 route show default")[0];
    let hops = def["nexthops"].as_array().expect("multipath default");
    assert_eq!(hops.len(), 2);
    assert!(hops.iter().all(|h| h["dev"] == "b0"), "{def}");
    assert_eq!(hops[1]["weight"], 5);
    let r41 = &target.json("-4 route show 10.41.0.0/16")[0];
    assert_eq!(r41["dev"], "b0");
    assert_eq!(r41["metrics"][0]["mtu"], 1280, "{r41}");
}
