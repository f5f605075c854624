//! Built-in DHCP server (IPv4): hands the guest its one address, forever.
//!
//! # Theory of operation
//!
//! The guest has exactly one possible configuration, fixed at start-up
//! ([`Ip4Conf`]): its address and prefix length, the gateway, nameservers,
//! MTU, search domains. There is no lease database and no state: every
//! request is answered from the configuration alone, so this module is one
//! pure function, [`reply`], from a request's UDP payload to a reply's UDP
//! payload. [`handle`], the tap input path's entry point like
//! [`arp::handle`](crate::arp::handle), takes a classified guest frame
//! and writes the whole reply frame around that payload: from our MAC to
//! the request's source MAC, from `our_tap_addr`:67 to
//! [`DhcpReply::dst`]:68.
//!
//! Exchanges, as in passt:
//!
//! * DHCPDISCOVER gets a DHCPOFFER, or straight a DHCPACK if the client
//!   asked for Rapid Commit (option 80, RFC 4039), which we then echo;
//! * DHCPREQUEST gets a DHCPACK whatever it asked for: there is nothing
//!   else to offer, so never a DHCPNAK;
//! * a BOOTP request (no option 53) gets a DHCPACK;
//! * anything else (DECLINE, RELEASE, INFORM...) is ignored.
//!
//! The lease is infinite (option 51 = 0xffffffff), so clients never renew.
//! The reply carries, when they apply: 53 message type, 54 server
//! identifier, 1 subnet mask, 3 router, 51 lease time, 26 MTU, 6 DNS
//! servers, 12 host name, 81 client FQDN, 119 domain search list (with name
//! compression), 121 classless routes (only when the gateway is outside the
//! guest's subnet: an on-link /32 route to it, then the default route
//! through it) and 80 for Rapid Commit.
//!
//! Options go in the order of the client's Parameter Request List (option
//! 55), then the others in numeric order; option 53 goes first unless the
//! client listed it, because some old DOS stacks only look there. The
//! options area holds at most 307 bytes plus END, so that the message fits
//! the 576 bytes every client accepts; an option that does not fit is left
//! out, and the search list is cut to the room the others leave. The area is
//! padded to 60 bytes, the BOOTP minimum.
//!
//! Requests come from the guest and are not trusted: every read is bounds
//! checked, the option walk only moves forward, and nothing is allocated.

// Every byte parsed here is attacker-controlled (guest input) and a panic
// aborts the process, cutting every flow: no unchecked index or slice, no
// arithmetic that can overflow. (Unit tests index their own fixtures.)
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]

use std::net::Ipv4Addr;

use std::net::SocketAddrV4;

use crate::conf::{Config, Ip4Conf};
use crate::dns_name::{self, CompressedList};
use crate::live::{Live, Live4};
use crate::wire::{build, Classified, L3, L4};

/// The server's UDP port.
const SERVER_PORT: u16 = 67;
/// The client's UDP port.
const CLIENT_PORT: u16 = 68;

/// Offsets in the fixed BOOTP header (RFC 951, RFC 2131).
mod field {
    use std::ops::Range;

    pub(crate) const OP: usize = 0;
    pub(crate) const HTYPE: usize = 1;
    pub(crate) const HLEN: usize = 2;
    pub(crate) const HOPS: usize = 3;
    pub(crate) const XID: Range<usize> = 4..8;
    pub(crate) const SECS: Range<usize> = 8..10;
    pub(crate) const FLAGS: Range<usize> = 10..12;
    pub(crate) const CIADDR: Range<usize> = 12..16;
    pub(crate) const YIADDR: Range<usize> = 16..20;
    pub(crate) const SIADDR: Range<usize> = 20..24;
    pub(crate) const GIADDR: Range<usize> = 24..28;
    pub(crate) const CHADDR: Range<usize> = 28..44;
    /// `sname` and `file`, both zero in replies.
    pub(crate) const SNAME_FILE: Range<usize> = 44..236;
    pub(crate) const MAGIC: Range<usize> = 236..240;
    pub(crate) const OPTIONS: usize = 240;
}

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Broadcast bit of the flags field.
const FLAG_BROADCAST: u16 = 0x8000;

/// Options area limit without END: 576 (RFC 2131) - 240 (header) - 1.
const OPT_MAX: usize = 307;
/// Minimum options area (RFC 951 vendor area).
const OPT_MIN: usize = 60;

/// Option codes we read or write.
mod opt {
    pub(crate) const PAD: u8 = 0;
    pub(crate) const SUBNET_MASK: u8 = 1;
    pub(crate) const ROUTER: u8 = 3;
    pub(crate) const DNS: u8 = 6;
    pub(crate) const HOSTNAME: u8 = 12;
    pub(crate) const MTU: u8 = 26;
    pub(crate) const LEASE_TIME: u8 = 51;
    pub(crate) const MESSAGE_TYPE: u8 = 53;
    pub(crate) const SERVER_ID: u8 = 54;
    pub(crate) const PARAMETER_REQUEST_LIST: u8 = 55;
    pub(crate) const RAPID_COMMIT: u8 = 80;
    pub(crate) const CLIENT_FQDN: u8 = 81;
    pub(crate) const DOMAIN_SEARCH: u8 = 119;
    pub(crate) const CLASSLESS_ROUTE: u8 = 121;
    pub(crate) const END: u8 = 255;
}

/// DHCP message types (option 53).
mod msg {
    pub(crate) const DISCOVER: u8 = 1;
    pub(crate) const OFFER: u8 = 2;
    pub(crate) const REQUEST: u8 = 3;
    pub(crate) const ACK: u8 = 5;
}

/// A reply built into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DhcpReply {
    /// Length of the UDP payload written.
    pub(crate) len: usize,
    /// IPv4 destination: broadcast if the client set the broadcast flag,
    /// the assigned address otherwise. Port 68.
    pub(crate) dst: Ipv4Addr,
    /// IPv4 source: our address on the tap. Port 67.
    pub(crate) src: Ipv4Addr,
}

/// Why a request was dropped without reply.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DhcpDrop {
    #[error("message shorter than the BOOTP header")]
    TooShort,
    #[error("not a BOOTREQUEST")]
    NotRequest,
    #[error("bad magic cookie")]
    BadMagic,
    #[error("option {0} runs past the end of the message")]
    OptionOverrun(u8),
    #[error("reply buffer too small")]
    OutputTooSmall,
}

/// What we learnt from the client's options.
#[derive(Default)]
struct ClientOpts<'a> {
    /// Option 53, if present and not empty.
    msg_type: Option<u8>,
    /// Option 55.
    prl: &'a [u8],
    rapid_commit: bool,
}

/// Walks the options area; a repeated option replaces an earlier one.
fn parse_options(mut opts: &[u8]) -> Result<ClientOpts<'_>, DhcpDrop> {
    let mut found = ClientOpts::default();
    // Each turn consumes at least one byte: the loop ends.
    while let Some((&code, rest)) = opts.split_first() {
        match code {
            opt::PAD => {
                opts = rest;
                continue;
            }
            opt::END => break,
            _ => {}
        }
        let (&len, rest) = rest.split_first().ok_or(DhcpDrop::OptionOverrun(code))?;
        let len = usize::from(len);
        if rest.len() < len {
            return Err(DhcpDrop::OptionOverrun(code));
        }
        let (data, rest) = rest.split_at(len);
        match code {
            opt::MESSAGE_TYPE => found.msg_type = data.first().copied(),
            opt::PARAMETER_REQUEST_LIST => found.prl = data,
            opt::RAPID_COMMIT => found.rapid_commit = true,
            _ => {}
        }
        opts = rest;
    }
    Ok(found)
}

/// Option payloads we may send, indexed by code, stored in one scratch
/// buffer.
struct ServerOpts {
    data: [u8; 1024],
    used: usize,
    /// (start, length) in `data` for each option code we send.
    slots: [Option<(u16, u8)>; 256],
}

impl ServerOpts {
    fn new() -> Self {
        ServerOpts {
            data: [0; 1024],
            used: 0,
            slots: [None; 256],
        }
    }

    /// Sets option `code` to `payload`; ignored if longer than an option
    /// can be (or than the scratch space).
    fn set(&mut self, code: u8, payload: &[u8]) {
        if payload.len() > 255 {
            return;
        }
        let _ = self.set_with(code, payload.len(), |buf| {
            buf.copy_from_slice(payload);
            Some(payload.len())
        });
    }

    /// Sets option `code` from what `fill` writes into at most `max` bytes
    /// (capped to 255); `fill` returns the length used, or `None` to leave
    /// the option out.
    fn set_with(
        &mut self,
        code: u8,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<usize> {
        let max = max.min(255);
        let buf = self.data.get_mut(self.used..)?.get_mut(..max)?;
        let len = fill(buf)?;
        if len > max {
            return None;
        }
        let used = self.used.checked_add(len)?;
        *self.slots.get_mut(usize::from(code))? = Some((self.used as u16, len as u8));
        self.used = used;
        Some(len)
    }

    fn get(&self, code: u8) -> Option<&[u8]> {
        let (start, len) = (*self.slots.get(usize::from(code))?)?;
        self.data.get(usize::from(start)..)?.get(..usize::from(len))
    }

    /// Option area bytes (with headers) of everything set so far.
    fn total_len(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            // At most 256 options of 2 + 255 bytes: no overflow.
            .map(|&(_, len)| usize::from(len).wrapping_add(2))
            .sum()
    }
}

/// The subnet mask for a prefix length (clamped to 32).
fn mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shr(u32::from(prefix_len.min(32)))
        .map_or(u32::MAX, |host| !host)
}

/// Fills the option table for a reply of type `reply_type`.
fn server_options(
    conf: &Config,
    ip4: &Ip4Conf,
    l4: &Live4,
    reply_type: u8,
    rapid: bool,
) -> ServerOpts {
    let mut so = ServerOpts::new();
    let mask = mask(l4.prefix_len);

    so.set(opt::MESSAGE_TYPE, &[reply_type]);
    so.set(opt::SERVER_ID, &ip4.our_tap_addr.octets());
    so.set(opt::SUBNET_MASK, &mask.to_be_bytes());
    so.set(opt::ROUTER, &l4.gw.octets());
    so.set(opt::LEASE_TIME, &u32::MAX.to_be_bytes());

    if u32::from(l4.addr) & mask != u32::from(l4.gw) & mask {
        // gw/32 via 0.0.0.0 (on link), then 0/0 via gw.
        let gw = l4.gw.octets();
        let mut routes = [0u8; 14];
        routes[0] = 32;
        routes[1..5].copy_from_slice(&gw);
        routes[10..14].copy_from_slice(&gw);
        so.set(opt::CLASSLESS_ROUTE, &routes);
    }

    if conf.mtu != 0 {
        so.set(opt::MTU, &conf.mtu.to_be_bytes());
    }

    if !conf.no_dhcp_dns {
        let mut dns = [[0u8; 4]; 3];
        let n = dns
            .iter_mut()
            .zip(l4.dns.iter().filter(|a| !a.is_unspecified()))
            .map(|(slot, addr)| *slot = addr.octets())
            .count();
        if let Some(used) = dns.get(..n).filter(|u| !u.is_empty()) {
            so.set(opt::DNS, used.as_flattened());
        }
    }

    if let Some(name) = conf.hostname.as_deref().filter(|n| !n.is_empty()) {
        so.set(opt::HOSTNAME, name.as_bytes());
    }

    if let Some(fqdn) = conf.fqdn.as_deref().filter(|n| !n.is_empty()) {
        so.set_with(opt::CLIENT_FQDN, 255, |buf| {
            // Flags: E (canonical wire encoding); RCODE1, RCODE2: 255.
            let (flags, name) = buf.split_first_chunk_mut::<3>()?;
            *flags = [0x04, 0xff, 0xff];
            dns_name::encode(fqdn, name)?.checked_add(3)
        });
    }

    if rapid {
        so.set(opt::RAPID_COMMIT, &[]);
    }

    // Last: the search list gets the room the others leave.
    if !conf.no_dhcp_search && !conf.search.is_empty() {
        let room = OPT_MAX.saturating_sub(so.total_len()).saturating_sub(2);
        so.set_with(opt::DOMAIN_SEARCH, room, |buf| {
            let mut list = CompressedList::new(buf);
            for name in &conf.search {
                match list.push(name) {
                    Ok(()) | Err(dns_name::PushError::Invalid) => {}
                    Err(dns_name::PushError::NoRoom) => break,
                }
            }
            (!list.is_empty()).then(|| list.len())
        });
    }

    so
}

/// Writes the options area at the start of `area` (`OPT_MAX + 1` bytes:
/// the options, then End) and returns its length.
fn write_options(so: &ServerOpts, prl: &[u8], area: &mut [u8; OPT_MAX + 1]) -> usize {
    let mut sent = [false; 256];
    let mut pos = 0;

    let mut put = |code: u8, pos: &mut usize| {
        let Some(payload) = so.get(code) else {
            return;
        };
        let Some(sent) = sent.get_mut(usize::from(code)).filter(|s| !**s) else {
            return;
        };
        let end = pos
            .checked_add(2)
            .and_then(|n| n.checked_add(payload.len()));
        let Some(end) = end.filter(|&end| end <= OPT_MAX) else {
            return;
        };
        let Some((hdr, body)) = area
            .get_mut(*pos..end)
            .and_then(<[u8]>::split_first_chunk_mut::<2>)
        else {
            return;
        };
        *hdr = [code, payload.len() as u8];
        body.copy_from_slice(payload);
        *pos = end;
        *sent = true;
    };

    if !prl.contains(&opt::MESSAGE_TYPE) {
        put(opt::MESSAGE_TYPE, &mut pos);
    }
    for &code in prl {
        put(code, &mut pos);
    }
    for code in 0..=u8::MAX {
        put(code, &mut pos);
    }

    // `pos` is at most `OPT_MAX`: room for End, and no overflow.
    if let Some(end) = area.get_mut(pos) {
        *end = opt::END;
    }
    let pos = pos.wrapping_add(1);
    match area.get_mut(pos..OPT_MIN) {
        Some(pad) => {
            pad.fill(0);
            OPT_MIN
        }
        None => pos,
    }
}

/// Answers one DHCP/BOOTP request.
///
/// `request` is the UDP payload the guest sent to port 67; the reply
/// payload goes to the start of `out` (at least 548 bytes; 576 is plenty).
/// Returns `Ok(None)` if there is nothing to answer: DHCP disabled, no IPv4,
/// or a message type we ignore.
pub(crate) fn reply(
    conf: &Config,
    live: &Live,
    request: &[u8],
    out: &mut [u8],
) -> Result<Option<DhcpReply>, DhcpDrop> {
    let Some(ip4) = conf.ip4.as_ref().filter(|_| !conf.no_dhcp) else {
        return Ok(None);
    };
    let Some(l4) = live.ip4.as_ref() else {
        return Ok(None);
    };
    let (request, request_opts) = request
        .split_first_chunk::<{ field::OPTIONS }>()
        .ok_or(DhcpDrop::TooShort)?;
    if request[field::OP] != BOOTREQUEST {
        return Err(DhcpDrop::NotRequest);
    }
    if request[field::MAGIC] != MAGIC_COOKIE {
        return Err(DhcpDrop::BadMagic);
    }
    let client = parse_options(request_opts)?;

    let (reply_type, rapid) = match client.msg_type {
        Some(msg::DISCOVER) if client.rapid_commit => (msg::ACK, true),
        Some(msg::DISCOVER) => (msg::OFFER, false),
        Some(msg::REQUEST) | None => (msg::ACK, false),
        Some(_) => return Ok(None),
    };

    let (out, area) = out
        .first_chunk_mut::<{ field::OPTIONS + OPT_MAX + 1 }>()
        .ok_or(DhcpDrop::OutputTooSmall)?
        .split_first_chunk_mut::<{ field::OPTIONS }>()
        .ok_or(DhcpDrop::OutputTooSmall)?;
    let area: &mut [u8; OPT_MAX + 1] = area.try_into().map_err(|_| DhcpDrop::OutputTooSmall)?;
    let so = server_options(conf, ip4, l4, reply_type, rapid);

    out.fill(0);
    out[field::OP] = BOOTREPLY;
    out[field::HTYPE] = request[field::HTYPE];
    out[field::HLEN] = request[field::HLEN];
    out[field::HOPS] = 0;
    out[field::XID].copy_from_slice(&request[field::XID]);
    out[field::SECS].fill(0);
    out[field::FLAGS].copy_from_slice(&request[field::FLAGS]);
    out[field::CIADDR].copy_from_slice(&request[field::CIADDR]);
    out[field::YIADDR].copy_from_slice(&l4.addr.octets());
    out[field::SIADDR].fill(0);
    out[field::GIADDR].copy_from_slice(&request[field::GIADDR]);
    out[field::CHADDR].copy_from_slice(&request[field::CHADDR]);
    out[field::SNAME_FILE].fill(0);
    out[field::MAGIC].copy_from_slice(&MAGIC_COOKIE);
    let opts_len = write_options(&so, client.prl, area);

    let flags = u16::from_be_bytes([request[field::FLAGS.start], request[field::FLAGS.start + 1]]);
    // A renewing client (ciaddr set) hears the answer at the address it
    // has (RFC 2131, 4.1), which is not the one it is given after the
    // host's changed.
    let ciaddr = Ipv4Addr::from(
        <[u8; 4]>::try_from(&request[field::CIADDR]).map_err(|_| DhcpDrop::TooShort)?,
    );
    let dst = if flags & FLAG_BROADCAST != 0 {
        Ipv4Addr::BROADCAST
    } else if !ciaddr.is_unspecified() {
        ciaddr
    } else {
        l4.addr
    };
    Ok(Some(DhcpReply {
        len: field::OPTIONS
            .checked_add(opts_len)
            .ok_or(DhcpDrop::OutputTooSmall)?,
        dst,
        src: ip4.our_tap_addr,
    }))
}

/// Answers a classified guest frame if it is a DHCP request (UDP over
/// IPv4 to port 67): [`reply`] writes its payload in place after the
/// headers, which are then completed around it. Returns the length of the
/// reply frame in `out`; `None` if the frame is not DHCP or gets no answer
/// (a malformed request is logged at trace level).
pub(crate) fn handle(
    conf: &Config,
    live: &Live,
    frame: &Classified<'_>,
    out: &mut [u8],
) -> Option<usize> {
    let L3::Ipv4 {
        l4: L4::Udp {
            dport: SERVER_PORT,
            payload,
            ..
        },
        ..
    } = frame.l3
    else {
        return None;
    };
    let room = out.get_mut(build::UDP4_PAYLOAD_OFFSET..)?;
    match reply(conf, live, payload, room) {
        Ok(Some(r)) => build::finish_ipv4_udp(
            out,
            conf.our_mac,
            frame.src_mac,
            SocketAddrV4::new(r.src, SERVER_PORT),
            SocketAddrV4::new(r.dst, CLIENT_PORT),
            255,
            r.len,
        )
        .ok(),
        Ok(None) => None,
        Err(e) => {
            log::trace!("DHCP: dropped request: {e}");
            None
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conf::{FwdSpecs, Ip6Conf, LogLevel, Mode, PasstConf, TestKnobs, DEFAULT_MAC};
    use dhcproto::v4::{self, DhcpOption, Flags, Message, MessageType, OptionCode};
    use dhcproto::{Decodable, Decoder, Encodable, Encoder};

    /// A passt configuration like a typical host's: guest 192.168.1.10/24,
    /// gateway .1, two nameservers, search list, host name and FQDN.
    pub(crate) fn test_config() -> Config {
        Config {
            mode: Mode::Passt,
            log_level: LogLevel::Info,
            log_file: None,
            log_size: 0,
            foreground: true,
            pid_file: None,
            pcap: None,
            conf_path: None,
            runas: None,
            fd: None,
            mtu: 65520,
            our_mac: DEFAULT_MAC,
            ip4: Some(Ip4Conf {
                addr: Ipv4Addr::new(192, 168, 1, 10),
                prefix_len: 24,
                gw: Ipv4Addr::new(192, 168, 1, 1),
                our_tap_addr: Ipv4Addr::new(192, 168, 1, 1),
                map_host_loopback: Some(Ipv4Addr::new(192, 168, 1, 1)),
                map_guest_addr: None,
                dns: vec![Ipv4Addr::new(192, 168, 1, 1), Ipv4Addr::new(8, 8, 8, 8)],
                dns_match: None,
                dns_host: None,
                addr_out: None,
                ifname_out: None,
                ifname: "eth0".into(),
                host_addrs: vec![],
                copy_routes: true,
                copy_addrs: true,
                local_mode: false,
                follow: Default::default(),
            }),
            ip6: Some(Ip6Conf {
                addr: Some("2001:db8::10".parse().unwrap()),
                prefix_len: 64,
                gw: "fe80::1".parse().unwrap(),
                our_tap_ll: "fe80::1".parse().unwrap(),
                map_host_loopback: None,
                map_guest_addr: None,
                dns: vec!["2001:db8::53".parse().unwrap()],
                dns_match: None,
                dns_host: None,
                addr_out: None,
                ifname_out: None,
                ifname: "eth0".into(),
                ifindex: 2,
                host_addrs: vec![],
                copy_routes: true,
                copy_addrs: true,
                local_mode: false,
                follow: Default::default(),
            }),
            search: vec!["eng.example.com".into(), "example.com.".into()],
            hostname: Some("guest".into()),
            fqdn: Some("guest.example.com".into()),
            no_tcp: false,
            no_udp: false,
            no_icmp: false,
            no_dhcp: false,
            no_ndp: false,
            no_dhcpv6: false,
            no_ra: false,
            no_dhcp_dns: false,
            no_dhcp_search: false,
            freebind: false,
            fwd: FwdSpecs::default(),
            pasta: None,
            passt: Some(PasstConf::default()),
            test: TestKnobs::default(),
        }
    }

    const CHADDR: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    fn client_msg(msg_type: Option<MessageType>, extra: &[DhcpOption]) -> Message {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(0xdead_beef, z, z, z, z, &CHADDR);
        if let Some(t) = msg_type {
            m.opts_mut().insert(DhcpOption::MessageType(t));
        }
        for o in extra {
            m.opts_mut().insert(o.clone());
        }
        m
    }

    fn encode(m: &Message) -> Vec<u8> {
        let mut buf = Vec::new();
        m.encode(&mut Encoder::new(&mut buf)).unwrap();
        buf
    }

    /// Runs `reply` on `m`, returns the reply and the payload.
    fn serve(conf: &Config, m: &Message) -> (DhcpReply, Vec<u8>) {
        let mut out = [0xaau8; 576];
        let r = reply(conf, &Live::new(conf), &encode(m), &mut out)
            .unwrap()
            .unwrap();
        (r, out[..r.len].to_vec())
    }

    /// The option codes of a reply in wire order, checking END and padding.
    fn option_codes(payload: &[u8]) -> Vec<u8> {
        let area = &payload[field::OPTIONS..];
        assert!(area.len() >= OPT_MIN && area.len() <= OPT_MAX + 1);
        let mut codes = Vec::new();
        let mut i = 0;
        while area[i] != opt::END {
            codes.push(area[i]);
            i += 2 + usize::from(area[i + 1]);
        }
        assert!(area[i + 1..].iter().all(|&b| b == 0), "padding is zero");
        assert!(i < OPT_MAX + 1);
        codes
    }

    fn decode(payload: &[u8]) -> Message {
        Message::decode(&mut Decoder::new(payload)).unwrap()
    }

    fn names(m: &Message) -> Vec<String> {
        match m.opts().get(OptionCode::DomainSearch) {
            Some(DhcpOption::DomainSearch(n)) => n
                .iter()
                .map(|n| n.to_ascii().trim_end_matches('.').to_string())
                .collect(),
            other => panic!("no domain search option: {other:?}"),
        }
    }

    #[test]
    fn discover_gets_offer_with_everything() {
        let conf = test_config();
        let (r, payload) = serve(&conf, &client_msg(Some(MessageType::Discover), &[]));
        assert_eq!(r.src, Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(r.dst, Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(
            option_codes(&payload),
            [53, 1, 3, 6, 12, 26, 51, 54, 81, 119]
        );

        let m = decode(&payload);
        assert_eq!(m.opcode(), v4::Opcode::BootReply);
        assert_eq!(m.xid(), 0xdead_beef);
        assert_eq!(m.yiaddr(), Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(m.siaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(&m.chaddr()[..6], &CHADDR);
        assert_eq!(m.hops(), 0);
        assert_eq!(m.secs(), 0);
        assert!(m.sname().unwrap_or(&[]).iter().all(|&b| b == 0));
        let o = m.opts();
        assert_eq!(o.msg_type(), Some(MessageType::Offer));
        assert_eq!(
            o.get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(
            o.get(OptionCode::Router),
            Some(&DhcpOption::Router(vec![Ipv4Addr::new(192, 168, 1, 1)]))
        );
        assert_eq!(
            o.get(OptionCode::DomainNameServer),
            Some(&DhcpOption::DomainNameServer(vec![
                Ipv4Addr::new(192, 168, 1, 1),
                Ipv4Addr::new(8, 8, 8, 8)
            ]))
        );
        assert_eq!(
            o.get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(u32::MAX))
        );
        assert_eq!(
            o.get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 168, 1, 1)))
        );
        assert_eq!(
            o.get(OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(65520))
        );
        assert_eq!(
            o.get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("guest".into()))
        );
        match o.get(OptionCode::ClientFQDN) {
            Some(DhcpOption::ClientFQDN(f)) => {
                assert!(f.flags().e());
                assert!(!f.flags().s() && !f.flags().o() && !f.flags().n());
                assert_eq!((f.r1(), f.r2()), (255, 255));
                assert_eq!(f.domain().to_ascii(), "guest.example.com.");
            }
            other => panic!("bad FQDN option {other:?}"),
        }
        assert_eq!(names(&m), ["eng.example.com", "example.com"]);
        assert!(o.get(OptionCode::ClasslessStaticRoute).is_none());
        assert!(o.get(OptionCode::RapidCommit).is_none());
        // The second name is only a pointer into the first.
        let area = &payload[field::OPTIONS..];
        let p = area.windows(2).position(|w| w == [119, 19]).unwrap();
        assert_eq!(&area[p + 2 + 17..p + 2 + 19], &[0xc0, 4]);
    }

    #[test]
    fn parameter_request_list_orders_options() {
        let conf = test_config();
        let prl = |codes: &[u8]| {
            DhcpOption::ParameterRequestList(codes.iter().map(|&c| c.into()).collect())
        };
        let (_, payload) = serve(
            &conf,
            &client_msg(
                Some(MessageType::Discover),
                &[prl(&[1, 3, 6, 15, 119, 51, 3])],
            ),
        );
        assert_eq!(
            option_codes(&payload),
            [53, 1, 3, 6, 119, 51, 12, 26, 54, 81]
        );

        let (_, payload) = serve(
            &conf,
            &client_msg(Some(MessageType::Request), &[prl(&[54, 53, 1])]),
        );
        assert_eq!(
            option_codes(&payload),
            [54, 53, 1, 3, 6, 12, 26, 51, 81, 119]
        );
        assert_eq!(decode(&payload).opts().msg_type(), Some(MessageType::Ack));
    }

    #[test]
    fn rapid_commit_discover_gets_ack() {
        let conf = test_config();
        let (_, payload) = serve(
            &conf,
            &client_msg(Some(MessageType::Discover), &[DhcpOption::RapidCommit]),
        );
        assert!(option_codes(&payload).contains(&80));
        let m = decode(&payload);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(
            m.opts().get(OptionCode::RapidCommit),
            Some(&DhcpOption::RapidCommit)
        );
    }

    #[test]
    fn request_gets_ack_and_broadcast_flag_is_honoured() {
        let conf = test_config();
        let mut m = client_msg(
            Some(MessageType::Request),
            &[DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 99))],
        );
        m.set_flags(Flags::default().set_broadcast());
        m.set_giaddr(Ipv4Addr::new(10, 1, 2, 3));
        m.set_ciaddr(Ipv4Addr::new(10, 0, 0, 99));
        let (r, payload) = serve(&conf, &m);
        assert_eq!(r.dst, Ipv4Addr::BROADCAST);
        let d = decode(&payload);
        assert_eq!(d.opts().msg_type(), Some(MessageType::Ack));
        assert!(d.flags().broadcast());
        // Whatever was asked, the guest gets its address: never a NAK.
        assert_eq!(d.yiaddr(), Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(d.ciaddr(), Ipv4Addr::new(10, 0, 0, 99));
        assert_eq!(d.giaddr(), Ipv4Addr::new(10, 1, 2, 3));
    }

    /// A renewal after the host's address changed: the client hears the
    /// answer at the address it still has (ciaddr), which gives it the
    /// new one.
    #[test]
    fn renewal_after_a_change_is_answered_at_ciaddr() {
        let conf = test_config();
        let mut live = Live::new(&conf);
        let l4 = live.ip4.as_mut().unwrap();
        let old = l4.addr;
        l4.retire(old);
        (l4.addr, l4.gw) = (Ipv4Addr::new(10, 20, 0, 2), Ipv4Addr::new(10, 20, 0, 1));
        let mut m = client_msg(Some(MessageType::Request), &[]);
        m.set_ciaddr(old);
        let mut out = [0u8; 576];
        let r = reply(&conf, &live, &encode(&m), &mut out).unwrap().unwrap();
        assert_eq!(r.dst, old);
        let d = decode(&out[..r.len]);
        assert_eq!(d.yiaddr(), Ipv4Addr::new(10, 20, 0, 2));
        assert_eq!(
            d.opts().get(OptionCode::Router),
            Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 20, 0, 1)]))
        );
        // Without ciaddr: to the address given.
        let m = client_msg(Some(MessageType::Request), &[]);
        let r = reply(&conf, &live, &encode(&m), &mut out).unwrap().unwrap();
        assert_eq!(r.dst, Ipv4Addr::new(10, 20, 0, 2));
    }

    #[test]
    fn bootp_request_gets_ack() {
        let conf = test_config();
        let mut req = encode(&client_msg(None, &[]));
        // dhcproto writes no options area at all: add a bare cookie.
        if req.len() == field::MAGIC.start {
            req.extend_from_slice(&MAGIC_COOKIE);
        }
        let mut out = [0u8; 576];
        let r = reply(&conf, &Live::new(&conf), &req, &mut out)
            .unwrap()
            .unwrap();
        assert_eq!(option_codes(&out[..r.len])[0], 53);
        assert_eq!(
            decode(&out[..r.len]).opts().msg_type(),
            Some(MessageType::Ack)
        );

        let (_, payload) = serve(
            &conf,
            &client_msg(None, &[DhcpOption::Hostname("x".into())]),
        );
        assert_eq!(decode(&payload).opts().msg_type(), Some(MessageType::Ack));
    }

    #[test]
    fn other_messages_and_disabled_server_are_ignored() {
        let conf = test_config();
        let mut out = [0u8; 576];
        for t in [
            MessageType::Decline,
            MessageType::Release,
            MessageType::Inform,
            MessageType::Offer,
            MessageType::Ack,
        ] {
            let req = encode(&client_msg(Some(t), &[]));
            assert_eq!(reply(&conf, &Live::new(&conf), &req, &mut out), Ok(None));
        }
        let req = encode(&client_msg(Some(MessageType::Discover), &[]));
        let mut off = test_config();
        off.no_dhcp = true;
        assert_eq!(reply(&off, &Live::new(&off), &req, &mut out), Ok(None));
        let mut no4 = test_config();
        no4.ip4 = None;
        assert_eq!(reply(&no4, &Live::new(&no4), &req, &mut out), Ok(None));
    }

    #[test]
    fn gateway_off_subnet_gets_classless_routes() {
        let mut conf = test_config();
        let ip4 = conf.ip4.as_mut().unwrap();
        ip4.addr = Ipv4Addr::new(10, 0, 2, 15);
        ip4.prefix_len = 32;
        let gw = Ipv4Addr::new(10, 0, 2, 2);
        ip4.gw = gw;
        let (_, payload) = serve(&conf, &client_msg(Some(MessageType::Discover), &[]));
        let m = decode(&payload);
        assert_eq!(
            m.opts().get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::BROADCAST))
        );
        assert_eq!(
            m.opts().get(OptionCode::ClasslessStaticRoute),
            Some(&DhcpOption::ClasslessStaticRoute(vec![
                ("10.0.2.2/32".parse().unwrap(), Ipv4Addr::UNSPECIFIED),
                ("0.0.0.0/0".parse().unwrap(), gw),
            ]))
        );
    }

    #[test]
    fn disabled_options_are_left_out_and_area_is_padded() {
        let mut conf = test_config();
        conf.mtu = 0;
        conf.no_dhcp_dns = true;
        conf.no_dhcp_search = true;
        conf.hostname = None;
        conf.fqdn = None;
        let (r, payload) = serve(&conf, &client_msg(Some(MessageType::Discover), &[]));
        assert_eq!(option_codes(&payload), [53, 1, 3, 51, 54]);
        assert_eq!(r.len, field::OPTIONS + OPT_MIN);

        let mut conf = test_config();
        conf.ip4.as_mut().unwrap().dns.clear();
        conf.search.clear();
        conf.hostname = Some("h".repeat(300));
        let (_, payload) = serve(&conf, &client_msg(Some(MessageType::Discover), &[]));
        assert_eq!(option_codes(&payload), [53, 1, 3, 26, 51, 54, 81]);
    }

    #[test]
    fn many_search_domains_are_cut_to_fit() {
        let mut conf = test_config();
        conf.search = (0..40)
            .map(|i| format!("domain-number-{i:02}.some-long-suffix-{}.example", i % 3))
            .collect();
        let (r, payload) = serve(&conf, &client_msg(Some(MessageType::Discover), &[]));
        assert!(r.len <= field::OPTIONS + OPT_MAX + 1);
        assert_eq!(
            option_codes(&payload),
            [53, 1, 3, 6, 12, 26, 51, 54, 81, 119]
        );
        let got = names(&decode(&payload));
        assert!(got.len() >= 3, "{got:?}");
        assert!(got.len() < conf.search.len());
        assert_eq!(got[..], conf.search[..got.len()]);
    }

    fn valid_request() -> Vec<u8> {
        encode(&client_msg(
            Some(MessageType::Discover),
            &[
                DhcpOption::ParameterRequestList(vec![1.into(), 3.into(), 119.into()]),
                DhcpOption::RapidCommit,
                DhcpOption::ClientIdentifier(vec![7; 200]),
            ],
        ))
    }

    #[test]
    fn truncated_requests_never_panic() {
        let conf = test_config();
        let req = valid_request();
        let mut out = [0u8; 576];
        for n in 0..req.len() {
            let r = reply(&conf, &Live::new(&conf), &req[..n], &mut out);
            if n < field::OPTIONS {
                assert_eq!(r, Err(DhcpDrop::TooShort));
            }
        }
        assert!(reply(&conf, &Live::new(&conf), &req, &mut out)
            .unwrap()
            .is_some());
        assert_eq!(
            reply(&conf, &Live::new(&conf), &req, &mut out[..500]),
            Err(DhcpDrop::OutputTooSmall)
        );
    }

    #[test]
    fn malformed_requests_are_dropped() {
        let conf = test_config();
        let mut out = [0u8; 576];
        let base = encode(&client_msg(Some(MessageType::Discover), &[]));
        let with_opts = |opts: &[u8]| {
            let mut r = base[..field::OPTIONS].to_vec();
            r.extend_from_slice(opts);
            r
        };

        let mut bad = base.clone();
        bad[field::MAGIC.start] ^= 1;
        assert_eq!(
            reply(&conf, &Live::new(&conf), &bad, &mut out),
            Err(DhcpDrop::BadMagic)
        );
        let mut bad = base.clone();
        bad[field::OP] = BOOTREPLY;
        assert_eq!(
            reply(&conf, &Live::new(&conf), &bad, &mut out),
            Err(DhcpDrop::NotRequest)
        );

        let r = with_opts(&[53, 1, 1, 55, 10, 1, 3]);
        assert_eq!(
            reply(&conf, &Live::new(&conf), &r, &mut out),
            Err(DhcpDrop::OptionOverrun(55))
        );
        let r = with_opts(&[53, 1, 1, 12]);
        assert_eq!(
            reply(&conf, &Live::new(&conf), &r, &mut out),
            Err(DhcpDrop::OptionOverrun(12))
        );
        // Zero-length options: no type (BOOTP), empty request list.
        let r = with_opts(&[53, 0, 55, 0, 80, 0, 0, 0, 255, 1, 2, 3]);
        let ok = reply(&conf, &Live::new(&conf), &r, &mut out)
            .unwrap()
            .unwrap();
        assert_eq!(
            decode(&out[..ok.len]).opts().msg_type(),
            Some(MessageType::Ack)
        );
        // Options after END are not looked at; no END at all is fine.
        let r = with_opts(&[53, 1, 1, 255, 53, 9]);
        assert!(reply(&conf, &Live::new(&conf), &r, &mut out)
            .unwrap()
            .is_some());
        let r = with_opts(&[53, 1, 1]);
        assert!(reply(&conf, &Live::new(&conf), &r, &mut out)
            .unwrap()
            .is_some());
    }

    #[test]
    fn mutated_requests_never_panic() {
        let conf = test_config();
        let base = valid_request();
        let mut out = [0u8; 576];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut answered = 0;
        for _ in 0..20_000 {
            let mut req = base.clone();
            for _ in 0..(next() % 8) {
                let i = field::OPTIONS + (next() as usize) % (req.len() - field::OPTIONS);
                req[i] = next() as u8;
            }
            let len = field::OPTIONS + (next() as usize) % (req.len() - field::OPTIONS + 1);
            if let Ok(Some(r)) = reply(&conf, &Live::new(&conf), &req[..len], &mut out) {
                answered += 1;
                assert!(r.len <= field::OPTIONS + OPT_MAX + 1);
                option_codes(&out[..r.len]);
            }
        }
        assert!(answered > 100, "{answered}");
    }

    /// A frame as a client sends it: from 0.0.0.0:68 to the broadcast
    /// address, port `dport`.
    fn client_frame(dport: u16, payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2(CHADDR, [0xff; 6])
            .ipv4([0, 0, 0, 0], [255, 255, 255, 255], 64)
            .udp(68, dport);
        let mut frame = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut frame, payload).unwrap();
        frame
    }

    fn discover_frame() -> Vec<u8> {
        client_frame(67, &encode(&client_msg(Some(MessageType::Discover), &[])))
    }

    #[test]
    fn handle_answers_discover_frame_with_offer_frame() {
        use etherparse::{LinkSlice, NetSlice, SlicedPacket, TransportSlice};
        let conf = test_config();
        let frame = discover_frame();
        let c = crate::wire::classify(&frame).unwrap();
        let mut out = [0u8; 1500];
        let n = handle(&conf, &Live::new(&conf), &c, &mut out).unwrap();

        let p = SlicedPacket::from_ethernet(&out[..n]).unwrap();
        let Some(LinkSlice::Ethernet2(e)) = &p.link else {
            panic!("not Ethernet II")
        };
        assert_eq!((e.source(), e.destination()), (DEFAULT_MAC, CHADDR));
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.calc_header_checksum(), h.header_checksum);
        assert_eq!(
            (h.source, h.destination, h.time_to_live),
            ([192, 168, 1, 1], [192, 168, 1, 10], 255)
        );
        let Some(TransportSlice::Udp(u)) = &p.transport else {
            panic!("not UDP")
        };
        assert_eq!((u.source_port(), u.destination_port()), (67, 68));
        let csum = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
        assert_eq!(csum, u.checksum());

        let m = decode(u.payload());
        assert_eq!(m.opcode(), v4::Opcode::BootReply);
        assert_eq!(m.xid(), 0xdead_beef);
        assert_eq!(m.yiaddr(), Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(&m.chaddr()[..6], &CHADDR);
        assert_eq!(
            m.opts().get(OptionCode::MessageType),
            Some(&DhcpOption::MessageType(MessageType::Offer))
        );
        assert_eq!(
            m.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 168, 1, 1)))
        );
        assert!(crate::wire::classify(&out[..n]).is_ok());
    }

    #[test]
    fn handle_ignores_other_frames_and_bad_requests() {
        let conf = test_config();
        let mut out = [0u8; 1500];
        let discover = encode(&client_msg(Some(MessageType::Discover), &[]));
        // UDP to another port.
        let frame = client_frame(69, &discover);
        let c = crate::wire::classify(&frame).unwrap();
        assert_eq!(handle(&conf, &Live::new(&conf), &c, &mut out), None);
        // Port 67, but not a BOOTREQUEST: dropped.
        let mut not_request = discover.clone();
        not_request[field::OP] = BOOTREPLY;
        let frame = client_frame(67, &not_request);
        let c = crate::wire::classify(&frame).unwrap();
        assert_eq!(handle(&conf, &Live::new(&conf), &c, &mut out), None);
        // DHCP disabled.
        let conf = Config {
            no_dhcp: true,
            ..test_config()
        };
        let frame = discover_frame();
        let c = crate::wire::classify(&frame).unwrap();
        assert_eq!(handle(&conf, &Live::new(&conf), &c, &mut out), None);
    }
}
