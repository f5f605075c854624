//! ICMP and ICMPv6 echo through unprivileged "ping" sockets.
//!
//! ## Theory of operation
//!
//! An Echo Request from the guest opens (or reuses) a ping flow keyed by
//! (guest source address, destination, echo identifier). Each flow owns a
//! `socket(AF_INET{,6}, SOCK_DGRAM, IPPROTO_ICMP{V6})` on the host side: the
//! kernel lets unprivileged users send echo requests through it (subject to
//! `net.ipv4.ping_group_range`), picks the identifier itself and fixes the
//! checksum. The request goes out as the guest wrote it (header and
//! payload), to where [`crate::fwd::from_tap`] sends the flow (so the
//! gateway address reaches the host's loopback, and a link-local
//! destination, such as the guest's router, gets its scope from
//! `fwd::host_sockaddr`).
//!
//! Replies come back on the flow's socket with the kernel's identifier: we
//! put the guest's identifier back, recompute the checksum and send the
//! reply to the guest from the address it pinged. In pasta mode a reply
//! with the same sequence number as the previous one is dropped (a
//! duplicate of our own request seen through loopback).
//!
//! Flows live in the shared flow table ([`crate::flow`]), keyed by the
//! guest's address, the echo identifier and the destination; the flow
//! index is the socket's epoll reference, so a readable socket finds its
//! flow directly. Flows that saw no request for 60 s are closed by the
//! periodic timer.

// Every byte parsed here is attacker-controlled (guest input) and a panic
// aborts the process, cutting every flow: no unchecked index or slice, no
// arithmetic that can overflow. (Unit tests index their own fixtures.)
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::conf::{Config, Mode};
use crate::event::{Epoll, EpollRef, Kind};
use crate::flow::{FlowKey, FlowSide, Pif, ProtoFlows, IPPROTO_ICMP, IPPROTO_ICMPV6};
use crate::wire::icmp::IcmpPacket;
use crate::wire::{build, icmp, icmpv6, Mac};
/// The flow table as ICMP sees it.
pub(crate) type Flows = dyn ProtoFlows<PingFlow>;

impl dyn ProtoFlows<PingFlow> {
    /// The echo flow at `idx`, if that flow is one.
    pub(crate) fn ping_mut(&mut self, idx: u32) -> Option<&mut PingFlow> {
        self.get_mut(idx)
    }
}

/// Idle time after which a ping flow is closed (upstream's 60 s).
pub(crate) const ICMP_ECHO_TIMEOUT: Duration = Duration::from_secs(60);
/// TTL and hop limit of the replies we frame.
const REPLY_TTL: u8 = 64;

/// One echo flow.
pub(crate) struct PingFlow {
    sock: OwnedFd,
    /// The guest's address (destination of replies).
    guest: IpAddr,
    /// The address the guest pinged (source of replies).
    dst: IpAddr,
    /// Where the requests go on the host ([`crate::fwd::from_tap`]).
    target: IpAddr,
    /// The guest's echo identifier.
    id: u16,
    last_seq: Option<u16>,
    last_used: Instant,
}

/// A reply ready to be framed for the guest.
pub(crate) struct EchoReply<'a> {
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    /// The ICMP/ICMPv6 message with the guest's identifier put back; the
    /// frame builder recomputes the checksum.
    pub(crate) message: &'a [u8],
}

/// Counters.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IcmpStats {
    pub(crate) requests: u64,
    pub(crate) replies: u64,
    pub(crate) dropped: u64,
}

/// ICMP state of one loop (the flows themselves are in the flow table).
pub(crate) struct Icmp {
    timeout: Duration,
    buf: Vec<u8>,
    pub(crate) stats: IcmpStats,
}

impl Icmp {
    pub(crate) fn new(conf: &Config) -> Self {
        Icmp {
            timeout: conf
                .test
                .icmp_timeout
                .map_or(ICMP_ECHO_TIMEOUT, Duration::from_secs),
            buf: vec![0; 65536],
            stats: IcmpStats::default(),
        }
    }

    /// An echo message from the guest: `msg` is the ICMP(v6) header and
    /// payload, already checksum-verified by the classifier.
    // `from_tap`: what came from the guest (upstream's name), not a
    // conversion.
    #[allow(clippy::wrong_self_convention)]
    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_tap(
        &mut self,
        conf: &Config,
        live: &crate::live::Live,
        flows: &mut Flows,
        epoll: &Epoll,
        guest: IpAddr,
        dst: IpAddr,
        msg: &[u8],
    ) {
        let want = if dst.is_ipv4() {
            icmp::msg_type::ECHO_REQUEST
        } else {
            icmpv6::msg_type::ECHO_REQUEST
        };
        let Some(echo) = echo(msg).filter(|e| e.msg_type() == want && !conf.no_icmp) else {
            self.stats.dropped = self.stats.dropped.wrapping_add(1);
            return;
        };
        let id = echo.echo_ident();
        let key = ping_key(guest, dst, id);
        let idx = match flows.lookup(&key) {
            Some((i, _)) => i,
            None => match self.open(conf, live, flows, epoll, key) {
                Ok(i) => i,
                Err(e) => {
                    log::debug!("ICMP: can't open ping socket to {dst}: {e}");
                    self.stats.dropped = self.stats.dropped.wrapping_add(1);
                    return;
                }
            },
        };
        let Some(flow) = flows.ping_mut(idx) else {
            return;
        };
        flow.last_used = Instant::now();
        let target = flow.target;
        let r = rustix::net::sendto(
            &flow.sock,
            msg,
            SendFlags::DONTWAIT,
            &crate::fwd::host_sockaddr(conf, target, 0),
        );
        match r {
            Ok(_) => {
                self.stats.requests = self.stats.requests.wrapping_add(1);
                log::trace!("ICMP: echo request {guest} -> {dst} (to {target}), id {id}");
            }
            Err(e) => {
                self.stats.dropped = self.stats.dropped.wrapping_add(1);
                log::debug!("ICMP: sendto {target}: {e}");
            }
        }
    }

    fn open(
        &mut self,
        conf: &Config,
        live: &crate::live::Live,
        flows: &mut Flows,
        epoll: &Epoll,
        key: FlowKey,
    ) -> io::Result<u32> {
        let (guest, dst, id) = (key.side.eaddr, key.side.oaddr, key.side.eport);
        if flows.len() >= flows.capacity() {
            return Err(io::Error::other("flow table full"));
        }
        let tgt = crate::fwd::from_tap(conf, live, key.proto, &key.side)
            .ok_or_else(|| io::Error::other("not forwarded"))?;
        let (target, local) = (tgt.side.eaddr, tgt.side.oaddr);
        let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
        let (family, proto, ifname) = match target {
            IpAddr::V4(_) => (
                AddressFamily::INET,
                rustix::net::ipproto::ICMP,
                conf.ip4.as_ref().and_then(|c| c.ifname_out.as_ref()),
            ),
            IpAddr::V6(_) => (
                AddressFamily::INET6,
                rustix::net::ipproto::ICMPV6,
                conf.ip6.as_ref().and_then(|c| c.ifname_out.as_ref()),
            ),
        };
        let sock = rustix::net::socket_with(family, SocketType::DGRAM, flags, Some(proto))?;
        if !local.is_unspecified() {
            rustix::net::bind(&sock, &SocketAddr::new(local, 0))?;
        }
        if let Some(ifn) = ifname {
            crate::sys::bind_to_device(&sock, ifn)?;
        }
        let idx = flows
            .insert(PingFlow {
                sock,
                guest,
                dst,
                target,
                id,
                last_seq: None,
                last_used: Instant::now(),
            })
            .map_err(|_| io::Error::other("flow table full"))?;
        flows.hash_insert(&key, idx, 0);
        if let Some(f) = flows.ping_mut(idx) {
            if let Err(e) = epoll.add(&f.sock, EpollRef::new(Kind::Ping, idx)) {
                flows.hash_remove(&key);
                flows.remove(idx);
                return Err(e);
            }
        }
        crate::fwd::log_decision(idx, key.proto, Pif::Tap, &key.side, &tgt);
        Ok(idx)
    }

    /// The socket of flow `idx` is readable: each reply read is handed to
    /// `emit`, which frames it for the guest.
    pub(crate) fn sock_readable(
        &mut self,
        conf: &Config,
        flows: &mut Flows,
        idx: u32,
        mut emit: impl FnMut(&EchoReply<'_>),
    ) {
        let Some(flow) = flows.ping_mut(idx) else {
            return;
        };
        loop {
            let n = match rustix::net::recvfrom(&flow.sock, &mut self.buf, RecvFlags::DONTWAIT) {
                Ok((n, _, _)) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return,
            };
            let Some(msg) = self.buf.get_mut(..n) else {
                return;
            };
            let want = if flow.dst.is_ipv4() {
                icmp::msg_type::ECHO_REPLY
            } else {
                icmpv6::msg_type::ECHO_REPLY
            };
            let Some(mut echo) = echo(msg).filter(|e| e.msg_type() == want) else {
                self.stats.dropped = self.stats.dropped.wrapping_add(1);
                continue;
            };
            let seq = echo.echo_seq();
            if conf.mode == Mode::Pasta && flow.last_seq == Some(seq) {
                self.stats.dropped = self.stats.dropped.wrapping_add(1);
                continue;
            }
            flow.last_seq = Some(seq);
            echo.set_echo_ident(flow.id);
            self.stats.replies = self.stats.replies.wrapping_add(1);
            emit(&EchoReply {
                src: flow.dst,
                dst: flow.guest,
                message: echo.into_inner(),
            });
        }
    }

    /// Closes flows idle for longer than the timeout.
    pub(crate) fn timer(&mut self, flows: &mut Flows, epoll: &Epoll, now: Instant) {
        let mut next = flows.next_index(0);
        while let Some(idx) = next {
            next = idx.checked_add(1).and_then(|i| flows.next_index(i));
            let Some(f) = flows.ping_mut(idx) else {
                continue;
            };
            if now.duration_since(f.last_used) > self.timeout {
                let _ = epoll.del(&f.sock);
                log::debug!("ICMP: ping flow {} -> {} timed out", f.guest, f.dst);
                let key = ping_key(f.guest, f.dst, f.id);
                flows.hash_remove(&key);
                flows.remove(idx);
            }
        }
    }
}

/// Frames an echo reply from a ping socket for the guest (the handler
/// shape of [`crate::arp::handle`]: the frame's length, or `None`).
pub(crate) fn reply_frame(
    conf: &Config,
    guest_mac: Mac,
    reply: &EchoReply<'_>,
    out: &mut [u8],
) -> Option<usize> {
    let (src, dst) = (reply.src, reply.dst);
    build::eth_ip_icmp(
        out,
        conf.our_mac,
        guest_mac,
        src,
        dst,
        REPLY_TTL,
        reply.message,
    )
    .ok()
}

/// A view of an echo request or reply, ICMP or ICMPv6: both have the same
/// layout (type, code, checksum, identifier, sequence: RFC 792, RFC 4443
/// 4.1), which [`IcmpPacket`] reads. `None` if `msg` is shorter than that.
fn echo<T: AsRef<[u8]>>(msg: T) -> Option<IcmpPacket<T>> {
    IcmpPacket::new_checked(msg).ok()
}

/// The flow key of an echo flow: the guest's address and identifier, the
/// address it pings.
fn ping_key(guest: IpAddr, dst: IpAddr, id: u16) -> FlowKey {
    FlowKey {
        proto: if dst.is_ipv4() {
            IPPROTO_ICMP
        } else {
            IPPROTO_ICMPV6
        },
        pif: Pif::Tap,
        side: FlowSide {
            eaddr: guest,
            eport: id,
            oaddr: dst,
            oport: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::classify::{classify, L3, L4};

    /// Replies are framed from the address the guest pinged, to the guest,
    /// with the message as given and a fresh checksum, in both families.
    #[test]
    fn reply_frames() {
        let conf = crate::arp::tests::test_config();
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        for (src, dst, t) in [
            ("192.0.2.1", "10.0.2.15", icmp::msg_type::ECHO_REPLY),
            ("2001:db8::1", "2001:db8::2", icmpv6::msg_type::ECHO_REPLY),
        ] {
            let message = [t, 0, 0xde, 0xad, 0x12, 0x34, 0, 7, b'p', b'i', b'n', b'g'];
            let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let reply = EchoReply {
                src,
                dst,
                message: &message,
            };
            let mut out = [0u8; 128];
            let n = reply_frame(&conf, mac, &reply, &mut out).unwrap();
            let c = classify(&out[..n]).expect("valid, checksums included");
            let eth = crate::wire::eth::EthernetFrame::new_checked(&out[..n]).unwrap();
            assert_eq!((eth.src(), eth.dst()), (conf.our_mac, mac));
            match c.l3 {
                L3::Ipv4 {
                    src: s,
                    dst: d,
                    l4: L4::Icmp { message: m, .. },
                    ..
                } => assert_eq!(
                    (IpAddr::V4(s), IpAddr::V4(d), &m[8..]),
                    (src, dst, &b"ping"[..])
                ),
                L3::Ipv6 {
                    src: s,
                    dst: d,
                    l4: L4::Icmpv6 { message: m, .. },
                    ..
                } => assert_eq!(
                    (IpAddr::V6(s), IpAddr::V6(d), &m[8..]),
                    (src, dst, &b"ping"[..])
                ),
                _ => panic!("not an echo reply"),
            }
            let other: IpAddr = if dst.is_ipv4() {
                "::1".parse().unwrap()
            } else {
                "127.0.0.1".parse().unwrap()
            };
            let mixed = EchoReply {
                src: other,
                ..reply
            };
            assert_eq!(reply_frame(&conf, mac, &mixed, &mut out), None);
        }
    }
}
