//! Host discovery: what the guest will be made to look like.
//!
//! Reads, over rtnetlink in the namespace we start in, the template
//! interface of each address family (the one holding the first default
//! route, unless named with `-i` / `--outbound-if4/6`), its addresses,
//! default gateway and MTU, and reads nameservers and search domains from
//! `/etc/resolv.conf`. Nothing here decides defaults: that is
//! [`super::resolve`]'s job, so that it stays testable without a host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 side of the template interface.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Host4 {
    pub ifname: String,
    pub ifindex: u32,
    /// Non-deprecated addresses with prefix lengths, longest prefix first.
    pub addrs: Vec<(Ipv4Addr, u8)>,
    /// Default gateway, if there is a default route.
    pub gw: Option<Ipv4Addr>,
    pub mtu: u32,
}

/// IPv6 side of the template interface.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Host6 {
    pub ifname: String,
    pub(crate) ifindex: u32,
    /// Global (non-link-local, non-deprecated) addresses, longest prefix
    /// first.
    pub addrs: Vec<(Ipv6Addr, u8)>,
    /// The interface's link-local address.
    pub ll: Option<Ipv6Addr>,
    /// Default router, usually link-local.
    pub gw: Option<Ipv6Addr>,
    pub mtu: u32,
}

/// What `/etc/resolv.conf` says.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct ResolvConf {
    pub(crate) nameservers: Vec<IpAddr>,
    pub(crate) search: Vec<String>,
}

/// Everything discovered about the host.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct HostInfo {
    /// None: no IPv4 template interface (local mode for IPv4).
    pub v4: Option<Host4>,
    /// None: no IPv6 template interface (local mode for IPv6).
    pub v6: Option<Host6>,
    pub(crate) resolv: ResolvConf,
    /// The host's hostname (pasta spawn mode names the namespace
    /// `pasta-<hostname>`).
    pub hostname: String,
}

use std::path::Path;

use log::{debug, info};

use crate::netlink::{Addr, Family, Link, Netlink, NetlinkError, Route, LO_IFINDEX};
use crate::wire::ipv6::is_link_local;

/// Where nameservers and search domains come from.
pub(crate) const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Errors of host discovery.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read the host's network configuration: {0}")]
    Netlink(#[from] NetlinkError),
    #[error("invalid interface name {0}: no such interface")]
    NoSuchInterface(String),
}

/// Reads the host in the calling thread's network namespace: the template
/// interface of each family (`ifname4` / `ifname6` if given, else the one
/// of the first default route, else the first one with any route), its
/// addresses, gateway and MTU, `/etc/resolv.conf` and the hostname.
pub fn discover(ifname4: Option<&str>, ifname6: Option<&str>) -> Result<HostInfo, HostError> {
    let mut nl = Netlink::open()?;
    let (v4, v6) = templates(&mut nl, ifname4, ifname6)?;
    log_templates(v4.as_ref(), v6.as_ref());
    Ok(HostInfo {
        v4,
        v6,
        resolv: read_resolv_conf(RESOLV_CONF),
        hostname: hostname(),
    })
}

/// The template interface of each family, through `nl`: start-up, and
/// [`crate::follow`] again whenever the host's addresses or routes change.
#[allow(clippy::type_complexity)]
pub(crate) fn templates(
    nl: &mut Netlink,
    ifname4: Option<&str>,
    ifname6: Option<&str>,
) -> Result<(Option<Host4>, Option<Host6>), HostError> {
    let links = nl.links()?;
    let routes4 = nl.routes(Family::V4)?;
    let routes6 = nl.routes(Family::V6)?;

    let v4 = match template(&links, &routes4, Family::V4, ifname4)? {
        Some(link) => {
            let mut addrs: Vec<(Ipv4Addr, u8)> = nl
                .addrs(Family::V4, link.index)?
                .iter()
                .filter(|a| !a.deprecated())
                .filter_map(|a| match a.addr {
                    IpAddr::V4(v4) => Some((v4, a.prefix)),
                    IpAddr::V6(_) => None,
                })
                .collect();
            addrs.sort_by_key(|a| std::cmp::Reverse(a.1));
            let gw = default_gateway(&routes4, link.index).and_then(|gw| match gw {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            });
            Some(Host4 {
                ifname: link.name.clone(),
                ifindex: link.index,
                addrs,
                gw,
                mtu: link.mtu,
            })
        }
        None => None,
    };

    let v6 = match template(&links, &routes6, Family::V6, ifname6)? {
        Some(link) => {
            let all = nl.addrs(Family::V6, link.index)?;
            let mut addrs: Vec<(Ipv6Addr, u8)> = all
                .iter()
                .filter(|a| !a.deprecated() && !a.link_scope())
                .filter_map(|a| match a.addr {
                    IpAddr::V6(v6) if !is_link_local(v6) && !v6.is_loopback() => {
                        Some((v6, a.prefix))
                    }
                    _ => None,
                })
                .collect();
            addrs.sort_by_key(|a| std::cmp::Reverse(a.1));
            let ll = all
                .iter()
                .filter(|a| a.link_scope())
                .find_map(|a| match a.addr {
                    IpAddr::V6(v6) => Some(v6),
                    IpAddr::V4(_) => None,
                });
            let gw = default_gateway(&routes6, link.index).and_then(|gw| match gw {
                IpAddr::V6(v6) => Some(v6),
                IpAddr::V4(_) => None,
            });
            Some(Host6 {
                ifname: link.name.clone(),
                ifindex: link.index,
                addrs,
                ll,
                gw,
                mtu: link.mtu,
            })
        }
        None => None,
    };
    Ok((v4, v6))
}

/// The start-up lines about the template interfaces.
fn log_templates(v4: Option<&Host4>, v6: Option<&Host6>) {
    match (v4, v6) {
        (Some(h4), Some(h6)) => {
            info!(
                "Template interface: {} (IPv4), {} (IPv6)",
                h4.ifname, h6.ifname
            )
        }
        (Some(h4), None) => info!("Template interface: {} (IPv4)", h4.ifname),
        (None, Some(h6)) => info!("Template interface: {} (IPv6)", h6.ifname),
        (None, None) => {}
    }
    if v4.is_none() {
        info!("No default route for IPv4, local mode");
    }
    if v6.is_none() {
        info!("No default route for IPv6, local mode");
    }
}

/// The template interface of a family: the named one, or the one chosen by
/// [`pick_template`] from the routes.
fn template<'a>(
    links: &'a [Link],
    routes: &[Route],
    family: Family,
    ifname: Option<&str>,
) -> Result<Option<&'a Link>, HostError> {
    if let Some(name) = ifname {
        return links
            .iter()
            .find(|l| l.name == name)
            .map(Some)
            .ok_or_else(|| HostError::NoSuchInterface(name.to_owned()));
    }
    let Some(index) = pick_template(routes, family) else {
        return Ok(None);
    };
    Ok(links.iter().find(|l| l.index == index))
}

/// Whether a route's destination is (within) the link-local prefix.
fn to_link_local(r: &Route) -> bool {
    match r.dst {
        IpAddr::V4(v4) => r.prefix >= 16 && v4.is_link_local(),
        IpAddr::V6(v6) => r.prefix >= 10 && is_link_local(v6),
    }
}

/// Picks the template interface from the main-table unicast routes of a
/// family: the interface of the first default route, else of the first
/// route at all. Routes through `lo` and to link-local destinations don't
/// count; a multipath route counts for its first nexthop.
pub(crate) fn pick_template(routes: &[Route], family: Family) -> Option<u32> {
    let usable = || {
        routes.iter().filter_map(|r| {
            let oif = if r.oif != 0 {
                r.oif
            } else {
                r.multipath.first().map_or(0, |nh| nh.oif)
            };
            (r.family() == family && oif != 0 && oif != LO_IFINDEX && !to_link_local(r))
                .then_some((r, oif))
        })
    };
    let defaults: Vec<u32> = usable()
        .filter(|(r, _)| r.is_default())
        .map(|(_, i)| i)
        .collect();
    if let Some(&first) = defaults.first() {
        if defaults.len() > 1 {
            info!("Multiple default {} routes, picked first", family.name());
        }
        return Some(first);
    }
    let any: Vec<u32> = usable().map(|(_, i)| i).collect();
    if any.len() > 1 {
        info!(
            "Multiple interfaces with {} routes, picked first",
            family.name()
        );
    }
    if any.is_empty() {
        debug!("No interfaces with usable {} routes", family.name());
    }
    any.first().copied()
}

/// Gateway of the first default route through `ifindex` (for multipath
/// routes, the nexthop with the highest weight).
pub(crate) fn default_gateway(routes: &[Route], ifindex: u32) -> Option<IpAddr> {
    routes
        .iter()
        .filter(|r| r.is_default() && r.uses(ifindex))
        .find_map(Route::best_gateway)
}

/// Main-table unicast routes of a family that go through `ifindex`: the
/// routes pasta copies to the namespace with `--config-net` (see
/// [`crate::netlink::NsRoutes::Copy`]).
pub fn template_routes(
    nl: &mut Netlink,
    family: Family,
    ifindex: u32,
) -> Result<Vec<Route>, NetlinkError> {
    Ok(nl
        .routes(family)?
        .into_iter()
        .filter(|r| r.uses(ifindex))
        .collect())
}

/// Addresses of a template interface that pasta copies to the namespace:
/// non-deprecated, not link-scoped.
pub fn template_addrs(
    nl: &mut Netlink,
    family: Family,
    ifindex: u32,
) -> Result<Vec<(IpAddr, u8)>, NetlinkError> {
    Ok(nl
        .addrs(family, ifindex)?
        .iter()
        .filter(|a| !a.deprecated() && !a.link_scope())
        .map(|a: &Addr| (a.addr, a.prefix))
        .collect())
}

/// Reads a resolv.conf file; a missing or unreadable file means no
/// nameservers and no search domains.
pub(crate) fn read_resolv_conf(path: impl AsRef<Path>) -> ResolvConf {
    match std::fs::read_to_string(path.as_ref()) {
        Ok(text) => parse_resolv_conf(&text),
        Err(e) => {
            debug!("Cannot read {}: {e}", path.as_ref().display());
            ResolvConf::default()
        }
    }
}

/// Parses resolv.conf text: `nameserver` lines (an IPv6 `%scope` suffix is
/// dropped) in order, and the domains of the last `search` or `domain` line
/// (they override each other, as in the resolver). Comments and anything
/// unparsable are ignored.
pub(crate) fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                let Some(word) = words.next() else { continue };
                let addr = word.split('%').next().unwrap_or(word);
                if let Ok(ip) = addr.parse::<IpAddr>() {
                    if !conf.nameservers.contains(&ip) {
                        conf.nameservers.push(ip);
                    }
                }
            }
            Some("search") | Some("domain") => {
                conf.search = words
                    .take_while(|w| !w.starts_with('#') && !w.starts_with(';'))
                    .map(str::to_owned)
                    .collect();
            }
            _ => {}
        }
    }
    conf
}

/// The host's hostname (the `nodename` of `uname()`).
pub(crate) fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::NextHop;

    #[test]
    fn resolv_conf() {
        let text = "\
# Generated
nameserver 192.0.2.53
nameserver   fe80::1%eth0
nameserver 2001:db8::53 # trailing
nameserver bogus
nameserver
; comment
domain old.example
search example.com corp.example # comment
options edns0
garbage line here
nameserver 192.0.2.53
";
        let c = parse_resolv_conf(text);
        assert_eq!(
            c.nameservers,
            vec![
                "192.0.2.53".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap(),
                "2001:db8::53".parse().unwrap(),
            ]
        );
        assert_eq!(c.search, vec!["example.com", "corp.example"]);
    }

    #[test]
    fn resolv_conf_empty_and_missing() {
        assert_eq!(parse_resolv_conf(""), ResolvConf::default());
        assert_eq!(
            read_resolv_conf("/nonexistent/resolv.conf"),
            ResolvConf::default()
        );
        let c = parse_resolv_conf("search a.example\ndomain b.example\n");
        assert_eq!(c.search, vec!["b.example"]);
    }

    fn route(dst: &str, prefix: u8, gw: Option<&str>, oif: u32) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            prefix,
            gateway: gw.map(|g| g.parse().unwrap()),
            oif,
            multipath: Vec::new(),
            priority: None,
            mtu: None,
            scope: 0,
            protocol: 4,
        }
    }

    #[test]
    fn template_choice() {
        let routes = vec![
            route("169.254.0.0", 16, None, 5),
            route("10.0.0.0", 8, None, 3),
            route("0.0.0.0", 0, Some("127.0.0.1"), 1),
            route("0.0.0.0", 0, Some("192.0.2.1"), 2),
            route("0.0.0.0", 0, Some("198.51.100.1"), 4),
        ];
        assert_eq!(pick_template(&routes, Family::V4), Some(2));
        assert_eq!(pick_template(&routes[..2], Family::V4), Some(3));
        assert_eq!(pick_template(&routes[..1], Family::V4), None);
        assert_eq!(pick_template(&routes, Family::V6), None);
        assert_eq!(
            default_gateway(&routes, 4),
            Some("198.51.100.1".parse().unwrap())
        );
        assert_eq!(default_gateway(&routes, 3), None);

        let mut mp = route("::", 0, None, 0);
        mp.multipath = vec![
            NextHop {
                gateway: Some("fe80::1".parse().unwrap()),
                oif: 6,
                weight: 3,
            },
            NextHop {
                gateway: Some("fe80::2".parse().unwrap()),
                oif: 6,
                weight: 1,
            },
        ];
        let v6 = vec![route("fe80::", 64, None, 7), mp];
        assert_eq!(pick_template(&v6, Family::V6), Some(6));
        assert_eq!(default_gateway(&v6, 6), Some("fe80::1".parse().unwrap()));
    }
}
