//! What the guest is told now: the values of the configuration that may
//! follow the host at run time.
//!
//! The [`Config`] never changes. The guest's address, prefix length and
//! gateway, and the nameservers (the list announced, the `--dns-forward`
//! match address, the resolver forwarded DNS goes to) start as the
//! configuration says and are then changed by [`crate::follow`] when the
//! host's resolv.conf, addresses or routes change (and only where the
//! configuration's [`Follow`](crate::conf::Follow) flags allow: an explicit
//! option is never overridden). The loop ([`crate::ctx`]) owns one
//! [`Live`]; the services ([`crate::arp`], [`crate::ndp`], [`crate::dhcp`],
//! [`crate::dhcpv6`]) and the address translation ([`crate::fwd`]) read
//! these values from it, never from the configuration.
//!
//! Reads are plain field reads: nothing here allocates on the data path;
//! a change (rare, from the control path) replaces the vectors.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::conf::{Config, Ip4Conf, Ip6Conf};

/// Addresses a guest had before a change that it may still use as a
/// source (its flows of the old address end by themselves): the newest
/// ones, at most this many.
const FORMER_MAX: usize = 8;

/// IPv4 as the guest is told now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Live4 {
    /// The guest's address (DHCP yiaddr, `--config-net`).
    pub(crate) addr: Ipv4Addr,
    pub(crate) prefix_len: u8,
    /// The guest's default gateway.
    pub(crate) gw: Ipv4Addr,
    /// The template interface's addresses (the guest may use any).
    pub(crate) host_addrs: Vec<(Ipv4Addr, u8)>,
    /// Addresses of the guest before a change, still accepted as sources.
    pub(crate) former: Vec<Ipv4Addr>,
    /// Nameservers announced (DHCP option 6).
    pub(crate) dns: Vec<Ipv4Addr>,
    /// `--dns-forward` address (or the map-host-loopback one standing for
    /// a loopback resolver).
    pub(crate) dns_match: Option<Ipv4Addr>,
    /// Where DNS to `dns_match` goes.
    pub(crate) dns_host: Option<Ipv4Addr>,
}

/// IPv6 as the guest is told now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Live6 {
    /// The guest's global address (DHCPv6, RA prefix), if any.
    pub(crate) addr: Option<Ipv6Addr>,
    pub(crate) prefix_len: u8,
    /// The guest's default router.
    pub(crate) gw: Ipv6Addr,
    /// The template interface's global addresses.
    pub(crate) host_addrs: Vec<(Ipv6Addr, u8)>,
    /// Addresses of the guest before a change, still accepted as sources.
    pub(crate) former: Vec<Ipv6Addr>,
    /// A prefix the guest was told before a change: router advertisements
    /// carry it with lifetime 0, so that SLAAC guests deprecate it.
    pub(crate) deprecated_prefix: Option<Ipv6Addr>,
    /// Nameservers announced (DHCPv6 option 23, RA RDNSS).
    pub(crate) dns: Vec<Ipv6Addr>,
    pub(crate) dns_match: Option<Ipv6Addr>,
    pub(crate) dns_host: Option<Ipv6Addr>,
}

/// What the guest is told now, per family (None: the family is off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Live {
    pub(crate) ip4: Option<Live4>,
    pub(crate) ip6: Option<Live6>,
}

impl Live4 {
    fn new(c: &Ip4Conf) -> Self {
        Live4 {
            addr: c.addr,
            prefix_len: c.prefix_len,
            gw: c.gw,
            host_addrs: c.host_addrs.clone(),
            former: Vec::new(),
            dns: c.dns.clone(),
            dns_match: c.dns_match,
            dns_host: c.dns_host,
        }
    }

    /// Whether the guest may send from `a`: its address, one of the
    /// template interface's, or one it had before a change.
    pub(crate) fn is_ours(&self, a: Ipv4Addr) -> bool {
        a == self.addr || self.host_addrs.iter().any(|&(h, _)| h == a) || self.former.contains(&a)
    }

    /// Remembers `old` as a former address of the guest.
    pub(crate) fn retire(&mut self, old: Ipv4Addr) {
        retire(&mut self.former, old);
    }
}

impl Live6 {
    fn new(c: &Ip6Conf) -> Self {
        Live6 {
            addr: c.addr,
            prefix_len: c.prefix_len,
            gw: c.gw,
            host_addrs: c.host_addrs.clone(),
            former: Vec::new(),
            deprecated_prefix: None,
            dns: c.dns.clone(),
            dns_match: c.dns_match,
            dns_host: c.dns_host,
        }
    }

    /// Whether the guest may send from `a`: an address in the /64 of its
    /// address, of one of the template interface's, or of one it had
    /// before a change (SLAAC guests make their own in the prefix).
    pub(crate) fn is_ours(&self, a: Ipv6Addr) -> bool {
        let prefix64 = |p: Ipv6Addr| p == a || p.segments()[..4] == a.segments()[..4];
        self.addr.is_some_and(prefix64)
            || self.host_addrs.iter().any(|&(h, _)| prefix64(h))
            || self.former.iter().any(|&f| prefix64(f))
    }

    /// Remembers `old` as a former address of the guest.
    pub(crate) fn retire(&mut self, old: Ipv6Addr) {
        retire(&mut self.former, old);
    }
}

/// Adds `old` to `former` (once), dropping the oldest beyond
/// [`FORMER_MAX`].
fn retire<A: PartialEq>(former: &mut Vec<A>, old: A) {
    if former.contains(&old) {
        return;
    }
    if former.len() >= FORMER_MAX {
        former.remove(0);
    }
    former.push(old);
}

impl Live {
    /// The values the configuration starts with.
    pub(crate) fn new(conf: &Config) -> Self {
        Live {
            ip4: conf.ip4.as_ref().map(Live4::new),
            ip6: conf.ip6.as_ref().map(Live6::new),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_as_configured_and_keeps_former_addresses() {
        let conf = crate::arp::tests::test_config();
        let mut live = Live::new(&conf);
        let ip4 = conf.ip4.as_ref().unwrap();
        let l4 = live.ip4.as_mut().unwrap();
        assert_eq!((l4.addr, l4.gw, &l4.dns), (ip4.addr, ip4.gw, &ip4.dns));
        let old = l4.addr;
        l4.addr = Ipv4Addr::new(10, 1, 1, 1);
        l4.retire(old);
        assert!(l4.is_ours(old) && l4.is_ours(l4.addr));
        assert!(!l4.is_ours(Ipv4Addr::new(10, 1, 1, 2)));
        for i in 0..20 {
            l4.retire(Ipv4Addr::new(10, 9, 9, i));
        }
        assert_eq!(l4.former.len(), FORMER_MAX);
        assert!(!l4.is_ours(old));

        let l6 = live.ip6.as_mut().unwrap();
        let old: Ipv6Addr = l6.addr.unwrap();
        l6.addr = Some("2001:db8:99::1".parse().unwrap());
        l6.retire(old);
        assert!(l6.is_ours("2001:db8:99::1234".parse().unwrap()));
        assert!(l6.is_ours(old));
        assert!(!l6.is_ours("2001:db8:98::1".parse().unwrap()));
    }
}
