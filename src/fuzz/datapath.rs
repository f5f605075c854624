//! Fuzz entry points for the data path: frames in, frames and socket data out.
//!
//! Both targets build a real loop context ([`Ctx`]) as passt has it: a
//! dual-stack configuration resolved from a made-up host (addresses,
//! gateway, DNS, DHCP and NDP on, `-t 5002`), the stream back-end over a
//! socketpair whose other end is the fuzzer's guest, and the daemon's own
//! dispatch ([`Ctx::poll_once`]). Host sockets are real: the process first
//! moves into a network namespace of its own ([`setup`]), with only
//! loopback up, so nothing the fuzzer sends can leave the machine.
//!
//! - [`frame`]: the input is a short sequence of frames; whatever comes
//!   back to the guest is checked ([`check_frame`]).
//! - [`tcp`]: the input drives a guest through a TCP conversation with a
//!   server on the host's loopback (reached through the gateway address)
//!   and a host client through the `-t` forward; after every step the
//!   connections' invariants are checked ([`crate::tcp::Tcp`]'s
//!   `check_invariants`), and every byte a host socket read must be the
//!   guest's in-order stream ([`Peer::check`]).
//!
//! Timers are left out (no clock-driven retransmission or keepalive): one
//! input is one short burst of events, replayable.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::conf::cli::{parse, Parsed};
use crate::conf::host::{Host4, Host6, HostInfo, ResolvConf};
use crate::conf::{Config, Mode};
use crate::ctx::Ctx;
use crate::event::Epoll;
use crate::fwd::Fwd;
use crate::tap::{stream::Stream, Backend, Tap};
use crate::tcp::Tcp;

/// The host's address (template interface), which the guest gets.
const HOST4: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
const GW4: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
const HOST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
/// The guest's MAC in the frames the harness builds.
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// The port of the harness's server on the host's loopback.
const SERVER_PORT: u16 = 5001;
/// The `-t` forward: host port and guest port.
const FWD_PORT: u16 = 5002;
/// Flow table size: small, so that a context is cheap to build per input.
const FLOW_MAX: usize = 64;

/// The configuration (built once per process), after moving the calling
/// thread into a namespace of its own (once per thread: a network
/// namespace belongs to a thread, and tests run on several).
fn setup() -> &'static Config {
    thread_local! {
        static IN_NETNS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if !IN_NETNS.get() {
        enter_netns();
        IN_NETNS.set(true);
    }
    static CONF: OnceLock<Config> = OnceLock::new();
    CONF.get_or_init(|| {
        // As the daemon does (`daemon::signals`).
        crate::sys::ignore_sigpipe();
        let host = HostInfo {
            v4: Some(Host4 {
                ifname: "eth0".into(),
                ifindex: 2,
                addrs: vec![(HOST4, 24)],
                gw: Some(GW4),
                mtu: 1500,
            }),
            v6: Some(Host6 {
                ifname: "eth0".into(),
                ifindex: 2,
                addrs: vec![(HOST6, 64)],
                ll: Some("fe80::10".parse().expect("address")),
                gw: Some("fe80::1".parse().expect("address")),
                mtu: 1500,
            }),
            resolv: ResolvConf {
                nameservers: vec![IpAddr::V4(GW4), "2001:db8::53".parse().expect("address")],
                search: vec!["example.com".into()],
            },
            hostname: "fuzz".into(),
        };
        let args: Vec<String> = ["-t", "5002"].iter().map(|s| s.to_string()).collect();
        let Ok(Parsed::Run(opts)) = parse(Mode::Passt, &args) else {
            panic!("fuzz: command line");
        };
        let mut conf = crate::conf::resolve::resolve(opts, &host).expect("fuzz: configuration");
        conf.test.flow_max = Some(FLOW_MAX);
        conf
    })
}

/// Moves this thread (libFuzzer's, which runs every input) into a new
/// network namespace with loopback up and the host's addresses on it:
/// sockets the daemon opens toward arbitrary addresses find no route out.
fn enter_netns() {
    crate::sys::unshare(rustix::thread::UnshareFlags::NEWNET)
        .expect("fuzz targets run as root, to unshare the network namespace");
    let mut nl = crate::netlink::Netlink::open().expect("netlink");
    crate::netlink::lo_up(&mut nl).expect("loopback up");
    let lo = nl.link_index("lo").expect("loopback index");
    nl.addr_add(lo, IpAddr::V4(HOST4), 32, false)
        .expect("host address");
    nl.addr_add(lo, IpAddr::V6(HOST6), 128, true)
        .expect("host address");
    // Ping sockets for the echo path (a new namespace allows none).
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
        .expect("ping_group_range");
}

/// A loop context with the fuzzer as its guest.
struct Harness {
    ctx: Ctx<'static>,
    /// The guest's end of the stream socket.
    guest: OwnedFd,
    /// Keeps the signal pipe open (never written).
    _signals: OwnedFd,
    events: Vec<crate::event::Event>,
    /// Bytes read from the stream and not yet a whole frame.
    rx: Vec<u8>,
    /// Frames the harness checked: what the guest got.
    frames: Vec<Vec<u8>>,
}

impl Harness {
    fn new(conf: &'static Config) -> Self {
        let (ours, guest) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .expect("socketpair");
        let tap = Tap::new(Backend::Stream(Stream::connected(ours).expect("stream")));
        let (signals, signals_w) = rustix::pipe::pipe().expect("pipe");
        let mut fwd = Fwd::build(conf).expect("forwarding tables");
        fwd.open_host(conf, false).expect("-t listener");
        let ctx = Ctx::new(
            conf,
            Epoll::new().expect("epoll"),
            tap,
            None,
            signals,
            None,
            None,
            Tcp::new(conf),
            fwd,
        )
        .expect("context");
        Harness {
            ctx,
            guest,
            _signals: signals_w,
            events: Vec::with_capacity(64),
            rx: Vec::new(),
            frames: Vec::new(),
        }
    }

    /// The harness of this thread, reset: built once (a context's buffers
    /// are large, and the sanitizer makes large allocations slow), then
    /// brought back to a new context's state for every input.
    fn with<R>(f: impl FnOnce(&mut Harness) -> R) -> R {
        thread_local! {
            static HARNESS: std::cell::RefCell<Option<Harness>> =
                const { std::cell::RefCell::new(None) };
        }
        HARNESS.with(|cell| {
            let mut h = cell.borrow_mut();
            // A framing error ends the stream session: start over then.
            if !h
                .as_mut()
                .is_some_and(|h| h.ctx.tap.stream().is_some_and(|s| s.is_connected()))
            {
                // The old one first: it holds the forward's port.
                *h = None;
                *h = Some(Harness::new(setup()));
            }
            let Some(h) = h.as_mut() else {
                unreachable!("just built");
            };
            h.reset();
            let r = f(h);
            h.reset();
            r
        })
    }

    /// Drops what is left of the last input: unread frames, flows.
    fn reset(&mut self) {
        let mut buf = [0u8; 65536];
        while matches!(rustix::io::read(&self.guest, &mut buf), Ok(n) if n > 0) {}
        self.rx.clear();
        self.frames.clear();
        self.ctx.reset();
    }

    /// Sends `frame` on the stream, as a guest's passt client does.
    fn send(&mut self, frame: &[u8]) {
        let mut rec = Vec::with_capacity(frame.len() + 4);
        rec.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        rec.extend_from_slice(frame);
        let mut off = 0;
        while off < rec.len() {
            match rustix::io::write(&self.guest, &rec[off..]) {
                Ok(n) => off += n,
                Err(rustix::io::Errno::AGAIN) => self.run(),
                // The daemon closed the stream (a framing error).
                Err(_) => return,
            }
        }
    }

    /// Runs the loop until nothing is ready, then collects and checks what
    /// reached the guest.
    fn run(&mut self) {
        for _ in 0..8 {
            let handled = self.ctx.poll_once(&mut self.events);
            self.drain();
            if handled == 0 {
                break;
            }
        }
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 65536];
        loop {
            match rustix::io::read(&self.guest, &mut buf) {
                Ok(0) => break,
                Ok(n) => self.rx.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
        let conf = self.ctx.conf;
        let mut off = 0;
        while let Some(len) = self.rx.get(off..off + 4) {
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let Some(frame) = self.rx.get(off + 4..off + 4 + len) else {
                break;
            };
            if let Err(e) = check_frame(conf, frame) {
                panic!("bad frame to the guest: {e}: {frame:02x?}");
            }
            self.frames.push(frame.to_vec());
            off += 4 + len;
        }
        self.rx.drain(..off);
        if let Err(e) = self.ctx.tcp_invariants() {
            panic!("TCP invariant: {e}");
        }
    }
}

// ----------------------------------------------------------------------
// Checks of the frames the guest gets
// ----------------------------------------------------------------------

/// The Internet checksum's ones' complement sum, folded: 0xffff over data
/// that includes a correct checksum.
fn csum_fold(mut acc: u64, data: &[u8]) -> u16 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u64::from(*b) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// Checks one frame sent to the guest: Ethernet and IP lengths consistent
/// and within the MTU, the IPv4 header checksum, the TCP, UDP, ICMP and
/// ICMPv6 checksums (the stream back-end has no checksum offload: every
/// frame on it is complete).
pub(crate) fn check_frame(conf: &Config, f: &[u8]) -> Result<(), String> {
    if f.len() < 14 {
        return Err(format!("{} bytes: shorter than Ethernet", f.len()));
    }
    if f.len() > usize::from(conf.mtu) + 14 {
        return Err(format!("{} bytes: over the MTU {}", f.len(), conf.mtu));
    }
    let l3 = &f[14..];
    let (proto, l4, pseudo) = match be16(f, 12) {
        0x0806 => {
            return if l3.len() >= 28 {
                Ok(())
            } else {
                Err("short ARP".into())
            }
        }
        0x0800 => {
            if l3.len() < 20 || l3[0] >> 4 != 4 {
                return Err("bad IPv4 header".into());
            }
            let ihl = usize::from(l3[0] & 15) * 4;
            let total = be16(l3, 2);
            // Only minimum-size padding after the IP packet.
            if ihl < 20 || total < ihl || total > l3.len() || (total < l3.len() && f.len() > 60) {
                return Err(format!(
                    "IPv4 header {ihl}, total length {total}, {} bytes after Ethernet",
                    l3.len()
                ));
            }
            if csum_fold(0, &l3[..ihl]) != 0xffff {
                return Err("IPv4 header checksum".into());
            }
            let l4_len = total - ihl;
            let pseudo = csum_fold(0, &l3[12..20]) as u64 + u64::from(l3[9]) + l4_len as u64;
            (l3[9], &l3[ihl..total], pseudo)
        }
        0x86dd => {
            if l3.len() < 40 || l3[0] >> 4 != 6 {
                return Err("bad IPv6 header".into());
            }
            let plen = be16(l3, 4);
            if 40 + plen > l3.len() || (40 + plen < l3.len() && f.len() > 60) {
                return Err(format!(
                    "IPv6 payload length {plen}, {} bytes after Ethernet",
                    l3.len()
                ));
            }
            let pseudo = csum_fold(0, &l3[8..40]) as u64 + u64::from(l3[6]) + plen as u64;
            (l3[6], &l3[40..40 + plen], pseudo)
        }
        t => return Err(format!("EtherType {t:#06x}")),
    };
    let ipv4 = be16(f, 12) == 0x0800;
    match proto {
        6 if l4.len() < 20 || usize::from(l4[12] >> 4) * 4 > l4.len() => {
            Err("short TCP header".into())
        }
        17 if l4.len() < 8 || be16(l4, 4) != l4.len() => Err("UDP length".into()),
        // UDP over IPv4 may go without a checksum.
        17 if ipv4 && be16(l4, 6) == 0 => Ok(()),
        6 | 17 | 58 if csum_fold(pseudo, l4) != 0xffff => Err(format!("protocol {proto} checksum")),
        1 if l4.len() < 8 || csum_fold(0, l4) != 0xffff => Err("ICMP checksum".into()),
        6 | 17 | 58 | 1 => Ok(()),
        p => Err(format!("IP protocol {p}")),
    }
}

// ----------------------------------------------------------------------
// The frame path
// ----------------------------------------------------------------------

/// Target `frame`: the input is frames, each after its length (two bytes,
/// big endian), at most 16; they go to the daemon in one batch. Frames
/// shorter than Ethernet's header are left out.
pub fn frame(data: &[u8]) {
    Harness::with(|h| frame_run(h, data));
}

fn frame_run(h: &mut Harness, data: &[u8]) {
    let mut rest = data;
    for _ in 0..16 {
        let [a, b, tail @ ..] = rest else {
            break;
        };
        let len = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
        let (f, tail) = tail.split_at(len);
        // All frames first, so that they come as one batch (unless the
        // socket fills up). Runts break the stream's framing, which ends
        // the session: that is the stream target's business.
        if f.len() >= crate::tap::FRAME_MIN {
            h.send(f);
        }
        rest = tail;
    }
    h.run();
}

// ----------------------------------------------------------------------
// TCP
// ----------------------------------------------------------------------

/// The guest's byte at sequence number `seq`: the same for every segment
/// covering it (as a real sender's), and different enough from its
/// neighbours that a stream shifted by any offset shows.
fn stream_byte(seq: u32) -> u8 {
    let mut x = seq.wrapping_mul(0x9e37_79b9);
    x ^= x >> 15;
    x = x.wrapping_mul(0x85eb_ca6b);
    (x >> 24) as u8
}

/// `a` after `b`, modulo 2^32.
fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Reads the fuzzer's bytes, zeros once they run out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0 {
            [b, rest @ ..] => {
                self.0 = rest;
                *b
            }
            [] => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }
}

/// A host socket at the other end of one of the guest's connections: what
/// it read must be the guest's stream from the guest's ISN on, and only as
/// far as the guest sent it without a gap.
struct Peer {
    sock: OwnedFd,
    read: Vec<u8>,
}

/// What the guest side of the harness sent.
#[derive(Default)]
struct GuestLog {
    /// Sequence numbers of the guest's SYNs: the candidate ISNs.
    isns: Vec<u32>,
    /// Payload ranges sent: start, length.
    sent: Vec<(u32, u32)>,
}

impl GuestLog {
    /// How many bytes from `start` on the guest sent without a gap.
    fn contiguous_from(&self, start: u32) -> u32 {
        let mut end = 0i64;
        loop {
            let mut grew = false;
            for &(s, len) in &self.sent {
                // Within 2^31 either side of `start`.
                let off = i64::from(s.wrapping_sub(start) as i32);
                if off <= end && off + i64::from(len) > end {
                    end = off + i64::from(len);
                    grew = true;
                }
            }
            if !grew {
                return end as u32;
            }
        }
    }
}

impl Peer {
    /// Reads what arrived, and checks all of it against the guest's log.
    fn check(&mut self, log: &GuestLog) {
        let mut buf = [0u8; 65536];
        while let Ok((n, _)) = rustix::net::recv(&self.sock, &mut buf, RecvFlags::DONTWAIT) {
            if n == 0 {
                break;
            }
            self.read.extend_from_slice(&buf[..n]);
        }
        if self.read.is_empty() {
            return;
        }
        let ok = log.isns.iter().any(|&isn| {
            let first = isn.wrapping_add(1);
            self.read
                .iter()
                .enumerate()
                .all(|(i, &b)| b == stream_byte(first.wrapping_add(i as u32)))
                && log.contiguous_from(first) as usize >= self.read.len()
        });
        assert!(
            ok,
            "a host socket read {} bytes that are not a prefix of the guest's in-order \
             stream (guest ISNs {:?}, sent {:?})",
            self.read.len(),
            log.isns,
            log.sent
        );
    }
}

/// Builds a TCP segment from the guest (IPv4, to `dst`), checksums
/// included.
#[allow(clippy::too_many_arguments)]
fn tcp_frame(
    conf: &Config,
    dst: (Ipv4Addr, u16),
    sport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let opt_len = (options.len() + 3) & !3;
    let l4_len = 20 + opt_len + payload.len();
    let mut f = Vec::with_capacity(14 + 20 + l4_len);
    f.extend_from_slice(&conf.our_mac);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + l4_len) as u16;
    f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&HOST4.octets());
    f.extend_from_slice(&dst.0.octets());
    let c = !csum_fold(0, &f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dst.1.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.push(((20 + opt_len) as u8 / 4) << 4);
    f.push(flags);
    f.extend_from_slice(&window.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(options);
    f.resize(f.len() + opt_len - options.len(), 0);
    f.extend_from_slice(payload);
    let pseudo = csum_fold(0, &f[26..34]) as u64 + 6 + l4_len as u64;
    let c = !csum_fold(pseudo, &f[34..]);
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

/// One connection as the guest sees it: its addresses, and the host
/// side's sequence numbers learnt from the frames it got.
struct GuestConn {
    /// The address and port the guest talks to, and its own port.
    peer: (Ipv4Addr, u16),
    port: u16,
    /// Next sequence number the guest would send.
    next: u32,
    /// The highest sequence number (plus one) the host side sent.
    host_next: u32,
    seen_host: bool,
}

/// Target `tcp`: see the module documentation. The input is a list of
/// steps: guest segments (flags, sequence and acknowledgement numbers
/// relative to the connection's, window, options, payload), host writes,
/// shutdowns and closes, a host client connecting through the forward.
pub fn tcp(data: &[u8]) {
    Harness::with(|h| tcp_run(h, data));
}

/// Runs one `tcp` input: the bytes each host socket read, in the order
/// they were opened (server side first, then clients).
fn tcp_run(h: &mut Harness, data: &[u8]) -> Vec<usize> {
    let conf = setup();
    let mut input = Input(data);
    let listener = server();
    let mut log = GuestLog::default();
    let mut peers: Vec<Peer> = Vec::new();
    let mut conns = [
        // Out: to the gateway, which is the host's loopback.
        GuestConn {
            peer: (GW4, SERVER_PORT),
            port: 40000,
            next: 0,
            host_next: 0,
            seen_host: false,
        },
        // In: a host client through `-t 5002`, to the guest's port.
        GuestConn {
            peer: (GW4, 0),
            port: FWD_PORT,
            next: 0,
            host_next: 0,
            seen_host: false,
        },
    ];
    for _ in 0..64 {
        if input.0.is_empty() {
            break;
        }
        let op = input.u8();
        let which = usize::from(op >> 7);
        match op & 7 {
            0..=4 => {
                guest_segment(conf, h, &mut input, &mut conns[which], &mut log);
            }
            5 => {
                let n = usize::from(input.u8()) * 64;
                if let Some(p) = peers.get(usize::from(op >> 3) % peers.len().max(1)) {
                    let data = vec![0x5a; n];
                    let _ = rustix::net::send(
                        &p.sock,
                        &data,
                        SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
                    );
                }
            }
            6 => {
                let i = usize::from(op >> 4) % peers.len().max(1);
                if i < peers.len() {
                    if op & 8 != 0 {
                        peers.swap_remove(i);
                    } else {
                        let _ = rustix::net::shutdown(&peers[i].sock, rustix::net::Shutdown::Write);
                    }
                }
            }
            _ => {
                // A host client connects through the forward.
                if let Ok(s) = client() {
                    peers.push(Peer {
                        sock: s,
                        read: Vec::new(),
                    });
                }
            }
        }
        h.run();
        // The server's new connections.
        while let Ok(s) = rustix::net::accept_with(&listener, SocketFlags::NONBLOCK) {
            peers.push(Peer {
                sock: s,
                read: Vec::new(),
            });
        }
        learn(&h.frames, &mut conns);
        h.frames.clear();
        for p in &mut peers {
            p.check(&log);
        }
    }
    peers.iter().map(|p| p.read.len()).collect()
}

/// The harness's server on the host's loopback, where the gateway address
/// leads.
fn server() -> OwnedFd {
    let s = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )
    .expect("socket");
    rustix::net::sockopt::set_socket_reuseaddr(&s, true).expect("SO_REUSEADDR");
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), SERVER_PORT);
    rustix::net::bind(&s, &addr).expect("bind the server");
    rustix::net::listen(&s, 16).expect("listen");
    s
}

/// A host client of the `-t` forward (connecting, non-blocking).
fn client() -> rustix::io::Result<OwnedFd> {
    let s = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), FWD_PORT);
    match rustix::net::connect(&s, &addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => Ok(s),
        Err(e) => Err(e),
    }
}

/// One segment from the guest on `conn`, as the input describes it.
fn guest_segment(
    conf: &Config,
    h: &mut Harness,
    input: &mut Input<'_>,
    conn: &mut GuestConn,
    log: &mut GuestLog,
) {
    let flags = input.u8() & 0x3f;
    let seq_mode = input.u8();
    let seq = match seq_mode & 3 {
        0 => conn.next,
        1 => conn.next.wrapping_sub(u32::from(input.u8())),
        2 => conn.next.wrapping_add(u32::from(input.u16())),
        _ => input.u32(),
    };
    let ack_mode = input.u8();
    let ack = match ack_mode & 3 {
        0 => conn.host_next,
        1 => conn.host_next.wrapping_sub(u32::from(input.u8())),
        2 => conn.host_next.wrapping_add(u32::from(input.u16())),
        _ => input.u32(),
    };
    let window = input.u16();
    let opt = input.u8();
    let mut options = Vec::new();
    if opt & 1 != 0 {
        options.extend_from_slice(&[2, 4]);
        options.extend_from_slice(&input.u16().to_be_bytes());
    }
    if opt & 2 != 0 {
        options.extend_from_slice(&[1, 3, 3, input.u8()]);
    }
    if opt & 4 != 0 {
        let n = usize::from(opt >> 4);
        options.extend_from_slice(input.bytes(n));
    }
    options.truncate(40);
    // Payload: the guest's stream at this sequence number.
    let syn = flags & 0x02 != 0;
    let mut len = usize::from(input.u8());
    if seq_mode & 0x80 != 0 {
        len *= 64;
    }
    let first = seq.wrapping_add(u32::from(syn));
    let payload: Vec<u8> = (0..len as u32)
        .map(|i| stream_byte(first.wrapping_add(i)))
        .collect();
    if syn {
        log.isns.push(seq);
    }
    if len > 0 {
        log.sent.push((first, len as u32));
    }
    let fin = flags & 0x01 != 0;
    let end = first.wrapping_add(len as u32).wrapping_add(u32::from(fin));
    if syn || seq_gt(end, conn.next) {
        conn.next = end;
    }
    let frame = tcp_frame(
        conf, conn.peer, conn.port, flags, seq, ack, window, &options, &payload,
    );
    h.send(&frame);
}

/// Learns, from the frames the guest got, the host side's sequence numbers
/// and the addresses of inbound connections.
fn learn(frames: &[Vec<u8>], conns: &mut [GuestConn; 2]) {
    for f in frames {
        // IPv4, TCP, from the addresses the harness uses.
        if f.len() < 54 || f[12..14] != [0x08, 0x00] || f[23] != 6 {
            continue;
        }
        let ihl = usize::from(f[14] & 15) * 4;
        let Some(t) = f.get(14 + ihl..) else {
            continue;
        };
        if t.len() < 20 {
            continue;
        }
        let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
        let (sport, dport) = (be16(t, 0) as u16, be16(t, 2) as u16);
        let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
        let tflags = t[13];
        let doff = usize::from(t[12] >> 4) * 4;
        let total = be16(f, 16);
        let plen = total.saturating_sub(ihl + doff) as u32;
        let end = seq
            .wrapping_add(plen)
            .wrapping_add(u32::from(tflags & 0x03 != 0));
        for c in conns.iter_mut() {
            let matches = dport == c.port && (c.peer.1 == 0 || (src, sport) == c.peer);
            if !matches {
                continue;
            }
            if tflags & 0x02 != 0 {
                // SYN: a new connection (in: its peer is now known).
                c.peer = (src, sport);
                c.host_next = end;
                c.seen_host = true;
            } else if !c.seen_host || seq_gt(end, c.host_next) {
                c.host_next = end;
                c.seen_host = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segment step of the `tcp` input: flags, in-order sequence number,
    /// acknowledging all the host sent, a full window, no options.
    fn seg(flags: u8, len: u8) -> [u8; 8] {
        [0, flags, 0, 0, 0xff, 0xff, 0, len]
    }

    /// The harness does reach the host: a handshake and data from the
    /// guest arrive at the server in order, and a RST or a second SYN
    /// delivers nothing more. (Run as root: `cargo test --features fuzzing`.)
    #[test]
    fn tcp_harness_delivers_the_guest_stream() {
        // SYN with ISN 1000.
        let mut input = vec![0u8, 0x02, 3, 0, 0, 3, 0xe8, 0, 0xff, 0xff, 0, 0];
        input.extend_from_slice(&seg(0x10, 0));
        input.extend_from_slice(&seg(0x18, 100));
        input.extend_from_slice(&seg(0x18, 50));
        let read = Harness::with(|h| tcp_run(h, &input));
        assert_eq!(read, [150]);
    }

    /// Regression (found by the `tcp` target): a SYN,ACK with data on an
    /// established connection had its payload written to the socket as if
    /// it began at the segment's sequence number, one byte early.
    #[test]
    fn tcp_syn_on_established_connection_is_not_data() {
        let mut input = vec![0u8, 0x02, 3, 0, 0, 3, 0xe8, 0, 0xff, 0xff, 0, 0];
        input.extend_from_slice(&seg(0x10, 0));
        input.extend_from_slice(&seg(0x12, 10));
        let read = Harness::with(|h| tcp_run(h, &input));
        assert_eq!(read, [0]);
    }

    /// Inbound: a host client through `-t 5002`, the guest's SYN,ACK and
    /// data, which the client reads.
    #[test]
    fn tcp_harness_delivers_inbound() {
        let mut input = vec![7u8];
        // SYN,ACK with ISN 4096, acknowledging our SYN.
        input.extend_from_slice(&[0x80, 0x12, 3, 0, 0, 0x10, 0, 0, 0xff, 0xff, 0, 0]);
        let mut data = seg(0x18, 20);
        data[0] = 0x80;
        input.extend_from_slice(&data);
        let read = Harness::with(|h| tcp_run(h, &input));
        assert_eq!(read, [20]);
    }

    /// Frames back to the guest are checked: an ARP request for the
    /// gateway gets a valid reply.
    #[test]
    fn frame_harness_answers_arp() {
        let conf = setup();
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&GUEST_MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&GUEST_MAC);
        f.extend_from_slice(&HOST4.octets());
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&GW4.octets());
        let mut input = (f.len() as u16).to_be_bytes().to_vec();
        input.extend_from_slice(&f);
        let frames = Harness::with(|h| {
            frame_run(h, &input);
            h.frames.clone()
        });
        assert_eq!(frames.len(), 1, "one ARP reply");
        assert!(check_frame(conf, &frames[0]).is_ok());
        assert_eq!(frames[0][12..14], [0x08, 0x06]);
    }
}
