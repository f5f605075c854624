//! TCP: a translation between the guest's segments and host sockets, with
//! no TCP/IP stack in between.
//!
//! ## Theory of operation
//!
//! Every TCP connection the guest sees on its link is paired with one
//! kernel TCP socket on the host. The host kernel does the real work toward
//! the peer (congestion control, retransmission, SACK, timestamps); we only
//! translate, and mirror what the socket tells us back to the guest:
//!
//! - **socket → guest**: data is *peeked* from the socket
//!   (`MSG_PEEK`, with `SO_PEEK_OFF` so each peek starts after what the
//!   guest already has) straight into the payload areas of frames in the
//!   tap's transmit queue, then only the headers are written around it.
//!   Nothing is dequeued until the guest acknowledges it: then exactly the
//!   acknowledged bytes are dropped with `MSG_TRUNC`. The socket's receive
//!   queue *is* the retransmission buffer, so there is no per-connection
//!   buffer here. How much we send is bounded by the guest's window.
//! - **guest → socket**: in-sequence payload is written to the socket at
//!   once. We acknowledge exactly what the socket took, and advertise as
//!   window what the socket's send buffer can still take. If the socket
//!   takes only part of a segment, the guest is told at once: an ACK for
//!   what was written (with the window left), and, as soon as the socket
//!   can take data again, a window update followed by duplicate ACKs so
//!   that the guest retransmits quickly instead of waiting for its RTO.
//!   Out-of-order segments (after a gap) are dropped and answered with a
//!   duplicate ACK, as any receiver does. In passt (a VM on the other
//!   end) ACKs for in-sequence data are delayed, as a receiver's are: up
//!   to 10 ms or 64 KiB ([`Tcp::ack_delay`]); the VM handles fewer ACKs
//!   and its Nagle algorithm sends fewer, larger segments. In pasta only
//!   the ACK of a request (a short segment with PSH) waits, up to 1 ms,
//!   for the answer to carry it.
//!
//! ## Events
//!
//! A connection's socket is in the epoll set *edge-triggered* once the
//! socket gave the guest all it held (`SOCK_DRAINED`, and from the
//! connect on): data the guest has not acknowledged stays in the socket,
//! which a level-triggered set would report readable on every wait until
//! the guest's ACK (a loop spinning through each request/response
//! exchange); new data raises one edge. A peek that fills all the room the
//! guest's window and the tap's queue gave goes back to level-triggered,
//! as more may be waiting. Guest segments do not peek a drained socket.
//! Per 1-byte request and response, pasta makes 8 system calls (an epoll
//! wait and a read from the tap for each direction, a write to the socket
//! and to the tap, a peek and the discard of what the guest acknowledged);
//! the window we advertise comes from the send buffer's memory read last,
//! less what we wrote since (`TcpConn::window_to_tap`), not a
//! `getsockopt()` per segment.
//!
//! ## States
//!
//! There is no state machine: a connection carries *events* (bits) that
//! happened to it — guest SYN received, socket accepted, established, FIN
//! received or sent on either side, our FIN acknowledged — and what to do
//! follows from them. A connection is closed once both directions have
//! finished (guest FIN written to the socket as a shutdown, socket EOF
//! sent to the guest as a FIN and acknowledged), or at once on a reset from
//! either side.
//!
//! ## Opening
//!
//! Where a connection goes is never decided here: [`crate::fwd`] decides
//! (`from_tap`, `from_host`, `from_splice`) and logs it; TCP opens what it
//! is told.
//!
//! - Guest connects out: its SYN creates a flow; a non-blocking socket
//!   connects to the target [`crate::fwd::from_tap`] gives (the gateway
//!   reaches the host's loopback, DNS may go to another resolver). The
//!   guest gets a SYN,ACK only once the connect succeeded, a RST if it
//!   failed.
//! - A host peer connects in through a `-t` listener (a socket of the
//!   forwarding table, which [`crate::fwd::Fwd`] owns; the event loop
//!   hands [`Tcp::listen_event`] the socket and its rule): the accepted
//!   socket becomes a SYN to the guest, with the addresses
//!   [`crate::fwd::from_host`] gives (the peer's own, loopback peers
//!   appearing as the gateway), or is spliced into pasta's namespace
//!   ([`splice`]) for a loopback peer; the guest's SYN,ACK establishes it.
//! - A `-T` listener in the namespace accepts: spliced to the host's
//!   loopback ([`crate::fwd::from_splice`]).
//!
//! Connections live in the shared flow table, which TCP sees as
//! [`TcpFlows`]: its own connections, and the splice path's.
//!
//! ## Timers
//!
//! One periodic check per second walks the connections: retransmission
//! (data or SYN not acknowledged by the guest within the timeout: rewind
//! to the last acknowledged byte and send again, reset after 7 tries),
//! tap-side keepalive (a connection that got no segment from the guest for
//! a whole interval — 30 s — gets a keepalive segment, so a guest that
//! forgot it answers with a RST and the flow goes), and the inactivity
//! clock (each interval — 2 h — marks every connection inactive, any event
//! clears the mark, a connection still marked at the next tick is reset).
//!
//! ## Frames
//!
//! Segments are built in the tap's transmit queue from the connection's
//! addresses (`frame`, through [`crate::wire::build`]): only lengths,
//! sequence and acknowledgement numbers, flags, window and checksums change
//! per segment. Data segments carry a partial checksum (the tun driver, or
//! passt's stream backend, completes it). Options are only sent on SYNs
//! (MSS and window scale); timestamps and SACK are not used toward the
//! guest. The windows and segment sizes we advertise are computed in
//! `window`.

mod conn;
mod frame;
pub(crate) mod splice;
mod window;

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::event::epoll::EventFlags;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::conf::{Config, Proto};
use crate::event::{Epoll, EpollRef, Kind};
use crate::flow::{FlowKey, FlowSide, Pif, ProtoFlows};
use crate::fwd::{self, rules::Listening};
use crate::guest::GuestState;
use crate::sys;
use crate::tap::Tap;
use crate::wire::ipv4::protocol::TCP as IPPROTO_TCP;
use crate::wire::tcp::TcpPacket;

pub(crate) use conn::TcpConn;
use conn::*;
use window::{LinkMss, MAX_WINDOW, MAX_WS, MSS_DEFAULT, WINDOW_DEFAULT};

/// Retransmissions to the guest before giving up.
const MAX_RETRIES: u8 = 7;
/// A connection whose handshake did not finish within this is reset
/// (upstream's `SYN_TIMEOUT`): a connect the host's peer never answers (a
/// server whose backlog overflows drops SYNs) or a SYN the guest never
/// answers would otherwise hold its descriptor for the kernel's two
/// minutes of SYN retries, or ours.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections taken from one listening socket per wake-up: under a
/// connection flood the rest waits in the listener's backlog while the
/// events of established connections are served (the listener is watched
/// level-triggered, so we come back to it in the next batch).
const ACCEPT_BATCH: usize = 32;
/// Refusals of new connections are logged at most once per this.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);
/// Tap-side keepalive interval.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Inactivity interval: idle connections go after one to two of these.
pub(crate) const INACTIVITY_INTERVAL: Duration = Duration::from_secs(7200);
/// Most frames filled by one peek.
const PEEK_FRAMES: usize = 64;
/// Duplicate ACKs from the guest that make us retransmit.
const DUP_ACK_THRESHOLD: u8 = 3;
/// With delayed ACKs, ACK at once when this much guest data is
/// unacknowledged.
const ACK_DELAY_BYTES: u32 = 64 << 10;
/// pasta: how long the ACK of a request (a guest segment with PSH, shorter
/// than a full segment) waits for the answer to carry it. Short, as the
/// guest's Nagle algorithm may hold its next small write until then; the
/// answer of a local service usually comes within tens of microseconds.
const REQUEST_ACK_DELAY: Duration = Duration::from_millis(1);
/// The largest `TCP_MAXSEG` the kernel takes (`MAX_TCP_WINDOW`).
const MAXSEG_MAX: u16 = 32767;

/// The flow table as TCP sees it: its connections, and the spliced ones
/// of the splice path ([`TcpFlows::splice`]).
pub(crate) trait TcpFlows: ProtoFlows<TcpConn> {
    /// The same table, as the splice path sees it.
    fn splice(&mut self) -> &mut splice::Flows;
}

impl<X: ProtoFlows<TcpConn> + ProtoFlows<splice::SpliceConn> + 'static> TcpFlows for X {
    fn splice(&mut self) -> &mut splice::Flows {
        self
    }
}

/// The flow table of TCP's handlers.
pub(crate) type Flows = dyn TcpFlows;

impl dyn TcpFlows {
    /// The TCP connection at `idx`, if that flow is one.
    pub(crate) fn tcp(&self, idx: u32) -> Option<&TcpConn> {
        self.get(idx)
    }

    pub(crate) fn tcp_mut(&mut self, idx: u32) -> Option<&mut TcpConn> {
        self.get_mut(idx)
    }
}

/// Counters for tests and statistics.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TcpStats {
    pub(crate) opened_from_tap: u64,
    pub(crate) opened_from_sock: u64,
    pub(crate) closed: u64,
    pub(crate) refused_table_full: u64,
    /// New connections refused because no socket could be had
    /// (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`), from either side.
    pub(crate) refused_no_fd: u64,
    /// Times a listening socket was left unwatched until the next tick
    /// because not even a refusal could be accepted.
    pub(crate) listen_paused: u64,
    /// Connections reset because their handshake took too long
    /// ([`HANDSHAKE_TIMEOUT`]).
    pub(crate) handshake_timeouts: u64,
    pub(crate) rst_to_tap: u64,
    pub(crate) retransmits: u64,
    pub(crate) partial_writes: u64,
    pub(crate) gap_drops: u64,
    pub(crate) keepalives: u64,
    pub(crate) inactivity_resets: u64,
    /// The splice path's counters (copied from it as it goes).
    pub(crate) spliced: splice::SpliceStats,
}

/// One line of `name=value` pairs, a format the tests read (pasta logs it
/// at exit as `TCP counters: ...`); the splice path's counters follow with
/// a `spliced_` prefix.
impl std::fmt::Display for TcpStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so that a new counter cannot be left out.
        let TcpStats {
            opened_from_tap,
            opened_from_sock,
            closed,
            refused_table_full,
            refused_no_fd,
            listen_paused,
            handshake_timeouts,
            rst_to_tap,
            retransmits,
            partial_writes,
            gap_drops,
            keepalives,
            inactivity_resets,
            spliced,
        } = self;
        write!(
            f,
            "opened_from_tap={opened_from_tap} opened_from_sock={opened_from_sock} \
             closed={closed} refused_table_full={refused_table_full} \
             refused_no_fd={refused_no_fd} listen_paused={listen_paused} \
             handshake_timeouts={handshake_timeouts} rst_to_tap={rst_to_tap} \
             retransmits={retransmits} partial_writes={partial_writes} gap_drops={gap_drops} \
             keepalives={keepalives} inactivity_resets={inactivity_resets} \
             spliced_opened={} spliced_closed={} spliced_resets={} spliced_refused={} \
             spliced_refused_no_fd={}",
            spliced.opened, spliced.closed, spliced.resets, spliced.refused, spliced.refused_no_fd
        )
    }
}

/// All TCP state of one loop.
pub(crate) struct Tcp {
    /// The splice path (pasta): loopback connections socket to socket.
    pub(crate) splice: splice::Splice,
    /// Connections to close at the end of the loop iteration (so that a
    /// stale event in the same batch never reaches a reused slot).
    closing: Vec<u32>,
    /// Connections owing the guest an ACK, sent at the end of a batch.
    ack_due: Vec<u32>,
    /// passt: hold ACKs for in-sequence guest data up to this long (or
    /// until [`ACK_DELAY_BYTES`] are unacknowledged), as a receiver's
    /// delayed ACK does. A VM pays for each ACK (an interrupt, a pass
    /// through its stack) and, with fewer ACKs, Nagle's algorithm in the
    /// guest merges small writes into larger segments. None: ACK every
    /// batch (pasta, whose guest is the host kernel).
    pub(crate) ack_delay: Option<Duration>,
    ack_delayed: Vec<u32>,
    ack_deadline: Option<Instant>,
    /// Connections with data for the guest that its link could not take
    /// ([`TAP_WAIT`]), resumed by [`Tcp::tap_ready`].
    tap_waiters: Vec<u32>,
    peek_off: bool,
    /// Fallback for kernels without `SO_PEEK_OFF` on TCP: already-sent
    /// bytes are peeked into this and thrown away.
    discard: Vec<u8>,
    isn_key: [u8; 16],
    start: Instant,
    keepalive: Duration,
    inactivity: Duration,
    next_keepalive: Instant,
    next_inactivity: Instant,
    /// A descriptor held in reserve: when accepting fails for want of
    /// descriptors, it is closed so that the waiting connection can be
    /// accepted and reset at once (its peer sees a refusal, not a hang),
    /// then taken again. Without it the listener would stay readable and
    /// the loop would spin on it.
    spare: Option<OwnedFd>,
    /// Listening sockets left unwatched until the next tick
    /// ([`Tcp::resume_listeners`]): their epoll references.
    paused: Vec<EpollRef>,
    /// Refusals not logged yet, and when the last log line went out.
    refusals: Refusals,
    pub(crate) stats: TcpStats,
}

/// Refused new connections, logged as one line per
/// [`REFUSAL_LOG_INTERVAL`] at most: a flood must not turn into a flood of
/// log lines.
#[derive(Default)]
struct Refusals {
    pending: u64,
    last_log: Option<Instant>,
}

impl Refusals {
    fn add(&mut self, now: Instant) {
        self.pending += 1;
        self.log(now);
    }

    /// Logs what is pending unless a line went out less than an interval
    /// ago.
    fn log(&mut self, now: Instant) {
        if self.pending == 0
            || self
                .last_log
                .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_INTERVAL)
        {
            return;
        }
        log::warn!(
            "TCP: refused {} new connection(s): out of descriptors, memory or flow table entries",
            self.pending
        );
        self.pending = 0;
        self.last_log = Some(now);
    }
}

/// Whether a failure to get a socket is the process or the system running
/// out of something (refuse the connection and go on), not a fault of
/// this connection.
fn exhausted(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    matches!(
        e,
        Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM
    )
}

/// A descriptor to hold in reserve ([`Tcp::spare`]): an unbound socket,
/// a kind of descriptor every mode already creates.
fn spare_fd() -> Option<OwnedFd> {
    [AddressFamily::INET, AddressFamily::INET6]
        .into_iter()
        .find_map(|f| {
            rustix::net::socket_with(f, SocketType::STREAM, SocketFlags::CLOEXEC, None).ok()
        })
}

/// Everything a handler needs besides the TCP state.
pub(crate) struct TcpCtx<'a> {
    pub(crate) conf: &'a Config,
    /// What the guest is told now (its address, the DNS host).
    pub(crate) live: &'a crate::live::Live,
    pub(crate) flows: &'a mut Flows,
    pub(crate) epoll: &'a Epoll,
    pub(crate) tap: &'a mut Tap,
    pub(crate) guest: &'a GuestState,
}

impl Tcp {
    pub(crate) fn new(conf: &Config) -> Self {
        let mut isn_key = [0u8; 16];
        let _ = getrandom::fill(&mut isn_key);
        let now = Instant::now();
        let keepalive = conf
            .test
            .tcp_keepalive
            .map_or(KEEPALIVE_INTERVAL, Duration::from_secs);
        let inactivity = conf
            .test
            .tcp_inactivity
            .map_or(INACTIVITY_INTERVAL, Duration::from_secs);
        Tcp {
            splice: splice::Splice::new(None),
            closing: Vec::with_capacity(1024),
            ack_due: Vec::with_capacity(1024),
            ack_delay: None,
            ack_delayed: Vec::with_capacity(1024),
            ack_deadline: None,
            tap_waiters: Vec::with_capacity(conf.test.flow_max.unwrap_or(crate::flow::FLOW_MAX)),
            peek_off: probe_peek_off(),
            discard: Vec::new(),
            isn_key,
            start: now,
            keepalive,
            inactivity,
            next_keepalive: now + keepalive,
            next_inactivity: now + inactivity,
            spare: spare_fd(),
            paused: Vec::with_capacity(64),
            refusals: Refusals::default(),
            stats: TcpStats::default(),
        }
    }

    /// Connections opened and not yet freed, spliced ones included.
    pub(crate) fn open_conns(&self) -> u64 {
        (self.stats.opened_from_tap + self.stats.opened_from_sock).saturating_sub(self.stats.closed)
            + self.splice.open_conns()
    }

    fn isn(&self, key: &FlowKey) -> u32 {
        use std::hash::{Hash, Hasher};
        let mut h = siphasher::sip::SipHasher24::new_with_key(&self.isn_key);
        key.side.eaddr.hash(&mut h);
        key.side.eport.hash(&mut h);
        key.side.oaddr.hash(&mut h);
        key.side.oport.hash(&mut h);
        let v = h.finish();
        let ns = self.start.elapsed().as_nanos() as u64;
        ((v >> 32) as u32 ^ v as u32).wrapping_add((ns >> 5) as u32)
    }

    // ------------------------------------------------------------------
    // Segments from the guest
    // ------------------------------------------------------------------

    /// A TCP segment from the guest (already checked by the classifier).
    // `from_tap`: what came from the guest (upstream's name), not a
    // conversion.
    #[allow(clippy::wrong_self_convention)]
    pub(crate) fn from_tap(
        &mut self,
        c: &mut TcpCtx<'_>,
        src: IpAddr,
        dst: IpAddr,
        seg: &TcpPacket<&[u8]>,
    ) {
        let key = FlowKey {
            proto: IPPROTO_TCP,
            pif: Pif::Tap,
            side: FlowSide {
                eaddr: src,
                eport: seg.src_port(),
                oaddr: dst,
                oport: seg.dst_port(),
            },
        };
        let Some((idx, _)) = c.flows.lookup(&key) else {
            if seg.syn() && !seg.ack_flag() && !seg.rst() {
                self.conn_from_tap(c, key, seg);
            } else if !seg.rst() {
                self.stats.rst_to_tap += 1;
                frame::rst_no_conn(c.conf, c.guest.mac, c.tap, &key, seg);
            }
            return;
        };
        self.segment(c, idx, seg);
    }

    fn conn_from_tap(&mut self, c: &mut TcpCtx<'_>, key: FlowKey, seg: &TcpPacket<&[u8]>) {
        let conf = c.conf;
        let Some(tgt) = fwd::from_tap(conf, c.live, IPPROTO_TCP, &key.side) else {
            return;
        };
        if c.flows.len() >= c.flows.capacity() {
            self.stats.refused_table_full += 1;
            self.refusals.add(Instant::now());
            log::trace!(
                "TCP: flow table full, refusing {}:{} -> {}:{}",
                key.side.eaddr,
                key.side.eport,
                key.side.oaddr,
                key.side.oport
            );
            frame::rst_no_conn(conf, c.guest.mac, c.tap, &key, seg);
            return;
        }
        let sock = match connect_socket(conf, &tgt.side, seg.mss()) {
            Ok(s) => s,
            Err(e) => {
                if e.raw_os_error()
                    .is_some_and(|n| exhausted(rustix::io::Errno::from_raw_os_error(n)))
                {
                    self.stats.refused_no_fd += 1;
                    self.refusals.add(Instant::now());
                }
                log::trace!(
                    "TCP: connect to {}:{} failed: {e}",
                    tgt.side.eaddr,
                    tgt.side.eport
                );
                frame::rst_no_conn(conf, c.guest.mac, c.tap, &key, seg);
                return;
            }
        };
        let connected = matches!(sock.1, ConnectState::Done);
        let mut conn = TcpConn::new(sock.0, key, self.isn(&key));
        conn.events = TAP_SYN_RCVD;
        conn.seq_init_from_tap = seg.seq();
        conn.seq_from_tap = seg.seq().wrapping_add(1);
        conn.seq_ack_to_tap = conn.seq_from_tap;
        conn.ws_from_tap = window::ws_from_tap(seg.window_scale());
        conn.ws_to_tap = window::ws_to_tap(seg.window_scale());
        conn.wnd_from_tap = window::wnd_from_syn(seg.window());
        conn.mss =
            LinkMss::new(conf.mtu, key.side.oaddr).to_guest(seg.mss().unwrap_or(MSS_DEFAULT));
        let Ok(idx) = c.flows.insert(conn) else {
            self.stats.refused_table_full += 1;
            self.refusals.add(Instant::now());
            frame::rst_no_conn(conf, c.guest.mac, c.tap, &key, seg);
            return;
        };
        c.flows.hash_insert(&key, idx, 0);
        self.stats.opened_from_tap += 1;
        let Some(conn) = c.flows.tcp_mut(idx) else {
            return;
        };
        let flags = if connected {
            EventFlags::IN | EventFlags::RDHUP | EventFlags::ET
        } else {
            EventFlags::OUT | EventFlags::RDHUP
        };
        if c.epoll
            .add_flags(&conn.sock, EpollRef::new(Kind::TcpSock, idx), flags)
            .is_err()
        {
            self.close(c.flows, idx);
            return;
        }
        conn.epoll_flags = flags;
        fwd::log_decision(idx, IPPROTO_TCP, Pif::Tap, &key.side, &tgt);
        if connected {
            self.connected(c, idx);
        }
    }

    /// The socket of a guest-initiated connection connected: SYN,ACK.
    fn connected(&mut self, c: &mut TcpCtx<'_>, idx: u32) {
        let Some(conn) = c.flows.tcp_mut(idx) else {
            return;
        };
        log::trace!("TCP {idx}: connected, SYN,ACK to guest");
        ensure_sndbuf(c.conf, conn);
        conn.events |= TAP_SYN_ACK_SENT;
        conn.seq_to_tap = conn.seq_init_to_tap.wrapping_add(1);
        conn.wnd_to_tap = conn.window_to_tap(c.conf, c.tap.tso());
        frame::send_flags(
            c.conf,
            c.guest.mac,
            c.tap,
            conn,
            SYN | ACK,
            conn.seq_init_to_tap,
        );
        conn.arm_rto(Instant::now());
        // Edge-triggered from the start: the guest's ACK completing the
        // handshake sends whatever the socket holds by then, and later
        // data raises an edge (see SOCK_DRAINED); so a short exchange
        // costs no epoll_ctl() beyond this one.
        let flags = EventFlags::IN | EventFlags::RDHUP | EventFlags::ET;
        let _ = modify(c.epoll, conn, idx, flags);
    }

    fn segment(&mut self, c: &mut TcpCtx<'_>, idx: u32, seg: &TcpPacket<&[u8]>) {
        let conf = c.conf;
        let Some(conn) = c.flows.tcp_mut(idx) else {
            return;
        };
        if conn.events & CLOSED != 0 {
            return;
        }
        conn.tap_inactive = false;
        conn.inactive = false;
        if seg.rst() {
            log::trace!("TCP {idx}: RST from guest");
            let _ = sys::set_linger_zero(&conn.sock);
            self.close(c.flows, idx);
            return;
        }

        // Handshake: we sent a SYN (inbound connection), expect SYN,ACK.
        if conn.events & SOCK_ACCEPTED != 0 && conn.events & ESTABLISHED == 0 {
            if seg.syn() && seg.ack_flag() && seg.ack() == conn.seq_init_to_tap.wrapping_add(1) {
                conn.events = (conn.events & !SOCK_ACCEPTED) | ESTABLISHED;
                conn.seq_init_from_tap = seg.seq();
                conn.seq_from_tap = seg.seq().wrapping_add(1);
                conn.seq_ack_from_tap = seg.ack();
                conn.seq_to_tap = seg.ack();
                conn.ws_from_tap = window::ws_from_tap(seg.window_scale());
                conn.ws_to_tap = window::ws_to_tap(seg.window_scale());
                ensure_sndbuf(conf, conn);
                conn.wnd_from_tap = window::wnd_from_syn(seg.window());
                let link = LinkMss::new(conf.mtu, conn.key.side.oaddr);
                conn.mss = link.to_guest(seg.mss().unwrap_or(MSS_DEFAULT));
                conn.retries = 0;
                conn.rto_at = None;
                if self.peek_off {
                    let _ = sys::set_peek_off(&conn.sock, 0);
                }
                self.send_ack(c, idx, true);
                self.data_from_sock(c, idx);
            } else {
                self.reset(c, idx);
            }
            return;
        }

        // Handshake: guest connected out, we sent SYN,ACK, expect ACK.
        if conn.events & ESTABLISHED == 0 {
            if seg.syn() && !seg.ack_flag() {
                // Retransmitted SYN: answer again if we already did.
                if conn.events & TAP_SYN_ACK_SENT != 0 {
                    frame::send_flags(
                        conf,
                        c.guest.mac,
                        c.tap,
                        conn,
                        SYN | ACK,
                        conn.seq_init_to_tap,
                    );
                }
                return;
            }
            if conn.events & TAP_SYN_ACK_SENT == 0
                || !seg.ack_flag()
                || seg.ack() != conn.seq_init_to_tap.wrapping_add(1)
            {
                self.reset(c, idx);
                return;
            }
            conn.events |= ESTABLISHED;
            conn.seq_ack_from_tap = seg.ack();
            conn.seq_to_tap = seg.ack();
            conn.retries = 0;
            conn.rto_at = None;
            if self.peek_off {
                let _ = sys::set_peek_off(&conn.sock, 0);
            }
        }

        // A SYN in a synchronized connection is no data of this stream
        // (its payload would start one sequence number later): answered
        // with an ACK and dropped (RFC 5961, section 4).
        if seg.syn() {
            frame::send_ack(conf, c.guest.mac, c.tap, conn);
            return;
        }
        self.established_segment(c, idx, seg);
    }

    /// A segment of an established connection (or the one completing our
    /// handshake): its acknowledgement, its payload and its FIN, in that
    /// order, then whatever the guest's window now lets us send.
    fn established_segment(&mut self, c: &mut TcpCtx<'_>, idx: u32, seg: &TcpPacket<&[u8]>) {
        let Some(conn) = c.flows.tcp_mut(idx) else {
            return;
        };
        if seg.ack_flag() {
            self.ack_from_tap(conn, idx, seg);
        }
        let Some((mut ack, fin_in_seq)) = self.payload_from_tap(c, idx, seg) else {
            return;
        };
        let Some(conn) = c.flows.tcp_mut(idx) else {
            return;
        };
        if fin_in_seq && conn.events & TAP_FIN_RCVD == 0 {
            fin_from_tap(c.conf, c.guest.mac, c.tap, conn);
            // That ACK covers what a queued one would.
            if ack == AckDue::Queued {
                ack = AckDue::No;
            }
        }
        match ack {
            AckDue::Queued => self.queue_ack(c.flows, idx),
            AckDue::Delayed => self.delay_ack(c.flows, idx),
            AckDue::No => {}
        }
        self.check_closed(c.flows, idx);
        // The guest's window may have opened: send what we can. Unless the
        // socket gave the guest everything it had: then new data wakes
        // us, and a peek now would find nothing (a wasted call for every
        // request of a request/response exchange).
        if c.flows
            .tcp(idx)
            .is_some_and(|conn| conn.flags & SOCK_DRAINED == 0)
        {
            self.data_from_sock(c, idx);
        }
    }

    /// The acknowledgement and window of a guest segment: drops what it
    /// acknowledges from the socket, counts duplicate ACKs (the third
    /// rewinds, a fast retransmit) and takes the window it advertises.
    fn ack_from_tap(&mut self, conn: &mut TcpConn, idx: u32, seg: &TcpPacket<&[u8]>) {
        let ack = seg.ack();
        let wnd = window::wnd_from_tap(seg.window(), conn.ws_from_tap);
        if seq_gt(ack, conn.seq_ack_from_tap) && seq_le(ack, conn.seq_to_tap) {
            acked_by_tap(conn, idx, ack);
        } else if ack == conn.seq_ack_from_tap
            && seg.payload().is_empty()
            && !seg.fin()
            && wnd == conn.wnd_from_tap
            && conn.seq_to_tap != conn.seq_ack_from_tap
        {
            conn.dup_acks = conn.dup_acks.saturating_add(1);
            if conn.dup_acks == DUP_ACK_THRESHOLD {
                // Fast retransmit: the guest lost what we sent after this
                // ACK.
                log::trace!("TCP {idx}: fast retransmit from {ack}");
                self.stats.retransmits += 1;
                conn.rewind(self.peek_off);
            }
        }
        let opened = wnd > conn.wnd_from_tap;
        conn.wnd_from_tap = wnd;
        if opened && conn.flags & STALLED != 0 {
            conn.flags &= !STALLED;
        }
    }

    /// The payload of a guest segment: written to the socket if it is next
    /// in sequence. Returns the ACK it calls for, and whether a FIN on the
    /// segment is in sequence too; `None` if the connection was reset.
    fn payload_from_tap(
        &mut self,
        c: &mut TcpCtx<'_>,
        idx: u32,
        seg: &TcpPacket<&[u8]>,
    ) -> Option<(AckDue, bool)> {
        let conn = c.flows.tcp_mut(idx)?;
        let (seq, payload) = (seg.seq(), seg.payload());
        let mtu = usize::from(c.conf.mtu);
        if mtu != 0 && payload.len() > mtu && conn.flags & GUEST_GSO == 0 {
            // A super-segment: the guest's frames may be 64 KiB long, and
            // the window may count in those (see `TcpConn::window_for`),
            // from a new reading.
            conn.flags |= GUEST_GSO;
            conn.room_changed();
        }
        if payload.is_empty() {
            // An empty segment below the next byte we expect is Linux's
            // zero-window probe (and keepalive): seq one before its
            // unacknowledged data. It is answered with an ACK carrying the
            // current window (RFC 9293 3.10.7.4), or a guest whose window
            // update was lost (dropped on a full tap) waits on a zero
            // window forever.
            let ack = if seq_gt(conn.seq_from_tap, seq) {
                AckDue::Queued
            } else {
                AckDue::No
            };
            return Some((ack, seg.fin() && seq == conn.seq_from_tap));
        }
        let end = seq.wrapping_add(payload.len() as u32);
        if conn.events & TAP_FIN_RCVD != 0 {
            // Data after the guest's FIN: ignore.
            Some((AckDue::No, false))
        } else if seq_gt(seq, conn.seq_from_tap) {
            // A gap: we lost (or dropped) something before this.
            self.stats.gap_drops += 1;
            frame::send_ack(c.conf, c.guest.mac, c.tap, conn);
            Some((AckDue::No, false))
        } else if seq_le(end, conn.seq_from_tap) {
            // Entirely old: a retransmission, or a keepalive probe.
            if payload.len() <= 1 {
                let _ = rustix::net::sockopt::set_socket_keepalive(&conn.sock, true);
            }
            Some((AckDue::Queued, seg.fin()))
        } else {
            let skip = conn.seq_from_tap.wrapping_sub(seq) as usize;
            let data = payload.get(skip..).unwrap_or(&[]);
            let (ack, all) = self.write_to_sock(c, idx, data, seg.flags() & PSH != 0)?;
            Some((ack, all && seg.fin()))
        }
    }

    /// Writes new guest data to the socket (`push`: the segment had PSH).
    /// Returns the ACK it calls for and whether the socket took all of it;
    /// `None` if the connection was reset.
    fn write_to_sock(
        &mut self,
        c: &mut TcpCtx<'_>,
        idx: u32,
        data: &[u8],
        push: bool,
    ) -> Option<(AckDue, bool)> {
        let conn = c.flows.tcp_mut(idx)?;
        match rustix::net::send(&conn.sock, data, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Ok(n) => {
                conn.seq_from_tap = conn.seq_from_tap.wrapping_add(n as u32);
                conn.wrote(n);
                if n < data.len() {
                    self.partial(c.flows, c.epoll, idx);
                    Some((AckDue::Queued, false))
                } else if conn.seq_from_tap.wrapping_sub(conn.seq_ack_to_tap) < ACK_DELAY_BYTES
                    && (self.ack_delay.is_some() || push && n < usize::from(conn.mss))
                {
                    Some((AckDue::Delayed, true))
                } else {
                    Some((AckDue::Queued, true))
                }
            }
            Err(rustix::io::Errno::AGAIN) => {
                self.partial(c.flows, c.epoll, idx);
                Some((AckDue::Queued, false))
            }
            Err(e) => {
                log::debug!("TCP {idx}: send: {e}");
                self.reset(c, idx);
                None
            }
        }
    }

    /// The socket took only part of the guest's data: ACK what it took,
    /// and wait until it can take more to tell the guest.
    fn partial(&mut self, flows: &mut Flows, epoll: &Epoll, idx: u32) {
        self.stats.partial_writes += 1;
        let Some(conn) = flows.tcp_mut(idx) else {
            return;
        };
        conn.flags |= DROPPED_FROM_TAP;
        // The buffer is full, whatever the estimate says: read it.
        conn.room_changed();
        let want = conn.epoll_flags | EventFlags::OUT;
        let _ = modify(epoll, conn, idx, want);
    }

    fn queue_ack(&mut self, flows: &mut Flows, idx: u32) {
        let Some(conn) = flows.tcp_mut(idx) else {
            return;
        };
        if conn.flags & ACK_TO_TAP_DUE == 0 {
            conn.flags |= ACK_TO_TAP_DUE;
            if self.ack_due.len() < self.ack_due.capacity() {
                self.ack_due.push(idx);
            } else {
                conn.flags &= !ACK_TO_TAP_DUE;
            }
        }
    }

    fn send_ack(&mut self, c: &mut TcpCtx<'_>, idx: u32, force: bool) {
        let Some(conn) = c.flows.tcp_mut(idx) else {
            return;
        };
        conn.wnd_to_tap = conn.window_to_tap(c.conf, c.tap.tso());
        if force || conn.seq_ack_to_tap != conn.seq_from_tap || conn.flags & ACK_TO_TAP_DUE != 0 {
            frame::send_ack(c.conf, c.guest.mac, c.tap, conn);
        }
        conn.flags &= !ACK_TO_TAP_DUE;
        watch_window(c.conf, c.tap.tso(), c.epoll, conn, idx);
    }

    /// Holds back the ACK of `idx`'s data: for [`Tcp::ack_delay`], or in
    /// pasta for [`REQUEST_ACK_DELAY`] after a request (a short segment
    /// with PSH), whose answer usually comes before and carries the ACK: one
    /// frame through the tap instead of two for each exchange.
    fn delay_ack(&mut self, flows: &mut Flows, idx: u32) {
        let delay = self.ack_delay.unwrap_or(REQUEST_ACK_DELAY);
        let Some(conn) = flows.tcp_mut(idx) else {
            return;
        };
        if conn.flags & ACK_DELAYED != 0 {
            return;
        }
        if self.ack_delayed.len() >= self.ack_delayed.capacity() {
            self.queue_ack(flows, idx);
            return;
        }
        conn.flags |= ACK_DELAYED;
        self.ack_delayed.push(idx);
        if self.ack_deadline.is_none() {
            self.ack_deadline = Some(Instant::now() + delay);
        }
    }

    /// When the held-back ACKs are due, if any.
    pub(crate) fn ack_deadline(&self) -> Option<Instant> {
        self.ack_deadline
    }

    /// Sends the held-back ACKs (those not already covered by a later
    /// segment to the guest).
    pub(crate) fn flush_delayed_acks(&mut self, c: &mut TcpCtx<'_>) {
        self.ack_deadline = None;
        while let Some(idx) = self.ack_delayed.pop() {
            let Some(conn) = c.flows.tcp_mut(idx) else {
                continue;
            };
            if conn.flags & ACK_DELAYED != 0 {
                conn.flags &= !ACK_DELAYED;
                // Covered already if data to the guest carried it.
                let owed =
                    conn.seq_ack_to_tap != conn.seq_from_tap || conn.flags & ACK_TO_TAP_DUE != 0;
                if conn.events & CLOSED == 0 && owed {
                    self.send_ack(c, idx, false);
                }
            }
        }
    }

    /// Sends the ACKs owed after a batch of guest segments.
    pub(crate) fn flush_acks(&mut self, c: &mut TcpCtx<'_>) {
        while let Some(idx) = self.ack_due.pop() {
            let Some(conn) = c.flows.tcp(idx) else {
                continue;
            };
            if conn.flags & ACK_TO_TAP_DUE != 0 {
                self.send_ack(c, idx, true);
            }
        }
    }

    // ------------------------------------------------------------------
    // Socket events
    // ------------------------------------------------------------------

    /// An event on a connection's socket.
    pub(crate) fn sock_event(&mut self, c: &mut TcpCtx<'_>, idx: u32, ev: &crate::event::Event) {
        let Some(conn) = c.flows.tcp_mut(idx) else {
            return;
        };
        if conn.events & CLOSED != 0 {
            return;
        }
        conn.inactive = false;
        // Connect completion of a guest-initiated connection.
        if conn.events & TAP_SYN_RCVD != 0 && conn.events & (TAP_SYN_ACK_SENT | ESTABLISHED) == 0 {
            // Writable with no error or hang-up: connected, no need to ask
            // (a failed connect sets the socket's error and closes it, so
            // epoll reports EPOLLERR and EPOLLHUP with it).
            if ev.writable && !ev.error && !ev.hangup {
                self.connected(c, idx);
                return;
            }
            match sys::so_error(&conn.sock) {
                Ok(0) if !ev.error => self.connected(c, idx),
                r => {
                    log::trace!("TCP {idx}: connect failed: {r:?}");
                    self.reset(c, idx);
                }
            }
            return;
        }
        if ev.error {
            self.reset(c, idx);
            return;
        }
        if ev.writable && conn.flags & (DROPPED_FROM_TAP | WND_UPDATE_DUE) != 0 {
            // The socket can take data again: reopen the guest's window,
            // and if we had to drop data, make it retransmit that now
            // (duplicate ACKs) rather than after its timeout. A window
            // update that does not change the window would itself count as
            // a duplicate ACK (RFC 5681 2): then say nothing. The event may
            // be stale (reported before guest data of the same wake-up
            // filled the buffer again): a window still closed is watched
            // on, or the guest would only learn it opened from its window
            // probes; an open one is updated by the ACKs of the data the
            // guest sends into it.
            let old = conn.wnd_to_tap;
            conn.room_changed();
            conn.wnd_to_tap = conn.window_to_tap(c.conf, c.tap.tso());
            let acks = if conn.flags & DROPPED_FROM_TAP != 0 {
                4
            } else {
                usize::from(conn.wnd_to_tap > old)
            };
            conn.flags &= !(DROPPED_FROM_TAP | WND_UPDATE_DUE);
            for _ in 0..acks {
                frame::send_ack(c.conf, c.guest.mac, c.tap, conn);
            }
            let want = conn.epoll_flags & !EventFlags::OUT;
            let _ = modify(c.epoll, conn, idx, want);
            if acks > 0 || conn.wnd_to_tap == 0 {
                watch_window(c.conf, c.tap.tso(), c.epoll, conn, idx);
            }
        }
        if ev.hangup {
            conn.events |= SOCK_FIN_RCVD;
        }
        if ev.readable || ev.hangup {
            self.data_from_sock(c, idx);
        }
    }

    /// Sends socket data to the guest, as far as its window allows: peeks
    /// what the guest does not have yet straight into the payload areas of
    /// frames in the tap's queue, and writes the headers around it; once
    /// the socket's peer closed and everything went out, a FIN.
    fn data_from_sock(&mut self, c: &mut TcpCtx<'_>, idx: u32) {
        let Some(conn) = c.flows.tcp_mut(idx) else {
            return;
        };
        // Set again below if the socket has nothing more for the guest.
        conn.flags &= !SOCK_DRAINED;
        if conn.events & ESTABLISHED == 0 || conn.events & (CLOSED | TAP_FIN_SENT) != 0 {
            return;
        }
        let Some((already, room)) = window_room(c.epoll, conn, idx) else {
            return;
        };
        let layout = Layout::new(conn, room, c.tap.tso());
        if !self.peek_off && self.discard.len() < MAX_WINDOW as usize {
            self.discard.resize(MAX_WINDOW as usize, 0);
        }
        if c.tap.tx.region(layout.stride, layout.frames).1 == 0 {
            c.tap.flush();
        }
        let (region, fit) = c.tap.tx.region(layout.stride, layout.frames);
        if fit == 0 {
            // The link holds frames it could not deliver (a vhost-user
            // ring without buffers): wait for it to drain instead of
            // waking up on the readable socket in the meantime.
            if c.tap.blocked() && self.tap_waiters.len() < self.tap_waiters.capacity() {
                if conn.flags & TAP_WAIT == 0 {
                    conn.flags |= TAP_WAIT;
                    self.tap_waiters.push(idx);
                }
                let want = conn.epoll_flags & !EventFlags::IN;
                let _ = modify(c.epoll, conn, idx, want);
            }
            return;
        }
        // Without SO_PEEK_OFF, the peek starts at the first byte the guest
        // did not acknowledge: what it has already goes here first.
        let skip: &mut [u8] = if self.peek_off {
            &mut []
        } else {
            &mut self.discard[..already as usize]
        };
        let (n, eof) = match peek(&conn.sock, region, &layout, fit, room, skip) {
            Ok(got) if self.peek_off => (got, got == 0),
            Ok(got) => {
                let n = got.saturating_sub(already as usize);
                (n, n == 0 && conn.events & SOCK_FIN_RCVD != 0)
            }
            Err(rustix::io::Errno::AGAIN) => {
                // Nothing yet: be told when there is.
                drained(c.epoll, conn, idx);
                return;
            }
            Err(e) => {
                log::debug!("TCP {idx}: peek: {e}");
                self.reset(c, idx);
                return;
            }
        };
        if n == 0 {
            // Nothing new: end of stream once everything was sent?
            if eof {
                fin_to_tap(c.conf, c.guest.mac, c.tap, c.epoll, conn, idx);
            } else {
                drained(c.epoll, conn, idx);
            }
            return;
        }
        conn.wnd_to_tap = conn.window_to_tap(c.conf, c.tap.tso());
        frame_segments(c.conf, c.guest.mac, c.tap, conn, &layout, fit, n);
        conn.seq_ack_to_tap = conn.seq_from_tap;
        conn.flags &= !ACK_TO_TAP_DUE;
        if conn.rto_at.is_none() {
            conn.arm_rto(Instant::now());
        }
        // Less than we asked for: the socket has nothing more for now,
        // and new data will wake us once. Else more may be waiting:
        // level-triggered epoll will tell us.
        let asked = room.min(fit.saturating_mul(layout.mss));
        if n < asked && conn.events & SOCK_FIN_RCVD != 0 {
            // All of it, and the peer's FIN came with it: no edge is left
            // to report, our FIN follows the data.
            fin_to_tap(c.conf, c.guest.mac, c.tap, c.epoll, conn, idx);
        } else if n < asked {
            drained(c.epoll, conn, idx);
        } else {
            let want = (conn.epoll_flags | EventFlags::IN) & !EventFlags::ET;
            let _ = modify(c.epoll, conn, idx, want);
        }
    }

    /// A listening socket of the host's table (`-t`) is readable: accept,
    /// and open each connection where [`fwd::from_host`] sends it: toward
    /// the guest, or spliced into the namespace. `r` is the socket's epoll
    /// reference (to pause it, see [`Tcp::next_accepted`]).
    pub(crate) fn listen_event(&mut self, c: &mut TcpCtx<'_>, l: &Listening<'_>, r: EpollRef) {
        let mut budget = ACCEPT_BATCH;
        while let Some((sock, ini)) = self.next_accepted(c.epoll, l, r, &mut budget) {
            match fwd::from_host(c.conf, c.live, c.guest, l.rule, IPPROTO_TCP, &ini) {
                Some(tgt) if tgt.pif == Pif::Splice => {
                    let target = SocketAddr::new(tgt.side.eaddr, tgt.side.eport);
                    if let Some(idx) =
                        self.splice
                            .open(c.flows.splice(), c.epoll, sock, target, true)
                    {
                        fwd::log_decision(idx, IPPROTO_TCP, l.pif, &ini, &tgt);
                    }
                    self.splice_refusals();
                }
                Some(tgt) => self.conn_from_sock(c, sock, &ini, &tgt),
                None => {
                    let _ = sys::set_linger_zero(&sock);
                }
            }
        }
    }

    /// A listening socket of the namespace's table (`-T`) is readable:
    /// accept, and splice each loopback connection to the host's loopback
    /// ([`fwd::from_splice`]); others are reset.
    pub(crate) fn listen_ns_event(&mut self, c: &mut TcpCtx<'_>, l: &Listening<'_>, r: EpollRef) {
        let mut budget = ACCEPT_BATCH;
        while let Some((sock, ini)) = self.next_accepted(c.epoll, l, r, &mut budget) {
            let Some(tgt) = fwd::from_splice(l.rule, IPPROTO_TCP, &ini) else {
                let _ = sys::set_linger_zero(&sock);
                continue;
            };
            let target = SocketAddr::new(tgt.side.eaddr, tgt.side.eport);
            if let Some(idx) = self
                .splice
                .open(c.flows.splice(), c.epoll, sock, target, false)
            {
                fwd::log_decision(idx, IPPROTO_TCP, l.pif, &ini, &tgt);
            }
            self.splice_refusals();
        }
    }

    /// The splice path's refusals since the last look go to the
    /// rate-limited log too.
    fn splice_refusals(&mut self) {
        let now_refused = self.splice.stats.refused + self.splice.stats.refused_no_fd;
        let before = self.stats.spliced.refused + self.stats.spliced.refused_no_fd;
        for _ in before..now_refused {
            self.refusals.add(Instant::now());
        }
        self.stats.spliced = self.splice.stats;
    }

    /// The next connection waiting on `l`, while `budget` lasts
    /// ([`ACCEPT_BATCH`] per wake-up). If accepting fails for want of
    /// descriptors or memory, the waiting connection is refused: the
    /// spare descriptor makes room to accept it and reset it at once.
    /// Without a spare (or if that fails too) the listener `r` is not
    /// watched until the next tick ([`Tcp::resume_listeners`]), rather
    /// than waking us up again at once for nothing.
    fn next_accepted(
        &mut self,
        epoll: &Epoll,
        l: &Listening<'_>,
        r: EpollRef,
        budget: &mut usize,
    ) -> Option<(OwnedFd, FlowSide)> {
        while *budget > 0 {
            *budget -= 1;
            match accept(l) {
                Ok(Some(got)) => return Some(got),
                Ok(None) => return None,
                Err(e) if exhausted(e) => {
                    self.stats.refused_no_fd += 1;
                    self.refusals.add(Instant::now());
                    if !self.refuse_with_spare(l) {
                        self.pause_listener(epoll, l, r);
                        return None;
                    }
                }
                // The connection went before we took it (ECONNABORTED),
                // or a fault of this connection only: the next one.
                Err(e) => log::trace!("TCP: accept on {} port {}: {e}", l.pif.name(), l.port),
            }
        }
        None
    }

    /// Gives up the spare descriptor to accept and reset the next
    /// connection on `l`, then takes the spare again. False if there was
    /// no spare or the accept failed all the same.
    fn refuse_with_spare(&mut self, l: &Listening<'_>) -> bool {
        let Some(spare) = self.spare.take() else {
            self.spare = spare_fd();
            return false;
        };
        drop(spare);
        let refused = match rustix::net::acceptfrom_with(l.fd, SocketFlags::CLOEXEC) {
            Ok((s, _)) => {
                let _ = sys::set_linger_zero(&s);
                true
            }
            Err(_) => false,
        };
        self.spare = spare_fd();
        refused
    }

    /// Stops watching listener `r` until the next tick.
    fn pause_listener(&mut self, epoll: &Epoll, l: &Listening<'_>, r: EpollRef) {
        if self.paused.len() == self.paused.capacity() || self.paused.contains(&r) {
            return;
        }
        if epoll.modify(l.fd, r, EventFlags::empty()).is_ok() {
            self.stats.listen_paused += 1;
            self.paused.push(r);
        }
    }

    /// Watches again the listeners paused by [`Tcp::pause_listener`]
    /// (once per tick); `listening` finds a reference's socket, if its
    /// rule still has it.
    pub(crate) fn resume_listeners<'f>(
        &mut self,
        epoll: &Epoll,
        listening: impl Fn(u32) -> Option<Listening<'f>>,
    ) {
        for r in self.paused.drain(..) {
            // A table change may have put another socket in its slot.
            if let Some(l) = listening(r.index).filter(|l| l.rule.proto == Proto::Tcp) {
                let _ = epoll.modify(l.fd, r, EventFlags::IN | EventFlags::RDHUP);
            }
        }
    }

    /// A spliced connection's socket has an event.
    pub(crate) fn splice_event(
        &mut self,
        flows: &mut Flows,
        epoll: &Epoll,
        index: u32,
        ev: &crate::event::Event,
    ) {
        self.splice.event(flows.splice(), epoll, index, ev);
        self.stats.spliced = self.splice.stats;
    }

    /// A connection accepted from a host peer, `ini` its side, goes to the
    /// guest as `tgt`: a SYN to the guest.
    fn conn_from_sock(
        &mut self,
        c: &mut TcpCtx<'_>,
        sock: OwnedFd,
        ini: &FlowSide,
        tgt: &fwd::Target,
    ) {
        let conf = c.conf;
        if c.flows.len() >= c.flows.capacity() {
            self.stats.refused_table_full += 1;
            self.refusals.add(Instant::now());
            log::trace!(
                "TCP: flow table full, refusing [{}]:{}",
                ini.eaddr,
                ini.eport
            );
            let _ = sys::set_linger_zero(&sock);
            return;
        }
        let _ = rustix::net::sockopt::set_tcp_nodelay(&sock, true);
        let key = FlowKey {
            proto: IPPROTO_TCP,
            pif: Pif::Tap,
            side: tgt.side,
        };
        let src = tgt.side.oaddr;
        let isn = self.isn(&key);
        let mut conn = TcpConn::new(sock, key, isn);
        conn.events = SOCK_ACCEPTED;
        conn.ws_to_tap = MAX_WS;
        conn.wnd_from_tap = WINDOW_DEFAULT;
        conn.mss = LinkMss::new(conf.mtu, src).to_guest(u16::MAX);
        let Ok(idx) = c.flows.insert(conn) else {
            self.stats.refused_table_full += 1;
            self.refusals.add(Instant::now());
            return;
        };
        c.flows.hash_insert(&key, idx, 0);
        self.stats.opened_from_sock += 1;
        let Some(conn) = c.flows.tcp_mut(idx) else {
            return;
        };
        let flags = EventFlags::RDHUP;
        if c.epoll
            .add_flags(&conn.sock, EpollRef::new(Kind::TcpSock, idx), flags)
            .is_err()
        {
            self.close(c.flows, idx);
            return;
        }
        conn.epoll_flags = flags;
        conn.seq_to_tap = isn.wrapping_add(1);
        conn.wnd_to_tap = WINDOW_DEFAULT as u16;
        fwd::log_decision(idx, IPPROTO_TCP, Pif::Host, ini, tgt);
        frame::send_flags(conf, c.guest.mac, c.tap, conn, SYN, isn);
        conn.arm_rto(Instant::now());
    }

    // ------------------------------------------------------------------
    // Closing
    // ------------------------------------------------------------------

    /// Resets both sides: RST to the guest, RST to the socket's peer.
    fn reset(&mut self, c: &mut TcpCtx<'_>, idx: u32) {
        let Some(conn) = c.flows.tcp_mut(idx) else {
            return;
        };
        if conn.events & CLOSED != 0 {
            return;
        }
        self.stats.rst_to_tap += 1;
        frame::send_flags(c.conf, c.guest.mac, c.tap, conn, RST | ACK, conn.seq_to_tap);
        let _ = sys::set_linger_zero(&conn.sock);
        self.close(c.flows, idx);
    }

    fn check_closed(&mut self, flows: &mut Flows, idx: u32) {
        let Some(conn) = flows.tcp(idx) else {
            return;
        };
        let done_from_tap =
            conn.events & (TAP_FIN_RCVD | SOCK_FIN_SENT) == (TAP_FIN_RCVD | SOCK_FIN_SENT);
        let done_to_tap = conn.events & TAP_FIN_ACKED != 0;
        if done_from_tap && done_to_tap {
            self.close(flows, idx);
        }
    }

    /// Marks a connection closed; it is freed at the end of the iteration.
    fn close(&mut self, flows: &mut Flows, idx: u32) {
        let Some(conn) = flows.tcp_mut(idx) else {
            return;
        };
        if conn.events & CLOSED != 0 {
            return;
        }
        conn.events |= CLOSED;
        self.closing.push(idx);
    }

    /// Frees closed connections (end of loop iteration).
    pub(crate) fn defer(&mut self, flows: &mut Flows, epoll: &Epoll) {
        self.splice.defer(flows.splice(), epoll);
        self.stats.spliced = self.splice.stats;
        while let Some(idx) = self.closing.pop() {
            if let Some(conn) = flows.tcp(idx) {
                // No EPOLL_CTL_DEL: the socket is ours alone (never
                // duplicated), and closing it, below, leaves the epoll set.
                let key = conn.key;
                flows.hash_remove(&key);
                flows.remove(idx);
                self.stats.closed += 1;
                log::trace!("TCP {idx}: closed");
            }
        }
    }

    /// The guest's link drained its backlog: connections that waited for
    /// it send again, in the order they stopped, until it fills up again.
    pub(crate) fn tap_ready(&mut self, c: &mut TcpCtx<'_>) {
        let n = self.tap_waiters.len();
        let mut done = 0;
        while done < n && !c.tap.blocked() {
            let idx = self.tap_waiters[done];
            done += 1;
            let Some(conn) = c.flows.tcp_mut(idx) else {
                continue;
            };
            // A reused slot has no TAP_WAIT: nothing to resume.
            if conn.flags & TAP_WAIT == 0 {
                continue;
            }
            conn.flags &= !TAP_WAIT;
            if conn.flags & STALLED == 0 {
                let want = conn.epoll_flags | EventFlags::IN;
                let _ = modify(c.epoll, conn, idx, want);
            }
            self.data_from_sock(c, idx);
        }
        self.tap_waiters.drain(..done);
    }

    /// Periodic work: retransmissions, keepalives, inactivity.
    pub(crate) fn timer(&mut self, c: &mut TcpCtx<'_>, now: Instant) {
        self.refusals.log(now);
        self.splice.timer(c.flows.splice(), c.epoll);
        let keepalive_tick = now >= self.next_keepalive;
        if keepalive_tick {
            self.next_keepalive = now + self.keepalive;
        }
        let inactivity_tick = now >= self.next_inactivity;
        if inactivity_tick {
            self.next_inactivity = now + self.inactivity;
        }
        // Walk by index without holding a borrow of the table (and without
        // collecting the indices: no allocation here).
        let mut next = c.flows.next_index(0);
        while let Some(idx) = next {
            next = c.flows.next_index(idx + 1);
            let Some(conn) = c.flows.tcp_mut(idx) else {
                continue;
            };
            if conn.events & CLOSED != 0 {
                continue;
            }
            if conn.events & ESTABLISHED == 0
                && now.saturating_duration_since(conn.opened_at) >= HANDSHAKE_TIMEOUT
            {
                log::trace!("TCP {idx}: handshake timed out, reset");
                self.stats.handshake_timeouts += 1;
                self.reset(c, idx);
                continue;
            }
            if inactivity_tick {
                if conn.inactive {
                    log::debug!("TCP {idx}: inactive for too long, reset");
                    self.stats.inactivity_resets += 1;
                    self.reset(c, idx);
                    continue;
                }
                conn.inactive = true;
            }
            if keepalive_tick && conn.events & ESTABLISHED != 0 {
                if conn.tap_inactive {
                    self.stats.keepalives += 1;
                    conn.room_changed();
                    conn.wnd_to_tap = conn.window_to_tap(c.conf, c.tap.tso());
                    frame::send_flags(
                        c.conf,
                        c.guest.mac,
                        c.tap,
                        conn,
                        ACK,
                        conn.seq_to_tap.wrapping_sub(1),
                    );
                }
                conn.tap_inactive = true;
            }
            if let Some(at) = conn.rto_at {
                // Frames still waiting in our own queue for the guest's
                // link (vhost-user backlog) were not lost: a
                // retransmission would only queue them twice.
                if now >= at && !c.tap.blocked() {
                    self.retransmit(c, idx, now);
                }
            }
        }
    }

    fn retransmit(&mut self, c: &mut TcpCtx<'_>, idx: u32, now: Instant) {
        let peek_off = self.peek_off;
        let Some(conn) = c.flows.tcp_mut(idx) else {
            return;
        };
        if conn.retries >= MAX_RETRIES {
            log::debug!("TCP {idx}: too many retransmissions, reset");
            self.reset(c, idx);
            return;
        }
        conn.retries += 1;
        self.stats.retransmits += 1;
        conn.rto_at = Some(now + RTO_INIT * (1u32 << conn.retries.min(7)));
        if conn.events & ESTABLISHED == 0 {
            if conn.events & SOCK_ACCEPTED != 0 {
                frame::send_flags(c.conf, c.guest.mac, c.tap, conn, SYN, conn.seq_init_to_tap);
            } else if conn.events & TAP_SYN_ACK_SENT != 0 {
                frame::send_flags(
                    c.conf,
                    c.guest.mac,
                    c.tap,
                    conn,
                    SYN | ACK,
                    conn.seq_init_to_tap,
                );
            }
            return;
        }
        if conn.wnd_from_tap == 0 {
            // Zero-window probe.
            conn.wnd_from_tap = 1;
        }
        let fin_sent = conn.events & TAP_FIN_SENT != 0;
        conn.rewind(peek_off);
        if fin_sent {
            conn.events &= !TAP_FIN_SENT;
        }
        let want = conn.epoll_flags | EventFlags::IN;
        let _ = modify(c.epoll, conn, idx, want);
        self.data_from_sock(c, idx);
    }
}

/// The ACK a guest segment calls for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AckDue {
    /// None (or it was sent already).
    No,
    /// At the end of the batch ([`Tcp::flush_acks`]).
    Queued,
    /// Held back, as a receiver's delayed ACK ([`Tcp::ack_delay`]).
    Delayed,
}

/// The guest acknowledged new data, up to `ack`: drop it from the socket
/// (it was only peeked), and restart or stop the retransmission timer.
fn acked_by_tap(conn: &mut TcpConn, idx: u32, ack: u32) {
    let mut acked = ack.wrapping_sub(conn.seq_ack_from_tap) as usize;
    if conn.events & TAP_FIN_SENT != 0 && ack == conn.seq_to_tap {
        // Our FIN took one sequence number, not a byte.
        acked -= 1;
        conn.events |= TAP_FIN_ACKED;
    }
    if acked > 0 {
        if let Err(e) = sys::discard(&conn.sock, acked) {
            log::debug!("TCP {idx}: discard: {e}");
        }
    }
    conn.seq_ack_from_tap = ack;
    conn.retries = 0;
    conn.dup_acks = 0;
    conn.rto_at = if ack == conn.seq_to_tap {
        None
    } else {
        Some(Instant::now() + RTO_INIT)
    };
}

/// The guest's FIN, in sequence: shut the socket down for writing, and
/// ACK the FIN at once.
fn fin_from_tap(conf: &Config, guest_mac: crate::wire::Mac, tap: &mut Tap, conn: &mut TcpConn) {
    conn.events |= TAP_FIN_RCVD;
    conn.seq_from_tap = conn.seq_from_tap.wrapping_add(1);
    let _ = rustix::net::shutdown(&conn.sock, rustix::net::Shutdown::Write);
    conn.events |= SOCK_FIN_SENT;
    conn.wnd_to_tap = conn.window_to_tap(conf, tap.tso());
    frame::send_ack(conf, guest_mac, tap, conn);
}

/// How much the guest's window lets us send: (bytes it has and did not
/// acknowledge, room left). `None` if the window is full: then socket
/// input is not watched until it opens ([`STALLED`]).
fn window_room(epoll: &Epoll, conn: &mut TcpConn, idx: u32) -> Option<(u32, usize)> {
    let mut already = conn.seq_to_tap.wrapping_sub(conn.seq_ack_from_tap);
    if already > MAX_WINDOW {
        // ACK beyond what we sent: resync.
        conn.seq_to_tap = conn.seq_ack_from_tap;
        already = 0;
    }
    let wnd = conn.wnd_from_tap.min(MAX_WINDOW);
    if already >= wnd {
        conn.flags |= STALLED;
        let want = conn.epoll_flags & !EventFlags::IN;
        let _ = modify(epoll, conn, idx, want);
        return None;
    }
    Some((already, (wnd - already) as usize))
}

/// How socket data is laid out in the tap's queue: frames `stride` bytes
/// apart (8-byte aligned), each with up to `mss` bytes of payload at `hdr`.
///
/// With segmentation offload ([`Tap::tso`]) a frame carries as many whole
/// segments of the guest's MSS as one frame holds (`mss` is then a
/// multiple of `gso`, the segment size, about 64 KiB): the backend's
/// receiver cuts it. Without, a frame is one segment and `gso` is 0.
struct Layout {
    mss: usize,
    hdr: usize,
    stride: usize,
    /// Frames wanted for the room in the guest's window.
    frames: usize,
    /// Segment size of super-frames, 0 for none.
    gso: u16,
}

impl Layout {
    fn new(conn: &TcpConn, room: usize, tso: bool) -> Self {
        let seg = usize::from(conn.mss.max(1));
        let hdr = frame::payload_offset(conn.key.side.oaddr);
        // A frame is at most FRAME_MAX bytes, which keeps its IP total (or
        // payload) length within 16 bits too.
        let segs = if tso {
            (crate::tap::FRAME_MAX - hdr) / seg
        } else {
            1
        };
        let (mss, gso) = if segs > 1 {
            (segs * seg, conn.mss)
        } else {
            (seg, 0)
        };
        Layout {
            mss,
            hdr,
            stride: (hdr + mss + 7) & !7,
            frames: room.div_ceil(mss).clamp(1, PEEK_FRAMES),
            gso,
        }
    }
}

/// Peeks up to `room` bytes from `sock` into the payload areas of the first
/// `fit` frames of `region`, after filling `skip` (if not empty) with the
/// bytes to pass over. Returns the bytes read, `skip` included.
fn peek(
    sock: &OwnedFd,
    region: &mut [u8],
    layout: &Layout,
    fit: usize,
    room: usize,
    skip: &mut [u8],
) -> rustix::io::Result<usize> {
    let mut iov: [IoSliceMut<'_>; PEEK_FRAMES + 1] =
        std::array::from_fn(|_| IoSliceMut::new(&mut []));
    let mut count = 0;
    if !skip.is_empty() {
        iov[0] = IoSliceMut::new(skip);
        count = 1;
    }
    let mut left = room;
    for chunk in region.chunks_mut(layout.stride).take(fit) {
        if left == 0 {
            break;
        }
        let take = left.min(layout.mss);
        if let Some(p) = chunk.get_mut(layout.hdr..layout.hdr + take) {
            iov[count] = IoSliceMut::new(p);
            count += 1;
            left -= take;
        }
    }
    let r = rustix::net::recvmsg(
        sock,
        &mut iov[..count],
        &mut rustix::net::RecvAncillaryBuffer::default(),
        RecvFlags::PEEK | RecvFlags::DONTWAIT,
    )?;
    Ok(r.bytes)
}

/// Writes the headers around `n` bytes peeked into the tap's queue (full
/// frames, then the rest, PSH on the last) and queues the frames, with
/// partial checksums, as super-frames of `layout.gso` segments if set.
fn frame_segments(
    conf: &Config,
    guest_mac: crate::wire::Mac,
    tap: &mut Tap,
    conn: &mut TcpConn,
    layout: &Layout,
    fit: usize,
    n: usize,
) {
    let mut lens = [0usize; PEEK_FRAMES];
    let (region, _) = tap.tx.region(layout.stride, fit);
    let mut left = n;
    let mut i = 0;
    for chunk in region.chunks_mut(layout.stride).take(fit) {
        if left == 0 {
            break;
        }
        let plen = left.min(layout.mss);
        left -= plen;
        let flags = if left == 0 { ACK | PSH } else { ACK };
        lens[i] = frame::write_segment(conf, guest_mac, conn, chunk, flags, conn.seq_to_tap, plen);
        conn.seq_to_tap = conn.seq_to_tap.wrapping_add(plen as u32);
        i += 1;
    }
    let csum = frame::csum_offload(conn.key.side.oaddr);
    tap.tx
        .commit_region_tso(layout.stride, &lens[..i], csum, layout.gso);
}

/// The socket's peer closed and the guest has everything: our FIN.
fn fin_to_tap(
    conf: &Config,
    guest_mac: crate::wire::Mac,
    tap: &mut Tap,
    epoll: &Epoll,
    conn: &mut TcpConn,
    idx: u32,
) {
    conn.events |= SOCK_FIN_RCVD;
    conn.wnd_to_tap = conn.window_to_tap(conf, tap.tso());
    frame::send_flags(conf, guest_mac, tap, conn, FIN | ACK, conn.seq_to_tap);
    conn.seq_to_tap = conn.seq_to_tap.wrapping_add(1);
    conn.events |= TAP_FIN_SENT;
    conn.arm_rto(Instant::now());
    // No more reading, and the peer's half-close is what brought us here:
    // RDHUP stays asserted from now on, and in a level-triggered set it
    // would wake every epoll_wait until the guest closes too (a busy loop
    // under a flood of connections the host peer closed). Hang-ups and
    // errors are reported whatever the mask. Edge-triggered, it reports
    // nothing more unless something new happens: leave it so.
    if !conn.epoll_flags.contains(EventFlags::ET) {
        let _ = modify(epoll, conn, idx, EventFlags::empty());
    }
}

/// Probes whether TCP sockets support `SO_PEEK_OFF` (Linux 6.9+).
fn probe_peek_off() -> bool {
    if std::env::var_os("PASST_RS_TEST_NO_PEEK_OFF").is_some() {
        log::debug!("SO_PEEK_OFF disabled for testing");
        return false;
    }
    let Ok(s) = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None) else {
        return false;
    };
    let ok = sys::set_peek_off(&s, 0).is_ok();
    log::debug!(
        "SO_PEEK_OFF {}supported for TCP",
        if ok { "" } else { "not " }
    );
    ok
}

/// Makes sure the socket's send buffer holds a few of the guest's segments:
/// with a buffer smaller than a segment (a socket toward a small-MSS path
/// starts with a few tens of KiB) we could never open a usable window.
/// Raising it fixes its size (no more autotuning), so only small buffers
/// are raised.
fn ensure_sndbuf(conf: &Config, conn: &TcpConn) {
    let mss = i32::from(LinkMss::new(conf.mtu, conn.key.side.oaddr).advertised());
    let have = sys::sndbuf(&conn.sock).unwrap_or(0);
    if have < 6 * mss {
        let _ = rustix::net::sockopt::set_socket_send_buffer_size(&conn.sock, (8 * mss) as usize);
    }
}

/// After advertising a window: if it is small, less than a third of what
/// an empty send buffer would give, watch for the socket's send buffer
/// draining, to tell the guest as soon as it may send more (it has no other
/// way to learn: it is waiting for us). A third, as the kernel reports a
/// TCP socket writable once its free space is half what is queued
/// (`sk_stream_min_wspace`), a third of the buffer: a window watched is one
/// the next writable event grows, and a socket already writable is not
/// watched (that would wake us at once, for nothing). A window at its cap
/// (the tap queue's, [`window::window_to_tap`]) is never small.
fn watch_window(conf: &Config, tso: bool, epoll: &Epoll, conn: &mut TcpConn, idx: u32) {
    if conn.events & ESTABLISHED == 0 || conn.events & (TAP_FIN_RCVD | CLOSED) != 0 {
        return;
    }
    let wnd = u32::from(conn.wnd_to_tap) << conn.ws_to_tap;
    // The size read with the window (it only changes by autotuning, which
    // grows it: a third of an older size errs on the side of quiet).
    let full = u32::from(conn.window_for(conf, tso, conn.sndbuf(), 0)) << conn.ws_to_tap;
    if wnd < full / 3 && conn.flags & WND_UPDATE_DUE == 0 {
        conn.flags |= WND_UPDATE_DUE;
        let want = conn.epoll_flags | EventFlags::OUT;
        let _ = modify(epoll, conn, idx, want);
    }
}

/// The socket gave the guest all it had ([`SOCK_DRAINED`]): its input is
/// watched edge-triggered from now on, so that what the guest was sent
/// and did not acknowledge (still in the socket, only peeked) does not
/// report it readable again on every wait. Arming it reports data that
/// came in the meantime, so nothing is missed.
fn drained(epoll: &Epoll, conn: &mut TcpConn, idx: u32) {
    conn.flags |= SOCK_DRAINED;
    let want = conn.epoll_flags | EventFlags::IN | EventFlags::ET;
    let _ = modify(epoll, conn, idx, want);
}

fn modify(epoll: &Epoll, conn: &mut TcpConn, idx: u32, flags: EventFlags) -> io::Result<()> {
    if flags == conn.epoll_flags {
        return Ok(());
    }
    epoll.modify(&conn.sock, EpollRef::new(Kind::TcpSock, idx), flags)?;
    conn.epoll_flags = flags;
    Ok(())
}

enum ConnectState {
    Done,
    InProgress,
}

/// A non-blocking socket connecting to the target side `tgt` (from its
/// own address, if set), through the configured outbound interface.
fn connect_socket(
    conf: &Config,
    tgt: &FlowSide,
    guest_mss: Option<u16>,
) -> io::Result<(OwnedFd, ConnectState)> {
    let addr = tgt.eaddr;
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let s = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    let _ = rustix::net::sockopt::set_tcp_nodelay(&s, true);
    // The guest's MSS goes on to the peer, as upstream does, except toward
    // the host's loopback: there it only makes the host's side of the
    // connection cut and acknowledge in small segments (13 % more CPU per
    // byte for a guest at MTU 1500), and the kernel refuses values over
    // `MAXSEG_MAX` (a guest at MTU 65520), so those are not even tried.
    let mss = guest_mss.filter(|&m| m <= MAXSEG_MAX && !addr.is_loopback());
    if let Some(mss) = mss {
        let _ = sys::set_tcp_maxseg(&s, i32::from(mss));
    }
    if !tgt.oaddr.is_unspecified() {
        rustix::net::bind(&s, &SocketAddr::new(tgt.oaddr, 0))?;
    }
    let ifname = match addr {
        IpAddr::V4(_) => conf.ip4.as_ref().and_then(|c| c.ifname_out.as_ref()),
        IpAddr::V6(_) => conf.ip6.as_ref().and_then(|c| c.ifname_out.as_ref()),
    };
    if let Some(ifn) = ifname {
        sys::bind_to_device(&s, ifn)?;
    }
    let r = rustix::net::connect(&s, &crate::fwd::host_sockaddr(conf, addr, tgt.eport));
    finish_connect(s, r)
}

fn finish_connect(s: OwnedFd, r: rustix::io::Result<()>) -> io::Result<(OwnedFd, ConnectState)> {
    match r {
        Ok(()) => Ok((s, ConnectState::Done)),
        Err(rustix::io::Errno::INPROGRESS) => Ok((s, ConnectState::InProgress)),
        Err(e) => Err(e.into()),
    }
}

/// Accepts the next connection on `l`: the socket, and the flow's
/// initiating side (the peer, and the listener's address and port); None
/// once no connection waits.
fn accept(l: &Listening<'_>) -> rustix::io::Result<Option<(OwnedFd, FlowSide)>> {
    loop {
        match rustix::net::acceptfrom_with(l.fd, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
            Ok((s, Some(p))) => {
                let Ok(peer) = SocketAddr::try_from(p) else {
                    continue;
                };
                let ini = FlowSide {
                    eaddr: peer.ip().to_canonical(),
                    eport: peer.port(),
                    oaddr: l.addr,
                    oport: l.port,
                };
                return Ok(Some((s, ini)));
            }
            Ok((_, None)) | Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(feature = "fuzzing")]
impl Tcp {
    /// Checks what must hold for every TCP connection between two events
    /// (the fuzz targets call it after each guest segment): sequence
    /// bookkeeping within the windows, event bits that can follow one
    /// another, and a table whose connections are exactly those opened and
    /// not freed, each found again under its own key. The first broken
    /// rule, described.
    pub(crate) fn check_invariants(&self, flows: &Flows) -> Result<(), String> {
        let mut count = 0u64;
        let mut idx = 0;
        while let Some(i) = flows.next_index(idx) {
            idx = i + 1;
            let Some(conn) = flows.tcp(i) else {
                continue;
            };
            count += 1;
            conn.check_invariants()
                .map_err(|e| format!("TCP {i}: {e}"))?;
            if conn.events & CLOSED == 0 && flows.lookup(&conn.key) != Some((i, 0)) {
                return Err(format!("TCP {i}: not found under its own key"));
            }
        }
        let open = (self.stats.opened_from_tap + self.stats.opened_from_sock)
            .saturating_sub(self.stats.closed);
        if count != open {
            return Err(format!(
                "{count} TCP connections in the table, {open} opened and not freed"
            ));
        }
        Ok(())
    }
}
