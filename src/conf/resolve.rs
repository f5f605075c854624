//! Merge the command line ([`Options`]) with what was discovered about the
//! host ([`HostInfo`]) into the immutable [`Config`].
//!
//! # Theory of operation
//!
//! Every default that depends on the host is decided here, and nowhere
//! else, so that it can be tested with hand-built [`HostInfo`] values:
//!
//! * **Template interface**, per address family: the one discovery found
//!   (it already honours `-i` and `--outbound-if4/6`). IPv4 needs an address
//!   on it (or `-a`); IPv6 needs a default router, a global address and a
//!   link-local address (or the equivalent options). Otherwise the family
//!   runs in **local mode**: IPv4 169.254.2.1/16 with gateway 169.254.2.2,
//!   IPv6 without a global address and with fe80::1 as router and our own
//!   link-local address. Unlike upstream, `-a`/`-g` still apply in local
//!   mode (upstream silently ignores them there).
//! * **Gateway and our address**: `-g` or the host's default gateway; our
//!   own IPv4 address on the tap is the gateway; our IPv6 link-local address
//!   is the gateway if that is link-local (the usual case), else the
//!   host's link-local address.
//! * **Host loopback mapping**: `--map-host-loopback`, else the gateway
//!   unless `--no-map-gw` (or `--map-host-loopback none`).
//! * **DNS**: `-D` if given, else the host's `resolv.conf` (at most 3 per
//!   family). A loopback resolver (systemd-resolved's 127.0.0.53, or one
//!   equal to the host-loopback mapping) cannot be reached from the guest
//!   as is: the map-host-loopback address is announced instead and becomes
//!   the DNS match address (or the `--dns-forward` address is announced),
//!   so that DNS to it reaches the host resolver; without either the
//!   resolver is dropped. `--dns-host` defaults to the first resolver.
//! * **Services implied off**: DHCP without an IPv4 gateway or with IPv4
//!   disabled; NDP and DHCPv6 with IPv6 disabled; DHCPv6 without an IPv6
//!   address; NDP with `--no-icmp`; RA with `--config-net`.
//! * **pasta**: nameservers and search domains are not announced unless
//!   `--dhcp-dns`/`--dhcp-search` (applied by the parser); the tap takes
//!   the template interface's name (IPv4 first) or `tap0`; spawning a
//!   command forces the foreground (and quiet logging unless debugging was
//!   asked for); addresses/routes are copied from the template unless
//!   `-a`/`-g`, `--no-copy-*` or local mode.
//! * **Forwarding defaults**: `auto` in pasta, `none` in passt, for every
//!   direction not given (`none` when the protocol is disabled).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::cli::Options;
use super::host::{Host4, Host6, HostInfo, ResolvConf};
use super::{
    Config, Follow, FwdSpecs, Ip4Conf, Ip6Conf, LogLevel, Mode, NsTarget, PasstConf, PastaConf,
    DEFAULT_LOG_SIZE, DEFAULT_MAC, DEFAULT_MTU,
};

/// Errors merging the command line with the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConfError {
    #[error("Invalid --runas option: {0}")]
    Runas(String),
    #[error("External interface not usable: {0}")]
    InterfaceNotUsable(String),
}

/// Result alias of this module.
pub(crate) type Result<T> = std::result::Result<T, ConfError>;

/// Guest address in IPv4 local mode.
pub(crate) const IP4_LL_GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 2, 1);
/// Gateway (and our address) in IPv4 local mode.
pub(crate) const IP4_LL_GUEST_GW: Ipv4Addr = Ipv4Addr::new(169, 254, 2, 2);
/// Prefix length in IPv4 local mode.
pub(crate) const IP4_LL_PREFIX_LEN: u8 = 16;
/// Router and our link-local address in IPv6 local mode.
pub(crate) const IP6_LL_GUEST_GW: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// Default tap name in pasta without a template interface.
pub(crate) const PASTA_DEFAULT_IFNAME: &str = "tap0";

const MAX_DNS: usize = 3;
const MAX_SEARCH: usize = 6;

fn v6_link_local(a: &Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}

/// Build the configuration from the command line and the host.
pub(crate) fn resolve(opts: Options, host: &HostInfo) -> Result<Config> {
    let o = &opts;
    let pasta = o.mode == Mode::Pasta;
    let v4_on = !o.v6_only && !o.splice_only;
    let v6_on = !o.v4_only && !o.splice_only;
    check_outbound_interfaces(o, host, v4_on, v6_on)?;

    let mut ip4 = v4_on.then(|| resolve_ip4(o, host.v4.as_ref()));
    let mut ip6 = v6_on.then(|| resolve_ip6(o, host.v6.as_ref()));
    if !o.no_dns {
        if let Some(c) = ip4.as_mut() {
            nameservers4(c, o, host);
        }
        if let Some(c) = ip6.as_mut() {
            nameservers6(c, o, host);
        }
    }
    let search = search_domains(o, host);

    let no_dhcp = o.no_dhcp || !matches!(&ip4, Some(c) if !c.gw.is_unspecified());
    let no_ndp = o.no_ndp || o.no_icmp || ip6.is_none();
    let no_dhcpv6 = o.no_dhcpv6 || !matches!(&ip6, Some(c) if c.addr.is_some());
    let no_ra = o.no_ra || o.config_net;

    let (foreground, log_level) = foreground_and_log_level(o);
    let runas = match &o.runas {
        None => None,
        Some(spec) => {
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
            Some(resolve_runas(spec, &passwd, &group)?)
        }
    };
    let fwd = forwarding_with_defaults(o);
    let pasta_conf = pasta.then(|| pasta_conf(o, ip4.as_ref(), ip6.as_ref()));
    let passt_conf = (!pasta).then(|| PasstConf {
        socket: o.socket.clone(),
        one_off: o.one_off,
        vhost_user: o.vhost_user,
    });

    Ok(Config {
        mode: o.mode,
        log_level,
        log_file: o.log_file.clone(),
        log_size: o.log_size.unwrap_or(DEFAULT_LOG_SIZE),
        foreground,
        pid_file: o.pid_file.clone(),
        pcap: o.pcap.clone(),
        conf_path: o.conf_path.clone(),
        runas,
        fd: o.fd,
        mtu: o.mtu.unwrap_or(DEFAULT_MTU),
        our_mac: o.mac.unwrap_or(DEFAULT_MAC),
        ip4,
        ip6,
        search,
        hostname: o.hostname.clone(),
        fqdn: o.fqdn.clone(),
        no_tcp: o.no_tcp,
        no_udp: o.no_udp,
        no_icmp: o.no_icmp,
        no_dhcp,
        no_ndp,
        no_dhcpv6,
        no_ra,
        no_dhcp_dns: o.no_dhcp_dns,
        no_dhcp_search: o.no_dhcp_search,
        freebind: o.freebind,
        fwd,
        pasta: pasta_conf,
        passt: passt_conf,
        test: Default::default(),
    })
}

/// An outbound interface given with `--outbound-if4/6` must have been
/// found usable for its (enabled) family.
fn check_outbound_interfaces(o: &Options, host: &HostInfo, v4_on: bool, v6_on: bool) -> Result<()> {
    if v4_on && host.v4.is_none() {
        if let Some(name) = &o.ifname_out4 {
            return Err(ConfError::InterfaceNotUsable(name.clone()));
        }
    }
    if v6_on && host.v6.is_none() {
        if let Some(name) = &o.ifname_out6 {
            return Err(ConfError::InterfaceNotUsable(name.clone()));
        }
    }
    Ok(())
}

/// Whether any `-D` was given: it wins over resolv.conf, for both families
/// at once.
fn dns_given(o: &Options) -> bool {
    !o.dns4.is_empty() || !o.dns6.is_empty()
}

/// IPv4 nameservers to announce, DNS match address and host resolver.
fn nameservers4(c: &mut Ip4Conf, o: &Options, host: &HostInfo) {
    c.dns_match = o.dns_forward4;
    c.dns_host = o.dns_host4;
    c.follow.dns_forward = o.dns_forward4;
    c.follow.dns_host = o.dns_host4;
    if dns_given(o) {
        c.dns = o.dns4.clone();
    } else {
        c.follow.dns = true;
        let ns = nameservers_v4(&host.resolv);
        let d = resolv_dns(
            c.dns_match,
            c.dns_host,
            c.map_host_loopback,
            Ipv4Addr::is_loopback,
            ns,
        );
        (c.dns, c.dns_match, c.dns_host) = (d.dns, d.dns_match, d.dns_host);
    }
}

/// IPv6 nameservers to announce, DNS match address and host resolver
/// (link-local resolvers from resolv.conf are left out).
fn nameservers6(c: &mut Ip6Conf, o: &Options, host: &HostInfo) {
    c.dns_match = o.dns_forward6;
    c.dns_host = o.dns_host6;
    c.follow.dns_forward = o.dns_forward6;
    c.follow.dns_host = o.dns_host6;
    if dns_given(o) {
        c.dns = o.dns6.clone();
    } else {
        c.follow.dns = true;
        let ns = nameservers_v6(&host.resolv);
        let d = resolv_dns(
            c.dns_match,
            c.dns_host,
            c.map_host_loopback,
            Ipv6Addr::is_loopback,
            ns,
        );
        (c.dns, c.dns_match, c.dns_host) = (d.dns, d.dns_match, d.dns_host);
    }
}

/// `-S` if given, else the host's search list (at most [`MAX_SEARCH`]).
fn search_domains(o: &Options, host: &HostInfo) -> Vec<String> {
    if o.no_search {
        Vec::new()
    } else if !o.search.is_empty() {
        o.search.clone()
    } else {
        host.resolv
            .search
            .iter()
            .take(MAX_SEARCH)
            .cloned()
            .collect()
    }
}

/// pasta spawning a command stays in the foreground, and quiet unless
/// another log level was asked for.
fn foreground_and_log_level(o: &Options) -> (bool, LogLevel) {
    let spawn = o.mode == Mode::Pasta && matches!(o.target, Some(NsTarget::Spawn { .. }));
    let log_level = if spawn && o.log_level == LogLevel::Info {
        LogLevel::Quiet
    } else {
        o.log_level
    };
    (o.foreground || spawn, log_level)
}

/// Port specs with the mode's default (`auto` in pasta, `none` in passt)
/// for every direction not given, and `none` where the protocol is off.
fn forwarding_with_defaults(o: &Options) -> FwdSpecs {
    let pasta = o.mode == Mode::Pasta;
    let mut fwd = o.fwd.clone();
    let default = if pasta { "auto" } else { "none" };
    for (list, off) in [
        (&mut fwd.tcp_in, o.no_tcp),
        (&mut fwd.udp_in, o.no_udp),
        (&mut fwd.tcp_out, o.no_tcp || !pasta),
        (&mut fwd.udp_out, o.no_udp || !pasta),
    ] {
        if list.is_empty() {
            list.push(if off { "none" } else { default }.to_string());
        }
    }
    fwd
}

/// pasta's part: the namespace target and options, and the tap name
/// (`--ns-ifname`, else the template interface's, IPv4 first, else
/// [`PASTA_DEFAULT_IFNAME`]).
fn pasta_conf(o: &Options, ip4: Option<&Ip4Conf>, ip6: Option<&Ip6Conf>) -> PastaConf {
    let ns_ifname = o
        .ns_ifname
        .clone()
        .or_else(|| {
            let v4 = ip4.map(|c| c.ifname.clone());
            let v6 = ip6.map(|c| c.ifname.clone());
            v4.into_iter().chain(v6).find(|n| !n.is_empty())
        })
        .unwrap_or_else(|| PASTA_DEFAULT_IFNAME.to_string());
    PastaConf {
        target: o.target.clone().unwrap_or(NsTarget::Spawn {
            command: Vec::new(),
        }),
        userns: o.userns.clone(),
        netns_only: o.netns_only,
        no_netns_quit: o.no_netns_quit,
        config_net: o.config_net,
        ns_ifname,
        ns_mac: o.ns_mac,
        no_copy_routes: o.no_copy_routes,
        no_copy_addrs: o.no_copy_addrs,
        no_splice: o.no_splice,
        splice_only: o.splice_only,
        host_lo_to_ns_lo: o.host_lo_to_ns_lo,
    }
}

fn resolve_ip4(o: &Options, host: Option<&Host4>) -> Ip4Conf {
    let pasta = o.mode == Mode::Pasta;
    let template = host.filter(|h| o.addr4.is_some() || !h.addrs.is_empty());
    let mut c = match template {
        Some(h) => {
            let (haddr, hlen) = h
                .addrs
                .first()
                .copied()
                .unwrap_or((Ipv4Addr::UNSPECIFIED, 0));
            let gw = o.gw4.or(h.gw).unwrap_or(Ipv4Addr::UNSPECIFIED);
            Ip4Conf {
                addr: o.addr4.unwrap_or(haddr),
                prefix_len: o.prefix4.unwrap_or(hlen),
                gw,
                our_tap_addr: gw,
                map_host_loopback: None,
                map_guest_addr: None,
                dns: Vec::new(),
                dns_match: None,
                dns_host: None,
                addr_out: None,
                ifname_out: None,
                ifname: h.ifname.clone(),
                host_addrs: h.addrs.clone(),
                copy_routes: pasta && o.gw4.is_none() && !o.no_copy_routes,
                copy_addrs: pasta && o.addr4.is_none() && !o.no_copy_addrs,
                local_mode: false,
                follow: Follow {
                    addr: o.addr4.is_none(),
                    prefix_len: o.addr4.is_none() && o.prefix4.is_none(),
                    gw: o.gw4.is_none(),
                    ..Follow::default()
                },
            }
        }
        None => {
            let gw = o.gw4.unwrap_or(IP4_LL_GUEST_GW);
            Ip4Conf {
                addr: o.addr4.unwrap_or(IP4_LL_GUEST_ADDR),
                prefix_len: o.prefix4.unwrap_or(IP4_LL_PREFIX_LEN),
                gw,
                our_tap_addr: gw,
                map_host_loopback: None,
                map_guest_addr: None,
                dns: Vec::new(),
                dns_match: None,
                dns_host: None,
                addr_out: None,
                ifname_out: None,
                ifname: String::new(),
                host_addrs: Vec::new(),
                copy_routes: false,
                copy_addrs: false,
                local_mode: true,
                follow: Follow::default(),
            }
        }
    };
    c.map_host_loopback = o
        .map_host_loopback4
        .or_else(|| (!o.no_map_gw && !c.gw.is_unspecified()).then_some(c.gw));
    c.map_guest_addr = o.map_guest_addr4;
    c.addr_out = o.addr_out4;
    c.ifname_out = o.ifname_out4.clone();
    c.follow.ifname = o.ifname.clone().or_else(|| o.ifname_out4.clone());
    c
}

fn resolve_ip6(o: &Options, host: Option<&Host6>) -> Ip6Conf {
    let pasta = o.mode == Mode::Pasta;
    let template = host.and_then(|h| {
        let gw = o.gw6.or(h.gw)?;
        let (addr, plen) = match o.addr6 {
            Some(a) => (a, h.addrs.first().map_or(64, |&(_, l)| l)),
            None => *h.addrs.first()?,
        };
        let ll = if v6_link_local(&gw) { gw } else { h.ll? };
        Some((h, gw, addr, plen, ll))
    });
    let mut c = match template {
        Some((h, gw, addr, prefix_len, our_tap_ll)) => Ip6Conf {
            addr: Some(addr),
            prefix_len,
            gw,
            our_tap_ll,
            map_host_loopback: None,
            map_guest_addr: None,
            dns: Vec::new(),
            dns_match: None,
            dns_host: None,
            addr_out: None,
            ifname_out: None,
            ifname: h.ifname.clone(),
            ifindex: h.ifindex,
            host_addrs: h.addrs.clone(),
            copy_routes: pasta && o.gw6.is_none() && !o.no_copy_routes,
            copy_addrs: pasta && o.addr6.is_none() && !o.no_copy_addrs,
            local_mode: false,
            follow: Follow {
                addr: o.addr6.is_none(),
                prefix_len: o.addr6.is_none(),
                gw: o.gw6.is_none(),
                ..Follow::default()
            },
        },
        None => {
            let gw = o.gw6.unwrap_or(IP6_LL_GUEST_GW);
            Ip6Conf {
                addr: o.addr6,
                prefix_len: 64,
                gw,
                our_tap_ll: if v6_link_local(&gw) {
                    gw
                } else {
                    IP6_LL_GUEST_GW
                },
                map_host_loopback: None,
                map_guest_addr: None,
                dns: Vec::new(),
                dns_match: None,
                dns_host: None,
                addr_out: None,
                ifname_out: None,
                ifname: String::new(),
                ifindex: 0,
                host_addrs: Vec::new(),
                copy_routes: false,
                copy_addrs: false,
                local_mode: true,
                follow: Follow::default(),
            }
        }
    };
    c.map_host_loopback = o
        .map_host_loopback6
        .or_else(|| (!o.no_map_gw).then_some(c.gw));
    c.map_guest_addr = o.map_guest_addr6;
    c.addr_out = o.addr_out6;
    c.ifname_out = o.ifname_out6.clone();
    c.follow.ifname = o.ifname.clone().or_else(|| o.ifname_out6.clone());
    c
}

/// What a family's nameservers are, from resolv.conf: the list announced
/// to the guest, the `--dns-forward` match address, the resolver forwarded
/// DNS goes to. Start-up and [`crate::follow`] both compute it with
/// [`resolv_dns`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Dns<A> {
    pub(crate) dns: Vec<A>,
    pub(crate) dns_match: Option<A>,
    pub(crate) dns_host: Option<A>,
}

/// Nameservers from resolv.conf (`nameservers`, of one family, in order),
/// with `--dns-forward` (`forward`), `--dns-host` (`host`) as given and
/// the map-host-loopback address: the first resolver is the DNS host
/// unless one was given; a local resolver (loopback, or the
/// map-host-loopback address itself) is announced as the match address
/// (the `--dns-forward` one, else the map-host-loopback one, which then
/// becomes the match address) or dropped without either.
pub(crate) fn resolv_dns<A: Copy + PartialEq>(
    forward: Option<A>,
    host: Option<A>,
    map_host_loopback: Option<A>,
    is_loopback: impl Fn(&A) -> bool,
    nameservers: impl Iterator<Item = A>,
) -> Dns<A> {
    let mut d = Dns {
        dns: Vec::new(),
        dns_match: forward,
        dns_host: host,
    };
    for ns in nameservers {
        if d.dns_host.is_none() {
            d.dns_host = Some(ns);
        }
        let mut announce = ns;
        if is_loopback(&ns) || Some(ns) == map_host_loopback {
            match (d.dns_match, map_host_loopback) {
                (Some(m), _) => announce = m,
                (None, Some(m)) => {
                    announce = m;
                    d.dns_match = Some(m);
                }
                (None, None) => continue,
            }
        }
        if d.dns.len() < MAX_DNS {
            d.dns.push(announce);
        }
    }
    d
}

/// The IPv4 nameservers of resolv.conf.
pub(crate) fn nameservers_v4(resolv: &ResolvConf) -> impl Iterator<Item = Ipv4Addr> + '_ {
    resolv.nameservers.iter().filter_map(|a| match a {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    })
}

/// The IPv6 nameservers of resolv.conf (link-local ones are left out:
/// the guest could not reach them).
pub(crate) fn nameservers_v6(resolv: &ResolvConf) -> impl Iterator<Item = Ipv6Addr> + '_ {
    resolv.nameservers.iter().filter_map(|a| match a {
        IpAddr::V6(a) if !v6_link_local(a) => Some(*a),
        _ => None,
    })
}

/// Find an entry of a colon-separated database (`/etc/passwd`,
/// `/etc/group`) by name (field 0) or by numeric id (field 2).
fn db_lookup<'a>(db: &'a str, name: Option<&str>, id: Option<u32>) -> Option<Vec<&'a str>> {
    db.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| {
            f.len() >= 4
                && (name.is_some_and(|n| f[0] == n)
                    || id.is_some_and(|i| f[2].parse::<u32>().ok() == Some(i)))
        })
}

/// `--runas UID|UID:GID|LOGIN|LOGIN:GROUP` to numeric ids, with the
/// contents of `/etc/passwd` and `/etc/group` for names. A user given
/// without a group takes its primary group (or GID = UID if unknown).
pub(crate) fn resolve_runas(spec: &str, passwd: &str, group: &str) -> Result<(u32, u32)> {
    let bad = || ConfError::Runas(spec.to_string());
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => {
            let gid = db_lookup(passwd, None, Some(uid))
                .and_then(|f| f[3].parse().ok())
                .unwrap_or(uid);
            (uid, gid)
        }
        Err(_) => {
            let f = db_lookup(passwd, Some(user), None).ok_or_else(bad)?;
            (
                f[2].parse().map_err(|_| bad())?,
                f[3].parse().map_err(|_| bad())?,
            )
        }
    };
    let gid = match grp {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => db_lookup(group, Some(g), None)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(bad)?,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::cli::{parse, Parsed};
    use crate::conf::host::ResolvConf;

    fn opts(mode: Mode, line: &str) -> Options {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        match parse(mode, &args) {
            Ok(Parsed::Run(o)) => o,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    fn conf(mode: Mode, line: &str, host: &HostInfo) -> Config {
        match resolve(opts(mode, line), host) {
            Ok(c) => c,
            Err(e) => panic!("{line:?}: {e}"),
        }
    }

    fn a4(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    fn a6(s: &str) -> Ipv6Addr {
        s.parse().expect("test address")
    }

    fn host4() -> Host4 {
        Host4 {
            ifname: "eth0".into(),
            ifindex: 2,
            addrs: vec![(a4("192.168.1.10"), 24), (a4("10.9.9.9"), 8)],
            gw: Some(a4("192.168.1.1")),
            mtu: 1500,
        }
    }

    fn host6() -> Host6 {
        Host6 {
            ifname: "wlan0".into(),
            ifindex: 3,
            addrs: vec![(a6("2001:db8::10"), 64)],
            ll: Some(a6("fe80::10")),
            gw: Some(a6("fe80::1234")),
            mtu: 1500,
        }
    }

    fn resolv(ns: &[&str], search: &[&str]) -> ResolvConf {
        ResolvConf {
            nameservers: ns.iter().map(|s| s.parse().expect("ns")).collect(),
            search: search.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn dual() -> HostInfo {
        HostInfo {
            v4: Some(host4()),
            v6: Some(host6()),
            resolv: resolv(&["192.168.1.1", "2001:db8::53"], &["example.com"]),
            hostname: "h".into(),
        }
    }

    #[test]
    fn passt_defaults_dual_stack() {
        let c = conf(Mode::Passt, "", &dual());
        let ip4 = c.ip4.as_ref().expect("ip4");
        assert_eq!((ip4.addr, ip4.prefix_len), (a4("192.168.1.10"), 24));
        assert_eq!(ip4.gw, a4("192.168.1.1"));
        assert_eq!(ip4.our_tap_addr, ip4.gw);
        assert_eq!(ip4.map_host_loopback, Some(ip4.gw));
        assert_eq!(ip4.ifname, "eth0");
        assert!(!ip4.local_mode && !ip4.copy_addrs && !ip4.copy_routes);
        // The resolver is the gateway, which is mapped to the host: it
        // becomes the DNS match address.
        assert_eq!(ip4.dns, [a4("192.168.1.1")]);
        assert_eq!(ip4.dns_match, Some(a4("192.168.1.1")));
        assert_eq!(ip4.dns_host, Some(a4("192.168.1.1")));
        let ip6 = c.ip6.as_ref().expect("ip6");
        assert_eq!(ip6.addr, Some(a6("2001:db8::10")));
        assert_eq!(ip6.gw, a6("fe80::1234"));
        assert_eq!(ip6.our_tap_ll, a6("fe80::1234"));
        assert_eq!(ip6.dns, [a6("2001:db8::53")]);
        assert_eq!(c.search, ["example.com"]);
        assert!(!c.no_dhcp && !c.no_ndp && !c.no_dhcpv6 && !c.no_ra);
        assert!(!c.no_dhcp_dns && !c.no_dhcp_search);
        assert_eq!(c.mtu, DEFAULT_MTU);
        assert_eq!(c.our_mac, DEFAULT_MAC);
        assert_eq!(c.fwd.tcp_in, ["none"]);
        assert_eq!(c.fwd.udp_out, ["none"]);
        assert!(c.pasta.is_none());
        assert_eq!(c.passt, Some(PasstConf::default()));
        assert!(!c.foreground);
    }

    #[test]
    fn pasta_defaults() {
        let c = conf(Mode::Pasta, "--config-net", &dual());
        assert!(c.no_dhcp_dns && c.no_dhcp_search && c.no_ra);
        assert!(c.foreground, "spawn mode forces foreground");
        assert_eq!(c.log_level, LogLevel::Quiet);
        let p = c.pasta.as_ref().expect("pasta");
        assert_eq!(p.ns_ifname, "eth0");
        assert_eq!(p.target, NsTarget::Spawn { command: vec![] });
        let ip4 = c.ip4.as_ref().expect("ip4");
        assert!(ip4.copy_addrs && ip4.copy_routes);
        assert_eq!(ip4.host_addrs.len(), 2);
        for l in [&c.fwd.tcp_in, &c.fwd.udp_in, &c.fwd.tcp_out, &c.fwd.udp_out] {
            assert_eq!(l, &["auto"]);
        }
        // Attached to a PID, debug: neither forced.
        let c = conf(Mode::Pasta, "-d --no-tcp 42", &dual());
        assert!(!c.foreground);
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.fwd.tcp_in, ["none"]);
        assert_eq!(c.fwd.udp_in, ["auto"]);
        // DNS announced on request.
        let c = conf(Mode::Pasta, "--dhcp-dns 42", &dual());
        assert!(!c.no_dhcp_dns);
    }

    #[test]
    fn ipv4_only_host() {
        let h = HostInfo {
            v4: Some(host4()),
            v6: None,
            resolv: resolv(&["127.0.0.53"], &[]),
            hostname: String::new(),
        };
        let c = conf(Mode::Pasta, "--config-net 42", &h);
        let ip6 = c.ip6.as_ref().expect("IPv6 in local mode");
        assert!(ip6.local_mode && ip6.addr.is_none());
        assert_eq!((ip6.gw, ip6.our_tap_ll), (IP6_LL_GUEST_GW, IP6_LL_GUEST_GW));
        assert!(c.no_dhcpv6 && !c.no_ndp);
        // Loopback resolver: announced as the gateway, forwarded.
        let ip4 = c.ip4.as_ref().expect("ip4");
        assert_eq!(ip4.dns, [a4("192.168.1.1")]);
        assert_eq!(ip4.dns_match, Some(a4("192.168.1.1")));
        assert_eq!(ip4.dns_host, Some(a4("127.0.0.53")));
        assert_eq!(c.pasta.as_ref().expect("pasta").ns_ifname, "eth0");
        // -4 disables IPv6 entirely.
        let c = conf(Mode::Passt, "-4", &h);
        assert!(c.ip6.is_none() && c.no_ndp && c.no_dhcpv6);
        // Loopback resolver with --no-map-gw and no --dns-forward: dropped.
        let c = conf(Mode::Passt, "--no-map-gw", &h);
        let ip4 = c.ip4.as_ref().expect("ip4");
        assert!(ip4.dns.is_empty() && ip4.map_host_loopback.is_none());
        // ...with --dns-forward: that address is announced.
        let c = conf(Mode::Passt, "--no-map-gw --dns-forward 169.254.1.1", &h);
        let ip4 = c.ip4.as_ref().expect("ip4");
        assert_eq!(ip4.dns, [a4("169.254.1.1")]);
        assert_eq!(ip4.dns_match, Some(a4("169.254.1.1")));
    }

    #[test]
    fn ipv6_only_host() {
        let h = HostInfo {
            v4: None,
            v6: Some(host6()),
            resolv: resolv(&["::1", "fe80::53", "2001:db8::53"], &["a", "b"]),
            hostname: String::new(),
        };
        let c = conf(Mode::Passt, "", &h);
        let ip4 = c.ip4.as_ref().expect("IPv4 in local mode");
        assert!(ip4.local_mode);
        assert_eq!(ip4.addr, IP4_LL_GUEST_ADDR);
        assert_eq!(ip4.prefix_len, IP4_LL_PREFIX_LEN);
        assert_eq!(ip4.gw, IP4_LL_GUEST_GW);
        assert!(!c.no_dhcp, "local mode has a gateway");
        let ip6 = c.ip6.as_ref().expect("ip6");
        assert_eq!(ip6.dns, [a6("fe80::1234"), a6("2001:db8::53")]);
        assert_eq!(ip6.dns_host, Some(a6("::1")));
        assert_eq!(c.search, ["a", "b"]);
        let c = conf(Mode::Pasta, "42", &h);
        assert_eq!(c.pasta.as_ref().expect("pasta").ns_ifname, "wlan0");
        // A host without a link-local address and with a global router
        // cannot serve as IPv6 template.
        let mut h2 = h.clone();
        if let Some(v6) = h2.v6.as_mut() {
            v6.ll = None;
            v6.gw = Some(a6("2001:db8::1"));
        }
        assert!(conf(Mode::Passt, "", &h2).ip6.expect("ip6").local_mode);
    }

    #[test]
    fn no_default_route() {
        let h = HostInfo::default();
        let c = conf(Mode::Pasta, "--config-net 42", &h);
        let ip4 = c.ip4.as_ref().expect("ip4");
        assert!(ip4.local_mode && !ip4.copy_addrs && !ip4.copy_routes);
        assert_eq!(ip4.map_host_loopback, Some(IP4_LL_GUEST_GW));
        assert!(c.ip6.as_ref().expect("ip6").local_mode);
        assert_eq!(c.pasta.as_ref().expect("pasta").ns_ifname, "tap0");
        assert!(c.no_dhcpv6);
        assert!(matches!(
            resolve(opts(Mode::Passt, "--outbound-if4 eth9"), &h),
            Err(ConfError::InterfaceNotUsable(n)) if n == "eth9"
        ));
    }

    #[test]
    fn what_follows_the_host() {
        let c = conf(Mode::Pasta, "", &dual());
        let (f4, f6) = (
            &c.ip4.as_ref().unwrap().follow,
            &c.ip6.as_ref().unwrap().follow,
        );
        assert!(f4.addr && f4.prefix_len && f4.gw && f4.dns);
        assert!(f6.addr && f6.prefix_len && f6.gw && f6.dns);
        assert_eq!(
            (f4.dns_host, f4.dns_forward, &f4.ifname),
            (None, None, &None)
        );
        let c = conf(
            Mode::Passt,
            "-n 16 --dns-forward 10.0.2.3 --dns-host 10.0.2.53 -i eth0",
            &dual(),
        );
        let f4 = &c.ip4.as_ref().unwrap().follow;
        assert!(f4.addr && !f4.prefix_len && f4.gw && f4.dns);
        assert_eq!(f4.dns_forward, Some(a4("10.0.2.3")));
        assert_eq!(f4.dns_host, Some(a4("10.0.2.53")));
        assert_eq!(f4.ifname.as_deref(), Some("eth0"));
        // Local mode: nothing to follow.
        let c = conf(Mode::Pasta, "", &HostInfo::default());
        let f4 = &c.ip4.as_ref().unwrap().follow;
        assert!(!f4.addr && !f4.gw);
    }

    #[test]
    fn overrides() {
        let c = conf(
            Mode::Pasta,
            "--config-net -a 10.0.2.100 -n 24 -g 10.0.2.2 -a 2001:db8::99 -g fe80::2 \
             -m 1500 -M 02:00:00:00:00:01 -D 9.9.9.9 -S corp.example -I veth 42",
            &dual(),
        );
        let ip4 = c.ip4.as_ref().expect("ip4");
        assert_eq!(
            (ip4.addr, ip4.prefix_len, ip4.gw),
            (a4("10.0.2.100"), 24, a4("10.0.2.2"))
        );
        assert!(!ip4.copy_addrs && !ip4.copy_routes);
        assert_eq!(ip4.dns, [a4("9.9.9.9")]);
        assert_eq!(ip4.dns_host, None);
        let ip6 = c.ip6.as_ref().expect("ip6");
        assert_eq!(ip6.addr, Some(a6("2001:db8::99")));
        assert_eq!((ip6.gw, ip6.our_tap_ll), (a6("fe80::2"), a6("fe80::2")));
        assert!(
            ip6.dns.is_empty(),
            "-D replaces resolv.conf for both families"
        );
        assert_eq!(c.search, ["corp.example"]);
        assert_eq!(c.mtu, 1500);
        assert_eq!(c.our_mac, [2, 0, 0, 0, 0, 1]);
        assert_eq!(c.pasta.as_ref().expect("pasta").ns_ifname, "veth");
        // Nothing given on the command line follows the host.
        assert!(!ip4.follow.addr && !ip4.follow.prefix_len && !ip4.follow.gw && !ip4.follow.dns);
        assert!(!ip6.follow.addr && !ip6.follow.gw && !ip6.follow.dns);

        // RootlessKit on a host without a default route: options still apply.
        let c = conf(
            Mode::Pasta,
            "--config-net --address=10.0.2.100 --netmask=24 --gateway=10.0.2.2 \
             --dns-forward=10.0.2.3 --no-map-gw --ipv4-only 1234",
            &HostInfo::default(),
        );
        let ip4 = c.ip4.as_ref().expect("ip4");
        assert_eq!(
            (ip4.addr, ip4.prefix_len, ip4.gw),
            (a4("10.0.2.100"), 24, a4("10.0.2.2"))
        );
        assert_eq!(ip4.map_host_loopback, None);
        assert_eq!(ip4.dns_match, Some(a4("10.0.2.3")));
        assert!(c.ip6.is_none());

        // No IPv4 gateway on the template: no DHCP, nothing mapped.
        let mut h = dual();
        if let Some(v4) = h.v4.as_mut() {
            v4.gw = None;
        }
        let c = conf(Mode::Passt, "", &h);
        assert!(c.no_dhcp);
        assert_eq!(c.ip4.as_ref().expect("ip4").map_host_loopback, None);

        // -D none / -S none / --map-host-loopback.
        let c = conf(
            Mode::Passt,
            "-D none -S none --map-host-loopback 10.0.0.99 --no-icmp",
            &dual(),
        );
        let ip4 = c.ip4.as_ref().expect("ip4");
        assert!(ip4.dns.is_empty() && ip4.dns_host.is_none() && c.search.is_empty());
        assert_eq!(ip4.map_host_loopback, Some(a4("10.0.0.99")));
        assert!(c.no_ndp && c.no_icmp);
    }

    #[test]
    fn runas() {
        let passwd = "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n\
                      alice:x:1000:100::/home/alice:/bin/sh\n";
        let group = "root:x:0:\nusers:x:100:\nnogroup:x:65534:\n";
        assert_eq!(resolve_runas("nobody", passwd, group), Ok((65534, 65534)));
        assert_eq!(resolve_runas("1000", passwd, group), Ok((1000, 100)));
        assert_eq!(resolve_runas("1234", passwd, group), Ok((1234, 1234)));
        assert_eq!(resolve_runas("5:6", passwd, group), Ok((5, 6)));
        assert_eq!(
            resolve_runas("alice:nogroup", passwd, group),
            Ok((1000, 65534))
        );
        assert!(resolve_runas("bob", passwd, group).is_err());
        assert!(resolve_runas("alice:wheel", passwd, group).is_err());
    }
}
