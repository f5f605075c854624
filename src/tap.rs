//! The guest's side: layer-2 frames in and out.
//!
//! A backend moves whole Ethernet frames between the guest and us. There
//! are three, behind the same two structures:
//!
//! - **tun** (pasta): a tap device in the namespace, one `read()` or
//!   `write()` per frame as the tun driver wants, each frame behind a
//!   `virtio_net_hdr` (`IFF_VNET_HDR`) that carries checksum and
//!   segmentation offloads;
//! - **stream** (passt, [`stream`]): QEMU's `-netdev stream` socket,
//!   frames behind a 32-bit length, read in big chunks and written with
//!   `writev()`; no offloads (checksums are completed before sending);
//! - **vhost-user** (passt `--vhost-user`, [`vhost_user`]): no socket on
//!   the data path at all; frames are copied from and into the guest's
//!   virtqueues in shared memory, behind a `virtio_net_hdr_v1` with the
//!   offloads the guest negotiated, on up to 8 queue pairs. It is the only
//!   back-end that pushes back: a frame that finds no receive buffer waits
//!   in the queue ([`Tap::blocked`]) instead of being dropped.
//!
//! The structures:
//!
//! - [`RxBatch`]: one preallocated buffer (8 MiB) and a table of frame
//!   extents; a batch is read until the backend would block or the buffer
//!   is nearly full, then handed to the dispatcher as a whole;
//! - [`TxQueue`]: one preallocated buffer where handlers build reply frames
//!   in place ([`TxQueue::slot`] / [`TxQueue::commit`]); it is flushed once
//!   per loop iteration, or when full. Each frame records the queue pair
//!   of its flow ([`TxQueue::pair`]), which vhost-user sends it on.
//!
//! UDP segmentation offload (tap device only): datagrams of one flow read
//! in one batch are queued as a run ([`TxQueue::commit_udp_run`]). The
//! flush writes consecutive ones of equal payload length (the last may be
//! shorter) as one super-frame: the first frame's headers patched to the
//! total length, with a virtio-net header asking for UDP L4 segmentation
//! at that payload size, and the other payloads gathered from their slots
//! by the same `writev()`. The kernel splits it back into the original
//! datagrams in the namespace. If the device refuses such a write, runs
//! go frame by frame from then on. The stream backend never coalesces.
//!
//! Nothing here allocates after start-up.

use std::io;
use std::os::fd::OwnedFd;

pub(crate) mod stream;
pub(crate) mod vhost_user;

/// Length of the `virtio_net_hdr` before each frame on the tap.
pub(crate) const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum from `csum_start` on is
/// partial (only the pseudo-header is summed); the kernel treats it as
/// verified on local delivery and completes it if it forwards the frame.
const VNET_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the frame's checksums are complete and
/// correct (we built them): the guest's kernel need not verify them again.
const VNET_F_DATA_VALID: u8 = 2;

/// Largest frame we read or write: the tun driver's limit.
pub(crate) const FRAME_MAX: usize = 65535;
/// Smallest frame worth looking at: an Ethernet header.
pub(crate) const FRAME_MIN: usize = 14;
/// Largest frame a segmentation offload back-end hands us: an Ethernet
/// header and an IP packet of 64 KiB.
const RX_FRAME_MAX: usize = FRAME_MIN + 65535;
/// Receive buffer size, as upstream's packet buffer.
const RX_BUF: usize = 8 << 20;
/// Most frames in one receive batch.
pub(crate) const RX_FRAMES: usize = 4096;
/// Transmit buffer size.
const TX_BUF: usize = 4 << 20;
/// Most frames queued before a flush.
pub(crate) const TX_FRAMES: usize = 1024;

/// Counters of the tap path, for `--stats`-like dumps and tests.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TapStats {
    pub(crate) rx_frames: u64,
    pub(crate) rx_bytes: u64,
    pub(crate) tx_frames: u64,
    pub(crate) tx_bytes: u64,
    pub(crate) tx_dropped: u64,
    pub(crate) rx_runt_or_giant: u64,
}

/// One line of `name=value` pairs, a format the tests read (pasta logs it
/// at exit as `tap counters: ...`).
impl std::fmt::Display for TapStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let TapStats {
            rx_frames,
            rx_bytes,
            tx_frames,
            tx_bytes,
            tx_dropped,
            rx_runt_or_giant,
        } = self;
        write!(
            f,
            "rx_frames={rx_frames} rx_bytes={rx_bytes} tx_frames={tx_frames} \
             tx_bytes={tx_bytes} tx_dropped={tx_dropped} rx_runt_or_giant={rx_runt_or_giant}"
        )
    }
}

/// What a backend is.
pub(crate) enum Backend {
    /// A tap device (pasta), non-blocking.
    Tun(OwnedFd),
    /// passt: QEMU's stream socket (see [`stream`]).
    Stream(stream::Stream),
    /// passt `--vhost-user`: the guest's virtqueues (see [`vhost_user`]).
    VhostUser(vhost_user::VhostUser),
}

/// Why reading from the guest stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RxEnd {
    /// Drained: the backend would block.
    Drained,
    /// The batch is full: read again after handling it.
    Full,
}

/// A batch of frames received from the guest.
pub(crate) struct RxBatch {
    buf: Vec<u8>,
    /// Offset, length, and whether the L4 checksum is partial (offload).
    frames: Vec<(u32, u32, bool)>,
    used: usize,
    /// The queue pair the batch came from (vhost-user; 0 otherwise).
    pub(crate) pair: u8,
}

impl Default for RxBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RxBatch {
    pub(crate) fn new() -> Self {
        RxBatch {
            buf: vec![0; RX_BUF],
            frames: Vec::with_capacity(RX_FRAMES),
            used: 0,
            pair: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.frames.clear();
        self.used = 0;
        self.pair = 0;
    }

    /// True if a frame of the largest size no longer fits.
    fn full(&self) -> bool {
        self.frames.len() >= RX_FRAMES || self.buf.len() - self.used < RX_FRAME_MAX
    }

    /// Free space for the next frame, [`RX_FRAME_MAX`] bytes: a TCP
    /// super-segment from the guest (64 KiB of IP packet) fits.
    fn space_max(&mut self) -> &mut [u8] {
        let end = (self.used + RX_FRAME_MAX).min(self.buf.len());
        &mut self.buf[self.used..end]
    }

    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    /// The `i`-th frame of the batch.
    pub(crate) fn frame(&self, i: usize) -> &[u8] {
        match self.frames.get(i) {
            Some(&(off, len, _)) => self
                .buf
                .get(off as usize..off as usize + len as usize)
                .unwrap_or(&[]),
            None => &[],
        }
    }

    /// True if the guest left the `i`-th frame's TCP/UDP checksum partial.
    pub(crate) fn csum_partial(&self, i: usize) -> bool {
        self.frames.get(i).is_some_and(|f| f.2)
    }

    /// Free space for the next frame, if a maximum-size frame still fits.
    fn space(&mut self) -> Option<&mut [u8]> {
        if self.frames.len() >= RX_FRAMES || self.buf.len() - self.used < FRAME_MAX {
            return None;
        }
        Some(&mut self.buf[self.used..self.used + FRAME_MAX])
    }

    fn push(&mut self, len: usize, csum_partial: bool) {
        self.frames
            .push((self.used as u32, len as u32, csum_partial));
        // Keep frames 8-byte aligned for header access.
        self.used += (len + 7) & !7;
    }
}

/// A queued frame: where it is, and its checksum offload, if any.
#[derive(Clone, Copy)]
struct TxFrame {
    off: u32,
    len: u32,
    /// Start and offset of a partial L4 checksum (0, 0: complete frame).
    csum: (u16, u16),
    /// UDP frames of one flow queued together ([`TxQueue::commit_udp_run`]):
    /// the run's number, nonzero, so the tun writer can coalesce them
    /// into one segmentation offload write. 0: send as it is.
    run: u32,
    /// TCP segmentation offload: a TCP frame longer than one segment, to
    /// be cut by the receiver into segments of this many payload bytes
    /// (the peer's MSS). 0: the frame is one segment.
    gso: u16,
    /// The queue pair it leaves on (vhost-user multi-queue).
    pair: u8,
}

/// Frames waiting to be sent to the guest.
pub(crate) struct TxQueue {
    buf: Vec<u8>,
    frames: Vec<TxFrame>,
    used: usize,
    /// Number of the last run of UDP frames queued.
    runs: u32,
    /// The queue pair of the frames queued next: the pair the current
    /// flow's guest traffic arrives on (vhost-user multi-queue).
    pub(crate) pair: u8,
}

impl Default for TxQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl TxQueue {
    pub(crate) fn new() -> Self {
        TxQueue {
            buf: vec![0; TX_BUF],
            frames: Vec::with_capacity(TX_FRAMES),
            used: 0,
            runs: 0,
            pair: 0,
        }
    }

    /// True if a maximum-size frame no longer fits: flush first.
    pub(crate) fn full(&self) -> bool {
        self.frames.len() >= TX_FRAMES || self.buf.len() - self.used < FRAME_MAX
    }

    /// Space to build the next frame in, `FRAME_MAX` bytes, or None if the
    /// queue is full (the caller flushes and retries, or drops).
    pub(crate) fn slot(&mut self) -> Option<&mut [u8]> {
        if self.full() {
            return None;
        }
        Some(&mut self.buf[self.used..self.used + FRAME_MAX])
    }

    /// Queues the frame built in the last [`TxQueue::slot`], `len` bytes.
    pub(crate) fn commit(&mut self, len: usize) {
        if len == 0 || len > FRAME_MAX || self.full() {
            return;
        }
        self.frames.push(TxFrame {
            off: self.used as u32,
            len: len as u32,
            csum: (0, 0),
            run: 0,
            gso: 0,
            pair: self.pair,
        });
        self.used += (len + 7) & !7;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    /// Room for up to `n` frames of `stride` bytes laid out back to back
    /// (`stride` a multiple of 8), for callers that fill several frames
    /// with one system call (a TCP peek into consecutive payload areas).
    /// Returns the region and how many frames fit; frames in it are queued
    /// with [`TxQueue::commit_region`].
    pub(crate) fn region(&mut self, stride: usize, n: usize) -> (&mut [u8], usize) {
        let room_frames = TX_FRAMES - self.frames.len();
        let room_bytes = self.buf.len() - self.used;
        let fit = (room_bytes / stride.max(1)).min(room_frames).min(n);
        (&mut self.buf[self.used..self.used + fit * stride], fit)
    }

    /// Queues frames built in the last [`TxQueue::region`]: frame `i` at
    /// `i * stride`, `lens[i]` bytes. `csum`, if not (0, 0), is the start
    /// and offset of a partial L4 checksum in each frame.
    pub(crate) fn commit_region(&mut self, stride: usize, lens: &[usize], csum: (u16, u16)) {
        let mut fit = 0;
        for (i, &len) in lens.iter().enumerate() {
            let off = self.used + i * stride;
            if len == 0 || len > stride || off + stride > self.buf.len() {
                break;
            }
            if self.frames.len() >= TX_FRAMES {
                break;
            }
            self.frames.push(TxFrame {
                off: off as u32,
                len: len as u32,
                csum,
                run: 0,
                gso: 0,
                pair: self.pair,
            });
            fit = i + 1;
        }
        self.used += fit * stride;
    }

    /// As [`TxQueue::commit_region`], for UDP datagrams of one flow (same
    /// addresses and ports, partial checksums): the tun writer may send
    /// consecutive ones of equal length as one offloaded super-frame.
    pub(crate) fn commit_udp_run(&mut self, stride: usize, lens: &[usize], csum: (u16, u16)) {
        let first = self.frames.len();
        self.commit_region(stride, lens, csum);
        if csum == (0, 0) {
            return;
        }
        self.runs = self.runs.wrapping_add(1).max(1);
        for f in &mut self.frames[first..] {
            f.run = self.runs;
        }
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.used = 0;
    }

    /// Forgets the first `sent` frames, which went out, and keeps the rest
    /// for the next flush (a back-end that had no room for them). Their
    /// space is reused once the whole backlog is gone.
    fn keep_from(&mut self, sent: usize) {
        if sent >= self.frames.len() {
            self.clear();
        } else {
            self.frames.drain(..sent);
        }
    }

    /// Drops every queued frame (the guest is gone).
    pub(crate) fn clear_all(&mut self) {
        self.clear();
    }
}

/// The guest's link: a backend plus its transmit queue and counters.
pub(crate) struct Tap {
    pub(crate) backend: Backend,
    pub(crate) tx: TxQueue,
    pub(crate) stats: TapStats,
    /// `--pcap`: every frame in both directions.
    pub(crate) pcap: Option<crate::pcap::Pcap>,
    /// Whether the tun device takes UDP segmentation offload writes: true
    /// until one is refused, then never tried again.
    udp_gso: bool,
    /// Frames wait in the queue for room in the back-end (vhost-user).
    backlog: bool,
}

impl Tap {
    pub(crate) fn new(backend: Backend) -> Self {
        Tap {
            backend,
            tx: TxQueue::new(),
            stats: TapStats::default(),
            pcap: None,
            udp_gso: true,
            backlog: false,
        }
    }

    /// Reads frames into `rx` (cleared first) until the backend would
    /// block or the batch is full. An EOF is an error: the guest is gone.
    /// `ring` and `kicked` are for vhost-user: the virtqueue, and whether
    /// its kick fired (the other back-ends have one source).
    pub(crate) fn recv(&mut self, rx: &mut RxBatch, ring: u32, kicked: bool) -> io::Result<RxEnd> {
        rx.clear();
        let fd = match &mut self.backend {
            Backend::Tun(fd) => &*fd,
            Backend::Stream(s) => return s.recv(rx, &mut self.stats, self.pcap.as_mut()),
            Backend::VhostUser(v) => {
                return v.recv(ring, kicked, rx, &mut self.stats, self.pcap.as_mut())
            }
        };
        loop {
            let Some(space) = rx.space() else {
                return Ok(RxEnd::Full);
            };
            let mut vnet = [0u8; VNET_HDR_LEN];
            let mut iov = [io::IoSliceMut::new(&mut vnet), io::IoSliceMut::new(space)];
            match rustix::io::readv(fd, &mut iov) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "EOF on tap device",
                    ))
                }
                Ok(n) => {
                    let n = n.saturating_sub(VNET_HDR_LEN);
                    self.stats.rx_frames += 1;
                    self.stats.rx_bytes += n as u64;
                    if n < FRAME_MIN {
                        self.stats.rx_runt_or_giant += 1;
                        continue;
                    }
                    rx.push(n, vnet[0] & VNET_F_NEEDS_CSUM != 0);
                    if let Some(p) = self.pcap.as_mut() {
                        p.record(rx.frame(rx.len() - 1));
                    }
                }
                Err(rustix::io::Errno::AGAIN) => return Ok(RxEnd::Drained),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes every queued frame to the guest. Frames the backend cannot
    /// take now (full queue, no buffer) are dropped and counted, as a
    /// network card would: TCP recovers them, everything else is datagrams.
    pub(crate) fn flush(&mut self) {
        let fd = match &mut self.backend {
            Backend::Tun(fd) => &*fd,
            Backend::Stream(s) => {
                return s.flush(&mut self.tx, &mut self.stats, self.pcap.as_mut())
            }
            Backend::VhostUser(v) => {
                v.flush(&mut self.tx, &mut self.stats, self.pcap.as_mut());
                self.backlog = !self.tx.frames.is_empty();
                return;
            }
        };
        let mut i = 0;
        while i < self.tx.frames.len() {
            let f = self.tx.frames[i];
            if f.run != 0 && self.udp_gso {
                let n = udp_run_len(&self.tx, i);
                if n > 1 {
                    if let Some(p) = self.pcap.as_mut() {
                        for g in &self.tx.frames[i..i + n] {
                            p.record(&self.tx.buf[g.off as usize..(g.off + g.len) as usize]);
                        }
                    }
                    match write_udp_gso(fd, &mut self.tx, i, n) {
                        Ok(bytes) => {
                            self.stats.tx_frames += n as u64;
                            self.stats.tx_bytes += bytes;
                            i += n;
                            continue;
                        }
                        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::OPNOTSUPP) => {
                            log::debug!("tap: no UDP segmentation offload on the tun device");
                            self.udp_gso = false;
                        }
                        Err(e) => {
                            self.stats.tx_dropped += n as u64;
                            log::trace!("tap: dropped {n} UDP frames: {e}");
                            i += n;
                            continue;
                        }
                    }
                }
            }
            i += 1;
            let (off, len) = (f.off, f.len);
            let frame = &self.tx.buf[off as usize..(off + len) as usize];
            let mut vnet = [VNET_F_DATA_VALID, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            if f.csum != (0, 0) {
                vnet[0] = VNET_F_NEEDS_CSUM;
                vnet[6..8].copy_from_slice(&f.csum.0.to_le_bytes());
                vnet[8..10].copy_from_slice(&f.csum.1.to_le_bytes());
            }
            if let Some(p) = self.pcap.as_mut() {
                p.record(frame);
            }
            loop {
                match rustix::io::writev(fd, &[io::IoSlice::new(&vnet), io::IoSlice::new(frame)]) {
                    Ok(_) => {
                        self.stats.tx_frames += 1;
                        self.stats.tx_bytes += u64::from(len);
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => {
                        self.stats.tx_dropped += 1;
                        log::trace!("tap: dropped a frame of {len} bytes: {e}");
                    }
                }
                break;
            }
        }
        self.tx.clear();
    }

    /// True if frames may carry partial L4 checksums that the backend's
    /// receiver completes or skips (the tap's offload header) instead of
    /// ones we compute: the tun backend. The stream backend would only
    /// complete them itself before sending.
    pub(crate) fn csum_offload(&self) -> bool {
        match &self.backend {
            Backend::Tun(_) => true,
            Backend::Stream(_) => false,
            Backend::VhostUser(v) => v.csum_offload(),
        }
    }

    /// True while frames wait for room in the back-end: only vhost-user
    /// keeps them (a ring without buffers); the others drop what they
    /// cannot send.
    pub(crate) fn blocked(&self) -> bool {
        self.backlog
    }

    /// The stream backend (passt), if that is ours.
    pub(crate) fn stream(&mut self) -> Option<&mut stream::Stream> {
        match &mut self.backend {
            Backend::Stream(s) => Some(s),
            _ => None,
        }
    }

    /// The vhost-user backend (passt `--vhost-user`), if that is ours.
    pub(crate) fn vhost_user(&mut self) -> Option<&mut vhost_user::VhostUser> {
        match &mut self.backend {
            Backend::VhostUser(v) => Some(v),
            _ => None,
        }
    }

    /// True if the guest has a session that may come and go (passt's
    /// socket or vhost-user), rather than a device that is always there.
    pub(crate) fn is_session(&self) -> bool {
        !matches!(self.backend, Backend::Tun(_))
    }

    /// Queues one frame built by `build` (which returns its length, or None
    /// to send nothing), flushing first if the queue is full.
    pub(crate) fn send_with(&mut self, build: impl FnOnce(&mut [u8]) -> Option<usize>) {
        if self.tx.full() {
            self.flush();
        }
        if let Some(slot) = self.tx.slot() {
            if let Some(len) = build(slot) {
                self.tx.commit(len);
            }
        }
    }
}

/// virtio-net header segmentation type: UDP, segmented at L4.
const VNET_GSO_UDP_L4: u8 = 5;
/// Most datagrams coalesced into one offloaded write.
const GSO_SEGS_MAX: usize = 64;
const ETH_LEN: usize = 14;

/// How many frames from `i` on can go to the tun device as one UDP
/// segmentation offload write: same run (one flow, same headers), equal
/// payload lengths but for a possibly shorter last one, all of it within
/// one IP packet. 1 if no coalescing applies.
fn udp_run_len(tx: &TxQueue, i: usize) -> usize {
    let f = tx.frames[i];
    let hdr = usize::from(f.csum.0) + 8;
    let seg = (f.len as usize).saturating_sub(hdr);
    if seg == 0 || hdr > 128 {
        return 1;
    }
    let mut total = seg;
    let mut n = 1;
    for g in &tx.frames[i + 1..] {
        let len = (g.len as usize).saturating_sub(hdr);
        if g.run != f.run || g.csum != f.csum || len == 0 || len > seg || n >= GSO_SEGS_MAX {
            break;
        }
        // IPv4 total length, or IPv6 payload length, fits 16 bits.
        if hdr - ETH_LEN + total + len > 65535 {
            break;
        }
        total += len;
        n += 1;
        if len < seg {
            break;
        }
    }
    n
}

/// Writes frames `i..i + n` as one super-frame: the first frame's
/// headers, patched to cover every payload (lengths, IPv4 header
/// checksum, partial UDP checksum over the whole length, which the
/// kernel adjusts per segment), then every payload straight from its
/// slot. Returns the bytes of the frames sent.
fn write_udp_gso(fd: &OwnedFd, tx: &mut TxQueue, i: usize, n: usize) -> rustix::io::Result<u64> {
    let f = tx.frames[i];
    let hdr = usize::from(f.csum.0) + 8;
    let l4 = usize::from(f.csum.0);
    let seg = f.len as usize - hdr;
    let frames = &tx.frames[i..i + n];
    let payload: usize = frames.iter().map(|g| g.len as usize - hdr).sum();
    let bytes: u64 = frames.iter().map(|g| u64::from(g.len)).sum();
    let udp_len = (payload + 8) as u16;
    let h = &mut tx.buf[f.off as usize..f.off as usize + hdr];
    // Kept to undo the patch if the device refuses the write (the frame
    // then goes on its own).
    let mut saved = [0u8; 128];
    let saved = &mut saved[..hdr.min(128)];
    saved.copy_from_slice(&h[..saved.len()]);
    let old_udp_len = u16::from_be_bytes([h[l4 + 4], h[l4 + 5]]);
    let old_check = u16::from_be_bytes([h[l4 + 6], h[l4 + 7]]);
    if h[12..14] == [0x08, 0x00] {
        let ip = &mut h[ETH_LEN..l4];
        ip[2..4].copy_from_slice(&((l4 - ETH_LEN) as u16 + udp_len).to_be_bytes());
        ip[10..12].copy_from_slice(&[0, 0]);
        let c = crate::wire::checksum::finish(crate::wire::checksum::sum(ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    } else {
        h[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&udp_len.to_be_bytes());
    }
    h[l4 + 4..l4 + 6].copy_from_slice(&udp_len.to_be_bytes());
    // The pseudo-header sum has the UDP length in it once: swap it.
    let check = crate::wire::checksum::fold(
        u64::from(old_check) + u64::from(!old_udp_len) + u64::from(udp_len),
    );
    h[l4 + 6..l4 + 8].copy_from_slice(&check.to_be_bytes());
    let mut vnet = [VNET_F_NEEDS_CSUM, VNET_GSO_UDP_L4, 0, 0, 0, 0, 0, 0, 0, 0];
    vnet[2..4].copy_from_slice(&(hdr as u16).to_le_bytes());
    vnet[4..6].copy_from_slice(&(seg as u16).to_le_bytes());
    vnet[6..8].copy_from_slice(&f.csum.0.to_le_bytes());
    vnet[8..10].copy_from_slice(&f.csum.1.to_le_bytes());
    let buf = &tx.buf;
    let mut iov = [io::IoSlice::new(&[]); GSO_SEGS_MAX + 2];
    iov[0] = io::IoSlice::new(&vnet);
    iov[1] = io::IoSlice::new(&buf[f.off as usize..(f.off + f.len) as usize]);
    for (k, g) in frames.iter().enumerate().skip(1) {
        iov[k + 1] = io::IoSlice::new(&buf[g.off as usize + hdr..(g.off + g.len) as usize]);
    }
    let r = loop {
        match rustix::io::writev(fd, &iov[..n + 1]) {
            Ok(_) => break Ok(bytes),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => break Err(e),
        }
    };
    if r.is_err() {
        let len = saved.len();
        tx.buf[f.off as usize..f.off as usize + len].copy_from_slice(saved);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_queue_slots_and_commit() {
        let mut q = TxQueue::new();
        let slot = q.slot().unwrap();
        slot[..3].copy_from_slice(b"abc");
        q.commit(3);
        assert_eq!(q.len(), 1);
        q.commit(FRAME_MAX + 1);
        assert_eq!(q.len(), 1, "oversized commits are ignored");
        let mut n = 1;
        while q.slot().is_some() {
            q.commit(FRAME_MAX);
            n += 1;
        }
        assert!(q.full());
        assert!(n > 10);
    }

    #[test]
    fn udp_runs_coalesce_equal_lengths_only() {
        let mut q = TxQueue::new();
        let csum = (34, 6);
        // Headers 42 bytes: payloads 100, 100, 60 | 100 | 0 ...
        let _ = q.region(2048, 5);
        q.commit_udp_run(2048, &[142, 142, 102, 142], csum);
        let _ = q.region(2048, 2);
        q.commit_udp_run(2048, &[142, 142], csum);
        assert_eq!(udp_run_len(&q, 0), 3, "a shorter datagram ends the run");
        assert_eq!(udp_run_len(&q, 3), 1, "runs do not span batches");
        assert_eq!(udp_run_len(&q, 4), 2);
        let mut q = TxQueue::new();
        let _ = q.region(2048, 3);
        q.commit_udp_run(2048, &[142, 200, 142], csum);
        assert_eq!(udp_run_len(&q, 0), 1, "a longer datagram is not a segment");
        let mut q = TxQueue::new();
        let _ = q.region(2048, 2);
        q.commit_region(2048, &[142, 142], csum);
        assert_eq!(q.frames[0].run, 0, "plain regions are never coalesced");
    }

    #[test]
    fn rx_batch_bounds() {
        let mut rx = RxBatch::new();
        assert_eq!(rx.frame(0), &[] as &[u8]);
        let s = rx.space().unwrap();
        s[..20].fill(7);
        rx.push(20, false);
        assert_eq!(rx.frame(0), &[7u8; 20][..]);
        assert_eq!(rx.len(), 1);
    }
}
