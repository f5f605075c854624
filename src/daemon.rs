//! The process contract consumers rely on: PID file, daemonizing, signals.
//!
//! The PID file is opened (created, truncated, mode 0600) at start, before
//! any privilege is given up. Without `-f` we fork once everything is set
//! up: the parent writes the child's PID to the file and exits 0, which is
//! the readiness signal Podman, libvirt and QEMU wait for ("the launcher
//! exited, so the daemon is listening"); the child starts a new session
//! and points its standard streams at /dev/null (opened before the
//! filesystem goes away). With `-f` we write our own
//! PID and stay. SIGTERM and SIGQUIT end the loop cleanly (exit 0), SIGPIPE
//! is ignored.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::sys;

/// Opens the PID file early, while we may still write there.
pub(crate) fn open_pid_file(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

fn write_pid(file: Option<File>, pid: i32) {
    if let Some(mut f) = file {
        if let Err(e) = writeln!(f, "{pid}") {
            log::error!("Failed to write PID file: {e}");
        }
    }
}

/// Opens `/dev/null` for [`daemonize`], unless `foreground`: early, since
/// the daemon forks once the filesystem is gone.
pub(crate) fn open_devnull(foreground: bool) -> io::Result<Option<File>> {
    if foreground {
        return Ok(None);
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map(Some)
}

/// Daemonizes unless `foreground`: returns in the daemon only. The PID
/// file gets the daemon's PID before the launcher exits. `devnull` (from
/// [`open_devnull`]) becomes the daemon's standard streams.
pub(crate) fn daemonize(
    foreground: bool,
    pid_file: Option<File>,
    devnull: Option<File>,
) -> io::Result<()> {
    if foreground {
        write_pid(pid_file, std::process::id() as i32);
        return Ok(());
    }
    match sys::fork()? {
        sys::Fork::Parent(pid) => {
            write_pid(pid_file, pid);
            crate::log::sync();
            sys::exit_now(0);
        }
        sys::Fork::Child => {
            drop(pid_file);
            let _ = rustix::process::setsid();
            crate::log::forked();
            crate::log::stop_stderr();
            if let Some(null) = devnull {
                let _ = rustix::stdio::dup2_stdin(&null);
                let _ = rustix::stdio::dup2_stdout(&null);
                let _ = rustix::stdio::dup2_stderr(&null);
            }
            Ok(())
        }
    }
}

/// Blocks SIGTERM, SIGQUIT, SIGCHLD and SIGINT (pasta spawn mode: the
/// command owns the terminal, its Ctrl-C is not ours) and returns a
/// signalfd for them; ignores SIGPIPE.
pub(crate) fn signals() -> io::Result<OwnedFd> {
    sys::ignore_sigpipe();
    let set = sys::SigSet::new(&[libc::SIGTERM, libc::SIGQUIT, libc::SIGCHLD, libc::SIGINT]);
    sys::block_signals(&set)?;
    sys::signalfd(&set)
}
