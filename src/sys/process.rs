//! Process control that rustix leaves to libc: fork, exec, exit, signals.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// Which side of a [`fork`] we are on.
pub(crate) enum Fork {
    Parent(i32),
    Child,
}

/// `fork(2)`.
///
/// Must only be called while the process is single-threaded (start-up,
/// daemonizing): the child then has a consistent copy of everything.
pub(crate) fn fork() -> io::Result<Fork> {
    // SAFETY: we only fork while single-threaded (documented contract of
    // this function), so no lock can be held by a thread that does not
    // exist in the child.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// `execvp(3)` of `file` (searched in `PATH`) with argument vector `argv`:
/// only returns on failure.
pub(crate) fn execvp(file: &CString, argv: &[CString]) -> io::Error {
    if argv.is_empty() {
        return io::Error::new(io::ErrorKind::InvalidInput, "empty command");
    }
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: `file` is NUL-terminated, `ptrs` is a NULL-terminated array of
    // pointers to NUL-terminated strings owned by `argv`; both outlive the
    // call.
    unsafe { libc::execvp(file.as_ptr(), ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// `_exit(2)`: ends the process at once, without running destructors or
/// atexit handlers (used in forked children and by the daemonizing parent).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// A set of signals, for [`block_signals`] and [`signalfd`].
pub(crate) struct SigSet(libc::sigset_t);

impl SigSet {
    pub(crate) fn new(signals: &[i32]) -> SigSet {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t owned by us.
        unsafe { libc::sigemptyset(&mut set) };
        for &s in signals {
            // SAFETY: as above; invalid signal numbers only return EINVAL.
            unsafe { libc::sigaddset(&mut set, s) };
        }
        SigSet(set)
    }
}

/// Blocks `set` in the calling thread (and threads it creates later).
pub(crate) fn block_signals(set: &SigSet) -> io::Result<()> {
    // SAFETY: `set.0` is an initialised sigset_t; the old set is not wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set.0, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Unblocks every signal in the calling thread (before exec in a child).
pub(crate) fn unblock_all_signals() {
    // SAFETY: sigset_t is plain data, sigfillset initialises it, and
    // pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// Ignores SIGPIPE: a peer closing a socket must give EPIPE, not kill us.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no
    // preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Creates a non-blocking signalfd for `set` (which must be blocked).
pub(crate) fn signalfd(set: &SigSet) -> io::Result<OwnedFd> {
    // SAFETY: `set.0` is initialised; -1 asks for a new descriptor.
    let fd = unsafe { libc::signalfd(-1, &set.0, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: signalfd returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal number from a signalfd, if any.
pub(crate) fn signalfd_read(fd: &OwnedFd) -> io::Result<Option<u32>> {
    let mut buf = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
    match rustix::io::read(fd, &mut buf) {
        Ok(n) if n == buf.len() => {
            // ssi_signo is the first u32 of signalfd_siginfo.
            let signo = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            Ok(Some(signo))
        }
        Ok(_) => Ok(None),
        Err(rustix::io::Errno::AGAIN) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `setgroups(2)` with an empty list: drops supplementary groups.
pub(crate) fn clear_groups() -> io::Result<()> {
    // SAFETY: a zero-length list with a null pointer is valid for setgroups.
    let rc = unsafe { libc::setgroups(0, std::ptr::null()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Process-wide `setresgid`/`setresuid` (the glibc wrappers apply them to
/// every thread, unlike the raw system calls).
pub(crate) fn set_ids(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain system calls on integers.
    let rc = unsafe { libc::setresgid(gid, gid, gid) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let rc = unsafe { libc::setresuid(uid, uid, uid) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Looks up a user name in the password database: (uid, gid).
pub(crate) fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let cname = CString::new(name).ok()?;
    // SAFETY: getpwnam takes a NUL-terminated string and returns NULL or a
    // pointer to static storage, read at once while single-threaded.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: `pw` is non-null and points to a valid passwd record.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// `unshare(2)` of namespaces (never `CLONE_FILES`/`CLONE_FS` sharing
/// games): only called while single-threaded.
pub(crate) fn unshare(flags: rustix::thread::UnshareFlags) -> io::Result<()> {
    // SAFETY: the rustix contract concerns UnshareFlags::FILES, which no
    // caller passes; namespaces are unshared before any thread exists.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(Into::into)
}

/// Closes every descriptor from `first` up, except `keep`: the inherited
/// ones nobody told us about. Only called at start, before this process
/// opened any descriptor of its own above `first`.
pub(crate) fn close_from(first: u32, keep: Option<u32>) -> io::Result<()> {
    let ranges: [(u32, u32); 2] = match keep {
        Some(k) if k >= first => [(first, k.saturating_sub(1)), (k + 1, u32::MAX)],
        _ => [(first, u32::MAX), (1, 0)],
    };
    for (lo, hi) in ranges {
        if lo > hi || lo < first {
            continue;
        }
        // SAFETY: called once at start-up (documented contract), when every
        // descriptor in the range was inherited and no object of this
        // process owns it, so no OwnedFd or File is left dangling.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                lo as libc::c_uint,
                hi as libc::c_uint,
                0 as libc::c_uint,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The `clone(2)` flags of [`run_on_stack`]: a task sharing our memory and
/// descriptor table, that we wait for (`CLONE_VFORK`), with no exit signal.
/// Not a thread: a namespace it enters is its own, and it needs no thread
/// set-up (`clone3`, robust list, `rseq`, signal stack, stack mapping).
pub(crate) const NS_CALL_FLAGS: i32 = libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_VFORK;

extern "C" fn call_once<F: FnOnce()>(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Option<F>` of `run_on_stack`, whose frame stays
    // alive and untouched while we run: the caller is suspended until we
    // exit (CLONE_VFORK).
    let slot = unsafe { &mut *arg.cast::<Option<F>>() };
    if let Some(f) = slot.take() {
        f();
    }
    0
}

/// Runs `f` in a task cloned with [`NS_CALL_FLAGS`] on `stack`, as
/// upstream's `NS_CALL` does: we are suspended until it has exited, then
/// reap it. What `f` writes to memory (its results) is ours when this
/// returns; descriptors it opens are in our table. If `f` never returns
/// (the task was killed), its results are simply not written.
///
/// `f` runs with our thread-local storage while we are suspended: it may
/// allocate, log and make system calls, but must not start threads.
pub(crate) fn run_on_stack<F: FnOnce()>(stack: &mut [u8], f: F) -> io::Result<()> {
    let mut slot = Some(f);
    // The stack grows down from its 16-byte aligned top.
    let top = stack.as_mut_ptr_range().end as usize & !0xf;
    // SAFETY: `top` is the aligned end of `stack`, which we borrow mutably
    // for the whole call; `call_once::<F>` gets a pointer to `slot`, valid
    // until the task exits since CLONE_VFORK suspends us until then.
    let pid = unsafe {
        libc::clone(
            call_once::<F>,
            top as *mut libc::c_void,
            NS_CALL_FLAGS,
            std::ptr::addr_of_mut!(slot).cast(),
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    loop {
        let mut status = 0;
        // SAFETY: plain wait4 on our own child (a clone child without an
        // exit signal: __WCLONE); `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WCLONE) };
        if r == pid {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// In a child just forked that will not exec: closes every descriptor
/// from 3 up except those in `keep`, so that it does not hold the
/// parent's sockets open (a listener the parent closes must stop
/// listening).
pub(crate) fn close_all_but(keep: &[i32]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep.iter().filter_map(|&k| u32::try_from(k).ok()).collect();
    keep.sort_unstable();
    let mut lo = 3u32;
    for k in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if k < lo {
            continue;
        }
        if k > lo {
            // SAFETY: only called in a forked child that exits without
            // returning to the code that owns these descriptors (see the
            // caller): no OwnedFd of this process is used or dropped after
            // its descriptor is closed here.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    lo as libc::c_uint,
                    (k - 1) as libc::c_uint,
                    0 as libc::c_uint,
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        lo = k.saturating_add(1);
    }
    Ok(())
}
