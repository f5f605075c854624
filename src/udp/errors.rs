//! ICMP and ICMPv6 errors toward the guest, from errors queued on a
//! flow's host socket.
//!
//! The kernel tells us the ICMP type and code (or a local `EMSGSIZE` with
//! the path MTU), who sent it, and gives back the payload of our datagram.
//! The guest needs an error quoting *its* datagram: we rebuild the IP and
//! UDP headers from the flow's tap side (the guest's addresses and ports,
//! before any NAT) and append the start of the payload: 8 bytes for ICMP
//! (RFC 792), and as much as fits in 1280 bytes for ICMPv6 (RFC 4443).

use std::net::IpAddr;

use crate::conf::Config;
use crate::flow::FlowSide;
use crate::sys::udp::{SockErr, SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6};
use crate::wire::{build, checksum, Mac};

/// Most bytes of the original datagram (IP header included) an ICMPv6
/// error quotes: the error packet stays within the IPv6 minimum MTU.
pub const QUOTE_MAX: usize = 1280 - 40 - 8;

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
pub fn icmp_error_frame(
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
    let mut msg = [0u8; 8 + QUOTE_MAX];
    msg[0] = ty;
    msg[1] = code;
    msg[4..8].copy_from_slice(&rest.to_be_bytes());
    let q = &mut msg[8..];
    let (ip_len, quoted_payload) = match (tap.eaddr, tap.oaddr) {
        (IpAddr::V4(g), IpAddr::V4(d)) => {
            let total = (20 + udp_len).min(65535) as u16;
            q[0] = 0x45;
            q[2..4].copy_from_slice(&total.to_be_bytes());
            q[6] = 0x40; // DF
            q[8] = 64;
            q[9] = crate::udp::IPPROTO_UDP;
            q[12..16].copy_from_slice(&g.octets());
            q[16..20].copy_from_slice(&d.octets());
            let c = checksum::finish(checksum::sum(&q[..20]));
            q[10..12].copy_from_slice(&c.to_be_bytes());
            (20, payload.len().min(8))
        }
        (IpAddr::V6(g), IpAddr::V6(d)) => {
            q[0] = 0x60;
            q[4..6].copy_from_slice(&(udp_len.min(65535) as u16).to_be_bytes());
            q[6] = crate::udp::IPPROTO_UDP;
            q[7] = 64;
            q[8..24].copy_from_slice(&g.octets());
            q[24..40].copy_from_slice(&d.octets());
            (40, payload.len().min(QUOTE_MAX - 48))
        }
        _ => return None,
    };
    let u = &mut q[ip_len..];
    u[0..2].copy_from_slice(&tap.eport.to_be_bytes());
    u[2..4].copy_from_slice(&tap.oport.to_be_bytes());
    u[4..6].copy_from_slice(&(udp_len.min(65535) as u16).to_be_bytes());
    u[8..8 + quoted_payload].copy_from_slice(&payload[..quoted_payload]);
    let msg_len = 8 + ip_len + 8 + quoted_payload;
    let message = &msg[..msg_len];
    let r = match (src, tap.eaddr) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            build::eth_ipv4_icmp(out, conf.our_mac, guest_mac, s, d, 64, message)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            build::eth_ipv6_icmpv6(out, conf.our_mac, guest_mac, s, d, 64, message)
        }
        _ => return None,
    };
    r.ok()
}
