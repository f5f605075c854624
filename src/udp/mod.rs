//! UDP: datagrams between the guest (or pasta's namespace) and host
//! sockets, as pseudo-connections called flows.
//!
//! ## Theory of operation
//!
//! UDP has no connections, but nearly all of it is request/response
//! between two address pairs, so we relay it as *flows*: one entry of the
//! shared flow table ([`crate::flow`]) per (source, destination) pair,
//! with two sides ([`UdpFlow`]). A side on the tap has no socket; a side on
//! the host ([`Pif::Host`]) or in pasta's namespace ([`Pif::Splice`]) has
//! its own socket, bound and `connect()`ed to that side's peer, so the
//! kernel delivers the peer's datagrams to exactly that socket. Both sides'
//! keys are in the flow table's hash, and a socket's epoll reference is the
//! flow index and the side ([`EpollRef::flow_side`]), so a readable socket
//! finds its flow without a lookup.
//!
//! Flows start in three ways:
//!
//! - **From the guest**: a datagram from the tap that matches no flow opens
//!   a host socket bound to the guest's source port (as upstream: the peer
//!   sees the guest's port; an ephemeral port if that one is taken) and
//!   connected to the destination after NAT: `--dns-forward` DNS to the
//!   resolver ([`fwd::dns_target`]), the mapped gateway to the host's
//!   loopback ([`fwd::nat_from_tap`]). `IP_RECVERR` is set, so ICMP errors
//!   about our datagrams come back (see below).
//! - **Through a `-u` listener** on the host: a datagram from a peer opens
//!   a flow toward the guest, addressed as TCP's inbound connections
//!   ([`crate::tcp::inbound_addrs`]: loopback peers appear as the mapped
//!   gateway). The initiating side gets its own socket too, bound to the
//!   listener's address and port (`SO_REUSEADDR` on both) and connected to
//!   the peer: replies leave from the port the peer wrote to, and Linux
//!   prefers the connected socket for the peer's next datagrams, so the
//!   listener only sees first datagrams. In pasta, a peer on the host's
//!   loopback is *spliced* instead (unless `--no-splice`): the target is a
//!   socket inside the namespace, connected to the namespace's own address
//!   (or its loopback with `--host-lo-to-ns-lo`).
//! - **Through a `-U` listener** inside the namespace (bound to `lo`): the
//!   target is a host socket connected to the host's loopback, port
//!   mapped by the rule, source port kept if free.
//!
//! Listeners of `auto` rules (pasta) come and go with the ports bound on
//! the other side: the port scanner ([`crate::fwd::scan`]) opens them with
//! [`Udp::scan_open`] and closes them with [`Udp::scan_close`]. Closing a
//! listener leaves its flows alone: their sockets are their own, so they
//! go on until they time out.
//!
//! ## Data paths, and batching
//!
//! - **Tap → socket**: datagrams of a tap batch are queued as references
//!   into the receive batch (no copy) and sent at the end of the batch,
//!   per run of datagrams of the same flow: equal sizes in a row as one
//!   UDP GSO send (`UDP_SEGMENT`: one trip through the host's stack for up
//!   to 64 datagrams), the others with one `sendmmsg()`.
//! - **Socket → tap**: one `recvmmsg()` reads up to [`UDP_BATCH`] datagrams
//!   straight into the payload areas of frames in the tap's transmit queue
//!   ([`crate::tap::TxQueue::region`]); only headers are written around
//!   them. On a tap device, the UDP checksum is left partial (offload:
//!   the guest's kernel takes the frame as verified, and completes the
//!   checksum only if it forwards it), so the payload is never summed
//!   here; a stream socket cannot carry offload, so there it is complete.
//! - **Socket → socket** (splice): `recvmmsg()` into our own buffer, then
//!   `sendmmsg()` on the other side's socket: no tap, no headers.
//!
//! Nothing allocates per datagram: the queue of pending tap datagrams and
//! the splice buffer are reserved at start, message headers live on the
//! stack ([`crate::sys::udp`]).
//!
//! ## ICMP errors
//!
//! A host socket with an ICMP error queued reports `EPOLLERR`; we drain
//! its error queue (`MSG_ERRQUEUE`) and, if the other side is the guest,
//! send it the matching ICMP or ICMPv6 error (port unreachable, fragmentation
//! needed / packet too big with the MTU, ...) quoting the guest's datagram
//! headers as the guest sent them, rebuilt from the flow ([`errors`]). The
//! guest's kernel then reports it to the application (`ECONNREFUSED` on a
//! connected socket).
//!
//! ## Timeouts
//!
//! As conntrack: a flow idle for `nf_conntrack_udp_timeout` (30 s) goes,
//! or for `nf_conntrack_udp_timeout_stream` (120 s) once the target side
//! answered and more than one datagram went either way. Both are read from
//! the host's sysctls at start; the periodic timer closes expired flows.

pub mod errors;
pub mod flow;

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::conf::{Config, Mode, Proto};
use crate::ctx::GuestState;
use crate::event::{Epoll, EpollRef, Event, Kind};
use crate::flow::{Flow, FlowKey, FlowSide, Flows, Pif};
use crate::fwd;
use crate::fwd::rules::{Families, FwdTable};
use crate::pasta::NetNs;
use crate::sys::udp::{recvmmsg_strided, sendmmsg_slices, TRUNCATED, UDP_BATCH};
use crate::tap::{RxBatch, Tap, FRAME_MAX};
use crate::wire::build;

use flow::{any_of, loopback_of, open_connected, unmap, SockSpec};
pub use flow::{UdpFlow, IPPROTO_UDP};

/// Conntrack's default UDP timeout.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Conntrack's default UDP stream timeout.
pub const TIMEOUT_STREAM_DEFAULT: Duration = Duration::from_secs(120);

/// Bytes per datagram slot in the buffers: any datagram fits.
const STRIDE: usize = 65536;
/// Largest datagram payload we relay between sockets.
const DGRAM_MAX: usize = 65535;
/// Datagrams from the tap queued for sending, at most (one tap batch).
const PENDING_MAX: usize = 4096;
/// Batches read from one socket per event (then other sockets get a turn).
const ROUNDS: usize = 8;
/// Bytes one batch should stay within, so that what `recvmmsg()` wrote
/// is still in the CPU's cache when it is checksummed and written out:
/// 64 datagrams of 1400 bytes, 8 of 32000.
const BATCH_BYTES: usize = 256 << 10;
/// Bytes queued for the tap after which a socket handler flushes at once
/// (big datagrams: write them while they are cache-hot).
const FLUSH_BYTES: usize = 128 << 10;

/// Datagrams per batch for datagrams of about `avg` bytes.
fn batch_for(avg: usize) -> usize {
    (BATCH_BYTES / avg.max(1)).clamp(4, UDP_BATCH)
}

/// A listening socket for `-u` (on the host) or `-U` (in the namespace).
#[derive(Debug)]
pub struct UdpListener {
    pub fd: OwnedFd,
    /// Where the socket lives: [`Pif::Host`] or [`Pif::Splice`].
    pub pif: Pif,
    /// Index of its rule in the table of its pif.
    pub rule: u32,
    pub port: u16,
    pub target_port: u16,
    /// The address it is bound to (unspecified: any).
    pub addr: IpAddr,
    pub ifname: Option<String>,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct UdpStats {
    pub flows_opened: u64,
    pub flows_closed: u64,
    pub from_tap: u64,
    pub to_tap: u64,
    pub spliced: u64,
    pub dropped: u64,
    pub icmp_to_tap: u64,
}

/// A datagram from the tap waiting to be sent: its flow and socket side,
/// and where its payload is in the receive batch.
#[derive(Clone, Copy)]
struct Pending {
    idx: u32,
    side: u8,
    frame: u32,
    off: u32,
    len: u32,
}

/// Everything a handler needs besides the UDP state.
pub struct UdpCtx<'a> {
    pub conf: &'a Config,
    pub flows: &'a mut Flows,
    pub epoll: &'a Epoll,
    pub tap: &'a mut Tap,
    pub guest: &'a GuestState,
    pub netns: Option<&'a NetNs>,
}

/// All UDP state of one loop (the flows are in the flow table).
pub struct Udp {
    listeners: Vec<Option<UdpListener>>,
    /// `--no-udp`: the port scanner opens nothing.
    disabled: bool,
    pending: Vec<Pending>,
    /// Datagram slots for listener reads and splicing.
    buf: Vec<u8>,
    timeout: Duration,
    timeout_stream: Duration,
    /// Average size of the datagrams of the last socket batch.
    avg_len: usize,
    pub stats: UdpStats,
}

/// A sysctl read as seconds.
fn sysctl_secs(path: &str) -> Option<Duration> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

impl Udp {
    pub fn new(conf: &Config) -> Self {
        let (timeout, timeout_stream) = match conf.test.udp_timeout {
            Some(s) => (Duration::from_secs(s), Duration::from_secs(s)),
            None => (
                sysctl_secs("/proc/sys/net/netfilter/nf_conntrack_udp_timeout")
                    .unwrap_or(TIMEOUT_DEFAULT),
                sysctl_secs("/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream")
                    .unwrap_or(TIMEOUT_STREAM_DEFAULT),
            ),
        };
        Udp {
            listeners: Vec::new(),
            disabled: conf.no_udp,
            pending: Vec::with_capacity(PENDING_MAX),
            buf: vec![0; STRIDE * UDP_BATCH],
            timeout,
            timeout_stream,
            avg_len: 1500,
            stats: UdpStats::default(),
        }
    }

    /// Registers listening sockets; returns their indices.
    pub fn add_listeners(
        &mut self,
        epoll: &Epoll,
        listeners: Vec<UdpListener>,
    ) -> io::Result<Vec<u32>> {
        let mut out = Vec::with_capacity(listeners.len());
        for l in listeners {
            let i = match self.listeners.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    self.listeners.push(None);
                    self.listeners.len() - 1
                }
            };
            epoll.add(&l.fd, EpollRef::new(Kind::UdpListen, i as u32))?;
            self.listeners[i] = Some(l);
            out.push(i as u32);
        }
        Ok(out)
    }

    /// Closes the listeners of rule `rule`, port `port` of `pif`'s table
    /// (for the port scanner). Flows already open keep going until they
    /// time out.
    pub fn close_forward(&mut self, epoll: &Epoll, pif: Pif, rule: u32, port: u16) {
        for slot in &mut self.listeners {
            if slot
                .as_ref()
                .is_some_and(|l| l.pif == pif && l.rule == rule && l.port == port)
            {
                if let Some(l) = slot.take() {
                    let _ = epoll.del(&l.fd);
                }
            }
        }
    }

    /// The port scanner wants `port` of rule `rule` (index `idx` in the
    /// table of `pif`) forwarded: opens its listeners — on the host for
    /// [`Pif::Host`], inside `netns` for [`Pif::Splice`] — one per address
    /// family that can be bound, unless some are open already. Returns
    /// whether the port is forwarded. Failures are quiet (the port may
    /// well be taken on this side); the scanner tries again at its next
    /// scan.
    #[allow(clippy::too_many_arguments)]
    pub fn scan_open(
        &mut self,
        epoll: &Epoll,
        netns: Option<&NetNs>,
        pif: Pif,
        rule: &fwd::rules::FwdRule,
        idx: u32,
        port: u16,
        families: Families,
    ) -> bool {
        if self.disabled || rule.proto != Proto::Udp || rule.target(port).is_none() {
            return false;
        }
        let mine = |l: &UdpListener| l.pif == pif && l.rule == idx && l.port == port;
        if self.listeners.iter().flatten().any(mine) {
            return true;
        }
        let open = || fwd::rules::open_port(rule, idx, port, false, families);
        let opened = match (pif, netns) {
            (Pif::Host, _) => open(),
            (Pif::Splice, Some(ns)) => ns.run(open).unwrap_or_else(|e| {
                log::debug!("UDP: can't enter the namespace: {e}");
                Vec::new()
            }),
            _ => Vec::new(),
        };
        let where_ = if pif == Pif::Splice {
            "namespace"
        } else {
            "host"
        };
        let mut ok = Vec::with_capacity(opened.len());
        for l in opened {
            match l {
                Ok(l) => {
                    log::debug!(
                        "UDP: {where_} forwarding port {port} ({})",
                        if l.v6 { "IPv6" } else { "IPv4" }
                    );
                    ok.extend(listener_of(rule, pif, l));
                }
                Err(e) => log::trace!("UDP: can't bind {where_} port {port}: {e}"),
            }
        }
        if let Err(e) = self.add_listeners(epoll, ok) {
            log::debug!("UDP: epoll: {e}");
        }
        self.listeners.iter().flatten().any(mine)
    }

    /// The port scanner no longer wants `port` of rule `idx` of `pif`'s
    /// table: closes its listeners. Flows opened through them keep their
    /// own sockets and go on until they time out (see the module doc).
    pub fn scan_close(&mut self, epoll: &Epoll, pif: Pif, idx: u32, port: u16) {
        let before = self.listener_count();
        self.close_forward(epoll, pif, idx, port);
        if self.listener_count() != before {
            log::debug!(
                "UDP: {} port {port} no longer forwarded",
                if pif == Pif::Splice {
                    "namespace"
                } else {
                    "host"
                }
            );
        }
    }

    /// The ports our listeners of `pif` are bound to (the port scanner
    /// must not take them for the other side's).
    pub fn listening_ports(&self, pif: Pif) -> impl Iterator<Item = u16> + '_ {
        self.listeners
            .iter()
            .flatten()
            .filter(move |l| l.pif == pif)
            .map(|l| l.port)
    }

    /// Number of listening sockets.
    pub fn listener_count(&self) -> usize {
        self.listeners.iter().flatten().count()
    }

    // ------------------------------------------------------------------
    // Tap → sockets
    // ------------------------------------------------------------------

    /// A UDP datagram from the guest (checked by the classifier): frame
    /// `frame` of `rx`, payload `payload` within it.
    #[allow(clippy::too_many_arguments)]
    pub fn from_tap(
        &mut self,
        c: &mut UdpCtx<'_>,
        rx: &RxBatch,
        frame: usize,
        src: IpAddr,
        dst: IpAddr,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) {
        let key = FlowKey {
            proto: IPPROTO_UDP,
            pif: Pif::Tap,
            side: FlowSide {
                eaddr: src,
                eport: sport,
                oaddr: dst,
                oport: dport,
            },
        };
        let (idx, s) = match c.flows.lookup(&key) {
            Some((i, s)) => (i, usize::from(s)),
            None => match flow_from_tap(c, key, &mut self.stats) {
                Some(i) => (i, 0),
                None => {
                    self.stats.dropped += 1;
                    return;
                }
            },
        };
        let Some(f) = c.flows.udp_mut(idx) else {
            return;
        };
        f.seen(s, Instant::now());
        let other = 1 - s;
        if f.sock[other].is_none() {
            self.stats.dropped += 1;
            return;
        }
        let bytes = rx.frame(frame);
        if f.pif[other] == Pif::Host {
            // The classifier checked the headers: TTL or hop limit at its
            // fixed offset.
            let at = if src.is_ipv6() {
                build::IP_OFFSET + 7
            } else {
                build::IP_OFFSET + 8
            };
            f.apply_ttl(other, bytes.get(at).copied().unwrap_or(0));
        }
        let base = bytes.as_ptr() as usize;
        let off = (payload.as_ptr() as usize).wrapping_sub(base);
        if self.pending.len() >= PENDING_MAX {
            self.flush_from_tap(c.flows, rx);
        }
        self.pending.push(Pending {
            idx,
            side: other as u8,
            frame: frame as u32,
            off: off as u32,
            len: payload.len() as u32,
        });
    }

    /// Sends the datagrams queued by [`Udp::from_tap`]: one `sendmmsg()`
    /// per run of datagrams of one flow. Call before `rx` is reused.
    pub fn flush_from_tap(&mut self, flows: &mut Flows, rx: &RxBatch) {
        let mut i = 0;
        while i < self.pending.len() {
            let p = self.pending[i];
            let mut j = i + 1;
            while j < self.pending.len()
                && j - i < UDP_BATCH
                && self.pending[j].idx == p.idx
                && self.pending[j].side == p.side
            {
                j += 1;
            }
            let mut bufs: [&[u8]; UDP_BATCH] = [&[]; UDP_BATCH];
            for (k, q) in self.pending[i..j].iter().enumerate() {
                let (off, len) = (q.off as usize, q.len as usize);
                bufs[k] = rx
                    .frame(q.frame as usize)
                    .get(off..off + len)
                    .unwrap_or(&[]);
            }
            match flows.udp_mut(p.idx) {
                Some(f) => {
                    let (sent, dropped) = send_run(f, usize::from(p.side), &bufs[..j - i]);
                    self.stats.from_tap += sent as u64;
                    self.stats.dropped += dropped as u64;
                }
                None => self.stats.dropped += (j - i) as u64,
            }
            i = j;
        }
        self.pending.clear();
    }

    // ------------------------------------------------------------------
    // Sockets → tap or socket
    // ------------------------------------------------------------------

    /// Readiness on a flow's socket; `r` is the flow index and the side
    /// ([`EpollRef::flow_side`]).
    pub fn sock_event(&mut self, c: &mut UdpCtx<'_>, r: u32, ev: &Event) {
        let (idx, s) = crate::event::split_flow_side(r);
        if ev.error {
            self.sock_errors(c, idx, s);
        }
        if ev.readable {
            let Some(f) = c.flows.udp_mut(idx) else {
                return;
            };
            if f.pif[1 - s] == Pif::Tap {
                self.sock_to_tap(c, idx, s);
            } else {
                self.sock_to_sock(c, idx, s);
            }
        }
    }

    /// Datagrams from side `s`'s socket, straight into frames for the
    /// guest.
    fn sock_to_tap(&mut self, c: &mut UdpCtx<'_>, idx: u32, s: usize) {
        let (our_mac, guest_mac) = (c.conf.our_mac, c.guest.mac);
        for _ in 0..ROUNDS {
            let Some(f) = c.flows.udp_mut(idx) else {
                return;
            };
            let t = f.side[1 - s];
            let Some(sock) = f.sock[s].as_ref() else {
                return;
            };
            let off = if t.eaddr.is_ipv6() {
                build::UDP6_PAYLOAD_OFFSET
            } else {
                build::UDP4_PAYLOAD_OFFSET
            };
            let (csum, offload) = if c.tap.csum_offload() {
                (
                    build::UdpCsum::Partial,
                    build::udp_csum_offload(t.eaddr.is_ipv6()),
                )
            } else {
                (build::UdpCsum::Full, (0, 0))
            };
            let want = batch_for(self.avg_len);
            if c.tap.tx.region(STRIDE, want).1 == 0 {
                c.tap.flush();
            }
            let (region, fit) = c.tap.tx.region(STRIDE, want);
            if fit == 0 {
                return;
            }
            let mut lens = [0usize; UDP_BATCH];
            let n = match recvmmsg_strided(
                sock,
                region,
                STRIDE,
                off,
                FRAME_MAX - off,
                &mut lens[..fit],
                None,
            ) {
                Ok(n) => n,
                Err(e) => {
                    // A pending ICMP error (ECONNREFUSED...) is reported
                    // here too; the error queue has the details.
                    log::trace!("UDP {idx}: recvmmsg: {e}");
                    return;
                }
            };
            let mut flens = [0usize; UDP_BATCH];
            let mut w = 0;
            for (i, &len) in lens[..n].iter().enumerate() {
                if len == TRUNCATED {
                    self.stats.dropped += 1;
                    continue;
                }
                if w != i {
                    region.copy_within(i * STRIDE + off..i * STRIDE + off + len, w * STRIDE + off);
                }
                let slot = &mut region[w * STRIDE..(w + 1) * STRIDE];
                let r = match (t.oaddr, t.eaddr) {
                    (IpAddr::V4(a), IpAddr::V4(b)) => build::finish_ipv4_udp_csum(
                        slot,
                        our_mac,
                        guest_mac,
                        SocketAddrV4::new(a, t.oport),
                        SocketAddrV4::new(b, t.eport),
                        64,
                        len,
                        csum,
                    ),
                    (IpAddr::V6(a), IpAddr::V6(b)) => build::finish_ipv6_udp_csum(
                        slot,
                        our_mac,
                        guest_mac,
                        SocketAddrV6::new(a, t.oport, 0, 0),
                        SocketAddrV6::new(b, t.eport, 0, 0),
                        64,
                        len,
                        csum,
                    ),
                    _ => Err(crate::wire::WireError::BufferTooSmall),
                };
                match r {
                    Ok(l) => {
                        flens[w] = l;
                        w += 1;
                    }
                    Err(_) => self.stats.dropped += 1,
                }
            }
            c.tap.tx.commit_udp_run(STRIDE, &flens[..w], offload);
            self.stats.to_tap += w as u64;
            let bytes: usize = flens[..w].iter().sum();
            self.avg_len = bytes / w.max(1);
            if bytes >= FLUSH_BYTES {
                c.tap.flush();
            }
            if let Some(f) = c.flows.udp_mut(idx) {
                let now = Instant::now();
                for _ in 0..n.min(2) {
                    f.seen(s, now);
                }
            }
            if n < fit {
                return;
            }
        }
    }

    /// Datagrams from side `s`'s socket to the other side's socket.
    fn sock_to_sock(&mut self, c: &mut UdpCtx<'_>, idx: u32, s: usize) {
        for _ in 0..ROUNDS {
            let Some(f) = c.flows.udp_mut(idx) else {
                return;
            };
            let (Some(from), Some(to)) = (f.sock[s].as_ref(), f.sock[1 - s].as_ref()) else {
                return;
            };
            let mut lens = [0usize; UDP_BATCH];
            let want = batch_for(self.avg_len);
            let n = match recvmmsg_strided(
                from,
                &mut self.buf,
                STRIDE,
                0,
                DGRAM_MAX,
                &mut lens[..want],
                None,
            ) {
                Ok(n) => n,
                Err(e) => {
                    log::trace!("UDP {idx}: recvmmsg: {e}");
                    return;
                }
            };
            let mut bufs: [&[u8]; UDP_BATCH] = [&[]; UDP_BATCH];
            let mut m = 0;
            for (i, &len) in lens[..n].iter().enumerate() {
                if len == TRUNCATED {
                    self.stats.dropped += 1;
                    continue;
                }
                bufs[m] = &self.buf[i * STRIDE..i * STRIDE + len];
                m += 1;
            }
            let (sent, dropped) = send_all(to, &bufs[..m]);
            self.stats.spliced += sent as u64;
            self.stats.dropped += dropped as u64;
            self.avg_len = bufs[..m].iter().map(|b| b.len()).sum::<usize>() / m.max(1);
            let now = Instant::now();
            for _ in 0..n.min(2) {
                f.seen(s, now);
            }
            if n < want {
                return;
            }
        }
    }

    /// Drains side `s`'s error queue; errors about datagrams the guest
    /// sent become ICMP errors to the guest.
    fn sock_errors(&mut self, c: &mut UdpCtx<'_>, idx: u32, s: usize) {
        let mut buf = [0u8; errors::QUOTE_MAX];
        for _ in 0..64 {
            let Some(f) = c.flows.udp_mut(idx) else {
                return;
            };
            let Some(sock) = f.sock[s].as_ref() else {
                return;
            };
            let e = match crate::sys::udp::recv_err(sock, &mut buf) {
                Ok(Some(e)) => e,
                Ok(None) => return,
                Err(e) => {
                    log::trace!("UDP {idx}: error queue: {e}");
                    return;
                }
            };
            if f.pif[s] != Pif::Host || f.pif[1 - s] != Pif::Tap || e.errno == 0 {
                continue;
            }
            let (tap_side, host_side) = (f.side[1 - s], f.side[s]);
            let (conf, mac) = (c.conf, c.guest.mac);
            let payload = &buf[..e.len.min(buf.len())];
            let mut sent = false;
            c.tap.send_with(|out| {
                let r =
                    errors::icmp_error_frame(conf, mac, &tap_side, &host_side, &e, payload, out);
                sent = r.is_some();
                r
            });
            if sent {
                self.stats.icmp_to_tap += 1;
                log::debug!(
                    "UDP {idx}: ICMP error (errno {}, type {}, code {}) to the guest",
                    e.errno,
                    e.icmp_type,
                    e.icmp_code
                );
            }
        }
    }

    // ------------------------------------------------------------------
    // Listeners
    // ------------------------------------------------------------------

    /// A listening socket is readable: each datagram finds or opens its
    /// flow and goes to the other side.
    pub fn listen_event(&mut self, c: &mut UdpCtx<'_>, lidx: u32) {
        for _ in 0..ROUNDS {
            let Some(l) = self.listeners.get(lidx as usize).and_then(Option::as_ref) else {
                return;
            };
            let mut lens = [0usize; UDP_BATCH];
            let mut addrs: [Option<SocketAddr>; UDP_BATCH] = [None; UDP_BATCH];
            let n = match recvmmsg_strided(
                &l.fd,
                &mut self.buf,
                STRIDE,
                0,
                DGRAM_MAX,
                &mut lens,
                Some(&mut addrs),
            ) {
                Ok(n) => n,
                Err(e) => {
                    log::trace!("UDP: listener {lidx}: {e}");
                    return;
                }
            };
            for i in 0..n {
                let (Some(peer), len) = (addrs[i], lens[i]) else {
                    continue;
                };
                if len == TRUNCATED {
                    self.stats.dropped += 1;
                    continue;
                }
                let peer = SocketAddr::new(unmap(peer.ip()), peer.port());
                let Some((idx, s)) = flow_from_listener(c, l, peer, &mut self.stats) else {
                    self.stats.dropped += 1;
                    continue;
                };
                let payload = &self.buf[i * STRIDE..i * STRIDE + len];
                forward_one(c, idx, s, payload, &mut self.stats);
            }
            if n < UDP_BATCH {
                return;
            }
        }
    }

    // ------------------------------------------------------------------
    // Timer
    // ------------------------------------------------------------------

    /// Closes expired flows.
    pub fn timer(&mut self, flows: &mut Flows, epoll: &Epoll, now: Instant) {
        let mut next = flows.next_index(0);
        while let Some(idx) = next {
            next = flows.next_index(idx + 1);
            let Some(f) = flows.udp_mut(idx) else {
                continue;
            };
            if f.expired(now, self.timeout, self.timeout_stream) {
                log::debug!(
                    "UDP {idx}: flow {} {}:{} -> {}:{} timed out",
                    f.pif[0].name(),
                    f.side[0].eaddr,
                    f.side[0].eport,
                    f.side[0].oaddr,
                    f.side[0].oport
                );
                close(flows, epoll, idx);
                self.stats.flows_closed += 1;
            }
        }
    }

    /// Flows open now.
    pub fn open_flows(&self) -> u64 {
        self.stats
            .flows_opened
            .saturating_sub(self.stats.flows_closed)
    }
}

/// Sends `bufs` on a connected socket, retrying once after an error (a
/// pending ICMP error is reported by the next send, which then fails).
/// Returns (sent, dropped).
fn send_all(sock: impl AsFd, bufs: &[&[u8]]) -> (usize, usize) {
    let (mut done, mut dropped, mut errors) = (0, 0, 0);
    while done < bufs.len() {
        match sendmmsg_slices(&sock, &bufs[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) => {
                errors += 1;
                if errors > 1 || e.raw_os_error() == Some(libc::EAGAIN) {
                    log::trace!("UDP: send: {e}");
                    done += 1;
                    dropped += 1;
                }
            }
        }
    }
    (done - dropped, dropped + bufs.len() - done)
}

/// Datagrams in a row of one size worth one GSO send.
const GSO_MIN_SEGS: usize = 4;
/// Most payload bytes in one GSO send.
const GSO_MAX_BYTES: usize = 65000;

/// Sends datagrams of one flow on side `s`'s socket: runs of equal sizes
/// as UDP GSO super-datagrams (one trip through the host's stack for up
/// to 64 datagrams), the rest with `sendmmsg()`. A flow whose GSO send
/// fails (path MTU below the size, no checksum offload on the way) sends
/// one by one from then on. Returns (sent, dropped).
fn send_run(f: &mut UdpFlow, s: usize, bufs: &[&[u8]]) -> (usize, usize) {
    let Some(sock) = f.sock[s].as_ref() else {
        return (0, bufs.len());
    };
    let (mut sent, mut dropped) = (0, 0);
    let mut plain = 0; // start of datagrams not sent yet
    let mut k = 0;
    while k < bufs.len() {
        let seg = bufs[k].len();
        let mut end = k + 1;
        let mut total = seg;
        if f.gso && seg > 0 {
            while end < bufs.len()
                && end - k < crate::sys::udp::GSO_MAX_SEGS
                && bufs[end].len() == seg
                && total + seg <= GSO_MAX_BYTES
            {
                total += seg;
                end += 1;
            }
        }
        if end - k < GSO_MIN_SEGS {
            k = end;
            continue;
        }
        // A shorter datagram may end the super-datagram.
        if end < bufs.len()
            && end - k < crate::sys::udp::GSO_MAX_SEGS
            && (1..seg).contains(&bufs[end].len())
            && total + bufs[end].len() <= GSO_MAX_BYTES
        {
            end += 1;
        }
        if plain < k {
            let (a, b) = send_all(sock, &bufs[plain..k]);
            sent += a;
            dropped += b;
        }
        match crate::sys::udp::send_gso(sock, &bufs[k..end], seg as u16) {
            Ok(_) => sent += end - k,
            Err(e) => {
                log::debug!("UDP: GSO send of {} x {seg} bytes: {e}", end - k);
                f.gso = false;
                let (a, b) = send_all(sock, &bufs[k..end]);
                sent += a;
                dropped += b;
            }
        }
        plain = end;
        k = end;
    }
    if plain < bufs.len() {
        let (a, b) = send_all(sock, &bufs[plain..]);
        sent += a;
        dropped += b;
    }
    (sent, dropped)
}

/// Removes flow `idx`: its keys, sockets and slot.
fn close(flows: &mut Flows, epoll: &Epoll, idx: u32) {
    let Some(f) = flows.udp_mut(idx) else {
        return;
    };
    let keys = [f.key(0), f.key(1)];
    for sock in f.sock.iter().flatten() {
        let _ = epoll.del(sock);
    }
    for (s, k) in keys.iter().enumerate() {
        if flows.lookup(k) == Some((idx, s as u8)) {
            flows.hash_remove(k);
        }
    }
    flows.remove(idx);
}

/// Stores a new flow, hashes both sides and watches its sockets.
fn insert(c: &mut UdpCtx<'_>, flow: UdpFlow, stats: &mut UdpStats) -> Option<u32> {
    let keys = [flow.key(0), flow.key(1)];
    let idx = c.flows.insert(Flow::Udp(flow)).ok()?;
    for (s, k) in keys.iter().enumerate() {
        if k.pif != Pif::None {
            c.flows.hash_insert(k, idx, s as u8);
        }
    }
    let f = c.flows.udp_mut(idx)?;
    for (s, sock) in f.sock.iter().enumerate() {
        if let Some(sock) = sock {
            if let Err(e) = c
                .epoll
                .add(sock, EpollRef::flow_side(Kind::UdpSock, idx, s))
            {
                log::debug!("UDP: epoll: {e}");
                close(c.flows, c.epoll, idx);
                return None;
            }
        }
    }
    stats.flows_opened += 1;
    if let Some(f) = c.flows.udp_mut(idx) {
        log::debug!(
            "UDP {idx}: new flow {} {}:{} -> {}:{} => {} {}:{} -> {}:{}",
            f.pif[0].name(),
            f.side[0].eaddr,
            f.side[0].eport,
            f.side[0].oaddr,
            f.side[0].oport,
            f.pif[1].name(),
            f.side[1].oaddr,
            f.side[1].oport,
            f.side[1].eaddr,
            f.side[1].eport
        );
    }
    Some(idx)
}

fn is_multicast_or_bcast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_multicast(),
    }
}

/// A new flow for a datagram from the guest, `key` its tap side.
fn flow_from_tap(c: &mut UdpCtx<'_>, key: FlowKey, stats: &mut UdpStats) -> Option<u32> {
    let conf = c.conf;
    let FlowSide {
        eaddr: src,
        eport: sport,
        oaddr: dst,
        oport: dport,
    } = key.side;
    if conf.pasta.as_ref().is_some_and(|p| p.splice_only) {
        return None;
    }
    if sport == 0
        || dport == 0
        || src.is_unspecified()
        || dst.is_unspecified()
        || is_multicast_or_bcast(dst)
    {
        log::trace!("UDP: not forwarding {src}:{sport} -> {dst}:{dport}");
        return None;
    }
    if c.flows.len() >= c.flows.capacity() {
        log::debug!("UDP: flow table full, dropping {src}:{sport} -> {dst}:{dport}");
        return None;
    }
    let target = fwd::dns_target(conf, dst, dport).unwrap_or_else(|| fwd::nat_from_tap(conf, dst));
    let (bind, ifname) = match target {
        IpAddr::V4(_) => {
            let c4 = conf.ip4.as_ref();
            (
                c4.and_then(|c| c.addr_out).map(IpAddr::V4),
                c4.and_then(|c| c.ifname_out.as_deref()),
            )
        }
        IpAddr::V6(_) => {
            let c6 = conf.ip6.as_ref();
            (
                c6.and_then(|c| c.addr_out).map(IpAddr::V6),
                c6.and_then(|c| c.ifname_out.as_deref()),
            )
        }
    };
    let spec = SockSpec {
        local: SocketAddr::new(bind.unwrap_or(any_of(target)), sport),
        fallback: true,
        reuse: false,
        ifname,
        recverr: true,
        peer: fwd::host_sockaddr(conf, target, dport),
    };
    let (sock, local) = match open_connected(&spec) {
        Ok(s) => s,
        Err(e) => {
            log::debug!("UDP: socket to {target}:{dport}: {e}");
            return None;
        }
    };
    let flow = UdpFlow {
        pif: [Pif::Tap, Pif::Host],
        side: [
            key.side,
            FlowSide {
                eaddr: target,
                eport: dport,
                oaddr: local.ip(),
                oport: local.port(),
            },
        ],
        sock: [None, Some(sock)],
        last: Instant::now(),
        activity: [0, 0],
        ttl: 0,
        gso: true,
    };
    insert(c, flow, stats)
}

/// The flow of a datagram from `peer` on listener `l`: found, or opened.
/// Returns the flow and the side the datagram came from.
fn flow_from_listener(
    c: &mut UdpCtx<'_>,
    l: &UdpListener,
    peer: SocketAddr,
    stats: &mut UdpStats,
) -> Option<(u32, usize)> {
    let conf = c.conf;
    let key = FlowKey {
        proto: IPPROTO_UDP,
        pif: l.pif,
        side: FlowSide {
            eaddr: peer.ip(),
            eport: peer.port(),
            oaddr: l.addr,
            oport: l.port,
        },
    };
    if let Some((idx, s)) = c.flows.lookup(&key) {
        return Some((idx, usize::from(s)));
    }
    if peer.port() == 0 || peer.ip().is_unspecified() {
        return None;
    }
    if c.flows.len() >= c.flows.capacity() {
        log::debug!("UDP: flow table full, dropping a datagram from {peer}");
        return None;
    }
    let pasta = conf.pasta.as_ref().filter(|_| conf.mode == Mode::Pasta);
    let splice = pasta.is_some_and(|p| !p.no_splice) && peer.ip().is_loopback();
    let in_ns = |f: &(dyn Fn() -> io::Result<(OwnedFd, SocketAddr)> + Sync)| -> io::Result<_> {
        match c.netns {
            Some(ns) => ns.run(f)?,
            None => Err(io::Error::other("no namespace")),
        }
    };
    // The target side first: nothing to undo if it fails.
    let (tgt_pif, tgt_side, tgt_sock) = match l.pif {
        Pif::Host if splice => {
            let p = pasta?;
            let dst = if p.host_lo_to_ns_lo {
                loopback_of(peer.ip())
            } else {
                match peer.ip() {
                    IpAddr::V4(_) => c.guest.addr4_seen.map(IpAddr::V4),
                    IpAddr::V6(_) => c.guest.addr6_seen.map(IpAddr::V6),
                }
                .unwrap_or(loopback_of(peer.ip()))
            };
            let spec = SockSpec {
                local: SocketAddr::new(any_of(dst), peer.port()),
                fallback: true,
                reuse: false,
                ifname: None,
                recverr: false,
                peer: SocketAddr::new(dst, l.target_port),
            };
            let (sock, local) = match in_ns(&|| open_connected(&spec)) {
                Ok(s) => s,
                Err(e) => {
                    log::debug!("UDP: namespace socket to {dst}:{}: {e}", l.target_port);
                    return None;
                }
            };
            let side = FlowSide {
                eaddr: dst,
                eport: l.target_port,
                oaddr: local.ip(),
                oport: local.port(),
            };
            (Pif::Splice, side, Some(sock))
        }
        Pif::Host => {
            if pasta.is_some_and(|p| p.splice_only) {
                return None;
            }
            let Some((src, dst)) = crate::tcp::inbound_addrs(conf, c.guest, peer.ip()) else {
                log::debug!("UDP: no guest address for a datagram from {peer}");
                return None;
            };
            let side = FlowSide {
                eaddr: dst,
                eport: l.target_port,
                oaddr: src,
                oport: peer.port(),
            };
            (Pif::Tap, side, None)
        }
        Pif::Splice => {
            let dst = loopback_of(peer.ip());
            let spec = SockSpec {
                local: SocketAddr::new(dst, peer.port()),
                fallback: true,
                reuse: false,
                ifname: None,
                recverr: false,
                peer: SocketAddr::new(dst, l.target_port),
            };
            let (sock, local) = match open_connected(&spec) {
                Ok(s) => s,
                Err(e) => {
                    log::debug!("UDP: socket to {dst}:{}: {e}", l.target_port);
                    return None;
                }
            };
            let side = FlowSide {
                eaddr: dst,
                eport: l.target_port,
                oaddr: local.ip(),
                oport: local.port(),
            };
            (Pif::Host, side, Some(sock))
        }
        Pif::Tap | Pif::None => return None,
    };
    // The initiating side: a socket sharing the listener's port, connected
    // to the peer.
    let spec = SockSpec {
        local: SocketAddr::new(l.addr, l.port),
        fallback: false,
        reuse: true,
        ifname: l.ifname.as_deref(),
        recverr: tgt_pif == Pif::Tap,
        peer,
    };
    let opened = if l.pif == Pif::Splice {
        in_ns(&|| open_connected(&spec))
    } else {
        open_connected(&spec)
    };
    let ini_sock = match opened {
        Ok((s, _)) => s,
        Err(e) => {
            log::debug!("UDP: reply socket for {peer} on port {}: {e}", l.port);
            return None;
        }
    };
    let flow = UdpFlow {
        pif: [l.pif, tgt_pif],
        side: [key.side, tgt_side],
        sock: [Some(ini_sock), tgt_sock],
        last: Instant::now(),
        activity: [0, 0],
        ttl: 0,
        gso: true,
    };
    insert(c, flow, stats).map(|i| (i, 0))
}

/// Forwards one datagram from side `s` of flow `idx` to the other side.
fn forward_one(c: &mut UdpCtx<'_>, idx: u32, s: usize, payload: &[u8], stats: &mut UdpStats) {
    let Some(f) = c.flows.udp_mut(idx) else {
        return;
    };
    f.seen(s, Instant::now());
    let other = 1 - s;
    if f.pif[other] == Pif::Tap {
        let t = f.side[other];
        let (our_mac, guest_mac) = (c.conf.our_mac, c.guest.mac);
        let mut sent = false;
        c.tap.send_with(|out| {
            let r = match (t.oaddr, t.eaddr) {
                (IpAddr::V4(a), IpAddr::V4(b)) => build::eth_ipv4_udp(
                    out,
                    our_mac,
                    guest_mac,
                    SocketAddrV4::new(a, t.oport),
                    SocketAddrV4::new(b, t.eport),
                    64,
                    payload,
                ),
                (IpAddr::V6(a), IpAddr::V6(b)) => build::eth_ipv6_udp(
                    out,
                    our_mac,
                    guest_mac,
                    SocketAddrV6::new(a, t.oport, 0, 0),
                    SocketAddrV6::new(b, t.eport, 0, 0),
                    64,
                    payload,
                ),
                _ => return None,
            };
            sent = r.is_ok();
            r.ok()
        });
        if sent {
            stats.to_tap += 1;
        } else {
            stats.dropped += 1;
        }
    } else if let Some(sock) = f.sock[other].as_ref() {
        let (sent, dropped) = send_all(sock, &[payload]);
        stats.spliced += sent as u64;
        stats.dropped += dropped as u64;
    }
}

// ----------------------------------------------------------------------
// Opening listeners
// ----------------------------------------------------------------------

/// A generic listener of `rule` as a UDP listener of `pif`.
fn listener_of(
    rule: &fwd::rules::FwdRule,
    pif: Pif,
    l: fwd::rules::Listener,
) -> Option<UdpListener> {
    let target_port = rule.target(l.port)?;
    let addr = rule.addr.unwrap_or(if l.v6 {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    });
    Some(UdpListener {
        fd: l.fd,
        pif,
        rule: l.rule,
        port: l.port,
        target_port,
        addr,
        ifname: rule.ifname.clone(),
    })
}

/// Turns the generic listeners of `table` into UDP listeners of `pif`.
fn to_udp_listeners(
    table: &FwdTable,
    pif: Pif,
    opened: Vec<fwd::rules::Listener>,
) -> Vec<UdpListener> {
    opened
        .into_iter()
        .filter_map(|l| listener_of(table.rules.get(l.rule as usize)?, pif, l))
        .collect()
}

/// The listeners of every UDP rule of `table` (`-u` rules on the host,
/// `-U` rules in the namespace when `netns` is given), opened at start.
pub fn open_table(
    conf: &Config,
    table: &FwdTable,
    netns: Option<&NetNs>,
) -> Result<Vec<UdpListener>, Box<dyn std::error::Error>> {
    if conf.no_udp || !table.rules.iter().any(|r| r.proto == Proto::Udp) {
        return Ok(Vec::new());
    }
    let families = Families::of(conf);
    let open = || fwd::rules::open_listeners_in(table, Proto::Udp, conf.freebind, families);
    Ok(match netns {
        Some(ns) => to_udp_listeners(table, Pif::Splice, ns.run(open)??),
        None => to_udp_listeners(table, Pif::Host, open()?),
    })
}

/// The listeners of one port of one rule (for the port scanner of `auto`
/// forwarding): rule `rule` of `table`, in the namespace if `netns` is
/// given (a `-U` table), else on the host. Register them with
/// [`Udp::add_listeners`]; [`Udp::close_forward`] closes them.
pub fn open_forward(
    conf: &Config,
    table: &FwdTable,
    rule: usize,
    port: u16,
    netns: Option<&NetNs>,
) -> io::Result<Vec<UdpListener>> {
    let r = table
        .rules
        .get(rule)
        .filter(|r| r.proto == Proto::Udp && r.target(port).is_some())
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fam = Families::of(conf);
    let mut addrs = Vec::with_capacity(2);
    match r.addr {
        Some(a) => addrs.push(a),
        None => {
            if fam.v4 {
                addrs.push(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            }
            if fam.v6 {
                addrs.push(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
            }
        }
    }
    let open = || -> io::Result<Vec<fwd::rules::Listener>> {
        let mut out = Vec::new();
        for &a in &addrs {
            let fd = fwd::rules::open_one(r, SocketAddr::new(a, port), conf.freebind)?;
            out.push(fwd::rules::Listener {
                fd,
                rule: rule as u32,
                port,
                v6: a.is_ipv6(),
            });
        }
        Ok(out)
    };
    let (pif, opened) = match netns {
        Some(ns) => (Pif::Splice, ns.run(open)??),
        None => (Pif::Host, open()?),
    };
    Ok(to_udp_listeners(table, pif, opened))
}
