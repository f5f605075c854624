//! The numbers a connection advertises to the guest and reads from it:
//! windows, window scales and segment sizes.
//!
//! Everything here is a pure function of its inputs (the socket's memory is
//! read by the caller), so that the arithmetic is tested on its own.
//!
//! - **Our window** ([`window_to_tap`]) is what the socket's send buffer can
//!   still take, in payload bytes, bounded by what the tap device's queue
//!   holds (frames of one MSS, or of up to 64 KiB with segmentation
//!   offload, [`GSO_FRAME`]); it is sent scaled down by our window scale.
//! - **The guest's window** ([`wnd_from_tap`]) is its window field scaled up
//!   by the shift it offered in its SYN ([`ws_from_tap`]).
//! - **Segment sizes** ([`LinkMss`]) follow from the link MTU: the MSS we
//!   advertise, and the one we send with given the guest's MSS option.

use std::net::IpAddr;

use crate::wire::build::tcp_payload_offset;

/// Largest window we advertise or use (16 MiB).
pub(crate) const MAX_WINDOW: u32 = 1 << 24;
/// Window scale we offer the guest.
pub(crate) const MAX_WS: u8 = 8;
/// Largest shift a window scale option may ask for (RFC 7323 2.3).
const MAX_WS_FROM_TAP: u8 = 14;
/// Initial window before anything is known (RFC 6928).
pub(crate) const WINDOW_DEFAULT: u32 = 14600;
/// The guest's segments wait in the tap device's transmit queue in the
/// namespace until we read them: its `txqueuelen`, 1000 frames (the
/// kernel's default for a tap device, as `ip link` shows). A window of more
/// segments than that only makes the guest's kernel drop frames, each drop
/// costing a retransmission, so one flow gets at most this many.
pub(crate) const TAP_QUEUE_FRAMES: u32 = 700;
/// Payload one frame from the guest carries at most with segmentation
/// offload: a TCP super-segment is one IP packet of up to 64 KiB.
pub(crate) const GSO_FRAME: u32 = 65535;
/// MSS of a guest that sent no MSS option (RFC 9293 3.7.1).
pub(crate) const MSS_DEFAULT: u16 = 536;
/// Smallest MSS we send with, whatever the guest asks.
const MSS_MIN: u16 = 64;
/// Memory the kernel charges per send buffer besides its payload, about.
const SKB_OVERHEAD: u64 = 1024;

/// The segment size the guest's link allows for one family: the MTU less
/// the IP and TCP headers (1460 with no MTU announced), and never more than
/// a tap frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinkMss(u16);

impl LinkMss {
    /// For `mtu` (0: none announced) and the family of `guest_side`.
    pub(crate) fn new(mtu: u16, guest_side: IpAddr) -> Self {
        // The IP and TCP headers, without the Ethernet one.
        let overhead = (tcp_payload_offset(guest_side) - crate::wire::build::IP_OFFSET) as u16;
        let mtu_mss = if mtu == 0 {
            1460
        } else {
            mtu.saturating_sub(overhead)
        };
        let frame_mss = crate::tap::FRAME_MAX.saturating_sub(tcp_payload_offset(guest_side));
        LinkMss(mtu_mss.min(frame_mss.min(usize::from(u16::MAX)) as u16))
    }

    /// The MSS we advertise in our SYNs, and size buffers and windows by:
    /// above a page, rounded down to a multiple of the page size, as
    /// upstream (61440 at MTU 65520).
    pub(crate) fn advertised(self) -> u16 {
        if self.0 > 4096 {
            self.0 / 4096 * 4096
        } else {
            self.0
        }
    }

    /// The MSS of our segments to the guest, given its MSS option
    /// (`u16::MAX` when there is none to honour yet): what it asked for,
    /// within the link, and at least [`MSS_MIN`].
    pub(crate) fn to_guest(self, asked: u16) -> u16 {
        asked.min(self.0).max(MSS_MIN)
    }
}

/// The shift we apply to the guest's window fields, from the window scale
/// option of its SYN: none without the option, at most 14.
pub(crate) fn ws_from_tap(option: Option<u8>) -> u8 {
    option.map_or(0, |w| w.min(MAX_WS_FROM_TAP))
}

/// The shift we apply to the windows we send: ours if the guest offered
/// window scaling too (both sides must, RFC 7323 2.2), else none.
pub(crate) fn ws_to_tap(option: Option<u8>) -> u8 {
    if option.is_some() {
        MAX_WS
    } else {
        0
    }
}

/// The guest's window in bytes, from the window field of a segment that is
/// not a SYN and the shift from its SYN, bounded by [`MAX_WINDOW`].
pub(crate) fn wnd_from_tap(field: u16, ws: u8) -> u32 {
    (u32::from(field) << ws).min(MAX_WINDOW)
}

/// The guest's window from the window field of its SYN or SYN,ACK, which is
/// never scaled (RFC 7323 2.2); a zero window counts as one byte, so that
/// the first data probes it.
pub(crate) fn wnd_from_syn(field: u16) -> u32 {
    u32::from(field).max(1)
}

/// The window field of a SYN or SYN,ACK we send: never scaled, and at least
/// the initial window, whatever the socket says yet.
pub(crate) fn syn_window(wnd_to_tap: u16) -> u16 {
    wnd_to_tap.max(WINDOW_DEFAULT.min(u32::from(u16::MAX)) as u16)
}

/// The window field we advertise to the guest: what the socket's send
/// buffer can still take ([`send_room`]), scaled down by `ws_to_tap`
/// ([`window_field`]).
///
/// `sndbuf` and `queued` are the socket's send buffer size and what is
/// queued in it, in kernel memory (`SO_MEMINFO`); `mss` is the MSS we
/// advertise ([`LinkMss::advertised`]); `frame` the most payload one
/// frame from the guest carries: `mss`, or [`GSO_FRAME`] when the tap
/// takes segmentation offload and the guest sends super-segments. Before
/// the connection is established, at least [`WINDOW_DEFAULT`].
pub(crate) fn window_to_tap(
    sndbuf: u32,
    queued: u32,
    mss: u16,
    frame: u32,
    established: bool,
    ws_to_tap: u8,
) -> u16 {
    let room = send_room(sndbuf, queued, mss, frame);
    window_field(room, mss, established, ws_to_tap)
}

/// What a send buffer of `sndbuf` bytes with `queued` in it (kernel
/// memory) can still take, in payload bytes, bounded by the tap's queue
/// (see [`window_to_tap`]).
pub(crate) fn send_room(sndbuf: u32, queued: u32, mss: u16, frame: u32) -> u32 {
    let mss = u32::from(mss);
    // What the send buffer can still take, in kernel memory, turned into
    // payload bytes: each buffer carries about a kilobyte of overhead, a
    // lot for small segments. An eighth is kept in reserve on top, so what
    // we promise fits and partial writes stay rare.
    let room = sndbuf.saturating_sub(queued) / 8 * 7;
    let free = (u64::from(room) * u64::from(mss) / (u64::from(mss) + SKB_OVERHEAD)) as u32;
    let free = free.min(MAX_WINDOW);
    free.min(TAP_QUEUE_FRAMES.saturating_mul(frame.max(mss)))
}

/// What a write of `n` payload bytes takes from the room [`send_room`]
/// counted: the bytes and, about, the overhead of their buffer.
pub(crate) fn room_taken(n: usize) -> u32 {
    u32::try_from(n)
        .unwrap_or(u32::MAX)
        .saturating_add(SKB_OVERHEAD as u32)
}

/// The window field for `room` payload bytes (see [`window_to_tap`]).
pub(crate) fn window_field(room: u32, mss: u16, established: bool, ws_to_tap: u8) -> u16 {
    // A sender does not put less than a segment into a small window (silly
    // window avoidance): a window below one segment is as good as closed,
    // and saying so makes us watch for the buffer draining (see
    // `watch_window`) instead of leaving the guest to probe.
    let free = if room < u32::from(mss) { 0 } else { room };
    let free = if established {
        free
    } else {
        free.max(WINDOW_DEFAULT)
    };
    (free >> ws_to_tap).min(u32::from(u16::MAX)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

    #[test]
    fn link_mss_from_mtu() {
        // No MTU announced: Ethernet's.
        assert_eq!(LinkMss::new(0, V4).advertised(), 1460);
        assert_eq!(LinkMss::new(0, V6).advertised(), 1460);
        // IP and TCP headers off the MTU.
        assert_eq!(LinkMss::new(1500, V4).advertised(), 1460);
        assert_eq!(LinkMss::new(1500, V6).advertised(), 1440);
        assert_eq!(LinkMss::new(1500, V6).to_guest(u16::MAX), 1440);
        // Above a page, advertised in whole pages (upstream's 61440).
        assert_eq!(LinkMss::new(65520, V4).advertised(), 61440);
        assert_eq!(LinkMss::new(65520, V6).advertised(), 61440);
        assert_eq!(LinkMss::new(9000, V4).advertised(), 8192);
        // ...but we send with the whole MTU.
        assert_eq!(LinkMss::new(65520, V4).to_guest(u16::MAX), 65480);
        assert_eq!(LinkMss::new(65520, V6).to_guest(u16::MAX), 65460);
        // The largest MTU still fits a tap frame with its headers.
        let m = LinkMss::new(65521, V4).to_guest(u16::MAX);
        assert_eq!(
            usize::from(m) + tcp_payload_offset(V4),
            crate::tap::FRAME_MAX
        );
        // A tiny MTU leaves no room: the floor applies to what we send.
        assert_eq!(LinkMss::new(68, V4).advertised(), 28);
        assert_eq!(LinkMss::new(68, V4).to_guest(u16::MAX), 64);
    }

    #[test]
    fn mss_to_guest_honours_its_option() {
        let l = LinkMss::new(65520, V4);
        assert_eq!(l.to_guest(1460), 1460);
        assert_eq!(l.to_guest(MSS_DEFAULT), 536);
        assert_eq!(l.to_guest(10), 64);
        assert_eq!(LinkMss::new(1500, V4).to_guest(9000), 1460);
    }

    #[test]
    fn window_scales() {
        assert_eq!(ws_from_tap(None), 0);
        assert_eq!(ws_from_tap(Some(7)), 7);
        assert_eq!(ws_from_tap(Some(15)), 14);
        assert_eq!(ws_from_tap(Some(255)), 14);
        assert_eq!(ws_to_tap(None), 0);
        assert_eq!(ws_to_tap(Some(0)), MAX_WS);
        assert_eq!(ws_to_tap(Some(14)), MAX_WS);
    }

    #[test]
    fn guest_window() {
        assert_eq!(wnd_from_tap(1000, 0), 1000);
        assert_eq!(wnd_from_tap(1000, 7), 128_000);
        assert_eq!(wnd_from_tap(0, 14), 0);
        // Bounded: 65535 << 14 is 1 GiB.
        assert_eq!(wnd_from_tap(u16::MAX, 14), MAX_WINDOW);
        assert_eq!(wnd_from_syn(0), 1);
        assert_eq!(wnd_from_syn(64240), 64240);
        assert_eq!(syn_window(0), 14600);
        assert_eq!(syn_window(60000), 60000);
    }

    #[test]
    fn our_window() {
        let mss = 1460u16;
        // An empty 1 MiB buffer: 7/8 of it, less the per-buffer overhead.
        let room = (1u32 << 20) / 8 * 7;
        let want = (u64::from(room) * 1460 / (1460 + 1024)) as u32;
        assert_eq!(window_to_tap(1 << 20, 0, mss, mss.into(), true, 0), 65535); // too big unscaled
        assert_eq!(
            u32::from(window_to_tap(1 << 20, 0, mss, mss.into(), true, MAX_WS)),
            want >> MAX_WS
        );
        // What is queued is not free.
        assert_eq!(
            u32::from(window_to_tap(65536, 16384, mss, mss.into(), true, 0)),
            (u64::from(49152u32 / 8 * 7) * 1460 / 2484) as u32
        );
        // Less than a segment free: closed...
        assert_eq!(window_to_tap(2000, 0, mss, mss.into(), true, 0), 0);
        assert_eq!(window_to_tap(1000, 4000, mss, mss.into(), true, 0), 0);
        // ...but never below the initial window during the handshake.
        assert_eq!(window_to_tap(1000, 4000, mss, mss.into(), false, 0), 14600);
        assert_eq!(
            window_to_tap(1000, 4000, mss, mss.into(), false, 2),
            14600 >> 2
        );
        // Bounded by the tap queue: 700 segments...
        let big = u32::MAX;
        assert_eq!(
            u32::from(window_to_tap(big, 0, mss, mss.into(), true, MAX_WS)),
            (TAP_QUEUE_FRAMES * 1460) >> MAX_WS
        );
        // ...and by the largest window, for big segments (which the
        // field, scaled, can just about say).
        assert_eq!(window_to_tap(big, 0, 61440, 61440, true, MAX_WS), u16::MAX);
        assert_eq!(
            window_to_tap(big, 0, 61440, 61440, true, MAX_WS + 1),
            (MAX_WINDOW >> (MAX_WS + 1)) as u16
        );
        // With segmentation offload, the tap queue holds 64 KiB frames:
        // the window is the buffer's (and at most MAX_WINDOW), whatever
        // the MSS.
        assert_eq!(
            window_to_tap(big, 0, mss, GSO_FRAME, true, MAX_WS),
            u16::MAX
        );
        assert_eq!(
            u32::from(window_to_tap(big, 0, mss, GSO_FRAME, true, MAX_WS + 1)),
            MAX_WINDOW >> (MAX_WS + 1)
        );
        assert_eq!(
            window_to_tap(1 << 20, 0, mss, GSO_FRAME, true, MAX_WS),
            window_to_tap(1 << 20, 0, mss, mss.into(), true, MAX_WS)
        );
    }
}
