//! The configuration protocol of upstream's `pesto`, version 2: what goes
//! over a `-c`/`--conf-path` socket, byte for byte.
//!
//! A session, all integers big-endian, structures packed:
//!
//! ```text
//! server: hello      magic "basil:s\0" (8) | version u32 = 2 |
//!                    pif_name_size u32 = 128 | ifnamsiz u32 = 16
//! server: per table  pif u8 (1 HOST, 3 SPLICE) |
//!                    name [128] (NUL-terminated) | caps u32 | count u32 |
//!                    count x rule
//!         end        pif u8 = 0
//! client: per table  pif u8 | count u32 | count x rule     (only to change)
//!         end        pif u8 = 0
//! server: status     magic "basil:r\0" | status u32 | len u32 | text
//! ```
//!
//! A rule is upstream's `struct fwd_rule`, 56 bytes: listening address (16,
//! IPv4 as `::ffff:a.b.c.d`), target address (16, `::` for "the usual
//! one"), interface name (16, NUL-padded), first, last and target port
//! (u16 each), IP protocol number (u8) and flags (u8: [`FLAG_DUAL_STACK`],
//! [`FLAG_WEAK`], [`FLAG_SCAN`]).
//!
//! A client that only shows the tables closes after reading them. The
//! status message is ours: upstream's server closes without one and
//! upstream's client closes without reading it, so each works with the
//! other; our client says so when it gets none.
//!
//! Everything here is bytes to fields and back: what a rule means, and
//! whether it is allowed, is for [`crate::fwd`] to say.

// The client's bytes are hostile until proven otherwise: no indexing, no
// arithmetic that can overflow.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]

use std::net::{IpAddr, Ipv6Addr};

/// The server's greeting magic.
pub(crate) const MAGIC: [u8; 8] = *b"basil:s\0";
/// Our status message's magic (not upstream's).
pub(crate) const STATUS_MAGIC: [u8; 8] = *b"basil:r\0";
/// The protocol version we speak (1 had no target address; 0 is reserved).
pub(crate) const VERSION: u32 = 2;
/// Size of a table's name field.
pub(crate) const PIF_NAME_SIZE: usize = 128;
/// Size of a rule's interface name field (Linux `IFNAMSIZ`).
pub(crate) const IFNAMSIZ: usize = 16;

/// Length of the greeting.
pub(crate) const HELLO_LEN: usize = 20;
/// Length of a table's header after its pif byte.
pub(crate) const PIF_INFO_LEN: usize = PIF_NAME_SIZE + 8;
/// Length of a rule.
pub(crate) const RULE_LEN: usize = 56;
/// Most rules in one table (upstream's `MAX_FWD_RULES`, ours).
pub(crate) const MAX_RULES: u32 = 255;
/// Most tables in a message (pifs are numbered 1 to 3).
pub(crate) const MAX_TABLES: usize = 3;
/// Longest status text we send or accept.
pub(crate) const STATUS_TEXT_MAX: usize = 4096;

/// The end of a list of tables.
pub(crate) const PIF_NONE: u8 = 0;
/// Sockets on the host (`-t`, `-u`).
pub(crate) const PIF_HOST: u8 = 1;
/// Sockets in pasta's namespace (`-T`, `-U`).
pub(crate) const PIF_SPLICE: u8 = 3;

/// Capability bits of a table.
pub(crate) const CAP_IPV4: u32 = 1 << 0;
pub(crate) const CAP_IPV6: u32 = 1 << 1;
pub(crate) const CAP_TCP: u32 = 1 << 2;
pub(crate) const CAP_UDP: u32 = 1 << 3;
pub(crate) const CAP_SCAN: u32 = 1 << 4;
pub(crate) const CAP_IFNAME: u32 = 1 << 5;

/// Rule flags: any address of both families (the address is `::`).
pub(crate) const FLAG_DUAL_STACK: u8 = 1 << 0;
/// Rule flags: bind failures are not fatal.
pub(crate) const FLAG_WEAK: u8 = 1 << 1;
/// Rule flags: forward only while the other side listens (`auto`).
pub(crate) const FLAG_SCAN: u8 = 1 << 2;

/// What is wrong with a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PestoError {
    #[error("bad magic: not a passt/pasta configuration socket")]
    BadMagic,
    #[error("table {0}: {1} rules (maximum {MAX_RULES})")]
    TooManyRules(u8, u32),
    #[error("more than {MAX_TABLES} tables")]
    TooManyTables,
    #[error("table {0} given twice")]
    DuplicateTable(u8),
    #[error("a name is not NUL-terminated")]
    Unterminated,
    #[error("status text longer than {STATUS_TEXT_MAX} bytes")]
    StatusTooLong,
}

/// Reads big-endian integers off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }
}

/// The server's greeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) version: u32,
    pub(crate) pif_name_size: u32,
    pub(crate) ifnamsiz: u32,
}

impl Hello {
    /// Ours.
    pub(crate) const OURS: Hello = Hello {
        version: VERSION,
        pif_name_size: PIF_NAME_SIZE as u32,
        ifnamsiz: IFNAMSIZ as u32,
    };

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.pif_name_size.to_be_bytes());
        out.extend_from_slice(&self.ifnamsiz.to_be_bytes());
    }

    /// The greeting at the start of `buf`: `Ok(None)` if `buf` is shorter.
    pub(crate) fn decode(buf: &[u8]) -> Result<Option<Hello>, PestoError> {
        let mut r = Reader(buf);
        let Some(magic) = r.array::<8>() else {
            return Ok(None);
        };
        if magic != MAGIC {
            return Err(PestoError::BadMagic);
        }
        let (Some(version), Some(pif_name_size), Some(ifnamsiz)) = (r.u32(), r.u32(), r.u32())
        else {
            return Ok(None);
        };
        Ok(Some(Hello {
            version,
            pif_name_size,
            ifnamsiz,
        }))
    }
}

/// A rule as it travels (upstream's `struct fwd_rule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct RawRule {
    /// Listening address, IPv4-mapped for IPv4.
    pub(crate) addr: [u8; 16],
    /// Target address, all zeroes for none.
    pub(crate) taddr: [u8; 16],
    /// Interface name, NUL-padded.
    pub(crate) ifname: [u8; IFNAMSIZ],
    pub(crate) first: u16,
    pub(crate) last: u16,
    pub(crate) to: u16,
    /// IP protocol number.
    pub(crate) proto: u8,
    pub(crate) flags: u8,
}

impl RawRule {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.addr);
        out.extend_from_slice(&self.taddr);
        out.extend_from_slice(&self.ifname);
        out.extend_from_slice(&self.first.to_be_bytes());
        out.extend_from_slice(&self.last.to_be_bytes());
        out.extend_from_slice(&self.to.to_be_bytes());
        out.push(self.proto);
        out.push(self.flags);
    }

    fn decode(r: &mut Reader<'_>) -> Option<RawRule> {
        Some(RawRule {
            addr: r.array()?,
            taddr: r.array()?,
            ifname: r.array()?,
            first: r.u16()?,
            last: r.u16()?,
            to: r.u16()?,
            proto: r.u8()?,
            flags: r.u8()?,
        })
    }

    /// An address as it travels: IPv4 mapped into IPv6.
    pub(crate) fn pack_addr(a: IpAddr) -> [u8; 16] {
        match a {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        }
    }

    /// An address from the wire: IPv4-mapped ones are IPv4.
    pub(crate) fn unpack_addr(b: [u8; 16]) -> IpAddr {
        Ipv6Addr::from(b).to_canonical()
    }

    /// The interface name, or `None` if empty; `Err` if it fills the
    /// field without a terminating NUL.
    pub(crate) fn ifname(&self) -> Result<Option<&[u8]>, PestoError> {
        let len = self
            .ifname
            .iter()
            .position(|&b| b == 0)
            .ok_or(PestoError::Unterminated)?;
        Ok(self.ifname.get(..len).filter(|n| !n.is_empty()))
    }

    /// `name` as the interface name field (truncated to 15 bytes: callers
    /// check lengths first).
    pub(crate) fn pack_ifname(name: &str) -> [u8; IFNAMSIZ] {
        let mut out = [0u8; IFNAMSIZ];
        for (o, b) in out.iter_mut().zip(name.bytes().take(IFNAMSIZ - 1)) {
            *o = b;
        }
        out
    }
}

/// One table: its pif, name, capabilities and rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PifTable {
    pub(crate) pif: u8,
    pub(crate) name: String,
    pub(crate) caps: u32,
    pub(crate) rules: Vec<RawRule>,
}

/// Writes the server's tables (after the greeting) and the end marker.
pub(crate) fn encode_tables(tables: &[PifTable], out: &mut Vec<u8>) {
    for t in tables {
        out.push(t.pif);
        let mut name = [0u8; PIF_NAME_SIZE];
        for (o, b) in name.iter_mut().zip(t.name.bytes().take(PIF_NAME_SIZE - 1)) {
            *o = b;
        }
        out.extend_from_slice(&name);
        out.extend_from_slice(&t.caps.to_be_bytes());
        out.extend_from_slice(&(t.rules.len() as u32).to_be_bytes());
        for r in &t.rules {
            r.encode(out);
        }
    }
    out.push(PIF_NONE);
}

/// The server's tables from `buf` (after the greeting): `Ok(None)` while
/// incomplete, else the tables and the bytes used.
pub(crate) fn decode_tables(buf: &[u8]) -> Result<Option<(Vec<PifTable>, usize)>, PestoError> {
    let mut r = Reader(buf);
    let mut tables: Vec<PifTable> = Vec::new();
    loop {
        let Some(pif) = r.u8() else {
            return Ok(None);
        };
        if pif == PIF_NONE {
            return Ok(Some((tables, buf.len().saturating_sub(r.0.len()))));
        }
        if tables.len() >= MAX_TABLES {
            return Err(PestoError::TooManyTables);
        }
        if tables.iter().any(|t| t.pif == pif) {
            return Err(PestoError::DuplicateTable(pif));
        }
        let (Some(name), Some(caps), Some(count)) = (r.array::<PIF_NAME_SIZE>(), r.u32(), r.u32())
        else {
            return Ok(None);
        };
        let len = name
            .iter()
            .position(|&b| b == 0)
            .ok_or(PestoError::Unterminated)?;
        let name = String::from_utf8_lossy(name.get(..len).unwrap_or_default()).into_owned();
        if count > MAX_RULES {
            return Err(PestoError::TooManyRules(pif, count));
        }
        let mut rules = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let Some(rule) = RawRule::decode(&mut r) else {
                return Ok(None);
            };
            rules.push(rule);
        }
        tables.push(PifTable {
            pif,
            name,
            caps,
            rules,
        });
    }
}

/// Writes a client's replacement tables and the end marker.
pub(crate) fn encode_update(tables: &[(u8, Vec<RawRule>)], out: &mut Vec<u8>) {
    for (pif, rules) in tables {
        out.push(*pif);
        out.extend_from_slice(&(rules.len() as u32).to_be_bytes());
        for r in rules {
            r.encode(out);
        }
    }
    out.push(PIF_NONE);
}

/// A client's replacement tables from `buf`: `Ok(None)` while incomplete,
/// else the tables (pif and rules) and the bytes used. The pifs are not
/// checked here beyond duplicates and their number.
#[allow(clippy::type_complexity)]
pub(crate) fn decode_update(
    buf: &[u8],
) -> Result<Option<(Vec<(u8, Vec<RawRule>)>, usize)>, PestoError> {
    let mut r = Reader(buf);
    let mut tables: Vec<(u8, Vec<RawRule>)> = Vec::new();
    loop {
        let Some(pif) = r.u8() else {
            return Ok(None);
        };
        if pif == PIF_NONE {
            return Ok(Some((tables, buf.len().saturating_sub(r.0.len()))));
        }
        if tables.len() >= MAX_TABLES {
            return Err(PestoError::TooManyTables);
        }
        if tables.iter().any(|(p, _)| *p == pif) {
            return Err(PestoError::DuplicateTable(pif));
        }
        let Some(count) = r.u32() else {
            return Ok(None);
        };
        if count > MAX_RULES {
            return Err(PestoError::TooManyRules(pif, count));
        }
        let mut rules = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let Some(rule) = RawRule::decode(&mut r) else {
                return Ok(None);
            };
            rules.push(rule);
        }
        tables.push((pif, rules));
    }
}

/// The longest update a client can send: [`MAX_TABLES`] full tables.
pub(crate) const UPDATE_MAX_LEN: usize = MAX_TABLES * (5 + MAX_RULES as usize * RULE_LEN) + 1;

/// Our status message: `ok`, and a text for the user.
pub(crate) fn encode_status(ok: bool, text: &str, out: &mut Vec<u8>) {
    let mut end = text.len().min(STATUS_TEXT_MAX);
    while !text.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    let text = text.get(..end).unwrap_or_default();
    out.extend_from_slice(&STATUS_MAGIC);
    out.extend_from_slice(&u32::from(!ok).to_be_bytes());
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// A status message from `buf`: `Ok(None)` while incomplete.
pub(crate) fn decode_status(buf: &[u8]) -> Result<Option<(bool, String)>, PestoError> {
    let mut r = Reader(buf);
    let Some(magic) = r.array::<8>() else {
        return Ok(None);
    };
    if magic != STATUS_MAGIC {
        return Err(PestoError::BadMagic);
    }
    let (Some(status), Some(len)) = (r.u32(), r.u32()) else {
        return Ok(None);
    };
    if len as usize > STATUS_TEXT_MAX {
        return Err(PestoError::StatusTooLong);
    }
    let Some(text) = r.take(len as usize) else {
        return Ok(None);
    };
    Ok(Some((
        status == 0,
        String::from_utf8_lossy(text).into_owned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The greeting, byte for byte from upstream's `struct pesto_hello`.
    #[test]
    fn hello_bytes() {
        let mut b = Vec::new();
        Hello::OURS.encode(&mut b);
        let want: Vec<u8> = [
            &b"basil:s\0"[..],
            &[0, 0, 0, 2],
            &[0, 0, 0, 128],
            &[0, 0, 0, 16],
        ]
        .concat();
        assert_eq!(b, want);
        assert_eq!(b.len(), HELLO_LEN);
        assert_eq!(Hello::decode(&b).unwrap(), Some(Hello::OURS));
        assert_eq!(Hello::decode(&b[..19]).unwrap(), None);
        let mut bad = b.clone();
        bad[6] = b'x';
        assert_eq!(Hello::decode(&bad), Err(PestoError::BadMagic));
    }

    /// `TCP [::]:8080-8081 => 9090-9091` for both families, weak: upstream's
    /// `struct fwd_rule` layout, ports in network order.
    #[test]
    fn rule_bytes() {
        let rule = RawRule {
            addr: RawRule::pack_addr("192.0.2.1".parse().unwrap()),
            taddr: [0; 16],
            ifname: RawRule::pack_ifname("eth0"),
            first: 8080,
            last: 8081,
            to: 9090,
            proto: 6,
            flags: FLAG_WEAK,
        };
        let mut b = Vec::new();
        rule.encode(&mut b);
        assert_eq!(b.len(), RULE_LEN);
        let mut want = vec![0u8; 56];
        want[10] = 0xff;
        want[11] = 0xff;
        want[12..16].copy_from_slice(&[192, 0, 2, 1]);
        want[32..36].copy_from_slice(b"eth0");
        want[48..50].copy_from_slice(&[0x1f, 0x90]);
        want[50..52].copy_from_slice(&[0x1f, 0x91]);
        want[52..54].copy_from_slice(&[0x23, 0x82]);
        want[54] = 6;
        want[55] = FLAG_WEAK;
        assert_eq!(b, want);
        let mut r = Reader(&b);
        assert_eq!(RawRule::decode(&mut r), Some(rule));
        assert_eq!(
            RawRule::unpack_addr(rule.addr),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(rule.ifname().unwrap(), Some(&b"eth0"[..]));
        let full = RawRule {
            ifname: [b'a'; 16],
            ..rule
        };
        assert_eq!(full.ifname(), Err(PestoError::Unterminated));
    }

    #[test]
    fn tables_round_trip_and_partial_input() {
        let rule = RawRule {
            addr: [0; 16],
            first: 22,
            last: 22,
            to: 22,
            proto: 17,
            flags: FLAG_DUAL_STACK,
            ..Default::default()
        };
        let tables = vec![
            PifTable {
                pif: PIF_HOST,
                name: "HOST".into(),
                caps: CAP_IPV4 | CAP_TCP,
                rules: vec![rule, rule],
            },
            PifTable {
                pif: PIF_SPLICE,
                name: "SPLICE".into(),
                caps: CAP_SCAN,
                rules: vec![],
            },
        ];
        let mut b = Vec::new();
        encode_tables(&tables, &mut b);
        assert_eq!(b.len(), 2 * (1 + PIF_INFO_LEN) + 2 * RULE_LEN + 1);
        assert_eq!(b[0], 1);
        assert_eq!(&b[1..6], b"HOST\0");
        assert_eq!(&b[129..137], &[0, 0, 0, 5, 0, 0, 0, 2]);
        for cut in 0..b.len() {
            assert_eq!(decode_tables(&b[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(decode_tables(&b).unwrap(), Some((tables, b.len())));
    }

    #[test]
    fn update_round_trip_limits_and_garbage() {
        let rule = RawRule {
            first: 1,
            last: 1,
            to: 1,
            proto: 6,
            ..Default::default()
        };
        let upd = vec![(PIF_HOST, vec![rule]), (PIF_SPLICE, vec![])];
        let mut b = Vec::new();
        encode_update(&upd, &mut b);
        assert_eq!(
            &b[..5 + RULE_LEN][..5],
            &[1, 0, 0, 0, 1],
            "pif, then the count in network order"
        );
        for cut in 0..b.len() {
            assert_eq!(decode_update(&b[..cut]).unwrap(), None);
        }
        assert_eq!(decode_update(&b).unwrap(), Some((upd, b.len())));
        // A count over the maximum is refused before any rule is read.
        assert_eq!(
            decode_update(&[1, 0, 0, 1, 0]),
            Err(PestoError::TooManyRules(1, 256))
        );
        assert_eq!(
            decode_update(&[1, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
            Err(PestoError::DuplicateTable(1))
        );
        assert_eq!(
            decode_update(&[1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 3, 0, 0, 0, 0, 4, 0, 0, 0, 0]),
            Err(PestoError::TooManyTables)
        );
        // Whatever the bytes, no panic.
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            let n = (x % 300) as usize;
            let junk: Vec<u8> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = decode_update(&junk);
            let _ = decode_tables(&junk);
            let _ = decode_status(&junk);
            let _ = Hello::decode(&junk);
        }
    }

    #[test]
    fn status_round_trip() {
        let mut b = Vec::new();
        encode_status(false, "no such port", &mut b);
        assert_eq!(
            decode_status(&b).unwrap(),
            Some((false, "no such port".into()))
        );
        assert_eq!(decode_status(&b[..b.len() - 1]).unwrap(), None);
        let mut b = Vec::new();
        encode_status(true, &"é".repeat(3000), &mut b);
        let (ok, text) = decode_status(&b).unwrap().unwrap();
        assert!(ok && text.len() <= STATUS_TEXT_MAX && text.starts_with('é'));
    }
}
