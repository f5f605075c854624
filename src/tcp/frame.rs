//! TCP segments toward the guest, built in the tap's transmit queue through
//! [`crate::wire::build::finish_ip_tcp`].
//!
//! Layout: Ethernet, IPv4 (DF, TTL 255) or IPv6 (hop limit 255), TCP. Data
//! segments have their payload already in place (peeked there by the
//! socket path, at [`payload_offset`]); only headers are written around
//! it, with a partial checksum (see [`write_segment`]). Segments without
//! payload carry a complete checksum; SYNs carry the MSS and window scale
//! options.

use std::net::{IpAddr, SocketAddr};

use super::conn::TcpConn;
use super::window::{syn_window, LinkMss, MAX_WS};
use crate::conf::Config;
use crate::flow::FlowKey;
use crate::tap::Tap;
use crate::wire::build::{self, L4Csum};
use crate::wire::tcp::flags::{ACK, RST, SYN};
use crate::wire::tcp::{TcpPacket, TcpRepr};
use crate::wire::Mac;

/// TTL and hop limit of our segments, as upstream's.
const TTL: u8 = 255;

/// Where a data segment's payload starts in its frame.
pub(crate) fn payload_offset(guest_side: IpAddr) -> usize {
    build::tcp_payload_offset(guest_side)
}

/// Where the partial TCP checksum of a data segment starts, and the offset
/// of the checksum field from there, for the tap's offload header.
pub(crate) fn csum_offload(guest_side: IpAddr) -> (u16, u16) {
    build::tcp_csum_offload(guest_side)
}

/// Writes the frame of a segment of the flow `key`, from the address the
/// guest talks to, to the guest, around a payload of `plen` bytes already
/// in place.
fn write(
    conf: &Config,
    guest_mac: Mac,
    key: &FlowKey,
    repr: &TcpRepr,
    out: &mut [u8],
    plen: usize,
    csum: L4Csum,
) -> Option<usize> {
    let s = &key.side;
    let src = SocketAddr::new(s.oaddr, s.oport);
    let dst = SocketAddr::new(s.eaddr, s.eport);
    build::finish_ip_tcp(
        out,
        conf.our_mac,
        guest_mac,
        src,
        dst,
        TTL,
        repr,
        plen,
        csum,
    )
    .ok()
}

/// Completes a data segment whose payload (`plen` bytes) sits at
/// [`payload_offset`] in `buf`. The checksum is partial (see
/// [`csum_offload`]): the tap's kernel completes it if it ever needs to,
/// the stream backend completes it before sending. Returns the frame
/// length, or 0 if `buf` cannot hold it.
pub(crate) fn write_segment(
    conf: &Config,
    guest_mac: Mac,
    conn: &TcpConn,
    buf: &mut [u8],
    flags: u16,
    seq: u32,
    plen: usize,
) -> usize {
    let repr = TcpRepr {
        seq,
        ack: conn.seq_from_tap,
        flags,
        window: conn.wnd_to_tap,
        ..TcpRepr::default()
    };
    write(
        conf,
        guest_mac,
        &conn.key,
        &repr,
        buf,
        plen,
        L4Csum::Partial,
    )
    .unwrap_or(0)
}

/// Sends a segment without payload: SYN (with MSS and window scale
/// options), FIN, RST, ACK or keepalive, with sequence number `seq`.
pub(crate) fn send_flags(
    conf: &Config,
    guest_mac: Mac,
    tap: &mut Tap,
    conn: &mut TcpConn,
    flags: u16,
    seq: u32,
) {
    let repr = flags_repr(conf, conn, flags, seq);
    tap.send_with(|out| write(conf, guest_mac, &conn.key, &repr, out, 0, L4Csum::Full));
    if flags & ACK != 0 {
        conn.seq_ack_to_tap = conn.seq_from_tap;
    }
}

/// The header of a segment without payload (see [`send_flags`]).
fn flags_repr(conf: &Config, conn: &TcpConn, flags: u16, seq: u32) -> TcpRepr {
    let ack = flags & ACK != 0;
    let mut repr = TcpRepr {
        seq,
        ack: if ack { conn.seq_from_tap } else { 0 },
        flags,
        window: conn.wnd_to_tap,
        ..TcpRepr::default()
    };
    if flags & SYN != 0 {
        repr.window = syn_window(conn.wnd_to_tap);
        repr.mss = Some(LinkMss::new(conf.mtu, conn.key.side.oaddr).advertised());
        // Our shift on a SYN; on a SYN,ACK only if the guest offered
        // scaling (else the option says 0).
        repr.window_scale = Some(if conn.ws_to_tap > 0 || !ack {
            MAX_WS
        } else {
            0
        });
    }
    repr
}

/// Sends a pure ACK for everything received, with the current window.
pub(crate) fn send_ack(conf: &Config, guest_mac: Mac, tap: &mut Tap, conn: &mut TcpConn) {
    let seq = conn.seq_to_tap;
    send_flags(conf, guest_mac, tap, conn, ACK, seq);
}

/// Answers a segment that belongs to no connection with a RST (RFC 9293
/// 3.10.7.1): never for a RST.
pub(crate) fn rst_no_conn(
    conf: &Config,
    guest_mac: Mac,
    tap: &mut Tap,
    key: &FlowKey,
    seg: &TcpPacket<&[u8]>,
) {
    if seg.rst() {
        return;
    }
    let repr = rst_repr(seg);
    tap.send_with(|out| write(conf, guest_mac, key, &repr, out, 0, L4Csum::Full));
}

/// The RST answering `seg` (RFC 9293 3.10.7.1): with its acknowledgement
/// number as sequence number if it has one, else acknowledging it.
fn rst_repr(seg: &TcpPacket<&[u8]>) -> TcpRepr {
    if seg.ack_flag() {
        return TcpRepr {
            seq: seg.ack(),
            flags: RST,
            ..TcpRepr::default()
        };
    }
    let len = seg.payload().len() as u32 + u32::from(seg.syn()) + u32::from(seg.fin());
    TcpRepr {
        ack: seg.seq().wrapping_add(len),
        flags: RST | ACK,
        ..TcpRepr::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{FlowSide, Pif};
    use crate::wire::checksum;
    use crate::wire::tcp::flags::{FIN, PSH};
    use etherparse::{LinkSlice, NetSlice, SlicedPacket, TcpOptionElement, TransportSlice};

    const OUR_MAC: Mac = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];
    const GUEST_MAC: Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    /// A connection from the guest's `eaddr:40000` to `oaddr:8080`.
    fn conn(eaddr: &str, oaddr: &str) -> TcpConn {
        let sock = std::fs::File::open("/dev/null").unwrap().into();
        let key = FlowKey {
            proto: 6,
            pif: Pif::Tap,
            side: FlowSide {
                eaddr: eaddr.parse().unwrap(),
                eport: 40000,
                oaddr: oaddr.parse().unwrap(),
                oport: 8080,
            },
        };
        let mut c = TcpConn::new(sock, key, 0x1234_5678);
        c.seq_from_tap = 0x9abc_def0;
        c.wnd_to_tap = 0x0f0f;
        c
    }

    fn conf() -> Config {
        let mut c = crate::dhcp::tests::test_config();
        c.our_mac = OUR_MAC;
        c.mtu = 65520;
        c
    }

    fn families() -> [TcpConn; 2] {
        [
            conn("10.0.2.15", "192.0.2.1"),
            conn("2001:db8::2", "2001:db8::1"),
        ]
    }

    /// Parses `frame` with etherparse and checks what every segment of
    /// `c` carries: addresses, ports, TTL, DF, and the IPv4 header
    /// checksum; returns the TCP part and whether its checksum is right.
    fn parse<'a>(c: &TcpConn, frame: &'a [u8]) -> (etherparse::TcpSlice<'a>, u16) {
        let p = SlicedPacket::from_ethernet(frame).expect("etherparse reads it");
        let Some(LinkSlice::Ethernet2(e)) = &p.link else {
            panic!("no Ethernet header")
        };
        assert_eq!((e.source(), e.destination()), (OUR_MAC, GUEST_MAC));
        let Some(TransportSlice::Tcp(t)) = p.transport else {
            panic!("no TCP header")
        };
        let s = &c.key.side;
        assert_eq!((t.source_port(), t.destination_port()), (8080, 40000));
        let want = match (&p.net, s.oaddr, s.eaddr) {
            (Some(NetSlice::Ipv4(ip)), IpAddr::V4(src), IpAddr::V4(dst)) => {
                let h = ip.header().to_header();
                assert_eq!((h.source, h.destination), (src.octets(), dst.octets()));
                assert_eq!(h.calc_header_checksum(), h.header_checksum);
                assert!(h.dont_fragment && !h.more_fragments);
                assert_eq!(h.time_to_live, 255);
                t.calc_checksum_ipv4(h.source, h.destination).unwrap()
            }
            (Some(NetSlice::Ipv6(ip)), IpAddr::V6(src), IpAddr::V6(dst)) => {
                let h = ip.header().to_header();
                assert_eq!((h.source, h.destination), (src.octets(), dst.octets()));
                assert_eq!(h.hop_limit, 255);
                t.calc_checksum_ipv6(h.source, h.destination).unwrap()
            }
            _ => panic!("wrong network layer"),
        };
        (t, want)
    }

    /// Lays out a payload as the data path does (peeked at
    /// [`payload_offset`] of a stride-sized slot) and frames it.
    fn data_segment(c: &TcpConn, plen: usize) -> Vec<u8> {
        let hdr = payload_offset(c.key.side.oaddr);
        let mut buf = vec![0xa5u8; (hdr + plen + 7) & !7];
        for (i, b) in buf[hdr..hdr + plen].iter_mut().enumerate() {
            *b = (i as u8) ^ 0x5a;
        }
        let n = write_segment(
            &conf(),
            GUEST_MAC,
            c,
            &mut buf,
            ACK | PSH,
            0x1111_2222,
            plen,
        );
        assert_eq!(n, hdr + plen);
        buf.truncate(n);
        buf
    }

    /// Data segments carry a partial checksum (the pseudo-header only)
    /// where the tap's offload header says; completed there as the tun
    /// driver does (a sum from `csum_start` to the end, the field
    /// included), it is the right checksum, and the segment is the one
    /// built with a complete checksum (the stream link's variant).
    #[test]
    fn data_segment_partial_checksum_completes() {
        for c in families() {
            for plen in [1usize, 7, 1000, 61440] {
                let mut frame = data_segment(&c, plen);
                let (t, want) = parse(&c, &frame);
                assert_eq!(t.sequence_number(), 0x1111_2222);
                assert_eq!(t.acknowledgment_number(), 0x9abc_def0);
                assert_eq!(t.window_size(), 0x0f0f);
                assert!(t.ack() && t.psh() && !t.syn() && !t.fin() && !t.rst());
                assert_eq!(t.data_offset(), 5, "no options on data");
                assert_eq!(t.payload().len(), plen);
                assert!(t
                    .payload()
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == (i as u8) ^ 0x5a));
                assert_ne!(t.checksum(), want, "partial, not complete");

                let (start, off) = csum_offload(c.key.side.oaddr);
                let (start, field) = (usize::from(start), usize::from(start + off));
                let sum = checksum::finish(checksum::sum(&frame[start..]));
                frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
                let (t, want) = parse(&c, &frame);
                assert_eq!(t.checksum(), want, "completed: valid");

                // The complete-checksum variant is the same frame.
                let mut full = data_segment(&c, plen);
                let (src, dst) = (
                    SocketAddr::new(c.key.side.oaddr, 8080),
                    SocketAddr::new(c.key.side.eaddr, 40000),
                );
                let repr = TcpRepr {
                    seq: 0x1111_2222,
                    ack: c.seq_from_tap,
                    flags: ACK | PSH,
                    window: c.wnd_to_tap,
                    ..TcpRepr::default()
                };
                let n = build::finish_ip_tcp(
                    &mut full,
                    OUR_MAC,
                    GUEST_MAC,
                    src,
                    dst,
                    TTL,
                    &repr,
                    plen,
                    L4Csum::Full,
                )
                .unwrap();
                assert_eq!(&full[..n], &frame[..]);
                assert!(crate::wire::classify(&frame).is_ok());
            }
        }
    }

    /// Our SYN and SYN,ACK: MSS and window scale options, an unscaled
    /// window of at least the initial one, a complete checksum.
    #[test]
    fn syn_options() {
        for mut c in families() {
            for (flags, guest_ws, ws) in [
                (SYN, 0, MAX_WS),
                (SYN | ACK, MAX_WS, MAX_WS),
                (SYN | ACK, 0, 0),
            ] {
                c.ws_to_tap = guest_ws;
                c.wnd_to_tap = 100;
                let repr = flags_repr(&conf(), &c, flags, c.seq_init_to_tap);
                let mut buf = vec![0u8; 256];
                let n =
                    write(&conf(), GUEST_MAC, &c.key, &repr, &mut buf, 0, L4Csum::Full).unwrap();
                let (t, want) = parse(&c, &buf[..n]);
                assert_eq!(t.checksum(), want);
                assert_eq!(t.sequence_number(), 0x1234_5678);
                assert!(t.syn());
                assert_eq!(t.ack(), flags & ACK != 0);
                let ack = if flags & ACK != 0 { 0x9abc_def0 } else { 0 };
                assert_eq!(t.acknowledgment_number(), ack);
                assert_eq!(t.window_size(), 14600);
                let opts: Vec<_> = t.options_iterator().map(Result::unwrap).collect();
                assert_eq!(
                    opts,
                    [
                        TcpOptionElement::MaximumSegmentSize(61440),
                        TcpOptionElement::Noop,
                        TcpOptionElement::WindowScale(ws),
                    ]
                );
                assert!(t.payload().is_empty());
            }
        }
    }

    /// ACKs and FINs: no options, the window as it is (scaled).
    #[test]
    fn ack_and_fin() {
        for c in families() {
            for flags in [ACK, FIN | ACK] {
                let repr = flags_repr(&conf(), &c, flags, 77);
                let mut buf = vec![0u8; 256];
                let n =
                    write(&conf(), GUEST_MAC, &c.key, &repr, &mut buf, 0, L4Csum::Full).unwrap();
                let (t, want) = parse(&c, &buf[..n]);
                assert_eq!(t.checksum(), want);
                assert_eq!(
                    (t.sequence_number(), t.acknowledgment_number()),
                    (77, 0x9abc_def0)
                );
                assert_eq!((t.fin(), t.ack(), t.syn()), (flags & FIN != 0, true, false));
                assert_eq!(t.window_size(), 0x0f0f);
                assert_eq!(t.data_offset(), 5);
            }
        }
    }

    /// RSTs for segments of no connection (RFC 9293 3.10.7.1).
    #[test]
    fn rst_answers() {
        // A SYN with 3 bytes of data: RST,ACK acknowledging all of it.
        let mut syn = [0u8; 23];
        syn[4..8].copy_from_slice(&1000u32.to_be_bytes());
        syn[12] = 5 << 4;
        syn[13] = SYN as u8;
        let r = rst_repr(&TcpPacket::new_checked(&syn[..]).unwrap());
        assert_eq!((r.seq, r.ack, r.flags), (0, 1004, RST | ACK));
        // A segment with an ACK: RST from that sequence number.
        let mut seg = syn;
        seg[8..12].copy_from_slice(&5555u32.to_be_bytes());
        seg[13] = ACK as u8;
        let r = rst_repr(&TcpPacket::new_checked(&seg[..]).unwrap());
        assert_eq!((r.seq, r.ack, r.flags), (5555, 0, RST));
    }
}
