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
//!   ([`super::scan`]: pasta, once a second, `/proc/net/{tcp,udp}[6]` of
//!   the other side) opens and closes listeners on the rule's ports while
//!   the other side listens on them, one port at a time through
//!   [`open_port`]. [`open_listeners`] skips such rules.
//!
//! Rules of a table must not overlap: same protocol, a shared port and an
//! overlapping address (either unbound, or equal, or one is the unspecified
//! address of the other's family) is a configuration error, unless both are
//! bound to different interfaces. A table holds at most [`MAX_RULES`]
//! rules, so that a rule index fits in 8 bits of an epoll reference.
//!
//! # Listeners and epoll references
//!
//! Each [`Listener`] records the index of its rule in the table, its port
//! and its family. The event loop packs the three into the listener's
//! epoll reference index ([`listen_ref`]: rule in bits 17–24, family in
//! bit 16, port below), and the table by the epoll kind (`TcpListen` for
//! the host, `TcpListenNs` for the namespace). So an accept or a datagram
//! maps to its rule with an index, not a search, and the port scanner
//! finds the sockets of a (rule, port) to close them;
//! [`FwdTable::find`] is for the other cases (and checks).
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

/// Most rules in one table (the rule index fits in 8 bits).
pub const MAX_RULES: usize = 255;

/// Listen backlog of TCP listeners.
pub const LISTEN_BACKLOG: i32 = 128;

/// Errors building the tables or opening listeners.
#[derive(Debug, Error)]
pub enum FwdError {
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
    #[error("Can't open enough sockets for {rule}: {source}")]
    TooManySockets { rule: String, source: io::Error },
}

pub type Result<T> = std::result::Result<T, FwdError>;

/// One forwarding rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwdRule {
    pub proto: Proto,
    /// Listening address, `None` for any (both families).
    pub addr: Option<IpAddr>,
    /// Listening interface.
    pub ifname: Option<String>,
    pub first: u16,
    pub last: u16,
    /// Target port of `first`.
    pub to: u16,
    /// Bind failures are not fatal.
    pub weak: bool,
    /// `auto`: listen only while the other side does.
    pub scan: bool,
}

impl FwdRule {
    /// The target port of `port`, if the rule covers it.
    pub fn target(&self, port: u16) -> Option<u16> {
        (self.first..=self.last)
            .contains(&port)
            .then(|| self.to.wrapping_add(port - self.first))
    }

    /// Whether a socket bound to `local` belongs to this rule's address.
    pub fn matches_addr(&self, local: IpAddr) -> bool {
        match self.addr {
            None => true,
            Some(a) => {
                let (a, l) = (a.to_canonical(), local.to_canonical());
                a == l || (a.is_unspecified() && a.is_ipv4() == l.is_ipv4())
            }
        }
    }

    /// Whether the two rules would claim the same socket.
    pub fn conflicts(&self, o: &FwdRule) -> bool {
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
        write!(f, " => {}", self.to)?;
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

/// The rules of one source pif.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FwdTable {
    pub rules: Vec<FwdRule>,
}

impl FwdTable {
    /// Adds `rule` unless it conflicts with one already there; `table`
    /// names the table in errors.
    pub fn add(&mut self, rule: FwdRule, table: &'static str) -> Result<()> {
        if let Some(old) = self.rules.iter().find(|r| r.conflicts(&rule)) {
            return Err(FwdError::Conflict {
                new: rule.to_string(),
                existing: old.to_string(),
            });
        }
        if self.rules.len() >= MAX_RULES {
            return Err(FwdError::TooManyRules { table });
        }
        self.rules.push(rule);
        Ok(())
    }

    /// The first rule for `proto` covering `port` on `local_addr`: its
    /// index and the target port.
    pub fn find(&self, proto: Proto, port: u16, local_addr: IpAddr) -> Option<(usize, u16)> {
        self.rules.iter().enumerate().find_map(|(i, r)| {
            if r.proto != proto || !r.matches_addr(local_addr) {
                return None;
            }
            r.target(port).map(|t| (i, t))
        })
    }
}

/// Both tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FwdTables {
    /// `-t`, `-u`: listeners on the host.
    pub host: FwdTable,
    /// `-T`, `-U`: listeners in pasta's namespace.
    pub splice: FwdTable,
}

/// The rules for the specs of one option: `-t`/`-u` when `inbound`,
/// `-T`/`-U` otherwise. `none`, `auto` and `all` can't be combined with
/// another spec of the same option.
pub fn from_specs(
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
            weak: p.weak,
            scan: p.mode == SpecMode::Auto,
        }));
    }
    Ok(rules)
}

/// Both tables from the configuration's four spec lists.
pub fn build(conf: &Config) -> Result<FwdTables> {
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
        let (table, name) = if inbound {
            (&mut t.host, "the host")
        } else {
            (&mut t.splice, "the namespace")
        };
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
            table.add(rule, name)?;
        }
    }
    Ok(t)
}

/// A listening socket of a rule.
#[derive(Debug)]
pub struct Listener {
    pub fd: OwnedFd,
    /// Index of the rule in its table.
    pub rule: u32,
    pub port: u16,
    pub v6: bool,
}

/// Opens a socket for `rule` on `addr`: non-blocking, close-on-exec,
/// bound to the rule's interface; TCP listens.
pub fn open_one(rule: &FwdRule, addr: SocketAddr, freebind: bool) -> io::Result<OwnedFd> {
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

/// Listening sockets for every port of every `proto` rule of `table`
/// except `scan` rules. A bind failure is an error on a normal rule and is
/// skipped on a weak one (which must still bind one port); running out of
/// descriptors is always an error.
///
/// Unbound rules open both families (see [`open_listeners_in`] for `-4`
/// and `-6`). A host without one family (`EAFNOSUPPORT`) just gets no
/// sockets of that family.
pub fn open_listeners(table: &FwdTable, proto: Proto, freebind: bool) -> Result<Vec<Listener>> {
    open_listeners_in(table, proto, freebind, Families::BOTH)
}

/// The address families enabled (`-4`: IPv4 only, `-6`: IPv6 only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Families {
    pub v4: bool,
    pub v6: bool,
}

impl Families {
    pub const BOTH: Families = Families { v4: true, v6: true };

    /// The families of `conf` (`ip4`/`ip6` present); both with
    /// `--splice-only`, which has no addresses but forwards loopback
    /// connections of both families.
    pub fn of(conf: &Config) -> Families {
        if conf.pasta.as_ref().is_some_and(|p| p.splice_only) {
            return Families::BOTH;
        }
        Families {
            v4: conf.ip4.is_some(),
            v6: conf.ip6.is_some(),
        }
    }

    /// The unspecified addresses of the enabled families.
    pub fn wildcards(self) -> &'static [IpAddr] {
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
pub fn open_port(
    rule: &FwdRule,
    idx: u32,
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
                rule: idx,
                port,
                v6: ip.is_ipv6(),
            })
        })
        .collect()
}

/// The 32-bit epoll reference index of a listening socket: rule index
/// (8 bits), family and port, so that an event names its rule and port
/// without a lookup, and the socket of a given rule and port can be found
/// again (the port scanner closes them).
pub fn listen_ref(rule: u32, v6: bool, port: u16) -> u32 {
    (rule << 17) | (u32::from(v6) << 16) | u32::from(port)
}

/// The parts of a [`listen_ref`]: (rule, IPv6, port).
pub fn listen_ref_parts(r: u32) -> (u32, bool, u16) {
    (r >> 17, r & (1 << 16) != 0, r as u16)
}

/// [`open_listeners`], unbound rules listening only on the families
/// enabled. Rules bound to an address of a disabled family are rejected
/// by [`build`].
pub fn open_listeners_in(
    table: &FwdTable,
    proto: Proto,
    freebind: bool,
    families: Families,
) -> Result<Vec<Listener>> {
    let wildcard = families.wildcards();
    let mut out = Vec::new();
    for (idx, rule) in table.rules.iter().enumerate() {
        if rule.proto != proto || rule.scan {
            continue;
        }
        let Ok(idx) = u32::try_from(idx) else { break };
        let addrs = rule_addrs(rule, wildcard);
        if addrs.is_empty() {
            continue;
        }
        let mut bound = 0usize;
        for port in rule.first..=rule.last {
            for &ip in addrs {
                match open_one(rule, SocketAddr::new(ip, port), freebind) {
                    Ok(fd) => {
                        bound += 1;
                        out.push(Listener {
                            fd,
                            rule: idx,
                            port,
                            v6: ip.is_ipv6(),
                        });
                    }
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                        return Err(FwdError::TooManySockets {
                            rule: rule.to_string(),
                            source: e,
                        })
                    }
                    // A wildcard rule on a host without this family.
                    Err(e)
                        if rule.addr.is_none() && e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
                    {
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
        if bound == 0 {
            return Err(FwdError::NoneBound {
                rule: rule.to_string(),
            });
        }
        if rule.weak {
            let total = (usize::from(rule.last.saturating_sub(rule.first)) + 1) * addrs.len();
            if bound < total {
                ::log::warn!("{rule}: bound {bound} of {total} sockets, skipped the others");
            }
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
        assert_eq!(t.host.rules.len(), 3);
        assert_eq!(t.splice.rules.len(), 1);
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
        for (rule, v6, port) in [(0, false, 1), (254, true, 65535), (7, false, 8080)] {
            let r = listen_ref(rule, v6, port);
            assert_eq!(listen_ref_parts(r), (rule, v6, port));
            assert!(r < 1 << 31, "bit 31 is free");
        }
        assert_ne!(listen_ref(1, false, 80), listen_ref(1, true, 80));
        assert_ne!(listen_ref(1, false, 80), listen_ref(2, false, 80));
    }

    #[test]
    fn find_with_mapping() {
        let t = FwdTable {
            rules: vec![rule(Proto::Tcp, None, 22, 80, 32)],
        };
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
        let table = FwdTable {
            rules: vec![
                rule(Proto::Tcp, lo, p[0], p[0], 1),
                rule(Proto::Tcp, lo, p[1], p[1], 2),
                rule(Proto::Udp, lo, p[2], p[2], 3),
                scan,
            ],
        };
        let ls = open_listeners(&table, Proto::Tcp, false).unwrap();
        let got: Vec<_> = ls.iter().map(|l| (l.rule, l.port, l.v6)).collect();
        assert_eq!(got, [(0, p[0], false), (1, p[1], false)]);
        for l in &ls {
            TcpStream::connect(("127.0.0.1", l.port)).unwrap();
        }
        let flags = rustix::io::fcntl_getfd(&ls[0].fd).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));

        // Unbound rules: one socket per enabled family.
        let any = FwdTable {
            rules: vec![rule(Proto::Udp, None, p[3], p[3], p[3])],
        };
        let v4 = Families {
            v4: true,
            v6: false,
        };
        let us = open_listeners_in(&any, Proto::Udp, false, v4).unwrap();
        assert_eq!(us.iter().map(|l| l.v6).collect::<Vec<_>>(), [false]);
        drop(us);
        let us = open_listeners(&any, Proto::Udp, false).unwrap();
        assert!(!us.is_empty() && us.iter().all(|l| l.port == p[3]));
        drop(us);

        let us = open_listeners(&table, Proto::Udp, false).unwrap();
        assert_eq!(us.len(), 1);
        assert_eq!((us[0].rule, us[0].port), (2, p[2]));
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
        let ls = open_listeners(&FwdTable { rules: vec![weak] }, Proto::Tcp, false).unwrap();
        assert!(!ls.is_empty());
        assert!(ls
            .iter()
            .all(|l| l.port != busy && (first..=last).contains(&l.port)));
        drop(ls);

        // ... but must bind one.
        let mut weak = rule(Proto::Tcp, lo, busy, busy, busy);
        weak.weak = true;
        let e = open_listeners(&FwdTable { rules: vec![weak] }, Proto::Tcp, false).unwrap_err();
        assert!(matches!(e, FwdError::NoneBound { .. }), "{e}");

        // A normal rule fails, naming port and address.
        let strict = rule(Proto::Tcp, lo, busy, busy, busy);
        let e = open_listeners(
            &FwdTable {
                rules: vec![strict],
            },
            Proto::Tcp,
            false,
        )
        .unwrap_err();
        let msg = e.to_string();
        let want = format!("Failed to bind port {busy} on 127.0.0.1 for TCP [127.0.0.1]:{busy}");
        assert!(msg.starts_with(&want), "{msg}");
        drop(busy_l);
    }
}
