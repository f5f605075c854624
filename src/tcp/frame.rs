//! TCP segments toward the guest, built in the tap's transmit queue.
//!
//! Layout: Ethernet, IPv4 (DF, TTL 255) or IPv6 (hop limit 255), TCP. Data
//! segments have their payload already in place (peeked there by the
//! socket path); only headers are written around it.

use std::net::IpAddr;

use super::conn::*;
use super::{our_mss, MAX_WS};
use crate::conf::Config;
use crate::flow::FlowKey;
use crate::tap::Tap;
use crate::wire::checksum;
use crate::wire::tcp::TcpPacket;
use crate::wire::Mac;

const ETH_LEN: usize = 14;
const IP4_LEN: usize = 20;
const IP6_LEN: usize = 40;
const TCP_LEN: usize = 20;

/// Header bytes before a data segment's payload.
pub fn header_len(guest_side: IpAddr) -> usize {
    ETH_LEN
        + if guest_side.is_ipv4() {
            IP4_LEN
        } else {
            IP6_LEN
        }
        + TCP_LEN
}

/// Writes Ethernet, IP and TCP headers at the start of `buf` for a segment
/// from `src:sport` to `dst:dport` whose TCP options (`opts`) and payload
/// (`plen` bytes) are already in place after the TCP header. Returns the
/// frame length, or 0 if `buf` is too small.
#[allow(clippy::too_many_arguments)]
fn write_headers(
    buf: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    (src, sport): (IpAddr, u16),
    (dst, dport): (IpAddr, u16),
    (seq, ack, flags, window): (u32, u32, u8, u16),
    opts_len: usize,
    plen: usize,
    partial: bool,
) -> usize {
    let ip_len = if src.is_ipv4() { IP4_LEN } else { IP6_LEN };
    let tcp_len = TCP_LEN + opts_len;
    let total = ETH_LEN + ip_len + tcp_len + plen;
    if buf.len() < total || total > crate::tap::FRAME_MAX {
        return 0;
    }
    buf[0..6].copy_from_slice(&dst_mac);
    buf[6..12].copy_from_slice(&src_mac);
    let l4_len = tcp_len + plen;
    let pseudo = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            buf[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let ip = &mut buf[ETH_LEN..ETH_LEN + IP4_LEN];
            ip[0] = 0x45;
            ip[1] = 0;
            ip[2..4].copy_from_slice(&((IP4_LEN + l4_len) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&[0, 0]);
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
            ip[8] = 255;
            ip[9] = 6;
            ip[10..12].copy_from_slice(&[0, 0]);
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = checksum::finish(checksum::sum(ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            checksum::pseudo_v4(s, d, 6, l4_len as u16)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            buf[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            let ip = &mut buf[ETH_LEN..ETH_LEN + IP6_LEN];
            ip[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
            ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            ip[6] = 6;
            ip[7] = 255;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            checksum::pseudo_v6(s, d, 6, l4_len as u32)
        }
        _ => return 0,
    };
    let t = &mut buf[ETH_LEN + ip_len..total];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = ((tcp_len / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&window.to_be_bytes());
    t[16..20].copy_from_slice(&[0, 0, 0, 0]);
    let c = if partial {
        // Offloaded: only the pseudo-header, folded, not complemented; the
        // kernel sums the rest if it ever needs the full checksum.
        checksum::fold(pseudo)
    } else {
        checksum::finish(checksum::combine(pseudo, checksum::sum(t)))
    };
    t[16..18].copy_from_slice(&c.to_be_bytes());
    total
}

/// Where the partial TCP checksum of a data segment starts, and the offset
/// of the checksum field from there, for the tap's offload header.
pub fn csum_offload(guest_side: IpAddr) -> (u16, u16) {
    let start = ETH_LEN
        + if guest_side.is_ipv4() {
            IP4_LEN
        } else {
            IP6_LEN
        };
    (start as u16, 16)
}

fn addrs(conn: &TcpConn) -> ((IpAddr, u16), (IpAddr, u16)) {
    let s = &conn.key.side;
    ((s.oaddr, s.oport), (s.eaddr, s.eport))
}

/// Completes a data segment whose payload (`plen` bytes) sits at
/// [`header_len`] in `buf`, with a partial checksum (see [`csum_offload`]).
pub fn write_segment(
    conf: &Config,
    guest_mac: Mac,
    conn: &TcpConn,
    buf: &mut [u8],
    flags: u8,
    seq: u32,
    plen: usize,
) -> usize {
    let (src, dst) = addrs(conn);
    write_headers(
        buf,
        conf.our_mac,
        guest_mac,
        src,
        dst,
        (seq, conn.seq_from_tap, flags, conn.wnd_to_tap),
        0,
        plen,
        true,
    )
}

/// Sends a segment without payload: SYN (with MSS and window scale
/// options), FIN, RST, ACK or keepalive, with sequence number `seq`.
pub fn send_flags(
    conf: &Config,
    guest_mac: Mac,
    tap: &mut Tap,
    conn: &mut TcpConn,
    flags: u8,
    seq: u32,
) {
    let (src, dst) = addrs(conn);
    let ack = if flags & ACK != 0 {
        conn.seq_from_tap
    } else {
        0
    };
    let window = if flags & SYN != 0 {
        // Windows in SYNs are never scaled.
        conn.wnd_to_tap
            .max(super::WINDOW_DEFAULT.min(u32::from(u16::MAX)) as u16)
    } else {
        conn.wnd_to_tap
    };
    let opts_len = if flags & SYN != 0 { 8 } else { 0 };
    let mss = our_mss(conf, src.0);
    let ws = if conn.ws_to_tap > 0 || flags & ACK == 0 {
        MAX_WS
    } else {
        0
    };
    tap.send_with(|out| {
        let hdr = header_len(src.0);
        if opts_len > 0 {
            let o = out.get_mut(hdr..hdr + 8)?;
            o[0] = 2;
            o[1] = 4;
            o[2..4].copy_from_slice(&mss.to_be_bytes());
            o[4] = 1;
            o[5] = 3;
            o[6] = 3;
            o[7] = ws;
        }
        let n = write_headers(
            out,
            conf.our_mac,
            guest_mac,
            src,
            dst,
            (seq, ack, flags, window),
            opts_len,
            0,
            false,
        );
        (n > 0).then_some(n)
    });
    if flags & ACK != 0 {
        conn.seq_ack_to_tap = conn.seq_from_tap;
    }
}

/// Sends a pure ACK for everything received, with the current window.
pub fn send_ack(conf: &Config, guest_mac: Mac, tap: &mut Tap, conn: &mut TcpConn) {
    let seq = conn.seq_to_tap;
    send_flags(conf, guest_mac, tap, conn, ACK, seq);
}

/// Answers a segment that belongs to no connection with a RST (RFC 9293
/// 3.10.7.1): never for a RST.
pub fn rst_no_conn(
    conf: &Config,
    guest_mac: Mac,
    tap: &mut Tap,
    key: &FlowKey,
    seg: &TcpPacket<&[u8]>,
) {
    if seg.rst() {
        return;
    }
    let src = (key.side.oaddr, key.side.oport);
    let dst = (key.side.eaddr, key.side.eport);
    let (seq, ack, flags) = if seg.ack_flag() {
        (seg.ack(), 0, RST)
    } else {
        let mut len = seg.payload().len() as u32;
        if seg.syn() {
            len += 1;
        }
        if seg.fin() {
            len += 1;
        }
        (0, seg.seq().wrapping_add(len), RST | ACK)
    };
    tap.send_with(|out| {
        let n = write_headers(
            out,
            conf.our_mac,
            guest_mac,
            src,
            dst,
            (seq, ack, flags, 0),
            0,
            0,
            false,
        );
        (n > 0).then_some(n)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn check(frame: &[u8]) {
        let c = crate::wire::classify::classify(frame).expect("our frame must classify");
        assert!(matches!(
            c.l3,
            crate::wire::classify::L3::Ipv4 { .. } | crate::wire::classify::L3::Ipv6 { .. }
        ));
    }

    #[test]
    fn headers_have_valid_checksums() {
        for (src, dst) in [
            (
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            ),
            (
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
            ),
        ] {
            for plen in [0usize, 1, 7, 1000] {
                let mut buf = vec![0xa5u8; 2000];
                let hdr = header_len(src);
                for (i, b) in buf[hdr..hdr + plen].iter_mut().enumerate() {
                    *b = i as u8 ^ 0x5a;
                }
                let n = write_headers(
                    &mut buf,
                    [2; 6],
                    [4; 6],
                    (src, 8080),
                    (dst, 40000),
                    (0x1234_5678, 0x9abc_def0, ACK | PSH, 1000),
                    0,
                    plen,
                    false,
                );
                assert_eq!(n, hdr + plen);
                check(&buf[..n]);
            }
        }
    }
}
