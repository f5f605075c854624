//! passt's QEMU socket, frame by frame, without a VM: the test speaks
//! QEMU's stream framing (4-byte big-endian length, Ethernet frame) to our
//! passt running in the test bed's host namespace, builds the guest's
//! frames, and checks every frame passt sends: at least 60 bytes, and
//! complete, correct IPv4 header, TCP, UDP, ICMP and ICMPv6 checksums
//! (computed here independently of the crate).

mod common;

use common::*;
use passt_rs::wire::{self, L3, L4};
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const T: Duration = Duration::from_secs(10);

/// The guest's end of the QEMU socket, checking every frame it gets.
struct Guest {
    g: common::stream::StreamGuest,
    our_mac: Option<[u8; 6]>,
}

impl Guest {
    fn new(s: UnixStream) -> Guest {
        Guest {
            g: common::stream::StreamGuest::new(s),
            our_mac: None,
        }
    }

    fn connect(path: &Path) -> Guest {
        Guest::new(common::connect_unix(path, T))
    }

    fn send(&mut self, frame: &[u8]) {
        self.g.send(frame).expect("write to passt");
    }

    /// Sends raw bytes (bad records).
    fn send_raw(&mut self, bytes: &[u8]) {
        self.g.send_raw(bytes);
    }

    /// Next frame within `timeout`, checked; None on timeout. Panics if
    /// passt closes the connection.
    fn recv(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let f = self.g.recv(timeout).expect("read from passt")?;
        check_frame(&f);
        if self.our_mac.is_none() {
            self.our_mac = Some(f[6..12].try_into().unwrap());
        }
        Some(f)
    }

    /// Waits for a frame matching `pred`, skipping others.
    fn expect(&mut self, what: &str, mut pred: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
        let end = Instant::now() + T;
        while Instant::now() < end {
            if let Some(f) = self.recv(Duration::from_millis(200)) {
                if pred(&f) {
                    return f;
                }
            }
        }
        panic!("timed out waiting for {what}");
    }

    /// True once passt has closed this connection (end of file).
    fn closed_within(&mut self, timeout: Duration) -> bool {
        self.g.closed_within(timeout)
    }

    fn gw_mac(&self) -> [u8; 6] {
        self.our_mac.unwrap_or([0xff; 6])
    }
}

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

fn folds_to_ffff(mut acc: u64) -> bool {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc == 0xffff
}

/// Checks a frame from passt: padded to 60 bytes, every checksum complete
/// and correct, and accepted by the crate's own classifier.
fn check_frame(f: &[u8]) {
    assert!(f.len() >= 60, "frame shorter than 60 bytes: {}", f.len());
    let et = u16::from_be_bytes([f[12], f[13]]);
    match et {
        0x0800 => {
            let ihl = usize::from(f[14] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
            let ip = &f[14..14 + ihl];
            assert!(folds_to_ffff(sum16(ip, 0)), "bad IPv4 header checksum");
            let l4 = &f[14 + ihl..14 + total];
            let proto = f[23];
            let pseudo = sum16(&f[26..34], 0) + u64::from(proto) + l4.len() as u64;
            match proto {
                6 | 17 => {
                    if proto == 17 {
                        assert_ne!(&l4[6..8], &[0, 0], "UDP checksum missing");
                    }
                    assert!(
                        folds_to_ffff(sum16(l4, pseudo)),
                        "bad {} checksum (IPv4)",
                        if proto == 6 { "TCP" } else { "UDP" }
                    );
                }
                1 => assert!(folds_to_ffff(sum16(l4, 0)), "bad ICMP checksum"),
                _ => {}
            }
        }
        0x86dd => {
            let plen = usize::from(u16::from_be_bytes([f[18], f[19]]));
            let nh = f[20];
            let l4 = &f[54..54 + plen];
            let pseudo = sum16(&f[22..54], 0) + u64::from(nh) + plen as u64;
            if matches!(nh, 6 | 17 | 58) {
                assert!(
                    folds_to_ffff(sum16(l4, pseudo)),
                    "bad checksum (IPv6, next header {nh})"
                );
            }
        }
        _ => {}
    }
    if et != 0x0806 {
        // Trim the padding for the classifier: IP lengths say where the
        // packet ends.
        wire::classify(f).unwrap_or_else(|e| panic!("our own frame does not classify: {e}"));
    }
}

/// passt in the host namespace, socket mode, with its log in a file.
struct Passt {
    child: Guard,
    sock: PathBuf,
    log: PathBuf,
}

impl Passt {
    fn start(tb: &Testbed, extra: &[&str]) -> Passt {
        let sock = tb.path("passt.socket");
        let log = tb.path("passt.log");
        let mut c = tb.in_host(passt());
        c.args(["-f", "-d", "-s"]).arg(&sock).args(extra);
        c.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = Guard(c.spawn().expect("start passt"));
        let s = sock.clone();
        wait_for("the passt socket", T, || s.exists());
        Passt { child, sock, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn arp_request(tpa: Ipv4Addr) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    let repr = wire::arp::ArpRepr {
        oper: 1,
        sha: GUEST_MAC,
        spa: HOST4.parse().unwrap(),
        tha: [0; 6],
        tpa,
    };
    let n = wire::build::eth_arp(&mut out, GUEST_MAC, [0xff; 6], &repr).unwrap();
    out.truncate(n);
    out
}

fn guest_ll() -> Ipv6Addr {
    "fe80::5054:ff:fe12:3456".parse().unwrap()
}

fn icmpv6_frame(dst_mac: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 200];
    let n = wire::build::eth_ipv6_icmpv6(&mut out, GUEST_MAC, dst_mac, src, dst, 255, msg).unwrap();
    out.truncate(n);
    out
}

fn dhcp_frame(t: dhcproto::v4::MessageType, req: Option<Ipv4Addr>) -> Vec<u8> {
    use dhcproto::v4::{DhcpOption, Flags, Message};
    use dhcproto::{Encodable, Encoder};
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(0x1234_5678, z, z, z, z, &GUEST_MAC);
    m.set_flags(Flags::default().set_broadcast());
    m.opts_mut().insert(DhcpOption::MessageType(t));
    if let Some(a) = req {
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(a));
    }
    let mut payload = Vec::new();
    m.encode(&mut Encoder::new(&mut payload)).unwrap();
    let mut out = vec![0u8; 1500];
    let n = wire::build::eth_ipv4_udp(
        &mut out,
        GUEST_MAC,
        [0xff; 6],
        SocketAddrV4::new(z, 68),
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 67),
        64,
        &payload,
    )
    .unwrap();
    out.truncate(n);
    out
}

fn dhcp_reply(f: &[u8]) -> Option<dhcproto::v4::Message> {
    use dhcproto::{Decodable, Decoder};
    let c = wire::classify(f).ok()?;
    match c.l3 {
        L3::Ipv4 {
            l4:
                L4::Udp {
                    sport: 67,
                    dport: 68,
                    payload,
                },
            ..
        } => dhcproto::v4::Message::decode(&mut Decoder::new(payload)).ok(),
        _ => None,
    }
}

#[test]
fn arp_ndp_dhcp_and_ping() {
    let tb = Testbed::new();
    let p = Passt::start(&tb, &[]);
    let mut g = Guest::connect(&p.sock);

    // Greeting: an ARP request and a neighbour solicitation for the guest.
    g.expect("ARP probe for the guest", |f| {
        f[12..14] == [8, 6] && f[38..42] == HOST4.parse::<Ipv4Addr>().unwrap().octets()
    });

    // ARP request for the gateway → reply.
    g.send(&arp_request(REMOTE4.parse().unwrap()));
    let r = g.expect("ARP reply", |f| f[12..14] == [8, 6] && f[20..22] == [0, 2]);
    assert_eq!(&r[0..6], &GUEST_MAC);
    assert_eq!(&r[28..32], &REMOTE4.parse::<Ipv4Addr>().unwrap().octets());

    // NS for the router → NA.
    let target: Ipv6Addr = REMOTE6.parse().unwrap();
    let mut ns = vec![135u8, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&target.octets());
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&GUEST_MAC);
    let snm: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
    g.send(&icmpv6_frame(
        [0x33, 0x33, 0xff, 0, 0, 1],
        guest_ll(),
        snm,
        &ns,
    ));
    let na = g.expect("NA", |f| f[12..14] == [0x86, 0xdd] && f[54] == 136);
    assert_eq!(&na[62..78], &target.octets());

    // RS → RA with the host's prefix.
    let mut rs = vec![133u8, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    rs.extend_from_slice(&GUEST_MAC);
    g.send(&icmpv6_frame(
        [0x33, 0x33, 0, 0, 0, 2],
        guest_ll(),
        "ff02::2".parse().unwrap(),
        &rs,
    ));
    let ra = g.expect("RA", |f| f[12..14] == [0x86, 0xdd] && f[54] == 134);
    let prefix = &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0][..];
    assert!(
        ra.windows(8).any(|w| w == prefix),
        "RA without the host's prefix"
    );

    // DHCP: discover → offer, request → ack, with the host's address.
    g.send(&dhcp_frame(dhcproto::v4::MessageType::Discover, None));
    let offer = g.expect("DHCPOFFER", |f| dhcp_reply(f).is_some());
    let offer = dhcp_reply(&offer).unwrap();
    assert_eq!(
        offer.opts().msg_type(),
        Some(dhcproto::v4::MessageType::Offer)
    );
    assert_eq!(offer.yiaddr(), HOST4.parse::<Ipv4Addr>().unwrap());
    g.send(&dhcp_frame(
        dhcproto::v4::MessageType::Request,
        Some(HOST4.parse().unwrap()),
    ));
    let ack = g.expect("DHCPACK", |f| {
        dhcp_reply(f).is_some_and(|m| m.opts().msg_type() == Some(dhcproto::v4::MessageType::Ack))
    });
    assert_eq!(
        dhcp_reply(&ack).unwrap().yiaddr(),
        HOST4.parse::<Ipv4Addr>().unwrap()
    );

    // ICMP echo beyond the host → reply, checksums checked by expect().
    let mut echo = vec![8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
    echo.extend_from_slice(b"passt-rs ping");
    let mut out = vec![0u8; 200];
    let n = wire::build::eth_ipv4_icmp(
        &mut out,
        GUEST_MAC,
        g.gw_mac(),
        HOST4.parse().unwrap(),
        BEYOND4.parse().unwrap(),
        64,
        &echo,
    )
    .unwrap();
    g.send(&out[..n]);
    let reply = g.expect("echo reply", |f| {
        f[12..14] == [8, 0] && f[23] == 1 && f[34] == 0
    });
    assert!(reply.windows(13).any(|w| w == b"passt-rs ping"));
    assert!(p.log().contains("Client connected"), "{}", p.log());
}

/// A TCP server in the remote namespace (python3), for one connection.
/// Modes: `bulk N` sends N bytes of pattern (i % 251), then reads to end of
/// file checking the pattern (i * 7 % 256) and prints `got M ok|bad`;
/// `wait` prints `reset` or `eof` after the guest's RST or FIN; `abort`
/// resets the connection at once.
fn tcp_server(
    tb: &Testbed,
    port: u16,
    mode: &str,
) -> (Guard, BufReader<std::process::ChildStdout>) {
    let script = r#"
import socket, sys, struct
port, mode = int(sys.argv[1]), sys.argv[2]
l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", port)); l.listen(1)
print("ready", flush=True)
c, _ = l.accept()
if mode == "bulk":
    n = int(sys.argv[3])
    data = bytes(i % 251 for i in range(n))
    c.sendall(data)
    got, ok = 0, True
    while True:
        b = c.recv(65536)
        if not b:
            break
        for j, x in enumerate(b):
            if x != ((got + j) * 7) % 256:
                ok = False
        got += len(b)
    print("got %d %s" % (got, "ok" if ok else "bad"), flush=True)
    c.close()
elif mode == "wait":
    try:
        b = c.recv(100)
        print("eof" if not b else "data", flush=True)
    except ConnectionResetError:
        print("reset", flush=True)
elif mode == "abort":
    # Once the client's first byte shows the connection is established on
    # both sides: a reset right after accept() can beat the connection's
    # completion to passt, which then sees a refused connect instead.
    c.recv(1)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    print("aborted", flush=True)
"#;
    let mut c = tb.in_remote("python3");
    c.args(["-c", script, &port.to_string()])
        .args(mode.split(' '))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child: Child = c.spawn().expect("python3");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    (Guard(child), out)
}

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;

/// A guest-side TCP endpoint, just enough to drive passt.
struct Conn {
    sport: u16,
    dport: u16,
    dst: Ipv4Addr,
    snd_nxt: u32,
    rcv_nxt: u32,
    window: u16,
}

struct Seg {
    seq: u32,
    ack: u32,
    flags: u8,
    payload: Vec<u8>,
}

fn parse_tcp(f: &[u8], c: &Conn) -> Option<Seg> {
    let cl = wire::classify(f).ok()?;
    let L3::Ipv4 {
        src,
        l4: L4::Tcp(t),
        ..
    } = cl.l3
    else {
        return None;
    };
    if src != c.dst || t.src_port() != c.dport || t.dst_port() != c.sport {
        return None;
    }
    Some(Seg {
        seq: t.seq(),
        ack: t.ack(),
        flags: t.flags() as u8,
        payload: t.payload().to_vec(),
    })
}

impl Conn {
    fn frame(&self, g: &Guest, flags: u8, seq: u32, payload: &[u8], opts: bool) -> Vec<u8> {
        let mut b = etherparse::PacketBuilder::ethernet2(GUEST_MAC, g.gw_mac())
            .ipv4(
                HOST4.parse::<Ipv4Addr>().unwrap().octets(),
                self.dst.octets(),
                64,
            )
            .tcp(self.sport, self.dport, seq, self.window);
        if flags & SYN != 0 {
            b = b.syn();
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
        if opts {
            b = b
                .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
                .unwrap();
        }
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn send(&self, g: &mut Guest, flags: u8, payload: &[u8]) {
        let f = self.frame(g, flags, self.snd_nxt, payload, flags & SYN != 0);
        g.send(&f);
    }

    fn next(&self, g: &mut Guest, timeout: Duration) -> Option<Seg> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let f = g.recv(Duration::from_millis(50))?;
            if let Some(s) = parse_tcp(&f, self) {
                return Some(s);
            }
        }
        None
    }

    fn expect(&self, g: &mut Guest, what: &str, mut pred: impl FnMut(&Seg) -> bool) -> Seg {
        let end = Instant::now() + T;
        while Instant::now() < end {
            if let Some(s) = self.next(g, Duration::from_millis(200)) {
                if pred(&s) {
                    return s;
                }
            }
        }
        panic!("timed out waiting for {what}");
    }

    fn open(g: &mut Guest, dst: &str, sport: u16, dport: u16, window: u16) -> Conn {
        let mut c = Conn {
            sport,
            dport,
            dst: dst.parse().unwrap(),
            snd_nxt: 1_000_000,
            rcv_nxt: 0,
            window,
        };
        c.send(g, SYN, &[]);
        c.snd_nxt += 1;
        let sa = c.expect(g, "SYN,ACK", |s| s.flags & (SYN | ACK) == SYN | ACK);
        assert_eq!(sa.ack, c.snd_nxt);
        c.rcv_nxt = sa.seq.wrapping_add(1);
        c.send(g, ACK, &[]);
        c
    }
}

fn pattern_in(off: usize) -> u8 {
    (off % 251) as u8
}

#[test]
fn tcp_data_both_ways_zero_window_dup_acks_fin() {
    let tb = Testbed::new();
    let p = Passt::start(&tb, &[]);
    let (mut srv, mut srv_out) = tcp_server(&tb, 5001, "bulk 200000");
    let mut g = Guest::connect(&p.sock);
    const W: u16 = 8192;
    let mut c = Conn::open(&mut g, BEYOND4, 40001, 5001, W);
    let isn = c.rcv_nxt;
    let mut got: usize = 0;
    let mut zero_window_done = false;
    let mut dup_done = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while got < 200_000 {
        assert!(
            Instant::now() < deadline,
            "download stalled at {got}\n{}",
            p.log()
        );
        let Some(s) = c.next(&mut g, Duration::from_millis(500)) else {
            // Nothing more within the window: acknowledge what we have.
            c.send(&mut g, ACK, &[]);
            continue;
        };
        // Never beyond the window we advertised.
        let end = s.seq.wrapping_add(s.payload.len() as u32);
        assert!(
            end.wrapping_sub(c.rcv_nxt) <= u32::from(W) || s.seq != c.rcv_nxt,
            "segment beyond our window"
        );
        if s.seq != c.rcv_nxt || s.payload.is_empty() {
            continue;
        }
        for (j, &b) in s.payload.iter().enumerate() {
            assert_eq!(b, pattern_in(got + j), "data mismatch at {}", got + j);
        }
        got += s.payload.len();
        c.rcv_nxt = end;
        // Acknowledge only when the window is full, so that passt has
        // nothing in flight beyond what we received.
        let full = (c.rcv_nxt.wrapping_sub(isn) as usize).is_multiple_of(usize::from(W));
        if !full {
            continue;
        }
        if got >= 40_000 && !dup_done {
            // Pretend the last segment was lost: three duplicate ACKs for
            // its start bring it back before any timeout.
            dup_done = true;
            let lost = s.seq;
            let keep = c.rcv_nxt;
            c.rcv_nxt = lost;
            // One ACK moves to the "lost" segment, three more duplicate it.
            for _ in 0..4 {
                c.send(&mut g, ACK, &[]);
            }
            let t0 = Instant::now();
            let r = c.expect(&mut g, "retransmission", |r| {
                r.seq == lost && !r.payload.is_empty()
            });
            assert!(
                t0.elapsed() < Duration::from_millis(900),
                "retransmission after {:?}: not a fast retransmit",
                t0.elapsed()
            );
            // Rewound to the lost byte: the same data again (maybe more).
            let n = r.payload.len().min(s.payload.len());
            assert!(
                n > 0 && r.payload[..n] == s.payload[..n],
                "wrong retransmission"
            );
            c.rcv_nxt = keep;
        }
        if got >= 80_000 && !zero_window_done {
            zero_window_done = true;
            c.window = 0;
            c.send(&mut g, ACK, &[]);
            // Nothing but (at most) one-byte window probes for 1.5 s.
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_millis(1500) {
                if let Some(s) = c.next(&mut g, Duration::from_millis(100)) {
                    let len = s.payload.len() as u32;
                    assert!(
                        len <= 1 && s.seq == c.rcv_nxt,
                        "passt sent {len} bytes at {} into a zero window",
                        s.seq
                    );
                }
            }
            c.window = W;
        }
        c.send(&mut g, ACK, &[]);
    }
    assert_eq!(got, 200_000);
    assert!(dup_done && zero_window_done);
    c.send(&mut g, ACK, &[]);

    // Upload 100 000 bytes, as passt's window allows. The first small
    // segment alone: its ACK may be delayed, but only briefly.
    let total = 100_000usize;
    let base = c.snd_nxt;
    let first: Vec<u8> = (0..100).map(|i| ((i * 7) % 256) as u8).collect();
    c.send(&mut g, ACK | PSH, &first);
    let t0 = Instant::now();
    c.expect(&mut g, "ACK of a lone segment", |s| {
        s.ack == base.wrapping_add(100)
    });
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "lone segment acknowledged after {:?}",
        t0.elapsed()
    );
    let mut sent = 100usize;
    let mut acked = 100usize;
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked < total {
        assert!(
            Instant::now() < deadline,
            "upload stalled at {acked}\n{}",
            p.log()
        );
        while sent < total && sent - acked < 16 * 1400 {
            let n = (total - sent).min(1400);
            let data: Vec<u8> = (sent..sent + n).map(|i| ((i * 7) % 256) as u8).collect();
            c.snd_nxt = base.wrapping_add(sent as u32);
            c.send(&mut g, ACK | PSH, &data);
            sent += n;
        }
        if let Some(s) = c.next(&mut g, Duration::from_millis(300)) {
            let a = s.ack.wrapping_sub(base) as usize;
            if a <= total && a > acked {
                acked = a;
            }
        } else {
            // Nothing acknowledged for a while: resend from the last ACK.
            sent = acked;
        }
    }
    c.snd_nxt = base.wrapping_add(total as u32);
    c.send(&mut g, FIN | ACK, &[]);
    c.snd_nxt = c.snd_nxt.wrapping_add(1);
    let fin = c.expect(&mut g, "FIN from the server", |s| s.flags & FIN != 0);
    assert_eq!(fin.ack, c.snd_nxt, "our FIN not acknowledged");
    c.rcv_nxt = fin.seq.wrapping_add(1);
    c.send(&mut g, ACK, &[]);
    let mut line = String::new();
    srv_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "got 100000 ok");
    let _ = srv.0.wait();
}

#[test]
fn tcp_resets_both_ways() {
    let tb = Testbed::new();
    let p = Passt::start(&tb, &[]);
    let mut g = Guest::connect(&p.sock);

    // The guest resets: the server sees a reset.
    let (_srv, mut out) = tcp_server(&tb, 5002, "wait");
    let c = Conn::open(&mut g, BEYOND4, 40002, 5002, 65535);
    c.send(&mut g, RST | ACK, &[]);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "reset", "{}", p.log());

    // The server resets: the guest gets a RST.
    let (_srv, mut out) = tcp_server(&tb, 5003, "abort");
    let c = Conn::open(&mut g, BEYOND4, 40003, 5003, 65535);
    c.send(&mut g, PSH | ACK, b"x");
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "aborted");
    c.expect(&mut g, "RST", |s| s.flags & RST != 0);

    // A SYN to a closed port: RST.
    let mut c = Conn {
        sport: 40004,
        dport: 5999,
        dst: BEYOND4.parse().unwrap(),
        snd_nxt: 7,
        rcv_nxt: 0,
        window: 65535,
    };
    c.send(&mut g, SYN, &[]);
    c.snd_nxt += 1;
    c.expect(&mut g, "RST for a closed port", |s| s.flags & RST != 0);
}

#[test]
fn bad_records_reset_the_connection_and_passt_serves_the_next_client() {
    let tb = Testbed::new();
    let p = Passt::start(&tb, &[]);
    let arp_ok = |g: &mut Guest| {
        g.send(&arp_request(REMOTE4.parse().unwrap()));
        g.expect("ARP reply", |f| f[12..14] == [8, 6] && f[20..22] == [0, 2]);
    };
    let mut g = Guest::connect(&p.sock);
    arp_ok(&mut g);

    // A second client while one is connected: closed at once; the first
    // one still works.
    let mut second = Guest::connect(&p.sock);
    assert!(second.closed_within(T), "second client not closed");
    arp_ok(&mut g);

    // Garbage with a valid length is a dropped frame, not a reset.
    g.send(&[0xa5; 14]);
    g.send(&[0x5a; 1000]);
    let mut bad_ip = arp_request(REMOTE4.parse().unwrap());
    bad_ip[12..14].copy_from_slice(&[8, 0]);
    g.send(&bad_ip);
    // A TCP segment with a wrong checksum is dropped too (nothing
    // answers it, not even a RST).
    let c = Conn {
        sport: 40005,
        dport: 5998,
        dst: BEYOND4.parse().unwrap(),
        snd_nxt: 1,
        rcv_nxt: 0,
        window: 65535,
    };
    let mut syn = c.frame(&g, SYN, 1, &[], true);
    let l = syn.len();
    syn[l - 1] ^= 0xff;
    g.send(&syn);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(500) {
        if let Some(f) = g.recv(Duration::from_millis(100)) {
            assert!(parse_tcp(&f, &c).is_none(), "bad-checksum SYN answered");
        }
    }
    arp_ok(&mut g);

    // Bad lengths: 0, 13, 65536 and more reset the connection.
    for len in [0u32, 13, 65536, 0xffff_ffff] {
        let mut rec = len.to_be_bytes().to_vec();
        rec.extend_from_slice(&[0u8; 20]);
        g.send_raw(&rec);
        assert!(g.closed_within(T), "length {len}: connection not reset");
        g = Guest::connect(&p.sock);
        arp_ok(&mut g);
    }

    // A frame split across writes, and many frames in one write.
    let f = arp_request(REMOTE4.parse().unwrap());
    let mut rec = (f.len() as u32).to_be_bytes().to_vec();
    rec.extend_from_slice(&f);
    g.send_raw(&rec[..3]);
    std::thread::sleep(Duration::from_millis(50));
    g.send_raw(&rec[3..20]);
    std::thread::sleep(Duration::from_millis(50));
    g.send_raw(&rec[20..]);
    g.expect("ARP reply (split record)", |f| f[20..22] == [0, 2]);
    let many: Vec<u8> = std::iter::repeat_n(rec.clone(), 50).flatten().collect();
    g.send_raw(&many);
    let mut replies = 0;
    let end = Instant::now() + T;
    while replies < 50 && Instant::now() < end {
        if let Some(f) = g.recv(Duration::from_millis(100)) {
            if f[12..14] == [8, 6] && f[20..22] == [0, 2] {
                replies += 1;
            }
        }
    }
    assert_eq!(replies, 50, "replies to 50 ARP requests in one write");
    let log = p.log();
    assert!(log.contains("Bad frame size from guest"), "{log}");
    drop(g);
    drop(p.child);
}

/// `passt --one-off --socket PATH --pid FILE`, as libvirt runs it: the
/// launcher exits 0 once the daemon listens, closes stderr, and the
/// daemon exits when the client disconnects.
#[test]
fn libvirt_contract_one_off_socket_pid() {
    let tb = Testbed::new();
    let sock = tb.path("libvirt.socket");
    let pidf = tb.path("passt.pid");
    let mut c = tb.in_host(passt());
    c.args(["--one-off", "--socket"])
        .arg(&sock)
        .arg("--pid")
        .arg(&pidf)
        .args(["--mac-addr", "52:54:00:12:34:56", "-t", "8080"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut launcher = c.spawn().expect("passt");
    // libvirt reads stderr to its end: the daemon must not hold it.
    let mut err = String::new();
    launcher
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let st = launcher.wait().unwrap();
    assert!(st.success(), "launcher failed: {err}");
    let pid: i32 = std::fs::read_to_string(&pidf)
        .unwrap()
        .trim()
        .parse()
        .expect("PID file");
    assert!(alive(pid), "daemon {pid} not running");
    assert!(sock.exists());
    let mut g = Guest::connect(&sock);
    g.send(&arp_request(REMOTE4.parse().unwrap()));
    g.expect("ARP reply", |f| f[20..22] == [0, 2]);
    drop(g);
    wait_for("passt to exit after the disconnection", T, || !alive(pid));
}

/// QEMU 10.1's `-netdev passt`: `passt --quiet --pid FILE --fd 3`, the
/// launcher waited for, then the PID file read; QEMU stops it with SIGTERM.
#[test]
fn qemu_contract_fd_3_quiet_pid() {
    use std::os::fd::AsRawFd;
    let tb = Testbed::new();
    let pidf = tb.path("qemu-passt.pid");
    let (ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let theirs = inheritable_fd(theirs);
    // The launcher: a shell that moves the socket to fd 3, as QEMU does
    // (bash: the socket is numbered 10 or above).
    let script = format!(
        "exec ip netns exec {} {} --quiet --pid {} --fd 3 --mtu 1500 3<&{} {}<&-",
        tb.host,
        passt(),
        pidf.display(),
        theirs.as_raw_fd(),
        theirs.as_raw_fd()
    );
    let mut launcher = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(theirs);
    let mut err = String::new();
    launcher
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(launcher.wait().unwrap().success(), "launcher: {err}");
    assert!(err.is_empty(), "--quiet printed: {err}");
    let pid: i32 = std::fs::read_to_string(&pidf)
        .unwrap()
        .trim()
        .parse()
        .expect("PID file");
    assert!(alive(pid));
    let mut g = Guest::new(UnixStream::from(ours));
    // Greeting on connect, then answers.
    g.expect("ARP probe for the guest", |f| f[12..14] == [8, 6]);
    g.send(&arp_request(REMOTE4.parse().unwrap()));
    g.expect("ARP reply", |f| f[20..22] == [0, 2]);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    wait_for("passt to exit on SIGTERM", T, || !alive(pid));
}

/// Without `-s`, the first free /tmp/passt_N.socket: a live one is
/// skipped, a stale file is reused.
#[test]
fn default_socket_path_probing() {
    let tb = Testbed::new();
    let log = tb.path("probe.log");
    // Whatever passt_1 is now, find what we get, then check it is not a
    // live socket of someone else.
    let mut c = tb.in_host(passt());
    // Not --one-off: probing connects to live sockets, which the
    // listener sees as a client coming and going.
    c.args(["-f"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let _p = Guard(c.spawn().unwrap());
    let mut path = None;
    wait_for("the bound message", T, || {
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        path = l
            .lines()
            .find_map(|l| l.split("UNIX domain socket bound at ").nth(1))
            .map(|p| PathBuf::from(p.trim()));
        path.is_some()
    });
    let path = path.unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        path.starts_with("/tmp") && name.starts_with("passt_") && name.ends_with(".socket"),
        "{}",
        path.display()
    );
    // A second instance skips the live socket.
    let log2 = tb.path("probe2.log");
    let mut c = tb.in_host(passt());
    c.args(["-f"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log2).unwrap());
    let _p2 = Guard(c.spawn().unwrap());
    let mut path2 = None;
    wait_for("the second bound message", T, || {
        let l = std::fs::read_to_string(&log2).unwrap_or_default();
        path2 = l
            .lines()
            .find_map(|l| l.split("UNIX domain socket bound at ").nth(1))
            .map(|p| PathBuf::from(p.trim()));
        path2.is_some()
    });
    assert_ne!(path2.as_ref().unwrap(), &path, "live socket taken over");
    // An explicit path in use is an error.
    let out = run(tb
        .in_host("timeout")
        .args(["10", passt(), "-f", "-s"])
        .arg(&path));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // That check connected to passt's socket and went away: until passt
    // has seen it go, it holds that connection as its guest and resets
    // another one. Connect again then (bounded).
    let end = Instant::now() + T;
    let mut answered = false;
    while !answered && Instant::now() < end {
        let mut g = Guest::connect(&path);
        if g.g.send(&arp_request(REMOTE4.parse().unwrap())).is_err() {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match g.g.recv(Duration::from_millis(200)) {
                Ok(Some(f)) if f.len() >= 22 && f[20..22] == [0, 2] => {
                    check_frame(&f);
                    answered = true;
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    assert!(answered, "no ARP reply on {}", path.display());
    for p in [path, path2.unwrap()] {
        let _ = std::fs::remove_file(p);
    }
}
