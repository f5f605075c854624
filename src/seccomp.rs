//! The seccomp-BPF allowlist: the last thing before the event loop.
//!
//! Once everything is set up ([`crate::isolation`] has dropped what it
//! could), [`install`] restricts the process to the system calls its loop
//! makes, one list per [`Profile`]. Any other call kills the whole process
//! (`SECCOMP_RET_KILL_PROCESS`), so a missing entry is loud (the test suite
//! runs with the filter on: that is what proves each list complete) and a
//! compromised daemon cannot open files, execute programs, trace, mount or
//! create namespaces. The filter is built with `seccompiler` (rust-vmm, as
//! Firecracker and cloud-hypervisor) and applied to every thread (TSYNC).
//!
//! Debugging: with `PASST_RS_SECCOMP_LOG=1` in the environment, a call
//! outside the list is allowed and logged by the kernel (`SECCOMP_RET_LOG`:
//! an audit record in the kernel log naming the call's number) instead of
//! killing us. Not an option and not in `--help`, as upstream has none.
//!
//! A panic after [`install`] logs its message (our hook: the default one
//! reads the thread id, `gettid`, and with `RUST_BACKTRACE` opens our
//! executable), then `abort()` ends in a seccomp kill at its first signal
//! call (`rt_sigprocmask`), as upstream's does: loud, `SIGSYS` instead of
//! `SIGABRT`, with the message written first.
//!
//! `passt-repair` has a list of its own, installed once it is connected
//! ([`install_repair`]): receive, `setsockopt(TCP_REPAIR)`, close, send,
//! write, exit, and the allocator's calls (`repair_rules`).
//!
//! The lists were found by running the test suite with
//! `PASST_RS_SECCOMP_LOG=1` and reading the kernel's audit records, and are
//! proven by the suite passing with the filter on (`tests/seccomp.rs`
//! checks that each mode runs filtered).
//!
//! # Every mode (27 calls with any arguments, 7 filtered: 34)
//!
//! (`x86_64` names, as the suite runs them)
//!
//! - I/O on descriptors we hold: `read`, `write`, `writev`, `recvfrom`,
//!   `sendto`, `recvmsg`, `sendmsg`, `recvmmsg`, `sendmmsg`, `close`; the
//!   log file's rotation (in place, through a fixed buffer) and the final
//!   sync: `lseek`, `ftruncate`, `fsync`;
//! - the loop: `epoll_pwait`, `epoll_ctl`, `timerfd_settime` (the time
//!   comes from the vDSO);
//! - sockets to the host, one per flow, and the listeners opened by port
//!   scans: `connect`, `bind`, `listen`, `accept4`, `shutdown`,
//!   `getsockname`, `getsockopt`; filtered: `socket` (`AF_INET` or
//!   `AF_INET6`, stream or datagram only: no raw, packet, netlink or unix
//!   socket), `setsockopt` (only the level and option pairs of
//!   [`SOCKOPTS`]), `ioctl` (only `FIONBIO`, on an accepted QEMU socket),
//!   `fcntl` (only `F_GETFL`, `F_SETFL`, `F_GETFD`, `F_SETFD`);
//! - memory: `brk`, `munmap`, `mremap`; filtered: `mmap` (never
//!   `PROT_EXEC`). The loop allocates (log lines, a new flow's table
//!   entries, a namespace call's results; never per packet, see
//!   `tests/no_alloc.rs`) from the C library's main arena, which grows
//!   with `brk`; a large block is an `mmap` of its own, freed with
//!   `munmap`, and grown in place with `mremap` (a table growing under a
//!   flood of new flows: `tests/flood.rs` needs it). vhost-user maps the
//!   guest's memory regions and the dirty log (shared, read and write) with
//!   the same `mmap`. Nothing in the loop needs `madvise` or `mprotect`
//!   (those came from threads: see pasta);
//! - exit: `exit_group` (`_exit`: see [`crate::exit`]);
//! - following the host's resolv.conf ([`crate::follow::resolv`]): it is
//!   read again through the descriptors of its directories, opened at
//!   start: filtered, `openat` (only relative to a descriptor, never
//!   `AT_FDCWD`, and only read-only: no `O_CREAT`, `O_TRUNC`, `O_APPEND`,
//!   `O_TMPFILE`) and `readlinkat` (only relative to a descriptor). Its
//!   inotify events and the host's rtnetlink notifications and dumps
//!   ([`crate::follow::routes`]) are `read`, `sendto` and `recvfrom` on
//!   descriptors opened at start.
//!
//! # passt on the stream socket: the list above, `ppoll` (35)
//!
//! A frame the socket took only part of (its buffer full): the rest waits
//! for room with `ppoll`, up to a deadline, so that the stream stays
//! framed.
//!
//! # passt on vhost-user: the list above, wider arguments, `statx` (35)
//!
//! Each new front-end's control socket gets a read timeout
//! (`setsockopt` `SO_RCVTIMEO`) and is cloned for the `vhost` crate
//! (`fcntl` `F_DUPFD_CLOEXEC`). Kicks and calls are eventfd `read` and
//! `write`, the memory table and its descriptors come with `recvmsg`
//! (`SCM_RIGHTS`); before mapping a region, the `vm-memory` crate reads
//! the size of its descriptor (`statx`).
//!
//! # pasta: 7 more (41)
//!
//! - the spliced loopback path and the tun device: `splice`, `pipe2`,
//!   `readv`; `fcntl` also `F_GETPIPE_SZ`, `F_SETPIPE_SZ`;
//! - the spawned command's exit: `wait4`;
//! - the quit timer's probe of `/proc/PID/ns/net`: the `openat` of every
//!   mode (relative to the directory opened at start);
//! - code that runs in the namespace (splice socket pools, `auto` port
//!   scans and their listeners), in a task cloned as upstream's `NS_CALL`
//!   ([`crate::pasta::NetNs::run`]): `clone` (only the flags of
//!   [`crate::sys::NS_CALL_FLAGS`]: a task sharing our memory and
//!   descriptors while we wait for it; never a thread, a new namespace or
//!   a copy of the process that goes on by itself), `setns` (only
//!   `CLONE_NEWNET`), `exit`, and `wait4` to reap it. A thread instead
//!   needed `clone3`, `set_robust_list`, `rseq`, `sched_getaffinity`,
//!   `futex`, `sigaltstack`, `rt_sigprocmask`, `mprotect`, `madvise`.
//!
//! # Against upstream
//!
//! Upstream's `seccomp.h` is generated by `seccomp.sh` from the
//! `#syscalls` annotations of its C files and headers: `#syscalls` lines go
//! to every profile, `#syscalls:passt`, `#syscalls:vu`, `#syscalls:pasta`
//! to one; `a|b` takes the first name the architecture has,
//! `arch:name` only on that architecture. Counted for `x86_64` from the
//! annotations of every C file that goes into `passt` (read through the
//! search tool, one stored version of each; `arch.c` and `mld.c` are not
//! in its index, and the headers were not read):
//!
//! - every profile (34): `accept`, `accept4`, `bind`, `clock_gettime`,
//!   `close`, `connect`, `epoll_ctl`, `epoll_pwait`, `epoll_wait`,
//!   `exit_group`, `fallocate`, `fcntl`, `fsync`, `ftruncate`,
//!   `getsockname`, `getsockopt`, `ioctl`, `listen`, `lseek`, `read`,
//!   `recvfrom`, `recvmmsg`, `recvmsg`, `sendmmsg`, `sendmsg`, `sendto`,
//!   `setsockopt`, `shutdown`, `socket`, `timerfd_create`,
//!   `timerfd_gettime`, `timerfd_settime`, `write`, `writev` (`passt.c`,
//!   `util.c`, `log.c`, `tcp.c`, `tcp_buf.c`, `udp.c`, `udp_flow.c`,
//!   `serialise.c`);
//! - passt: those 34 (its own, `sendmsg` in `tap.c`, is among them);
//! - vhost-user: 36, those and `mmap`, `munmap` (`vhost_user.c`; its
//!   `sendmsg`, `getsockname`, `ioctl` are among the 34);
//! - pasta: 43, those and `clone`, `exit`, `openat`, `pipe2`,
//!   `rt_sigprocmask`, `rt_sigreturn`, `setns`, `splice`, `waitid`
//!   (`pasta.c`, `tap.c`, `util.c`, `tcp_splice.c`; `fwd.c`'s `lseek` is
//!   among the 34).
//!
//! Here 35, 35 and 41 (`counts_match_the_doc`). The differences (beside
//! `openat` and `readlinkat` for following resolv.conf, which upstream
//! does not do):
//!
//! - passt, ours only: `brk`, `mmap`, `munmap`, `mremap` (the allocator,
//!   above), `ppoll` (a frame's remainder); upstream only: `accept`,
//!   `clock_gettime` (the vDSO serves ours), `epoll_wait`, `fallocate`
//!   (its log rotation), `timerfd_create`, `timerfd_gettime` (its timer
//!   per connection);
//! - vhost-user, ours only: `brk`, `mremap`, `statx`; upstream only: the
//!   same six;
//! - pasta, ours only: `brk`, `mmap`, `munmap`, `mremap`, `readv` (the tun
//!   device), `wait4` (the spawned command and namespace tasks); upstream
//!   only: the same six and `waitid`, `rt_sigprocmask`, `rt_sigreturn`
//!   (its `SIGCHLD` handler: our signals come from a signalfd).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op,
    SeccompCondition as Cond, SeccompFilter, SeccompRule,
};

/// Which allowlist: what each mode's loop calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Profile {
    /// pasta: tun device, namespace threads, splice.
    Pasta,
    /// passt on the stream (qemu `-netdev stream`) socket.
    PasstStream,
    /// passt as a vhost-user back-end.
    PasstVhostUser,
}

/// Errors building or applying the filter.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SeccompError {
    #[error("seccomp filter: {0}")]
    Build(#[from] seccompiler::BackendError),
    #[error("seccomp filter: {0}")]
    Apply(#[from] seccompiler::Error),
    #[error("seccomp filter: architecture {0} not supported")]
    Arch(&'static str),
}

/// `setsockopt` level and option pairs, every one the code sets:
/// listeners (`SO_REUSEADDR`, `IP_FREEBIND`, `IPV6_FREEBIND`,
/// `IPV6_V6ONLY`, `SO_BINDTODEVICE`), flows (`TCP_NODELAY`, `TCP_MAXSEG`,
/// `SO_KEEPALIVE`, `SO_LINGER`, `SO_PEEK_OFF`, `SO_RCVLOWAT`, `SO_SNDBUF`,
/// `SO_RCVBUF`), UDP and ICMP errors and hop limits (`IP_RECVERR`,
/// `IPV6_RECVERR`, `IP_TTL`, `IPV6_UNICAST_HOPS`).
const SOCKOPTS: &[(i32, i32)] = &[
    (libc::SOL_SOCKET, libc::SO_REUSEADDR),
    (libc::SOL_SOCKET, libc::SO_SNDBUF),
    (libc::SOL_SOCKET, libc::SO_RCVBUF),
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
    (libc::SOL_SOCKET, libc::SO_LINGER),
    (libc::SOL_SOCKET, libc::SO_RCVLOWAT),
    (libc::SOL_SOCKET, libc::SO_BINDTODEVICE),
    (libc::SOL_SOCKET, libc::SO_PEEK_OFF),
    (libc::IPPROTO_TCP, libc::TCP_NODELAY),
    (libc::IPPROTO_TCP, libc::TCP_MAXSEG),
    (libc::IPPROTO_IP, libc::IP_TTL),
    (libc::IPPROTO_IP, libc::IP_RECVERR),
    (libc::IPPROTO_IP, libc::IP_FREEBIND),
    (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS),
    (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
    (libc::IPPROTO_IPV6, libc::IPV6_RECVERR),
    (libc::IPPROTO_IPV6, libc::IPV6_FREEBIND),
];

fn cond(arg: u8, op: Op, val: u64) -> Result<Cond, SeccompError> {
    Ok(Cond::new(arg, Len::Dword, op, val)?)
}

fn rule(conds: Vec<Cond>) -> Result<SeccompRule, SeccompError> {
    Ok(SeccompRule::new(conds)?)
}

/// One rule per allowed value of argument `arg` (32 bits compared).
fn one_of(arg: u8, vals: &[u64]) -> Result<Vec<SeccompRule>, SeccompError> {
    vals.iter()
        .map(|&v| rule(vec![cond(arg, Op::Eq, v)?]))
        .collect()
}

/// `mmap` and `mprotect`: anything but executable memory.
fn no_exec() -> Result<Vec<SeccompRule>, SeccompError> {
    Ok(vec![rule(vec![cond(
        2,
        Op::MaskedEq(libc::PROT_EXEC as u64),
        0,
    )?])?])
}

/// The syscall numbers and argument rules of `profile`; an empty rule list
/// allows any arguments.
fn rules(profile: Profile) -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let mut m: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let any = |m: &mut BTreeMap<i64, Vec<SeccompRule>>, nrs: &[libc::c_long]| {
        for &nr in nrs {
            m.insert(nr, Vec::new());
        }
    };
    any(
        &mut m,
        &[
            // I/O on what we hold.
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_writev,
            libc::SYS_recvfrom,
            libc::SYS_sendto,
            libc::SYS_recvmsg,
            libc::SYS_sendmsg,
            libc::SYS_recvmmsg,
            libc::SYS_sendmmsg,
            libc::SYS_close,
            // The log file's rotation and the final sync.
            libc::SYS_lseek,
            libc::SYS_ftruncate,
            libc::SYS_fsync,
            // The loop.
            libc::SYS_epoll_ctl,
            libc::SYS_epoll_pwait,
            libc::SYS_timerfd_settime,
            // Sockets.
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_listen,
            libc::SYS_accept4,
            libc::SYS_shutdown,
            libc::SYS_getsockname,
            libc::SYS_getsockopt,
            // Memory: the allocator's main arena, and large blocks.
            libc::SYS_brk,
            libc::SYS_munmap,
            libc::SYS_mremap,
            // Exit.
            libc::SYS_exit_group,
        ],
    );
    m.insert(libc::SYS_mmap, no_exec()?);
    m.insert(libc::SYS_ioctl, one_of(1, &[libc::FIONBIO])?);
    let mut sockets = Vec::new();
    for domain in [libc::AF_INET, libc::AF_INET6] {
        for kind in [libc::SOCK_STREAM, libc::SOCK_DGRAM] {
            // The type carries SOCK_NONBLOCK and SOCK_CLOEXEC too.
            sockets.push(rule(vec![
                cond(0, Op::Eq, domain as u64)?,
                cond(1, Op::MaskedEq(0xf), kind as u64)?,
            ])?);
        }
    }
    m.insert(libc::SYS_socket, sockets);
    let mut sockopts: Vec<(i32, i32)> = SOCKOPTS.to_vec();
    if profile == Profile::PasstVhostUser {
        // The read timeout on each front-end's control socket.
        sockopts.push((libc::SOL_SOCKET, libc::SO_RCVTIMEO));
    }
    let sockopts = sockopts
        .iter()
        .map(|&(level, name)| {
            rule(vec![
                cond(1, Op::Eq, level as u64)?,
                cond(2, Op::Eq, name as u64)?,
            ])
        })
        .collect::<Result<Vec<_>, _>>()?;
    m.insert(libc::SYS_setsockopt, sockopts);
    // Files read through a directory opened at start (resolv.conf, the
    // quit timer's /proc probe): read-only, relative to a descriptor,
    // never the current directory (the root is empty anyway).
    m.insert(
        libc::SYS_openat,
        vec![rule(vec![
            cond(0, Op::Ne, libc::AT_FDCWD as u32 as u64)?,
            // Read-only, creating or truncating nothing (rustix adds
            // O_LARGEFILE, so not an exact match).
            cond(
                2,
                Op::MaskedEq(
                    (libc::O_ACCMODE
                        | libc::O_CREAT
                        | libc::O_TRUNC
                        | libc::O_APPEND
                        | libc::O_TMPFILE) as u64,
                ),
                0,
            )?,
        ])?],
    );
    // Whether resolv.conf is a symlink, and to what.
    m.insert(
        libc::SYS_readlinkat,
        vec![rule(vec![cond(0, Op::Ne, libc::AT_FDCWD as u32 as u64)?])?],
    );
    let mut fcntl = vec![
        libc::F_GETFL as u64,
        libc::F_SETFL as u64,
        libc::F_GETFD as u64,
        libc::F_SETFD as u64,
    ];

    match profile {
        Profile::Pasta => {
            any(
                &mut m,
                &[
                    libc::SYS_splice,
                    libc::SYS_readv,
                    libc::SYS_pipe2,
                    libc::SYS_wait4,
                    // The end of a namespace task.
                    libc::SYS_exit,
                ],
            );
            fcntl.extend([libc::F_GETPIPE_SZ as u64, libc::F_SETPIPE_SZ as u64]);
            m.insert(libc::SYS_setns, one_of(1, &[libc::CLONE_NEWNET as u64])?);
            m.insert(
                libc::SYS_clone,
                vec![rule(vec![Cond::new(
                    0,
                    Len::Qword,
                    Op::Eq,
                    crate::sys::NS_CALL_FLAGS as u64,
                )?])?],
            );
        }
        Profile::PasstVhostUser => {
            // The control socket of a front-end, cloned for the vhost crate.
            fcntl.push(libc::F_DUPFD_CLOEXEC as u64);
            // The size of each memory region's descriptor, before mapping
            // it (`vm-memory` reads the file's metadata).
            any(&mut m, &[libc::SYS_statx]);
        }
        // A frame cut by a full socket: the rest of it waits for room, up
        // to a deadline (`tap::stream`, `ppoll`).
        Profile::PasstStream => any(&mut m, &[libc::SYS_ppoll]),
    }
    m.insert(libc::SYS_fcntl, one_of(1, &fcntl)?);
    Ok(m)
}

/// `passt-repair`'s list, once connected: receive a command and its
/// sockets, set `TCP_REPAIR` (nothing else), close them, answer, and
/// write an error and exit.
fn repair_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let mut m: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in [
        libc::SYS_recvmsg,
        libc::SYS_sendto,
        libc::SYS_close,
        libc::SYS_write,
        libc::SYS_exit_group,
        // The allocator (the descriptor list of a message).
        libc::SYS_brk,
        libc::SYS_munmap,
    ] {
        m.insert(nr, Vec::new());
    }
    m.insert(libc::SYS_mmap, no_exec()?);
    m.insert(
        libc::SYS_setsockopt,
        vec![rule(vec![
            cond(1, Op::Eq, libc::IPPROTO_TCP as u64)?,
            cond(2, Op::Eq, libc::TCP_REPAIR as u64)?,
        ])?],
    );
    Ok(m)
}

/// Installs `passt-repair`'s list (see [`repair_rules`]).
pub(crate) fn install_repair() -> Result<(), SeccompError> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|_| SeccompError::Arch(std::env::consts::ARCH))?;
    let violation = if log_only() {
        SeccompAction::Log
    } else {
        SeccompAction::KillProcess
    };
    let filter = SeccompFilter::new(repair_rules()?, violation, SeccompAction::Allow, arch)?;
    let prog: BpfProgram = filter.try_into()?;
    seccompiler::apply_filter(&prog)?;
    Ok(())
}

/// True if the debug knob asks to log violations instead of killing.
fn log_only() -> bool {
    std::env::var_os("PASST_RS_SECCOMP_LOG").is_some_and(|v| v == "1")
}

/// Installs `profile`'s allowlist on every thread. From here on, a call
/// outside it kills the process.
pub(crate) fn install(profile: Profile) -> Result<(), SeccompError> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|_| SeccompError::Arch(std::env::consts::ARCH))?;
    let violation = if log_only() {
        log::warn!("seccomp: logging violations instead of killing (PASST_RS_SECCOMP_LOG)");
        SeccompAction::Log
    } else {
        SeccompAction::KillProcess
    };
    let filter = SeccompFilter::new(rules(profile)?, violation, SeccompAction::Allow, arch)?;
    let prog: BpfProgram = filter.try_into()?;
    // From here on a panic goes to our log (stderr may be /dev/null by
    // now), without the default hook's thread id (`gettid`) or backtrace
    // (which opens our executable); the abort that follows ends in a
    // seccomp kill at its first signal call (see the module doc).
    std::panic::set_hook(Box::new(|info| log::error!("{info}")));
    seccompiler::apply_filter_all_threads(&prog)?;
    // With the exit line (`alloc counters`), tells how much the loop
    // allocated: the reason `brk`, `mmap`, `munmap` stay in the lists.
    log::debug!(
        "seccomp: {profile:?} allowlist installed (allocations so far: {})",
        crate::sys::alloc::allocations()
    );
    // tests/seccomp.rs: a panic under the filter is logged, then killed.
    if std::env::var_os("PASST_RS_TEST_PANIC_FILTERED").is_some() {
        panic!("panic under the seccomp filter (PASST_RS_TEST_PANIC_FILTERED)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_compiles() {
        let arch = std::env::consts::ARCH.try_into().unwrap();
        for p in [
            Profile::Pasta,
            Profile::PasstStream,
            Profile::PasstVhostUser,
        ] {
            let f = SeccompFilter::new(
                rules(p).unwrap(),
                SeccompAction::KillProcess,
                SeccompAction::Allow,
                arch,
            )
            .unwrap();
            let prog: BpfProgram = f.try_into().unwrap();
            assert!(!prog.is_empty());
        }
        let f = SeccompFilter::new(
            repair_rules().unwrap(),
            SeccompAction::KillProcess,
            SeccompAction::Allow,
            arch,
        )
        .unwrap();
        let prog: BpfProgram = f.try_into().unwrap();
        assert!(!prog.is_empty());
    }

    /// The counts in the module doc.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn counts_match_the_doc() {
        let n = |p| rules(p).unwrap().len();
        assert_eq!(n(Profile::PasstStream), 35);
        assert_eq!(n(Profile::PasstVhostUser), 35);
        assert_eq!(n(Profile::Pasta), 41);
    }

    /// Calls the lists were trimmed of (module doc): the abort path, the
    /// runtime's thread and signal-stack set-up, stack memory, and `statx`
    /// but for vhost-user's memory regions.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn trimmed_calls_stay_out() {
        for p in [
            Profile::Pasta,
            Profile::PasstStream,
            Profile::PasstVhostUser,
        ] {
            let m = rules(p).unwrap();
            for nr in [
                libc::SYS_rt_sigprocmask,
                libc::SYS_rt_sigaction,
                libc::SYS_rt_sigreturn,
                libc::SYS_getpid,
                libc::SYS_gettid,
                libc::SYS_tgkill,
                libc::SYS_futex,
                libc::SYS_sigaltstack,
                libc::SYS_clone3,
                libc::SYS_set_robust_list,
                libc::SYS_rseq,
                libc::SYS_sched_getaffinity,
                libc::SYS_mprotect,
                libc::SYS_madvise,
            ] {
                assert!(!m.contains_key(&nr), "{p:?} allows {nr}");
            }
            assert_eq!(
                m.contains_key(&libc::SYS_statx),
                p == Profile::PasstVhostUser
            );
        }
    }
}
