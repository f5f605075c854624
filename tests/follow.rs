//! Following the host: pasta keeps the guest's DNS, addresses and routes
//! in step with the "host" namespace while it runs.
//!
//! - DNS: the host's resolv.conf is changed in place (the bind-mounted
//!   file of `ip netns exec`, and a real `/etc/resolv.conf` on an overlay
//!   of `/etc` in a mount namespace of its own) and replaced by a rename,
//!   as resolvers do; the next query to the `--dns-forward` address
//!   reaches the new first nameserver (a DNS server per address in the
//!   remote namespace, each with its own log of queries), unless
//!   `--dns-host` was given.
//! - Addresses and routes: the host namespace moves to another subnet and
//!   default gateway (IPv4, IPv6); a `--config-net` namespace follows (its
//!   addresses and default route), a busybox udhcpc guest gets the new lease when it
//!   renews, a SLAAC guest gets the new prefix with the old one deprecated,
//!   and new outbound connections work. Removing the
//!   default route and restoring it wedges nothing.
//!
//! - passt, under its seccomp filter, announces the new nameservers (an
//!   unsolicited RA at once, the next DHCP offer).
//!
//! pasta attaches to a namespace held by a `sleep` (`unshare --net`) in the
//! host namespace; commands run there with `nsenter -n`.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);
/// The `--dns-forward` address the guest queries.
const DNS_FWD: &str = "169.254.1.1";
/// A second address of the remote namespace, the second DNS server's.
const REMOTE4_B: &str = "192.0.2.3";
/// Where the host namespace moves to: its new address and gateway.
const NEW_HOST4: &str = "10.20.0.2";
const NEW_GW4: &str = "10.20.0.1";

/// A DNS server on `addr` in the remote namespace, logging its queries to
/// `log` (in the test bed's directory).
fn dns_server(tb: &Testbed, addr: &str, log: &str) -> Guard {
    let ready = tb.path(&format!("{log}.ready"));
    let out = std::fs::File::create(tb.path(log)).expect("log");
    let child = tb
        .in_remote("python3")
        .arg(format!(
            "{}/tests/dns_server.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args(["--bind", addr, "--ready"])
        .arg(&ready)
        .stdout(out)
        .spawn()
        .expect("DNS server");
    let g = Guard(child);
    wait_for("the DNS server", T, || ready.exists());
    g
}

/// A process holding a network namespace of its own inside the host
/// namespace, and its PID.
fn holder(tb: &Testbed) -> (Guard, String) {
    let g = Guard(
        Command::new("ip")
            .args([
                "netns", "exec", &tb.host, "unshare", "--net", "--", "sleep", "300",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare"),
    );
    let pid = g.0.id().to_string();
    wait_for("the namespace holder", T, || {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        exe.is_some_and(|e| e.ends_with("sleep"))
    });
    (g, pid)
}

/// A process in the host namespace and in a mount namespace of its own
/// where `/etc` is an overlay (so that `/etc/resolv.conf` itself can be
/// rewritten and renamed over), its resolv.conf naming `nameserver`; and
/// its PID, to enter that mount namespace.
fn etc_overlay(tb: &Testbed, nameserver: &str) -> (Guard, String) {
    let (up, work, ready) = (tb.path("etc-up"), tb.path("etc-work"), tb.path("etc.ready"));
    std::fs::create_dir_all(&up).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let script = format!(
        "set -e
        mount -t overlay overlay -o lowerdir=/etc,upperdir={},workdir={} /etc
        printf 'nameserver {nameserver}\\n' > /etc/resolv.conf.new
        mv -f /etc/resolv.conf.new /etc/resolv.conf
        touch {}
        exec sleep 300",
        up.display(),
        work.display(),
        ready.display()
    );
    let g = Guard(
        tb.in_host("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare -m"),
    );
    let pid = g.0.id().to_string();
    wait_for("the /etc overlay", T, || ready.exists());
    (g, pid)
}

/// Runs `script` in the mount namespace of `pid` (the overlay of `/etc`).
fn in_mounts(pid: &str, script: &str) {
    must(Command::new("nsenter").args(["-t", pid, "-m", "sh", "-c", script]));
}

/// pasta attached to the namespace of `target`, in the foreground, its
/// log (info level) in `pasta.log`. `mounts`: run in the host namespace
/// and the mount namespace of that PID (the overlay of `/etc`) instead of
/// through `ip netns exec`.
fn start_pasta(tb: &Testbed, args: &[&str], target: &str, mounts: Option<&str>) -> Guard {
    let log = std::fs::File::create(tb.path("pasta.log")).expect("pasta log");
    let mut c = match mounts {
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.args(["-t", pid, "-m", "-n", pasta()]);
            c
        }
        None => tb.in_host(pasta()),
    };
    c.arg("-f").args(args).arg(target);
    Guard(
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("pasta"),
    )
}

fn pasta_log(tb: &Testbed) -> String {
    std::fs::read_to_string(tb.path("pasta.log")).unwrap_or_default()
}

/// Waits for `what` in pasta's log.
fn wait_log(tb: &Testbed, what: &str) {
    let end = Instant::now() + T;
    while Instant::now() < end {
        if pasta_log(tb).contains(what) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no {what:?} in pasta's log:\n{}", pasta_log(tb));
}

/// A command in the namespace of `target`.
fn in_ns(target: &str, prog: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.args(["-t", target, "-n", prog]);
    c
}

/// `ip -j ARGS` in the namespace of `target`.
fn ns_json(target: &str, args: &[&str]) -> serde_json::Value {
    json(&must(in_ns(target, "ip").arg("-j").args(args)))
}

/// Whether an `ip -j addr` listing holds `addr/len`.
fn has_addr(addrs: &serde_json::Value, addr: &str, len: u64) -> bool {
    addrs.as_array().into_iter().flatten().any(|i| {
        i["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["local"] == addr && a["prefixlen"] == len)
    })
}

/// The gateway of the default route of an `ip -j route` listing.
fn default_via(routes: &serde_json::Value) -> Option<String> {
    routes
        .as_array()?
        .iter()
        .find(|r| r["dst"] == "default")
        .and_then(|r| r["gateway"].as_str())
        .map(str::to_string)
}

/// Queries names `tag-N.test` from the namespace of `target` to the
/// forward address until one shows up in `log` (the server the query
/// should reach), and asserts none showed up in `other` meanwhile.
fn query_reaches(tb: &Testbed, target: &str, tag: &str, log: &str, other: &str) {
    let end = Instant::now() + T;
    for n in 0.. {
        let name = format!("{tag}-{n}.test");
        let _ = run(in_ns(target, "busybox").args(["nslookup", &name, DNS_FWD]));
        let seen = |l: &str| {
            std::fs::read_to_string(tb.path(l))
                .unwrap_or_default()
                .contains(&format!("udp {name} "))
        };
        // The server logs before it answers: the query was logged by now.
        if seen(log) {
            return;
        }
        assert!(
            Instant::now() < end,
            "no query {tag}-* reached {log}; {other}:\n{}\npasta:\n{}",
            std::fs::read_to_string(tb.path(other)).unwrap_or_default(),
            pasta_log(tb)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until pasta's tap is configured in the namespace of `target`.
fn wait_tap(target: &str, addr: &str) {
    wait_for("the tap's address", T, || {
        has_addr(&ns_json(target, &["addr", "show"]), addr, 24)
    });
}

/// The test bed with a second address on the remote side, and both DNS
/// servers.
fn dns_bed() -> (Testbed, Guard, Guard) {
    let tb = Testbed::new();
    must(Command::new("ip").args([
        "-n",
        &tb.remote,
        "addr",
        "add",
        &format!("{REMOTE4_B}/24"),
        "dev",
        "eth0",
    ]));
    let a = dns_server(&tb, REMOTE4, "a.log");
    let b = dns_server(&tb, REMOTE4_B, "b.log");
    (tb, a, b)
}

#[test]
fn dns_follows_resolv_conf_renamed_over_and_written_in_place() {
    let (tb, _a, _b) = dns_bed();
    let (_mounts, mpid) = etc_overlay(&tb, REMOTE4);
    let (_h, target) = holder(&tb);
    let _p = start_pasta(
        &tb,
        &["--config-net", "--dns-forward", DNS_FWD],
        &target,
        Some(&mpid),
    );
    wait_tap(&target, HOST4);
    query_reaches(&tb, &target, "first", "a.log", "b.log");

    // Replaced by a rename, as resolvers do.
    in_mounts(
        &mpid,
        &format!(
            "printf 'nameserver {REMOTE4_B}\\nnameserver {REMOTE4}\\n' > /etc/resolv.conf.tmp && \
             mv -f /etc/resolv.conf.tmp /etc/resolv.conf"
        ),
    );
    wait_log(&tb, "resolv.conf changed");
    query_reaches(&tb, &target, "renamed", "b.log", "a.log");
    assert!(
        pasta_log(&tb).contains(&format!("DNS forwarded to {REMOTE4_B} (was {REMOTE4})")),
        "{}",
        pasta_log(&tb)
    );

    // Written in place.
    in_mounts(
        &mpid,
        &format!("printf 'nameserver {REMOTE4}\\n' > /etc/resolv.conf"),
    );
    query_reaches(&tb, &target, "in-place", "a.log", "b.log");
    assert!(
        pasta_log(&tb).contains(&format!("DNS forwarded to {REMOTE4} (was {REMOTE4_B})")),
        "{}",
        pasta_log(&tb)
    );
}

#[test]
fn dns_follows_the_bind_mounted_resolv_conf() {
    let (tb, _a, _b) = dns_bed();
    let (_h, target) = holder(&tb);
    let _p = start_pasta(
        &tb,
        &["--config-net", "--dns-forward", DNS_FWD],
        &target,
        None,
    );
    wait_tap(&target, HOST4);
    query_reaches(&tb, &target, "first", "a.log", "b.log");
    // `ip netns exec` mounted this file over /etc/resolv.conf: written in
    // place through its own path.
    std::fs::write(
        Path::new("/etc/netns").join(&tb.host).join("resolv.conf"),
        format!("nameserver {REMOTE4_B}\n"),
    )
    .unwrap();
    query_reaches(&tb, &target, "second", "b.log", "a.log");
}

#[test]
fn explicit_dns_host_is_not_overridden() {
    let (tb, _a, _b) = dns_bed();
    let (_mounts, mpid) = etc_overlay(&tb, REMOTE4);
    let (_h, target) = holder(&tb);
    let args = [
        "--config-net",
        "--dns-forward",
        DNS_FWD,
        "--dns-host",
        REMOTE4,
    ];
    let _p = start_pasta(&tb, &args, &target, Some(&mpid));
    wait_tap(&target, HOST4);
    in_mounts(
        &mpid,
        &format!(
            "printf 'nameserver {REMOTE4_B}\\n' > /etc/resolv.conf.tmp && \
             mv -f /etc/resolv.conf.tmp /etc/resolv.conf"
        ),
    );
    wait_log(&tb, "as --dns-host says");
    query_reaches(&tb, &target, "after", "a.log", "b.log");
    let b = std::fs::read_to_string(tb.path("b.log")).unwrap_or_default();
    assert!(
        !b.contains("udp "),
        "a query reached the new nameserver: {b}"
    );
}

/// A TCP server on the remote side's "beyond" address that says hello.
fn hello_server(tb: &Testbed) -> Guard {
    let g = Guard(
        tb.in_remote("socat")
            .args([
                &format!("TCP-LISTEN:7777,bind={BEYOND4},fork,reuseaddr"),
                "SYSTEM:echo hello",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("socat"),
    );
    wait_for("the hello server", T, || {
        must(tb.in_remote("ss").args(["-Htln", "sport = 7777"])).contains("7777")
    });
    g
}

/// A new outbound connection from the namespace of `target` gets hello.
fn says_hello(target: &str) -> bool {
    let o = run(in_ns(target, "socat")
        .args([
            "-T",
            "5",
            "-",
            &format!("TCP:{BEYOND4}:7777,connect-timeout=5"),
        ])
        .stdin(Stdio::null()));
    String::from_utf8_lossy(&o.stdout).contains("hello")
}

/// Moves the host namespace to 10.20.0.2/24 via 10.20.0.1: the new
/// address and gateway first, then the old address out.
fn move_host(tb: &Testbed) {
    let (h, r) = (&tb.host, &tb.remote);
    must(Command::new("sh").arg("-c").arg(format!(
        "set -e
        ip -n {r} addr add {NEW_GW4}/24 dev eth0
        ip -n {h} addr add {NEW_HOST4}/24 dev eth0
        ip -n {h} route replace default via {NEW_GW4}
        ip -n {h} addr del {HOST4}/24 dev eth0"
    )));
}

#[test]
fn config_net_namespace_follows_the_host_address_and_route() {
    let tb = Testbed::new();
    let _hello = hello_server(&tb);
    let (_h, target) = holder(&tb);
    let _p = start_pasta(&tb, &["--config-net", "-4"], &target, None);
    wait_tap(&target, HOST4);
    assert!(says_hello(&target), "before the change");

    move_host(&tb);
    wait_for("the namespace to follow", T, || {
        let addrs = ns_json(&target, &["-4", "addr", "show"]);
        let routes = ns_json(&target, &["-4", "route", "show"]);
        has_addr(&addrs, NEW_HOST4, 24)
            && !has_addr(&addrs, HOST4, 24)
            && default_via(&routes).as_deref() == Some(NEW_GW4)
    });
    wait_log(&tb, "IPv4: namespace updated");
    assert!(says_hello(&target), "after the change:\n{}", pasta_log(&tb));

    // No default route on the host: logged, nothing else changes.
    must(Command::new("ip").args(["-n", &tb.host, "route", "del", "default"]));
    wait_log(&tb, "no default route (keeping gateway 10.20.0.1)");
    let routes = ns_json(&target, &["-4", "route", "show"]);
    assert_eq!(default_via(&routes).as_deref(), Some(NEW_GW4), "{routes}");
    must(Command::new("ip").args(["-n", &tb.host, "route", "add", "default", "via", NEW_GW4]));
    wait_for("a new connection after the route came back", T, || {
        says_hello(&target)
    });
}

#[test]
fn dhcp_guest_gets_the_new_lease_at_renewal() {
    let tb = Testbed::new();
    let _hello = hello_server(&tb);
    let (_h, target) = holder(&tb);
    let _p = start_pasta(&tb, &["-4"], &target, None);
    wait_for("the tap", T, || {
        run(in_ns(&target, "ip").args(["link", "set", "eth0", "up"]))
            .status
            .success()
    });
    // The client's script configures what it is given and keeps the lease.
    let lease = tb.path("lease.env");
    let script = tb.path("udhcpc.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh
case \"$1\" in
bound|renew)
    ip addr flush dev \"$interface\"
    ip addr add \"$ip/$mask\" dev \"$interface\"
    ip route replace default via \"$router\"
    env > {lease}.tmp && mv {lease}.tmp {lease} ;;
esac
exit 0
",
            lease = lease.display()
        ),
    )
    .unwrap();
    must(Command::new("chmod").arg("755").arg(&script));
    let udhcpc = Guard(
        in_ns(&target, "busybox")
            .args(["udhcpc", "-i", "eth0", "-f", "-t", "10", "-T", "1", "-s"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("udhcpc"),
    );
    let ip = || env_file(&lease).get("ip").cloned();
    wait_for("the first lease", T, || ip().as_deref() == Some(HOST4));
    assert!(says_hello(&target), "before the change");

    move_host(&tb);
    wait_log(
        &tb,
        "IPv4: the host changed on eth0: guest address 10.20.0.2/24",
    );
    wait_log(&tb, "gateway 10.20.0.1");
    // The renewal (udhcpc renews on SIGUSR1).
    must(Command::new("kill").args(["-USR1", &udhcpc.0.id().to_string()]));
    wait_for("the new lease", T, || ip().as_deref() == Some(NEW_HOST4));
    assert_eq!(
        env_file(&lease).get("router").map(String::as_str),
        Some(NEW_GW4)
    );
    wait_for("a new connection from the new address", T, || {
        says_hello(&target)
    });
}

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// A DHCPDISCOVER frame from the guest.
fn dhcp_discover() -> Vec<u8> {
    use dhcproto::v4::{DhcpOption, Flags, Message, MessageType};
    use dhcproto::{Encodable, Encoder};
    let z = std::net::Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(0x1234_5678, z, z, z, z, &GUEST_MAC);
    m.set_flags(Flags::default().set_broadcast());
    m.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    let mut payload = Vec::new();
    m.encode(&mut Encoder::new(&mut payload)).unwrap();
    let mut out = vec![0u8; 1500];
    let n = passt_rs::wire::build::eth_ipv4_udp(
        &mut out,
        GUEST_MAC,
        [0xff; 6],
        std::net::SocketAddrV4::new(z, 68),
        std::net::SocketAddrV4::new(std::net::Ipv4Addr::BROADCAST, 67),
        64,
        &payload,
    )
    .unwrap();
    out.truncate(n);
    out
}

/// The DHCP message in a frame from passt, if it is one.
fn dhcp_reply(f: &[u8]) -> Option<dhcproto::v4::Message> {
    use dhcproto::{Decodable, Decoder};
    use passt_rs::wire::{L3, L4};
    let c = passt_rs::wire::classify(f).ok()?;
    match c.l3 {
        L3::Ipv4 {
            l4:
                L4::Udp {
                    sport: 67,
                    dport: 68,
                    payload,
                },
            ..
        } => dhcproto::v4::Message::decode(&mut Decoder::new(payload)).ok(),
        _ => None,
    }
}

/// The next frame from passt that `pick` accepts, within the deadline.
fn expect(
    g: &mut common::stream::StreamGuest,
    what: &str,
    pick: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let end = Instant::now() + T;
    while Instant::now() < end {
        match g.recv(Duration::from_millis(200)) {
            Ok(Some(f)) if pick(&f) => return f,
            Ok(_) => {}
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
    panic!("no {what}");
}

/// passt (under its seccomp filter) reads resolv.conf again after a rename:
/// an unsolicited router advertisement at once and the next DHCP offer
/// carry the new nameservers.
#[test]
fn passt_announces_the_new_nameservers() {
    let tb = Testbed::new();
    let (_mounts, mpid) = etc_overlay(&tb, REMOTE4);
    let sock = tb.path("passt.socket");
    let log = std::fs::File::create(tb.path("pasta.log")).unwrap();
    let _passt = Guard(
        Command::new("nsenter")
            .args(["-t", &mpid, "-m", "-n", passt(), "-f", "-s"])
            .arg(&sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("passt"),
    );
    let mut g = common::stream::StreamGuest::connect(&sock, T);
    // Its greeting (an ARP probe) says the loop runs, filter installed.
    expect(&mut g, "the ARP probe", |f| f[12..14] == [8, 6]);
    in_mounts(
        &mpid,
        &format!(
            "printf 'nameserver {REMOTE4_B}\\nnameserver 2001:db8::3\\n' > /etc/resolv.conf.tmp && \
             mv -f /etc/resolv.conf.tmp /etc/resolv.conf"
        ),
    );
    let new6: std::net::Ipv6Addr = "2001:db8::3".parse().unwrap();
    expect(&mut g, "an RA with the new nameserver", |f| {
        f[12..14] == [0x86, 0xdd]
            && f.get(54) == Some(&134)
            && f.windows(16).any(|w| w == new6.octets())
    });
    g.send(&dhcp_discover()).unwrap();
    let offer = expect(&mut g, "a DHCPOFFER", |f| dhcp_reply(f).is_some());
    let offer = dhcp_reply(&offer).unwrap();
    assert_eq!(
        offer.opts().get(dhcproto::v4::OptionCode::DomainNameServer),
        Some(&dhcproto::v4::DhcpOption::DomainNameServer(vec![REMOTE4_B
            .parse()
            .unwrap()])),
        "{}",
        pasta_log(&tb)
    );
}

/// A SLAAC guest (the kernel's, in a namespace pasta serves without
/// `--config-net`): when the host moves to another IPv6 prefix, the router
/// advertisement sent at once gives it an address in the new prefix and
/// deprecates the old one (preferred lifetime 0).
#[test]
fn slaac_guest_moves_to_the_new_prefix() {
    let tb = Testbed::new();
    let (_h, target) = holder(&tb);
    let _p = start_pasta(&tb, &["-6"], &target, None);
    wait_for("the tap", T, || {
        run(in_ns(&target, "ip").args(["link", "show", "eth0"]))
            .status
            .success()
    });
    must(in_ns(&target, "sysctl").args(["-qw", "net.ipv6.conf.eth0.accept_dad=0"]));
    must(in_ns(&target, "ip").args(["link", "set", "eth0", "up"]));
    // (address, deprecated) of each global address of the guest.
    let addrs = || -> Vec<(String, bool)> {
        let v = ns_json(
            &target,
            &["-6", "addr", "show", "dev", "eth0", "scope", "global"],
        );
        v.as_array()
            .into_iter()
            .flatten()
            .flat_map(|i| i["addr_info"].as_array().cloned().unwrap_or_default())
            .map(|a| {
                (
                    a["local"].as_str().unwrap_or("").to_string(),
                    a["deprecated"] == true,
                )
            })
            .collect()
    };
    wait_for("a SLAAC address in the host's prefix", T, || {
        addrs().iter().any(|(a, _)| a.starts_with("2001:db8::"))
    });
    move_host6(&tb);
    wait_log(&tb, "NDP: sent a router advertisement");
    wait_for(
        "an address in the new prefix, the old one deprecated",
        T,
        || {
            let a = addrs();
            a.iter().any(|(a, d)| a.starts_with("2001:db8:5:") && !d)
                && a.iter().any(|(a, d)| a.starts_with("2001:db8::") && *d)
        },
    );
}

/// Moves the host namespace to 2001:db8:5::2/64 via 2001:db8:5::1.
fn move_host6(tb: &Testbed) {
    let (h, r) = (&tb.host, &tb.remote);
    must(Command::new("sh").arg("-c").arg(format!(
        "set -e
        ip -n {r} addr add 2001:db8:5::1/64 dev eth0 nodad
        ip -n {h} addr add 2001:db8:5::2/64 dev eth0 nodad
        ip -n {h} -6 route replace default via 2001:db8:5::1
        ip -n {h} addr del {HOST6}/64 dev eth0"
    )));
}

#[test]
fn config_net_namespace_follows_the_host_ipv6_prefix() {
    let tb = Testbed::new();
    let (_h, target) = holder(&tb);
    let _p = start_pasta(&tb, &["--config-net", "-6"], &target, None);
    wait_for("the tap's IPv6 address", T, || {
        has_addr(&ns_json(&target, &["-6", "addr", "show"]), HOST6, 64)
    });
    move_host6(&tb);
    wait_for("the namespace to follow", T, || {
        let addrs = ns_json(&target, &["-6", "addr", "show"]);
        let routes = ns_json(&target, &["-6", "route", "show"]);
        has_addr(&addrs, "2001:db8:5::2", 64)
            && !has_addr(&addrs, HOST6, 64)
            && default_via(&routes).as_deref() == Some("2001:db8:5::1")
    });
    wait_log(&tb, "IPv6: namespace updated");
}
