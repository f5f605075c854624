//! Classification of frames from the guest.
//!
//! [`classify`] is the single gate every guest frame passes before any
//! protocol code looks at it. It validates, outside-in, everything that a
//! later stage would otherwise have to re-check, and either hands back a
//! [`Classified`] frame made of checked views and plain values, or a
//! [`DropReason`] that the caller counts (an array of
//! [`DropReason::COUNT`] counters indexed by [`DropReason::index`]).
//!
//! The checks, in order:
//!
//! 1. Ethernet: 14 bytes at least, at most 14 + 65535; EtherType ARP,
//!    IPv4 or IPv6.
//! 2. ARP: a full Ethernet/IPv4 ARP packet length (semantic checks are the
//!    ARP service's).
//! 3. IPv4: version 4, no options (IHL 5), total length within the frame
//!    (trailing Ethernet padding is cut off), valid header checksum, not a
//!    fragment, no loopback source or destination.
//! 4. IPv6: version 6, payload length within the frame (padding cut off),
//!    no loopback, and the next header directly TCP, UDP or ICMPv6:
//!    extension headers (hop-by-hop for MLD included) and fragments are
//!    dropped, as is anything we do not translate.
//! 5. L4: UDP length equal to what IP says, TCP data offset within the
//!    segment, ICMP/ICMPv6 at least their header; checksums verified for
//!    all four (a zero UDP checksum over IPv4 means "none").
//!
//! Nothing here allocates or panics, whatever the input: all access goes
//! through the views' checked constructors.

use super::eth::{self, EthernetFrame};
use super::icmpv6::Icmpv6Packet;
use super::ipv4::{self, protocol, Ipv4Packet};
use super::ipv6::{self, Ipv6Packet};
use super::tcp::TcpPacket;
use super::udp::UdpPacket;
use super::{arp::ArpPacket, checksum, icmp::IcmpPacket, Mac};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Largest frame we accept: an Ethernet header and a maximum IP packet.
pub(crate) const MAX_FRAME_LEN: usize = eth::HEADER_LEN + 65535;

/// A checked frame from the guest.
#[derive(Clone, Copy, Debug)]
pub struct Classified<'a> {
    pub(crate) src_mac: Mac,
    pub l3: L3<'a>,
}

/// The network layer of a classified frame.
#[derive(Clone, Copy, Debug)]
pub enum L3<'a> {
    /// A complete Ethernet/IPv4-sized ARP packet.
    Arp(ArpPacket<&'a [u8]>),
    Ipv4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ttl: u8,
        tos: u8,
        l4: L4<'a>,
    },
    Ipv6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        traffic_class: u8,
        flow_label: u32,
        l4: L4<'a>,
    },
}

/// The transport layer of a classified IP packet.
#[derive(Clone, Copy, Debug)]
pub enum L4<'a> {
    /// A TCP segment: header, options and payload, checksum verified.
    Tcp(TcpPacket<&'a [u8]>),
    Udp {
        sport: u16,
        dport: u16,
        payload: &'a [u8],
    },
    /// ICMP (v4): `message` includes the 8-byte header.
    Icmp {
        msg_type: u8,
        code: u8,
        message: &'a [u8],
    },
    /// ICMPv6: `message` includes the 4-byte common header.
    Icmpv6 {
        msg_type: u8,
        code: u8,
        message: &'a [u8],
    },
}

macro_rules! drop_reasons {
    ($($name:ident $key:ident => $text:literal,)*) => {
        /// Why a guest frame was dropped.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum DropReason {
            $($name,)*
        }

        impl DropReason {
            /// Every reason, in [`DropReason::index`] order.
            pub(crate) const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// Number of reasons: the size of a counter array.
            pub(crate) const COUNT: usize = Self::ALL.len();

            /// A short description for logs and statistics.
            pub(crate) const fn as_str(self) -> &'static str {
                match self {
                    $(DropReason::$name => $text,)*
                }
            }

            /// The counter's name in the `drop counters:` line at exit.
            pub(crate) const fn key(self) -> &'static str {
                match self {
                    $(DropReason::$name => stringify!($key),)*
                }
            }

            /// Index into a `[u64; DropReason::COUNT]` counter array.
            pub(crate) const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

drop_reasons! {
    FrameTooShort frame_too_short => "frame shorter than an Ethernet header",
    FrameTooLong frame_too_long => "frame longer than an Ethernet header and a maximum IP packet",
    UnknownEtherType unknown_ether_type => "unknown EtherType",
    ArpTruncated arp_truncated => "truncated ARP packet",
    Ipv4Truncated ipv4_truncated => "truncated IPv4 header",
    Ipv4BadVersion ipv4_bad_version => "IPv4 EtherType with another IP version",
    Ipv4Options ipv4_options => "IPv4 options",
    Ipv4BadLength ipv4_bad_length => "IPv4 total length inconsistent with the frame",
    Ipv4BadChecksum ipv4_bad_checksum => "bad IPv4 header checksum",
    Ipv4Fragment ipv4_fragment => "IPv4 fragment",
    Ipv6Truncated ipv6_truncated => "truncated IPv6 header",
    Ipv6BadVersion ipv6_bad_version => "IPv6 EtherType with another IP version",
    Ipv6BadLength ipv6_bad_length => "IPv6 payload length beyond the frame",
    Ipv6ExtensionHeader ipv6_extension_header => "IPv6 extension header",
    Ipv6Fragment ipv6_fragment => "IPv6 fragment",
    Loopback loopback => "loopback address on the tap interface",
    Ipv4Mapped ipv4_mapped => "IPv4-mapped address in an IPv6 packet",
    UnknownProtocol unknown_protocol => "unhandled transport protocol",
    UdpTruncated udp_truncated => "truncated UDP header",
    UdpBadLength udp_bad_length => "UDP length inconsistent with the IP length",
    UdpBadChecksum udp_bad_checksum => "bad UDP checksum",
    TcpTruncated tcp_truncated => "truncated TCP header",
    TcpBadOffset tcp_bad_offset => "TCP data offset out of the segment",
    TcpBadChecksum tcp_bad_checksum => "bad TCP checksum",
    IcmpTruncated icmp_truncated => "truncated ICMP header",
    IcmpBadChecksum icmp_bad_checksum => "bad ICMP checksum",
    Icmpv6Truncated icmpv6_truncated => "truncated ICMPv6 header",
    Icmpv6BadChecksum icmpv6_bad_checksum => "bad ICMPv6 checksum",
    Unspecified unspecified => "unspecified destination address",
    Broadcast broadcast => "broadcast or multicast destination",
    Spoofed spoofed => "source address not the guest's",
    RateLimited rate_limited => "request to a built-in service over its rate limit",
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// IPv6 next header values that are extension headers (RFC 8200 and the
/// IANA registry), fragments apart.
const IPV6_EXT_HEADERS: &[u8] = &[0, 43, 50, 51, 60, 135, 139, 140, 253, 254];
/// IPv6 fragment header.
const IPV6_FRAGMENT: u8 = 44;

/// Checks a guest frame and splits it into layers.
pub fn classify(frame: &[u8]) -> Result<Classified<'_>, DropReason> {
    classify_with(frame, false)
}

/// As [`classify`]; with `l4_csum_partial` the guest's kernel told us (tap
/// offload header) that the TCP or UDP checksum is only partial, so it is
/// not verified: the payload goes to a socket, never on as a frame.
pub(crate) fn classify_with(
    frame: &[u8],
    l4_csum_partial: bool,
) -> Result<Classified<'_>, DropReason> {
    if frame.len() > MAX_FRAME_LEN {
        return Err(DropReason::FrameTooLong);
    }
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::FrameTooShort)?;
    let src_mac = eth.src();
    // Views borrow their buffer: re-slice the frame for the 'a lifetime.
    let payload = frame.get(eth::HEADER_LEN..).unwrap_or(&[]);
    let l3 = match eth.ethertype() {
        eth::ethertype::ARP => {
            L3::Arp(ArpPacket::new_checked(payload).map_err(|_| DropReason::ArpTruncated)?)
        }
        eth::ethertype::IPV4 => classify_ipv4(payload, l4_csum_partial)?,
        eth::ethertype::IPV6 => classify_ipv6(payload, l4_csum_partial)?,
        _ => return Err(DropReason::UnknownEtherType),
    };
    Ok(Classified { src_mac, l3 })
}

fn classify_ipv4(buf: &[u8], partial: bool) -> Result<L3<'_>, DropReason> {
    if buf.len() < ipv4::HEADER_LEN {
        return Err(DropReason::Ipv4Truncated);
    }
    // Version and IHL first: they decide how the lengths are read.
    let unchecked = Ipv4Packet::new_unchecked(buf);
    if unchecked.version() != 4 {
        return Err(DropReason::Ipv4BadVersion);
    }
    if unchecked.header_len() != ipv4::HEADER_LEN {
        return Err(DropReason::Ipv4Options);
    }
    let ip = Ipv4Packet::new_checked(buf).map_err(|_| DropReason::Ipv4BadLength)?;
    if !ip.verify_checksum() {
        return Err(DropReason::Ipv4BadChecksum);
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        return Err(DropReason::Ipv4Fragment);
    }
    let (src, dst) = (ip.src(), ip.dst());
    if src.is_loopback() || dst.is_loopback() {
        return Err(DropReason::Loopback);
    }
    let data = buf
        .get(ip.header_len()..usize::from(ip.total_len()))
        .unwrap_or(&[]);
    let len = data.len() as u16; // total length is a u16: fits
    let pseudo = |proto| checksum::pseudo_v4(src, dst, proto, len);
    let l4 = match ip.protocol() {
        protocol::TCP => classify_tcp(data, pseudo(protocol::TCP), partial)?,
        protocol::UDP => {
            let udp = checked_udp(data)?;
            if !partial && udp.checksum() != 0 && !udp.verify_checksum(pseudo(protocol::UDP)) {
                return Err(DropReason::UdpBadChecksum);
            }
            udp_l4(&udp)
        }
        protocol::ICMP => {
            let icmp = IcmpPacket::new_checked(data).map_err(|_| DropReason::IcmpTruncated)?;
            if !icmp.verify_checksum() {
                return Err(DropReason::IcmpBadChecksum);
            }
            L4::Icmp {
                msg_type: icmp.msg_type(),
                code: icmp.code(),
                message: data,
            }
        }
        _ => return Err(DropReason::UnknownProtocol),
    };
    Ok(L3::Ipv4 {
        src,
        dst,
        ttl: ip.ttl(),
        tos: ip.tos(),
        l4,
    })
}

fn classify_ipv6(buf: &[u8], partial: bool) -> Result<L3<'_>, DropReason> {
    if buf.len() < ipv6::HEADER_LEN {
        return Err(DropReason::Ipv6Truncated);
    }
    if Ipv6Packet::new_unchecked(buf).version() != 6 {
        return Err(DropReason::Ipv6BadVersion);
    }
    let ip = Ipv6Packet::new_checked(buf).map_err(|_| DropReason::Ipv6BadLength)?;
    let (src, dst) = (ip.src(), ip.dst());
    if src.is_loopback() || dst.is_loopback() {
        return Err(DropReason::Loopback);
    }
    // Never on the wire (RFC 4291, 2.5.5.2), and a socket would take one
    // for the IPv4 address it maps: `::ffff:127.0.0.1` is the host's
    // loopback, `::ffff:0.0.0.0` any local address.
    if src.to_ipv4_mapped().is_some() || dst.to_ipv4_mapped().is_some() {
        return Err(DropReason::Ipv4Mapped);
    }
    let data = buf
        .get(ipv6::HEADER_LEN..ipv6::HEADER_LEN + usize::from(ip.payload_len()))
        .unwrap_or(&[]);
    let len = data.len() as u32;
    let pseudo = |nh| checksum::pseudo_v6(src, dst, nh, len);
    let l4 = match ip.next_header() {
        protocol::TCP => classify_tcp(data, pseudo(protocol::TCP), partial)?,
        protocol::UDP => {
            let udp = checked_udp(data)?;
            // Mandatory over IPv6: zero is simply wrong.
            if !partial && !udp.verify_checksum(pseudo(protocol::UDP)) {
                return Err(DropReason::UdpBadChecksum);
            }
            udp_l4(&udp)
        }
        protocol::ICMPV6 => {
            let icmp = Icmpv6Packet::new_checked(data).map_err(|_| DropReason::Icmpv6Truncated)?;
            if !icmp.verify_checksum(pseudo(protocol::ICMPV6)) {
                return Err(DropReason::Icmpv6BadChecksum);
            }
            L4::Icmpv6 {
                msg_type: icmp.msg_type(),
                code: icmp.code(),
                message: data,
            }
        }
        IPV6_FRAGMENT => return Err(DropReason::Ipv6Fragment),
        nh if IPV6_EXT_HEADERS.contains(&nh) => return Err(DropReason::Ipv6ExtensionHeader),
        _ => return Err(DropReason::UnknownProtocol),
    };
    Ok(L3::Ipv6 {
        src,
        dst,
        hop_limit: ip.hop_limit(),
        traffic_class: ip.traffic_class(),
        flow_label: ip.flow_label(),
        l4,
    })
}

fn classify_tcp(data: &[u8], pseudo: u64, partial: bool) -> Result<L4<'_>, DropReason> {
    let tcp = TcpPacket::new_checked(data).map_err(|e| match e {
        super::WireError::Truncated => DropReason::TcpTruncated,
        _ => DropReason::TcpBadOffset,
    })?;
    if !partial && !tcp.verify_checksum(pseudo) {
        return Err(DropReason::TcpBadChecksum);
    }
    Ok(L4::Tcp(tcp))
}

/// A UDP header whose length field matches the IP payload exactly.
fn checked_udp(data: &[u8]) -> Result<UdpPacket<&[u8]>, DropReason> {
    let udp = UdpPacket::new_checked(data).map_err(|e| match e {
        super::WireError::Truncated => DropReason::UdpTruncated,
        _ => DropReason::UdpBadLength,
    })?;
    if usize::from(udp.len()) != data.len() {
        return Err(DropReason::UdpBadLength);
    }
    Ok(udp)
}

fn udp_l4<'a>(udp: &UdpPacket<&'a [u8]>) -> L4<'a> {
    let data: &'a [u8] = udp.into_inner();
    L4::Udp {
        sport: udp.src_port(),
        dport: udp.dst_port(),
        payload: data.get(super::udp::HEADER_LEN..).unwrap_or(&[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::XorShift;
    use etherparse::{PacketBuilder, TcpOptionElement};

    const GUEST: Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const US: Mac = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];
    const G4: [u8; 4] = [10, 0, 2, 15];
    const R4: [u8; 4] = [93, 184, 216, 34];
    const G6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x15,
    ];
    const R6: [u8; 16] = [
        0x26, 0x06, 0x28, 0, 0x02, 0x20, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x34,
    ];

    fn eth() -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
        PacketBuilder::ethernet2(GUEST, US)
    }

    fn udp4(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        eth()
            .ipv4(G4, R4, 64)
            .udp(40000, 53)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn tcp4_syn() -> Vec<u8> {
        let mut v = Vec::new();
        eth()
            .ipv4(G4, R4, 64)
            .tcp(40000, 80, 0x1234_5678, 64240)
            .syn()
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(7),
            ])
            .unwrap()
            .write(&mut v, &[])
            .unwrap();
        v
    }

    fn icmp4_echo() -> Vec<u8> {
        let mut v = Vec::new();
        eth()
            .ipv4(G4, R4, 64)
            .icmpv4_echo_request(7, 1)
            .write(&mut v, b"0123456789")
            .unwrap();
        v
    }

    fn udp6(payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        eth()
            .ipv6(G6, R6, 64)
            .udp(5353, 53)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn tcp6_data() -> Vec<u8> {
        let mut v = Vec::new();
        eth()
            .ipv6(G6, R6, 64)
            .tcp(40000, 443, 1, 1000)
            .ack(99)
            .psh()
            .write(&mut v, b"GET / HTTP/1.1\r\n")
            .unwrap();
        v
    }

    fn icmp6_echo() -> Vec<u8> {
        let mut v = Vec::new();
        eth()
            .ipv6(G6, R6, 64)
            .icmpv6_echo_request(7, 1)
            .write(&mut v, b"abc")
            .unwrap();
        v
    }

    fn arp_request() -> Vec<u8> {
        let mut v = vec![0u8; 60];
        let r = crate::wire::arp::ArpRepr {
            oper: crate::wire::arp::OP_REQUEST,
            sha: GUEST,
            spa: G4.into(),
            tha: [0; 6],
            tpa: [10, 0, 2, 2].into(),
        };
        crate::wire::build::eth_arp(&mut v, GUEST, [0xff; 6], &r).unwrap();
        v
    }

    fn all_valid() -> Vec<Vec<u8>> {
        vec![
            udp4(b"query"),
            udp4(&[]),
            tcp4_syn(),
            icmp4_echo(),
            udp6(b"query6"),
            tcp6_data(),
            icmp6_echo(),
            arp_request(),
        ]
    }

    /// Recomputes the IPv4 header checksum after a test edit.
    fn fix_ip4(f: &mut [u8]) {
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    }

    #[test]
    fn valid_frames() {
        let f = udp4(b"query");
        let c = classify(&f).unwrap();
        assert_eq!(c.src_mac, GUEST);
        let L3::Ipv4 {
            src, dst, ttl, l4, ..
        } = c.l3
        else {
            panic!()
        };
        assert_eq!((src, dst, ttl), (G4.into(), R4.into(), 64));
        assert!(matches!(
            l4,
            L4::Udp { sport: 40000, dport: 53, payload } if payload == b"query"
        ));

        let f = tcp4_syn();
        let L3::Ipv4 { l4: L4::Tcp(t), .. } = classify(&f).unwrap().l3 else {
            panic!()
        };
        assert!(t.syn() && t.seq() == 0x1234_5678);
        assert_eq!((t.mss(), t.window_scale()), (Some(1460), Some(7)));

        let f = icmp4_echo();
        let L3::Ipv4 {
            l4: L4::Icmp {
                msg_type, message, ..
            },
            ..
        } = classify(&f).unwrap().l3
        else {
            panic!()
        };
        assert_eq!((msg_type, message.len()), (8, 18));

        let f = udp6(b"query6");
        let L3::Ipv6 { src, l4, .. } = classify(&f).unwrap().l3 else {
            panic!()
        };
        assert_eq!(src, Ipv6Addr::from(G6));
        assert!(matches!(l4, L4::Udp { sport: 5353, payload, .. } if payload == b"query6"));

        let f = tcp6_data();
        let L3::Ipv6 { l4: L4::Tcp(t), .. } = classify(&f).unwrap().l3 else {
            panic!()
        };
        assert_eq!((t.ack(), t.payload()), (99, &b"GET / HTTP/1.1\r\n"[..]));

        let f = icmp6_echo();
        assert!(matches!(
            classify(&f).unwrap().l3,
            L3::Ipv6 {
                l4: L4::Icmpv6 { msg_type: 128, .. },
                ..
            }
        ));

        let f = arp_request();
        let L3::Arp(a) = classify(&f).unwrap().l3 else {
            panic!()
        };
        assert_eq!(a.tpa(), Ipv4Addr::new(10, 0, 2, 2));
    }

    #[test]
    fn ethernet_padding_is_cut() {
        let mut f = udp4(b"x");
        f.resize(60, 0xee);
        let L3::Ipv4 {
            l4: L4::Udp { payload, .. },
            ..
        } = classify(&f).unwrap().l3
        else {
            panic!()
        };
        assert_eq!(payload, b"x");
    }

    #[test]
    fn every_truncation_is_dropped_without_panic() {
        for f in all_valid() {
            let needed = if f.len() == 60 { 42 } else { f.len() };
            for n in 0..f.len() {
                let r = classify(&f[..n]);
                assert_eq!(r.is_ok(), n >= needed, "len {n} of {f:02x?}");
            }
        }
    }

    #[test]
    fn frame_size_limits() {
        assert_eq!(classify(&[]).unwrap_err(), DropReason::FrameTooShort);
        assert_eq!(classify(&[0; 13]).unwrap_err(), DropReason::FrameTooShort);
        let big = vec![0u8; MAX_FRAME_LEN + 1];
        assert_eq!(classify(&big).unwrap_err(), DropReason::FrameTooLong);
    }

    #[test]
    fn unknown_ethertype() {
        let mut f = udp4(b"q");
        f[12..14].copy_from_slice(&0x88ccu16.to_be_bytes()); // LLDP
        assert_eq!(classify(&f).unwrap_err(), DropReason::UnknownEtherType);
    }

    #[test]
    fn ipv4_header_errors() {
        let base = udp4(b"query");

        let mut f = base.clone();
        f[14] = 0x65;
        assert_eq!(classify(&f).unwrap_err(), DropReason::Ipv4BadVersion);

        // IHL 6: one word of options (the UDP header then reads as options).
        let mut f = base.clone();
        f[14] = 0x46;
        fix_ip4(&mut f);
        assert_eq!(classify(&f).unwrap_err(), DropReason::Ipv4Options);

        let mut f = base.clone();
        let too_long = (f.len() - 14 + 1) as u16;
        f[16..18].copy_from_slice(&too_long.to_be_bytes());
        fix_ip4(&mut f);
        assert_eq!(classify(&f).unwrap_err(), DropReason::Ipv4BadLength);

        let mut f = base.clone();
        f[16..18].copy_from_slice(&19u16.to_be_bytes());
        fix_ip4(&mut f);
        assert_eq!(classify(&f).unwrap_err(), DropReason::Ipv4BadLength);

        let mut f = base.clone();
        f[24] ^= 1;
        assert_eq!(classify(&f).unwrap_err(), DropReason::Ipv4BadChecksum);

        for frag in [0x2000u16, 0x0001, 0x6000] {
            let mut f = base.clone();
            f[20..22].copy_from_slice(&frag.to_be_bytes());
            fix_ip4(&mut f);
            assert_eq!(
                classify(&f).unwrap_err(),
                DropReason::Ipv4Fragment,
                "{frag:x}"
            );
        }

        for (off, a) in [(26, [127, 0, 0, 1]), (30, [127, 1, 2, 3])] {
            let mut f = base.clone();
            f[off..off + 4].copy_from_slice(&a);
            fix_ip4(&mut f);
            assert_eq!(classify(&f).unwrap_err(), DropReason::Loopback);
        }

        let mut f = base.clone();
        f[23] = 132; // SCTP
        fix_ip4(&mut f);
        assert_eq!(classify(&f).unwrap_err(), DropReason::UnknownProtocol);
    }

    #[test]
    fn ipv6_header_errors() {
        let base = udp6(b"query6");

        let mut f = base.clone();
        f[14] = 0x40;
        assert_eq!(classify(&f).unwrap_err(), DropReason::Ipv6BadVersion);

        let mut f = base.clone();
        f[19] += 1;
        assert_eq!(classify(&f).unwrap_err(), DropReason::Ipv6BadLength);

        let mut f = base.clone();
        f[20] = 0; // hop-by-hop
        assert_eq!(classify(&f).unwrap_err(), DropReason::Ipv6ExtensionHeader);
        f[20] = 44;
        assert_eq!(classify(&f).unwrap_err(), DropReason::Ipv6Fragment);
        f[20] = 1; // ICMP (v4) in IPv6
        assert_eq!(classify(&f).unwrap_err(), DropReason::UnknownProtocol);

        let mut f = base.clone();
        f[22..38].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        assert_eq!(classify(&f).unwrap_err(), DropReason::Loopback);

        for mapped in [
            "::ffff:127.0.0.1",
            "::ffff:127.0.0.2",
            "::ffff:0.0.0.0",
            "::ffff:192.0.2.1",
        ] {
            let a: Ipv6Addr = mapped.parse().unwrap();
            for off in [22, 38] {
                let mut f = base.clone();
                f[off..off + 16].copy_from_slice(&a.octets());
                assert_eq!(
                    classify(&f).unwrap_err(),
                    DropReason::Ipv4Mapped,
                    "{mapped}"
                );
            }
        }
    }

    #[test]
    fn l4_errors() {
        // UDP length not matching the IP payload.
        let mut f = udp4(b"query");
        f[38..40].copy_from_slice(&12u16.to_be_bytes());
        assert_eq!(classify(&f).unwrap_err(), DropReason::UdpBadLength);
        f[38..40].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(classify(&f).unwrap_err(), DropReason::UdpBadLength);

        // Truncated UDP header: IP says 4 bytes of payload.
        let mut f = udp4(b"query");
        f[16..18].copy_from_slice(&24u16.to_be_bytes());
        fix_ip4(&mut f);
        assert_eq!(classify(&f).unwrap_err(), DropReason::UdpTruncated);

        // Bad UDP checksum; zero means none on IPv4, not on IPv6.
        let mut f = udp4(b"query");
        let last = f.len() - 1;
        f[last] ^= 0x40;
        assert_eq!(classify(&f).unwrap_err(), DropReason::UdpBadChecksum);
        f[40..42].fill(0);
        assert!(classify(&f).is_ok());
        let mut f = udp6(b"query6");
        f[60..62].fill(0);
        assert_eq!(classify(&f).unwrap_err(), DropReason::UdpBadChecksum);

        // TCP: data offset below 5 words or past the segment.
        let mut f = tcp4_syn();
        f[46] = 0x40 | (f[46] & 0x0f);
        assert_eq!(classify(&f).unwrap_err(), DropReason::TcpBadOffset);
        f[46] = 0xf0 | (f[46] & 0x0f);
        assert_eq!(classify(&f).unwrap_err(), DropReason::TcpBadOffset);
        let mut f = tcp6_data();
        let last = f.len() - 1;
        f[last] ^= 1;
        assert_eq!(classify(&f).unwrap_err(), DropReason::TcpBadChecksum);

        let mut f = icmp4_echo();
        f[40] ^= 1;
        assert_eq!(classify(&f).unwrap_err(), DropReason::IcmpBadChecksum);
        let mut f = icmp6_echo();
        f[58] ^= 1;
        assert_eq!(classify(&f).unwrap_err(), DropReason::Icmpv6BadChecksum);
    }

    #[test]
    fn drop_reason_table() {
        assert_eq!(DropReason::COUNT, DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(!r.as_str().is_empty());
        }
        let mut counters = [0u64; DropReason::COUNT];
        counters[DropReason::RateLimited.index()] += 1;
        assert_eq!(counters[DropReason::COUNT - 1], 1);
    }

    /// Random byte flips, insertions of random lengths and truncations of
    /// valid frames: whatever the result, it must not panic, and the views
    /// of an accepted frame must be usable.
    #[test]
    fn fuzz_random_corruption() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let frames = all_valid();
        let mut accepted = 0;
        for i in 0..40_000u32 {
            let mut f = frames[i as usize % frames.len()].clone();
            let flips = 1 + rng.next() % 4;
            for _ in 0..flips {
                let pos = (rng.next() as usize) % f.len();
                let v = rng.next() as u8;
                f[pos] = if rng.next().is_multiple_of(2) {
                    v
                } else {
                    f[pos] ^ (1 << (v % 8))
                };
            }
            if rng.next().is_multiple_of(4) {
                let n = (rng.next() as usize) % (f.len() + 1);
                f.truncate(n);
            }
            if let Ok(c) = classify(&f) {
                touch(&c);
                accepted += 1;
            }
        }
        // Flips in payloads and MACs keep some frames valid: both paths ran.
        assert!(accepted > 0 && accepted < 40_000, "{accepted}");
    }

    /// Reads every accessor of a classified frame.
    fn touch(c: &Classified<'_>) {
        let l4 = match c.l3 {
            L3::Arp(a) => {
                let _ = (a.htype(), a.oper(), a.sha(), a.spa(), a.tha(), a.tpa());
                return;
            }
            L3::Ipv4 { l4, .. } | L3::Ipv6 { l4, .. } => l4,
        };
        if let L4::Tcp(t) = l4 {
            let _ = (t.seq(), t.ack(), t.flags(), t.window(), t.payload().len());
            let _ = t.options().count();
        }
    }
}
