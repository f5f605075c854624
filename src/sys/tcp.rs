//! TCP socket calls rustix does not wrap: peek offsets, discarding
//! acknowledged data, queue sizes, TCP_INFO, lingering resets.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

fn setsockopt_int(fd: impl AsFd, level: i32, name: i32, val: i32) -> io::Result<()> {
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
pub fn set_peek_off(fd: impl AsFd, off: i32) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, off)
}

/// `TCP_MAXSEG`.
pub fn set_tcp_maxseg(fd: impl AsFd, mss: i32) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG, mss)
}

/// `SO_SNDBUF` as the kernel reports it.
pub fn sndbuf(fd: impl AsFd) -> io::Result<i32> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF)
}

/// `SO_ERROR`: the pending error of a socket (connect outcome).
pub fn so_error(fd: impl AsFd) -> io::Result<i32> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR)
}

/// Bytes in the send queue not yet acknowledged by the peer (`SIOCOUTQ`).
pub fn outq(fd: impl AsFd) -> io::Result<i32> {
    let mut val: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int to the pointer given.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCOUTQ, &mut val) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(val)
}

/// Drops `n` bytes from the head of a TCP receive queue without copying
/// them (`MSG_TRUNC`): the guest acknowledged them.
pub fn discard(fd: impl AsFd, n: usize) -> io::Result<usize> {
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
pub fn set_linger_zero(fd: impl AsFd) -> io::Result<()> {
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

/// The parts of `TCP_INFO` we mirror to the guest.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpInfo {
    pub snd_wscale: u8,
    pub snd_mss: u32,
    /// Smoothed RTT, microseconds.
    pub rtt_us: u32,
    pub bytes_acked: u64,
    /// The peer's advertised window (Linux 5.3+), if the kernel reports it.
    pub snd_wnd: Option<u32>,
}

/// Reads `TCP_INFO` (byte offsets of `struct tcp_info` in linux/tcp.h; the
/// struct grew over time, so the length returned tells what is there).
pub fn tcp_info(fd: impl AsFd) -> io::Result<TcpInfo> {
    let mut buf = [0u8; 256];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is valid for `len` bytes of writes, `len` for one
    // socklen_t.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = len as usize;
    let u32_at = |o: usize| -> u32 {
        buf.get(o..o + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0)
    };
    let u64_at = |o: usize| -> u64 {
        buf.get(o..o + 8)
            .map(|b| u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .unwrap_or(0)
    };
    Ok(TcpInfo {
        snd_wscale: buf[6] & 0x0f,
        snd_mss: u32_at(16),
        rtt_us: u32_at(68),
        bytes_acked: if len >= 128 { u64_at(120) } else { 0 },
        snd_wnd: (len >= 232).then(|| u32_at(228)),
    })
}

/// Socket memory as `SO_MEMINFO` reports it: (send buffer size, memory
/// queued for sending), both in bytes of kernel memory (data plus
/// per-buffer overhead).
pub fn send_memory(fd: impl AsFd) -> io::Result<(u32, u32)> {
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
