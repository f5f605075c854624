//! The context one event loop owns, and the loop itself.
//!
//! ## A frame's way in
//!
//! The tap is readable: [`Tap::recv`] reads a batch of frames into the
//! preallocated [`RxBatch`]. Each frame goes through
//! [`wire::classify`](crate::wire::classify), the single gate that checks
//! every header and length; a frame that fails is counted under its
//! [`DropReason`] and logged at trace level. A classified frame is then
//! dispatched by layer:
//!
//! - ARP → [`arp`](crate::arp): proxy replies;
//! - ICMPv6 133–136 → [`ndp`](crate::ndp): router and neighbour
//!   advertisements;
//! - UDP to port 67 → [`dhcp`](crate::dhcp), UDP to port 547 →
//!   [`dhcpv6`](crate::dhcpv6);
//! - ICMP/ICMPv6 echo requests → [`icmp`](crate::icmp) ping sockets;
//! - TCP → [`tcp`](crate::tcp), other UDP → [`udp`](crate::udp): flows
//!   toward host sockets.
//!
//! `Ctx::frame_in` checks the frame, learns the guest's MAC and source
//! address, reads L3 once, then has one match on L4.
//!
//! Replies are built in place in the tap's [`TxQueue`](crate::tap::TxQueue)
//! and flushed at the end of the loop iteration, or earlier when the queue
//! fills up (a batch of data larger than the queue).
//!
//! ## A socket's data out
//!
//! epoll reports a socket by its [`EpollRef`]: the kind says which handler,
//! the index which flow, with no lookup. The handler reads, frames the data
//! for the guest into the transmit queue, and the same end-of-iteration
//! flush sends it.
//!
//! ## Ownership
//!
//! [`Ctx`] owns everything mutable: the epoll set, the tap and its buffers,
//! flows, the forwarding tables with their listening sockets ([`Fwd`]),
//! service state, counters, what the guest is told now
//! ([`crate::live::Live`]) and the watchers that change it when the host
//! changes ([`crate::follow`]). The [`Config`] is borrowed read-only. A second
//! loop (another queue, another worker) would be another `Ctx`.
//!
//! The flow table is generic ([`crate::flow`]); its slot type, [`Flow`],
//! is defined here, the one module above every protocol, and each
//! protocol's handlers see the table as `dyn ProtoFlows` of their own flow
//! type. A listener's event goes from its epoll reference to
//! [`Fwd::listening`] (table, rule and slot: indexing, no search) and on to
//! the protocol's accept or receive function.

use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::conf::{Config, Proto};
use crate::event::{Epoll, EpollRef, Event, Kind};
use crate::flow::{FlowKind, FlowTable};
use crate::fwd::Fwd;
pub(crate) use crate::guest::GuestState;
use crate::icmp::Icmp;
use crate::pasta::{QuitWatch, Spawned};
use crate::tap::{RxBatch, RxEnd, Tap};
use crate::tcp::{Tcp, TcpCtx};
use crate::wire::classify::{classify_with, Classified, DropReason, L3, L4};
use crate::wire::Mac;

/// What a flow is, per protocol: the one table holds them all. Defined
/// here, above the protocols, so that the table ([`crate::flow`]) names
/// none of them; each protocol sees it through
/// [`ProtoFlows`](crate::flow::ProtoFlows) of its own flow type.
pub(crate) enum Flow {
    /// A TCP connection between the guest and a host socket.
    Tcp(crate::tcp::TcpConn),
    /// An ICMP/ICMPv6 echo flow through a ping socket.
    Ping(crate::icmp::PingFlow),
    /// A spliced TCP connection between the host's and the namespace's
    /// loopback (pasta).
    TcpSplice(crate::tcp::splice::SpliceConn),
    /// A UDP flow (tap or spliced).
    Udp(crate::udp::UdpFlow),
}

/// The flow table of one loop.
pub(crate) type Flows = FlowTable<Flow>;

/// [`FlowKind`] for each variant of [`Flow`].
macro_rules! flow_kind {
    ($variant:ident, $t:ty) => {
        impl FlowKind<$t> for Flow {
            fn wrap(t: $t) -> Self {
                Flow::$variant(t)
            }

            fn peek(&self) -> Option<&$t> {
                match self {
                    Flow::$variant(f) => Some(f),
                    _ => None,
                }
            }

            fn peek_mut(&mut self) -> Option<&mut $t> {
                match self {
                    Flow::$variant(f) => Some(f),
                    _ => None,
                }
            }
        }
    };
}

flow_kind!(Tcp, crate::tcp::TcpConn);
flow_kind!(Ping, crate::icmp::PingFlow);
flow_kind!(TcpSplice, crate::tcp::splice::SpliceConn);
flow_kind!(Udp, crate::udp::UdpFlow);

/// Counters of the L2/L3 path.
#[derive(Clone, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) drops: [u64; DropReason::COUNT],
    pub(crate) over_mtu: u64,
    pub(crate) arp_replies: u64,
    pub(crate) ndp_replies: u64,
    pub(crate) dhcp_replies: u64,
    pub(crate) dhcpv6_replies: u64,
    pub(crate) unhandled_l4: u64,
}

impl std::fmt::Display for Counters {
    /// `name=value` pairs, the format tests read from the exit log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "over_mtu={} arp_replies={} ndp_replies={} dhcp_replies={} dhcpv6_replies={} unhandled_l4={}",
            self.over_mtu,
            self.arp_replies,
            self.ndp_replies,
            self.dhcp_replies,
            self.dhcpv6_replies,
            self.unhandled_l4
        )
    }
}

/// The per-reason drop counters as `name=value` pairs (every reason, so
/// that a test can read a zero).
struct DropCounters<'a>(&'a [u64; DropReason::COUNT]);

impl std::fmt::Display for DropCounters<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut total = 0u64;
        for (r, n) in DropReason::ALL.iter().zip(self.0) {
            write!(f, "{}={n} ", r.key())?;
            total += n;
        }
        write!(f, "total={total}")
    }
}

/// Kinds of rate-limited drop lines: one per [`DropReason`], and one for
/// frames over the MTU.
const DROP_LOG_KINDS: usize = DropReason::COUNT + 1;
/// The [`DROP_LOG_KINDS`] index of frames over the MTU.
const DROP_LOG_OVER_MTU: usize = DropReason::COUNT;

/// The rate limit of per-frame drop lines.
pub(crate) type DropLog = crate::log::RateLimit<DROP_LOG_KINDS>;

/// The built-in services whose requests are rate-limited.
#[derive(Clone, Copy)]
enum Service {
    Arp,
    Ndp,
    Dhcp,
    Dhcpv6,
}

/// Requests each built-in service (ARP, NDP, DHCP, DHCPv6) answers per
/// second; the rest are dropped (`rate_limited`).
///
/// A real client sends a handful: a boot is one ARP request, a router
/// solicitation, a few neighbour solicitations, two DHCP and two DHCPv6
/// messages; a guest with hundreds of addresses doing duplicate address
/// detection stays far below. A flood of them, though, costs a write to
/// the tap per reply (and the guest's kernel handles each reply in that
/// write): at full rate that is more work per frame than the flooder
/// spends, pasta falls behind, the kernel's tap queue overflows and the
/// guest's other frames (an established transfer's segments) are lost
/// there. Over the budget a request costs what a malformed frame costs:
/// read, classified, counted.
const SERVICE_REQUESTS_PER_SEC: u32 = 1000;

/// What each [`Service`] answered in the current second.
#[derive(Clone, Debug, Default)]
struct ServiceBudget {
    used: [u32; 4],
}

impl ServiceBudget {
    /// Takes one request of `s` from the budget: false if it is spent.
    fn take(&mut self, s: Service) -> bool {
        let Some(used) = self.used.get_mut(s as usize) else {
            return false;
        };
        if *used >= SERVICE_REQUESTS_PER_SEC {
            return false;
        }
        *used += 1;
        true
    }

    /// A new second.
    fn tick(&mut self) {
        self.used = [0; 4];
    }
}

/// Why the loop ended: the process exit status.
pub(crate) type ExitCode = i32;

/// Everything one event loop owns.
pub(crate) struct Ctx<'c> {
    pub(crate) conf: &'c Config,
    pub(crate) epoll: Epoll,
    pub(crate) tap: Tap,
    rx: RxBatch,
    pub(crate) guest: GuestState,
    /// What the guest is told now: the configuration's values as they
    /// follow the host ([`crate::follow`]).
    pub(crate) live: crate::live::Live,
    pub(crate) flows: Flows,
    pub(crate) icmp: Icmp,
    pub(crate) tcp: Tcp,
    pub(crate) udp: crate::udp::Udp,
    pub(crate) dhcpv6: crate::dhcpv6::Dhcpv6Server,
    pub(crate) ra: crate::ndp::RaTimer,
    /// xorshift state for RA jitter.
    rng: u64,
    pub(crate) counters: Counters,
    /// Rate limit of the lines about dropped frames (a flood of bad frames
    /// is counted exactly, but logged a few lines a second).
    drop_log: DropLog,
    /// Requests answered by the built-in services this second.
    services: ServiceBudget,
    /// pasta: the namespace, to open sockets in it at run time.
    pub(crate) netns: Option<crate::pasta::NetNs>,
    /// The forwarding tables and their listening sockets.
    pub(crate) fwd: Fwd,
    /// `-c`: the configuration socket, through which clients change
    /// `fwd`'s tables.
    pub(crate) control: Option<crate::ctl::Control>,
    /// The watchers of the host's resolv.conf, addresses and routes.
    follow: crate::follow::Follower,
    signals: OwnedFd,
    spawned: Option<Spawned>,
    quit: Option<QuitWatch>,
    /// The command exited: its status, and when we stop waiting for its
    /// connections to close.
    exiting: Option<(ExitCode, Instant)>,
}

/// How long connections may outlive the spawned command.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// How often periodic work runs (timeouts, RA timer).
const TICK: Duration = Duration::from_secs(1);

impl<'c> Ctx<'c> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        conf: &'c Config,
        epoll: Epoll,
        tap: Tap,
        guest_mac: Option<Mac>,
        signals: OwnedFd,
        spawned: Option<Spawned>,
        quit: Option<QuitWatch>,
        tcp: Tcp,
        fwd: Fwd,
    ) -> io::Result<Self> {
        fwd.register(&epoll)?;
        epoll.add(&signals, EpollRef::new(Kind::Signal, 0))?;
        if let Some(s) = &spawned {
            epoll.add(&s.pidfd, EpollRef::new(Kind::Child, 0))?;
        }
        if let Some(q) = &quit {
            let kind = match q {
                QuitWatch::Inotify { .. } => Kind::NsQuitInotify,
                QuitWatch::Timer { .. } => Kind::NsQuitTimer,
            };
            epoll.add(q.fd(), EpollRef::new(kind, 0))?;
        }
        match &tap.backend {
            crate::tap::Backend::Tun(fd) => epoll.add(fd, EpollRef::new(Kind::Tap, 0))?,
            crate::tap::Backend::Stream(s) => {
                if let Some(l) = s.listener() {
                    epoll.add(l, EpollRef::new(Kind::TapListen, 0))?;
                }
                if let Some(c) = s.conn() {
                    epoll.add(c, EpollRef::new(Kind::Tap, 0))?;
                }
            }
            crate::tap::Backend::VhostUser(v) => {
                if let Some(l) = v.listener() {
                    epoll.add(l, EpollRef::new(Kind::TapListen, 0))?;
                }
                if let Some(c) = v.conn() {
                    epoll.add(c, EpollRef::new(Kind::VhostUserCtl, 0))?;
                }
            }
        }
        let secs_since_2000 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_sub(946_684_800) as u32)
            .unwrap_or(0);
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Ok(Ctx {
            conf,
            epoll,
            tap,
            rx: RxBatch::new(),
            guest: GuestState {
                mac: guest_mac.unwrap_or([0xff; 6]),
                addr4_seen: conf.ip4.as_ref().map(|c| c.addr),
                addr6_seen: conf.ip6.as_ref().and_then(|c| c.addr),
                addr6_ll_seen: None,
            },
            live: crate::live::Live::new(conf),
            flows: Flows::new(conf.test.flow_max.unwrap_or(crate::flow::FLOW_MAX)),
            icmp: Icmp::new(conf),
            tcp,
            udp: crate::udp::Udp::new(conf),
            dhcpv6: crate::dhcpv6::Dhcpv6Server::new(conf, secs_since_2000),
            ra: crate::ndp::RaTimer::new(),
            rng: u64::from_ne_bytes(seed) | 1,
            counters: Counters::default(),
            drop_log: DropLog::default(),
            services: ServiceBudget::default(),
            netns: None,
            fwd,
            control: None,
            follow: crate::follow::Follower::default(),
            signals,
            spawned,
            quit,
            exiting: None,
        })
    }

    /// Sends the probes that teach us the guest's MAC quickly (an ARP
    /// request and a neighbour solicitation for its addresses), once the
    /// link is configured.
    pub(crate) fn probe_guest(&mut self) {
        let (conf, live) = (self.conf, &self.live);
        if conf.ip4.is_some() {
            self.tap
                .send_with(|out| crate::arp::probe_guest(conf, live, out));
        }
        if conf.ip6.is_some() && !conf.no_ndp {
            self.tap
                .send_with(|out| crate::ndp::solicit_guest(conf, live, out));
        }
        self.tap.flush();
    }

    /// TCP and what its handlers need, borrowed apart from the rest, and
    /// the forwarding tables (for listener events).
    fn tcp_ctx(&mut self) -> (&mut Tcp, TcpCtx<'_>, &Fwd) {
        (
            &mut self.tcp,
            TcpCtx {
                conf: self.conf,
                live: &self.live,
                flows: &mut self.flows,
                epoll: &self.epoll,
                tap: &mut self.tap,
                guest: &self.guest,
            },
            &self.fwd,
        )
    }

    /// UDP and what its handlers need, borrowed apart from the rest, and
    /// the forwarding tables (for listener events).
    fn udp_ctx(&mut self) -> (&mut crate::udp::Udp, crate::udp::UdpCtx<'_>, &Fwd) {
        (
            &mut self.udp,
            crate::udp::UdpCtx {
                conf: self.conf,
                live: &self.live,
                flows: &mut self.flows,
                epoll: &self.epoll,
                tap: &mut self.tap,
                guest: &self.guest,
                netns: self.netns.as_ref(),
            },
            &self.fwd,
        )
    }

    /// Watches the host with `follow` (opened before isolation).
    pub(crate) fn set_follow(&mut self, follow: crate::follow::Follower) -> io::Result<()> {
        follow.register(&self.epoll)?;
        self.follow = follow;
        Ok(())
    }

    /// Acts on a change of the host that [`crate::follow`] made to
    /// [`Self::live`]: an unsolicited router advertisement (new prefix or
    /// nameservers), and the guest's new address for the flows to come
    /// (pasta `--config-net` gave it).
    fn followed(&mut self, changed: crate::follow::Changed) {
        let conf = self.conf;
        if changed.ra && conf.ip6.is_some() && !conf.no_ndp && !conf.no_ra {
            let live = &self.live;
            self.tap
                .send_with(|out| crate::ndp::unsolicited_ra(conf, live, out));
            log::info!("NDP: sent a router advertisement with the new prefix and nameservers");
        }
        if let Some(a) = changed.addr4 {
            self.guest.addr4_seen = Some(a);
        }
        if let Some(a) = changed.addr6 {
            self.guest.addr6_seen = Some(a);
        }
    }

    /// Lets a spawned command start (pasta spawn mode).
    pub(crate) fn start_command(&mut self) {
        if let Some(s) = self.spawned.as_mut() {
            s.start();
        }
    }

    /// Runs until a signal, the guest or the namespace ends us.
    pub(crate) fn run(&mut self) -> ExitCode {
        let mut events: Vec<Event> = Vec::with_capacity(64);
        let mut next_tick = Instant::now() + TICK;
        loop {
            let mut timeout = if self.exiting.is_some() {
                50
            } else {
                next_tick
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(1000) as i32
            };
            if let Some(ms) = self.tap.poll_interval() {
                timeout = timeout.min(ms);
            }
            if let Some(d) = self.tcp.ack_deadline() {
                let ms = d.saturating_duration_since(Instant::now()).as_millis() as i32;
                timeout = timeout.min(ms.max(1));
            }
            if let Err(e) = self.epoll.wait_into(timeout, &mut events) {
                log::error!("epoll_wait: {e}");
                return 1;
            }
            for ev in events.iter().copied() {
                if let Some(code) = self.handle(ev) {
                    self.tap.flush();
                    self.log_counters();
                    return code;
                }
            }
            let now = Instant::now();
            if self.tcp.ack_deadline().is_some_and(|d| now >= d) {
                let (tcp, mut c, _) = self.tcp_ctx();
                tcp.flush_delayed_acks(&mut c);
            }
            if now >= next_tick {
                self.timer(now);
                next_tick = now + TICK;
            }
            if let Some(code) = self.poll_rings() {
                return code;
            }
            self.flush_tap();
            self.tcp.defer(&mut self.flows, &self.epoll);
            if let Some((code, deadline)) = self.exiting {
                if self.tcp.open_conns() == 0 || Instant::now() >= deadline {
                    self.log_counters();
                    return code;
                }
            }
        }
    }

    /// The counters, at exit, in the `name=value` lines tests read.
    fn log_counters(&self) {
        log::debug!("TCP counters: {}", self.tcp.stats);
        log::debug!("tap counters: {}", self.tap.stats);
        log::debug!("frames counters: {}", self.counters);
        log::debug!("drop counters: {}", DropCounters(&self.counters.drops));
        log::debug!("UDP counters: {}", self.udp.stats);
        log::debug!(
            "alloc counters: allocations={}",
            crate::sys::alloc::allocations()
        );
    }

    /// vhost-user: drains transmit rings that have chains we were not
    /// kicked for (see [`crate::tap::vhost_user::VhostUser::poll`]).
    fn poll_rings(&mut self) -> Option<ExitCode> {
        let pending = self.tap.vhost_user().map_or(0, |v| v.poll());
        for ring in 0..32 {
            if pending & (1 << ring) != 0 {
                if let Some(code) = self.tap_readable(ring, false) {
                    return Some(code);
                }
            }
        }
        None
    }

    /// Sends what is queued for the guest. If that cleared a backlog (a
    /// vhost-user ring got buffers again), connections that waited for
    /// room send again, and that goes out too.
    fn flush_tap(&mut self) {
        let was_blocked = self.tap.blocked();
        self.tap.flush();
        if was_blocked && !self.tap.blocked() {
            let (tcp, mut c, _) = self.tcp_ctx();
            tcp.tap_ready(&mut c);
            self.tap.flush();
        }
    }

    fn handle(&mut self, ev: Event) -> Option<ExitCode> {
        // Frames of a flow leave on the queue pair its guest side uses.
        match ev.r.kind {
            Kind::Ping | Kind::TcpSock => self.tap.tx.pair = self.flows.pair(ev.r.index),
            Kind::UdpSock => {
                let (flow, _) = crate::event::split_flow_side(ev.r.index);
                self.tap.tx.pair = self.flows.pair(flow);
            }
            _ => {}
        }
        match ev.r.kind {
            Kind::Tap => return self.tap_readable(ev.r.index, true),
            Kind::TapListen => self.tap_accept(),
            Kind::VhostUserCtl => return self.vhost_user_control(),
            Kind::Signal => return self.signal(),
            Kind::Child => {
                if let Some(code) = self.spawned.as_ref().and_then(Spawned::exit_status) {
                    return self.command_exited(code);
                }
            }
            Kind::NsQuitInotify | Kind::NsQuitTimer => {
                if self.quit.as_ref().is_some_and(QuitWatch::gone) {
                    log::info!("Namespace is gone, exiting");
                    return Some(0);
                }
            }
            Kind::Ping => {
                let conf = self.conf;
                let mac = self.guest.mac;
                let tap = &mut self.tap;
                self.icmp
                    .sock_readable(conf, &mut self.flows, ev.r.index, |reply| {
                        tap.send_with(|out| crate::icmp::reply_frame(conf, mac, reply, out));
                    });
            }
            Kind::TcpSock => {
                let (tcp, mut c, _) = self.tcp_ctx();
                tcp.sock_event(&mut c, ev.r.index, &ev);
            }
            Kind::TcpListen | Kind::TcpListenNs => {
                // The table names the socket and its rule (nothing if it
                // was closed earlier in this batch; another socket, if a
                // table change reused the slot: then it must be TCP's).
                let kind = ev.r.kind;
                let (tcp, mut c, fwd) = self.tcp_ctx();
                let tcp_rule = |l: &crate::fwd::rules::Listening<'_>| l.rule.proto == Proto::Tcp;
                if let Some(l) = fwd.listening(ev.r.index).filter(tcp_rule) {
                    if kind == Kind::TcpListen {
                        tcp.listen_event(&mut c, &l, ev.r);
                    } else {
                        tcp.listen_ns_event(&mut c, &l, ev.r);
                    }
                }
            }
            Kind::TcpSplice => {
                self.tcp
                    .splice_event(&mut self.flows, &self.epoll, ev.r.index, &ev);
            }
            Kind::UdpSock => {
                let (udp, mut c, _) = self.udp_ctx();
                udp.sock_event(&mut c, ev.r.index, &ev);
            }
            Kind::CtlListen | Kind::CtlConn => {
                let mut control = self.control.take()?;
                let mut t = self.ctl_tables();
                if ev.r.kind == Kind::CtlListen {
                    control.accept(&mut t);
                } else {
                    control.event(&mut t, ev.writable);
                }
                self.control = Some(control);
            }
            Kind::FollowResolv => {
                let changed = self.follow.resolv_event(self.conf, &mut self.live);
                self.followed(changed);
            }
            Kind::FollowRoutes => {
                let changed = self.follow.routes_event(self.conf, &mut self.live);
                self.followed(changed);
            }
            Kind::UdpListen => {
                let (udp, mut c, fwd) = self.udp_ctx();
                let udp_rule = |l: &crate::fwd::rules::Listening<'_>| l.rule.proto == Proto::Udp;
                if let Some(l) = fwd.listening(ev.r.index).filter(udp_rule) {
                    udp.listen_event(&mut c, &l);
                }
            }
        }
        None
    }

    /// The spawned command exited. Connections it left behind may still
    /// carry data its kernel had not sent yet (a last write before exit):
    /// keep relaying until they close, for a short grace period at most.
    fn command_exited(&mut self, code: ExitCode) -> Option<ExitCode> {
        log::debug!("Command exited with status {code}");
        if self.tcp.open_conns() == 0 {
            return Some(code);
        }
        if self.exiting.is_none() {
            self.exiting = Some((code, Instant::now() + EXIT_GRACE));
        }
        None
    }

    fn signal(&mut self) -> Option<ExitCode> {
        while let Ok(Some(sig)) = crate::sys::signalfd_read(&self.signals) {
            match sig as i32 {
                libc::SIGTERM | libc::SIGQUIT => {
                    log::info!("Terminated by signal {sig}, exiting");
                    return Some(0);
                }
                libc::SIGINT if self.spawned.is_none() => {
                    log::info!("Interrupted, exiting");
                    return Some(0);
                }
                libc::SIGCHLD => {
                    if let Some(code) = self.spawned.as_ref().and_then(Spawned::exit_status) {
                        return self.command_exited(code);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Frames from the guest: the tap device or passt's socket is
    /// readable, or (vhost-user) ring `ring` was kicked.
    fn tap_readable(&mut self, ring: u32, mut kicked: bool) -> Option<ExitCode> {
        loop {
            let r = self.tap.recv(&mut self.rx, ring, kicked);
            kicked = false;
            let end = match r {
                Ok(end) => end,
                Err(e) if self.tap.is_session() => {
                    // Frames cut out before the error are still good.
                    self.frames_in();
                    self.rx.clear();
                    return self.tap_disconnected(&e);
                }
                Err(e) => {
                    log::error!("{e}, exiting");
                    return Some(1);
                }
            };
            self.frames_in();
            self.udp.flush_from_tap(&mut self.flows, &self.rx);
            let (tcp, mut c, _) = self.tcp_ctx();
            tcp.flush_acks(&mut c);
            if end == RxEnd::Drained {
                return None;
            }
        }
    }

    /// Every frame of the receive batch, in order. Replies leave on the
    /// batch's queue pair, and flows learn it (vhost-user multi-queue).
    fn frames_in(&mut self) {
        self.tap.tx.pair = self.rx.pair;
        self.flows.set_tap_pair(self.rx.pair);
        for i in 0..self.rx.len() {
            self.frame_in(i);
        }
    }

    /// passt: a client connects to the listening socket.
    fn tap_accept(&mut self) {
        use crate::tap::stream::Accepted;
        let (accepted, kind) = if let Some(s) = self.tap.stream() {
            (s.accept(), Kind::Tap)
        } else if let Some(v) = self.tap.vhost_user() {
            (v.accept(), Kind::VhostUserCtl)
        } else {
            return;
        };
        match accepted {
            Ok(Accepted::New) => {
                let watched = match &self.tap.backend {
                    crate::tap::Backend::Stream(s) => s.conn(),
                    crate::tap::Backend::VhostUser(v) => v.conn(),
                    crate::tap::Backend::Tun(_) => None,
                }
                .map(|c| self.epoll.add(c, EpollRef::new(kind, 0)));
                if let Some(Err(e)) = watched {
                    log::error!("Can't watch the guest socket: {e}");
                    if let Some(s) = self.tap.stream() {
                        s.disconnect();
                    } else if let Some(v) = self.tap.vhost_user() {
                        v.disconnect();
                    }
                    return;
                }
                log::info!("Client connected");
                self.guest.mac = [0xff; 6];
                // vhost-user: the rings are not set up yet; the probes go
                // when the first ring starts.
                if kind == Kind::Tap {
                    self.probe_guest();
                }
            }
            Ok(_) => {}
            Err(e) => log::warn!("Accepting a guest connection failed: {e}"),
        }
    }

    /// vhost-user: a message from the front-end. New kick descriptors are
    /// watched, and their rings drained once (frames may be there already).
    fn vhost_user_control(&mut self) -> Option<ExitCode> {
        match self.tap.vhost_user()?.control() {
            crate::tap::vhost_user::Control::Done => {}
            crate::tap::vhost_user::Control::Closed(e) => return self.tap_disconnected(&e),
        }
        let mut started = 0u32;
        let epoll = &self.epoll;
        if let Some(v) = self.tap.vhost_user() {
            v.new_kicks(
                |ring, fd| match epoll.add(fd, EpollRef::new(Kind::Tap, ring)) {
                    Ok(()) => started |= 1 << ring,
                    Err(e) => log::error!("vhost-user: can't watch the kick of ring {ring}: {e}"),
                },
            );
        }
        for ring in 0..32 {
            if started & (1 << ring) == 0 {
                continue;
            }
            // The first receive ring up: the guest can hear our probes.
            if ring == 0 {
                self.probe_guest();
            }
            if ring % 2 == 1 {
                if let Some(code) = self.tap_readable(ring, false) {
                    return Some(code);
                }
            }
        }
        None
    }

    /// passt: the client went away, or broke the framing. Wait for the
    /// next one, or exit with `--one-off`.
    fn tap_disconnected(&mut self, why: &io::Error) -> Option<ExitCode> {
        if why.kind() == io::ErrorKind::UnexpectedEof {
            log::info!("{why}");
        } else {
            log::warn!("{why}, resetting the connection");
        }
        let one_off = self.conf.passt.as_ref().is_some_and(|p| p.one_off);
        if let Some(s) = self.tap.stream() {
            if let Some(c) = s.disconnect() {
                let _ = self.epoll.del(&c);
            }
        }
        if let Some(v) = self.tap.vhost_user() {
            if let Some(c) = v.disconnect() {
                let _ = self.epoll.del(&c);
            }
        }
        self.tap.tx.clear_all();
        if one_off {
            log::info!("Exiting after the client's disconnection (--one-off)");
            return Some(0);
        }
        None
    }

    /// One frame from the guest, by index in the receive batch: checked,
    /// then learnt from (the guest's MAC and addresses), then handed to
    /// the service or protocol for its L4 header.
    fn frame_in(&mut self, i: usize) {
        let conf = self.conf;
        let log = &mut self.drop_log;
        let Some(c) = checked_frame(conf, &self.rx, i, &mut self.counters, log) else {
            return;
        };
        if let Err(reason) = check_addresses(&self.live, self.fwd.targets(), &c.l3) {
            self.counters.drops[reason.index()] += 1;
            if log.allow(reason.index()) {
                log::debug!("tap: dropped frame: {reason}");
            }
            return;
        }
        // The guest's MAC is whatever it sends from (unicast sources only).
        if c.src_mac[0] & 1 == 0 {
            self.guest.mac = c.src_mac;
        }
        // Requests to the built-in services, within their budget.
        let service = match c.l3 {
            L3::Arp(_) => Some(Service::Arp),
            L3::Ipv6 {
                l4: L4::Icmpv6 { msg_type: t, .. },
                ..
            } if crate::ndp::is_ndp(t) && !conf.no_ndp => Some(Service::Ndp),
            L3::Ipv4 {
                l4: L4::Udp { dport: 67, .. },
                ..
            } => Some(Service::Dhcp),
            L3::Ipv6 {
                l4: L4::Udp { dport: 547, .. },
                ..
            } => Some(Service::Dhcpv6),
            _ => None,
        };
        if service.is_some_and(|s| !self.services.take(s)) {
            let reason = DropReason::RateLimited;
            self.counters.drops[reason.index()] += 1;
            if log.allow(reason.index()) {
                log::debug!("tap: dropped frame: {reason}");
            }
            return;
        }
        // L3, once: ARP is answered here, IP gives its two addresses.
        let (src, dst, l4) = match c.l3 {
            L3::Arp(_) => {
                let live = &self.live;
                let sent = answer(&mut self.tap, |out| crate::arp::handle(conf, live, &c, out));
                self.counters.arp_replies += u64::from(sent);
                return;
            }
            L3::Ipv4 { src, dst, l4, .. } => (IpAddr::V4(src), IpAddr::V4(dst), l4),
            L3::Ipv6 { src, dst, l4, .. } => (IpAddr::V6(src), IpAddr::V6(dst), l4),
        };
        // Not from a rule's target address: the guest's own stays the
        // destination of the other inbound flows.
        if !self.fwd.targets().contains(&src) {
            learn_address(&mut self.guest, src);
        }
        let (tap, counters, guest, live) =
            (&mut self.tap, &mut self.counters, &self.guest, &self.live);
        // L4, once.
        match (l4, src, dst) {
            (L4::Icmpv6 { msg_type: t, .. }, _, _) if crate::ndp::is_ndp(t) => {
                if conf.no_ndp {
                    return;
                }
                let sent = answer(tap, |out| crate::ndp::handle(conf, live, &c, out));
                log::trace!(
                    "NDP: type {t} from {src}: {}",
                    if sent { "answered" } else { "not answered" }
                );
                counters.ndp_replies += u64::from(sent);
            }
            (L4::Udp { dport: 67, .. }, IpAddr::V4(_), _) => {
                let sent = answer(tap, |out| crate::dhcp::handle(conf, live, &c, out));
                counters.dhcp_replies += u64::from(sent);
            }
            (L4::Udp { dport: 547, .. }, IpAddr::V6(_), _) => {
                let server = &self.dhcpv6;
                let sent = answer(tap, |out| server.handle(conf, live, &c, out));
                counters.dhcpv6_replies += u64::from(sent);
            }
            (
                L4::Icmp {
                    msg_type: 8,
                    message,
                    ..
                },
                ..,
            )
            | (
                L4::Icmpv6 {
                    msg_type: 128,
                    message,
                    ..
                },
                ..,
            ) => {
                self.icmp
                    .from_tap(conf, live, &mut self.flows, &self.epoll, src, dst, message);
            }
            (L4::Tcp(seg), ..) if !conf.no_tcp => {
                let mut c = TcpCtx {
                    conf,
                    live,
                    flows: &mut self.flows,
                    epoll: &self.epoll,
                    tap,
                    guest,
                };
                self.tcp.from_tap(&mut c, src, dst, &seg);
            }
            (
                L4::Udp {
                    sport,
                    dport,
                    payload,
                },
                ..,
            ) if !conf.no_udp => {
                let mut c = crate::udp::UdpCtx {
                    conf,
                    live,
                    flows: &mut self.flows,
                    epoll: &self.epoll,
                    tap,
                    guest,
                    netns: self.netns.as_ref(),
                };
                self.udp
                    .from_tap(&mut c, &self.rx, i, src, dst, sport, dport, payload);
            }
            _ => counters.unhandled_l4 += 1,
        }
    }

    /// Serves the configuration socket `control` (if any) from this loop.
    pub(crate) fn set_control(
        &mut self,
        mut control: Option<crate::ctl::Control>,
    ) -> io::Result<()> {
        if let Some(c) = &mut control {
            c.register(&self.epoll)?;
        }
        self.control = control;
        Ok(())
    }

    /// What the configuration socket works on: the forwarding tables
    /// and what changing them needs.
    fn ctl_tables(&mut self) -> crate::ctl::Tables<'_> {
        use crate::wire::pesto;
        let conf = self.conf;
        let families = self.fwd.families();
        let mut caps = pesto::CAP_IFNAME;
        for (on, bit) in [
            (families.v4, pesto::CAP_IPV4),
            (families.v6, pesto::CAP_IPV6),
            (!conf.no_tcp, pesto::CAP_TCP),
            (!conf.no_udp, pesto::CAP_UDP),
            (self.netns.is_some(), pesto::CAP_SCAN),
        ] {
            if on {
                caps |= bit;
            }
        }
        crate::ctl::Tables {
            fwd: &mut self.fwd,
            epoll: &self.epoll,
            netns: self.netns.as_ref(),
            caps: crate::fwd::rules::Caps(caps),
            freebind: conf.freebind,
        }
    }

    /// Scans the ports of `auto` rules and follows them (pasta).
    pub(crate) fn scan_ports(&mut self) {
        self.fwd.scan(&self.epoll, self.netns.as_ref());
    }

    fn timer(&mut self, now: Instant) {
        self.drop_log.tick(|i, n| {
            let why = DropReason::ALL
                .get(i)
                .map_or("exceeds the MTU", |r| r.as_str());
            log::debug!("tap: dropped {n} more frames: {why}");
        });
        self.udp.log_tick();
        self.services.tick();
        self.scan_ports();
        if let Some(c) = self.control.as_mut() {
            c.timer(&self.epoll, now);
        }
        self.icmp.timer(&mut self.flows, &self.epoll, now);
        self.udp.timer(&mut self.flows, &self.epoll, now);
        let (tcp, mut c, fwd) = self.tcp_ctx();
        tcp.timer(&mut c, now);
        tcp.resume_listeners(c.epoll, |r| fwd.listening(r));
        let conf = self.conf;
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let random = (self.rng >> 32) as u32;
        if conf.ip6.is_some() && !conf.no_ndp && !conf.no_ra && self.ra.check(now, random) {
            let live = &self.live;
            self.tap
                .send_with(|out| crate::ndp::unsolicited_ra(conf, live, out));
        }
    }
}

/// Frame `i` of `rx`, classified, unless it is too long for the MTU or
/// fails a check (counted under its reason).
fn checked_frame<'r>(
    conf: &Config,
    rx: &'r RxBatch,
    i: usize,
    counters: &mut Counters,
    log: &mut DropLog,
) -> Option<Classified<'r>> {
    let frame = rx.frame(i);
    // A segmentation offload super-frame is many MTU-sized segments at
    // once, by design.
    if conf.mtu != 0 && !rx.gso(i) && frame.len() > usize::from(conf.mtu) + 14 {
        counters.over_mtu += 1;
        if log.allow(DROP_LOG_OVER_MTU) {
            log::debug!(
                "tap: dropped frame of {} bytes: exceeds the MTU",
                frame.len()
            );
        }
        return None;
    }
    match classify_with(frame, rx.csum_partial(i)) {
        Ok(c) => Some(c),
        Err(reason) => {
            counters.drops[reason.index()] += 1;
            if log.allow(reason.index()) {
                log::debug!("tap: dropped frame of {} bytes: {reason}", frame.len());
            }
            None
        }
    }
}

/// The second gate, after [`classify_with`]: addresses a guest frame may
/// not carry, whatever its headers say (the classifier already refused
/// loopback and IPv4-mapped ones).
///
/// - No unspecified destination (`0.0.0.0`, `::`: a host socket reads it
///   as "this host").
/// - No broadcast or multicast destination (IPv4 limited or subnet
///   broadcast, IPv4 and IPv6 multicast), except toward our services: DHCP
///   (UDP to port 67, broadcast from `0.0.0.0` while the guest has no
///   address), NDP (router and neighbour solicitations to all-routers and
///   solicited-node groups) and DHCPv6 (UDP to port 547 at
///   `ff02::1:2`). We forward no multicast yet.
/// - The source is the guest's: its assigned address (`-a`, or the host's
///   address it was given) or, in pasta, one of the addresses copied to
///   the namespace; in IPv6 also any link-local address (the guest
///   chooses its own) and any address of the /64 prefixes we announce
///   (SLAAC); the target address of a forwarding rule (where that rule
///   sends connections, so the guest answers from it); `0.0.0.0` only
///   for DHCP and `::` only for NDP (duplicate
///   address detection). Upstream learns whatever source the guest uses
///   (`addr_seen`); we still learn (see [`learn_address`]), but only
///   from a source that passed here, so a spoofed frame can neither open
///   a flow nor redirect inbound flows.
///
/// Without an IPv4 (IPv6) configuration nothing is checked for that
/// family: nothing else would route it anyway.
fn check_addresses(
    live: &crate::live::Live,
    targets: &[IpAddr],
    l3: &L3<'_>,
) -> Result<(), DropReason> {
    match *l3 {
        L3::Arp(_) => Ok(()),
        L3::Ipv4 { src, dst, l4, .. } => {
            let Some(ip4) = live.ip4.as_ref() else {
                return Ok(());
            };
            let dhcp = matches!(l4, L4::Udp { dport: 67, .. });
            if dst.is_unspecified() {
                return Err(DropReason::Unspecified);
            }
            let host_bits = u32::MAX.checked_shr(u32::from(ip4.prefix_len)).unwrap_or(0);
            let subnet_bcast = ip4.prefix_len < 31
                && u32::from(dst) | host_bits == u32::from(dst)
                && u32::from(dst) & !host_bits == u32::from(ip4.addr) & !host_bits;
            if dst.is_multicast() || subnet_bcast || (dst.is_broadcast() && !dhcp) {
                return Err(DropReason::Broadcast);
            }
            let ours = ip4.is_ours(src) || targets.contains(&IpAddr::V4(src));
            if ours || (src.is_unspecified() && dhcp) {
                Ok(())
            } else {
                Err(DropReason::Spoofed)
            }
        }
        L3::Ipv6 { src, dst, l4, .. } => {
            let Some(ip6) = live.ip6.as_ref() else {
                return Ok(());
            };
            let ndp = matches!(l4, L4::Icmpv6 { msg_type: t, .. } if crate::ndp::is_ndp(t));
            if dst.is_unspecified() {
                return Err(DropReason::Unspecified);
            }
            let dhcpv6 = matches!(l4, L4::Udp { dport: 547, .. });
            if dst.is_multicast() && !ndp && !dhcpv6 {
                return Err(DropReason::Broadcast);
            }
            let ours = crate::wire::ipv6::is_link_local(src)
                || ip6.is_ours(src)
                || targets.contains(&IpAddr::V6(src));
            if (ours && !src.is_multicast()) || (src.is_unspecified() && ndp) {
                Ok(())
            } else {
                Err(DropReason::Spoofed)
            }
        }
    }
}

/// Learns the address the guest sent from: the last IPv4, global IPv6 and
/// link-local IPv6 source it used.
fn learn_address(guest: &mut GuestState, src: IpAddr) {
    match src {
        IpAddr::V4(a) if !a.is_unspecified() => guest.addr4_seen = Some(a),
        IpAddr::V6(a) if crate::wire::ipv6::is_link_local(a) => guest.addr6_ll_seen = Some(a),
        IpAddr::V6(a) if !a.is_unspecified() => guest.addr6_seen = Some(a),
        _ => {}
    }
}

/// Sends the reply a service handler writes into the transmit queue, if
/// it writes one (ARP, NDP, DHCP, DHCPv6 all have this shape): whether it
/// did.
fn answer(tap: &mut Tap, handle: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
    let mut sent = false;
    tap.send_with(|out| {
        let r = handle(out);
        sent = r.is_some();
        r
    });
    sent
}

#[cfg(feature = "fuzzing")]
impl Ctx<'_> {
    /// One iteration of [`Ctx::run`] that does not wait: the events ready
    /// now (frames from the guest, sockets), the end-of-iteration flush and
    /// the freeing of closed connections. Timers do not run. The number of
    /// events handled.
    pub(crate) fn poll_once(&mut self, events: &mut Vec<Event>) -> usize {
        if self.epoll.wait_into(0, events).is_err() {
            return 0;
        }
        for ev in events.iter().copied() {
            if self.handle(ev).is_some() {
                break;
            }
        }
        self.flush_tap();
        self.tcp.defer(&mut self.flows, &self.epoll);
        events.len()
    }

    /// Back to the state of a new context, without building one (the
    /// buffers stay): no flows (their sockets close), fresh TCP state, the
    /// guest unknown again, counters at zero. Run between two fuzz inputs.
    pub(crate) fn reset(&mut self) {
        let conf = self.conf;
        self.flows = Flows::new(self.flows.capacity());
        let ack_delay = self.tcp.ack_delay;
        self.tcp = Tcp::new(conf);
        self.tcp.ack_delay = ack_delay;
        self.guest = GuestState {
            mac: [0xff; 6],
            addr4_seen: conf.ip4.as_ref().map(|c| c.addr),
            addr6_seen: conf.ip6.as_ref().and_then(|c| c.addr),
            addr6_ll_seen: None,
        };
        self.counters = Counters::default();
        // A new second for the built-in services' rate limit: each input
        // reaches them, however many came before.
        self.services.tick();
        self.rx.clear();
        self.tap.tx.clear_all();
    }

    /// See `Tcp::check_invariants`.
    pub(crate) fn tcp_invariants(&self) -> Result<(), String> {
        self.tcp.check_invariants(&self.flows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_budget_is_per_service_and_per_second() {
        let mut b = ServiceBudget::default();
        let taken = (0..5000).filter(|_| b.take(Service::Arp)).count();
        assert_eq!(taken, SERVICE_REQUESTS_PER_SEC as usize);
        // Another service has its own budget.
        assert!(b.take(Service::Dhcp));
        assert!(!b.take(Service::Arp));
        b.tick();
        assert!(b.take(Service::Arp));
    }
}
