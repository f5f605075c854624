//! Builders of complete Ethernet frames toward the guest.
//!
//! Each builder writes into a caller-provided buffer and returns the frame
//! length; nothing allocates. Two shapes:
//!
//! * `eth_*` take the L4 payload (or ICMP message) as a slice and copy it
//!   into place;
//! * `finish_*` expect the payload to be already written at its offset
//!   ([`UDP4_PAYLOAD_OFFSET`], [`UDP6_PAYLOAD_OFFSET`], [`ICMP4_OFFSET`],
//!   [`ICMP6_OFFSET`], [`tcp_payload_offset`]) and only fill in the headers
//!   around it, so that e.g. DHCP or NDP build their message directly in
//!   the frame buffer, and the TCP and UDP data paths read socket data
//!   straight to where it goes.
//!
//! The `*_ip_*` builders take `IpAddr` / `SocketAddr` and pick the family
//! themselves (source and destination must agree, else
//! [`WireError::FamilyMismatch`]); the `*_ipv4_*` / `*_ipv6_*` ones are for
//! callers that only ever have one family (DHCP, NDP).
//!
//! Header choices: IPv4 with DF set, identification 0, no options; IPv6 with
//! traffic class and flow label 0. All checksums are computed, including
//! the (optional) IPv4 UDP checksum, except that the `*_csum` variants and
//! [`finish_ip_tcp`] can leave the L4 checksum partial for offload
//! ([`L4Csum`]). The TTL / hop limit is the caller's: 255 for link-local
//! services (NDP requires it) and TCP, 64 for other forwarded traffic.

use super::arp::{self, ArpPacket, ArpRepr};
use super::eth::{self, ethertype, EthernetFrame};
use super::icmp::{self, IcmpPacket};
use super::icmpv6::{self, Icmpv6Packet};
use super::ipv4::{self, protocol, Ipv4Packet};
use super::ipv6::{self, Ipv6Packet};
use super::tcp::{self, TcpPacket, TcpRepr};
use super::udp::{self, UdpPacket};
use super::{checksum, Mac, Result, WireError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Offset of the IPv4 or IPv6 header in a frame.
pub(crate) const IP_OFFSET: usize = eth::HEADER_LEN;
/// Offset of the L4 header after an IPv4 header.
pub(crate) const L4_OFFSET_V4: usize = IP_OFFSET + ipv4::HEADER_LEN;
/// Offset of the L4 header after an IPv6 header.
pub(crate) const L4_OFFSET_V6: usize = IP_OFFSET + ipv6::HEADER_LEN;
/// Offset of the UDP payload in an IPv4 frame.
pub(crate) const UDP4_PAYLOAD_OFFSET: usize = L4_OFFSET_V4 + udp::HEADER_LEN;
/// Offset of the UDP payload in an IPv6 frame.
pub(crate) const UDP6_PAYLOAD_OFFSET: usize = L4_OFFSET_V6 + udp::HEADER_LEN;
/// Offset of the ICMP message (its header included) in an IPv4 frame.
pub(crate) const ICMP4_OFFSET: usize = L4_OFFSET_V4;
/// Offset of the ICMPv6 message (its header included) in an IPv6 frame.
pub(crate) const ICMP6_OFFSET: usize = L4_OFFSET_V6;
/// Length of an ARP frame (without padding to 60 bytes).
pub(crate) const ARP_FRAME_LEN: usize = eth::HEADER_LEN + arp::PACKET_LEN;

/// Largest L4 length an IPv4 header can carry.
const MAX_L4_V4: usize = 65535 - ipv4::HEADER_LEN;
/// Largest L4 length an IPv6 header can carry (no jumbograms).
const MAX_L4_V6: usize = 65535;

/// Offset of the L4 header in a frame of the family of `ip`.
pub(crate) const fn l4_offset(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => L4_OFFSET_V4,
        IpAddr::V6(_) => L4_OFFSET_V6,
    }
}

/// Offset of the payload of a TCP segment without options in a frame of
/// the family of `ip`: where the data path reads socket data to.
pub(crate) const fn tcp_payload_offset(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => const { L4_OFFSET_V4 + tcp::HEADER_LEN },
        IpAddr::V6(_) => const { L4_OFFSET_V6 + tcp::HEADER_LEN },
    }
}

/// Largest L4 length the IP header of the family of `ip` can carry.
const fn max_l4(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => MAX_L4_V4,
        IpAddr::V6(_) => MAX_L4_V6,
    }
}

fn write_eth(out: &mut [u8], src: Mac, dst: Mac, t: u16) {
    let mut f = EthernetFrame::new_unchecked(out);
    f.set_dst(dst);
    f.set_src(src);
    f.set_ethertype(t);
}

/// Writes the Ethernet and IPv4 headers for an L4 length; `out` must hold
/// the whole frame.
fn write_ipv4(
    out: &mut [u8],
    macs: (Mac, Mac),
    ip: (Ipv4Addr, Ipv4Addr),
    proto: u8,
    ttl: u8,
) -> Result<()> {
    write_eth(out, macs.0, macs.1, ethertype::IPV4);
    let h = tail(out, IP_OFFSET)?;
    let total = h.len() as u16;
    write_ipv4_header(h, total, ip, proto, ttl);
    Ok(())
}

/// Writes an IPv4 header (no options) announcing `total` bytes at the
/// start of `out`.
fn write_ipv4_header(out: &mut [u8], total: u16, ip: (Ipv4Addr, Ipv4Addr), proto: u8, ttl: u8) {
    let mut p = Ipv4Packet::new_unchecked(out);
    p.set_version_header_len(ipv4::HEADER_LEN);
    p.set_tos(0);
    p.set_total_len(total);
    p.set_ident(0);
    p.set_dont_frag(true);
    p.set_ttl(ttl);
    p.set_protocol(proto);
    p.set_src(ip.0);
    p.set_dst(ip.1);
    p.fill_checksum();
}

fn write_ipv6(
    out: &mut [u8],
    macs: (Mac, Mac),
    ip: (Ipv6Addr, Ipv6Addr),
    nh: u8,
    hop: u8,
) -> Result<()> {
    write_eth(out, macs.0, macs.1, ethertype::IPV6);
    let plen = tail(out, L4_OFFSET_V6)?.len() as u16;
    write_ipv6_header(tail(out, IP_OFFSET)?, plen, ip, nh, hop);
    Ok(())
}

/// Writes an IPv6 header announcing `plen` payload bytes at the start of
/// `out`.
fn write_ipv6_header(out: &mut [u8], plen: u16, ip: (Ipv6Addr, Ipv6Addr), nh: u8, hop: u8) {
    let mut p = Ipv6Packet::new_unchecked(out);
    p.set_version_tc_flow(0, 0);
    p.set_payload_len(plen);
    p.set_next_header(nh);
    p.set_hop_limit(hop);
    p.set_src(ip.0);
    p.set_dst(ip.1);
}

/// Writes the Ethernet and IP headers of the family of `src` and `dst`
/// (which must agree) for an L4 length; `out` must hold the whole frame.
/// Returns the pseudo-header sum of the L4 checksum.
fn write_ip(
    out: &mut [u8],
    macs: (Mac, Mac),
    (src, dst): (IpAddr, IpAddr),
    proto: u8,
    ttl: u8,
) -> Result<u64> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            write_ipv4(out, macs, (s, d), proto, ttl)?;
            let l4_len = tail(out, L4_OFFSET_V4)?.len() as u16;
            Ok(checksum::pseudo_v4(s, d, proto, l4_len))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            write_ipv6(out, macs, (s, d), proto, ttl)?;
            let l4_len = tail(out, L4_OFFSET_V6)?.len() as u32;
            Ok(checksum::pseudo_v6(s, d, proto, l4_len))
        }
        _ => Err(WireError::FamilyMismatch),
    }
}

/// The TTL (IPv4) or hop limit (IPv6) of a frame the classifier accepted.
pub fn ttl_of(frame: &[u8]) -> Option<u8> {
    let ip = frame.get(IP_OFFSET..)?;
    match ip.first()? >> 4 {
        4 => Ipv4Packet::new_checked(ip).ok().map(|p| p.ttl()),
        6 => Ipv6Packet::new_checked(ip).ok().map(|p| p.hop_limit()),
        _ => None,
    }
}

/// Writes into `out` the start of a UDP datagram as an ICMP error quotes
/// it (RFC 792, RFC 4443 2.4 c): the IP and UDP headers of a datagram of
/// `udp_len` bytes (header included) from `src` to `dst`, sent with a TTL
/// of 64, then as much of `payload` as `quote` bytes allow. The UDP
/// checksum is left 0: the quoted datagram is usually cut short, and
/// receivers match on addresses and ports. Returns the quoted length.
pub(crate) fn quote_ip_udp(
    out: &mut [u8],
    src: SocketAddr,
    dst: SocketAddr,
    udp_len: usize,
    payload: &[u8],
    quote: usize,
) -> Result<usize> {
    let len16 = udp_len.min(65535) as u16;
    let ip_len = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = ipv4::HEADER_LEN.saturating_add(udp_len).min(65535) as u16;
            let h = out
                .get_mut(..ipv4::HEADER_LEN)
                .ok_or(WireError::BufferTooSmall)?;
            write_ipv4_header(h, total, (s, d), protocol::UDP, 64);
            ipv4::HEADER_LEN
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let h = out
                .get_mut(..ipv6::HEADER_LEN)
                .ok_or(WireError::BufferTooSmall)?;
            write_ipv6_header(h, len16, (s, d), protocol::UDP, 64);
            ipv6::HEADER_LEN
        }
        _ => return Err(WireError::FamilyMismatch),
    };
    // Both headers are at most 60 bytes: no overflow.
    let headers = ip_len.wrapping_add(udp::HEADER_LEN);
    let room = quote.min(out.len()).saturating_sub(headers);
    let quoted = payload.get(..room).unwrap_or(payload);
    let end = headers.wrapping_add(quoted.len());
    let u = out.get_mut(ip_len..end).ok_or(WireError::BufferTooSmall)?;
    // The length field names the whole datagram, of which `quoted.len()`
    // bytes are quoted: write them past the header directly.
    place(u, udp::HEADER_LEN, quoted)?;
    let mut p = UdpPacket::new_unchecked(u);
    p.set_src_port(src.port());
    p.set_dst_port(dst.port());
    p.set_len(len16);
    p.set_checksum(0);
    Ok(end)
}

/// The frame slice of `len` bytes, if `l4_len` fits the header limit and
/// `out` can hold it.
fn frame(out: &mut [u8], len: usize, l4_len: usize, max_l4: usize) -> Result<&mut [u8]> {
    if l4_len > max_l4 {
        return Err(WireError::PayloadTooLarge);
    }
    out.get_mut(..len).ok_or(WireError::BufferTooSmall)
}

/// Completes an Ethernet/IPv4/UDP frame whose payload of `payload_len`
/// bytes is already at [`UDP4_PAYLOAD_OFFSET`].
pub(crate) fn finish_ipv4_udp(
    out: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ttl: u8,
    payload_len: usize,
) -> Result<usize> {
    finish_ipv4_udp_csum(
        out,
        src_mac,
        dst_mac,
        src,
        dst,
        ttl,
        payload_len,
        L4Csum::Full,
    )
}

/// As [`finish_ipv4_udp`], with the checksum filled in as `csum` says.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_ipv4_udp_csum(
    out: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ttl: u8,
    payload_len: usize,
    csum: L4Csum,
) -> Result<usize> {
    let (s, d) = (src.into(), dst.into());
    finish_ip_udp_csum(out, src_mac, dst_mac, s, d, ttl, payload_len, csum)
}

/// How the L4 (UDP or TCP) checksum of a frame is filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum L4Csum {
    /// Computed over the whole segment or datagram.
    Full,
    /// Partial, for checksum offload: only the pseudo-header sum, folded
    /// and not complemented, is stored; whoever gets the frame (the tap's
    /// kernel, told by the offload header, or the stream backend before
    /// sending) sums the rest. See [`udp_csum_offload`] and
    /// [`tcp_csum_offload`].
    Partial,
}

/// Where the partial TCP checksum of a segment without options starts (the
/// TCP header), and the offset of the checksum field from there, for the
/// tap's offload header.
pub(crate) fn tcp_csum_offload(ip: IpAddr) -> (u16, u16) {
    (l4_offset(ip) as u16, tcp::CHECKSUM_OFFSET as u16)
}

/// Completes an Ethernet/IP/TCP frame from `src` to `dst` whose payload of
/// `payload_len` bytes is already in place after the header of `repr`
/// (at [`tcp_payload_offset`] if it has no options). Writes the Ethernet,
/// IP and TCP headers, TCP options included, and the checksum as `csum`
/// says.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_ip_tcp(
    out: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddr,
    dst: SocketAddr,
    ttl: u8,
    repr: &TcpRepr,
    payload_len: usize,
    csum: L4Csum,
) -> Result<usize> {
    let l4 = l4_offset(src.ip());
    let l4_len = repr.header_len().saturating_add(payload_len);
    let len = l4.saturating_add(l4_len);
    let f = frame(out, len, l4_len, max_l4(src.ip()))?;
    let pseudo = write_ip(
        f,
        (src_mac, dst_mac),
        (src.ip(), dst.ip()),
        protocol::TCP,
        ttl,
    )?;
    let mut t = TcpPacket::new_unchecked(tail(f, l4)?);
    t.set_src_port(src.port());
    t.set_dst_port(dst.port());
    repr.emit(&mut t);
    match csum {
        L4Csum::Full => t.fill_checksum(pseudo),
        L4Csum::Partial => t.set_checksum(checksum::fold(pseudo)),
    }
    Ok(len)
}

/// Where the partial UDP checksum of a frame starts, and the offset of
/// the checksum field from there, for the tap's offload header.
pub(crate) fn udp_csum_offload(ipv6: bool) -> (u16, u16) {
    let start = if ipv6 { L4_OFFSET_V6 } else { L4_OFFSET_V4 };
    (start as u16, 6)
}

fn udp_checksum(u: &mut UdpPacket<&mut [u8]>, pseudo: u64, csum: L4Csum) {
    match csum {
        L4Csum::Full => u.fill_checksum(pseudo),
        L4Csum::Partial => u.set_checksum(checksum::fold(pseudo)),
    }
}

/// Completes an Ethernet/IP/UDP frame from `src` to `dst` whose payload of
/// `payload_len` bytes is already at [`UDP4_PAYLOAD_OFFSET`] or
/// [`UDP6_PAYLOAD_OFFSET`], with the checksum filled in as `csum` says.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_ip_udp_csum(
    out: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddr,
    dst: SocketAddr,
    ttl: u8,
    payload_len: usize,
    csum: L4Csum,
) -> Result<usize> {
    let l4 = l4_offset(src.ip());
    let l4_len = udp::HEADER_LEN.saturating_add(payload_len);
    let len = l4.saturating_add(l4_len);
    let f = frame(out, len, l4_len, max_l4(src.ip()))?;
    let ips = (src.ip(), dst.ip());
    let pseudo = write_ip(f, (src_mac, dst_mac), ips, protocol::UDP, ttl)?;
    let mut u = UdpPacket::new_unchecked(tail(f, l4)?);
    u.set_src_port(src.port());
    u.set_dst_port(dst.port());
    u.set_len(l4_len as u16);
    udp_checksum(&mut u, pseudo, csum);
    Ok(len)
}

/// Builds an Ethernet/IP/UDP frame carrying `payload`, checksum computed.
pub(crate) fn eth_ip_udp(
    out: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddr,
    dst: SocketAddr,
    ttl: u8,
    payload: &[u8],
) -> Result<usize> {
    let offset = match src.ip() {
        IpAddr::V4(_) => UDP4_PAYLOAD_OFFSET,
        IpAddr::V6(_) => UDP6_PAYLOAD_OFFSET,
    };
    place(out, offset, payload)?;
    let n = payload.len();
    finish_ip_udp_csum(out, src_mac, dst_mac, src, dst, ttl, n, L4Csum::Full)
}

/// Builds an Ethernet/IPv4/UDP frame carrying `payload`.
pub fn eth_ipv4_udp(
    out: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ttl: u8,
    payload: &[u8],
) -> Result<usize> {
    place(out, UDP4_PAYLOAD_OFFSET, payload)?;
    finish_ipv4_udp(out, src_mac, dst_mac, src, dst, ttl, payload.len())
}

/// Completes an Ethernet/IPv6/UDP frame whose payload of `payload_len`
/// bytes is already at [`UDP6_PAYLOAD_OFFSET`].
pub(crate) fn finish_ipv6_udp(
    out: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddrV6,
    dst: SocketAddrV6,
    hop_limit: u8,
    payload_len: usize,
) -> Result<usize> {
    finish_ipv6_udp_csum(
        out,
        src_mac,
        dst_mac,
        src,
        dst,
        hop_limit,
        payload_len,
        L4Csum::Full,
    )
}

/// As [`finish_ipv6_udp`], with the checksum filled in as `csum` says.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_ipv6_udp_csum(
    out: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddrV6,
    dst: SocketAddrV6,
    hop_limit: u8,
    payload_len: usize,
    csum: L4Csum,
) -> Result<usize> {
    let (s, d) = (src.into(), dst.into());
    finish_ip_udp_csum(out, src_mac, dst_mac, s, d, hop_limit, payload_len, csum)
}

/// Builds an Ethernet/IPv6/UDP frame carrying `payload`.
#[cfg(test)]
pub(crate) fn eth_ipv6_udp(
    out: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: SocketAddrV6,
    dst: SocketAddrV6,
    hop_limit: u8,
    payload: &[u8],
) -> Result<usize> {
    place(out, UDP6_PAYLOAD_OFFSET, payload)?;
    finish_ipv6_udp(out, src_mac, dst_mac, src, dst, hop_limit, payload.len())
}

/// Completes an Ethernet/IPv4/ICMP frame whose message (ICMP header
/// included, checksum to be computed) of `msg_len` bytes is already at
/// [`ICMP4_OFFSET`].
pub(crate) fn finish_ipv4_icmp(
    out: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    msg_len: usize,
) -> Result<usize> {
    if msg_len < icmp::HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let len = ICMP4_OFFSET.saturating_add(msg_len);
    let f = frame(out, len, msg_len, MAX_L4_V4)?;
    write_ipv4(f, (src_mac, dst_mac), (src, dst), protocol::ICMP, ttl)?;
    IcmpPacket::new_unchecked(tail(f, ICMP4_OFFSET)?).fill_checksum();
    Ok(len)
}

/// Builds an Ethernet/IPv4/ICMP frame from an ICMP message (header
/// included); the checksum is recomputed.
pub fn eth_ipv4_icmp(
    out: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    message: &[u8],
) -> Result<usize> {
    place(out, ICMP4_OFFSET, message)?;
    finish_ipv4_icmp(out, src_mac, dst_mac, src, dst, ttl, message.len())
}

/// Completes an Ethernet/IPv6/ICMPv6 frame whose message of `msg_len`
/// bytes is already at [`ICMP6_OFFSET`].
pub(crate) fn finish_ipv6_icmpv6(
    out: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    msg_len: usize,
) -> Result<usize> {
    if msg_len < icmpv6::HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let len = ICMP6_OFFSET.saturating_add(msg_len);
    let f = frame(out, len, msg_len, MAX_L4_V6)?;
    write_ipv6(
        f,
        (src_mac, dst_mac),
        (src, dst),
        protocol::ICMPV6,
        hop_limit,
    )?;
    let pseudo = checksum::pseudo_v6(src, dst, protocol::ICMPV6, msg_len as u32);
    Icmpv6Packet::new_unchecked(tail(f, ICMP6_OFFSET)?).fill_checksum(pseudo);
    Ok(len)
}

/// Builds an Ethernet/IPv6/ICMPv6 frame from a message (header included);
/// the checksum is recomputed.
pub fn eth_ipv6_icmpv6(
    out: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    message: &[u8],
) -> Result<usize> {
    place(out, ICMP6_OFFSET, message)?;
    finish_ipv6_icmpv6(out, src_mac, dst_mac, src, dst, hop_limit, message.len())
}

/// Builds an Ethernet/IPv4/ICMP or Ethernet/IPv6/ICMPv6 frame, after the
/// family of `src` and `dst`, from a message (header included); the
/// checksum is recomputed.
pub(crate) fn eth_ip_icmp(
    out: &mut [u8],
    src_mac: Mac,
    dst_mac: Mac,
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    message: &[u8],
) -> Result<usize> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth_ipv4_icmp(out, src_mac, dst_mac, s, d, ttl, message),
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            eth_ipv6_icmpv6(out, src_mac, dst_mac, s, d, ttl, message)
        }
        _ => Err(WireError::FamilyMismatch),
    }
}

/// Builds an Ethernet/ARP frame (42 bytes, unpadded).
pub fn eth_arp(out: &mut [u8], src_mac: Mac, dst_mac: Mac, repr: &ArpRepr) -> Result<usize> {
    let f = out
        .get_mut(..ARP_FRAME_LEN)
        .ok_or(WireError::BufferTooSmall)?;
    write_eth(f, src_mac, dst_mac, ethertype::ARP);
    repr.emit(&mut ArpPacket::new_unchecked(tail(f, eth::HEADER_LEN)?));
    Ok(ARP_FRAME_LEN)
}

/// The part of `out` from `off` on.
fn tail(out: &mut [u8], off: usize) -> Result<&mut [u8]> {
    out.get_mut(off..).ok_or(WireError::BufferTooSmall)
}

/// Copies `data` into `out` at `off`.
fn place(out: &mut [u8], off: usize, data: &[u8]) -> Result<()> {
    let end = off
        .checked_add(data.len())
        .ok_or(WireError::PayloadTooLarge)?;
    out.get_mut(off..end)
        .ok_or(WireError::BufferTooSmall)?
        .copy_from_slice(data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    const A: Mac = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];
    const B: Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    /// A partial UDP checksum, completed as the tap's kernel would (sum
    /// from the start, field included), equals the full one.
    #[test]
    fn udp_partial_checksum_completes_to_full() {
        let payload: Vec<u8> = (0..1001u32).map(|i| (i * 7) as u8).collect();
        for v6 in [false, true] {
            let mut full = vec![0u8; 1200];
            let mut part = vec![0u8; 1200];
            for (buf, csum) in [(&mut full, L4Csum::Full), (&mut part, L4Csum::Partial)] {
                let off = if v6 {
                    UDP6_PAYLOAD_OFFSET
                } else {
                    UDP4_PAYLOAD_OFFSET
                };
                buf[off..off + payload.len()].copy_from_slice(&payload);
                let n = if v6 {
                    let s = SocketAddrV6::new(Ipv6Addr::LOCALHOST, 53, 0, 0);
                    let d = SocketAddrV6::new("2001:db8::2".parse().unwrap(), 4000, 0, 0);
                    finish_ipv6_udp_csum(buf, A, B, s, d, 64, payload.len(), csum)
                } else {
                    let (s, d) = (v4([192, 0, 2, 1], 53), v4([192, 0, 2, 2], 4000));
                    finish_ipv4_udp_csum(buf, A, B, s, d, 64, payload.len(), csum)
                };
                buf.truncate(n.unwrap());
            }
            let (start, field) = udp_csum_offload(v6);
            let field = usize::from(start + field);
            let c = checksum::finish(checksum::sum(&part[usize::from(start)..]));
            part[field..field + 2].copy_from_slice(&c.to_be_bytes());
            assert_eq!(part, full, "v6: {v6}");
        }
    }

    fn v4(a: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(a.into(), port)
    }

    fn v6(a: &str, port: u16) -> SocketAddrV6 {
        SocketAddrV6::new(a.parse().unwrap(), port, 0, 0)
    }

    #[test]
    fn ipv4_udp_matches_etherparse() {
        let mut out = [0u8; 256];
        let payload = b"hello, guest!";
        let (s, d) = (v4([10, 0, 2, 2], 67), v4([10, 0, 2, 15], 68));
        let n = eth_ipv4_udp(&mut out, A, B, s, d, 255, payload).unwrap();
        assert_eq!(n, UDP4_PAYLOAD_OFFSET + payload.len());
        let p = SlicedPacket::from_ethernet(&out[..n]).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        let h = ip.header().to_header();
        assert_eq!(h.calc_header_checksum(), h.header_checksum);
        assert!(h.dont_fragment && !h.more_fragments);
        assert_eq!(
            (h.time_to_live, h.source, h.destination),
            (255, [10, 0, 2, 2], [10, 0, 2, 15])
        );
        let Some(TransportSlice::Udp(u)) = &p.transport else {
            panic!()
        };
        assert_eq!((u.source_port(), u.destination_port()), (67, 68));
        assert_eq!(u.payload(), payload);
        let c = u.to_header().calc_checksum_ipv4(&h, payload).unwrap();
        assert_eq!(c, u.checksum());
        // And our own classifier accepts it.
        assert!(crate::wire::classify(&out[..n]).is_ok());
    }

    #[test]
    fn ipv6_udp_in_place_matches_etherparse() {
        let mut out = [0u8; 256];
        let payload = [7u8; 33]; // odd length
        out[UDP6_PAYLOAD_OFFSET..UDP6_PAYLOAD_OFFSET + 33].copy_from_slice(&payload);
        let (s, d) = (v6("fe80::1", 547), v6("fe80::5054:ff:fe12:3456", 546));
        let n = finish_ipv6_udp(&mut out, A, B, s, d, 255, 33).unwrap();
        let p = SlicedPacket::from_ethernet(&out[..n]).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            panic!()
        };
        let h = ip.header().to_header();
        assert_eq!(h.hop_limit, 255);
        assert_eq!(usize::from(h.payload_length), 8 + 33);
        let Some(TransportSlice::Udp(u)) = &p.transport else {
            panic!()
        };
        assert_eq!(u.payload(), &payload);
        let c = u.to_header().calc_checksum_ipv6(&h, &payload).unwrap();
        assert_eq!(c, u.checksum());
        assert!(crate::wire::classify(&out[..n]).is_ok());
    }

    #[test]
    fn icmp_both_families_match_etherparse() {
        let mut out = [0u8; 256];
        let msg = [
            0u8, 0, 0xde, 0xad, 0x12, 0x34, 0, 1, b'p', b'i', b'n', b'g', b'!',
        ];
        let n = eth_ipv4_icmp(
            &mut out,
            A,
            B,
            [1, 1, 1, 1].into(),
            [10, 0, 2, 15].into(),
            64,
            &msg,
        )
        .unwrap();
        let p = SlicedPacket::from_ethernet(&out[..n]).unwrap();
        let Some(TransportSlice::Icmpv4(i)) = &p.transport else {
            panic!()
        };
        let want = etherparse::Icmpv4Header::with_checksum(i.icmp_type(), i.payload());
        assert_eq!(want.checksum, i.checksum());
        assert!(matches!(
            i.icmp_type(),
            etherparse::Icmpv4Type::EchoReply(e) if e.id == 0x1234 && e.seq == 1
        ));

        let msg6 = [129u8, 0, 0, 0, 0x12, 0x34, 0, 2, 1, 2, 3];
        let (s, d): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let mut out = [0u8; 256];
        let n = eth_ipv6_icmpv6(&mut out, A, B, s, d, 64, &msg6).unwrap();
        let p = SlicedPacket::from_ethernet(&out[..n]).unwrap();
        let Some(TransportSlice::Icmpv6(i)) = &p.transport else {
            panic!()
        };
        let want = etherparse::Icmpv6Header::with_checksum(
            i.icmp_type(),
            s.octets(),
            d.octets(),
            i.payload(),
        )
        .unwrap();
        assert_eq!(want.checksum, i.checksum());
        assert!(crate::wire::classify(&out[..n]).is_ok());
    }

    #[test]
    fn arp_matches_etherparse() {
        let mut out = [0u8; 64];
        let r = ArpRepr {
            oper: arp::OP_REPLY,
            sha: A,
            spa: [10, 0, 2, 2].into(),
            tha: B,
            tpa: [10, 0, 2, 15].into(),
        };
        let n = eth_arp(&mut out, A, B, &r).unwrap();
        let p = SlicedPacket::from_ethernet(&out[..n]).unwrap();
        let Some(NetSlice::Arp(a)) = &p.net else {
            panic!()
        };
        assert_eq!(a.operation(), etherparse::ArpOperation::REPLY);
        assert_eq!(a.sender_protocol_addr(), &[10, 0, 2, 2]);
        assert_eq!(a.target_hw_addr(), &B);
    }

    /// The family-dispatching builders write what the per-family ones
    /// do, and refuse mixed families.
    #[test]
    fn ip_builders_dispatch_on_family() {
        let payload = b"dns?";
        let (s4, d4) = (v4([10, 0, 2, 2], 53), v4([10, 0, 2, 15], 4000));
        let (s6, d6) = (v6("fe80::1", 53), v6("fe80::2", 4000));
        let (mut a, mut b) = ([0u8; 128], [0u8; 128]);
        let n = eth_ip_udp(&mut a, A, B, s4.into(), d4.into(), 64, payload).unwrap();
        assert_eq!(eth_ipv4_udp(&mut b, A, B, s4, d4, 64, payload), Ok(n));
        assert_eq!(a, b);
        let n = eth_ip_udp(&mut a, A, B, s6.into(), d6.into(), 64, payload).unwrap();
        assert_eq!(eth_ipv6_udp(&mut b, A, B, s6, d6, 64, payload), Ok(n));
        assert_eq!(a, b);
        let msg = [8u8, 0, 0, 0, 0, 1, 0, 2];
        let n = eth_ip_icmp(&mut a, A, B, (*s6.ip()).into(), (*d6.ip()).into(), 64, &msg);
        let m = eth_ipv6_icmpv6(&mut b, A, B, *s6.ip(), *d6.ip(), 64, &msg);
        assert_eq!((n, a), (m, b));
        let mixed = (SocketAddr::from(s4), SocketAddr::from(d6));
        assert_eq!(
            eth_ip_udp(&mut a, A, B, mixed.0, mixed.1, 64, payload),
            Err(WireError::FamilyMismatch)
        );
        assert_eq!(
            eth_ip_icmp(&mut a, A, B, mixed.0.ip(), mixed.1.ip(), 64, &msg),
            Err(WireError::FamilyMismatch)
        );
        let r = TcpRepr::default();
        assert_eq!(
            finish_ip_tcp(&mut a, A, B, mixed.0, mixed.1, 64, &r, 0, L4Csum::Full),
            Err(WireError::FamilyMismatch)
        );
    }

    /// A SYN with both options, complete checksum, checked by etherparse.
    #[test]
    fn tcp_syn_matches_etherparse() {
        let mut out = [0u8; 128];
        let (s, d) = (v6("2001:db8::1", 80), v6("2001:db8::2", 40000));
        let r = TcpRepr {
            seq: 1,
            ack: 2,
            flags: tcp::flags::SYN | tcp::flags::ACK,
            window: 65535,
            mss: Some(1440),
            window_scale: Some(7),
        };
        let n = finish_ip_tcp(&mut out, A, B, s.into(), d.into(), 255, &r, 0, L4Csum::Full);
        assert_eq!(n, Ok(tcp_payload_offset(IpAddr::V6(*s.ip())) + 8));
        let p = SlicedPacket::from_ethernet(&out[..n.unwrap()]).unwrap();
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            panic!()
        };
        assert!(t.syn() && t.ack());
        assert_eq!((t.sequence_number(), t.acknowledgment_number()), (1, 2));
        let c = t.calc_checksum_ipv6(s.ip().octets(), d.ip().octets());
        assert_eq!(c, Ok(t.checksum()));
        use etherparse::TcpOptionElement::*;
        let opts: Vec<_> = t.options_iterator().map(|o| o.unwrap()).collect();
        assert_eq!(opts, [MaximumSegmentSize(1440), Noop, WindowScale(7)]);
    }

    #[test]
    fn size_errors() {
        let mut out = [0u8; 64];
        let (s, d) = (v4([10, 0, 2, 2], 67), v4([10, 0, 2, 15], 68));
        assert_eq!(
            eth_ipv4_udp(&mut out, A, B, s, d, 64, &[0; 23]),
            Err(WireError::BufferTooSmall)
        );
        assert_eq!(eth_ipv4_udp(&mut out, A, B, s, d, 64, &[0; 22]), Ok(64));
        for huge in [65535 - 28 + 1, usize::MAX] {
            assert_eq!(
                finish_ipv4_udp(&mut out, A, B, s, d, 64, huge),
                Err(WireError::PayloadTooLarge)
            );
        }
        let (s6, d6) = (v6("fe80::1", 1), v6("fe80::2", 2));
        assert_eq!(
            finish_ipv6_udp(&mut out, A, B, s6, d6, 64, usize::MAX),
            Err(WireError::PayloadTooLarge)
        );
        assert_eq!(
            finish_ipv6_icmpv6(&mut out, A, B, *s6.ip(), *d6.ip(), 64, usize::MAX),
            Err(WireError::PayloadTooLarge)
        );
        assert_eq!(
            eth_ipv4_icmp(&mut out, A, B, *s.ip(), *d.ip(), 64, &[0; 7]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            eth_arp(
                &mut out[..41],
                A,
                B,
                &ArpRepr {
                    oper: 1,
                    sha: A,
                    spa: Ipv4Addr::UNSPECIFIED,
                    tha: B,
                    tpa: Ipv4Addr::UNSPECIFIED
                }
            ),
            Err(WireError::BufferTooSmall)
        );
    }
}
