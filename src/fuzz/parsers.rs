//! Fuzz entry points for the parsers a guest or a peer reaches.
//!
//! Each entry takes the fuzzer's bytes, decodes from them what the parser
//! would get (a byte stream and where it is cut, a list of names, an
//! argv, kernel datagrams, vhost-user requests and guest memory), runs the
//! real code, and checks its output against a model written here, as
//! plainly as possible: a panic is a finding.

use std::cell::RefCell;
use std::io::{ErrorKind, Write};
use std::os::unix::net::UnixStream;

use crate::conf::cli;
use crate::conf::Mode;
use crate::dns_name::{self, CompressedList, PushError};
use crate::fwd::spec::{ParseOpts, PortSpec};
use crate::netlink::{self, Family};
use crate::tap::stream::Stream;
use crate::tap::{RxBatch, RxEnd, TapStats, FRAME_MAX, FRAME_MIN};

/// Takes what it is asked for from the front of the fuzzer's bytes, zeros
/// once they run out.
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl<'a> Bytes<'a> {
    pub(crate) fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }

    pub(crate) fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | u16::from(self.u8()) << 8
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | u32::from(self.u16()) << 16
    }

    pub(crate) fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ---------------------------------------------------------------------------
// stream: passt's length-prefixed records on the QEMU socket.

thread_local! {
    /// The receive batch (8 MiB) is made once, as the daemon does.
    static RX: RefCell<RxBatch> = RefCell::new(RxBatch::new());
}

/// The records of `stream` as [`Stream::recv`] must cut them: the frames,
/// and whether a bad length prefix follows them (the stream is dropped
/// there).
fn stream_model(stream: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut frames = Vec::new();
    let mut rest = stream;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        if !(FRAME_MIN..=FRAME_MAX).contains(&len) {
            return (frames, true);
        }
        let Some(frame) = tail.get(..len) else {
            break;
        };
        frames.push(frame);
        rest = &tail[len..];
    }
    (frames, false)
}

/// Input: a count `n`, `n` little-endian 16-bit chunk sizes, then the byte
/// stream. The stream is written to a socket pair chunk by chunk (the rest
/// in one piece), the daemon's reader drains it after each chunk, then the
/// writer closes. Checked: the frames that come out are exactly the
/// stream's records in order, each within 14..=65535 bytes, and the stream
/// ends with the right error (bad length, or end of file).
pub fn stream(data: &[u8]) {
    let mut b = Bytes(data);
    let n = usize::from(b.u8());
    let mut cuts: Vec<usize> = (0..n).map(|_| usize::from(b.u16())).collect();
    let input = b.0;
    let (want, bad) = stream_model(input);

    let (ours, mut theirs) = UnixStream::pair().expect("socketpair");
    theirs.set_nonblocking(true).expect("non-blocking");
    let mut s = Stream::connected(ours.into()).expect("stream");
    let mut stats = TapStats::default();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut err = None;

    RX.with_borrow_mut(|rx| {
        // Reads until the socket is drained; false once the stream failed.
        let mut drain = |got: &mut Vec<Vec<u8>>, err: &mut Option<std::io::Error>| loop {
            let r = s.recv(rx, &mut stats, None);
            for i in 0..rx.len() {
                got.push(rx.frame(i).to_vec());
            }
            match r {
                Ok(RxEnd::Full) => continue,
                Ok(RxEnd::Drained) => return true,
                Err(e) => {
                    *err = Some(e);
                    return false;
                }
            }
        };
        cuts.push(input.len());
        let mut rest = input;
        'feed: for cut in cuts {
            let (mut chunk, tail) = rest.split_at(cut.min(rest.len()));
            rest = tail;
            while !chunk.is_empty() {
                match theirs.write(chunk) {
                    Ok(k) => chunk = &chunk[k..],
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("write: {e}"),
                }
                if !drain(&mut got, &mut err) {
                    break 'feed;
                }
            }
        }
        if err.is_none() {
            drop(theirs);
            while drain(&mut got, &mut err) {}
        }
    });

    for f in &got {
        assert!(
            (FRAME_MIN..=FRAME_MAX).contains(&f.len()),
            "frame of {}",
            f.len()
        );
    }
    assert_eq!(got.len(), want.len(), "frame count");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(&g[..], *w, "frame bytes");
    }
    assert_eq!(stats.rx_frames, want.len() as u64);
    let kind = err.expect("the stream ends with an error").kind();
    let want_kind = if bad {
        ErrorKind::InvalidData
    } else {
        ErrorKind::UnexpectedEof
    };
    assert_eq!(kind, want_kind);
}

// ---------------------------------------------------------------------------
// dns_name: RFC 1035 names, plain and compressed.

/// The labels of `name` if it is a valid non-root name for the module
/// (see its documentation), with its uncompressed length.
fn name_model(name: &str) -> Option<(Vec<&[u8]>, usize)> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Some((Vec::new(), 1));
    }
    let labels: Vec<&[u8]> = name.split('.').map(str::as_bytes).collect();
    if labels.iter().any(|l| l.is_empty() || l.len() > 63) {
        return None;
    }
    let len = 1 + labels.iter().map(|l| 1 + l.len()).sum::<usize>();
    (len <= dns_name::MAX_NAME).then_some((labels, len))
}

/// Decodes the name at `at` in `buf`, following pointers backwards only:
/// its labels, and where it ends in place.
fn decode_name(buf: &[u8], mut at: usize) -> Option<(Vec<Vec<u8>>, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..256 {
        let len = usize::from(*buf.get(at)?);
        if len == 0 {
            return Some((labels, end.unwrap_or(at + 1)));
        }
        if len & 0xc0 == 0xc0 {
            let target = (len & 0x3f) << 8 | usize::from(*buf.get(at + 1)?);
            end.get_or_insert(at + 2);
            assert!(target < at, "pointer forward, {at} to {target}");
            at = target;
            continue;
        }
        assert!(len <= 63, "label length byte {len:#x}");
        labels.push(buf.get(at + 1..at + 1 + len)?.to_vec());
        at += 1 + len;
    }
    panic!("name of more than 256 labels")
}

/// Input: two bytes of buffer size, then names separated by newlines.
/// Each name goes through `encoded_len` and `encode` (into a buffer of
/// that size), and all are pushed in a `CompressedList` of that size.
/// Checked: valid names are accepted exactly when they fit, decode back to
/// their labels (compressed: equal but for ASCII case), invalid ones
/// leave the list untouched.
pub fn dns_name(data: &[u8]) {
    let mut b = Bytes(data);
    let size = usize::from(b.u16() % 20000);
    let names: Vec<String> =
        b.0.split(|&c| c == b'\n')
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
    let mut buf = vec![0u8; size];

    for name in &names {
        let model = name_model(name);
        assert_eq!(
            dns_name::encoded_len(name),
            model.as_ref().map(|m| m.1),
            "encoded_len({name:?})"
        );
        buf.fill(0xaa);
        let r = dns_name::encode(name, &mut buf);
        match &model {
            Some((labels, len)) if *len <= size => {
                assert_eq!(r, Some(*len), "encode({name:?})");
                let (got, end) = decode_name(&buf[..*len], 0).expect("decodes");
                assert_eq!(end, *len);
                assert_eq!(got, *labels, "encode({name:?}) decoded");
            }
            _ => assert_eq!(r, None, "encode({name:?})"),
        }
    }

    buf.fill(0xaa);
    let cap = size.min(0x3fff);
    let mut pushed: Vec<(usize, &str)> = Vec::new();
    let len = {
        let mut list = CompressedList::new(&mut buf);
        for name in &names {
            let before = list.len();
            let r = list.push(name);
            match name_model(name) {
                Some((labels, n)) if !labels.is_empty() => match r {
                    Ok(()) => pushed.push((before, name)),
                    Err(PushError::NoRoom) => {
                        // Compression only shortens: a name that fits
                        // uncompressed must go in.
                        assert!(before + n > cap, "{name:?} refused with room");
                        assert_eq!(list.len(), before);
                    }
                    Err(PushError::Invalid) => panic!("valid {name:?} refused"),
                },
                _ => {
                    assert_eq!(r, Err(PushError::Invalid), "push({name:?})");
                    assert_eq!(list.len(), before);
                }
            }
        }
        list.len()
    };
    assert!(len <= cap);
    let mut at = 0;
    for (start, name) in pushed {
        assert_eq!(start, at, "names back to back");
        let (labels, end) = decode_name(&buf[..len], start).expect("pushed name decodes");
        let (want, _) = name_model(name).expect("valid");
        assert_eq!(labels.len(), want.len(), "labels of {name:?}");
        for (l, w) in labels.iter().zip(&want) {
            assert!(l.eq_ignore_ascii_case(w), "{name:?}: {l:?} for {w:?}");
        }
        at = end;
    }
    assert_eq!(at, len);
}

// ---------------------------------------------------------------------------
// cli: pasta's and passt's command lines, and port specifications.

/// Input: arguments separated by zero bytes. Each mode parses the argv,
/// and each argument is parsed as a port specification, with and without
/// an address prefix. Checked: no panic, no exit (the parser returns
/// errors), and port specifications only map ports to ports.
pub fn cli(data: &[u8]) {
    let args: Vec<String> = data
        .split(|&c| c == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    for mode in [Mode::Pasta, Mode::Passt] {
        let _ = cli::parse(mode, &args);
    }
    for arg in args.iter().take(8) {
        for allow_addr in [false, true] {
            let opts = ParseOpts {
                allow_addr,
                ephemeral: crate::fwd::spec::DEFAULT_EPHEMERAL,
            };
            if let Ok(spec) = PortSpec::parse(arg, &opts) {
                for r in &spec.ranges {
                    assert!(r.first <= r.last, "{arg:?}: {r:?}");
                    assert!(
                        u32::from(r.to_first) + u32::from(r.last - r.first) <= 65535,
                        "{arg:?}: {r:?} maps past port 65535"
                    );
                }
                if !allow_addr {
                    assert!(spec.addr.is_none() && spec.ifname.is_none(), "{arg:?}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// netlink: the kernel's replies during host discovery.

/// Input: datagrams, each a little-endian 16-bit length and its bytes, as
/// the kernel would answer request 1. They are walked as
/// `Netlink::exchange` does until the exchange ends, then the replies go
/// through the conversions and the host discovery that pasta runs on
/// links, addresses and routes.
pub fn netlink(data: &[u8]) {
    let mut b = Bytes(data);
    let mut replies = Vec::new();
    while !b.is_empty() {
        let len = usize::from(b.u16());
        let dgram = b.take(len);
        if netlink::take_replies(dgram, 1, &mut replies).is_some() {
            break;
        }
    }
    use netlink_packet_route::RouteNetlinkMessage as M;
    let (mut links, mut addrs, mut routes) = (Vec::new(), Vec::new(), Vec::new());
    for m in replies {
        match m {
            M::NewLink(l) => links.push(netlink::link_from(l)),
            M::NewAddress(a) => addrs.extend(netlink::addr_from(a)),
            M::NewRoute(r) => routes.extend(netlink::route_from(r)),
            _ => {}
        }
    }
    for r in &routes {
        assert_eq!(Family::of(&r.dst), r.family(), "{r:?}");
        if let Some(gw) = r.best_gateway() {
            let _ = gw.is_unspecified();
        }
    }
    for a in &addrs {
        let _ = (a.deprecated(), a.link_scope());
    }
    for family in [Family::V4, Family::V6] {
        let Some(index) = crate::conf::host::pick_template(&routes, family) else {
            continue;
        };
        assert!(index != 0 && index != netlink::LO_IFINDEX);
        assert!(
            routes.iter().any(|r| r.uses(index)),
            "template {index} unused"
        );
        let _ = crate::conf::host::default_gateway(&routes, index);
        let _ = links.iter().find(|l| l.index == index).map(|l| &l.name);
    }
}

// ---------------------------------------------------------------------------
// vhost_user: front-end requests and the guest's descriptor rings.

/// Size of the guest memory file the regions map.
const VU_MEM: u64 = 64 << 10;

thread_local! {
    /// The transmit queue (4 MiB) is made once, as the daemon does.
    static TX: RefCell<crate::tap::TxQueue> = RefCell::new(crate::tap::TxQueue::new());
}

/// Input: a sequence of operations, each an opcode byte and its arguments:
/// the front-end's requests with arbitrary arguments (features, memory
/// tables of up to four regions of one 64 KiB memory file, anywhere in
/// guest and QEMU address space, ring sizes, addresses, bases, kicks,
/// enabling, resets, a dirty log), writes into guest memory (rings,
/// descriptors, buffers), the guest's kick on a ring (the transmit path
/// walks its chains) and frames sent to the guest (the receive path
/// fills its buffers). Requests go to [`Device`]'s handlers as the `vhost`
/// crate would pass them (after its own syntax checks: regions and logs
/// of non-zero size that do not wrap around). Checked: no panic, no
/// access outside the mappings (a crash), frames within bounds, counters
/// that add up.
///
/// [`Device`]: crate::tap::vhost_user::Device
pub fn vhost_user(data: &[u8]) {
    use std::fs::File;
    use std::os::fd::OwnedFd;
    use vhost::vhost_user::message::{
        VhostUserLog, VhostUserMemoryRegion, VhostUserMsgValidator, VhostUserVringAddrFlags,
    };
    use vhost::vhost_user::VhostUserBackendReqHandlerMut as _;

    let memfd: OwnedFd =
        rustix::fs::memfd_create("passt-fuzz", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    rustix::fs::ftruncate(&memfd, VU_MEM).expect("ftruncate");
    let mem = File::from(memfd);
    let eventfd = || -> File {
        File::from(
            rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )
            .expect("eventfd"),
        )
    };
    let mut vu = crate::tap::vhost_user::VhostUser::detached();
    let mut rx_stats = TapStats::default();
    let mut b = Bytes(data);
    let ring = |b: &mut Bytes| u32::from(b.u8() % 17);

    RX.with_borrow_mut(|rx| {
        TX.with_borrow_mut(|tx| {
            tx.clear_all();
            for _ in 0..64 {
                if b.is_empty() {
                    break;
                }
                match b.u8() % 16 {
                    0 => {
                        let f = b.u64();
                        // Mostly features we offer, sometimes anything.
                        let f = if f & 1 == 0 {
                            f & crate::tap::vhost_user::FEATURES
                        } else {
                            f
                        };
                        let _ = vu.device().set_features(f);
                    }
                    1 => {
                        let n = usize::from(b.u8() % 5);
                        let mut regions = Vec::new();
                        let mut files = Vec::new();
                        for _ in 0..n {
                            let r = VhostUserMemoryRegion::new(b.u64(), b.u64(), b.u64(), b.u64());
                            files.push(mem.try_clone().expect("dup"));
                            regions.push(r);
                        }
                        if regions.iter().all(VhostUserMsgValidator::is_valid) {
                            let _ = vu.device().set_mem_table(&regions, files, None);
                        }
                    }
                    2 => {
                        let (q, num) = (ring(&mut b), b.u32());
                        let _ = vu.device().set_vring_num(q, num);
                    }
                    3 => {
                        let q = ring(&mut b);
                        let flags = VhostUserVringAddrFlags::from_bits_truncate(b.u32());
                        let (d, u, a, l) = (b.u64(), b.u64(), b.u64(), b.u64());
                        let _ = vu.device().set_vring_addr(q, flags, d, u, a, l);
                    }
                    4 => {
                        let (q, base) = (ring(&mut b), b.u32());
                        let _ = vu.device().set_vring_base(q, base);
                    }
                    5 => {
                        let q = b.u8() % 17;
                        let fd = (b.u8() & 1 == 0).then(eventfd);
                        let _ = vu.device().set_vring_kick(q, fd);
                    }
                    6 => {
                        let q = b.u8() % 17;
                        let _ = vu.device().set_vring_call(q, Some(eventfd()));
                    }
                    7 => {
                        let (q, on) = (ring(&mut b), b.u8() & 1 == 0);
                        let _ = vu.device().set_vring_enable(q, on);
                    }
                    8 => {
                        let q = ring(&mut b);
                        let _ = vu.device().get_vring_base(q);
                    }
                    9 => {
                        let _ = vu.device().reset_device();
                    }
                    10 => {
                        let log = VhostUserLog::new(b.u64(), b.u64());
                        if log.is_valid() {
                            let f = mem.try_clone().expect("dup");
                            let _ = vu.device().set_log_base(&log, f);
                        }
                    }
                    11 => {
                        let _ = vu.device().set_protocol_features(b.u64());
                    }
                    12 | 13 => {
                        // The guest writes its memory.
                        let off = u64::from(b.u16());
                        let len = usize::from(b.u8());
                        let bytes = b.take(len);
                        let _ = rustix::io::pwrite(&mem, bytes, off);
                    }
                    14 => {
                        // The guest kicks a ring.
                        let (q, kicked) = (ring(&mut b), b.u8() & 1 == 0);
                        let before = rx_stats.rx_frames;
                        let _ = vu.recv(q, kicked, rx, &mut rx_stats, None);
                        for i in 0..rx.len() {
                            let n = rx.frame(i).len();
                            assert!((FRAME_MIN..=FRAME_MIN + 65535).contains(&n), "frame of {n}");
                        }
                        assert!(rx.len() as u64 <= rx_stats.rx_frames - before);
                    }
                    _ => {
                        // Frames for the guest, then a flush.
                        let n = usize::from(b.u8() % 4) + 1;
                        let mut queued = 0u64;
                        for _ in 0..n {
                            tx.pair = b.u8() % 9;
                            let len = usize::from(b.u16()) % 1600 + 1;
                            let csum = (b.u16(), b.u16());
                            let gso = b.u16();
                            let stride = (len + 7) & !7;
                            let (region, fit) = tx.region(stride, 1);
                            if fit == 0 {
                                break;
                            }
                            let bytes = b.take(len);
                            region[..bytes.len()].copy_from_slice(bytes);
                            region[bytes.len()..len].fill(0);
                            tx.commit_region_tso(stride, &[len], csum, gso);
                            queued += 1;
                        }
                        let mut stats = TapStats::default();
                        let waiting = tx.len() as u64;
                        vu.flush(tx, &mut stats, None);
                        assert!(queued <= waiting);
                        assert_eq!(
                            stats.tx_frames + stats.tx_dropped + tx.len() as u64,
                            waiting,
                            "every frame sent, dropped or kept"
                        );
                        // As when the guest is gone: nothing stays for the
                        // next round.
                        tx.clear_all();
                    }
                }
            }
        });
    });
}

/// Input: bytes a configuration client (`-c`) or server sends. Decoded as
/// an update, as tables, as a status and as a greeting (never a panic);
/// what decodes encodes back to the same bytes, and every rule that
/// passes the daemon's checks ([`FwdRule::from_raw`]) survives the trip
/// to the wire and back unchanged.
pub fn pesto(data: &[u8]) {
    use crate::fwd::rules::{Caps, Families, FwdRule, Table};
    use crate::wire::pesto as wire;

    let check_rules = |rules: &[wire::RawRule]| {
        for raw in rules {
            for (table, caps) in [
                (Table::Host, 0x3f),
                (Table::Splice, 0x3f),
                (Table::Host, 0x0d),
                (Table::Host, 0x0e),
            ] {
                let caps = Caps(caps);
                if let Ok(rule) = FwdRule::from_raw(raw, table, caps) {
                    let families = Families {
                        v4: caps.has(wire::CAP_IPV4),
                        v6: caps.has(wire::CAP_IPV6),
                    };
                    let back = FwdRule::from_raw(&rule.to_raw(families), table, caps);
                    assert_eq!(back.as_ref(), Ok(&rule), "{raw:?}");
                    let _ = rule.to_string();
                }
            }
        }
    };
    if let Ok(Some((tables, used))) = wire::decode_update(data) {
        let mut out = Vec::new();
        wire::encode_update(&tables, &mut out);
        assert_eq!(out, &data[..used]);
        for (_, rules) in &tables {
            check_rules(rules);
        }
    }
    if let Ok(Some((tables, used))) = wire::decode_tables(data) {
        for t in &tables {
            check_rules(&t.rules);
        }
        // Names are re-encoded lossily (UTF-8), so only the lengths are
        // compared.
        let mut out = Vec::new();
        wire::encode_tables(&tables, &mut out);
        assert_eq!(out.len(), used);
    }
    let _ = wire::decode_status(data);
    let _ = wire::Hello::decode(data);
}
