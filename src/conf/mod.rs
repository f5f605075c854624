//! Configuration: the command line and the host it runs on, turned into one
//! immutable [`Config`].
//!
//! Start-up goes in three steps, each in its own module:
//!
//! 1. [`cli`] parses argv with getopt_long semantics into [`cli::Options`]:
//!    pure, no system access, so every accepted and rejected command line is
//!    a unit test;
//! 2. [`host`] reads the host over rtnetlink (template interface, addresses,
//!    routes, gateway, MTU) and `/etc/resolv.conf` into [`host::HostInfo`];
//! 3. [`resolve`] merges both into a [`Config`], applying upstream's defaults
//!    (local mode without a default route, gateway mapped to the host's
//!    loopback, services implied off...).
//!
//! After that the configuration never changes: it is shared read-only by the
//! event loop (and later by workers), everything mutable lives in the
//! context that a loop owns. The values that follow the host at run time
//! (the guest's address, gateway, nameservers) start from here and live on
//! in [`crate::live`]; each family's [`Follow`] says which may change.

pub(crate) mod cli;
pub mod host;
pub(crate) mod resolve;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// Which program we are, from the basename of argv[0].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// QEMU / libvirt back-end over a UNIX stream socket.
    Passt,
    /// Network namespace back-end over a tap device.
    Pasta,
}

impl Mode {
    /// The mode for a program name (`argv[0]`): a basename containing
    /// "pasta" is pasta, one containing "passt" is passt.
    pub(crate) fn from_argv0(argv0: &str) -> Option<Mode> {
        let base = argv0.rsplit('/').next().unwrap_or(argv0);
        if base.contains("pasta") {
            Some(Mode::Pasta)
        } else if base.contains("passt") {
            Some(Mode::Passt)
        } else {
            None
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Passt => "passt",
            Mode::Pasta => "pasta",
        }
    }
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) enum LogLevel {
    /// `-q`: warnings and errors only.
    Quiet,
    /// Default: info and above.
    #[default]
    Info,
    /// `-d`.
    Debug,
    /// `--trace`: per packet and per flow event.
    Trace,
}

/// Where pasta finds, or how it creates, the network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NsTarget {
    /// Create user (unless `netns_only`), network, UTS, mount, IPC and PID
    /// namespaces and run `command` there (empty: the user's `$SHELL`).
    Spawn { command: Vec<String> },
    /// Join the namespaces of this process.
    Pid(u32),
    /// Join a network namespace file (`--netns`; a bare NAME is
    /// `/run/netns/NAME`).
    Path(PathBuf),
}

/// Options only pasta has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PastaConf {
    pub(crate) target: NsTarget,
    /// `--userns`: user namespace to join.
    pub(crate) userns: Option<PathBuf>,
    /// Do not join or create a user namespace (`--netns-only`, implied by
    /// `--netns` without `--userns`).
    pub(crate) netns_only: bool,
    /// `--no-netns-quit`.
    pub(crate) no_netns_quit: bool,
    /// `--config-net`: configure the tap (MTU, up, addresses, routes).
    pub(crate) config_net: bool,
    /// `-I`: tap name in the namespace (resolved: template name or `tap0`).
    pub(crate) ns_ifname: String,
    /// `--ns-mac-addr`.
    pub(crate) ns_mac: Option<[u8; 6]>,
    /// `--no-copy-routes` (deprecated, only a default route).
    pub(crate) no_copy_routes: bool,
    /// `--no-copy-addrs` (deprecated, only one address).
    pub(crate) no_copy_addrs: bool,
    pub(crate) no_splice: bool,
    pub(crate) splice_only: bool,
    pub(crate) host_lo_to_ns_lo: bool,
}

/// Options only passt has.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct PasstConf {
    /// `-s`: UNIX socket path (None: probe /tmp/passt_N.socket).
    pub(crate) socket: Option<PathBuf>,
    /// `-1`.
    pub(crate) one_off: bool,
    /// `--vhost-user`: vhost-user back-end on the socket or `--fd`.
    pub(crate) vhost_user: bool,
}

/// One address family's view of the guest and the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ip4Conf {
    /// Address assigned to the guest (DHCP yiaddr, `--config-net`).
    pub(crate) addr: Ipv4Addr,
    pub(crate) prefix_len: u8,
    /// The guest's default gateway (DHCP option 3).
    pub(crate) gw: Ipv4Addr,
    /// Our own address on the tap (source of DHCP, ARP probes): the gateway.
    pub(crate) our_tap_addr: Ipv4Addr,
    /// Guest-side address meaning "the host" (mapped to 127.0.0.1).
    pub(crate) map_host_loopback: Option<Ipv4Addr>,
    /// Guest-side address translated to the guest's own address on the host.
    pub(crate) map_guest_addr: Option<Ipv4Addr>,
    /// Nameservers announced to the guest (DHCP option 6), at most 3.
    pub(crate) dns: Vec<Ipv4Addr>,
    /// `--dns-forward`: guest-side address whose DNS goes to `dns_host`.
    pub(crate) dns_match: Option<Ipv4Addr>,
    /// `--dns-host`: where forwarded DNS goes.
    pub(crate) dns_host: Option<Ipv4Addr>,
    /// `-o`: source address for outbound sockets.
    pub(crate) addr_out: Option<Ipv4Addr>,
    /// `--outbound-if4`.
    pub(crate) ifname_out: Option<String>,
    /// Template interface name (empty in local mode).
    pub(crate) ifname: String,
    /// Addresses of the template interface, copied by `--config-net`.
    pub(crate) host_addrs: Vec<(Ipv4Addr, u8)>,
    /// Copy the template interface's routes (false with `-g`, in local
    /// mode, or with `--no-copy-routes`).
    pub(crate) copy_routes: bool,
    /// Copy all addresses (false with `-a`, in local mode, or with
    /// `--no-copy-addrs`).
    pub(crate) copy_addrs: bool,
    /// No template interface: link-local defaults.
    pub(crate) local_mode: bool,
    /// What may follow the host at run time.
    pub(crate) follow: Follow<Ipv4Addr>,
}

/// What of a family may follow the host at run time (see
/// [`crate::follow`]), and the options the run-time recomputation starts
/// from again. An explicit option is never overridden.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Follow<A> {
    /// The guest's address is the template interface's (no `-a`, not
    /// local mode).
    pub(crate) addr: bool,
    /// Its prefix length too (no `-n` either).
    pub(crate) prefix_len: bool,
    /// The guest's gateway is the host's (no `-g`, not local mode).
    pub(crate) gw: bool,
    /// The nameservers come from resolv.conf (no `-D`, no `--no-dns`).
    pub(crate) dns: bool,
    /// `--dns-forward` as given (start-up may have set `dns_match` from a
    /// loopback resolver; a new resolv.conf decides that again).
    pub(crate) dns_forward: Option<A>,
    /// `--dns-host` as given: never overridden.
    pub(crate) dns_host: Option<A>,
    /// The template interface as named by `-i` / `--outbound-if4/6`
    /// (None: the one of the default route, chosen again on a change).
    pub(crate) ifname: Option<String>,
}

/// Nothing follows (local mode, tests).
impl<A> Default for Follow<A> {
    fn default() -> Self {
        Follow {
            addr: false,
            prefix_len: false,
            gw: false,
            dns: false,
            dns_forward: None,
            dns_host: None,
            ifname: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ip6Conf {
    /// Global address assigned to the guest (DHCPv6 IA_NA, RA prefix);
    /// None in local mode or on a host without one.
    pub(crate) addr: Option<Ipv6Addr>,
    /// Prefix length of `addr` on the host (RA always announces /64).
    pub(crate) prefix_len: u8,
    /// The guest's default router (often a link-local address).
    pub(crate) gw: Ipv6Addr,
    /// Our link-local address on the tap: source of RA, NA, DHCPv6.
    pub(crate) our_tap_ll: Ipv6Addr,
    pub(crate) map_host_loopback: Option<Ipv6Addr>,
    pub(crate) map_guest_addr: Option<Ipv6Addr>,
    /// Nameservers announced (DHCPv6 option 23, RA RDNSS), at most 3.
    pub(crate) dns: Vec<Ipv6Addr>,
    pub(crate) dns_match: Option<Ipv6Addr>,
    pub(crate) dns_host: Option<Ipv6Addr>,
    pub(crate) addr_out: Option<Ipv6Addr>,
    pub(crate) ifname_out: Option<String>,
    pub(crate) ifname: String,
    /// Index of the template interface (0 in local mode): the scope of
    /// host-side link-local addresses (see `fwd::host_sockaddr`).
    pub(crate) ifindex: u32,
    /// Global addresses of the template interface, copied by `--config-net`.
    pub(crate) host_addrs: Vec<(Ipv6Addr, u8)>,
    pub(crate) copy_routes: bool,
    pub(crate) copy_addrs: bool,
    pub(crate) local_mode: bool,
    /// What may follow the host at run time.
    pub(crate) follow: Follow<Ipv6Addr>,
}

/// Protocol of a forwarding rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

/// The forwarding options as given (`-t`, `-u`, `-T`, `-U`), one entry per
/// occurrence, in order. Turned into rules by the forwarding module.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct FwdSpecs {
    pub(crate) tcp_in: Vec<String>,
    pub(crate) udp_in: Vec<String>,
    pub(crate) tcp_out: Vec<String>,
    pub(crate) udp_out: Vec<String>,
}

/// Everything the daemon was told, immutable after start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    pub(crate) mode: Mode,
    pub(crate) log_level: LogLevel,
    /// `-l`.
    pub(crate) log_file: Option<PathBuf>,
    /// `--log-size`, bytes.
    pub(crate) log_size: u64,
    /// `-f` (forced in pasta spawn mode).
    pub(crate) foreground: bool,
    /// `-P`.
    pub(crate) pid_file: Option<PathBuf>,
    /// `-p`.
    pub(crate) pcap: Option<PathBuf>,
    /// `-c`/`--conf-path`: the configuration socket (`crate::ctl`).
    pub(crate) conf_path: Option<PathBuf>,
    /// `--runas` resolved to numeric ids.
    pub(crate) runas: Option<(u32, u32)>,
    /// `-F`/`--fd`: pre-opened socket (passt) or tap (pasta).
    pub(crate) fd: Option<i32>,
    /// MTU announced (and set with `--config-net`); 0: don't announce.
    pub(crate) mtu: u16,
    /// Our MAC address (`-M`).
    pub(crate) our_mac: [u8; 6],
    /// IPv4, unless disabled by `-6`.
    pub(crate) ip4: Option<Ip4Conf>,
    /// IPv6, unless disabled by `-4`.
    pub(crate) ip6: Option<Ip6Conf>,
    /// DNS search domains (DHCP 119, DHCPv6 24, RA DNSSL).
    pub(crate) search: Vec<String>,
    /// `-H`.
    pub(crate) hostname: Option<String>,
    /// `--fqdn`.
    pub(crate) fqdn: Option<String>,
    pub(crate) no_tcp: bool,
    pub(crate) no_udp: bool,
    pub(crate) no_icmp: bool,
    pub(crate) no_dhcp: bool,
    pub(crate) no_ndp: bool,
    pub(crate) no_dhcpv6: bool,
    pub(crate) no_ra: bool,
    /// Do not announce nameservers (passt `--no-dhcp-dns`; pasta default
    /// unless `--dhcp-dns`).
    pub(crate) no_dhcp_dns: bool,
    /// Do not announce the search list.
    pub(crate) no_dhcp_search: bool,
    pub(crate) freebind: bool,
    pub(crate) fwd: FwdSpecs,
    pub(crate) pasta: Option<PastaConf>,
    pub(crate) passt: Option<PasstConf>,
    /// Test-only knobs (timer intervals...), from the environment.
    pub(crate) test: TestKnobs,
}

/// Intervals that tests may shorten. Documented in the README as for testing
/// only; read from `PASST_RS_TEST_*` environment variables.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct TestKnobs {
    /// Idle timeout of ICMP echo flows, seconds (default 60).
    pub(crate) icmp_timeout: Option<u64>,
    /// Tap-side TCP keepalive interval, seconds (default 30).
    pub(crate) tcp_keepalive: Option<u64>,
    /// TCP inactivity interval, seconds (default 7200).
    pub(crate) tcp_inactivity: Option<u64>,
    /// Flow table capacity (default 131071).
    pub(crate) flow_max: Option<usize>,
    /// Both UDP flow timeouts, seconds (default: conntrack's, 30 and 120).
    pub(crate) udp_timeout: Option<u64>,
}

impl TestKnobs {
    /// Reads the `PASST_RS_TEST_*` variables (for the test suite only).
    pub(crate) fn from_env() -> Self {
        let get = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        TestKnobs {
            icmp_timeout: get("PASST_RS_TEST_ICMP_TIMEOUT"),
            tcp_keepalive: get("PASST_RS_TEST_TCP_KEEPALIVE"),
            tcp_inactivity: get("PASST_RS_TEST_TCP_INACTIVITY"),
            flow_max: get("PASST_RS_TEST_FLOW_MAX").map(|v: u64| v as usize),
            udp_timeout: get("PASST_RS_TEST_UDP_TIMEOUT"),
        }
    }
}

/// Our default MAC address, as upstream.
pub(crate) const DEFAULT_MAC: [u8; 6] = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];
/// Default MTU, as upstream: 65520 for both modes.
pub(crate) const DEFAULT_MTU: u16 = 65520;
/// Largest MTU accepted by `-m`.
pub(crate) const MAX_MTU: u16 = 65521;
/// Default log size for `--log-size`.
pub(crate) const DEFAULT_LOG_SIZE: u64 = 1 << 20;
/// The version line printed by `--version`.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
