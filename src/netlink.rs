//! A small synchronous rtnetlink client: links, addresses and routes.
//!
//! # Theory of operation
//!
//! pasta needs rtnetlink twice, both times at start-up and off the hot path:
//!
//! * in the namespace it starts in, to pick the *template interface* of each
//!   address family and read its addresses, routes, gateway and MTU (see
//!   [`crate::conf::host`]);
//! * in the target namespace, to bring up `lo` and the tap device and, with
//!   `--config-net`, give the tap the host's MTU, addresses and routes
//!   ([`configure_ns`]).
//!
//! A [`Netlink`] is one `NETLINK_ROUTE` socket, created in the network
//! namespace of the calling *thread*: the caller enters the target namespace
//! with `setns()` in a dedicated thread before calling [`Netlink::open`], and
//! the socket stays bound to that namespace afterwards, whichever thread uses
//! it.
//!
//! Every exchange is strictly request/response: [`Netlink`] sends one message
//! with a fresh sequence number and reads replies until the kernel says the
//! request is over (`NLMSG_ERROR`, which is also the acknowledgement, or
//! `NLMSG_DONE` for dumps). Messages with another sequence number (stale
//! replies) are skipped. Kernel errors come back as
//! [`NetlinkError::Kernel`] with the positive errno, so that callers can
//! ignore `EEXIST` and friends. Message encoding and decoding is done by
//! `netlink-packet-route`; what leaves this module are plain structs
//! ([`Link`], [`Addr`], [`Route`]) that the rest of passt-rs can build and
//! compare without knowing about netlink.
//!
//! Nothing the kernel sends can make this module panic: a reply that does
//! not decode is skipped with a warning (dumps) or reported as
//! [`NetlinkError::Decode`].
//!
//! The [`sock_diag`] submodule is the other netlink client of pasta: dumps
//! of listening sockets for the `auto` port scanner.
//!
//! # Namespace configuration
//!
//! [`configure_ns`] follows upstream's order exactly (MTU; link up, with
//! `IFF_NOARP` while IPv6 link-local addresses are marked `nodad`; IPv4
//! addresses and routes; IPv6 link-local `nodad`, `IFF_NOARP` cleared, IPv6
//! addresses and routes). Copied routes are replayed as many times as there
//! are routes, ignoring `EEXIST`, `ENETUNREACH` and `EHOSTUNREACH`, so that a
//! route whose gateway is only reachable through another copied route gets
//! in on a later round without computing dependencies.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use log::{debug, warn};
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_DONE, NLMSG_ERROR,
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteNextHop,
    RouteNextHopFlags, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

pub(crate) mod sock_diag;

/// Size of the receive buffer: the kernel never sends datagrams larger than
/// this (netlink(7) recommends at least 8 KiB or a page, 32 KiB for dumps).
const RECV_BUF_SIZE: usize = 65536;

/// `ifindex` of the loopback interface in every namespace.
pub(crate) const LO_IFINDEX: u32 = 1;

/// `RT_TABLE_MAIN`.
pub(crate) const RT_TABLE_MAIN: u32 = 254;

/// `RT_SCOPE_LINK`.
pub(crate) const RT_SCOPE_LINK: u8 = 253;

/// `RTPROT_BOOT`: what upstream marks the routes it creates with.
pub(crate) const RTPROT_BOOT: u8 = 3;

/// Errors of rtnetlink requests.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open rtnetlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("rtnetlink I/O failed: {0}")]
    Io(#[source] io::Error),
    /// The kernel refused the request: positive errno (`libc::EEXIST`...).
    #[error("kernel refused the request: {}", io::Error::from_raw_os_error(*.0))]
    Kernel(i32),
    #[error("malformed rtnetlink reply: {0}")]
    Decode(String),
    #[error("no interface named {0}")]
    NoSuchLink(String),
}

impl NetlinkError {
    /// The errno of a kernel refusal, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel(e) => Some(*e),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, NetlinkError>;

/// Address family of a dump or route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn af(self) -> AddressFamily {
        match self {
            Family::V4 => AddressFamily::Inet,
            Family::V6 => AddressFamily::Inet6,
        }
    }

    pub(crate) fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The unspecified address of the family, destination of default routes.
    pub(crate) fn unspecified(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }

    /// "IPv4" or "IPv6", for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// One network interface, from a link dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub(crate) index: u32,
    pub(crate) name: String,
    /// `IFF_UP` is set.
    pub up: bool,
    /// All `IFF_*` flags.
    pub flags: u32,
    pub(crate) mtu: u32,
    /// Hardware address, if the link has a 6-byte one.
    pub(crate) mac: Option<[u8; 6]>,
}

/// One interface address, from an address dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Addr {
    pub(crate) ifindex: u32,
    /// `IFA_LOCAL` for IPv4 (the address itself, also on point-to-point
    /// links), `IFA_ADDRESS` for IPv6.
    pub(crate) addr: IpAddr,
    pub(crate) prefix: u8,
    /// `IFA_F_*` flags (32-bit `IFA_FLAGS` if present, else the header's).
    pub(crate) flags: u32,
    /// `RT_SCOPE_*`: 0 universe, 253 link, 254 host.
    pub(crate) scope: u8,
}

impl Addr {
    pub(crate) const F_NODAD: u32 = 0x02;
    pub(crate) const F_DEPRECATED: u32 = 0x20;

    pub(crate) fn deprecated(&self) -> bool {
        self.flags & Self::F_DEPRECATED != 0
    }

    /// Link scope (IPv6 link-local, IPv4 169.254/16 set up with scope link).
    pub(crate) fn link_scope(&self) -> bool {
        self.scope == RT_SCOPE_LINK
    }
}

/// One nexthop of a multipath route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub(crate) gateway: Option<IpAddr>,
    pub(crate) oif: u32,
    /// Weight, 1 to 256 (`rtnh_hops` + 1).
    pub weight: u16,
}

/// One unicast route of the main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination network; the unspecified address for default routes.
    pub(crate) dst: IpAddr,
    pub prefix: u8,
    pub(crate) gateway: Option<IpAddr>,
    /// Output interface, 0 if none (multipath routes carry theirs per hop).
    pub oif: u32,
    pub multipath: Vec<NextHop>,
    /// Metric (`RTA_PRIORITY`).
    pub(crate) priority: Option<u32>,
    /// Path MTU (`RTAX_MTU`), the only route metric kept.
    pub mtu: Option<u32>,
    /// `RT_SCOPE_*`: 0 universe, 253 link.
    pub(crate) scope: u8,
    /// `RTPROT_*`: who installed the route (2 kernel, 3 boot, 4 static...).
    pub(crate) protocol: u8,
}

impl Route {
    /// A default route through `gw` on interface `oif`, as upstream creates
    /// it (protocol `boot`).
    pub(crate) fn default_via(oif: u32, gw: IpAddr) -> Route {
        Route {
            dst: Family::of(&gw).unspecified(),
            prefix: 0,
            gateway: Some(gw),
            oif,
            multipath: Vec::new(),
            priority: None,
            mtu: None,
            scope: 0,
            protocol: RTPROT_BOOT,
        }
    }

    pub(crate) fn family(&self) -> Family {
        Family::of(&self.dst)
    }

    pub fn is_default(&self) -> bool {
        self.prefix == 0
    }

    /// Whether the route sends anything through `ifindex`.
    pub(crate) fn uses(&self, ifindex: u32) -> bool {
        self.oif == ifindex || self.multipath.iter().any(|nh| nh.oif == ifindex)
    }

    /// Gateway of the route: its own, or for multipath routes the one of the
    /// nexthop with the highest weight (the last one of equal weights, as
    /// upstream).
    pub(crate) fn best_gateway(&self) -> Option<IpAddr> {
        if self.gateway.is_some() {
            return self.gateway;
        }
        let mut best: Option<&NextHop> = None;
        for nh in self.multipath.iter().filter(|nh| nh.gateway.is_some()) {
            if best.is_none_or(|b| nh.weight >= b.weight) {
                best = Some(nh);
            }
        }
        best.and_then(|nh| nh.gateway)
    }
}

/// An rtnetlink socket in the network namespace it was opened in.
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens an rtnetlink socket in the calling thread's current network
    /// namespace.
    pub fn open() -> Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        sock.bind_auto().map_err(NetlinkError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        // Have the kernel filter dumps by interface, table and type; without
        // it (old kernels) we filter ourselves anyway.
        if let Err(e) = sock.set_netlink_get_strict_chk(true) {
            debug!("netlink: cannot set NETLINK_GET_STRICT_CHK: {e}");
        }
        Ok(Netlink {
            sock,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF_SIZE),
        })
    }

    /// Sends `msg` and collects the replies until the kernel ends the
    /// exchange. Without `NLM_F_DUMP` an acknowledgement is requested.
    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        if flags & NLM_F_DUMP != NLM_F_DUMP {
            header.flags |= NLM_F_ACK;
        }
        header.sequence_number = seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        let sent = retry_eintr(|| self.sock.send(&out, 0))?;
        if sent != out.len() {
            return Err(NetlinkError::Io(io::Error::other("short send")));
        }

        let mut replies = Vec::new();
        loop {
            self.buf.clear();
            let n = retry_eintr(|| self.sock.recv(&mut self.buf, libc::MSG_TRUNC))?;
            if n > self.buf.len() {
                return Err(NetlinkError::Decode(format!(
                    "datagram of {n} bytes truncated"
                )));
            }
            if let Some(end) = take_replies(&self.buf, seq, &mut replies) {
                return end.map(|()| replies);
            }
        }
    }

    /// Sends a request and waits for its acknowledgement.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<()> {
        self.exchange(msg, flags).map(|_| ())
    }

    /// Sends a dump request and returns every reply.
    fn dump(&mut self, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_DUMP)
    }

    /// All interfaces of the namespace.
    pub(crate) fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_from(l)),
                _ => None,
            })
            .collect())
    }

    /// One interface, by index.
    pub fn link(&mut self, index: u32) -> Result<Link> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let replies = self.exchange(RouteNetlinkMessage::GetLink(msg), 0)?;
        replies
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) if l.header.index == index => Some(link_from(l)),
                _ => None,
            })
            .ok_or(NetlinkError::Kernel(libc::ENODEV))
    }

    /// Index of the interface called `name`.
    pub fn link_index(&mut self, name: &str) -> Result<u32> {
        self.links()?
            .into_iter()
            .find(|l| l.name == name)
            .map(|l| l.index)
            .ok_or_else(|| NetlinkError::NoSuchLink(name.to_owned()))
    }

    /// Changes the `IFF_*` flags in `change` to their values in `set`.
    fn link_set_flags(&mut self, index: u32, set: LinkFlags, change: LinkFlags) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = set;
        msg.header.change_mask = change;
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
    }

    fn link_set_attr(&mut self, index: u32, attr: LinkAttribute) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(attr);
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// Brings the interface up.
    pub(crate) fn link_set_up(&mut self, index: u32) -> Result<()> {
        self.link_set_flags(index, LinkFlags::Up, LinkFlags::Up)
    }

    /// Brings the interface up and sets `IFF_NOARP` in the same request.
    pub(crate) fn link_set_up_noarp(&mut self, index: u32) -> Result<()> {
        let f = LinkFlags::Up | LinkFlags::Noarp;
        self.link_set_flags(index, f, f)
    }

    /// Sets or clears `IFF_NOARP` (no ARP, and no IPv6 DAD).
    pub fn link_set_noarp(&mut self, index: u32, noarp: bool) -> Result<()> {
        let set = if noarp {
            LinkFlags::Noarp
        } else {
            LinkFlags::empty()
        };
        self.link_set_flags(index, set, LinkFlags::Noarp)
    }

    pub(crate) fn link_set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.link_set_attr(index, LinkAttribute::Mtu(mtu))
    }

    pub fn link_set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        self.link_set_attr(index, LinkAttribute::Address(mac.to_vec()))
    }

    /// The interface's hardware address (`ENODATA` if it has no 6-byte one).
    pub fn link_get_mac(&mut self, index: u32) -> Result<[u8; 6]> {
        self.link(index)?
            .mac
            .ok_or(NetlinkError::Kernel(libc::ENODATA))
    }

    /// Addresses of one family, of interface `ifindex` (0: all interfaces).
    pub(crate) fn addrs(&mut self, family: Family, ifindex: u32) -> Result<Vec<Addr>> {
        let mut msg = AddressMessage::default();
        msg.header.family = family.af();
        msg.header.index = ifindex;
        let replies = self.dump(RouteNetlinkMessage::GetAddress(msg))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => addr_from(a),
                _ => None,
            })
            .filter(|a| Family::of(&a.addr) == family && (ifindex == 0 || a.ifindex == ifindex))
            .collect())
    }

    /// Adds an address; `nodad` skips IPv6 duplicate address detection.
    pub fn addr_add(&mut self, index: u32, addr: IpAddr, prefix: u8, nodad: bool) -> Result<()> {
        let flags = if nodad { Addr::F_NODAD } else { 0 };
        let msg = addr_msg(index, addr, prefix, 0, flags);
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Rewrites an existing address with `IFA_F_NODAD` added to its flags.
    fn addr_set_nodad(&mut self, a: &Addr) -> Result<()> {
        let msg = addr_msg(
            a.ifindex,
            a.addr,
            a.prefix,
            a.scope,
            a.flags | Addr::F_NODAD,
        );
        self.request(RouteNetlinkMessage::NewAddress(msg), NLM_F_REPLACE)
    }

    /// Unicast routes of the main table of one family.
    pub(crate) fn routes(&mut self, family: Family) -> Result<Vec<Route>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family.af();
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.kind = RouteType::Unicast;
        let replies = match self.dump(RouteNetlinkMessage::GetRoute(msg)) {
            // With strict checking, a filter on a table that does not exist
            // yet (no route was ever added) is ENOENT.
            Err(NetlinkError::Kernel(libc::ENOENT)) => Vec::new(),
            r => r?,
        };
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => route_from(r),
                _ => None,
            })
            .filter(|r| r.family() == family)
            .collect())
    }

    /// Adds a route to the main table (fails with `EEXIST` if present).
    pub(crate) fn route_add(&mut self, route: &Route) -> Result<()> {
        self.request(
            RouteNetlinkMessage::NewRoute(route_msg(route)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Adds a default route through `gw` on interface `index`.
    pub(crate) fn route_add_default(&mut self, index: u32, gw: IpAddr) -> Result<()> {
        self.route_add(&Route::default_via(index, gw))
    }

    /// Removes an address (`EADDRNOTAVAIL` if it is not there).
    pub(crate) fn addr_del(&mut self, index: u32, addr: IpAddr, prefix: u8) -> Result<()> {
        let msg = addr_msg(index, addr, prefix, 0, 0);
        self.request(RouteNetlinkMessage::DelAddress(msg), 0)
    }

    /// Removes a route of the main table (`ESRCH` if it is not there).
    pub(crate) fn route_del(&mut self, route: &Route) -> Result<()> {
        self.request(RouteNetlinkMessage::DelRoute(route_msg(route)), 0)
    }
}

/// The rtnetlink groups a [`Monitor`] of the host's template interface
/// joins: addresses and routes of both families, and links.
pub(crate) const FOLLOW_GROUPS: [u32; 5] = [
    libc::RTNLGRP_LINK,
    libc::RTNLGRP_IPV4_IFADDR,
    libc::RTNLGRP_IPV6_IFADDR,
    libc::RTNLGRP_IPV4_ROUTE,
    libc::RTNLGRP_IPV6_ROUTE,
];

/// A `NETLINK_ROUTE` socket that joined multicast groups: the kernel's
/// notifications of changes in the namespace it was opened in. Only a
/// wake-up: what changed is read again with a [`Netlink`] dump, so the
/// notifications themselves are not decoded (and one lost to a full
/// buffer, `ENOBUFS`, is just another wake-up).
pub(crate) struct Monitor {
    sock: Socket,
    buf: Vec<u8>,
}

impl Monitor {
    /// Opens a non-blocking socket in the calling thread's namespace that
    /// joined `groups` (`RTNLGRP_*`).
    pub(crate) fn open(groups: &[u32]) -> Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        sock.bind_auto().map_err(NetlinkError::Socket)?;
        for &g in groups {
            sock.add_membership(g).map_err(NetlinkError::Socket)?;
        }
        sock.set_non_blocking(true).map_err(NetlinkError::Socket)?;
        Ok(Monitor {
            sock,
            buf: Vec::with_capacity(RECV_BUF_SIZE),
        })
    }

    /// Reads every pending notification; true if there was any (or some
    /// were lost).
    pub(crate) fn drain(&mut self) -> bool {
        let mut any = false;
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(0) => return any,
                Ok(_) => any = true,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => any = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return any,
            }
        }
    }
}

impl std::os::fd::AsFd for Monitor {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Walks the messages of one received datagram for the exchange `seq`,
/// the loop every netlink reader here shares: messages of other exchanges
/// are skipped; `NLMSG_DONE` and `NLMSG_ERROR` end the exchange with
/// their code (0, or a negative errno); `each(type, message, payload)`
/// gets every other message, and ends the walk with its error, if any.
/// `Some` when the exchange ended or the datagram cannot be walked,
/// `None` when more datagrams are to come. Everything in `buf` is the
/// kernel's, trusted for nothing.
pub(crate) fn walk_datagram(
    buf: &[u8],
    seq: u32,
    mut each: impl FnMut(u16, &[u8], &[u8]) -> Result<()>,
) -> Option<Result<()>> {
    let mut off = 0;
    while let Some(chunk) = buf.get(off..).filter(|c| !c.is_empty()) {
        let nl = match NetlinkBuffer::new_checked(chunk) {
            Ok(nl) => nl,
            Err(e) => return Some(Err(NetlinkError::Decode(e.to_string()))),
        };
        let len = nl.length() as usize;
        let (mtype, mseq) = (nl.message_type(), nl.sequence_number());
        // Messages are 4-byte aligned; the last one may lack padding.
        off += (len + 3) & !3;
        if mseq != seq {
            debug!("netlink: skipping reply to request {mseq}");
            continue;
        }
        // `new_checked` made sure the buffer holds `len` bytes.
        let raw = chunk.get(..len).unwrap_or(chunk);
        let payload = nl.payload();
        match mtype {
            // Both carry an `int`: 0, or a negative errno (an error, or
            // the `NLMSG_DONE` of a dump that failed half way). A bare
            // `NLMSG_DONE` is a success.
            NLMSG_DONE | NLMSG_ERROR => {
                let code = match payload.get(..4).and_then(|b| b.try_into().ok()) {
                    Some(b) => i32::from_ne_bytes(b),
                    None if mtype == NLMSG_DONE => 0,
                    None => {
                        return Some(Err(NetlinkError::Decode(format!(
                            "NLMSG_ERROR of {} bytes",
                            payload.len()
                        ))))
                    }
                };
                return Some(match code {
                    0 => Ok(()),
                    c => Err(NetlinkError::Kernel(c.saturating_abs())),
                });
            }
            _ => {
                if let Err(e) = each(mtype, raw, payload) {
                    return Some(Err(e));
                }
            }
        }
    }
    None
}

/// Takes the messages of one received datagram for the exchange `seq`
/// ([`walk_datagram`]): replies are decoded and appended to `replies`,
/// undecodable ones skipped with a warning.
pub(crate) fn take_replies(
    buf: &[u8],
    seq: u32,
    replies: &mut Vec<RouteNetlinkMessage>,
) -> Option<Result<()>> {
    walk_datagram(buf, seq, |_, raw, _| {
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw) {
            Ok(NetlinkMessage {
                payload: NetlinkPayload::InnerMessage(inner),
                ..
            }) => replies.push(inner),
            Ok(_) => {}
            Err(e) => warn!("netlink: skipping undecodable message: {e}"),
        }
        Ok(())
    })
}

/// Runs a socket call again when a signal interrupted it.
fn retry_eintr(mut f: impl FnMut() -> io::Result<usize>) -> Result<usize> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map_err(NetlinkError::Io),
        }
    }
}

pub(crate) fn link_from(l: LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        up: l.header.flags.contains(LinkFlags::Up),
        flags: l.header.flags.bits(),
        mtu: 0,
        mac: None,
    };
    for attr in l.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Mtu(m) => link.mtu = m,
            LinkAttribute::Address(a) => link.mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            _ => {}
        }
    }
    link
}

pub(crate) fn addr_from(a: AddressMessage) -> Option<Addr> {
    let mut local = None;
    let mut address = None;
    let mut flags = u32::from(a.header.flags.bits());
    for attr in a.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(ip),
            AddressAttribute::Address(ip) => address = Some(ip),
            AddressAttribute::Flags(f) => flags = f.bits(),
            _ => {}
        }
    }
    let addr = match a.header.family {
        AddressFamily::Inet => local.or(address),
        _ => address.or(local),
    }?;
    Some(Addr {
        ifindex: a.header.index,
        addr,
        prefix: a.header.prefix_len,
        flags,
        scope: a.header.scope.into(),
    })
}

fn addr_msg(index: u32, addr: IpAddr, prefix: u8, scope: u8, flags: u32) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = Family::of(&addr).af();
    msg.header.index = index;
    msg.header.prefix_len = prefix;
    msg.header.scope = AddressScope::from(scope);
    // The header holds the low 8 bits, IFA_FLAGS all 32.
    msg.header.flags = AddressHeaderFlags::from_bits_retain((flags & 0xff) as u8);
    msg.attributes.push(AddressAttribute::Local(addr));
    msg.attributes.push(AddressAttribute::Address(addr));
    if flags != 0 {
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
                flags,
            )));
    }
    msg
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn route_addr(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

/// A plain [`Route`] from a dumped message, if it is a main-table unicast
/// route of IPv4 or IPv6.
pub(crate) fn route_from(r: RouteMessage) -> Option<Route> {
    let family = match r.header.address_family {
        AddressFamily::Inet => Family::V4,
        AddressFamily::Inet6 => Family::V6,
        _ => return None,
    };
    if r.header.kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(r.header.table);
    let mut route = Route {
        dst: family.unspecified(),
        prefix: r.header.destination_prefix_length,
        gateway: None,
        oif: 0,
        multipath: Vec::new(),
        priority: None,
        mtu: None,
        scope: r.header.scope.into(),
        protocol: r.header.protocol.into(),
    };
    for attr in r.attributes {
        match attr {
            RouteAttribute::Table(t) => table = t,
            RouteAttribute::Destination(d) => route.dst = ip_of(&d)?,
            RouteAttribute::Gateway(g) => route.gateway = ip_of(&g),
            RouteAttribute::Oif(o) => route.oif = o,
            RouteAttribute::Priority(p) => route.priority = Some(p),
            RouteAttribute::Metrics(metrics) => {
                route.mtu = metrics.iter().find_map(|m| match m {
                    RouteMetric::Mtu(mtu) => Some(*mtu),
                    _ => None,
                });
            }
            RouteAttribute::MultiPath(hops) => {
                route.multipath = hops
                    .into_iter()
                    .map(|nh| NextHop {
                        gateway: nh.attributes.iter().find_map(|a| match a {
                            RouteAttribute::Gateway(g) => ip_of(g),
                            _ => None,
                        }),
                        oif: nh.interface_index,
                        weight: u16::from(nh.hops) + 1,
                    })
                    .collect();
            }
            _ => {}
        }
    }
    (table == RT_TABLE_MAIN && Family::of(&route.dst) == family).then_some(route)
}

/// The `RTM_NEWROUTE` message for a plain [`Route`], in the main table.
/// Preferred source and nexthop ids are never set, nexthop flags are clear.
fn route_msg(route: &Route) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = route.family().af();
    msg.header.destination_prefix_length = route.prefix;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::from(route.protocol);
    msg.header.scope = RouteScope::from(route.scope);
    msg.header.kind = RouteType::Unicast;
    if route.prefix > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(route_addr(route.dst)));
    }
    if let Some(gw) = route.gateway {
        msg.attributes.push(RouteAttribute::Gateway(route_addr(gw)));
    }
    if route.oif != 0 {
        msg.attributes.push(RouteAttribute::Oif(route.oif));
    }
    if let Some(p) = route.priority {
        msg.attributes.push(RouteAttribute::Priority(p));
    }
    if let Some(mtu) = route.mtu {
        msg.attributes
            .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
    }
    if !route.multipath.is_empty() {
        let hops = route
            .multipath
            .iter()
            .map(|nh| {
                let mut hop = RouteNextHop::default();
                hop.flags = RouteNextHopFlags::empty();
                hop.hops = nh.weight.clamp(1, 256).saturating_sub(1) as u8;
                hop.interface_index = nh.oif;
                if let Some(gw) = nh.gateway {
                    hop.attributes.push(RouteAttribute::Gateway(route_addr(gw)));
                }
                hop
            })
            .collect();
        msg.attributes.push(RouteAttribute::MultiPath(hops));
    }
    msg
}

/// Brings up `lo` (always done in the target namespace, even without
/// `--config-net`).
pub fn lo_up(nl: &mut Netlink) -> Result<()> {
    nl.link_set_up(LO_IFINDEX)
}

/// How the routes of one family are set up in the namespace.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum NsRoutes {
    /// No route (beyond the prefix routes of the addresses).
    #[default]
    None,
    /// A single default route via this gateway (`-g`, `--no-copy-routes`,
    /// local mode).
    Gateway(IpAddr),
    /// Copy these host routes (from [`crate::conf::host::template_routes`]),
    /// which went through the host interface `host_ifindex`: their output
    /// interface becomes the tap, routes with nexthops elsewhere are dropped.
    Copy {
        host_ifindex: u32,
        routes: Vec<Route>,
    },
}

/// What `--config-net` gives one address family of the tap.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NsIpConf {
    /// Addresses with prefix lengths (a single `-a` one, or the host's
    /// copied ones). IPv6 addresses are added with `nodad`.
    pub addrs: Vec<(IpAddr, u8)>,
    pub routes: NsRoutes,
}

/// What `--config-net` applies to the tap in the namespace.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NsNetConf {
    /// MTU of the tap; 0 leaves it alone.
    pub mtu: u32,
    /// IPv4 configuration, None if IPv4 is disabled.
    pub v4: Option<NsIpConf>,
    /// IPv6 configuration, None if IPv6 is disabled.
    pub v6: Option<NsIpConf>,
}

/// What [`configure_ns`] learnt about the tap.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NsConfigured {
    /// The tap's IPv6 link-local address (the guest's link-local address
    /// "seen" before it speaks), if IPv6 is on and the kernel made one.
    pub ll6: Option<Ipv6Addr>,
}

/// The step of [`configure_ns`] that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NsConfStep {
    Mtu,
    Up,
    Addrs(Family),
    Routes(Family),
    LinkLocal,
    Noarp,
}

/// A failed step of the namespace configuration.
#[derive(Debug, thiserror::Error)]
#[error("cannot configure {step:?} in the namespace: {source}")]
pub struct NsConfError {
    pub(crate) step: NsConfStep,
    #[source]
    pub(crate) source: NetlinkError,
}

impl NsConfError {
    /// The errno of a kernel refusal (upstream disables a family in local
    /// mode on `EOPNOTSUPP`, e.g. IPv6 disabled in the namespace).
    pub(crate) fn errno(&self) -> Option<i32> {
        self.source.errno()
    }
}

/// Rewrites host routes for the tap: routes through `from` now go through
/// `to`; routes with an output interface or a nexthop elsewhere are dropped.
pub(crate) fn rewrite_routes(routes: &[Route], from: u32, to: u32) -> Vec<Route> {
    routes
        .iter()
        .filter(|r| {
            if r.multipath.is_empty() {
                r.oif == from
            } else {
                (r.oif == 0 || r.oif == from) && r.multipath.iter().all(|nh| nh.oif == from)
            }
        })
        .map(|r| {
            let mut r = r.clone();
            if r.oif != 0 {
                r.oif = to;
            }
            for nh in &mut r.multipath {
                nh.oif = to;
            }
            r
        })
        .collect()
}

/// Adds `routes` to the namespace, replaying the whole set once per route
/// so that routes depending on others get in once those are there.
pub(crate) fn replay_routes(nl: &mut Netlink, routes: &[Route]) -> Result<()> {
    for _ in 0..routes.len() {
        for r in routes {
            match nl.route_add(r) {
                Ok(()) => {}
                Err(NetlinkError::Kernel(
                    libc::EEXIST | libc::ENETUNREACH | libc::EHOSTUNREACH,
                )) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn family_addrs_routes(
    nl: &mut Netlink,
    ifindex: u32,
    family: Family,
    conf: &NsIpConf,
) -> std::result::Result<(), NsConfError> {
    let nodad = family == Family::V6;
    for &(addr, prefix) in &conf.addrs {
        nl.addr_add(ifindex, addr, prefix, nodad)
            .map_err(|source| NsConfError {
                step: NsConfStep::Addrs(family),
                source,
            })?;
    }
    let res = match &conf.routes {
        NsRoutes::None => Ok(()),
        NsRoutes::Gateway(gw) => nl.route_add_default(ifindex, *gw),
        NsRoutes::Copy {
            host_ifindex,
            routes,
        } => replay_routes(nl, &rewrite_routes(routes, *host_ifindex, ifindex)),
    };
    res.map_err(|source| NsConfError {
        step: NsConfStep::Routes(family),
        source,
    })
}

/// Applies `--config-net` to the tap `ifindex`, through `nl` opened inside
/// the namespace, in upstream's order: MTU; up (with `IFF_NOARP` if IPv6 is
/// on, so that the automatic link-local address skips DAD); IPv4 addresses
/// and routes; IPv6: link-local addresses marked `nodad`, `IFF_NOARP`
/// cleared, addresses (`nodad`) and routes.
pub fn configure_ns(
    nl: &mut Netlink,
    ifindex: u32,
    conf: &NsNetConf,
) -> std::result::Result<NsConfigured, NsConfError> {
    let fail = |step| move |source| NsConfError { step, source };
    let mut done = NsConfigured::default();

    if conf.mtu != 0 {
        nl.link_set_mtu(ifindex, conf.mtu)
            .map_err(fail(NsConfStep::Mtu))?;
    }
    if conf.v6.is_some() {
        nl.link_set_up_noarp(ifindex)
    } else {
        nl.link_set_up(ifindex)
    }
    .map_err(fail(NsConfStep::Up))?;

    if let Some(v4) = &conf.v4 {
        family_addrs_routes(nl, ifindex, Family::V4, v4)?;
    }

    if let Some(v6) = &conf.v6 {
        let lls: Vec<Addr> = nl
            .addrs(Family::V6, ifindex)
            .map_err(fail(NsConfStep::LinkLocal))?
            .into_iter()
            .filter(Addr::link_scope)
            .collect();
        for ll in &lls {
            nl.addr_set_nodad(ll).map_err(fail(NsConfStep::LinkLocal))?;
        }
        done.ll6 = lls.iter().find_map(|a| match a.addr {
            IpAddr::V6(v6) => Some(v6),
            IpAddr::V4(_) => None,
        });
        nl.link_set_noarp(ifindex, false)
            .map_err(fail(NsConfStep::Noarp))?;
        family_addrs_routes(nl, ifindex, Family::V6, v6)?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A netlink message of type `mtype` with sequence number `seq`.
    fn nlmsg(mtype: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
        m.extend_from_slice(&mtype.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m
    }

    #[test]
    fn replies_end_with_done_or_error() {
        let mut replies = Vec::new();
        // A stale reply is skipped, the exchange goes on.
        let stale = nlmsg(NLMSG_DONE, 7, &0i32.to_ne_bytes());
        assert!(take_replies(&stale, 1, &mut replies).is_none());
        let done = nlmsg(NLMSG_DONE, 1, &0i32.to_ne_bytes());
        assert!(matches!(take_replies(&done, 1, &mut replies), Some(Ok(()))));
        // EEXIST, with the request echoed after the code.
        let mut p = (-libc::EEXIST).to_ne_bytes().to_vec();
        p.extend_from_slice(&nlmsg(16, 1, &[]));
        let err = nlmsg(NLMSG_ERROR, 1, &p);
        assert!(matches!(
            take_replies(&err, 1, &mut replies),
            Some(Err(NetlinkError::Kernel(libc::EEXIST)))
        ));
        // A length field longer than the datagram: a decode error.
        let mut cut = done.clone();
        cut[0] = 200;
        assert!(matches!(
            take_replies(&cut, 1, &mut replies),
            Some(Err(NetlinkError::Decode(_)))
        ));
        assert!(replies.is_empty());
    }

    /// `NLMSG_DONE` carrying `i32::MIN`: negating it overflowed (a panic
    /// with overflow checks, a negative errno without). Found while
    /// moving the reply walk out of `exchange` for the netlink fuzz target.
    #[test]
    fn done_with_the_most_negative_code() {
        let done = nlmsg(NLMSG_DONE, 1, &i32::MIN.to_ne_bytes());
        match take_replies(&done, 1, &mut Vec::new()) {
            Some(Err(NetlinkError::Kernel(e))) => assert_eq!(e, i32::MAX),
            _ => panic!("NLMSG_DONE with an error code must end the exchange with it"),
        }
    }

    fn r4(dst: &str, prefix: u8, gw: Option<&str>, oif: u32) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            prefix,
            gateway: gw.map(|g| g.parse().unwrap()),
            oif,
            multipath: Vec::new(),
            priority: None,
            mtu: None,
            scope: 0,
            protocol: RTPROT_BOOT,
        }
    }

    #[test]
    fn rewrite_drops_foreign_routes() {
        let mut mp = r4("0.0.0.0", 0, None, 0);
        mp.multipath = vec![
            NextHop {
                gateway: Some("10.0.0.1".parse().unwrap()),
                oif: 2,
                weight: 1,
            },
            NextHop {
                gateway: Some("10.0.0.2".parse().unwrap()),
                oif: 2,
                weight: 5,
            },
        ];
        let mut foreign_mp = mp.clone();
        foreign_mp.multipath[1].oif = 3;
        let routes = vec![
            r4("10.0.0.0", 24, None, 2),
            r4("192.168.0.0", 16, Some("10.0.0.1"), 3),
            mp.clone(),
            foreign_mp,
        ];
        let out = rewrite_routes(&routes, 2, 7);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].oif, 7);
        assert!(out[1].multipath.iter().all(|nh| nh.oif == 7));
        assert_eq!(out[1].best_gateway(), Some("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn route_message_round_trip() {
        let mut r = r4("10.1.0.0", 16, Some("10.0.0.1"), 4);
        r.priority = Some(100);
        r.mtu = Some(1400);
        let back = route_from(route_msg(&r)).unwrap();
        assert_eq!(back, r);
    }
}
