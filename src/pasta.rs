//! pasta's namespaces: creating or joining the network namespace that pasta
//! serves, running code inside it, and noticing when it goes away.
//!
//! ## Spawn mode (`pasta [COMMAND...]`)
//!
//! ```text
//!   pasta (daemon) ──fork──> middle ──unshare(USER,NET,UTS,NS,IPC,PID)
//!        │                     │ "unshared" ──pipe──> pasta writes uid/gid maps
//!        │                     │ <──pipe── "mapped"
//!        │                     └──fork──> command (PID 1 of the new PID ns):
//!        │                                 private mounts, fresh /proc,
//!        │                                 hostname, ping_group_range,
//!        │                                 waits for "go", then execvp
//!        └─ setns(user ns of middle), open /proc/middle/ns/net
//! ```
//!
//! The daemon itself stays in the original network namespace (its sockets
//! are the host side) but joins the new user namespace, so that it holds
//! capabilities over the new network namespace and over nothing else. This
//! is also what makes spawn mode work as root: root's maps are written by
//! the daemon from the parent user namespace (the identity over the whole
//! id range, so the command is a complete root), an unprivileged user gets
//! the single mapping `0 <uid>`. pasta exits when the command exits, with
//! its exit status (128 + signal if it was killed).
//!
//! ## Attach mode (`pasta PID`, `pasta --netns PATH|NAME [--userns PATH]`)
//!
//! The user namespace of the PID (or `--userns`) is joined unless
//! `--netns-only`; the network namespace is opened. Unless
//! `--no-netns-quit`, pasta watches the namespace: inotify on the directory
//! holding a bind-mounted namespace file (`/run/netns/NAME`), or a one
//! second timer that probes a `/proc/PID/ns/net` path, and exits when it is
//! gone.
//!
//! ## Working inside
//!
//! The network namespace is per thread in Linux: [`NetNs::run`] runs a
//! closure in a short-lived thread that `setns()`es into it, so descriptors
//! it creates (the tap, a netlink socket, later listening sockets) live in
//! the namespace while the daemon stays where it is.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::conf::{Config, NsTarget};
use crate::sys;

/// Errors of namespace setup.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NsError {
    #[error("{0}")]
    Msg(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

type Result<T> = std::result::Result<T, NsError>;

fn ctx<T>(what: impl Into<String>, r: io::Result<T>) -> Result<T> {
    r.map_err(|source| NsError::Io {
        what: what.into(),
        source,
    })
}

fn ctx_rx<T>(what: impl Into<String>, r: rustix::io::Result<T>) -> Result<T> {
    ctx(what, r.map_err(io::Error::from))
}

/// Stack of the task that [`NetNs::run`] clones: plenty for opening and
/// binding sockets and logging; touched pages only are ever committed.
const NS_STACK: usize = 1 << 20;

/// A network namespace we can run code in.
pub(crate) struct NetNs {
    fd: OwnedFd,
    /// The stack of [`NetNs::run`]'s task, allocated once at start-up so
    /// that running in the namespace allocates nothing and maps no memory.
    stack: std::cell::RefCell<Box<[u8]>>,
}

impl NetNs {
    fn new(fd: OwnedFd) -> NetNs {
        NetNs {
            fd,
            stack: std::cell::RefCell::new(vec![0u8; NS_STACK].into_boxed_slice()),
        }
    }

    /// Runs `f` in a task that entered this network namespace, and returns
    /// its result. Descriptors that `f` creates belong to the namespace and
    /// stay usable from here.
    ///
    /// As upstream's `NS_CALL`, the task is a clone sharing our memory and
    /// descriptors ([`crate::sys::run_on_stack`]), not a thread: entering
    /// the namespace affects it alone, and it costs `clone`, `setns`,
    /// `exit` and `wait4`, where a thread needed some ten more system calls
    /// in the seccomp lists (see [`crate::seccomp`]).
    pub(crate) fn run<R>(&self, f: impl FnOnce() -> R) -> io::Result<R> {
        let fd = self.fd.as_fd();
        let mut out: Option<io::Result<R>> = None;
        let mut stack = self
            .stack
            .try_borrow_mut()
            .map_err(|_| io::Error::other("namespace call within a namespace call"))?;
        crate::sys::run_on_stack(&mut stack, || {
            out = Some(
                rustix::thread::move_into_link_name_space(fd, Some(LinkNameSpaceType::Network))
                    .map(|()| f())
                    .map_err(io::Error::from),
            );
        })?;
        out.unwrap_or_else(|| Err(io::Error::other("namespace task killed")))
    }

    /// Another handle to the same namespace.
    pub(crate) fn try_clone(&self) -> io::Result<NetNs> {
        Ok(NetNs::new(self.fd.try_clone()?))
    }

    /// Opens `n` sockets in this namespace at once (one thread for all):
    /// pools of sockets for the splice path.
    pub(crate) fn sockets(
        &self,
        domain: rustix::net::AddressFamily,
        kind: rustix::net::SocketType,
        n: usize,
    ) -> io::Result<Vec<OwnedFd>> {
        self.run(|| {
            (0..n)
                .map(|_| {
                    rustix::net::socket_with(
                        domain,
                        kind,
                        rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC,
                        None,
                    )
                    .map_err(io::Error::from)
                })
                .collect()
        })?
    }
}

/// The command pasta spawned, and the pipe that lets it start.
pub(crate) struct Spawned {
    /// Process id of the middle process, whose exit status is the
    /// command's.
    pub(crate) pid: i32,
    /// pidfd of the middle process, for the epoll set.
    pub(crate) pidfd: OwnedFd,
    go: Option<OwnedFd>,
}

impl Spawned {
    /// Lets the command run (after everything is set up).
    pub(crate) fn start(&mut self) {
        if let Some(go) = self.go.take() {
            let _ = rustix::io::write(&go, b"g");
        }
    }

    /// Reaps the middle process: the exit status pasta should return.
    pub(crate) fn exit_status(&self) -> Option<i32> {
        let pid = rustix::process::Pid::from_raw(self.pid)?;
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
            Ok(Some((_, st))) => Some(status_code(st)),
            _ => None,
        }
    }
}

fn status_code(st: rustix::process::WaitStatus) -> i32 {
    if let Some(code) = st.exit_status() {
        code
    } else if let Some(sig) = st.terminating_signal() {
        128 + sig
    } else {
        1
    }
}

/// How pasta learns that an attached namespace is gone.
pub(crate) enum QuitWatch {
    /// inotify on the directory holding the namespace file, for this name.
    Inotify { fd: OwnedFd, name: String },
    /// A 1 s timer; at each expiry `name` is probed in `dir`, a descriptor
    /// of the directory holding it (opened at start: we have no filesystem
    /// later).
    Timer {
        fd: OwnedFd,
        dir: OwnedFd,
        name: String,
    },
}

impl QuitWatch {
    pub(crate) fn fd(&self) -> &OwnedFd {
        match self {
            QuitWatch::Inotify { fd, .. } | QuitWatch::Timer { fd, .. } => fd,
        }
    }

    /// Called when the watch descriptor is readable: true if the namespace
    /// is gone.
    pub(crate) fn gone(&self) -> bool {
        match self {
            QuitWatch::Inotify { fd, name } => {
                let mut buf = [0u8; 4096];
                let Ok(n) = rustix::io::read(fd, &mut buf) else {
                    return false;
                };
                // struct inotify_event: wd i32, mask u32, cookie u32, len u32,
                // then `len` bytes of NUL-padded name.
                let mut off = 0;
                while off + 16 <= n {
                    let len = u32::from_ne_bytes([
                        buf[off + 12],
                        buf[off + 13],
                        buf[off + 14],
                        buf[off + 15],
                    ]) as usize;
                    let end = (off + 16 + len).min(n);
                    let raw = &buf[off + 16..end];
                    let ev_name = raw.split(|&b| b == 0).next().unwrap_or(&[]);
                    if ev_name == name.as_bytes() {
                        return true;
                    }
                    off = off + 16 + len;
                }
                false
            }
            QuitWatch::Timer { fd, dir, name } => {
                let mut buf = [0u8; 8];
                let _ = rustix::io::read(fd, &mut buf);
                match rustix::fs::openat(
                    dir,
                    name.as_str(),
                    OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(_) => false,
                    Err(rustix::io::Errno::ACCESS) => false,
                    Err(_) => true,
                }
            }
        }
    }
}

/// The namespace pasta serves, once set up.
pub(crate) struct Namespace {
    pub(crate) netns: NetNs,
    pub(crate) spawned: Option<Spawned>,
    pub(crate) quit: Option<QuitWatch>,
}

fn open_path(path: &Path) -> Result<OwnedFd> {
    ctx_rx(
        format!("Failed to open {}", path.display()),
        rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()),
    )
}

/// Joins the user namespace at `path`, unless we are already in it.
fn join_userns(path: &Path) -> Result<()> {
    let fd = open_path(path)?;
    let ours = rustix::fs::stat("/proc/self/ns/user");
    let theirs = rustix::fs::fstat(&fd);
    if let (Ok(a), Ok(b)) = (ours, theirs) {
        if a.st_ino == b.st_ino && a.st_dev == b.st_dev {
            return Ok(());
        }
    }
    ctx_rx(
        format!("Couldn't switch to user namespace {}", path.display()),
        rustix::thread::move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::User)),
    )
}

/// Sets up the namespace described by the configuration: spawns or joins.
/// Must run while the process is single-threaded.
pub(crate) fn setup(conf: &Config) -> Result<Namespace> {
    let Some(p) = conf.pasta.as_ref() else {
        return Err(NsError::Msg("pasta mode only".into()));
    };
    match &p.target {
        NsTarget::Spawn { command } => spawn(conf, command, p.netns_only),
        NsTarget::Pid(pid) => {
            let userns = p
                .userns
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("/proc/{pid}/ns/user")));
            if !p.netns_only {
                join_userns(&userns)?;
            }
            let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
            attach(&path, p.no_netns_quit)
        }
        NsTarget::Path(path) => {
            if let (Some(userns), false) = (&p.userns, p.netns_only) {
                join_userns(userns)?;
            }
            attach(path, p.no_netns_quit)
        }
    }
}

fn attach(path: &Path, no_quit: bool) -> Result<Namespace> {
    let fd = open_path(path)?;
    let netns = NetNs::new(fd);
    // Check that we may enter it at all, now rather than at the first use.
    ctx(
        format!("Couldn't switch to network namespace {}", path.display()),
        netns.run(|| ()),
    )?;
    let quit = if no_quit {
        None
    } else {
        Some(quit_watch(path)?)
    };
    Ok(Namespace {
        netns,
        spawned: None,
        quit,
    })
}

fn quit_watch(path: &Path) -> Result<QuitWatch> {
    let on_procfs = rustix::fs::statfs(path)
        .map(|s| s.f_type == libc::PROC_SUPER_MAGIC)
        .unwrap_or(false)
        || path.starts_with("/proc");
    if !on_procfs {
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
            use rustix::fs::inotify;
            let fd = ctx_rx(
                "inotify_init1",
                inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC),
            )?;
            ctx_rx(
                format!("Couldn't watch {}", dir.display()),
                inotify::add_watch(&fd, dir, inotify::WatchFlags::DELETE),
            )?;
            return Ok(QuitWatch::Inotify {
                fd,
                name: name.to_string_lossy().into_owned(),
            });
        }
    }
    use rustix::time::{
        timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags, Timespec,
    };
    let fd = ctx_rx(
        "timerfd_create",
        timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        ),
    )?;
    let sec = Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    ctx_rx(
        "timerfd_settime",
        timerfd_settime(
            &fd,
            TimerfdTimerFlags::empty(),
            &Itimerspec {
                it_interval: sec,
                it_value: sec,
            },
        ),
    )?;
    let dir = open_path(path.parent().unwrap_or(Path::new("/")))?;
    Ok(QuitWatch::Timer {
        fd,
        dir,
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    ctx_rx(
        "pipe2",
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC),
    )
}

fn wait_byte(fd: &OwnedFd) -> bool {
    let mut b = [0u8; 1];
    loop {
        match rustix::io::read(fd, &mut b) {
            Ok(1) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            _ => return false,
        }
    }
}

fn write_file(path: &str, data: &str) -> io::Result<()> {
    std::fs::write(path, data)
}

/// Spawn mode: see the module documentation for the dance.
fn spawn(conf: &Config, command: &[String], netns_only: bool) -> Result<Namespace> {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();

    // Prepare everything that allocates before forking.
    let argv = exec_argv(command)?;
    let hostname = conf
        .hostname
        .clone()
        .unwrap_or_else(|| format!("pasta-{}", host_name()));

    let (unshared_r, unshared_w) = pipe()?;
    let (mapped_r, mapped_w) = pipe()?;
    let (go_r, go_w) = pipe()?;

    let middle = match ctx("fork", sys::fork())? {
        sys::Fork::Child => {
            drop(unshared_r);
            drop(mapped_w);
            drop(go_w);
            // Not the listeners, the configuration socket or anything
            // else of ours: a socket we close later must really close.
            // (The command gets none of them either: close-on-exec.)
            use std::os::fd::AsRawFd;
            let keep = [
                unshared_w.as_raw_fd(),
                mapped_r.as_raw_fd(),
                go_r.as_raw_fd(),
            ];
            if let Err(e) = sys::close_all_but(&keep) {
                eprintln!("pasta: closing descriptors: {e}");
                sys::exit_now(1);
            }
            let code = middle_process(
                netns_only,
                &unshared_w,
                &mapped_r,
                go_r,
                &argv,
                hostname.as_bytes(),
            );
            sys::exit_now(code);
        }
        sys::Fork::Parent(pid) => pid,
    };
    drop(unshared_w);
    drop(mapped_r);
    drop(go_r);

    if !wait_byte(&unshared_r) {
        return Err(NsError::Io {
            what: "Failed to create namespaces for the command".into(),
            source: io::Error::other("child exited"),
        });
    }

    if !netns_only {
        let (umap, gmap) = if uid == 0 {
            // Root: identity over the whole range, so the namespace has
            // every user and the command is a complete root.
            (
                "0 0 4294967295\n".to_string(),
                "0 0 4294967295\n".to_string(),
            )
        } else {
            let _ = write_file(&format!("/proc/{middle}/setgroups"), "deny");
            (format!("0 {uid} 1\n"), format!("0 {gid} 1\n"))
        };
        if let Err(e) = write_file(&format!("/proc/{middle}/uid_map"), &umap) {
            log::warn!("Couldn't configure user mappings: {e}");
        }
        if let Err(e) = write_file(&format!("/proc/{middle}/gid_map"), &gmap) {
            log::warn!("Couldn't configure group mappings: {e}");
        }
    }
    let _ = rustix::io::write(&mapped_w, b"m");
    drop(mapped_w);

    if !netns_only {
        join_userns(Path::new(&format!("/proc/{middle}/ns/user")))?;
    }
    let netns = NetNs::new(open_path(Path::new(&format!("/proc/{middle}/ns/net")))?);
    let pidfd = ctx_rx(
        "pidfd_open",
        rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(middle).ok_or_else(|| NsError::Io {
                what: "fork".into(),
                source: io::Error::other("bad pid"),
            })?,
            rustix::process::PidfdFlags::empty(),
        ),
    )?;
    Ok(Namespace {
        netns,
        spawned: Some(Spawned {
            pid: middle,
            pidfd,
            go: Some(go_w),
        }),
        quit: None,
    })
}

fn host_name() -> String {
    let u = rustix::system::uname();
    u.nodename().to_string_lossy().into_owned()
}

/// What to execute: the file, then the argument vector.
fn exec_argv(command: &[String]) -> Result<Vec<CString>> {
    let bad = |_| NsError::Io {
        what: "Invalid command".into(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    };
    if command.is_empty() {
        // The user's shell, as a login shell: argv[0] is "-" + its name.
        let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into());
        let base = shell.rsplit('/').next().unwrap_or("sh");
        return Ok(vec![
            CString::new(shell.as_str()).map_err(bad)?,
            CString::new(format!("-{base}")).map_err(bad)?,
        ]);
    }
    // The file to run, then argv (whose first word is the same here).
    std::iter::once(&command[0])
        .chain(command)
        .map(|a| CString::new(a.as_str()).map_err(bad))
        .collect()
}

/// The middle process: unshares, forks the command, waits for it.
fn middle_process(
    netns_only: bool,
    unshared_w: &OwnedFd,
    mapped_r: &OwnedFd,
    go_r: OwnedFd,
    argv: &[CString],
    hostname: &[u8],
) -> i32 {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let mut flags = UnshareFlags::NEWNET
        | UnshareFlags::NEWUTS
        | UnshareFlags::NEWNS
        | UnshareFlags::NEWIPC
        | UnshareFlags::NEWPID;
    if !netns_only {
        flags |= UnshareFlags::NEWUSER;
    }
    if let Err(e) = sys::unshare(flags) {
        eprintln!("pasta: failed to create namespaces: {e}");
        return 1;
    }
    let _ = rustix::io::write(unshared_w, b"u");
    if !wait_byte(mapped_r) {
        return 1;
    }
    let pid = match sys::fork() {
        Ok(sys::Fork::Child) => {
            let code = command_process(go_r, argv, hostname);
            sys::exit_now(code);
        }
        Ok(sys::Fork::Parent(pid)) => pid,
        Err(e) => {
            eprintln!("pasta: fork: {e}");
            return 1;
        }
    };
    drop(go_r);
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return 1;
    };
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, st))) => return status_code(st),
            Err(rustix::io::Errno::INTR) => continue,
            _ => return 1,
        }
    }
}

/// PID 1 of the new PID namespace: set up, wait for "go", exec.
fn command_process(go_r: OwnedFd, argv: &[CString], hostname: &[u8]) -> i32 {
    use rustix::mount::{mount, mount_change, MountFlags, MountPropagationFlags};
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let _ = mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    );
    let _ = mount(
        "proc",
        "/proc",
        "proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    );
    let _ = rustix::system::sethostname(hostname);
    let _ = write_file("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
    if !wait_byte(&go_r) {
        // pasta died before the namespace was ready.
        return 1;
    }
    drop(go_r);
    // The death signal stays armed through exec: if pasta is killed, the
    // middle process dies with it and so does the command, taking its PID
    // namespace along, instead of running on without network.
    sys::unblock_all_signals();
    let Some((file, args)) = argv.split_first() else {
        return 127;
    };
    let err = sys::execvp(file, args);
    eprintln!(
        "pasta: failed to execute {}: {err}",
        argv.first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    if err.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

/// The tap device, once created and configured in the namespace.
pub(crate) struct TapDevice {
    pub(crate) fd: OwnedFd,
    pub(crate) ifname: String,
    /// The tap's MAC: the guest's MAC.
    pub(crate) mac: [u8; 6],
    /// The tap's IPv6 link-local address, when `--config-net` read it.
    pub(crate) ll6: Option<std::net::Ipv6Addr>,
    /// Whether the device does TCP segmentation offload (see
    /// [`sys::open_tap`]).
    pub(crate) tso: bool,
}

/// `--splice-only`: no tap device, only the namespace's loopback is
/// brought up. The event loop still wants a guest link: it gets an inert
/// stand-in, an eventfd that never becomes readable (nothing is ever sent
/// to it: without addresses there is no guest to talk to).
pub(crate) fn lo_setup(ns: &NetNs) -> Result<TapDevice> {
    let r = ns.run(|| -> std::result::Result<(), String> {
        let mut nl = netlink::Netlink::open().map_err(|e| format!("netlink: {e}"))?;
        netlink::lo_up(&mut nl).map_err(|e| format!("Failed to bring up loopback: {e}"))
    });
    match r {
        Ok(Ok(())) => {}
        Ok(Err(m)) => return Err(NsError::Msg(m)),
        Err(e) => return Err(NsError::Msg(format!("Couldn't enter the namespace: {e}"))),
    }
    let fd = ctx_rx(
        "eventfd",
        rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::NONBLOCK | rustix::event::EventfdFlags::CLOEXEC,
        ),
    )?;
    Ok(TapDevice {
        fd,
        ifname: String::new(),
        mac: [0; 6],
        ll6: None,
        tso: false,
    })
}

/// Host routes of the template interfaces, read in the host namespace for
/// `--config-net` to copy.
pub(crate) struct HostRoutes {
    v4: Option<(u32, Vec<netlink::Route>)>,
    v6: Option<(u32, Vec<netlink::Route>)>,
}

use crate::netlink::{self, Family, NsIpConf, NsNetConf, NsRoutes};

/// Reads, in our own (the host's) namespace, the routes `--config-net` will
/// copy.
pub(crate) fn host_routes(conf: &Config) -> Result<HostRoutes> {
    let mut out = HostRoutes { v4: None, v6: None };
    let Some(p) = &conf.pasta else {
        return Ok(out);
    };
    let wants4 = conf
        .ip4
        .as_ref()
        .is_some_and(|c| c.copy_routes && !c.ifname.is_empty());
    let wants6 = conf
        .ip6
        .as_ref()
        .is_some_and(|c| c.copy_routes && !c.ifname.is_empty());
    if !p.config_net || !(wants4 || wants6) {
        return Ok(out);
    }
    let nl_err =
        |e: netlink::NetlinkError| NsError::Msg(format!("Failed to read host routes: {e}"));
    let mut nl = netlink::Netlink::open().map_err(nl_err)?;
    if let (true, Some(c)) = (wants4, &conf.ip4) {
        let idx = nl.link_index(&c.ifname).map_err(nl_err)?;
        let routes =
            crate::conf::host::template_routes(&mut nl, Family::V4, idx).map_err(nl_err)?;
        out.v4 = Some((idx, routes));
    }
    if let (true, Some(c)) = (wants6, &conf.ip6) {
        let idx = nl.link_index(&c.ifname).map_err(nl_err)?;
        let routes =
            crate::conf::host::template_routes(&mut nl, Family::V6, idx).map_err(nl_err)?;
        out.v6 = Some((idx, routes));
    }
    Ok(out)
}

fn ns_net_conf(conf: &Config, routes: HostRoutes) -> NsNetConf {
    let v4 = conf.ip4.as_ref().map(|c| NsIpConf {
        addrs: if c.copy_addrs && !c.host_addrs.is_empty() {
            c.host_addrs
                .iter()
                .map(|&(a, p)| (std::net::IpAddr::V4(a), p))
                .collect()
        } else {
            vec![(std::net::IpAddr::V4(c.addr), c.prefix_len)]
        },
        routes: match routes.v4 {
            Some((host_ifindex, routes)) => NsRoutes::Copy {
                host_ifindex,
                routes,
            },
            None => NsRoutes::Gateway(std::net::IpAddr::V4(c.gw)),
        },
    });
    let v6 = conf.ip6.as_ref().map(|c| NsIpConf {
        addrs: if c.copy_addrs && !c.host_addrs.is_empty() {
            c.host_addrs
                .iter()
                .map(|&(a, p)| (std::net::IpAddr::V6(a), p))
                .collect()
        } else {
            c.addr
                .map(|a| vec![(std::net::IpAddr::V6(a), 64)])
                .unwrap_or_default()
        },
        routes: match routes.v6 {
            Some((host_ifindex, routes)) => NsRoutes::Copy {
                host_ifindex,
                routes,
            },
            None => NsRoutes::Gateway(std::net::IpAddr::V6(c.gw)),
        },
    });
    NsNetConf {
        mtu: u32::from(conf.mtu),
        v4,
        v6,
    }
}

/// Creates the tap in the namespace, brings `lo` up, sets or reads the
/// tap's MAC, and with `--config-net` configures MTU, link, addresses and
/// routes (upstream's order, see `netlink::configure_ns`).
pub(crate) fn tap_setup(conf: &Config, ns: &NetNs, routes: HostRoutes) -> Result<TapDevice> {
    let Some(p) = &conf.pasta else {
        return Err(NsError::Msg("pasta mode only".into()));
    };
    let name = p.ns_ifname.clone();
    let ns_conf = p.config_net.then(|| ns_net_conf(conf, routes));
    let local4 = conf.ip4.as_ref().is_some_and(|c| c.local_mode);
    let local6 = conf.ip6.as_ref().is_some_and(|c| c.local_mode);
    let ns_mac = p.ns_mac;
    // Tests compare transfers with and without segmentation offload.
    let tso = std::env::var_os("PASST_RS_TEST_NO_TSO").is_none();
    let r = ns.run(move || -> std::result::Result<TapDevice, String> {
        let (fd, ifname, tso) = sys::open_tap(&name, tso).map_err(|e| {
            // Opening /dev/net/tun from our user namespace is an access
            // check as "others": distributions ship it 0666, some machines
            // don't.
            let hint = if e.raw_os_error() == Some(libc::EACCES) {
                " (without root, /dev/net/tun must be readable and writable by all: chmod 0666 /dev/net/tun)"
            } else {
                ""
            };
            format!("Failed to open tap device {name}: {e}{hint}")
        })?;
        let mut nl = netlink::Netlink::open().map_err(|e| format!("netlink: {e}"))?;
        netlink::lo_up(&mut nl).map_err(|e| format!("Failed to bring up loopback: {e}"))?;
        let idx = nl
            .link_index(&ifname)
            .map_err(|e| format!("Tap {ifname} not found: {e}"))?;
        let mac = match ns_mac {
            Some(m) => {
                nl.link_set_mac(idx, m)
                    .map_err(|e| format!("Failed to set MAC address of {ifname}: {e}"))?;
                m
            }
            None => nl
                .link_get_mac(idx)
                .map_err(|e| format!("Failed to read MAC address of {ifname}: {e}"))?,
        };
        let mut ll6 = None;
        if let Some(mut c) = ns_conf {
            loop {
                match netlink::configure_ns(&mut nl, idx, &c) {
                    Ok(done) => {
                        ll6 = done.ll6;
                        break;
                    }
                    // In local mode a family the namespace does not support
                    // is quietly left out, as upstream.
                    Err(e)
                        if e.errno() == Some(libc::EOPNOTSUPP)
                            && matches!(
                                e.step,
                                netlink::NsConfStep::Addrs(Family::V6)
                                    | netlink::NsConfStep::Routes(Family::V6)
                                    | netlink::NsConfStep::LinkLocal
                            )
                            && local6
                            && c.v6.is_some() =>
                    {
                        c.v6 = None;
                    }
                    Err(e)
                        if e.errno() == Some(libc::EOPNOTSUPP)
                            && matches!(
                                e.step,
                                netlink::NsConfStep::Addrs(Family::V4)
                                    | netlink::NsConfStep::Routes(Family::V4)
                            )
                            && local4
                            && c.v4.is_some() =>
                    {
                        c.v4 = None;
                    }
                    Err(e) => return Err(format!("Failed to configure {ifname}: {e}")),
                }
            }
        }
        Ok(TapDevice {
            fd,
            ifname,
            mac,
            ll6,
            tso,
        })
    });
    match r {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(msg)) => Err(NsError::Msg(msg)),
        Err(e) => Err(NsError::Io {
            what: "Couldn't enter the network namespace".into(),
            source: e,
        }),
    }
}
