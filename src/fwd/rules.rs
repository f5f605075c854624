//! The port forwarding table: which listening sockets we open, and where a
//! connection or datagram arriving on one of them goes.
//!
//! # Design
//!
//! There is **one table per source pif**, not one per option:
//!
//! - `host`: sockets on the host, from `-t` and `-u`; connections go to the
//!   guest (passt) or into the namespace (pasta);
//! - `splice`: sockets inside pasta's namespace, from `-T` and `-U`;
//!   connections go to the host's loopback.
//!
//! The source pif is what decides where sockets live (host or namespace),
//! how a new flow is set up and which NAT applies, so a table is the unit
//! the listener code and the flow code work on. The protocol is a field of
//! each [`FwdRule`] instead of a reason for another table: TCP and UDP
//! rules share the conflict check, the lookup and the socket code, and a
//! rule for "both protocols" stays two rules with one meaning each.
//!
//! A rule forwards ports `first..=last`, optionally bound to an address
//! and/or an interface (`SO_BINDTODEVICE`), port `p` going to
//! `to + (p - first)`. Two flags come from the spec:
//!
//! - `weak`: bind failures are skipped (a warning), as for `all` and
//!   exclusion-only lists, which cover ports somebody else may well use;
//!   a weak rule must still bind at least one port;
//! - `scan`: `auto` mode; no socket is opened up front: the port scanner
//!   ([`super::scan`]: pasta, once a second, sock_diag dumps of
//!   the other side) opens and closes listeners on the rule's ports while
//!   the other side listens on them, one port at a time through
//!   [`open_port`]. [`FwdTable::open`] skips such rules.
//!
//! Rules of a table must not overlap: same protocol, a shared port and an
//! overlapping address (either unbound, or equal, or one is the unspecified
//! address of the other's family) is a configuration error, unless both are
//! bound to different interfaces. A table holds at most [`MAX_RULES`]
//! rules, so that a rule index fits in 8 bits of an epoll reference.
//!
//! # Sockets and epoll references
//!
//! Each rule holds its listening sockets ([`Listener`]: port and family),
//! each in a *slot* of the rule; a closed socket frees its slot, and a
//! removed rule frees its index (the next added rule takes it), so the
//! indices of the others never change. A socket's epoll reference index
//! is (table, rule, slot) ([`listen_ref`]); the event loop gets the socket
//! and its rule back by indexing ([`FwdTable::listening`], through
//! [`super::Fwd::listening`]), and the protocol its target port from the
//! rule. [`FwdTable::find`] is for the other cases (and checks).
//!
//! Unbound rules get **two sockets per port**, `0.0.0.0` and `::` with
//! `IPV6_V6ONLY`, rather than one dual-stack socket: each socket then has
//! one family (no IPv4-mapped addresses to undo on the hot path), and a
//! host without IPv6 (or IPv4) just skips that family (`EAFNOSUPPORT`).
//!
//! `-T`/`-U` rules are bound to interface `lo` inside the namespace (the
//! sockets are opened by a thread inside it). Where `SO_BINDTODEVICE` is
//! not allowed, an unbound `lo` rule binds the loopback address of each
//! family instead (upstream's fallback), with a warning.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;

use rustix::net::{sockopt, AddressFamily, SocketFlags, SocketType};
use thiserror::Error;

use super::spec::{self, ParseOpts, PortSpec, SpecError, SpecMode};
use crate::conf::{Config, Mode, Proto};
use crate::flow::Pif;
use crate::wire::pesto::{self, RawRule};

/// Most rules in one table (the rule index fits in 8 bits).
pub(crate) const MAX_RULES: usize = 255;

/// Listen backlog of TCP listeners.
pub(crate) const LISTEN_BACKLOG: i32 = 128;

/// Errors building the tables or opening listeners.
#[derive(Debug, Error)]
pub(crate) enum FwdError {
    #[error("-{opt}: {source}")]
    Spec { opt: char, source: SpecError },
    #[error("forwarding rule {new} conflicts with rule {existing}")]
    Conflict { new: String, existing: String },
    #[error("too many forwarding rules for {table} (maximum {MAX_RULES})")]
    TooManyRules { table: &'static str },
    #[error("{family} is disabled, can't forward {rule}")]
    FamilyDisabled { family: &'static str, rule: String },
    #[error("Failed to bind port {port} on {addr} for {rule}: {source}")]
    Bind {
        port: u16,
        addr: IpAddr,
        rule: String,
        source: io::Error,
    },
    #[error("Failed to bind any port for {rule}")]
    NoneBound { rule: String },
    #[error("{0}")]
    Target(String),
    #[error("Can't open enough sockets for {rule}: {source}")]
    TooManySockets { rule: String, source: io::Error },
}

pub(crate) type Result<T> = std::result::Result<T, FwdError>;

/// One forwarding rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FwdRule {
    pub(crate) proto: Proto,
    /// Listening address, `None` for any (both families).
    pub(crate) addr: Option<IpAddr>,
    /// Listening interface.
    pub(crate) ifname: Option<String>,
    pub(crate) first: u16,
    pub(crate) last: u16,
    /// Target port of `first`.
    pub(crate) to: u16,
    /// Target address on the guest's side (`None`: the guest's own, or
    /// the namespace's).
    pub(crate) taddr: Option<IpAddr>,
    /// Bind failures are not fatal.
    pub(crate) weak: bool,
    /// `auto`: listen only while the other side does.
    pub(crate) scan: bool,
}

impl FwdRule {
    /// The target port of `port`, if the rule covers it.
    pub(crate) fn target(&self, port: u16) -> Option<u16> {
        (self.first..=self.last)
            .contains(&port)
            .then(|| self.to.wrapping_add(port - self.first))
    }

    /// Whether a socket bound to `local` belongs to this rule's address.
    pub(crate) fn matches_addr(&self, local: IpAddr) -> bool {
        match self.addr {
            None => true,
            Some(a) => {
                let (a, l) = (a.to_canonical(), local.to_canonical());
                a == l || (a.is_unspecified() && a.is_ipv4() == l.is_ipv4())
            }
        }
    }

    /// Whether the two rules would claim the same socket.
    pub(crate) fn conflicts(&self, o: &FwdRule) -> bool {
        if self.proto != o.proto || self.first > o.last || o.first > self.last {
            return false;
        }
        if let (Some(a), Some(b)) = (&self.ifname, &o.ifname) {
            if a != b {
                return false;
            }
        }
        match (self.addr, o.addr) {
            (Some(a), Some(b)) => self.matches_addr(b) || o.matches_addr(a),
            _ => true,
        }
    }
}

/// What a table's instance can forward, as the configuration protocol
/// announces it (`wire::pesto::CAP_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Caps(pub(crate) u32);

impl Caps {
    pub(crate) fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

impl FwdRule {
    /// The rule as the configuration protocol carries it. A rule for any
    /// address is "dual stack" where both families are on, else the
    /// wildcard of the one family (as upstream writes them).
    pub(crate) fn to_raw(&self, families: Families) -> RawRule {
        let (addr, dual) = match self.addr {
            Some(a) => (a, false),
            None if families.v4 && !families.v6 => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), false),
            None => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), families.v4),
        };
        let mut flags = 0;
        if dual {
            flags |= pesto::FLAG_DUAL_STACK;
        }
        if self.weak {
            flags |= pesto::FLAG_WEAK;
        }
        if self.scan {
            flags |= pesto::FLAG_SCAN;
        }
        RawRule {
            addr: RawRule::pack_addr(addr),
            taddr: self.taddr.map_or([0; 16], RawRule::pack_addr),
            ifname: self
                .ifname
                .as_deref()
                .map_or([0; pesto::IFNAMSIZ], RawRule::pack_ifname),
            first: self.first,
            last: self.last,
            to: self.to,
            proto: match self.proto {
                Proto::Tcp => libc::IPPROTO_TCP as u8,
                Proto::Udp => libc::IPPROTO_UDP as u8,
            },
            flags,
        }
    }

    /// A rule from the configuration protocol, for table `table` of an
    /// instance with capabilities `caps`, checked as upstream checks it
    /// (ports, flags, families and protocols enabled), and for what this
    /// implementation can do: no target address yet, and the namespace's
    /// table listens on its loopback only.
    pub(crate) fn from_raw(
        raw: &RawRule,
        table: Table,
        caps: Caps,
    ) -> std::result::Result<FwdRule, String> {
        if raw.first > raw.last {
            return Err(format!("invalid port range {}-{}", raw.first, raw.last));
        }
        if raw.first == 0 {
            return Err("can't forward from port 0".into());
        }
        if raw.to == 0 || raw.to.checked_add(raw.last - raw.first).is_none() {
            return Err(format!(
                "ports {}-{} can't map to {}: past port 65535 or port 0",
                raw.first, raw.last, raw.to
            ));
        }
        let known = pesto::FLAG_DUAL_STACK | pesto::FLAG_WEAK | pesto::FLAG_SCAN;
        if raw.flags & !known != 0 {
            return Err(format!("unknown flags 0x{:x}", raw.flags & !known));
        }
        let proto = match i32::from(raw.proto) {
            libc::IPPROTO_TCP if caps.has(pesto::CAP_TCP) => Proto::Tcp,
            libc::IPPROTO_UDP if caps.has(pesto::CAP_UDP) => Proto::Udp,
            libc::IPPROTO_TCP => return Err("TCP is disabled".into()),
            libc::IPPROTO_UDP => return Err("UDP is disabled".into()),
            p => return Err(format!("unsupported protocol {p}")),
        };
        let addr = RawRule::unpack_addr(raw.addr);
        let addr = if raw.flags & pesto::FLAG_DUAL_STACK != 0 {
            if addr != IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
                return Err(format!("dual stack rule with the address {addr}"));
            }
            if !caps.has(pesto::CAP_IPV4) || !caps.has(pesto::CAP_IPV6) {
                return Err("dual stack rule, but IPv4 or IPv6 is disabled".into());
            }
            None
        } else {
            let (bit, family) = if addr.is_ipv4() {
                (pesto::CAP_IPV4, "IPv4")
            } else {
                (pesto::CAP_IPV6, "IPv6")
            };
            if !caps.has(bit) {
                return Err(format!("{family} is disabled, can't forward from {addr}"));
            }
            Some(addr)
        };
        let taddr = (raw.taddr != [0; 16]).then(|| RawRule::unpack_addr(raw.taddr));
        let ifname = match raw.ifname().map_err(|e| e.to_string())? {
            None => None,
            Some(n) => {
                let n = std::str::from_utf8(n)
                    .ok()
                    .filter(|n| !n.contains(['/', ' ', ':', '%']) && *n != "." && *n != "..")
                    .ok_or_else(|| {
                        format!("bad interface name {:?}", String::from_utf8_lossy(n))
                    })?;
                if !caps.has(pesto::CAP_IFNAME) {
                    return Err(format!("can't bind to interface {n} (SO_BINDTODEVICE)"));
                }
                Some(n.to_string())
            }
        };
        let scan = raw.flags & pesto::FLAG_SCAN != 0;
        if scan && !caps.has(pesto::CAP_SCAN) {
            return Err("'auto' port forwarding is only allowed for pasta".into());
        }
        let rule = FwdRule {
            proto,
            addr,
            ifname,
            first: raw.first,
            last: raw.last,
            to: raw.to,
            weak: raw.flags & pesto::FLAG_WEAK != 0,
            scan,
            taddr,
        };
        rule.check_target(
            table,
            caps.has(pesto::CAP_IPV4) && caps.has(pesto::CAP_IPV6),
        )?;
        if table == Table::Splice
            && rule.ifname.as_deref() != Some("lo")
            && !rule.addr.is_some_and(|a| a.is_loopback())
        {
            return Err(format!(
                "{rule}: the namespace's rules listen on its loopback only (interface lo or a loopback address)"
            ));
        }
        Ok(rule)
    }
}

impl FwdRule {
    /// Checks the target address, as upstream does: not multicast, of
    /// the listening address's family (so not for a rule on any address
    /// of both families, `both`), and only for the host's table (the
    /// namespace's rules go to the host's loopback).
    pub(crate) fn check_target(&self, table: Table, both: bool) -> std::result::Result<(), String> {
        let Some(t) = self.taddr else {
            return Ok(());
        };
        if t.is_multicast() || t.is_unspecified() {
            return Err(format!(
                "{self}: target address {t} is not a unicast address"
            ));
        }
        if table == Table::Splice {
            return Err(format!(
                "{self}: target addresses are for inbound rules only"
            ));
        }
        match self.addr {
            None if both => Err(format!(
                "{self}: a rule for both families can't go to the {} address {t} (give 0.0.0.0/ or [::]/ first)",
                if t.is_ipv4() { "IPv4" } else { "IPv6" }
            )),
            Some(a) if a.is_ipv4() != t.is_ipv4() => {
                Err(format!("{self}: forwards from {a} to {t}, another family"))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for FwdRule {
    /// `TCP [192.0.2.1%eth0]:22-80 => 32-90 (weak)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        };
        write!(f, "{proto} [")?;
        match self.addr {
            Some(a) => write!(f, "{a}")?,
            None => f.write_str("*")?,
        }
        if let Some(i) = &self.ifname {
            write!(f, "%{i}")?;
        }
        write!(f, "]:{}", self.first)?;
        let to_last = self.to.wrapping_add(self.last.wrapping_sub(self.first));
        if self.last != self.first {
            write!(f, "-{}", self.last)?;
        }
        match self.taddr {
            Some(IpAddr::V6(a)) => write!(f, " => [{a}]:{}", self.to)?,
            Some(a) => write!(f, " => {a}:{}", self.to)?,
            None => write!(f, " => {}", self.to)?,
        }
        if self.last != self.first {
            write!(f, "-{to_last}")?;
        }
        match (self.weak, self.scan) {
            (true, true) => f.write_str(" (weak, scan)"),
            (true, false) => f.write_str(" (weak)"),
            (false, true) => f.write_str(" (scan)"),
            (false, false) => Ok(()),
        }
    }
}

/// Which table a rule is in: its source interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Table {
    /// `-t`/`-u`: sockets on the host.
    Host = 0,
    /// `-T`/`-U`: sockets in pasta's namespace.
    Splice = 1,
}

impl Table {
    pub(crate) const BOTH: [Table; 2] = [Table::Host, Table::Splice];

    /// The interface its sockets are on, where its flows start.
    pub(crate) fn pif(self) -> Pif {
        match self {
            Table::Host => Pif::Host,
            Table::Splice => Pif::Splice,
        }
    }

    /// Where its sockets live, for log messages.
    pub(crate) fn side(self) -> &'static str {
        match self {
            Table::Host => "host",
            Table::Splice => "namespace",
        }
    }

    /// Its name in errors.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Host => "the host",
            Table::Splice => "the namespace",
        }
    }
}

/// A listening socket of a rule: bound to one port, in one family.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) fd: OwnedFd,
    pub(crate) port: u16,
    pub(crate) v6: bool,
}

/// A rule and the sockets it listens on, by slot (a closed socket leaves
/// its slot free: the slots of the others, in their epoll references,
/// stay valid).
#[derive(Debug)]
struct Entry {
    rule: FwdRule,
    socks: Vec<Option<Listener>>,
}

/// The rules of one source pif, each with its listening sockets. A rule
/// keeps its index for its lifetime (removing one leaves a hole that the
/// next added rule fills), because epoll references carry it.
#[derive(Debug, Default)]
pub(crate) struct FwdTable {
    entries: Vec<Option<Entry>>,
}

/// The rule of a socket, and what its flows need of it: what the epoll
/// reference of a listening socket leads to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Listening<'a> {
    pub(crate) fd: &'a OwnedFd,
    pub(crate) rule: &'a FwdRule,
    /// The table's interface: [`Pif::Host`] or [`Pif::Splice`].
    pub(crate) pif: Pif,
    pub(crate) port: u16,
    /// The address the socket is bound to (unspecified: any).
    pub(crate) addr: IpAddr,
}

impl FwdTable {
    /// Adds `rule` unless it conflicts with one already there; `table`
    /// names the table in errors. Returns its index. No socket is opened.
    pub(crate) fn add(&mut self, rule: FwdRule, table: &'static str) -> Result<usize> {
        if let Some((_, old)) = self.rules().find(|(_, r)| r.conflicts(&rule)) {
            return Err(FwdError::Conflict {
                new: rule.to_string(),
                existing: old.to_string(),
            });
        }
        let entry = Entry {
            rule,
            socks: Vec::new(),
        };
        if let Some(i) = self.entries.iter().position(Option::is_none) {
            self.entries[i] = Some(entry);
            return Ok(i);
        }
        if self.entries.len() >= MAX_RULES {
            return Err(FwdError::TooManyRules { table });
        }
        self.entries.push(Some(entry));
        Ok(self.entries.len() - 1)
    }

    /// Removes rule `idx` and hands back its sockets (the caller takes
    /// them out of epoll; dropping them closes them).
    #[cfg(test)]
    pub(crate) fn remove(&mut self, idx: usize) -> Option<(FwdRule, Vec<Listener>)> {
        let e = self.entries.get_mut(idx)?.take()?;
        Some((e.rule, e.socks.into_iter().flatten().collect()))
    }

    /// The rules, with their indices.
    pub(crate) fn rules(&self) -> impl Iterator<Item = (usize, &FwdRule)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, &e.as_ref()?.rule)))
    }

    /// Rule `idx`.
    pub(crate) fn rule(&self, idx: usize) -> Option<&FwdRule> {
        Some(&self.entries.get(idx)?.as_ref()?.rule)
    }

    /// Number of rules.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.iter().flatten().count()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One past the highest rule index.
    pub(crate) fn end(&self) -> usize {
        self.entries.len()
    }

    /// The first rule for `proto` covering `port` on `local_addr`: its
    /// index and the target port.
    #[cfg(test)]
    pub(crate) fn find(&self, proto: Proto, port: u16, local_addr: IpAddr) -> Option<(usize, u16)> {
        self.rules().find_map(|(i, r)| {
            if r.proto != proto || !r.matches_addr(local_addr) {
                return None;
            }
            r.target(port).map(|t| (i, t))
        })
    }

    /// The socket in slot `slot` of rule `rule`, with its rule.
    pub(crate) fn listening(&self, pif: Pif, rule: usize, slot: usize) -> Option<Listening<'_>> {
        let e = self.entries.get(rule)?.as_ref()?;
        let l = e.socks.get(slot)?.as_ref()?;
        let any = if l.v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        Some(Listening {
            fd: &l.fd,
            rule: &e.rule,
            pif,
            port: l.port,
            addr: e.rule.addr.unwrap_or(any),
        })
    }

    /// Every socket: (rule, slot, its rule, the socket).
    pub(crate) fn sockets(&self) -> impl Iterator<Item = (usize, usize, &FwdRule, &Listener)> {
        self.entries.iter().enumerate().flat_map(|(i, e)| {
            e.iter().flat_map(move |e| {
                e.socks
                    .iter()
                    .enumerate()
                    .filter_map(move |(s, l)| Some((i, s, &e.rule, l.as_ref()?)))
            })
        })
    }

    /// Whether rule `rule` has a socket on `port` in the family `v6`.
    pub(crate) fn has_socket(&self, rule: usize, port: u16, v6: bool) -> bool {
        self.entries
            .get(rule)
            .and_then(Option::as_ref)
            .is_some_and(|e| {
                e.socks
                    .iter()
                    .flatten()
                    .any(|l| l.port == port && l.v6 == v6)
            })
    }

    /// Stores `l` in a free slot of rule `rule`: its slot.
    pub(crate) fn insert_socket(&mut self, rule: usize, l: Listener) -> Option<usize> {
        let socks = &mut self.entries.get_mut(rule)?.as_mut()?.socks;
        match socks.iter().position(Option::is_none) {
            Some(s) => {
                socks[s] = Some(l);
                Some(s)
            }
            None if socks.len() < SLOTS_MAX => {
                socks.push(Some(l));
                Some(socks.len() - 1)
            }
            None => None,
        }
    }

    /// Takes the socket in slot `slot` of rule `rule` out of the table.
    pub(crate) fn take_slot(&mut self, rule: usize, slot: usize) -> Option<Listener> {
        self.entries
            .get_mut(rule)?
            .as_mut()?
            .socks
            .get_mut(slot)?
            .take()
    }

    /// Takes the sockets of rule `rule` on `port` out of the table.
    pub(crate) fn take_sockets(&mut self, rule: usize, port: u16) -> Vec<Listener> {
        let Some(e) = self.entries.get_mut(rule).and_then(Option::as_mut) else {
            return Vec::new();
        };
        e.socks
            .iter_mut()
            .filter(|s| s.as_ref().is_some_and(|l| l.port == port))
            .filter_map(Option::take)
            .collect()
    }

    /// Opens the listening sockets of every `proto` rule except `scan`
    /// ones, for every port. A bind failure is an error on a normal rule
    /// and is skipped on a weak one (which must still bind one port);
    /// running out of descriptors is always an error.
    ///
    /// Unbound rules listen on each enabled family. A host without one
    /// family (`EAFNOSUPPORT`) just gets no sockets of that family. Rules
    /// bound to an address of a disabled family are rejected by [`build`].
    pub(crate) fn open(&mut self, proto: Proto, freebind: bool, families: Families) -> Result<()> {
        for idx in 0..self.entries.len() {
            let Some(e) = self.entries[idx].as_ref() else {
                continue;
            };
            if e.rule.proto != proto || e.rule.scan || !e.socks.is_empty() {
                continue;
            }
            let opened = open_rule(&e.rule, freebind, families)?;
            for l in opened {
                self.insert_socket(idx, l);
            }
        }
        Ok(())
    }
}

/// Most sockets of one rule: two families of every port.
pub(crate) const SLOTS_MAX: usize = 2 * 65536;

/// Both tables.
#[derive(Debug, Default)]
pub(crate) struct FwdTables {
    /// `-t`, `-u`: listeners on the host.
    pub(crate) host: FwdTable,
    /// `-T`, `-U`: listeners in pasta's namespace.
    pub(crate) splice: FwdTable,
}

impl FwdTables {
    pub(crate) fn get(&self, t: Table) -> &FwdTable {
        match t {
            Table::Host => &self.host,
            Table::Splice => &self.splice,
        }
    }

    pub(crate) fn get_mut(&mut self, t: Table) -> &mut FwdTable {
        match t {
            Table::Host => &mut self.host,
            Table::Splice => &mut self.splice,
        }
    }
}

/// The rules for the specs of one option: `-t`/`-u` when `inbound`,
/// `-T`/`-U` otherwise. `none`, `auto` and `all` can't be combined with
/// another spec of the same option.
pub(crate) fn from_specs(
    mode: Mode,
    proto: Proto,
    specs: &[String],
    inbound: bool,
) -> std::result::Result<Vec<FwdRule>, SpecError> {
    let opts = ParseOpts {
        allow_addr: inbound,
        ephemeral: spec::ephemeral_range(),
    };
    let mut rules = Vec::new();
    let mut previous: Option<(&str, SpecMode)> = None;
    for s in specs {
        let in_spec = |err| SpecError::In {
            spec: s.clone(),
            err: Box::new(err),
        };
        let p = PortSpec::parse(s, &opts).map_err(in_spec)?;
        match p.mode {
            SpecMode::Auto if mode != Mode::Pasta => return Err(in_spec(SpecError::AutoNotPasta)),
            SpecMode::All if mode != Mode::Passt || !inbound => {
                return Err(in_spec(SpecError::AllNotPasst))
            }
            _ => {}
        }
        if let Some((prev, prev_mode)) = previous {
            if prev_mode != SpecMode::Ports || p.mode != SpecMode::Ports {
                return Err(SpecError::ModeConflict(s.clone(), prev.to_string()));
            }
        }
        previous = Some((s, p.mode));

        let ifname = if inbound {
            p.ifname.clone()
        } else {
            Some("lo".to_string())
        };
        rules.extend(p.ranges.iter().map(|r| FwdRule {
            proto,
            addr: p.addr,
            ifname: ifname.clone(),
            first: r.first,
            last: r.last,
            to: r.to_first,
            taddr: r.taddr,
            weak: p.weak,
            scan: p.mode == SpecMode::Auto,
        }));
    }
    Ok(rules)
}

/// Both tables from the configuration's four spec lists.
pub(crate) fn build(conf: &Config) -> Result<FwdTables> {
    let mut t = FwdTables::default();
    let lists = [
        ('t', Proto::Tcp, &conf.fwd.tcp_in, true),
        ('u', Proto::Udp, &conf.fwd.udp_in, true),
        ('T', Proto::Tcp, &conf.fwd.tcp_out, false),
        ('U', Proto::Udp, &conf.fwd.udp_out, false),
    ];
    for (opt, proto, specs, inbound) in lists {
        let rules = from_specs(conf.mode, proto, specs, inbound)
            .map_err(|source| FwdError::Spec { opt, source })?;
        let table = if inbound { Table::Host } else { Table::Splice };
        for rule in rules {
            let family = match rule.addr {
                Some(IpAddr::V4(_)) if conf.ip4.is_none() => Some("IPv4"),
                Some(IpAddr::V6(_)) if conf.ip6.is_none() => Some("IPv6"),
                _ => None,
            };
            if let Some(family) = family {
                return Err(FwdError::FamilyDisabled {
                    family,
                    rule: rule.to_string(),
                });
            }
            let both = Families::of(conf);
            rule.check_target(table, both.v4 && both.v6)
                .map_err(|e| FwdError::Target(format!("-{opt}: {e}")))?;
            t.get_mut(table).add(rule, table.name())?;
        }
    }
    Ok(t)
}

/// Opens a socket for `rule` on `addr`: non-blocking, close-on-exec,
/// bound to the rule's interface; TCP listens.
pub(crate) fn open_one(rule: &FwdRule, addr: SocketAddr, freebind: bool) -> io::Result<OwnedFd> {
    let v6 = addr.is_ipv6();
    let family = if v6 {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    let ty = match rule.proto {
        Proto::Tcp => SocketType::STREAM,
        Proto::Udp => SocketType::DGRAM,
    };
    let fd = rustix::net::socket_with(
        family,
        ty,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    // UDP too: flows get sockets sharing the listener's port.
    sockopt::set_socket_reuseaddr(&fd, true)?;
    if v6 {
        sockopt::set_ipv6_v6only(&fd, true)?;
    }
    let mut addr = addr;
    if let Some(ifname) = &rule.ifname {
        if let Err(e) = crate::sys::bind_to_device(&fd, ifname) {
            let denied = matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOPROTOOPT));
            if !(denied && ifname == "lo" && rule.addr.is_none()) {
                return Err(e);
            }
            ::log::warn!("{rule}: can't bind to lo ({e}), binding to the loopback address");
            let lo = if v6 {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            };
            addr = SocketAddr::new(lo, addr.port());
        }
    }
    if freebind {
        if v6 {
            sockopt::set_ipv6_freebind(&fd, true)?;
        } else {
            sockopt::set_ip_freebind(&fd, true)?;
        }
    }
    rustix::net::bind(&fd, &addr)?;
    if rule.proto == Proto::Tcp {
        rustix::net::listen(&fd, LISTEN_BACKLOG)?;
    }
    Ok(fd)
}

/// The address families enabled (`-4`: IPv4 only, `-6`: IPv6 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Families {
    pub(crate) v4: bool,
    pub(crate) v6: bool,
}

impl Families {
    pub(crate) const BOTH: Families = Families { v4: true, v6: true };

    /// The families of `conf` (`ip4`/`ip6` present); both with
    /// `--splice-only`, which has no addresses but forwards loopback
    /// connections of both families.
    pub(crate) fn of(conf: &Config) -> Families {
        if conf.pasta.as_ref().is_some_and(|p| p.splice_only) {
            return Families::BOTH;
        }
        Families {
            v4: conf.ip4.is_some(),
            v6: conf.ip6.is_some(),
        }
    }

    /// The unspecified addresses of the enabled families.
    pub(crate) fn wildcards(self) -> &'static [IpAddr] {
        const V4_ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        const V6_ANY: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        match (self.v4, self.v6) {
            (true, true) => &[V4_ANY, V6_ANY],
            (true, false) => &[V4_ANY],
            (false, true) => &[V6_ANY],
            (false, false) => &[],
        }
    }
}

/// The addresses a rule listens on: its own, or the wildcards.
fn rule_addrs<'a>(rule: &'a FwdRule, wildcard: &'a [IpAddr]) -> &'a [IpAddr] {
    match &rule.addr {
        Some(a) => std::slice::from_ref(a),
        None => wildcard,
    }
}

/// The sockets of one port of a rule, for the port scanner (`auto`): one
/// per address (family) that could be bound. Failures are returned per
/// address, so that the caller decides what a failure means (a scanned
/// port that somebody else holds is skipped quietly).
pub(crate) fn open_port(
    rule: &FwdRule,
    port: u16,
    freebind: bool,
    families: Families,
) -> Vec<io::Result<Listener>> {
    let wildcard = families.wildcards();
    rule_addrs(rule, wildcard)
        .iter()
        .map(|&ip| {
            open_one(rule, SocketAddr::new(ip, port), freebind).map(|fd| Listener {
                fd,
                port,
                v6: ip.is_ipv6(),
            })
        })
        .collect()
}

/// The 32-bit epoll reference index of a listening socket: its table (bit
/// 25), its rule (bits 17-24) and its slot in the rule (bits 0-16), so
/// that an event finds its socket and rule by indexing.
pub(crate) fn listen_ref(table: Table, rule: usize, slot: usize) -> u32 {
    ((table as u32) << 25) | ((rule as u32 & 0xff) << 17) | (slot as u32 & 0x1ffff)
}

/// The parts of a [`listen_ref`]: (table, rule, slot).
pub(crate) fn listen_ref_parts(r: u32) -> (Table, usize, usize) {
    let table = if r & (1 << 25) != 0 {
        Table::Splice
    } else {
        Table::Host
    };
    (table, ((r >> 17) & 0xff) as usize, (r & 0x1ffff) as usize)
}

/// The sockets of every port of `rule` (see [`FwdTable::open`]).
pub(crate) fn open_rule(
    rule: &FwdRule,
    freebind: bool,
    families: Families,
) -> Result<Vec<Listener>> {
    let addrs = rule_addrs(rule, families.wildcards());
    let mut out = Vec::new();
    if addrs.is_empty() {
        return Ok(out);
    }
    for port in rule.first..=rule.last {
        for &ip in addrs {
            match open_one(rule, SocketAddr::new(ip, port), freebind) {
                Ok(fd) => out.push(Listener {
                    fd,
                    port,
                    v6: ip.is_ipv6(),
                }),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    return Err(FwdError::TooManySockets {
                        rule: rule.to_string(),
                        source: e,
                    })
                }
                // A wildcard rule on a host without this family.
                Err(e) if rule.addr.is_none() && e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                    ::log::debug!("{rule}: no socket for {ip}: {e}");
                }
                Err(e) if rule.weak => {
                    ::log::debug!("{rule}: skipping port {port} on {ip}: {e}");
                }
                Err(source) => {
                    return Err(FwdError::Bind {
                        port,
                        addr: ip,
                        rule: rule.to_string(),
                        source,
                    })
                }
            }
        }
    }
    if out.is_empty() {
        return Err(FwdError::NoneBound {
            rule: rule.to_string(),
        });
    }
    if rule.weak {
        let total = (usize::from(rule.last.saturating_sub(rule.first)) + 1) * addrs.len();
        if out.len() < total {
            ::log::warn!(
                "{rule}: bound {} of {total} sockets, skipped the others",
                out.len()
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::FwdSpecs;
    use std::net::TcpStream;

    fn rule(proto: Proto, addr: Option<&str>, first: u16, last: u16, to: u16) -> FwdRule {
        FwdRule {
            proto,
            addr: addr.map(|a| a.parse().unwrap()),
            ifname: None,
            first,
            last,
            to,
            taddr: None,
            weak: false,
            scan: false,
        }
    }

    fn specs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rules_from_specs() {
        let got = from_specs(
            Mode::Passt,
            Proto::Tcp,
            &specs(&["22:2022", "192.0.2.1%eth0/80-81"]),
            true,
        )
        .unwrap();
        let mut bound = rule(Proto::Tcp, Some("192.0.2.1"), 80, 81, 80);
        bound.ifname = Some("eth0".into());
        assert_eq!(got, [rule(Proto::Tcp, None, 22, 22, 2022), bound]);

        // -T/-U: bound to lo in the namespace; auto scans.
        let got = from_specs(Mode::Pasta, Proto::Udp, &specs(&["auto"]), false).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].first, got[0].last), (1, 65535));
        assert!(got[0].scan && !got[0].weak);
        assert_eq!(got[0].ifname.as_deref(), Some("lo"));

        // all and exclusion-only lists are weak, without ephemeral ports.
        let (eph, _) = spec::ephemeral_range();
        let got = from_specs(Mode::Passt, Proto::Tcp, &specs(&["all"]), true).unwrap();
        assert!(got.iter().all(|r| r.weak && !r.scan));
        assert!(got.iter().all(|r| r.target(eph).is_none()));
        let got = from_specs(Mode::Pasta, Proto::Tcp, &specs(&["~25"]), true).unwrap();
        assert!(got.iter().all(|r| r.weak && r.target(25).is_none()));
        assert_eq!(got[0].target(24), Some(24));

        assert!(from_specs(Mode::Pasta, Proto::Tcp, &specs(&["none"]), true)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn spec_errors() {
        let cases: &[(Mode, &[&str], bool, &str)] = &[
            (Mode::Passt, &["auto"], true, "only allowed for pasta"),
            (Mode::Pasta, &["all"], true, "only allowed for passt"),
            (Mode::Passt, &["all"], false, "only allowed for passt"),
            (
                Mode::Pasta,
                &["none", "22"],
                true,
                "'22' conflicts with previous mode 'none'",
            ),
            (
                Mode::Pasta,
                &["22", "auto"],
                true,
                "'auto' conflicts with previous mode '22'",
            ),
            (Mode::Pasta, &["none", "none"], true, "conflicts"),
            (Mode::Pasta, &["::1/22"], false, "'::1/'"),
            (
                Mode::Pasta,
                &["22", "8x"],
                true,
                "in '8x': '8x' is not a port number",
            ),
        ];
        for (mode, list, inbound, part) in cases {
            let e = from_specs(*mode, Proto::Tcp, &specs(list), *inbound).unwrap_err();
            assert!(e.to_string().contains(part), "{list:?}: {e}");
        }
    }

    #[test]
    fn conflicts() {
        let tcp = |a, f, l| rule(Proto::Tcp, a, f, l, f);
        let clash = [
            (tcp(None, 20, 30), tcp(None, 30, 40)),
            (tcp(None, 22, 22), tcp(Some("192.0.2.1"), 22, 22)),
            (
                tcp(Some("192.0.2.1"), 22, 22),
                tcp(Some("192.0.2.1"), 1, 100),
            ),
            (tcp(Some("0.0.0.0"), 22, 22), tcp(Some("192.0.2.1"), 22, 22)),
            (tcp(Some("::"), 22, 22), tcp(Some("2001:db8::1"), 22, 22)),
            (
                tcp(Some("::ffff:192.0.2.1"), 22, 22),
                tcp(Some("192.0.2.1"), 22, 22),
            ),
        ];
        for (a, b) in clash {
            assert!(a.conflicts(&b) && b.conflicts(&a), "{a} vs {b}");
            let mut t = FwdTable::default();
            t.add(a.clone(), "test").unwrap();
            let e = t.add(b.clone(), "test").unwrap_err().to_string();
            assert!(
                e.contains(&a.to_string()) && e.contains(&b.to_string()),
                "{e}"
            );
        }
        let mut eth1 = tcp(None, 22, 22);
        eth1.ifname = Some("eth1".into());
        let mut eth0 = eth1.clone();
        eth0.ifname = Some("eth0".into());
        let fine = [
            (tcp(None, 20, 30), tcp(None, 31, 40)),
            (tcp(None, 22, 22), rule(Proto::Udp, None, 22, 22, 22)),
            (
                tcp(Some("192.0.2.1"), 22, 22),
                tcp(Some("192.0.2.2"), 22, 22),
            ),
            (tcp(Some("0.0.0.0"), 22, 22), tcp(Some("::1"), 22, 22)),
            (eth0, eth1),
        ];
        for (a, b) in fine {
            assert!(!a.conflicts(&b) && !b.conflicts(&a), "{a} vs {b}");
        }
    }

    #[test]
    fn build_tables() {
        let mut c = crate::arp::tests::test_config();
        c.mode = Mode::Pasta;
        c.fwd = FwdSpecs {
            tcp_in: specs(&["22", "192.0.2.1/80"]),
            udp_in: specs(&["22"]),
            tcp_out: specs(&["auto"]),
            udp_out: specs(&["none"]),
        };
        let t = build(&c).unwrap();
        assert_eq!(t.host.len(), 3);
        assert_eq!(t.splice.len(), 1);
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(t.host.find(Proto::Tcp, 22, other), Some((0, 22)));
        assert_eq!(t.host.find(Proto::Udp, 22, other), Some((2, 22)));
        assert_eq!(t.host.find(Proto::Tcp, 80, v4), Some((1, 80)));
        assert_eq!(t.host.find(Proto::Tcp, 80, other), None);
        assert_eq!(t.host.find(Proto::Udp, 80, v4), None);
        assert_eq!(t.splice.find(Proto::Tcp, 8080, other), Some((0, 8080)));
        assert_eq!(t.splice.find(Proto::Udp, 8080, other), None);

        // Two options claiming the same port.
        c.fwd.tcp_in = specs(&["20-30", "192.0.2.1/25"]);
        let e = build(&c).unwrap_err().to_string();
        assert!(
            e.contains("TCP [192.0.2.1]:25") && e.contains("TCP [*]:20-30"),
            "{e}"
        );

        // Mode errors name the option.
        c.fwd.tcp_in = specs(&["all"]);
        let e = build(&c).unwrap_err().to_string();
        assert!(e.starts_with("-t: in 'all'"), "{e}");

        // Addresses of a disabled family.
        c.fwd.tcp_in = specs(&["2001:db8::1/22"]);
        c.ip6 = None;
        let e = build(&c).unwrap_err().to_string();
        assert!(
            e.contains("IPv6 is disabled") && e.contains("2001:db8::1"),
            "{e}"
        );
    }

    #[test]
    fn listen_refs() {
        for (table, rule, slot) in [
            (Table::Host, 0, 0),
            (Table::Splice, 254, SLOTS_MAX - 1),
            (Table::Host, 7, 8080),
        ] {
            let r = listen_ref(table, rule, slot);
            assert_eq!(listen_ref_parts(r), (table, rule, slot));
            assert!(r < 1 << 31, "bit 31 is free");
        }
        assert_ne!(
            listen_ref(Table::Host, 1, 80),
            listen_ref(Table::Splice, 1, 80)
        );
        assert_ne!(
            listen_ref(Table::Host, 1, 80),
            listen_ref(Table::Host, 2, 80)
        );
    }

    /// A table of `rules`.
    fn table(rules: Vec<FwdRule>) -> FwdTable {
        let mut t = FwdTable::default();
        for r in rules {
            t.add(r, "test").unwrap();
        }
        t
    }

    /// (rule, port, IPv6) of each socket of `t`.
    fn socks(t: &FwdTable) -> Vec<(usize, u16, bool)> {
        t.sockets().map(|(i, _, _, l)| (i, l.port, l.v6)).collect()
    }

    #[test]
    fn find_with_mapping() {
        let t = table(vec![rule(Proto::Tcp, None, 22, 80, 32)]);
        let any: IpAddr = "::1".parse().unwrap();
        assert_eq!(t.find(Proto::Tcp, 22, any), Some((0, 32)));
        assert_eq!(t.find(Proto::Tcp, 80, any), Some((0, 90)));
        assert_eq!(t.find(Proto::Tcp, 81, any), None);
        assert_eq!(t.find(Proto::Tcp, 21, any), None);
    }

    /// Free loopback TCP ports, held until returned.
    fn free_ports(n: usize) -> Vec<u16> {
        let held: Vec<_> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        held.iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect()
    }

    #[test]
    fn listeners_on_loopback() {
        let p = free_ports(4);
        let lo = Some("127.0.0.1");
        let mut scan = rule(Proto::Tcp, lo, p[3], p[3], p[3]);
        scan.scan = true;
        let mut t = table(vec![
            rule(Proto::Tcp, lo, p[0], p[0], 1),
            rule(Proto::Tcp, lo, p[1], p[1], 2),
            rule(Proto::Udp, lo, p[2], p[2], 3),
            scan,
        ]);
        t.open(Proto::Tcp, false, Families::BOTH).unwrap();
        assert_eq!(socks(&t), [(0, p[0], false), (1, p[1], false)]);
        for (_, _, _, l) in t.sockets() {
            TcpStream::connect(("127.0.0.1", l.port)).unwrap();
        }
        let l = t.listening(Pif::Host, 1, 0).unwrap();
        assert_eq!((l.port, l.rule.to), (p[1], 2));
        let flags = rustix::io::fcntl_getfd(l.fd).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));

        // Unbound rules: one socket per enabled family.
        let v4 = Families {
            v4: true,
            v6: false,
        };
        let mut any = table(vec![rule(Proto::Udp, None, p[3], p[3], p[3])]);
        any.open(Proto::Udp, false, v4).unwrap();
        assert_eq!(socks(&any), [(0, p[3], false)]);
        let l = any.listening(Pif::Host, 0, 0).unwrap();
        assert_eq!(l.addr, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        drop(any);
        let mut any = table(vec![rule(Proto::Udp, None, p[3], p[3], p[3])]);
        any.open(Proto::Udp, false, Families::BOTH).unwrap();
        assert!(any.sockets().count() >= 1 && any.sockets().all(|(_, _, _, l)| l.port == p[3]));
        drop(any);

        t.open(Proto::Udp, false, Families::BOTH).unwrap();
        assert_eq!(socks(&t).len(), 3);
        assert!(socks(&t).contains(&(2, p[2], false)));
    }

    #[test]
    fn add_and_remove_rules() {
        let p = free_ports(3);
        let lo = Some("127.0.0.1");
        let mut t = table(vec![
            rule(Proto::Tcp, lo, p[0], p[0], p[0]),
            rule(Proto::Tcp, lo, p[1], p[1], p[1]),
        ]);
        t.open(Proto::Tcp, false, Families::BOTH).unwrap();
        let client = TcpStream::connect(("127.0.0.1", p[0])).unwrap();
        let l = t.listening(Pif::Host, 0, 0).unwrap();
        let (accepted, _) = rustix::net::accept(l.fd)
            .map(|s| (s, ()))
            .or_else(|_| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                rustix::net::accept(l.fd).map(|s| (s, ()))
            })
            .unwrap();

        // Removing rule 0 closes its listener: new connections are
        // refused; the connection it accepted goes on; rule 1 keeps its
        // index and its socket.
        let (gone, closed) = t.remove(0).unwrap();
        assert_eq!(gone.first, p[0]);
        drop(closed);
        assert!(TcpStream::connect(("127.0.0.1", p[0])).is_err());
        rustix::io::write(&accepted, b"x").unwrap();
        let mut b = [0u8; 1];
        std::io::Read::read_exact(&mut &client, &mut b).unwrap();
        assert_eq!(&b, b"x");
        assert_eq!(t.listening(Pif::Host, 1, 0).unwrap().port, p[1]);
        assert!(t.listening(Pif::Host, 0, 0).is_none());
        assert_eq!(t.len(), 1);

        // A new rule takes the free index; a conflicting one is refused.
        let idx = t
            .add(rule(Proto::Tcp, lo, p[2], p[2], p[2]), "test")
            .unwrap();
        assert_eq!(idx, 0);
        assert!(t
            .add(rule(Proto::Tcp, None, p[1], p[1], 1), "test")
            .is_err());
        for l in open_rule(t.rule(0).unwrap(), false, Families::BOTH).unwrap() {
            t.insert_socket(0, l);
        }
        TcpStream::connect(("127.0.0.1", p[2])).unwrap();
        assert_eq!(socks(&t), [(0, p[2], false), (1, p[1], false)]);
    }

    #[test]
    fn bind_failures() {
        let busy_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = busy_l.local_addr().unwrap().port();
        let lo = Some("127.0.0.1");

        // A weak rule skips the busy port and binds the others it can.
        let (first, last) = match busy.checked_add(16) {
            Some(l) => (busy, l),
            None => (busy - 16, busy),
        };
        let mut weak = rule(Proto::Tcp, lo, first, last, first);
        weak.weak = true;
        let ls = open_rule(&weak, false, Families::BOTH).unwrap();
        assert!(!ls.is_empty());
        assert!(ls
            .iter()
            .all(|l| l.port != busy && (first..=last).contains(&l.port)));
        drop(ls);

        // ... but must bind one.
        let mut weak = rule(Proto::Tcp, lo, busy, busy, busy);
        weak.weak = true;
        let e = open_rule(&weak, false, Families::BOTH).unwrap_err();
        assert!(matches!(e, FwdError::NoneBound { .. }), "{e}");

        // A normal rule fails, naming port and address, and so does
        // opening its table.
        let strict = rule(Proto::Tcp, lo, busy, busy, busy);
        let e = table(vec![strict])
            .open(Proto::Tcp, false, Families::BOTH)
            .unwrap_err();
        let msg = e.to_string();
        let want = format!("Failed to bind port {busy} on 127.0.0.1 for TCP [127.0.0.1]:{busy}");
        assert!(msg.starts_with(&want), "{msg}");
        drop(busy_l);
    }

    #[test]
    fn target_address_checks_and_wire_form() {
        let mut r = rule(Proto::Tcp, Some("0.0.0.0"), 22, 22, 2022);
        r.taddr = Some("192.0.2.5".parse().unwrap());
        assert!(r.check_target(Table::Host, true).is_ok());
        assert_eq!(r.to_string(), "TCP [0.0.0.0]:22 => 192.0.2.5:2022");
        let caps = Caps(0x3f);
        let raw = r.to_raw(Families::BOTH);
        assert_eq!(FwdRule::from_raw(&raw, Table::Host, caps), Ok(r.clone()));
        assert!(r
            .check_target(Table::Splice, true)
            .unwrap_err()
            .contains("inbound"));
        let mut dual = r.clone();
        dual.addr = None;
        assert!(dual
            .check_target(Table::Host, true)
            .unwrap_err()
            .contains("both families"));
        assert!(dual.check_target(Table::Host, false).is_ok());
        let mut v6 = r.clone();
        v6.addr = Some("::".parse().unwrap());
        assert!(v6
            .check_target(Table::Host, true)
            .unwrap_err()
            .contains("another family"));
        let mut mc = r.clone();
        mc.taddr = Some("224.0.0.1".parse().unwrap());
        assert!(mc
            .check_target(Table::Host, true)
            .unwrap_err()
            .contains("unicast"));
        let mut v6t = v6.clone();
        v6t.taddr = Some("2001:db8::5".parse().unwrap());
        assert_eq!(v6t.to_string(), "TCP [::]:22 => [2001:db8::5]:2022");
    }
}
