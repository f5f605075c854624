//! Ethernet II frames (no 802.1Q tags: the tap and the QEMU socket never
//! carry them toward us).
//!
//! `new_checked` only requires the 14-byte header; the payload is whatever
//! follows, including any padding up to the 60-byte minimum frame.

use super::{get_array, get_u16, set_array, set_u16, Mac, Result, WireError};

mod field {
    use crate::wire::Field;
    pub(crate) const DST: Field = 0..6;
    pub(crate) const SRC: Field = 6..12;
    pub(crate) const ETHERTYPE: usize = 12;
    pub(crate) const PAYLOAD: usize = 14;
}

/// Length of the Ethernet header.
pub(crate) const HEADER_LEN: usize = field::PAYLOAD;

/// EtherType values we handle.
pub(crate) mod ethertype {
    pub(crate) const IPV4: u16 = 0x0800;
    pub(crate) const ARP: u16 = 0x0806;
    pub(crate) const IPV6: u16 = 0x86dd;
}

/// A view of an Ethernet frame.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EthernetFrame<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it: for buffers we sized ourselves.
    pub(crate) const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking that it holds the header.
    pub(crate) fn new_checked(buffer: T) -> Result<Self> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Checks that accessors cannot panic.
    pub(crate) fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn dst(&self) -> Mac {
        get_array(self.buffer.as_ref(), field::DST)
    }

    pub(crate) fn src(&self) -> Mac {
        get_array(self.buffer.as_ref(), field::SRC)
    }

    pub(crate) fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    #[cfg(test)]
    pub(crate) fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub(crate) fn set_dst(&mut self, mac: Mac) {
        set_array(self.buffer.as_mut(), field::DST, mac);
    }

    pub(crate) fn set_src(&mut self, mac: Mac) {
        set_array(self.buffer.as_mut(), field::SRC, mac);
    }

    pub(crate) fn set_ethertype(&mut self, t: u16) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE, t);
    }

    #[cfg(test)]
    pub(crate) fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_set() {
        let mut b = [0u8; 16];
        assert_eq!(
            EthernetFrame::new_checked(&b[..13]).unwrap_err(),
            WireError::Truncated
        );
        let mut f = EthernetFrame::new_checked(&mut b[..]).unwrap();
        f.set_dst([1, 2, 3, 4, 5, 6]);
        f.set_src([7, 8, 9, 10, 11, 12]);
        f.set_ethertype(ethertype::IPV6);
        f.payload_mut()[0] = 0xaa;
        let f = EthernetFrame::new_checked(&b[..]).unwrap();
        assert_eq!(f.dst(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(f.src(), [7, 8, 9, 10, 11, 12]);
        assert_eq!(f.ethertype(), 0x86dd);
        assert_eq!(f.payload(), &[0xaa, 0]);
    }
}
