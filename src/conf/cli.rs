//! Command line parsing: argv (without argv[0]) to typed [`Options`].
//!
//! # Theory of operation
//!
//! passt and pasta are driven by other programs (Podman, libvirt, QEMU,
//! RootlessKit) with fixed command lines, so the parser reproduces GNU
//! `getopt_long` with the upstream short string
//! `+dqfel:hs:F:I:p:P:m:a:n:M:g:i:o:D:S:H:461t:u:T:U:` exactly:
//!
//! * options are processed strictly in order; a value may be attached
//!   (`-t22`, `--mtu=1500`) or be the next argument (`-t 22`,
//!   `--mtu 1500`); short flags bundle (`-fd`, `-fP file`);
//! * a long option may be shortened to any unambiguous prefix
//!   (`--conf` is `--config-net`); an exact name always wins over longer
//!   names it is a prefix of (`--no-dhcp` vs `--no-dhcpv6`), and a prefix
//!   of several names that mean the same option (`--sock`: `--socket`,
//!   `--socket-path`) is not ambiguous;
//! * `--` ends the options, and so does the first non-option argument
//!   (the leading `+`): in pasta that is the PID or the command, whose own
//!   options are left alone (`pasta ip -j addr`);
//! * `--help` and `--version` stop parsing where they appear: options
//!   before them have been validated (RootlessKit probes for features with
//!   `pasta --host-lo-to-ns-lo --version` and expects exit status 0),
//!   options after them are not looked at.
//!
//! This is a small hand-written getopt rather than clap: clap validates the
//! whole command line before acting on any of it (so `--version` could not
//! succeed or fail depending on what precedes it), cannot be told that a
//! prefix shared by two aliases is not ambiguous, and would need
//! per-option hooks for the in-order "last one wins / `none` resets"
//! semantics of `-a`, `-n`, `-D`, `-S`, `-s`/`--fd`. The option table below is
//! the single source of truth for names, short letters and arguments.
//!
//! Validation mirrors upstream: everything that can be checked without the
//! host (address syntax and class, MTU range, MAC syntax, mode-restricted
//! options, namespace target) is checked here; `-t`/`-u`/`-T`/`-U` specs
//! and `-D` are, as upstream, checked after all other options (so an option
//! error earlier on the line is reported first). Port specs are only
//! syntax-checked here and stored as strings in [`FwdSpecs`]; the
//! forwarding module turns them into rules.
//!
//! Defaults that need the host (addresses, gateway, DNS, interface names)
//! are applied by [`super::resolve`], not here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use super::{FwdSpecs, LogLevel, Mode, NsTarget, MAX_MTU, VERSION};

/// Errors on the command line: each names the offending option or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CliError {
    #[error("Unrecognized option: {0}")]
    Unrecognized(String),
    #[error("Ambiguous option: {0} (could be {1})")]
    Ambiguous(String, String),
    #[error("Option {0} requires an argument")]
    MissingArgument(String),
    #[error("Option {0} doesn't allow an argument")]
    UnexpectedArgument(String),
    #[error("{0} is for {1} mode only")]
    WrongMode(String, &'static str),
    #[error("{0}: not supported yet")]
    NotSupported(String),
    /// Any other invalid value or combination, with upstream's wording.
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of this module.
pub(crate) type Result<T> = std::result::Result<T, CliError>;

/// What the command line asks for.
// Built once at start-up: the size of `Run` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// `-h`/`--help`: usage text for the mode, to print on stdout (exit 0).
    Help(String),
    /// `--version`: version text, to print on stdout (exit 0).
    Version(String),
    /// `--print-capabilities`: print the vhost-user capabilities
    /// (`{"type": "net"}`) and exit 0.
    PrintCapabilities,
    /// Run with these options.
    Run(Options),
}

/// Everything given on the command line, typed but not yet merged with the
/// host's configuration. `None` / empty means "not given".
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) mode: Mode,
    /// Last of `-q`, `-d`, `--trace` wins.
    pub(crate) log_level: LogLevel,
    pub(crate) log_file: Option<PathBuf>,
    /// `--log-size`, bytes.
    pub(crate) log_size: Option<u64>,
    pub(crate) foreground: bool,
    /// `--runas` as given (UID, UID:GID, LOGIN, LOGIN:GROUP).
    pub(crate) runas: Option<String>,
    pub(crate) pcap: Option<PathBuf>,
    /// `-c`: the configuration socket.
    pub(crate) conf_path: Option<PathBuf>,
    pub(crate) pid_file: Option<PathBuf>,
    /// `-F`/`--fd` (cleared by a later `-s`).
    pub(crate) fd: Option<i32>,
    /// `-s` (cleared by a later `--fd`).
    pub(crate) socket: Option<PathBuf>,
    /// `-1`, also set by `--fd`.
    pub(crate) one_off: bool,
    /// `--vhost-user` anywhere before the end of options.
    pub(crate) vhost_user: bool,
    pub(crate) mtu: Option<u16>,
    /// `-a` (IPv4).
    pub(crate) addr4: Option<Ipv4Addr>,
    /// IPv4 prefix length: from `-a ADDR/LEN`, `-n`, or the class of the
    /// `-a` address.
    pub(crate) prefix4: Option<u8>,
    /// `-a` (IPv6; its prefix length is ignored, as upstream).
    pub(crate) addr6: Option<Ipv6Addr>,
    /// `-M`.
    pub(crate) mac: Option<[u8; 6]>,
    pub(crate) gw4: Option<Ipv4Addr>,
    pub(crate) gw6: Option<Ipv6Addr>,
    /// `-i`: template interface for both families.
    pub(crate) ifname: Option<String>,
    /// `-o`.
    pub(crate) addr_out4: Option<Ipv4Addr>,
    pub(crate) addr_out6: Option<Ipv6Addr>,
    pub(crate) ifname_out4: Option<String>,
    pub(crate) ifname_out6: Option<String>,
    /// `-D` addresses (at most 3 per family, extra ones dropped).
    pub(crate) dns4: Vec<Ipv4Addr>,
    pub(crate) dns6: Vec<Ipv6Addr>,
    /// `-D none` (or `--splice-only`): no nameservers at all.
    pub(crate) no_dns: bool,
    pub(crate) dns_forward4: Option<Ipv4Addr>,
    pub(crate) dns_forward6: Option<Ipv6Addr>,
    pub(crate) dns_host4: Option<Ipv4Addr>,
    pub(crate) dns_host6: Option<Ipv6Addr>,
    /// `-S` domains (whitespace-split, at most 6).
    pub(crate) search: Vec<String>,
    /// `-S none` (or `--splice-only`).
    pub(crate) no_search: bool,
    /// Mode default applied: true in pasta unless `--dhcp-dns`, true in
    /// passt with `--no-dhcp-dns`.
    pub(crate) no_dhcp_dns: bool,
    pub(crate) no_dhcp_search: bool,
    pub(crate) no_tcp: bool,
    pub(crate) no_udp: bool,
    pub(crate) no_icmp: bool,
    pub(crate) no_dhcp: bool,
    pub(crate) no_ndp: bool,
    pub(crate) no_dhcpv6: bool,
    pub(crate) no_ra: bool,
    pub(crate) freebind: bool,
    /// `--no-map-gw` or `--map-host-loopback none`.
    pub(crate) no_map_gw: bool,
    pub(crate) map_host_loopback4: Option<Ipv4Addr>,
    pub(crate) map_host_loopback6: Option<Ipv6Addr>,
    pub(crate) map_guest_addr4: Option<Ipv4Addr>,
    pub(crate) map_guest_addr6: Option<Ipv6Addr>,
    /// `-4` (last of `-4`/`-6` wins).
    pub(crate) v4_only: bool,
    pub(crate) v6_only: bool,
    pub(crate) hostname: Option<String>,
    pub(crate) fqdn: Option<String>,
    /// Port specs as given, syntax-checked; empty: mode default.
    pub(crate) fwd: FwdSpecs,
    // pasta only
    pub(crate) ns_ifname: Option<String>,
    pub(crate) ns_mac: Option<[u8; 6]>,
    /// `--userns`, or `/proc/PID/ns/user` for a PID target.
    pub(crate) userns: Option<PathBuf>,
    /// `--netns-only`, or implied by joining a netns without a userns.
    pub(crate) netns_only: bool,
    pub(crate) no_netns_quit: bool,
    pub(crate) config_net: bool,
    pub(crate) no_copy_routes: bool,
    pub(crate) no_copy_addrs: bool,
    pub(crate) no_splice: bool,
    /// `--splice-only` (implies `host_lo_to_ns_lo`, `no_icmp`, `no_dns`,
    /// `no_search`, already applied).
    pub(crate) splice_only: bool,
    pub(crate) host_lo_to_ns_lo: bool,
    /// pasta: what namespace to use (always `Some` in pasta mode).
    pub(crate) target: Option<NsTarget>,
}

impl Options {
    /// Nothing given, with the mode's defaults.
    pub(crate) fn new(mode: Mode) -> Options {
        let pasta = mode == Mode::Pasta;
        Options {
            mode,
            log_level: LogLevel::Info,
            log_file: None,
            log_size: None,
            foreground: false,
            runas: None,
            pcap: None,
            conf_path: None,
            pid_file: None,
            fd: None,
            socket: None,
            one_off: false,
            vhost_user: false,
            mtu: None,
            addr4: None,
            prefix4: None,
            addr6: None,
            mac: None,
            gw4: None,
            gw6: None,
            ifname: None,
            addr_out4: None,
            addr_out6: None,
            ifname_out4: None,
            ifname_out6: None,
            dns4: Vec::new(),
            dns6: Vec::new(),
            no_dns: false,
            dns_forward4: None,
            dns_forward6: None,
            dns_host4: None,
            dns_host6: None,
            search: Vec::new(),
            no_search: false,
            no_dhcp_dns: pasta,
            no_dhcp_search: pasta,
            no_tcp: false,
            no_udp: false,
            no_icmp: false,
            no_dhcp: false,
            no_ndp: false,
            no_dhcpv6: false,
            no_ra: false,
            freebind: false,
            no_map_gw: false,
            map_host_loopback4: None,
            map_host_loopback6: None,
            map_guest_addr4: None,
            map_guest_addr6: None,
            v4_only: false,
            v6_only: false,
            hostname: None,
            fqdn: None,
            fwd: FwdSpecs::default(),
            ns_ifname: None,
            ns_mac: None,
            userns: None,
            netns_only: false,
            no_netns_quit: false,
            config_net: false,
            no_copy_routes: false,
            no_copy_addrs: false,
            no_splice: false,
            splice_only: false,
            host_lo_to_ns_lo: false,
            target: None,
        }
    }
}

// ---------------------------------------------------------------------------
// Option table
// ---------------------------------------------------------------------------

/// Every option we know, whatever its spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Debug,
    Quiet,
    Foreground,
    Stderr,
    LogFile,
    Help,
    Socket,
    Fd,
    NsIfname,
    Pcap,
    Pid,
    Mtu,
    Address,
    Netmask,
    MacAddr,
    Gateway,
    Interface,
    Outbound,
    Dns,
    Search,
    Hostname,
    NoTcp,
    NoUdp,
    NoIcmp,
    NoDhcp,
    NoDhcpv6,
    NoNdp,
    NoRa,
    NoSplice,
    SpliceOnly,
    Freebind,
    NoMapGw,
    Ipv4Only,
    Ipv6Only,
    OneOff,
    TcpPorts,
    UdpPorts,
    TcpNs,
    UdpNs,
    Userns,
    Netns,
    NsMacAddr,
    DhcpDns,
    NoDhcpDns,
    DhcpSearch,
    NoDhcpSearch,
    DnsForward,
    NoNetnsQuit,
    Trace,
    Runas,
    LogSize,
    Version,
    OutboundIf4,
    OutboundIf6,
    ConfigNet,
    NoCopyRoutes,
    NoCopyAddrs,
    NetnsOnly,
    MapHostLoopback,
    MapGuestAddr,
    HostLoToNsLo,
    DnsHost,
    VhostUser,
    PrintCapabilities,
    Fqdn,
    RepairPath,
    MigrateExit,
    MigrateNoLinger,
    Stats,
    ConfPath,
}

/// Long options: name, takes an argument, meaning.
const LONG: &[(&str, bool, Opt)] = &[
    ("debug", false, Opt::Debug),
    ("quiet", false, Opt::Quiet),
    ("foreground", false, Opt::Foreground),
    ("stderr", false, Opt::Stderr),
    ("log-file", true, Opt::LogFile),
    ("help", false, Opt::Help),
    ("socket", true, Opt::Socket),
    ("fd", true, Opt::Fd),
    ("ns-ifname", true, Opt::NsIfname),
    ("pcap", true, Opt::Pcap),
    ("pid", true, Opt::Pid),
    ("mtu", true, Opt::Mtu),
    ("address", true, Opt::Address),
    ("netmask", true, Opt::Netmask),
    ("mac-addr", true, Opt::MacAddr),
    ("gateway", true, Opt::Gateway),
    ("interface", true, Opt::Interface),
    ("outbound", true, Opt::Outbound),
    ("dns", true, Opt::Dns),
    ("search", true, Opt::Search),
    ("hostname", true, Opt::Hostname),
    ("no-tcp", false, Opt::NoTcp),
    ("no-udp", false, Opt::NoUdp),
    ("no-icmp", false, Opt::NoIcmp),
    ("no-dhcp", false, Opt::NoDhcp),
    ("no-dhcpv6", false, Opt::NoDhcpv6),
    ("no-ndp", false, Opt::NoNdp),
    ("no-ra", false, Opt::NoRa),
    ("no-splice", false, Opt::NoSplice),
    ("splice-only", false, Opt::SpliceOnly),
    ("freebind", false, Opt::Freebind),
    ("no-map-gw", false, Opt::NoMapGw),
    ("ipv4-only", false, Opt::Ipv4Only),
    ("ipv6-only", false, Opt::Ipv6Only),
    ("one-off", false, Opt::OneOff),
    ("tcp-ports", true, Opt::TcpPorts),
    ("udp-ports", true, Opt::UdpPorts),
    ("tcp-ns", true, Opt::TcpNs),
    ("udp-ns", true, Opt::UdpNs),
    ("userns", true, Opt::Userns),
    ("netns", true, Opt::Netns),
    ("ns-mac-addr", true, Opt::NsMacAddr),
    ("dhcp-dns", false, Opt::DhcpDns),
    ("no-dhcp-dns", false, Opt::NoDhcpDns),
    ("dhcp-search", false, Opt::DhcpSearch),
    ("no-dhcp-search", false, Opt::NoDhcpSearch),
    ("dns-forward", true, Opt::DnsForward),
    ("no-netns-quit", false, Opt::NoNetnsQuit),
    ("trace", false, Opt::Trace),
    ("runas", true, Opt::Runas),
    ("log-size", true, Opt::LogSize),
    ("version", false, Opt::Version),
    ("outbound-if4", true, Opt::OutboundIf4),
    ("outbound-if6", true, Opt::OutboundIf6),
    ("config-net", false, Opt::ConfigNet),
    ("no-copy-routes", false, Opt::NoCopyRoutes),
    ("no-copy-addrs", false, Opt::NoCopyAddrs),
    ("netns-only", false, Opt::NetnsOnly),
    ("map-host-loopback", true, Opt::MapHostLoopback),
    ("map-guest-addr", true, Opt::MapGuestAddr),
    ("host-lo-to-ns-lo", false, Opt::HostLoToNsLo),
    ("dns-host", true, Opt::DnsHost),
    ("vhost-user", false, Opt::VhostUser),
    ("print-capabilities", false, Opt::PrintCapabilities),
    ("socket-path", true, Opt::Socket),
    ("fqdn", true, Opt::Fqdn),
    ("repair-path", true, Opt::RepairPath),
    ("migrate-exit", false, Opt::MigrateExit),
    ("migrate-no-linger", false, Opt::MigrateNoLinger),
    ("stats", true, Opt::Stats),
    ("conf-path", true, Opt::ConfPath),
];

/// Short options: letter, takes an argument, meaning.
const SHORT: &[(char, bool, Opt)] = &[
    ('d', false, Opt::Debug),
    ('q', false, Opt::Quiet),
    ('f', false, Opt::Foreground),
    ('e', false, Opt::Stderr),
    ('l', true, Opt::LogFile),
    ('h', false, Opt::Help),
    ('s', true, Opt::Socket),
    ('F', true, Opt::Fd),
    ('I', true, Opt::NsIfname),
    ('p', true, Opt::Pcap),
    ('c', true, Opt::ConfPath),
    ('P', true, Opt::Pid),
    ('m', true, Opt::Mtu),
    ('a', true, Opt::Address),
    ('n', true, Opt::Netmask),
    ('M', true, Opt::MacAddr),
    ('g', true, Opt::Gateway),
    ('i', true, Opt::Interface),
    ('o', true, Opt::Outbound),
    ('D', true, Opt::Dns),
    ('S', true, Opt::Search),
    ('H', true, Opt::Hostname),
    ('4', false, Opt::Ipv4Only),
    ('6', false, Opt::Ipv6Only),
    ('1', false, Opt::OneOff),
    ('t', true, Opt::TcpPorts),
    ('u', true, Opt::UdpPorts),
    ('T', true, Opt::TcpNs),
    ('U', true, Opt::UdpNs),
];

/// One option occurrence: what it is, its value, and how it was spelt
/// (for messages).
#[derive(Debug)]
struct Occurrence<'a> {
    opt: Opt,
    value: Option<&'a str>,
    spelt: String,
}

impl Occurrence<'_> {
    /// The value of an option that requires one (guaranteed by the
    /// tokenizer; an empty string otherwise, never a panic).
    fn val(&self) -> &str {
        self.value.unwrap_or("")
    }
}

/// getopt_long with a leading `+`: yields options in order, stops at `--`
/// or at the first non-option, then [`Getopt::operands`] is the rest.
struct Getopt<'a> {
    args: &'a [String],
    /// Next argument to look at.
    next: usize,
    /// Inside a bundle of short options: argument index and byte offset of
    /// the next letter.
    bundle: Option<(usize, usize)>,
    done: bool,
}

impl<'a> Getopt<'a> {
    fn new(args: &'a [String]) -> Self {
        Getopt {
            args,
            next: 0,
            bundle: None,
            done: false,
        }
    }

    /// Arguments after the options (PID, command), valid once the
    /// iterator has returned `None`.
    fn operands(&self) -> &'a [String] {
        self.args.get(self.next..).unwrap_or(&[])
    }

    fn long(&mut self, body: &'a str) -> Result<Occurrence<'a>> {
        let (name, attached) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let spelt = format!("--{name}");
        let (opt, has_arg, full) = match LONG.iter().find(|(n, _, _)| *n == name) {
            Some(&(n, a, o)) => (o, a, n),
            None => {
                let cands: Vec<_> = LONG
                    .iter()
                    .filter(|(n, _, _)| !name.is_empty() && n.starts_with(name))
                    .collect();
                let Some(&&(n0, a0, o0)) = cands.first() else {
                    return Err(CliError::Unrecognized(spelt));
                };
                if cands.iter().any(|&&(_, a, o)| o != o0 || a != a0) {
                    let names: Vec<String> =
                        cands.iter().map(|(n, _, _)| format!("--{n}")).collect();
                    return Err(CliError::Ambiguous(spelt, names.join(", ")));
                }
                (o0, a0, n0)
            }
        };
        let spelt = format!("--{full}");
        let value = match (has_arg, attached) {
            (true, Some(v)) => Some(v),
            (true, None) => {
                let v = self
                    .args
                    .get(self.next)
                    .ok_or_else(|| CliError::MissingArgument(spelt.clone()))?;
                self.next += 1;
                Some(v.as_str())
            }
            (false, Some(_)) => return Err(CliError::UnexpectedArgument(spelt)),
            (false, None) => None,
        };
        Ok(Occurrence { opt, value, spelt })
    }

    fn short(&mut self, idx: usize, off: usize) -> Result<Occurrence<'a>> {
        let arg: &'a str = self.args.get(idx).map(String::as_str).unwrap_or("");
        let rest = arg.get(off..).unwrap_or("");
        let Some(c) = rest.chars().next() else {
            self.bundle = None;
            return Err(CliError::Unrecognized(arg.to_string()));
        };
        let after = off + c.len_utf8();
        let spelt = format!("-{c}");
        let Some(&(_, has_arg, opt)) = SHORT.iter().find(|(l, _, _)| *l == c) else {
            self.bundle = None;
            return Err(CliError::Unrecognized(spelt));
        };
        let tail = arg.get(after..).unwrap_or("");
        if has_arg {
            self.bundle = None;
            let value = if !tail.is_empty() {
                tail
            } else {
                let v = self
                    .args
                    .get(self.next)
                    .ok_or_else(|| CliError::MissingArgument(spelt.clone()))?;
                self.next += 1;
                v.as_str()
            };
            return Ok(Occurrence {
                opt,
                value: Some(value),
                spelt,
            });
        }
        self.bundle = if tail.is_empty() {
            None
        } else {
            Some((idx, after))
        };
        Ok(Occurrence {
            opt,
            value: None,
            spelt,
        })
    }
}

impl<'a> Iterator for Getopt<'a> {
    type Item = Result<Occurrence<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some((idx, off)) = self.bundle {
            let r = self.short(idx, off);
            if r.is_err() {
                self.done = true;
            }
            return Some(r);
        }
        let args: &'a [String] = self.args;
        let arg: &'a str = match args.get(self.next) {
            Some(a) => a.as_str(),
            None => {
                self.done = true;
                return None;
            }
        };
        let r = if arg == "--" {
            self.next += 1;
            self.done = true;
            return None;
        } else if let Some(body) = arg.strip_prefix("--") {
            self.next += 1;
            self.long(body)
        } else if arg.len() > 1 && arg.starts_with('-') {
            let idx = self.next;
            self.next += 1;
            self.short(idx, 1)
        } else {
            // First non-option (including a lone "-"): stop, as with '+'.
            self.done = true;
            return None;
        };
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}

// ---------------------------------------------------------------------------
// Value parsers
// ---------------------------------------------------------------------------

/// Largest path we accept, as the C implementation (PATH_MAX with NUL).
const PATH_MAX: usize = 4096;
/// Longest interface name (IFNAMSIZ without NUL).
const IFNAMSIZ_MAX: usize = 15;
/// Longest host or domain name (upstream PASST_MAXDNAME without NUL).
const MAXDNAME: usize = 253;
/// Smallest `--log-size`: five buffers of max(BUFSIZ, page size).
const LOG_SIZE_MIN: u64 = 5 * 8192;
/// DNS servers announced per address family.
const MAX_DNS: usize = 3;
/// DNS search domains announced.
const MAX_SEARCH: usize = 6;

/// An unsigned number as C's `strtoul(s, NULL, 0)` reads it, but strict:
/// `0x` hexadecimal, leading `0` octal, else decimal, nothing trailing.
fn parse_c_number(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()
    } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Strict decimal, digits only.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `aa:bb:cc:dd:ee:ff`, two hex digits per octet.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// IPv4 netmask in dotted form (contiguous ones) or a bit count.
fn parse_netmask(s: &str) -> Option<u8> {
    if let Ok(mask) = s.parse::<Ipv4Addr>() {
        let m = u32::from(mask);
        let len = m.leading_ones();
        return (m.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8);
    }
    parse_decimal(s).filter(|&n| n <= 32).map(|n| n as u8)
}

/// Classful default prefix length of an IPv4 address without one.
fn class_prefix_len(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        192..=223 => 24,
        _ => 32,
    }
}

fn v4_broadcast(a: Ipv4Addr) -> bool {
    a == Ipv4Addr::BROADCAST
}

/// `::a.b.c.d` (deprecated IPv4-compatible), excluding `::` and `::1`.
fn v6_v4compat(a: Ipv6Addr) -> bool {
    let s = a.segments();
    s[..6].iter().all(|&x| x == 0) && (s[6] != 0 || s[7] > 1)
}

fn v6_v4mapped(a: Ipv6Addr) -> bool {
    a.to_ipv4_mapped().is_some()
}

fn path_value(o: &Occurrence, what: &str) -> Result<PathBuf> {
    let v = o.val();
    if v.is_empty() || v.len() >= PATH_MAX {
        return Err(CliError::Invalid(format!("Invalid {what}: {v}")));
    }
    Ok(PathBuf::from(v))
}

fn ifname_value(o: &Occurrence) -> Result<String> {
    let v = o.val();
    if v.is_empty() || v.len() > IFNAMSIZ_MAX || v.contains('/') {
        return Err(CliError::Invalid(format!("Invalid interface name: {v}")));
    }
    Ok(v.to_string())
}

fn name_value(o: &Occurrence, what: &str) -> Result<String> {
    let v = o.val();
    if v.len() > MAXDNAME {
        return Err(CliError::Invalid(format!("Invalid {what}: {v}")));
    }
    Ok(v.to_string())
}

// ---------------------------------------------------------------------------
// Port specs
// ---------------------------------------------------------------------------

/// What a forwarding option has been set to so far.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FwdMode {
    Unset,
    None,
    Auto,
    All,
    Spec,
}

/// `N` or `N-M`, ports 0..=65535.
fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let a = u16::try_from(parse_decimal(a)?).ok()?;
    let b = u16::try_from(parse_decimal(b)?).ok()?;
    (a <= b).then_some((a, b))
}

/// An address, plain or in brackets.
fn spec_addr(s: &str) -> Option<IpAddr> {
    s.strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(s)
        .parse()
        .ok()
}

/// Whether `prefix` is `[ADDR][%IFNAME]`.
fn spec_prefix_ok(prefix: &str) -> bool {
    let (addr, ifname) = match prefix.split_once('%') {
        Some((a, i)) => (a, Some(i)),
        None => (prefix, None),
    };
    if let Some(i) = ifname {
        if i.is_empty() || i.len() > IFNAMSIZ_MAX {
            return false;
        }
    }
    (!addr.is_empty() || ifname.is_some()) && (addr.is_empty() || spec_addr(addr).is_some())
}

/// Syntax check of a port spec (`[ADDR][%IFNAME]/LIST`, `LIST` or
/// `all:TADDR`); the keywords are handled by the caller. An item is
/// `RANGE[:RANGE]`, `RANGE:TADDR[/RANGE]` or `~RANGE` (the grammar of
/// `fwd::spec`, which parses it for real).
fn check_port_list(spec: &str, allow_addr: bool) -> bool {
    if let Some(t) = spec.strip_prefix("all:") {
        return allow_addr && spec_addr(t).is_some();
    }
    let list = match spec.split_once('/') {
        Some((prefix, list)) if spec_prefix_ok(prefix) => {
            if !allow_addr {
                return false;
            }
            list
        }
        // `22:192.0.2.1/2022`: the first slash is a target's.
        Some((prefix, _)) => {
            let last = prefix.rsplit(',').next().unwrap_or(prefix);
            match last.split_once(':') {
                Some((r, _)) if parse_port_range(r).is_some() => spec,
                _ => return false,
            }
        }
        None => spec,
    };
    if list.is_empty() {
        return false;
    }
    list.split(',').all(|item| {
        if let Some(excl) = item.strip_prefix('~') {
            return parse_port_range(excl).is_some();
        }
        let same_len =
            |(a, b): (u16, u16), m: &str| parse_port_range(m).is_some_and(|(c, d)| b - a == d - c);
        match item.split_once(':') {
            Some((orig, mapped)) => {
                let Some(o) = parse_port_range(orig) else {
                    return false;
                };
                match mapped.rsplit_once('/') {
                    Some((t, m)) => spec_addr(t).is_some() && same_len(o, m),
                    None => same_len(o, mapped) || spec_addr(mapped).is_some(),
                }
            }
            None => parse_port_range(item).is_some(),
        }
    })
}

/// The address of a `ADDR[%IFNAME]/LIST` spec, if any.
fn port_spec_addr(spec: &str) -> Option<IpAddr> {
    let (prefix, _) = spec.split_once('/')?;
    let addr = prefix.split('%').next().unwrap_or("");
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    addr.parse().ok()
}

/// Validate one `-t`/`-u`/`-T`/`-U` occurrence against the mode and what the
/// same option was given before.
fn check_port_spec(o: &Occurrence, opts: &Options, state: &mut FwdMode) -> Result<()> {
    let (mode, v4_only, v6_only) = (opts.mode, opts.v4_only, opts.v6_only);
    let spec = o.val();
    let ns = matches!(o.opt, Opt::TcpNs | Opt::UdpNs);
    let new = match spec {
        "none" => FwdMode::None,
        "auto" => {
            if mode != Mode::Pasta {
                return Err(CliError::Invalid(format!(
                    "'auto' port forwarding is only allowed for pasta ({} {spec})",
                    o.spelt
                )));
            }
            FwdMode::Auto
        }
        s if s == "all" || s.starts_with("all:") && check_port_list(s, !ns) => {
            if mode != Mode::Passt || ns {
                return Err(CliError::Invalid(format!(
                    "'all' port forwarding is only allowed for passt ({} {spec})",
                    o.spelt
                )));
            }
            FwdMode::All
        }
        _ => {
            if !check_port_list(spec, !ns) {
                return Err(CliError::Invalid(format!(
                    "Invalid port specifier for {}: {spec}",
                    o.spelt
                )));
            }
            FwdMode::Spec
        }
    };
    if let Some(addr) = port_spec_addr(spec) {
        if (addr.is_ipv4() && v6_only) || (addr.is_ipv6() && v4_only) {
            return Err(CliError::Invalid(format!(
                "Address family of {} {spec} is disabled",
                o.spelt
            )));
        }
    }
    if *state != FwdMode::Unset && (new != FwdMode::Spec || *state != FwdMode::Spec) {
        return Err(CliError::Invalid(format!(
            "{} {spec} conflicts with previous mode",
            o.spelt
        )));
    }
    *state = new;
    Ok(())
}

// ---------------------------------------------------------------------------
// The parser
// ---------------------------------------------------------------------------

fn pasta_only(o: &Occurrence, mode: Mode) -> Result<()> {
    if mode != Mode::Pasta {
        return Err(CliError::WrongMode(o.spelt.clone(), "pasta"));
    }
    Ok(())
}

fn passt_only(o: &Occurrence, mode: Mode) -> Result<()> {
    if mode != Mode::Passt {
        return Err(CliError::WrongMode(o.spelt.clone(), "passt"));
    }
    Ok(())
}

/// Parse argv (without argv[0]) for `mode`.
///
/// Three passes, as upstream: every option in order (stopping at
/// `--help`/`--version`, deferring port specs and `-D`), the checks on the
/// whole line, then the deferred options around the namespace target.
pub(crate) fn parse(mode: Mode, args: &[String]) -> Result<Parsed> {
    let mut p = Parser::new(mode, vhost_user_given(args));
    let mut getopt = Getopt::new(args);
    for occ in getopt.by_ref() {
        if let Some(stop) = p.option(occ?)? {
            return Ok(stop);
        }
    }
    let operands = getopt.operands();
    p.check_whole_line()?;
    let deferred = std::mem::take(&mut p.deferred);
    let mut seen = PortModes::default();
    for occ in deferred.iter().filter(|d| !is_ns_port_option(d.opt)) {
        match occ.opt {
            Opt::Dns => p.dns(occ.val())?,
            _ => p.port_option(occ, &mut seen)?,
        }
    }
    p.set_target(operands)?;
    for occ in deferred.iter().filter(|d| is_ns_port_option(d.opt)) {
        p.port_option(occ, &mut seen)?;
    }
    Ok(Parsed::Run(p.o))
}

/// Whether `--vhost-user` is on the line: it changes the mode for the whole
/// line, wherever it is, so it is looked for first (stopping, like the real
/// passt, at the first error).
fn vhost_user_given(args: &[String]) -> bool {
    Getopt::new(args)
        .map_while(|r| r.ok())
        .any(|occ| occ.opt == Opt::VhostUser)
}

/// `-T`/`-U`: forwarded from the namespace, handled after the target.
fn is_ns_port_option(opt: Opt) -> bool {
    matches!(opt, Opt::TcpNs | Opt::UdpNs)
}

/// What each of the four port options has been set to so far.
struct PortModes {
    tcp_in: FwdMode,
    udp_in: FwdMode,
    tcp_out: FwdMode,
    udp_out: FwdMode,
}

impl Default for PortModes {
    fn default() -> Self {
        PortModes {
            tcp_in: FwdMode::Unset,
            udp_in: FwdMode::Unset,
            tcp_out: FwdMode::Unset,
            udp_out: FwdMode::Unset,
        }
    }
}

/// The options being built, and the state only needed while parsing.
struct Parser<'a> {
    o: Options,
    /// The last `-a` had a `/LEN`.
    last_a_had_prefix: bool,
    /// Prefix length given by `-n`.
    prefix_from_n: Option<u8>,
    /// `--netns` path.
    netns: Option<PathBuf>,
    /// `-t`, `-u`, `-T`, `-U` and `-D`, checked after the other options.
    deferred: Vec<Occurrence<'a>>,
}

impl<'a> Parser<'a> {
    fn new(mode: Mode, vhost_user: bool) -> Self {
        let mut o = Options::new(mode);
        o.vhost_user = vhost_user;
        Parser {
            o,
            last_a_had_prefix: false,
            prefix_from_n: None,
            netns: None,
            deferred: Vec::new(),
        }
    }

    /// First pass: one option, in order. `Some` ends parsing there
    /// (`--help`, `--version`, `--print-capabilities`).
    fn option(&mut self, occ: Occurrence<'a>) -> Result<Option<Parsed>> {
        let mode = self.o.mode;
        match occ.opt {
            Opt::Help => return Ok(Some(Parsed::Help(usage(mode)))),
            Opt::Version => return Ok(Some(Parsed::Version(version(mode)))),
            Opt::PrintCapabilities => return Ok(Some(Parsed::PrintCapabilities)),
            Opt::TcpPorts | Opt::UdpPorts | Opt::Dns => self.deferred.push(occ),
            Opt::TcpNs | Opt::UdpNs => {
                pasta_only(&occ, mode)?;
                self.deferred.push(occ);
            }
            Opt::Debug
            | Opt::Trace
            | Opt::Quiet
            | Opt::Foreground
            | Opt::Stderr
            | Opt::LogFile
            | Opt::LogSize
            | Opt::Runas
            | Opt::Pcap
            | Opt::ConfPath
            | Opt::Pid => self.process_option(&occ)?,
            Opt::Socket
            | Opt::Fd
            | Opt::OneOff
            | Opt::VhostUser
            | Opt::RepairPath
            | Opt::MigrateExit
            | Opt::MigrateNoLinger
            | Opt::Stats => self.frontend_option(occ)?,
            Opt::Mtu
            | Opt::Address
            | Opt::Netmask
            | Opt::MacAddr
            | Opt::Gateway
            | Opt::Interface
            | Opt::Outbound
            | Opt::OutboundIf4
            | Opt::OutboundIf6
            | Opt::Ipv4Only
            | Opt::Ipv6Only => self.address_option(&occ)?,
            Opt::Search
            | Opt::Hostname
            | Opt::Fqdn
            | Opt::DnsForward
            | Opt::DnsHost
            | Opt::DhcpDns
            | Opt::NoDhcpDns
            | Opt::DhcpSearch
            | Opt::NoDhcpSearch => self.name_option(&occ)?,
            Opt::NoTcp
            | Opt::NoUdp
            | Opt::NoIcmp
            | Opt::NoDhcp
            | Opt::NoDhcpv6
            | Opt::NoNdp
            | Opt::NoRa
            | Opt::NoSplice
            | Opt::SpliceOnly
            | Opt::Freebind
            | Opt::NoMapGw
            | Opt::MapHostLoopback
            | Opt::MapGuestAddr => self.feature_option(&occ)?,
            Opt::NsIfname
            | Opt::NsMacAddr
            | Opt::Userns
            | Opt::Netns
            | Opt::NetnsOnly
            | Opt::NoNetnsQuit
            | Opt::ConfigNet
            | Opt::NoCopyRoutes
            | Opt::NoCopyAddrs
            | Opt::HostLoToNsLo => {
                pasta_only(&occ, mode)?;
                self.namespace_option(&occ)?;
            }
        }
        Ok(None)
    }

    /// Logging, PID file, capture file, user to run as.
    fn process_option(&mut self, occ: &Occurrence) -> Result<()> {
        let (o, v) = (&mut self.o, occ.val());
        match occ.opt {
            Opt::Debug => o.log_level = LogLevel::Debug,
            Opt::Trace => o.log_level = LogLevel::Trace,
            Opt::Quiet => o.log_level = LogLevel::Quiet,
            Opt::Foreground => o.foreground = true,
            Opt::Stderr => log::warn!("--stderr will be dropped soon"),
            Opt::LogFile => o.log_file = Some(path_value(occ, "log file")?),
            Opt::LogSize => {
                let n = parse_c_number(v)
                    .filter(|&n| n >= LOG_SIZE_MIN)
                    .ok_or_else(|| CliError::Invalid(format!("Invalid --log-size: {v}")))?;
                o.log_size = Some(n);
            }
            Opt::Runas => {
                if v.is_empty() {
                    return Err(CliError::Invalid(format!("Invalid --runas option: {v}")));
                }
                o.runas = Some(v.to_string());
            }
            Opt::Pcap => o.pcap = Some(path_value(occ, "pcap path")?),
            Opt::ConfPath => o.conf_path = Some(path_value(occ, "configuration socket path")?),
            Opt::Pid => o.pid_file = Some(path_value(occ, "PID file")?),
            _ => unreachable!("{:?} is dispatched elsewhere", occ.opt),
        }
        Ok(())
    }

    /// How the guest connects (passt socket, file descriptor, vhost-user)
    /// and the migration options we do not support.
    fn frontend_option(&mut self, occ: Occurrence) -> Result<()> {
        let (o, v) = (&mut self.o, occ.val());
        let (mode, vu) = (o.mode, o.vhost_user);
        match occ.opt {
            Opt::Stats => return Err(CliError::NotSupported(occ.spelt)),
            Opt::Socket => {
                if mode == Mode::Pasta {
                    return Err(CliError::WrongMode(occ.spelt, "passt / vhost-user"));
                }
                o.socket = Some(path_value(&occ, "socket path")?);
                o.fd = None;
            }
            Opt::Fd => {
                let fd = parse_c_number(v)
                    .filter(|&n| n == 0 || (n > 2 && n <= i32::MAX as u64))
                    .ok_or_else(|| CliError::Invalid(format!("Invalid --fd: {v}")))?;
                o.fd = i32::try_from(fd).ok();
                o.one_off = true;
                o.socket = None;
            }
            Opt::OneOff => {
                passt_only(&occ, mode)?;
                o.one_off = true;
            }
            Opt::VhostUser => passt_only(&occ, mode)?,
            Opt::RepairPath => {
                if !vu && v != "none" {
                    return Err(CliError::WrongMode(occ.spelt, "vhost-user"));
                }
                if v != "none" {
                    return Err(CliError::NotSupported(occ.spelt));
                }
            }
            Opt::MigrateExit | Opt::MigrateNoLinger => {
                if !vu {
                    return Err(CliError::WrongMode(occ.spelt, "vhost-user"));
                }
                return Err(CliError::NotSupported(occ.spelt));
            }
            _ => unreachable!("{:?} is dispatched elsewhere", occ.opt),
        }
        Ok(())
    }

    /// The guest's link: MTU, addresses, MACs, gateway, host interfaces,
    /// address families.
    fn address_option(&mut self, occ: &Occurrence) -> Result<()> {
        let v = occ.val();
        match occ.opt {
            Opt::Mtu => {
                let mtu = parse_c_number(v)
                    .ok_or_else(|| CliError::Invalid(format!("Invalid MTU: {v}")))?;
                if mtu > u64::from(MAX_MTU) {
                    return Err(CliError::Invalid(format!(
                        "Invalid MTU: {v} too large (max {MAX_MTU})"
                    )));
                }
                self.o.mtu = u16::try_from(mtu).ok();
            }
            Opt::Address => self.address(v)?,
            Opt::Netmask => self.netmask(v)?,
            Opt::MacAddr => self.o.mac = Some(mac_value(v)?),
            Opt::Gateway => match v.parse::<IpAddr>() {
                Ok(IpAddr::V6(a)) if !a.is_unspecified() && !a.is_loopback() => {
                    self.o.gw6 = Some(a)
                }
                Ok(IpAddr::V4(a))
                    if !a.is_unspecified() && !v4_broadcast(a) && !a.is_loopback() =>
                {
                    self.o.gw4 = Some(a)
                }
                _ => {
                    return Err(CliError::Invalid(format!("Invalid gateway address: {v}")));
                }
            },
            Opt::Interface => self.o.ifname = Some(ifname_value(occ)?),
            Opt::Outbound => self.outbound(v)?,
            Opt::OutboundIf4 => self.o.ifname_out4 = Some(ifname_value(occ)?),
            Opt::OutboundIf6 => self.o.ifname_out6 = Some(ifname_value(occ)?),
            Opt::Ipv4Only => {
                self.o.v4_only = true;
                self.o.v6_only = false;
            }
            Opt::Ipv6Only => {
                self.o.v6_only = true;
                self.o.v4_only = false;
            }
            _ => unreachable!("{:?} is dispatched elsewhere", occ.opt),
        }
        Ok(())
    }

    /// `-a ADDR[/LEN]`: the guest's address; an IPv4 prefix length comes
    /// from `-n`, `/LEN` (not both) or the address class.
    fn address(&mut self, v: &str) -> Result<()> {
        let bad = || CliError::Invalid(format!("Invalid address: {v}"));
        let (addr_s, plen_s) = match v.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (v, None),
        };
        let addr: IpAddr = match addr_s.parse().map_err(|_| bad())? {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
            a => a,
        };
        let plen = match plen_s {
            Some(p) => {
                let max = if addr.is_ipv4() { 32 } else { 128 };
                Some(parse_decimal(p).filter(|&n| n <= max).ok_or_else(bad)? as u8)
            }
            None => None,
        };
        self.last_a_had_prefix = plen.is_some();
        if self.last_a_had_prefix && self.prefix_from_n.is_some() {
            return Err(CliError::Invalid(
                "Redundant prefix length specification".into(),
            ));
        }
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
            return Err(bad());
        }
        match addr {
            IpAddr::V4(a) => {
                self.o.addr4 = Some(a);
                let len = self.prefix_from_n.or(plen).unwrap_or(class_prefix_len(a));
                self.o.prefix4 = Some(len);
            }
            IpAddr::V6(a) => {
                if v6_v4compat(a) {
                    return Err(bad());
                }
                self.o.addr6 = Some(a);
            }
        }
        Ok(())
    }

    /// `-n`: the IPv4 prefix length, unless `-a` gave one.
    fn netmask(&mut self, v: &str) -> Result<()> {
        if self.last_a_had_prefix {
            return Err(CliError::Invalid(
                "Redundant prefix length specification".into(),
            ));
        }
        let len = parse_netmask(v)
            .ok_or_else(|| CliError::Invalid(format!("Invalid prefix length: {v}")))?;
        self.prefix_from_n = Some(len);
        self.o.prefix4 = Some(len);
        Ok(())
    }

    /// `-o`: the source address of outbound sockets, per family.
    fn outbound(&mut self, v: &str) -> Result<()> {
        match v.parse::<IpAddr>() {
            Ok(IpAddr::V6(a))
                if !a.is_unspecified()
                    && !a.is_loopback()
                    && !a.is_multicast()
                    && !v6_v4mapped(a)
                    && !v6_v4compat(a) =>
            {
                self.o.addr_out6 = Some(a)
            }
            Ok(IpAddr::V4(a)) if !a.is_unspecified() && !v4_broadcast(a) && !a.is_multicast() => {
                self.o.addr_out4 = Some(a)
            }
            _ => {
                return Err(CliError::Invalid(format!(
                    "Invalid or redundant outbound address: {v}"
                )));
            }
        }
        Ok(())
    }

    /// Names and nameservers told to the guest, and where DNS goes.
    fn name_option(&mut self, occ: &Occurrence) -> Result<()> {
        if occ.opt == Opt::Search {
            return self.search(occ.val());
        }
        let (mode, v) = (self.o.mode, occ.val());
        let o = &mut self.o;
        match occ.opt {
            Opt::Hostname => o.hostname = Some(name_value(occ, "hostname")?),
            Opt::Fqdn => o.fqdn = Some(name_value(occ, "FQDN")?),
            Opt::DnsForward => match v.parse::<IpAddr>() {
                Ok(IpAddr::V6(a)) if !a.is_unspecified() && !a.is_loopback() => {
                    o.dns_forward6 = Some(a)
                }
                Ok(IpAddr::V4(a))
                    if !a.is_unspecified() && !v4_broadcast(a) && !a.is_loopback() =>
                {
                    o.dns_forward4 = Some(a)
                }
                _ => {
                    return Err(CliError::Invalid(format!(
                        "Invalid DNS forwarding address: {v}"
                    )));
                }
            },
            Opt::DnsHost => match v.parse::<IpAddr>() {
                Ok(IpAddr::V6(a)) if !a.is_unspecified() => o.dns_host6 = Some(a),
                Ok(IpAddr::V4(a)) if !a.is_unspecified() && !v4_broadcast(a) => {
                    o.dns_host4 = Some(a)
                }
                _ => {
                    return Err(CliError::Invalid(format!(
                        "Invalid host nameserver address: {v}"
                    )));
                }
            },
            Opt::DhcpDns => {
                pasta_only(occ, mode)?;
                o.no_dhcp_dns = false;
            }
            Opt::NoDhcpDns => {
                passt_only(occ, mode)?;
                o.no_dhcp_dns = true;
            }
            Opt::DhcpSearch => {
                pasta_only(occ, mode)?;
                o.no_dhcp_search = false;
            }
            Opt::NoDhcpSearch => {
                passt_only(occ, mode)?;
                o.no_dhcp_search = true;
            }
            _ => unreachable!("{:?} is dispatched elsewhere", occ.opt),
        }
        Ok(())
    }

    /// `-S`: search domains, added to those before unless `none`.
    fn search(&mut self, v: &str) -> Result<()> {
        let o = &mut self.o;
        if v == "none" {
            o.no_search = true;
            o.search.clear();
            return Ok(());
        }
        o.no_search = false;
        for d in v.split_whitespace() {
            if o.search.len() >= MAX_SEARCH || d.len() > MAXDNAME {
                return Err(CliError::Invalid(format!(
                    "Cannot use DNS search domain {d}"
                )));
            }
            o.search.push(d.to_string());
        }
        Ok(())
    }

    /// Protocols and services switched off, splicing, address mapping.
    fn feature_option(&mut self, occ: &Occurrence) -> Result<()> {
        let o = &mut self.o;
        match occ.opt {
            Opt::NoTcp => o.no_tcp = true,
            Opt::NoUdp => o.no_udp = true,
            Opt::NoIcmp => o.no_icmp = true,
            Opt::NoDhcp => o.no_dhcp = true,
            Opt::NoDhcpv6 => o.no_dhcpv6 = true,
            Opt::NoNdp => o.no_ndp = true,
            Opt::NoRa => o.no_ra = true,
            Opt::NoSplice => o.no_splice = true,
            Opt::SpliceOnly => o.splice_only = true,
            Opt::Freebind => o.freebind = true,
            Opt::NoMapGw => o.no_map_gw = true,
            Opt::MapHostLoopback | Opt::MapGuestAddr => self.map_address(occ)?,
            _ => unreachable!("{:?} is dispatched elsewhere", occ.opt),
        }
        Ok(())
    }

    /// `--map-host-loopback` / `--map-guest-addr`: an address, per family,
    /// or `none`.
    fn map_address(&mut self, occ: &Occurrence) -> Result<()> {
        let (o, v) = (&mut self.o, occ.val());
        let host = occ.opt == Opt::MapHostLoopback;
        if v == "none" {
            if host {
                o.map_host_loopback4 = None;
                o.map_host_loopback6 = None;
                o.no_map_gw = true;
            } else {
                o.map_guest_addr4 = None;
                o.map_guest_addr6 = None;
            }
            return Ok(());
        }
        match v.parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) if !a.is_unspecified() && !a.is_loopback() && !a.is_multicast() => {
                if host {
                    o.map_host_loopback6 = Some(a);
                } else {
                    o.map_guest_addr6 = Some(a);
                }
            }
            Ok(IpAddr::V4(a)) if !a.is_unspecified() && !a.is_loopback() && !a.is_multicast() => {
                if host {
                    o.map_host_loopback4 = Some(a);
                } else {
                    o.map_guest_addr4 = Some(a);
                }
            }
            _ => {
                return Err(CliError::Invalid(format!(
                    "Invalid address to remap to host: {v}"
                )));
            }
        }
        Ok(())
    }

    /// pasta's namespace options (the mode is already checked).
    fn namespace_option(&mut self, occ: &Occurrence) -> Result<()> {
        let (o, v) = (&mut self.o, occ.val());
        match occ.opt {
            Opt::NsIfname => o.ns_ifname = Some(ifname_value(occ)?),
            Opt::NsMacAddr => o.ns_mac = Some(mac_value(v)?),
            Opt::Userns => {
                o.userns = Some(path_value(occ, "userns")?);
                o.netns_only = false;
            }
            Opt::Netns => {
                if v.is_empty() || v.len() >= PATH_MAX {
                    return Err(CliError::Invalid(format!(
                        "Network namespace name/path {v} too long"
                    )));
                }
                self.netns = Some(if v.contains('/') {
                    PathBuf::from(v)
                } else {
                    PathBuf::from("/run/netns").join(v)
                });
            }
            Opt::NetnsOnly => {
                o.netns_only = true;
                o.userns = None;
            }
            Opt::NoNetnsQuit => o.no_netns_quit = true,
            Opt::ConfigNet => o.config_net = true,
            Opt::NoCopyRoutes => {
                log::warn!("--no-copy-routes will be dropped soon");
                o.no_copy_routes = true;
            }
            Opt::NoCopyAddrs => {
                log::warn!("--no-copy-addrs will be dropped soon");
                o.no_copy_addrs = true;
            }
            Opt::HostLoToNsLo => o.host_lo_to_ns_lo = true,
            _ => unreachable!("{:?} is dispatched elsewhere", occ.opt),
        }
        Ok(())
    }

    /// Checks on the whole line, as upstream does after its first pass,
    /// and what `--splice-only` implies.
    fn check_whole_line(&mut self) -> Result<()> {
        let o = &mut self.o;
        if o.mode == Mode::Passt {
            o.no_splice = true;
            if o.splice_only {
                return Err(CliError::WrongMode("--splice-only".into(), "pasta"));
            }
        }
        if o.mode == Mode::Pasta && !o.config_net {
            if o.no_copy_routes {
                return Err(CliError::Invalid(
                    "--no-copy-routes needs --config-net".into(),
                ));
            }
            if o.no_copy_addrs {
                return Err(CliError::Invalid(
                    "--no-copy-addrs needs --config-net".into(),
                ));
            }
        }
        if o.splice_only {
            if o.no_splice {
                return Err(CliError::Invalid(
                    "--splice-only is incompatible with --no-splice".into(),
                ));
            }
            o.host_lo_to_ns_lo = true;
            o.no_icmp = true;
            o.no_dns = true;
            o.no_search = true;
            o.search.clear();
        }
        Ok(())
    }

    /// `-t`, `-u`, `-T`, `-U`: checked against the protocol switches and
    /// the same option's earlier occurrences, then recorded.
    fn port_option(&mut self, occ: &Occurrence, seen: &mut PortModes) -> Result<()> {
        let v = occ.val();
        let (proto, disabled, state) = match occ.opt {
            Opt::TcpPorts => ("TCP", self.o.no_tcp, &mut seen.tcp_in),
            Opt::UdpPorts => ("UDP", self.o.no_udp, &mut seen.udp_in),
            Opt::TcpNs => ("TCP", self.o.no_tcp, &mut seen.tcp_out),
            _ => ("UDP", self.o.no_udp, &mut seen.udp_out),
        };
        if disabled && v != "none" {
            return Err(CliError::Invalid(format!(
                "{proto} port forwarding requested but {proto} is disabled: {} {v}",
                occ.spelt
            )));
        }
        check_port_spec(occ, &self.o, state)?;
        let specs = match occ.opt {
            Opt::TcpPorts => &mut self.o.fwd.tcp_in,
            Opt::UdpPorts => &mut self.o.fwd.udp_in,
            Opt::TcpNs => &mut self.o.fwd.tcp_out,
            _ => &mut self.o.fwd.udp_out,
        };
        specs.push(v.to_string());
        Ok(())
    }

    /// `-D`: a nameserver (at most [`MAX_DNS`] per family), or `none`.
    fn dns(&mut self, v: &str) -> Result<()> {
        let o = &mut self.o;
        if v == "none" {
            o.no_dns = true;
            o.dns4.clear();
            o.dns6.clear();
            o.dns_forward4 = None;
            o.dns_forward6 = None;
            o.dns_host4 = None;
            o.dns_host6 = None;
            return Ok(());
        }
        o.no_dns = false;
        match v.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if o.dns4.len() < MAX_DNS => o.dns4.push(a),
            Ok(IpAddr::V6(a)) if o.dns6.len() < MAX_DNS => o.dns6.push(a),
            Ok(_) => log::warn!("Too many DNS servers, dropping {v}"),
            Err(_) => {
                return Err(CliError::Invalid(format!("Cannot use DNS address {v}")));
            }
        }
        Ok(())
    }

    /// The non-option arguments: none in passt; in pasta the namespace
    /// target (`--netns`, a PID, or a command to spawn).
    fn set_target(&mut self, operands: &[String]) -> Result<()> {
        if self.o.mode == Mode::Passt {
            if let Some(extra) = operands.first() {
                return Err(CliError::Invalid(format!(
                    "Extra non-option argument: {extra}"
                )));
            }
            return Ok(());
        }
        if self.netns.is_some() && !operands.is_empty() {
            return Err(CliError::Invalid(
                "Both --netns and PID or command given".into(),
            ));
        }
        let pid = match operands {
            [one] => pid_operand(one)?,
            _ => None,
        };
        let o = &mut self.o;
        let target = if let Some(path) = self.netns.take() {
            if o.userns.is_none() {
                o.netns_only = true;
            }
            NsTarget::Path(path)
        } else if let Some(pid) = pid {
            if o.userns.is_none() && !o.netns_only {
                o.userns = Some(PathBuf::from(format!("/proc/{pid}/ns/user")));
            }
            NsTarget::Pid(pid)
        } else {
            NsTarget::Spawn {
                command: operands.to_vec(),
            }
        };
        o.target = Some(target);
        Ok(())
    }
}

/// A lone pasta operand: a PID if it is all digits (an error if too
/// large), else `None` (a command).
fn pid_operand(one: &str) -> Result<Option<u32>> {
    match parse_decimal(one) {
        Some(p) if p <= i32::MAX as u64 => Ok(Some(p as u32)),
        Some(_) => Err(CliError::Invalid(format!("Invalid PID {one}"))),
        None if !one.is_empty() && one.bytes().all(|b| b.is_ascii_digit()) => {
            Err(CliError::Invalid(format!("Invalid PID {one}")))
        }
        None => Ok(None),
    }
}

/// `-M`, `--ns-mac-addr`.
fn mac_value(v: &str) -> Result<[u8; 6]> {
    parse_mac(v).ok_or_else(|| CliError::Invalid(format!("Invalid MAC address: {v}")))
}

/// The `--version` text.
pub(crate) fn version(mode: Mode) -> String {
    format!(
        "{} {VERSION} (passt-rs)\n\
         A Rust reimplementation of passt/pasta.\n\
         License GPL-2.0-or-later: this is free software, without warranty.\n",
        mode.name()
    )
}

/// Options both modes have, for `--help`.
const COMMON_HELP: &str = "\
\x20 -d, --debug             Print debugging messages
      --trace             Print per-packet and per-flow messages (implies -d)
  -q, --quiet             Print only warnings and errors
  -f, --foreground        Stay in the foreground, do not daemonize
  -e, --stderr            Deprecated, does nothing
  -l, --log-file PATH     Log to PATH instead of the system log
      --log-size SIZE     Cap the log file at SIZE bytes (default: 1 MiB)
      --runas UID|UID:GID|LOGIN|LOGIN:GROUP
                          Run as this user and group after start-up
  -h, --help              Show this text and exit
      --version           Show the version and exit
  -p, --pcap FILE         Write guest-side frames to FILE (pcap format)
  -c, --conf-path PATH    Accept forwarding changes (pesto) on UNIX socket PATH
  -P, --pid FILE          Write the PID of the running daemon to FILE
  -m, --mtu MTU           MTU to announce (0: none; default 65520, max 65521)
  -a, --address ADDR[/LEN]
                          Address for the guest (IPv4 and/or IPv6)
                          default: the host's address on the template interface
  -n, --netmask MASK      IPv4 netmask, dotted or as a bit count
  -M, --mac-addr ADDR     Our MAC address (default: 9a:55:9a:55:9a:55)
  -g, --gateway ADDR      Gateway for the guest (IPv4 and/or IPv6)
                          default: the host's default gateway
  -i, --interface NAME    Template interface for addresses and routes
  -o, --outbound ADDR     Source address of outbound connections
      --outbound-if4 NAME Bind outbound IPv4 sockets to interface NAME
      --outbound-if6 NAME Bind outbound IPv6 sockets to interface NAME
  -D, --dns ADDR          Nameserver to announce (repeatable, 3 per family)
  -D none                 Announce no nameservers
      --dns-forward ADDR  Guest-side address whose DNS traffic goes to the host
      --dns-host ADDR     Where forwarded DNS traffic goes
                          default: first nameserver in /etc/resolv.conf
  -S, --search LIST       Space-separated DNS search domains (at most 6)
  -S none                 Announce no search domains
  -H, --hostname NAME     Hostname for the guest (DHCP option 12)
      --fqdn NAME         FQDN for the guest (DHCP 81, DHCPv6 39)
      --no-tcp            Disable TCP
      --no-udp            Disable UDP
      --no-icmp           Disable ICMP and ICMPv6 echo
      --no-dhcp           Disable the DHCP server
      --no-ndp            Disable NDP (router and neighbour advertisements)
      --no-dhcpv6         Disable the DHCPv6 server
      --no-ra             Disable router advertisements
      --freebind          Bind forwarded ports to addresses not (yet) local
      --map-host-loopback ADDR|none
                          Guest-side address standing for the host's loopback
                          default: the gateway address
      --no-map-gw         Do not map the gateway address to the host
      --map-guest-addr ADDR|none
                          Guest-side address standing for the host's own
                          address as seen by the guest
  -4, --ipv4-only         IPv4 only
  -6, --ipv6-only         IPv6 only
  -F, --fd FD             Use the already open FD instead of creating one
";

/// The `--help` text for `mode`.
pub(crate) fn usage(mode: Mode) -> String {
    match mode {
        Mode::Passt => format!(
            "Usage: passt [OPTION]...\n\
             User-mode networking for a virtual machine, over a UNIX socket.\n\n\
             {COMMON_HELP}\
             \x20 -s, --socket, --socket-path PATH\n\
             \x20                         UNIX socket to listen on\n\
             \x20                         default: first free /tmp/passt_N.socket\n\
             \x20 -1, --one-off           Quit after the first client disconnects\n\
             \x20     --vhost-user        Act as a vhost-user back-end\n\
             \x20     --print-capabilities\n\
             \x20                         Print vhost-user capabilities and exit\n\
             \x20     --no-dhcp-dns       Do not announce nameservers\n\
             \x20     --no-dhcp-search    Do not announce search domains\n\
             \x20 -t, --tcp-ports SPEC    Forward TCP ports from the host to the guest\n\
             \x20 -u, --udp-ports SPEC    Forward UDP ports from the host to the guest\n\
             \x20                         SPEC: none (default), all, or\n\
             \x20                         [ADDR][%IFNAME]/PORTS or PORTS, where PORTS\n\
             \x20                         is a comma-separated list of N, N-M, N:T,\n\
             \x20                         N-M:T-U, ~N, ~N-M (exclusions)\n"
        ),
        Mode::Pasta => format!(
            "Usage: pasta [OPTION]... [COMMAND [ARG]...]\n\
             \x20      pasta [OPTION]... PID\n\
             \x20      pasta [OPTION]... --netns PATH|NAME [--userns PATH]\n\
             User-mode networking for a network namespace, over a tap device.\n\
             Without PID or --netns, run COMMAND (default: $SHELL) in new namespaces.\n\n\
             {COMMON_HELP}\
             \x20 -I, --ns-ifname NAME    Name of the tap device in the namespace\n\
             \x20                         default: the template interface's name, or tap0\n\
             \x20     --ns-mac-addr ADDR  MAC address of the tap device\n\
             \x20     --dhcp-dns          Announce nameservers (not done by default)\n\
             \x20     --dhcp-search       Announce search domains (not done by default)\n\
             \x20 -t, --tcp-ports SPEC    Forward TCP ports from the host to the namespace\n\
             \x20 -u, --udp-ports SPEC    Forward UDP ports from the host to the namespace\n\
             \x20 -T, --tcp-ns SPEC       Forward TCP ports from the namespace's loopback\n\
             \x20 -U, --udp-ns SPEC       Forward UDP ports from the namespace's loopback\n\
             \x20                         SPEC: auto (default), none, or\n\
             \x20                         [ADDR][%IFNAME]/PORTS or PORTS (no address\n\
             \x20                         for -T/-U), where PORTS is a comma-separated\n\
             \x20                         list of N, N-M, N:T, N-M:T-U, ~N, ~N-M\n\
             \x20     --userns PATH       User namespace to join\n\
             \x20     --netns PATH|NAME   Network namespace to join (NAME: /run/netns/NAME)\n\
             \x20     --netns-only        Do not join or create a user namespace\n\
             \x20     --no-netns-quit     Keep running when the namespace goes away\n\
             \x20     --config-net        Configure the tap device (addresses, routes, MTU)\n\
             \x20     --no-copy-routes    Deprecated: set only a default route\n\
             \x20     --no-copy-addrs     Deprecated: set only one address\n\
             \x20     --no-splice         Do not splice loopback connections\n\
             \x20     --splice-only       Only forward loopback traffic, no tap device\n\
             \x20     --host-lo-to-ns-lo  Host loopback traffic goes to namespace loopback\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run(mode: Mode, s: &str) -> Options {
        match parse(mode, &argv(s)) {
            Ok(Parsed::Run(o)) => o,
            other => panic!("{s:?}: expected Run, got {other:?}"),
        }
    }

    fn err(mode: Mode, s: &str) -> String {
        match parse(mode, &argv(s)) {
            Err(e) => e.to_string(),
            Ok(p) => panic!("{s:?}: expected an error, got {p:?}"),
        }
    }

    use Mode::{Passt, Pasta};

    #[test]
    fn bad_command_lines() {
        // (mode, argv, text the message must contain)
        let cases: &[(Mode, &str, &str)] = &[
            (Passt, "--bogus", "--bogus"),
            (Passt, "-x", "-x"),
            (Passt, "-fx", "-x"),
            (Pasta, "--no", "Ambiguous option: --no"),
            (Pasta, "--no-d", "Ambiguous"),
            (Passt, "--mtu", "--mtu requires an argument"),
            (Passt, "-m", "-m requires an argument"),
            (Passt, "--quiet=1", "--quiet doesn't allow"),
            (Passt, "-m 70000", "70000"),
            (Passt, "-m 15x", "Invalid MTU: 15x"),
            (Passt, "--netns foo", "--netns is for pasta mode only"),
            (Passt, "-I eth0", "-I is for pasta mode only"),
            (Passt, "-T 22", "-T is for pasta mode only"),
            (Passt, "--config-net", "--config-net is for pasta mode only"),
            (Passt, "--dhcp-dns", "--dhcp-dns is for pasta"),
            (
                Pasta,
                "--no-dhcp-dns",
                "--no-dhcp-dns is for passt mode only",
            ),
            (Pasta, "-1", "-1 is for passt mode only"),
            (Pasta, "-s /tmp/s", "-s is for passt / vhost-user mode only"),
            (Pasta, "--vhost-user", "--vhost-user is for passt"),
            (Passt, "--splice-only", "--splice-only is for pasta"),
            (Passt, "-a 0.0.0.0", "Invalid address: 0.0.0.0"),
            (Passt, "-a 224.0.0.1", "224.0.0.1"),
            (Passt, "-a 127.0.0.1", "127.0.0.1"),
            (Passt, "-a ::1", "::1"),
            (Passt, "-a ff02::1", "ff02::1"),
            (Passt, "-a ::10.0.0.1", "::10.0.0.1"),
            (Passt, "-a 10.0.0.1/33", "10.0.0.1/33"),
            (Passt, "-a foo", "Invalid address: foo"),
            (Passt, "-n 24 -a 10.0.0.1/24", "Redundant prefix length"),
            (Passt, "-a 10.0.0.1/24 -n 24", "Redundant prefix length"),
            (Passt, "-n 255.0.255.0", "255.0.255.0"),
            (Passt, "-n 33", "Invalid prefix length: 33"),
            (
                Passt,
                "-M 9a:55:9a:55:9a",
                "Invalid MAC address: 9a:55:9a:55:9a",
            ),
            (Passt, "-M 9a:55:9a:55:9a:5g", "9a:5g"),
            (Pasta, "--ns-mac-addr 1:2:3:4:5:6", "1:2:3:4:5:6"),
            (Passt, "-g 255.255.255.255", "Invalid gateway address"),
            (Passt, "-g ::", "Invalid gateway address: ::"),
            (Passt, "-o 224.1.1.1", "outbound address: 224.1.1.1"),
            (
                Passt,
                "--dns-forward 127.0.0.1",
                "Invalid DNS forwarding address",
            ),
            (
                Passt,
                "--dns-host 0.0.0.0",
                "Invalid host nameserver address",
            ),
            (Passt, "-D foo", "Cannot use DNS address foo"),
            (
                Passt,
                "--map-host-loopback 127.0.0.1",
                "remap to host: 127.0.0.1",
            ),
            (Passt, "--map-guest-addr ::", "remap to host: ::"),
            (
                Passt,
                "-S a -S b -S c -S d -S e -S f -S g",
                "search domain g",
            ),
            (Passt, "-i averyveryverylongname", "Invalid interface name"),
            (Passt, "--fd 2", "Invalid --fd: 2"),
            (Passt, "--fd x", "Invalid --fd: x"),
            (Passt, "--log-size 100", "Invalid --log-size: 100"),
            (Passt, "--stats 1", "--stats: not supported yet"),
            (Passt, "--migrate-exit", "--migrate-exit is for vhost-user"),
            (Passt, "--vhost-user --migrate-exit", "not supported yet"),
            (
                Passt,
                "--vhost-user --repair-path /x",
                "--repair-path: not supported",
            ),
            (Passt, "-t abc", "abc"),
            (Passt, "-t 70000", "70000"),
            (Passt, "-t 22:23-24", "22:23-24"),
            (Passt, "-t 30-20", "30-20"),
            (Passt, "-t 1.2.3/22", "1.2.3/22"),
            (
                Passt,
                "-t auto",
                "'auto' port forwarding is only allowed for pasta",
            ),
            (
                Pasta,
                "-t all",
                "'all' port forwarding is only allowed for passt",
            ),
            (Pasta, "-t none -t 22", "-t 22 conflicts with previous mode"),
            (Pasta, "-t 22 -t none", "-t none conflicts"),
            (Pasta, "-T 127.0.0.1/22", "127.0.0.1/22"),
            (Pasta, "-U auto -U auto", "conflicts"),
            (Passt, "--no-tcp -t 22", "TCP is disabled"),
            (Passt, "-t 192.0.2.1/22 -6", "192.0.2.1/22 is disabled"),
            (Pasta, "-4 -u [::1]/53", "[::1]/53 is disabled"),
            (Pasta, "-U 53 --no-udp", "UDP is disabled"),
            (Passt, "somearg", "Extra non-option argument: somearg"),
            (Passt, "-- somearg", "somearg"),
            (
                Pasta,
                "--netns foo 1234",
                "Both --netns and PID or command given",
            ),
            (Pasta, "--netns foo ls", "Both --netns"),
            (Pasta, "99999999999", "Invalid PID 99999999999"),
            (
                Pasta,
                "--no-copy-routes",
                "--no-copy-routes needs --config-net",
            ),
            (
                Pasta,
                "--no-copy-addrs",
                "--no-copy-addrs needs --config-net",
            ),
            (
                Pasta,
                "--splice-only --no-splice",
                "incompatible with --no-splice",
            ),
            // An option error before --version wins over --version.
            (Pasta, "--mtu 99999 --version", "99999"),
            (
                Passt,
                "--host-lo-to-ns-lo --version",
                "--host-lo-to-ns-lo is for pasta",
            ),
        ];
        for &(mode, line, want) in cases {
            let e = err(mode, line);
            assert!(e.contains(want), "{line:?}: {e:?} lacks {want:?}");
        }
    }

    #[test]
    fn good_command_lines() {
        // Every option that is accepted in each mode, alone or in the
        // combinations real users pass.
        let cases: &[(Mode, &str)] = &[
            (
                Pasta,
                "--config-net --dns-forward 169.254.1.1 --map-guest-addr 169.254.1.2 \
                     --no-map-gw --quiet -t 8080 -u 8080 -T none -U none --pid /tmp/x.pid \
                     --netns /run/netns/foo",
            ),
            (Pasta, "-t none -u none -T none -U none --netns foo"),
            (Pasta, "--no-tcp -t none -T none --no-udp 1"),
            (Passt, "--quiet --pid /tmp/p --fd 3"),
            (Passt, "--vhost-user --quiet --pid /tmp/p --fd 3"),
            (Passt, "--vhost-user --socket-path /s --repair-path none"),
            (Passt, "--one-off --socket /s --pid /p"),
            (
                Passt,
                "-s /s -1 -p /tmp/c.pcap --runas nobody -o 192.0.2.1 -o 2001:db8::1",
            ),
            (
                Passt,
                "--outbound-if4 eth0 --outbound-if6 eth1 --dns-host 192.0.2.53",
            ),
            (
                Passt,
                "--dns-host 2001:db8::53 --freebind --map-host-loopback 192.0.2.2",
            ),
            (
                Passt,
                "--map-host-loopback fd00::2 --map-guest-addr none --fqdn a.b -H a",
            ),
            (
                Passt,
                "-S example.com -D 192.0.2.53 -D 2001:db8::53 --no-dhcp-dns",
            ),
            (
                Passt,
                "--no-dhcp-search --no-tcp --no-udp --no-icmp --no-dhcp --no-ndp",
            ),
            (
                Passt,
                "--no-dhcpv6 --no-ra -4 -6 --trace --log-size 0x100000 -l /tmp/log",
            ),
            (Passt, "-t all -u all"),
            (
                Passt,
                "-t 22 -t 22:23 -t 22,25 -t 22-80 -t 22-80:32-90 -t 192.0.2.1/22",
            ),
            (
                Passt,
                "-t 192.0.2.1%eth0/22 -t %eth0/22 -t 2000-5000,~3000-3010",
            ),
            (
                Passt,
                "-t 192.0.2.1/20-30,~25 -t ~20000-20010 -t [2001:db8::1]/443",
            ),
            (
                Passt,
                "-m 0 -m 65521 -m 1500 -M 9a:55:9a:55:9a:55 -g 192.0.2.1 -i eth0",
            ),
            (Passt, "-e --stderr -f --foreground --no-splice"),
            (
                Pasta,
                "-I tap0 --ns-mac-addr 02:00:00:00:00:02 --userns /u --netns /n",
            ),
            (
                Pasta,
                "--netns-only --no-netns-quit --config-net --no-copy-routes 7",
            ),
            (
                Pasta,
                "--config-net --no-copy-addrs --splice-only -T 5000 -U 5000",
            ),
            (
                Pasta,
                "--host-lo-to-ns-lo --dhcp-dns --dhcp-search -t auto -u auto",
            ),
            (Pasta, "--fd 5 -D none -S none --map-host-loopback none"),
        ];
        for &(mode, line) in cases {
            let _ = run(mode, line);
        }
    }

    #[test]
    fn usage_lists_every_option() {
        let (passt, pasta) = (usage(Passt), usage(Pasta));
        println!("{passt}\n{pasta}");
        for text in [&passt, &pasta] {
            assert!(text.contains("\n  -d, --debug"));
            for line in text.lines() {
                assert!(line.len() <= 80, "too long: {line:?}");
            }
        }
        // Deprecated or unsupported options are left out of the text.
        let hidden = ["migrate-exit", "migrate-no-linger", "repair-path", "stats"];
        for (name, _, _) in LONG.iter().filter(|(n, _, _)| !hidden.contains(n)) {
            let opt = format!("--{name}");
            assert!(
                passt.contains(&opt) || pasta.contains(&opt),
                "{opt} missing from --help"
            );
        }
    }

    #[test]
    fn help_version_capabilities() {
        assert!(
            matches!(parse(Pasta, &argv("--host-lo-to-ns-lo --version")),
            Ok(Parsed::Version(v)) if v.starts_with("pasta "))
        );
        assert!(matches!(parse(Passt, &argv("--version")),
            Ok(Parsed::Version(v)) if v.starts_with("passt ")));
        // After --version nothing is looked at.
        assert!(matches!(
            parse(Pasta, &argv("--vers --bogus")),
            Ok(Parsed::Version(_))
        ));
        assert!(matches!(parse(Pasta, &argv("-q -h")),
            Ok(Parsed::Help(h)) if h.contains("--netns")));
        assert!(matches!(parse(Passt, &argv("--help")),
            Ok(Parsed::Help(h)) if h.contains("--socket") && !h.contains("--netns")));
        assert_eq!(
            parse(Passt, &argv("--vhost-user --print-capabilities")),
            Ok(Parsed::PrintCapabilities)
        );
        // Port specs are checked after the first pass, like upstream.
        assert!(matches!(
            parse(Pasta, &argv("-t abc --version")),
            Ok(Parsed::Version(_))
        ));
    }

    #[test]
    fn podman() {
        let o = run(
            Pasta,
            "--config-net --dns-forward 169.254.1.1 -t 8080 -u 8080 -T none -U none \
             --no-map-gw --quiet --map-guest-addr 169.254.1.2 --pid /tmp/x.pid \
             --netns /run/user/1000/netns/foo",
        );
        assert!(o.config_net && o.no_map_gw);
        assert_eq!(o.log_level, LogLevel::Quiet);
        assert_eq!(o.dns_forward4, Some(Ipv4Addr::new(169, 254, 1, 1)));
        assert_eq!(o.map_guest_addr4, Some(Ipv4Addr::new(169, 254, 1, 2)));
        assert_eq!(o.pid_file, Some(PathBuf::from("/tmp/x.pid")));
        assert_eq!(o.fwd.tcp_in, ["8080"]);
        assert_eq!(o.fwd.udp_in, ["8080"]);
        assert_eq!(o.fwd.tcp_out, ["none"]);
        assert_eq!(o.fwd.udp_out, ["none"]);
        assert_eq!(
            o.target,
            Some(NsTarget::Path("/run/user/1000/netns/foo".into()))
        );
        assert!(o.netns_only);

        // Long forms, netns by name, ranges with host address.
        let o = run(
            Pasta,
            "--config-net --tcp-ports 127.0.0.1/8080-8081:80-81 --udp-ports=[::1]/53 \
             --tcp-ns=none --udp-ns=none --dns-forward=169.254.1.1 --no-map-gw \
             --quiet --map-guest-addr=169.254.1.2 --pid=/tmp/x.pid --netns=foo",
        );
        assert_eq!(o.fwd.tcp_in, ["127.0.0.1/8080-8081:80-81"]);
        assert_eq!(o.fwd.udp_in, ["[::1]/53"]);
        assert_eq!(o.target, Some(NsTarget::Path("/run/netns/foo".into())));
    }

    #[test]
    fn rootlesskit() {
        let o = run(
            Pasta,
            "--stderr --ns-ifname=tap0 --mtu=65520 --config-net --address=10.0.2.100 \
             --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3 --no-map-gw \
             --ipv4-only --tcp-ports=none --udp-ports=none --host-lo-to-ns-lo 1234",
        );
        assert_eq!(o.ns_ifname.as_deref(), Some("tap0"));
        assert_eq!(o.mtu, Some(65520));
        assert_eq!(o.addr4, Some(Ipv4Addr::new(10, 0, 2, 100)));
        assert_eq!(o.prefix4, Some(24));
        assert_eq!(o.gw4, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert!(o.v4_only && !o.v6_only && o.host_lo_to_ns_lo);
        assert_eq!(o.target, Some(NsTarget::Pid(1234)));
        assert_eq!(o.userns, Some(PathBuf::from("/proc/1234/ns/user")));
        assert!(!o.netns_only);
        let o = run(
            Pasta,
            "--stderr --ns-ifname=tap0 --mtu=65520 --config-net --address=10.0.2.100 \
             --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3 --tcp-ports=auto \
             --udp-ports=auto --userns=/proc/99/ns/user --netns=/proc/99/ns/net",
        );
        assert_eq!(o.userns, Some(PathBuf::from("/proc/99/ns/user")));
        assert!(!o.netns_only);
        assert_eq!(o.target, Some(NsTarget::Path("/proc/99/ns/net".into())));
    }

    #[test]
    fn qemu_libvirt() {
        let o = run(Passt, "--quiet --pid /run/p.pid --fd 3");
        assert_eq!(o.fd, Some(3));
        assert!(o.one_off);
        assert_eq!(o.pid_file, Some(PathBuf::from("/run/p.pid")));
        let o = run(Passt, "--vhost-user --quiet --pid /run/p.pid --fd 3");
        assert!(o.vhost_user && o.fd == Some(3));
        let o = run(Passt, "--one-off --socket /run/s.sock --pid /run/p.pid");
        assert!(o.one_off && o.fd.is_none());
        assert_eq!(o.socket, Some(PathBuf::from("/run/s.sock")));
        // Last of -s / --fd wins.
        let o = run(Passt, "--fd 3 -s /x");
        assert_eq!((o.fd, o.socket.as_deref()), (None, Some("/x".as_ref())));
        let o = run(Passt, "--socket-path /x --fd=0x10");
        assert_eq!((o.fd, o.socket), (Some(16), None));
        // libvirt with options.
        let o = run(
            Passt,
            "--one-off --socket /s --mac-addr 52:54:00:12:34:56 --mtu 1500 \
             --address 192.168.1.5 --netmask 24 --gateway 192.168.1.1 \
             --interface eth0 --tcp-ports 22:2222 --log-file /l -H vm --fqdn vm.example",
        );
        assert_eq!(o.mac, Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(o.prefix4, Some(24));
        assert_eq!(o.ifname.as_deref(), Some("eth0"));
        assert_eq!(o.hostname.as_deref(), Some("vm"));
        assert_eq!(o.fqdn.as_deref(), Some("vm.example"));
    }

    #[test]
    fn getopt_semantics() {
        // Prefixes.
        let o = run(Pasta, "--confi --host-lo --netns-o");
        assert!(o.config_net && o.host_lo_to_ns_lo && o.netns_only);
        // ... but not one of two options (as upstream: --conf-path too).
        assert!(err(Pasta, "--conf").contains("--config-net, --conf-path"));
        let o = run(Passt, "-c /x/c.sock");
        assert_eq!(o.conf_path, Some(PathBuf::from("/x/c.sock")));
        // Exact name wins over longer ones.
        let o = run(Passt, "--no-dhcp");
        assert!(o.no_dhcp && !o.no_dhcpv6);
        // A prefix of two aliases of the same option is fine.
        let o = run(Passt, "--sock /x");
        assert_eq!(o.socket, Some(PathBuf::from("/x")));
        // Bundles and attached values.
        let o = run(Passt, "-fdP /p -t22 -46");
        assert!(o.foreground && o.v6_only && !o.v4_only);
        assert_eq!(o.log_level, LogLevel::Debug);
        assert_eq!(o.pid_file, Some(PathBuf::from("/p")));
        assert_eq!(o.fwd.tcp_in, ["22"]);
        let o = run(Passt, "-fP/p");
        assert_eq!(o.pid_file, Some(PathBuf::from("/p")));
        // Repeats accumulate in order, last log option wins.
        let o = run(Passt, "-t 22 -t 80,443 -t 2000-5000,~3000-3010 -d -q");
        assert_eq!(o.fwd.tcp_in, ["22", "80,443", "2000-5000,~3000-3010"]);
        assert_eq!(o.log_level, LogLevel::Quiet);
        assert_eq!(run(Passt, "--trace").log_level, LogLevel::Trace);
        // Option values may start with '-'.
        let o = run(Passt, "-l -weird");
        assert_eq!(o.log_file, Some(PathBuf::from("-weird")));
        // Deprecated no-ops.
        run(Passt, "-e --stderr");
        run(Pasta, "--config-net --no-copy-routes --no-copy-addrs");
    }

    #[test]
    fn pasta_targets() {
        let o = run(Pasta, "");
        assert_eq!(o.target, Some(NsTarget::Spawn { command: vec![] }));
        assert!(o.no_dhcp_dns && o.no_dhcp_search);
        let o = run(Pasta, "-- ls -l");
        assert_eq!(
            o.target,
            Some(NsTarget::Spawn {
                command: argv("ls -l")
            })
        );
        let o = run(Pasta, "-q ip -j addr");
        assert_eq!(
            o.target,
            Some(NsTarget::Spawn {
                command: argv("ip -j addr")
            })
        );
        // Options after the command belong to it.
        let o = run(Pasta, "sh -c --netns");
        assert_eq!(
            o.target,
            Some(NsTarget::Spawn {
                command: argv("sh -c --netns")
            })
        );
        // Digits with more arguments are a command.
        let o = run(Pasta, "-- 1234 x");
        assert!(matches!(o.target, Some(NsTarget::Spawn { .. })));
        let o = run(Pasta, "--userns /u 42");
        assert_eq!(o.target, Some(NsTarget::Pid(42)));
        assert_eq!(o.userns, Some(PathBuf::from("/u")));
        let o = run(Pasta, "--netns-only 42");
        assert_eq!(o.userns, None);
        assert!(o.netns_only);
        let o = run(Pasta, "--dhcp-dns --dhcp-search");
        assert!(!o.no_dhcp_dns && !o.no_dhcp_search);
        let o = run(Pasta, "--splice-only");
        assert!(o.host_lo_to_ns_lo && o.no_icmp && o.no_dns && o.no_search);
    }

    #[test]
    fn addresses_and_dns() {
        let o = run(Passt, "-a 10.1.2.3");
        assert_eq!(o.prefix4, Some(8));
        let o = run(Passt, "-a 172.16.0.5");
        assert_eq!(o.prefix4, Some(16));
        let o = run(Passt, "-n 255.255.255.0 -a 192.168.0.5");
        assert_eq!(o.prefix4, Some(24));
        let o = run(Passt, "-a 192.168.0.5 -n 16");
        assert_eq!(o.prefix4, Some(16));
        let o = run(Passt, "-a 2001:db8::5/48 -a 10.0.0.2/30");
        assert_eq!(o.addr6, Some("2001:db8::5".parse().unwrap()));
        assert_eq!(o.prefix4, Some(30));
        let o = run(Passt, "-g fe80::1 -g 10.0.0.1 -o 10.0.0.2 -o 2001:db8::2");
        assert_eq!(o.gw6, Some("fe80::1".parse().unwrap()));
        assert_eq!(o.gw4, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(o.addr_out4.is_some() && o.addr_out6.is_some());
        let o = run(Passt, "-D 1.1.1.1 -D 2.2.2.2 -D ::1 -D 3.3.3.3 -D 4.4.4.4");
        assert_eq!(o.dns4.len(), 3);
        assert_eq!(o.dns6.len(), 1);
        let o = run(Passt, "-D 1.1.1.1 -D none");
        assert!(o.no_dns && o.dns4.is_empty());
        let args: Vec<String> = ["-S", "a.example  b.example", "-S", "c.example"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let Ok(Parsed::Run(o)) = parse(Passt, &args) else {
            panic!("-S with spaces")
        };
        assert_eq!(o.search, ["a.example", "b.example", "c.example"]);
        let o = run(Passt, "-S a -S none");
        assert!(o.no_search && o.search.is_empty());
        let o = run(
            Passt,
            "--map-host-loopback none --map-guest-addr 169.254.1.2",
        );
        assert!(o.no_map_gw && o.map_host_loopback4.is_none());
        assert_eq!(o.map_guest_addr4, Some(Ipv4Addr::new(169, 254, 1, 2)));
        let o = run(Passt, "--no-dhcp-dns --no-dhcp-search -M 9A:55:9a:55:9a:00");
        assert!(o.no_dhcp_dns && o.no_dhcp_search);
        assert_eq!(o.mac, Some([0x9a, 0x55, 0x9a, 0x55, 0x9a, 0]));
    }

    #[test]
    fn no_panic_on_token_combinations() {
        let tokens = [
            "-", "--", "-t", "22", "-fP", "--netns", "x", "--vers", "-a", "::1/200", "1234",
            "--no", "=", "-T", "--m", "é", "-S", "none", "--fd=0", "-n", "0.0.0.0",
        ];
        for a in tokens {
            for b in tokens {
                for c in tokens {
                    let args = vec![a.to_string(), b.to_string(), c.to_string()];
                    let _ = parse(Pasta, &args);
                    let _ = parse(Passt, &args);
                }
            }
        }
    }

    #[test]
    fn no_panic_on_odd_input() {
        for line in [
            vec!["-"],
            vec!["--"],
            vec!["--="],
            vec!["-é"],
            vec!["-fé"],
            vec!["--mtu="],
            vec!["-t", ""],
            vec!["-t", ","],
            vec!["-t", "/"],
            vec!["-t", "%/1"],
            vec!["-t", "~"],
            vec!["-a", "/"],
            vec!["-M", "éé:éé:éé"],
            vec!["--netns", ""],
        ] {
            let args: Vec<String> = line.iter().map(|s| s.to_string()).collect();
            let _ = parse(Pasta, &args);
            let _ = parse(Passt, &args);
        }
    }
}
