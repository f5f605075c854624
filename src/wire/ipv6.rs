//! IPv6 fixed headers (RFC 8200).
//!
//! `new_checked` guarantees the 40-byte header and that the payload length
//! fits in the buffer; [`Ipv6Packet::payload`] ends at the payload length.
//! Extension headers are not parsed here: the payload starts right after the
//! fixed header, whatever `next_header` says.

use super::{
    get_array, get_u16, get_u32, get_u8, set_array, set_u16, set_u32, set_u8, Result, WireError,
};
use std::net::Ipv6Addr;

mod field {
    use crate::wire::Field;
    pub(crate) const VER_TC_FLOW: usize = 0;
    pub(crate) const PAYLOAD_LEN: usize = 4;
    pub(crate) const NEXT_HEADER: usize = 6;
    pub(crate) const HOP_LIMIT: usize = 7;
    pub(crate) const SRC: Field = 8..24;
    pub(crate) const DST: Field = 24..40;
}

/// Length of the fixed header.
pub(crate) const HEADER_LEN: usize = field::DST.end;

/// A view of an IPv6 packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ipv6Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub(crate) const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
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
        if HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(WireError::BadLength);
        }
        Ok(())
    }

    pub(crate) fn version(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4
    }

    pub(crate) fn traffic_class(&self) -> u8 {
        (get_u16(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4) as u8
    }

    pub(crate) fn flow_label(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    pub(crate) fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    pub(crate) fn next_header(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::NEXT_HEADER)
    }

    pub(crate) fn hop_limit(&self) -> u8 {
        get_u8(self.buffer.as_ref(), field::HOP_LIMIT)
    }

    pub(crate) fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(get_array::<16>(self.buffer.as_ref(), field::SRC))
    }

    pub(crate) fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(get_array::<16>(self.buffer.as_ref(), field::DST))
    }

    #[cfg(test)]
    pub(crate) fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6, traffic class and flow label.
    pub(crate) fn set_version_tc_flow(&mut self, tc: u8, flow: u32) {
        let v = (6 << 28) | (u32::from(tc) << 20) | (flow & 0x000f_ffff);
        set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, v);
    }

    pub(crate) fn set_payload_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::PAYLOAD_LEN, v);
    }

    pub(crate) fn set_next_header(&mut self, v: u8) {
        set_u8(self.buffer.as_mut(), field::NEXT_HEADER, v);
    }

    pub(crate) fn set_hop_limit(&mut self, v: u8) {
        set_u8(self.buffer.as_mut(), field::HOP_LIMIT, v);
    }

    pub(crate) fn set_src(&mut self, a: Ipv6Addr) {
        set_array(self.buffer.as_mut(), field::SRC, a.octets());
    }

    pub(crate) fn set_dst(&mut self, a: Ipv6Addr) {
        set_array(self.buffer.as_mut(), field::DST, a.octets());
    }

    #[cfg(test)]
    pub(crate) fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// Whether `a` is a unicast link-local address (fe80::/10). std's
/// `Ipv6Addr::is_unicast_link_local` does the same from Rust 1.84 on.
pub(crate) const fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local() {
        for (a, ll) in [
            ("fe80::1", true),
            ("febf:ffff::1", true),
            ("fec0::1", false),
            ("fe7f::1", false),
            ("2001:db8::1", false),
            ("::1", false),
        ] {
            assert_eq!(is_link_local(a.parse().unwrap()), ll, "{a}");
        }
    }

    #[test]
    fn round_trip_and_lengths() {
        let mut b = [0u8; 44];
        let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
        p.set_version_tc_flow(0xb8, 0x12345);
        p.set_payload_len(4);
        p.set_next_header(17);
        p.set_hop_limit(255);
        p.set_src("fe80::1".parse().unwrap());
        p.set_dst("2001:db8::2".parse().unwrap());
        p.payload_mut().copy_from_slice(&[9, 8, 7, 6]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.next_header(), 17);
        assert_eq!(p.hop_limit(), 255);
        assert_eq!(p.src(), "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload(), &[9, 8, 7, 6]);
        assert_eq!(
            Ipv6Packet::new_checked(&b[..43]).unwrap_err(),
            WireError::BadLength
        );
        assert_eq!(
            Ipv6Packet::new_checked(&b[..39]).unwrap_err(),
            WireError::Truncated
        );
    }
}
