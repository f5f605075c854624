//! One UDP flow, and the sockets that carry it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SocketFlags, SocketType};

use crate::flow::{FlowKey, FlowSide, Pif};

/// Receive buffer asked for flow sockets.
pub(crate) const SOCK_BUF: usize = 4 << 20;

/// IP protocol number of UDP.
pub(crate) const IPPROTO_UDP: u8 = 17;

/// A UDP pseudo-connection between two sides.
///
/// Side 0 (`INISIDE`) sent the first datagram, side 1 (`TGTSIDE`) is
/// where we forwarded it. A side on the tap has no socket; a side on
/// [`Pif::Host`] or [`Pif::Splice`] has one, connected to that side's
/// endpoint, so the kernel delivers the peer's datagrams to it and nothing
/// else.
pub(crate) struct UdpFlow {
    pub(crate) pif: [Pif; 2],
    /// Each side as seen on its interface: the endpoint is the peer there,
    /// `oaddr`/`oport` are ours.
    pub(crate) side: [FlowSide; 2],
    pub(crate) sock: [Option<OwnedFd>; 2],
    /// Last datagram, either way.
    pub(crate) last: Instant,
    /// Datagrams from each side, saturating at 255.
    pub(crate) activity: [u8; 2],
    /// The guest's TTL / hop limit last applied to the host socket (0:
    /// none yet), so traceroute from the guest works.
    pub(crate) ttl: u8,
    /// Runs of equal-size datagrams go out as UDP GSO sends (cleared
    /// when the kernel refuses one).
    pub(crate) gso: bool,
}

impl UdpFlow {
    /// Applies the guest's TTL (hop limit) to side `s`'s socket if it
    /// changed.
    pub(crate) fn apply_ttl(&mut self, s: usize, ttl: u8) {
        if ttl == self.ttl || ttl == 0 {
            return;
        }
        let Some(sock) = self.sock[s].as_ref() else {
            return;
        };
        let r = if self.side[s].eaddr.is_ipv6() {
            rustix::net::sockopt::set_ipv6_unicast_hops(sock, Some(ttl))
        } else {
            rustix::net::sockopt::set_ip_ttl(sock, u32::from(ttl))
        };
        if r.is_ok() {
            self.ttl = ttl;
        }
    }
}

impl UdpFlow {
    /// The lookup key of side `s`.
    pub(crate) fn key(&self, s: usize) -> FlowKey {
        FlowKey {
            proto: IPPROTO_UDP,
            pif: self.pif[s],
            side: self.side[s],
        }
    }

    /// Counts a datagram from side `s`.
    pub(crate) fn seen(&mut self, s: usize, now: Instant) {
        self.activity[s] = self.activity[s].saturating_add(1);
        self.last = now;
    }

    /// Whether the flow has been idle for longer than its timeout: the
    /// long (stream) one once the target side answered and more than one
    /// datagram went either way, the short one otherwise (as conntrack).
    pub(crate) fn expired(&self, now: Instant, short: Duration, stream: Duration) -> bool {
        let is_stream = self.activity[1] > 0 && (self.activity[0] > 1 || self.activity[1] > 1);
        let t = if is_stream { stream } else { short };
        now.saturating_duration_since(self.last) > t
    }
}

/// How to open one flow socket.
pub(crate) struct SockSpec<'a> {
    /// Local address and port to bind (port 0: any).
    pub(crate) local: SocketAddr,
    /// On bind failure, retry with an ephemeral port.
    pub(crate) fallback: bool,
    /// Share a listener's port (`SO_REUSEADDR`).
    pub(crate) reuse: bool,
    /// `SO_BINDTODEVICE`.
    pub(crate) ifname: Option<&'a str>,
    /// Queue ICMP errors (`IP_RECVERR`/`IPV6_RECVERR`).
    pub(crate) recverr: bool,
    /// Where it connects.
    pub(crate) peer: SocketAddr,
}

/// Opens, binds and connects a datagram socket; returns it with its local
/// address after `connect()` (the kernel fills in an unbound address).
pub(crate) fn open_connected(spec: &SockSpec<'_>) -> io::Result<(OwnedFd, SocketAddr)> {
    let v6 = spec.peer.is_ipv6();
    let family = if v6 {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    let s = rustix::net::socket_with(
        family,
        SocketType::DGRAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    if v6 {
        rustix::net::sockopt::set_ipv6_v6only(&s, true)?;
    }
    if spec.reuse {
        crate::sys::udp::set_reuseaddr(&s)?;
    }
    // Room for bursts while the other side is busy (capped by
    // net.core.rmem_max).
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&s, SOCK_BUF);
    if spec.recverr {
        crate::sys::udp::set_recverr(&s, v6)?;
    }
    if let Some(ifn) = spec.ifname {
        crate::sys::bind_to_device(&s, ifn)?;
    }
    if spec.local.port() != 0 || !spec.local.ip().is_unspecified() {
        match rustix::net::bind(&s, &spec.local) {
            Ok(()) => {}
            Err(_) if spec.fallback && spec.local.port() != 0 => {
                let mut any = spec.local;
                any.set_port(0);
                rustix::net::bind(&s, &any)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    rustix::net::connect(&s, &spec.peer)?;
    let local = rustix::net::getsockname(&s)?;
    let local = SocketAddr::try_from(local).map_err(|_| io::Error::other("bad local address"))?;
    Ok((s, local))
}

/// IPv4-mapped IPv6 addresses as IPv4.
pub(crate) fn unmap(a: IpAddr) -> IpAddr {
    a.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn flow() -> UdpFlow {
        let side = FlowSide {
            eaddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            eport: 1,
            oaddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            oport: 2,
        };
        UdpFlow {
            pif: [Pif::Tap, Pif::Host],
            side: [side, side],
            sock: [None, None],
            last: Instant::now(),
            activity: [0, 0],
            ttl: 0,
            gso: true,
        }
    }

    #[test]
    fn short_then_stream_timeout() {
        let short = Duration::from_secs(30);
        let stream = Duration::from_secs(120);
        let mut f = flow();
        let t0 = f.last;
        f.seen(0, t0);
        assert!(!f.expired(t0 + Duration::from_secs(29), short, stream));
        assert!(f.expired(t0 + Duration::from_secs(31), short, stream));
        // A reply alone is not a stream yet; a second datagram makes it one.
        f.seen(1, t0);
        assert!(f.expired(t0 + Duration::from_secs(31), short, stream));
        f.seen(0, t0);
        assert!(!f.expired(t0 + Duration::from_secs(119), short, stream));
        assert!(f.expired(t0 + Duration::from_secs(121), short, stream));
        for _ in 0..300 {
            f.seen(0, t0);
        }
        assert_eq!(f.activity[0], 255);
    }
}
