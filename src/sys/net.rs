//! Socket options rustix does not wrap.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Sets an `int` socket option (`setsockopt(2)` with an `int` value), for
/// the options rustix has no setter for.
pub(super) fn setsockopt_int(fd: impl AsFd, level: i32, name: i32, val: i32) -> io::Result<()> {
    // SAFETY: `val` lives for the call and its size is passed; the
    // descriptor is borrowed, hence open.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            (&val as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SO_BINDTODEVICE`: only send and receive through interface `name`.
pub(crate) fn bind_to_device(fd: impl AsFd, name: &str) -> io::Result<()> {
    let b = name.as_bytes();
    if b.len() >= libc::IFNAMSIZ || b.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: `b` is a valid buffer of `b.len()` bytes for the duration of
    // the call, and the descriptor is open (borrowed).
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            b.as_ptr().cast(),
            b.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of descriptor `fd` inherited from our caller (`--fd`),
/// after checking that it is open. The caller must not use the number
/// again: the descriptor is closed when the returned value is dropped.
pub(crate) fn adopt_fd(fd: i32) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_GETFD only reads the descriptor's flags; an invalid number
    // fails with EBADF and touches nothing.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and was handed to us
    // by the process that started us; nothing else in this process owns
    // it, since the configuration's number is used only here, once.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}
