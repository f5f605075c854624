//! Host discovery: what the guest will be made to look like.
//!
//! Reads, over rtnetlink in the namespace we start in, the template
//! interface of each address family (the one holding the first default
//! route, unless named with `-i` / `--outbound-if4/6`), its addresses,
//! default gateway and MTU, and reads nameservers and search domains from
//! `/etc/resolv.conf`. Nothing here decides defaults: that is
//! [`super::resolve`]'s job, so that it stays testable without a host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 side of the template interface.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Host4 {
    pub ifname: String,
    pub ifindex: u32,
    /// Non-deprecated addresses with prefix lengths, longest prefix first.
    pub addrs: Vec<(Ipv4Addr, u8)>,
    /// Default gateway, if there is a default route.
    pub gw: Option<Ipv4Addr>,
    pub mtu: u32,
}

/// IPv6 side of the template interface.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Host6 {
    pub ifname: String,
    pub ifindex: u32,
    /// Global (non-link-local, non-deprecated) addresses, longest prefix
    /// first.
    pub addrs: Vec<(Ipv6Addr, u8)>,
    /// The interface's link-local address.
    pub ll: Option<Ipv6Addr>,
    /// Default router, usually link-local.
    pub gw: Option<Ipv6Addr>,
    pub mtu: u32,
}

/// What `/etc/resolv.conf` says.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
}

/// Everything discovered about the host.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HostInfo {
    /// None: no IPv4 template interface (local mode for IPv4).
    pub v4: Option<Host4>,
    /// None: no IPv6 template interface (local mode for IPv6).
    pub v6: Option<Host6>,
    pub resolv: ResolvConf,
    /// The host's hostname (pasta spawn mode names the namespace
    /// `pasta-<hostname>`).
    pub hostname: String,
}
