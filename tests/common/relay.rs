//! A real Linux stack as passt's guest, without a VM: a third namespace
//! (the "guest") holds a tap device, and a relay moves its frames to and
//! from passt, so that the guest namespace's own kernel does TCP, UDP and
//! ARP as a VM's would, at the speed of the host's kernel.
//!
//! - stream socket: `tests/tap_relay.py` runs in the guest namespace,
//!   reads frames from the tap and writes them to passt's UNIX socket
//!   with the 32-bit big-endian length prefix, and back ([`stream_relay`]);
//! - vhost-user: [`VhostRelay`] is the test front-end of `vhost.rs` in a
//!   thread, moving frames between the tap and the virtqueues (no
//!   offloads negotiated: the tap gives and takes whole, checksummed
//!   frames).
//!
//! [`GuestNs::configure`] then gives the tap passt's defaults for the
//! guest (the host's address, 192.0.2.2/24, and its gateway), so the same
//! load scripts run in the guest namespace as in pasta's.
//!
//! Include with `#[path = "common/vhost.rs"] mod vu;` and
//! `#[path = "common/relay.rs"] mod relay;` next to `mod common;`.

#![allow(dead_code)]

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::vu::{self, NetHdr, Opts, VhostDriver};
use super::{must, Guard, Testbed, HOST4, REMOTE4};

/// The MTU of the guest's tap: passt's default.
pub const GUEST_MTU: u32 = 65520;

/// A network namespace for the guest, removed (with what runs in it) on
/// drop.
pub struct GuestNs {
    pub name: String,
}

impl GuestNs {
    /// A guest namespace named after `tb`'s (unique per test), with IPv6
    /// off: the loads are IPv4, and router solicitations would only add
    /// frames that differ from run to run.
    pub fn new(tb: &Testbed) -> GuestNs {
        let name = tb.host.replacen("prs-h-", "prs-g-", 1);
        must(Command::new("ip").args(["netns", "add", &name]));
        let g = GuestNs { name };
        must(g.cmd("sh").arg("-c").arg(
            "ip link set lo up && \
             sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
        ));
        g
    }

    /// A command run in the guest namespace.
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c
    }

    /// Gives `tap` passt's defaults for the guest: the host's address and
    /// default route, MTU [`GUEST_MTU`], link up.
    pub fn configure(&self, tap: &str) {
        must(self.cmd("sh").arg("-c").arg(format!(
            "set -e
            ip link set {tap} mtu {GUEST_MTU} up
            ip addr add {HOST4}/24 dev {tap}
            ip route add default via {REMOTE4}"
        )));
    }

    /// Opens a new tap device `name` in this namespace (IFF_TAP |
    /// IFF_NO_PI), from a thread that enters the namespace, so the test
    /// process itself stays where it is.
    pub fn open_tap(&self, name: &str) -> OwnedFd {
        let ns = format!("/run/netns/{}", self.name);
        let name = name.to_string();
        std::thread::spawn(move || {
            let f = std::fs::File::open(&ns).expect("open the guest namespace");
            rustix::thread::move_into_link_name_space(
                f.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns");
            open_tap_here(&name)
        })
        .join()
        .expect("tap thread")
    }
}

impl Drop for GuestNs {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("ip netns pids {} | xargs -r kill -9", self.name))
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// A tap device `name` in the calling thread's network namespace.
fn open_tap_here(name: &str) -> OwnedFd {
    let fd = rustix::fs::open(
        "/dev/net/tun",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NONBLOCK,
        rustix::fs::Mode::empty(),
    )
    .expect("open /dev/net/tun");
    // struct ifreq: the name, then the flags (a union of 24 bytes).
    let mut ifr = [0u8; 40];
    assert!(name.len() < 16);
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    ifr[16..18].copy_from_slice(&(IFF_TAP | IFF_NO_PI).to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `ifr` is
    // large enough for, on a descriptor we own.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, ifr.as_mut_ptr()) };
    assert_eq!(r, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
    fd
}

/// `tests/tap_relay.py` in `guest`, relaying tap `tap` to passt's stream
/// socket `sock`; returns once the relay is connected and the tap
/// configured.
pub fn stream_relay(guest: &GuestNs, sock: &std::path::Path, tap: &str) -> Guard {
    use std::io::{BufRead, BufReader};
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tap_relay.py");
    let mut c = guest.cmd("python3");
    c.arg(script)
        .arg(sock)
        .arg(tap)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = Guard(c.spawn().expect("start tap_relay.py"));
    let mut ready = String::new();
    BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("relay ready");
    assert_eq!(ready.trim(), "ready", "tap_relay.py did not start");
    guest.configure(tap);
    child
}

/// The vhost-user relay: a thread owning the test front-end and the tap,
/// stopped (and joined) on drop.
pub struct VhostRelay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl VhostRelay {
    /// Connects to passt's vhost-user socket `sock` as the front-end, and
    /// relays tap `tap` (created in `guest`, then configured) to the first
    /// queue pair.
    pub fn start(guest: &GuestNs, sock: &std::path::Path, tap: &str) -> VhostRelay {
        let fd = guest.open_tap(tap);
        let opts = Opts {
            // No checksum or segmentation offload: the tap has no virtio
            // header, its frames are whole and checksummed both ways.
            features: vu::OFFERED
                & !(vu::bit(virtio_bindings::virtio_net::VIRTIO_NET_F_CSUM)
                    | vu::bit(virtio_bindings::virtio_net::VIRTIO_NET_F_GUEST_CSUM)
                    | vu::bit(virtio_bindings::virtio_net::VIRTIO_NET_F_GUEST_TSO4)
                    | vu::bit(virtio_bindings::virtio_net::VIRTIO_NET_F_GUEST_TSO6)
                    | vu::bit(virtio_bindings::virtio_net::VIRTIO_NET_F_HOST_TSO4)
                    | vu::bit(virtio_bindings::virtio_net::VIRTIO_NET_F_HOST_TSO6)
                    | vhost::vhost_user::VhostUserVirtioFeatures::LOG_ALL.bits()),
            ..Opts::default()
        };
        let mut drv = VhostDriver::connect(sock, opts);
        drv.post_rx_buffers(0, usize::from(vu::MAX_QUEUE_SIZE), vu::SLOT);
        guest.configure(tap);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || relay_loop(&mut drv, &fd, &s));
        VhostRelay {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for VhostRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Until `stop`: frames passt put on the RX queue go to the tap, frames
/// the guest's kernel writes to the tap go on the TX queue. Waits on the
/// tap and the RX call eventfd, with a short timeout to see `stop`.
fn relay_loop(drv: &mut VhostDriver, tap: &OwnedFd, stop: &AtomicBool) {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut buf = vec![0u8; 1 << 17];
    while !stop.load(Ordering::Relaxed) {
        while let Some(f) = drv.recv(0, Instant::now()) {
            // A tap that is not up refuses frames, as a link loses them.
            let _ = rustix::io::write(tap, &f.frame);
        }
        for _ in 0..64 {
            match rustix::io::read(tap, &mut buf) {
                Ok(n) if n > 0 => drv.send(0, NetHdr::default(), &buf[..n]),
                _ => break,
            }
        }
        let call = &drv.queues[0].call;
        // SAFETY: the eventfd outlives this poll, which only borrows it.
        let call_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(call.as_raw_fd()) };
        let mut fds = [
            PollFd::new(tap, PollFlags::IN),
            PollFd::from_borrowed_fd(call_fd, PollFlags::IN),
        ];
        let t = Duration::from_millis(50);
        let ts = Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(t.subsec_nanos()),
        };
        let _ = poll(&mut fds, Some(&ts));
        let _ = call.read();
    }
}
