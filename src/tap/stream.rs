//! passt's guest link: QEMU's `-netdev stream` over a UNIX stream socket.
//!
//! ## Theory of operation
//!
//! QEMU (`-netdev stream`, or `-netdev passt` with `--fd`, or libvirt with
//! `--socket`) connects to us over a UNIX stream socket. The byte stream
//! carries records: a 4-byte big-endian length, then that many bytes of a
//! plain Ethernet frame (no virtio-net header, no FCS). There is no
//! checksum offload on this link: every frame we send carries complete
//! checksums, and every checksum the guest sends is verified.
//!
//! **Socket.** With `-s PATH` we bind `PATH`; without it we take the first
//! free `/tmp/passt_N.socket`, N = 1..99. A candidate is free when a
//! connection attempt to it fails for lack of a listener (no such file,
//! refused, or not ours to use): a stale file left by a dead instance is
//! unlinked and reused, a live one is skipped (or, for an explicit path,
//! is an error). The socket is bound before privileges are dropped. With
//! `--fd` the caller hands us the connected socket and there is nothing to
//! listen on.
//!
//! **Clients.** One at a time. The listening socket stays in the epoll set
//! while a client is connected: a second client is accepted and closed at
//! once. When the client goes (end of file, reset, or a record whose
//! length is outside 14..65535: the stream can no longer be trusted), the
//! connection is closed and we wait for the next one, or exit with
//! `--one-off` (implied by `--fd`).
//!
//! **Receiving.** The socket is read in big chunks straight into the
//! [`RxBatch`] buffer, and records are cut out of it in place: each frame
//! of the batch is a window into that buffer, nothing is copied. A record
//! split across reads stays at the end of the buffer; at the next batch
//! that tail (at most one record, 64 KiB) is moved to the start of the
//! buffer and completed by the next read.
//!
//! **Sending.** The transmit queue is sent with one `writev()` for up to
//! [`IOV_FRAMES`] frames: per frame its length prefix (from a preallocated
//! table), the frame, and zeros up to 60 bytes for short frames (QEMU,
//! like a real link, expects at least the Ethernet minimum). Frames whose
//! TCP/UDP checksum was left partial for the tap's offload are completed
//! in place first, as the kernel would for a tap. The socket is
//! non-blocking: if the kernel takes only part of the batch, the one frame
//! cut in the middle is completed (waiting for the socket to drain, a few
//! seconds at most, or the connection is reset), so that the stream never
//! carries half a frame followed by another; the frames after it are
//! dropped and counted, as a full network card would (TCP retransmits).
//!
//! **Buffers.** As upstream, we ask for the largest socket buffers
//! (`INT_MAX / 2`); the kernel caps them at `net.core.wmem_max` and
//! `rmem_max`. Our send buffer is what matters on a UNIX stream socket
//! (it bounds the bytes in flight toward QEMU before we have to drop), so
//! we read it back and, when the cap is low (under 4 MiB), say so once at
//! start-up with the sysctl that raises it. The receive side is bounded by
//! QEMU's own send buffer.

// Every byte parsed here is attacker-controlled (guest input) and a panic
// aborts the process, cutting every flow: no unchecked index or slice, no
// arithmetic that can overflow. (Unit tests index their own fixtures.)
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use super::{RxBatch, RxEnd, TapStats, TxQueue, FRAME_MAX, FRAME_MIN, RX_FRAMES, TX_FRAMES};
use crate::wire::checksum;

/// Ethernet minimum frame length without FCS: shorter frames are padded.
const ETH_ZLEN: usize = 60;
/// Frames per `writev()`: three slices each, within `IOV_MAX` (1024).
pub(crate) const IOV_FRAMES: usize = 340;
/// Socket buffer size we ask for, as upstream.
const BUF_WANTED: usize = (i32::MAX / 2) as usize;
/// Below this, the send buffer is "low": worth a hint.
const SNDBUF_LOW: usize = 4 << 20;
/// How long we wait to complete a frame cut by a partial write.
const REMAINDER_TIMEOUT: Duration = Duration::from_secs(5);
/// Socket paths probed without `-s`.
const PROBE_DIR: &str = "/tmp";
const PROBE_MAX: u32 = 99;
static ZEROS: [u8; ETH_ZLEN] = [0; ETH_ZLEN];

/// What happened on the listening socket.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// A new client: register it and greet the guest.
    New,
    /// Someone connected while a client was there: refused (closed).
    Refused,
    /// Nothing (spurious wake-up).
    None,
}

/// The QEMU socket: the listener (socket mode) and the connected client.
pub(crate) struct Stream {
    listener: Option<OwnedFd>,
    conn: Option<OwnedFd>,
    /// Length prefixes of the frames being sent.
    prefixes: Vec<[u8; 4]>,
    /// Bytes of an incomplete record at the end of the receive buffer.
    carry: (usize, usize),
}

/// Why a path can't be used.
fn in_use(path: &Path) -> io::Result<bool> {
    let s = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    match rustix::net::connect(&s, &addr) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT | Errno::CONNREFUSED | Errno::ACCESS) => Ok(false),
        // EAGAIN: a live listener with a full queue; anything else: not a
        // socket we may take over.
        Err(_) => Ok(true),
    }
}

fn bind_listen(path: &Path) -> io::Result<OwnedFd> {
    let s = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    let _ = std::fs::remove_file(path);
    rustix::net::bind(&s, &addr)?;
    rustix::net::listen(&s, 1)?;
    Ok(s)
}

/// Creates the listening socket at `path`, or at the first free
/// `/tmp/passt_N.socket`.
pub(crate) fn listen(path: Option<&Path>) -> io::Result<(OwnedFd, PathBuf)> {
    if let Some(p) = path {
        if in_use(p)? {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("Socket path {} already in use", p.display()),
            ));
        }
        return Ok((bind_listen(p)?, p.to_path_buf()));
    }
    for n in 1..=PROBE_MAX {
        let p = PathBuf::from(format!("{PROBE_DIR}/passt_{n}.socket"));
        if in_use(&p)? {
            continue;
        }
        match bind_listen(&p) {
            Ok(s) => return Ok((s, p)),
            Err(e) => log::debug!("Can't bind {}: {e}", p.display()),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("No free socket path in {PROBE_DIR} (passt_1..{PROBE_MAX}.socket)"),
    ))
}

/// Asks for big socket buffers; returns the send buffer the kernel gave.
fn size_buffers(fd: impl AsFd) -> usize {
    let fd = fd.as_fd();
    let _ = rustix::net::sockopt::set_socket_send_buffer_size(fd, BUF_WANTED);
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(fd, BUF_WANTED);
    let snd = rustix::net::sockopt::socket_send_buffer_size(fd).unwrap_or(0);
    let rcv = rustix::net::sockopt::socket_recv_buffer_size(fd).unwrap_or(0);
    log::debug!("Guest socket buffers: send {snd} bytes, receive {rcv} bytes");
    snd
}

impl Stream {
    fn with(listener: Option<OwnedFd>, conn: Option<OwnedFd>) -> Self {
        let snd = conn.as_ref().map(size_buffers);
        if let Some(snd) = snd {
            low_hint(snd);
        }
        Stream {
            listener,
            conn,
            prefixes: vec![[0; 4]; TX_FRAMES],
            carry: (0, 0),
        }
    }

    /// Socket mode: waits for clients on `listener`.
    pub(crate) fn listening(listener: OwnedFd) -> Self {
        Self::with(Some(listener), None)
    }

    /// `--fd`: an already connected socket.
    pub(crate) fn connected(conn: OwnedFd) -> io::Result<Self> {
        match rustix::net::sockopt::socket_type(&conn) {
            Ok(SocketType::STREAM) => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "--fd: not a stream socket",
                ))
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("--fd: not a socket: {e}"))),
        }
        rustix::io::ioctl_fionbio(&conn, true)?;
        Ok(Self::with(None, Some(conn)))
    }

    pub(crate) fn listener(&self) -> Option<&OwnedFd> {
        self.listener.as_ref()
    }

    pub(crate) fn conn(&self) -> Option<&OwnedFd> {
        self.conn.as_ref()
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Accepts a client on the listening socket. A second client while one
    /// is connected is closed at once.
    pub(crate) fn accept(&mut self) -> io::Result<Accepted> {
        let Some(l) = &self.listener else {
            return Ok(Accepted::None);
        };
        let s = match rustix::net::accept_with(l, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
            Ok(s) => s,
            Err(Errno::AGAIN | Errno::INTR | Errno::CONNABORTED) => return Ok(Accepted::None),
            Err(e) => return Err(e.into()),
        };
        if self.conn.is_some() {
            let pid = rustix::net::sockopt::socket_peercred(&s)
                .map(|c| c.pid.as_raw_nonzero().get())
                .unwrap_or(0);
            log::info!("Another client (PID {pid}) connected while one is active: closed");
            return Ok(Accepted::Refused);
        }
        size_buffers(&s);
        self.conn = Some(s);
        self.carry = (0, 0);
        Ok(Accepted::New)
    }

    /// Closes the client connection (it is removed from epoll with it).
    pub(crate) fn disconnect(&mut self) -> Option<OwnedFd> {
        self.carry = (0, 0);
        self.conn.take()
    }

    /// Reads records into `rx` until the socket would block or the batch
    /// is full. Errors (end of file, a bad record length) mean the client
    /// must be dropped.
    pub(crate) fn recv(
        &mut self,
        rx: &mut RxBatch,
        stats: &mut TapStats,
        mut pcap: Option<&mut crate::pcap::Pcap>,
    ) -> io::Result<RxEnd> {
        rx.clear();
        let Some(fd) = &self.conn else {
            return Ok(RxEnd::Drained);
        };
        // Move the incomplete record left by the last batch to the front.
        let (at, n) = std::mem::take(&mut self.carry);
        if let Some(end) = at.checked_add(n).filter(|_| n > 0) {
            rx.buf.copy_within(at..end, 0);
        }
        let mut fill = n;
        let mut parsed = 0;
        // `parsed <= fill <= rx.buf.len()` throughout: the offsets below
        // cannot overflow, and a record is only cut out once it is whole.
        loop {
            // Cut out every complete record.
            while let Some(pending) = rx.buf.get(parsed..fill) {
                let Some((len, rest)) = pending.split_first_chunk::<4>() else {
                    break;
                };
                let len = u32::from_be_bytes(*len) as usize;
                if !(FRAME_MIN..=FRAME_MAX).contains(&len) {
                    stats.rx_runt_or_giant = stats.rx_runt_or_giant.wrapping_add(1);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("Bad frame size from guest: {len} bytes"),
                    ));
                }
                let Some(frame) = rest.get(..len) else {
                    break;
                };
                if rx.frames.len() >= RX_FRAMES {
                    self.carry = (parsed, pending.len());
                    rx.used = fill;
                    return Ok(RxEnd::Full);
                }
                if let Some(p) = pcap.as_deref_mut() {
                    p.record(frame);
                }
                let frame_at = parsed.saturating_add(4);
                rx.push_at(frame_at, len, false, false);
                stats.rx_frames = stats.rx_frames.wrapping_add(1);
                stats.rx_bytes = stats.rx_bytes.wrapping_add(len as u64);
                parsed = frame_at.saturating_add(len);
            }
            rx.used = fill;
            let room = rx.buf.get_mut(fill..).unwrap_or_default();
            if room.len() < FRAME_MAX + 4 {
                self.carry = (parsed, fill.saturating_sub(parsed));
                return Ok(RxEnd::Full);
            }
            match rustix::io::read(fd, room) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "Client connection closed",
                    ))
                }
                // At most the room left: no overflow.
                Ok(n) => fill = fill.saturating_add(n),
                Err(Errno::AGAIN) => {
                    self.carry = (parsed, fill.saturating_sub(parsed));
                    return Ok(RxEnd::Drained);
                }
                Err(Errno::INTR) => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("Client connection error: {e}"),
                    ))
                }
            }
        }
    }

    /// Sends every queued frame (see the module documentation), then
    /// empties the queue.
    pub(super) fn flush(
        &mut self,
        tx: &mut TxQueue,
        stats: &mut TapStats,
        mut pcap: Option<&mut crate::pcap::Pcap>,
    ) {
        if tx.frames.is_empty() {
            return;
        }
        if self.conn.is_none() {
            stats.tx_dropped = stats.tx_dropped.wrapping_add(tx.frames.len() as u64);
            tx.clear();
            return;
        }
        // Complete offloaded checksums, fill in the length prefixes.
        for (f, prefix) in tx.frames.iter().zip(self.prefixes.iter_mut()) {
            let frame = frame_bytes_mut(&mut tx.buf, f);
            if f.csum != (0, 0) {
                complete_csum(frame, f.csum);
            }
            if let Some(p) = pcap.as_deref_mut() {
                p.record(frame);
            }
            let wire_len = frame.len().max(ETH_ZLEN) as u32;
            *prefix = wire_len.to_be_bytes();
        }
        let mut start = 0;
        while start < tx.frames.len() {
            let end = start.saturating_add(IOV_FRAMES).min(tx.frames.len());
            match self.write_batch(tx, start, end) {
                Ok(sent) => {
                    let batch = tx.frames.get(start..end).unwrap_or_default();
                    for f in batch.iter().take(sent) {
                        stats.tx_frames = stats.tx_frames.wrapping_add(1);
                        stats.tx_bytes = stats.tx_bytes.wrapping_add(u64::from(f.len));
                    }
                    // `sent` is at most `end - start`: never clamps.
                    let done = start.saturating_add(sent);
                    if done < end {
                        let dropped = tx.frames.len().saturating_sub(done);
                        stats.tx_dropped = stats.tx_dropped.wrapping_add(dropped as u64);
                        log::trace!("tap: guest socket full, dropped {dropped} frames");
                        break;
                    }
                }
                Err(e) => {
                    let dropped = tx.frames.len().saturating_sub(start);
                    stats.tx_dropped = stats.tx_dropped.wrapping_add(dropped as u64);
                    log::debug!("tap: write to the guest socket failed: {e}");
                    if e.kind() == io::ErrorKind::TimedOut {
                        // Half a frame is stuck in the stream: the stream is
                        // unusable. Shut it down: the read side sees the end
                        // and the connection is dropped there.
                        if let Some(c) = &self.conn {
                            let _ = rustix::net::shutdown(c, rustix::net::Shutdown::Both);
                        }
                    }
                    break;
                }
            }
            start = end;
        }
        tx.clear();
    }

    /// Writes frames `start..end` of `tx` with one `writev()`; returns how
    /// many were sent whole. A frame cut by a partial write is completed
    /// before returning (counted as sent).
    fn write_batch(&self, tx: &TxQueue, start: usize, end: usize) -> io::Result<usize> {
        let Some(fd) = &self.conn else {
            return Ok(0);
        };
        let frames = tx.frames.get(start..end).unwrap_or_default();
        let prefixes = self.prefixes.get(start..end).unwrap_or_default();
        // Prefix, frame and padding (if any) of each frame: `end - start`
        // is at most IOV_FRAMES, so they fit.
        let parts = frames.iter().zip(prefixes).flat_map(|(f, prefix)| {
            let frame = frame_bytes(&tx.buf, f);
            [prefix.as_slice(), frame, padding(frame)]
        });
        let mut iov = [IoSlice::new(&[]); IOV_FRAMES * 3];
        let n_iov = iov
            .iter_mut()
            .zip(parts.filter(|p| !p.is_empty()))
            .map(|(slot, part)| *slot = IoSlice::new(part))
            .count();
        let mut written = loop {
            match rustix::io::writev(fd, iov.get(..n_iov).unwrap_or_default()) {
                Ok(n) => break n,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return Ok(0),
                Err(e) => return Err(e.into()),
            }
        };
        for (i, (f, prefix)) in frames.iter().zip(prefixes).enumerate() {
            let frame = frame_bytes(&tx.buf, f);
            let wire = frame.len().max(ETH_ZLEN).saturating_add(4);
            if let Some(rest) = written.checked_sub(wire) {
                written = rest;
                continue;
            }
            if written == 0 {
                return Ok(i);
            }
            write_remainder(fd, &[prefix, frame, padding(frame)], written)?;
            // `i` is below `frames.len()`: never clamps.
            return Ok(i.saturating_add(1));
        }
        Ok(frames.len())
    }
}

/// The bytes of a queued frame.
fn frame_bytes<'a>(buf: &'a [u8], f: &super::TxFrame) -> &'a [u8] {
    let frame = buf
        .get(f.off as usize..)
        .and_then(|b| b.get(..f.len as usize));
    frame.unwrap_or_default()
}

fn frame_bytes_mut<'a>(buf: &'a mut [u8], f: &super::TxFrame) -> &'a mut [u8] {
    let frame = buf
        .get_mut(f.off as usize..)
        .and_then(|b| b.get_mut(..f.len as usize));
    frame.unwrap_or_default()
}

/// The zeros that pad `frame` to the Ethernet minimum (none if long
/// enough).
fn padding(frame: &[u8]) -> &'static [u8] {
    ZEROS.get(frame.len()..).unwrap_or_default()
}

/// Writes `parts` from byte `skip` on, waiting for the socket to drain:
/// the rest of one frame, so that the stream stays in step.
fn write_remainder(fd: &OwnedFd, parts: &[&[u8]], mut skip: usize) -> io::Result<()> {
    let started = Instant::now();
    for part in parts {
        let Some(mut rest) = part.get(skip..).filter(|r| !r.is_empty()) else {
            // `skip` is at least the part's length here: never clamps.
            skip = skip.saturating_sub(part.len());
            continue;
        };
        skip = 0;
        while !rest.is_empty() {
            match rustix::io::write(fd, rest) {
                Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    let left = REMAINDER_TIMEOUT.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "guest socket stuck in the middle of a frame",
                        ));
                    }
                    let mut pfd = [rustix::event::PollFd::new(
                        fd,
                        rustix::event::PollFlags::OUT,
                    )];
                    let t = rustix::time::Timespec {
                        tv_sec: left.as_secs() as i64,
                        tv_nsec: i64::from(left.subsec_nanos()),
                    };
                    let _ = rustix::event::poll(&mut pfd, Some(&t));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Completes a partial (offloaded) L4 checksum: the field at
/// `start + offset` holds the folded pseudo-header sum; the sum of
/// everything from `start` to the end, that field included, is the
/// checksum. A zero result is sent as 0xffff (the same in one's
/// complement; zero would mean "no checksum" in UDP over IPv4).
pub(super) fn complete_csum(frame: &mut [u8], (start, offset): (u16, u16)) {
    let start = usize::from(start);
    let Some(field) = start.checked_add(usize::from(offset)) else {
        return;
    };
    if frame
        .get(field..)
        .and_then(<[u8]>::first_chunk::<2>)
        .is_none()
    {
        return;
    }
    let mut c = checksum::finish(checksum::sum(frame.get(start..).unwrap_or_default()));
    if c == 0 {
        c = 0xffff;
    }
    if let Some(dst) = frame.get_mut(field..).and_then(<[u8]>::first_chunk_mut) {
        *dst = c.to_be_bytes();
    }
}

/// Says once if the kernel caps our socket buffers low.
fn low_hint(snd: usize) {
    if snd < SNDBUF_LOW {
        log::info!(
            "Guest socket send buffer capped at {snd} bytes: \
             sysctl net.core.wmem_max={} may improve throughput",
            SNDBUF_LOW * 2
        );
    }
}

/// The start-up message for socket mode: where we listen and how QEMU
/// connects.
pub(crate) fn announce(path: &Path) {
    log::info!("UNIX domain socket bound at {}", path.display());
    log::info!(
        "Start QEMU (7.2 or later) with: -device virtio-net-pci,netdev=s \
         -netdev stream,id=s,server=off,addr.type=unix,addr.path={}",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_checksum_completed() {
        // A UDP/IPv4 frame with a correct checksum, then the same frame
        // with only the pseudo-header sum in the field.
        let mut f = vec![0u8; 14 + 20 + 8 + 5];
        let n = crate::wire::build::eth_ipv4_udp(
            &mut f,
            [2; 6],
            [4; 6],
            std::net::SocketAddrV4::new([192, 0, 2, 1].into(), 53),
            std::net::SocketAddrV4::new([192, 0, 2, 2].into(), 4000),
            64,
            b"hello",
        )
        .unwrap();
        let good = f[..n].to_vec();
        let pseudo = checksum::pseudo_v4([192, 0, 2, 1].into(), [192, 0, 2, 2].into(), 17, 13);
        f[40..42].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        complete_csum(&mut f[..n], (34, 6));
        assert_eq!(&f[..n], &good[..]);
    }
}
