//! A vhost-user front-end for the tests, in the role QEMU plays for a VM:
//! it owns the guest's memory (a memfd shared with passt through
//! `SET_MEM_TABLE`) and drives the split rings from the driver's side, as
//! the guest's virtio-net driver would.
//!
//! The messages go through the `vhost` crate's front-end
//! ([`Frontend`]); the rings are written here with `vm-memory`'s `Bytes`
//! API rather than with `virtio_queue::mock::MockSplitQueue`, which
//! borrows the memory for its lifetime, builds chains only from
//! descriptor 0 and has no free list, used-ring reaping or event indices.
//!
//! Memory layout (guest physical addresses), per queue `q`:
//!
//! ```text
//!   MEM_BASE + q * QUEUE_SPAN:  descriptor table | avail ring | used ring
//!   ... + RING_AREA:            one SLOT-byte buffer per descriptor index
//! ```
//!
//! Descriptor `i` of a queue always points into its own slot `i` (except
//! for the deliberately bad descriptors of the bad-input tests), so a
//! chain's data never overlaps another's. Nothing below `MEM_BASE` is
//! guest memory: address 0 is outside the memory table.
//!
//! Notifications are honest: [`VhostDriver::recv`] waits on the RX
//! queue's call eventfd (with `EVENT_IDX`, after publishing `used_event`),
//! and [`VhostDriver::send`] kicks only when the ring's `avail_event` (or
//! the `NO_NOTIFY` flag) asks for it, so a back-end that forgets to notify
//! or to publish its event index stalls the test instead of being papered
//! over by polling.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use vhost::vhost_user::message::VhostUserHeaderFlag;
use vhost::vhost_user::{
    Frontend, VhostUserFrontend, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::*;
use virtio_bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_USED_F_NO_NOTIFY,
};
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Guest physical address of the first byte of guest memory.
pub const MEM_BASE: u64 = 0x10_0000;
/// Bytes of ring structures at the start of each queue's area.
const RING_AREA: u64 = 0x4000;
/// Bytes of each descriptor's buffer.
pub const SLOT: usize = 4096;
/// The largest queue the layout holds.
pub const MAX_QUEUE_SIZE: u16 = 256;
/// Bytes of guest memory per queue.
const QUEUE_SPAN: u64 = RING_AREA + MAX_QUEUE_SIZE as u64 * SLOT as u64;
/// Size of `virtio_net_hdr_v1`.
pub const HDR_LEN: usize = 12;

pub const NEEDS_CSUM: u8 = VIRTIO_NET_HDR_F_NEEDS_CSUM as u8;
pub const DATA_VALID: u8 = VIRTIO_NET_HDR_F_DATA_VALID as u8;
pub const GSO_NONE: u8 = VIRTIO_NET_HDR_GSO_NONE as u8;
pub const GSO_TCPV4: u8 = VIRTIO_NET_HDR_GSO_TCPV4 as u8;
pub const GSO_TCPV6: u8 = VIRTIO_NET_HDR_GSO_TCPV6 as u8;

pub const fn bit(n: u32) -> u64 {
    1 << n
}

/// The virtio feature bits passt must offer (the brief's list).
pub const OFFERED: u64 = bit(VIRTIO_F_VERSION_1)
    | bit(VIRTIO_NET_F_MRG_RXBUF)
    | bit(VIRTIO_NET_F_CSUM)
    | bit(VIRTIO_NET_F_GUEST_CSUM)
    | bit(VIRTIO_NET_F_GUEST_TSO4)
    | bit(VIRTIO_NET_F_GUEST_TSO6)
    | bit(VIRTIO_NET_F_HOST_TSO4)
    | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_RING_F_EVENT_IDX)
    | bit(VIRTIO_NET_F_MQ)
    | VhostUserVirtioFeatures::LOG_ALL.bits()
    | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();

/// `virtio_net_hdr_v1`, little-endian on the wire (`VERSION_1`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    pub num_buffers: u16,
}

impl NetHdr {
    pub fn to_bytes(self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> NetHdr {
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        NetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
            num_buffers: u(10),
        }
    }
}

/// A frame read from an RX queue: its header, the frame after it, and how
/// many buffers it took.
#[derive(Clone, Debug)]
pub struct RxFrame {
    pub hdr: NetHdr,
    pub frame: Vec<u8>,
    pub buffers: usize,
}

/// How to set the device up.
#[derive(Clone, Copy, Debug)]
pub struct Opts {
    /// Queue pairs to set up and enable.
    pub pairs: usize,
    /// Entries per queue (a power of two, at most [`MAX_QUEUE_SIZE`]).
    pub queue_size: u16,
    /// Virtio features to acknowledge, of those offered.
    pub features: u64,
    /// Protocol features to acknowledge, of those offered.
    pub protocol: VhostUserProtocolFeatures,
    /// Also look at the used ring when the call eventfd stays quiet: for
    /// tests about something else than notifications.
    pub poll_used: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            pairs: 1,
            queue_size: MAX_QUEUE_SIZE,
            // Not LOG_ALL: QEMU acknowledges it only while migrating, with
            // a log region set.
            features: OFFERED & !VhostUserVirtioFeatures::LOG_ALL.bits(),
            protocol: VhostUserProtocolFeatures::MQ
                | VhostUserProtocolFeatures::REPLY_ACK
                | VhostUserProtocolFeatures::LOG_SHMFD
                | VhostUserProtocolFeatures::RARP,
            poll_used: false,
        }
    }
}

/// Guest memory: one memfd region at [`MEM_BASE`].
pub struct GuestMem {
    pub mem: GuestMemoryMmap,
    pub size: u64,
}

impl GuestMem {
    pub fn new(size: u64) -> GuestMem {
        let fd = rustix::fs::memfd_create("passt-rs-test-guest", rustix::fs::MemfdFlags::CLOEXEC)
            .expect("memfd_create");
        rustix::fs::ftruncate(&fd, size).expect("ftruncate memfd");
        let file = File::from(fd);
        let region = GuestRegionMmap::from_range(
            GuestAddress(MEM_BASE),
            size as usize,
            Some(FileOffset::new(file, 0)),
        )
        .expect("map guest memory");
        let mem = GuestMemoryMmap::from_regions(vec![region]).expect("guest memory");
        GuestMem { mem, size }
    }

    pub fn region_info(&self) -> VhostUserMemoryRegionInfo {
        let region = self.mem.iter().next().expect("one region");
        VhostUserMemoryRegionInfo::from_guest_region(region).expect("region info")
    }

    pub fn write(&self, addr: u64, data: &[u8]) {
        self.mem
            .write_slice(data, GuestAddress(addr))
            .expect("write guest memory");
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem
            .read_slice(&mut v, GuestAddress(addr))
            .expect("read guest memory");
        v
    }

    pub fn store_u16(&self, addr: u64, v: u16) {
        self.mem
            .store(v.to_le(), GuestAddress(addr), Ordering::Release)
            .expect("store u16");
    }

    pub fn load_u16(&self, addr: u64) -> u16 {
        u16::from_le(
            self.mem
                .load(GuestAddress(addr), Ordering::Acquire)
                .expect("load u16"),
        )
    }

    pub fn load_u32(&self, addr: u64) -> u32 {
        u32::from_le(
            self.mem
                .load(GuestAddress(addr), Ordering::Acquire)
                .expect("load u32"),
        )
    }
}

/// The driver's side of one split ring.
pub struct Vring {
    pub index: usize,
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub bufs: u64,
    pub kick: EventFd,
    pub call: EventFd,
    free: Vec<u16>,
    /// Per head: the descriptors of its chain and, for RX, its buffer size.
    chains: Vec<Option<(Vec<u16>, u32)>>,
    /// Next avail index to publish.
    pub avail_idx: u16,
    /// Next used index to consume.
    pub last_used: u16,
    /// Kicks sent and skipped (the device asked for none).
    pub kicks: u64,
    pub kicks_skipped: u64,
    /// Buffers of a frame being reassembled (MRG_RXBUF).
    partial: Vec<(Vec<u8>, u32)>,
}

impl Vring {
    fn new(index: usize, size: u16) -> Vring {
        let base = MEM_BASE + index as u64 * QUEUE_SPAN;
        let desc = base;
        let avail = desc + 16 * u64::from(size);
        // The used ring is 4-byte aligned.
        let used = (avail + 6 + 2 * u64::from(size) + 3) & !3;
        assert!(used + 6 + 8 * u64::from(size) <= base + RING_AREA);
        Vring {
            index,
            size,
            desc,
            avail,
            used,
            bufs: base + RING_AREA,
            kick: EventFd::new(EFD_NONBLOCK).expect("eventfd"),
            call: EventFd::new(EFD_NONBLOCK).expect("eventfd"),
            free: (0..size).rev().collect(),
            chains: vec![None; usize::from(size)],
            avail_idx: 0,
            last_used: 0,
            kicks: 0,
            kicks_skipped: 0,
            partial: Vec::new(),
        }
    }

    pub fn slot(&self, i: u16) -> u64 {
        self.bufs + u64::from(i) * SLOT as u64
    }

    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Writes descriptor `i`.
    pub fn write_desc(&self, m: &GuestMem, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        m.write(self.desc + 16 * u64::from(i), &d);
    }

    /// Puts `head` in the next avail ring entry, not yet published.
    pub fn push_avail(&mut self, m: &GuestMem, head: u16) {
        let slot = self.avail_idx % self.size;
        m.write(self.avail + 4 + 2 * u64::from(slot), &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
    }

    /// Publishes the avail index (after the entries and descriptors).
    pub fn publish(&self, m: &GuestMem, idx: u16) {
        fence(Ordering::SeqCst);
        m.store_u16(self.avail + 2, idx);
        fence(Ordering::SeqCst);
    }

    pub fn used_idx(&self, m: &GuestMem) -> u16 {
        m.load_u16(self.used + 2)
    }

    /// `avail_event`, which the device writes after the used ring.
    pub fn avail_event(&self, m: &GuestMem) -> u16 {
        m.load_u16(self.used + 4 + 8 * u64::from(self.size))
    }

    /// Sets `used_event`, after the avail ring.
    pub fn set_used_event(&self, m: &GuestMem, v: u16) {
        m.store_u16(self.avail + 4 + 2 * u64::from(self.size), v);
        fence(Ordering::SeqCst);
    }

    /// Kicks if the device wants it: `old` is the avail index before the
    /// entries just published.
    fn notify(&mut self, m: &GuestMem, event_idx: bool, old: u16) {
        fence(Ordering::SeqCst);
        let want = if event_idx {
            let ev = self.avail_event(m);
            // vring_need_event()
            self.avail_idx.wrapping_sub(ev).wrapping_sub(1) < self.avail_idx.wrapping_sub(old)
        } else {
            m.load_u16(self.used) & VRING_USED_F_NO_NOTIFY as u16 == 0
        };
        if want {
            self.kick.write(1).expect("kick");
            self.kicks += 1;
        } else {
            self.kicks_skipped += 1;
        }
    }

    /// Next used element (id, len), if any.
    fn pop_used(&mut self, m: &GuestMem) -> Option<(u32, u32)> {
        if self.used_idx(m) == self.last_used {
            return None;
        }
        fence(Ordering::SeqCst);
        let e = self.used + 4 + 8 * u64::from(self.last_used % self.size);
        let id = m.load_u32(e);
        let len = m.load_u32(e + 4);
        self.last_used = self.last_used.wrapping_add(1);
        Some((id, len))
    }

    fn alloc(&mut self) -> Option<u16> {
        self.free.pop()
    }

    /// Returns a used chain's descriptors to the free list; its RX size.
    fn release(&mut self, head: u32) -> u32 {
        let (descs, size) = self
            .chains
            .get_mut(head as usize)
            .and_then(Option::take)
            .unwrap_or_else(|| panic!("queue {}: used id {head} not in flight", self.index));
        self.free.extend(descs);
        size
    }
}

/// One poll() on eventfds, with a deadline; the indices of readable ones.
pub fn wait_fds(fds: &[&EventFd], timeout: Duration) -> Vec<usize> {
    // SAFETY: each EventFd outlives this call, which only borrows its
    // descriptor for the poll().
    let borrowed: Vec<BorrowedFd<'_>> = fds
        .iter()
        .map(|e| unsafe { BorrowedFd::borrow_raw(e.as_raw_fd()) })
        .collect();
    let mut pfds: Vec<rustix::event::PollFd<'_>> = borrowed
        .iter()
        .map(|b| rustix::event::PollFd::from_borrowed_fd(*b, rustix::event::PollFlags::IN))
        .collect();
    let ts = rustix::event::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    match rustix::event::poll(&mut pfds, Some(&ts)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => {}
        Err(e) => panic!("poll: {e}"),
    }
    pfds.iter()
        .enumerate()
        .filter(|(_, p)| !p.revents().is_empty())
        .map(|(i, _)| i)
        .collect()
}

/// The test's front-end: a connected, negotiated vhost-user device.
pub struct VhostDriver {
    pub fe: Frontend,
    /// The same socket, for hand-made messages.
    pub raw: UnixStream,
    pub mem: GuestMem,
    pub queues: Vec<Vring>,
    pub offered: u64,
    pub acked: u64,
    pub protocol_offered: VhostUserProtocolFeatures,
    pub queue_num: u64,
    pub opts: Opts,
    /// Frames received on each RX queue beyond what a recv asked for.
    ready: Vec<VecDeque<RxFrame>>,
}

/// Connects to `path`, retrying while passt is not listening yet.
pub fn connect(path: &Path) -> UnixStream {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) if Instant::now() >= end => panic!("connect {}: {e}", path.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl VhostDriver {
    /// Connects to passt's vhost-user socket and sets the device up.
    pub fn connect(path: &Path, opts: Opts) -> VhostDriver {
        Self::over(connect(path), opts)
    }

    /// Sets the device up over a connected socket, as QEMU does: features,
    /// protocol features, queue count, owner, memory table, then every
    /// queue of `opts.pairs` pairs, then enables them.
    pub fn over(s: UnixStream, opts: Opts) -> VhostDriver {
        assert!(opts.queue_size.is_power_of_two() && opts.queue_size <= MAX_QUEUE_SIZE);
        let raw = s.try_clone().expect("clone socket");
        let nq = 2 * opts.pairs;
        let mut fe = Frontend::from_stream(s, nq as u64);
        let offered = fe.get_features().expect("GET_FEATURES");
        let acked = offered & opts.features;
        fe.set_features(acked).expect("SET_FEATURES");
        let protocol_offered = fe.get_protocol_features().expect("GET_PROTOCOL_FEATURES");
        let proto = protocol_offered & opts.protocol;
        fe.set_protocol_features(proto)
            .expect("SET_PROTOCOL_FEATURES");
        if proto.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            // Every message acknowledged: we know passt took it before the
            // next one, and an error shows at the message that caused it.
            fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        let queue_num = if proto.contains(VhostUserProtocolFeatures::MQ) {
            fe.get_queue_num().expect("GET_QUEUE_NUM")
        } else {
            1
        };
        // QEMU reads GET_QUEUE_NUM as queue pairs for virtio-net; the
        // vhost crate then refuses queue indices beyond it.
        assert!(
            queue_num >= nq as u64,
            "GET_QUEUE_NUM says {queue_num}, {nq} queues ({} pairs) wanted",
            opts.pairs
        );
        fe.set_owner().expect("SET_OWNER");
        let mem = GuestMem::new(nq as u64 * QUEUE_SPAN);
        fe.set_mem_table(&[mem.region_info()])
            .expect("SET_MEM_TABLE");
        let mut queues = Vec::new();
        for q in 0..nq {
            let r = Vring::new(q, opts.queue_size);
            fe.set_vring_num(q, r.size).expect("SET_VRING_NUM");
            // Ring addresses are the front-end's own virtual addresses.
            let va = |gpa: u64| gpa - MEM_BASE + mem.region_info().userspace_addr;
            let cfg = VringConfigData {
                queue_max_size: MAX_QUEUE_SIZE,
                queue_size: r.size,
                flags: 0,
                desc_table_addr: va(r.desc),
                used_ring_addr: va(r.used),
                avail_ring_addr: va(r.avail),
                log_addr: None,
            };
            fe.set_vring_addr(q, &cfg).expect("SET_VRING_ADDR");
            fe.set_vring_base(q, 0).expect("SET_VRING_BASE");
            fe.set_vring_call(q, &r.call).expect("SET_VRING_CALL");
            fe.set_vring_kick(q, &r.kick).expect("SET_VRING_KICK");
            queues.push(r);
        }
        for q in 0..nq {
            fe.set_vring_enable(q, true).expect("SET_VRING_ENABLE");
        }
        VhostDriver {
            fe,
            raw,
            mem,
            queues,
            offered,
            acked,
            protocol_offered,
            queue_num,
            opts,
            ready: (0..opts.pairs).map(|_| VecDeque::new()).collect(),
        }
    }

    pub fn has(&self, feature: u32) -> bool {
        self.acked & bit(feature) != 0
    }

    fn event_idx(&self) -> bool {
        self.has(VIRTIO_RING_F_EVENT_IDX)
    }

    /// Header and frame in one descriptor if they fit, else the header
    /// alone and the frame in [`SLOT`]-sized pieces.
    pub fn send(&mut self, pair: usize, hdr: NetHdr, frame: &[u8]) {
        let cuts = if HDR_LEN + frame.len() <= SLOT {
            vec![]
        } else {
            vec![HDR_LEN]
        };
        self.send_cut(pair, hdr, frame, &cuts);
    }

    /// Puts header and frame on pair `pair`'s TX queue, one descriptor
    /// per piece between `cuts` (offsets into header + frame; pieces
    /// longer than [`SLOT`] are cut further), and kicks if asked to.
    pub fn send_cut(&mut self, pair: usize, hdr: NetHdr, frame: &[u8], cuts: &[usize]) {
        let mut bytes = hdr.to_bytes().to_vec();
        bytes.extend_from_slice(frame);
        let mut pieces = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
            while at < c {
                let end = c.min(at + SLOT);
                pieces.push(&bytes[at..end]);
                at = end;
            }
        }
        let q = 2 * pair + 1;
        self.reap_tx(q, pieces.len());
        let event_idx = self.event_idx();
        let m = &self.mem;
        let r = &mut self.queues[q];
        let ids: Vec<u16> = (0..pieces.len()).map(|_| r.alloc().unwrap()).collect();
        for (k, p) in pieces.iter().enumerate() {
            let i = ids[k];
            m.write(r.slot(i), p);
            let (flags, next) = match ids.get(k + 1) {
                Some(&n) => (VRING_DESC_F_NEXT as u16, n),
                None => (0, 0),
            };
            r.write_desc(m, i, r.slot(i), p.len() as u32, flags, next);
        }
        r.chains[usize::from(ids[0])] = Some((ids.clone(), 0));
        let old = r.avail_idx;
        r.push_avail(m, ids[0]);
        r.publish(m, r.avail_idx);
        r.notify(m, event_idx, old);
    }

    /// Frees used TX chains until `need` descriptors are free, waiting
    /// for the device (bounded).
    fn reap_tx(&mut self, q: usize, need: usize) {
        assert!(
            need <= usize::from(self.queues[q].size),
            "chain longer than the ring"
        );
        let end = Instant::now() + Duration::from_secs(5);
        let event_idx = self.event_idx();
        loop {
            let m = &self.mem;
            let r = &mut self.queues[q];
            while let Some((id, _)) = r.pop_used(m) {
                r.release(id);
            }
            if r.free_count() >= need {
                return;
            }
            assert!(
                Instant::now() < end,
                "TX queue {q}: passt returned no descriptors ({} free, {need} needed)",
                r.free_count()
            );
            if event_idx {
                r.set_used_event(m, r.last_used);
            }
            let _ = wait_fds(&[&r.call], Duration::from_millis(100));
            let _ = r.call.read();
        }
    }

    /// Offers `n` device-writable buffers of `size` bytes on pair `pair`'s
    /// RX queue, and kicks if asked to.
    pub fn post_rx_buffers(&mut self, pair: usize, n: usize, size: usize) {
        assert!(size <= SLOT);
        let event_idx = self.event_idx();
        let q = 2 * pair;
        let m = &self.mem;
        let r = &mut self.queues[q];
        let old = r.avail_idx;
        for _ in 0..n {
            let Some(i) = r.alloc() else { break };
            r.write_desc(m, i, r.slot(i), size as u32, VRING_DESC_F_WRITE as u16, 0);
            r.chains[usize::from(i)] = Some((vec![i], size as u32));
            r.push_avail(m, i);
        }
        if r.avail_idx != old {
            r.publish(m, r.avail_idx);
            r.notify(m, event_idx, old);
        }
    }

    /// Takes what the device put on RX queue `q`: completes frames
    /// (MRG_RXBUF: `num_buffers` buffers each) into `ready`, and offers
    /// the used buffers again.
    fn drain_rx(&mut self, pair: usize) {
        let q = 2 * pair;
        let event_idx = self.event_idx();
        let mrg = self.has(VIRTIO_NET_F_MRG_RXBUF);
        let m = &self.mem;
        let r = &mut self.queues[q];
        let old = r.avail_idx;
        while let Some((id, len)) = r.pop_used(m) {
            let size = r.release(id);
            assert!(
                len <= size,
                "RX queue {q}: used length {len} beyond the {size}-byte buffer"
            );
            let data = m.read(r.slot(id as u16), len as usize);
            r.partial.push((data, size));
            // The same buffer again, as a driver refills its ring.
            let i = r.alloc().expect("a descriptor was just freed");
            r.write_desc(m, i, r.slot(i), size, VRING_DESC_F_WRITE as u16, 0);
            r.chains[usize::from(i)] = Some((vec![i], size));
            r.push_avail(m, i);
            let first = &r.partial[0].0;
            assert!(
                first.len() >= HDR_LEN,
                "RX queue {q}: first buffer of a frame holds {} bytes, no header",
                first.len()
            );
            let hdr = NetHdr::from_bytes(first);
            let want = if mrg { usize::from(hdr.num_buffers) } else { 1 };
            assert!(want >= 1, "RX queue {q}: num_buffers is 0 in {hdr:?}");
            if r.partial.len() < want {
                continue;
            }
            let mut frame = Vec::new();
            for (k, (b, size)) in r.partial.iter().enumerate() {
                // Every buffer but the last is filled completely.
                if k + 1 < want {
                    assert_eq!(
                        b.len(),
                        *size as usize,
                        "RX queue {q}: buffer {k} of {want} not full"
                    );
                }
                frame.extend_from_slice(if k == 0 { &b[HDR_LEN..] } else { b });
            }
            let buffers = r.partial.len();
            r.partial.clear();
            self.ready[pair].push_back(RxFrame {
                hdr,
                frame,
                buffers,
            });
        }
        if r.avail_idx != old {
            r.publish(m, r.avail_idx);
            r.notify(m, event_idx, old);
        }
    }

    /// Next frame on pair `pair`'s RX queue before `deadline`.
    pub fn recv(&mut self, pair: usize, deadline: Instant) -> Option<RxFrame> {
        self.recv_from(&[pair], deadline).map(|(_, f)| f)
    }

    /// Next frame on any of `pairs`' RX queues before `deadline`, and its
    /// pair.
    pub fn recv_from(&mut self, pairs: &[usize], deadline: Instant) -> Option<(usize, RxFrame)> {
        loop {
            for &p in pairs {
                self.drain_rx(p);
                if let Some(f) = self.ready[p].pop_front() {
                    return Some((p, f));
                }
            }
            // Ask for a call at the next used entry, then look again: the
            // device may have used one before it saw the request.
            if self.event_idx() {
                for &p in pairs {
                    let r = &self.queues[2 * p];
                    r.set_used_event(&self.mem, r.last_used);
                }
            }
            let mut any = false;
            for &p in pairs {
                let r = &self.queues[2 * p];
                any |= r.used_idx(&self.mem) != r.last_used;
            }
            if any {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let mut wait = deadline - now;
            if self.opts.poll_used {
                wait = wait.min(Duration::from_millis(50));
            }
            let calls: Vec<&EventFd> = pairs.iter().map(|&p| &self.queues[2 * p].call).collect();
            for i in wait_fds(&calls, wait) {
                let _ = calls[i].read();
            }
        }
    }

    /// Whether pair `pair`'s RX call eventfd fires before `deadline`
    /// (consumes the signal).
    pub fn call_signalled(&self, q: usize, deadline: Instant) -> bool {
        let wait = deadline.saturating_duration_since(Instant::now());
        let r = &self.queues[q];
        let hit = !wait_fds(&[&r.call], wait).is_empty();
        if hit {
            let _ = r.call.read();
        }
        hit
    }
}
