//! The epoll set and its typed references.
//!
//! Every descriptor registered with epoll carries a 64-bit [`EpollRef`]:
//! the kind of descriptor in the top byte and an index (flow, rule,
//! queue...) in the low 32 bits. Dispatch in the main loop is a `match` on
//! the kind, and the index finds the owner without any lookup. Flows with
//! a socket on each side (UDP, spliced TCP) pack the flow and the side in
//! the index, one way for all ([`EpollRef::flow_side`]).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::event::epoll::{self, EventData, EventFlags};

/// What a descriptor in the epoll set is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// The tap device (pasta) or QEMU socket (passt): frames from the guest.
    Tap = 1,
    /// Signals (SIGTERM, SIGQUIT, SIGCHLD) through a signalfd.
    Signal = 2,
    /// The spawned namespace process (pidfd): pasta exits with it.
    Child = 3,
    /// inotify on the directory holding the namespace file.
    NsQuitInotify = 4,
    /// 1 s timer polling a /proc namespace path.
    NsQuitTimer = 5,
    /// An ICMP/ICMPv6 echo socket; the index is the ping flow.
    Ping = 6,
    /// A TCP connection's socket; the index is the flow.
    TcpSock = 7,
    /// A TCP listening socket on the host (`-t`); the index is
    /// [`crate::fwd::rules::listen_ref`] (table, rule, slot).
    TcpListen = 8,
    /// One side of a spliced TCP connection; the index is the flow and
    /// the side ([`EpollRef::flow_side`]).
    TcpSplice = 12,
    /// A TCP listening socket in pasta's namespace (`-T`); the index as
    /// for [`Kind::TcpListen`].
    TcpListenNs = 14,
    /// passt's listening UNIX socket: QEMU connects here.
    TapListen = 16,
    /// passt `--vhost-user`: the front-end's control socket (the kicks of
    /// the rings are [`Kind::Tap`], the index naming the ring).
    VhostUserCtl = 11,
    /// A UDP flow's socket; the index is the flow and the side
    /// ([`EpollRef::flow_side`]).
    UdpSock = 9,
    /// A UDP listening socket (`-u`, `-U`); the index as for
    /// [`Kind::TcpListen`].
    UdpListen = 10,
    /// The configuration socket (`-c`), listening.
    CtlListen = 19,
    /// The configuration client being served.
    CtlConn = 20,
    /// inotify on the host's resolv.conf and its directories
    /// ([`crate::follow::resolv`]).
    FollowResolv = 17,
    /// rtnetlink notifications of the host's links, addresses and routes
    /// ([`crate::follow::routes`]).
    FollowRoutes = 18,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Tap,
            2 => Kind::Signal,
            3 => Kind::Child,
            4 => Kind::NsQuitInotify,
            5 => Kind::NsQuitTimer,
            6 => Kind::Ping,
            7 => Kind::TcpSock,
            8 => Kind::TcpListen,
            12 => Kind::TcpSplice,
            14 => Kind::TcpListenNs,
            16 => Kind::TapListen,
            11 => Kind::VhostUserCtl,
            9 => Kind::UdpSock,
            10 => Kind::UdpListen,
            19 => Kind::CtlListen,
            20 => Kind::CtlConn,
            17 => Kind::FollowResolv,
            18 => Kind::FollowRoutes,
            _ => return None,
        })
    }
}

/// Bit of [`EpollRef::index`] naming side 1 of a flow: flow indices stay
/// far below it ([`crate::flow::FLOW_MAX`]).
const SIDE_BIT: u32 = 1 << 31;

/// A kind and an index packed in epoll's 64-bit data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EpollRef {
    pub(crate) kind: Kind,
    pub(crate) index: u32,
}

impl EpollRef {
    pub(crate) fn new(kind: Kind, index: u32) -> Self {
        EpollRef { kind, index }
    }

    /// A reference to side `side` (0 or 1) of flow `flow`: the flow index
    /// in the low 31 bits, the side in bit 31. [`split_flow_side`] reads
    /// it back.
    pub(crate) fn flow_side(kind: Kind, flow: u32, side: usize) -> Self {
        debug_assert!(flow < SIDE_BIT && side < 2);
        EpollRef::new(kind, flow | if side == 1 { SIDE_BIT } else { 0 })
    }

    pub(crate) fn to_u64(self) -> u64 {
        ((self.kind as u64) << 56) | self.index as u64
    }

    pub(crate) fn from_u64(v: u64) -> Option<Self> {
        Some(EpollRef {
            kind: Kind::from_u8((v >> 56) as u8)?,
            index: v as u32,
        })
    }
}

/// The flow index and the side of an index made by
/// [`EpollRef::flow_side`].
pub(crate) fn split_flow_side(index: u32) -> (u32, usize) {
    (index & !SIDE_BIT, usize::from(index & SIDE_BIT != 0))
}

/// Readiness reported for one descriptor.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    pub(crate) r: EpollRef,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    pub(crate) hangup: bool,
    pub(crate) error: bool,
}

/// The epoll instance of one event loop, with its event buffer.
pub(crate) struct Epoll {
    fd: OwnedFd,
    events: Vec<epoll::Event>,
}

/// Events fetched per `epoll_wait`.
const EVENTS_MAX: usize = 64;

impl Epoll {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Epoll {
            fd: epoll::create(epoll::CreateFlags::CLOEXEC)?,
            events: Vec::with_capacity(EVENTS_MAX),
        })
    }

    /// Watches `fd` for input (and errors/hang-ups).
    pub(crate) fn add(&self, fd: impl AsFd, r: EpollRef) -> io::Result<()> {
        epoll::add(
            &self.fd,
            fd,
            EventData::new_u64(r.to_u64()),
            EventFlags::IN | EventFlags::RDHUP,
        )?;
        Ok(())
    }

    /// Watches `fd` with explicit flags.
    pub(crate) fn add_flags(
        &self,
        fd: impl AsFd,
        r: EpollRef,
        flags: EventFlags,
    ) -> io::Result<()> {
        epoll::add(&self.fd, fd, EventData::new_u64(r.to_u64()), flags)?;
        Ok(())
    }

    /// Changes the events watched on `fd`.
    pub(crate) fn modify(&self, fd: impl AsFd, r: EpollRef, flags: EventFlags) -> io::Result<()> {
        epoll::modify(&self.fd, fd, EventData::new_u64(r.to_u64()), flags)?;
        Ok(())
    }

    pub(crate) fn del(&self, fd: impl AsFd) -> io::Result<()> {
        epoll::delete(&self.fd, fd)?;
        Ok(())
    }

    /// Waits up to `timeout_ms` and puts the events into `out` (left empty on
    /// timeout or EINTR), a reused vector (no allocation once it has
    /// grown to the batch size).
    pub(crate) fn wait_into(&mut self, timeout_ms: i32, out: &mut Vec<Event>) -> io::Result<()> {
        out.clear();
        let timeout = rustix::time::Timespec {
            tv_sec: i64::from(timeout_ms / 1000),
            tv_nsec: i64::from(timeout_ms % 1000) * 1_000_000,
        };
        self.events.clear();
        let spare = rustix::buffer::spare_capacity(&mut self.events);
        match epoll::wait(&self.fd, spare, Some(&timeout)) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        for ev in &self.events {
            let flags = ev.flags;
            let data = ev.data;
            let Some(r) = EpollRef::from_u64(data.u64()) else {
                continue;
            };
            out.push(Event {
                r,
                readable: flags.contains(EventFlags::IN),
                writable: flags.contains(EventFlags::OUT),
                hangup: flags.intersects(EventFlags::HUP | EventFlags::RDHUP),
                error: flags.contains(EventFlags::ERR),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_ref_round_trip() {
        for kind in [Kind::Tap, Kind::Signal, Kind::Ping] {
            for index in [0, 1, 131070, u32::MAX] {
                let r = EpollRef::new(kind, index);
                assert_eq!(EpollRef::from_u64(r.to_u64()), Some(r));
            }
        }
        assert_eq!(EpollRef::from_u64(0), None);
    }

    #[test]
    fn flow_side_round_trip() {
        let max = crate::flow::FLOW_MAX as u32;
        for kind in [Kind::UdpSock, Kind::TcpSplice] {
            for flow in [0, 1, 4242, max] {
                for side in [0, 1] {
                    let r = EpollRef::flow_side(kind, flow, side);
                    let back = EpollRef::from_u64(r.to_u64()).unwrap();
                    assert_eq!(back.kind, kind);
                    assert_eq!(split_flow_side(back.index), (flow, side));
                }
            }
        }
    }
}
