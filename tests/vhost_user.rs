//! passt as a vhost-user back-end, without a VM: the test is the
//! front-end (QEMU's role) and the guest's virtio-net driver at once,
//! through `common::vhost::VhostDriver`: guest memory in a memfd, split
//! rings written here, kicks and calls over eventfds. passt runs in the
//! test bed's host namespace, as in `passt_frames.rs`; frames are built
//! with `etherparse`/`dhcproto` and every frame passt puts on an RX queue
//! is checked: header flags as negotiated, `num_buffers` as used, and
//! every checksum correct once a NEEDS_CSUM partial checksum is
//! completed as the guest's stack would.

mod common;
#[path = "common/vhost.rs"]
mod vu;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use virtio_bindings::virtio_net::*;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use vu::*;

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// Bound of any single exchange.
const T: Duration = Duration::from_secs(5);

fn deadline() -> Instant {
    Instant::now() + T
}

// ---------------------------------------------------------------------
// passt

/// passt in the host namespace, `--vhost-user`, its log in a file.
struct Passt {
    child: Guard,
    sock: PathBuf,
    log: PathBuf,
}

impl Passt {
    fn start(tb: &Testbed, extra: &[&str]) -> Passt {
        let sock = tb.path("vhost-user.socket");
        let log = tb.path("passt.log");
        let mut c = tb.in_host(passt());
        c.args(["-f", "-d", "--vhost-user", "-s"])
            .arg(&sock)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = Guard(c.spawn().expect("start passt"));
        let p = Passt { child, sock, log };
        wait_for("passt to listen", Duration::from_secs(10), || {
            p.log().contains("UNIX domain socket bound at")
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log text from byte `from` on.
    fn log_since(&self, from: usize) -> String {
        self.log().get(from..).unwrap_or("").to_string()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(None))
    }

    /// Waits for passt to exit (bounded); its exit status.
    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.0.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                Instant::now() < end,
                "passt still runs after {timeout:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A negotiated device, once passt serves this connection (a client
    /// connecting while passt still tears the last one down is closed).
    fn driver(&self, opts: Opts) -> VhostDriver {
        VhostDriver::over(self.served(), opts)
    }

    fn served(&self) -> UnixStream {
        let end = Instant::now() + T;
        loop {
            let mut s = connect(&self.sock);
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            // GET_FEATURES: a reply means passt reads this connection.
            if s.write_all(&msg(1, 0x1, &[])).is_ok() {
                let mut reply = [0u8; 20];
                if s.read_exact(&mut reply).is_ok() {
                    s.set_read_timeout(None).unwrap();
                    return s;
                }
            }
            assert!(
                Instant::now() < end,
                "passt serves no new front-end\n{}",
                self.log()
            );
        }
    }

    /// Waits for a log line after byte `from` holding one of `words`
    /// (case-insensitive); returns it.
    fn expect_log(&self, from: usize, what: &str, words: &[&str]) -> String {
        let mut found = None;
        let end = Instant::now() + T;
        while found.is_none() && Instant::now() < end {
            found = self
                .log_since(from)
                .lines()
                .find(|l| {
                    let l = l.to_lowercase();
                    words.iter().any(|w| l.contains(w))
                })
                .map(str::to_string);
            if found.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        found.unwrap_or_else(|| {
            panic!(
                "no log line about {what} (any of {words:?}); log since:\n{}",
                self.log_since(from)
            )
        })
    }
}

/// A vhost-user message: header (request, flags, size) and payload.
fn msg(request: u32, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = request.to_le_bytes().to_vec();
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

// ---------------------------------------------------------------------
// Frames

/// One's complement sum of 16-bit words.
fn sum16(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u64::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Offset of the L4 header, its protocol and the pseudo-header sum of an
/// IPv4 or IPv6 (no extension headers) frame.
fn l4_of(f: &[u8]) -> Option<(usize, u8, u64)> {
    match u16::from_be_bytes([f[12], f[13]]) {
        0x0800 => {
            let ihl = usize::from(f[14] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
            let proto = f[23];
            let len = total - ihl;
            Some((
                14 + ihl,
                proto,
                sum16(&f[26..34], 0) + u64::from(proto) + len as u64,
            ))
        }
        0x86dd => {
            let plen = usize::from(u16::from_be_bytes([f[18], f[19]]));
            let nh = f[20];
            Some((54, nh, sum16(&f[22..54], 0) + u64::from(nh) + plen as u64))
        }
        _ => None,
    }
}

/// End of the IP packet in `f` (frames may be padded).
fn ip_end(f: &[u8]) -> usize {
    match u16::from_be_bytes([f[12], f[13]]) {
        0x0800 => 14 + usize::from(u16::from_be_bytes([f[16], f[17]])),
        0x86dd => 54 + usize::from(u16::from_be_bytes([f[18], f[19]])),
        _ => f.len(),
    }
}

/// Replaces a complete TCP/UDP checksum by the partial one a guest with
/// checksum offload leaves (the pseudo-header sum); the header to send
/// with it.
fn make_partial(f: &mut [u8]) -> NetHdr {
    let (off, proto, pseudo) = l4_of(f).expect("IP frame");
    let csum_offset = match proto {
        6 => 16,
        17 => 6,
        _ => panic!("not TCP/UDP"),
    };
    let p = fold(pseudo).to_be_bytes();
    f[off + csum_offset..off + csum_offset + 2].copy_from_slice(&p);
    NetHdr {
        flags: NEEDS_CSUM,
        csum_start: off as u16,
        csum_offset: csum_offset as u16,
        ..NetHdr::default()
    }
}

/// Checks a frame passt put on an RX queue, completing a NEEDS_CSUM
/// checksum first; returns the frame as the guest's stack sees it.
fn check_rx(d: &VhostDriver, rx: &RxFrame) -> Vec<u8> {
    let h = rx.hdr;
    let mut f = rx.frame.clone();
    assert!(f.len() >= 14, "frame of {} bytes", f.len());
    if d.has(VIRTIO_NET_F_MRG_RXBUF) {
        assert_eq!(
            usize::from(h.num_buffers),
            rx.buffers,
            "num_buffers is not the count of buffers used"
        );
    }
    if !d.has(VIRTIO_NET_F_GUEST_CSUM) {
        assert_eq!(h.flags, 0, "flags {h:?} without GUEST_CSUM");
    }
    let tso4 = d.has(VIRTIO_NET_F_GUEST_TSO4);
    let tso6 = d.has(VIRTIO_NET_F_GUEST_TSO6);
    match h.gso_type {
        GSO_NONE => {}
        GSO_TCPV4 => assert!(tso4, "TCPV4 super-frame without GUEST_TSO4"),
        GSO_TCPV6 => assert!(tso6, "TCPV6 super-frame without GUEST_TSO6"),
        g => panic!("gso_type {g} in {h:?}"),
    }
    if h.gso_type != GSO_NONE {
        assert!(h.gso_size > 0, "super-frame with gso_size 0: {h:?}");
    }
    if h.flags & NEEDS_CSUM != 0 {
        let s = usize::from(h.csum_start);
        let o = s + usize::from(h.csum_offset);
        let end = ip_end(&f);
        assert!(o + 2 <= end, "checksum offset beyond the packet: {h:?}");
        let c = !fold(sum16(&f[s..end], 0));
        f[o..o + 2].copy_from_slice(&c.to_be_bytes());
    }
    check_checksums(&f, h.flags & NEEDS_CSUM != 0);
    f
}

/// Every checksum of a frame, complete and correct.
fn check_checksums(f: &[u8], partial: bool) {
    let et = u16::from_be_bytes([f[12], f[13]]);
    if et == 0x0800 {
        let ihl = usize::from(f[14] & 0xf) * 4;
        assert_eq!(
            fold(sum16(&f[14..14 + ihl], 0)),
            0xffff,
            "IPv4 header checksum"
        );
    }
    let Some((off, proto, pseudo)) = l4_of(f) else {
        return;
    };
    let l4 = &f[off..ip_end(f)];
    match (et, proto) {
        (_, 6) | (_, 17) | (0x86dd, 58) => {
            if proto == 17 && et == 0x0800 && l4[6..8] == [0, 0] {
                assert!(partial, "IPv4 UDP without checksum");
            }
            assert_eq!(
                fold(sum16(l4, pseudo)),
                0xffff,
                "bad L4 checksum (protocol {proto}{})",
                if partial { ", after NEEDS_CSUM" } else { "" }
            );
        }
        (0x0800, 1) => assert_eq!(fold(sum16(l4, 0)), 0xffff, "ICMP checksum"),
        _ => {}
    }
}

fn arp_request(tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&HOST4.parse::<Ipv4Addr>().unwrap().octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.octets());
    f
}

fn is_arp_reply(f: &[u8]) -> bool {
    f.len() >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 2]
}

fn dhcp_frame(t: dhcproto::v4::MessageType) -> Vec<u8> {
    use dhcproto::v4::{DhcpOption, Flags, Message};
    use dhcproto::{Encodable, Encoder};
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(0x1234_5678, z, z, z, z, &GUEST_MAC);
    m.set_flags(Flags::default().set_broadcast());
    m.opts_mut().insert(DhcpOption::MessageType(t));
    let mut payload = Vec::new();
    m.encode(&mut Encoder::new(&mut payload)).unwrap();
    let mut v = Vec::new();
    etherparse::PacketBuilder::ethernet2(GUEST_MAC, [0xff; 6])
        .ipv4(z.octets(), [255; 4], 64)
        .udp(68, 67)
        .write(&mut v, &payload)
        .unwrap();
    v
}

fn dhcp_reply(f: &[u8]) -> Option<dhcproto::v4::Message> {
    use dhcproto::{Decodable, Decoder};
    let p = etherparse::SlicedPacket::from_ethernet(f).ok()?;
    match p.transport? {
        etherparse::TransportSlice::Udp(u)
            if u.source_port() == 67 && u.destination_port() == 68 =>
        {
            dhcproto::v4::Message::decode(&mut Decoder::new(u.payload())).ok()
        }
        _ => None,
    }
}

/// The guest's side of a device: the driver plus what a guest learns.
struct Guest {
    d: VhostDriver,
    /// passt's MAC address, from its first ARP reply.
    gw: [u8; 6],
}

impl Guest {
    /// A device with `opts`, RX buffers offered on every pair, and
    /// passt's MAC address learnt by ARP.
    fn new(p: &Passt, opts: Opts, rx_size: usize) -> Guest {
        let mut d = p.driver(opts);
        for pair in 0..opts.pairs {
            let n = usize::from(opts.queue_size);
            d.post_rx_buffers(pair, n, rx_size);
        }
        let mut g = Guest { d, gw: [0xff; 6] };
        let r = g.arp(0);
        g.gw = r[6..12].try_into().unwrap();
        g
    }

    /// Next checked frame on `pair` before `until`.
    fn recv(&mut self, pair: usize, until: Instant) -> Option<(RxFrame, Vec<u8>)> {
        let rx = self.d.recv(pair, until)?;
        let f = check_rx(&self.d, &rx);
        Some((rx, f))
    }

    /// Waits on `pair` for a frame matching `pred`, skipping others.
    fn expect(
        &mut self,
        pair: usize,
        what: &str,
        mut pred: impl FnMut(&[u8]) -> bool,
    ) -> (RxFrame, Vec<u8>) {
        let end = deadline();
        while let Some((rx, f)) = self.recv(pair, end) {
            if pred(&f) {
                return (rx, f);
            }
        }
        panic!("timed out waiting for {what} on pair {pair}");
    }

    /// ARP for the gateway on `pair`; the reply.
    fn arp(&mut self, pair: usize) -> Vec<u8> {
        self.d.send(
            pair,
            NetHdr::default(),
            &arp_request(REMOTE4.parse().unwrap()),
        );
        let (_, r) = self.expect(pair, "ARP reply", is_arp_reply);
        assert_eq!(&r[0..6], &GUEST_MAC);
        assert_eq!(&r[28..32], &REMOTE4.parse::<Ipv4Addr>().unwrap().octets());
        r
    }
}

// ---------------------------------------------------------------------
// Servers in the remote namespace

/// A python3 server in the remote namespace; prints "ready", then one
/// result line. TCP modes: `sink N` reads N bytes of pattern
/// (i * 7 % 256) and prints `got N ok|bad`; `bulk N` sends N bytes of
/// pattern (i % 251) and waits for end of file. `udp` prints the first
/// datagram's payload as text.
fn server(
    tb: &Testbed,
    v6: bool,
    port: u16,
    mode: &str,
) -> (Guard, BufReader<std::process::ChildStdout>) {
    let script = r#"
import socket, sys
v6, port, mode = sys.argv[1] == "6", int(sys.argv[2]), sys.argv[3]
fam = socket.AF_INET6 if v6 else socket.AF_INET
any_ = "::" if v6 else "0.0.0.0"
if mode == "udp":
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((any_, port))
    print("ready", flush=True)
    b, _ = s.recvfrom(65536)
    print(b.decode(errors="replace"), flush=True)
    sys.exit(0)
l = socket.socket(fam, socket.SOCK_STREAM)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((any_, port)); l.listen(4)
print("ready", flush=True)
c, _ = l.accept()
n = int(sys.argv[4])
if mode == "sink":
    got, ok = 0, True
    while got < n:
        b = c.recv(65536)
        if not b:
            break
        for j, x in enumerate(b):
            if x != ((got + j) * 7) % 256:
                ok = False
        got += len(b)
    print("got %d %s" % (got, "ok" if ok else "bad"), flush=True)
elif mode == "bulk":
    c.sendall(bytes(i % 251 for i in range(n)))
    print("sent", flush=True)
    c.recv(1)
"#;
    let mut c = tb.in_remote("python3");
    c.args(["-c", script, if v6 { "6" } else { "4" }, &port.to_string()])
        .args(mode.split(' '))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child: Child = c.spawn().expect("python3");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    (Guard(child), out)
}

/// A line from a server, bounded: servers are killed with the test bed,
/// and a read that blocks forever would hang the test, so the read runs
/// in a thread.
fn line_within(out: BufReader<std::process::ChildStdout>, timeout: Duration) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = out;
        let mut l = String::new();
        let _ = out.read_line(&mut l);
        let _ = tx.send(l);
    });
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| "(no line from the server)".to_string())
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------
// A guest TCP endpoint

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;

struct Conn {
    pair: usize,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    snd_nxt: u32,
    rcv_nxt: u32,
    /// Offload the checksum (NEEDS_CSUM, partial) on what we send.
    partial: bool,
}

struct Seg {
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    payload: Vec<u8>,
}

impl Conn {
    fn new(pair: usize, v6: bool, sport: u16, dport: u16) -> Conn {
        let (src, dst): (IpAddr, IpAddr) = if v6 {
            (HOST6.parse().unwrap(), BEYOND6.parse().unwrap())
        } else {
            (HOST4.parse().unwrap(), BEYOND4.parse().unwrap())
        };
        Conn {
            pair,
            src,
            dst,
            sport,
            dport,
            snd_nxt: 1000,
            rcv_nxt: 0,
            partial: false,
        }
    }

    fn frame(&self, g: &Guest, flags: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
        let eth = etherparse::PacketBuilder::ethernet2(GUEST_MAC, g.gw);
        let ip = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => unreachable!(),
        };
        let mut b = ip.tcp(self.sport, self.dport, seq, 65535);
        if flags & SYN != 0 {
            b = b
                .syn()
                .options(&[
                    etherparse::TcpOptionElement::MaximumSegmentSize(1460),
                    etherparse::TcpOptionElement::Noop,
                    etherparse::TcpOptionElement::WindowScale(4),
                ])
                .unwrap();
        }
        if flags & FIN != 0 {
            b = b.fin();
        }
        if flags & RST != 0 {
            b = b.rst();
        }
        if flags & PSH != 0 {
            b = b.psh();
        }
        if flags & ACK != 0 {
            b = b.ack(self.rcv_nxt);
        }
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn send(&mut self, g: &mut Guest, flags: u8, payload: &[u8]) {
        let mut f = self.frame(g, flags, self.snd_nxt, payload);
        let hdr = if self.partial {
            make_partial(&mut f)
        } else {
            NetHdr::default()
        };
        g.d.send(self.pair, hdr, &f);
        self.snd_nxt = self
            .snd_nxt
            .wrapping_add(payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0));
    }

    fn parse(&self, f: &[u8]) -> Option<Seg> {
        let p = etherparse::SlicedPacket::from_ethernet(f).ok()?;
        let src = match p.net? {
            etherparse::NetSlice::Ipv4(i) => IpAddr::V4(i.header().source_addr()),
            etherparse::NetSlice::Ipv6(i) => IpAddr::V6(i.header().source_addr()),
            _ => return None,
        };
        let etherparse::TransportSlice::Tcp(t) = p.transport? else {
            return None;
        };
        if src != self.dst || t.source_port() != self.dport || t.destination_port() != self.sport {
            return None;
        }
        let flags = u8::from(t.fin())
            | u8::from(t.syn()) << 1
            | u8::from(t.rst()) << 2
            | u8::from(t.psh()) << 3
            | u8::from(t.ack()) << 4;
        Some(Seg {
            seq: t.sequence_number(),
            ack: t.acknowledgment_number(),
            flags,
            window: t.window_size(),
            payload: t.payload().to_vec(),
        })
    }

    /// Next segment of this connection on its pair, others skipped.
    fn next(&self, g: &mut Guest, until: Instant) -> Option<(RxFrame, Seg)> {
        while let Some((rx, f)) = g.recv(self.pair, until) {
            if let Some(s) = self.parse(&f) {
                return Some((rx, s));
            }
        }
        None
    }

    fn expect(&self, g: &mut Guest, what: &str, mut pred: impl FnMut(&Seg) -> bool) -> Seg {
        let end = deadline();
        while let Some((_, s)) = self.next(g, end) {
            assert!(
                s.flags & RST == 0 || what.contains("RST"),
                "reset while waiting for {what}"
            );
            if pred(&s) {
                return s;
            }
        }
        panic!("timed out waiting for {what}");
    }

    /// Three-way handshake; passt's SYN-ACK window.
    fn open(&mut self, g: &mut Guest) -> u16 {
        self.send(g, SYN, &[]);
        let sa = self.expect(g, "SYN-ACK", |s| s.flags & (SYN | ACK) == SYN | ACK);
        assert_eq!(
            sa.ack, self.snd_nxt,
            "SYN-ACK acknowledges the wrong sequence"
        );
        self.rcv_nxt = sa.seq.wrapping_add(1);
        self.send(g, ACK, &[]);
        sa.window
    }

    /// Receives `n` bytes of the `bulk` pattern, acknowledging in-order
    /// data as it comes; the frames that carried them.
    fn download(&mut self, g: &mut Guest, n: usize) -> Vec<RxFrame> {
        let mut got = 0usize;
        let mut frames = Vec::new();
        let end = Instant::now() + Duration::from_secs(20);
        while got < n {
            assert!(Instant::now() < end, "download stalled at {got} of {n}");
            let Some((rx, s)) = self.next(g, Instant::now() + Duration::from_millis(500)) else {
                // Nothing for a while: a duplicate ACK.
                self.send(g, ACK, &[]);
                continue;
            };
            assert!(s.flags & RST == 0, "reset during the download");
            if s.seq != self.rcv_nxt || s.payload.is_empty() {
                continue;
            }
            for (j, &b) in s.payload.iter().enumerate() {
                assert_eq!(b, ((got + j) % 251) as u8, "data mismatch at {}", got + j);
            }
            got += s.payload.len();
            self.rcv_nxt = self.rcv_nxt.wrapping_add(s.payload.len() as u32);
            frames.push(rx);
            self.send(g, ACK, &[]);
        }
        assert_eq!(got, n);
        frames
    }
}

/// The `sink` pattern, bytes `from..from + n`.
fn sink_pattern(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| ((i * 7) % 256) as u8).collect()
}

// ---------------------------------------------------------------------
// Tests

/// Feature and protocol-feature offers, and the queue count, as QEMU
/// reads them.
#[test]
fn negotiation_offers_features_protocol_features_and_queues() {
    let tb = Testbed::new();
    let p = Passt::start(&tb, &[]);
    let opts = Opts {
        pairs: 4,
        ..Opts::default()
    };
    let mut g = Guest::new(&p, opts, 2048);
    let d = &g.d;
    let missing = OFFERED & !d.offered;
    assert_eq!(
        missing, 0,
        "features offered {:#x}, missing {missing:#x}",
        d.offered
    );
    use ::vhost::vhost_user::VhostUserProtocolFeatures as pf;
    for (name, f) in [
        ("MQ", pf::MQ),
        ("REPLY_ACK", pf::REPLY_ACK),
        ("LOG_SHMFD", pf::LOG_SHMFD),
        ("RARP", pf::RARP),
    ] {
        assert!(
            d.protocol_offered.contains(f),
            "protocol feature {name} not offered: {:?}",
            d.protocol_offered
        );
    }
    assert!(d.queue_num >= 4, "GET_QUEUE_NUM = {}", d.queue_num);
    // And the device works on every pair.
    for pair in 0..4 {
        g.arp(pair);
    }
    assert!(p.log().contains("UNIX domain socket bound at"));
}

/// `--print-capabilities`: the back-end program conventions' JSON on
/// standard output.
#[test]
fn print_capabilities() {
    let out = run(std::process::Command::new(passt())
        .args(["--vhost-user", "--print-capabilities"])
        .stdin(Stdio::null()));
    assert!(out.status.success(), "{out:?}");
    // JSON, whatever its layout, ended by a newline.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with('\n'), "{text:?}");
    assert_eq!(json(&text), serde_json::json!({"type": "net"}), "{text}");
}

/// ARP and DHCP over the rings, with the header and frame cut over
/// descriptors in various ways.
#[test]
fn arp_and_dhcp() {
    let tb = Testbed::new();
    let p = Passt::start(&tb, &[]);
    let mut g = Guest::new(&p, Opts::default(), 2048);
    let req = arp_request(REMOTE4.parse().unwrap());
    for cuts in [&[][..], &[12], &[5], &[12, 20], &[1, 2, 3, 13, 14, 30]] {
        g.d.send_cut(0, NetHdr::default(), &req, cuts);
        g.expect(0, &format!("ARP reply (cuts {cuts:?})"), is_arp_reply);
    }
    g.d.send(
        0,
        NetHdr::default(),
        &dhcp_frame(dhcproto::v4::MessageType::Discover),
    );
    let (_, offer) = g.expect(0, "DHCPOFFER", |f| dhcp_reply(f).is_some());
    let offer = dhcp_reply(&offer).unwrap();
    assert_eq!(
        offer.opts().msg_type(),
        Some(dhcproto::v4::MessageType::Offer)
    );
    assert_eq!(offer.yiaddr(), HOST4.parse::<Ipv4Addr>().unwrap());
}

/// Small RX buffers: a frame longer than one buffer spreads over
/// several, `num_buffers` says how many, and the pieces make the frame.
#[test]
fn mrg_rxbuf_spreads_long_frames_over_small_buffers() {
    let tb = Testbed::new();
    let p = Passt::start(&tb, &[]);
    let mut g = Guest::new(&p, Opts::default(), 1024);

    // A 4000-byte ICMP echo: its reply takes four or more buffers.
    let data: Vec<u8> = (0..4000).map(|i| (i % 253) as u8).collect();
    let mut echo = Vec::new();
    etherparse::PacketBuilder::ethernet2(GUEST_MAC, g.gw)
        .ipv4(
            HOST4.parse::<Ipv4Addr>().unwrap().octets(),
            BEYOND4.parse::<Ipv4Addr>().unwrap().octets(),
            64,
        )
        .icmpv4_echo_request(0x77, 1)
        .write(&mut echo, &data)
        .unwrap();
    g.d.send(0, NetHdr::default(), &echo);
    let (rx, f) = g.expect(0, "echo reply", |f| {
        f.len() > 34 && f[12..14] == [8, 0] && f[23] == 1 && f[34] == 0
    });
    assert!(
        rx.buffers >= 4,
        "{}-byte reply in {} buffers",
        f.len(),
        rx.buffers
    );
    assert_eq!(&f[42..42 + 4000], &data[..], "echo data");

    // TCP data from a server: segments of a full MSS take two buffers or
    // more, and the stream is intact.
    let (_srv, _out) = server(&tb, false, 5101, "bulk 100000");
    let mut c = Conn::new(0, false, 41101, 5101);
    c.open(&mut g);
    let frames = c.download(&mut g, 100_000);
    let most = frames.iter().map(|f| f.buffers).max().unwrap();
    assert!(most >= 2, "no TCP segment spread over buffers");
}

/// Checksum offload both ways: partial checksums from the guest are
/// taken, and frames toward the guest are flagged.
#[test]
fn checksum_offload() {
    let tb = Testbed::new();
    let p = Passt::start(&tb, &[]);
    let mut g = Guest::new(&p, Opts::default(), 4096);
    assert!(g.d.has(VIRTIO_NET_F_CSUM) && g.d.has(VIRTIO_NET_F_GUEST_CSUM));

    // TCP: every segment the guest sends has a partial checksum.
    let (_srv, out) = server(&tb, false, 5102, "sink 3000");
    let mut c = Conn::new(0, false, 41102, 5102);
    c.partial = true;
    c.open(&mut g);
    c.send(&mut g, ACK | PSH, &sink_pattern(0, 1000));
    c.send(&mut g, ACK | PSH, &sink_pattern(1000, 2000));
    let a = c.expect(&mut g, "ACK of 3000 bytes", |s| s.ack == c.snd_nxt);
    assert!(a.flags & ACK != 0);
    assert_eq!(line_within(out, T), "got 3000 ok", "{}", p.log());

    // UDP with a partial checksum.
    let (_usrv, uout) = server(&tb, false, 5103, "udp");
    let mut u = Vec::new();
    etherparse::PacketBuilder::ethernet2(GUEST_MAC, g.gw)
        .ipv4(
            HOST4.parse::<Ipv4Addr>().unwrap().octets(),
            BEYOND4.parse::<Ipv4Addr>().unwrap().octets(),
            64,
        )
        .udp(41103, 5103)
        .write(&mut u, b"offloaded udp")
        .unwrap();
    let h = make_partial(&mut u);
    g.d.send(0, h, &u);
    assert_eq!(line_within(uout, T), "offloaded udp", "{}", p.log());

    // Toward the guest: TCP from the server, each frame flagged.
    let (_srv, _out) = server(&tb, false, 5104, "bulk 20000");
    let mut c = Conn::new(0, false, 41104, 5104);
    c.open(&mut g);
    let frames = c.download(&mut g, 20_000);
    for f in &frames {
        assert!(
            f.hdr.flags & (NEEDS_CSUM | DATA_VALID) != 0,
            "TCP frame toward the guest without NEEDS_CSUM or DATA_VALID: {:?}",
            f.hdr
        );
    }
}

/// Without GUEST_CSUM (nor guest offloads), flags are 0 and every
/// checksum complete (check_rx verifies both).
#[test]
fn no_guest_offloads_means_complete_checksums() {
    let tb = Testbed::new();
    let p = Passt::start(&tb, &[]);
    let opts = Opts {
        features: Opts::default().features
            & !(bit(VIRTIO_NET_F_GUEST_CSUM)
                | bit(VIRTIO_NET_F_GUEST_TSO4)
                | bit(VIRTIO_NET_F_GUEST_TSO6)),
        ..Opts::default()
    };
    let mut g = Guest::new(&p, opts, 2048);
    let (_srv, _out) = server(&tb, false, 5105, "bulk 50000");
    let mut c = Conn::new(0, false, 41105, 5105);
    c.open(&mut g);
    for f in c.download(&mut g, 50_000) {
        assert_eq!(f.hdr.gso_type, GSO_NONE);
    }
}

/// One TCP super-segment from the guest (HOST_TSO): the server gets every
/// byte.
fn tso_in(v6: bool, port: u16) {
    let tb = Testbed::new();
    let p = Passt::start(&tb, &[]);
    let mut g = Guest::new(&p, Opts::default(), 4096);
    let n = 60_000usize;
    let (_srv, out) = server(&tb, v6, port, &format!("sink {n}"));
    let mut c = Conn::new(0, v6, port + 30000, port);
    c.partial = true;
    let win = c.open(&mut g);
    // Within the window passt advertised (unscaled in its SYN-ACK).
    let first = n.min(usize::from(win).max(30_000));
    let data = sink_pattern(0, first);
    let mut f = c.frame(&g, ACK | PSH, c.snd_nxt, &data);
    let mut h = make_partial(&mut f);
    h.gso_type = if v6 { GSO_TCPV6 } else { GSO_TCPV4 };
    h.gso_size = 1448;
    h.hdr_len = if v6 { 14 + 40 + 20 } else { 14 + 20 + 20 };
    g.d.send(0, h, &f);
    c.snd_nxt = c.snd_nxt.wrapping_add(first as u32);
    if first < n {
        c.send(&mut g, ACK | PSH, &sink_pattern(first, n - first));
    }
    let want = c.snd_nxt;
    c.expect(&mut g, "ACK of the super-segment", |s| s.ack == want);
    assert_eq!(line_within(out, T), format!("got {n} ok"), "{}", p.log());
}

#[test]
fn tso_in_ipv4() {
    tso_in(false, 5106);
}

#[test]
fn tso_in_ipv6() {
    tso_in(true, 5107);
}

/// With GUEST_TSO4, passt sends data as super-frames: gso_type TCPV4,
/// gso_size the MSS, longer than one MTU.
#[test]
fn tso_out_ipv4() {
    let tb = Testbed::new();
    let p = Passt::start(&tb, &[]);
    let mut g = Guest::new(&p, Opts::default(), 4096);
    let (_srv, _out) = server(&tb, false, 5108, "bulk 400000");
    let mut c = Conn::new(0, false, 41108, 5108);
    c.open(&mut g);
    let frames = c.download(&mut g, 400_000);
    let big: Vec<&RxFrame> = frames
        .iter()
        .filter(|f| f.hdr.gso_type == GSO_TCPV4)
        .collect();
    assert!(
        !big.is_empty(),
        "no TCPV4 super-frame in {} segments (largest {} bytes)",
        frames.len(),
        frames.iter().map(|f| f.frame.len()).max().unwrap_or(0)
    );
    for f in &big {
        assert!(
            f.frame.len() > 1514,
            "super-frame of {} bytes",
            f.frame.len()
        );
        assert!(
            (536..=65535).contains(&f.hdr.gso_size) && f.hdr.gso_size < f.frame.len() as u16,
            "gso_size {}",
            f.hdr.gso_size
        );
    }
}

/// The call eventfd fires when passt fills RX buffers.
#[test]
fn call_eventfd_signals_rx() {
    let tb = Testbed::new();
    let p = Passt::start(&tb, &[]);
    let mut g = Guest::new(&p, Opts::default(), 2048);
    // Whatever passt sent on its own first is drained.
    while g
        .recv(0, Instant::now() + Duration::from_millis(200))
        .is_some()
    {}
    let _ = g.d.queues[0].call.read();
    g.d.queues[0].set_used_event(&g.d.mem, g.d.queues[0].last_used);
    g.d.send(0, NetHdr::default(), &arp_request(REMOTE4.parse().unwrap()));
    assert!(
        g.d.call_signalled(0, deadline()),
        "no call on the RX queue for the ARP reply\n{}",
        p.log()
    );
    g.expect(0, "ARP reply", is_arp_reply);
}

/// Many more frames than the rings hold, each way, with notifications
/// as negotiated (the driver kicks and waits only as the event indices
/// or flags say): nothing stalls.
fn traffic_beyond_ring_size(event_idx: bool) {
    let tb = Testbed::new();
    let p = Passt::start(&tb, &[]);
    // A 16-entry ring of 2 KiB buffers (32 KiB) cannot take a 64 KiB TCP
    // super-frame, so this driver does not offer GUEST_TSO (a driver that
    // does must post room for one: virtio-net, "Setting Up Receive
    // Buffers").
    let mut features =
        Opts::default().features & !(bit(VIRTIO_NET_F_GUEST_TSO4) | bit(VIRTIO_NET_F_GUEST_TSO6));
    if !event_idx {
        features &= !bit(VIRTIO_RING_F_EVENT_IDX);
    }
    let opts = Opts {
        queue_size: 16,
        features,
        ..Opts::default()
    };
    let mut g = Guest::new(&p, opts, 2048);
    assert_eq!(g.d.has(VIRTIO_RING_F_EVENT_IDX), event_idx);
    let req = arp_request(REMOTE4.parse().unwrap());
    // One at a time, then in bursts of 12 (under the ring size, so
    // nothing is dropped for want of RX buffers).
    for _ in 0..40 {
        g.d.send(0, NetHdr::default(), &req);
        g.expect(0, "ARP reply", is_arp_reply);
    }
    for _ in 0..10 {
        for _ in 0..12 {
            g.d.send(0, NetHdr::default(), &req);
        }
        for k in 0..12 {
            g.expect(0, &format!("ARP reply {k} of a burst"), is_arp_reply);
        }
    }
    // TCP across both rings many times over.
    let (_srv, _out) = server(&tb, false, 5109, "bulk 200000");
    let mut c = Conn::new(0, false, 41109, 5109);
    c.open(&mut g);
    c.download(&mut g, 200_000);
    let (tx, rx) = (&g.d.queues[1], &g.d.queues[0]);
    eprintln!(
        "event_idx {event_idx}: TX kicks {} (skipped {}), RX kicks {} (skipped {})",
        tx.kicks, tx.kicks_skipped, rx.kicks, rx.kicks_skipped
    );
    if event_idx {
        let tx = &g.d.queues[1];
        assert_ne!(
            tx.avail_event(&g.d.mem),
            0,
            "passt never published avail_event on the TX queue"
        );
    }
    assert!(g.d.queues[1].kicks > 0);
}

#[test]
fn notifications_with_event_idx() {
    traffic_beyond_ring_size(true);
}

#[test]
fn notifications_without_event_idx() {
    traffic_beyond_ring_size(false);
}

/// Four queue pairs: every pair works, and a flow's frames toward the
/// guest leave on the pair its traffic arrives on.
#[test]
fn multiqueue_flows_stay_on_their_pair() {
    let tb = Testbed::new();
    let p = Passt::start(&tb, &[]);
    let opts = Opts {
        pairs: 4,
        poll_used: true,
        ..Opts::default()
    };
    let mut g = Guest::new(&p, opts, 4096);
    for pair in 0..4 {
        g.arp(pair);
    }
    let all = [0usize, 1, 2, 3];
    for (pair, port) in [(2usize, 5110u16), (1, 5111), (3, 5112), (0, 5113)] {
        let (_srv, _out) = server(&tb, false, port, "bulk 30000");
        let mut c = Conn::new(pair, false, port + 30000, port);
        c.send(&mut g, SYN, &[]);
        // Any pair's frame is looked at: this flow's must be on `pair`.
        let mut got = 0usize;
        let end = Instant::now() + Duration::from_secs(10);
        let mut open = false;
        while got < 30_000 {
            assert!(Instant::now() < end, "flow on pair {pair} stalled at {got}");
            let Some((on, rx)) =
                g.d.recv_from(&all, Instant::now() + Duration::from_millis(500))
            else {
                if open {
                    c.send(&mut g, ACK, &[]);
                }
                continue;
            };
            let f = check_rx(&g.d, &rx);
            let Some(s) = c.parse(&f) else { continue };
            assert_eq!(
                on, pair,
                "a frame of the flow from pair {pair} came on pair {on}"
            );
            if !open {
                assert_eq!(s.flags & (SYN | ACK), SYN | ACK);
                c.rcv_nxt = s.seq.wrapping_add(1);
                c.send(&mut g, ACK, &[]);
                open = true;
                continue;
            }
            if s.seq == c.rcv_nxt && !s.payload.is_empty() {
                got += s.payload.len();
                c.rcv_nxt = c.rcv_nxt.wrapping_add(s.payload.len() as u32);
                c.send(&mut g, ACK, &[]);
            }
        }
        c.send(&mut g, RST | ACK, &[]);
    }
}

// ---------------------------------------------------------------------
// Bad input

/// Words a log line about bad descriptors or rings may use.
const RING_WORDS: &[&str] = &[
    "descriptor",
    "invalid",
    "chain",
    "address",
    "memory",
    "loop",
    "ring",
    "queue",
    "broken",
    "index",
    "error",
];
/// Words a log line about a broken or closed connection may use.
const CONN_WORDS: &[&str] = &[
    "disconnect",
    "closed",
    "hang",
    "eof",
    "truncat",
    "short",
    "invalid",
    "connection",
    "message",
    "error",
    "too",
];

/// After bad input: passt has said why (before the front-end `g`, if
/// any, goes: a disconnection could be handled first), still runs, and
/// serves the next front-end.
fn still_serves(p: &mut Passt, g: Option<Guest>, from: usize, what: &str, words: &[&str]) {
    let line = p.expect_log(from, what, words);
    eprintln!("{what}: passt logged: {line}");
    drop(g);
    assert!(p.alive(), "passt exited after {what}\n{}", p.log());
    let mut g = Guest::new(p, Opts::default(), 2048);
    g.arp(0);
    assert!(!p.log().contains("panicked"), "{}", p.log());
}

/// Puts a hand-made chain on TX queue 1: `descs` are (index, addr, len,
/// flags, next), the first is the head.
fn bad_chain(d: &mut VhostDriver, descs: &[(u16, u64, u32, u16, u16)]) {
    let m = &d.mem;
    let r = &mut d.queues[1];
    for &(i, addr, len, flags, next) in descs {
        r.write_desc(m, i, addr, len, flags, next);
    }
    r.push_avail(m, descs[0].0);
    r.publish(m, r.avail_idx);
    r.kick.write(1).unwrap();
}

const NEXT: u16 = 1;

#[test]
fn bad_descriptor_address_outside_memory() {
    let tb = Testbed::new();
    let mut p = Passt::start(&tb, &[]);
    let mut g = Guest::new(&p, Opts::default(), 2048);
    let from = p.log().len();
    let end = MEM_BASE + g.d.mem.size;
    // Below the region, then straddling its end.
    bad_chain(&mut g.d, &[(0, 0, 100, 0, 0)]);
    bad_chain(&mut g.d, &[(1, end - 20, 100, 0, 0)]);
    bad_chain(&mut g.d, &[(2, u64::MAX - 10, 100, 0, 0)]);
    still_serves(
        &mut p,
        Some(g),
        from,
        "descriptors outside the memory table",
        RING_WORDS,
    );
}

#[test]
fn bad_descriptor_loop() {
    let tb = Testbed::new();
    let mut p = Passt::start(&tb, &[]);
    let mut g = Guest::new(&p, Opts::default(), 2048);
    let from = p.log().len();
    let (a, b) = (g.d.queues[1].slot(0), g.d.queues[1].slot(1));
    bad_chain(&mut g.d, &[(0, a, 60, NEXT, 1), (1, b, 60, NEXT, 0)]);
    still_serves(&mut p, Some(g), from, "a descriptor loop", RING_WORDS);
}

#[test]
fn bad_chain_longer_than_ring() {
    let tb = Testbed::new();
    let mut p = Passt::start(&tb, &[]);
    let opts = Opts {
        queue_size: 16,
        ..Opts::default()
    };
    let mut g = Guest::new(&p, opts, 2048);
    let from = p.log().len();
    // Every descriptor chained, the last back to the first: a walk
    // longer than the ring.
    let descs: Vec<_> = (0..16u16)
        .map(|i| (i, g.d.queues[1].slot(i), 64, NEXT, (i + 1) % 16))
        .collect();
    bad_chain(&mut g.d, &descs);
    still_serves(
        &mut p,
        Some(g),
        from,
        "a chain longer than the ring",
        RING_WORDS,
    );
}

#[test]
fn bad_next_index_beyond_ring() {
    let tb = Testbed::new();
    let mut p = Passt::start(&tb, &[]);
    let opts = Opts {
        queue_size: 16,
        ..Opts::default()
    };
    let mut g = Guest::new(&p, opts, 2048);
    let from = p.log().len();
    let a = g.d.queues[1].slot(0);
    bad_chain(&mut g.d, &[(0, a, 64, NEXT, 40)]);
    still_serves(
        &mut p,
        Some(g),
        from,
        "a next index beyond the ring",
        RING_WORDS,
    );
}

#[test]
fn bad_avail_idx_past_ring_size() {
    let tb = Testbed::new();
    let mut p = Passt::start(&tb, &[]);
    let opts = Opts {
        queue_size: 16,
        ..Opts::default()
    };
    let g = Guest::new(&p, opts, 2048);
    let from = p.log().len();
    let r = &g.d.queues[1];
    // No entries behind it: heads 0, and far more than the ring holds.
    r.publish(&g.d.mem, r.avail_idx.wrapping_add(16 + 5));
    r.kick.write(1).unwrap();
    still_serves(
        &mut p,
        Some(g),
        from,
        "an avail index past the ring size",
        RING_WORDS,
    );
}

/// A chain of exactly the ring's size is legal (the spec forbids only
/// longer ones): the frame in it is taken.
#[test]
fn chain_as_long_as_the_ring_is_accepted() {
    let tb = Testbed::new();
    let p = Passt::start(&tb, &[]);
    let opts = Opts {
        queue_size: 16,
        ..Opts::default()
    };
    let mut g = Guest::new(&p, opts, 2048);
    let req = arp_request(REMOTE4.parse().unwrap());
    // Header and frame (54 bytes) in 16 descriptors.
    let cuts: Vec<usize> = (1..16).map(|k| k * 3).collect();
    g.d.send_cut(0, NetHdr::default(), &req, &cuts);
    let end = deadline();
    let mut ok = false;
    while let Some((_, f)) = g.recv(0, end) {
        ok |= is_arp_reply(&f);
        if ok {
            break;
        }
    }
    assert!(ok, "no ARP reply to a 16-descriptor chain\n{}", p.log());
}

/// A frame longer than any Ethernet frame with a 64 KiB IP packet: a
/// dropped frame, and the same device goes on working.
#[test]
fn bad_oversized_frame_is_dropped_and_the_device_works() {
    let tb = Testbed::new();
    let mut p = Passt::start(&tb, &[]);
    let mut g = Guest::new(&p, Opts::default(), 2048);
    let big = vec![0x5au8; 100_000];
    g.d.send(0, NetHdr::default(), &big);
    g.arp(0);
    assert!(p.alive());
}

#[test]
fn bad_truncated_message_then_disconnect() {
    let tb = Testbed::new();
    let mut p = Passt::start(&tb, &[]);
    let from = p.log().len();
    let mut s = p.served();
    // Half a header.
    s.write_all(&msg(2, 0x1, &[0; 8])[..6]).unwrap();
    drop(s);
    still_serves(&mut p, None, from, "a truncated header", CONN_WORDS);
    // A header announcing 8 bytes, 4 of them sent.
    let from = p.log().len();
    let mut s = p.served();
    s.write_all(&msg(2, 0x1, &[0; 8])[..16]).unwrap();
    drop(s);
    still_serves(&mut p, None, from, "a truncated payload", CONN_WORDS);
}

#[test]
fn bad_oversized_message() {
    let tb = Testbed::new();
    let mut p = Passt::start(&tb, &[]);
    let from = p.log().len();
    let mut s = p.served();
    let mut m = msg(2, 0x1, &[]);
    m[8..12].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    m.extend_from_slice(&[0u8; 4096]);
    let _ = s.write_all(&m);
    // Refused with a reason while still connected: passt does not wait
    // for 4 GiB.
    let line = p.expect_log(from, "an oversized message", CONN_WORDS);
    eprintln!("oversized message: passt logged: {line}");
    drop(s);
    still_serves(&mut p, None, from, "an oversized message", CONN_WORDS);
}

#[test]
fn bad_disconnect_mid_negotiation() {
    let tb = Testbed::new();
    let mut p = Passt::start(&tb, &[]);
    // After the features.
    let from = p.log().len();
    {
        use ::vhost::VhostBackend;
        let fe = ::vhost::vhost_user::Frontend::from_stream(p.served(), 2);
        let f = fe.get_features().unwrap();
        fe.set_features(f & OFFERED).unwrap();
    }
    still_serves(
        &mut p,
        None,
        from,
        "a disconnection after SET_FEATURES",
        CONN_WORDS,
    );
    // With the memory table and half the rings set up, kicks armed.
    let from = p.log().len();
    {
        let d = p.driver(Opts::default());
        d.queues[1].kick.write(1).unwrap();
        drop(d);
    }
    still_serves(
        &mut p,
        None,
        from,
        "a disconnection of a set-up device",
        CONN_WORDS,
    );
}

/// QEMU 10.1's `-netdev passt,vhost-user=on`: `passt --vhost-user --fd 3`
/// over a connected socket.
#[test]
fn fd_mode_serves_a_connected_socket() {
    use std::os::fd::AsRawFd;
    let tb = Testbed::new();
    let log = tb.path("fd.log");
    let (ours, theirs) = UnixStream::pair().unwrap();
    let theirs = inheritable_fd(theirs);
    // bash: the socket is numbered 10 or above, moved to 3.
    let script = format!(
        "exec ip netns exec {} {} -f -d --vhost-user --fd 3 3<&{} {}<&-",
        tb.host,
        passt(),
        theirs.as_raw_fd(),
        theirs.as_raw_fd()
    );
    let child = std::process::Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    drop(theirs);
    let mut p = Passt {
        child: Guard(child),
        sock: tb.path("unused"),
        log,
    };
    let mut d = VhostDriver::over(ours, Opts::default());
    d.post_rx_buffers(0, 64, 2048);
    d.send(0, NetHdr::default(), &arp_request(REMOTE4.parse().unwrap()));
    let end = deadline();
    let mut ok = false;
    while let Some(rx) = d.recv(0, end) {
        if is_arp_reply(&check_rx(&d, &rx)) {
            ok = true;
            break;
        }
    }
    assert!(ok, "no ARP reply over --fd\n{}", p.log());
    // The front-end goes: so does passt, as with QEMU.
    drop(d);
    let st = p.wait_exit(Duration::from_secs(10));
    assert!(!p.log().contains("panicked"), "{st}\n{}", p.log());
}

/// `--one-off`: after bad rings and a disconnection, passt exits, cleanly.
#[test]
fn one_off_exits_cleanly_after_bad_input() {
    let tb = Testbed::new();
    let mut p = Passt::start(&tb, &["--one-off"]);
    let mut g = Guest::new(&p, Opts::default(), 2048);
    let a = g.d.queues[1].slot(0);
    bad_chain(&mut g.d, &[(0, a, 60, NEXT, 0)]);
    bad_chain(&mut g.d, &[(1, 0, 60, 0, 0)]);
    drop(g);
    let st = p.wait_exit(Duration::from_secs(10));
    let log = p.log();
    assert!(st.success(), "exit status {st}\n{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// `--one-off` and a truncated message: passt exits, cleanly.
#[test]
fn one_off_exits_cleanly_after_truncated_message() {
    let tb = Testbed::new();
    let mut p = Passt::start(&tb, &["--one-off"]);
    let mut s = connect(&p.sock);
    s.write_all(&msg(15, 0x1, &[])[..7]).unwrap();
    drop(s);
    let st = p.wait_exit(Duration::from_secs(10));
    let log = p.log();
    assert!(st.success(), "exit status {st}\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    p.expect_log(0, "the disconnection", CONN_WORDS);
}
