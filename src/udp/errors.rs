//! ICMP and ICMPv6 errors toward the guest, from errors queued on a
//! flow's host socket.
//!
//! The kernel tells us the ICMP type and code (or a local `EMSGSIZE` with
//! the path MTU), who sent it, and gives back the payload of our datagram.
//! The guest needs an error quoting *its* datagram: we rebuild the IP and
//! UDP headers from the flow's tap side (the guest's addresses and ports,
//! before any NAT) and append the start of the payload: 8 bytes for ICMP
//! (RFC 792), and as much as fits in 1280 bytes for ICMPv6 (RFC 4443).

use std::net::SocketAddr;

use crate::conf::Config;
use crate::flow::FlowSide;
use crate::sys::udp::{SockErr, SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6};
use crate::wire::{build, Mac};

/// Most bytes of the original datagram (IP header included) an ICMPv6
/// error quotes: the error packet stays within the IPv6 minimum MTU.
pub(crate) const QUOTE_MAX: usize = 1280 - 40 - 8;

/// `SO_EE_ORIGIN_LOCAL`: the error comes from our own stack (EMSGSIZE).
const SO_EE_ORIGIN_LOCAL: u8 = 1;

/// The ICMP(v6) type, code and 32-bit "rest of header" for an error, if
/// it is one we propagate.
fn type_code(v6: bool, e: &SockErr) -> Option<(u8, u8, u32)> {
    let mtu = e.info.min(65535);
    match (v6, e.origin) {
        (false, SO_EE_ORIGIN_ICMP) => {
            let rest = if e.icmp_type == 3 && e.icmp_code == 4 {
                mtu
            } else {
                0
            };
            Some((e.icmp_type, e.icmp_code, rest))
        }
        (true, SO_EE_ORIGIN_ICMP6) => {
            let rest = if e.icmp_type == 2 { e.info } else { 0 };
            Some((e.icmp_type, e.icmp_code, rest))
        }
        (false, SO_EE_ORIGIN_LOCAL) if e.errno == libc::EMSGSIZE => Some((3, 4, mtu)),
        (true, SO_EE_ORIGIN_LOCAL) if e.errno == libc::EMSGSIZE => Some((2, 0, e.info)),
        _ => None,
    }
}

/// Builds the error frame for the guest: `tap` is the flow's tap side
/// (endpoint: the guest), `host` its host side, `payload` what the kernel
/// returned of the offending datagram.
pub(crate) fn icmp_error_frame(
    conf: &Config,
    guest_mac: Mac,
    tap: &FlowSide,
    host: &FlowSide,
    e: &SockErr,
    payload: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    let v6 = tap.eaddr.is_ipv6();
    let (ty, code, rest) = type_code(v6, e)?;
    // The error appears to come from whom the guest wrote to, unless a
    // router in between sent it.
    let src = match e.offender.map(|a| a.to_canonical()) {
        Some(o) if o != host.eaddr.to_canonical() && !o.is_loopback() && o.is_ipv6() == v6 => o,
        _ => tap.oaddr,
    };
    let udp_len = 8 + payload.len();
    // RFC 792: ICMP quotes the IP header and 64 bits of the datagram; RFC
    // 4443: ICMPv6 as much as fits the minimum MTU.
    let quote = if v6 { QUOTE_MAX } else { 20 + 8 + 8 };
    let mut msg = [0u8; 8 + QUOTE_MAX];
    msg[0] = ty;
    msg[1] = code;
    msg[4..8].copy_from_slice(&rest.to_be_bytes());
    let guest = SocketAddr::new(tap.eaddr, tap.eport);
    let peer = SocketAddr::new(tap.oaddr, tap.oport);
    let quoted = build::quote_ip_udp(&mut msg[8..], guest, peer, udp_len, payload, quote).ok()?;
    let message = &msg[..8 + quoted];
    build::eth_ip_icmp(out, conf.our_mac, guest_mac, src, tap.eaddr, 64, message).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arp::tests::test_config;
    use crate::wire::classify::{classify, L3, L4};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    const GUEST_MAC: Mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn sides(g: IpAddr, d: IpAddr, host: IpAddr) -> (FlowSide, FlowSide) {
        (
            FlowSide {
                eaddr: g,
                eport: 40000,
                oaddr: d,
                oport: 53,
            },
            FlowSide {
                eaddr: host,
                eport: 53,
                oaddr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                oport: 40000,
            },
        )
    }

    fn err(origin: u8, t: u8, code: u8, info: u32, offender: Option<IpAddr>) -> SockErr {
        SockErr {
            errno: libc::ECONNREFUSED,
            origin,
            icmp_type: t,
            icmp_code: code,
            info,
            offender,
            len: 20,
        }
    }

    #[test]
    fn port_unreachable_v4_quotes_the_guests_datagram() {
        let conf = test_config();
        let g = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
        // The guest wrote to the --dns-forward address; the resolver
        // refused: the error comes from the address the guest used.
        let d = IpAddr::V4(Ipv4Addr::new(169, 254, 1, 1));
        let host = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53));
        let (tap, hs) = sides(g, d, host);
        let e = err(SO_EE_ORIGIN_ICMP, 3, 3, 0, Some(host));
        let payload = [7u8; 20];
        let mut out = [0u8; 2048];
        let n = icmp_error_frame(&conf, GUEST_MAC, &tap, &hs, &e, &payload, &mut out).unwrap();
        let c = classify(&out[..n]).expect("valid frame, checksums included");
        let L3::Ipv4 { src, dst, l4, .. } = c.l3 else {
            panic!("not IPv4")
        };
        assert_eq!((IpAddr::V4(src), IpAddr::V4(dst)), (d, g));
        let L4::Icmp {
            msg_type,
            code,
            message,
        } = l4
        else {
            panic!("not ICMP")
        };
        assert_eq!((msg_type, code), (3, 3));
        // Header, quoted IPv4 header (20), UDP header (8), 8 payload bytes.
        assert_eq!(message.len(), 8 + 20 + 8 + 8);
        let q = etherparse::Ipv4HeaderSlice::from_slice(&message[8..28]).unwrap();
        assert_eq!(IpAddr::V4(q.source_addr()), g);
        assert_eq!(IpAddr::V4(q.destination_addr()), d);
        assert_eq!(q.protocol(), etherparse::IpNumber::UDP);
        assert_eq!(q.total_len(), 20 + 8 + 20);
        assert_eq!(q.to_header().calc_header_checksum(), q.header_checksum());
        let u = &message[28..36];
        assert_eq!(u16::from_be_bytes([u[0], u[1]]), 40000);
        assert_eq!(u16::from_be_bytes([u[2], u[3]]), 53);
        assert_eq!(u16::from_be_bytes([u[4], u[5]]), 28);
        assert_eq!(&message[36..], &[7u8; 8]);
    }

    #[test]
    fn frag_needed_and_packet_too_big_carry_the_mtu() {
        let conf = test_config();
        let g4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
        let d4 = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        let router = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1));
        let (tap, hs) = sides(g4, d4, d4);
        let mut out = [0u8; 2048];
        // A local EMSGSIZE: fragmentation needed, MTU in the last 16 bits.
        let mut e = err(1, 0, 0, 1400, None);
        e.errno = libc::EMSGSIZE;
        let n = icmp_error_frame(&conf, GUEST_MAC, &tap, &hs, &e, &[0; 20], &mut out).unwrap();
        let L3::Ipv4 { src, l4, .. } = classify(&out[..n]).unwrap().l3 else {
            panic!()
        };
        assert_eq!(IpAddr::V4(src), d4);
        let L4::Icmp {
            msg_type,
            code,
            message,
        } = l4
        else {
            panic!()
        };
        assert_eq!((msg_type, code), (3, 4));
        assert_eq!(&message[6..8], &1400u16.to_be_bytes());
        // From a router on the way: the router is the source.
        let e = err(SO_EE_ORIGIN_ICMP, 3, 4, 1280, Some(router));
        let n = icmp_error_frame(&conf, GUEST_MAC, &tap, &hs, &e, &[0; 20], &mut out).unwrap();
        let L3::Ipv4 { src, .. } = classify(&out[..n]).unwrap().l3 else {
            panic!()
        };
        assert_eq!(IpAddr::V4(src), router);

        let g6: IpAddr = "2001:db8::3".parse().unwrap();
        let d6: IpAddr = "2001:db8:1::1".parse().unwrap();
        let (tap, hs) = sides(g6, d6, d6);
        let e = err(SO_EE_ORIGIN_ICMP6, 2, 0, 1280, Some(d6));
        let big = [9u8; 1500];
        let n = icmp_error_frame(&conf, GUEST_MAC, &tap, &hs, &e, &big, &mut out).unwrap();
        let L3::Ipv6 { src, dst, l4, .. } = classify(&out[..n]).unwrap().l3 else {
            panic!()
        };
        assert_eq!((IpAddr::V6(src), IpAddr::V6(dst)), (d6, g6));
        let L4::Icmpv6 {
            msg_type,
            code,
            message,
        } = l4
        else {
            panic!()
        };
        assert_eq!((msg_type, code), (2, 0));
        assert_eq!(&message[4..8], &1280u32.to_be_bytes());
        // The whole error fits in the IPv6 minimum MTU.
        assert_eq!(n - 14, 1280);
        let q = etherparse::Ipv6HeaderSlice::from_slice(&message[8..48]).unwrap();
        assert_eq!(q.source_addr(), "2001:db8::3".parse::<Ipv6Addr>().unwrap());
        assert_eq!(q.payload_length(), 8 + 1500);
    }

    #[test]
    fn local_errors_other_than_emsgsize_are_not_propagated() {
        let conf = test_config();
        let g = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
        let (tap, hs) = sides(g, g, g);
        let mut e = err(1, 0, 0, 0, None);
        e.errno = libc::ENOBUFS;
        let mut out = [0u8; 2048];
        assert!(icmp_error_frame(&conf, GUEST_MAC, &tap, &hs, &e, &[], &mut out).is_none());
    }
}
