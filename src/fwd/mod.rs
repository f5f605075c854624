//! Forwarding: where every flow goes, and the listening sockets that
//! start flows from outside.
//!
//! # One decision per origin
//!
//! A new flow starts on one of three interfaces ([`Pif`]), and one function
//! here decides, for each, the interface it goes to and the addresses and
//! ports of that target side (or refuses it). `tcp`, `udp` and `icmp` call
//! them and open what they are told; they never translate an address
//! themselves. Read these three and you know every address a flow can get:
//!
//! - [`from_tap`]: the guest opens a flow (TCP SYN, UDP datagram, echo
//!   request). It always goes to the host ([`Pif::Host`]). The guest sees
//!   the host's own addresses, so most destinations pass unchanged; a few
//!   mean something else on the host ("NAT"):
//!   - DNS (TCP/UDP port 53 or 853) to the `--dns-forward` address goes to
//!     the `--dns-host` resolver;
//!   - the `--map-host-loopback` address (the gateway by default) is the
//!     host itself: 127.0.0.1 / ::1;
//!   - the `--map-guest-addr` address becomes the guest's assigned
//!     address, i.e. the host's own external address.
//!
//!   The host side's source address is `--outbound` (or the kernel's
//!   choice); its source port the kernel's, except for UDP (the guest's
//!   port, as upstream) and echo (the identifier).
//! - [`from_host`]: a peer reaches a `-t`/`-u` listener on the host. A peer
//!   on the host's loopback is *spliced* into pasta's namespace
//!   ([`Pif::Splice`], unless `--no-splice`), to the address the guest uses
//!   there (its loopback with `--host-lo-to-ns-lo`), so that services bound
//!   to the namespace's loopback stay private. Anybody else goes to the
//!   guest ([`Pif::Tap`]), from its own address, except that the host's
//!   loopback appears as the `--map-host-loopback` address and the host's
//!   own address as the `--map-guest-addr` address.
//! - [`from_splice`]: a loopback peer in pasta's namespace reaches a
//!   `-T`/`-U` listener; it goes to the host's loopback.
//!
//! Replies follow the flow's stored sides, which undoes the translation.
//! [`log_decision`] logs every decision in one format.
//!
//! # The tables and their sockets
//!
//! The forwarding table for `-t`/`-u`/`-T`/`-U` lives in [`rules`], built
//! from the port specifications parsed by [`spec`]: one [`rules::FwdTable`]
//! per source interface, each rule holding its own listening sockets.
//! [`Fwd`] owns both tables: it opens the sockets, registers them with
//! epoll (the reference names the table, the rule and the socket's slot in
//! it, so an event reaches its socket and rule by indexing), and pasta's
//! `auto` rules follow the ports bound on the other side through the
//! [`scan`]ner, which opens and closes sockets in the tables and nowhere
//! else. A rule can be added or removed while flows run: removing one
//! closes its sockets, the flows it started keep theirs.

pub(crate) mod listen;
pub(crate) mod rules;
pub(crate) mod scan;
pub(crate) mod spec;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::conf::{Config, Mode};
use crate::flow::{proto_name, FlowSide, Pif, IPPROTO_TCP, IPPROTO_UDP};
use crate::guest::GuestState;
use crate::live::Live;
use rules::FwdRule;

pub(crate) use listen::Fwd;

/// Where a new flow goes: the target interface, and the target side as
/// seen there (`eaddr`/`eport`: where to connect or send; `oaddr`/`oport`:
/// our own address and port, unspecified or 0 to let the kernel choose).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) pif: Pif,
    pub(crate) side: FlowSide,
}

/// The flow `ini` from the guest (`eaddr`/`eport`: the guest's source,
/// `oaddr`/`oport`: the destination it wrote to), protocol `proto`: where
/// it goes on the host, or `None` if it is not forwarded.
pub(crate) fn from_tap(conf: &Config, live: &Live, proto: u8, ini: &FlowSide) -> Option<Target> {
    let refuse = |why| {
        log_refusal(proto, Pif::Tap, ini, why);
        None
    };
    if conf.pasta.as_ref().is_some_and(|p| p.splice_only) {
        return refuse("splice only");
    }
    if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) && !unicast_ports(ini) {
        return refuse("not unicast");
    }
    let eaddr = dns_target(live, proto, ini.oaddr, ini.oport)
        .unwrap_or_else(|| nat_outbound(conf, live, ini.oaddr));
    let oaddr = match eaddr {
        IpAddr::V4(_) => conf.ip4.as_ref().and_then(|c| c.addr_out).map(IpAddr::V4),
        IpAddr::V6(_) => conf.ip6.as_ref().and_then(|c| c.addr_out).map(IpAddr::V6),
    };
    let oport = if proto == IPPROTO_TCP { 0 } else { ini.eport };
    Some(Target {
        pif: Pif::Host,
        side: FlowSide {
            eaddr,
            eport: ini.oport,
            oaddr: oaddr.unwrap_or(any_of(eaddr)),
            oport,
        },
    })
}

/// The flow `ini` accepted or received by a socket of `rule` of the host's
/// table (`eaddr`/`eport`: the peer, `oaddr`/`oport`: the listener's
/// address and port): spliced into the namespace, to the guest, or `None`.
pub(crate) fn from_host(
    conf: &Config,
    live: &Live,
    guest: &GuestState,
    rule: &FwdRule,
    proto: u8,
    ini: &FlowSide,
) -> Option<Target> {
    let refuse = |why| {
        log_refusal(proto, Pif::Host, ini, why);
        None
    };
    let peer = ini.eaddr.to_canonical();
    if ini.eport == 0 || peer.is_unspecified() {
        return refuse("no source");
    }
    let Some(eport) = rule.target(ini.oport) else {
        return refuse("no rule for the port");
    };
    let pasta = conf.pasta.as_ref().filter(|_| conf.mode == Mode::Pasta);
    // A target address goes through the tap as given, never spliced
    // (upstream's rule too).
    if pasta.is_some_and(|p| !p.no_splice) && peer.is_loopback() && rule.taddr.is_none() {
        // Into the namespace's loopback only if asked: by default its
        // external address, so that what listens only on its loopback is
        // not exposed. Without one (yet), its loopback all the same.
        let lo_to_lo = pasta.is_some_and(|p| p.host_lo_to_ns_lo);
        let seen = match peer {
            IpAddr::V4(_) => guest.addr4_seen.map(IpAddr::V4),
            IpAddr::V6(_) => guest.addr6_seen.map(IpAddr::V6),
        };
        let eaddr = seen
            .filter(|a| !lo_to_lo && !a.is_unspecified())
            .unwrap_or(loopback_of(peer));
        let oport = if proto == IPPROTO_UDP { ini.eport } else { 0 };
        return Some(Target {
            pif: Pif::Splice,
            side: FlowSide {
                eaddr,
                eport,
                oaddr: any_of(peer),
                oport,
            },
        });
    }
    if pasta.is_some_and(|p| p.splice_only) {
        return refuse("splice only");
    }
    let Some((src, dst)) = nat_inbound(conf, live, guest, peer) else {
        return refuse("no guest address");
    };
    let dst = match rule.taddr {
        Some(t) if t.is_ipv4() != dst.is_ipv4() => return refuse("target of another family"),
        Some(t) => t,
        None => dst,
    };
    Some(Target {
        pif: Pif::Tap,
        side: FlowSide {
            eaddr: dst,
            eport,
            oaddr: src,
            oport: ini.eport,
        },
    })
}

/// The flow `ini` accepted or received by a socket of `rule` of the
/// namespace's table: to the host's loopback, keeping the loopback
/// addresses (and, for UDP, the source port), or `None` for a peer that is
/// not on the namespace's loopback.
pub(crate) fn from_splice(rule: &FwdRule, proto: u8, ini: &FlowSide) -> Option<Target> {
    let peer = ini.eaddr.to_canonical();
    if !peer.is_loopback() || ini.eport == 0 {
        log_refusal(proto, Pif::Splice, ini, "not a loopback peer");
        return None;
    }
    let Some(eport) = rule.target(ini.oport) else {
        log_refusal(proto, Pif::Splice, ini, "no rule for the port");
        return None;
    };
    let lo = loopback_of(peer);
    let oport = if proto == IPPROTO_UDP { ini.eport } else { 0 };
    Some(Target {
        pif: Pif::Host,
        side: FlowSide {
            eaddr: lo,
            eport,
            oaddr: lo,
            oport,
        },
    })
}

/// Logs a new flow `idx` of `proto`: its initiating side `ini` on
/// `ini_pif`, and where it went. The one format of every forwarding
/// decision:
/// `Flow 12 (TCP): TAP [10.0.2.15]:40000 -> [10.0.2.2]:80 => HOST [0.0.0.0]:0 -> [127.0.0.1]:80`.
pub(crate) fn log_decision(idx: u32, proto: u8, ini_pif: Pif, ini: &FlowSide, tgt: &Target) {
    log::debug!(
        "Flow {idx} ({}): {} [{}]:{} -> [{}]:{} => {} [{}]:{} -> [{}]:{}",
        proto_name(proto),
        ini_pif.name(),
        ini.eaddr,
        ini.eport,
        ini.oaddr,
        ini.oport,
        tgt.pif.name(),
        tgt.side.oaddr,
        tgt.side.oport,
        tgt.side.eaddr,
        tgt.side.eport
    );
}

/// Logs a refused flow, in the format of [`log_decision`] (at trace
/// level: a guest sending multicast would fill the log otherwise).
fn log_refusal(proto: u8, ini_pif: Pif, ini: &FlowSide, why: &str) {
    log::trace!(
        "Flow - ({}): {} [{}]:{} -> [{}]:{} => refused: {why}",
        proto_name(proto),
        ini_pif.name(),
        ini.eaddr,
        ini.eport,
        ini.oaddr,
        ini.oport
    );
}

/// Whether a TCP or UDP flow has ports and unicast addresses.
fn unicast_ports(s: &FlowSide) -> bool {
    let multi = match s.oaddr {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_multicast(),
    };
    s.eport != 0 && s.oport != 0 && !s.eaddr.is_unspecified() && !s.oaddr.is_unspecified() && !multi
}

/// Host-side address of the guest-side destination `dst`: the mapped
/// addresses, else `dst` itself (upstream's `nat_outbound`). The guest's
/// own address is the one it has now.
fn nat_outbound(conf: &Config, live: &Live, dst: IpAddr) -> IpAddr {
    match dst {
        IpAddr::V4(d) => {
            let Some(ip4) = &conf.ip4 else { return dst };
            if ip4.map_host_loopback == Some(d) {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else if ip4.map_guest_addr == Some(d) {
                live.ip4.as_ref().map_or(dst, |l| IpAddr::V4(l.addr))
            } else {
                dst
            }
        }
        IpAddr::V6(d) => {
            let Some(ip6) = &conf.ip6 else { return dst };
            if ip6.map_host_loopback == Some(d) {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            } else if ip6.map_guest_addr == Some(d) {
                live.ip6
                    .as_ref()
                    .and_then(|l| l.addr)
                    .map_or(dst, IpAddr::V6)
            } else {
                dst
            }
        }
    }
}

/// The host-side socket address for `addr` (a target from [`from_tap`])
/// and `port`. An IPv6 link-local address gets the
/// template interface as its scope, as upstream's `pif_sockaddr()`: the
/// kernel refuses to send to one without a scope (`EINVAL`) unless the
/// socket is bound to a device. That is the address the guest's default
/// route points to when the host's gateway is global (`our_tap_ll`, the
/// host's own link-local address), so without it the guest could not
/// even ping its router.
pub(crate) fn host_sockaddr(conf: &Config, addr: IpAddr, port: u16) -> SocketAddr {
    match addr {
        IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, port)),
        IpAddr::V6(a) => {
            let link_local = crate::wire::ipv6::is_link_local(a);
            let scope = match &conf.ip6 {
                Some(c) if link_local => c.ifindex,
                _ => 0,
            };
            SocketAddr::V6(SocketAddrV6::new(a, port, 0, scope))
        }
    }
}

/// The resolver that DNS (TCP or UDP to port 53 or 853) to `dst` goes to,
/// if `dst` is the `--dns-forward` address: the resolver of now (it
/// follows the host's resolv.conf unless `--dns-host` was given).
fn dns_target(live: &Live, proto: u8, dst: IpAddr, port: u16) -> Option<IpAddr> {
    if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) || (port != 53 && port != 853) {
        return None;
    }
    match dst {
        IpAddr::V4(d) => {
            let ip4 = live.ip4.as_ref()?;
            (ip4.dns_match == Some(d))
                .then_some(ip4.dns_host)
                .flatten()
                .map(IpAddr::V4)
        }
        IpAddr::V6(d) => {
            let ip6 = live.ip6.as_ref()?;
            (ip6.dns_match == Some(d))
                .then_some(ip6.dns_host)
                .flatten()
                .map(IpAddr::V6)
        }
    }
}

/// Addresses of an inbound flow from `peer` as the guest sees them:
/// (source, destination). Loopback peers appear as the map-host-loopback
/// address (or our own tap address); the host itself, via its external
/// address, as the map-guest-addr address; everybody else as themselves.
/// The destination is the address the guest uses (link-local if the
/// source is). `None` without an address of that family.
fn nat_inbound(
    conf: &Config,
    live: &Live,
    guest: &GuestState,
    peer: IpAddr,
) -> Option<(IpAddr, IpAddr)> {
    match peer {
        IpAddr::V4(p) => {
            let c = conf.ip4.as_ref()?;
            let addr = live.ip4.as_ref()?.addr;
            let dst = guest.addr4_seen.unwrap_or(addr);
            let src = if p.is_loopback() {
                c.map_host_loopback.unwrap_or(c.our_tap_addr)
            } else if p == addr || p == dst {
                c.map_guest_addr.unwrap_or(c.our_tap_addr)
            } else if p.is_unspecified() {
                c.our_tap_addr
            } else {
                p
            };
            Some((IpAddr::V4(src), IpAddr::V4(dst)))
        }
        IpAddr::V6(p) => {
            let c = conf.ip6.as_ref()?;
            let addr = live.ip6.as_ref()?.addr;
            let src = if p.is_loopback() {
                c.map_host_loopback.unwrap_or(c.our_tap_ll)
            } else if Some(p) == addr {
                c.map_guest_addr.unwrap_or(c.our_tap_ll)
            } else if p.is_unspecified() {
                c.our_tap_ll
            } else {
                p
            };
            let dst = if src.segments()[0] & 0xffc0 == 0xfe80 {
                guest.addr6_ll_seen.or(guest.addr6_seen).or(addr)?
            } else {
                guest.addr6_seen.or(addr)?
            };
            Some((IpAddr::V6(src), IpAddr::V6(dst)))
        }
    }
}

/// The unspecified address of `a`'s family.
pub(crate) fn any_of(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// The loopback address of `a`'s family.
pub(crate) fn loopback_of(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::{NsTarget, PastaConf, Proto};
    use crate::flow::{IPPROTO_ICMP, IPPROTO_ICMPV6};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn side(e: &str, eport: u16, o: &str, oport: u16) -> FlowSide {
        FlowSide {
            eaddr: ip(e),
            eport,
            oaddr: ip(o),
            oport,
        }
    }

    /// passt's test configuration (guest 192.168.1.10 and
    /// 2001:db8:1:2::10, gateways mapped to the host's loopback), with
    /// `--map-guest-addr` and `--dns-forward` set.
    fn conf() -> Config {
        let mut c = crate::arp::tests::test_config();
        let ip4 = c.ip4.as_mut().unwrap();
        ip4.map_host_loopback = Some(ip4.gw);
        ip4.map_guest_addr = Some("192.168.1.2".parse().unwrap());
        ip4.dns_match = Some("192.168.1.3".parse().unwrap());
        ip4.dns_host = Some("198.51.100.53".parse().unwrap());
        let ip6 = c.ip6.as_mut().unwrap();
        ip6.map_host_loopback = Some(ip6.gw);
        ip6.map_guest_addr = Some("2001:db8:1:2::2".parse().unwrap());
        ip6.dns_match = Some("2001:db8:1:2::3".parse().unwrap());
        ip6.dns_host = Some("2001:db8:53::53".parse().unwrap());
        c
    }

    fn pasta(c: &mut Config, lo_to_lo: bool) {
        c.mode = Mode::Pasta;
        c.pasta = Some(PastaConf {
            target: NsTarget::Pid(1),
            userns: None,
            netns_only: false,
            no_netns_quit: false,
            config_net: false,
            ns_ifname: String::new(),
            ns_mac: None,
            no_copy_routes: false,
            no_copy_addrs: false,
            no_splice: false,
            splice_only: false,
            host_lo_to_ns_lo: lo_to_lo,
        });
    }

    fn guest(c: &Config) -> GuestState {
        GuestState {
            mac: [0xff; 6],
            addr4_seen: c.ip4.as_ref().map(|c| c.addr),
            addr6_seen: c.ip6.as_ref().and_then(|c| c.addr),
            addr6_ll_seen: Some("fe80::5054:ff:fe12:3456".parse().unwrap()),
        }
    }

    fn rule(first: u16, last: u16, to: u16) -> FwdRule {
        FwdRule {
            proto: Proto::Tcp,
            addr: None,
            ifname: None,
            first,
            last,
            to,
            taddr: None,
            weak: false,
            scan: false,
        }
    }

    /// From the guest: (destination, protocol, port) => host destination.
    #[test]
    fn from_tap_translates_the_mapped_addresses() {
        let c = conf();
        let gw6 = c.ip6.as_ref().unwrap().gw.to_string();
        let ll = c.ip6.as_ref().unwrap().our_tap_ll.to_string();
        let cases = [
            // The gateway is the host.
            ("192.168.1.10", "192.168.1.1", IPPROTO_TCP, 80, "127.0.0.1"),
            ("2001:db8:1:2::10", gw6.as_str(), IPPROTO_TCP, 80, "::1"),
            // Here the gateway is link-local: it is also our link-local
            // address, the guest's IPv6 router.
            ("fe80::1", ll.as_str(), IPPROTO_ICMPV6, 7, "::1"),
            // --map-guest-addr: the host's own address.
            (
                "192.168.1.10",
                "192.168.1.2",
                IPPROTO_UDP,
                9,
                "192.168.1.10",
            ),
            (
                "2001:db8:1:2::10",
                "2001:db8:1:2::2",
                IPPROTO_TCP,
                9,
                "2001:db8:1:2::10",
            ),
            // DNS to --dns-forward goes to --dns-host, TCP and UDP, 53
            // and 853; other ports and protocols don't.
            (
                "192.168.1.10",
                "192.168.1.3",
                IPPROTO_UDP,
                53,
                "198.51.100.53",
            ),
            (
                "192.168.1.10",
                "192.168.1.3",
                IPPROTO_TCP,
                853,
                "198.51.100.53",
            ),
            (
                "192.168.1.10",
                "192.168.1.3",
                IPPROTO_UDP,
                54,
                "192.168.1.3",
            ),
            (
                "192.168.1.10",
                "192.168.1.3",
                IPPROTO_ICMP,
                53,
                "192.168.1.3",
            ),
            (
                "2001:db8:1:2::10",
                "2001:db8:1:2::3",
                IPPROTO_UDP,
                53,
                "2001:db8:53::53",
            ),
            // Anything else passes unchanged.
            (
                "192.168.1.10",
                "203.0.113.7",
                IPPROTO_TCP,
                443,
                "203.0.113.7",
            ),
            (
                "2001:db8:1:2::10",
                "2001:db8:ffff::7",
                IPPROTO_UDP,
                443,
                "2001:db8:ffff::7",
            ),
        ];
        for (src, dst, proto, port, want) in cases {
            let ini = side(src, 40000, dst, port);
            let t = from_tap(&c, &Live::new(&c), proto, &ini).unwrap();
            assert_eq!(t.pif, Pif::Host, "{dst}");
            assert_eq!(t.side.eaddr, ip(want), "{dst} {proto} {port}");
            assert_eq!(t.side.eport, port);
            assert!(t.side.oaddr.is_unspecified());
            assert_eq!(t.side.eaddr.is_ipv4(), t.side.oaddr.is_ipv4());
            // The kernel picks the source port, except for UDP and echo.
            let oport = if proto == IPPROTO_TCP { 0 } else { 40000 };
            assert_eq!(t.side.oport, oport);
        }
    }

    #[test]
    fn from_tap_refusals_and_outbound_address() {
        let mut c = conf();
        for (src, dst, dport) in [
            ("192.168.1.10", "224.0.0.251", 5353),
            ("192.168.1.10", "255.255.255.255", 67),
            ("0.0.0.0", "192.168.1.1", 80),
            ("192.168.1.10", "192.168.1.1", 0),
            ("2001:db8:1:2::10", "ff02::fb", 5353),
        ] {
            let ini = side(src, 1000, dst, dport);
            assert_eq!(
                from_tap(&c, &Live::new(&c), IPPROTO_UDP, &ini),
                None,
                "{dst}"
            );
        }
        // -o: the host side's source address.
        c.ip4.as_mut().unwrap().addr_out = Some("192.168.1.99".parse().unwrap());
        let t = from_tap(
            &c,
            &Live::new(&c),
            IPPROTO_TCP,
            &side("192.168.1.10", 1, "203.0.113.7", 2),
        )
        .unwrap();
        assert_eq!(t.side.oaddr, ip("192.168.1.99"));
        // --no-map-gw: the gateway is not the host.
        c.ip4.as_mut().unwrap().map_host_loopback = None;
        let ip6 = c.ip6.as_mut().unwrap();
        ip6.map_host_loopback = None;
        let ll = ip6.our_tap_ll.to_string();
        let t = from_tap(
            &c,
            &Live::new(&c),
            IPPROTO_TCP,
            &side("192.168.1.10", 1, "192.168.1.1", 2),
        )
        .unwrap();
        assert_eq!(t.side.eaddr, ip("192.168.1.1"));
        let t = from_tap(
            &c,
            &Live::new(&c),
            IPPROTO_ICMPV6,
            &side("fe80::1", 1, &ll, 1),
        )
        .unwrap();
        assert_eq!(t.side.eaddr, ip(&ll));
    }

    /// From a host listener: to the guest, with the mapped source.
    #[test]
    fn from_host_to_the_guest() {
        let c = conf();
        let g = guest(&c);
        let r = rule(8000, 8010, 9000);
        let cases = [
            // A plain peer keeps its address.
            ("203.0.113.7", "203.0.113.7", "192.168.1.10"),
            ("2001:db8:ffff::7", "2001:db8:ffff::7", "2001:db8:1:2::10"),
            // The host's loopback appears as the mapped gateway.
            ("127.0.0.1", "192.168.1.1", "192.168.1.10"),
            ("::1", "fe80::1", "fe80::5054:ff:fe12:3456"),
            // The host's own address as the --map-guest-addr address.
            ("192.168.1.10", "192.168.1.2", "192.168.1.10"),
            ("2001:db8:1:2::10", "2001:db8:1:2::2", "2001:db8:1:2::10"),
            // IPv4-mapped peers are IPv4.
            ("::ffff:203.0.113.7", "203.0.113.7", "192.168.1.10"),
        ];
        for (peer, src, dst) in cases {
            let ini = side(peer, 50000, "0.0.0.0", 8002);
            let t = from_host(&c, &Live::new(&c), &g, &r, IPPROTO_TCP, &ini).unwrap();
            assert_eq!(t.pif, Pif::Tap, "{peer}");
            let want = side(dst, 9002, src, 50000);
            assert_eq!(t.side, want, "{peer}");
        }
        // No address of that family: refused.
        let mut c4 = conf();
        c4.ip6 = None;
        let ini = side("2001:db8:ffff::7", 50000, "::", 8002);
        assert_eq!(
            from_host(&c4, &Live::new(&c4), &g, &r, IPPROTO_UDP, &ini),
            None
        );
    }

    /// pasta: loopback peers are spliced into the namespace, to its
    /// address, or its loopback with --host-lo-to-ns-lo.
    #[test]
    fn from_host_splices_loopback_peers() {
        let mut c = conf();
        pasta(&mut c, false);
        let g = guest(&c);
        let r = rule(80, 80, 8080);
        for (proto, peer, want, oport) in [
            (IPPROTO_TCP, "127.0.0.1", "192.168.1.10", 0),
            (IPPROTO_UDP, "127.0.0.1", "192.168.1.10", 50000),
            (IPPROTO_TCP, "::1", "2001:db8:1:2::10", 0),
        ] {
            let t = from_host(
                &c,
                &Live::new(&c),
                &g,
                &r,
                proto,
                &side(peer, 50000, "0.0.0.0", 80),
            )
            .unwrap();
            assert_eq!(t.pif, Pif::Splice);
            assert_eq!(
                t.side,
                side(want, 8080, &any_of(ip(peer)).to_string(), oport)
            );
        }
        // Not a loopback peer: to the guest.
        let t = from_host(
            &c,
            &Live::new(&c),
            &g,
            &r,
            IPPROTO_TCP,
            &side("203.0.113.7", 1, "0.0.0.0", 80),
        );
        assert_eq!(t.unwrap().pif, Pif::Tap);

        pasta(&mut c, true);
        for peer in ["127.0.0.1", "::1"] {
            let t = from_host(
                &c,
                &Live::new(&c),
                &g,
                &r,
                IPPROTO_TCP,
                &side(peer, 1, "::", 80),
            )
            .unwrap();
            assert_eq!((t.pif, t.side.eaddr), (Pif::Splice, ip(peer)));
        }
        // --no-splice: loopback peers go to the guest too.
        c.pasta.as_mut().unwrap().no_splice = true;
        let t = from_host(
            &c,
            &Live::new(&c),
            &g,
            &r,
            IPPROTO_TCP,
            &side("127.0.0.1", 1, "0.0.0.0", 80),
        );
        assert_eq!(t.unwrap().pif, Pif::Tap);
        // A port outside the rule: refused.
        assert_eq!(
            from_host(
                &c,
                &Live::new(&c),
                &g,
                &r,
                IPPROTO_TCP,
                &side("127.0.0.1", 1, "0.0.0.0", 81)
            ),
            None
        );
    }

    /// From the namespace's loopback: to the host's, port mapped.
    #[test]
    fn from_splice_to_host_loopback() {
        let r = rule(5000, 5001, 6000);
        for (proto, peer, oport) in [(IPPROTO_TCP, "127.0.0.1", 0), (IPPROTO_UDP, "::1", 40000)] {
            let t = from_splice(&r, proto, &side(peer, 40000, peer, 5001)).unwrap();
            assert_eq!(t.pif, Pif::Host);
            assert_eq!(t.side, side(peer, 6001, peer, oport));
        }
        let ini = side("192.168.1.10", 40000, "192.168.1.10", 5000);
        assert_eq!(from_splice(&r, IPPROTO_TCP, &ini), None);
    }

    /// With a global gateway, our link-local address (the guest's IPv6
    /// router) is the host's own on the template interface: it passes
    /// unchanged, as upstream, and gets its scope from `host_sockaddr`.
    #[test]
    fn from_tap_router_link_local_with_a_global_gateway() {
        let mut c = conf();
        let ip6 = c.ip6.as_mut().unwrap();
        ip6.gw = "2001:db8:1:2::1".parse().unwrap();
        ip6.map_host_loopback = Some(ip6.gw);
        ip6.our_tap_ll = "fe80::1234".parse().unwrap();
        let t = from_tap(
            &c,
            &Live::new(&c),
            IPPROTO_ICMPV6,
            &side("fe80::1", 7, "fe80::1234", 7),
        )
        .unwrap();
        assert_eq!((t.pif, t.side.eaddr), (Pif::Host, ip("fe80::1234")));
        let t = from_tap(
            &c,
            &Live::new(&c),
            IPPROTO_TCP,
            &side("fe80::1", 7, "2001:db8:1:2::1", 80),
        )
        .unwrap();
        assert_eq!(t.side.eaddr, ip("::1"));
    }

    /// Host-side socket addresses: a link-local IPv6 destination gets the
    /// template interface's index as its scope, anything else none.
    #[test]
    fn host_sockaddr_scopes_link_local_addresses() {
        let mut c = conf();
        c.ip6.as_mut().unwrap().ifindex = 7;
        let ll = c.ip6.as_ref().unwrap().our_tap_ll;
        let SocketAddr::V6(a) = host_sockaddr(&c, IpAddr::V6(ll), 80) else {
            panic!("IPv6 in, IPv6 out");
        };
        assert_eq!((*a.ip(), a.port(), a.scope_id()), (ll, 80, 7));
        let SocketAddr::V6(a) = host_sockaddr(&c, ip("2001:db8::1"), 80) else {
            panic!("IPv6 in, IPv6 out");
        };
        assert_eq!(a.scope_id(), 0);
        assert_eq!(
            host_sockaddr(&c, ip("192.168.1.1"), 53),
            "192.168.1.1:53".parse().unwrap()
        );
    }
}
