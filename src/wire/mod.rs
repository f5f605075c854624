//! Wire formats: zero-copy views of the headers we read from the guest and
//! write back to it, a classifier for guest frames, and frame builders.
//!
//! # Theory of operation
//!
//! Every protocol has a view type wrapping a byte buffer (`Packet<T>` in the
//! smoltcp tradition): `T: AsRef<[u8]>` for reading, `T: AsMut<[u8]>` as well
//! for the setters. The contract is the same everywhere:
//!
//! * `new_checked(buf)` validates every length the accessors rely on (fixed
//!   header, length fields that delimit the payload); after it succeeds, no
//!   accessor can panic, whatever the bytes are;
//! * `new_unchecked(buf)` skips the checks and is meant for buffers we size
//!   ourselves (frame builders), never for guest input;
//! * field offsets are named constants in each file's private `field`
//!   module.
//!
//! Views only check *lengths*. Semantic checks (version numbers, checksums,
//! fragments, loopback addresses...) belong to [`classify()`], which turns a
//! raw guest frame into a [`classify::Classified`] or a
//! [`classify::DropReason`] that the caller counts. [`build`] goes the other
//! way: it writes complete Ethernet frames into caller-provided buffers,
//! with no allocation, for the services (ARP, NDP, DHCP) and the L4
//! translators. Header lengths and offsets are defined here only (each
//! view's `HEADER_LEN`, [`build`]'s offsets): callers do not count bytes.

// Every byte parsed here is attacker-controlled (guest input) and a panic
// aborts the process, cutting every flow: no unchecked index or slice, no
// arithmetic that can overflow. (Unit tests index their own fixtures.)
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]

pub mod arp;
pub mod build;
pub(crate) mod checksum;
pub(crate) mod classify;
pub(crate) mod eth;
pub(crate) mod icmp;
pub(crate) mod icmpv6;
pub(crate) mod ipv4;
pub(crate) mod ipv6;
pub(crate) mod pesto;
pub(crate) mod tcp;
pub(crate) mod udp;

pub use classify::{classify, Classified, DropReason, L3, L4};

/// A MAC (Ethernet) address.
pub type Mac = [u8; 6];

/// The Ethernet broadcast address.
pub(crate) const MAC_BROADCAST: Mac = [0xff; 6];

/// Errors of the wire views and builders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the fixed header.
    #[error("buffer shorter than the header")]
    Truncated,
    /// A length field points before the end of the header or past the end
    /// of the buffer.
    #[error("length field inconsistent with the buffer")]
    BadLength,
    /// The output buffer cannot hold the frame to build.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// The frame to build would exceed what its length fields can express.
    #[error("payload too large for the header")]
    PayloadTooLarge,
    /// Source and destination of the frame to build are of different IP
    /// families.
    #[error("source and destination of different families")]
    FamilyMismatch,
}

/// Result of the wire views and builders.
pub type Result<T> = std::result::Result<T, WireError>;

/// A range of bytes in a header.
pub(crate) type Field = std::ops::Range<usize>;

// The accessors below are total: after a view's `check_len` every offset
// they get is in bounds, so the fallbacks (reads as zero, writes dropped)
// are never taken on checked input; they replace the panic of an index,
// which would abort every flow, should a view ever be misused.

/// One byte at `off`; `off` must be in bounds (checked by the caller's
/// `check_len`).
#[inline]
pub(crate) fn get_u8(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// Big-endian 16-bit read; `off + 2` must be in bounds (checked by the
/// caller's `check_len`).
#[inline]
pub(crate) fn get_u16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes(get_array_at(b, off))
}

#[inline]
pub(crate) fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(get_array_at(b, off))
}

#[inline]
pub(crate) fn set_u8(b: &mut [u8], off: usize, v: u8) {
    if let Some(d) = b.get_mut(off) {
        *d = v;
    }
}

#[inline]
pub(crate) fn set_u16(b: &mut [u8], off: usize, v: u16) {
    set_array_at(b, off, v.to_be_bytes());
}

#[inline]
pub(crate) fn set_u32(b: &mut [u8], off: usize, v: u32) {
    set_array_at(b, off, v.to_be_bytes());
}

/// The `N` bytes at `off`.
#[inline]
fn get_array_at<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    b.get(off..)
        .and_then(<[u8]>::first_chunk)
        .copied()
        .unwrap_or([0; N])
}

#[inline]
fn set_array_at<const N: usize>(b: &mut [u8], off: usize, v: [u8; N]) {
    if let Some(d) = b.get_mut(off..).and_then(<[u8]>::first_chunk_mut) {
        *d = v;
    }
}

/// Copies a fixed-size array out of a slice whose length was checked.
#[inline]
pub(crate) fn get_array<const N: usize>(b: &[u8], f: Field) -> [u8; N] {
    get_array_at(b, f.start)
}

/// Writes `v` over the field `f` (of `v`'s length) of a checked slice.
#[inline]
pub(crate) fn set_array<const N: usize>(b: &mut [u8], f: Field, v: [u8; N]) {
    debug_assert_eq!(f.len(), N);
    set_array_at(b, f.start, v);
}

/// A tiny xorshift generator for the fuzz-style tests.
#[cfg(test)]
pub(crate) struct XorShift(pub(crate) u64);

#[cfg(test)]
impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
