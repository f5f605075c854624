//! One port specification of `-t`, `-u`, `-T` or `-U`, parsed.
//!
//! Grammar (passt.1, `conf_ports` upstream):
//!
//! ```text
//! SPEC  := "none" | "auto" | "all" | [ADDR][%IFNAME]/LIST | LIST
//! LIST  := ITEM ("," ITEM)*
//! ITEM  := RANGE [":" TARGET]     forward, optionally elsewhere
//!        | "~" RANGE              exclude, wherever it appears in the list
//! TARGET:= RANGE                  other ports
//!        | TADDR ["/" RANGE]      the guest's address TADDR (other ports)
//! RANGE := PORT | PORT "-" PORT
//! ```
//!
//! `ADDR` is IPv4 or IPv6, written plainly (`::1/22`) or in brackets
//! (`[::1]/22`, also accepted for IPv4). `all:TADDR` forwards all to
//! `TADDR`. A target address (upstream's, since pesto protocol 2) sends
//! connections to that address on the guest's side instead of the
//! guest's own; a `TARGET` that reads as a port range is one (`22:2022`),
//! as upstream reads it. `%IFNAME` (at most 15 bytes)
//! binds to an interface; `%IFNAME/LIST` binds to any address of that
//! interface. The prefix is only accepted for `-t`/`-u`.
//!
//! The result is a [`PortSpec`] whose `ranges` are explicit: exclusions are
//! already cut out, each range keeps the target of its first port. A list
//! made only of exclusions means "every non-ephemeral port except these",
//! like `all`; both are *weak*: ports that can't be bound are skipped.
//! `auto` (pasta) covers every port, and listeners follow what the other
//! side listens on (see `rules`).
//!
//! Checks beyond syntax: port 0 can't be forwarded, a range must not be
//! reversed, a remapped range must have the length of its source, ranges
//! of one spec must not overlap, nor may its exclusions. Whether `auto` or
//! `all` is allowed depends on the mode and is checked by the caller.

use std::net::IpAddr;

use thiserror::Error;

/// Longest interface name (`IFNAMSIZ` - 1).
pub(crate) const IFNAME_MAX: usize = 15;

/// RFC 6335 dynamic ports, the default local (ephemeral) port range.
pub(crate) const DEFAULT_EPHEMERAL: (u16, u16) = (49152, 65535);

/// What is wrong with a port specification; each message names the part.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub(crate) enum SpecError {
    #[error("empty port specification")]
    Empty,
    #[error("empty item in port list '{0}'")]
    EmptyItem(String),
    #[error("'{0}' is not a port number")]
    BadNumber(String),
    #[error("port {0} is out of range (maximum 65535)")]
    TooLarge(String),
    #[error("can't forward port 0 ('{0}')")]
    PortZero(String),
    #[error("reversed port range '{0}'")]
    Reversed(String),
    #[error("ranges '{orig}' and '{mapped}' differ in length")]
    RemapLength { orig: String, mapped: String },
    #[error("'{0}' overlaps ports given earlier in the same specification")]
    Overlap(String),
    #[error("excluded range '{0}' overlaps another exclusion")]
    ExclusionOverlap(String),
    #[error("unknown keyword '{0}'")]
    UnknownKeyword(String),
    #[error("'{0}' can't be combined with ports or other keywords")]
    KeywordMixed(String),
    #[error("'{0}' conflicts with previous mode '{1}'")]
    ModeConflict(String, String),
    #[error("listening address or interface not allowed for outbound forwarding: '{0}'")]
    AddrNotAllowed(String),
    #[error("bad forwarding address '{0}'")]
    BadAddr(String),
    #[error("bad interface name '{0}' (1 to 15 bytes)")]
    BadIfname(String),
    #[error("'auto' port forwarding is only allowed for pasta")]
    AutoNotPasta,
    #[error("'all' port forwarding is only allowed for passt, inbound")]
    AllNotPasst,
    #[error("exclusions in '{0}' leave no port to forward")]
    NothingLeft(String),
    #[error("in '{spec}': {err}")]
    In { spec: String, err: Box<SpecError> },
}

pub(crate) type Result<T> = std::result::Result<T, SpecError>;

/// The kind of a specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpecMode {
    /// `none`: no forwarding.
    None,
    /// `all`: every non-ephemeral port (passt).
    All,
    /// `auto`: ports the other side listens on (pasta).
    Auto,
    /// A port list.
    Ports,
}

/// Ports `first..=last` go to `to_first..`, port by port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PortRange {
    pub(crate) first: u16,
    pub(crate) last: u16,
    pub(crate) to_first: u16,
    /// Target address, `None` for the usual one.
    pub(crate) taddr: Option<IpAddr>,
}

impl PortRange {
    /// A range forwarded to the same ports.
    pub(crate) const fn same(first: u16, last: u16) -> Self {
        PortRange {
            first,
            last,
            to_first: first,
            taddr: None,
        }
    }
}

/// A parsed specification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PortSpec {
    pub(crate) mode: SpecMode,
    /// Listening address (`ADDR/`), `None` for any.
    pub(crate) addr: Option<IpAddr>,
    /// Listening interface (`%IFNAME/`).
    pub(crate) ifname: Option<String>,
    /// Forwarded ports, exclusions applied, in the order given.
    pub(crate) ranges: Vec<PortRange>,
    /// Bind failures are not fatal (`all`, exclusion-only lists).
    pub(crate) weak: bool,
}

/// Context of a parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ParseOpts {
    /// `ADDR%IFNAME/` prefixes allowed (`-t`/`-u`).
    pub(crate) allow_addr: bool,
    /// Local port range, left out of `all` and exclusion-only lists.
    pub(crate) ephemeral: (u16, u16),
}

/// The host's ephemeral port range from
/// `/proc/sys/net/ipv4/ip_local_port_range`, or the RFC 6335 default.
pub(crate) fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>());
            match (it.next(), it.next()) {
                (Some(Ok(a)), Some(Ok(b))) if a <= b => Some((a, b)),
                _ => None,
            }
        })
        .unwrap_or(DEFAULT_EPHEMERAL)
}

/// A set of ports as a bitmap.
struct PortSet(Vec<u64>);

impl PortSet {
    fn new() -> Self {
        PortSet(vec![0; 65536 / 64])
    }
    fn contains(&self, p: u16) -> bool {
        self.0[usize::from(p) / 64] & (1 << (p % 64)) != 0
    }
    /// Adds `first..=last`; false if a port was already present.
    fn insert_range(&mut self, first: u16, last: u16) -> bool {
        let mut fresh = true;
        for p in first..=last {
            fresh &= !self.contains(p);
            self.0[usize::from(p) / 64] |= 1 << (p % 64);
        }
        fresh
    }
}

fn parse_port(s: &str) -> Result<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SpecError::BadNumber(s.to_string()));
    }
    let digits = s.trim_start_matches('0');
    if digits.len() > 5 {
        return Err(SpecError::TooLarge(s.to_string()));
    }
    let n: u32 = digits.parse().unwrap_or(0);
    u16::try_from(n).map_err(|_| SpecError::TooLarge(s.to_string()))
}

/// `N` or `N-M`.
fn parse_range(s: &str) -> Result<(u16, u16)> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) if a.is_empty() || b.is_empty() => {
            return Err(SpecError::BadNumber(s.to_string()))
        }
        Some((a, b)) => (parse_port(a)?, parse_port(b)?),
        None => {
            let p = parse_port(s)?;
            (p, p)
        }
    };
    if a > b {
        return Err(SpecError::Reversed(s.to_string()));
    }
    Ok((a, b))
}

const KEYWORDS: [&str; 3] = ["none", "all", "auto"];

/// An address, plain or in brackets.
fn parse_addr(s: &str) -> Result<IpAddr> {
    let bare = s
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .map_err(|_| SpecError::BadAddr(s.to_string()))
}

/// Whether `s` (what comes before a first `/`) is a list whose last item
/// has a target (`80,22:192.0.2.1`) rather than an `ADDR%IFNAME` prefix.
fn is_item_with_target(s: &str) -> bool {
    let last = s.rsplit(',').next().unwrap_or(s);
    match last.split_once(':') {
        Some((range, _)) => parse_range(range).is_ok(),
        None => false,
    }
}

/// What follows `RANGE:`: a target address and/or ports. A plain range
/// is ports (`22:2022`), as upstream reads it; else `TADDR[/RANGE]`.
fn parse_target(m: &str) -> Result<(Option<IpAddr>, Option<&str>)> {
    if let Some((a, ports)) = m.rsplit_once('/') {
        return Ok((Some(parse_addr(a)?), Some(ports)));
    }
    if parse_range(m).is_ok() {
        return Ok((None, Some(m)));
    }
    match parse_addr(m) {
        Ok(a) => Ok((Some(a), None)),
        // Report it as the port range it most likely meant to be.
        Err(_) => parse_range(m).map(|_| (None, Some(m))),
    }
}

/// The `ADDR%IFNAME` prefix before `/`.
fn parse_prefix(prefix: &str) -> Result<(Option<IpAddr>, Option<String>)> {
    let (addr, ifname) = match prefix.split_once('%') {
        Some((a, i)) => (a, Some(i)),
        None => (prefix, None),
    };
    let ifname = match ifname {
        Some(i) if i.is_empty() || i.len() > IFNAME_MAX || i.contains(['/', '\0']) => {
            return Err(SpecError::BadIfname(i.to_string()))
        }
        Some(i) => Some(i.to_string()),
        None => None,
    };
    if addr.is_empty() {
        if ifname.is_none() {
            return Err(SpecError::BadAddr(String::new()));
        }
        return Ok((None, ifname));
    }
    let bare = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let ip = bare
        .parse::<IpAddr>()
        .map_err(|_| SpecError::BadAddr(addr.to_string()))?;
    Ok((Some(ip), ifname))
}

impl PortSpec {
    /// Parses one specification.
    pub(crate) fn parse(spec: &str, opts: &ParseOpts) -> Result<PortSpec> {
        let keyword = |mode, ranges, weak| PortSpec {
            mode,
            addr: None,
            ifname: None,
            ranges,
            weak,
        };
        match spec {
            "" => return Err(SpecError::Empty),
            "none" => return Ok(keyword(SpecMode::None, Vec::new(), false)),
            "auto" => {
                return Ok(keyword(
                    SpecMode::Auto,
                    vec![PortRange::same(1, u16::MAX)],
                    false,
                ))
            }
            "all" => {
                let ranges = cut(PortRange::same(1, u16::MAX), &ephemeral_set(opts));
                return Ok(keyword(SpecMode::All, ranges, true));
            }
            _ => {}
        }
        if let Some(t) = spec.strip_prefix("all:") {
            let taddr = Some(parse_addr(t)?);
            let ranges = cut(PortRange::same(1, u16::MAX), &ephemeral_set(opts))
                .into_iter()
                .map(|r| PortRange { taddr, ..r })
                .collect();
            return Ok(keyword(SpecMode::All, ranges, true));
        }

        let (addr, ifname, list) = match spec.split_once('/') {
            // `22:192.0.2.1/2022`: the first slash is a target's (an
            // address prefix wins where both read, as upstream).
            Some((prefix, _)) if parse_prefix(prefix).is_err() && is_item_with_target(prefix) => {
                (None, None, spec)
            }
            Some((prefix, list)) => {
                if !opts.allow_addr {
                    return Err(SpecError::AddrNotAllowed(format!("{prefix}/")));
                }
                let (a, i) = parse_prefix(prefix)?;
                (a, i, list)
            }
            None => (None, None, spec),
        };
        if list.is_empty() {
            return Err(SpecError::Empty);
        }

        // Exclusions first: they apply to every item, wherever they are.
        let mut excluded = PortSet::new();
        let mut includes = Vec::new();
        for item in list.split(',') {
            if item.is_empty() {
                return Err(SpecError::EmptyItem(list.to_string()));
            }
            if let Some(x) = item.strip_prefix('~') {
                let (a, b) = parse_range(x)?;
                if !excluded.insert_range(a, b) {
                    return Err(SpecError::ExclusionOverlap(item.to_string()));
                }
                continue;
            }
            if item.starts_with(|c: char| c.is_ascii_alphabetic()) {
                return Err(if KEYWORDS.contains(&item) {
                    SpecError::KeywordMixed(item.to_string())
                } else {
                    SpecError::UnknownKeyword(item.to_string())
                });
            }
            includes.push(item);
        }

        let mut ranges = Vec::new();
        let weak = includes.is_empty();
        if weak {
            let mut skip = ephemeral_set(opts);
            for p in 0..=u16::MAX {
                if excluded.contains(p) {
                    skip.insert_range(p, p);
                }
            }
            ranges = cut(PortRange::same(1, u16::MAX), &skip);
            if ranges.is_empty() {
                return Err(SpecError::NothingLeft(list.to_string()));
            }
        }

        let mut seen = PortSet::new();
        for item in includes {
            let (orig, mapped) = match item.split_once(':') {
                Some((o, m)) => (o, Some(m)),
                None => (item, None),
            };
            let (first, last) = parse_range(orig)?;
            let (taddr, mapped) = match mapped.map(parse_target).transpose()? {
                Some((a, m)) => (a, m),
                None => (None, None),
            };
            let to_first = match mapped {
                Some(m) => {
                    let (c, d) = parse_range(m)?;
                    if d - c != last - first {
                        return Err(SpecError::RemapLength {
                            orig: orig.to_string(),
                            mapped: m.to_string(),
                        });
                    }
                    if c == 0 {
                        return Err(SpecError::PortZero(item.to_string()));
                    }
                    c
                }
                None => first,
            };
            if first == 0 {
                return Err(SpecError::PortZero(item.to_string()));
            }
            if !seen.insert_range(first, last) {
                return Err(SpecError::Overlap(item.to_string()));
            }
            ranges.extend(cut(
                PortRange {
                    first,
                    last,
                    to_first,
                    taddr,
                },
                &excluded,
            ));
        }

        Ok(PortSpec {
            mode: SpecMode::Ports,
            addr,
            ifname,
            ranges,
            weak,
        })
    }
}

fn ephemeral_set(opts: &ParseOpts) -> PortSet {
    let mut s = PortSet::new();
    let (a, b) = opts.ephemeral;
    if a <= b {
        s.insert_range(a, b);
    }
    s
}

/// `r` minus the ports in `skip`, as maximal sub-ranges keeping the mapping.
fn cut(r: PortRange, skip: &PortSet) -> Vec<PortRange> {
    let mut out = Vec::new();
    let mut start: Option<u16> = None;
    for p in r.first..=r.last {
        match (skip.contains(p), start) {
            (false, None) => start = Some(p),
            (true, Some(s)) => {
                out.push(sub(r, s, p - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(sub(r, s, r.last));
    }
    out
}

fn sub(r: PortRange, first: u16, last: u16) -> PortRange {
    PortRange {
        first,
        last,
        to_first: r.to_first.wrapping_add(first - r.first),
        taddr: r.taddr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const IN: ParseOpts = ParseOpts {
        allow_addr: true,
        ephemeral: DEFAULT_EPHEMERAL,
    };
    const OUT: ParseOpts = ParseOpts {
        allow_addr: false,
        ephemeral: DEFAULT_EPHEMERAL,
    };

    fn r(first: u16, last: u16, to_first: u16) -> PortRange {
        PortRange {
            first,
            last,
            to_first,
            taddr: None,
        }
    }

    fn ports(ranges: Vec<PortRange>) -> PortSpec {
        PortSpec {
            mode: SpecMode::Ports,
            addr: None,
            ifname: None,
            ranges,
            weak: false,
        }
    }

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    /// Every example of passt.1's `-t` section, and a few more.
    #[test]
    fn man_page_examples() {
        let with = |addr: Option<IpAddr>, ifname: Option<&str>, ranges| PortSpec {
            addr,
            ifname: ifname.map(str::to_string),
            ..ports(ranges)
        };
        let weak = |ranges| PortSpec {
            weak: true,
            ..ports(ranges)
        };
        let cases: Vec<(&str, PortSpec)> = vec![
            ("22", ports(vec![r(22, 22, 22)])),
            ("22:23", ports(vec![r(22, 22, 23)])),
            ("22:2022", ports(vec![r(22, 22, 2022)])),
            ("22,25", ports(vec![r(22, 22, 22), r(25, 25, 25)])),
            (
                "22,25,80",
                ports(vec![r(22, 22, 22), r(25, 25, 25), r(80, 80, 80)]),
            ),
            ("22-80", ports(vec![r(22, 80, 22)])),
            ("22-80:32-90", ports(vec![r(22, 80, 32)])),
            ("192.0.2.1/22", with(Some(V4), None, vec![r(22, 22, 22)])),
            ("[192.0.2.1]/22", with(Some(V4), None, vec![r(22, 22, 22)])),
            (
                "::1/22",
                with(Some(Ipv6Addr::LOCALHOST.into()), None, vec![r(22, 22, 22)]),
            ),
            (
                "[2001:db8::1]%eth0/22",
                with(
                    Some("2001:db8::1".parse().unwrap()),
                    Some("eth0"),
                    vec![r(22, 22, 22)],
                ),
            ),
            (
                "192.0.2.1%eth0/22",
                with(Some(V4), Some("eth0"), vec![r(22, 22, 22)]),
            ),
            ("%eth0/22", with(None, Some("eth0"), vec![r(22, 22, 22)])),
            (
                "2000-5000,~3000-3010",
                ports(vec![r(2000, 2999, 2000), r(3011, 5000, 3011)]),
            ),
            (
                "~3000-3010,2000-5000:12000-15000",
                ports(vec![r(2000, 2999, 12000), r(3011, 5000, 13011)]),
            ),
            (
                "192.0.2.1/20-30,~25",
                with(Some(V4), None, vec![r(20, 24, 20), r(26, 30, 26)]),
            ),
            ("~25", weak(vec![r(1, 24, 1), r(26, 49151, 26)])),
            (
                "~20000-20010",
                weak(vec![r(1, 19999, 1), r(20011, 49151, 20011)]),
            ),
            ("65535", ports(vec![r(65535, 65535, 65535)])),
            ("0022", ports(vec![r(22, 22, 22)])),
        ];
        for (s, want) in cases {
            assert_eq!(PortSpec::parse(s, &IN), Ok(want), "{s}");
        }
    }

    #[test]
    fn keywords() {
        let none = PortSpec::parse("none", &OUT).unwrap();
        assert_eq!(none.mode, SpecMode::None);
        assert!(none.ranges.is_empty());

        let auto = PortSpec::parse("auto", &OUT).unwrap();
        assert_eq!(auto.mode, SpecMode::Auto);
        assert_eq!(auto.ranges, [r(1, 65535, 1)]);

        let all = PortSpec::parse("all", &IN).unwrap();
        assert_eq!(all.mode, SpecMode::All);
        assert!(all.weak);
        assert_eq!(all.ranges, [r(1, 49151, 1)]);

        let odd = ParseOpts {
            ephemeral: (32768, 60999),
            ..IN
        };
        let all = PortSpec::parse("all", &odd).unwrap();
        assert_eq!(all.ranges, [r(1, 32767, 1), r(61000, 65535, 61000)]);
    }

    /// Each error names the part of the spec that is wrong.
    #[test]
    fn errors_name_the_bad_part() {
        let cases: &[(&str, ParseOpts, SpecError, &str)] = &[
            ("", IN, SpecError::Empty, "empty"),
            ("2x", IN, SpecError::BadNumber("2x".into()), "'2x'"),
            ("22,", IN, SpecError::EmptyItem("22,".into()), "'22,'"),
            ("-5", IN, SpecError::BadNumber("-5".into()), "'-5'"),
            ("22-", IN, SpecError::BadNumber("22-".into()), "'22-'"),
            ("1-2-3", IN, SpecError::BadNumber("2-3".into()), "'2-3'"),
            ("65536", IN, SpecError::TooLarge("65536".into()), "65536"),
            (
                "1-99999999999",
                IN,
                SpecError::TooLarge("99999999999".into()),
                "99999999999",
            ),
            ("80-22", IN, SpecError::Reversed("80-22".into()), "'80-22'"),
            ("~9-8", IN, SpecError::Reversed("9-8".into()), "'9-8'"),
            (
                "22-80:32-91",
                IN,
                SpecError::RemapLength {
                    orig: "22-80".into(),
                    mapped: "32-91".into(),
                },
                "'32-91'",
            ),
            ("0", IN, SpecError::PortZero("0".into()), "port 0"),
            ("0-5", IN, SpecError::PortZero("0-5".into()), "'0-5'"),
            ("22:0", IN, SpecError::PortZero("22:0".into()), "'22:0'"),
            (
                "22,20-30",
                IN,
                SpecError::Overlap("20-30".into()),
                "'20-30'",
            ),
            ("22,22", IN, SpecError::Overlap("22".into()), "'22'"),
            (
                "~20-30,~25",
                IN,
                SpecError::ExclusionOverlap("~25".into()),
                "'~25'",
            ),
            ("foo", IN, SpecError::UnknownKeyword("foo".into()), "'foo'"),
            (
                "none,22",
                IN,
                SpecError::KeywordMixed("none".into()),
                "'none'",
            ),
            (
                "22,auto",
                IN,
                SpecError::KeywordMixed("auto".into()),
                "'auto'",
            ),
            (
                "192.0.2.1/all",
                IN,
                SpecError::KeywordMixed("all".into()),
                "'all'",
            ),
            (
                "127.0.0.1/22",
                OUT,
                SpecError::AddrNotAllowed("127.0.0.1/".into()),
                "'127.0.0.1/'",
            ),
            (
                "%lo/22",
                OUT,
                SpecError::AddrNotAllowed("%lo/".into()),
                "outbound",
            ),
            (
                "192.0.2.300/22",
                IN,
                SpecError::BadAddr("192.0.2.300".into()),
                "'192.0.2.300'",
            ),
            ("/22", IN, SpecError::BadAddr("".into()), "address"),
            ("[::1/22", IN, SpecError::BadAddr("[::1".into()), "'[::1'"),
            (
                "%0123456789abcdef/22",
                IN,
                SpecError::BadIfname("0123456789abcdef".into()),
                "'0123456789abcdef'",
            ),
            ("::1%/22", IN, SpecError::BadIfname("".into()), "interface"),
            ("192.0.2.1/", IN, SpecError::Empty, "empty"),
            (
                "~1-65535",
                IN,
                SpecError::NothingLeft("~1-65535".into()),
                "'~1-65535'",
            ),
        ];
        for (s, opts, want, part) in cases {
            let got = PortSpec::parse(s, opts);
            assert_eq!(got.as_ref(), Err(want), "{s}");
            let msg = want.to_string();
            assert!(msg.contains(part), "{s}: message {msg:?} lacks {part:?}");
        }
    }

    #[test]
    fn fifteen_byte_ifname_is_fine() {
        let s = PortSpec::parse("%0123456789abcde/22", &IN).unwrap();
        assert_eq!(s.ifname.as_deref(), Some("0123456789abcde"));
    }

    #[test]
    fn target_addresses() {
        let t = |spec: &str| PortSpec::parse(spec, &IN).map(|p| (p.addr, p.ranges));
        let a = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let tr = |first, last, to_first, taddr: Option<IpAddr>| PortRange {
            first,
            last,
            to_first,
            taddr,
        };
        assert_eq!(t("22:2022").unwrap().1, [tr(22, 22, 2022, None)]);
        assert_eq!(
            t("22:192.0.2.5").unwrap().1,
            [tr(22, 22, 22, a("192.0.2.5"))]
        );
        assert_eq!(
            t("22-23:192.0.2.5/2022-2023").unwrap().1,
            [tr(22, 23, 2022, a("192.0.2.5"))]
        );
        assert_eq!(
            t("80,22:[2001:db8::5]/2022").unwrap().1,
            [tr(80, 80, 80, None), tr(22, 22, 2022, a("2001:db8::5"))]
        );
        assert_eq!(
            t("22:2001:db8::5").unwrap().1,
            [tr(22, 22, 22, a("2001:db8::5"))]
        );
        // A listening address and a target.
        let (addr, ranges) = t("0.0.0.0/22:192.0.2.5/2022").unwrap();
        assert_eq!(addr, a("0.0.0.0"));
        assert_eq!(ranges, [tr(22, 22, 2022, a("192.0.2.5"))]);
        // An address prefix wins where both read (upstream's order).
        assert_eq!(t("1:2::3/80").unwrap().0, a("1:2::3"));
        // all:TADDR
        let all = PortSpec::parse("all:192.0.2.9", &IN).unwrap();
        assert!(all.weak && all.ranges.iter().all(|r| r.taddr == a("192.0.2.9")));
        assert!(matches!(t("22:nonsense"), Err(SpecError::BadNumber(_))));
        assert!(matches!(
            t("22:192.0.2.5/20-21"),
            Err(SpecError::RemapLength { .. })
        ));
        assert!(matches!(t("22:300.1.1.1/22"), Err(SpecError::BadAddr(_))));
    }
}
