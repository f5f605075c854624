//! Domain names in DNS wire format, for the options that carry them.
//!
//! Several built-in services announce names to the guest: DHCP options 81
//! (client FQDN) and 119 (domain search), DHCPv6 options 24 (domain list)
//! and 39 (client FQDN), and later the DNSSL option of router
//! advertisements. All of them use the RFC 1035 encoding: a sequence of
//! labels, each one a length byte (1 to 63) followed by that many bytes,
//! closed by a zero byte (the root label).
//!
//! Two encoders live here:
//!
//! * [`encode`] writes one uncompressed name: DHCPv6 and NDP forbid
//!   compression, and single names (FQDN options) gain nothing from it;
//! * [`CompressedList`] writes a list of names where a name may end with a
//!   two-byte pointer (`0xc0 | offset`) to an identical suffix written
//!   earlier in the same buffer (RFC 1035 section 4.1.4, as used by the DHCP
//!   domain search option, RFC 3397). Pointers are offsets from the start of
//!   the list.
//!
//! Names come from our own configuration, in presentation form
//! (`example.com`, an optional trailing dot meaning the root). A name with
//! an empty label inside, a label longer than 63 bytes, or an encoding
//! longer than 255 bytes is refused rather than mangled. Nothing here
//! allocates: callers pass the output buffer.

// Every byte parsed here is attacker-controlled (guest input) and a panic
// aborts the process, cutting every flow: no unchecked index or slice, no
// arithmetic that can overflow. (Unit tests index their own fixtures.)
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]

/// Longest label, RFC 1035 section 2.3.4.
const MAX_LABEL: usize = 63;
/// Longest encoded name, including length bytes and the root label.
pub(crate) const MAX_NAME: usize = 255;
/// How many suffixes a [`CompressedList`] remembers as pointer targets.
/// Once full, later names are still encoded, only less compactly.
const MAX_MARKS: usize = 128;

/// The name without its trailing root dot, if any.
fn strip_root(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// Length of `name` in wire format (labels and the final zero byte), or
/// `None` if it cannot be encoded. The root name (`""` or `"."`) is one
/// byte.
pub(crate) fn encoded_len(name: &str) -> Option<usize> {
    let name = strip_root(name);
    if name.is_empty() {
        return Some(1);
    }
    let mut len: usize = 1;
    for label in name.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL {
            return None;
        }
        len = len.checked_add(label.len())?.checked_add(1)?;
    }
    (len <= MAX_NAME).then_some(len)
}

/// Writes `name` uncompressed at the start of `out` and returns the number
/// of bytes written, or `None` (and `out` possibly partly written) if the
/// name is invalid or `out` is too short.
pub(crate) fn encode(name: &str, out: &mut [u8]) -> Option<usize> {
    let len = encoded_len(name)?;
    let mut rest = out.get_mut(..len)?;
    let name = strip_root(name);
    if !name.is_empty() {
        for label in name.split('.') {
            let (n, tail) = std::mem::take(&mut rest).split_first_mut()?;
            *n = label.len() as u8;
            let (text, tail) = tail.split_at_mut_checked(label.len())?;
            text.copy_from_slice(label.as_bytes());
            rest = tail;
        }
    }
    *rest.first_mut()? = 0;
    Some(len)
}

/// Why a name was not added to a [`CompressedList`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// Not a valid name (see the module documentation), or the root name.
    Invalid,
    /// Valid, but the rest of the buffer is too short: the list is
    /// unchanged.
    NoRoom,
}

/// A suffix already in the buffer: where it starts, and its text.
#[derive(Clone, Copy)]
struct Mark<'n> {
    offset: u16,
    suffix: &'n str,
}

/// A list of names with RFC 1035 compression, written into a caller's
/// buffer. Each name is written whole or not at all.
pub(crate) struct CompressedList<'b, 'n> {
    buf: &'b mut [u8],
    len: usize,
    marks: [Mark<'n>; MAX_MARKS],
    n_marks: usize,
}

impl<'b, 'n> CompressedList<'b, 'n> {
    /// An empty list that will use at most `buf.len()` bytes (and at most
    /// 0x3fff, the reach of a pointer).
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        let cap = buf.len().min(0x3fff);
        CompressedList {
            // `cap` is at most `buf.len()`: never the default.
            buf: buf.get_mut(..cap).unwrap_or_default(),
            len: 0,
            marks: [Mark {
                offset: 0,
                suffix: "",
            }; MAX_MARKS],
            n_marks: 0,
        }
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `name`, ending it with a pointer to the longest suffix
    /// already written, if any.
    pub(crate) fn push(&mut self, name: &'n str) -> Result<(), PushError> {
        // Validated as given: `encoded_len` strips the root dot itself, and
        // stripping it twice would take "a.." for "a.".
        if encoded_len(name).is_none() {
            return Err(PushError::Invalid);
        }
        let name = strip_root(name);
        if name.is_empty() {
            return Err(PushError::Invalid);
        }

        let start = self.len;
        let marks_before = self.n_marks;
        let mut pos = start;
        let mut rest = name;
        loop {
            if let Some(target) = self.find(rest) {
                if !self.put(&mut pos, &[0xc0 | (target >> 8) as u8, target as u8]) {
                    return Err(self.rollback(marks_before));
                }
                break;
            }
            if rest.is_empty() {
                if !self.put(&mut pos, &[0]) {
                    return Err(self.rollback(marks_before));
                }
                break;
            }
            let (label, next) = rest.split_once('.').unwrap_or((rest, ""));
            let offset = pos;
            if !self.put(&mut pos, &[label.len() as u8]) || !self.put(&mut pos, label.as_bytes()) {
                return Err(self.rollback(marks_before));
            }
            let next_mark = self.n_marks.checked_add(1);
            if let (Some(m), Some(n)) = (self.marks.get_mut(self.n_marks), next_mark) {
                *m = Mark {
                    offset: offset as u16,
                    suffix: rest,
                };
                self.n_marks = n;
            }
            rest = next;
        }
        self.len = pos;
        Ok(())
    }

    /// The bytes written so far.
    #[cfg(test)]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Offset of an earlier occurrence of `suffix` (case-insensitive).
    fn find(&self, suffix: &str) -> Option<u16> {
        if suffix.is_empty() {
            return None;
        }
        self.marks
            .iter()
            .take(self.n_marks)
            .find(|m| m.suffix.eq_ignore_ascii_case(suffix))
            .map(|m| m.offset)
    }

    /// Copies `bytes` at `*pos` if they fit, advancing `*pos`.
    fn put(&mut self, pos: &mut usize, bytes: &[u8]) -> bool {
        let Some(end) = pos.checked_add(bytes.len()) else {
            return false;
        };
        match self.buf.get_mut(*pos..end) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                *pos = end;
                true
            }
            None => false,
        }
    }

    fn rollback(&mut self, marks_before: usize) -> PushError {
        self.n_marks = marks_before;
        PushError::NoRoom
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_plain_and_trailing_dot() {
        let mut buf = [0u8; 32];
        let n = encode("example.com", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"\x07example\x03com\x00");
        let n = encode("example.com.", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"\x07example\x03com\x00");
        let n = encode(".", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"\x00");
    }

    #[test]
    fn encode_refuses_bad_names() {
        let mut buf = [0u8; 512];
        assert_eq!(encode("a..b", &mut buf), None);
        assert_eq!(encode(".a", &mut buf), None);
        assert_eq!(encode(&"x".repeat(64), &mut buf), None);
        assert!(encode(&"x".repeat(63), &mut buf).is_some());
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(encoded_len(&long), None);
        assert_eq!(encode(&long, &mut buf), None);
        let longest = format!("{}.{}", vec!["a".repeat(63); 3].join("."), "b".repeat(61));
        assert_eq!(encode(&longest, &mut buf), Some(MAX_NAME));
        assert_eq!(encode("example.com", &mut buf[..12]), None);
        assert_eq!(encode("example.com", &mut buf[..13]), Some(13));
    }

    #[test]
    fn compression_points_to_longest_suffix() {
        let mut buf = [0u8; 64];
        let mut list = CompressedList::new(&mut buf);
        list.push("eng.example.com").unwrap();
        list.push("sales.Example.COM.").unwrap();
        list.push("eng.example.com").unwrap();
        list.push("other.org").unwrap();
        assert_eq!(
            list.as_bytes(),
            b"\x03eng\x07example\x03com\x00\x05sales\xc0\x04\xc0\x00\x05other\x03org\x00"
        );
        assert_eq!(list.push(""), Err(PushError::Invalid));
        assert_eq!(list.push("a..b"), Err(PushError::Invalid));
    }

    /// Found by the `dns_name` fuzz target: the root dot was stripped
    /// twice, so "a.b.." (an empty label) went in as "a.b", and ".." as
    /// two zero bytes (a root label, then garbage).
    #[test]
    fn push_refuses_what_encode_refuses() {
        let mut buf = [0u8; 64];
        let mut list = CompressedList::new(&mut buf);
        for bad in ["a.b..", "..", "a..", "...", "."] {
            assert_eq!(encoded_len(bad).filter(|_| bad != "."), None, "{bad:?}");
            assert_eq!(list.push(bad), Err(PushError::Invalid), "{bad:?}");
        }
        assert!(list.is_empty());
        list.push("a.b.").unwrap();
        assert_eq!(list.as_bytes(), b"\x01a\x01b\x00");
    }

    #[test]
    fn no_room_leaves_list_unchanged() {
        let mut buf = [0u8; 20];
        let mut list = CompressedList::new(&mut buf);
        list.push("example.com").unwrap();
        assert_eq!(list.push("a-long-label.net"), Err(PushError::NoRoom));
        assert_eq!(list.len(), 13);
        // The failed name left no mark behind: "net" is not a target.
        list.push("x.com").unwrap();
        assert_eq!(&list.as_bytes()[13..], b"\x01x\xc0\x08");
    }
}
