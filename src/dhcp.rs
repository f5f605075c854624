//! Built-in DHCP server (IPv4): hands the guest its one address, forever.
//!
//! # Theory of operation
//!
//! The guest has exactly one possible configuration, fixed at start-up
//! ([`Ip4Conf`]): its address and prefix length, the gateway, nameservers,
//! MTU, search domains. There is no lease database and no state: every
//! request is answered from the configuration alone, so this module is one
//! pure function, [`reply`], from a request's UDP payload to a reply's UDP
//! payload. The caller (the tap input path) strips and adds the
//! Ethernet/IPv4/UDP headers and sends the reply from `our_tap_addr`:67 to
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

use std::net::Ipv4Addr;

use crate::conf::{Config, Ip4Conf};
use crate::dns_name::{self, CompressedList};

/// Offsets in the fixed BOOTP header (RFC 951, RFC 2131).
mod field {
    use std::ops::Range;

    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const HOPS: usize = 3;
    pub const XID: Range<usize> = 4..8;
    pub const SECS: Range<usize> = 8..10;
    pub const FLAGS: Range<usize> = 10..12;
    pub const CIADDR: Range<usize> = 12..16;
    pub const YIADDR: Range<usize> = 16..20;
    pub const SIADDR: Range<usize> = 20..24;
    pub const GIADDR: Range<usize> = 24..28;
    pub const CHADDR: Range<usize> = 28..44;
    /// `sname` and `file`, both zero in replies.
    pub const SNAME_FILE: Range<usize> = 44..236;
    pub const MAGIC: Range<usize> = 236..240;
    pub const OPTIONS: usize = 240;
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
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const MTU: u8 = 26;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const RAPID_COMMIT: u8 = 80;
    pub const CLIENT_FQDN: u8 = 81;
    pub const DOMAIN_SEARCH: u8 = 119;
    pub const CLASSLESS_ROUTE: u8 = 121;
    pub const END: u8 = 255;
}

/// DHCP message types (option 53).
mod msg {
    pub const DISCOVER: u8 = 1;
    pub const OFFER: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const ACK: u8 = 5;
}

/// A reply built into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhcpReply {
    /// Length of the UDP payload written.
    pub len: usize,
    /// IPv4 destination: broadcast if the client set the broadcast flag,
    /// the assigned address otherwise. Port 68.
    pub dst: Ipv4Addr,
    /// IPv4 source: our address on the tap. Port 67.
    pub src: Ipv4Addr,
}

/// Why a request was dropped without reply.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum DhcpDrop {
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
        let buf = self.data.get_mut(self.used..self.used + max)?;
        let len = fill(buf)?;
        if len > max {
            return None;
        }
        self.slots[usize::from(code)] = Some((self.used as u16, len as u8));
        self.used += len;
        Some(len)
    }

    fn get(&self, code: u8) -> Option<&[u8]> {
        let (start, len) = self.slots[usize::from(code)]?;
        self.data
            .get(usize::from(start)..usize::from(start) + usize::from(len))
    }

    /// Option area bytes (with headers) of everything set so far.
    fn total_len(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .map(|&(_, len)| 2 + usize::from(len))
            .sum()
    }
}

/// The subnet mask for a prefix length (clamped to 32).
fn mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0)
}

/// Fills the option table for a reply of type `reply_type`.
fn server_options(conf: &Config, ip4: &Ip4Conf, reply_type: u8, rapid: bool) -> ServerOpts {
    let mut so = ServerOpts::new();
    let mask = mask(ip4.prefix_len);

    so.set(opt::MESSAGE_TYPE, &[reply_type]);
    so.set(opt::SERVER_ID, &ip4.our_tap_addr.octets());
    so.set(opt::SUBNET_MASK, &mask.to_be_bytes());
    so.set(opt::ROUTER, &ip4.gw.octets());
    so.set(opt::LEASE_TIME, &u32::MAX.to_be_bytes());

    if u32::from(ip4.addr) & mask != u32::from(ip4.gw) & mask {
        // gw/32 via 0.0.0.0 (on link), then 0/0 via gw.
        let gw = ip4.gw.octets();
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
        let mut dns = [0u8; 12];
        let mut n = 0;
        for addr in ip4.dns.iter().filter(|a| !a.is_unspecified()).take(3) {
            dns[n..n + 4].copy_from_slice(&addr.octets());
            n += 4;
        }
        if n > 0 {
            so.set(opt::DNS, &dns[..n]);
        }
    }

    if let Some(name) = conf.hostname.as_deref().filter(|n| !n.is_empty()) {
        so.set(opt::HOSTNAME, name.as_bytes());
    }

    if let Some(fqdn) = conf.fqdn.as_deref().filter(|n| !n.is_empty()) {
        so.set_with(opt::CLIENT_FQDN, 255, |buf| {
            // Flags: E (canonical wire encoding); RCODE1, RCODE2: 255.
            buf[..3].copy_from_slice(&[0x04, 0xff, 0xff]);
            Some(3 + dns_name::encode(fqdn, &mut buf[3..])?)
        });
    }

    if rapid {
        so.set(opt::RAPID_COMMIT, &[]);
    }

    // Last: the search list gets the room the others leave.
    if !conf.no_dhcp_search && !conf.search.is_empty() {
        let room = OPT_MAX.saturating_sub(so.total_len() + 2);
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

/// Writes the options area at the start of `area` (at least
/// `OPT_MAX + 1` bytes) and returns its length.
fn write_options(so: &ServerOpts, prl: &[u8], area: &mut [u8]) -> usize {
    let mut sent = [false; 256];
    let mut pos = 0;

    let mut put = |code: u8, pos: &mut usize| {
        let Some(payload) = so.get(code) else {
            return;
        };
        if sent[usize::from(code)] || *pos + 2 + payload.len() > OPT_MAX {
            return;
        }
        area[*pos] = code;
        area[*pos + 1] = payload.len() as u8;
        area[*pos + 2..*pos + 2 + payload.len()].copy_from_slice(payload);
        *pos += 2 + payload.len();
        sent[usize::from(code)] = true;
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

    area[pos] = opt::END;
    pos += 1;
    if pos < OPT_MIN {
        area[pos..OPT_MIN].fill(0);
        pos = OPT_MIN;
    }
    pos
}

/// Answers one DHCP/BOOTP request.
///
/// `request` is the UDP payload the guest sent to port 67; the reply
/// payload goes to the start of `out` (at least 548 bytes; 576 is plenty).
/// Returns `Ok(None)` if there is nothing to answer: DHCP disabled, no IPv4,
/// or a message type we ignore.
pub fn reply(conf: &Config, request: &[u8], out: &mut [u8]) -> Result<Option<DhcpReply>, DhcpDrop> {
    let Some(ip4) = conf.ip4.as_ref().filter(|_| !conf.no_dhcp) else {
        return Ok(None);
    };
    if request.len() < field::OPTIONS {
        return Err(DhcpDrop::TooShort);
    }
    if request[field::OP] != BOOTREQUEST {
        return Err(DhcpDrop::NotRequest);
    }
    if request[field::MAGIC] != MAGIC_COOKIE {
        return Err(DhcpDrop::BadMagic);
    }
    let client = parse_options(&request[field::OPTIONS..])?;

    let (reply_type, rapid) = match client.msg_type {
        Some(msg::DISCOVER) if client.rapid_commit => (msg::ACK, true),
        Some(msg::DISCOVER) => (msg::OFFER, false),
        Some(msg::REQUEST) | None => (msg::ACK, false),
        Some(_) => return Ok(None),
    };

    let out = out
        .get_mut(..field::OPTIONS + OPT_MAX + 1)
        .ok_or(DhcpDrop::OutputTooSmall)?;
    let so = server_options(conf, ip4, reply_type, rapid);

    out[..field::OPTIONS].fill(0);
    out[field::OP] = BOOTREPLY;
    out[field::HTYPE] = request[field::HTYPE];
    out[field::HLEN] = request[field::HLEN];
    out[field::HOPS] = 0;
    out[field::XID].copy_from_slice(&request[field::XID]);
    out[field::SECS].fill(0);
    out[field::FLAGS].copy_from_slice(&request[field::FLAGS]);
    out[field::CIADDR].copy_from_slice(&request[field::CIADDR]);
    out[field::YIADDR].copy_from_slice(&ip4.addr.octets());
    out[field::SIADDR].fill(0);
    out[field::GIADDR].copy_from_slice(&request[field::GIADDR]);
    out[field::CHADDR].copy_from_slice(&request[field::CHADDR]);
    out[field::SNAME_FILE].fill(0);
    out[field::MAGIC].copy_from_slice(&MAGIC_COOKIE);
    let opts_len = write_options(&so, client.prl, &mut out[field::OPTIONS..]);

    let flags = u16::from_be_bytes([request[field::FLAGS.start], request[field::FLAGS.start + 1]]);
    let dst = if flags & FLAG_BROADCAST != 0 {
        Ipv4Addr::BROADCAST
    } else {
        ip4.addr
    };
    Ok(Some(DhcpReply {
        len: field::OPTIONS + opts_len,
        dst,
        src: ip4.our_tap_addr,
    }))
}
