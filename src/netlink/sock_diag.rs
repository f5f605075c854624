//! The ports that serve in a network namespace, from `NETLINK_SOCK_DIAG`.
//!
//! # Theory of operation
//!
//! pasta's `auto` port scanner ([`crate::fwd`]) wants, once a second, the
//! local ports of the listening TCP sockets and of the bound, unconnected
//! UDP sockets of a namespace. `/proc/net/tcp` and friends have them, but
//! the kernel builds those files by walking *every* socket of the machine
//! (the established hash is shared by all namespaces) and formatting each
//! one of the namespace: with tens of thousands of connections open, a read
//! costs tens of milliseconds of pasta's only thread.
//!
//! An `inet_diag` dump (`SOCK_DIAG_BY_FAMILY` with an `inet_diag_req_v2`)
//! names the states it wants in `idiag_states`, and the kernel filters
//! before it formats anything: asked for `TCP_LISTEN` only, the TCP dump
//! walks the listening hash and never the established one; the UDP dump
//! still walks the UDP hash, but skips connected sockets (`TCP_ESTABLISHED`
//! for UDP) with a comparison instead of a line of text. UDP sockets that
//! are bound and not connected are in `TCP_CLOSE`, which is how
//! `/proc/net/udp` lists them (`07`).
//!
//! A [`SockDiag`] is one `NETLINK_SOCK_DIAG` socket, created in the network
//! namespace of the calling thread (the same model as [`super::Netlink`]):
//! the dump lists the sockets of that namespace, whichever thread asks
//! later. One dump is one request per (family, protocol): `send`, then
//! `recv` until `NLMSG_DONE`. The requests are encoded by
//! `netlink-packet-sock-diag`; the replies are walked in place with
//! `netlink-packet-core`'s zero-copy [`netlink_packet_core::NetlinkBuffer`] and only two fields
//! of each `inet_diag_msg` are read (state, source port), so a dump
//! allocates nothing: the crate's own decoder would build an owned message
//! with a vector of attributes per socket, once a second.
//!
//! System calls after [`SockDiag::open`]: `sendto` (`send(2)`, flags 0)
//! and `recvfrom` (`recv(2)`, flags `MSG_TRUNC | MSG_DONTWAIT`) on the
//! socket, nothing else.
//!
//! Without `inet_diag` (module not built, or `udp_diag` missing) the
//! kernel answers the dump with an error (`ENOENT`): the caller then reads
//! `/proc/net` instead.

use std::io;

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_sock_diag::constants::{
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, SOCK_DIAG_BY_FAMILY, TCP_CLOSE, TCP_LISTEN,
};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

use super::{retry_eintr, Family, NetlinkError, Result, RECV_BUF_SIZE};

/// The transport protocol of a dump (the same two as `conf::Proto`, which
/// this layer does not import: `conf` builds on `netlink`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

/// Length of a request: `nlmsghdr` and `inet_diag_req_v2`.
const REQ_LEN: usize = 16 + 56;

/// Offsets in `struct inet_diag_msg`, the payload of each reply.
mod field {
    /// `idiag_family`.
    pub(super) const FAMILY: usize = 0;
    /// `idiag_state`.
    pub(super) const STATE: usize = 1;
    /// `id.idiag_sport`, big endian.
    pub(super) const SPORT: std::ops::Range<usize> = 4..6;
    /// `sizeof(struct inet_diag_msg)`.
    pub(super) const LEN: usize = 72;
}

/// The state a socket of `proto` is in when it serves: `TCP_LISTEN` for
/// TCP, `TCP_CLOSE` (bound, not connected) for UDP.
fn serving_state(proto: Proto) -> u8 {
    match proto {
        Proto::Tcp => TCP_LISTEN,
        Proto::Udp => TCP_CLOSE,
    }
}

fn af(family: Family) -> u8 {
    match family {
        Family::V4 => AF_INET,
        Family::V6 => AF_INET6,
    }
}

/// A `NETLINK_SOCK_DIAG` socket in the network namespace it was opened in.
pub(crate) struct SockDiag {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl SockDiag {
    /// Opens a sock_diag socket in the calling thread's current network
    /// namespace.
    pub(crate) fn open() -> Result<SockDiag> {
        let mut sock = Socket::new(NETLINK_SOCK_DIAG).map_err(NetlinkError::Socket)?;
        sock.bind_auto().map_err(NetlinkError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(SockDiag {
            sock,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF_SIZE),
        })
    }

    /// Calls `port` with the local port of each socket of `family` and
    /// `proto` in the serving state (TCP listening, UDP bound and not
    /// connected), port 0 left out. A kernel error (no `inet_diag`, no
    /// `udp_diag`) is [`NetlinkError::Kernel`].
    pub(crate) fn serving_ports(
        &mut self,
        family: Family,
        proto: Proto,
        mut port: impl FnMut(u16),
    ) -> Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let req = request(family, proto, seq);
        let sent = retry_eintr(|| self.sock.send(&req, 0))?;
        if sent != req.len() {
            return Err(NetlinkError::Io(io::Error::other("short send")));
        }
        let (family, state) = (af(family), serving_state(proto));
        loop {
            self.buf.clear();
            // The kernel queues each part of a dump before we can ask for
            // it (the first when the request is sent, the next when a part
            // is read), so there is always one to read: never wait, a
            // kernel that had nothing would make the scan fail, not stop
            // the event loop.
            let flags = libc::MSG_TRUNC | libc::MSG_DONTWAIT;
            let n = retry_eintr(|| self.sock.recv(&mut self.buf, flags))?;
            if n > self.buf.len() {
                return Err(NetlinkError::Decode(format!(
                    "datagram of {n} bytes truncated"
                )));
            }
            let end = walk_replies(&self.buf, seq, |m| {
                if m.get(field::FAMILY) == Some(&family) && m.get(field::STATE) == Some(&state) {
                    if let Some(&[hi, lo]) = m.get(field::SPORT) {
                        let p = u16::from_be_bytes([hi, lo]);
                        if p != 0 {
                            port(p);
                        }
                    }
                }
            });
            if let Some(end) = end {
                return end;
            }
        }
    }
}

/// The dump request for `family` and `proto`: sockets in the serving state
/// only, no extensions.
fn request(family: Family, proto: Proto, seq: u32) -> [u8; REQ_LEN] {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let (protocol, states) = match proto {
        Proto::Tcp => (IPPROTO_TCP, StateFlags::LISTEN),
        Proto::Udp => (IPPROTO_UDP, StateFlags::CLOSE),
    };
    let socket_id = match family {
        Family::V4 => SocketId::new_v4(),
        Family::V6 => SocketId::new_v6(),
    };
    let mut msg = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family: af(family),
            protocol,
            extensions: ExtensionFlags::empty(),
            states,
            socket_id,
        })
        .into(),
    );
    msg.finalize();
    let mut out = [0; REQ_LEN];
    // `serialize` panics on a buffer of another size: the layout of
    // `inet_diag_req_v2` is fixed by the kernel ABI, and the unit tests
    // check REQ_LEN against the crate.
    if msg.buffer_len() == REQ_LEN {
        msg.serialize(&mut out);
    }
    out
}

/// Walks the messages of one received datagram for the dump `seq`
/// ([`super::walk_datagram`]): `each` gets the payload of every
/// `SOCK_DIAG_BY_FAMILY` reply (an `inet_diag_msg`, unchecked but for its
/// length).
fn walk_replies(buf: &[u8], seq: u32, mut each: impl FnMut(&[u8])) -> Option<Result<()>> {
    super::walk_datagram(buf, seq, |mtype, _, payload| match mtype {
        SOCK_DIAG_BY_FAMILY if payload.len() >= field::LEN => {
            each(payload);
            Ok(())
        }
        SOCK_DIAG_BY_FAMILY => Err(NetlinkError::Decode(format!(
            "inet_diag_msg of {} bytes",
            payload.len()
        ))),
        _ => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NLMSG_DONE, NLMSG_ERROR};

    /// A netlink message of type `mtype` with sequence number `seq`.
    fn nlmsg(mtype: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
        m.extend_from_slice(&mtype.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m
    }

    /// An `inet_diag_msg` of `family` in `state` with source port `sport`.
    fn diag_msg(family: u8, state: u8, sport: u16) -> Vec<u8> {
        let mut m = vec![0; field::LEN];
        m[field::FAMILY] = family;
        m[field::STATE] = state;
        m[field::SPORT].copy_from_slice(&sport.to_be_bytes());
        // A trailing attribute, as the kernel adds (INET_DIAG_SHUTDOWN).
        m.extend_from_slice(&[5, 0, 8, 0, 0, 0, 0, 0]);
        m
    }

    #[test]
    fn request_layout() {
        let r = request(Family::V6, Proto::Udp, 7);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes(r[4..6].try_into().unwrap()), 20);
        assert_eq!(
            u16::from_ne_bytes(r[6..8].try_into().unwrap()),
            NLM_F_REQUEST | NLM_F_DUMP
        );
        assert_eq!(u32::from_ne_bytes(r[8..12].try_into().unwrap()), 7);
        // inet_diag_req_v2: family, protocol, ext, pad, states.
        assert_eq!(&r[16..20], &[AF_INET6, IPPROTO_UDP, 0, 0]);
        assert_eq!(
            u32::from_ne_bytes(r[20..24].try_into().unwrap()),
            1 << TCP_CLOSE
        );
        let r = request(Family::V4, Proto::Tcp, 1);
        assert_eq!(&r[16..20], &[AF_INET, IPPROTO_TCP, 0, 0]);
        assert_eq!(
            u32::from_ne_bytes(r[20..24].try_into().unwrap()),
            1 << TCP_LISTEN
        );
    }

    #[test]
    fn replies_walked_in_place() {
        let mut d = nlmsg(SOCK_DIAG_BY_FAMILY, 3, &diag_msg(AF_INET, TCP_LISTEN, 8080));
        d.extend(nlmsg(SOCK_DIAG_BY_FAMILY, 2, &diag_msg(AF_INET, 10, 22)));
        d.extend(nlmsg(SOCK_DIAG_BY_FAMILY, 3, &diag_msg(AF_INET, 10, 443)));
        let mut seen = Vec::new();
        let sport = |m: &[u8]| u16::from_be_bytes([m[4], m[5]]);
        assert!(walk_replies(&d, 3, |m| seen.push(sport(m))).is_none());
        assert_eq!(seen, [8080, 443]);

        d.extend(nlmsg(NLMSG_DONE, 3, &0i32.to_ne_bytes()));
        seen.clear();
        assert!(matches!(
            walk_replies(&d, 3, |m| seen.push(sport(m))),
            Some(Ok(()))
        ));
        assert_eq!(seen, [8080, 443]);

        let e = nlmsg(NLMSG_ERROR, 3, &(-libc::ENOENT).to_ne_bytes());
        assert!(matches!(
            walk_replies(&e, 3, |_| {}),
            Some(Err(NetlinkError::Kernel(libc::ENOENT)))
        ));
        // Short reply, truncated header: errors, no panic.
        let short = nlmsg(SOCK_DIAG_BY_FAMILY, 3, &[0; 8]);
        assert!(matches!(walk_replies(&short, 3, |_| {}), Some(Err(_))));
        assert!(matches!(walk_replies(&d[..10], 3, |_| {}), Some(Err(_))));
    }
}
