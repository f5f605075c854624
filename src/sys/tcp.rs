//! TCP socket calls rustix does not wrap: peek offsets, discarding
//! acknowledged data, send-buffer memory, lingering resets.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use super::net::setsockopt_int;

fn getsockopt_int(fd: impl AsFd, level: i32, name: i32) -> io::Result<i32> {
    let mut val: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `val` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            (&mut val as *mut i32).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(val)
}

/// `SO_PEEK_OFF`: the next `MSG_PEEK` starts `off` bytes into the queue.
pub(crate) fn set_peek_off(fd: impl AsFd, off: i32) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, off)
}

/// `TCP_MAXSEG`.
pub(crate) fn set_tcp_maxseg(fd: impl AsFd, mss: i32) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG, mss)
}

/// `SO_SNDBUF` as the kernel reports it.
pub(crate) fn sndbuf(fd: impl AsFd) -> io::Result<i32> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF)
}

/// `SO_ERROR`: the pending error of a socket (connect outcome).
pub(crate) fn so_error(fd: impl AsFd) -> io::Result<i32> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR)
}

/// Drops `n` bytes from the head of a TCP receive queue without copying
/// them (`MSG_TRUNC`): the guest acknowledged them.
pub(crate) fn discard(fd: impl AsFd, n: usize) -> io::Result<usize> {
    // SAFETY: with MSG_TRUNC on a TCP socket the kernel does not write to
    // the (null) buffer; it only discards `n` bytes.
    let rc = unsafe {
        libc::recv(
            fd.as_fd().as_raw_fd(),
            std::ptr::null_mut(),
            n,
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// Closes a socket with a reset (`SO_LINGER` of zero) instead of a FIN.
pub(crate) fn set_linger_zero(fd: impl AsFd) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `l` lives for the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Socket memory as `SO_MEMINFO` reports it: (send buffer size, memory
/// queued for sending), both in bytes of kernel memory (data plus
/// per-buffer overhead).
pub(crate) fn send_memory(fd: impl AsFd) -> io::Result<(u32, u32)> {
    let mut info = [0u32; 9];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is valid for `len` bytes of writes, `len` for one
    // socklen_t.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SK_MEMINFO_SNDBUF = 3, SK_MEMINFO_WMEM_QUEUED = 5.
    Ok((info[3], info[5]))
}

/// `SO_RCVLOWAT`: input is reported (and splice wakes) only once this
/// many bytes are queued, or at end of file.
pub(crate) fn set_rcvlowat(fd: impl AsFd, bytes: i32) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, bytes)
}

/// `TCP_REPAIR`: repair mode on (1), off (0) or off without a window
/// probe (-1). Needs `CAP_NET_ADMIN` (`passt-repair`).
pub(crate) fn set_tcp_repair(fd: impl AsFd, value: i32) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_REPAIR, value)
}
