//! ICMPv6 messages (RFC 4443) and the Neighbour Discovery layout bits
//! (RFC 4861) that the NDP service needs.
//!
//! The view checks only the 4-byte common header (type, code, checksum);
//! message bodies are read with bounds-checked helpers such as
//! [`Icmpv6Packet::ndp_target`]. The checksum covers an IPv6
//! pseudo-header, passed in as a partial sum.

use super::checksum;
use super::{get_u8, set_u16, Result, WireError};
use std::net::Ipv6Addr;

mod field {
    use crate::wire::Field;
    pub(crate) const TYPE: usize = 0;
    pub(crate) const CODE: usize = 1;
    pub(crate) const CHECKSUM: usize = 2;
    pub(crate) const BODY: usize = 4;
    /// Target address of a Neighbour Solicitation or Advertisement.
    pub(crate) const NDP_TARGET: Field = 8..24;
}

/// Length of the common header.
pub(crate) const HEADER_LEN: usize = field::BODY;

/// Message types.
pub(crate) mod msg_type {
    pub(crate) const ECHO_REQUEST: u8 = 128;
    pub(crate) const ECHO_REPLY: u8 = 129;
    pub(crate) const ROUTER_SOLICIT: u8 = 133;
    pub(crate) const ROUTER_ADVERT: u8 = 134;
    pub(crate) const NEIGHBOUR_SOLICIT: u8 = 135;
    pub(crate) const NEIGHBOUR_ADVERT: u8 = 136;
}

/// A view of an ICMPv6 message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Icmpv6Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    pub(crate) const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
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

    pub(crate) fn msg_type(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::TYPE)
    }

    pub(crate) fn code(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::CODE)
    }

    /// Target address of an NS or NA, if the message is long enough.
    pub(crate) fn ndp_target(&self) -> Option<Ipv6Addr> {
        let b: [u8; 16] = self
            .buffer
            .as_ref()
            .get(field::NDP_TARGET)?
            .try_into()
            .ok()?;
        Some(Ipv6Addr::from(b))
    }

    pub(crate) fn verify_checksum(&self, pseudo: u64) -> bool {
        checksum::verify(checksum::combine(
            pseudo,
            checksum::sum(self.buffer.as_ref()),
        ))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    pub(crate) fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Computes and stores the checksum over the whole buffer.
    pub(crate) fn fill_checksum(&mut self, pseudo: u64) {
        self.set_checksum(0);
        let c = checksum::finish(checksum::combine(
            pseudo,
            checksum::sum(self.buffer.as_ref()),
        ));
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_target_and_checksum() {
        let mut b = [0u8; 24];
        b[0] = msg_type::NEIGHBOUR_SOLICIT;
        let t: Ipv6Addr = "fe80::1".parse().unwrap();
        b[8..24].copy_from_slice(&t.octets());
        let (s, d): (Ipv6Addr, Ipv6Addr) = (
            "fe80::2".parse().unwrap(),
            "ff02::1:ff00:1".parse().unwrap(),
        );
        let ph = checksum::pseudo_v6(s, d, 58, 24);
        let mut p = Icmpv6Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(ph);
        assert!(p.verify_checksum(ph));
        assert_eq!(p.ndp_target(), Some(t));
        let p = Icmpv6Packet::new_checked(&b[..23]).unwrap();
        assert_eq!(p.ndp_target(), None);
        assert!(Icmpv6Packet::new_checked(&b[..3]).is_err());
    }
}
