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
//! TCP segmentation offload (tun device and vhost-user):
//! when [`Tap::tso`] says the backend takes them, TCP queues data frames
//! of up to 64 KiB ([`TxQueue::commit_region_tso`]) whose
//! [`TxFrame::gso`] is the guest's MSS; the writer puts them out as one
//! frame with a virtio-net header asking for TCP segmentation at that size
//! ([`vnet_header`]), and the receiving kernel segments them (or, for a
//! local socket, takes them whole). The other way, the tun device is
//! opened with `TUN_F_TSO4 | TUN_F_TSO6`, so the namespace's kernel hands
//! us TCP segments of up to 64 KiB whatever the MTU: [`RxBatch`] keeps
//! room for those ([`RX_FRAME_MAX`]) and marks them ([`RxBatch::gso`]) so
//! that the MTU check lets them through; TCP writes each payload to its
//! socket in one call. With `TUN_F_USO4 | TUN_F_USO6` too (Linux 6.2+),
//! datagrams an application sent with `UDP_SEGMENT` come as one UDP
//! super-frame, marked with its datagram size ([`RxBatch::udp_seg`]),
//! which UDP cuts back into datagrams.
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

/// Largest frame we write, and read from a stream: the tun driver's
/// limit for a single frame.
pub(crate) const FRAME_MAX: usize = 65535;
/// Smallest frame worth looking at: an Ethernet header.
pub(crate) const FRAME_MIN: usize = 14;
/// Largest frame a segmentation offload back-end hands us: an Ethernet
/// header and an IP packet of 64 KiB (a TCP super-segment from the
/// namespace's kernel: its `gso_max_size`, 64 KiB, bounds it, headers
/// included).
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
    /// TCP super-frames sent with segmentation offload (each is one of
    /// `tx_frames`).
    pub(crate) tx_gso_frames: u64,
    /// Frames received with a segmentation offload type (TCP segments
    /// longer than the MTU; each is one of `rx_frames`).
    pub(crate) rx_gso_frames: u64,
    /// Of those, UDP super-frames (many datagrams in one frame).
    pub(crate) rx_udp_gso_frames: u64,
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
            tx_gso_frames,
            rx_gso_frames,
            rx_udp_gso_frames,
        } = self;
        write!(
            f,
            "rx_frames={rx_frames} rx_bytes={rx_bytes} tx_frames={tx_frames} \
             tx_bytes={tx_bytes} tx_dropped={tx_dropped} rx_runt_or_giant={rx_runt_or_giant} \
             tx_gso_frames={tx_gso_frames} rx_gso_frames={rx_gso_frames} \
             rx_udp_gso_frames={rx_udp_gso_frames}"
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

/// Where a received frame is in [`RxBatch`], and what the backend's
/// offload header said about it.
#[derive(Clone, Copy, Debug, Default)]
struct RxFrame {
    off: u32,
    len: u32,
    /// The L4 checksum is partial (`NEEDS_CSUM`): not to be verified.
    csum_partial: bool,
    /// The frame is a segmentation offload super-frame (a `gso_type` other
    /// than none): it may exceed the MTU.
    gso: bool,
    /// For a UDP super-frame (`GSO_UDP_L4`, from a tun device that took
    /// `TUN_F_USO4 | TUN_F_USO6`): the size of its datagrams, the last one
    /// possibly shorter. 0 otherwise.
    udp_seg: u16,
}

/// A batch of frames received from the guest.
pub(crate) struct RxBatch {
    buf: Vec<u8>,
    frames: Vec<RxFrame>,
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

    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    /// The `i`-th frame of the batch.
    pub(crate) fn frame(&self, i: usize) -> &[u8] {
        match self.frames.get(i) {
            Some(f) => self
                .buf
                .get(f.off as usize..f.off as usize + f.len as usize)
                .unwrap_or(&[]),
            None => &[],
        }
    }

    /// True if the guest left the `i`-th frame's TCP/UDP checksum partial.
    pub(crate) fn csum_partial(&self, i: usize) -> bool {
        self.frames.get(i).is_some_and(|f| f.csum_partial)
    }

    /// True if the `i`-th frame came with segmentation offload: a TCP
    /// segment of many MSS, which may exceed the MTU.
    pub(crate) fn gso(&self, i: usize) -> bool {
        self.frames.get(i).is_some_and(|f| f.gso)
    }

    /// If the `i`-th frame is a UDP super-frame (UDP segmentation offload
    /// from the namespace's kernel): the size its payload is cut into,
    /// one datagram each, as the kernel would have sent them. 0: one
    /// datagram.
    pub(crate) fn udp_seg(&self, i: usize) -> u16 {
        self.frames.get(i).map_or(0, |f| f.udp_seg)
    }

    /// Free space for the next frame, if a maximum-size frame (a
    /// super-segment's, [`RX_FRAME_MAX`]) still fits.
    fn space(&mut self) -> Option<&mut [u8]> {
        if self.frames.len() >= RX_FRAMES || self.buf.len() - self.used < RX_FRAME_MAX {
            return None;
        }
        Some(&mut self.buf[self.used..self.used + RX_FRAME_MAX])
    }

    /// Records a frame of `len` bytes at `off` (used by backends that fill
    /// the buffer themselves), with its offload flags.
    fn push_at(&mut self, off: usize, len: usize, csum_partial: bool, gso: bool) {
        self.frames.push(RxFrame {
            off: off as u32,
            len: len as u32,
            csum_partial,
            gso,
            udp_seg: 0,
        });
    }

    /// Marks the last frame recorded as a UDP super-frame of datagrams of
    /// `seg` bytes (see [`RxBatch::udp_seg`]).
    fn set_udp_seg(&mut self, seg: u16) {
        if let Some(f) = self.frames.last_mut() {
            f.udp_seg = seg;
        }
    }

    /// Records a frame of `len` bytes read into [`RxBatch::space`].
    fn push(&mut self, len: usize, csum_partial: bool, gso: bool) {
        self.push_at(self.used, len, csum_partial, gso);
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
    /// (the peer's MSS). 0: the frame is one segment. Only set (by
    /// [`TxQueue::commit_region_tso`]) on frames with a partial checksum
    /// whose payload is longer than this; [`vnet_header`] turns it into
    /// the header's `gso_type`, `hdr_len` and `gso_size`.
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

    #[cfg(any(test, feature = "fuzzing"))]
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
        self.commit_region_tso(stride, lens, csum, 0);
    }

    /// As [`TxQueue::commit_region`], for TCP frames (headers written,
    /// partial checksum at `csum`) that may each carry several segments of
    /// `gso` payload bytes, for a backend that takes them ([`Tap::tso`]).
    /// A frame whose payload is no longer than `gso` is queued as a plain
    /// frame; `gso` 0 queues them all so.
    pub(crate) fn commit_region_tso(
        &mut self,
        stride: usize,
        lens: &[usize],
        csum: (u16, u16),
        gso: u16,
    ) {
        let mut fit = 0;
        for (i, &len) in lens.iter().enumerate() {
            let off = self.used + i * stride;
            if len == 0 || len > stride || off + stride > self.buf.len() {
                break;
            }
            if self.frames.len() >= TX_FRAMES {
                break;
            }
            let gso = if gso == 0 || csum == (0, 0) {
                0
            } else {
                let hdr = tcp_header_end(&self.buf[off..off + len], csum.0);
                if hdr != 0 && len - hdr > usize::from(gso) {
                    gso
                } else {
                    0
                }
            };
            self.frames.push(TxFrame {
                off: off as u32,
                len: len as u32,
                csum,
                run: 0,
                gso,
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
    /// Whether the tun device was opened with TCP segmentation offload
    /// (`TUN_F_TSO4 | TUN_F_TSO6` accepted): see [`Tap::tso`].
    pub(crate) tun_tso: bool,
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
            tun_tso: false,
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
                    let gso = vnet[1] != VNET_GSO_NONE;
                    if gso {
                        self.stats.rx_gso_frames += 1;
                    }
                    rx.push(n, vnet[0] & VNET_F_NEEDS_CSUM != 0, gso);
                    if vnet[1] == VNET_GSO_UDP_L4 {
                        // virtio_net_hdr.gso_size, little-endian.
                        let seg = u16::from_le_bytes([vnet[4], vnet[5]]);
                        self.stats.rx_udp_gso_frames += 1;
                        rx.set_udp_seg(seg);
                    }
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
            let vnet = vnet_header(frame, &f);
            if let Some(p) = self.pcap.as_mut() {
                p.record(frame);
            }
            loop {
                match rustix::io::writev(fd, &[io::IoSlice::new(&vnet), io::IoSlice::new(frame)]) {
                    Ok(_) => {
                        self.stats.tx_frames += 1;
                        self.stats.tx_bytes += u64::from(len);
                        if f.gso != 0 {
                            self.stats.tx_gso_frames += 1;
                        }
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

    /// True if the backend takes TCP super-frames ([`TxFrame::gso`], queued
    /// with [`TxQueue::commit_region_tso`]): the tun device once it
    /// accepted `TUN_F_TSO4 | TUN_F_TSO6`. The stream backend has no
    /// offload header to ask for segmentation with.
    pub(crate) fn tso(&self) -> bool {
        match &self.backend {
            Backend::Tun(_) => self.tun_tso,
            Backend::Stream(_) => false,
            Backend::VhostUser(v) => v.tso(),
        }
    }

    /// How often the loop must look at the back-end even without events,
    /// in milliseconds, if it must (see [`vhost_user::VhostUser::poll`]).
    pub(crate) fn poll_interval(&mut self) -> Option<i32> {
        self.vhost_user().and_then(|v| v.poll_interval())
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

/// virtio-net header segmentation type: none, a single segment.
const VNET_GSO_NONE: u8 = 0;
/// virtio-net header segmentation type: TCP over IPv4.
const VNET_GSO_TCPV4: u8 = 1;
/// virtio-net header segmentation type: TCP over IPv6.
const VNET_GSO_TCPV6: u8 = 4;
/// virtio-net header segmentation type: UDP, segmented at L4.
const VNET_GSO_UDP_L4: u8 = 5;

/// Where the TCP header of `frame`, starting at `l4` (a partial checksum's
/// `csum_start`), ends: the length of the Ethernet, IP and TCP headers,
/// which a segmentation offload header's `hdr_len` gives. 0 if the frame
/// is too short to hold that header.
fn tcp_header_end(frame: &[u8], l4: u16) -> usize {
    let l4 = usize::from(l4);
    let Some(&doff) = frame.get(l4 + 12) else {
        return 0;
    };
    let end = l4 + usize::from(doff >> 4) * 4;
    if end < l4 + 20 || end > frame.len() {
        return 0;
    }
    end
}

/// The 10-byte `virtio_net_hdr` for a queued frame (the first 10 bytes of
/// vhost-user's `virtio_net_hdr_v1`, which adds `num_buffers`): a complete
/// frame is `DATA_VALID`; one with a partial checksum `NEEDS_CSUM` with
/// its start and offset; a TCP super-frame ([`TxFrame::gso`]) adds
/// `gso_type` TCPV4 or TCPV6 by its ethertype, `hdr_len` (Ethernet, IP
/// and TCP headers) and `gso_size`. Fields are little-endian, as virtio
/// 1.0 and the tun driver (`IFF_VNET_HDR`, little-endian on our hosts)
/// have them.
fn vnet_header(frame: &[u8], f: &TxFrame) -> [u8; VNET_HDR_LEN] {
    let mut vnet = [VNET_F_DATA_VALID, VNET_GSO_NONE, 0, 0, 0, 0, 0, 0, 0, 0];
    if f.csum == (0, 0) {
        return vnet;
    }
    vnet[0] = VNET_F_NEEDS_CSUM;
    vnet[6..8].copy_from_slice(&f.csum.0.to_le_bytes());
    vnet[8..10].copy_from_slice(&f.csum.1.to_le_bytes());
    if f.gso != 0 {
        vnet[1] = if frame.get(12..14) == Some(&[0x86, 0xdd]) {
            VNET_GSO_TCPV6
        } else {
            VNET_GSO_TCPV4
        };
        let hdr = tcp_header_end(frame, f.csum.0) as u16;
        vnet[2..4].copy_from_slice(&hdr.to_le_bytes());
        vnet[4..6].copy_from_slice(&f.gso.to_le_bytes());
    }
    vnet
}
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

    /// Queues two TCP data frames from `src` with payloads of `big` and
    /// 1000 bytes, built as the TCP path builds them, with segments of
    /// 1460 bytes asked for; returns the queue.
    fn tso_queue(src: std::net::IpAddr, big: usize) -> TxQueue {
        use crate::wire::build::{self, L4Csum};
        use crate::wire::tcp::TcpRepr;
        use std::net::SocketAddr;
        let dst = match src {
            std::net::IpAddr::V4(_) => "192.0.2.2".parse().unwrap(),
            std::net::IpAddr::V6(_) => "2001:db8::2".parse().unwrap(),
        };
        let repr = TcpRepr {
            seq: 1,
            ack: 1,
            flags: crate::wire::tcp::flags::ACK,
            window: 100,
            ..TcpRepr::default()
        };
        let stride = 65536;
        let mut q = TxQueue::new();
        let (region, fit) = q.region(stride, 2);
        assert_eq!(fit, 2);
        let mut lens = [0; 2];
        for (chunk, (len, plen)) in region
            .chunks_mut(stride)
            .zip(lens.iter_mut().zip([big, 1000]))
        {
            *len = build::finish_ip_tcp(
                chunk,
                [2; 6],
                [4; 6],
                SocketAddr::new(src, 80),
                SocketAddr::new(dst, 4000),
                64,
                &repr,
                plen,
                L4Csum::Partial,
            )
            .unwrap();
        }
        q.commit_region_tso(stride, &lens, build::tcp_csum_offload(src), 1460);
        q
    }

    fn le16(b: &[u8]) -> u16 {
        u16::from_le_bytes([b[0], b[1]])
    }

    #[test]
    fn tcp_super_frames_get_a_segmentation_header() {
        for (src, gso_type, hdr) in [
            ("192.0.2.1".parse().unwrap(), VNET_GSO_TCPV4, 14 + 20 + 20),
            ("2001:db8::1".parse().unwrap(), VNET_GSO_TCPV6, 14 + 40 + 20),
        ] {
            let big = 44 * 1460;
            let q = tso_queue(src, big);
            assert_eq!(q.len(), 2);
            let (f, g) = (q.frames[0], q.frames[1]);
            assert_eq!(f.len as usize, hdr + big);
            assert_eq!(f.gso, 1460, "a frame of many segments keeps its size");
            assert_eq!(g.gso, 0, "a frame of one segment is a plain frame");
            let frame = &q.buf[f.off as usize..(f.off + f.len) as usize];
            let v = vnet_header(frame, &f);
            assert_eq!(v[0], VNET_F_NEEDS_CSUM);
            assert_eq!(v[1], gso_type);
            assert_eq!(usize::from(le16(&v[2..4])), hdr, "hdr_len");
            assert_eq!(le16(&v[4..6]), 1460, "gso_size");
            assert_eq!(usize::from(le16(&v[6..8])), hdr - 20, "csum_start");
            assert_eq!(le16(&v[8..10]), 16, "csum_offset");
            // The IP length covers the whole super-frame.
            let ip_len = if gso_type == VNET_GSO_TCPV4 {
                u16::from_be_bytes([frame[16], frame[17]]) as usize + 14
            } else {
                u16::from_be_bytes([frame[18], frame[19]]) as usize + 14 + 40
            };
            assert_eq!(ip_len, frame.len());
            let frame = &q.buf[g.off as usize..(g.off + g.len) as usize];
            let v = vnet_header(frame, &g);
            assert_eq!((v[0], v[1]), (VNET_F_NEEDS_CSUM, VNET_GSO_NONE));
            assert_eq!(&v[2..6], &[0; 4]);
            assert_eq!(usize::from(le16(&v[6..8])), hdr - 20);
        }
    }

    #[test]
    fn plain_frames_have_no_segmentation() {
        // Complete checksums: DATA_VALID, nothing else.
        let mut q = TxQueue::new();
        let _ = q.region(2048, 1);
        q.commit_region_tso(2048, &[1500], (0, 0), 1460);
        assert_eq!(q.frames[0].gso, 0, "no offload without a partial checksum");
        let v = vnet_header(&q.buf[..1500], &q.frames[0]);
        assert_eq!(v, [VNET_F_DATA_VALID, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        // commit_region never asks for segmentation.
        let mut q = TxQueue::new();
        let _ = q.region(65536, 1);
        q.commit_region(65536, &[60000], (34, 16));
        assert_eq!(q.frames[0].gso, 0);
        // A frame too short for its TCP header is not segmented either.
        assert_eq!(tcp_header_end(&[0; 40], 34), 0);
    }

    #[test]
    fn rx_batch_bounds() {
        let mut rx = RxBatch::new();
        assert_eq!(rx.frame(0), &[] as &[u8]);
        let s = rx.space().unwrap();
        s[..20].fill(7);
        rx.push(20, false, false);
        assert_eq!(rx.frame(0), &[7u8; 20][..]);
        assert_eq!(rx.len(), 1);
        assert!(!rx.gso(0));
        // Room for a super-segment: a whole 64 KiB IP packet.
        assert_eq!(rx.space().unwrap().len(), RX_FRAME_MAX);
        rx.push(RX_FRAME_MAX, true, true);
        assert_eq!(rx.frame(1).len(), 14 + 65535);
        assert!(rx.gso(1) && rx.csum_partial(1));
    }
}
