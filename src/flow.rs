//! Flow table: one preallocated table of flows for every protocol.
//!
//! # Theory of operation
//!
//! A *flow* is one conversation that passt-rs relays: a TCP connection
//! between the guest and a host socket, a spliced TCP connection between two
//! sockets (pasta), a UDP "connection" (a pair of addresses and ports seen
//! within a timeout), or an ICMP echo (ping) flow. Whatever the protocol, the
//! table stores the per-protocol state `T` in one slot, addressed by a
//! 32-bit *flow index*, so that epoll references and timers can name a flow
//! with a plain integer.
//!
//! The table names no protocol: it is generic over its slot type, an enum
//! of every protocol's flow defined above the protocols (`ctx::Flow`),
//! which implements [`FlowKind`] for each. A protocol takes the table as
//! `dyn` [`ProtoFlows`] of its own flow type: the shared index, and its
//! own flows. So the protocols import the table, not each other, and the
//! table imports none of them.
//!
//! A flow has two *sides*: `INISIDE` (0), the side that initiated it, and
//! `TGTSIDE` (1), the side we forwarded it to. Each side lives on a packet
//! interface, a [`Pif`]: the guest ([`Pif::Tap`]), host sockets
//! ([`Pif::Host`]), or sockets inside pasta's namespace ([`Pif::Splice`]).
//! A [`FlowSide`] describes one side as seen on its interface: the
//! *endpoint* (`eaddr`, `eport`: the peer) and *our* address and port there
//! (`oaddr`, `oport`). Address translation happens between the two sides,
//! so they usually differ.
//!
//! # Lookups
//!
//! Packets arriving from the guest, or datagrams arriving on a shared
//! socket, must find their flow from headers alone. A [`FlowKey`] (protocol,
//! pif and side addresses) is hashed into an open-addressing hash table of
//! `u32` references to (flow index, side); each flow is indexed by up to two
//! keys, one per side (UDP inserts both, TCP and ping flows the tap side).
//! The table uses linear probing, and deletion shifts the rest of the probe
//! cluster back, so there are no tombstones and a lookup stops at the first
//! empty bucket. Keys compare and hash with IPv4 addresses normalised to
//! IPv4-mapped IPv6, so both spellings of an address find the same flow.
//!
//! The guest chooses most of what goes into a key. The hash is SipHash-1-3
//! with a random 128-bit key drawn at start-up, so the guest cannot pick
//! keys that all land in one cluster and turn lookups into linear scans.
//!
//! # Capacity and memory
//!
//! [`FLOW_MAX`] (2^17 - 1, as upstream) flows at most. Everything is
//! reserved in [`FlowTable::new`] and never reallocated: slots are pushed
//! into reserved space on first use and reused afterwards through a free
//! list, and the bucket array and the occupancy bitmap are allocated zeroed,
//! so an idle table touches little of its memory. The bucket array has at
//! least four buckets per flow (two keys per flow at most): the load factor
//! never exceeds one half and an empty bucket always ends a probe.
//!
//! When the table is full, [`FlowTable::insert`] returns [`TableFull`] and
//! the caller refuses the new flow: the guest gets a RST (TCP) or nothing
//! (UDP, ping), an accepted host connection is closed. Existing flows are
//! unaffected; there is no eviction.
//!
//! # Contract
//!
//! A flow's keys are removed with [`FlowTable::hash_remove`] before the flow
//! itself is removed with [`FlowTable::remove`]; `remove` unhooks any key
//! still present as a safety net, so no key ever refers to a reused slot.

use std::cell::Cell;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

/// Maximum number of flows, as upstream: 2^17 - 1.
pub(crate) const FLOW_MAX: usize = 131071;

/// The side of a flow that initiated it.
#[cfg(test)]
pub(crate) const INISIDE: u8 = 0;
/// The side of a flow we forwarded it to.
#[cfg(test)]
pub(crate) const TGTSIDE: u8 = 1;

/// Largest capacity [`FlowTable::new`] accepts: a bucket packs the flow
/// index and the side in 32 bits, and the bucket array is 4 x capacity.
pub(crate) const CAPACITY_LIMIT: usize = 1 << 28;

/// IP protocol numbers, as in [`FlowKey::proto`].
pub(crate) const IPPROTO_ICMP: u8 = 1;
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;
pub(crate) const IPPROTO_ICMPV6: u8 = 58;

/// Name of IP protocol `proto` for log messages.
pub(crate) fn proto_name(proto: u8) -> &'static str {
    match proto {
        IPPROTO_ICMP => "ICMP",
        IPPROTO_TCP => "TCP",
        IPPROTO_UDP => "UDP",
        IPPROTO_ICMPV6 => "ICMPv6",
        _ => "?",
    }
}

/// Packet interface: where one side of a flow lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Pif {
    /// No interface (side not set up yet).
    #[default]
    None = 0,
    /// Host sockets, in the original network namespace.
    Host = 1,
    /// The guest: tap device, QEMU socket or vhost-user.
    Tap = 2,
    /// Sockets inside pasta's target namespace.
    Splice = 3,
}

impl Pif {
    /// Name for log messages, as upstream's `pif_name()`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Pif::None => "<none>",
            Pif::Host => "HOST",
            Pif::Tap => "TAP",
            Pif::Splice => "SPLICE",
        }
    }
}

/// One side of a flow as seen from one interface: endpoint (the peer) and
/// our own address/port on that interface.
///
/// Equality and hashing treat an IPv4 address and its IPv4-mapped IPv6 form
/// as the same address.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlowSide {
    /// Endpoint (peer) address.
    pub(crate) eaddr: IpAddr,
    /// Endpoint (peer) port, or ICMP echo identifier.
    pub(crate) eport: u16,
    /// Our address on this interface (may be unspecified).
    pub(crate) oaddr: IpAddr,
    /// Our port on this interface, or ICMP echo identifier.
    pub(crate) oport: u16,
}

/// An address as 16 bytes of IPv6, IPv4 as IPv4-mapped.
fn octets16(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

impl FlowSide {
    /// The side with addresses in canonical form: IPv4-mapped IPv6
    /// addresses become IPv4.
    #[cfg(test)]
    pub(crate) fn canonical(&self) -> FlowSide {
        FlowSide {
            eaddr: IpAddr::V6(std::net::Ipv6Addr::from(octets16(self.eaddr))).to_canonical(),
            eport: self.eport,
            oaddr: IpAddr::V6(std::net::Ipv6Addr::from(octets16(self.oaddr))).to_canonical(),
            oport: self.oport,
        }
    }
}

impl PartialEq for FlowSide {
    fn eq(&self, other: &Self) -> bool {
        self.eport == other.eport
            && self.oport == other.oport
            && octets16(self.eaddr) == octets16(other.eaddr)
            && octets16(self.oaddr) == octets16(other.oaddr)
    }
}

impl Eq for FlowSide {}

impl Hash for FlowSide {
    fn hash<H: Hasher>(&self, state: &mut H) {
        octets16(self.eaddr).hash(state);
        self.eport.hash(state);
        octets16(self.oaddr).hash(state);
        self.oport.hash(state);
    }
}

/// What a flow is looked up by: protocol, interface and side addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FlowKey {
    /// IP protocol number (`IPPROTO_TCP`, `IPPROTO_UDP`, `IPPROTO_ICMP`...).
    pub(crate) proto: u8,
    /// Interface the side is on.
    pub(crate) pif: Pif,
    /// Addresses and ports as seen on that interface.
    pub(crate) side: FlowSide,
}

/// Length of [`FlowKey::hash_input`].
const KEY_BYTES: usize = 2 + 16 + 2 + 16 + 2;

impl FlowKey {
    /// The bytes the table hashes: proto, pif, eaddr, eport, oaddr, oport,
    /// addresses as IPv6 (IPv4-mapped), ports in network order.
    fn hash_input(&self) -> [u8; KEY_BYTES] {
        let mut b = [0u8; KEY_BYTES];
        b[0] = self.proto;
        b[1] = self.pif as u8;
        b[2..18].copy_from_slice(&octets16(self.side.eaddr));
        b[18..20].copy_from_slice(&self.side.eport.to_be_bytes());
        b[20..36].copy_from_slice(&octets16(self.side.oaddr));
        b[36..38].copy_from_slice(&self.side.oport.to_be_bytes());
        b
    }
}

/// The table has no free slot for a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Flow table full")]
pub(crate) struct TableFull;

/// A key indexing a flow side, with its hash kept for back-shifting.
#[derive(Clone, Copy, Debug)]
struct Hooked {
    key: FlowKey,
    hash: u64,
}

/// One slot of the table.
enum Slot<T> {
    Used {
        value: T,
        /// Key indexing each side, if any.
        keys: [Option<Hooked>; 2],
        /// The guest queue pair its tap-side traffic last arrived on
        /// (vhost-user multi-queue): frames toward the guest leave there.
        /// Set by lookups, which only read the table.
        pair: Cell<u8>,
    },
    Free {
        /// Next free slot, or [`NO_SLOT`].
        next: u32,
    },
}

/// End of the free list.
const NO_SLOT: u32 = u32::MAX;

/// An empty bucket. Occupied buckets hold `(index << 1 | side) + 1`, so a
/// zeroed array is an empty table and its pages are touched only when used.
const EMPTY: u32 = 0;

fn pack(idx: u32, side: u8) -> u32 {
    ((idx << 1) | u32::from(side & 1)) + 1
}

fn unpack(bucket: u32) -> (u32, u8) {
    let v = bucket - 1;
    (v >> 1, (v & 1) as u8)
}

/// Preallocated table of flows of type `T`, with a keyed hash index.
pub(crate) struct FlowTable<T> {
    slots: Vec<Slot<T>>,
    capacity: usize,
    len: usize,
    /// Head of the list of freed slots below `slots.len()`.
    free_head: u32,
    /// One bit per slot, set if used: lets [`FlowTable::indices`] skip free
    /// runs 64 slots at a time.
    used: Vec<u64>,
    /// Power-of-two array of packed (index, side) references.
    buckets: Vec<u32>,
    mask: usize,
    sip_key: (u64, u64),
    /// The queue pair of the guest frames being handled now.
    tap_pair: u8,
}

/// A random SipHash key: getrandom, or std's randomly seeded hasher if the
/// kernel cannot provide randomness.
fn random_key() -> (u64, u64) {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_ok() {
        let v = u128::from_ne_bytes(b);
        return (v as u64, (v >> 64) as u64);
    }
    let s = std::collections::hash_map::RandomState::new();
    (s.hash_one(0u8), s.hash_one(1u8))
}

impl<T> FlowTable<T> {
    /// A table for up to `capacity` flows (at most [`CAPACITY_LIMIT`]),
    /// hashing with a random key.
    pub(crate) fn new(capacity: usize) -> Self {
        let (k0, k1) = random_key();
        Self::new_with_key(capacity, k0, k1)
    }

    /// A table hashing with a fixed key: for tests and reproducible runs
    /// only, as a known key lets the guest force collisions.
    pub(crate) fn new_with_key(capacity: usize, k0: u64, k1: u64) -> Self {
        let capacity = capacity.min(CAPACITY_LIMIT);
        let nbuckets = (capacity * 4).next_power_of_two().max(4);
        FlowTable {
            slots: Vec::with_capacity(capacity),
            capacity,
            len: 0,
            free_head: NO_SLOT,
            used: vec![0; capacity.div_ceil(64)],
            buckets: vec![EMPTY; nbuckets],
            mask: nbuckets - 1,
            sip_key: (k0, k1),
            tap_pair: 0,
        }
    }

    /// Maximum number of flows.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of flows in the table.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no flow.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores a new flow, returning its index: a freed slot if there is
    /// one, a never used one otherwise.
    pub(crate) fn insert(&mut self, value: T) -> Result<u32, TableFull> {
        if self.len >= self.capacity {
            return Err(TableFull);
        }
        let used = Slot::Used {
            value,
            keys: [None, None],
            pair: Cell::new(self.tap_pair),
        };
        let idx = match self.slots.get(self.free_head as usize) {
            Some(&Slot::Free { next }) => {
                let idx = self.free_head;
                self.free_head = next;
                self.slots[idx as usize] = used;
                idx
            }
            _ => {
                // No free slot below the high-water mark: len == slots.len()
                // < capacity, so this stays within the reserved space.
                self.slots.push(used);
                (self.slots.len() - 1) as u32
            }
        };
        self.used[idx as usize / 64] |= 1 << (idx % 64);
        self.len += 1;
        Ok(idx)
    }

    /// The flow at `idx`, if that slot is used.
    pub(crate) fn get(&self, idx: u32) -> Option<&T> {
        match self.slots.get(idx as usize) {
            Some(Slot::Used { value, .. }) => Some(value),
            _ => None,
        }
    }

    /// The flow at `idx`, mutable, if that slot is used.
    pub(crate) fn get_mut(&mut self, idx: u32) -> Option<&mut T> {
        match self.slots.get_mut(idx as usize) {
            Some(Slot::Used { value, .. }) => Some(value),
            _ => None,
        }
    }

    /// The key indexing side `side` of flow `idx`, if any.
    #[cfg(test)]
    pub(crate) fn key(&self, idx: u32, side: u8) -> Option<&FlowKey> {
        self.hooked(idx, side).map(|h| &h.key)
    }

    /// Removes the flow at `idx` and frees its slot for reuse.
    ///
    /// Callers remove the flow's keys with [`FlowTable::hash_remove`]
    /// first; keys still present are removed here, so that no key refers to
    /// the slot once it is reused.
    pub(crate) fn remove(&mut self, idx: u32) -> Option<T> {
        let keys = match self.slots.get(idx as usize) {
            Some(Slot::Used { keys, .. }) => *keys,
            _ => return None,
        };
        for h in keys.into_iter().flatten() {
            self.unhook(&h.key, h.hash);
        }
        let free = Slot::Free {
            next: self.free_head,
        };
        let Slot::Used { value, .. } = std::mem::replace(&mut self.slots[idx as usize], free)
        else {
            return None;
        };
        self.free_head = idx;
        self.used[idx as usize / 64] &= !(1 << (idx % 64));
        self.len -= 1;
        Some(value)
    }

    /// Indexes side `side` (0, `INISIDE`, or 1, `TGTSIDE`) of flow `idx` by
    /// `key`.
    ///
    /// A side has one key: a previous key of that side is removed. A key
    /// indexes one flow side: if `key` already indexes another one, it is
    /// moved here (callers look up first, this is not expected). Does
    /// nothing if `idx` is not a used slot or `side` is not 0 or 1.
    pub(crate) fn hash_insert(&mut self, key: &FlowKey, idx: u32, side: u8) {
        debug_assert!(side <= 1, "flow side {side}");
        debug_assert!(self.get(idx).is_some(), "hash_insert on free slot {idx}");
        if side > 1 || self.get(idx).is_none() {
            return;
        }
        let hash = self.hash(key);
        self.unhook(key, hash);
        if let Some(old) = self.hooked(idx, side).copied() {
            self.unhook(&old.key, old.hash);
        }
        if let Some(Slot::Used { keys, .. }) = self.slots.get_mut(idx as usize) {
            keys[usize::from(side)] = Some(Hooked { key: *key, hash });
        }
        // At most 2 x capacity keys in at least 4 x capacity buckets: there
        // is always an empty bucket.
        let mut i = hash as usize & self.mask;
        while self.buckets[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.buckets[i] = pack(idx, side);
    }

    /// Removes `key` from the index, if present.
    pub(crate) fn hash_remove(&mut self, key: &FlowKey) {
        let hash = self.hash(key);
        self.unhook(key, hash);
    }

    /// The flow index and side that `key` indexes. A guest-side key
    /// also records the queue pair of the frame being handled.
    pub(crate) fn lookup(&self, key: &FlowKey) -> Option<(u32, u8)> {
        let hash = self.hash(key);
        let (idx, side) = self.find(key, hash).map(|i| unpack(self.buckets[i]))?;
        if key.pif == Pif::Tap {
            if let Some(Slot::Used { pair, .. }) = self.slots.get(idx as usize) {
                pair.set(self.tap_pair);
            }
        }
        Some((idx, side))
    }

    /// Sets the queue pair of the guest frames handled next.
    pub(crate) fn set_tap_pair(&mut self, pair: u8) {
        self.tap_pair = pair;
    }

    /// The queue pair flow `idx` talks to the guest on.
    pub(crate) fn pair(&self, idx: u32) -> u8 {
        match self.slots.get(idx as usize) {
            Some(Slot::Used { pair, .. }) => pair.get(),
            _ => 0,
        }
    }

    /// The first used slot at or after `from`: lets a caller walk the table
    /// while modifying it.
    pub(crate) fn next_index(&self, from: u32) -> Option<u32> {
        let end = self.slots.len();
        let mut i = from as usize;
        while i < end {
            let word = self.used[i / 64] >> (i % 64);
            if word != 0 {
                let found = i + word.trailing_zeros() as usize;
                return (found < end).then_some(found as u32);
            }
            i = (i / 64 + 1) * 64;
        }
        None
    }

    /// Indices of used slots, in increasing order, skipping free runs 64
    /// slots at a time.
    #[cfg(test)]
    pub(crate) fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors(self.next_index(0), move |&i| self.next_index(i + 1))
    }

    fn hash(&self, key: &FlowKey) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.sip_key.0, self.sip_key.1);
        h.write(&key.hash_input());
        h.finish()
    }

    fn hooked(&self, idx: u32, side: u8) -> Option<&Hooked> {
        match self.slots.get(idx as usize) {
            Some(Slot::Used { keys, .. }) => keys.get(usize::from(side))?.as_ref(),
            _ => None,
        }
    }

    /// Bucket holding `key`, if present.
    fn find(&self, key: &FlowKey, hash: u64) -> Option<usize> {
        let mut i = hash as usize & self.mask;
        // Bounded for robustness; an empty bucket ends every probe.
        for _ in 0..self.buckets.len() {
            let b = self.buckets[i];
            if b == EMPTY {
                return None;
            }
            let (idx, side) = unpack(b);
            if self
                .hooked(idx, side)
                .is_some_and(|h| h.hash == hash && h.key == *key)
            {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Removes `key` from the index and from the flow side it indexes.
    fn unhook(&mut self, key: &FlowKey, hash: u64) {
        let Some(pos) = self.find(key, hash) else {
            return;
        };
        let (idx, side) = unpack(self.buckets[pos]);
        if let Some(Slot::Used { keys, .. }) = self.slots.get_mut(idx as usize) {
            keys[usize::from(side)] = None;
        }
        self.delete_bucket(pos);
    }

    /// Empties bucket `hole`, shifting later entries of its cluster back so
    /// that each stays reachable from its home bucket without tombstones.
    fn delete_bucket(&mut self, mut hole: usize) {
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let b = self.buckets[j];
            if b == EMPTY {
                break;
            }
            let (idx, side) = unpack(b);
            let Some(home) = self.hooked(idx, side).map(|h| h.hash as usize & self.mask) else {
                continue;
            };
            // The entry at j may fill the hole unless its home lies in the
            // cyclic range (hole, j]: then the hole is before its home.
            if j.wrapping_sub(home) & self.mask >= j.wrapping_sub(hole) & self.mask {
                self.buckets[hole] = b;
                hole = j;
            }
        }
        self.buckets[hole] = EMPTY;
    }
}

/// How the table's flow type `F` holds the flows of one protocol, `T`.
///
/// The table is generic: it knows no protocol. The type of its slots is
/// an enum of every protocol's flow, defined above the protocols (in
/// [`crate::ctx`]), which implements this for each of them; a protocol
/// sees the table as [`ProtoFlows`] of its own flow type.
pub(crate) trait FlowKind<T>: Sized {
    /// `t` as a flow of the table.
    fn wrap(t: T) -> Self;
    /// The flow, if it is a `T`.
    fn peek(&self) -> Option<&T>;
    fn peek_mut(&mut self) -> Option<&mut T>;
}

/// The flow table as one protocol sees it: the shared hash index, and
/// the flows of its type `T` (other protocols' flows are `None`).
/// Protocols take it as `dyn ProtoFlows<T>`, so that they need not name
/// the table's flow type, which names them.
pub(crate) trait ProtoFlows<T> {
    /// Maximum number of flows, of any protocol.
    fn capacity(&self) -> usize;
    /// Number of flows, of any protocol.
    fn len(&self) -> usize;
    /// Stores a new flow: see [`FlowTable::insert`].
    fn insert(&mut self, t: T) -> Result<u32, TableFull>;
    /// The flow at `idx`, if it is a `T`.
    fn get(&self, idx: u32) -> Option<&T>;
    fn get_mut(&mut self, idx: u32) -> Option<&mut T>;
    /// Frees the slot of flow `idx`: see [`FlowTable::remove`].
    fn remove(&mut self, idx: u32);
    /// See [`FlowTable::hash_insert`].
    fn hash_insert(&mut self, key: &FlowKey, idx: u32, side: u8);
    /// See [`FlowTable::hash_remove`].
    fn hash_remove(&mut self, key: &FlowKey);
    /// See [`FlowTable::lookup`].
    fn lookup(&self, key: &FlowKey) -> Option<(u32, u8)>;
    /// See [`FlowTable::next_index`].
    fn next_index(&self, from: u32) -> Option<u32>;
}

impl<F: FlowKind<T>, T> ProtoFlows<T> for FlowTable<F> {
    fn capacity(&self) -> usize {
        FlowTable::capacity(self)
    }

    fn len(&self) -> usize {
        FlowTable::len(self)
    }

    fn insert(&mut self, t: T) -> Result<u32, TableFull> {
        FlowTable::insert(self, F::wrap(t))
    }

    fn get(&self, idx: u32) -> Option<&T> {
        FlowTable::get(self, idx)?.peek()
    }

    fn get_mut(&mut self, idx: u32) -> Option<&mut T> {
        FlowTable::get_mut(self, idx)?.peek_mut()
    }

    fn remove(&mut self, idx: u32) {
        FlowTable::remove(self, idx);
    }

    fn hash_insert(&mut self, key: &FlowKey, idx: u32, side: u8) {
        FlowTable::hash_insert(self, key, idx, side)
    }

    fn hash_remove(&mut self, key: &FlowKey) {
        FlowTable::hash_remove(self, key)
    }

    fn lookup(&self, key: &FlowKey) -> Option<(u32, u8)> {
        FlowTable::lookup(self, key)
    }

    fn next_index(&self, from: u32) -> Option<u32> {
        FlowTable::next_index(self, from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const TCP: u8 = 6;
    const UDP: u8 = 17;

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn key4(proto: u8, pif: Pif, e: [u8; 4], eport: u16, o: [u8; 4], oport: u16) -> FlowKey {
        FlowKey {
            proto,
            pif,
            side: FlowSide {
                eaddr: IpAddr::V4(Ipv4Addr::from(e)),
                eport,
                oaddr: IpAddr::V4(Ipv4Addr::from(o)),
                oport,
            },
        }
    }

    /// A distinct key for each `n`, mixing families and protocols.
    fn key_n(n: u32) -> FlowKey {
        let port = (n % 60000) as u16 + 1;
        let hi = n / 60000;
        if n.is_multiple_of(3) {
            FlowKey {
                proto: UDP,
                pif: Pif::Host,
                side: FlowSide {
                    eaddr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, hi as u16, 1)),
                    eport: port,
                    oaddr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    oport: 53,
                },
            }
        } else {
            key4(
                TCP,
                Pif::Tap,
                [10, 0, hi as u8, (n % 3) as u8],
                port,
                [192, 0, 2, 1],
                80,
            )
        }
    }

    /// Checks the structural invariants: every bucket refers to a hooked
    /// key, every hooked key is in exactly one bucket and found by lookup.
    fn check_invariants<T>(t: &FlowTable<T>) {
        let mut nbuckets = 0;
        for (i, &b) in t.buckets.iter().enumerate() {
            if b == EMPTY {
                continue;
            }
            nbuckets += 1;
            let (idx, side) = unpack(b);
            let h = t.hooked(idx, side).expect("bucket refers to hooked key");
            assert_eq!(t.find(&h.key, h.hash), Some(i));
        }
        let mut nkeys = 0;
        let mut nused = 0;
        for (idx, slot) in t.slots.iter().enumerate() {
            if let Slot::Used { keys, .. } = slot {
                nused += 1;
                for (side, h) in keys.iter().enumerate() {
                    if let Some(h) = h {
                        nkeys += 1;
                        assert_eq!(t.lookup(&h.key), Some((idx as u32, side as u8)));
                    }
                }
            }
        }
        assert_eq!(nbuckets, nkeys);
        assert_eq!(nused, t.len());
        let indices: Vec<u32> = t.indices().collect();
        assert_eq!(indices.len(), t.len());
        assert!(indices.iter().all(|&i| t.get(i).is_some()));
    }

    #[test]
    fn both_sides() {
        let mut t = FlowTable::new(16);
        let tap = key4(UDP, Pif::Tap, [10, 0, 0, 2], 40000, [10, 0, 0, 1], 53);
        let host = key4(UDP, Pif::Host, [192, 0, 2, 53], 53, [0, 0, 0, 0], 41000);
        let idx = t.insert("dns").unwrap();
        t.hash_insert(&tap, idx, INISIDE);
        t.hash_insert(&host, idx, TGTSIDE);
        assert_eq!(t.lookup(&tap), Some((idx, INISIDE)));
        assert_eq!(t.lookup(&host), Some((idx, TGTSIDE)));
        assert_eq!(t.key(idx, TGTSIDE), Some(&host));
        assert_eq!(t.get(idx), Some(&"dns"));
        *t.get_mut(idx).unwrap() = "dns2";

        // Same addresses, other protocol or pif: another flow.
        let mut other = tap;
        other.proto = TCP;
        assert_eq!(t.lookup(&other), None);
        other = tap;
        other.pif = Pif::Splice;
        assert_eq!(t.lookup(&other), None);

        t.hash_remove(&tap);
        assert_eq!(t.lookup(&tap), None);
        assert_eq!(t.lookup(&host), Some((idx, TGTSIDE)));
        assert_eq!(t.key(idx, INISIDE), None);
        // remove() unhooks what is left.
        assert_eq!(t.remove(idx), Some("dns2"));
        assert_eq!(t.lookup(&host), None);
        assert_eq!(t.get(idx), None);
        assert_eq!(t.remove(idx), None);
        assert!(t.is_empty());
        check_invariants(&t);
    }

    #[test]
    fn replacing_keys() {
        let mut t = FlowTable::new(4);
        let a = t.insert(1).unwrap();
        let b = t.insert(2).unwrap();
        let k1 = key_n(1);
        let k2 = key_n(2);
        t.hash_insert(&k1, a, INISIDE);
        // A side's new key replaces its old one.
        t.hash_insert(&k2, a, INISIDE);
        assert_eq!(t.lookup(&k1), None);
        assert_eq!(t.lookup(&k2), Some((a, INISIDE)));
        // A key moves to its new flow side.
        t.hash_insert(&k2, b, TGTSIDE);
        assert_eq!(t.lookup(&k2), Some((b, TGTSIDE)));
        assert_eq!(t.key(a, INISIDE), None);
        check_invariants(&t);
    }

    #[test]
    fn ipv4_and_mapped_ipv6_are_one_key() {
        let mut t = FlowTable::new(4);
        let k4 = key4(
            TCP,
            Pif::Host,
            [192, 0, 2, 7],
            443,
            [198, 51, 100, 1],
            33000,
        );
        let mapped = FlowKey {
            side: FlowSide {
                eaddr: IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped()),
                oaddr: IpAddr::V6(Ipv4Addr::new(198, 51, 100, 1).to_ipv6_mapped()),
                ..k4.side
            },
            ..k4
        };
        assert_eq!(k4, mapped);
        assert_eq!(mapped.side.canonical().eaddr, k4.side.eaddr);
        let idx = t.insert(()).unwrap();
        t.hash_insert(&k4, idx, INISIDE);
        assert_eq!(t.lookup(&mapped), Some((idx, INISIDE)));

        // Same low 32 bits in a non-mapped IPv6 address: different key.
        let other6 = FlowKey {
            side: FlowSide {
                eaddr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0xc000, 0x0207)),
                ..mapped.side
            },
            ..mapped
        };
        assert_ne!(k4, other6);
        assert_eq!(t.lookup(&other6), None);
        let idx6 = t.insert(()).unwrap();
        t.hash_insert(&other6, idx6, INISIDE);
        assert_eq!(t.lookup(&other6), Some((idx6, INISIDE)));
        assert_eq!(t.lookup(&k4), Some((idx, INISIDE)));
        t.hash_remove(&mapped);
        assert_eq!(t.lookup(&k4), None);
        check_invariants(&t);
    }

    #[test]
    fn full_table() {
        let mut t = FlowTable::new(8);
        for i in 0..8 {
            let idx = t.insert(i).unwrap();
            t.hash_insert(&key_n(i), idx, INISIDE);
            t.hash_insert(&key_n(100 + i), idx, TGTSIDE);
        }
        assert_eq!(t.len(), t.capacity());
        assert_eq!(t.insert(99), Err(TableFull));
        for i in 0..8 {
            assert_eq!(t.lookup(&key_n(i)), Some((i, INISIDE)));
            assert_eq!(t.lookup(&key_n(100 + i)), Some((i, TGTSIDE)));
            assert_eq!(t.get(i), Some(&i));
        }
        assert_eq!(t.remove(5), Some(5));
        assert_eq!(t.insert(42), Ok(5), "freed slot is reused");
        assert_eq!(t.insert(43), Err(TableFull));
        assert_eq!(t.lookup(&key_n(5)), None);
        check_invariants(&t);

        let mut z: FlowTable<()> = FlowTable::new(0);
        assert_eq!(z.insert(()), Err(TableFull));
        assert_eq!(z.lookup(&key_n(0)), None);
        assert_eq!(z.indices().count(), 0);
    }

    /// Keys whose home bucket is `home`, found by brute force with a fixed
    /// hash key.
    fn colliding<T>(t: &FlowTable<T>, home: usize, count: usize) -> Vec<FlowKey> {
        (0..)
            .map(key_n)
            .filter(|k| t.hash(k) as usize & t.mask == home)
            .take(count)
            .collect()
    }

    #[test]
    fn backward_shift_with_collisions() {
        // Capacity 4: 16 buckets. A cluster wrapping from the last bucket,
        // with keys homed in the last and in the first bucket interleaved.
        let t: FlowTable<u32> = FlowTable::new_with_key(4, 1, 2);
        let last = t.mask;
        let a = colliding(&t, last, 4);
        let b = colliding(&t, 0, 3);
        let c = colliding(&t, 1, 1);
        let all: Vec<FlowKey> = [a[0], b[0], a[1], c[0], a[2], b[1], a[3], b[2]].to_vec();
        for order in [
            [0, 1, 2, 3, 4, 5, 6, 7],
            [7, 6, 5, 4, 3, 2, 1, 0],
            [2, 0, 5, 7, 1, 4, 3, 6],
            [1, 3, 5, 7, 0, 2, 4, 6],
        ] {
            let mut t = FlowTable::new_with_key(4, 1, 2);
            for i in 0..4 {
                t.insert(i).unwrap();
            }
            for (n, k) in all.iter().enumerate() {
                t.hash_insert(k, n as u32 / 2, (n % 2) as u8);
            }
            check_invariants(&t);
            let mut present: Vec<usize> = (0..8).collect();
            for &r in &order {
                t.hash_remove(&all[r]);
                present.retain(|&p| p != r);
                assert_eq!(t.lookup(&all[r]), None);
                for &p in &present {
                    assert_eq!(t.lookup(&all[p]), Some((p as u32 / 2, (p % 2) as u8)));
                }
                check_invariants(&t);
            }
            assert!(t.buckets.iter().all(|&b| b == EMPTY));
        }
    }

    #[test]
    fn indices_are_used_slots() {
        let mut t = FlowTable::new(300);
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut model = BTreeSet::new();
        for i in 0..300 {
            model.insert(t.insert(i).unwrap());
        }
        assert!(t.indices().eq(model.iter().copied()));
        for _ in 0..2000 {
            let i = rng.below(300) as u32;
            if model.remove(&i) {
                t.remove(i).unwrap();
            } else if rng.below(2) == 0 {
                model.insert(t.insert(0).unwrap());
            }
            assert!(t.indices().eq(model.iter().copied()));
        }
        // Empty words at the start, a single slot at a word boundary.
        for i in model.clone() {
            if i != 128 && i != 299 {
                t.remove(i);
                model.remove(&i);
            }
        }
        assert!(t.indices().eq(model.iter().copied()));
        assert_eq!(t.next_index(129), model.range(129..).next().copied());
    }

    #[test]
    fn many_flows_against_model() {
        const N: u32 = 100_000;
        let mut t = FlowTable::new(N as usize);
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        // Key number -> (flow index, side); flow index -> key numbers.
        let mut model: HashMap<u32, (u32, u8)> = HashMap::new();
        let mut flows: HashMap<u32, [u32; 2]> = HashMap::new();
        for n in 0..N {
            let idx = t.insert(n).unwrap();
            t.hash_insert(&key_n(2 * n), idx, INISIDE);
            t.hash_insert(&key_n(2 * n + 1), idx, TGTSIDE);
            model.insert(2 * n, (idx, INISIDE));
            model.insert(2 * n + 1, (idx, TGTSIDE));
            flows.insert(idx, [2 * n, 2 * n + 1]);
        }
        assert_eq!(t.insert(0), Err(TableFull));
        let mut live: Vec<u32> = flows.keys().copied().collect();
        live.sort_unstable();
        let mut next_key = 2 * N;
        for step in 0..150_000u32 {
            if rng.below(3) != 0 && !live.is_empty() {
                let at = rng.below(live.len());
                let idx = live.swap_remove(at);
                let keys = flows.remove(&idx).unwrap();
                t.hash_remove(&key_n(keys[0]));
                t.hash_remove(&key_n(keys[1]));
                t.remove(idx).unwrap();
                for k in keys {
                    model.remove(&k);
                    assert_eq!(t.lookup(&key_n(k)), None);
                }
            } else if let Ok(idx) = t.insert(step) {
                let keys = [next_key, next_key + 1];
                next_key += 2;
                for (side, k) in keys.iter().enumerate() {
                    t.hash_insert(&key_n(*k), idx, side as u8);
                    model.insert(*k, (idx, side as u8));
                }
                flows.insert(idx, keys);
                live.push(idx);
            }
            // Bounded check per step: a few random live keys.
            for _ in 0..4 {
                if live.is_empty() {
                    break;
                }
                let idx = live[rng.below(live.len())];
                for k in flows[&idx] {
                    assert_eq!(t.lookup(&key_n(k)), model.get(&k).copied());
                }
            }
            if step % 50_000 == 0 {
                for (&k, &v) in &model {
                    assert_eq!(t.lookup(&key_n(k)), Some(v));
                }
                check_invariants(&t);
            }
        }
        assert_eq!(t.len(), live.len());
        for (&k, &v) in &model {
            assert_eq!(t.lookup(&key_n(k)), Some(v));
        }
        check_invariants(&t);
    }

    /// Random operations on a small table, with a full model and invariant
    /// check after every step.
    #[test]
    fn randomized_small() {
        for seed in 1..=8u64 {
            let cap = 37;
            let mut t = FlowTable::new(cap);
            let mut rng = XorShift(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
            let mut values: HashMap<u32, u64> = HashMap::new();
            // Key number -> (index, side); (index, side) -> key number.
            let mut by_key: HashMap<u32, (u32, u8)> = HashMap::new();
            let mut by_side: HashMap<(u32, u8), u32> = HashMap::new();
            for _ in 0..3000 {
                let live: Vec<u32> = values.keys().copied().collect();
                match rng.below(5) {
                    0 | 1 => {
                        let v = rng.next();
                        match t.insert(v) {
                            Ok(idx) => {
                                assert!(values.insert(idx, v).is_none());
                            }
                            Err(TableFull) => assert_eq!(values.len(), cap),
                        }
                    }
                    2 if !live.is_empty() => {
                        let idx = live[rng.below(live.len())];
                        assert_eq!(t.remove(idx), values.remove(&idx));
                        for side in 0..2 {
                            if let Some(k) = by_side.remove(&(idx, side)) {
                                by_key.remove(&k);
                            }
                        }
                    }
                    3 if !live.is_empty() => {
                        // Small key space: keys get moved between flows.
                        let k = rng.below(120) as u32;
                        let idx = live[rng.below(live.len())];
                        let side = rng.below(2) as u8;
                        t.hash_insert(&key_n(k), idx, side);
                        if let Some(old) = by_key.remove(&k) {
                            by_side.remove(&old);
                        }
                        if let Some(oldk) = by_side.remove(&(idx, side)) {
                            by_key.remove(&oldk);
                        }
                        by_key.insert(k, (idx, side));
                        by_side.insert((idx, side), k);
                    }
                    _ => {
                        let k = rng.below(120) as u32;
                        t.hash_remove(&key_n(k));
                        if let Some(old) = by_key.remove(&k) {
                            by_side.remove(&old);
                        }
                    }
                }
                assert_eq!(t.len(), values.len());
                for k in 0..120 {
                    assert_eq!(t.lookup(&key_n(k)), by_key.get(&k).copied());
                }
                for (&idx, v) in &values {
                    assert_eq!(t.get(idx), Some(v));
                }
                let mut live: Vec<u32> = values.keys().copied().collect();
                live.sort_unstable();
                assert!(t.indices().eq(live));
                check_invariants(&t);
            }
        }
    }
}
