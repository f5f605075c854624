//! `pesto`: the client of the configuration socket (`passt`/`pasta`
//! `-c PATH`), with upstream's command line.
//!
//! # Theory of operation
//!
//! ```text
//! pesto [OPTION]... PATH
//! ```
//!
//! 1. The command line is read in order ([`parse_args`]); `-h` and
//!    `--version` answer at once, a bad option stops before connecting.
//! 2. We connect to `PATH`, read the greeting and every table the server
//!    has (`HOST`: `-t`/`-u`, pasta's `SPLICE`: `-T`/`-U`), each with its
//!    capabilities ([`crate::wire::pesto`]).
//! 3. Without an option that changes anything, the tables are printed and
//!    the connection closed: the server changes nothing.
//! 4. Otherwise the options are applied to our copy of the tables, in
//!    order ([`edit`]), as upstream's client does:
//!    - at first they *replace*: the first `-t`/`-u` empties `HOST`, the
//!      first `-T`/`-U` empties `SPLICE`, later ones add;
//!    - after `-A` they *add*; a rule overlapping one already in the table
//!      is an error;
//!    - after `-D` they *delete*: each rule of the spec must be exactly a
//!      rule of the table; one that overlaps a rule without being it, or
//!      is not there, is an error;
//!    - `-C NAME` empties the table `NAME` (which then counts as emptied
//!      for the replace mode).
//!
//!    Specs are parsed as pasta parses them ([`crate::fwd::rules::from_specs`]),
//!    checked against the table's capabilities (`auto` needs
//!    `CAP_SCAN`, an interface `CAP_IFNAME`, ...), and written as the
//!    server writes its own rules ([`FwdRule::to_raw`] with the families
//!    of the capabilities), so that `-D` finds them byte for byte. Any
//!    error stops here: nothing was sent, the server changes nothing.
//! 5. Every table the server sent goes back, changed or not, and we shut
//!    our side down. Our server answers with a status message (applied,
//!    or refused and why, with the old tables still in force); upstream's
//!    closes without one, which we report without calling it a failure.
//!
//! Everything the server sends is bounded and checked before use: a
//! bad greeting, a truncated table or a server that stops talking
//! ([`TIMEOUT`] for the whole session) is an error message and exit
//! status 1, never a panic.
//!
//! # No seccomp
//!
//! Upstream's client installs a seccomp filter. Ours does not: it runs
//! for a moment as the invoking user, talks to one socket of that user,
//! keeps nothing, and reads the server's bytes through bounded, checked
//! decoders in safe Rust. Nor does it care about allocations: it is not
//! on anybody's data path.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::conf::{Mode, Proto, VERSION};
use crate::fwd::rules::{from_specs, Families, FwdRule, Table};
use crate::wire::pesto::{self as wire, Hello, PifTable, RawRule};

/// How long a whole session may take, from connecting to the status.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// The longest greeting and tables a server can send.
const TABLES_MAX_LEN: usize = wire::HELLO_LEN
    + wire::MAX_TABLES * (1 + wire::PIF_INFO_LEN + wire::MAX_RULES as usize * wire::RULE_LEN)
    + 1;

/// An option that acts on the tables, in command line order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// `-A`: the following specs add.
    Add,
    /// `-D`: the following specs delete.
    Delete,
    /// `-C NAME`: empty a table.
    Clear(String),
    /// `-t`, `-u`, `-T` or `-U` and its spec.
    Spec(char, String),
}

/// A command line to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cli {
    pub(crate) debug: bool,
    /// `-s`: print the tables before and after a change.
    pub(crate) show: bool,
    pub(crate) path: PathBuf,
    pub(crate) actions: Vec<Action>,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Invocation {
    Help,
    Version,
    Run(Cli),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Debug,
    Help,
    Version,
    Add,
    Delete,
    Clear,
    Spec(char),
    Show,
}

/// Short options: letter, takes an argument, meaning (upstream's
/// `dhADC:t:u:T:U:s`).
const SHORT: &[(char, bool, Opt)] = &[
    ('d', false, Opt::Debug),
    ('h', false, Opt::Help),
    ('A', false, Opt::Add),
    ('D', false, Opt::Delete),
    ('C', true, Opt::Clear),
    ('t', true, Opt::Spec('t')),
    ('u', true, Opt::Spec('u')),
    ('T', true, Opt::Spec('T')),
    ('U', true, Opt::Spec('U')),
    ('s', false, Opt::Show),
];

/// Long options: name, takes an argument, meaning.
const LONG: &[(&str, bool, Opt)] = &[
    ("debug", false, Opt::Debug),
    ("help", false, Opt::Help),
    ("version", false, Opt::Version),
    ("add", false, Opt::Add),
    ("delete", false, Opt::Delete),
    ("clear", true, Opt::Clear),
    ("tcp-ports", true, Opt::Spec('t')),
    ("udp-ports", true, Opt::Spec('u')),
    ("tcp-ns", true, Opt::Spec('T')),
    ("udp-ns", true, Opt::Spec('U')),
    ("show", false, Opt::Show),
];

/// Looks up a long option by its name or an unambiguous prefix.
fn long_opt(name: &str) -> Result<(bool, Opt, &'static str), String> {
    if let Some(&(n, a, o)) = LONG.iter().find(|(n, _, _)| *n == name) {
        return Ok((a, o, n));
    }
    let cands: Vec<_> = LONG
        .iter()
        .filter(|(n, _, _)| !name.is_empty() && n.starts_with(name))
        .collect();
    match cands.as_slice() {
        [] => Err(format!("unrecognized option '--{name}'")),
        [&(n, a, o)] => Ok((a, o, n)),
        _ => {
            let names: Vec<String> = cands.iter().map(|(n, _, _)| format!("--{n}")).collect();
            Err(format!(
                "option '--{name}' is ambiguous (could be {})",
                names.join(", ")
            ))
        }
    }
}

/// The command line (without argv[0]), as GNU `getopt_long` reads
/// upstream's: options in order, operands anywhere (`--` ends the
/// options), values attached or in the next argument, long options by
/// unambiguous prefix. `-h` and `--version` answer where they appear.
pub(crate) fn parse_args(args: &[OsString]) -> Result<Invocation, String> {
    let mut debug = false;
    let mut show = false;
    let mut actions = Vec::new();
    let mut operands: Vec<&OsString> = Vec::new();
    let mut i = 0;
    // The next argument, as the value of option `spelt`.
    let value = |i: &mut usize, spelt: &str| -> Result<String, String> {
        let v = args
            .get(*i)
            .ok_or_else(|| format!("option '{spelt}' requires an argument"))?;
        *i += 1;
        Ok(v.to_string_lossy().into_owned())
    };
    while let Some(arg) = args.get(i) {
        i += 1;
        let Some(s) = arg.to_str() else {
            // Not UTF-8: only a path can be that.
            operands.push(arg);
            continue;
        };
        // The options of this argument, and an error after them (in a
        // bundle, the letters before a bad one still count: `-hx` helps).
        let mut found: Vec<(Opt, Option<String>)> = Vec::new();
        let mut bad = None;
        if s == "--" {
            operands.extend(args.get(i..).unwrap_or_default());
            break;
        } else if let Some(body) = s.strip_prefix("--") {
            let (name, attached) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let (has_arg, opt, full) = long_opt(name)?;
            let v = match (has_arg, attached) {
                (true, Some(v)) => Some(v),
                (true, None) => Some(value(&mut i, &format!("--{full}"))?),
                (false, Some(_)) => {
                    return Err(format!("option '--{full}' doesn't allow an argument"))
                }
                (false, None) => None,
            };
            found.push((opt, v));
        } else if let Some(letters) = s.strip_prefix('-').filter(|l| !l.is_empty()) {
            for (off, c) in letters.char_indices() {
                let Some(&(_, has_arg, opt)) = SHORT.iter().find(|(l, _, _)| *l == c) else {
                    bad = Some(format!("invalid option -- '{c}'"));
                    break;
                };
                if has_arg {
                    let tail = letters.get(off + c.len_utf8()..).unwrap_or_default();
                    if !tail.is_empty() {
                        found.push((opt, Some(tail.to_string())));
                    } else {
                        match value(&mut i, &format!("-{c}")) {
                            Ok(v) => found.push((opt, Some(v))),
                            Err(e) => bad = Some(e),
                        }
                    }
                    break;
                }
                found.push((opt, None));
            }
        } else {
            operands.push(arg);
            continue;
        }
        for (opt, v) in found {
            let v = v.unwrap_or_default();
            match opt {
                Opt::Debug => debug = true,
                Opt::Show => show = true,
                Opt::Help => return Ok(Invocation::Help),
                Opt::Version => return Ok(Invocation::Version),
                Opt::Add => actions.push(Action::Add),
                Opt::Delete => actions.push(Action::Delete),
                Opt::Clear => actions.push(Action::Clear(v)),
                Opt::Spec(c) => actions.push(Action::Spec(c, v)),
            }
        }
        if let Some(e) = bad {
            return Err(e);
        }
    }
    match operands.as_slice() {
        [path] => Ok(Invocation::Run(Cli {
            debug,
            show,
            path: PathBuf::from(path),
            actions,
        })),
        [] => Err("missing socket path".into()),
        _ => Err("more than one socket path".into()),
    }
}

/// `--help`.
fn usage() -> String {
    "\
Usage: pesto [OPTION]... PATH
Show or change the port forwarding of a running passt or pasta started
with -c PATH (--conf-path).

  -t, --tcp-ports SPEC    TCP forwarding from the host (the HOST table)
  -u, --udp-ports SPEC    UDP forwarding from the host (the HOST table)
  -T, --tcp-ns SPEC       TCP forwarding from pasta's namespace (SPLICE)
  -U, --udp-ns SPEC       UDP forwarding from pasta's namespace (SPLICE)
    SPEC is as for passt and pasta: 'none', 'auto' (pasta), 'all'
    (passt), or [ADDR][%IFNAME]/PORTS with PORTS a comma-separated list
    of ports or ranges, each optionally ':' target ports, or '~' ports
    to exclude. Examples: 22, 8080:80, 8000-8010, 192.0.2.1/5, ~25.
    At first, the first -t/-u replaces the HOST table and the first
    -T/-U the SPLICE table; further ones add.
  -A, --add               The following specs add rules (conflicts fail)
  -D, --delete            The following specs delete rules, which must
                          match existing rules exactly
  -C, --clear NAME        Empty the table NAME (HOST, SPLICE)
  -s, --show              Show the tables before and after the change
  -d, --debug             Print debugging messages
  -h, --help              Display this help message and exit
      --version           Show the version and exit

Without an option that changes anything, the tables are shown.
"
    .to_string()
}

/// `--version`.
fn version() -> String {
    format!(
        "pesto {VERSION} (passt-rs)\n\
         A Rust reimplementation of passt/pasta.\n\
         License GPL-2.0-or-later: this is free software, without warranty.\n"
    )
}

/// How the specs act, switched by `-A` and `-D`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EditMode {
    Replace,
    Add,
    Delete,
}

/// The name of upstream's inbound table (`-t`, `-u`).
const HOST: &str = "HOST";
/// The name of upstream's outbound table (`-T`, `-U`).
const SPLICE: &str = "SPLICE";

/// Applies `actions` to `tables` in order (see the module doc); `warn`
/// gets what the user should know but does not stop us. On error the
/// tables are half-edited: the caller sends nothing then.
pub(crate) fn edit(
    tables: &mut [PifTable],
    actions: &[Action],
    warn: &mut dyn FnMut(String),
) -> Result<(), String> {
    let mut mode = EditMode::Replace;
    let (mut host_cleared, mut splice_cleared) = (false, false);
    for action in actions {
        match action {
            Action::Add => mode = EditMode::Add,
            Action::Delete => mode = EditMode::Delete,
            Action::Clear(name) => {
                let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
                let names = names.join(", ");
                let t = tables
                    .iter_mut()
                    .find(|t| t.name == *name)
                    .ok_or_else(|| format!("-C {name}: no such table (the server has {names})"))?;
                t.rules.clear();
                if name == HOST {
                    host_cleared = true;
                } else if name == SPLICE {
                    splice_cleared = true;
                }
            }
            Action::Spec(opt, spec) => {
                let inbound = matches!(opt, 't' | 'u');
                let (name, cleared, side) = if inbound {
                    (HOST, &mut host_cleared, "inbound")
                } else {
                    (SPLICE, &mut splice_cleared, "outbound")
                };
                let t = tables
                    .iter_mut()
                    .find(|t| t.name == name)
                    .ok_or_else(|| format!("Can't use -{opt}, no {side} interface"))?;
                if mode == EditMode::Replace && !*cleared {
                    t.rules.clear();
                    *cleared = true;
                }
                let Some(rules) = spec_rules(*opt, spec, t.caps, warn)? else {
                    // `none` adds nothing, and contradicts a rule of its
                    // protocol given before (as upstream).
                    let proto = proto_number(*opt);
                    if t.rules.iter().any(|r| r.proto == proto) {
                        return Err(format!("-{opt} none conflicts with previous options"));
                    }
                    continue;
                };
                for rule in rules {
                    if mode == EditMode::Delete {
                        delete(&mut t.rules, &rule)
                            .map_err(|e| format!("-D -{opt} {spec}: {e}"))?;
                    } else {
                        add(&mut t.rules, rule).map_err(|e| format!("-{opt} {spec}: {e}"))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether the options change anything (else the tables are shown):
/// any of `-A`, `-D`, `-C`, `-t`, `-u`, `-T`, `-U`, as upstream.
fn changes(actions: &[Action]) -> bool {
    !actions.is_empty()
}

/// The IP protocol number of option `opt`.
fn proto_number(opt: char) -> u8 {
    match opt {
        'u' | 'U' => libc::IPPROTO_UDP as u8,
        _ => libc::IPPROTO_TCP as u8,
    }
}

/// The rules of one spec of option `opt` for a table with capabilities
/// `caps`, as the server writes its own; `None` for `none`.
fn spec_rules(
    opt: char,
    spec: &str,
    caps: u32,
    warn: &mut dyn FnMut(String),
) -> Result<Option<Vec<RawRule>>, String> {
    let has = |bit| caps & bit != 0;
    let inbound = matches!(opt, 't' | 'u');
    let proto = if matches!(opt, 'u' | 'U') {
        Proto::Udp
    } else {
        Proto::Tcp
    };
    // `auto` is pasta's (the one with a scanner), `all` passt's.
    let mode = if has(wire::CAP_SCAN) {
        Mode::Pasta
    } else {
        Mode::Passt
    };
    let rules = from_specs(mode, proto, &[spec.to_string()], inbound)
        .map_err(|e| format!("-{opt}: {e}"))?;
    if rules.is_empty() {
        // The one spec without rules.
        return Ok(None);
    }
    let (bit, name) = match proto {
        Proto::Tcp => (wire::CAP_TCP, "TCP"),
        Proto::Udp => (wire::CAP_UDP, "UDP"),
    };
    if !has(bit) {
        return Err(format!("-{opt} {spec}: {name} is disabled on the server"));
    }
    let families = Families {
        v4: has(wire::CAP_IPV4),
        v6: has(wire::CAP_IPV6),
    };
    let mut out = Vec::with_capacity(rules.len());
    let mut warned = false;
    for rule in rules {
        if !inbound && !has(wire::CAP_IFNAME) {
            // Upstream's fallback: without SO_BINDTODEVICE, the
            // namespace's loopback addresses instead of interface lo.
            if !std::mem::replace(&mut warned, true) {
                warn(format!(
                    "SO_BINDTODEVICE unavailable, forwarding only 127.0.0.1 and ::1 for '-{opt} {spec}'"
                ));
            }
            let loopbacks = [
                (families.v4, IpAddr::V4(Ipv4Addr::LOCALHOST)),
                (families.v6, IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ];
            for (_, a) in loopbacks.into_iter().filter(|(on, _)| *on) {
                let r = FwdRule {
                    addr: Some(a),
                    ifname: None,
                    ..rule.clone()
                };
                out.push(r.to_raw(families));
            }
            continue;
        }
        match rule.addr {
            Some(a @ IpAddr::V4(_)) if !families.v4 => {
                return Err(format!(
                    "-{opt} {spec}: IPv4 is disabled on the server, can't forward from {a}"
                ))
            }
            Some(a @ IpAddr::V6(_)) if !families.v6 => {
                return Err(format!(
                    "-{opt} {spec}: IPv6 is disabled on the server, can't forward from {a}"
                ))
            }
            _ => {}
        }
        if let Some(i) = rule.ifname.as_deref().filter(|_| inbound) {
            if !has(wire::CAP_IFNAME) {
                return Err(format!(
                    "-{opt} {spec}: the server can't bind to interface {i} (SO_BINDTODEVICE)"
                ));
            }
        }
        // Target addresses as the server checks them (upstream's client
        // does too).
        let table = if inbound { Table::Host } else { Table::Splice };
        rule.check_target(table, families.v4 && families.v6)
            .map_err(|e| format!("-{opt} {spec}: {e}"))?;
        out.push(rule.to_raw(families));
    }
    Ok(Some(out))
}

/// A rule from the wire, loosely: what the conflict check needs, for
/// rules the server's own checks would refuse too (a target address, a
/// reversed range). `None` for a protocol other than TCP and UDP.
fn loose(raw: &RawRule) -> Option<FwdRule> {
    let proto = match i32::from(raw.proto) {
        libc::IPPROTO_TCP => Proto::Tcp,
        libc::IPPROTO_UDP => Proto::Udp,
        _ => return None,
    };
    let addr = if raw.flags & wire::FLAG_DUAL_STACK != 0 {
        None
    } else {
        Some(RawRule::unpack_addr(raw.addr))
    };
    Some(FwdRule {
        proto,
        addr,
        ifname: raw
            .ifname()
            .ok()
            .flatten()
            .map(|n| String::from_utf8_lossy(n).into_owned()),
        first: raw.first,
        last: raw.last,
        to: raw.to,
        taddr: (raw.taddr != [0; 16]).then(|| RawRule::unpack_addr(raw.taddr)),
        weak: raw.flags & wire::FLAG_WEAK != 0,
        scan: raw.flags & wire::FLAG_SCAN != 0,
    })
}

/// Whether two rules would claim the same socket.
fn conflicts(a: &RawRule, b: &RawRule) -> bool {
    match (loose(a), loose(b)) {
        (Some(a), Some(b)) => a.conflicts(&b),
        _ => a.proto == b.proto && a.first <= b.last && b.first <= a.last,
    }
}

/// Adds `rule` unless it conflicts with one in `rules` or the table is
/// full.
fn add(rules: &mut Vec<RawRule>, rule: RawRule) -> Result<(), String> {
    if let Some(old) = rules.iter().find(|r| conflicts(r, &rule)) {
        return Err(format!(
            "{} conflicts with the rule {}",
            fmt_rule(&rule),
            fmt_rule(old)
        ));
    }
    if rules.len() >= wire::MAX_RULES as usize {
        return Err(format!("too many rules (maximum {})", wire::MAX_RULES));
    }
    rules.push(rule);
    Ok(())
}

/// Deletes the rule of `rules` that is exactly `rule`. Rules are looked
/// at in order, as upstream: one that overlaps `rule` without being it,
/// met first, is an error.
fn delete(rules: &mut Vec<RawRule>, rule: &RawRule) -> Result<(), String> {
    for (i, r) in rules.iter().enumerate() {
        if r == rule {
            rules.remove(i);
            return Ok(());
        }
        if conflicts(r, rule) {
            return Err(format!(
                "{} overlaps the rule {} without matching it, can't delete",
                fmt_rule(rule),
                fmt_rule(r)
            ));
        }
    }
    Err(format!("no rule {} to delete", fmt_rule(rule)))
}

/// A rule from the wire for people: `TCP [*]:8080 => 8080`, as
/// [`FwdRule`]'s `Display` (`*` for both families), plus what only the
/// wire has: a target address (`=> 192.0.2.1:80`), unknown flags.
pub(crate) fn fmt_rule(r: &RawRule) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = match i32::from(r.proto) {
        libc::IPPROTO_TCP => write!(s, "TCP"),
        libc::IPPROTO_UDP => write!(s, "UDP"),
        p => write!(s, "protocol {p}"),
    };
    if r.flags & wire::FLAG_DUAL_STACK != 0 {
        s.push_str(" [*");
    } else {
        let _ = write!(s, " [{}", RawRule::unpack_addr(r.addr));
    }
    match r.ifname() {
        Ok(None) => {}
        Ok(Some(n)) => {
            let _ = write!(s, "%{}", printable(n));
        }
        Err(_) => {
            let _ = write!(s, "%{}", printable(&r.ifname));
        }
    }
    let _ = write!(s, "]:{}", r.first);
    let ranged = r.last != r.first;
    if ranged {
        let _ = write!(s, "-{}", r.last);
    }
    s.push_str(" => ");
    if r.taddr != [0; 16] {
        match RawRule::unpack_addr(r.taddr) {
            IpAddr::V4(a) => {
                let _ = write!(s, "{a}:");
            }
            IpAddr::V6(a) => {
                let _ = write!(s, "[{a}]:");
            }
        }
    }
    let _ = write!(s, "{}", r.to);
    if ranged {
        let _ = write!(s, "-{}", r.to.wrapping_add(r.last.wrapping_sub(r.first)));
    }
    let mut notes = Vec::new();
    if r.flags & wire::FLAG_WEAK != 0 {
        notes.push("weak".to_string());
    }
    if r.flags & wire::FLAG_SCAN != 0 {
        notes.push("scan".to_string());
    }
    let known = wire::FLAG_DUAL_STACK | wire::FLAG_WEAK | wire::FLAG_SCAN;
    if r.flags & !known != 0 {
        notes.push(format!("flags 0x{:x}", r.flags & !known));
    }
    if !notes.is_empty() {
        let _ = write!(s, " ({})", notes.join(", "));
    }
    s
}

/// A name from the server as text for a terminal: control characters
/// (escape sequences) and invalid UTF-8 become `?`.
fn printable(name: &[u8]) -> String {
    String::from_utf8_lossy(name)
        .chars()
        .map(|c| {
            if c.is_control() || c == char::REPLACEMENT_CHARACTER {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// The tables, upstream's way: the name indented by two, each rule by
/// four spaces.
fn fmt_tables(tables: &[PifTable]) -> String {
    let mut s = String::new();
    for t in tables {
        s.push_str("  ");
        s.push_str(&printable(t.name.as_bytes()));
        s.push('\n');
        for r in &t.rules {
            s.push_str("    ");
            s.push_str(&fmt_rule(r));
            s.push('\n');
        }
    }
    s
}

/// Capabilities in words, for `-d`.
fn fmt_caps(caps: u32) -> String {
    let names = [
        (wire::CAP_IPV4, "IPv4"),
        (wire::CAP_IPV6, "IPv6"),
        (wire::CAP_TCP, "TCP"),
        (wire::CAP_UDP, "UDP"),
        (wire::CAP_SCAN, "scan"),
        (wire::CAP_IFNAME, "ifname"),
    ];
    let words: Vec<&str> = names
        .iter()
        .filter(|(b, _)| caps & b != 0)
        .map(|(_, n)| *n)
        .collect();
    format!("0x{caps:x} ({})", words.join(" "))
}

/// The connection to the server, with the session's deadline.
struct Conn {
    s: UnixStream,
    deadline: Instant,
}

impl Conn {
    /// Connects to `path`. A UNIX socket refuses (`EAGAIN`) while its
    /// backlog is full, e.g. while the server serves another client: we
    /// try again until the deadline.
    fn connect(path: &std::path::Path, deadline: Instant) -> Result<Conn, String> {
        let fail =
            |e: &dyn std::fmt::Display| format!("Failed to connect to {}: {e}", path.display());
        let addr = SocketAddrUnix::new(path).map_err(|e| fail(&e))?;
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| fail(&e))?;
        loop {
            match rustix::net::connect(&fd, &addr) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(fail(&std::io::Error::from(e))),
            }
        }
        let s = UnixStream::from(fd);
        s.set_nonblocking(false).map_err(|e| fail(&e))?;
        Ok(Conn { s, deadline })
    }

    /// What is left of the deadline, or an error naming `what` we waited
    /// for.
    fn remaining(&self, what: &str) -> Result<Duration, String> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no {what} from the server within {} s",
                TIMEOUT.as_secs()
            ));
        }
        Ok(left)
    }

    /// Reads what comes, up to the deadline, onto `buf`: the number of
    /// bytes, 0 at the end of the stream.
    fn read_some(&mut self, buf: &mut Vec<u8>, what: &str) -> Result<usize, String> {
        let mut chunk = [0u8; 4096];
        loop {
            let left = self.remaining(what)?;
            self.s
                .set_read_timeout(Some(left))
                .map_err(|e| format!("socket: {e}"))?;
            match self.s.read(&mut chunk) {
                Ok(n) => {
                    buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("Error reading {what} from the server: {e}")),
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), String> {
        let left = self.remaining("room for our update")?;
        self.s
            .set_write_timeout(Some(left))
            .map_err(|e| format!("socket: {e}"))?;
        self.s
            .write_all(bytes)
            .map_err(|e| format!("Error writing to the server: {e}"))
    }
}

/// Reads and checks the greeting and the tables.
fn read_tables(c: &mut Conn, debug: bool) -> Result<Vec<PifTable>, String> {
    let mut buf = Vec::with_capacity(4096);
    let hello = loop {
        match Hello::decode(&buf) {
            Err(_) => {
                return Err(
                    "Bad magic number from server: not a passt/pasta configuration socket".into(),
                )
            }
            Ok(Some(h)) => break h,
            Ok(None) => {
                if c.read_some(&mut buf, "greeting")? == 0 {
                    return Err(format!(
                        "The server closed the connection during its greeting ({} of {} bytes)",
                        buf.len(),
                        wire::HELLO_LEN
                    ));
                }
            }
        }
    };
    if debug {
        eprintln!(
            "pesto: server protocol version {}, pif name size {}, IFNAMSIZ {}",
            hello.version, hello.pif_name_size, hello.ifnamsiz
        );
    }
    match hello.version {
        0 => return Err("Unsupported experimental server protocol (version 0)".into()),
        1 => {
            return Err(
                "Unsupported server protocol version 1 (rules without target address): update the server"
                    .into(),
            )
        }
        v if v > wire::VERSION => {
            return Err(format!(
                "Unknown server protocol version {v} > {}",
                wire::VERSION
            ))
        }
        _ => {}
    }
    if hello.pif_name_size as usize != wire::PIF_NAME_SIZE {
        return Err(format!(
            "Server has unexpected pif name size ({} not {})",
            hello.pif_name_size,
            wire::PIF_NAME_SIZE
        ));
    }
    if hello.ifnamsiz as usize != wire::IFNAMSIZ {
        return Err(format!(
            "Server has unexpected IFNAMSIZ ({} not {})",
            hello.ifnamsiz,
            wire::IFNAMSIZ
        ));
    }
    buf.drain(..wire::HELLO_LEN);
    let tables = loop {
        match wire::decode_tables(&buf) {
            Err(e) => return Err(format!("Bad tables from the server: {e}")),
            Ok(Some((tables, used))) => {
                if used != buf.len() {
                    return Err(format!(
                        "The server sent {} unexpected bytes after its tables",
                        buf.len() - used
                    ));
                }
                break tables;
            }
            Ok(None) => {
                if buf.len() > TABLES_MAX_LEN {
                    return Err("The server's tables are longer than any valid ones".into());
                }
                if c.read_some(&mut buf, "tables")? == 0 {
                    return Err(format!(
                        "The server closed the connection in its tables (truncated after {} bytes)",
                        buf.len()
                    ));
                }
            }
        }
    };
    for t in &tables {
        if tables.iter().filter(|o| o.name == t.name).count() > 1 {
            return Err(format!("The server sent two tables named {}", t.name));
        }
        if debug {
            eprintln!(
                "pesto: table {} ({}): {} rules, capabilities {}",
                t.pif,
                t.name,
                t.rules.len(),
                fmt_caps(t.caps)
            );
        }
    }
    Ok(tables)
}

/// The server's answer to an update: `Ok(None)` if it closed without one
/// (upstream's server), else applied or not and its text.
fn read_status(c: &mut Conn) -> Result<Option<(bool, String)>, String> {
    let mut buf = Vec::new();
    loop {
        match wire::decode_status(&buf) {
            Err(e) => return Err(format!("Bad status from the server: {e}")),
            Ok(Some(st)) => return Ok(Some(st)),
            Ok(None) => {
                if c.read_some(&mut buf, "status")? == 0 {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    return Err(format!(
                        "The server closed the connection in its status (truncated after {} bytes)",
                        buf.len()
                    ));
                }
            }
        }
    }
}

/// Writes `s` to stdout; a closed stdout is not our failure.
fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    let _ = o.flush();
}

/// One run with a parsed command line: the exit status.
fn run(cli: &Cli) -> Result<i32, String> {
    let path = cli.path.display();
    let mut c = Conn::connect(&cli.path, Instant::now() + TIMEOUT)?;
    if cli.debug {
        eprintln!("pesto: connected to {path}");
    }
    let mut tables = read_tables(&mut c, cli.debug)?;
    if !changes(&cli.actions) {
        out(&format!(
            "passt/pasta configuration ({path})\n{}",
            fmt_tables(&tables)
        ));
        let _ = c.s.shutdown(std::net::Shutdown::Both);
        return Ok(0);
    }
    if cli.show {
        out(&format!(
            "Previous configuration ({path})\n{}",
            fmt_tables(&tables)
        ));
    }
    edit(&mut tables, &cli.actions, &mut |w| eprintln!("pesto: {w}"))?;
    if cli.show {
        out(&format!(
            "Updated configuration ({path})\n{}",
            fmt_tables(&tables)
        ));
    }
    let update: Vec<(u8, Vec<RawRule>)> = tables.into_iter().map(|t| (t.pif, t.rules)).collect();
    let mut bytes = Vec::with_capacity(4096);
    wire::encode_update(&update, &mut bytes);
    if cli.debug {
        eprintln!("pesto: sending {} bytes of tables", bytes.len());
    }
    c.write_all(&bytes)?;
    c.s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("Error shutting down the control socket: {e}"))?;
    match read_status(&mut c)? {
        None => {
            eprintln!("pesto: no status from the server (upstream passt?): check its log");
            Ok(0)
        }
        Some((true, text)) => {
            out(&format!("{text}\n"));
            Ok(0)
        }
        Some((false, text)) => {
            eprintln!("pesto: change refused: {text}");
            Ok(1)
        }
    }
}

/// The program: the exit status.
pub fn main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let cli = match parse_args(&args) {
        Ok(Invocation::Help) => {
            out(&usage());
            return 0;
        }
        Ok(Invocation::Version) => {
            out(&version());
            return 0;
        }
        Ok(Invocation::Run(cli)) => cli,
        Err(e) => {
            eprintln!("pesto: {e}\nUsage: pesto [OPTION]... PATH (pesto --help for more)");
            return 1;
        }
    };
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pesto: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u32 = wire::CAP_IPV4
        | wire::CAP_IPV6
        | wire::CAP_TCP
        | wire::CAP_UDP
        | wire::CAP_SCAN
        | wire::CAP_IFNAME;

    fn argv(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    fn spec(opt: char, s: &str) -> Action {
        Action::Spec(opt, s.to_string())
    }

    /// pasta's tables with `caps`: HOST with the rules of the `-t`
    /// specs `host`, SPLICE empty.
    fn pasta_tables(caps: u32, host: &[&str]) -> Vec<PifTable> {
        let mut t = vec![
            PifTable {
                pif: wire::PIF_HOST,
                name: HOST.into(),
                caps,
                rules: Vec::new(),
            },
            PifTable {
                pif: wire::PIF_SPLICE,
                name: SPLICE.into(),
                caps,
                rules: Vec::new(),
            },
        ];
        let actions: Vec<Action> = host.iter().map(|s| spec('t', s)).collect();
        edit(&mut t, &actions, &mut |_| {}).unwrap();
        t
    }

    /// The rules of table `i`, formatted.
    fn shown(t: &[PifTable], i: usize) -> Vec<String> {
        t[i].rules.iter().map(fmt_rule).collect()
    }

    /// Runs `actions` on a copy of `t`: the error, or the new tables.
    fn try_edit(t: &[PifTable], actions: &[Action]) -> Result<Vec<PifTable>, String> {
        let mut t = t.to_vec();
        edit(&mut t, actions, &mut |_| {}).map(|()| t)
    }

    #[test]
    fn command_line() {
        let run = |s: &str| match parse_args(&argv(s)) {
            Ok(Invocation::Run(c)) => c,
            other => panic!("{s}: {other:?}"),
        };
        let c = run("-t 22 -A --udp-ports=53 -sd /run/p.sock -D -T8080 --clear HOST");
        assert!(c.show && c.debug);
        assert_eq!(c.path, PathBuf::from("/run/p.sock"));
        assert_eq!(
            c.actions,
            [
                spec('t', "22"),
                Action::Add,
                spec('u', "53"),
                Action::Delete,
                spec('T', "8080"),
                Action::Clear("HOST".into()),
            ]
        );
        // Bundles end with an option taking the rest as its value;
        // unambiguous prefixes; operands before options; `--`.
        let c = run("sock -At22 --tcp-n 1 --sh");
        assert_eq!(c.actions, [Action::Add, spec('t', "22"), spec('T', "1")]);
        assert!(c.show && !c.debug);
        assert_eq!(run("-- -odd").path, PathBuf::from("-odd"));
        assert!(run("p").actions.is_empty());

        assert_eq!(parse_args(&argv("-t 1 -h -x")), Ok(Invocation::Help));
        assert_eq!(parse_args(&argv("-shx")), Ok(Invocation::Help));
        assert_eq!(parse_args(&argv("p --vers")), Ok(Invocation::Version));
        for (bad, msg) in [
            ("-x -h", "invalid option -- 'x'"),
            ("-sxh", "invalid option -- 'x'"),
            ("--tcp 1 p", "ambiguous"),
            ("--nope p", "unrecognized option '--nope'"),
            ("--show=1 p", "doesn't allow an argument"),
            ("p -t", "option '-t' requires an argument"),
            ("-t 22", "missing socket path"),
            ("a b", "more than one"),
        ] {
            let e = parse_args(&argv(bad)).unwrap_err();
            assert!(e.contains(msg), "{bad}: {e}");
        }
    }

    #[test]
    fn replace_by_default() {
        let t = pasta_tables(ALL, &["10001"]);
        assert_eq!(shown(&t, 0), ["TCP [*]:10001 => 10001"]);

        // The first -t replaces, the next ones add.
        let n = try_edit(&t, &[spec('t', "10002"), spec('t', "10003:80")]).unwrap();
        assert_eq!(
            shown(&n, 0),
            ["TCP [*]:10002 => 10002", "TCP [*]:10003 => 80"]
        );
        // -u replaces the table too (one table for both protocols).
        let n = try_edit(&t, &[spec('u', "53")]).unwrap();
        assert_eq!(shown(&n, 0), ["UDP [*]:53 => 53"]);
        // -T replaces SPLICE only.
        let n = try_edit(&t, &[spec('T', "8080")]).unwrap();
        assert_eq!(shown(&n, 0), ["TCP [*]:10001 => 10001"]);
        assert_eq!(shown(&n, 1), ["TCP [*%lo]:8080 => 8080"]);
        // Replacing with rules that conflict among themselves fails.
        let e = try_edit(&t, &[spec('t', "10002"), spec('t', "10000-10005")]).unwrap_err();
        assert!(e.contains("conflicts with the rule TCP [*]:10002"), "{e}");
    }

    #[test]
    fn add_and_conflicts() {
        let t = pasta_tables(ALL, &["10001", "192.0.2.1/22"]);
        let n = try_edit(&t, &[Action::Add, spec('t', "10003"), spec('u', "10001")]).unwrap();
        assert_eq!(
            shown(&n, 0),
            [
                "TCP [*]:10001 => 10001",
                "TCP [192.0.2.1]:22 => 22",
                "TCP [*]:10003 => 10003",
                "UDP [*]:10001 => 10001",
            ]
        );
        for clash in ["10001", "10000-10002", "192.0.2.1/10001", "22"] {
            let e = try_edit(&t, &[Action::Add, spec('t', clash)]).unwrap_err();
            assert!(e.contains("conflicts"), "{clash}: {e}");
        }
        // Another address, another interface: no conflict.
        try_edit(&t, &[Action::Add, spec('t', "192.0.2.2/22")]).unwrap();
        let t = pasta_tables(ALL, &["%eth0/22"]);
        try_edit(&t, &[Action::Add, spec('t', "%eth1/22")]).unwrap();
    }

    #[test]
    fn delete_exactly() {
        let mut t = pasta_tables(ALL, &["10001", "10002-10004"]);
        edit(&mut t, &[Action::Add, spec('u', "~25")], &mut |_| {}).unwrap();
        let n = try_edit(&t, &[Action::Delete, spec('t', "10002-10004")]).unwrap();
        assert_eq!(n[0].rules.len(), t[0].rules.len() - 1);
        assert!(!shown(&n, 0).iter().any(|r| r.contains("10002")));
        // A spec of several rules deletes them all; exclusion-only lists
        // give the same (weak) rules as the server has.
        let n = try_edit(
            &t,
            &[
                Action::Delete,
                spec('t', "10001,10002-10004"),
                spec('u', "~25"),
            ],
        )
        .unwrap();
        assert!(n[0].rules.is_empty(), "{:?}", shown(&n, 0));

        let cases = [
            (
                "10003",
                "overlaps the rule TCP [*]:10002-10004 => 10002-10004 without matching it",
            ),
            ("10002-10004:20002-20004", "overlaps"),
            ("10001-10002", "overlaps"),
            ("9999", "no rule TCP [*]:9999 => 9999 to delete"),
        ];
        for (s, msg) in cases {
            let e = try_edit(&t, &[Action::Delete, spec('t', s)]).unwrap_err();
            assert!(
                e.starts_with(&format!("-D -t {s}: ")) && e.contains(msg),
                "{s}: {e}"
            );
        }
        let e = try_edit(&t, &[Action::Delete, spec('u', "10001")]).unwrap_err();
        assert!(e.contains("overlaps the rule UDP [*]:26-"), "{e}");
    }

    #[test]
    fn clear_and_none() {
        let t = pasta_tables(ALL, &["10001"]);
        let n = try_edit(&t, &[Action::Clear("HOST".into())]).unwrap();
        assert!(n[0].rules.is_empty());
        // A cleared table is not cleared again by the next -t.
        let n = try_edit(
            &t,
            &[spec('t', "1"), Action::Clear("HOST".into()), spec('t', "2")],
        )
        .unwrap();
        assert_eq!(shown(&n, 0), ["TCP [*]:2 => 2"]);
        let e = try_edit(&t, &[Action::Clear("NOPE".into())]).unwrap_err();
        assert!(
            e.contains("-C NOPE: no such table (the server has HOST, SPLICE)"),
            "{e}"
        );

        // none: an empty table, unless given after rules of its protocol.
        let n = try_edit(&t, &[spec('t', "none")]).unwrap();
        assert!(n[0].rules.is_empty());
        let n = try_edit(&t, &[spec('u', "53"), spec('t', "none")]).unwrap();
        assert_eq!(shown(&n, 0), ["UDP [*]:53 => 53"]);
        let e = try_edit(&t, &[spec('t', "22"), spec('t', "none")]).unwrap_err();
        assert_eq!(e, "-t none conflicts with previous options");
    }

    #[test]
    fn capabilities() {
        // passt: no scanner, no SPLICE table.
        let passt_caps = ALL & !wire::CAP_SCAN;
        let mut passt = pasta_tables(passt_caps, &["22"]);
        passt.truncate(1);
        let e = try_edit(&passt, &[spec('t', "auto")]).unwrap_err();
        assert!(
            e.contains("'auto' port forwarding is only allowed for pasta"),
            "{e}"
        );
        let e = try_edit(&passt, &[spec('T', "22")]).unwrap_err();
        assert_eq!(e, "Can't use -T, no outbound interface");
        let n = try_edit(&passt, &[spec('t', "all")]).unwrap();
        assert!(n[0].rules.iter().all(|r| r.flags & wire::FLAG_WEAK != 0));

        let pasta = pasta_tables(ALL, &[]);
        let n = try_edit(&pasta, &[spec('t', "auto")]).unwrap();
        assert_eq!(shown(&n, 0), ["TCP [*]:1-65535 => 1-65535 (scan)"]);
        let e = try_edit(&pasta, &[spec('t', "all")]).unwrap_err();
        assert!(e.contains("only allowed for passt"), "{e}");

        // One family: the wildcard of that family, no dual stack.
        let v4 = pasta_tables(ALL & !wire::CAP_IPV6, &["22"]);
        assert_eq!(shown(&v4, 0), ["TCP [0.0.0.0]:22 => 22"]);
        let e = try_edit(&v4, &[Action::Add, spec('t', "[::1]/23")]).unwrap_err();
        assert!(e.contains("IPv6 is disabled on the server"), "{e}");
        let e = try_edit(&v4, &[spec('u', "53")]).map(|_| ()).err();
        assert_eq!(e, None);
        let no_udp = pasta_tables(ALL & !wire::CAP_UDP, &[]);
        let e = try_edit(&no_udp, &[spec('u', "53")]).unwrap_err();
        assert!(e.contains("UDP is disabled on the server"), "{e}");

        // Without SO_BINDTODEVICE: -T listens on the loopback addresses,
        // with a warning; interfaces in -t specs are refused.
        let no_if = pasta_tables(ALL & !wire::CAP_IFNAME, &[]);
        let mut warnings = Vec::new();
        let mut n = no_if.clone();
        edit(&mut n, &[spec('T', "80,81")], &mut |w| warnings.push(w)).unwrap();
        assert_eq!(
            shown(&n, 1),
            [
                "TCP [127.0.0.1]:80 => 80",
                "TCP [::1]:80 => 80",
                "TCP [127.0.0.1]:81 => 81",
                "TCP [::1]:81 => 81",
            ]
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let e = try_edit(&no_if, &[spec('t', "%eth0/22")]).unwrap_err();
        assert!(e.contains("can't bind to interface eth0"), "{e}");
        // Bad specs, as pasta says them.
        let e = try_edit(&pasta, &[spec('t', "70000")]).unwrap_err();
        assert!(
            e.starts_with("-t: in '70000'") && e.contains("out of range"),
            "{e}"
        );
        let e = try_edit(&pasta, &[spec('T', "::1/22")]).unwrap_err();
        assert!(e.contains("not allowed for outbound"), "{e}");
    }

    /// The format is [`FwdRule`]'s where both say the same; the wire
    /// alone has target addresses and unknown flags.
    #[test]
    fn rule_format() {
        let rules = from_specs(
            Mode::Pasta,
            Proto::Udp,
            &["192.0.2.1%eth0/22-80:32-90".to_string()],
            true,
        )
        .unwrap();
        let mut more = from_specs(Mode::Pasta, Proto::Tcp, &["~25".to_string()], true).unwrap();
        more.extend(from_specs(Mode::Pasta, Proto::Tcp, &["auto".to_string()], false).unwrap());
        for r in rules.iter().chain(&more) {
            assert_eq!(fmt_rule(&r.to_raw(Families::BOTH)), r.to_string());
        }
        let mut raw = rules[0].to_raw(Families::BOTH);
        raw.taddr = RawRule::pack_addr("2001:db8::1".parse().unwrap());
        raw.flags |= 0x80;
        raw.proto = 132;
        assert_eq!(
            fmt_rule(&raw),
            "protocol 132 [192.0.2.1%eth0]:22-80 => [2001:db8::1]:32-90 (flags 0x80)"
        );
        raw.ifname = [b'x'; 16];
        assert!(fmt_rule(&raw).contains("%xxxxxxxxxxxxxxxx]"));
        raw.ifname = *b"e\x1b[2Jt\xff\0\0\0\0\0\0\0\0\0";
        assert!(
            fmt_rule(&raw).contains("[192.0.2.1%e?[2Jt?]"),
            "{}",
            fmt_rule(&raw)
        );

        let t = pasta_tables(ALL, &["10001"]);
        assert_eq!(
            fmt_tables(&t),
            "  HOST\n    TCP [*]:10001 => 10001\n  SPLICE\n"
        );
    }

    /// What a server sends, through a socket pair: the tables, or the
    /// error for each way it can be wrong.
    fn tables_from(bytes: &[u8], close: bool) -> Result<Vec<PifTable>, String> {
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(bytes).unwrap();
        if close {
            drop(b);
        } else {
            std::mem::forget(b);
        }
        let mut c = Conn {
            s: a,
            deadline: Instant::now() + Duration::from_millis(300),
        };
        read_tables(&mut c, false)
    }

    fn greeting(version: u32, name_size: u32, ifnamsiz: u32) -> Vec<u8> {
        let mut b = b"basil:s\0".to_vec();
        for v in [version, name_size, ifnamsiz] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b
    }

    #[test]
    fn server_bytes() {
        let t = pasta_tables(ALL, &["10001", "22-23:32-33"]);
        let mut ok = greeting(2, 128, 16);
        wire::encode_tables(&t, &mut ok);
        assert_eq!(tables_from(&ok, true).unwrap(), t);
        // The server stays connected after its tables.
        assert_eq!(tables_from(&ok, false).unwrap(), t);

        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"HTTP/1.1 400 Bad Request\r\n".to_vec(), "Bad magic"),
            (
                greeting(3, 128, 16),
                "Unknown server protocol version 3 > 2",
            ),
            (greeting(0, 128, 16), "experimental"),
            (greeting(1, 128, 16), "version 1"),
            (greeting(2, 64, 16), "unexpected pif name size (64 not 128)"),
            (greeting(2, 128, 32), "unexpected IFNAMSIZ (32 not 16)"),
            (ok[..10].to_vec(), "during its greeting (10 of 20 bytes)"),
            (ok[..ok.len() - 1].to_vec(), "truncated"),
            (ok[..ok.len() - 30].to_vec(), "truncated"),
            ([&ok[..], &[0]].concat(), "1 unexpected bytes"),
        ];
        for (bytes, msg) in cases {
            let e = tables_from(&bytes, true).unwrap_err();
            assert!(e.contains(msg), "{msg}: {e}");
        }
        // A server that stops talking.
        let e = tables_from(&ok[..ok.len() - 1], false).unwrap_err();
        assert!(e.contains("no tables from the server within"), "{e}");
        let e = tables_from(&ok[..5], false).unwrap_err();
        assert!(e.contains("no greeting"), "{e}");

        // Table contents: counts past the limit, names without their end.
        let mut bad = greeting(2, 128, 16);
        bad.push(wire::PIF_HOST);
        bad.extend_from_slice(&[b'x'; 128]);
        bad.extend_from_slice(&[0; 8]);
        let e = tables_from(&bad, true).unwrap_err();
        assert!(e.contains("Bad tables from the server"), "{e}");
        let mut bad = greeting(2, 128, 16);
        bad.push(wire::PIF_HOST);
        bad.extend_from_slice(&[0; 128]);
        bad.extend_from_slice(&ALL.to_be_bytes());
        bad.extend_from_slice(&u32::MAX.to_be_bytes());
        let e = tables_from(&bad, true).unwrap_err();
        assert!(e.contains("rules (maximum 255)"), "{e}");
        // Two tables of one name.
        let mut two = t.clone();
        two[1].name = HOST.into();
        let mut bad = greeting(2, 128, 16);
        wire::encode_tables(&two, &mut bad);
        let e = tables_from(&bad, true).unwrap_err();
        assert!(e.contains("two tables named HOST"), "{e}");
    }

    #[test]
    fn server_status() {
        let status = |bytes: &[u8]| {
            let (a, mut b) = UnixStream::pair().unwrap();
            b.write_all(bytes).unwrap();
            drop(b);
            let mut c = Conn {
                s: a,
                deadline: Instant::now() + Duration::from_secs(5),
            };
            read_status(&mut c)
        };
        let mut ok = Vec::new();
        wire::encode_status(true, "applied", &mut ok);
        assert_eq!(status(&ok), Ok(Some((true, "applied".into()))));
        let mut no = Vec::new();
        wire::encode_status(false, "bind: in use", &mut no);
        assert_eq!(status(&no), Ok(Some((false, "bind: in use".into()))));
        assert_eq!(status(b""), Ok(None));
        assert!(status(&ok[..12]).unwrap_err().contains("truncated"));
        assert!(status(b"basil:s\0\0\0\0\0")
            .unwrap_err()
            .contains("Bad status"));
    }
}
