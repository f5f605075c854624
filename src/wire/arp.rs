//! ARP packets (RFC 826), Ethernet/IPv4 only.
//!
//! The view assumes 6-byte hardware and 4-byte protocol addresses: it
//! checks only that the 28 bytes of such a packet are there. Whether the
//! packet really is Ethernet/IPv4 (`htype`, `ptype`, `hlen`, `plen`) is for
//! the caller to decide, see [`ArpPacket::is_eth_ipv4`].

use super::{get_array, get_u16, get_u8, set_array, set_u16, set_u8, Mac, Result, WireError};
use std::net::Ipv4Addr;

mod field {
    use crate::wire::Field;
    pub(crate) const HTYPE: usize = 0;
    pub(crate) const PTYPE: usize = 2;
    pub(crate) const HLEN: usize = 4;
    pub(crate) const PLEN: usize = 5;
    pub(crate) const OPER: usize = 6;
    pub(crate) const SHA: Field = 8..14;
    pub(crate) const SPA: Field = 14..18;
    pub(crate) const THA: Field = 18..24;
    pub(crate) const TPA: Field = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub(crate) const PACKET_LEN: usize = field::TPA.end;

/// Hardware type: Ethernet.
pub(crate) const HTYPE_ETHERNET: u16 = 1;
/// Operation: request.
pub(crate) const OP_REQUEST: u16 = 1;
/// Operation: reply.
pub(crate) const OP_REPLY: u16 = 2;

/// A view of an ARP packet.
#[derive(Clone, Copy, Debug)]
pub struct ArpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub(crate) const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    pub(crate) fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub(crate) fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub(crate) fn htype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::HTYPE)
    }

    pub(crate) fn ptype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PTYPE)
    }

    pub(crate) fn hlen(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::HLEN)
    }

    pub(crate) fn plen(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::PLEN)
    }

    pub(crate) fn oper(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::OPER)
    }

    /// Sender hardware address.
    pub(crate) fn sha(&self) -> Mac {
        get_array(self.buffer.as_ref(), field::SHA)
    }

    /// Sender protocol address.
    pub(crate) fn spa(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::SPA))
    }

    /// Target hardware address.
    #[cfg(test)]
    pub(crate) fn tha(&self) -> Mac {
        get_array(self.buffer.as_ref(), field::THA)
    }

    /// Target protocol address.
    pub(crate) fn tpa(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::TPA))
    }

    /// Whether the fixed fields describe Ethernet addresses and IPv4.
    pub(crate) fn is_eth_ipv4(&self) -> bool {
        self.htype() == HTYPE_ETHERNET
            && self.ptype() == super::eth::ethertype::IPV4
            && self.hlen() == 6
            && self.plen() == 4
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the Ethernet/IPv4 fixed fields.
    pub(crate) fn set_eth_ipv4(&mut self) {
        let b = self.buffer.as_mut();
        set_u16(b, field::HTYPE, HTYPE_ETHERNET);
        set_u16(b, field::PTYPE, super::eth::ethertype::IPV4);
        set_u8(b, field::HLEN, 6);
        set_u8(b, field::PLEN, 4);
    }

    pub(crate) fn set_oper(&mut self, op: u16) {
        set_u16(self.buffer.as_mut(), field::OPER, op);
    }

    pub(crate) fn set_sha(&mut self, mac: Mac) {
        set_array(self.buffer.as_mut(), field::SHA, mac);
    }

    pub(crate) fn set_spa(&mut self, a: Ipv4Addr) {
        set_array(self.buffer.as_mut(), field::SPA, a.octets());
    }

    pub(crate) fn set_tha(&mut self, mac: Mac) {
        set_array(self.buffer.as_mut(), field::THA, mac);
    }

    pub(crate) fn set_tpa(&mut self, a: Ipv4Addr) {
        set_array(self.buffer.as_mut(), field::TPA, a.octets());
    }
}

/// The variable part of an Ethernet/IPv4 ARP packet, for building.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    pub oper: u16,
    pub sha: Mac,
    pub spa: Ipv4Addr,
    pub tha: Mac,
    pub tpa: Ipv4Addr,
}

impl ArpRepr {
    /// Reads the variable fields of a packet (any htype/ptype).
    #[cfg(test)]
    pub(crate) fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Self {
        ArpRepr {
            oper: p.oper(),
            sha: p.sha(),
            spa: p.spa(),
            tha: p.tha(),
            tpa: p.tpa(),
        }
    }

    /// Writes a complete Ethernet/IPv4 ARP packet.
    pub(crate) fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut ArpPacket<T>) {
        p.set_eth_ipv4();
        p.set_oper(self.oper);
        p.set_sha(self.sha);
        p.set_spa(self.spa);
        p.set_tha(self.tha);
        p.set_tpa(self.tpa);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ARP request as Linux sends it: who has 10.0.2.2? tell 10.0.2.15.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // eth/ipv4 request
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 10, 0, 2, 15, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 0, 2, 2, // target
    ];

    #[test]
    fn parse_request() {
        assert!(ArpPacket::new_checked(&REQUEST[..27]).is_err());
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert!(p.is_eth_ipv4());
        let r = ArpRepr::parse(&p);
        assert_eq!(r.oper, OP_REQUEST);
        assert_eq!(r.sha, [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(r.spa, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(r.tpa, Ipv4Addr::new(10, 0, 2, 2));
    }

    #[test]
    fn emit_round_trip() {
        let mut b = [0u8; PACKET_LEN];
        let r = ArpRepr::parse(&ArpPacket::new_checked(&REQUEST[..]).unwrap());
        r.emit(&mut ArpPacket::new_unchecked(&mut b[..]));
        assert_eq!(b, REQUEST);
    }
}
