//! tun/tap device creation.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

/// Opens `/dev/net/tun` and attaches it to a tap interface named `name`
/// (created if missing) in the calling thread's network namespace: L2
/// frames, no packet information header, single queue, non-blocking, and a
/// `virtio_net_hdr` (10 bytes) before every frame in both directions, which
/// lets us hand the kernel frames whose TCP checksum it need not verify,
/// and TCP super-frames it segments itself.
/// Toward us, checksum offload (`TUN_F_CSUM`): the guest's kernel may
/// leave TCP and UDP checksums partial and say so in the header, which
/// spares it and us a pass over the data; with `tso`, TCP segmentation
/// offload too (`TUN_F_TSO4 | TUN_F_TSO6`): it hands us TCP segments of up
/// to 64 KiB whatever the MTU, `gso_type` and `gso_size` in the header.
/// If the kernel refuses those, checksum offload alone.
/// Returns the descriptor, the interface name the kernel settled on, and
/// whether TCP segmentation offload is on.
pub(crate) fn open_tap(name: &str, tso: bool) -> io::Result<(OwnedFd, String, bool)> {
    let fd = rustix::fs::open(
        "/dev/net/tun",
        OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name: {name}"),
        ));
    }
    // SAFETY: ifreq is a plain C struct for which all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: `fd` is an open tun control descriptor and `ifr` a valid,
    // initialised ifreq that outlives the call; TUNSETIFF reads and writes
    // only within it.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let csum = libc::TUN_F_CSUM as libc::c_ulong;
    let tso_flags = (libc::TUN_F_TSO4 | libc::TUN_F_TSO6) as libc::c_ulong;
    // UDP segmentation offload (Linux 6.2+) where the kernel has it: UDP
    // super-frames (`GSO_UDP_L4`) from applications that send with
    // `UDP_SEGMENT`; an older kernel refuses the flags, then TCP alone.
    let tso = tso
        && (set_offload(&fd, csum | tso_flags | TUN_F_USO4 | TUN_F_USO6).is_ok()
            || set_offload(&fd, csum | tso_flags).is_ok());
    if !tso {
        set_offload(&fd, csum)?;
    }
    let got: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok((fd, String::from_utf8_lossy(&got).into_owned(), tso))
}

/// UDP segmentation offload flags of `TUNSETOFFLOAD` (`linux/if_tun.h`),
/// which the libc crate does not have.
const TUN_F_USO4: libc::c_ulong = 0x20;
const TUN_F_USO6: libc::c_ulong = 0x40;

/// Sets the offloads (`TUN_F_*`) the tun device `fd` may use toward us.
fn set_offload(fd: &OwnedFd, flags: libc::c_ulong) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value; `fd` is a tun
    // descriptor attached to an interface.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, flags) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
