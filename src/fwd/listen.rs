//! [`Fwd`]: both forwarding tables, the one owner of every listening
//! socket.
//!
//! The tables are built once from the configuration ([`Fwd::build`]); the
//! sockets of their rules are opened from them, on the host
//! ([`Fwd::open_host`], while we may still bind low ports) and inside
//! pasta's namespace ([`Fwd::open_ns`]), and registered with epoll
//! ([`Fwd::register`]) under a reference naming the table, the rule and
//! the socket's slot in the rule ([`listen_ref`]). An event leads back to
//! its socket and rule by indexing ([`Fwd::listening`]), and the protocol
//! handles it: TCP accepts, UDP receives.
//!
//! Sockets come and go only here: pasta's port scanner ([`Fwd::scan`])
//! opens and closes the sockets of `auto` rules, and rules can be added
//! (`Fwd::add_rule`) and removed (`Fwd::remove_rule`) while flows run.
//! Removing a rule closes its sockets; flows it started have sockets of
//! their own and go on. Nothing changes rules at run time yet: those two
//! are built for the run-time rule changes to come and exercised by the
//! unit tests only, hence `cfg(test)` until then.

use std::io;

use super::rules::{
    self, listen_ref, listen_ref_parts, open_port, Families, FwdTable, FwdTables, Listener,
    Listening, Table,
};
use super::scan::Scanner;
use crate::conf::{Config, Proto};
use crate::event::{Epoll, EpollRef, Kind};
use crate::pasta::NetNs;

/// Both tables, their sockets and pasta's port scanner.
pub(crate) struct Fwd {
    tables: FwdTables,
    scanner: Option<Scanner>,
    families: Families,
    /// `--no-udp`: the scanner opens no UDP socket.
    no_udp: bool,
}

/// The epoll kind of a socket of `proto` in `table`.
fn kind(table: Table, proto: Proto) -> Kind {
    match (proto, table) {
        (Proto::Tcp, Table::Host) => Kind::TcpListen,
        (Proto::Tcp, Table::Splice) => Kind::TcpListenNs,
        (Proto::Udp, _) => Kind::UdpListen,
    }
}

impl Fwd {
    /// Both tables from the configuration, no socket open yet. Logs the
    /// rules.
    pub(crate) fn build(conf: &Config) -> rules::Result<Fwd> {
        let tables = rules::build(conf)?;
        for (_, r) in tables.host.rules() {
            ::log::info!("Inbound forwarding: {r}");
        }
        for (_, r) in tables.splice.rules() {
            ::log::info!("Outbound forwarding: {r}");
        }
        Ok(Fwd::with_tables(conf, tables))
    }

    /// A table set as given (tests, and [`Fwd::build`]).
    pub(crate) fn with_tables(conf: &Config, tables: FwdTables) -> Fwd {
        Fwd {
            tables,
            scanner: None,
            families: Families::of(conf),
            no_udp: conf.no_udp,
        }
    }

    /// The table `t`.
    #[cfg(test)]
    pub(crate) fn table(&self, t: Table) -> &FwdTable {
        self.tables.get(t)
    }

    /// The host table's sockets (`-t` unless `--no-tcp`; `-u` if `udp`,
    /// unless `--no-udp`), opened now, from this namespace.
    pub(crate) fn open_host(&mut self, conf: &Config, udp: bool) -> rules::Result<()> {
        let host = &mut self.tables.host;
        if !conf.no_tcp {
            host.open(Proto::Tcp, conf.freebind, self.families)?;
        }
        if udp && !conf.no_udp {
            host.open(Proto::Udp, conf.freebind, self.families)?;
        }
        Ok(())
    }

    /// pasta: the namespace table's sockets (`-U`, `-T`), opened by a
    /// thread inside `netns`.
    pub(crate) fn open_ns(
        &mut self,
        conf: &Config,
        netns: &NetNs,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (families, ns) = (self.families, &mut self.tables.splice);
        if !conf.no_udp {
            netns.run(|| ns.open(Proto::Udp, conf.freebind, families))??;
        }
        if !conf.no_tcp {
            netns.run(|| ns.open(Proto::Tcp, false, families))??;
        }
        Ok(())
    }

    /// pasta: starts the port scanner if there are `auto` rules (its
    /// sock_diag sockets, or `/proc` files, are opened now: the
    /// namespace's from inside it, all before the filesystem goes and
    /// before the seccomp filter).
    pub(crate) fn start_scan(&mut self, netns: &NetNs) {
        self.scanner = Scanner::new(&self.tables, netns);
    }

    /// Registers every socket with epoll.
    pub(crate) fn register(&self, epoll: &Epoll) -> io::Result<()> {
        for t in Table::BOTH {
            for (rule, slot, r, l) in self.tables.get(t).sockets() {
                let er = EpollRef::new(kind(t, r.proto), listen_ref(t, rule, slot));
                epoll.add(&l.fd, er)?;
            }
        }
        Ok(())
    }

    /// The socket and rule an epoll reference index names.
    pub(crate) fn listening(&self, r: u32) -> Option<Listening<'_>> {
        let (t, rule, slot) = listen_ref_parts(r);
        self.tables.get(t).listening(t.pif(), rule, slot)
    }

    /// Adds `rule` to table `t` while flows run, and opens and registers
    /// its sockets (inside `netns` for the namespace's table) unless it is
    /// an `auto` rule, which the scanner serves. Returns its index.
    #[cfg(test)]
    pub(crate) fn add_rule(
        &mut self,
        t: Table,
        rule: rules::FwdRule,
        epoll: &Epoll,
        netns: Option<&NetNs>,
        freebind: bool,
    ) -> Result<usize, Box<dyn std::error::Error>> {
        let proto = rule.proto;
        let scan = rule.scan;
        let families = self.families;
        let opened = if scan {
            Vec::new()
        } else {
            match (t, netns) {
                (Table::Host, _) => rules::open_rule(&rule, freebind, families)?,
                (Table::Splice, Some(ns)) => {
                    ns.run(|| rules::open_rule(&rule, freebind, families))??
                }
                (Table::Splice, None) => return Err("no namespace".into()),
            }
        };
        let table = self.tables.get_mut(t);
        let idx = table.add(rule, "the table")?;
        for l in opened {
            register_one(table, epoll, t, idx, proto, l);
        }
        Ok(idx)
    }

    /// Removes rule `idx` of table `t`: its sockets are closed, the flows
    /// it started go on (they have their own sockets). An `auto` rule's
    /// ports are forgotten by the scanner.
    #[cfg(test)]
    pub(crate) fn remove_rule(
        &mut self,
        t: Table,
        idx: usize,
        epoll: &Epoll,
    ) -> Option<rules::FwdRule> {
        let (rule, socks) = self.tables.get_mut(t).remove(idx)?;
        for l in socks {
            let _ = epoll.del(&l.fd);
        }
        if let Some(s) = self.scanner.as_mut() {
            s.forget(t, &rule);
        }
        ::log::info!(
            "{} forwarding rule removed: {rule}",
            if t == Table::Host {
                "Inbound"
            } else {
                "Outbound"
            }
        );
        Some(rule)
    }

    /// One scan of pasta's `auto` rules: listeners follow the ports bound
    /// on the other side (see [`super::scan`]); namespace sockets are
    /// opened inside `netns`.
    pub(crate) fn scan(&mut self, epoll: &Epoll, netns: Option<&NetNs>) {
        let Some(scanner) = self.scanner.as_mut() else {
            return;
        };
        let (families, no_udp) = (self.families, self.no_udp);
        scanner.scan(&mut self.tables, |table, t, idx, port, open| {
            if !open {
                close_port(table, epoll, t, idx, port);
                return false;
            }
            let Some(rule) = table.rule(idx) else {
                return false;
            };
            if rule.proto == Proto::Udp && no_udp {
                return false;
            }
            open_scanned(table, epoll, netns, t, idx, port, families)
        });
    }
}

/// Stores `l` in rule `idx` of `table` and registers it with epoll.
fn register_one(
    table: &mut FwdTable,
    epoll: &Epoll,
    t: Table,
    idx: usize,
    proto: Proto,
    l: Listener,
) -> bool {
    let Some(slot) = table.insert_socket(idx, l) else {
        return false;
    };
    let Some(fd) = table.listening(t.pif(), idx, slot).map(|l| l.fd) else {
        return false;
    };
    let er = EpollRef::new(kind(t, proto), listen_ref(t, idx, slot));
    if let Err(e) = epoll.add(fd, er) {
        ::log::debug!("{}: epoll: {e}", proto_name(proto));
        table.take_slot(idx, slot);
        return false;
    }
    true
}

fn proto_name(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
    }
}

/// The scanner wants `port` of rule `idx` of table `t` forwarded: opens
/// the families not open yet; returns whether one is open. Failures are
/// quiet: the port may well be taken on this side.
fn open_scanned(
    table: &mut FwdTable,
    epoll: &Epoll,
    netns: Option<&NetNs>,
    t: Table,
    idx: usize,
    port: u16,
    families: Families,
) -> bool {
    let Some(rule) = table.rule(idx) else {
        return false;
    };
    if rule.target(port).is_none() {
        return false;
    }
    let proto = rule.proto;
    let missing = Families {
        v4: families.v4 && !table.has_socket(idx, port, false),
        v6: families.v6 && !table.has_socket(idx, port, true),
    };
    if missing.v4 || missing.v6 {
        let opened = match (t, netns) {
            (Table::Host, _) => open_port(rule, port, false, missing),
            (Table::Splice, Some(ns)) => ns
                .run(|| open_port(rule, port, false, missing))
                .unwrap_or_else(|e| {
                    ::log::debug!("{}: can't enter the namespace: {e}", proto_name(proto));
                    Vec::new()
                }),
            (Table::Splice, None) => Vec::new(),
        };
        for l in opened {
            match l {
                Ok(l) => {
                    let family = if l.v6 { "IPv6" } else { "IPv4" };
                    if register_one(table, epoll, t, idx, proto, l) {
                        ::log::debug!(
                            "{}: {} forwarding port {port} ({family})",
                            proto_name(proto),
                            t.side()
                        );
                    }
                }
                Err(e) => ::log::trace!(
                    "{}: can't listen on {} port {port}: {e}",
                    proto_name(proto),
                    t.side()
                ),
            }
        }
    }
    table.has_socket(idx, port, false) || table.has_socket(idx, port, true)
}

/// The scanner no longer wants `port` of rule `idx`: closes its sockets.
/// Flows started through them go on.
fn close_port(table: &mut FwdTable, epoll: &Epoll, t: Table, idx: usize, port: u16) {
    let Some(proto) = table.rule(idx).map(|r| r.proto) else {
        return;
    };
    let closed = table.take_sockets(idx, port);
    for l in &closed {
        let _ = epoll.del(&l.fd);
    }
    if !closed.is_empty() {
        ::log::debug!(
            "{}: {} port {port} no longer forwarded",
            proto_name(proto),
            t.side()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fwd::rules::FwdRule;
    use std::net::TcpStream;

    #[test]
    fn rules_come_and_go_with_their_sockets() {
        let conf = crate::arp::tests::test_config();
        let mut fwd = Fwd::with_tables(&conf, FwdTables::default());
        let mut epoll = Epoll::new().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let rule = FwdRule {
            proto: Proto::Tcp,
            addr: Some("127.0.0.1".parse().unwrap()),
            ifname: None,
            first: port,
            last: port,
            to: 8080,
            weak: false,
            scan: false,
        };
        let idx = fwd
            .add_rule(Table::Host, rule, &epoll, None, false)
            .unwrap();

        // A connection: its event names the rule's socket, which leads to
        // the rule and the target port by indexing.
        let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut events = Vec::new();
        epoll.wait_into(1000, &mut events).unwrap();
        let ev = events.first().expect("listener event");
        assert_eq!(ev.r.kind, Kind::TcpListen);
        let l = fwd.listening(ev.r.index).unwrap();
        assert_eq!((l.port, l.rule.target(l.port)), (port, Some(8080)));
        let (accepted, _) = rustix::net::acceptfrom(l.fd).unwrap();

        // Removed: no more listener, the accepted connection goes on.
        assert!(fwd.remove_rule(Table::Host, idx, &epoll).is_some());
        assert!(fwd.listening(ev.r.index).is_none());
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        rustix::io::write(&accepted, b"y").unwrap();
        let mut b = [0u8; 1];
        std::io::Read::read_exact(&mut &client, &mut b).unwrap();
        assert_eq!(&b, b"y");
        assert!(fwd.table(Table::Host).is_empty());
    }
}
