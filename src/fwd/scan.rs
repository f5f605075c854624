//! Automatic forwarding (`auto`, pasta's default): forward the ports that
//! the other side listens on, following them as they come and go.
//!
//! ## Theory of operation
//!
//! An `auto` spec becomes one `scan` rule covering ports 1–65535 (see
//! [`super::rules`]); no socket is opened for it at start. Instead, once a
//! second, [`Scanner::scan`] reads which ports are bound on the *other*
//! side of each table:
//!
//! - table `host` (`-t auto`, `-u auto`): listeners on the host for the
//!   ports bound **in the namespace**;
//! - table `splice` (`-T auto`, `-U auto`): listeners in the namespace for
//!   the ports bound **on the host**.
//!
//! The kernel lists sockets in `/proc/net/tcp`, `tcp6`, `udp` and `udp6`
//! of each network namespace: TCP sockets in state `0A` (listening) and
//! UDP sockets in state `07` (bound, not connected) count. The files are
//! opened once at start — the host's from the daemon's own namespace, the
//! namespace's from a thread inside it — because the filesystem is gone
//! afterwards ([`crate::isolation::detach_filesystem`]); each scan seeks
//! back to offset 0 and reads them again (the kernel regenerates them).
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
//! the event loop, and a connected UDP socket is listed in state `01`
//! (established), never `07`. So a flow never looks like a service and is
//! not forwarded back (`tests/auto_fwd.rs` checks it with a client on a
//! fixed port).
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
use std::time::{Duration, Instant};

use super::rules::{FwdTable, FwdTables, Table};
use super::spec;
use crate::conf::Proto;
use crate::pasta::NetNs;

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

/// The `/proc/net` files of one namespace: tcp, tcp6, udp, udp6.
struct ProcNet {
    files: [Option<OwnedFd>; 4],
}

const PROC_NAMES: [&str; 4] = ["tcp", "tcp6", "udp", "udp6"];

impl ProcNet {
    /// Opens the files under `dir` (missing ones, e.g. without IPv6, are
    /// skipped).
    fn open(dir: &str) -> ProcNet {
        let files = PROC_NAMES.map(|n| {
            let path = format!("{dir}/{n}");
            match rustix::fs::open(
                path.as_str(),
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    log::debug!("Port scan: can't open {path}: {e}");
                    None
                }
            }
        });
        ProcNet { files }
    }

    /// The bound ports of `proto` into `out`, read with `buf`.
    fn read(&self, proto: Proto, out: &mut PortSet, buf: &mut Vec<u8>) {
        let (files, state) = match proto {
            Proto::Tcp => (&self.files[0..2], "0A"),
            Proto::Udp => (&self.files[2..4], "07"),
        };
        for fd in files.iter().flatten() {
            if let Err(e) = read_all(fd, buf) {
                log::debug!("Port scan: read: {e}");
                continue;
            }
            parse_ports(buf, state, out);
        }
    }
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
    host: ProcNet,
    /// Read for the `host` table.
    ns: ProcNet,
    /// Forwarded now, by [table][proto].
    active: [[PortSet; 2]; 2],
    ephemeral: (u16, u16),
    buf: Vec<u8>,
    /// No scan before this (see [`SCAN_COST_RATIO`]).
    next_at: Option<Instant>,
}

/// A scan may take at most one part in this of the time: the kernel
/// builds `/proc/net/tcp` by walking every TCP socket of the machine (the
/// established hash is shared by all namespaces), a page per read, so with
/// tens of thousands of sockets (a connection flood, our own flows) one
/// scan takes a large part of a second, during which no packet moves. A
/// scan that took `d` delays the next one by `d` times this.
const SCAN_COST_RATIO: u32 = 20;
/// Longest wait between two scans, however slow they are.
const SCAN_MAX_INTERVAL: Duration = Duration::from_secs(10);

fn pi(p: Proto) -> usize {
    match p {
        Proto::Tcp => 0,
        Proto::Udp => 1,
    }
}

impl Scanner {
    /// A scanner for the `scan` rules of `tables`, or `None` if there are
    /// none. Opens the `/proc/net` files now (host side from this thread,
    /// namespace side from a thread inside `netns`).
    pub(crate) fn new(tables: &FwdTables, netns: &NetNs) -> Option<Scanner> {
        let scans = |t: &FwdTable| t.rules().any(|(_, r)| r.scan);
        let (want_ns, want_host) = (scans(&tables.host), scans(&tables.splice));
        if !want_ns && !want_host {
            return None;
        }
        let none = || ProcNet {
            files: [None, None, None, None],
        };
        let ns = if want_ns {
            netns
                .run(|| ProcNet::open("/proc/thread-self/net"))
                .unwrap_or_else(|e| {
                    log::warn!("Port scan: can't enter the namespace: {e}");
                    none()
                })
        } else {
            none()
        };
        let host = if want_host {
            ProcNet::open("/proc/thread-self/net")
        } else {
            none()
        };
        Some(Scanner {
            host,
            ns,
            active: Default::default(),
            ephemeral: spec::ephemeral_range(),
            buf: Vec::with_capacity(65536),
            next_at: None,
        })
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
    pub(crate) fn scan(
        &mut self,
        tables: &mut FwdTables,
        mut apply: impl FnMut(&mut FwdTable, Table, usize, u16, bool) -> bool,
    ) {
        let start = Instant::now();
        if self.next_at.is_some_and(|t| start < t) {
            return;
        }
        self.scan_now(tables, &mut apply);
        let took = start.elapsed();
        self.next_at = Some(start + (took * SCAN_COST_RATIO).min(SCAN_MAX_INTERVAL));
    }

    fn scan_now(
        &mut self,
        tables: &mut FwdTables,
        apply: &mut impl FnMut(&mut FwdTable, Table, usize, u16, bool) -> bool,
    ) {
        for t in Table::BOTH {
            if !tables.get(t).rules().any(|(_, r)| r.scan) {
                continue;
            }
            let side = match t {
                Table::Host => &self.ns,
                Table::Splice => &self.host,
            };
            let other = match t {
                Table::Host => Table::Splice,
                Table::Splice => Table::Host,
            };
            let mut bound = [PortSet::default(), PortSet::default()];
            for proto in [Proto::Tcp, Proto::Udp] {
                let b = &mut bound[pi(proto)];
                side.read(proto, b, &mut self.buf);
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
