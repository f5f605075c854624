//! Following the host: the guest's view ([`Live`]) changes with the
//! host's resolv.conf, addresses and routes.
//!
//! # Theory of operation
//!
//! The configuration is read once ([`crate::conf`]) and never changes;
//! what the guest is told now lives in [`Live`], owned by the loop. Two
//! watchers, both opened at start-up before [`crate::isolation`] takes the
//! filesystem away and [`crate::seccomp`] forbids new netlink sockets, turn
//! the host's changes into a new [`Live`]:
//!
//! * [`resolv::ResolvWatch`]: inotify on `/etc/resolv.conf` itself (a
//!   bind-mounted file is written in place under another directory) and on
//!   its directory (resolvers write a new file and rename it over the old
//!   one, or replace the symlink), and, if it is a symlink, on the
//!   directory of its target. The file is read again through directory
//!   descriptors opened at start (the root is gone by then), and the
//!   nameservers computed again with the start-up's own code
//!   ([`crate::conf::resolve::resolv_dns`]). `--dns-forward` queries go to
//!   the new first nameserver from the next query on; DHCP, DHCPv6 and
//!   router advertisements carry the new list (an unsolicited RA goes out
//!   at once). `-D`, `--no-dns` and `--dns-host` are never overridden.
//! * [`routes::RouteWatch`]: an rtnetlink socket that joined the link,
//!   address and route groups of both families. Any notification makes it
//!   read the template interfaces again (the start-up's
//!   [`crate::conf::host::templates`]) and compare. If the guest's address,
//!   prefix length or gateway came from the host (no `-a`, `-g`, not local
//!   mode), they follow: pasta with `--config-net` changes the namespace
//!   (new addresses and routes in, old ones out, through an rtnetlink
//!   socket opened in the namespace at start); DHCP and DHCPv6 guests get
//!   the new lease at their next request; SLAAC guests get a router
//!   advertisement with the new prefix and the old one with lifetime 0.
//!   Flows of the old address are left alone (the guest may still send
//!   from it, see [`crate::live::Live4::former`]); new flows use the new
//!   one.
//!
//! What does not follow: a template interface that has no address or no
//! default route any more (the default route removed, say) leaves the
//! guest's view as it was, with a line in the log; so does a resolv.conf
//! without any nameserver (resolvers write an empty file first). The
//! address standing for the host (`--map-host-loopback`, by default the
//! gateway of start-up) and our own tap addresses stay those of start-up:
//! they are names the guest may have been given. Search domains stay those
//! of start-up.
//!
//! Every change is logged at info level: what changed, what was done.

pub(crate) mod resolv;
pub(crate) mod routes;

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::conf::host::RESOLV_CONF;
use crate::conf::Config;
use crate::event::{Epoll, EpollRef, Kind};
use crate::live::Live;
use crate::pasta::NetNs;

/// What a change asks of the loop, beyond the new [`Live`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Changed {
    /// Send an unsolicited router advertisement (new prefix or nameservers).
    pub(crate) ra: bool,
    /// The guest's IPv4 address is this now (pasta `--config-net` set it).
    pub(crate) addr4: Option<Ipv4Addr>,
    /// The guest's IPv6 address is this now (pasta `--config-net` set it).
    pub(crate) addr6: Option<Ipv6Addr>,
}

/// The watchers of one loop (each None when nothing it watches may follow,
/// or it could not be opened: then a warning said so at start).
#[derive(Default)]
pub(crate) struct Follower {
    pub(crate) resolv: Option<resolv::ResolvWatch>,
    pub(crate) routes: Option<routes::RouteWatch>,
}

impl Follower {
    /// Opens the watchers the configuration needs, before isolation. `ns`:
    /// pasta `--config-net`'s namespace and tap name, to change them
    /// later. Never fails: a watcher that cannot be opened is left out,
    /// with a warning.
    pub(crate) fn open(conf: &Config, ns: Option<(&NetNs, &str)>) -> Follower {
        let dns = conf.ip4.as_ref().is_some_and(|c| c.follow.dns)
            || conf.ip6.as_ref().is_some_and(|c| c.follow.dns);
        let resolv = if dns {
            match resolv::ResolvWatch::open(RESOLV_CONF) {
                Ok(w) => Some(w),
                Err(e) => {
                    log::warn!("Can't watch {RESOLV_CONF}, DNS won't follow the host: {e}");
                    None
                }
            }
        } else {
            None
        };
        let net4 = conf
            .ip4
            .as_ref()
            .is_some_and(|c| c.follow.addr || c.follow.gw);
        let net6 = conf
            .ip6
            .as_ref()
            .is_some_and(|c| c.follow.addr || c.follow.gw);
        let routes = if net4 || net6 {
            match routes::RouteWatch::open(ns) {
                Ok(w) => Some(w),
                Err(e) => {
                    log::warn!(
                        "Can't watch the host's addresses and routes, the guest won't follow them: {e}"
                    );
                    None
                }
            }
        } else {
            None
        };
        Follower { resolv, routes }
    }

    /// Adds the watchers to the loop's epoll set.
    pub(crate) fn register(&self, epoll: &Epoll) -> std::io::Result<()> {
        if let Some(r) = &self.resolv {
            epoll.add(r.fd(), EpollRef::new(Kind::FollowResolv, 0))?;
        }
        if let Some(r) = &self.routes {
            epoll.add(r.fd(), EpollRef::new(Kind::FollowRoutes, 0))?;
        }
        Ok(())
    }

    /// resolv.conf (or its directory) changed.
    pub(crate) fn resolv_event(&mut self, conf: &Config, live: &mut Live) -> Changed {
        match self.resolv.as_mut().and_then(|r| r.changed()) {
            Some(resolv) => resolv::apply(conf, live, &resolv),
            None => Changed::default(),
        }
    }

    /// The host's links, addresses or routes changed.
    pub(crate) fn routes_event(&mut self, conf: &Config, live: &mut Live) -> Changed {
        match self.routes.as_mut() {
            Some(r) => r.event(conf, live),
            None => Changed::default(),
        }
    }
}
