//! ARP service: we answer the guest's ARP requests ourselves.
//!
//! # Theory of operation
//!
//! The guest sits on a point-to-point link with us, but believes it is on
//! a LAN. Whatever IPv4 address it asks about, on-link host or gateway, we
//! claim it (proxy ARP): every frame then comes to us, and we translate it
//! to host sockets. Two kinds of requests get no answer:
//!
//! * requests for the guest's own assigned address: that is the guest's
//!   duplicate address detection, and answering would make it give up its
//!   address (probes from 0.0.0.0 for *other* addresses are answered);
//! * gratuitous announcements (sender address equal to the target, not
//!   0.0.0.0): the guest telling the link about itself.
//!
//! Replies, RARP and non-Ethernet/IPv4 packets are ignored. The answer
//! carries our MAC (`Config::our_mac`); mirroring the host's neighbour table
//! is a later addition that will only change which MAC we put in.
//!
//! [`probe_guest`] builds the one request we originate: sent when the guest
//! connects, it asks for the guest's address so that its reply teaches us
//! the guest's MAC before any traffic flows.
//!
//! Both functions write a complete frame into `out` and return its length,
//! without allocating; `None` means "nothing to send".

// Every byte parsed here is attacker-controlled (guest input) and a panic
// aborts the process, cutting every flow: no unchecked index or slice, no
// arithmetic that can overflow. (Unit tests index their own fixtures.)
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]

use crate::conf::Config;
use crate::live::Live;
use crate::wire::arp::{ArpPacket, ArpRepr, OP_REPLY, OP_REQUEST};
use crate::wire::{build, Classified, Mac, L3, MAC_BROADCAST};
use std::net::Ipv4Addr;

/// Answers an ARP request from the guest.
///
/// `req_src_mac` is the Ethernet source of the request frame: the reply
/// goes there. Returns the length of the reply frame written to `out`, or
/// `None` if the request must not be answered (or IPv4 is disabled, or
/// `out` is too small).
pub(crate) fn reply(
    conf: &Config,
    live: &Live,
    req_src_mac: Mac,
    req: &ArpPacket<&[u8]>,
    out: &mut [u8],
) -> Option<usize> {
    let ip4 = live.ip4.as_ref()?;
    if !req.is_eth_ipv4() || req.oper() != OP_REQUEST {
        return None;
    }
    let (spa, tpa) = (req.spa(), req.tpa());
    if spa == tpa && spa != Ipv4Addr::UNSPECIFIED {
        return None; // announcement
    }
    if tpa == ip4.addr {
        return None; // the guest's own address: duplicate address detection
    }
    let repr = ArpRepr {
        oper: OP_REPLY,
        sha: conf.our_mac,
        spa: tpa,
        tha: req.sha(),
        tpa: spa,
    };
    build::eth_arp(out, conf.our_mac, req_src_mac, &repr).ok()
}

/// [`reply`] for a classified guest frame: `None` unless it is ARP.
pub(crate) fn handle(
    conf: &Config,
    live: &Live,
    frame: &Classified<'_>,
    out: &mut [u8],
) -> Option<usize> {
    match &frame.l3 {
        L3::Arp(req) => reply(conf, live, frame.src_mac, req, out),
        _ => None,
    }
}

/// Builds the broadcast ARP request asking for the guest's address, from our
/// MAC and tap address. `None` if IPv4 is disabled.
pub(crate) fn probe_guest(conf: &Config, live: &Live, out: &mut [u8]) -> Option<usize> {
    let ip4 = conf.ip4.as_ref()?;
    let l4 = live.ip4.as_ref()?;
    let repr = ArpRepr {
        oper: OP_REQUEST,
        sha: conf.our_mac,
        spa: ip4.our_tap_addr,
        tha: [0; 6],
        tpa: l4.addr,
    };
    build::eth_arp(out, conf.our_mac, MAC_BROADCAST, &repr).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conf::DEFAULT_MAC;
    use crate::wire::classify;

    /// A configuration as passt would build it for a typical host: the
    /// DHCP tests' one, with a single nameserver, another IPv6 prefix and
    /// search list, and no host name.
    pub(crate) fn test_config() -> Config {
        let mut c = crate::dhcp::tests::test_config();
        if let Some(ip4) = c.ip4.as_mut() {
            ip4.dns.truncate(1);
        }
        if let Some(ip6) = c.ip6.as_mut() {
            ip6.addr = Some("2001:db8:1:2::10".parse().unwrap());
        }
        c.search = vec!["example.com".into(), "lab.example.org".into()];
        c.hostname = None;
        c.fqdn = None;
        c
    }

    const GUEST_MAC: Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    /// A broadcast ARP request frame from the guest, padded to 60 bytes.
    fn request(spa: [u8; 4], tpa: [u8; 4]) -> [u8; 60] {
        let mut f = [0u8; 60];
        let repr = ArpRepr {
            oper: OP_REQUEST,
            sha: GUEST_MAC,
            spa: spa.into(),
            tha: [0; 6],
            tpa: tpa.into(),
        };
        build::eth_arp(&mut f, GUEST_MAC, MAC_BROADCAST, &repr).unwrap();
        f
    }

    fn answer(conf: &Config, frame: &[u8]) -> Option<Vec<u8>> {
        let c = classify(frame).unwrap();
        assert!(matches!(c.l3, L3::Arp(_)));
        let mut out = [0u8; 128];
        handle(conf, &Live::new(conf), &c, &mut out).map(|n| out[..n].to_vec())
    }

    #[test]
    fn answers_gateway_and_any_address() {
        let conf = test_config();
        for tpa in [[192, 168, 1, 1], [192, 168, 1, 77], [8, 8, 8, 8]] {
            let r = answer(&conf, &request([192, 168, 1, 10], tpa)).unwrap();
            let (eth, rest) = etherparse::Ethernet2Header::from_slice(&r).unwrap();
            assert_eq!(eth.destination, GUEST_MAC);
            assert_eq!(eth.source, DEFAULT_MAC);
            let arp = etherparse::ArpPacketSlice::from_slice(rest).unwrap();
            assert_eq!(arp.operation(), etherparse::ArpOperation::REPLY);
            assert_eq!(arp.sender_hw_addr(), &DEFAULT_MAC);
            assert_eq!(arp.sender_protocol_addr(), &tpa);
            assert_eq!(arp.target_hw_addr(), &GUEST_MAC);
            assert_eq!(arp.target_protocol_addr(), &[192, 168, 1, 10]);
        }
        // A probe from 0.0.0.0 for another address is answered.
        assert!(answer(&conf, &request([0; 4], [192, 168, 1, 1])).is_some());
    }

    #[test]
    fn ignores_dad_announcements_and_replies() {
        let conf = test_config();
        // DAD probe for the guest's own address.
        assert!(answer(&conf, &request([0; 4], [192, 168, 1, 10])).is_none());
        // Gratuitous announcement.
        assert!(answer(&conf, &request([192, 168, 1, 10], [192, 168, 1, 10])).is_none());
        // A reply.
        let mut f = request([192, 168, 1, 10], [192, 168, 1, 1]);
        f[21] = 2;
        assert!(answer(&conf, &f).is_none());
        // Not Ethernet/IPv4.
        let mut f = request([192, 168, 1, 10], [192, 168, 1, 1]);
        f[18] = 8;
        assert!(answer(&conf, &f).is_none());
        // IPv4 disabled.
        let mut c = test_config();
        c.ip4 = None;
        assert!(answer(&c, &request([192, 168, 1, 10], [192, 168, 1, 1])).is_none());
    }

    #[test]
    fn probe() {
        let conf = test_config();
        let mut out = [0u8; 42];
        let n = probe_guest(&conf, &Live::new(&conf), &mut out).unwrap();
        let (eth, rest) = etherparse::Ethernet2Header::from_slice(&out[..n]).unwrap();
        assert_eq!(eth.destination, MAC_BROADCAST);
        let arp = etherparse::ArpPacketSlice::from_slice(rest).unwrap();
        assert_eq!(arp.operation(), etherparse::ArpOperation::REQUEST);
        assert_eq!(arp.sender_protocol_addr(), &[192, 168, 1, 1]);
        assert_eq!(arp.target_protocol_addr(), &[192, 168, 1, 10]);
        assert!(probe_guest(&conf, &Live::new(&conf), &mut out[..41]).is_none());
    }
}
