//! The configuration socket (`-c`/`--conf-path`): forwarding rules
//! changed while the daemon runs, by upstream's `pesto` or ours.
//!
//! # A session
//!
//! The socket is a UNIX stream socket at the given path, mode 0600; a
//! client whose credentials (`SO_PEERCRED`) are not those of the socket
//! file's owner is refused. One client at a time is served, the others
//! wait in the backlog (the listener is not watched meanwhile, so that
//! they do not wake us up again and again). The protocol is upstream's,
//! version 2 ([`crate::wire::pesto`]):
//!
//! 1. we send the greeting and every table (`HOST`: `-t`/`-u`; pasta's
//!    `SPLICE`: `-T`/`-U`) with its capabilities;
//! 2. a client that only looks closes the connection: nothing changes;
//! 3. otherwise it sends the tables it replaces, whole, and an end mark.
//!    Every rule is checked ([`FwdRule::from_raw`]), then
//!    [`crate::fwd::Fwd::replace`] swaps the tables all at once or not at
//!    all;
//! 4. we answer with a status message and close. That message is our
//!    addition: upstream's client has closed already and does not read
//!    it, upstream's server does not send it.
//!
//! Nothing here blocks the loop: the session reads and writes as the
//! socket allows, and a client that stops half-way, sends garbage or
//! more than a full update ([`pesto::UPDATE_MAX_LEN`]), or takes longer
//! than [`SESSION_TIMEOUT`], is dropped with a log line and changes
//! nothing. Tables the client does not send are left as they are.
//!
//! Established flows are never cut by a change: they have their own
//! sockets, whichever rule admitted them.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::epoll::EventFlags;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::event::{Epoll, EpollRef, Kind};
use crate::fwd::rules::{Caps, FwdRule, Table};
use crate::fwd::Fwd;
use crate::pasta::NetNs;
use crate::wire::pesto::{self, Hello, PifTable, RawRule};

/// How long a client may take from connecting to its last byte.
pub(crate) const SESSION_TIMEOUT: Duration = Duration::from_secs(5);

/// The listening configuration socket and the session being served.
pub(crate) struct Control {
    listener: OwnedFd,
    path: PathBuf,
    /// The socket file's owner: the one user allowed in.
    owner: u32,
    /// The socket file, to read its owner again from the user namespace
    /// we end up in (passt makes its own: user IDs read there are mapped
    /// as the peers' credentials are).
    path_fd: Option<OwnedFd>,
    session: Option<Session>,
    /// Accepting failed (out of descriptors): the listener is not watched
    /// until the next tick, rather than waking us up again at once.
    paused: bool,
}

/// One connected client.
struct Session {
    fd: OwnedFd,
    /// What is still to be written (greeting and tables, then status).
    out: Vec<u8>,
    /// What the client sent so far.
    input: Vec<u8>,
    deadline: Instant,
    /// The status went out: close once `out` is written.
    done: bool,
    pid: i32,
}

/// What the daemon's tables look like to a client, and what a change
/// needs: the context [`Control`] works in.
pub(crate) struct Tables<'a> {
    pub(crate) fwd: &'a mut Fwd,
    pub(crate) epoll: &'a Epoll,
    pub(crate) netns: Option<&'a NetNs>,
    pub(crate) caps: Caps,
    pub(crate) freebind: bool,
}

impl Tables<'_> {
    /// The tables this instance has: `HOST`, and `SPLICE` for pasta.
    fn list(&self) -> Vec<(u8, &'static str, Table)> {
        let mut v = vec![(pesto::PIF_HOST, "HOST", Table::Host)];
        if self.netns.is_some() {
            v.push((pesto::PIF_SPLICE, "SPLICE", Table::Splice));
        }
        v
    }
}

impl Control {
    /// Creates the socket at `path` (replacing a stale one: a socket file
    /// nobody listens on), mode 0600. At start, before isolation.
    pub(crate) fn open(path: &Path) -> io::Result<Control> {
        let s = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        let addr = SocketAddrUnix::new(path)?;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            let probe = rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::STREAM,
                SocketFlags::CLOEXEC,
                None,
            )?;
            if rustix::net::connect(&probe, &addr).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        // Created 0600 from the start: no window where others may connect.
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
        let bound = rustix::net::bind(&s, &addr);
        rustix::process::umask(old);
        bound?;
        rustix::net::listen(&s, 8)?;
        let owner = std::fs::metadata(path)?.uid();
        let path_fd = rustix::fs::open(
            path,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        ::log::info!("Configuration socket: {}", path.display());
        Ok(Control {
            listener: s,
            path: path.to_path_buf(),
            owner,
            path_fd: Some(path_fd),
            session: None,
            paused: false,
        })
    }

    /// Registers the listener, once isolated (before the seccomp filter):
    /// the owner is read again as this user namespace sees it. Where that
    /// maps it to the overflow ID, so are the peers of other unmapped
    /// IDs; the file's mode (0600) keeps those out.
    pub(crate) fn register(&mut self, epoll: &Epoll) -> io::Result<()> {
        if let Some(fd) = self.path_fd.take() {
            self.owner = rustix::fs::fstat(&fd)?.st_uid;
        }
        epoll.add(&self.listener, EpollRef::new(Kind::CtlListen, 0))
    }

    /// The listener is readable: takes the next client unless one is
    /// being served.
    pub(crate) fn accept(&mut self, t: &mut Tables<'_>) {
        if self.session.is_some() {
            self.watch_listener(t.epoll, false);
            return;
        }
        loop {
            let fd = match rustix::net::accept_with(
                &self.listener,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::AGAIN) => return,
                Err(rustix::io::Errno::INTR | rustix::io::Errno::CONNABORTED) => continue,
                Err(e) => {
                    ::log::warn!("Configuration socket: accept: {e}, trying again in a second");
                    self.watch_listener(t.epoll, false);
                    self.paused = true;
                    return;
                }
            };
            let cred = match rustix::net::sockopt::socket_peercred(&fd) {
                Ok(c) => c,
                Err(e) => {
                    ::log::warn!("Configuration client refused: no credentials: {e}");
                    continue;
                }
            };
            let uid = cred.uid.as_raw();
            if uid != self.owner {
                ::log::warn!(
                    "Configuration client refused: PID {} runs as UID {uid}, {} belongs to UID {}",
                    cred.pid.as_raw_nonzero(),
                    self.path.display(),
                    self.owner
                );
                continue;
            }
            let pid = cred.pid.as_raw_nonzero().get();
            let mut out = Vec::with_capacity(4096);
            Hello::OURS.encode(&mut out);
            let tables: Vec<PifTable> = t
                .list()
                .into_iter()
                .map(|(pif, name, table)| PifTable {
                    pif,
                    name: name.into(),
                    caps: t.caps.0,
                    rules: t
                        .fwd
                        .rules(table)
                        .iter()
                        .map(|r| r.to_raw(t.fwd.families()))
                        .collect(),
                })
                .collect();
            pesto::encode_tables(&tables, &mut out);
            if let Err(e) = t.epoll.add(&fd, EpollRef::new(Kind::CtlConn, 0)) {
                ::log::warn!("Configuration socket: epoll: {e}");
                continue;
            }
            ::log::info!("Configuration client connected, PID {pid}");
            self.session = Some(Session {
                fd,
                out,
                input: Vec::new(),
                deadline: Instant::now() + SESSION_TIMEOUT,
                done: false,
                pid,
            });
            self.watch_listener(t.epoll, false);
            self.flush(t.epoll);
            return;
        }
    }

    /// Watches the listener (`on`) or not, while a session runs.
    fn watch_listener(&self, epoll: &Epoll, on: bool) {
        let flags = if on {
            EventFlags::IN | EventFlags::RDHUP
        } else {
            EventFlags::empty()
        };
        let _ = epoll.modify(&self.listener, EpollRef::new(Kind::CtlListen, 0), flags);
    }

    /// Writes what is pending; watches for room if some is left. Ends a
    /// finished session once all is out.
    fn flush(&mut self, epoll: &Epoll) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        while !s.out.is_empty() {
            match rustix::net::send(&s.fd, &s.out, rustix::net::SendFlags::NOSIGNAL) {
                Ok(n) => {
                    s.out.drain(..n);
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    // Upstream's client closes before our status.
                    if !s.done {
                        ::log::info!("Configuration client went away: {e}");
                    }
                    s.out.clear();
                    s.done = true;
                }
            }
        }
        if s.done && s.out.is_empty() {
            self.end(epoll);
            return;
        }
        let mut flags = EventFlags::IN | EventFlags::RDHUP;
        if !s.out.is_empty() {
            flags |= EventFlags::OUT;
        }
        let _ = epoll.modify(&s.fd, EpollRef::new(Kind::CtlConn, 0), flags);
    }

    /// Closes the session and takes the next client.
    fn end(&mut self, epoll: &Epoll) {
        if let Some(s) = self.session.take() {
            let _ = epoll.del(&s.fd);
        }
        self.watch_listener(epoll, true);
    }

    /// The client's socket has an event.
    pub(crate) fn event(&mut self, t: &mut Tables<'_>, writable: bool) {
        if writable {
            self.flush(t.epoll);
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if s.done {
            return;
        }
        let mut eof = false;
        let mut buf = [0u8; 4096];
        loop {
            match rustix::io::read(&s.fd, &mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    s.input.extend_from_slice(buf.get(..n).unwrap_or_default());
                    if s.input.len() > pesto::UPDATE_MAX_LEN {
                        break;
                    }
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    ::log::info!("Configuration client, PID {}: {e}", s.pid);
                    eof = true;
                    break;
                }
            }
        }
        let verdict = match pesto::decode_update(&s.input) {
            Err(e) => Some(Err(format!("bad update: {e}"))),
            Ok(Some((_, used))) if used != s.input.len() => Some(Err(format!(
                "{} bytes after the update",
                s.input.len() - used
            ))),
            Ok(Some((tables, _))) => Some(apply(t, tables)),
            Ok(None) if s.input.len() > pesto::UPDATE_MAX_LEN => {
                Some(Err("update longer than any valid one".to_string()))
            }
            Ok(None) if eof && s.input.is_empty() => {
                ::log::info!("Configuration client closed, no change");
                self.end(t.epoll);
                return;
            }
            Ok(None) if eof => {
                ::log::warn!(
                    "Configuration client stopped half-way ({} bytes), no change",
                    s.input.len()
                );
                self.end(t.epoll);
                return;
            }
            Ok(None) => None,
        };
        let Some(verdict) = verdict else {
            return;
        };
        let Some(s) = self.session.as_mut() else {
            return;
        };
        match &verdict {
            Ok(text) => ::log::info!("Configuration client, PID {}: {text}", s.pid),
            Err(text) => ::log::warn!(
                "Configuration client, PID {}: change refused, rules unchanged: {text}",
                s.pid
            ),
        }
        let (ok, text) = match verdict {
            Ok(t) => (true, t),
            Err(t) => (false, t),
        };
        pesto::encode_status(ok, &text, &mut s.out);
        s.done = true;
        self.flush(t.epoll);
    }

    /// Drops a client that takes too long; watches the listener again
    /// after a failed accept.
    pub(crate) fn timer(&mut self, epoll: &Epoll, now: Instant) {
        if self.paused && self.session.is_none() {
            self.paused = false;
            self.watch_listener(epoll, true);
        }
        if self.session.as_ref().is_some_and(|s| now >= s.deadline) {
            if let Some(s) = &self.session {
                ::log::warn!(
                    "Configuration client, PID {}: no complete update within {} s, no change",
                    s.pid,
                    SESSION_TIMEOUT.as_secs()
                );
            }
            self.end(epoll);
        }
    }
}

/// Checks and applies a client's tables: the status text.
fn apply(t: &mut Tables<'_>, update: Vec<(u8, Vec<RawRule>)>) -> Result<String, String> {
    let known = t.list();
    let mut new = Vec::new();
    let mut summary = Vec::new();
    for (pif, raws) in update {
        let Some(&(_, name, table)) = known.iter().find(|(p, _, _)| *p == pif) else {
            return Err(format!("no table {pif} here"));
        };
        let mut rules = Vec::with_capacity(raws.len());
        for (i, raw) in raws.iter().enumerate() {
            let rule = FwdRule::from_raw(raw, table, t.caps)
                .map_err(|e| format!("{name} rule {}: {e}", i + 1))?;
            rules.push(rule);
        }
        summary.push(format!("{name}: {} rules", rules.len()));
        new.push((table, rules));
    }
    if new.is_empty() {
        return Ok("no table sent, no change".into());
    }
    t.fwd
        .replace(new, t.epoll, t.netns, t.freebind)
        .map_err(|e| e.to_string())?;
    Ok(format!("applied ({})", summary.join(", ")))
}
