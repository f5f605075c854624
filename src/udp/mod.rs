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
//!   connected to the target [`fwd::from_tap`] gives (`--dns-forward` DNS
//!   to the resolver, the mapped gateway to the host's loopback).
//!   `IP_RECVERR` is set, so ICMP errors about our datagrams come back
//!   (see below).
//! - **Through a `-u` listener** on the host: a datagram from a peer opens
//!   a flow toward the guest, addressed as [`fwd::from_host`] says (as
//!   TCP's inbound connections: loopback peers appear as the mapped
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
//!   mapped by the rule, source port kept if free ([`fwd::from_splice`]).
//!
//! Where a flow goes is never decided here: [`crate::fwd`] decides and
//! logs it. The listening sockets are not UDP's either: they belong to
//! the rules of the forwarding tables ([`crate::fwd::Fwd`]), which open
//! and close them (pasta's `auto` rules follow the ports bound on the
//! other side); the event loop hands [`Udp::listen_event`] the socket and
//! its rule. Closing a listener leaves its flows alone: their sockets are
//! their own, so they go on until they time out. Flows live in the shared
//! flow table, which UDP sees as [`Flows`].
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
//! ## Exhaustion
//!
//! Every flow costs one or two descriptors, and a process holds a limited
//! number (`RLIMIT_NOFILE`, 20000 on some hosts): a guest sending from tens
//! of thousands of source ports would take them all, and each new flow
//! costs several system calls. So UDP keeps to a budget, half the
//! descriptor limit at start ([`Udp::sock_max`]), leaving the rest to TCP
//! and the others; when the kernel refuses a socket all the same
//! (`EMFILE`, `ENFILE`, `ENOBUFS`), the budget shrinks to what is open
//! now. A datagram that would need a socket past the budget is dropped
//! before any system call, and counted (`no_socket` in the `UDP counters`
//! line at exit); established flows go on untouched. Flows expire as
//! below, and each one closed makes room for a new one. Lines about
//! refused flows are rate-limited ([`crate::log::RateLimit`]).
//!
//! ## Timeouts
//!
//! As conntrack: a flow idle for `nf_conntrack_udp_timeout` (30 s) goes,
//! or for `nf_conntrack_udp_timeout_stream` (120 s) once the target side
//! answered and more than one datagram went either way. Both are read from
//! the host's sysctls at start; the periodic timer closes expired flows.

pub(crate) mod errors;
pub(crate) mod flow;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::conf::Config;
use crate::event::{Epoll, EpollRef, Event, Kind};
use crate::flow::{FlowKey, FlowSide, Pif, ProtoFlows};
use crate::fwd::{self, rules::Listening};
use crate::guest::GuestState;
use crate::pasta::NetNs;
use crate::sys::udp::{recvmmsg_strided, sendmmsg_slices, TRUNCATED, UDP_BATCH};
use crate::tap::{RxBatch, Tap, FRAME_MAX};
use crate::wire::build;

use flow::{open_connected, unmap, SockSpec};
pub(crate) use flow::{UdpFlow, IPPROTO_UDP};

/// The flow table as UDP sees it.
pub(crate) type Flows = dyn ProtoFlows<UdpFlow>;

impl dyn ProtoFlows<UdpFlow> {
    /// The UDP flow at `idx`, if that flow is one.
    pub(crate) fn udp_mut(&mut self, idx: u32) -> Option<&mut UdpFlow> {
        self.get_mut(idx)
    }
}

/// Conntrack's default UDP timeout.
pub(crate) const TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Conntrack's default UDP stream timeout.
pub(crate) const TIMEOUT_STREAM_DEFAULT: Duration = Duration::from_secs(120);

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

/// Counters.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UdpStats {
    pub(crate) flows_opened: u64,
    pub(crate) flows_closed: u64,
    pub(crate) from_tap: u64,
    pub(crate) to_tap: u64,
    pub(crate) spliced: u64,
    pub(crate) dropped: u64,
    /// Datagrams dropped because their new flow would need a socket
    /// beyond the budget, or the kernel refused one.
    pub(crate) no_socket: u64,
    pub(crate) icmp_to_tap: u64,
}

impl std::fmt::Display for UdpStats {
    /// `name=value` pairs, the format tests read from the exit log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "flows_opened={} flows_closed={} from_tap={} to_tap={} spliced={} dropped={} no_socket={} icmp_to_tap={}",
            self.flows_opened,
            self.flows_closed,
            self.from_tap,
            self.to_tap,
            self.spliced,
            self.dropped,
            self.no_socket,
            self.icmp_to_tap
        )
    }
}

/// Kinds of rate-limited UDP lines.
#[derive(Clone, Copy)]
enum Refusal {
    /// No socket for a new flow (budget, or the kernel refused).
    NoSocket = 0,
    /// The flow table is full.
    TableFull = 1,
}

/// Socket accounting of the UDP flows (see the module doc, "Exhaustion").
#[derive(Clone, Copy, Debug)]
pub(crate) struct SockBudget {
    /// Sockets our flows hold now.
    pub(crate) open: usize,
    /// How many they may hold now.
    pub(crate) max: usize,
    /// How many they may hold when the kernel does not refuse earlier.
    limit: usize,
}

impl SockBudget {
    /// Half the descriptor limit (raised to its maximum at start).
    fn new() -> Self {
        let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let limit = (lim / 2).max(16);
        SockBudget {
            open: 0,
            max: limit,
            limit,
        }
    }

    /// Whether `n` more sockets fit.
    fn fits(&self, n: usize) -> bool {
        self.open + n <= self.max
    }

    /// The kernel refused a socket: no more than we hold now, until flows
    /// close (each close makes room again) or the next tick.
    fn exhausted(&mut self) {
        self.max = self.open.max(1).min(self.max);
    }

    /// Once a second: try the full budget again (others may have closed
    /// descriptors), at the cost of one refused `socket()` a second at
    /// most while the process is out of them.
    fn tick(&mut self) {
        self.max = self.limit;
    }
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
pub(crate) struct UdpCtx<'a> {
    pub(crate) conf: &'a Config,
    /// What the guest is told now (its address, the DNS host).
    pub(crate) live: &'a crate::live::Live,
    pub(crate) flows: &'a mut Flows,
    pub(crate) epoll: &'a Epoll,
    pub(crate) tap: &'a mut Tap,
    pub(crate) guest: &'a GuestState,
    pub(crate) netns: Option<&'a NetNs>,
}

/// All UDP state of one loop (the flows are in the flow table).
pub(crate) struct Udp {
    pending: Vec<Pending>,
    /// Datagram slots for listener reads and splicing.
    buf: Vec<u8>,
    timeout: Duration,
    timeout_stream: Duration,
    /// Average size of the datagrams of the last socket batch.
    avg_len: usize,
    pub(crate) stats: UdpStats,
    /// Descriptors of our flows, and their limit.
    pub(crate) socks: SockBudget,
    /// Rate limit of the lines about refused flows (by [`Refusal`]).
    log: crate::log::RateLimit<2>,
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
    pub(crate) fn new(conf: &Config) -> Self {
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
            pending: Vec::with_capacity(PENDING_MAX),
            buf: vec![0; STRIDE * UDP_BATCH],
            timeout,
            timeout_stream,
            avg_len: 1500,
            stats: UdpStats::default(),
            socks: SockBudget::new(),
            log: crate::log::RateLimit::default(),
        }
    }

    /// Once a second: how many lines about refused flows were left out.
    pub(crate) fn log_tick(&mut self) {
        self.log.tick(|i, n| {
            let why = if i == Refusal::NoSocket as usize {
                "no socket"
            } else {
                "flow table full"
            };
            log::debug!("UDP: {n} more datagrams dropped for new flows: {why}");
        });
    }

    // ------------------------------------------------------------------
    // Tap → sockets
    // ------------------------------------------------------------------

    /// A UDP datagram from the guest (checked by the classifier): frame
    /// `frame` of `rx`, payload `payload` within it.
    // `from_tap`: what came from the guest (upstream's name), not a
    // conversion.
    #[allow(clippy::wrong_self_convention)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_tap(
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
            None => match self.flow_from_tap(c, key) {
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
            // The classifier checked the headers.
            f.apply_ttl(other, build::ttl_of(bytes).unwrap_or(0));
        }
        let base = bytes.as_ptr() as usize;
        let off = (payload.as_ptr() as usize).wrapping_sub(base);
        // A UDP super-frame carries datagrams of `seg` bytes back to back
        // (the last one shorter): each goes on as the datagram it was.
        let seg = match usize::from(rx.udp_seg(frame)) {
            0 => payload.len().max(1),
            n => n,
        };
        let mut at = 0;
        loop {
            let len = seg.min(payload.len() - at);
            if self.pending.len() >= PENDING_MAX {
                self.flush_from_tap(c.flows, rx);
            }
            self.pending.push(Pending {
                idx,
                side: other as u8,
                frame: frame as u32,
                off: (off + at) as u32,
                len: len as u32,
            });
            at += len;
            if at >= payload.len() {
                break;
            }
        }
    }

    /// Sends the datagrams queued by [`Udp::from_tap`]: one `sendmmsg()`
    /// per run of datagrams of one flow. Call before `rx` is reused.
    pub(crate) fn flush_from_tap(&mut self, flows: &mut Flows, rx: &RxBatch) {
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
    pub(crate) fn sock_event(&mut self, c: &mut UdpCtx<'_>, r: u32, ev: &Event) {
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
            let off = build::l4_offset(t.eaddr) + crate::wire::udp::HEADER_LEN;
            let (csum, offload) = if c.tap.csum_offload() {
                (
                    build::L4Csum::Partial,
                    build::udp_csum_offload(t.eaddr.is_ipv6()),
                )
            } else {
                (build::L4Csum::Full, (0, 0))
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
                let r = build::finish_ip_udp_csum(
                    slot,
                    our_mac,
                    guest_mac,
                    SocketAddr::new(t.oaddr, t.oport),
                    SocketAddr::new(t.eaddr, t.eport),
                    64,
                    len,
                    csum,
                );
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
                Ok(None) => {
                    // The queue is empty, yet epoll said error: the
                    // socket's pending error is still set (the kernel
                    // queues an ICMP error, then sets it: a read of the
                    // queue in between leaves it behind, as a flood of
                    // port unreachables handled on another CPU shows).
                    // Nothing but reading it clears it, and
                    // level-triggered it would wake every epoll_wait: a
                    // CPU spinning for good, found by a UDP benchmark.
                    let _ = crate::sys::so_error(sock);
                    return;
                }
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
    pub(crate) fn listen_event(&mut self, c: &mut UdpCtx<'_>, l: &Listening<'_>) {
        for _ in 0..ROUNDS {
            let mut lens = [0usize; UDP_BATCH];
            let mut addrs: [Option<SocketAddr>; UDP_BATCH] = [None; UDP_BATCH];
            let n = match recvmmsg_strided(
                l.fd,
                &mut self.buf,
                STRIDE,
                0,
                DGRAM_MAX,
                &mut lens,
                Some(&mut addrs),
            ) {
                Ok(n) => n,
                Err(e) => {
                    log::trace!("UDP: listener on {} port {}: {e}", l.pif.name(), l.port);
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
                let Some((idx, s)) = self.flow_from_listener(c, l, peer) else {
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
    pub(crate) fn timer(&mut self, flows: &mut Flows, epoll: &Epoll, now: Instant) {
        self.socks.tick();
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
                self.socks.open -= close(flows, epoll, idx);
                self.stats.flows_closed += 1;
            }
        }
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

/// Removes flow `idx`: its keys, sockets and slot. Returns how many
/// sockets it closed.
fn close(flows: &mut Flows, epoll: &Epoll, idx: u32) -> usize {
    let Some(f) = flows.udp_mut(idx) else {
        return 0;
    };
    let n = f.sock.iter().flatten().count();
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
    n
}

/// Stores a new flow, hashes both sides and watches its sockets.
fn insert(c: &mut UdpCtx<'_>, flow: UdpFlow, u: &mut Udp) -> Option<u32> {
    let keys = [flow.key(0), flow.key(1)];
    let socks = flow.sock.iter().flatten().count();
    // Counted from here: dropping the flow (on failure below) closes them.
    let idx = match c.flows.insert(flow) {
        Ok(i) => i,
        Err(_) => return None,
    };
    u.socks.open += socks;
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
                u.socks.open -= close(c.flows, c.epoll, idx);
                return None;
            }
        }
    }
    u.stats.flows_opened += 1;
    Some(idx)
}

impl Udp {
    /// Whether a new flow may take `n` more sockets, and the table has a
    /// slot: if not, the datagram is counted and the line rate-limited.
    fn room_for(&mut self, c: &UdpCtx<'_>, n: usize) -> bool {
        if c.flows.len() >= c.flows.capacity() {
            if self.log.allow(Refusal::TableFull as usize) {
                log::debug!("UDP: flow table full, dropping a datagram for a new flow");
            }
            return false;
        }
        if !self.socks.fits(n) {
            self.stats.no_socket += 1;
            if self.log.allow(Refusal::NoSocket as usize) {
                log::debug!(
                    "UDP: {} flow sockets open (at most {}), dropping a datagram for a new flow",
                    self.socks.open,
                    self.socks.max
                );
            }
            return false;
        }
        true
    }

    /// A socket for a new flow failed: out of descriptors or buffers
    /// shrinks the budget; every failure is logged, rate-limited.
    fn open_failed(&mut self, what: std::fmt::Arguments<'_>, e: &io::Error) {
        let exhausted = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if exhausted {
            self.socks.exhausted();
            self.stats.no_socket += 1;
        }
        if self.log.allow(Refusal::NoSocket as usize) {
            log::debug!("UDP: {what}: {e}");
        }
    }

    /// A new flow for a datagram from the guest, `key` its tap side.
    fn flow_from_tap(&mut self, c: &mut UdpCtx<'_>, key: FlowKey) -> Option<u32> {
        let mut tgt = fwd::from_tap(c.conf, c.live, IPPROTO_UDP, &key.side)?;
        if !self.room_for(c, usize::from(tgt.pif != Pif::Tap)) {
            return None;
        }
        let sock = self.open_target(c, Pif::Tap, &mut tgt)?;
        open_flow(c, (Pif::Tap, key.side, None), tgt, sock, self)
    }

    /// The flow of a datagram from `peer` on listener `l`: found, or opened
    /// where [`fwd::from_host`] or [`fwd::from_splice`] sends it. Returns the
    /// flow and the side the datagram came from.
    fn flow_from_listener(
        &mut self,
        c: &mut UdpCtx<'_>,
        l: &Listening<'_>,
        peer: SocketAddr,
    ) -> Option<(u32, usize)> {
        let ini = FlowSide {
            eaddr: peer.ip(),
            eport: peer.port(),
            oaddr: l.addr,
            oport: l.port,
        };
        let key = FlowKey {
            proto: IPPROTO_UDP,
            pif: l.pif,
            side: ini,
        };
        if let Some((idx, s)) = c.flows.lookup(&key) {
            return Some((idx, usize::from(s)));
        }
        let mut tgt = match l.pif {
            Pif::Host => fwd::from_host(c.conf, c.live, c.guest, l.rule, IPPROTO_UDP, &ini)?,
            Pif::Splice => fwd::from_splice(l.rule, IPPROTO_UDP, &ini)?,
            Pif::Tap | Pif::None => return None,
        };
        if !self.room_for(c, 1 + usize::from(tgt.pif != Pif::Tap)) {
            return None;
        }
        // The target side first: nothing to undo if it fails.
        let tgt_sock = self.open_target(c, l.pif, &mut tgt)?;
        let ini_sock = match open_reply(c, l, peer, tgt.pif) {
            Ok(s) => s,
            Err(e) => {
                self.open_failed(
                    format_args!("reply socket for {peer} on port {}", l.port),
                    &e,
                );
                return None;
            }
        };
        open_flow(c, (l.pif, ini, Some(ini_sock)), tgt, tgt_sock, self).map(|i| (i, 0))
    }

    /// [`open_target`], failures accounted.
    fn open_target(
        &mut self,
        c: &UdpCtx<'_>,
        ini_pif: Pif,
        tgt: &mut fwd::Target,
    ) -> Option<Option<OwnedFd>> {
        match open_target(c, ini_pif, tgt) {
            Ok(s) => Some(s),
            Err(e) => {
                let t = tgt.side;
                self.open_failed(
                    format_args!("{} socket to {}:{}", tgt.pif.name(), t.eaddr, t.eport),
                    &e,
                );
                None
            }
        }
    }
}

/// The socket of the target side `tgt` of a flow from `ini_pif`, if that
/// side has one (the tap has none): bound to the side's own address and
/// port (any port if that one is taken), connected to its endpoint, in
/// the namespace for [`Pif::Splice`]. Sets the side's own address and
/// port to what the kernel chose.
fn open_target(c: &UdpCtx<'_>, ini_pif: Pif, tgt: &mut fwd::Target) -> io::Result<Option<OwnedFd>> {
    if tgt.pif == Pif::Tap {
        return Ok(None);
    }
    let t = tgt.side;
    // Datagrams from the guest leave through the outbound interface, and
    // ICMP errors about them go back to it.
    let from_guest = ini_pif == Pif::Tap;
    let ifname = match t.eaddr {
        IpAddr::V4(_) => c.conf.ip4.as_ref().and_then(|c| c.ifname_out.as_deref()),
        IpAddr::V6(_) => c.conf.ip6.as_ref().and_then(|c| c.ifname_out.as_deref()),
    };
    let spec = SockSpec {
        local: SocketAddr::new(t.oaddr, t.oport),
        fallback: true,
        reuse: false,
        ifname: ifname.filter(|_| from_guest),
        recverr: from_guest,
        peer: if tgt.pif == Pif::Host {
            fwd::host_sockaddr(c.conf, t.eaddr, t.eport)
        } else {
            SocketAddr::new(t.eaddr, t.eport)
        },
    };
    let opened = if tgt.pif == Pif::Splice {
        in_ns(c.netns, &|| open_connected(&spec))
    } else {
        open_connected(&spec)
    };
    let (sock, local) = opened?;
    tgt.side.oaddr = local.ip();
    tgt.side.oport = local.port();
    Ok(Some(sock))
}

/// The initiating side's socket of a flow from listener `l`: sharing the
/// listener's address and port, connected to `peer`, so that replies
/// leave from the port the peer wrote to and its next datagrams reach the
/// flow directly.
fn open_reply(
    c: &UdpCtx<'_>,
    l: &Listening<'_>,
    peer: SocketAddr,
    tgt_pif: Pif,
) -> io::Result<OwnedFd> {
    let spec = SockSpec {
        local: SocketAddr::new(l.addr, l.port),
        fallback: false,
        reuse: true,
        ifname: l.rule.ifname.as_deref(),
        recverr: tgt_pif == Pif::Tap,
        peer,
    };
    let opened = if l.pif == Pif::Splice {
        in_ns(c.netns, &|| open_connected(&spec))
    } else {
        open_connected(&spec)
    };
    opened.map(|(s, _)| s)
}

/// Runs `f` inside the namespace.
fn in_ns(
    netns: Option<&NetNs>,
    f: &(dyn Fn() -> io::Result<(OwnedFd, SocketAddr)> + Sync),
) -> io::Result<(OwnedFd, SocketAddr)> {
    match netns {
        Some(ns) => ns.run(f)?,
        None => Err(io::Error::other("no namespace")),
    }
}

/// Stores the flow from `ini` (its pif, side and socket) to `tgt`, and
/// logs the decision.
fn open_flow(
    c: &mut UdpCtx<'_>,
    (ini_pif, ini, ini_sock): (Pif, FlowSide, Option<OwnedFd>),
    tgt: fwd::Target,
    tgt_sock: Option<OwnedFd>,
    u: &mut Udp,
) -> Option<u32> {
    let flow = UdpFlow {
        pif: [ini_pif, tgt.pif],
        side: [ini, tgt.side],
        sock: [ini_sock, tgt_sock],
        last: Instant::now(),
        activity: [0, 0],
        ttl: 0,
        gso: true,
    };
    let idx = insert(c, flow, u)?;
    fwd::log_decision(idx, IPPROTO_UDP, ini_pif, &ini, &tgt);
    Some(idx)
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
            let r = build::eth_ip_udp(
                out,
                our_mac,
                guest_mac,
                SocketAddr::new(t.oaddr, t.oport),
                SocketAddr::new(t.eaddr, t.eport),
                64,
                payload,
            );
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
