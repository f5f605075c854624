//! Pipes and `splice(2)` for the spliced TCP path: thin wrappers over
//! rustix (which makes them safe), so the splice code reads as the
//! system calls it makes.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::pipe::{PipeFlags, SpliceFlags};

/// A non-blocking, close-on-exec pipe: (read end, write end).
pub(crate) fn pipe_nonblock() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(
        PipeFlags::NONBLOCK | PipeFlags::CLOEXEC,
    )?)
}

/// Sets the capacity of the pipe behind `fd` (`F_SETPIPE_SZ`); returns
/// the size the kernel chose.
pub(crate) fn set_pipe_size(fd: impl AsFd, size: usize) -> io::Result<usize> {
    Ok(rustix::pipe::fcntl_setpipe_size(fd, size)?)
}

/// Moves up to `len` bytes from `from` to `to` (one of them a pipe)
/// without copying to user space: non-blocking, pages moved if possible;
/// `more` hints that more data follows (`SPLICE_F_MORE`). `Ok(0)` from a
/// socket is end of file.
pub(crate) fn splice_move(
    from: impl AsFd,
    to: impl AsFd,
    len: usize,
    more: bool,
) -> io::Result<usize> {
    let mut flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
    if more {
        flags |= SpliceFlags::MORE;
    }
    loop {
        match rustix::pipe::splice(from.as_fd(), None, to.as_fd(), None, len, flags) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return Ok(r?),
        }
    }
}
