//! passt as a vhost-user back-end: frames straight from and into the
//! guest's virtqueues, in memory QEMU shares with us.
//!
//! # Theory of operation
//!
//! QEMU (the *front-end*) connects to our UNIX socket (or hands us a
//! connected one with `--fd`) and speaks the vhost-user protocol on it:
//! feature negotiation, then `SET_MEM_TABLE` with one file descriptor per
//! guest memory region, then, for each virtqueue, its size, the addresses
//! of its three parts (descriptor table, available ring, used ring), and
//! two eventfds: *kick* (the guest added buffers) and *call* (we used
//! some: interrupt the guest). The `vhost` crate parses and answers the
//! messages ([`BackendReqHandler::handle_request`], called from our event
//! loop when the socket is readable); [`Device`] implements its
//! `VhostUserBackendReqHandlerMut` and keeps the state. The same stack's
//! `vhost-user-backend` does not fit: it serves each queue from a thread
//! of its own, while our flows and queues belong to one loop (see
//! `Cargo.toml` for the cost measured).
//!
//! ## Memory
//!
//! Each region is mapped shared (`vm-memory`'s `GuestMemoryMmap`, one
//! `mmap` per region, at the offset QEMU gives). Every guest address we
//! touch, descriptor or ring, goes through it, so an address outside the
//! regions is an error (the frame is dropped with a logged reason), never
//! an access outside the mappings. Ring addresses arrive as QEMU's own
//! virtual addresses; they are translated to guest-physical through the
//! table. A new table replaces the old one as a whole; the old mappings go
//! when the last reference does.
//!
//! ## Rings
//!
//! Queue pair `k` is virtqueue `2k` (receive: we write frames for the
//! guest into its buffers) and `2k + 1` (transmit: the guest's frames for
//! us). `virtio-queue` walks the split rings: a descriptor chain is
//! bounded by the ring size (a loop ends there), an available index more
//! than a ring ahead of ours is refused, indirect tables are followed
//! once. Every frame carries the 12-byte `virtio_net_hdr_v1` in front.
//!
//! - **Transmit** (kick on `2k + 1`): chains are popped until the ring is
//!   empty or the receive batch full, each copied into the batch (the
//!   same [`RxBatch`] the other back-ends fill) and returned at once with
//!   used length 0. Notifications are off while we drain and re-armed at
//!   the end (with `EVENT_IDX`, by publishing `avail_event`), and the ring
//!   is checked once more after re-arming, so a buffer added in between is
//!   not missed. The header's `NEEDS_CSUM` becomes the batch's "checksum
//!   partial" flag; a `TCPV4`/`TCPV6` super-segment (`HOST_TSO`) is one
//!   frame of up to 64 KiB for the protocols, which write its payload to
//!   the socket at once.
//! - **Receive** (at flush): each queued frame goes to the receive ring of
//!   its flow's queue pair ([`super::TxQueue`] tags frames). With
//!   `MRG_RXBUF`, chains are taken until their writable space holds header
//!   and frame, and `num_buffers` says how many; without it, one chain
//!   must hold it all. All the used elements of a frame are written before
//!   the used index moves past them: the guest reads `num_buffers` elements
//!   as soon as it sees the first. Partial checksums go out as
//!   `NEEDS_CSUM` (`GUEST_CSUM`), complete ones as `DATA_VALID`; TCP
//!   super-frames of up to 64 KiB carry `gso_type`/`gso_size`
//!   (`GUEST_TSO4/6`: TCP builds them when [`super::Tap::tso`] says so).
//!   The guest is interrupted once per ring per flush, if its `used_event`
//!   (or the no-interrupt flag) asks for it.
//! - **Backpressure**: when a ring has no buffer left, the chains taken for
//!   the frame are put back, and that frame and the ones after it stay in
//!   the transmit queue ([`super::Tap::blocked`]); the ring's
//!   notifications are re-armed, so the guest's kick (buffers added) or
//!   the next loop iteration sends them. TCP connections that find the
//!   queue full stop reading their socket until it drains, and do not
//!   retransmit meanwhile: nothing was lost. A frame larger than the whole
//!   ring is dropped and counted.
//! - **Missed notifications** ([`VhostUser::poll`]): under single-vCPU
//!   TCG the guest's memory barriers are not host barriers, so a kick or
//!   an interrupt now and then goes missing; while traffic flows, the loop
//!   looks at the rings every few milliseconds.
//!
//! ## Dirty logging
//!
//! With `LOG_ALL` acked and a log area given (`SET_LOG_BASE`, `LOG_SHMFD`)
//! every page we write in guest memory, buffers and used rings, is marked
//! in the log, one bit per 4 KiB page, so that QEMU migrates it.
//!
//! ## Failures
//!
//! A message the crate cannot frame (truncated, oversized, bad file
//! descriptors) or a socket error ends the session: the front-end is
//! disconnected, and we wait for the next one or exit with `--one-off`.
//! A request we refuse (bad ring index or size, an address outside the
//! memory table) is answered with an error and the session goes on. A
//! stalled message times out after [`MSG_TIMEOUT`].

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::SocketFlags;
use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserConfigFlags, VhostUserInflight,
    VhostUserLog, VhostUserMemoryRegion, VhostUserProtocolFeatures, VhostUserShMemConfig,
    VhostUserSharedMsg, VhostUserSingleMemoryRegion, VhostUserVirtioFeatures,
    VhostUserVringAddrFlags, VhostUserVringState,
};
use vhost::vhost_user::{
    Backend as FrontendChannel, BackendReqHandler, Error as VuError, GpuBackend,
    Result as VuResult, VhostUserBackendReqHandlerMut,
};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MQ, VIRTIO_NET_F_MRG_RXBUF,
};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::mmap::MmapRegion;
use vm_memory::{
    Address, Bytes, FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, VolatileMemory,
};

use super::{RxBatch, RxEnd, TapStats, TxFrame, TxQueue, FRAME_MIN};

/// Queue pairs we serve at most (`GET_QUEUE_NUM`).
pub(crate) const PAIRS: usize = 8;
const VRINGS: usize = 2 * PAIRS;
/// Largest ring size we accept (QEMU's maximum for virtio-net).
const QUEUE_SIZE_MAX: u16 = 1024;
/// `virtio_net_hdr_v1`: flags, gso_type, hdr_len, gso_size, csum_start,
/// csum_offset, num_buffers (little-endian).
pub(crate) const HDR_LEN: usize = 12;
/// Most buffers one received frame may span with `MRG_RXBUF`.
const MRG_MAX: usize = 64;
/// A message that stops half-way is abandoned after this long.
const MSG_TIMEOUT: Duration = Duration::from_secs(2);
/// How often rings are looked at while traffic flows ([`VhostUser::poll`]).
const POLL_MS: i32 = 5;
/// For how long after the last frame.
const POLL_FOR: Duration = Duration::from_secs(2);
/// Dirty log granularity.
const LOG_PAGE: u64 = 4096;

const HDR_F_NEEDS_CSUM: u8 = 1;

const fn bit(b: u32) -> u64 {
    1 << b
}

/// The virtio features we offer: upstream's (`VERSION_1`, `MRG_RXBUF`,
/// `LOG_ALL`, protocol features) and the offloads, event index and
/// multi-queue, which upstream does not offer.
pub(crate) const FEATURES: u64 = bit(VIRTIO_F_VERSION_1)
    | bit(VIRTIO_NET_F_MRG_RXBUF)
    | bit(VIRTIO_NET_F_CSUM)
    | bit(VIRTIO_NET_F_GUEST_CSUM)
    | bit(VIRTIO_NET_F_GUEST_TSO4)
    | bit(VIRTIO_NET_F_GUEST_TSO6)
    | bit(VIRTIO_NET_F_HOST_TSO4)
    | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_NET_F_MQ)
    | bit(VIRTIO_RING_F_EVENT_IDX)
    | VhostUserVirtioFeatures::LOG_ALL.bits()
    | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();

/// The protocol features we offer.
pub(crate) fn protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::REPLY_ACK
        | VhostUserProtocolFeatures::LOG_SHMFD
        | VhostUserProtocolFeatures::RARP
}

type Mem = GuestMemoryMmap<()>;

/// One virtqueue.
struct Vring {
    queue: Queue,
    kick: Option<File>,
    call: Option<File>,
    /// `SET_VRING_ENABLE`. On until a front-end turns it off: QEMU (7.2
    /// at least) enables rings before `SET_FEATURES`, and the `vhost`
    /// crate refuses `SET_VRING_ENABLE` until protocol features are acked,
    /// so the enabling never reaches us. Disabling, at run time (fewer
    /// queue pairs), does.
    enabled: bool,
    /// Kick descriptor received: the ring may be used.
    started: bool,
    /// Refused for good (bad available index) until reconfigured.
    broken: bool,
    /// Guest address of the used ring, for the dirty log, if QEMU asked
    /// for used-ring logging (`VHOST_VRING_F_LOG`).
    log_used: Option<u64>,
    /// Kicks seen, and chains taken: for the debug log of ring states.
    kicks: u64,
    chains: u64,
    /// The used index when we last interrupted the guest for this ring.
    irq_used: u16,
}

impl Vring {
    fn new() -> Self {
        Vring {
            // Cannot fail: the maximum size is a power of two.
            queue: Queue::new(QUEUE_SIZE_MAX).unwrap_or_default(),
            kick: None,
            call: None,
            enabled: true,
            started: false,
            broken: false,
            log_used: None,
            kicks: 0,
            chains: 0,
            irq_used: 0,
        }
    }

    fn usable(&self, mem: &Mem) -> bool {
        self.started && self.enabled && !self.broken && self.queue.is_valid(mem)
    }

    /// Interrupts the guest, if it wants one now.
    fn signal(&mut self, mem: &Mem) {
        if !self.queue.needs_notification(mem).unwrap_or(true) {
            return;
        }
        self.interrupt();
    }

    /// Interrupts the guest.
    fn interrupt(&mut self) {
        self.irq_used = self.queue.next_used();
        if let Some(call) = &self.call {
            let _ = rustix::io::write(call, &1u64.to_ne_bytes());
        }
    }
}

/// A mapping from QEMU's addresses to guest-physical ones.
#[derive(Clone, Copy)]
struct Mapping {
    vmm: u64,
    size: u64,
    gpa: u64,
}

/// The device state the front-end configures.
pub(crate) struct Device {
    acked: u64,
    protocol: u64,
    owner: bool,
    mem: Option<Mem>,
    maps: Vec<Mapping>,
    vrings: Vec<Vring>,
    /// Rings whose kick descriptor changed: the loop (re)watches them.
    kicks_changed: u32,
    /// The dirty log (`SET_LOG_BASE`).
    log: Option<MmapRegion<()>>,
}

fn invalid(what: &str) -> VuError {
    log::warn!("vhost-user: {what}");
    VuError::ReqHandlerError(io::Error::new(
        io::ErrorKind::InvalidInput,
        what.to_string(),
    ))
}

/// Refuses a mapping of `len` bytes at `offset` that does not lie within
/// `file`: the pages past its end would be mapped all the same, and the
/// first access to one (a ring index, a buffer) kills us with `SIGBUS`.
/// Found by the `vhost_user` fuzz target. Only regular files (memfd,
/// tmpfs, hugetlbfs) have a size to check against: a device (`/dev/dax`)
/// reports none. A front-end that shrinks the file afterwards can still do
/// that; QEMU never does (its RAM files keep their size while the guest
/// runs).
fn within_file(file: &File, offset: u64, len: u64) -> VuResult<()> {
    let meta = file
        .metadata()
        .map_err(|e| invalid(&format!("can't stat a memory file: {e}")))?;
    if !meta.is_file() {
        return Ok(());
    }
    let size = meta.len();
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(invalid(&format!(
            "mapping of {len:#x} bytes at {offset:#x} past the end of its file ({size:#x} bytes)"
        )));
    }
    Ok(())
}

impl Device {
    fn new() -> Self {
        Device {
            acked: 0,
            protocol: 0,
            owner: false,
            mem: None,
            maps: Vec::new(),
            vrings: (0..VRINGS).map(|_| Vring::new()).collect(),
            kicks_changed: 0,
            log: None,
        }
    }

    fn vring(&mut self, index: u32) -> VuResult<&mut Vring> {
        self.vrings
            .get_mut(index as usize)
            .ok_or_else(|| invalid(&format!("no virtqueue {index}")))
    }

    fn vmm_to_gpa(&self, vmm: u64) -> VuResult<u64> {
        self.maps
            .iter()
            .find(|m| vmm >= m.vmm && vmm - m.vmm < m.size)
            .map(|m| vmm - m.vmm + m.gpa)
            .ok_or_else(|| invalid(&format!("ring address {vmm:#x} outside the memory table")))
    }

    fn has(&self, feature: u32) -> bool {
        self.acked & bit(feature) != 0
    }
}

impl Device {
    /// Logs where each started ring stands, for debugging stalls.
    fn log_rings(&self) {
        let Some(mem) = &self.mem else { return };
        for (i, v) in self
            .vrings
            .iter()
            .enumerate()
            .filter(|(_, v)| v.queue.avail_ring() != 0)
        {
            let q = &v.queue;
            let avail = q.avail_idx(mem, Ordering::Acquire).map(|w| w.0);
            let used = q.used_idx(mem, Ordering::Acquire).map(|w| w.0);
            let flags = mem.load::<u16>(GuestAddress(q.avail_ring()), Ordering::Relaxed);
            let ev_at = 4 + 2 * u64::from(q.size());
            let used_event =
                mem.load::<u16>(GuestAddress(q.avail_ring() + ev_at), Ordering::Relaxed);
            let avail_event = mem.load::<u16>(
                GuestAddress(q.used_ring() + 4 + 8 * u64::from(q.size())),
                Ordering::Relaxed,
            );
            log::debug!(
                "vhost-user: virtqueue {i}: size {} next_avail {} avail {avail:?} next_used {} \
                 used {used:?} avail_flags {flags:?} used_event {used_event:?} \
                 avail_event {avail_event:?} kicks {} chains {}{}",
                q.size(),
                q.next_avail(),
                q.next_used(),
                v.kicks,
                v.chains,
                if v.broken { " broken" } else { "" }
            );
        }
    }
}

impl VhostUserBackendReqHandlerMut for Device {
    fn set_owner(&mut self) -> VuResult<()> {
        if self.owner {
            return Err(invalid("SET_OWNER twice"));
        }
        self.owner = true;
        Ok(())
    }

    fn reset_owner(&mut self) -> VuResult<()> {
        self.owner = false;
        Ok(())
    }

    fn reset_device(&mut self) -> VuResult<()> {
        let (owner, kicks) = (self.owner, self.kicks_changed);
        *self = Device::new();
        self.owner = owner;
        self.kicks_changed = kicks;
        Ok(())
    }

    fn get_features(&mut self) -> VuResult<u64> {
        Ok(FEATURES)
    }

    fn set_features(&mut self, features: u64) -> VuResult<()> {
        if features & !FEATURES != 0 {
            return Err(invalid(&format!("features {features:#x} not offered")));
        }
        self.acked = features;
        let event_idx = self.has(VIRTIO_RING_F_EVENT_IDX);
        for v in &mut self.vrings {
            v.queue.set_event_idx(event_idx);
        }
        log::debug!("vhost-user: features {features:#x}");
        Ok(())
    }

    fn set_mem_table(
        &mut self,
        regions: &[VhostUserMemoryRegion],
        files: Vec<File>,
        postcopy: Option<bool>,
    ) -> VuResult<Option<Vec<vhost::VhostUserMemoryRegionBase>>> {
        if postcopy.is_some() {
            return Err(invalid("postcopy is not supported"));
        }
        let mut mapped = Vec::with_capacity(regions.len());
        let mut maps = Vec::with_capacity(regions.len());
        for (r, file) in regions.iter().zip(files) {
            // Copies: the message struct is packed.
            let (gpa, len, vmm, offset) =
                (r.guest_phys_addr, r.memory_size, r.user_addr, r.mmap_offset);
            let size = usize::try_from(len).map_err(|_| invalid("memory region too large"))?;
            within_file(&file, offset, len)?;
            let region = MmapRegion::<()>::from_file(FileOffset::new(file, offset), size)
                .map_err(|e| invalid(&format!("can't map a memory region: {e}")))?;
            let region = GuestRegionMmap::new(region, GuestAddress(gpa))
                .ok_or_else(|| invalid("memory region wraps around"))?;
            mapped.push(region);
            maps.push(Mapping {
                vmm,
                size: len,
                gpa,
            });
            log::debug!("vhost-user: memory region {vmm:#x}+{len:#x} at guest {gpa:#x}");
        }
        let mem = GuestMemoryMmap::from_regions(mapped)
            .map_err(|e| invalid(&format!("bad memory table: {e}")))?;
        self.mem = Some(mem);
        self.maps = maps;
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> VuResult<()> {
        let v = self.vring(index)?;
        let ok = u16::try_from(num)
            .ok()
            .filter(|&n| n <= QUEUE_SIZE_MAX)
            .is_some_and(|n| v.queue.try_set_size(n).is_ok());
        if !ok {
            return Err(invalid(&format!("virtqueue {index}: bad size {num}")));
        }
        Ok(())
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        log: u64,
    ) -> VuResult<()> {
        let desc = self.vmm_to_gpa(descriptor)?;
        let avail = self.vmm_to_gpa(available)?;
        let used_gpa = self.vmm_to_gpa(used)?;
        let mem = self.mem.clone();
        let v = self.vring(index)?;
        let set = v
            .queue
            .try_set_desc_table_address(GuestAddress(desc))
            .and_then(|()| v.queue.try_set_avail_ring_address(GuestAddress(avail)))
            .and_then(|()| v.queue.try_set_used_ring_address(GuestAddress(used_gpa)));
        if set.is_err() {
            return Err(invalid(&format!("virtqueue {index}: misaligned ring")));
        }
        v.log_used = flags
            .contains(VhostUserVringAddrFlags::VHOST_VRING_F_LOG)
            .then_some(log);
        // After a reset of the guest's driver, the used index in memory is
        // where to go on from (SET_VRING_BASE only gives the available one).
        if let Some(mem) = &mem {
            v.queue.set_ready(true);
            if let Ok(idx) = v.queue.used_idx(mem, Ordering::Acquire) {
                v.queue.set_next_used(idx.0);
            }
        }
        Ok(())
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> VuResult<()> {
        let v = self.vring(index)?;
        let base = u16::try_from(base).map_err(|_| invalid("ring base out of range"))?;
        v.queue.set_next_avail(base);
        v.queue.set_next_used(base);
        v.broken = false;
        Ok(())
    }

    fn get_vring_base(&mut self, index: u32) -> VuResult<VhostUserVringState> {
        if log::log_enabled!(log::Level::Debug) && index == 0 {
            self.log_rings();
        }
        let v = self.vring(index)?;
        // The front-end stops the ring with this request.
        v.started = false;
        v.queue.set_ready(false);
        v.kick = None;
        v.call = None;
        Ok(VhostUserVringState::new(
            index,
            u32::from(v.queue.next_avail()),
        ))
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        log::debug!("vhost-user: virtqueue {index} started");
        let v = self.vring(u32::from(index))?;
        v.started = fd.is_some();
        v.kick = fd;
        v.broken = false;
        self.kicks_changed |= 1 << index;
        Ok(())
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> VuResult<()> {
        self.vring(u32::from(index))?.call = fd;
        Ok(())
    }

    fn set_vring_err(&mut self, index: u8, _fd: Option<File>) -> VuResult<()> {
        self.vring(u32::from(index))?;
        Ok(())
    }

    fn get_protocol_features(&mut self) -> VuResult<VhostUserProtocolFeatures> {
        Ok(protocol_features())
    }

    fn set_protocol_features(&mut self, features: u64) -> VuResult<()> {
        if features & !protocol_features().bits() != 0 {
            return Err(invalid(&format!(
                "protocol features {features:#x} not offered"
            )));
        }
        self.protocol = features;
        Ok(())
    }

    fn get_queue_num(&mut self) -> VuResult<u64> {
        Ok(PAIRS as u64)
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> VuResult<()> {
        self.vring(index)?.enabled = enable;
        log::debug!(
            "vhost-user: virtqueue {index} {}",
            if enable { "enabled" } else { "disabled" }
        );
        Ok(())
    }

    fn get_config(&mut self, _: u32, _: u32, _: VhostUserConfigFlags) -> VuResult<Vec<u8>> {
        Err(invalid("GET_CONFIG: QEMU owns the configuration space"))
    }

    fn set_config(&mut self, _: u32, _: &[u8], _: VhostUserConfigFlags) -> VuResult<()> {
        Err(invalid("SET_CONFIG: QEMU owns the configuration space"))
    }

    fn set_backend_req_fd(&mut self, _backend: FrontendChannel) {}

    fn set_gpu_socket(&mut self, _: GpuBackend) -> VuResult<()> {
        Err(invalid("not a GPU"))
    }

    fn get_shared_object(&mut self, _: VhostUserSharedMsg) -> VuResult<File> {
        Err(invalid("no shared objects"))
    }

    fn get_inflight_fd(&mut self, _: &VhostUserInflight) -> VuResult<(VhostUserInflight, File)> {
        Err(invalid("no inflight tracking"))
    }

    fn set_inflight_fd(&mut self, _: &VhostUserInflight, _: File) -> VuResult<()> {
        Err(invalid("no inflight tracking"))
    }

    fn get_max_mem_slots(&mut self) -> VuResult<u64> {
        Err(invalid("no memory slots"))
    }

    fn add_mem_region(
        &mut self,
        _: &VhostUserSingleMemoryRegion,
        _: File,
        _: Option<bool>,
    ) -> VuResult<Option<vhost::VhostUserMemoryRegionBase>> {
        Err(invalid("no memory slots"))
    }

    fn remove_mem_region(&mut self, _: &VhostUserSingleMemoryRegion) -> VuResult<()> {
        Err(invalid("no memory slots"))
    }

    fn set_device_state_fd(
        &mut self,
        _: VhostTransferStateDirection,
        _: VhostTransferStatePhase,
        _: File,
    ) -> VuResult<Option<File>> {
        Err(invalid("no device state transfer (not negotiated)"))
    }

    fn check_device_state(&mut self) -> VuResult<()> {
        Err(invalid("no device state transfer (not negotiated)"))
    }

    fn get_shmem_config(&mut self) -> VuResult<VhostUserShMemConfig> {
        Err(invalid("no shared memory regions"))
    }

    fn set_log_base(&mut self, log: &VhostUserLog, file: File) -> VuResult<()> {
        let size = usize::try_from(log.mmap_size).map_err(|_| invalid("dirty log too large"))?;
        within_file(&file, log.mmap_offset, log.mmap_size)?;
        let region = MmapRegion::<()>::from_file(FileOffset::new(file, log.mmap_offset), size)
            .map_err(|e| invalid(&format!("can't map the dirty log: {e}")))?;
        self.log = Some(region);
        log::debug!("vhost-user: dirty log of {size} bytes");
        Ok(())
    }
}

/// What a control message did, for the event loop.
pub(crate) enum Control {
    /// Handled; nothing else to do.
    Done,
    /// The front-end is gone, or broke the protocol: disconnect.
    Closed(io::Error),
}

/// Locks the device. Nothing panics with the lock held (`panic = "abort"`
/// anyway), so a poisoned lock still holds a consistent device.
fn lock(dev: &Mutex<Device>) -> MutexGuard<'_, Device> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

/// The back-end: the listening socket, the session with the front-end,
/// and the device it configures.
pub(crate) struct VhostUser {
    listener: Option<OwnedFd>,
    session: Option<BackendReqHandler<Mutex<Device>>>,
    /// A duplicate of the session's socket, for epoll (the crate lends
    /// its own only as a raw descriptor).
    conn: Option<OwnedFd>,
    /// Shared with the session, which configures it; the data path locks
    /// it once per batch (never contended: one thread).
    dev: Arc<Mutex<Device>>,
    /// When frames last went either way: [`VhostUser::poll`] runs often
    /// for a while after.
    active: Option<Instant>,
}

impl VhostUser {
    fn with(listener: Option<OwnedFd>) -> Self {
        VhostUser {
            listener,
            session: None,
            conn: None,
            dev: Arc::new(Mutex::new(Device::new())),
            active: None,
        }
    }

    /// A back-end without a session, whose device the fuzz harness
    /// configures by calling the request handlers itself.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn detached() -> Self {
        Self::with(None)
    }

    /// The device, for the fuzz harness's requests.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn device(&self) -> MutexGuard<'_, Device> {
        lock(&self.dev)
    }

    /// Waits for front-ends on `listener`.
    pub(crate) fn listening(listener: OwnedFd) -> Self {
        Self::with(Some(listener))
    }

    /// `--fd`: an already connected front-end (QEMU 10.1's
    /// `-netdev passt,vhost-user=on`).
    pub(crate) fn connected(conn: OwnedFd) -> io::Result<Self> {
        let mut v = Self::with(None);
        v.start(conn)?;
        Ok(v)
    }

    fn start(&mut self, conn: OwnedFd) -> io::Result<()> {
        rustix::io::ioctl_fionbio(&conn, false)?;
        let s = UnixStream::from(conn);
        // A message cut short would otherwise block the whole loop.
        s.set_read_timeout(Some(MSG_TIMEOUT))?;
        self.conn = Some(OwnedFd::from(s.try_clone()?));
        *lock(&self.dev) = Device::new();
        self.session = Some(BackendReqHandler::from_stream(s, self.dev.clone()));
        Ok(())
    }

    pub(crate) fn listener(&self) -> Option<&OwnedFd> {
        self.listener.as_ref()
    }

    /// The control socket, for epoll.
    pub(crate) fn conn(&self) -> Option<&OwnedFd> {
        self.conn.as_ref()
    }

    /// Accepts a front-end. A second one while a session runs is closed.
    pub(crate) fn accept(&mut self) -> io::Result<super::stream::Accepted> {
        use super::stream::Accepted;
        let Some(l) = &self.listener else {
            return Ok(Accepted::None);
        };
        let s = match rustix::net::accept_with(l, SocketFlags::CLOEXEC) {
            Ok(s) => s,
            Err(Errno::AGAIN | Errno::INTR | Errno::CONNABORTED) => return Ok(Accepted::None),
            Err(e) => return Err(e.into()),
        };
        if self.session.is_some() {
            log::info!("vhost-user: another front-end connected while one is active: closed");
            return Ok(Accepted::Refused);
        }
        self.start(s)?;
        Ok(Accepted::New)
    }

    /// Ends the session; the device forgets its memory and rings.
    pub(crate) fn disconnect(&mut self) -> Option<OwnedFd> {
        if log::log_enabled!(log::Level::Debug) {
            lock(&self.dev).log_rings();
        }
        self.session = None;
        *lock(&self.dev) = Device::new();
        self.conn.take()
    }

    /// Handles one message from the front-end.
    pub(crate) fn control(&mut self) -> Control {
        let Some(s) = &mut self.session else {
            return Control::Done;
        };
        match s.handle_request() {
            Ok(()) => Control::Done,
            Err(
                e @ (VuError::Disconnected
                | VuError::PartialMessage
                | VuError::OversizedMsg
                | VuError::InvalidMessage
                | VuError::IncorrectFds
                | VuError::SocketError(_)
                | VuError::SocketBroken(_)
                | VuError::SocketRetry(_)),
            ) => {
                let kind = if matches!(e, VuError::Disconnected) {
                    io::ErrorKind::UnexpectedEof
                } else {
                    io::ErrorKind::InvalidData
                };
                Control::Closed(io::Error::new(kind, format!("vhost-user: {e}")))
            }
            // QEMU enables rings before acking features, which the crate
            // refuses (see `Vring::enabled`): expected, not worth a warning.
            Err(e @ VuError::InactiveFeature(_)) => {
                log::debug!("vhost-user: request refused: {e}");
                Control::Done
            }
            Err(e) => {
                // Refused and answered (REPLY_ACK) or ignored: go on.
                log::warn!("vhost-user: request refused: {e}");
                Control::Done
            }
        }
    }

    /// Calls `watch` for each ring whose kick descriptor is new since the
    /// last call: the loop adds it to epoll (closing the old one removed
    /// that from epoll already).
    pub(crate) fn new_kicks(&self, mut watch: impl FnMut(u32, BorrowedFd<'_>)) {
        let mut dev = lock(&self.dev);
        let changed = std::mem::take(&mut dev.kicks_changed);
        for (i, v) in dev.vrings.iter().enumerate() {
            if changed & (1 << i) != 0 {
                if let Some(k) = &v.kick {
                    watch(i as u32, k.as_fd());
                }
            }
        }
    }

    /// Catches up with notifications that went missing: returns the
    /// transmit rings with chains we were not kicked for, and interrupts
    /// the guest for rings with used elements it was not told about.
    ///
    /// The kick and interrupt protocols rely on a full memory barrier on
    /// each side between publishing an index and reading the other's
    /// wish. A guest under single-threaded TCG (one vCPU) has none: QEMU
    /// drops its barriers, there being no other vCPU to order against, so
    /// now and then both sides miss each other and a ring stalls. Looking
    /// at the indices every few milliseconds while traffic flows bounds
    /// that to one interval; with KVM nothing is ever found.
    pub(crate) fn poll(&mut self) -> u32 {
        if self.poll_interval().is_none() {
            return 0;
        }
        let mut guard = lock(&self.dev);
        let Device { mem, vrings, .. } = &mut *guard;
        let Some(mem) = mem.as_ref() else {
            return 0;
        };
        let mut pending = 0;
        for (i, v) in vrings.iter_mut().enumerate() {
            if !v.usable(mem) {
                continue;
            }
            if v.queue.next_used() != v.irq_used {
                v.interrupt();
            }
            let avail = v.queue.avail_idx(mem, Ordering::Acquire).map(|w| w.0);
            if i % 2 == 1 && avail.is_ok_and(|a| a != v.queue.next_avail()) {
                pending |= 1 << i;
            }
        }
        pending
    }

    /// [`VhostUser::poll`] every [`POLL_MS`] for [`POLL_FOR`] after
    /// frames last went through.
    pub(crate) fn poll_interval(&self) -> Option<i32> {
        self.active
            .filter(|t| t.elapsed() < POLL_FOR)
            .map(|_| POLL_MS)
    }

    /// True if the guest accepts partial checksums (`GUEST_CSUM`).
    pub(crate) fn csum_offload(&self) -> bool {
        lock(&self.dev).has(VIRTIO_NET_F_GUEST_CSUM)
    }

    /// True if the guest takes TCP super-frames in both families.
    pub(crate) fn tso(&self) -> bool {
        let d = lock(&self.dev);
        d.has(VIRTIO_NET_F_GUEST_TSO4) && d.has(VIRTIO_NET_F_GUEST_TSO6)
    }

    /// Reads frames the guest queued on ring `q` (a kick) into `rx`.
    pub(crate) fn recv(
        &mut self,
        q: u32,
        kicked: bool,
        rx: &mut RxBatch,
        stats: &mut TapStats,
        mut pcap: Option<&mut crate::pcap::Pcap>,
    ) -> io::Result<RxEnd> {
        rx.clear();
        let mut guard = lock(&self.dev);
        let Device {
            mem,
            vrings,
            log,
            acked,
            ..
        } = &mut *guard;
        let q = q as usize;
        let Some(v) = vrings.get_mut(q) else {
            return Ok(RxEnd::Drained);
        };
        if kicked {
            v.kicks += 1;
            if let Some(k) = &v.kick {
                let mut n = [0u8; 8];
                let _ = rustix::io::read(k, &mut n);
            }
        }
        // Kicks on receive rings (buffers added) need nothing now.
        if q.is_multiple_of(2) {
            return Ok(RxEnd::Drained);
        }
        let Some(mem) = mem.as_ref() else {
            return Ok(RxEnd::Drained);
        };
        if !v.usable(mem) {
            return Ok(RxEnd::Drained);
        }
        rx.pair = (q / 2) as u8;
        let mut end = RxEnd::Drained;
        // At most one ring's worth of chains per call: a front-end whose
        // rings overlap (our used-ring writes changing its avail index)
        // could otherwise keep us here for ever. The rest waits for the
        // next kick or poll.
        let mut budget = v.queue.size();
        'drain: loop {
            let _ = v.queue.disable_notification(mem);
            loop {
                if rx.space().is_none() {
                    end = RxEnd::Full;
                    break 'drain;
                }
                let Some(left) = budget.checked_sub(1) else {
                    break 'drain;
                };
                budget = left;
                let chain = match v.queue.iter(mem) {
                    Ok(mut it) => it.next(),
                    Err(e) => {
                        log::warn!("vhost-user: virtqueue {q}: {e}: ring stopped");
                        v.broken = true;
                        break 'drain;
                    }
                };
                let Some(chain) = chain else {
                    break;
                };
                let head = chain.head_index();
                v.chains += 1;
                // Checked above: a frame of the largest size fits.
                let space = rx.space().unwrap_or_default();
                match read_chain(mem, chain, space) {
                    Ok((len, hdr)) => {
                        stats.rx_frames += 1;
                        stats.rx_bytes += len as u64;
                        if len < FRAME_MIN {
                            stats.rx_runt_or_giant += 1;
                        } else {
                            let gso = hdr[1] != 0;
                            if gso {
                                stats.rx_gso_frames += 1;
                            }
                            rx.push(len, hdr[0] & HDR_F_NEEDS_CSUM != 0, gso);
                            if let Some(p) = pcap.as_deref_mut() {
                                p.record(rx.frame(rx.len() - 1));
                            }
                        }
                    }
                    Err(why) => {
                        stats.rx_runt_or_giant += 1;
                        log::debug!("vhost-user: virtqueue {q}: frame dropped: {why}");
                    }
                }
                if v.queue.add_used(mem, head, 0).is_err() {
                    log::warn!("vhost-user: virtqueue {q}: used ring outside memory");
                    v.broken = true;
                    break 'drain;
                }
            }
            // Re-arm, then look once more: a chain added in between would
            // otherwise wait for the next kick.
            match v.queue.enable_notification(mem) {
                Ok(true) => continue,
                _ => break,
            }
        }
        v.signal(mem);
        log_used(dirty_log(log, *acked), v);
        if rx.len() > 0 {
            self.active = Some(Instant::now());
        }
        Ok(end)
    }

    /// Writes queued frames into the receive rings, in order. At the
    /// first frame whose ring has no buffer left, stops: that frame and
    /// the rest stay queued (the ring's notifications are re-armed, so the
    /// guest kicks us when it adds buffers). Frames that cannot go at all
    /// are dropped and counted.
    pub(crate) fn flush(
        &mut self,
        tx: &mut TxQueue,
        stats: &mut TapStats,
        mut pcap: Option<&mut crate::pcap::Pcap>,
    ) {
        let mut guard = lock(&self.dev);
        let guest_csum = guard.has(VIRTIO_NET_F_GUEST_CSUM);
        let mrg = guard.has(VIRTIO_NET_F_MRG_RXBUF);
        let Device {
            mem,
            vrings,
            log,
            acked,
            ..
        } = &mut *guard;
        let Some(mem) = mem.as_ref() else {
            stats.tx_dropped += tx.frames.len() as u64;
            tx.clear();
            return;
        };
        let dirty = dirty_log(log, *acked);
        let mut touched = 0u32;
        let mut used_before = [0u16; VRINGS];
        let (mut i, mut retried) = (0, false);
        while i < tx.frames.len() {
            let f = tx.frames[i];
            // The ring of the frame's queue pair, else the first one.
            let want = 2 * usize::from(f.pair);
            let q = if vrings.get(want).is_some_and(|v| v.usable(mem)) {
                want
            } else {
                0
            };
            let (off, len) = (f.off as usize, f.len as usize);
            let frame = &mut tx.buf[off..off + len];
            if f.csum != (0, 0) && !guest_csum {
                super::stream::complete_csum(frame, f.csum);
                // Complete now, also if the frame waits for a retry.
                tx.frames[i].csum = (0, 0);
                tx.frames[i].gso = 0;
            }
            let f = tx.frames[i];
            let hdr = header(frame, &f, guest_csum);
            if touched & (1 << q) == 0 {
                used_before[q] = vrings[q].queue.next_used();
            }
            match write_frame(&mut vrings[q], mem, dirty, hdr, frame, mrg) {
                Ok(()) => {
                    stats.tx_frames += 1;
                    stats.tx_bytes += len as u64;
                    if f.gso != 0 {
                        stats.tx_gso_frames += 1;
                    }
                    touched |= 1 << q;
                    retried = false;
                    if let Some(p) = pcap.as_deref_mut() {
                        p.record(frame);
                    }
                }
                Err(Full::NoBuffer) => {
                    // Re-arm; if buffers came in the meantime, try once
                    // more (they may still be too few for this frame).
                    let more = vrings[q].queue.enable_notification(mem);
                    if !retried && matches!(more, Ok(true)) {
                        retried = true;
                        continue;
                    }
                    break;
                }
                Err(Full::Refused(why)) => {
                    stats.tx_dropped += 1;
                    log::trace!("vhost-user: virtqueue {q}: frame of {len} bytes dropped: {why}");
                }
            }
            i += 1;
        }
        tx.keep_from(i);
        if touched != 0 {
            self.active = Some(Instant::now());
        }
        for (q, &before) in used_before.iter().enumerate() {
            if touched & (1 << q) == 0 {
                continue;
            }
            let v = &mut vrings[q];
            log_used(dirty, v);
            if wants_interrupt(mem, &v.queue, before) {
                v.interrupt();
            }
        }
    }
}

/// Why a frame did not go into a receive ring.
enum Full {
    /// The ring has no buffer now: try again when the guest adds some.
    NoBuffer,
    /// It cannot go at all.
    Refused(&'static str),
}

/// The virtio-net header for a frame we send: the tun device's
/// ([`super::vnet_header`]) and `num_buffers`, set when the frame is
/// placed; all zero (no flags) if the guest takes no partial checksums.
fn header(frame: &[u8], f: &TxFrame, guest_csum: bool) -> [u8; HDR_LEN] {
    let mut h = [0u8; HDR_LEN];
    if guest_csum {
        h[..super::VNET_HDR_LEN].copy_from_slice(&super::vnet_header(frame, f));
    }
    h
}

/// Copies the frame of a transmit chain into `out`, the virtio-net
/// header apart. Returns the frame length and the header.
///
/// `virtio-queue` ends a chain quietly where it cannot go on: a next
/// index past the ring, or as many descriptors as the ring has (a loop).
/// A chain whose last descriptor still says "next" was cut that way, and
/// is refused; a chain as long as the ring is legal.
fn read_chain(
    mem: &Mem,
    chain: DescriptorChain<&Mem>,
    out: &mut [u8],
) -> Result<(usize, [u8; HDR_LEN]), &'static str> {
    let mut hdr = [0u8; HDR_LEN];
    let mut got = 0usize;
    let mut cut = false;
    for d in chain {
        cut = d.has_next();
        if d.is_write_only() {
            return Err("writable descriptor in a transmit chain");
        }
        let (mut addr, mut left) = (d.addr(), d.len() as usize);
        if got < HDR_LEN {
            let n = left.min(HDR_LEN - got);
            mem.read_slice(&mut hdr[got..got + n], addr)
                .map_err(|_| "descriptor outside guest memory")?;
            got += n;
            left -= n;
            addr = addr.unchecked_add(n as u64);
        }
        if left == 0 {
            continue;
        }
        let at = got - HDR_LEN;
        let dst = out
            .get_mut(at..at + left)
            .ok_or("frame longer than 64 KiB")?;
        mem.read_slice(dst, addr)
            .map_err(|_| "descriptor outside guest memory")?;
        got += left;
    }
    if cut {
        return Err("descriptor chain cut short: a loop, or a next index past the ring");
    }
    if got < HDR_LEN {
        return Err("no virtio-net header");
    }
    Ok((got - HDR_LEN, hdr))
}

/// Capacity of a receive chain: its writable bytes.
fn chain_room(chain: &DescriptorChain<&Mem>) -> usize {
    chain
        .clone()
        .filter(|d| d.is_write_only())
        .map(|d| d.len() as usize)
        .sum()
}

/// Puts header and frame into buffers of receive ring `q`.
fn write_frame(
    v: &mut Vring,
    mem: &Mem,
    dirty: Option<&MmapRegion<()>>,
    mut hdr: [u8; HDR_LEN],
    frame: &[u8],
    mrg: bool,
) -> Result<(), Full> {
    let need = HDR_LEN + frame.len();
    if !v.usable(mem) {
        return Err(Full::Refused("receive ring not ready"));
    }
    let start = v.queue.next_avail();
    let mut chains: [Option<DescriptorChain<&Mem>>; MRG_MAX] = [const { None }; MRG_MAX];
    let (mut n, mut room) = (0usize, 0usize);
    while room < need {
        if n == MRG_MAX || (n == 1 && !mrg) {
            v.queue.set_next_avail(start);
            return Err(Full::Refused(if mrg {
                "receive buffers too small"
            } else {
                "receive buffer too small (no MRG_RXBUF)"
            }));
        }
        let chain = match v.queue.iter(mem) {
            Ok(mut it) => it.next(),
            Err(e) => {
                log::warn!("vhost-user: receive ring: {e}: ring stopped");
                v.broken = true;
                None
            }
        };
        let Some(chain) = chain else {
            v.queue.set_next_avail(start);
            return Err(if v.broken {
                Full::Refused("ring stopped")
            } else if n >= usize::from(v.queue.size()) {
                // Every buffer the ring can hold is not enough: waiting
                // for more would wait forever.
                Full::Refused("frame larger than the whole receive ring")
            } else {
                Full::NoBuffer
            });
        };
        room += chain_room(&chain);
        chains[n] = Some(chain);
        n += 1;
    }
    hdr[10..12].copy_from_slice(&(n as u16).to_le_bytes());
    // Header, then frame, through the chains in order. The used elements
    // are written first and published together: the guest reads all
    // `num_buffers` of them as soon as it sees the first.
    let mut src: [&[u8]; 2] = [&hdr, frame];
    let mut part = 0;
    let used_base = v.queue.next_used();
    for (k, slot) in chains.iter_mut().take(n).enumerate() {
        let Some(chain) = slot.take() else { break };
        let head = chain.head_index();
        let mut written = 0u32;
        for d in chain.filter(|d| d.is_write_only()) {
            let (mut addr, mut left) = (d.addr(), d.len() as usize);
            while left > 0 && part < 2 {
                let s = src[part];
                let k = left.min(s.len());
                if mem.write_slice(&s[..k], addr).is_err() {
                    v.queue.set_next_avail(start);
                    return Err(Full::Refused("receive buffer outside guest memory"));
                }
                dev_log(dirty, addr.0, k as u64);
                src[part] = &s[k..];
                if src[part].is_empty() {
                    part += 1;
                }
                addr = addr.unchecked_add(k as u64);
                left -= k;
                written += k as u32;
            }
        }
        if put_used(
            mem,
            &v.queue,
            used_base.wrapping_add(k as u16),
            head,
            written,
        )
        .is_err()
        {
            v.broken = true;
            return Err(Full::Refused("used ring outside guest memory"));
        }
    }
    let next = used_base.wrapping_add(n as u16);
    v.queue.set_next_used(next);
    let idx = GuestAddress(v.queue.used_ring()).checked_add(2);
    let published = idx.is_some_and(|a| mem.store(u16::to_le(next), a, Ordering::Release).is_ok());
    if !published {
        v.broken = true;
        return Err(Full::Refused("used ring outside guest memory"));
    }
    Ok(())
}

/// Writes the used element at position `at` of a ring (not published:
/// the used index is stored once all of a frame's elements are there).
fn put_used(mem: &Mem, q: &Queue, at: u16, head: u16, len: u32) -> Result<(), ()> {
    let size = q.size().max(1);
    let off = 4 + 8 * u64::from(at % size);
    let addr = GuestAddress(q.used_ring()).checked_add(off).ok_or(())?;
    let mut elem = [0u8; 8];
    elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
    elem[4..].copy_from_slice(&len.to_le_bytes());
    mem.write_slice(&elem, addr).map_err(|_| ())
}

/// Whether the guest wants an interrupt for the used elements from
/// `old` to the ring's current used index: with `EVENT_IDX`, if its
/// `used_event` falls in that range; otherwise unless it set
/// `VRING_AVAIL_F_NO_INTERRUPT`.
fn wants_interrupt(mem: &Mem, q: &Queue, old: u16) -> bool {
    let new = q.next_used();
    if new == old {
        return false;
    }
    // The used index is stored before the guest's wish is read.
    std::sync::atomic::fence(Ordering::SeqCst);
    let avail = GuestAddress(q.avail_ring());
    if q.event_idx_enabled() {
        let at = avail.checked_add(4 + 2 * u64::from(q.size()));
        let Some(event) = at.and_then(|a| mem.load::<u16>(a, Ordering::Relaxed).ok()) else {
            return true;
        };
        let event = u16::from_le(event);
        return new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old);
    }
    let flags = mem.load::<u16>(avail, Ordering::Relaxed).map(u16::from_le);
    flags.map_or(true, |f| f & 1 == 0)
}

/// The dirty log, if QEMU asked for logging (`LOG_ALL`) and gave it.
fn dirty_log(log: &Option<MmapRegion<()>>, acked: u64) -> Option<&MmapRegion<()>> {
    log.as_ref()
        .filter(|_| acked & VhostUserVirtioFeatures::LOG_ALL.bits() != 0)
}

/// Marks the used ring of `v` dirty (after we updated it).
fn log_used(dirty: Option<&MmapRegion<()>>, v: &Vring) {
    if let Some(base) = v.log_used {
        let size = u64::from(v.queue.size());
        dev_log(dirty, base, 4 + 8 * size + 2);
    }
}

/// Marks `len` bytes from guest address `gpa` dirty in the log. Both come
/// from the front-end (a ring's log address, a buffer's place in guest
/// memory): a range that wraps past the end of the address space stops
/// there, and pages past the log's bitmap are not marked (the log is
/// QEMU's size for the guest's memory, so a range beyond it is bogus).
fn dev_log(dirty: Option<&MmapRegion<()>>, gpa: u64, len: u64) {
    let Some(log) = dirty else { return };
    let Some(last) = len.checked_sub(1) else {
        return;
    };
    let bytes = log.as_volatile_slice();
    let pages_in_log = (bytes.len() as u64).saturating_mul(8);
    let first = gpa / LOG_PAGE;
    let last = (gpa.saturating_add(last) / LOG_PAGE).min(pages_in_log.saturating_sub(1));
    for page in first..=last {
        let (byte, bit) = ((page / 8) as usize, page % 8);
        if let Ok(v) = bytes.load::<u8>(byte, Ordering::Relaxed) {
            let _ = bytes.store(v | (1 << bit), byte, Ordering::Relaxed);
        }
    }
}

/// The start-up message: where we listen and how QEMU connects.
pub(crate) fn announce(path: &std::path::Path) {
    log::info!("UNIX domain socket bound at {}", path.display());
    log::info!(
        "Start QEMU with: -chardev socket,id=c,path={} -netdev vhost-user,id=n,chardev=c \
         -device virtio-net-pci,netdev=n \
         -object memory-backend-memfd,id=mem,size=SIZE,share=on -numa node,memdev=mem",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memfd(size: u64) -> File {
        let fd = rustix::fs::memfd_create("vhost-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, size).unwrap();
        File::from(fd)
    }

    /// Found by the `vhost_user` fuzz target: a region (or dirty log)
    /// larger than its file was mapped, and the first ring access past
    /// the file's end raised SIGBUS.
    #[test]
    fn mappings_past_the_file_are_refused() {
        let mut dev = Device::new();
        let f = memfd(0x4000);
        for (size, offset) in [(0x8000, 0), (0x4000, 0x1000), (0x1000, u64::MAX - 0x800)] {
            let r = VhostUserMemoryRegion::new(0x10000, size, 0x7f00_0000_0000, offset);
            assert!(dev
                .set_mem_table(&[r], vec![f.try_clone().unwrap()], None)
                .is_err());
            assert!(dev.mem.is_none());
        }
        let r = VhostUserMemoryRegion::new(0x10000, 0x3000, 0x7f00_0000_0000, 0x1000);
        dev.set_mem_table(&[r], vec![f.try_clone().unwrap()], None)
            .unwrap();
        assert!(dev.mem.is_some());
        let log = VhostUserLog::new(0x5000, 0);
        assert!(dev.set_log_base(&log, f.try_clone().unwrap()).is_err());
        dev.set_log_base(&VhostUserLog::new(0x4000, 0), f).unwrap();
    }

    /// Found by the `vhost_user` fuzz target's long run: a used ring whose
    /// log address is near the top of the address space overflowed the
    /// end of the range to mark (`gpa + len - 1`).
    #[test]
    fn dirty_log_ranges_at_the_end_of_the_address_space() {
        let f = memfd(0x1000);
        let log = MmapRegion::<()>::from_file(FileOffset::new(f, 0), 0x1000).unwrap();
        dev_log(Some(&log), u64::MAX - 10, 100);
        dev_log(Some(&log), u64::MAX, u64::MAX);
        // A range inside the log is marked, page by page.
        dev_log(Some(&log), 3 * LOG_PAGE + 1, LOG_PAGE);
        let bytes = log.as_volatile_slice();
        assert_eq!(bytes.load::<u8>(0, Ordering::Relaxed).unwrap(), 0b0001_1000);
        // Past the bitmap (0x1000 bytes: 32768 pages): nothing, no panic.
        dev_log(Some(&log), 40_000 * LOG_PAGE, 3 * LOG_PAGE);
        assert_eq!(bytes.load::<u8>(0xfff, Ordering::Relaxed).unwrap(), 0);
        dev_log(Some(&log), 32_767 * LOG_PAGE, 3 * LOG_PAGE);
        assert_eq!(bytes.load::<u8>(0xfff, Ordering::Relaxed).unwrap(), 0x80);
    }

    #[test]
    fn header_fields() {
        let mut frame = vec![0u8; 100];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[34 + 12] = 5 << 4;
        let mut f = TxFrame {
            off: 0,
            len: 100,
            csum: (34, 16),
            run: 0,
            gso: 1448,
            pair: 0,
        };
        let h = header(&frame, &f, true);
        assert_eq!(h[0], HDR_F_NEEDS_CSUM);
        assert_eq!(h[1], 1, "TCPV4");
        assert_eq!(u16::from_le_bytes([h[2], h[3]]), 54);
        assert_eq!(u16::from_le_bytes([h[4], h[5]]), 1448);
        assert_eq!(u16::from_le_bytes([h[6], h[7]]), 34);
        assert_eq!(u16::from_le_bytes([h[8], h[9]]), 16);
        assert_eq!(h[10..12], [0, 0], "num_buffers is set when placed");
        assert_eq!(header(&frame, &f, false), [0; HDR_LEN]);
        (f.csum, f.gso) = ((0, 0), 0);
        assert_eq!(header(&frame, &f, true)[0], 2, "DATA_VALID");
    }

    #[test]
    fn features_offered() {
        assert_ne!(FEATURES & bit(VIRTIO_F_VERSION_1), 0);
        assert_ne!(FEATURES & bit(VIRTIO_NET_F_MQ), 0);
        assert!(protocol_features().contains(VhostUserProtocolFeatures::MQ));
    }
}
