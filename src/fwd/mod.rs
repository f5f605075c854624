//! Forwarding decisions and address translation between the guest's view
//! and the host's.
//!
//! The guest sees the host's own addresses, so most traffic passes
//! unchanged. A few guest-side addresses mean something else on the host
//! (inventory "NAT" rules):
//!
//! - the `--map-host-loopback` address (the gateway by default) is the
//!   host itself: it becomes 127.0.0.1 / ::1;
//! - the `--map-guest-addr` address becomes the guest's assigned address,
//!   i.e. the host's own external address;
//! - DNS to the `--dns-forward` address goes to the `--dns-host` resolver
//!   (TCP/UDP port 53 only; see `dns_target`).
//!
//! Replies follow the flow's stored sides, which undoes the translation.
//! The forwarding table for `-t`/`-u`/`-T`/`-U` lives in [`rules`], built
//! from the port specifications parsed by [`spec`]; pasta's `auto` rules
//! follow the ports bound on the other side through the [`scan`]ner.
//!
//! Loopback connections between the host and pasta's namespace do not
//! cross the tap: a `-t` connection from the host's loopback, and every
//! `-T` connection, is spliced socket to socket
//! ([`crate::tcp::splice`]), to the namespace's address (its loopback
//! with `--host-lo-to-ns-lo`) or to the host's loopback.

pub mod rules;
pub mod scan;
pub mod spec;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::conf::Config;

/// Host-side destination for a guest packet to `dst` (not DNS specific).
pub fn nat_from_tap(conf: &Config, dst: IpAddr) -> IpAddr {
    match dst {
        IpAddr::V4(d) => {
            let Some(ip4) = &conf.ip4 else { return dst };
            if ip4.map_host_loopback == Some(d) {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else if ip4.map_guest_addr == Some(d) {
                IpAddr::V4(ip4.addr)
            } else {
                dst
            }
        }
        IpAddr::V6(d) => {
            let Some(ip6) = &conf.ip6 else { return dst };
            if ip6.map_host_loopback == Some(d) {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            } else if ip6.map_guest_addr == Some(d) {
                ip6.addr.map_or(dst, IpAddr::V6)
            } else {
                dst
            }
        }
    }
}

/// The host-side socket address for `addr` (a target from [`nat_from_tap`]
/// or [`dns_target`]) and `port`. An IPv6 link-local address gets the
/// template interface as its scope, as upstream's `pif_sockaddr()`: the
/// kernel refuses to send to one without a scope (`EINVAL`) unless the
/// socket is bound to a device. That is the address the guest's default
/// route points to when the host's gateway is global (`our_tap_ll`, the
/// host's own link-local address), so without it the guest could not
/// even ping its router.
pub fn host_sockaddr(conf: &Config, addr: IpAddr, port: u16) -> SocketAddr {
    match addr {
        IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, port)),
        IpAddr::V6(a) => {
            let link_local = a.segments()[0] & 0xffc0 == 0xfe80;
            let scope = match &conf.ip6 {
                Some(c) if link_local => c.ifindex,
                _ => 0,
            };
            SocketAddr::V6(SocketAddrV6::new(a, port, 0, scope))
        }
    }
}

/// The resolver that DNS to `dst` port `port` goes to, if `dst` is the
/// `--dns-forward` address.
pub fn dns_target(conf: &Config, dst: IpAddr, port: u16) -> Option<IpAddr> {
    if port != 53 && port != 853 {
        return None;
    }
    match dst {
        IpAddr::V4(d) => {
            let ip4 = conf.ip4.as_ref()?;
            (ip4.dns_match == Some(d))
                .then_some(ip4.dns_host)
                .flatten()
                .map(IpAddr::V4)
        }
        IpAddr::V6(d) => {
            let ip6 = conf.ip6.as_ref()?;
            (ip6.dns_match == Some(d))
                .then_some(ip6.dns_host)
                .flatten()
                .map(IpAddr::V6)
        }
    }
}
