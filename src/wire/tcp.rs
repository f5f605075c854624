//! TCP headers (RFC 9293): the TCP translator reads ports, sequence
//! numbers, flags, window and options from guest segments through
//! [`TcpPacket`], and writes the headers of its own segments from a
//! [`TcpRepr`] (through [`crate::wire::build::finish_ip_tcp`]).
//!
//! `new_checked` guarantees the 20-byte header and a data offset between 20
//! bytes and the buffer length, so options and payload are always
//! in-bounds. The option iterator stops at End of List or at the first
//! malformed option (length below 2 or past the header) and never panics.

use super::checksum;
use super::{get_u16, get_u32, get_u8, set_u16, set_u32, Result, WireError};

mod field {
    pub(crate) const SRC_PORT: usize = 0;
    pub(crate) const DST_PORT: usize = 2;
    pub(crate) const SEQ: usize = 4;
    pub(crate) const ACK: usize = 8;
    pub(crate) const OFF_FLAGS: usize = 12;
    pub(crate) const WINDOW: usize = 14;
    pub(crate) const CHECKSUM: usize = 16;
    pub(crate) const URGENT: usize = 18;
    pub(crate) const OPTIONS: usize = 20;
}

/// Length of a header without options.
pub(crate) const HEADER_LEN: usize = field::OPTIONS;
/// Offset of the checksum field, for checksum offload.
pub(crate) const CHECKSUM_OFFSET: usize = field::CHECKSUM;

/// Flag bits, as in the low 9 bits of bytes 12–13.
pub(crate) mod flags {
    pub(crate) const FIN: u16 = 0x001;
    pub(crate) const SYN: u16 = 0x002;
    pub(crate) const RST: u16 = 0x004;
    pub(crate) const PSH: u16 = 0x008;
    pub(crate) const ACK: u16 = 0x010;
    pub(crate) const ALL: u16 = 0x1ff;
}

/// Option kinds.
mod kind {
    pub(crate) const END: u8 = 0;
    pub(crate) const NOP: u8 = 1;
    pub(crate) const MSS: u8 = 2;
    pub(crate) const WSCALE: u8 = 3;
    pub(crate) const SACK_PERMITTED: u8 = 4;
    pub(crate) const TIMESTAMP: u8 = 8;
}

/// Length of the MSS option.
const MSS_OPT_LEN: usize = 4;
/// Length of the window scale option with the NOP we put before it, so
/// that what follows stays 4-byte aligned.
const WSCALE_OPT_LEN: usize = 4;

/// The header of a segment we send, but for the ports (they come with the
/// addresses the frame builder takes). Options: MSS, then NOP and window
/// scale, each if present; we send them on SYNs only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TcpRepr {
    pub(crate) seq: u32,
    pub(crate) ack: u32,
    /// Flag bits, see [`flags`].
    pub(crate) flags: u16,
    /// The window field, as sent (already scaled down).
    pub(crate) window: u16,
    pub(crate) mss: Option<u16>,
    pub(crate) window_scale: Option<u8>,
}

impl TcpRepr {
    /// Header length, options included.
    pub(crate) fn header_len(&self) -> usize {
        match (self.mss.is_some(), self.window_scale.is_some()) {
            (false, false) => HEADER_LEN,
            (true, false) => const { HEADER_LEN + MSS_OPT_LEN },
            (false, true) => const { HEADER_LEN + WSCALE_OPT_LEN },
            (true, true) => const { HEADER_LEN + MSS_OPT_LEN + WSCALE_OPT_LEN },
        }
    }

    /// Writes everything but ports and checksum (left 0) into `p`, which
    /// must hold [`TcpRepr::header_len`] bytes.
    pub(crate) fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut TcpPacket<T>) {
        p.set_seq(self.seq);
        p.set_ack(self.ack);
        p.set_header_len_flags(self.header_len(), self.flags);
        p.set_window(self.window);
        p.set_checksum(0);
        p.set_urgent(0);
        let mut o = p.buffer.as_mut().get_mut(HEADER_LEN..).unwrap_or_default();
        if let Some(mss) = self.mss {
            let [a, b] = mss.to_be_bytes();
            if let Some((opt, rest)) = std::mem::take(&mut o).split_first_chunk_mut() {
                *opt = [kind::MSS, MSS_OPT_LEN as u8, a, b];
                o = rest;
            }
        }
        if let Some(ws) = self.window_scale {
            // NOP, then kind, length (3) and shift.
            if let Some(opt) = o.first_chunk_mut::<WSCALE_OPT_LEN>() {
                *opt = [kind::NOP, kind::WSCALE, 3, ws];
            }
        }
    }
}

/// One TCP option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TcpOption<'a> {
    Nop,
    Mss(u16),
    WindowScale(u8),
    SackPermitted,
    Timestamp {
        value: u32,
        echo: u32,
    },
    /// Any other option, or a known kind with an unexpected length.
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

/// Iterator over the options of a header.
#[derive(Clone, Debug)]
pub(crate) struct TcpOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = TcpOption<'a>;

    fn next(&mut self) -> Option<TcpOption<'a>> {
        let (&k, after) = self.rest.split_first()?;
        match k {
            kind::END => {
                self.rest = &[];
                None
            }
            kind::NOP => {
                self.rest = after;
                Some(TcpOption::Nop)
            }
            _ => {
                let len = usize::from(*after.first()?);
                let Some(data) = self.rest.get(2..len) else {
                    // Length below 2 or past the header: stop here.
                    self.rest = &[];
                    return None;
                };
                self.rest = self.rest.get(len..).unwrap_or(&[]);
                Some(match (k, data) {
                    (kind::MSS, &[a, b]) => TcpOption::Mss(u16::from_be_bytes([a, b])),
                    (kind::WSCALE, &[s]) => TcpOption::WindowScale(s),
                    (kind::SACK_PERMITTED, &[]) => TcpOption::SackPermitted,
                    (kind::TIMESTAMP, &[a, b, c, d, e, f, g, h]) => TcpOption::Timestamp {
                        value: u32::from_be_bytes([a, b, c, d]),
                        echo: u32::from_be_bytes([e, f, g, h]),
                    },
                    _ => TcpOption::Unknown { kind: k, data },
                })
            }
        }
    }
}

/// A view of a TCP segment.
#[derive(Clone, Copy, Debug)]
pub struct TcpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub(crate) const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
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
        let h = self.header_len();
        if h < HEADER_LEN || h > len {
            return Err(WireError::BadLength);
        }
        Ok(())
    }

    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    pub fn seq(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ)
    }

    pub fn ack(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes (data offset × 4).
    pub(crate) fn header_len(&self) -> usize {
        usize::from(get_u8(self.buffer.as_ref(), field::OFF_FLAGS) >> 4) * 4
    }

    /// The flag bits, see [`flags`].
    pub fn flags(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::OFF_FLAGS) & flags::ALL
    }

    pub(crate) fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    pub(crate) fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    pub(crate) fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    pub(crate) fn ack_flag(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    pub(crate) fn window(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WINDOW)
    }

    /// The raw option bytes.
    pub(crate) fn options_raw(&self) -> &[u8] {
        let raw = self.buffer.as_ref().get(HEADER_LEN..self.header_len());
        raw.unwrap_or_default()
    }

    pub(crate) fn options(&self) -> TcpOptions<'_> {
        TcpOptions {
            rest: self.options_raw(),
        }
    }

    /// The MSS option, if present.
    pub(crate) fn mss(&self) -> Option<u16> {
        self.options().find_map(|o| match o {
            TcpOption::Mss(m) => Some(m),
            _ => None,
        })
    }

    /// The window scale option, if present.
    pub(crate) fn window_scale(&self) -> Option<u8> {
        self.options().find_map(|o| match o {
            TcpOption::WindowScale(s) => Some(s),
            _ => None,
        })
    }

    /// Verifies the checksum over the whole buffer (the segment) given the
    /// pseudo-header sum.
    pub(crate) fn verify_checksum(&self, pseudo: u64) -> bool {
        checksum::verify(checksum::combine(
            pseudo,
            checksum::sum(self.buffer.as_ref()),
        ))
    }

    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(self.header_len()..)
            .unwrap_or_default()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    pub(crate) fn set_src_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    pub(crate) fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    pub(crate) fn set_seq(&mut self, v: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ, v);
    }

    pub(crate) fn set_ack(&mut self, v: u32) {
        set_u32(self.buffer.as_mut(), field::ACK, v);
    }

    /// Sets header length (bytes, multiple of 4) and flags together.
    pub(crate) fn set_header_len_flags(&mut self, hlen: usize, f: u16) {
        let v = (((hlen / 4) as u16 & 0xf) << 12) | (f & flags::ALL);
        set_u16(self.buffer.as_mut(), field::OFF_FLAGS, v);
    }

    pub(crate) fn set_window(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::WINDOW, v);
    }

    pub(crate) fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    pub(crate) fn set_urgent(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::URGENT, v);
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

    /// A SYN from Linux: 40000 -> 80, MSS 1460, SACK permitted, timestamps,
    /// NOP, window scale 7.
    const SYN: [u8; 40] = [
        0x9c, 0x40, 0x00, 0x50, 0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01,
        0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    #[test]
    fn parse_syn_options() {
        let p = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 80));
        assert_eq!(p.seq(), 0x1122_3344);
        assert!(p.syn() && !p.ack_flag() && !p.fin() && !p.rst());
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.window(), 64240);
        assert_eq!(p.mss(), Some(1460));
        assert_eq!(p.window_scale(), Some(7));
        let opts: Vec<_> = p.options().collect();
        assert_eq!(
            opts,
            [
                TcpOption::Mss(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamp {
                    value: 0x10203,
                    echo: 0
                },
                TcpOption::Nop,
                TcpOption::WindowScale(7),
            ]
        );
        assert!(p.payload().is_empty());
    }

    #[test]
    fn malformed_options_stop() {
        let mut b = SYN;
        b[21] = 0; // MSS length 0
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.options().count(), 0);
        let mut b = SYN;
        b[37] = 9; // window scale running past the header
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.window_scale(), None);
        assert_eq!(p.mss(), Some(1460));
    }

    #[test]
    fn bad_offsets() {
        let mut b = SYN;
        b[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&b[..]).unwrap_err(),
            WireError::BadLength
        );
        assert_eq!(
            TcpPacket::new_checked(&SYN[..39]).unwrap_err(),
            WireError::BadLength
        );
        assert_eq!(
            TcpPacket::new_checked(&SYN[..19]).unwrap_err(),
            WireError::Truncated
        );
    }
}
