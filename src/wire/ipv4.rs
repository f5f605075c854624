//! IPv4 headers (RFC 791).
//!
//! `new_checked` guarantees: the 20-byte fixed header is present, the header
//! length (IHL) is at least 20 and within the buffer, and the total length
//! covers the header and does not exceed the buffer. [`Ipv4Packet::payload`]
//! then ends at the total length, which drops any Ethernet padding.

use super::checksum;
use super::{get_array, get_u16, get_u8, set_array, set_u16, set_u8, Result, WireError};
use std::net::Ipv4Addr;

mod field {
    use crate::wire::Field;
    pub(crate) const VER_IHL: usize = 0;
    pub(crate) const TOS: usize = 1;
    pub(crate) const TOTAL_LEN: usize = 2;
    pub(crate) const IDENT: usize = 4;
    pub(crate) const FLAGS_FRAG: usize = 6;
    pub(crate) const TTL: usize = 8;
    pub(crate) const PROTOCOL: usize = 9;
    pub(crate) const CHECKSUM: usize = 10;
    pub(crate) const SRC: Field = 12..16;
    pub(crate) const DST: Field = 16..20;
}

/// Length of a header without options.
pub(crate) const HEADER_LEN: usize = field::DST.end;

/// Flag: don't fragment.
const FLAG_DF: u16 = 0x4000;
/// Flag: more fragments.
const FLAG_MF: u16 = 0x2000;
/// Mask of the fragment offset.
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// IP protocol numbers we handle.
pub(crate) mod protocol {
    pub(crate) const ICMP: u8 = 1;
    pub(crate) const TCP: u8 = 6;
    pub(crate) const UDP: u8 = 17;
    pub(crate) const ICMPV6: u8 = 58;
}

/// A view of an IPv4 packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ipv4Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub(crate) const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    pub(crate) fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub(crate) fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hlen = self.header_len();
        let total = usize::from(self.total_len());
        if hlen < HEADER_LEN || hlen > len || total < hlen || total > len {
            return Err(WireError::BadLength);
        }
        Ok(())
    }

    pub(crate) fn version(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// Header length in bytes (IHL × 4).
    pub(crate) fn header_len(&self) -> usize {
        usize::from(get_u8(self.buffer.as_ref(), field::VER_IHL) & 0x0f) * 4
    }

    /// DSCP and ECN.
    pub(crate) fn tos(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::TOS)
    }

    pub(crate) fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::TOTAL_LEN)
    }

    #[cfg(test)]
    pub(crate) fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_DF != 0
    }

    pub(crate) fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FLAG_MF != 0
    }

    /// Fragment offset, in units of 8 bytes.
    pub(crate) fn frag_offset(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG) & FRAG_OFFSET_MASK
    }

    pub(crate) fn ttl(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::TTL)
    }

    pub(crate) fn protocol(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::PROTOCOL)
    }

    #[cfg(test)]
    pub(crate) fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub(crate) fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::SRC))
    }

    pub(crate) fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::DST))
    }

    /// Whether the header checksum (over the whole header, options
    /// included) is valid.
    pub(crate) fn verify_checksum(&self) -> bool {
        let header = self.buffer.as_ref().get(..self.header_len());
        checksum::verify(checksum::sum(header.unwrap_or_default()))
    }

    /// The L4 payload: from the end of the header to the total length.
    #[cfg(test)]
    pub(crate) fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in bytes (multiple of 4).
    pub(crate) fn set_version_header_len(&mut self, hlen: usize) {
        set_u8(
            self.buffer.as_mut(),
            field::VER_IHL,
            0x40 | ((hlen / 4) as u8 & 0x0f),
        );
    }

    pub(crate) fn set_tos(&mut self, v: u8) {
        set_u8(self.buffer.as_mut(), field::TOS, v);
    }

    pub(crate) fn set_total_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::TOTAL_LEN, v);
    }

    pub(crate) fn set_ident(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, v);
    }

    /// Sets the flags and fragment offset: DF as given, MF clear, offset 0.
    pub(crate) fn set_dont_frag(&mut self, df: bool) {
        let v = if df { FLAG_DF } else { 0 };
        set_u16(self.buffer.as_mut(), field::FLAGS_FRAG, v);
    }

    pub(crate) fn set_ttl(&mut self, v: u8) {
        set_u8(self.buffer.as_mut(), field::TTL, v);
    }

    pub(crate) fn set_protocol(&mut self, v: u8) {
        set_u8(self.buffer.as_mut(), field::PROTOCOL, v);
    }

    pub(crate) fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    pub(crate) fn set_src(&mut self, a: Ipv4Addr) {
        set_array(self.buffer.as_mut(), field::SRC, a.octets());
    }

    pub(crate) fn set_dst(&mut self, a: Ipv4Addr) {
        set_array(self.buffer.as_mut(), field::DST, a.octets());
    }

    /// Computes and stores the header checksum.
    pub(crate) fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hlen = self.header_len();
        let header = self.buffer.as_ref().get(..hlen).unwrap_or_default();
        let c = checksum::finish(checksum::sum(header));
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header (ICMP from 172.16.10.99 to 172.16.10.12, DF, TTL 64),
    /// with 4 payload bytes.
    const PACKET: [u8; 24] = [
        0x45, 0x00, 0x00, 0x18, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0xb2, 0x0f, 0xac, 0x10, 0x0a,
        0x63, 0xac, 0x10, 0x0a, 0x0c, 1, 2, 3, 4,
    ];

    #[test]
    fn parse() {
        let p = Ipv4Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert!(p.dont_frag() && !p.more_frags() && p.frag_offset() == 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), protocol::ICMP);
        assert_eq!(p.src(), Ipv4Addr::new(172, 16, 10, 99));
        assert_eq!(p.dst(), Ipv4Addr::new(172, 16, 10, 12));
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn lengths_are_checked() {
        for n in 0..PACKET.len() {
            assert!(Ipv4Packet::new_checked(&PACKET[..n]).is_err(), "len {n}");
        }
        let mut b = PACKET;
        b[0] = 0x44; // IHL 16 bytes
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            WireError::BadLength
        );
        let mut b = PACKET;
        b[3] = 0x13; // total length 19
        assert!(Ipv4Packet::new_checked(&b[..]).is_err());
    }

    #[test]
    fn fill_checksum_matches() {
        let mut b = PACKET;
        b[10] = 0;
        b[11] = 0;
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert_eq!(p.checksum(), 0xb20f);
    }
}
