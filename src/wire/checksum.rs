//! The Internet checksum (RFC 1071): one's-complement sum of 16-bit words.
//!
//! Sums are accumulated in a `u64`, eight bytes at a time, and folded to 16
//! bits only at the end, so partial sums (a pseudo-header, then the L4
//! header and payload) can be added freely with [`combine`]. A partial sum
//! starts at an even offset of the checksummed data: callers sum
//! whole headers or the remainder of a message, never an odd split.
//!
//! * [`sum`]: partial sum of a byte slice (odd trailing byte padded with
//!   zero);
//! * [`pseudo_v4`], [`pseudo_v6`]: partial sums of the pseudo-headers of
//!   RFC 768 / RFC 8200 section 8.1;
//! * [`finish`]: fold and complement, giving the value for the header;
//! * [`verify`]: a region that contains its own checksum sums to `0xffff`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Partial one's-complement sum of `data`, as a wide accumulator.
///
/// The bulk goes 32 bytes at a time into eight independent lanes of
/// native-endian 32-bit words (no carries to handle, so the compiler
/// vectorises it); the one's-complement sum does not depend on byte order
/// (RFC 1071 section 2), so the folded lanes only need a byte swap on
/// little-endian machines. The tail is summed in network order.
pub(crate) fn sum(data: &[u8]) -> u64 {
    let (blocks, rest) = data.as_chunks::<32>();
    let mut lanes = [0u64; 8];
    for b in blocks {
        let (words, _) = b.as_chunks::<4>();
        for (lane, w) in lanes.iter_mut().zip(words) {
            // At most 2^32 - 1 per block: no wrap below 2^32 blocks
            // (128 GiB), far beyond any frame.
            *lane = lane.wrapping_add(u64::from(u32::from_ne_bytes(*w)));
        }
    }
    let native = lanes.iter().fold(0, |a, &l| add(a, l));
    let mut acc = u64::from(u16::from_be(fold(native)));
    let (chunks, rest) = rest.as_chunks::<8>();
    for c in chunks {
        acc = add(acc, u64::from_be_bytes(*c));
    }
    let (pairs, last) = rest.as_chunks::<2>();
    for p in pairs {
        acc = add(acc, u64::from(u16::from_be_bytes(*p)));
    }
    if let [last] = last {
        acc = add(acc, u64::from(*last) << 8);
    }
    acc
}

/// Adds two partial sums.
#[inline]
pub(crate) fn combine(a: u64, b: u64) -> u64 {
    add(a, b)
}

#[inline]
fn add(a: u64, b: u64) -> u64 {
    // End-around carry: `s` is at most 2^64 - 2 when `carry` is set.
    let (s, carry) = a.overflowing_add(b);
    s.wrapping_add(u64::from(carry))
}

/// Folds a partial sum to 16 bits (not complemented).
#[inline]
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        // Both halves are below 2^48: no wrap.
        acc = (acc & 0xffff).wrapping_add(acc >> 16);
    }
    acc as u16
}

/// The value to store in a checksum field for this partial sum.
#[inline]
pub(crate) fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// Whether data including its checksum field sums correctly.
#[inline]
pub(crate) fn verify(acc: u64) -> bool {
    fold(acc) == 0xffff
}

/// Partial sum of the IPv4 pseudo-header.
pub(crate) fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_len: u16) -> u64 {
    let s = u64::from(u32::from(src));
    let d = u64::from(u32::from(dst));
    // Four values below 2^32: no wrap.
    s.wrapping_add(d)
        .wrapping_add(u64::from(proto))
        .wrapping_add(u64::from(l4_len))
}

/// Partial sum of the IPv6 pseudo-header.
pub(crate) fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, l4_len: u32) -> u64 {
    let a = combine(sum(&src.octets()), sum(&dst.octets()));
    combine(a, u64::from(l4_len).wrapping_add(u64::from(next_header)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: plain 16-bit word sum.
    fn naive(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for c in data.chunks(2) {
            let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
            acc += u32::from(w);
            // Both halves are below 2^48: no wrap.
            acc = (acc & 0xffff).wrapping_add(acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn matches_naive_sum_for_all_lengths() {
        let mut rng = crate::wire::XorShift(0x1234_5678);
        let data: Vec<u8> = (0..300).map(|_| rng.next() as u8).collect();
        for n in 0..data.len() {
            assert_eq!(finish(sum(&data[..n])), naive(&data[..n]), "len {n}");
        }
        let ones = [0xffu8; 64];
        assert_eq!(finish(sum(&ones)), naive(&ones));
    }

    #[test]
    fn matches_naive_sum_for_large_buffers() {
        let mut rng = crate::wire::XorShift(0x9abc_def0);
        let data: Vec<u8> = (0..65536).map(|_| rng.next() as u8).collect();
        for n in [31, 32, 33, 1400, 1401, 32000, 65507, 65535, 65536] {
            for off in [0, 2, 6] {
                let d = &data[off..n.min(data.len() - off) + off];
                assert_eq!(finish(sum(d)), naive(d), "len {n} offset {off}");
            }
        }
        let ones = [0xffu8; 65536];
        assert_eq!(finish(sum(&ones)), naive(&ones));
    }

    /// Throughput of [`sum`] over a 64 KiB buffer (run on demand: `cargo
    /// test --release --lib checksum_throughput -- --ignored --nocapture`).
    #[test]
    #[ignore = "timing, not a check"]
    fn checksum_throughput() {
        let mut rng = crate::wire::XorShift(0x0bad_cafe);
        let data: Vec<u8> = (0..65536).map(|_| rng.next() as u8).collect();
        let rounds = 20_000u32;
        let mut best = std::time::Duration::MAX;
        let mut acc = 0;
        // The out-of-line copy, as callers in other modules get it: what
        // the timing loop would inline depends on this loop, not on `sum`.
        let f = std::hint::black_box(sum as fn(&[u8]) -> u64);
        for _ in 0..5 {
            let t = std::time::Instant::now();
            for _ in 0..rounds {
                acc = combine(acc, f(std::hint::black_box(&data)));
            }
            best = best.min(t.elapsed());
        }
        let ns = best.as_nanos() as f64 / f64::from(rounds);
        println!(
            "sum(64 KiB): {ns:.0} ns, {:.1} GB/s ({acc:x})",
            65536.0 / ns
        );
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d)), 0xddf2);
    }
}
