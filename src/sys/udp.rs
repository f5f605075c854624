//! Datagram calls rustix does not wrap the way the UDP path needs them:
//! `recvmmsg` into a strided region (frames in the tap's transmit queue),
//! `sendmmsg` of borrowed slices, and the socket error queue
//! (`MSG_ERRQUEUE` with its `sock_extended_err` control message).
//!
//! The message headers and I/O vectors live on the stack: nothing here
//! allocates.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};

use super::net::setsockopt_int;

/// Most datagrams moved by one `recvmmsg` or `sendmmsg`.
pub(crate) const UDP_BATCH: usize = 64;

/// Marks a datagram that did not fit its buffer in [`recvmmsg_strided`].
pub(crate) const TRUNCATED: usize = usize::MAX;

/// `IP_RECVERR` / `IPV6_RECVERR`: ICMP errors about what the socket sent
/// are queued on its error queue (and reported as `EPOLLERR`).
pub(crate) fn set_recverr(fd: impl AsFd, v6: bool) -> io::Result<()> {
    if v6 {
        setsockopt_int(fd, libc::SOL_IPV6, libc::IPV6_RECVERR, 1)
    } else {
        setsockopt_int(fd, libc::SOL_IP, libc::IP_RECVERR, 1)
    }
}

/// `SO_REUSEADDR`, on datagram sockets sharing a listener's port.
pub(crate) fn set_reuseaddr(fd: impl AsFd) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
}

/// A socket address from what the kernel wrote in `ss`.
fn from_storage(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(ss.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for any address.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Receives up to `lens.len()` (at most [`UDP_BATCH`]) datagrams without
/// blocking: datagram `i` goes to `region[i * stride + off..][..maxlen]`,
/// its length to `lens[i]` ([`TRUNCATED`] if it did not fit), its source to
/// `addrs[i]` if asked. Returns how many were received (0: none queued).
pub(crate) fn recvmmsg_strided(
    fd: impl AsFd,
    region: &mut [u8],
    stride: usize,
    off: usize,
    maxlen: usize,
    lens: &mut [usize],
    mut addrs: Option<&mut [Option<SocketAddr>]>,
) -> io::Result<usize> {
    let mut n = lens.len().min(UDP_BATCH);
    if let Some(a) = addrs.as_deref() {
        n = n.min(a.len());
    }
    if stride == 0 || off + maxlen > stride {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    n = n.min(region.len() / stride);
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: all-zero is a valid value for these plain C structures.
    let mut hdrs: [libc::mmsghdr; UDP_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut iovs: [libc::iovec; UDP_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut names: [libc::sockaddr_storage; UDP_BATCH] = unsafe { std::mem::zeroed() };
    let base = region.as_mut_ptr();
    for i in 0..n {
        // In bounds: (i + 1) * stride <= region.len() and off + maxlen <=
        // stride.
        iovs[i] = libc::iovec {
            // SAFETY: the offset stays within `region` (see above).
            iov_base: unsafe { base.add(i * stride + off) }.cast(),
            iov_len: maxlen,
        };
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
        if addrs.is_some() {
            hdrs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            hdrs[i].msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
    }
    let rc = loop {
        // SAFETY: `hdrs[..n]` point to `iovs` and `names`, which outlive
        // the call, and each iovec to a distinct range of `region`, which
        // is borrowed mutably for the call.
        let rc = unsafe {
            libc::recvmmsg(
                fd.as_fd().as_raw_fd(),
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(0),
                _ => return Err(e),
            }
        }
        break rc as usize;
    };
    for i in 0..rc {
        let h = &hdrs[i];
        lens[i] = if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            TRUNCATED
        } else {
            h.msg_len as usize
        };
        if let Some(a) = addrs.as_deref_mut() {
            a[i] = from_storage(&names[i], h.msg_hdr.msg_namelen);
        }
    }
    Ok(rc)
}

/// Sends `bufs` (at most [`UDP_BATCH`]) on a connected socket without
/// blocking. Returns how many datagrams were sent.
pub(crate) fn sendmmsg_slices(fd: impl AsFd, bufs: &[&[u8]]) -> io::Result<usize> {
    let n = bufs.len().min(UDP_BATCH);
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: all-zero is a valid value for these plain C structures.
    let mut hdrs: [libc::mmsghdr; UDP_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut iovs: [libc::iovec; UDP_BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        iovs[i] = libc::iovec {
            iov_base: bufs[i].as_ptr() as *mut libc::c_void,
            iov_len: bufs[i].len(),
        };
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    loop {
        // SAFETY: `hdrs[..n]` point to `iovs`, which outlive the call, and
        // each iovec to a borrowed slice the kernel only reads.
        let rc = unsafe {
            libc::sendmmsg(
                fd.as_fd().as_raw_fd(),
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(rc as usize);
    }
}

/// `UDP_SEGMENT` (linux/udp.h): the segment size of a GSO send.
const UDP_SEGMENT: i32 = 103;

/// Most segments in one GSO send (the kernel's `UDP_MAX_SEGMENTS`).
pub(crate) const GSO_MAX_SEGS: usize = 64;

/// Sends `bufs` as one UDP GSO super-datagram on a connected socket: the
/// kernel cuts it into datagrams of `seg` bytes (the last one may be
/// shorter), with one trip through the stack for all of them. Every
/// buffer but the last must be exactly `seg` bytes, at most
/// [`GSO_MAX_SEGS`] of them. Errors (EINVAL above the path MTU, EIO
/// without checksum offload) leave the caller to send them one by one.
pub(crate) fn send_gso(fd: impl AsFd, bufs: &[&[u8]], seg: u16) -> io::Result<usize> {
    let n = bufs.len().min(GSO_MAX_SEGS);
    // SAFETY: all-zero is a valid value for these plain C structures.
    let mut iovs: [libc::iovec; GSO_MAX_SEGS] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        iovs[i] = libc::iovec {
            iov_base: bufs[i].as_ptr() as *mut libc::c_void,
            iov_len: bufs[i].len(),
        };
    }
    let mut control = [0u64; 4];
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iovs.as_mut_ptr();
    msg.msg_iovlen = n as _;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
    // SAFETY: the control buffer (32 bytes, aligned) holds CMSG_SPACE(2)
    // bytes, so the first header and its 2 data bytes are within it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(2) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
    }
    loop {
        // SAFETY: `msg` points to `iovs` (borrowed slices the kernel only
        // reads) and `control`, which outlive the call.
        let rc = unsafe {
            libc::sendmsg(
                fd.as_fd().as_raw_fd(),
                &msg,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(n);
    }
}

/// One error from a socket's error queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SockErr {
    /// `ee_errno`: ECONNREFUSED, EMSGSIZE, EHOSTUNREACH...
    pub(crate) errno: i32,
    /// `ee_origin`: `SO_EE_ORIGIN_ICMP` (2) or `SO_EE_ORIGIN_ICMP6` (3)
    /// for errors a router or the peer sent; others are local.
    pub(crate) origin: u8,
    /// ICMP/ICMPv6 type and code.
    pub(crate) icmp_type: u8,
    pub(crate) icmp_code: u8,
    /// `ee_info`: the MTU for "fragmentation needed" / "packet too big".
    pub(crate) info: u32,
    /// Who sent the ICMP error, if known.
    pub(crate) offender: Option<IpAddr>,
    /// Bytes of the offending datagram's payload copied to the buffer.
    pub(crate) len: usize,
}

pub(crate) const SO_EE_ORIGIN_ICMP: u8 = 2;
pub(crate) const SO_EE_ORIGIN_ICMP6: u8 = 3;

/// Reads one error from `fd`'s error queue: the payload of the datagram
/// that caused it goes to `buf`. `Ok(None)`: the queue is empty.
pub(crate) fn recv_err(fd: impl AsFd, buf: &mut [u8]) -> io::Result<Option<SockErr>> {
    // Room for a sock_extended_err and its offender address, aligned.
    let mut control = [0u64; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points to `iov` (into `buf`) and `control`, all valid
    // for writes of the lengths given, for the duration of the call.
    let rc = unsafe {
        libc::recvmsg(
            fd.as_fd().as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) => Ok(None),
            _ => Err(e),
        };
    }
    let len = (rc as usize).min(buf.len());
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR only walk
    // within msg_control/msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: non-null pointers from CMSG_FIRSTHDR/NXTHDR point to a
        // complete cmsghdr inside `control`.
        let h = unsafe { &*cmsg };
        let is_err = (h.cmsg_level == libc::SOL_IP && h.cmsg_type == libc::IP_RECVERR)
            || (h.cmsg_level == libc::SOL_IPV6 && h.cmsg_type == libc::IPV6_RECVERR);
        let data_len = (h.cmsg_len as usize).saturating_sub(
            // SAFETY: CMSG_LEN is a pure computation.
            unsafe { libc::CMSG_LEN(0) } as usize,
        );
        if is_err && data_len >= std::mem::size_of::<libc::sock_extended_err>() {
            // SAFETY: the data of this control message holds a
            // sock_extended_err (checked length); read unaligned as the
            // control buffer gives no alignment guarantee for the data.
            let (ee, data) = unsafe {
                let data = libc::CMSG_DATA(cmsg);
                (
                    std::ptr::read_unaligned(data.cast::<libc::sock_extended_err>()),
                    data,
                )
            };
            let off_len = data_len - std::mem::size_of::<libc::sock_extended_err>();
            let offender = if off_len >= std::mem::size_of::<libc::sockaddr_in>() {
                // SAFETY: SO_EE_OFFENDER: the offender's address follows the
                // structure, within the control message (checked length);
                // copied into an aligned, zeroed storage of at least that
                // size.
                let ss = unsafe {
                    let mut ss: libc::sockaddr_storage = std::mem::zeroed();
                    let n = off_len.min(std::mem::size_of::<libc::sockaddr_storage>());
                    std::ptr::copy_nonoverlapping(
                        data.add(std::mem::size_of::<libc::sock_extended_err>()),
                        (&mut ss as *mut libc::sockaddr_storage).cast::<u8>(),
                        n,
                    );
                    ss
                };
                from_storage(&ss, off_len as libc::socklen_t)
                    .map(|a| a.ip())
                    .filter(|a| !a.is_unspecified())
            } else {
                None
            };
            return Ok(Some(SockErr {
                errno: ee.ee_errno as i32,
                origin: ee.ee_origin,
                icmp_type: ee.ee_type,
                icmp_code: ee.ee_code,
                info: ee.ee_info,
                offender,
                len,
            }));
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    // Something without an extended error: consumed, nothing to report.
    Ok(Some(SockErr {
        errno: 0,
        origin: 0,
        icmp_type: 0,
        icmp_code: 0,
        info: 0,
        offender: None,
        len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn batches_round_trip_on_loopback() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        let msgs: [&[u8]; 3] = [b"one", b"", b"three!"];
        assert_eq!(sendmmsg_slices(&a, &msgs).unwrap(), 3);
        let mut region = vec![0u8; 4 * 16];
        let mut lens = [0usize; 4];
        let mut addrs = [None; 4];
        b.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut got = 0;
        for _ in 0..100 {
            got += recvmmsg_strided(
                &b,
                &mut region[got * 16..],
                16,
                4,
                8,
                &mut lens[got..],
                Some(&mut addrs[got..]),
            )
            .unwrap();
            if got == 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(got, 3);
        assert_eq!(&lens[..3], &[3, 0, 6]);
        assert_eq!(&region[4..7], b"one");
        assert_eq!(&region[32 + 4..32 + 10], b"three!");
        assert_eq!(addrs[0], Some(a.local_addr().unwrap()));
        // Too long for its 8-byte slot: marked truncated.
        sendmmsg_slices(&a, &[b"0123456789"]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let n = recvmmsg_strided(&b, &mut region, 16, 4, 8, &mut lens, None).unwrap();
        assert_eq!((n, lens[0]), (1, TRUNCATED));
        // Nothing queued: zero, not an error.
        assert_eq!(
            recvmmsg_strided(&b, &mut region, 16, 4, 8, &mut lens, None).unwrap(),
            0
        );
        // Bad geometry is refused.
        assert!(recvmmsg_strided(&b, &mut region, 8, 4, 8, &mut lens, None).is_err());
    }

    #[test]
    fn port_unreachable_reaches_the_error_queue() {
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        set_recverr(&s, false).unwrap();
        s.connect(("127.0.0.1", port)).unwrap();
        s.send(b"hello?").unwrap();
        let mut buf = [0u8; 64];
        let mut got = None;
        for _ in 0..100 {
            if let Some(e) = recv_err(&s, &mut buf).unwrap() {
                got = Some(e);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let e = got.expect("an error queued");
        assert_eq!(e.errno, libc::ECONNREFUSED);
        assert_eq!(
            (e.origin, e.icmp_type, e.icmp_code),
            (SO_EE_ORIGIN_ICMP, 3, 3)
        );
        assert_eq!(e.offender, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(&buf[..e.len], b"hello?");
        assert_eq!(recv_err(&s, &mut buf).unwrap(), None);
    }
}
