//! ICMP (v4) messages (RFC 792). Only the 8-byte header is interpreted:
//! type, code, checksum and, for echo messages, identifier and sequence.
//! The checksum covers the whole message (no pseudo-header). ICMPv6 echo
//! messages have the same layout (RFC 4443 4.1), so [`crate::icmp`] reads
//! and patches both through this view (their checksum differs: the frame
//! builder recomputes it).

use super::checksum;
use super::{get_u16, get_u8, set_u16, Result, WireError};

mod field {
    pub(crate) const TYPE: usize = 0;
    pub(crate) const CODE: usize = 1;
    pub(crate) const CHECKSUM: usize = 2;
    pub(crate) const ECHO_IDENT: usize = 4;
    pub(crate) const ECHO_SEQ: usize = 6;
    pub(crate) const DATA: usize = 8;
}

/// Length of the ICMP header (including the "rest of header" word).
pub(crate) const HEADER_LEN: usize = field::DATA;

/// Message types.
pub(crate) mod msg_type {
    pub(crate) const ECHO_REPLY: u8 = 0;
    pub(crate) const ECHO_REQUEST: u8 = 8;
}

/// A view of an ICMP message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IcmpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    pub(crate) const fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
    }

    pub(crate) fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub(crate) fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub(crate) fn into_inner(self) -> T {
        self.buffer
    }

    pub(crate) fn msg_type(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::TYPE)
    }

    pub(crate) fn code(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::CODE)
    }

    #[cfg(test)]
    pub(crate) fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    pub(crate) fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    pub(crate) fn echo_seq(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    pub(crate) fn verify_checksum(&self) -> bool {
        checksum::verify(checksum::sum(self.buffer.as_ref()))
    }

    #[cfg(test)]
    pub(crate) fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    pub(crate) fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    pub(crate) fn set_echo_ident(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, v);
    }

    /// Computes and stores the checksum over the whole buffer.
    pub(crate) fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::finish(checksum::sum(self.buffer.as_ref()));
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echo request, id 0x1234, seq 1, payload "abcd".
    const ECHO: [u8; 12] = [
        0x08, 0x00, 0x21, 0x04, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd',
    ];

    #[test]
    fn parse_echo() {
        let p = IcmpPacket::new_checked(&ECHO[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!((p.echo_ident(), p.echo_seq()), (0x1234, 1));
        assert_eq!(p.data(), b"abcd");
        assert!(IcmpPacket::new_checked(&ECHO[..7]).is_err());
        let mut b = ECHO;
        let mut p = IcmpPacket::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        let c = p.checksum();
        assert_eq!(c, u16::from_be_bytes([ECHO[2], ECHO[3]]));
    }
}
