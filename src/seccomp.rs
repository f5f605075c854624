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
//! A panic still ends in `SIGABRT` (`panic = "abort"`): the abort path
//! (`rt_sigprocmask`, `getpid`, `gettid`, `tgkill`, `rt_sigaction`) is
//! allowed, where upstream lets it end in a seccomp kill. With
//! `RUST_BACKTRACE` set, the backtrace would open our executable: that is
//! a kill.
//!
//! The lists were found by running the whole test suite with
//! `PASST_RS_SECCOMP_LOG=1` and reading the kernel's audit records, and are
//! proven by the suite passing with the filter on (`tests/seccomp.rs`
//! checks that each mode runs filtered).
//!
//! # Every mode (37 calls with any arguments, 6 filtered: 43)
//!
//! (`x86_64` numbers and names, as the suite runs them)
//!
//! - I/O on descriptors we hold: `read`, `write`, `writev`, `recvfrom`,
//!   `sendto`, `recvmsg`, `sendmsg`, `recvmmsg`, `sendmmsg`, `close`; the
//!   log file's rotation and the final sync: `lseek`, `ftruncate`, `statx`
//!   (`read_to_end` sizes its buffer), `fsync`;
//! - the loop: `epoll_pwait`, `epoll_ctl`, `timerfd_settime`;
//! - sockets to the host, one per flow, and the listeners opened by port
//!   scans: `connect`, `bind`, `listen`, `accept4`, `shutdown`,
//!   `getsockname`, `getsockopt`; filtered: `socket` (`AF_INET` or
//!   `AF_INET6`, stream or datagram only: no raw, packet, netlink or unix
//!   socket), `setsockopt` (only the level and option pairs of
//!   [`SOCKOPTS`]), `ioctl` (only `FIONBIO`, on an accepted QEMU socket),
//!   `fcntl` (only `F_GETFL`, `F_SETFL`, `F_GETFD`, `F_SETFD`);
//! - memory, for the allocator (`sys::alloc` over the C library's):
//!   `brk`, `munmap`, `mremap`, `madvise`; filtered: `mmap` and `mprotect`
//!   (never `PROT_EXEC`). vhost-user maps the guest's memory regions and
//!   the dirty log (shared, read and write) with the same `mmap`;
//! - exit and the abort path: `exit_group`, `rt_sigprocmask`,
//!   `rt_sigaction`, `rt_sigreturn`, `getpid`, `gettid`, `tgkill`; `futex`
//!   (the log sink's and the vhost-user device's mutexes); `sigaltstack`
//!   (the runtime frees the main thread's signal stack on exit).
//!
//! # passt on the stream socket: the list above and `ppoll` (44)
//!
//! A frame written in part to QEMU's socket: its remainder is waited for
//! with `ppoll`, a bounded time.
//!
//! # passt on vhost-user: the list above, wider arguments (43)
//!
//! Each new front-end's control socket gets a read timeout
//! (`setsockopt` `SO_RCVTIMEO`) and is cloned for the `vhost` crate
//! (`fcntl` `F_DUPFD_CLOEXEC`). Kicks and calls are eventfd `read` and
//! `write`, the memory table and its descriptors come with `recvmsg`
//! (`SCM_RIGHTS`).
//!
//! # pasta: 12 more (55)
//!
//! - the spliced loopback path and the tun device: `splice`, `pipe2`,
//!   `readv`; `fcntl` also `F_GETPIPE_SZ`, `F_SETPIPE_SZ`;
//! - the spawned command's exit: `wait4`;
//! - the quit timer's probe of `/proc/PID/ns/net`: `openat`, only relative
//!   to the directory opened at start (never `AT_FDCWD`) and only read-only
//!   (no `O_CREAT`, `O_TRUNC`, `O_APPEND`, `O_TMPFILE`);
//! - the short-lived thread of [`crate::pasta::NetNs::run`] that opens
//!   sockets inside the namespace (splice pools, `auto` port scans and
//!   their listeners): `setns` (only `CLONE_NEWNET`), `clone` (only the
//!   flags of a thread: never a new process, never new namespaces),
//!   `set_robust_list`, `rseq`, `sched_getaffinity` (the C library's
//!   allocator sizing its arenas), `exit`. `clone3`, whose flags live in
//!   memory a filter cannot read, fails with `ENOSYS` (a second filter:
//!   the allowlist lets it through, the stricter result wins), and the C
//!   library falls back to `clone`.
//!
//! # Against upstream
//!
//! Upstream's `seccomp.h` is generated from the `#syscalls` annotations of
//! its C files (`#syscalls` for every mode, `#syscalls:passt`,
//! `#syscalls:pasta`, `#syscalls:vu`). Counted on `x86_64` from the
//! annotations of its current sources: about 34 for passt, 37 for
//! vhost-user and 45 for pasta; here 43, 43 and 55. The difference is the
//! same in every mode:
//!
//! - memory: upstream allocates nothing after start and allows no memory
//!   call but vhost-user's `mmap`/`munmap`; we keep a (bounded, counted)
//!   allocator: `brk`, `mmap`, `munmap`, `mremap`, `madvise`, `mprotect`
//!   (+5 to +6);
//! - the abort path: upstream lets `abort()` end in a seccomp kill; we keep
//!   `SIGABRT` (`rt_sigaction`, `getpid`, `gettid`, `tgkill`,
//!   `rt_sigprocmask`): +4 to +5;
//! - the Rust runtime: `futex` (mutexes), `sigaltstack` (exit), `statx`
//!   (log rotation): +3.
//!
//! Upstream has calls we do not: `accept`, `epoll_wait`, `clock_gettime`
//! (the vDSO serves ours), `timerfd_create`/`timerfd_gettime` (our TCP
//! timers are not per connection), `fallocate`, `unlink`, `kill`, and in
//! pasta `waitid`. pasta's `openat` and `clone` are upstream's too, both
//! unfiltered there.

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

/// The flags glibc's `pthread_create` passes to `clone` (`clone3` being
/// refused): a thread sharing everything, never a new process.
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM
    | libc::CLONE_SETTLS
    | libc::CLONE_PARENT_SETTID
    | libc::CLONE_CHILD_CLEARTID) as u64;

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
            libc::SYS_lseek,
            libc::SYS_ftruncate,
            libc::SYS_statx,
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
            // Memory.
            libc::SYS_brk,
            libc::SYS_munmap,
            libc::SYS_mremap,
            libc::SYS_madvise,
            // Exit and abort.
            libc::SYS_exit_group,
            libc::SYS_rt_sigprocmask,
            libc::SYS_rt_sigaction,
            libc::SYS_rt_sigreturn,
            libc::SYS_getpid,
            libc::SYS_gettid,
            libc::SYS_tgkill,
            libc::SYS_futex,
            libc::SYS_sigaltstack,
        ],
    );
    m.insert(libc::SYS_mmap, no_exec()?);
    m.insert(libc::SYS_mprotect, no_exec()?);
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
                    libc::SYS_exit,
                    libc::SYS_pipe2,
                    libc::SYS_wait4,
                    libc::SYS_set_robust_list,
                    libc::SYS_rseq,
                    libc::SYS_sched_getaffinity,
                    libc::SYS_clone3,
                ],
            );
            // The quit timer's probe of /proc/PID/ns/net: read-only,
            // relative to the directory opened at start, never the
            // current directory.
            m.insert(
                libc::SYS_openat,
                vec![rule(vec![
                    cond(0, Op::Ne, libc::AT_FDCWD as u32 as u64)?,
                    // Read-only, creating or truncating nothing (rustix
                    // adds O_LARGEFILE, so not an exact match).
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
            fcntl.extend([libc::F_GETPIPE_SZ as u64, libc::F_SETPIPE_SZ as u64]);
            m.insert(libc::SYS_setns, one_of(1, &[libc::CLONE_NEWNET as u64])?);
            m.insert(
                libc::SYS_clone,
                vec![rule(vec![Cond::new(0, Len::Qword, Op::Eq, THREAD_FLAGS)?])?],
            );
        }
        // The control socket of a front-end, cloned for the vhost crate.
        Profile::PasstVhostUser => fcntl.push(libc::F_DUPFD_CLOEXEC as u64),
        // A frame written in part to QEMU's socket: the rest is waited
        // for, a bounded time (`tap::stream`'s remainder write).
        Profile::PasstStream => any(&mut m, &[libc::SYS_ppoll]),
    }
    m.insert(libc::SYS_fcntl, one_of(1, &fcntl)?);
    Ok(m)
}

/// The second filter, pasta's: `clone3` fails with `ENOSYS`, so that
/// threads are created with `clone`, whose flags the first filter checks.
fn clone3_filter(arch: seccompiler::TargetArch) -> Result<BpfProgram, SeccompError> {
    let m = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    let f = SeccompFilter::new(
        m,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    Ok(f.try_into()?)
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
    // The clone3 filter first: once the allowlist is in, neither `prctl`
    // nor `seccomp` itself is allowed.
    if profile == Profile::Pasta {
        seccompiler::apply_filter_all_threads(&clone3_filter(arch)?)?;
    }
    seccompiler::apply_filter_all_threads(&prog)?;
    log::debug!("seccomp: {profile:?} allowlist installed");
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
        assert!(!clone3_filter(arch).unwrap().is_empty());
    }

    /// The counts in the module doc.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn counts_match_the_doc() {
        let n = |p| rules(p).unwrap().len();
        assert_eq!(n(Profile::PasstStream), 44);
        assert_eq!(n(Profile::PasstVhostUser), 43);
        assert_eq!(n(Profile::Pasta), 55);
    }
}
