//! One TCP connection as the translation sees it: the host socket, the
//! guest-side addresses, and the sequence and window numbers we mirror.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::event::epoll::EventFlags;

use super::window::{self, LinkMss, WINDOW_DEFAULT};
use crate::conf::Config;
use crate::flow::FlowKey;

/// First retransmission timeout.
pub(crate) const RTO_INIT: Duration = Duration::from_secs(1);

// Events: what happened to a connection (see the module documentation).
/// The guest sent a SYN; the socket is connecting.
pub(crate) const TAP_SYN_RCVD: u16 = 1 << 0;
/// A host peer connected through a listener; we sent the guest a SYN.
pub(crate) const SOCK_ACCEPTED: u16 = 1 << 1;
/// Both handshakes done.
pub(crate) const ESTABLISHED: u16 = 1 << 2;
/// We sent the guest a SYN,ACK.
pub(crate) const TAP_SYN_ACK_SENT: u16 = 1 << 3;
/// The socket's peer closed its side (EOF).
pub(crate) const SOCK_FIN_RCVD: u16 = 1 << 4;
/// We shut the socket down for writing (the guest's FIN).
pub(crate) const SOCK_FIN_SENT: u16 = 1 << 5;
/// The guest sent a FIN.
pub(crate) const TAP_FIN_RCVD: u16 = 1 << 6;
/// We sent the guest a FIN.
pub(crate) const TAP_FIN_SENT: u16 = 1 << 7;
/// The guest acknowledged our FIN.
pub(crate) const TAP_FIN_ACKED: u16 = 1 << 8;
/// Closed: freed at the end of the loop iteration.
pub(crate) const CLOSED: u16 = 1 << 9;

// Flags.
/// The guest's window is full: socket input is not watched.
pub(crate) const STALLED: u8 = 1 << 0;
/// An ACK to the guest is owed (sent at the end of the batch).
pub(crate) const ACK_TO_TAP_DUE: u8 = 1 << 1;
/// The socket refused part of the guest's data: once it is writable
/// again, reopen the window and provoke a fast retransmit.
pub(crate) const DROPPED_FROM_TAP: u8 = 1 << 2;
/// We advertised a small window: tell the guest when the socket drains.
pub(crate) const WND_UPDATE_DUE: u8 = 1 << 3;
/// An ACK to the guest is held back briefly (see `Tcp::ack_delay`).
pub(crate) const ACK_DELAYED: u8 = 1 << 4;
/// The guest's link took no more frames (a full vhost-user ring): socket
/// input is not watched until it drains (`Tcp::tap_ready`).
pub(crate) const TAP_WAIT: u8 = 1 << 5;
/// Everything the socket held went to the guest: its events are
/// edge-triggered (`EPOLLET`), so that data the guest has and did not
/// acknowledge yet does not wake us again and again (a readable socket is
/// level-triggered readable until the guest's ACK lets us drop the data);
/// new data wakes us once.
pub(crate) const SOCK_DRAINED: u8 = 1 << 6;
/// The guest sent a segment longer than the MTU: its kernel uses the tap's
/// segmentation offload, so its frames may be 64 KiB long (see
/// [`TcpConn::window_for`]).
pub(crate) const GUEST_GSO: u8 = 1 << 7;

// TCP header flags.
pub(crate) use crate::wire::tcp::flags::{ACK, FIN, PSH, RST, SYN};

/// Sequence comparisons, modulo 2^32.
pub(crate) fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

pub(crate) fn seq_le(a: u32, b: u32) -> bool {
    !seq_gt(a, b)
}

/// A TCP connection between the guest and a host socket.
pub(crate) struct TcpConn {
    pub(crate) sock: OwnedFd,
    /// The guest-side key: endpoint = the guest, "our" side = the address
    /// and port the guest talks to.
    pub(crate) key: FlowKey,
    pub(crate) events: u16,
    pub(crate) flags: u8,
    pub(crate) epoll_flags: EventFlags,
    /// Our initial sequence number toward the guest.
    pub(crate) seq_init_to_tap: u32,
    /// Next sequence number we send to the guest.
    pub(crate) seq_to_tap: u32,
    /// Highest sequence number the guest acknowledged.
    pub(crate) seq_ack_from_tap: u32,
    /// Next sequence number expected from the guest.
    pub(crate) seq_from_tap: u32,
    /// Last acknowledgement number we sent to the guest.
    pub(crate) seq_ack_to_tap: u32,
    pub(crate) seq_init_from_tap: u32,
    /// The guest's window, in bytes (scaled).
    pub(crate) wnd_from_tap: u32,
    /// The window field we last sent (unscaled).
    pub(crate) wnd_to_tap: u16,
    /// The send buffer's room for payload at the last `SO_MEMINFO`
    /// reading (0: none held), and that less what we wrote since: see
    /// [`TcpConn::window_to_tap`].
    room_read: u32,
    room_left: u32,
    /// The send buffer's size at that reading.
    sndbuf_read: u32,
    pub(crate) ws_from_tap: u8,
    pub(crate) ws_to_tap: u8,
    /// Segment size toward the guest.
    pub(crate) mss: u16,
    pub(crate) retries: u8,
    pub(crate) dup_acks: u8,
    /// When we retransmit if the guest acknowledged nothing new.
    pub(crate) rto_at: Option<Instant>,
    /// Inactivity clock marks (see the module documentation).
    pub(crate) inactive: bool,
    pub(crate) tap_inactive: bool,
    /// When the connection was opened: its handshake must finish within
    /// `HANDSHAKE_TIMEOUT` of this.
    pub(crate) opened_at: Instant,
}

impl TcpConn {
    pub(crate) fn new(sock: OwnedFd, key: FlowKey, isn: u32) -> Self {
        TcpConn {
            sock,
            key,
            events: 0,
            flags: 0,
            epoll_flags: EventFlags::empty(),
            seq_init_to_tap: isn,
            seq_to_tap: isn,
            seq_ack_from_tap: isn,
            seq_from_tap: 0,
            seq_ack_to_tap: 0,
            seq_init_from_tap: 0,
            room_read: 0,
            room_left: 0,
            sndbuf_read: 0,
            wnd_from_tap: WINDOW_DEFAULT,
            wnd_to_tap: 0,
            ws_from_tap: 0,
            ws_to_tap: 0,
            mss: window::MSS_DEFAULT,
            retries: 0,
            dup_acks: 0,
            rto_at: None,
            inactive: false,
            tap_inactive: false,
            opened_at: Instant::now(),
        }
    }

    pub(crate) fn arm_rto(&mut self, now: Instant) {
        self.rto_at = Some(now + RTO_INIT * (1u32 << self.retries.min(7)));
    }

    /// The window field to advertise to the guest now: what the socket's
    /// send buffer can still take (see `window::window_to_tap`).
    /// `tso`: the tap takes segmentation offload ([`crate::tap::Tap::tso`]),
    /// so the guest's frames may be 64 KiB long, once it showed it sends
    /// such ([`GUEST_GSO`]).
    ///
    /// Not a `getsockopt()` each time (that was one per request of a
    /// request/response exchange, four per short connection): the room
    /// read last, less what we wrote since ([`TcpConn::wrote`]), until
    /// that falls under half the reading. The estimate only errs low (the
    /// peer's reads free room it does not count), and a window that got
    /// small is watched and read again as the buffer drains
    /// ([`TcpConn::room_changed`]).
    pub(crate) fn window_to_tap(&mut self, conf: &Config, tso: bool) -> u16 {
        let mss = LinkMss::new(conf.mtu, self.key.side.oaddr).advertised();
        if self.room_read == 0 || self.room_left < self.room_read / 2 {
            let (sndbuf, queued) = crate::sys::send_memory(&self.sock).unwrap_or((0, 0));
            self.room_read = window::send_room(sndbuf, queued, mss, self.frame(mss, tso));
            self.room_left = self.room_read;
            self.sndbuf_read = sndbuf;
        }
        let established = self.events & ESTABLISHED != 0;
        window::window_field(self.room_left, mss, established, self.ws_to_tap)
    }

    /// The guest's data went to the socket: `n` bytes less room.
    pub(crate) fn wrote(&mut self, n: usize) {
        self.room_left = self.room_left.saturating_sub(window::room_taken(n));
    }

    /// The send buffer's size when [`TcpConn::window_to_tap`] last read it.
    pub(crate) fn sndbuf(&self) -> u32 {
        self.sndbuf_read
    }

    /// The send buffer drained: the next window is read from the socket.
    pub(crate) fn room_changed(&mut self) {
        self.room_read = 0;
    }

    /// The most payload one frame from the guest carries. The window is
    /// capped at the tap queue's length in frames: counted in
    /// super-segments for a guest whose kernel sends them, but a guest that
    /// does not (offload off on its side of the tap) sends MSS-sized
    /// frames, and a window of 700 super-segments would be tens of
    /// thousands of those: its tap queue overflows, every drop loses
    /// everything after it (we keep no out-of-order data) and the transfer
    /// crawls through retransmissions.
    fn frame(&self, mss: u16, tso: bool) -> u32 {
        if tso && self.flags & GUEST_GSO != 0 {
            window::GSO_FRAME
        } else {
            u32::from(mss)
        }
    }

    /// The window field for a send buffer of `sndbuf` bytes with `queued`
    /// in it (see [`TcpConn::window_to_tap`]).
    pub(crate) fn window_for(&self, conf: &Config, tso: bool, sndbuf: u32, queued: u32) -> u16 {
        let mss = LinkMss::new(conf.mtu, self.key.side.oaddr).advertised();
        let established = self.events & ESTABLISHED != 0;
        let frame = self.frame(mss, tso);
        window::window_to_tap(sndbuf, queued, mss, frame, established, self.ws_to_tap)
    }

    /// Goes back to the last byte the guest acknowledged, to send again.
    pub(crate) fn rewind(&mut self, peek_off: bool) {
        self.seq_to_tap = self.seq_ack_from_tap;
        self.dup_acks = 0;
        self.flags &= !(STALLED | SOCK_DRAINED);
        if peek_off {
            let _ = crate::sys::set_peek_off(&self.sock, 0);
        }
    }
}

#[cfg(feature = "fuzzing")]
impl TcpConn {
    /// What must hold for one connection between two events (see
    /// `Tcp::check_invariants`): the first broken rule, described.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let ev = self.events;
        let implies = |a: u16, b: u16, what: &str| {
            if ev & a != 0 && ev & b == 0 {
                Err(format!("events {ev:#x}: {what}"))
            } else {
                Ok(())
            }
        };
        implies(
            TAP_SYN_ACK_SENT,
            TAP_SYN_RCVD,
            "SYN,ACK sent without a guest SYN",
        )?;
        implies(
            TAP_FIN_ACKED,
            TAP_FIN_SENT,
            "FIN acknowledged but never sent",
        )?;
        implies(
            SOCK_FIN_SENT,
            TAP_FIN_RCVD,
            "socket shut down without a guest FIN",
        )?;
        if ev & TAP_SYN_RCVD != 0 && ev & SOCK_ACCEPTED != 0 {
            return Err(format!("events {ev:#x}: opened from both sides"));
        }
        if ev & (TAP_FIN_RCVD | TAP_FIN_SENT) != 0 && ev & ESTABLISHED == 0 {
            return Err(format!("events {ev:#x}: FIN before the handshake"));
        }
        // Sent and not acknowledged: within the largest window we use.
        let in_flight = self.seq_to_tap.wrapping_sub(self.seq_ack_from_tap);
        if in_flight > window::MAX_WINDOW + 1 {
            return Err(format!(
                "{in_flight} bytes in flight to the guest (sent up to {}, acknowledged {})",
                self.seq_to_tap, self.seq_ack_from_tap
            ));
        }
        // Never acknowledged beyond what we sent, nor before our SYN.
        if ev & ESTABLISHED != 0 && super::seq_gt(self.seq_init_to_tap, self.seq_ack_from_tap) {
            return Err(format!(
                "guest acknowledged {} before our ISN {}",
                self.seq_ack_from_tap, self.seq_init_to_tap
            ));
        }
        // We acknowledge only what we received.
        if super::seq_gt(self.seq_ack_to_tap, self.seq_from_tap) {
            return Err(format!(
                "acknowledged {} to the guest, expecting {}",
                self.seq_ack_to_tap, self.seq_from_tap
            ));
        }
        if ev & (TAP_SYN_RCVD | ESTABLISHED) != 0
            && super::seq_gt(self.seq_init_from_tap, self.seq_from_tap)
        {
            return Err(format!(
                "expecting {} from the guest, before its ISN {}",
                self.seq_from_tap, self.seq_init_from_tap
            ));
        }
        if self.ws_to_tap > window::MAX_WS || self.ws_from_tap > 14 {
            return Err(format!(
                "window scales {} to, {} from the guest",
                self.ws_to_tap, self.ws_from_tap
            ));
        }
        if self.mss == 0 {
            return Err("segment size 0".into());
        }
        Ok(())
    }
}
