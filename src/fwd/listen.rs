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
use std::os::fd::OwnedFd;

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
    /// `--no-udp`, or passt (no UDP listeners yet): no UDP socket is
    /// opened for a rule.
    no_udp: bool,
    /// The target addresses of the host table's rules: addresses of the
    /// guest's too (it answers from them).
    targets: Vec<std::net::IpAddr>,
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
        let mut fwd = Fwd {
            tables,
            scanner: None,
            families: Families::of(conf),
            no_udp: conf.no_udp,
            targets: Vec::new(),
        };
        fwd.find_targets();
        fwd
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
        self.no_udp = conf.no_udp || !udp;
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

/// A socket that a table change needs: rule `rule` of the new table, on
/// `addr`.
#[derive(Clone, Copy, Debug)]
struct Need {
    t: Table,
    rule: usize,
    addr: std::net::SocketAddr,
}

/// A socket of the old tables closed before the change was sure, to free
/// its port: reopened if the change fails.
struct Closed {
    t: Table,
    rule_idx: usize,
    rule: rules::FwdRule,
    addr: std::net::SocketAddr,
}

/// The address a socket of `rule` is bound to.
fn bound_addr(rule: &rules::FwdRule, l: &Listener) -> std::net::SocketAddr {
    let any = if l.v6 {
        std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    };
    std::net::SocketAddr::new(rule.addr.unwrap_or(any), l.port)
}

/// Whether `new` would open the very socket `l` of rule `old`: same
/// protocol, interface, address and a port `new` covers.
fn same_socket(new: &rules::FwdRule, old: &rules::FwdRule, l: &Listener) -> bool {
    let a = bound_addr(old, l);
    new.proto == old.proto
        && new.ifname == old.ifname
        && new.target(l.port).is_some()
        && new.addr.map_or(a.ip().is_unspecified(), |n| n == a.ip())
}

/// Whether failing to open a socket of `rule` fails the change: not for
/// a weak rule, nor for a wildcard on a host without that family.
fn open_failure(rule: &rules::FwdRule, e: &io::Error) -> bool {
    if rule.addr.is_none() && e.raw_os_error() == Some(libc::EAFNOSUPPORT) {
        return false;
    }
    !rule.weak
}

impl Fwd {
    /// The target addresses of the rules (see [`Fwd::targets`]).
    fn find_targets(&mut self) {
        let mut t: Vec<std::net::IpAddr> = self
            .tables
            .host
            .rules()
            .filter_map(|(_, r)| r.taddr)
            .collect();
        t.sort_unstable();
        t.dedup();
        self.targets = t;
    }

    /// The addresses rules send connections to on the guest's side,
    /// besides its own.
    pub(crate) fn targets(&self) -> &[std::net::IpAddr] {
        &self.targets
    }

    /// The rules of table `t`, in index order.
    pub(crate) fn rules(&self, t: Table) -> Vec<rules::FwdRule> {
        self.tables.get(t).rules().map(|(_, r)| r.clone()).collect()
    }

    /// The families this instance forwards.
    pub(crate) fn families(&self) -> Families {
        self.families
    }

    /// Replaces the rules of the tables in `new`, all or nothing.
    ///
    /// The new tables are checked first (conflicts, size). A socket that
    /// an old rule holds and a new rule would open the same way (protocol,
    /// address, interface, port) passes to the new rule as it is: an
    /// unchanged or re-ordered rule keeps listening without a gap, and
    /// what is waiting in its queue stays there. The others are opened
    /// before anything is closed; if one can't be bound because an old
    /// socket holds its port, the old sockets that are going away are
    /// closed and it is tried again. If a socket still can't be opened,
    /// the new sockets are closed, the old ones reopened, and the old
    /// tables stay in force: the error says which port failed.
    ///
    /// Flows are never touched: a TCP connection or UDP flow has its own
    /// socket, whichever rule admitted it. `auto` rules get their
    /// sockets from the next scan, run at once.
    pub(crate) fn replace(
        &mut self,
        new: Vec<(Table, Vec<rules::FwdRule>)>,
        epoll: &Epoll,
        netns: Option<&NetNs>,
        freebind: bool,
    ) -> Result<(), Box<dyn std::error::Error>> {
        // The new tables, checked; no socket yet.
        let mut staged: Vec<(Table, FwdTable)> = Vec::new();
        for (t, list) in new {
            if t == Table::Splice && netns.is_none() {
                return Err("no namespace: no outbound (SPLICE) table".into());
            }
            let mut table = FwdTable::default();
            for rule in list {
                table.add(rule, t.name())?;
            }
            staged.push((t, table));
        }

        // Which old socket each new rule takes over, and what to open.
        let mut moves: Vec<(Table, usize, usize, usize)> = Vec::new();
        let mut needs: Vec<Need> = Vec::new();
        let wildcards = self.families.wildcards();
        for (t, table) in &staged {
            let old = self.tables.get(*t);
            let mut claimed = std::collections::HashSet::new();
            let mut covered = std::collections::HashSet::new();
            for (idx, rule) in table.rules() {
                for (oi, os, orule, l) in old.sockets() {
                    if !claimed.contains(&(oi, os)) && same_socket(rule, orule, l) {
                        claimed.insert((oi, os));
                        covered.insert((idx, l.port, l.v6));
                        moves.push((*t, oi, os, idx));
                    }
                }
                if rule.scan || (rule.proto == Proto::Udp && self.no_udp) {
                    continue;
                }
                let addrs: &[std::net::IpAddr] = match &rule.addr {
                    Some(a) => std::slice::from_ref(a),
                    None => wildcards,
                };
                for port in rule.first..=rule.last {
                    for &ip in addrs {
                        if !covered.contains(&(idx, port, ip.is_ipv6())) {
                            needs.push(Need {
                                t: *t,
                                rule: idx,
                                addr: std::net::SocketAddr::new(ip, port),
                            });
                        }
                    }
                }
            }
        }

        let rule_of = |staged: &[(Table, FwdTable)], n: &Need| -> Option<rules::FwdRule> {
            staged
                .iter()
                .find(|(t, _)| *t == n.t)
                .and_then(|(_, table)| table.rule(n.rule).cloned())
        };
        let mut opened: Vec<(Need, OwnedFd)> = Vec::new();
        let mut failed =
            self.open_needs(&staged, &needs, netns, freebind, &mut opened, &rule_of)?;

        // Ports held by old sockets that are going away: free them, then
        // try again.
        let mut closed: Vec<Closed> = Vec::new();
        if failed
            .iter()
            .any(|(_, e)| e.raw_os_error() == Some(libc::EADDRINUSE))
        {
            for (t, _) in &staged {
                let doomed: Vec<(usize, usize)> = self
                    .tables
                    .get(*t)
                    .sockets()
                    .map(|(oi, os, _, _)| (oi, os))
                    .filter(|&(oi, os)| !moves.iter().any(|m| m.0 == *t && m.1 == oi && m.2 == os))
                    .collect();
                for (oi, os) in doomed {
                    let table = self.tables.get_mut(*t);
                    let Some(rule) = table.rule(oi).cloned() else {
                        continue;
                    };
                    if let Some(l) = table.take_slot(oi, os) {
                        let _ = epoll.del(&l.fd);
                        closed.push(Closed {
                            t: *t,
                            rule_idx: oi,
                            addr: bound_addr(&rule, &l),
                            rule,
                        });
                    }
                }
            }
            let retry: Vec<Need> = failed.iter().map(|(n, _)| *n).collect();
            failed = self.open_needs(&staged, &retry, netns, freebind, &mut opened, &rule_of)?;
        }

        // Every normal rule binds all its sockets, a weak one at least one.
        let mut error: Option<String> = failed.first().map(|(n, e)| {
            let rule = rule_of(&staged, n).map_or_else(String::new, |r| r.to_string());
            format!(
                "can't bind port {} on {} for {rule}: {e}",
                n.addr.port(),
                n.addr.ip()
            )
        });
        if error.is_none() {
            for (t, table) in &staged {
                for (idx, rule) in table.rules() {
                    let has = moves.iter().any(|m| m.0 == *t && m.3 == idx)
                        || opened.iter().any(|(n, _)| n.t == *t && n.rule == idx);
                    let skipped = rule.proto == Proto::Udp && self.no_udp;
                    let wants =
                        !rule.scan && !skipped && (rule.addr.is_some() || !wildcards.is_empty());
                    if wants && !has {
                        error = Some(format!("can't bind any port for {rule}"));
                    }
                }
            }
        }
        if let Some(e) = error {
            drop(opened);
            self.reopen(closed, epoll, netns, freebind);
            return Err(e.into());
        }

        // Commit: sockets taken over change their epoll reference,
        // new ones are added, the rest of the old ones close.
        for (t, mut table) in staged {
            let old = self.tables.get_mut(t);
            for &(mt, oi, os, ni) in &moves {
                if mt != t {
                    continue;
                }
                let Some(l) = old.take_slot(oi, os) else {
                    continue;
                };
                let proto = table.rule(ni).map(|r| r.proto);
                if let (Some(proto), Some(slot)) = (proto, table.insert_socket(ni, l)) {
                    if let Some(l) = table.listening(t.pif(), ni, slot) {
                        let er = EpollRef::new(kind(t, proto), listen_ref(t, ni, slot));
                        let flags = rustix::event::epoll::EventFlags::IN
                            | rustix::event::epoll::EventFlags::RDHUP;
                        if let Err(e) = epoll.modify(l.fd, er, flags) {
                            ::log::warn!("forwarding: epoll: {e}");
                        }
                    }
                }
            }
            let mine: Vec<(Need, OwnedFd)> = {
                let (mine, rest): (Vec<_>, Vec<_>) =
                    opened.into_iter().partition(|(n, _)| n.t == t);
                opened = rest;
                mine
            };
            for (n, fd) in mine {
                let Some(proto) = table.rule(n.rule).map(|r| r.proto) else {
                    continue;
                };
                let l = Listener {
                    fd,
                    port: n.addr.port(),
                    v6: n.addr.is_ipv6(),
                };
                register_one(&mut table, epoll, t, n.rule, proto, l);
            }
            let gone = std::mem::replace(old, table);
            for (_, _, _, l) in gone.sockets() {
                let _ = epoll.del(&l.fd);
            }
            drop(gone);
            if let Some(s) = self.scanner.as_mut() {
                s.reset(t, self.tables.get(t));
            }
            let (what, list) = match t {
                Table::Host => ("Inbound", self.tables.get(t)),
                Table::Splice => ("Outbound", self.tables.get(t)),
            };
            ::log::info!("{what} forwarding rules replaced:");
            for (_, r) in list.rules() {
                ::log::info!("    {r}");
            }
        }
        self.find_targets();
        self.scan(epoll, netns);
        Ok(())
    }

    /// Opens the sockets of `needs` (a namespace's all from one task in
    /// it): the opened ones go to `opened`, fatal failures are returned.
    /// Running out of descriptors is an error at once.
    #[allow(clippy::type_complexity)]
    fn open_needs(
        &self,
        staged: &[(Table, FwdTable)],
        needs: &[Need],
        netns: Option<&NetNs>,
        freebind: bool,
        opened: &mut Vec<(Need, OwnedFd)>,
        rule_of: &dyn Fn(&[(Table, FwdTable)], &Need) -> Option<rules::FwdRule>,
    ) -> Result<Vec<(Need, io::Error)>, Box<dyn std::error::Error>> {
        let open_all = |list: &[(Need, rules::FwdRule)], freebind: bool| {
            list.iter()
                .map(|(n, r)| (*n, rules::open_one(r, n.addr, freebind)))
                .collect::<Vec<_>>()
        };
        let mut failed = Vec::new();
        for t in Table::BOTH {
            let list: Vec<(Need, rules::FwdRule)> = needs
                .iter()
                .filter(|n| n.t == t)
                .filter_map(|n| Some((*n, rule_of(staged, n)?)))
                .collect();
            if list.is_empty() {
                continue;
            }
            let results = match (t, netns) {
                (Table::Host, _) => open_all(&list, freebind),
                (Table::Splice, Some(ns)) => ns.run(|| open_all(&list, false))?,
                (Table::Splice, None) => return Err("no namespace".into()),
            };
            for ((n, r), (_, res)) in list.iter().zip(results) {
                match res {
                    Ok(fd) => opened.push((*n, fd)),
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                        return Err(format!("can't open enough sockets for {r}: {e}").into())
                    }
                    Err(e) if open_failure(r, &e) => failed.push((*n, e)),
                    Err(e) => ::log::debug!(
                        "{r}: skipping port {} on {}: {e}",
                        n.addr.port(),
                        n.addr.ip()
                    ),
                }
            }
        }
        Ok(failed)
    }

    /// A change failed after old sockets were closed: opens them again in
    /// their rules of the (unchanged) old tables.
    fn reopen(
        &mut self,
        closed: Vec<Closed>,
        epoll: &Epoll,
        netns: Option<&NetNs>,
        freebind: bool,
    ) {
        for c in closed {
            let res = match (c.t, netns) {
                (Table::Host, _) => rules::open_one(&c.rule, c.addr, freebind),
                (Table::Splice, Some(ns)) => ns
                    .run(|| rules::open_one(&c.rule, c.addr, false))
                    .and_then(|r| r),
                (Table::Splice, None) => continue,
            };
            match res {
                Ok(fd) => {
                    let l = Listener {
                        fd,
                        port: c.addr.port(),
                        v6: c.addr.is_ipv6(),
                    };
                    let proto = c.rule.proto;
                    register_one(self.tables.get_mut(c.t), epoll, c.t, c.rule_idx, proto, l);
                }
                Err(e) => ::log::error!(
                    "{}: can't listen on {} again after a failed change: {e}",
                    c.rule,
                    c.addr
                ),
            }
        }
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
            taddr: None,
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
