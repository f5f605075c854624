//! UDP headers (RFC 768).
//!
//! `new_checked` guarantees the 8-byte header and a length field between 8
//! and the buffer length; [`UdpPacket::payload`] ends at that length.
//! Checksums take the pseudo-header as a partial sum from
//! [`super::checksum::pseudo_v4`] or [`super::checksum::pseudo_v6`].

use super::checksum;
use super::{get_u16, set_u16, Result, WireError};

mod field {
    pub(crate) const SRC_PORT: usize = 0;
    pub(crate) const DST_PORT: usize = 2;
    pub(crate) const LENGTH: usize = 4;
    pub(crate) const CHECKSUM: usize = 6;
    pub(crate) const PAYLOAD: usize = 8;
}

/// Length of the UDP header.
pub(crate) const HEADER_LEN: usize = field::PAYLOAD;

/// A view of a UDP datagram.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UdpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub(crate) const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
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
        let l = usize::from(self.len());
        if l < HEADER_LEN || l > len {
            return Err(WireError::BadLength);
        }
        Ok(())
    }

    pub(crate) fn into_inner(self) -> T {
        self.buffer
    }

    pub(crate) fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub(crate) fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header and payload.
    pub(crate) fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    pub(crate) fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Verifies the checksum given the pseudo-header sum. A zero checksum
    /// ("none", legal on IPv4 only) is for the caller to accept or not.
    pub(crate) fn verify_checksum(&self, pseudo: u64) -> bool {
        let data = self.buffer.as_ref().get(..usize::from(self.len()));
        let data = data.unwrap_or_default();
        checksum::verify(checksum::combine(pseudo, checksum::sum(data)))
    }

    #[cfg(test)]
    pub(crate) fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub(crate) fn set_src_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    pub(crate) fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    pub(crate) fn set_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, v);
    }

    pub(crate) fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Computes and stores the checksum over header and payload (up to the
    /// length field); a computed 0 is sent as 0xffff (RFC 768).
    pub(crate) fn fill_checksum(&mut self, pseudo: u64) {
        self.set_checksum(0);
        let data = self.buffer.as_ref().get(..usize::from(self.len()));
        let data = data.unwrap_or_default();
        let c = checksum::finish(checksum::combine(pseudo, checksum::sum(data)));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// A DHCP-like datagram header: 68 -> 67, 12 bytes, no checksum.
    const DGRAM: [u8; 12] = [0x00, 0x44, 0x00, 0x43, 0x00, 0x0c, 0x00, 0x00, 1, 2, 3, 4];

    #[test]
    fn parse_and_checksum() {
        let p = UdpPacket::new_checked(&DGRAM[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (68, 67, 12));
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert!(UdpPacket::new_checked(&DGRAM[..11]).is_err());
        assert!(UdpPacket::new_checked(&DGRAM[..7]).is_err());

        let mut b = DGRAM;
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let ph = checksum::pseudo_v4(s, d, 17, 12);
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(ph);
        assert!(p.verify_checksum(ph));
        assert!(!p.verify_checksum(checksum::pseudo_v4(s, s, 17, 12)));
    }
}
