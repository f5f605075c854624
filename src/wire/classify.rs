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
pub const MAX_FRAME_LEN: usize = eth::HEADER_LEN + 65535;

/// A checked frame from the guest.
#[derive(Clone, Copy, Debug)]
pub struct Classified<'a> {
    pub src_mac: Mac,
    pub dst_mac: Mac,
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
    ($($name:ident => $text:literal,)*) => {
        /// Why a guest frame was dropped.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum DropReason {
            $($name,)*
        }

        impl DropReason {
            /// Every reason, in [`DropReason::index`] order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// Number of reasons: the size of a counter array.
            pub const COUNT: usize = Self::ALL.len();

            /// A short description for logs and statistics.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(DropReason::$name => $text,)*
                }
            }

            /// Index into a `[u64; DropReason::COUNT]` counter array.
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

drop_reasons! {
    FrameTooShort => "frame shorter than an Ethernet header",
    FrameTooLong => "frame longer than an Ethernet header and a maximum IP packet",
    UnknownEtherType => "unknown EtherType",
    ArpTruncated => "truncated ARP packet",
    Ipv4Truncated => "truncated IPv4 header",
    Ipv4BadVersion => "IPv4 EtherType with another IP version",
    Ipv4Options => "IPv4 options",
    Ipv4BadLength => "IPv4 total length inconsistent with the frame",
    Ipv4BadChecksum => "bad IPv4 header checksum",
    Ipv4Fragment => "IPv4 fragment",
    Ipv6Truncated => "truncated IPv6 header",
    Ipv6BadVersion => "IPv6 EtherType with another IP version",
    Ipv6BadLength => "IPv6 payload length beyond the frame",
    Ipv6ExtensionHeader => "IPv6 extension header",
    Ipv6Fragment => "IPv6 fragment",
    Loopback => "loopback address on the tap interface",
    UnknownProtocol => "unhandled transport protocol",
    UdpTruncated => "truncated UDP header",
    UdpBadLength => "UDP length inconsistent with the IP length",
    UdpBadChecksum => "bad UDP checksum",
    TcpTruncated => "truncated TCP header",
    TcpBadOffset => "TCP data offset out of the segment",
    TcpBadChecksum => "bad TCP checksum",
    IcmpTruncated => "truncated ICMP header",
    IcmpBadChecksum => "bad ICMP checksum",
    Icmpv6Truncated => "truncated ICMPv6 header",
    Icmpv6BadChecksum => "bad ICMPv6 checksum",
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
    if frame.len() > MAX_FRAME_LEN {
        return Err(DropReason::FrameTooLong);
    }
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::FrameTooShort)?;
    let (src_mac, dst_mac) = (eth.src(), eth.dst());
    // Views borrow their buffer: re-slice the frame for the 'a lifetime.
    let payload = frame.get(eth::HEADER_LEN..).unwrap_or(&[]);
    let l3 = match eth.ethertype() {
        eth::ethertype::ARP => {
            L3::Arp(ArpPacket::new_checked(payload).map_err(|_| DropReason::ArpTruncated)?)
        }
        eth::ethertype::IPV4 => classify_ipv4(payload)?,
        eth::ethertype::IPV6 => classify_ipv6(payload)?,
        _ => return Err(DropReason::UnknownEtherType),
    };
    Ok(Classified {
        src_mac,
        dst_mac,
        l3,
    })
}

fn classify_ipv4(buf: &[u8]) -> Result<L3<'_>, DropReason> {
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
        protocol::TCP => classify_tcp(data, pseudo(protocol::TCP))?,
        protocol::UDP => {
            let udp = checked_udp(data)?;
            if udp.checksum() != 0 && !udp.verify_checksum(pseudo(protocol::UDP)) {
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

fn classify_ipv6(buf: &[u8]) -> Result<L3<'_>, DropReason> {
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
    let data = buf
        .get(ipv6::HEADER_LEN..ipv6::HEADER_LEN + usize::from(ip.payload_len()))
        .unwrap_or(&[]);
    let len = data.len() as u32;
    let pseudo = |nh| checksum::pseudo_v6(src, dst, nh, len);
    let l4 = match ip.next_header() {
        protocol::TCP => classify_tcp(data, pseudo(protocol::TCP))?,
        protocol::UDP => {
            let udp = checked_udp(data)?;
            // Mandatory over IPv6: zero is simply wrong.
            if !udp.verify_checksum(pseudo(protocol::UDP)) {
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

fn classify_tcp(data: &[u8], pseudo: u64) -> Result<L4<'_>, DropReason> {
    let tcp = TcpPacket::new_checked(data).map_err(|e| match e {
        super::WireError::Truncated => DropReason::TcpTruncated,
        _ => DropReason::TcpBadOffset,
    })?;
    if !tcp.verify_checksum(pseudo) {
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
