//! The host's template interfaces over rtnetlink: addresses, prefix
//! lengths and default gateways, followed into [`Live`](crate::live::Live) and, for pasta
//! with `--config-net`, into the namespace.
//!
//! A [`Monitor`] socket joined the link, address and route groups; its
//! notifications are only a wake-up. Each time, the template interfaces
//! are read again as at start-up ([`templates`], with the same `-i` /
//! `--outbound-if4/6` names) and compared with what the guest is told.
//! Something missing (no address, no default route, no template at all:
//! the host between two networks) changes nothing and is logged once.
//!
//! The namespace is changed through an rtnetlink socket opened in it at
//! start: the new addresses are added, the routes that are not wanted any
//! more removed and the wanted ones added (copied from the host as at
//! start, or the one default route), then the old addresses removed. Routes
//! the kernel made (prefix routes) are left to the kernel.

use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};

use super::Changed;
use crate::conf::host::{template_routes, templates, Host4, Host6};
use crate::conf::{Config, Ip4Conf, Ip6Conf};
use crate::live::{Live4, Live6};
use crate::netlink::{self, Family, Monitor, Netlink, NetlinkError, Route, FOLLOW_GROUPS};
use crate::pasta::NetNs;

/// `RTPROT_KERNEL`: routes the kernel made for an address.
const RTPROT_KERNEL: u8 = 2;

/// pasta `--config-net`: the namespace's rtnetlink socket and the tap.
struct NsLink {
    nl: Netlink,
    ifindex: u32,
}

/// The host's links, addresses and routes, watched.
pub(crate) struct RouteWatch {
    monitor: Monitor,
    /// Requests in the host's namespace.
    nl: Netlink,
    ns: Option<NsLink>,
    /// The last "keeping" line of each family, not repeated while the
    /// host stays so.
    noted: [String; 2],
}

impl RouteWatch {
    /// Opens the watch in the calling thread's namespace and, with `ns`
    /// (pasta `--config-net`: the namespace and the tap's name), a socket
    /// in the namespace.
    pub(crate) fn open(ns: Option<(&NetNs, &str)>) -> Result<RouteWatch, String> {
        let monitor = Monitor::open(&FOLLOW_GROUPS).map_err(|e| e.to_string())?;
        let nl = Netlink::open().map_err(|e| e.to_string())?;
        let ns = match ns {
            None => None,
            Some((netns, name)) => {
                let r = netns
                    .run(|| -> Result<NsLink, NetlinkError> {
                        let mut nl = Netlink::open()?;
                        let ifindex = nl.link_index(name)?;
                        Ok(NsLink { nl, ifindex })
                    })
                    .map_err(|e| format!("namespace: {e}"))?;
                Some(r.map_err(|e| format!("namespace: {e}"))?)
            }
        };
        Ok(RouteWatch {
            monitor,
            nl,
            ns,
            noted: Default::default(),
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.monitor.as_fd()
    }

    /// Reads the notifications; if there were any, the template
    /// interfaces again, and follows them.
    pub(crate) fn event(&mut self, conf: &Config, live: &mut crate::live::Live) -> Changed {
        let mut changed = Changed::default();
        if !self.monitor.drain() {
            return changed;
        }
        let name4 = conf.ip4.as_ref().and_then(|c| c.follow.ifname.as_deref());
        let name6 = conf.ip6.as_ref().and_then(|c| c.follow.ifname.as_deref());
        let (h4, h6) = match templates(&mut self.nl, name4, name6) {
            Ok(t) => t,
            Err(e) => {
                self.note(
                    0,
                    format!("The host's network changed, can't read it ({e}): the guest's stays"),
                );
                return changed;
            }
        };
        if let (Some(c), Some(l)) = (&conf.ip4, live.ip4.as_mut()) {
            if c.follow.addr || c.follow.gw {
                self.follow4(conf, c, l, h4.as_ref(), &mut changed);
            }
        }
        if let (Some(c), Some(l)) = (&conf.ip6, live.ip6.as_mut()) {
            if c.follow.addr || c.follow.gw {
                self.follow6(conf, c, l, h6.as_ref(), &mut changed);
            }
        }
        changed
    }

    /// Logs `line` for family slot `i` unless it was the last one logged.
    fn note(&mut self, i: usize, line: String) {
        if self.noted[i] != line {
            log::info!("{line}");
            self.noted[i] = line;
        }
    }

    fn follow4(
        &mut self,
        conf: &Config,
        c: &Ip4Conf,
        l: &mut Live4,
        h: Option<&Host4>,
        changed: &mut Changed,
    ) {
        let Some(h) = h else {
            let line = format!(
                "IPv4: no template interface on the host now: the guest keeps {}/{} via {}",
                l.addr, l.prefix_len, l.gw
            );
            return self.note(0, line);
        };
        let (mut addr, mut prefix, mut gw) = (l.addr, l.prefix_len, l.gw);
        let mut missing = Vec::new();
        if c.follow.addr {
            match h.addrs.first() {
                Some(&(a, p)) => {
                    addr = a;
                    if c.follow.prefix_len {
                        prefix = p;
                    }
                }
                None => missing.push(format!("no address (keeping {}/{})", l.addr, l.prefix_len)),
            }
        }
        if c.follow.gw {
            match h.gw {
                Some(g) => gw = g,
                None => missing.push(format!("no default route (keeping gateway {})", l.gw)),
            }
        }
        let line = if missing.is_empty() {
            String::new()
        } else {
            format!("IPv4: {} has {}", h.ifname, missing.join(", "))
        };
        if line.is_empty() {
            self.noted[0].clear();
        } else {
            self.note(0, line);
        }
        let host_addrs = if c.follow.addr && !h.addrs.is_empty() {
            h.addrs.clone()
        } else {
            l.host_addrs.clone()
        };
        if (addr, prefix, gw) == (l.addr, l.prefix_len, l.gw) && host_addrs == l.host_addrs {
            return;
        }
        log::info!(
            "IPv4: the host changed on {}: guest address {addr}/{prefix} (was {}/{}), gateway {gw} (was {})",
            h.ifname,
            l.addr,
            l.prefix_len,
            l.gw
        );
        let moved = addr != l.addr;
        if moved {
            l.retire(l.addr);
        }
        (l.addr, l.prefix_len, l.gw, l.host_addrs) = (addr, prefix, gw, host_addrs);
        if self.ns.is_some() {
            let addrs: Vec<(IpAddr, u8)> = if c.copy_addrs && !l.host_addrs.is_empty() {
                l.host_addrs
                    .iter()
                    .map(|&(a, p)| (IpAddr::V4(a), p))
                    .collect()
            } else {
                vec![(IpAddr::V4(addr), prefix)]
            };
            match self.sync_ns(Family::V4, c.copy_routes, h.ifindex, IpAddr::V4(gw), &addrs) {
                Ok(()) => log::info!("IPv4: namespace updated: addresses {addrs:?}, gateway {gw}"),
                Err(e) => log::warn!("IPv4: can't update the namespace: {e}"),
            }
            if moved {
                changed.addr4 = Some(addr);
            }
        } else if !conf.no_dhcp {
            log::info!("IPv4: the guest gets the new lease at its next DHCP request");
        }
    }

    fn follow6(
        &mut self,
        conf: &Config,
        c: &Ip6Conf,
        l: &mut Live6,
        h: Option<&Host6>,
        changed: &mut Changed,
    ) {
        let Some(h) = h else {
            let line = format!(
                "IPv6: no template interface on the host now: the guest keeps {:?} via {}",
                l.addr, l.gw
            );
            return self.note(1, line);
        };
        let (mut addr, mut prefix, mut gw) = (l.addr, l.prefix_len, l.gw);
        let mut missing = Vec::new();
        if c.follow.addr {
            match h.addrs.first() {
                Some(&(a, p)) => (addr, prefix) = (Some(a), p),
                None => missing.push(format!("no global address (keeping {:?})", l.addr)),
            }
        }
        if c.follow.gw {
            match h.gw {
                Some(g) => gw = g,
                None => missing.push(format!("no default route (keeping router {})", l.gw)),
            }
        }
        if missing.is_empty() {
            self.noted[1].clear();
        } else {
            self.note(1, format!("IPv6: {} has {}", h.ifname, missing.join(", ")));
        }
        let host_addrs = if c.follow.addr && !h.addrs.is_empty() {
            h.addrs.clone()
        } else {
            l.host_addrs.clone()
        };
        if (addr, prefix, gw) == (l.addr, l.prefix_len, l.gw) && host_addrs == l.host_addrs {
            return;
        }
        log::info!(
            "IPv6: the host changed on {}: guest address {addr:?}/{prefix} (was {:?}/{}), router {gw} (was {})",
            h.ifname,
            l.addr,
            l.prefix_len,
            l.gw
        );
        let old = l.addr;
        let prefix64 = |a: Option<std::net::Ipv6Addr>| a.map(|a| u128::from(a) >> 64);
        if prefix64(old) != prefix64(addr) {
            if let Some(o) = old {
                // SLAAC guests: the old prefix with lifetime 0.
                l.deprecated_prefix = Some(o);
            }
            changed.ra = true;
        }
        if let Some(o) = old.filter(|&o| Some(o) != addr) {
            l.retire(o);
        }
        (l.addr, l.prefix_len, l.gw, l.host_addrs) = (addr, prefix, gw, host_addrs);
        if self.ns.is_some() {
            let addrs: Vec<(IpAddr, u8)> = if c.copy_addrs && !l.host_addrs.is_empty() {
                l.host_addrs
                    .iter()
                    .map(|&(a, p)| (IpAddr::V6(a), p))
                    .collect()
            } else {
                addr.map(|a| vec![(IpAddr::V6(a), 64)]).unwrap_or_default()
            };
            match self.sync_ns(Family::V6, c.copy_routes, h.ifindex, IpAddr::V6(gw), &addrs) {
                Ok(()) => log::info!("IPv6: namespace updated: addresses {addrs:?}, router {gw}"),
                Err(e) => log::warn!("IPv6: can't update the namespace: {e}"),
            }
            if old != addr {
                changed.addr6 = addr;
            }
        } else {
            if changed.ra && !conf.no_ra && !conf.no_ndp {
                log::info!(
                    "IPv6: router advertisement with the new prefix, the old one deprecated"
                );
            }
            if !conf.no_dhcpv6 {
                log::info!("IPv6: DHCPv6 guests get the new address at their next request");
            }
        }
    }

    /// Makes the namespace's tap hold `addrs` and the routes of the
    /// family: the host's template routes through `host_ifindex` (with
    /// `copy`), else one default route through `gw`.
    fn sync_ns(
        &mut self,
        family: Family,
        copy: bool,
        host_ifindex: u32,
        gw: IpAddr,
        addrs: &[(IpAddr, u8)],
    ) -> Result<(), NetlinkError> {
        let wanted_routes = if copy {
            Some(template_routes(&mut self.nl, family, host_ifindex)?)
        } else {
            None
        };
        let Some(ns) = self.ns.as_mut() else {
            return Ok(());
        };
        let idx = ns.ifindex;
        let wanted_routes = match wanted_routes {
            Some(routes) => netlink::rewrite_routes(&routes, host_ifindex, idx),
            None => vec![Route::default_via(idx, gw)],
        };
        let current: Vec<(IpAddr, u8)> = ns
            .nl
            .addrs(family, idx)?
            .iter()
            .filter(|a| !a.link_scope())
            .map(|a| (a.addr, a.prefix))
            .collect();
        for &(a, p) in addrs {
            if !current.contains(&(a, p)) {
                match ns.nl.addr_add(idx, a, p, family == Family::V6) {
                    Ok(()) | Err(NetlinkError::Kernel(libc::EEXIST)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let routes_now: Vec<Route> = ns
            .nl
            .routes(family)?
            .into_iter()
            .filter(|r| r.uses(idx) && r.protocol != RTPROT_KERNEL)
            .collect();
        for r in &routes_now {
            if !wanted_routes.iter().any(|w| same_route(w, r)) {
                if let Err(e) = ns.nl.route_del(r) {
                    log::debug!(
                        "namespace: can't remove route to {}/{}: {e}",
                        r.dst,
                        r.prefix
                    );
                }
            }
        }
        netlink::replay_routes(&mut ns.nl, &wanted_routes)?;
        for &(a, p) in &current {
            if !addrs.contains(&(a, p)) {
                if let Err(e) = ns.nl.addr_del(idx, a, p) {
                    log::debug!("namespace: can't remove {a}/{p}: {e}");
                }
            }
        }
        Ok(())
    }
}

/// Whether two routes go to the same place the same way (their metrics
/// and who made them aside).
fn same_route(a: &Route, b: &Route) -> bool {
    let hops =
        |r: &Route| -> Vec<Option<IpAddr>> { r.multipath.iter().map(|h| h.gateway).collect() };
    a.dst == b.dst && a.prefix == b.prefix && a.gateway == b.gateway && hops(a) == hops(b)
}
