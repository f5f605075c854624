//! The TCP splice path: loopback connections between the host and pasta's
//! namespace joined socket to socket, without the tap and without copying
//! data to user space.
//!
//! ## Theory of operation
//!
//! Two kinds of connections never need the guest's view of TCP, because
//! both ends are local sockets:
//!
//! - a `-t` listener on the host accepts a connection whose peer is the
//!   host's loopback (127.0.0.1 or ::1): we open a socket *inside the
//!   namespace* and connect it to the namespace's own address for that
//!   family (the address the guest uses), or to its loopback with
//!   `--host-lo-to-ns-lo` (and `--splice-only`), at the rule's target
//!   port;
//! - a `-T` listener inside the namespace (bound to `lo`) accepts: we open
//!   a socket on the host and connect it to the host's loopback at the
//!   rule's target port.
//!
//! The accepted socket is side 0, the one we connect is side 1. Each
//! direction `d` has its own pipe: `splice(2)` moves what side `d`
//! received into the pipe, and from the pipe into the other socket. The
//! data never leaves the kernel (pages move between socket buffers and
//! the pipe), and a pipe holds what the other side could not take yet, so
//! there is no buffer of our own. Pipes are made as large as the kernel
//! allows (up to 8 MiB, probed once at start, as upstream), so a
//! direction moves a lot per system call.
//!
//! ## Events
//!
//! Both sockets are in the epoll set *edge-triggered*; the reference
//! carries the flow index and the side (bit 31). A handler therefore moves
//! data until it cannot: it stops only when the reading socket is empty
//! *and* the pipe is drained, when the writing socket is full (then the
//! writer is also watched for `EPOLLOUT`, flag `OUT_WAIT`, and its edge
//! resumes the direction), or at end of file. No event is lost this way,
//! and a busy connection costs no `epoll_ctl` calls.
//!
//! Connecting is non-blocking: side 1 is watched for `EPOLLOUT` until the
//! connection completes (`SO_ERROR` says how); data the client sent in the
//! meantime waits in side 0's receive queue and is moved once connected.
//!
//! ## Bulk transfers
//!
//! As upstream: after a large read (over a tenth of the pipe) the source
//! socket's `SO_RCVLOWAT` is raised to a quarter of the pipe, so a bulk
//! sender wakes us for big chunks instead of every segment. The 1 s timer
//! ([`Splice::timer`]) puts it back to one byte on a side that was not
//! read since the last tick, and moves what waited below the threshold:
//! the tail of a burst may wait up to two seconds, end of file never
//! waits (a FIN wakes regardless of the threshold).
//!
//! ## Closing
//!
//! End of file on side `d` (a read of 0) marks `FIN_RCVD(d)`; once the
//! pipe of that direction is drained, the other socket is shut down for
//! writing (`FIN_SENT(d)`): half-closed connections keep working in the
//! other direction. With both directions finished, both sockets are
//! closed normally. An error on either socket (`EPOLLERR`, a failed
//! connect, a splice error such as a reset) resets both: `SO_LINGER` of
//! zero, then close, so each peer gets a RST.
//!
//! Like the tap path, a closed flow is only freed at the end of the loop
//! iteration ([`Splice::defer`]), so a stale event in the same batch never
//! reaches a reused slot. Spliced flows live in the shared flow table (no
//! hash entry: no frame ever looks them up) and count toward the open
//! connections that keep pasta alive after its command exits.
//!
//! ## Sockets inside the namespace
//!
//! A socket is created in the namespace of the thread that creates it, so
//! namespace sockets come from a small pool per family, refilled by one
//! short-lived thread that enters the namespace ([`NetNs::sockets`]) when
//! it runs dry: one thread per [`POOL_SIZE`] connections rather than per
//! connection.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use rustix::event::epoll::EventFlags;
use rustix::net::{AddressFamily, Shutdown, SocketFlags, SocketType};

use crate::event::{split_flow_side, Epoll, EpollRef, Event, Kind};
use crate::flow::ProtoFlows;
use crate::pasta::NetNs;
use crate::sys;

/// The flow table as the splice path sees it.
pub(crate) type Flows = dyn ProtoFlows<SpliceConn>;

impl dyn ProtoFlows<SpliceConn> {
    /// The spliced connection at `idx`, if that flow is one.
    pub(crate) fn splice_mut(&mut self, idx: u32) -> Option<&mut SpliceConn> {
        self.get_mut(idx)
    }
}

/// Largest pipe we ask for (upstream's `MAX_PIPE_SIZE`).
pub(crate) const MAX_PIPE_SIZE: usize = 8 << 20;
/// Sockets opened in the namespace per refill of a pool.
pub(crate) const POOL_SIZE: usize = 32;

// Events of a spliced connection.
/// Side 1 connected: pipes exist, data flows.
const CONNECTED: u16 = 1 << 0;
/// Direction 0 (side 0 → side 1) waits for side 1 to take data.
const OUT_WAIT_0: u16 = 1 << 1;
/// Direction 1 waits for side 0.
const OUT_WAIT_1: u16 = 1 << 2;
/// End of file read from side 0.
const FIN_RCVD_0: u16 = 1 << 3;
/// End of file read from side 1.
const FIN_RCVD_1: u16 = 1 << 4;
/// Side 1 shut down for writing after direction 0 ended.
const FIN_SENT_0: u16 = 1 << 5;
/// Side 0 shut down for writing after direction 1 ended.
const FIN_SENT_1: u16 = 1 << 6;
/// Closed: freed at the end of the loop iteration.
const CLOSED: u16 = 1 << 7;

const fn out_wait(d: usize) -> u16 {
    if d == 0 {
        OUT_WAIT_0
    } else {
        OUT_WAIT_1
    }
}

const fn fin_rcvd(d: usize) -> u16 {
    if d == 0 {
        FIN_RCVD_0
    } else {
        FIN_RCVD_1
    }
}

const fn fin_sent(d: usize) -> u16 {
    if d == 0 {
        FIN_SENT_0
    } else {
        FIN_SENT_1
    }
}

/// The pipe of one direction: read end, write end.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

/// One spliced connection.
pub(crate) struct SpliceConn {
    /// Side 0: the accepted socket; side 1: the socket we connected.
    sock: [OwnedFd; 2],
    /// `pipe[d]` carries what side `d` received to the other side.
    pipe: [Option<Pipe>; 2],
    /// Capacity of the pipes.
    pipe_size: usize,
    /// Bytes moved from side `d` into its pipe, and out of it.
    read: [u64; 2],
    written: [u64; 2],
    events: u16,
    /// `SO_RCVLOWAT` raised on side `d`, and reads on it since the last
    /// timer tick.
    lowat_set: [bool; 2],
    lowat_act: [bool; 2],
}

impl SpliceConn {
    /// Whether the connection is closed (waiting to be freed).
    pub(crate) fn is_closed(&self) -> bool {
        self.events & CLOSED != 0
    }

    /// The epoll flags side `s` should be watched for.
    fn flags(&self, s: usize) -> EventFlags {
        let base = EventFlags::IN | EventFlags::RDHUP | EventFlags::ET;
        let connecting = s == 1 && self.events & CONNECTED == 0;
        // Side s takes the data of direction 1 - s.
        if connecting || self.events & out_wait(1 - s) != 0 {
            base | EventFlags::OUT
        } else {
            base
        }
    }

    /// Moves data of direction `d` until the source is empty and the pipe
    /// drained, or the destination is full (then `OUT_WAIT(d)`), or end of
    /// file. Errors are fatal for the connection.
    fn forward(&mut self, d: usize) -> io::Result<()> {
        let o = 1 - d;
        let Some(pipe) = &self.pipe[d] else {
            return Ok(());
        };
        loop {
            let mut progress = false;
            let pending = self.read[d] - self.written[d];
            let room = self.pipe_size.saturating_sub(pending as usize);
            if self.events & fin_rcvd(d) == 0 && room > 0 {
                match sys::splice_move(&self.sock[d], &pipe.w, room, false) {
                    Ok(0) => self.events |= fin_rcvd(d),
                    Ok(n) => {
                        self.read[d] += n as u64;
                        progress = true;
                        self.lowat_act[d] = true;
                        // A large read: a bulk sender. Wake us for big
                        // chunks only (the timer undoes it when idle).
                        if n > self.pipe_size / 10 && !self.lowat_set[d] {
                            let lowat = (self.pipe_size / 4).min(i32::MAX as usize) as i32;
                            if sys::set_rcvlowat(&self.sock[d], lowat).is_ok() {
                                self.lowat_set[d] = true;
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            let pending = self.read[d] - self.written[d];
            if pending > 0 {
                let more = self.events & fin_rcvd(d) == 0 && pending as usize >= room;
                match sys::splice_move(&pipe.r, &self.sock[o], pending as usize, more) {
                    Ok(n) => {
                        self.written[d] += n as u64;
                        if (n as u64) < pending {
                            self.events |= out_wait(d);
                            return Ok(());
                        }
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.events |= out_wait(d);
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
            }
            if !progress {
                break;
            }
        }
        if self.events & fin_rcvd(d) != 0
            && self.read[d] == self.written[d]
            && self.events & fin_sent(d) == 0
        {
            rustix::net::shutdown(&self.sock[o], Shutdown::Write)?;
            self.events |= fin_sent(d);
        }
        Ok(())
    }
}

/// Counters of the splice path.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SpliceStats {
    pub(crate) opened: u64,
    pub(crate) closed: u64,
    pub(crate) resets: u64,
    /// Refused: the flow table was full.
    pub(crate) refused: u64,
    /// Refused: no socket could be had (out of descriptors or memory).
    pub(crate) refused_no_fd: u64,
}

/// One line of `name=value` pairs, a format the tests read (pasta logs it
/// at exit); `Debug` is for people and may change.
impl std::fmt::Display for SpliceStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let SpliceStats {
            opened,
            closed,
            resets,
            refused,
            refused_no_fd,
        } = self;
        write!(
            f,
            "opened={opened} closed={closed} resets={resets} refused={refused} \
             refused_no_fd={refused_no_fd}"
        )
    }
}

/// State of the splice path: namespace socket pools, pipe size, flows to
/// free.
pub(crate) struct Splice {
    netns: Option<NetNs>,
    pool4: Vec<OwnedFd>,
    pool6: Vec<OwnedFd>,
    pipe_size: usize,
    closing: Vec<u32>,
    pub(crate) stats: SpliceStats,
}

/// The largest pipe size the kernel grants us, from `MAX_PIPE_SIZE` down.
fn probe_pipe_size() -> usize {
    let Ok((r, _w)) = sys::pipe_nonblock() else {
        return 0;
    };
    let mut size = MAX_PIPE_SIZE;
    while size > 4096 {
        if let Ok(got) = sys::set_pipe_size(&r, size) {
            return got;
        }
        size /= 2;
    }
    rustix::pipe::fcntl_getpipe_size(&r).unwrap_or(65536)
}

impl Splice {
    /// The splice path; `netns` is where `-t` connections go (none: no
    /// `-t` splicing).
    pub(crate) fn new(netns: Option<NetNs>) -> Self {
        let pipe_size = probe_pipe_size();
        log::debug!("TCP splice: pipe size {pipe_size}");
        Splice {
            netns,
            pool4: Vec::new(),
            pool6: Vec::new(),
            pipe_size,
            closing: Vec::with_capacity(256),
            stats: SpliceStats::default(),
        }
    }

    /// Sets the namespace (pasta, once it exists) and fills the socket
    /// pools.
    pub(crate) fn set_netns(&mut self, netns: NetNs) {
        self.netns = Some(netns);
    }

    /// Connections opened and not yet freed.
    pub(crate) fn open_conns(&self) -> u64 {
        self.stats.opened.saturating_sub(self.stats.closed)
    }

    /// A socket inside the namespace, from the pool of its family.
    fn ns_socket(&mut self, v6: bool) -> io::Result<OwnedFd> {
        let Some(ns) = &self.netns else {
            return Err(io::Error::other("no namespace"));
        };
        let pool = if v6 { &mut self.pool6 } else { &mut self.pool4 };
        if pool.is_empty() {
            let family = if v6 {
                AddressFamily::INET6
            } else {
                AddressFamily::INET
            };
            *pool = ns.sockets(family, SocketType::STREAM, POOL_SIZE)?;
        }
        pool.pop()
            .ok_or_else(|| io::Error::other("empty socket pool"))
    }

    /// Joins the accepted socket `accepted` to a new socket connecting to
    /// `target`: inside the namespace if `into_ns` (a `-t` connection from
    /// the host's loopback), else on the host (a `-T` connection).
    pub(crate) fn open(
        &mut self,
        flows: &mut Flows,
        epoll: &Epoll,
        accepted: OwnedFd,
        target: SocketAddr,
        into_ns: bool,
    ) -> Option<u32> {
        if flows.len() >= flows.capacity() {
            self.stats.refused += 1;
            log::trace!("TCP splice: flow table full, refusing connection to {target}");
            let _ = sys::set_linger_zero(&accepted);
            return None;
        }
        let sock = if into_ns {
            self.ns_socket(target.is_ipv6())
        } else {
            let family = if target.is_ipv6() {
                AddressFamily::INET6
            } else {
                AddressFamily::INET
            };
            rustix::net::socket_with(
                family,
                SocketType::STREAM,
                SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
                None,
            )
            .map_err(io::Error::from)
        };
        let sock = match sock {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors or memory: refused, counted (the
                // caller logs refusals at a bounded rate).
                if e.raw_os_error().is_some_and(|n| {
                    [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM].contains(&n)
                }) {
                    self.stats.refused_no_fd += 1;
                }
                log::trace!("TCP splice: no socket for {target}: {e}");
                let _ = sys::set_linger_zero(&accepted);
                return None;
            }
        };
        for s in [&accepted, &sock] {
            let _ = rustix::net::sockopt::set_tcp_nodelay(s, true);
        }
        match rustix::net::connect(&sock, &target) {
            Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
            Err(e) => {
                log::debug!("TCP splice: connect to {target}: {e}");
                let _ = sys::set_linger_zero(&accepted);
                return None;
            }
        }
        let conn = SpliceConn {
            sock: [accepted, sock],
            pipe: [None, None],
            pipe_size: self.pipe_size,
            read: [0; 2],
            written: [0; 2],
            events: 0,
            lowat_set: [false; 2],
            lowat_act: [false; 2],
        };
        let Ok(idx) = flows.insert(conn) else {
            self.stats.refused += 1;
            return None;
        };
        self.stats.opened += 1;
        let conn = flows.splice_mut(idx)?;
        for s in 0..2 {
            let r = EpollRef::flow_side(Kind::TcpSplice, idx, s);
            if epoll.add_flags(&conn.sock[s], r, conn.flags(s)).is_err() {
                if s == 1 {
                    let _ = epoll.del(&conn.sock[0]);
                }
                // Never registered both: free it now, nothing refers to it.
                flows.remove(idx);
                self.stats.closed += 1;
                return None;
            }
        }
        Some(idx)
    }

    /// An event on one side of a spliced connection.
    pub(crate) fn event(&mut self, flows: &mut Flows, epoll: &Epoll, index: u32, ev: &Event) {
        let (idx, s) = split_flow_side(index);
        let Some(conn) = flows.splice_mut(idx) else {
            return;
        };
        if conn.is_closed() {
            return;
        }
        if ev.error {
            let err = sys::so_error(&conn.sock[s]).unwrap_or(0);
            log::trace!(
                "TCP splice {idx}: error on side {s}: {}",
                io::Error::from_raw_os_error(err)
            );
            self.reset(flows, idx);
            return;
        }
        if conn.events & CONNECTED == 0 {
            // Side 0's data waits in its queue until the connection is up.
            if s == 1 && (ev.writable || ev.hangup) {
                self.connected(flows, epoll, idx);
            }
            return;
        }
        let before = [conn.flags(0), conn.flags(1)];
        let mut r = Ok(());
        if ev.writable && conn.events & out_wait(1 - s) != 0 {
            conn.events &= !out_wait(1 - s);
            r = conn.forward(1 - s);
        }
        if r.is_ok() && (ev.readable || ev.hangup) && conn.events & out_wait(s) == 0 {
            r = conn.forward(s);
        }
        self.settle(flows, epoll, idx, before, r);
    }

    /// Side 1's connect finished: pipes, then whatever is waiting.
    fn connected(&mut self, flows: &mut Flows, epoll: &Epoll, idx: u32) {
        let Some(conn) = flows.splice_mut(idx) else {
            return;
        };
        let err = sys::so_error(&conn.sock[1]).unwrap_or(libc::EIO);
        if err != 0 {
            log::trace!(
                "TCP splice {idx}: connect failed: {}",
                io::Error::from_raw_os_error(err)
            );
            self.reset(flows, idx);
            return;
        }
        let before = [conn.flags(0), conn.flags(1)];
        for d in 0..2 {
            match new_pipe(self.pipe_size) {
                Ok((p, size)) => {
                    conn.pipe[d] = Some(p);
                    conn.pipe_size = conn.pipe_size.min(size);
                }
                Err(e) => {
                    log::debug!("TCP splice {idx}: no pipe: {e}");
                    self.reset(flows, idx);
                    return;
                }
            }
        }
        conn.events |= CONNECTED;
        log::trace!("TCP splice {idx}: connected");
        let mut r = conn.forward(0);
        if r.is_ok() {
            r = conn.forward(1);
        }
        // Side 1 was watched for the connect: always update it.
        let before = [before[0], EventFlags::empty()];
        self.settle(flows, epoll, idx, before, r);
    }

    /// After moving data: an error resets, both directions finished
    /// close, else the epoll flags follow the new waits.
    fn settle(
        &mut self,
        flows: &mut Flows,
        epoll: &Epoll,
        idx: u32,
        before: [EventFlags; 2],
        r: io::Result<()>,
    ) {
        let Some(conn) = flows.splice_mut(idx) else {
            return;
        };
        if let Err(e) = r {
            log::trace!("TCP splice {idx}: {e}");
            self.reset(flows, idx);
            return;
        }
        if conn.events & (FIN_SENT_0 | FIN_SENT_1) == FIN_SENT_0 | FIN_SENT_1 {
            log::trace!(
                "TCP splice {idx}: closed, {} and {} bytes",
                conn.written[0],
                conn.written[1]
            );
            self.close(flows, idx);
            return;
        }
        for (s, before) in before.iter().enumerate() {
            let want = conn.flags(s);
            if want != *before {
                let r = EpollRef::flow_side(Kind::TcpSplice, idx, s);
                if epoll.modify(&conn.sock[s], r, want).is_err() {
                    self.reset(flows, idx);
                    return;
                }
            }
        }
    }

    /// Resets both sockets and closes.
    fn reset(&mut self, flows: &mut Flows, idx: u32) {
        let Some(conn) = flows.splice_mut(idx) else {
            return;
        };
        for s in &conn.sock {
            let _ = sys::set_linger_zero(s);
        }
        self.stats.resets += 1;
        self.close(flows, idx);
    }

    fn close(&mut self, flows: &mut Flows, idx: u32) {
        let Some(conn) = flows.splice_mut(idx) else {
            return;
        };
        if conn.events & CLOSED == 0 {
            conn.events |= CLOSED;
            self.closing.push(idx);
        }
    }

    /// Periodic work (once a second): a side whose input threshold was
    /// raised for bulk data and that was not read since the last tick gets
    /// it back to one byte, and what waits below the old threshold moves
    /// now (lowering it raises no edge).
    pub(crate) fn timer(&mut self, flows: &mut Flows, epoll: &Epoll) {
        let mut next = flows.next_index(0);
        while let Some(idx) = next {
            next = flows.next_index(idx + 1);
            let Some(conn) = flows.splice_mut(idx) else {
                continue;
            };
            if conn.is_closed() || conn.events & CONNECTED == 0 {
                continue;
            }
            let before = [conn.flags(0), conn.flags(1)];
            let mut r = Ok(());
            for d in 0..2 {
                if conn.lowat_set[d] && !conn.lowat_act[d] {
                    let _ = sys::set_rcvlowat(&conn.sock[d], 1);
                    conn.lowat_set[d] = false;
                    if r.is_ok() && conn.events & out_wait(d) == 0 {
                        r = conn.forward(d);
                    }
                }
                conn.lowat_act[d] = false;
            }
            self.settle(flows, epoll, idx, before, r);
        }
    }

    /// Frees closed connections (end of loop iteration).
    pub(crate) fn defer(&mut self, flows: &mut Flows, epoll: &Epoll) {
        while let Some(idx) = self.closing.pop() {
            if let Some(conn) = flows.splice_mut(idx) {
                for s in &conn.sock {
                    let _ = epoll.del(s);
                }
                flows.remove(idx);
                self.stats.closed += 1;
                log::trace!("TCP splice {idx}: freed");
            }
        }
    }
}

/// A pipe of (about) `size` bytes: the pipe and its real size.
fn new_pipe(size: usize) -> io::Result<(Pipe, usize)> {
    let (r, w) = sys::pipe_nonblock()?;
    let got = match sys::set_pipe_size(&r, size) {
        Ok(got) => got,
        // Over the per-user pipe limits: keep the default size.
        Err(_) => rustix::pipe::fcntl_getpipe_size(&r).unwrap_or(65536),
    };
    Ok((Pipe { r, w }, got))
}
