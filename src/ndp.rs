//! NDP service: Neighbour and Router Discovery answered locally (RFC 4861).
//!
//! # Theory of operation
//!
//! As with ARP, the guest must believe every IPv6 neighbour is reachable
//! through us, and learn its address configuration from us:
//!
//! * **Neighbour Solicitation** (not DAD: the source is not `::`) →
//!   **Neighbour Advertisement** for whatever target was asked, flags
//!   Router, Solicited and Override, Target Link-Layer Address = our MAC
//!   (NDP proxy). DAD solicitations get no answer, so the guest keeps its
//!   addresses.
//! * **Router Solicitation** → **Router Advertisement** (unless `no_ra`):
//!   cur hop limit 255, M flag (addresses from DHCPv6), router lifetime
//!   65535 s, then options: Prefix Information for the /64 of the guest's
//!   address (L+A, infinite lifetimes; only when a global address is
//!   known), Source Link-Layer Address, MTU (unless 0), RDNSS (unless
//!   `no_dhcp_dns` or no IPv6 nameserver), DNSSL (only with RDNSS, search
//!   domains and not `no_dhcp_search`).
//! * Router Advertisements (134) and Neighbour Advertisements (136) from the
//!   guest are consumed silently.
//!
//! All our NDP messages come from `our_tap_ll` and our MAC, with hop limit
//! 255 as RFC 4861 requires. Answers go to the solicitor's IPv6 source and
//! Ethernet source; an RS from `::` is answered to all-nodes.
//!
//! We also originate: periodic unsolicited RAs to ff02::1 ([`RaTimer`] says
//! when: uniformly random in [200 s, 600 s), none at start-up, RFC 4861
//! 6.2.1 with the default MaxRtrAdvInterval) and one NS for the guest's
//! address when it connects ([`solicit_guest`]), whose NA teaches us the
//! guest's MAC.
//!
//! The caller routes every ICMPv6 message for which [`is_ndp`] holds here
//! and never forwards it; with `no_ndp` they are dropped (that check is
//! also done by [`handle`]). Messages are built in place in `out` with no
//! allocation; functions return the frame length, `None` for nothing to
//! send.

// Every byte parsed here is attacker-controlled (guest input) and a panic
// aborts the process, cutting every flow: no unchecked index or slice, no
// arithmetic that can overflow. (Unit tests index their own fixtures.)
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]

use crate::conf::Config;
use crate::live::Live;
use crate::wire::build::{self, ICMP6_OFFSET};
use crate::wire::icmpv6::{msg_type, Icmpv6Packet};
use crate::wire::{Classified, Mac, L3, L4};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// Hop limit of every NDP message.
const NDP_HOP_LIMIT: u8 = 255;
/// Router lifetime announced, seconds (RFC 8319 maximum).
const ROUTER_LIFETIME: u16 = 65535;
/// Infinite lifetime for prefixes and DNS options.
const INFINITE: u32 = 0xffff_ffff;
/// Maximum number of RDNSS addresses announced.
const MAX_DNS: usize = 3;

/// All-nodes multicast address and its MAC.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_NODES_MAC: Mac = [0x33, 0x33, 0, 0, 0, 1];

/// Option types (RFC 4861, 4191, 8106).
mod opt {
    pub(crate) const SRC_LL_ADDR: u8 = 1;
    pub(crate) const TARGET_LL_ADDR: u8 = 2;
    pub(crate) const PREFIX_INFO: u8 = 3;
    pub(crate) const MTU: u8 = 5;
    pub(crate) const RDNSS: u8 = 25;
    pub(crate) const DNSSL: u8 = 31;
}

/// NA flags in the first word of the body.
const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;
/// RA flags: managed address configuration.
const RA_MANAGED: u8 = 0x80;
/// Prefix flags: on-link, autonomous.
const PREFIX_L_A: u8 = 0xc0;

/// Length of an NS or NA with one link-layer address option.
const NS_NA_LEN: usize = 24 + 8;
/// Length of the RA fixed part (ICMPv6 header included).
const RA_HEADER_LEN: usize = 16;

/// Whether an ICMPv6 type belongs to NDP (RS, RA, NS, NA): such messages
/// are ours, never forwarded.
pub(crate) fn is_ndp(icmpv6_type: u8) -> bool {
    (msg_type::ROUTER_SOLICIT..=msg_type::NEIGHBOUR_ADVERT).contains(&icmpv6_type)
}

/// Handles an NDP message from the guest.
///
/// `frame` is any classified guest frame; frames that are not IPv6 NS or
/// RS, or that must not be answered, give `None`. Otherwise the reply frame
/// is written to `out` and its length returned.
pub(crate) fn handle(
    conf: &Config,
    live: &Live,
    frame: &Classified<'_>,
    out: &mut [u8],
) -> Option<usize> {
    let L3::Ipv6 {
        src,
        l4: L4::Icmpv6 {
            msg_type, message, ..
        },
        ..
    } = frame.l3
    else {
        return None;
    };
    if conf.no_ndp {
        return None;
    }
    let ip6 = conf.ip6.as_ref()?;
    match msg_type {
        msg_type::NEIGHBOUR_SOLICIT => {
            if src.is_unspecified() {
                return None; // duplicate address detection
            }
            let target = Icmpv6Packet::new_checked(message).ok()?.ndp_target()?;
            let n = write_neighbour_msg(
                out,
                msg_type::NEIGHBOUR_ADVERT,
                NA_ROUTER | NA_SOLICITED | NA_OVERRIDE,
                target,
                opt::TARGET_LL_ADDR,
                conf.our_mac,
            )?;
            finish(out, conf, frame.src_mac, ip6.our_tap_ll, src, n)
        }
        msg_type::ROUTER_SOLICIT => {
            if conf.no_ra {
                return None;
            }
            let (dst, dst_mac) = if src.is_unspecified() {
                (ALL_NODES, ALL_NODES_MAC)
            } else {
                (src, frame.src_mac)
            };
            let n = write_ra(conf, live, out)?;
            finish(out, conf, dst_mac, ip6.our_tap_ll, dst, n)
        }
        _ => None,
    }
}

/// Builds an unsolicited Router Advertisement to all nodes. `None` if RAs
/// are disabled, IPv6 is off or `out` is too small.
pub(crate) fn unsolicited_ra(conf: &Config, live: &Live, out: &mut [u8]) -> Option<usize> {
    if conf.no_ra || conf.no_ndp {
        return None;
    }
    let ip6 = conf.ip6.as_ref()?;
    let n = write_ra(conf, live, out)?;
    finish(out, conf, ALL_NODES_MAC, ip6.our_tap_ll, ALL_NODES, n)
}

/// Builds the Neighbour Solicitation for the guest's global address, sent
/// to its solicited-node multicast group, so that the guest's answer tells
/// us its MAC. `None` without a known guest address.
pub(crate) fn solicit_guest(conf: &Config, live: &Live, out: &mut [u8]) -> Option<usize> {
    let ip6 = conf.ip6.as_ref()?;
    let target = live.ip6.as_ref()?.addr?;
    let t = target.octets();
    let group = Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15],
    ]);
    let group_mac = [0x33, 0x33, 0xff, t[13], t[14], t[15]];
    let n = write_neighbour_msg(
        out,
        msg_type::NEIGHBOUR_SOLICIT,
        0,
        target,
        opt::SRC_LL_ADDR,
        conf.our_mac,
    )?;
    finish(out, conf, group_mac, ip6.our_tap_ll, group, n)
}

/// Adds Ethernet and IPv6 headers around a message of `len` bytes at
/// [`ICMP6_OFFSET`].
fn finish(
    out: &mut [u8],
    conf: &Config,
    dst_mac: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    len: usize,
) -> Option<usize> {
    build::finish_ipv6_icmpv6(out, conf.our_mac, dst_mac, src, dst, NDP_HOP_LIMIT, len).ok()
}

/// Writes an NS or NA (header, flags, target, one link-layer option) at
/// [`ICMP6_OFFSET`]; returns the message length.
fn write_neighbour_msg(
    out: &mut [u8],
    ty: u8,
    flags: u8,
    target: Ipv6Addr,
    ll_opt: u8,
    mac: Mac,
) -> Option<usize> {
    let m: &mut [u8; NS_NA_LEN] = out.get_mut(ICMP6_OFFSET..)?.first_chunk_mut()?;
    m.fill(0);
    m[0] = ty;
    m[4] = flags;
    m[8..24].copy_from_slice(&target.octets());
    m[24] = ll_opt;
    m[25] = 1;
    m[26..32].copy_from_slice(&mac);
    Some(NS_NA_LEN)
}

/// Sequential writer of NDP options into a bounded buffer.
struct OptWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl OptWriter<'_> {
    /// Reserves `len` zeroed bytes (a multiple of 8) and returns them.
    fn take(&mut self, len: usize) -> Option<&mut [u8]> {
        let end = self.pos.checked_add(len)?;
        let s = self.buf.get_mut(self.pos..end)?;
        s.fill(0);
        self.pos = end;
        Some(s)
    }

    /// Reserves `N` zeroed bytes (a multiple of 8) and returns them.
    fn take_array<const N: usize>(&mut self) -> Option<&mut [u8; N]> {
        self.take(N)?.first_chunk_mut()
    }

    /// Writes an option header: type, length in units of 8 bytes (`N`,
    /// the option's length, is a multiple of 8 below 2048).
    fn option<const N: usize>(&mut self, ty: u8) -> Option<&mut [u8; N]> {
        let s = self.take_array::<N>()?;
        if let [t, units, ..] = s.as_mut_slice() {
            *t = ty;
            *units = (N / 8) as u8;
        }
        Some(s)
    }
}

/// Writes a Router Advertisement at [`ICMP6_OFFSET`]; returns its length.
fn write_ra(conf: &Config, live: &Live, out: &mut [u8]) -> Option<usize> {
    let ip6 = live.ip6.as_ref()?;
    let mut w = OptWriter {
        buf: out.get_mut(ICMP6_OFFSET..)?,
        pos: 0,
    };
    let h = w.take_array::<RA_HEADER_LEN>()?;
    h[0] = msg_type::ROUTER_ADVERT;
    h[4] = NDP_HOP_LIMIT;
    h[5] = RA_MANAGED;
    h[6..8].copy_from_slice(&ROUTER_LIFETIME.to_be_bytes());
    // Reachable time and retransmission timer stay 0: unspecified.

    if let Some(addr) = ip6.addr {
        write_prefix(&mut w, addr, INFINITE)?;
    }
    // The prefix of before a change of the host's, with lifetime 0: SLAAC
    // guests deprecate their addresses in it (RFC 4862, 5.5.3).
    if let Some(old) = ip6.deprecated_prefix {
        write_prefix(&mut w, old, 0)?;
    }

    let o = w.option::<8>(opt::SRC_LL_ADDR)?;
    o[2..8].copy_from_slice(&conf.our_mac);

    if conf.mtu != 0 {
        let o = w.option::<8>(opt::MTU)?;
        o[4..8].copy_from_slice(&u32::from(conf.mtu).to_be_bytes());
    }

    let dns = ip6.dns.get(..ip6.dns.len().min(MAX_DNS)).unwrap_or(&[]);
    if !conf.no_dhcp_dns && !dns.is_empty() {
        // Header, then one address per 16 bytes: at most 56 bytes.
        let len = dns.len().checked_mul(16)?.checked_add(8)?;
        let o = w.take(len)?;
        let (hdr, slots) = o.split_first_chunk_mut::<8>()?;
        let [i0, i1, i2, i3] = INFINITE.to_be_bytes();
        *hdr = [opt::RDNSS, (len / 8) as u8, 0, 0, i0, i1, i2, i3];
        for (slot, a) in slots.chunks_exact_mut(16).zip(dns) {
            slot.copy_from_slice(&a.octets());
        }
        if !conf.no_dhcp_search {
            write_dnssl(&mut w, &conf.search);
        }
    }
    Some(w.pos)
}

/// Appends a Prefix Information option for the /64 of `addr`, on link and
/// for autonomous configuration, with both lifetimes `lifetime`.
fn write_prefix(w: &mut OptWriter<'_>, addr: Ipv6Addr, lifetime: u32) -> Option<()> {
    let o = w.option::<32>(opt::PREFIX_INFO)?;
    o[2] = 64;
    o[3] = PREFIX_L_A;
    o[4..8].copy_from_slice(&lifetime.to_be_bytes());
    o[8..12].copy_from_slice(&lifetime.to_be_bytes());
    let prefix = u128::from(addr) & !(u128::from(u64::MAX));
    o[16..32].copy_from_slice(&prefix.to_be_bytes());
    Some(())
}

/// Appends a DNSSL option (RFC 8106) with as many of `domains` as fit, in
/// DNS label encoding. Domains with an empty or over-long label are
/// skipped. Writes nothing if no domain is usable or nothing fits.
fn write_dnssl(w: &mut OptWriter<'_>, domains: &[String]) {
    /// The option length field counts 8-byte units in one byte.
    const MAX_OPT_LEN: usize = 255 * 8;
    let start = w.pos;
    let room = w.buf.len().saturating_sub(start).min(MAX_OPT_LEN);
    let Some(o) = w.buf.get_mut(start..).and_then(|b| b.get_mut(..room)) else {
        return;
    };
    // Header (8 bytes) then encoded names, padded to 8 bytes.
    let Some((hdr, body)) = o.split_first_chunk_mut::<8>() else {
        return;
    };
    let mut used: usize = 0;
    for d in domains {
        let name = d.trim_end_matches('.');
        let valid = !name.is_empty() && name.split('.').all(|l| (1..=63).contains(&l.len()));
        // Encoded length: one length byte per label + label bytes + root.
        let Some(enc_len) = name.len().checked_add(2) else {
            continue;
        };
        let Some(next) = used.checked_add(enc_len) else {
            continue;
        };
        let dst = match body.get_mut(used..next) {
            Some(dst) if valid && enc_len <= 255 => dst,
            _ => continue,
        };
        let mut rest = dst;
        for label in name.split('.') {
            let Some((n, tail)) = std::mem::take(&mut rest).split_first_mut() else {
                return;
            };
            *n = label.len() as u8;
            let Some((text, tail)) = tail.split_at_mut_checked(label.len()) else {
                return;
            };
            text.copy_from_slice(label.as_bytes());
            rest = tail;
        }
        if let Some(root) = rest.first_mut() {
            *root = 0;
        }
        used = next;
    }
    if used == 0 {
        return;
    }
    let Some(padded) = used.checked_next_multiple_of(8) else {
        return;
    };
    let Some(pad) = body.get_mut(used..padded) else {
        return;
    };
    pad.fill(0);
    // `padded` is at most `room - 8`, below 2048: none of these overflow.
    let total = padded.wrapping_add(8);
    let [i0, i1, i2, i3] = INFINITE.to_be_bytes();
    *hdr = [opt::DNSSL, (total / 8) as u8, 0, 0, i0, i1, i2, i3];
    w.pos = start.wrapping_add(total);
}

/// When the next unsolicited Router Advertisement is due.
///
/// Owned by the event loop; `check` is called from its periodic timer
/// handler with the current time and a fresh random value (it keeps no
/// random state of its own, so tests choose the intervals).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RaTimer {
    next: Option<Instant>,
}

impl RaTimer {
    /// Longest interval between unsolicited RAs (RFC 4861 default
    /// MaxRtrAdvInterval).
    pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(600);
    /// Shortest interval: a third of the longest.
    pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(200);

    pub(crate) const fn new() -> Self {
        RaTimer { next: None }
    }

    /// The interval chosen by a random value: uniform in [200 s, 600 s),
    /// millisecond granularity.
    pub(crate) fn interval(random: u32) -> Duration {
        const SPAN_MS: u32 =
            RaTimer::MAX_INTERVAL.as_millis() as u32 - RaTimer::MIN_INTERVAL.as_millis() as u32;
        // Below `MAX_INTERVAL`: never saturates.
        Self::MIN_INTERVAL.saturating_add(Duration::from_millis(u64::from(random % SPAN_MS)))
    }

    /// Whether an unsolicited RA is due at `now`. The first call only arms
    /// the timer (no RA at start-up); each `true` re-arms it with a new
    /// interval drawn from `random`.
    pub(crate) fn check(&mut self, now: Instant, random: u32) -> bool {
        match self.next {
            Some(t) if now < t => false,
            armed => {
                // `None` (no RA ever again) only at the end of time.
                self.next = now.checked_add(Self::interval(random));
                armed.is_some()
            }
        }
    }

    /// When the next RA is due, once armed.
    #[cfg(test)]
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arp::tests::test_config;
    use crate::wire::classify;
    use etherparse::{Icmpv6Type, NetSlice, SlicedPacket, TransportSlice};

    const GUEST_MAC: Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    fn guest_ll() -> Ipv6Addr {
        "fe80::5054:ff:fe12:3456".parse().unwrap()
    }

    /// A frame from the guest carrying `msg` (checksum filled in).
    fn from_guest(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 256];
        let n = build::eth_ipv6_icmpv6(
            &mut f,
            GUEST_MAC,
            [0x33, 0x33, 0, 0, 0, 2],
            src,
            dst,
            255,
            msg,
        )
        .unwrap();
        f.truncate(n);
        f
    }

    fn run(conf: &Config, frame: &[u8]) -> Option<Vec<u8>> {
        let c = classify(frame).unwrap();
        let mut out = [0u8; 1500];
        handle(conf, &Live::new(conf), &c, &mut out).map(|n| out[..n].to_vec())
    }

    /// (type, body) of each option after `start` in an ICMPv6 message.
    fn options(msg: &[u8], start: usize) -> Vec<(u8, Vec<u8>)> {
        let mut v = Vec::new();
        let mut rest = &msg[start..];
        while !rest.is_empty() {
            let len = usize::from(rest[1]) * 8;
            assert!(len > 0 && len <= rest.len());
            v.push((rest[0], rest[2..len].to_vec()));
            rest = &rest[len..];
        }
        v
    }

    /// Checks the IPv6 envelope with etherparse and returns the message.
    fn icmp_of(frame: &[u8], dst: Ipv6Addr, dst_mac: Mac) -> (Icmpv6Type, Vec<u8>) {
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(etherparse::LinkSlice::Ethernet2(e)) = &p.link else {
            panic!()
        };
        assert_eq!(
            (e.source(), e.destination()),
            (crate::conf::DEFAULT_MAC, dst_mac)
        );
        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            panic!()
        };
        let h = ip.header();
        assert_eq!(h.hop_limit(), 255);
        assert_eq!(h.source_addr(), "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(h.destination_addr(), dst);
        let Some(TransportSlice::Icmpv6(i)) = &p.transport else {
            panic!()
        };
        let want = etherparse::Icmpv6Header::with_checksum(
            i.icmp_type(),
            h.source(),
            h.destination(),
            i.payload(),
        )
        .unwrap();
        assert_eq!(want.checksum, i.checksum());
        // Our own classifier accepts what we send.
        assert!(classify(frame).is_ok());
        (i.icmp_type(), i.slice().to_vec())
    }

    fn ns(target: Ipv6Addr) -> [u8; 32] {
        let mut m = [0u8; 32];
        m[0] = msg_type::NEIGHBOUR_SOLICIT;
        m[8..24].copy_from_slice(&target.octets());
        m[24] = 1;
        m[25] = 1;
        m[26..32].copy_from_slice(&GUEST_MAC);
        m
    }

    #[test]
    fn neighbour_solicitation_gets_advertisement() {
        let conf = test_config();
        let target: Ipv6Addr = "fe80::1".parse().unwrap();
        let f = from_guest(guest_ll(), "ff02::1:ff00:1".parse().unwrap(), &ns(target));
        let r = run(&conf, &f).unwrap();
        let (t, msg) = icmp_of(&r, guest_ll(), GUEST_MAC);
        let Icmpv6Type::NeighborAdvertisement(h) = t else {
            panic!("{t:?}")
        };
        assert!(h.router && h.solicited && h.r#override);
        assert_eq!(&msg[8..24], &target.octets());
        assert_eq!(options(&msg, 24), [(2, crate::conf::DEFAULT_MAC.to_vec())]);

        // Any target is answered (proxy), DAD is not.
        let other: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap();
        assert!(run(&conf, &from_guest(guest_ll(), other, &ns(other))).is_some());
        let dad = from_guest(
            Ipv6Addr::UNSPECIFIED,
            "ff02::1:ff12:3456".parse().unwrap(),
            &ns(guest_ll()),
        );
        assert!(run(&conf, &dad).is_none());
        // Truncated NS: classified fine, no answer.
        let short = from_guest(guest_ll(), target, &ns(target)[..20]);
        assert!(run(&conf, &short).is_none());
        // --no-ndp.
        let mut c = test_config();
        c.no_ndp = true;
        assert!(run(&c, &f).is_none());
    }

    fn rs() -> [u8; 16] {
        let mut m = [0u8; 16];
        m[0] = msg_type::ROUTER_SOLICIT;
        m[8] = 1;
        m[9] = 1;
        m[10..16].copy_from_slice(&GUEST_MAC);
        m
    }

    #[test]
    fn router_solicitation_gets_full_advertisement() {
        let conf = test_config();
        let f = from_guest(guest_ll(), "ff02::2".parse().unwrap(), &rs());
        let r = run(&conf, &f).unwrap();
        let (t, msg) = icmp_of(&r, guest_ll(), GUEST_MAC);
        let Icmpv6Type::RouterAdvertisement(h) = t else {
            panic!("{t:?}")
        };
        assert_eq!(h.cur_hop_limit, 255);
        assert!(h.managed_address_config && !h.other_config);
        assert_eq!(h.router_lifetime, 65535);
        let opts = options(&msg, 16);
        let types: Vec<u8> = opts.iter().map(|o| o.0).collect();
        assert_eq!(types, [3, 1, 5, 25, 31]);
        // Prefix information: /64, L+A, infinite, prefix masked.
        let pi = &opts[0].1;
        assert_eq!((pi[0], pi[1]), (64, 0xc0));
        assert_eq!(&pi[2..10], &[0xff; 8]);
        let prefix: Ipv6Addr = "2001:db8:1:2::".parse().unwrap();
        assert_eq!(&pi[14..30], &prefix.octets());
        assert_eq!(opts[1].1, crate::conf::DEFAULT_MAC);
        assert_eq!(&opts[2].1[2..6], &65520u32.to_be_bytes());
        let rdnss = &opts[3].1;
        assert_eq!(rdnss.len(), 6 + 16);
        let dns: Ipv6Addr = "2001:db8::53".parse().unwrap();
        assert_eq!(&rdnss[6..22], &dns.octets());
        let dnssl = &opts[4].1;
        let names = b"\x07example\x03com\x00\x03lab\x07example\x03org\x00";
        assert_eq!(&dnssl[6..6 + names.len()], names);
        assert!(dnssl[6 + names.len()..].iter().all(|&b| b == 0));
    }

    /// After the host's prefix changed: the new prefix, then the old one
    /// with lifetime 0 (SLAAC guests deprecate their addresses in it).
    #[test]
    fn router_advertisement_deprecates_the_old_prefix() {
        let conf = test_config();
        let mut live = Live::new(&conf);
        let l6 = live.ip6.as_mut().unwrap();
        l6.deprecated_prefix = l6.addr;
        l6.addr = Some("2001:db8:99::10".parse().unwrap());
        let mut out = [0u8; 1500];
        let n = unsolicited_ra(&conf, &live, &mut out).unwrap();
        let (_, msg) = icmp_of(&out[..n], ALL_NODES, ALL_NODES_MAC);
        let opts = options(&msg, 16);
        let prefixes: Vec<&Vec<u8>> = opts.iter().filter(|o| o.0 == 3).map(|o| &o.1).collect();
        assert_eq!(prefixes.len(), 2);
        let new: Ipv6Addr = "2001:db8:99::".parse().unwrap();
        assert_eq!(&prefixes[0][14..30], &new.octets());
        assert_eq!(&prefixes[0][2..10], &[0xff; 8]);
        let old: Ipv6Addr = "2001:db8:1:2::".parse().unwrap();
        assert_eq!(&prefixes[1][14..30], &old.octets());
        assert_eq!(&prefixes[1][2..10], &[0; 8]);
    }

    #[test]
    fn router_advertisement_options_follow_config() {
        let f = from_guest(guest_ll(), "ff02::2".parse().unwrap(), &rs());
        let types = |c: &Config| -> Vec<u8> {
            let r = run(c, &f).unwrap();
            let msg = &r[ICMP6_OFFSET..];
            options(msg, 16).iter().map(|o| o.0).collect()
        };
        let mut c = test_config();
        c.no_dhcp_search = true;
        assert_eq!(types(&c), [3, 1, 5, 25]);
        c.no_dhcp_search = false;
        c.no_dhcp_dns = true;
        assert_eq!(types(&c), [3, 1, 5]);
        c.mtu = 0;
        c.ip6.as_mut().unwrap().addr = None;
        assert_eq!(types(&c), [1]);
        let mut c = test_config();
        c.search = vec!["bad..name".into(), "".into()];
        assert_eq!(types(&c), [3, 1, 5, 25]);
        c.no_ra = true;
        assert!(run(&c, &f).is_none());

        // An RS from :: is answered to all nodes.
        let conf = test_config();
        let f = from_guest(Ipv6Addr::UNSPECIFIED, "ff02::2".parse().unwrap(), &rs());
        let r = run(&conf, &f).unwrap();
        icmp_of(&r, ALL_NODES, ALL_NODES_MAC);

        // Output buffer too small: nothing, no panic.
        let c = classify(&f).unwrap();
        for n in 0..200 {
            let mut out = vec![0u8; n];
            let _ = handle(&conf, &Live::new(&conf), &c, &mut out);
        }
    }

    #[test]
    fn originated_messages() {
        let conf = test_config();
        let mut out = [0u8; 1500];
        let n = unsolicited_ra(&conf, &Live::new(&conf), &mut out).unwrap();
        let (t, _) = icmp_of(&out[..n], ALL_NODES, ALL_NODES_MAC);
        assert!(matches!(t, Icmpv6Type::RouterAdvertisement(_)));

        let n = solicit_guest(&conf, &Live::new(&conf), &mut out).unwrap();
        let group: Ipv6Addr = "ff02::1:ff00:10".parse().unwrap();
        let (t, msg) = icmp_of(&out[..n], group, [0x33, 0x33, 0xff, 0, 0, 0x10]);
        assert_eq!(t, Icmpv6Type::NeighborSolicitation);
        let guest: Ipv6Addr = "2001:db8:1:2::10".parse().unwrap();
        assert_eq!(&msg[8..24], &guest.octets());
        assert_eq!(options(&msg, 24), [(1, crate::conf::DEFAULT_MAC.to_vec())]);

        let mut c = test_config();
        c.ip6.as_mut().unwrap().addr = None;
        c.no_ra = true;
        assert!(solicit_guest(&c, &Live::new(&c), &mut out).is_none());
        assert!(unsolicited_ra(&c, &Live::new(&c), &mut out).is_none());
    }

    #[test]
    fn ndp_types() {
        assert!(!is_ndp(128) && !is_ndp(137));
        assert!((133..=136).all(is_ndp));
    }

    #[test]
    fn ra_timer() {
        let t0 = Instant::now();
        let mut t = RaTimer::new();
        assert!(!t.check(t0, 0)); // arms only
        assert_eq!(t.next_due(), Some(t0 + Duration::from_secs(200)));
        assert!(!t.check(t0 + Duration::from_secs(199), 5));
        assert!(t.check(t0 + Duration::from_secs(200), u32::MAX));
        let next = t.next_due().unwrap() - (t0 + Duration::from_secs(200));
        assert!(next >= RaTimer::MIN_INTERVAL && next < RaTimer::MAX_INTERVAL);
        let mut rng = crate::wire::XorShift(42);
        for _ in 0..1000 {
            let i = RaTimer::interval(rng.next() as u32);
            assert!(i >= RaTimer::MIN_INTERVAL && i < RaTimer::MAX_INTERVAL);
        }
    }
}
