//! Automatic forwarding (`auto`, pasta's default): forward the ports that
//! the other side listens on, following them as they come and go.
//!
//! ## Theory of operation
//!
//! An `auto` spec becomes one `scan` rule covering ports 1–65535 (see
//! [`super::rules`]); no socket is opened for it at start. Instead, once a
//! second (the event loop's tick), [`Scanner::scan`] reads which ports are
//! bound on the *other* side of each table:
//!
//! - table `host` (`-t auto`, `-u auto`): listeners on the host for the
//!   ports bound **in the namespace**;
//! - table `splice` (`-T auto`, `-U auto`): listeners in the namespace for
//!   the ports bound **on the host**.
//!
//! TCP sockets in state `TCP_LISTEN` and UDP sockets in state `TCP_CLOSE`
//! (bound, not connected) count. The kernel gives them per namespace in
//! [`crate::netlink::sock_diag`] dumps that ask for those states only: four
//! dumps (TCP, UDP; IPv4, IPv6) per side and scan, whose cost does not grow
//! with the established connections of the machine. That is what
//! `/proc/net/tcp` would cost: the kernel builds it by walking every TCP
//! socket of the machine (the established hash is shared by all
//! namespaces) and formatting those of the namespace, so with tens of
//! thousands of connections (a connection flood, our own flows) one scan
//! took tens of milliseconds of the only thread, during which no packet
//! moved. The sock_diag socket of each side is opened once at start — the
//! host's from the daemon's own namespace, the namespace's from a thread
//! inside it — and keeps listing the sockets of the namespace it was
//! created in, whichever thread asks; after start the scan makes only
//! `sendto` and `recvfrom` calls on it.
//!
//! Where the kernel cannot dump a protocol (no `inet_diag` or `udp_diag`:
//! the probe dump at start fails, logged once at debug level), that
//! protocol is read from `/proc/net/tcp`, `tcp6`, `udp` or `udp6` instead
//! (states `0A` and `07`): those files too are opened at start, because
//! the filesystem is gone afterwards
//! ([`crate::isolation::detach_filesystem`]), and each scan seeks back to
//! offset 0 and reads them again (`lseek`, `read`). A scan that fails to
//! read one side (a dump error) changes nothing on that side until the
//! next one.
//!
//! From each side's bound ports we take away:
//!
//! - the ephemeral range (`ip_local_port_range`): client sockets, not
//!   services;
//! - the ports *we* listen on in that namespace (the sockets of the other
//!   table, read from it) and the ports the other table forwards (which
//!   may have been opened earlier in the same scan): without this,
//!   a port we forward one way would be seen as bound and forwarded back,
//!   and the two listeners would keep each other alive forever.
//!
//! For UDP, the ports of TCP listeners are wanted too (as upstream:
//! protocols like iperf3 pair a TCP control port with UDP data).
//!
//! Our UDP *flow* sockets need no exclusion of their own, although they
//! are bound to ports outside the ephemeral range too (the guest's source
//! port, the port of a listener they share, a peer's source port): every
//! one of them is `connect()`ed right after `bind()`, within one call of
//! the event loop, and a connected UDP socket is in state
//! `TCP_ESTABLISHED` (`01` in `/proc/net/udp`), never `TCP_CLOSE`. So a
//! flow never looks like a service and is not forwarded back
//! (`tests/auto_fwd.rs` checks it with a client on a fixed port).
//!
//! The result, one port bitmap per (table, protocol), is compared with
//! what is forwarded now: for each port that appears, and each that went
//! away, the caller's `apply` opens or closes the sockets of that port in
//! the rule's table ([`super::Fwd::scan`]: inside the namespace for the
//! `splice` table), and answers whether the port is now forwarded; a port
//! that could not be opened (somebody else holds it on our side) is tried
//! again at the next scan. The sockets live in the tables only: the
//! scanner keeps bitmaps, nothing else.
//!
//! Closing a forward closes only its listeners. TCP connections accepted
//! through them go on; so do UDP flows: each has its own sockets
//! (connected, sharing the port with `SO_REUSEADDR`), so datagrams of a
//! flow in progress still pass both ways until the flow times out, while
//! datagrams from new peers find no socket (the kernel answers with port
//! unreachable). Until those flows time out the port stays taken for a
//! program binding it without `SO_REUSEADDR`; a server that comes back on
//! the same port is forwarded again at the next scan, and flows still
//! open reach it.

use std::io;
use std::os::fd::OwnedFd;

use super::rules::{FwdTable, FwdTables, Table};
use super::spec;
use crate::conf::Proto;
use crate::netlink::sock_diag::{self, SockDiag};
use crate::netlink::Family;
use crate::pasta::NetNs;

/// The sock_diag dump for `proto`.
fn diag_proto(proto: Proto) -> sock_diag::Proto {
    match proto {
        Proto::Tcp => sock_diag::Proto::Tcp,
        Proto::Udp => sock_diag::Proto::Udp,
    }
}

/// A set of ports, as a bitmap.
#[derive(Clone)]
pub(crate) struct PortSet(Box<[u64; 1024]>);

impl Default for PortSet {
    fn default() -> Self {
        PortSet(Box::new([0; 1024]))
    }
}

impl PortSet {
    pub(crate) fn insert(&mut self, p: u16) {
        self.0[usize::from(p >> 6)] |= 1 << (p & 63);
    }

    pub(crate) fn remove(&mut self, p: u16) {
        self.0[usize::from(p >> 6)] &= !(1 << (p & 63));
    }

    pub(crate) fn contains(&self, p: u16) -> bool {
        self.0[usize::from(p >> 6)] & (1 << (p & 63)) != 0
    }

    /// Adds every port of `o`.
    pub(crate) fn union(&mut self, o: &PortSet) {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a |= b;
        }
    }

    /// The ports, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            (0..64)
                .filter(move |b| w & (1u64 << b) != 0)
                .map(move |b| (i * 64 + b) as u16)
        })
    }
}

/// Where the serving ports of one namespace are read: its sock_diag
/// socket, or for a protocol the kernel cannot dump, its `/proc/net` files.
struct Side {
    diag: Option<SockDiag>,
    /// By protocol: the IPv4 and IPv6 `/proc/net` files read instead of
    /// sock_diag (`None`: sock_diag works for that protocol).
    proc: [Option<[Option<OwnedFd>; 2]>; 2],
}

/// The `/proc/net` files of each protocol, IPv4 then IPv6.
const PROC_NAMES: [[&str; 2]; 2] = [["tcp", "tcp6"], ["udp", "udp6"]];

impl Side {
    /// Nothing to read: that side is not scanned.
    fn none() -> Side {
        Side {
            diag: None,
            proc: [None, None],
        }
    }

    /// Opens the sock_diag socket of the calling thread's namespace and
    /// tries one dump of each protocol and family; for a protocol that
    /// fails (no `inet_diag`, no `udp_diag`) the `/proc/net` files are
    /// opened instead, from `/proc/thread-self/net` (missing ones, e.g.
    /// without IPv6, are skipped).
    fn open() -> Side {
        let mut diag = match SockDiag::open() {
            Ok(d) => Some(d),
            Err(e) => {
                log::debug!("Port scan: no sock_diag ({e}), reading /proc/net");
                None
            }
        };
        let proc = [Proto::Tcp, Proto::Udp].map(|proto| {
            let works = diag.as_mut().is_some_and(|d| {
                [Family::V4, Family::V6].into_iter().all(|f| {
                    d.serving_ports(f, diag_proto(proto), |_| ())
                        .inspect_err(|e| {
                            log::debug!(
                                "Port scan: no sock_diag for {proto:?} ({e}), reading /proc/net"
                            )
                        })
                        .is_ok()
                })
            });
            (!works).then(|| PROC_NAMES[pi(proto)].map(open_proc))
        });
        if proc.iter().all(Option::is_some) {
            diag = None;
        }
        Side { diag, proc }
    }

    /// The serving ports of `proto` into `out` (`buf` for `/proc`);
    /// `Err` if they could not all be read.
    fn read(&mut self, proto: Proto, out: &mut PortSet, buf: &mut Vec<u8>) -> Result<(), ()> {
        if let Some(files) = &self.proc[pi(proto)] {
            let state = match proto {
                Proto::Tcp => "0A",
                Proto::Udp => "07",
            };
            for fd in files.iter().flatten() {
                read_all(fd, buf).map_err(|e| log::debug!("Port scan: read: {e}"))?;
                parse_ports(buf, state, out);
            }
            return Ok(());
        }
        let Some(d) = self.diag.as_mut() else {
            return Ok(());
        };
        for f in [Family::V4, Family::V6] {
            d.serving_ports(f, diag_proto(proto), |p| out.insert(p))
                .map_err(|e| log::debug!("Port scan: sock_diag: {e}"))?;
        }
        Ok(())
    }
}

/// Opens `/proc/thread-self/net/{name}`.
fn open_proc(name: &str) -> Option<OwnedFd> {
    let path = format!("/proc/thread-self/net/{name}");
    rustix::fs::open(
        path.as_str(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .inspect_err(|e| log::debug!("Port scan: can't open {path}: {e}"))
    .ok()
}

/// Reads the whole file from offset 0 into `buf`.
fn read_all(fd: &OwnedFd, buf: &mut Vec<u8>) -> io::Result<()> {
    rustix::fs::seek(fd, rustix::fs::SeekFrom::Start(0))?;
    buf.clear();
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16384);
        }
        let n = rustix::io::read(fd, rustix::buffer::spare_capacity(buf))?;
        if n == 0 {
            return Ok(());
        }
    }
}

/// Adds the local ports of the entries in `state` of a `/proc/net/tcp`
/// style table to `out`. Malformed lines are skipped.
pub(crate) fn parse_ports(text: &[u8], state: &str, out: &mut PortSet) {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    for line in text.lines().skip(1) {
        let mut f = line.split_whitespace();
        let (Some(_), Some(local), Some(_), Some(st)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if st != state {
            continue;
        }
        let Some((_, port)) = local.rsplit_once(':') else {
            continue;
        };
        if let Ok(p) = u16::from_str_radix(port, 16) {
            if p != 0 {
                out.insert(p);
            }
        }
    }
}

/// The port scanner of pasta's `auto` rules.
pub(crate) struct Scanner {
    /// Read for the `splice` table.
    host: Side,
    /// Read for the `host` table.
    ns: Side,
    /// Forwarded now, by [table][proto].
    active: [[PortSet; 2]; 2],
    ephemeral: (u16, u16),
    /// For the `/proc/net` fallback.
    buf: Vec<u8>,
}

fn pi(p: Proto) -> usize {
    match p {
        Proto::Tcp => 0,
        Proto::Udp => 1,
    }
}

impl Scanner {
    /// pasta's scanner. Opens the sock_diag sockets (or `/proc/net` files)
    /// now: host side from this thread, namespace side from a thread
    /// inside `netns`; both, even without `scan` rules in `_tables`, since
    /// the configuration socket may add some later, once we can no longer
    /// open them.
    pub(crate) fn new(_tables: &FwdTables, netns: &NetNs) -> Option<Scanner> {
        let ns = netns.run(Side::open).unwrap_or_else(|e| {
            log::warn!("Port scan: can't enter the namespace: {e}");
            Side::none()
        });
        let host = Side::open();
        Some(Scanner {
            host,
            ns,
            active: Default::default(),
            ephemeral: spec::ephemeral_range(),
            buf: Vec::new(),
        })
    }

    /// Table `t` was replaced by `table`: the ports forwarded are those
    /// its `auto` rules have sockets on (taken over from the old table).
    pub(crate) fn reset(&mut self, t: Table, table: &FwdTable) {
        let mut active: [PortSet; 2] = Default::default();
        for (_, _, r, l) in table.sockets() {
            if r.scan {
                active[pi(r.proto)].insert(l.port);
            }
        }
        self.active[t as usize] = active;
    }

    /// Forgets the ports forwarded for `rule` of table `t` (removed: its
    /// sockets are closed).
    #[cfg(test)]
    pub(crate) fn forget(&mut self, t: Table, rule: &super::rules::FwdRule) {
        if !rule.scan {
            return;
        }
        let active = &mut self.active[t as usize][pi(rule.proto)];
        for p in rule.first..=rule.last {
            active.remove(p);
        }
    }

    /// Reads both sides and brings the sockets of each `scan` rule of
    /// `tables` in line: `apply(table, t, rule, port, open)` opens or
    /// closes the sockets of one port and returns whether the port is
    /// forwarded afterwards.
    /// A side that cannot be read this time (a failed dump) is left as
    /// it is until the next scan: nothing is closed on a transient error.
    pub(crate) fn scan(
        &mut self,
        tables: &mut FwdTables,
        mut apply: impl FnMut(&mut FwdTable, Table, usize, u16, bool) -> bool,
    ) {
        for t in Table::BOTH {
            if !tables.get(t).rules().any(|(_, r)| r.scan) {
                continue;
            }
            let side = match t {
                Table::Host => &mut self.ns,
                Table::Splice => &mut self.host,
            };
            let other = match t {
                Table::Host => Table::Splice,
                Table::Splice => Table::Host,
            };
            let mut bound = [PortSet::default(), PortSet::default()];
            let mut complete = true;
            for proto in [Proto::Tcp, Proto::Udp] {
                let b = &mut bound[pi(proto)];
                complete &= side.read(proto, b, &mut self.buf).is_ok();
                // Our own sockets on that side: the other table's
                // (opened earlier in this scan too).
                for (_, _, r, l) in tables.get(other).sockets() {
                    if r.proto == proto {
                        b.remove(l.port);
                    }
                }
                // What we forward the other way.
                for p in self.active[other as usize][pi(proto)].iter() {
                    b.remove(p);
                }
                for p in self.ephemeral.0..=self.ephemeral.1 {
                    b.remove(p);
                }
            }
            if !complete {
                continue;
            }
            let [tcp, mut udp] = bound;
            udp.union(&tcp);
            let table = tables.get_mut(t);
            for (proto, bound) in [(Proto::Tcp, tcp), (Proto::Udp, udp)] {
                for idx in 0..table.end() {
                    let Some((first, last)) = table
                        .rule(idx)
                        .filter(|r| r.scan && r.proto == proto)
                        .map(|r| (r.first, r.last))
                    else {
                        continue;
                    };
                    let active = &mut self.active[t as usize][pi(proto)];
                    // Ports that went away.
                    let gone: Vec<u16> = active
                        .iter()
                        .filter(|&p| (first..=last).contains(&p) && !bound.contains(p))
                        .collect();
                    for port in gone {
                        apply(table, t, idx, port, false);
                        self.active[t as usize][pi(proto)].remove(port);
                    }
                    // Ports that appeared (or could not be opened before).
                    for port in bound.iter() {
                        let active = &self.active[t as usize][pi(proto)];
                        if !(first..=last).contains(&port) || active.contains(port) {
                            continue;
                        }
                        if apply(table, t, idx, port, true) {
                            self.active[t as usize][pi(proto)].insert(port);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net() {
        let tcp = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1235 1 0000000000000000 100 0 0 10 0
   2: 0100007F:A000 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 1236 1 0000000000000000 100 0 0 10 0
   garbage
";
        let mut s = PortSet::default();
        parse_ports(tcp, "0A", &mut s);
        assert_eq!(s.iter().collect::<Vec<_>>(), [22, 8080]);
        let tcp6 = b"  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000
";
        let mut s = PortSet::default();
        parse_ports(tcp6, "07", &mut s);
        assert_eq!(s.iter().collect::<Vec<_>>(), [53]);
    }

    /// The `/proc/net` reader of the calling thread's namespace, as the
    /// fallback would use it.
    fn proc_side() -> Side {
        Side {
            diag: None,
            proc: PROC_NAMES.map(|names| Some(names.map(open_proc))),
        }
    }

    fn ports(side: &mut Side, proto: Proto) -> Vec<u16> {
        let mut s = PortSet::default();
        side.read(proto, &mut s, &mut Vec::new()).unwrap();
        s.iter().collect()
    }

    /// In a fresh namespace: listening TCP and bound UDP sockets of both
    /// families are seen, established TCP and connected UDP ones are not;
    /// sock_diag and `/proc/net` agree.
    #[test]
    fn sees_serving_sockets_only() {
        use rustix::net::{AddressFamily, SocketType};
        use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
        std::thread::spawn(|| {
            crate::sys::unshare(rustix::thread::UnshareFlags::NEWNET).unwrap();
            let mut nl = crate::netlink::Netlink::open().unwrap();
            crate::netlink::lo_up(&mut nl).unwrap();
            let lo = |p| SocketAddrV4::new(Ipv4Addr::LOCALHOST, p);
            let _l4 = TcpListener::bind(lo(8080)).unwrap();
            let _l6 = TcpListener::bind("[::]:8443").unwrap();
            // A client from a fixed port, outside the ephemeral range.
            let c = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
            rustix::net::bind(&c, &lo(4000)).unwrap();
            rustix::net::connect(&c, &lo(8080)).unwrap();
            let _u4 = UdpSocket::bind(lo(5353)).unwrap();
            let _u6 = UdpSocket::bind("[::]:5354").unwrap();
            let connected = UdpSocket::bind(lo(4001)).unwrap();
            connected.connect(lo(5353)).unwrap();

            let mut side = Side::open();
            assert!(side.diag.is_some() && side.proc.iter().all(Option::is_none));
            assert_eq!(ports(&mut side, Proto::Tcp), [8080, 8443]);
            assert_eq!(ports(&mut side, Proto::Udp), [5353, 5354]);
            let mut proc = proc_side();
            assert_eq!(ports(&mut proc, Proto::Tcp), [8080, 8443]);
            assert_eq!(ports(&mut proc, Proto::Udp), [5353, 5354]);
        })
        .join()
        .unwrap();
    }

    /// What one read of each protocol costs in this namespace, sock_diag
    /// against `/proc/net`, side by side: run with many connections open
    /// on the machine (`cargo test --release --lib scan_cost -- --ignored
    /// --nocapture`).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn scan_cost() {
        const ROUNDS: u32 = 20;
        let measure = |ns: &str| {
            let mut diag = Side::open();
            let mut proc = proc_side();
            for (name, side) in [("sock_diag", &mut diag), ("/proc/net", &mut proc)] {
                let start = std::time::Instant::now();
                let mut n = 0;
                for _ in 0..ROUNDS {
                    n = ports(side, Proto::Tcp).len() + ports(side, Proto::Udp).len();
                }
                let per = start.elapsed() / ROUNDS;
                println!("{ns}: {name}: {per:?} per side and scan, {n} ports");
            }
        };
        measure("this namespace");
        // The other side: a namespace without the connections (the walk of
        // the shared hash remains for /proc, not the formatting).
        std::thread::spawn(move || {
            crate::sys::unshare(rustix::thread::UnshareFlags::NEWNET).unwrap();
            measure("fresh namespace");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn port_set() {
        let mut s = PortSet::default();
        for p in [1, 63, 64, 65535] {
            s.insert(p);
        }
        s.remove(63);
        assert!(s.contains(64) && !s.contains(63));
        assert_eq!(s.iter().collect::<Vec<_>>(), [1, 64, 65535]);
    }
}
