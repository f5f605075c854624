//! Built-in DHCPv6 server: one address (IA_NA), nameservers and search list.
//!
//! # Theory of operation
//!
//! As for DHCPv4, the guest's configuration is fixed at start-up, so the
//! server keeps no bindings: [`Dhcpv6Server`] only holds our DUID (a
//! DUID-LLT made of our MAC address and the start-up time), and
//! [`Dhcpv6Server::reply`] maps a request's UDP payload to a reply's UDP
//! payload. [`Dhcpv6Server::handle`], the tap input path's entry point like
//! [`ndp::handle`](crate::ndp::handle), takes a classified guest frame to
//! UDP port 547 and writes the whole reply frame around that payload: from
//! our MAC and `our_tap_ll`:547 to the request's source MAC and address,
//! port 546.
//!
//! Only messages sent to All_DHCP_Relay_Agents_and_Servers (ff02::1:2) are
//! served. A request must carry a Client Identifier (DUID of at most 128
//! bytes); a Server Identifier, when present, must be ours byte for byte.
//!
//! | request             | server id       | answer    |
//! |---------------------|-----------------|-----------|
//! | SOLICIT             | must be absent  | ADVERTISE |
//! | REQUEST, RENEW      | must be ours    | REPLY     |
//! | CONFIRM             | must be absent  | REPLY     |
//! | REBIND              | must be ours    | REPLY     |
//! | INFORMATION-REQUEST | ours, if any    | REPLY     |
//! | anything else       |                 | none      |
//!
//! An INFORMATION-REQUEST must not carry an IA. For REQUEST, RENEW and
//! CONFIRM, an IA_NA or IA_TA holding an address other than the guest's
//! gets a REPLY with that IA and a NotOnLink status (RFC 8415, 18.3.2), so
//! that the client starts over with a SOLICIT.
//!
//! Otherwise the answer holds, in this order: our Server Identifier; an
//! IA_NA (the client's IAID, or 1, T1 = T2 = infinite) with the guest's
//! address (preferred and valid lifetimes infinite) — passt includes it
//! even in replies to INFORMATION-REQUEST, and so do we; the client's
//! identifier; DNS servers (23) and the domain list (24) unless disabled;
//! the client FQDN (39) if configured, with the O flag set when the client
//! asked us to do the DNS update (S flag), which we never do. Optional
//! options are dropped when they would push the message past the IPv6
//! minimum MTU (1280 bytes with IPv6 and UDP headers).
//!
//! Requests come from the guest and are not trusted: the option walk is
//! bounds checked and only moves forward, nested options are looked for
//! only inside their IA, and nothing is allocated.

// Every byte parsed here is attacker-controlled (guest input) and a panic
// aborts the process, cutting every flow: no unchecked index or slice, no
// arithmetic that can overflow. (Unit tests index their own fixtures.)
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)
)]

use std::net::{Ipv6Addr, SocketAddrV6};

use crate::conf::Config;
use crate::dns_name;
use crate::live::Live;
use crate::wire::{build, Classified, L3, L4};

/// The server's UDP port.
const SERVER_PORT: u16 = 547;
/// The client's UDP port.
const CLIENT_PORT: u16 = 546;

/// All_DHCP_Relay_Agents_and_Servers.
const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// Largest reply payload: IPv6 minimum MTU minus IPv6 and UDP headers.
const MAX_REPLY: usize = 1280 - 40 - 8;
/// Longest client DUID we accept (RFC 8415, 11.1).
const MAX_DUID: usize = 128;
/// Nameservers announced at most.
const MAX_DNS: usize = 3;
/// Message header: type and transaction id.
const HEADER_LEN: usize = 4;
/// Option header: code and length.
const OPT_HDR: usize = 4;
/// DUID-LLT for Ethernet: type, hardware type, time, MAC.
const DUID_LEN: usize = 14;
/// IAID, T1, T2.
const IA_NA_FIXED: usize = 12;
/// IAID.
const IA_TA_FIXED: usize = 4;
/// Address, preferred and valid lifetimes.
const IAADDR_LEN: usize = 24;
const INFINITE: u32 = u32::MAX;

/// Message types (RFC 8415, 7.3).
mod msg {
    pub(crate) const SOLICIT: u8 = 1;
    pub(crate) const ADVERTISE: u8 = 2;
    pub(crate) const REQUEST: u8 = 3;
    pub(crate) const CONFIRM: u8 = 4;
    pub(crate) const RENEW: u8 = 5;
    pub(crate) const REBIND: u8 = 6;
    pub(crate) const REPLY: u8 = 7;
    pub(crate) const INFORMATION_REQUEST: u8 = 11;
}

/// Option codes.
mod opt {
    pub(crate) const CLIENT_ID: u16 = 1;
    pub(crate) const SERVER_ID: u16 = 2;
    pub(crate) const IA_NA: u16 = 3;
    pub(crate) const IA_TA: u16 = 4;
    pub(crate) const IAADDR: u16 = 5;
    pub(crate) const STATUS_CODE: u16 = 13;
    pub(crate) const DNS_SERVERS: u16 = 23;
    pub(crate) const DOMAIN_LIST: u16 = 24;
    pub(crate) const CLIENT_FQDN: u16 = 39;
}

const STATUS_NOT_ON_LINK: u16 = 4;
const NOT_ON_LINK_MSG: &[u8] = b"Prefix not appropriate for link.";
/// Client FQDN flags (RFC 4704): S from the client, O in our answer.
const FQDN_S: u8 = 0x01;
const FQDN_O: u8 = 0x02;

/// Why a request was dropped without reply.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dhcpv6Drop {
    #[error("destination is not ff02::1:2")]
    NotAllServers,
    #[error("message shorter than its header")]
    TooShort,
    #[error("option {0} runs past the end of the message")]
    OptionOverrun(u16),
    #[error("no client identifier")]
    NoClientId,
    #[error("client identifier longer than 128 bytes")]
    ClientIdTooLong,
    #[error("server identifier of the wrong size")]
    BadServerId,
    #[error("server identifier is not ours")]
    NotOurServerId,
    #[error("server identifier missing")]
    MissingServerId,
    #[error("server identifier not allowed in this message")]
    UnexpectedServerId,
    #[error("IA option too short")]
    BadIa,
    #[error("identity association in an information request")]
    UnexpectedIa,
    #[error("reply buffer too small")]
    OutputTooSmall,
}

/// Iterator over (code, data) of a sequence of options; yields an error
/// once, and then stops, if an option runs past the end.
struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<(u16, &'a [u8]), Dhcpv6Drop>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((hdr, body)) = self.rest.split_first_chunk::<OPT_HDR>() else {
            self.rest = &[];
            return Some(Err(Dhcpv6Drop::OptionOverrun(0)));
        };
        let code = u16::from_be_bytes([hdr[0], hdr[1]]);
        let len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
        if body.len() < len {
            self.rest = &[];
            return Some(Err(Dhcpv6Drop::OptionOverrun(code)));
        }
        let (data, rest) = body.split_at(len);
        self.rest = rest;
        Some(Ok((code, data)))
    }
}

fn options(bytes: &[u8]) -> Options<'_> {
    Options { rest: bytes }
}

/// The top-level options of a request that matter to us (first occurrence
/// of each).
#[derive(Default)]
struct Request<'a> {
    client_id: Option<&'a [u8]>,
    server_id: Option<&'a [u8]>,
    ia_na: Option<&'a [u8]>,
    has_ia_ta: bool,
    fqdn_flags: Option<u8>,
}

impl<'a> Request<'a> {
    fn parse(opts: &'a [u8]) -> Result<Self, Dhcpv6Drop> {
        let mut r = Request::default();
        for o in options(opts) {
            let (code, data) = o?;
            match code {
                opt::CLIENT_ID => {
                    r.client_id.get_or_insert(data);
                }
                opt::SERVER_ID => {
                    r.server_id.get_or_insert(data);
                }
                opt::IA_NA => {
                    r.ia_na.get_or_insert(data);
                }
                opt::IA_TA => r.has_ia_ta = true,
                opt::CLIENT_FQDN if r.fqdn_flags.is_none() => {
                    r.fqdn_flags = data.first().copied();
                }
                _ => {}
            }
        }
        let client_id = r.client_id.ok_or(Dhcpv6Drop::NoClientId)?;
        if client_id.len() > MAX_DUID {
            return Err(Dhcpv6Drop::ClientIdTooLong);
        }
        if r.server_id.is_some_and(|s| s.len() != DUID_LEN) {
            return Err(Dhcpv6Drop::BadServerId);
        }
        if r.ia_na.is_some_and(|ia| ia.len() < IA_NA_FIXED) {
            return Err(Dhcpv6Drop::BadIa);
        }
        Ok(r)
    }
}

/// The first IA_NA or IA_TA (IA_NAs first) holding an address that is not
/// `ours`: its code and the fixed part of its body (IAID, and T1 and T2
/// for an IA_NA).
fn foreign_ia(opts: &[u8], ours: Ipv6Addr) -> Option<(u16, &[u8])> {
    for (kind, fixed) in [(opt::IA_NA, IA_NA_FIXED), (opt::IA_TA, IA_TA_FIXED)] {
        for (code, body) in options(opts).map_while(Result::ok) {
            if code != kind {
                continue;
            }
            let Some((head, nested)) = body.split_at_checked(fixed) else {
                continue;
            };
            let foreign = options(nested)
                .map_while(Result::ok)
                .filter(|&(c, _)| c == opt::IAADDR)
                .filter_map(|(_, a)| a.first_chunk::<16>())
                .any(|a| Ipv6Addr::from(*a) != ours);
            if foreign {
                return Some((code, head));
            }
        }
    }
    None
}

/// Writes options into a bounded buffer; `put` refuses what does not fit.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer over `out`, at most [`MAX_REPLY`] bytes, refused unless
    /// the fixed part of any reply fits: header, server id, IA with one
    /// nested option, client id of `client_id_len`. The largest IA is the
    /// NotOnLink one (IA_NA + status code).
    fn for_reply(out: &'a mut [u8], client_id_len: usize) -> Result<Self, Dhcpv6Drop> {
        const NOT_ON_LINK_LEN: usize = 2 + NOT_ON_LINK_MSG.len();
        const FIXED: usize = HEADER_LEN
            + OPT_HDR
            + DUID_LEN
            + OPT_HDR
            + IA_NA_FIXED
            + OPT_HDR
            + if IAADDR_LEN > NOT_ON_LINK_LEN {
                IAADDR_LEN
            } else {
                NOT_ON_LINK_LEN
            }
            + OPT_HDR;
        let limit = out.len().min(MAX_REPLY);
        let w = Writer {
            // `limit` is at most `out.len()`: never the default.
            buf: out.get_mut(..limit).unwrap_or_default(),
            pos: 0,
        };
        if FIXED
            .checked_add(client_id_len)
            .is_none_or(|n| w.room() < n)
        {
            return Err(Dhcpv6Drop::OutputTooSmall);
        }
        Ok(w)
    }

    /// Message type and transaction id.
    fn message_header(&mut self, msg_type: u8, xid: [u8; 3]) {
        self.bytes(&[msg_type, xid[0], xid[1], xid[2]]);
    }

    fn room(&self) -> usize {
        // `pos` never passes the end: never clamps.
        self.buf.len().saturating_sub(self.pos)
    }

    /// Appends `bytes`; callers check [`Writer::room`] first, so they
    /// always fit (otherwise nothing is written).
    fn bytes(&mut self, bytes: &[u8]) {
        let Some(end) = self.pos.checked_add(bytes.len()) else {
            return;
        };
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
            self.pos = end;
        }
    }

    /// Writes an option header and returns where its length goes.
    fn header(&mut self, code: u16) -> usize {
        self.bytes(&code.to_be_bytes());
        let at = self.pos;
        self.bytes(&[0, 0]);
        at
    }

    /// Fixes the length of the option whose length field is at `at`.
    fn close(&mut self, at: usize) {
        let Some(len) = self.pos.checked_sub(at).and_then(|n| n.checked_sub(2)) else {
            return;
        };
        if let Some(field) = self.buf.get_mut(at..).and_then(<[u8]>::first_chunk_mut) {
            *field = (len as u16).to_be_bytes();
        }
    }

    /// Writes one option if it fits.
    fn option(&mut self, code: u16, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let fits = OPT_HDR.checked_add(len).is_some_and(|n| n <= self.room());
        if !fits || len > usize::from(u16::MAX) {
            return false;
        }
        let at = self.header(code);
        for part in parts {
            self.bytes(part);
        }
        self.close(at);
        true
    }
}

/// The DHCPv6 server: our identity, the rest comes from [`Config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Dhcpv6Server {
    /// DUID-LLT: type 1, hardware type 1 (Ethernet), time, MAC.
    duid: [u8; DUID_LEN],
}

impl Dhcpv6Server {
    /// A server identified by our MAC address and `secs_since_2000`, the
    /// start-up time in seconds since 2000-01-01 00:00 UTC.
    pub(crate) fn new(conf: &Config, secs_since_2000: u32) -> Self {
        let mut duid = [0u8; DUID_LEN];
        duid[0..2].copy_from_slice(&1u16.to_be_bytes());
        duid[2..4].copy_from_slice(&1u16.to_be_bytes());
        duid[4..8].copy_from_slice(&secs_since_2000.to_be_bytes());
        duid[8..14].copy_from_slice(&conf.our_mac);
        Dhcpv6Server { duid }
    }

    /// Our DUID, as sent in the Server Identifier option.
    #[cfg(test)]
    pub(crate) fn duid(&self) -> &[u8] {
        &self.duid
    }

    /// Answers a classified guest frame if it is a DHCPv6 request (UDP over
    /// IPv6 to port 547): [`Self::reply`] writes its payload in place after
    /// the headers, which are then completed around it. Returns the length
    /// of the reply frame in `out`; `None` if the frame is not DHCPv6 or
    /// gets no answer (a dropped request is logged at trace level).
    pub(crate) fn handle(
        &self,
        conf: &Config,
        live: &Live,
        frame: &Classified<'_>,
        out: &mut [u8],
    ) -> Option<usize> {
        let L3::Ipv6 {
            src,
            dst,
            l4:
                L4::Udp {
                    dport: SERVER_PORT,
                    payload,
                    ..
                },
            ..
        } = frame.l3
        else {
            return None;
        };
        let ip6 = conf.ip6.as_ref()?;
        let room = out.get_mut(build::UDP6_PAYLOAD_OFFSET..)?;
        match self.reply(conf, live, src, dst, payload, room) {
            Ok(Some(len)) => build::finish_ipv6_udp(
                out,
                conf.our_mac,
                frame.src_mac,
                SocketAddrV6::new(ip6.our_tap_ll, SERVER_PORT, 0, 0),
                SocketAddrV6::new(src, CLIENT_PORT, 0, 0),
                255,
                len,
            )
            .ok(),
            Ok(None) => None,
            Err(e) => {
                log::trace!("DHCPv6: dropped request: {e}");
                None
            }
        }
    }

    /// Answers one request: `request` is the UDP payload that `src_ll` sent
    /// to `dst` port 547. The reply payload is written at the start of
    /// `out` (at least 256 bytes; 1232 leaves room for every option) and
    /// its length returned. `Ok(None)`: nothing to answer (DHCPv6 disabled,
    /// no address to give, or a message type we ignore).
    pub(crate) fn reply(
        &self,
        conf: &Config,
        live: &Live,
        src_ll: Ipv6Addr,
        dst: Ipv6Addr,
        request: &[u8],
        out: &mut [u8],
    ) -> Result<Option<usize>, Dhcpv6Drop> {
        let Some(ip6) = live.ip6.as_ref().filter(|_| !conf.no_dhcpv6) else {
            return Ok(None);
        };
        let Some(addr) = ip6.addr else {
            return Ok(None);
        };
        if dst != ALL_SERVERS {
            return Err(Dhcpv6Drop::NotAllServers);
        }
        let (&[msg_type, x0, x1, x2], opts) = request
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(Dhcpv6Drop::TooShort)?;
        let req = Request::parse(opts)?;
        let Some((reply_type, check_link)) = self.reply_type(msg_type, &req)? else {
            return Ok(None);
        };
        log::debug!("DHCPv6: message type {msg_type} from {src_ll}");

        let client_id = req.client_id.unwrap_or_default();
        let mut w = Writer::for_reply(out, client_id.len())?;
        let xid = [x0, x1, x2];
        if check_link {
            if let Some((code, ia)) = foreign_ia(opts, addr) {
                log::info!("DHCPv6: requested address not on link, sending NotOnLink");
                self.write_not_on_link(&mut w, xid, code, ia, client_id);
                return Ok(Some(w.pos));
            }
        }
        self.write_lease(&mut w, reply_type, xid, req.ia_na, addr, client_id);
        if !conf.no_dhcp_dns {
            write_dns(&mut w, &ip6.dns);
        }
        if !conf.no_dhcp_search {
            write_domain_list(&mut w, &conf.search);
        }
        if let Some(fqdn) = conf.fqdn.as_deref().filter(|f| !f.is_empty()) {
            write_fqdn(&mut w, fqdn, req.fqdn_flags);
        }
        Ok(Some(w.pos))
    }

    /// The answer to a message type, and whether the addresses the client
    /// asks for must be checked (NotOnLink); `None`: a type we ignore. A
    /// Server Identifier must be present and ours, or absent, as the type
    /// requires.
    fn reply_type(&self, msg_type: u8, req: &Request) -> Result<Option<(u8, bool)>, Dhcpv6Drop> {
        let ours = |sid: Option<&[u8]>| match sid {
            None => Err(Dhcpv6Drop::MissingServerId),
            Some(s) if s == self.duid => Ok(()),
            Some(_) => Err(Dhcpv6Drop::NotOurServerId),
        };
        let absent = |sid: Option<&[u8]>| match sid {
            None => Ok(()),
            Some(_) => Err(Dhcpv6Drop::UnexpectedServerId),
        };
        let answer = match msg_type {
            msg::SOLICIT => {
                absent(req.server_id)?;
                (msg::ADVERTISE, false)
            }
            msg::CONFIRM => {
                absent(req.server_id)?;
                (msg::REPLY, true)
            }
            msg::REQUEST | msg::RENEW => {
                ours(req.server_id)?;
                (msg::REPLY, true)
            }
            msg::REBIND => {
                ours(req.server_id)?;
                (msg::REPLY, false)
            }
            msg::INFORMATION_REQUEST => {
                if req.server_id.is_some() {
                    ours(req.server_id)?;
                }
                if req.ia_na.is_some() || req.has_ia_ta {
                    return Err(Dhcpv6Drop::UnexpectedIa);
                }
                (msg::REPLY, false)
            }
            _ => return Ok(None),
        };
        Ok(Some(answer))
    }

    /// A REPLY giving back the client's IA (`code`, `ia`) with a NotOnLink
    /// status.
    fn write_not_on_link(
        &self,
        w: &mut Writer,
        xid: [u8; 3],
        code: u16,
        ia: &[u8],
        client_id: &[u8],
    ) {
        w.message_header(msg::REPLY, xid);
        w.option(opt::SERVER_ID, &[&self.duid]);
        let at = w.header(code);
        w.bytes(ia);
        w.option(
            opt::STATUS_CODE,
            &[&STATUS_NOT_ON_LINK.to_be_bytes(), NOT_ON_LINK_MSG],
        );
        w.close(at);
        w.option(opt::CLIENT_ID, &[client_id]);
    }

    /// The fixed part of an answer: header, our Server Identifier, an IA_NA
    /// (the client's IAID, or 1) with the guest's address, all lifetimes
    /// infinite, and the client's identifier.
    fn write_lease(
        &self,
        w: &mut Writer,
        reply_type: u8,
        xid: [u8; 3],
        ia_na: Option<&[u8]>,
        addr: Ipv6Addr,
        client_id: &[u8],
    ) {
        // `Request::parse` refuses an IA_NA shorter than its fixed part.
        let iaid = ia_na
            .and_then(<[u8]>::first_chunk::<4>)
            .copied()
            .unwrap_or(1u32.to_be_bytes());
        w.message_header(reply_type, xid);
        w.option(opt::SERVER_ID, &[&self.duid]);
        let at = w.header(opt::IA_NA);
        w.bytes(&iaid);
        w.bytes(&INFINITE.to_be_bytes());
        w.bytes(&INFINITE.to_be_bytes());
        w.option(
            opt::IAADDR,
            &[
                &addr.octets(),
                &INFINITE.to_be_bytes(),
                &INFINITE.to_be_bytes(),
            ],
        );
        w.close(at);
        w.option(opt::CLIENT_ID, &[client_id]);
    }
}

/// DNS Recursive Name Server option: the first [`MAX_DNS`] specified
/// addresses, if any.
fn write_dns(w: &mut Writer, servers: &[Ipv6Addr]) {
    let mut dns = [[0u8; 16]; MAX_DNS];
    let n = dns
        .iter_mut()
        .zip(servers.iter().filter(|a| !a.is_unspecified()))
        .map(|(slot, a)| *slot = a.octets())
        .count();
    if let Some(used) = dns.get(..n).filter(|u| !u.is_empty()) {
        w.option(opt::DNS_SERVERS, &[used.as_flattened()]);
    }
}

/// Domain Search List option: the names that fit, none if none does.
fn write_domain_list(w: &mut Writer, search: &[String]) {
    if w.room() <= OPT_HDR {
        return;
    }
    let at = w.pos;
    let hdr = w.header(opt::DOMAIN_LIST);
    let first = w.pos;
    for name in search {
        // Root-only names say nothing: skip them.
        if name.is_empty() || name == "." {
            continue;
        }
        let rest = w.buf.get_mut(w.pos..).unwrap_or_default();
        if let Some(len) = dns_name::encode(name, rest) {
            // At most `rest.len()`: no overflow.
            w.pos = w.pos.wrapping_add(len);
        }
    }
    if w.pos == first {
        w.pos = at;
    } else {
        w.close(hdr);
    }
}

/// Client FQDN option, with the O flag if the client asked us (S flag) to
/// do the DNS update, which we never do.
fn write_fqdn(w: &mut Writer, fqdn: &str, client_flags: Option<u8>) {
    let flags = match client_flags {
        Some(f) if f & FQDN_S != 0 => FQDN_O,
        _ => 0,
    };
    let mut name = [0u8; dns_name::MAX_NAME];
    if let Some(name) = dns_name::encode(fqdn, &mut name).and_then(|len| name.get(..len)) {
        w.option(opt::CLIENT_FQDN, &[&[flags], name]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::tests::test_config;
    use dhcproto::v6::{
        DhcpOption, DhcpOptions, IAAddr, Message, MessageType, OptionCode, Status, UnknownOption,
        IANA, IATA,
    };
    use dhcproto::{Decodable, Decoder, Encodable, Encoder};

    const CLIENT_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);
    const START: u32 = 0x3039_1234;

    fn guest() -> Ipv6Addr {
        "2001:db8::10".parse().unwrap()
    }

    fn server() -> (Config, Dhcpv6Server) {
        let conf = test_config();
        let server = Dhcpv6Server::new(&conf, START);
        (conf, server)
    }

    fn client_duid() -> Vec<u8> {
        vec![0, 3, 0, 1, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56]
    }

    fn ia_na(addr: Option<Ipv6Addr>) -> DhcpOption {
        let mut opts = DhcpOptions::new();
        if let Some(addr) = addr {
            opts.insert(DhcpOption::IAAddr(IAAddr {
                addr,
                preferred_life: 3600,
                valid_life: 7200,
                opts: DhcpOptions::new(),
            }));
        }
        DhcpOption::IANA(IANA {
            id: 0x1234_5678,
            t1: 100,
            t2: 200,
            opts,
        })
    }

    fn request(t: MessageType, opts: Vec<DhcpOption>) -> Vec<u8> {
        let mut m = Message::new_with_id(t, [0xab, 0xcd, 0xef]);
        m.opts_mut().insert(DhcpOption::ClientId(client_duid()));
        for o in opts {
            m.opts_mut().insert(o);
        }
        let mut buf = Vec::new();
        m.encode(&mut Encoder::new(&mut buf)).unwrap();
        buf
    }

    fn run(conf: &Config, s: &Dhcpv6Server, req: &[u8]) -> Result<Option<Vec<u8>>, Dhcpv6Drop> {
        let mut out = [0u8; 1500];
        let n = s.reply(
            conf,
            &Live::new(conf),
            CLIENT_LL,
            ALL_SERVERS,
            req,
            &mut out,
        )?;
        Ok(n.map(|n| out[..n].to_vec()))
    }

    fn serve(conf: &Config, s: &Dhcpv6Server, req: &[u8]) -> Vec<u8> {
        run(conf, s, req).unwrap().unwrap()
    }

    fn decode(payload: &[u8]) -> Message {
        Message::decode(&mut Decoder::new(payload)).unwrap()
    }

    /// Top-level option codes in wire order.
    fn codes(payload: &[u8]) -> Vec<u16> {
        options(&payload[HEADER_LEN..])
            .map(|o| o.unwrap().0)
            .collect()
    }

    fn raw_option(payload: &[u8], code: u16) -> Option<&[u8]> {
        options(&payload[HEADER_LEN..])
            .map(|o| o.unwrap())
            .find(|&(c, _)| c == code)
            .map(|(_, d)| d)
    }

    fn assert_lease(m: &Message, iaid: u32) {
        match m.opts().get(OptionCode::IANA) {
            Some(DhcpOption::IANA(ia)) => {
                assert_eq!((ia.id, ia.t1, ia.t2), (iaid, INFINITE, INFINITE));
                assert_eq!(
                    ia.opts.get(OptionCode::IAAddr),
                    Some(&DhcpOption::IAAddr(IAAddr {
                        addr: guest(),
                        preferred_life: INFINITE,
                        valid_life: INFINITE,
                        opts: DhcpOptions::new(),
                    }))
                );
            }
            other => panic!("no IA_NA: {other:?}"),
        }
    }

    #[test]
    fn duid_is_llt_of_our_mac() {
        let (conf, s) = server();
        let mut expected = vec![0, 1, 0, 1];
        expected.extend_from_slice(&START.to_be_bytes());
        expected.extend_from_slice(&conf.our_mac);
        assert_eq!(s.duid(), &expected[..]);
    }

    #[test]
    fn solicit_gets_advertise_with_everything() {
        let (conf, s) = server();
        let payload = serve(&conf, &s, &request(MessageType::Solicit, vec![ia_na(None)]));
        assert_eq!(codes(&payload), [2, 3, 1, 23, 24, 39]);
        let m = decode(&payload);
        assert_eq!(m.msg_type(), MessageType::Advertise);
        assert_eq!(m.xid(), [0xab, 0xcd, 0xef]);
        let o = m.opts();
        assert_eq!(
            o.get(OptionCode::ServerId),
            Some(&DhcpOption::ServerId(s.duid().to_vec()))
        );
        assert_eq!(
            o.get(OptionCode::ClientId),
            Some(&DhcpOption::ClientId(client_duid()))
        );
        assert_lease(&m, 0x1234_5678);
        assert_eq!(
            o.get(OptionCode::DomainNameServers),
            Some(&DhcpOption::DomainNameServers(vec!["2001:db8::53"
                .parse()
                .unwrap()]))
        );
        match o.get(OptionCode::DomainSearchList) {
            Some(DhcpOption::DomainSearchList(n)) => {
                let n: Vec<_> = n.iter().map(|n| n.to_ascii()).collect();
                assert_eq!(n, ["eng.example.com.", "example.com."]);
            }
            other => panic!("no domain list: {other:?}"),
        }
        assert_eq!(
            raw_option(&payload, opt::CLIENT_FQDN),
            Some(&b"\x00\x05guest\x07example\x03com\x00"[..])
        );
    }

    #[test]
    fn fqdn_s_flag_gets_o_flag() {
        let (conf, s) = server();
        let fqdn = UnknownOption::new(OptionCode::ClientFqdn, b"\x01\x01x\x00".to_vec());
        let req = request(MessageType::Solicit, vec![DhcpOption::Unknown(fqdn)]);
        let payload = serve(&conf, &s, &req);
        assert_eq!(raw_option(&payload, opt::CLIENT_FQDN).unwrap()[0], FQDN_O);
        // No IA from the client: IAID 1.
        assert_lease(&decode(&payload), 1);
    }

    #[test]
    fn server_id_rules() {
        let (conf, s) = server();
        let ours = DhcpOption::ServerId(s.duid().to_vec());
        let mut wrong = s.duid().to_vec();
        wrong[13] ^= 1;
        let wrong = DhcpOption::ServerId(wrong);
        let ia = ia_na(Some(guest()));
        let t = MessageType::Request;

        let r = |t, o: Vec<DhcpOption>| run(&conf, &s, &request(t, o));
        assert_eq!(
            r(MessageType::Solicit, vec![ours.clone()]),
            Err(Dhcpv6Drop::UnexpectedServerId)
        );
        assert_eq!(
            r(MessageType::Confirm, vec![ours.clone(), ia.clone()]),
            Err(Dhcpv6Drop::UnexpectedServerId)
        );
        for t in [t, MessageType::Renew, MessageType::Rebind] {
            assert_eq!(r(t, vec![ia.clone()]), Err(Dhcpv6Drop::MissingServerId));
            assert_eq!(
                r(t, vec![wrong.clone(), ia.clone()]),
                Err(Dhcpv6Drop::NotOurServerId)
            );
            let m = decode(&r(t, vec![ours.clone(), ia.clone()]).unwrap().unwrap());
            assert_eq!(m.msg_type(), MessageType::Reply);
            assert_lease(&m, 0x1234_5678);
        }
        assert_eq!(
            r(MessageType::InformationRequest, vec![wrong.clone()]),
            Err(Dhcpv6Drop::NotOurServerId)
        );
        let short = DhcpOption::ServerId(vec![0, 1, 0, 1]);
        assert_eq!(
            r(MessageType::Renew, vec![short]),
            Err(Dhcpv6Drop::BadServerId)
        );
    }

    #[test]
    fn confirm_and_request_with_foreign_address_get_not_on_link() {
        let (conf, s) = server();
        let foreign = ia_na(Some("2001:db8:99::1".parse().unwrap()));
        let ours = DhcpOption::ServerId(s.duid().to_vec());
        for req in [
            request(MessageType::Confirm, vec![foreign.clone()]),
            request(MessageType::Request, vec![foreign.clone(), ours.clone()]),
            request(MessageType::Renew, vec![foreign.clone(), ours.clone()]),
        ] {
            let payload = serve(&conf, &s, &req);
            assert_eq!(codes(&payload), [2, 3, 1]);
            let m = decode(&payload);
            assert_eq!(m.msg_type(), MessageType::Reply);
            assert_eq!(m.xid(), [0xab, 0xcd, 0xef]);
            let Some(DhcpOption::IANA(ia)) = m.opts().get(OptionCode::IANA) else {
                panic!("no IA_NA");
            };
            assert_eq!((ia.id, ia.t1, ia.t2), (0x1234_5678, 100, 200));
            assert!(ia.opts.get(OptionCode::IAAddr).is_none());
            match ia.opts.get(OptionCode::StatusCode) {
                Some(DhcpOption::StatusCode(sc)) => {
                    assert_eq!(sc.status, Status::NotOnLink);
                    assert_eq!(sc.msg, "Prefix not appropriate for link.");
                }
                other => panic!("no status: {other:?}"),
            }
            assert_eq!(
                m.opts().get(OptionCode::ClientId),
                Some(&DhcpOption::ClientId(client_duid()))
            );
        }

        // A temporary address counts too.
        let mut opts = DhcpOptions::new();
        opts.insert(DhcpOption::IAAddr(IAAddr {
            addr: "2001:db8:99::2".parse().unwrap(),
            preferred_life: 0,
            valid_life: 0,
            opts: DhcpOptions::new(),
        }));
        let ta = DhcpOption::IATA(IATA { id: 77, opts });
        let payload = serve(&conf, &s, &request(MessageType::Confirm, vec![ta]));
        let m = decode(&payload);
        let Some(DhcpOption::IATA(ia)) = m.opts().get(OptionCode::IATA) else {
            panic!("no IA_TA");
        };
        assert_eq!(ia.id, 77);
        assert!(matches!(
            ia.opts.get(OptionCode::StatusCode),
            Some(DhcpOption::StatusCode(sc)) if sc.status == Status::NotOnLink
        ));

        // Our own address is fine; REBIND does not check, as in passt.
        let payload = serve(
            &conf,
            &s,
            &request(MessageType::Confirm, vec![ia_na(Some(guest()))]),
        );
        assert_lease(&decode(&payload), 0x1234_5678);
        let payload = serve(
            &conf,
            &s,
            &request(MessageType::Rebind, vec![foreign, ours]),
        );
        assert_lease(&decode(&payload), 0x1234_5678);
    }

    #[test]
    fn information_request() {
        let (conf, s) = server();
        let payload = serve(&conf, &s, &request(MessageType::InformationRequest, vec![]));
        let m = decode(&payload);
        assert_eq!(m.msg_type(), MessageType::Reply);
        assert_lease(&m, 1);
        let ours = DhcpOption::ServerId(s.duid().to_vec());
        assert!(run(
            &conf,
            &s,
            &request(MessageType::InformationRequest, vec![ours])
        )
        .is_ok());
        assert_eq!(
            run(
                &conf,
                &s,
                &request(MessageType::InformationRequest, vec![ia_na(None)])
            ),
            Err(Dhcpv6Drop::UnexpectedIa)
        );
    }

    #[test]
    fn ignored_and_refused() {
        let (conf, s) = server();
        let mut out = [0u8; 1500];
        let req = request(MessageType::Solicit, vec![]);
        for t in [
            MessageType::Release,
            MessageType::Decline,
            MessageType::Reply,
        ] {
            assert_eq!(run(&conf, &s, &request(t, vec![])), Ok(None));
        }
        let unicast = s.reply(
            &conf,
            &Live::new(&conf),
            CLIENT_LL,
            "fe80::1".parse().unwrap(),
            &req,
            &mut out,
        );
        assert_eq!(unicast, Err(Dhcpv6Drop::NotAllServers));
        let site = s.reply(
            &conf,
            &Live::new(&conf),
            CLIENT_LL,
            "ff05::1:3".parse().unwrap(),
            &req,
            &mut out,
        );
        assert_eq!(site, Err(Dhcpv6Drop::NotAllServers));

        let mut c = test_config();
        c.no_dhcpv6 = true;
        assert_eq!(run(&c, &s, &req), Ok(None));
        let mut c = test_config();
        c.ip6.as_mut().unwrap().addr = None;
        assert_eq!(run(&c, &s, &req), Ok(None));
        let mut c = test_config();
        c.ip6 = None;
        assert_eq!(run(&c, &s, &req), Ok(None));

        let mut m = Message::new_with_id(MessageType::Solicit, [1, 2, 3]);
        let mut no_id = Vec::new();
        m.encode(&mut Encoder::new(&mut no_id)).unwrap();
        assert_eq!(run(&conf, &s, &no_id), Err(Dhcpv6Drop::NoClientId));
        m.opts_mut().insert(DhcpOption::ClientId(vec![9; 129]));
        let mut long_id = Vec::new();
        m.encode(&mut Encoder::new(&mut long_id)).unwrap();
        assert_eq!(run(&conf, &s, &long_id), Err(Dhcpv6Drop::ClientIdTooLong));
    }

    #[test]
    fn disabled_options_are_left_out() {
        let (mut conf, s) = server();
        conf.no_dhcp_dns = true;
        conf.no_dhcp_search = true;
        conf.fqdn = None;
        let payload = serve(&conf, &s, &request(MessageType::Solicit, vec![]));
        assert_eq!(codes(&payload), [2, 3, 1]);

        let (mut conf, s) = server();
        conf.ip6.as_mut().unwrap().dns.clear();
        conf.search = vec![".".into(), "".into(), "a..b".into(), "ok.example".into()];
        let payload = serve(&conf, &s, &request(MessageType::Solicit, vec![]));
        assert_eq!(codes(&payload), [2, 3, 1, 24, 39]);
        assert_eq!(
            raw_option(&payload, opt::DOMAIN_LIST),
            Some(&b"\x02ok\x07example\x00"[..])
        );
        conf.search = vec![".".into()];
        let payload = serve(&conf, &s, &request(MessageType::Solicit, vec![]));
        assert_eq!(codes(&payload), [2, 3, 1, 39]);
    }

    #[test]
    fn reply_fits_minimum_mtu() {
        let (mut conf, s) = server();
        conf.search = (0..80)
            .map(|i| format!("search-domain-{i:02}.a-long-enough-suffix.example"))
            .collect();
        conf.fqdn = Some(format!("{}.{}.example", "h".repeat(63), "i".repeat(63)));
        let mut m = Message::new_with_id(MessageType::Solicit, [1, 2, 3]);
        m.opts_mut().insert(DhcpOption::ClientId(vec![9; 128]));
        let mut req = Vec::new();
        m.encode(&mut Encoder::new(&mut req)).unwrap();
        let payload = serve(&conf, &s, &req);
        assert!(payload.len() <= MAX_REPLY);
        assert!(payload.len() > MAX_REPLY - 60);
        let m = decode(&payload);
        let Some(DhcpOption::DomainSearchList(n)) = m.opts().get(OptionCode::DomainSearchList)
        else {
            panic!("no domain list");
        };
        assert!(n.len() > 10 && n.len() < 80);

        // A short buffer bounds the reply too, or is refused.
        let mut out = [0u8; 400];
        let n = s
            .reply(
                &conf,
                &Live::new(&conf),
                CLIENT_LL,
                ALL_SERVERS,
                &req,
                &mut out,
            )
            .unwrap()
            .unwrap();
        assert!(n <= 400);
        decode(&out[..n]);
        assert_eq!(
            s.reply(
                &conf,
                &Live::new(&conf),
                CLIENT_LL,
                ALL_SERVERS,
                &req,
                &mut out[..100]
            ),
            Err(Dhcpv6Drop::OutputTooSmall)
        );
    }

    fn valid_request() -> Vec<u8> {
        let s = server().1;
        request(
            MessageType::Request,
            vec![
                ia_na(Some("2001:db8:99::1".parse().unwrap())),
                DhcpOption::ServerId(s.duid().to_vec()),
                DhcpOption::Unknown(UnknownOption::new(OptionCode::ClientFqdn, vec![1, 0])),
            ],
        )
    }

    #[test]
    fn truncated_requests_never_panic() {
        let (conf, s) = server();
        let req = valid_request();
        assert!(run(&conf, &s, &req).unwrap().is_some());
        for n in 0..req.len() {
            let r = run(&conf, &s, &req[..n]);
            if n < HEADER_LEN {
                assert_eq!(r, Err(Dhcpv6Drop::TooShort));
            }
        }
    }

    #[test]
    fn mutated_requests_never_panic() {
        let (conf, s) = server();
        let base = valid_request();
        let mut out = [0u8; 1500];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut answered = 0;
        for _ in 0..20_000 {
            let mut req = base.clone();
            for _ in 0..(next() % 6) {
                let i = (next() as usize) % req.len();
                req[i] = next() as u8;
            }
            let len = (next() as usize) % (req.len() + 1);
            if let Ok(Some(n)) = s.reply(
                &conf,
                &Live::new(&conf),
                CLIENT_LL,
                ALL_SERVERS,
                &req[..len],
                &mut out,
            ) {
                answered += 1;
                assert!(n <= MAX_REPLY);
                assert!(options(&out[HEADER_LEN..n]).all(|o| o.is_ok()));
            }
        }
        assert!(answered > 100, "{answered}");
    }

    /// A frame from the client's link-local address, port 546, to
    /// All_DHCP_Relay_Agents_and_Servers, port `dport`.
    fn client_frame(dport: u16, payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2(GUEST_MAC, [0x33, 0x33, 0, 1, 0, 2])
            .ipv6(CLIENT_LL.octets(), ALL_SERVERS.octets(), 1)
            .udp(546, dport);
        let mut frame = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut frame, payload).unwrap();
        frame
    }

    const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    #[test]
    fn handle_answers_solicit_frame_with_advertise_frame() {
        use etherparse::{LinkSlice, NetSlice, SlicedPacket, TransportSlice};
        let (conf, s) = server();
        let frame = client_frame(547, &request(MessageType::Solicit, vec![ia_na(None)]));
        let c = crate::wire::classify(&frame).unwrap();
        let mut out = [0u8; 1500];
        let n = s.handle(&conf, &Live::new(&conf), &c, &mut out).unwrap();

        let p = SlicedPacket::from_ethernet(&out[..n]).unwrap();
        let Some(LinkSlice::Ethernet2(e)) = &p.link else {
            panic!("not Ethernet II")
        };
        assert_eq!(
            (e.source(), e.destination()),
            (crate::conf::DEFAULT_MAC, GUEST_MAC)
        );
        let Some(NetSlice::Ipv6(ip)) = &p.net else {
            panic!("not IPv6")
        };
        let h = ip.header().to_header();
        assert_eq!(
            (
                Ipv6Addr::from(h.source),
                Ipv6Addr::from(h.destination),
                h.hop_limit
            ),
            ("fe80::1".parse().unwrap(), CLIENT_LL, 255)
        );
        let Some(TransportSlice::Udp(u)) = &p.transport else {
            panic!("not UDP")
        };
        assert_eq!((u.source_port(), u.destination_port()), (547, 546));
        let csum = u.to_header().calc_checksum_ipv6(&h, u.payload()).unwrap();
        assert_eq!(csum, u.checksum());

        let m = decode(u.payload());
        assert_eq!(m.msg_type(), MessageType::Advertise);
        assert_eq!(m.xid(), [0xab, 0xcd, 0xef]);
        let Some(DhcpOption::ServerId(sid)) = m.opts().get(OptionCode::ServerId) else {
            panic!("no server id")
        };
        assert_eq!(sid.as_slice(), s.duid());
        let Some(DhcpOption::ClientId(cid)) = m.opts().get(OptionCode::ClientId) else {
            panic!("no client id")
        };
        assert_eq!(*cid, client_duid());
        let Some(DhcpOption::IANA(ia)) = m.opts().get(OptionCode::IANA) else {
            panic!("no IA_NA")
        };
        assert_eq!(ia.id, 0x1234_5678);
        let Some(DhcpOption::IAAddr(a)) = ia.opts.get(OptionCode::IAAddr) else {
            panic!("no IA address")
        };
        assert_eq!(a.addr, guest());
        assert!(crate::wire::classify(&out[..n]).is_ok());
    }

    #[test]
    fn handle_ignores_other_frames_and_bad_requests() {
        let (conf, s) = server();
        let mut out = [0u8; 1500];
        // UDP to another port.
        let frame = client_frame(548, &request(MessageType::Solicit, vec![]));
        let c = crate::wire::classify(&frame).unwrap();
        assert_eq!(s.handle(&conf, &Live::new(&conf), &c, &mut out), None);
        // Too short for a DHCPv6 header: dropped.
        let frame = client_frame(547, &[1, 2]);
        let c = crate::wire::classify(&frame).unwrap();
        assert_eq!(s.handle(&conf, &Live::new(&conf), &c, &mut out), None);
        // DHCPv6 disabled.
        let conf = Config {
            no_dhcpv6: true,
            ..conf
        };
        let frame = client_frame(547, &request(MessageType::Solicit, vec![]));
        let c = crate::wire::classify(&frame).unwrap();
        assert_eq!(s.handle(&conf, &Live::new(&conf), &c, &mut out), None);
    }
}
