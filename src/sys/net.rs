//! Socket options rustix does not wrap.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// `SO_BINDTODEVICE`: only send and receive through interface `name`.
pub fn bind_to_device(fd: impl AsFd, name: &str) -> io::Result<()> {
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
